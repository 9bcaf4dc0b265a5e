"""The Agent CRD's schema and CEL rules, enforced by a real API server.

Each invalid manifest must be rejected at once (no operator running) with an error that
names the offending field, as `kubectl apply` would show it. Creates use
``fieldValidation=Strict`` (kubectl's default), so unknown fields are errors too.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stockade.api.agent import AGENT_KIND, AGENT_PLURAL, GROUP, VERSION, Agent
from tests.integration.cluster import REPO_ROOT, Cluster
from tests.unit.test_policy import CNI_ANNOTATIONS

pytestmark = pytest.mark.integration

Mutation = Callable[[dict[str, Any]], None]


def full_manifest(name: str = "full") -> dict[str, Any]:
    """A valid Agent that sets (nearly) every spec field."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": AGENT_KIND,
        "metadata": {"name": name},
        "spec": {
            "image": "ghcr.io/example/coding-agent:1.4.2",
            "command": ["/bin/agent"],
            "args": ["--task-file", "/etc/stockade/task"],
            "env": [
                {"name": "LOG_LEVEL", "value": "debug"},
                {
                    "name": "API_KEY",
                    "valueFrom": {"secretKeyRef": {"name": "llm-credentials", "key": "api-key"}},
                },
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
            "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "agent-settings"}}],
            "workingDir": "/workspace",
            "task": "Add a --dry-run flag to the release script.",
            "config": {"model": "claude-sonnet", "allowedTools": "read,edit,test"},
            "runtimeClassName": "gvisor",
            "resources": {
                "requests": {"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "1Gi"},
                "limits": {"cpu": 1, "memory": "1Gi"},
            },
            "activeDeadlineSeconds": 3600,
            "startupTimeoutSeconds": 120,
            "restartPolicy": "OnFailure",
            "backoffLimit": 2,
            "suspend": False,
            "ttlSecondsAfterFinished": 600,
            "workspace": {"size": "2Gi", "storageClassName": "standard", "retain": True},
            "network": {
                "egress": "Custom",
                "cidrs": ["10.20.0.0/16", "2001:db8::/32"],
                "ports": [{"port": 443}, {"port": 53, "protocol": "UDP"}],
            },
            "livenessProbe": {
                "exec": {"command": ["cat", "/tmp/heartbeat"]},
                "periodSeconds": 30,
                "failureThreshold": 2,
            },
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
            "serviceAccountName": "agent-runner",
            "priorityClassName": "agents-low",
            "nodeSelector": {"sandbox.example.com/gvisor": "true"},
            "tolerations": [
                {"key": "sandbox", "operator": "Equal", "value": "gvisor", "effect": "NoSchedule"},
                {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
            ],
            "podMetadata": {
                "labels": {"team": "platform"},
                "annotations": {"user.stockade.dev/owner": "alice"},
            },
        },
    }


def minimal_manifest(name: str = "agent") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": AGENT_KIND,
        "metadata": {"name": name},
        "spec": {"image": "ghcr.io/example/agent:1.0"},
    }


def objects(cluster: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api)


def create(cluster: Cluster, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    result = objects(cluster).create_namespaced_custom_object(
        GROUP, VERSION, namespace, AGENT_PLURAL, body, field_validation="Strict"
    )
    return cast(dict[str, Any], result)


def patch(cluster: Cluster, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch, as `kubectl patch --type merge` sends it."""
    result = objects(cluster).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, AGENT_PLURAL, name, body, field_validation="Strict"
    )
    return cast(dict[str, Any], result)


def rejection(call: Callable[[], object]) -> tuple[int, dict[str, Any]]:
    """Run an API call that must fail; return (HTTP status, decoded Status body)."""
    with pytest.raises(ApiException) as caught:
        call()
    exc = caught.value
    return exc.status, json.loads(exc.body)


def assert_rejected(
    call: Callable[[], object], field: str, status: int = 422, reason: str | None = None
) -> None:
    code, body = rejection(call)
    message = body.get("message", "")
    causes = (body.get("details") or {}).get("causes") or []
    fields = [c.get("field", "") for c in causes]
    assert code == status, f"HTTP {code}, expected {status}: {message}"
    assert any(field in f for f in fields) or field in message, (
        f"{field!r} not named in the rejection: {message} (causes: {fields})"
    )
    if reason is not None:
        assert reason in message, f"{reason!r} not in {message!r}"
    # A rejection is a rule's verdict, never a rule that failed to evaluate.
    assert "evaluating rule" not in message, message


def spec_set(**fields: Any) -> Mutation:
    """A mutation that sets spec fields (a value of None deletes the field)."""

    def mutate(body: dict[str, Any]) -> None:
        for key, value in fields.items():
            if value is None:
                body["spec"].pop(key, None)
            else:
                body["spec"][key] = value

    return mutate


def at(path: str, value: Any) -> Mutation:
    """A mutation that sets the dotted `path` to `value`.

    List indexes are numbers; a dot escaped as ``\\.`` belongs to a key (``nvidia\\.com/gpu``).
    """
    parts = [p.replace("\\.", ".") for p in re.split(r"(?<!\\)\.", path)]

    def mutate(body: dict[str, Any]) -> None:
        *parents, last = parts
        node: Any = body
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


HOSTS_NETWORK = {"egress": "Hosts", "hosts": ["api.openai.com", "*.github.com", "pypi.org:443"]}
CREDENTIAL = {
    "name": "openai",
    "secretKeyRef": {"name": "llm-credentials", "key": "api-key"},
    "hosts": ["api.openai.com"],
}


def _with_hosts(**fields: Any) -> Mutation:
    """A mutation that sets egress Hosts (:data:`HOSTS_NETWORK`) and the spec `fields`."""
    return spec_set(network=HOSTS_NETWORK, **fields)


def annotate(key: str, value: str) -> Mutation:
    """A mutation that adds pod annotation `key` (dots and all) to spec.podMetadata."""

    def mutate(body: dict[str, Any]) -> None:
        body["spec"]["podMetadata"].setdefault("annotations", {})[key] = value

    return mutate


INVALID_CREATES: list[Any] = [
    pytest.param(
        at("spec.resources.requests.cpu", "-1"),
        "spec.resources.requests.cpu",
        "should match",
        id="negative-cpu",
    ),
    pytest.param(
        at("spec.resources.requests.cpu", -2),
        "spec.resources.requests.cpu",
        "greater than or equal to 0",
        id="negative-cpu-number",
    ),
    pytest.param(
        at("spec.resources.limits.memory", "12 GB"),
        "spec.resources.limits.memory",
        "should match",
        id="malformed-memory",
    ),
    pytest.param(
        at("spec.resources", {"limits": {"cpu": "1", "nvidia.com/gpu": "1"}}),
        "spec.resources.limits",
        "only cpu, memory and ephemeral-storage",
        id="unsupported-resource",
    ),
    pytest.param(
        at("spec.resources", {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}),
        "spec.resources.requests",
        "requests must be less than or equal to limits",
        id="requests-above-limits",
    ),
    pytest.param(
        at("spec.network", {"egress": "Everything"}),
        "spec.network.egress",
        "Unsupported value",
        id="unknown-egress-mode",
    ),
    pytest.param(
        at("spec.network", {"egress": "Custom"}),
        "spec.network.cidrs",
        "cidrs is required when egress is Custom",
        id="custom-egress-without-cidrs",
    ),
    pytest.param(
        at("spec.network", {"egress": "Internet", "cidrs": ["10.0.0.0/8"]}),
        "spec.network.cidrs",
        "only allowed when egress is Custom",
        id="cidrs-without-custom",
    ),
    *(
        # Custom egress never reaches the link-local ranges (the cloud metadata service,
        # issue 20, class 8), not even through a wider CIDR that contains them.
        pytest.param(
            at("spec.network", {"egress": "Custom", "cidrs": ["203.0.113.0/24", cidr]}),
            "spec.network.cidrs[1]",
            "must not overlap the link-local and cloud metadata",
            id=f"custom-egress-{cidr}",
        )
        for cidr in (
            "169.254.169.254/32",
            "169.0.0.0/8",
            "0.0.0.0/0",
            "fe80::/64",
            "fe80::a9fe:a9fe/128",
            "fd00:ec2::254/128",
            "100.64.0.0/10",
            "::/0",
        )
    ),
    pytest.param(
        at("spec.network", {"egress": "Custom", "cidrs": ["::ffff:169.254.169.254/128"]}),
        "spec.network.cidrs[0]",
        "must be a CIDR network address",  # Kubernetes' cidr() refuses IPv4-mapped IPv6
        id="custom-egress-ipv4-mapped-metadata",
    ),
    pytest.param(
        at("spec.network", {"egress": "DNS", "ports": [{"port": 443}]}),
        "spec.network.ports",
        "only allowed when egress is Custom",
        id="ports-without-custom",
    ),
    pytest.param(
        at("spec.network.cidrs.0", "10.0.0.0/33"),
        "spec.network.cidrs[0]",
        "must be a CIDR",
        id="invalid-cidr",
    ),
    pytest.param(
        at("spec.network.cidrs.1", "10.1.2.3/8"),
        "spec.network.cidrs[1]",
        "must be a CIDR",
        id="cidr-host-address",
    ),
    pytest.param(
        at("spec.network.ports.0.port", 70000),
        "spec.network.ports[0].port",
        "less than or equal to 65535",
        id="port-70000",
    ),
    pytest.param(
        at("spec.network.ports.1.protocol", "ICMP"),
        "spec.network.ports[1].protocol",
        "Unsupported value",
        id="unknown-protocol",
    ),
    pytest.param(
        spec_set(task="x" * (100 * 1024 + 1)),
        "spec.task",
        "Too long",
        id="task-over-100KiB",
    ),
    pytest.param(
        at("metadata.name", "Research-Agent"),
        "metadata.name",
        None,
        id="name-uppercase",
    ),
    pytest.param(
        at("metadata.name", "a" * 60),
        "metadata.name",
        "no more than 52 characters",
        id="name-60-chars",
    ),
    pytest.param(
        at("metadata.name", "agent.v2"),
        "metadata.name",
        "DNS-1123 label",
        id="name-with-dot",
    ),
    pytest.param(
        spec_set(runtimeClassName="gVisor_sandbox"),
        "spec.runtimeClassName",
        "should match",
        id="bad-runtimeClassName",
    ),
    pytest.param(
        spec_set(sessionRef={"name": "Team_A"}),
        "spec.sessionRef.name",
        "should match",
        id="bad-sessionRef-name",
    ),
    pytest.param(
        spec_set(serviceAccountName="Admin"),
        "spec.serviceAccountName",
        "should match",
        id="bad-serviceAccountName",
    ),
    pytest.param(
        spec_set(backoffLimit=101),
        "spec.backoffLimit",
        "less than or equal to 100",
        id="backoffLimit-101",
    ),
    pytest.param(
        spec_set(backoffLimit=-1),
        "spec.backoffLimit",
        "greater than or equal to 0",
        id="backoffLimit-negative",
    ),
    pytest.param(
        spec_set(restartPolicy="Always"),
        "spec.restartPolicy",
        "Unsupported value",
        id="restartPolicy-Always",
    ),
    pytest.param(
        spec_set(startupTimeoutSeconds=0),
        "spec.startupTimeoutSeconds",
        "greater than or equal to 1",
        id="startupTimeoutSeconds-0",
    ),
    pytest.param(
        spec_set(activeDeadlineSeconds=0),
        "spec.activeDeadlineSeconds",
        "greater than or equal to 1",
        id="activeDeadlineSeconds-0",
    ),
    pytest.param(
        spec_set(ttlSecondsAfterFinished=-5),
        "spec.ttlSecondsAfterFinished",
        "greater than or equal to 0",
        id="ttlSecondsAfterFinished-negative",
    ),
    pytest.param(
        spec_set(image=None),
        "spec.image",
        "image is required unless sessionRef is set",
        id="missing-image",
    ),
    pytest.param(
        at("spec.livenessProbe.httpGet", {"port": 8080}),
        "spec.livenessProbe",
        "exactly one of exec, httpGet, tcpSocket or grpc",
        id="probe-two-handlers",
    ),
    pytest.param(
        at("spec.readinessProbe", {"periodSeconds": 5}),
        "spec.readinessProbe",
        "exactly one of exec, httpGet, tcpSocket or grpc",
        id="probe-no-handler",
    ),
    pytest.param(
        at("spec.livenessProbe.successThreshold", 2),
        "spec.livenessProbe.successThreshold",
        "must be 1 for a liveness probe",
        id="liveness-successThreshold",
    ),
    pytest.param(
        at("spec.readinessProbe.httpGet.port", 0),
        "spec.readinessProbe.httpGet.port",
        "greater than or equal to 1",
        id="probe-port-0",
    ),
    pytest.param(
        at("spec.workspace.size", "0"),
        "spec.workspace.size",
        "greater than zero",
        id="workspace-size-zero",
    ),
    pytest.param(
        at("spec.env.0.name", "1-BAD NAME"),
        "spec.env[0].name",
        "should match",
        id="bad-env-name",
    ),
    pytest.param(
        at("spec.env.1", {"name": "LOG_LEVEL", "value": "info"}),
        "spec.env[1]",
        "Duplicate value",
        id="duplicate-env-name",
    ),
    pytest.param(
        at("spec.env.0.valueFrom", {"fieldRef": {"fieldPath": "metadata.name"}}),
        "spec.env[0].valueFrom",
        "mutually exclusive",
        id="env-value-and-valueFrom",
    ),
    pytest.param(
        at("spec.config.tools/allowed", "read"),
        "spec.config",
        "keys must consist of",
        id="bad-config-key",
    ),
    pytest.param(
        at("spec.podMetadata.labels.stockade\\.dev/agent", "other"),
        "spec.podMetadata.labels",
        "reserved",
        id="reserved-label",
    ),
    pytest.param(
        at("spec.readinessProbe.httpGet.host", "169.254.169.254"),
        "spec.readinessProbe.httpGet.host",
        "host is not allowed",
        id="readiness-httpGet-host",
    ),
    pytest.param(
        at("spec.livenessProbe", {"httpGet": {"port": 8080, "host": "10.0.0.1"}}),
        "spec.livenessProbe.httpGet.host",
        "host is not allowed",
        id="liveness-httpGet-host",
    ),
    pytest.param(
        at("spec.livenessProbe", {"tcpSocket": {"port": 10250, "host": "127.0.0.1"}}),
        "spec.livenessProbe.tcpSocket.host",
        "host is not allowed",
        id="liveness-tcpSocket-host",
    ),
    pytest.param(
        at("spec.readinessProbe", {"tcpSocket": {"port": 22, "host": "node.example"}}),
        "spec.readinessProbe.tcpSocket.host",
        "host is not allowed",
        id="readiness-tcpSocket-host",
    ),
    *(
        pytest.param(
            annotate(key, "x"),
            "spec.podMetadata.annotations",
            "annotation keys must be unprefixed and without dots",
            id=f"annotation-{key}",
        )
        for key in (
            # CNI attachment and address annotations (issue 20, class 3): they could put
            # an egress None agent on a network no NetworkPolicy fences.
            *CNI_ANNOTATIONS,
            "container.apparmor.security.beta.kubernetes.io/agent",
            "seccomp.security.alpha.kubernetes.io/pod",
            "io.katacontainers.config.hypervisor.kernel_params",
            "dev.gvisor.flag.network",
            "kubernetes.io/egress-bandwidth",
            "k8s.io/anything",
            "cluster-autoscaler.kubernetes.io/safe-to-evict",
            "io.kubernetes.cri-o.Devices",
            "cpu-quota.crio.io",
        )
    ),
    # Issue 21: egress Hosts and credentials.
    pytest.param(
        at("spec.network", {"egress": "Hosts"}),
        "spec.network.hosts",
        "hosts is required when egress is Hosts",
        id="hosts-egress-without-hosts",
    ),
    pytest.param(
        at("spec.network", {"egress": "Hosts", "hosts": []}),
        "spec.network.hosts",
        "hosts is required when egress is Hosts",
        id="hosts-egress-with-empty-hosts",
    ),
    pytest.param(
        at("spec.network", {"egress": "DNS", "hosts": ["api.openai.com"]}),
        "spec.network.hosts",
        "only allowed when egress is Hosts",
        id="hosts-without-hosts-egress",
    ),
    *(
        pytest.param(
            at("spec.network", {"egress": "Hosts", "hosts": ["pypi.org", host]}),
            "spec.network.hosts[1]",
            None,
            id=f"bad-host-{host}",
        )
        for host in (
            "API.openai.com",
            "a.*.com",
            "*",
            "a.com:0",
            "a.com:65536",
            "1.2.3.4",
            "http://a.com",
            "-a.com",
        )
    ),
    pytest.param(
        spec_set(credentials=[CREDENTIAL]),
        "spec.credentials",
        "credentials need network.egress Hosts",
        id="credentials-without-hosts-egress",
    ),
    pytest.param(
        _with_hosts(credentials=[{**CREDENTIAL, "hosts": ["evil.example.com"]}]),
        "spec.credentials",
        "must be the name of a network.hosts entry",
        id="credential-host-not-in-network-hosts",
    ),
    pytest.param(
        _with_hosts(credentials=[CREDENTIAL, CREDENTIAL]),
        "spec.credentials[1]",
        "Duplicate value",
        id="credential-names-repeat",
    ),
    pytest.param(
        _with_hosts(credentials=[{**CREDENTIAL, "env": "API_KEY"}]),
        "spec.credentials",
        "must not be the name of a spec.env variable",
        id="credential-env-clashes-with-env",
    ),
    pytest.param(
        _with_hosts(
            credentials=[
                {**CREDENTIAL, "env": "K"},
                {**CREDENTIAL, "name": "two", "env": "K"},
            ]
        ),
        "spec.credentials",
        "credentials[].env must be unique",
        id="credential-env-repeats",
    ),
    pytest.param(
        _with_hosts(credentials=[{**CREDENTIAL, "header": "Host"}]),
        "spec.credentials[0].header",
        "must not be one that frames the request",
        id="credential-header-host",
    ),
    pytest.param(
        _with_hosts(credentials=[{**CREDENTIAL, "name": "Open_AI"}]),
        "spec.credentials[0].name",
        None,
        id="credential-name-not-a-label",
    ),
    pytest.param(
        _with_hosts(credentials=[{**CREDENTIAL, "secretKeyRef": {"name": "llm"}}]),
        "spec.credentials[0].secretKeyRef.key",
        "Required value",
        id="credential-without-key",
    ),
    pytest.param(
        at("spec.tolerations.0.tolerationSeconds", 30),
        "spec.tolerations[0].tolerationSeconds",
        "requires effect NoExecute",
        id="tolerationSeconds-without-NoExecute",
    ),
]


def _apply(mutation: Mutation, body: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(body)
    mutation(result)
    return result


@pytest.mark.parametrize(("mutation", "field", "reason"), INVALID_CREATES)
def test_invalid_agent_is_rejected(
    cluster: Cluster,
    crds: None,
    namespace: str,
    mutation: Mutation,
    field: str,
    reason: str | None,
) -> None:
    body = _apply(mutation, full_manifest())
    assert_rejected(lambda: create(cluster, namespace, body), field, reason=reason)


def test_unknown_spec_field_is_rejected_with_strict_validation(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    # Unknown fields are pruned by default; with fieldValidation=Strict (kubectl's
    # default) the API server refuses them. That is a decoding error: HTTP 400.
    body = minimal_manifest()
    body["spec"]["imagePullPolicy"] = "Always"
    assert_rejected(lambda: create(cluster, namespace, body), "spec.imagePullPolicy", status=400)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"image": "ghcr.io/example/agent:2.0"}, "spec.image", id="image"),
        pytest.param({"sessionRef": {"name": "other"}}, "spec.sessionRef", id="sessionRef-change"),
        pytest.param({"sessionRef": None}, "spec.sessionRef", id="sessionRef-unset"),
        pytest.param({"task": "something else"}, "spec.task", id="task"),
        pytest.param({"runtimeClassName": "kata"}, "spec.runtimeClassName", id="runtimeClass"),
        pytest.param({"workspace": {"size": "1Gi"}}, "spec.workspace", id="workspace-added"),
        pytest.param({"network": {"egress": "Internet"}}, "spec.network", id="network"),
        pytest.param({"restartPolicy": "OnFailure"}, "spec.restartPolicy", id="restartPolicy"),
        pytest.param({"env": [{"name": "A", "value": "b"}]}, "spec.env", id="env-added"),
    ],
)
def test_immutable_field_cannot_change(
    cluster: Cluster, crds: None, namespace: str, change: dict[str, Any], field: str
) -> None:
    body = minimal_manifest()
    body["spec"]["sessionRef"] = {"name": "team"}
    create(cluster, namespace, body)
    name = field.removeprefix("spec.")
    assert_rejected(
        lambda: patch(cluster, namespace, "agent", {"spec": change}),
        field,
        reason=f"{name} is immutable",
    )


def test_sessionRef_cannot_be_set_after_creation(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    create(cluster, namespace, minimal_manifest())
    assert_rejected(
        lambda: patch(cluster, namespace, "agent", {"spec": {"sessionRef": {"name": "team"}}}),
        "spec.sessionRef",
        reason="sessionRef is immutable",
    )


def test_full_agent_is_accepted_and_mutable_fields_change(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    created = create(cluster, namespace, full_manifest())
    spec = created["spec"]
    assert spec["resources"]["limits"]["cpu"] == 1  # int-or-string, kept as sent
    agent = Agent.model_validate(created)  # what the API server stores parses
    assert agent.spec.resources is not None
    assert agent.spec.resources.limits == {"cpu": "1", "memory": "1Gi"}

    updated = patch(
        cluster,
        namespace,
        "full",
        {
            "spec": {
                "suspend": True,
                "backoffLimit": 5,
                "activeDeadlineSeconds": 7200,
                "ttlSecondsAfterFinished": None,
            }
        },
    )
    assert updated["spec"]["suspend"] is True
    assert updated["spec"]["backoffLimit"] == 5
    assert updated["spec"]["activeDeadlineSeconds"] == 7200
    assert "ttlSecondsAfterFinished" not in updated["spec"]
    assert updated["metadata"]["generation"] == 2
    resumed = patch(cluster, namespace, "full", {"spec": {"suspend": False}})
    assert resumed["spec"]["suspend"] is False


def test_harmless_probe_and_annotations_are_accepted(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    body = minimal_manifest()
    body["spec"]["livenessProbe"] = {"httpGet": {"port": 8080, "path": "/healthz", "host": ""}}
    body["spec"]["readinessProbe"] = {"tcpSocket": {"port": 8080}}
    annotations = {
        "kubectl.kubernetes.io/default-container": "agent",
        "kubernetes.io/description": "reviews pull requests",
        "sim.stockade.dev/exit-code": "0",
        "user.stockade.dev/owner": "alice",
        "owner": "alice",
    }
    body["spec"]["podMetadata"] = {"annotations": annotations}
    created = create(cluster, namespace, body)
    assert created["spec"]["podMetadata"]["annotations"] == annotations
    assert Agent.model_validate(created).spec.pod_metadata is not None


def test_hosts_egress_and_credentials_are_accepted(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    body = minimal_manifest()
    body["spec"]["network"] = HOSTS_NETWORK
    body["spec"]["credentials"] = [
        {**CREDENTIAL, "env": "OPENAI_API_KEY"},
        {
            "name": "github",
            "secretKeyRef": {"name": "gh", "key": "token"},
            "hosts": ["*.github.com"],
            "header": "X-Api-Key",
            "valuePrefix": "",
        },
    ]
    created = create(cluster, namespace, body)
    assert created["spec"]["credentials"][0]["header"] == "Authorization"  # the CRD default
    parsed = Agent.model_validate(created).spec
    assert parsed.credentials is not None and parsed.credentials[0].prefix() == "Bearer "
    member = minimal_manifest("member")
    member["spec"] = {"sessionRef": {"name": "team"}, "credentials": [CREDENTIAL]}
    # A member with credentials takes no network from its session: it sets its own.
    assert_rejected(lambda: create(cluster, namespace, member), "spec.credentials")
    member["spec"]["network"] = HOSTS_NETWORK
    assert create(cluster, namespace, member)["spec"]["credentials"][0]["name"] == "openai"
    with_env = minimal_manifest("with-env")
    with_env["spec"]["network"] = HOSTS_NETWORK
    with_env["spec"]["env"] = [{"name": "OTHER", "value": "1"}]
    with_env["spec"]["credentials"] = [{**CREDENTIAL, "env": "OPENAI_API_KEY"}]
    create(cluster, namespace, with_env)


def test_defaults_are_applied(cluster: Cluster, crds: None, namespace: str) -> None:
    created = create(cluster, namespace, minimal_manifest())
    assert created["spec"] == {
        "image": "ghcr.io/example/agent:1.0",
        "startupTimeoutSeconds": 300,
        "restartPolicy": "Never",
        "backoffLimit": 3,
        "suspend": False,
    }
    workspace = minimal_manifest("with-workspace")
    workspace["spec"]["workspace"] = {"size": 10}
    assert create(cluster, namespace, workspace)["spec"]["workspace"] == {
        "size": 10,
        "retain": False,
        "reuse": False,
    }


def test_agent_in_a_session_needs_no_image(cluster: Cluster, crds: None, namespace: str) -> None:
    body = minimal_manifest()
    body["spec"] = {"sessionRef": {"name": "team"}, "task": "review the PR"}
    assert create(cluster, namespace, body)["spec"]["sessionRef"] == {"name": "team"}


def test_status_accepts_what_the_operator_writes(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    create(cluster, namespace, minimal_manifest())
    now = "2025-01-31T12:00:00Z"
    status = {
        "phase": "Succeeded",
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Completed",
                "message": "",
                "lastTransitionTime": now,
                "observedGeneration": 1,
            }
        ],
        "podName": "agent-1",
        "nodeName": "kwok-node-0",
        "runtimeClassName": "gvisor",
        "startTime": now,
        "completionTime": now,
        "attempts": 1,
        "exitCode": 0,
        "reason": "Completed",
        "message": "exit 0",
        "result": "done",
        "usage": {"inputTokens": 10, "outputTokens": 2, "costUSD": 0.01, "cacheReads": 7},
        "history": [
            {"seq": 1, "to": "Pending", "reason": "Created", "message": "", "time": now},
            {
                "seq": 2,
                "from": "Pending",
                "to": "Succeeded",
                "reason": "Completed",
                "message": "",
                "time": now,
            },
        ],
    }
    written = cast(
        dict[str, Any],
        objects(cluster).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, AGENT_PLURAL, "agent", {"status": status}
        ),
    )
    assert written["status"] == status
    assert Agent.model_validate(written).status is not None


@pytest.mark.parametrize(
    "sample",
    sorted((REPO_ROOT / "manifests" / "samples").glob("*.yaml")),
    ids=lambda p: p.stem,
)
def test_sample_manifests_are_valid(
    cluster: Cluster, crds: None, namespace: str, sample: Path
) -> None:
    for doc in yaml.safe_load_all(sample.read_text()):
        if doc and doc.get("kind") == AGENT_KIND:
            create(cluster, namespace, doc)
