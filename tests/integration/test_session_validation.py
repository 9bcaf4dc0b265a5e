"""The AgentSession CRD's schema and CEL rules, enforced by a real API server.

As for the Agent (test_validation.py): every invalid manifest is rejected at once (no
operator running) with an error naming the offending field; creates and updates use
``fieldValidation=Strict``, kubectl's default.
"""

from __future__ import annotations

import copy
import re
from typing import Any, cast

import pytest
import yaml
from kubernetes import client

from stockade.api.agent import AGENT_KIND, AGENT_PLURAL, GROUP, VERSION, Agent
from stockade.api.session import SESSION_KIND, SESSION_PLURAL, AgentSession
from tests.integration.cluster import REPO_ROOT, Cluster, wait_for
from tests.integration.test_validation import Mutation, assert_rejected, at
from tests.unit.test_policy import CNI_ANNOTATIONS

pytestmark = pytest.mark.integration

SAMPLE = REPO_ROOT / "manifests" / "samples" / "session.yaml"


def full_session(name: str = "team") -> dict[str, Any]:
    """A valid AgentSession that sets every spec field."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": SESSION_KIND,
        "metadata": {"name": name},
        "spec": {
            "maxAgents": 4,
            "budget": {"cpu": 2, "memory": "4Gi", "ephemeral-storage": "20Gi"},
            "agentDefaults": {
                "image": "ghcr.io/example/coding-agent:1.4.2",
                "runtimeClassName": "gvisor",
                "resources": {
                    "requests": {"cpu": "500m", "memory": "512Mi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                },
                "network": {
                    "egress": "Custom",
                    "cidrs": ["10.20.0.0/16"],
                    "ports": [{"port": 443}],
                },
                "env": [
                    {"name": "LOG_LEVEL", "value": "debug"},
                    {
                        "name": "API_KEY",
                        "valueFrom": {
                            "secretKeyRef": {"name": "llm-credentials", "key": "api-key"}
                        },
                    },
                ],
                "config": {"model": "claude-sonnet", "allowedTools": "read,edit,test"},
            },
            "activeDeadlineSeconds": 7200,
            "ttlSecondsAfterFinished": 600,
            "suspend": False,
        },
    }


def minimal_session(name: str = "team") -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": SESSION_KIND, "metadata": {"name": name}}


def objects(cluster: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api)


def create(
    cluster: Cluster, namespace: str, body: dict[str, Any], plural: str = SESSION_PLURAL
) -> dict[str, Any]:
    result = objects(cluster).create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, body, field_validation="Strict"
    )
    return cast(dict[str, Any], result)


def get(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    result = objects(cluster).get_namespaced_custom_object(
        GROUP, VERSION, namespace, SESSION_PLURAL, name
    )
    return cast(dict[str, Any], result)


def patch(cluster: Cluster, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch, as `kubectl patch --type merge` sends it."""
    result = objects(cluster).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, SESSION_PLURAL, name, body, field_validation="Strict"
    )
    return cast(dict[str, Any], result)


def spec_set(**fields: Any) -> Mutation:
    """A mutation that sets spec fields."""

    def mutate(body: dict[str, Any]) -> None:
        body["spec"].update(fields)

    return mutate


INVALID_CREATES: list[Any] = [
    pytest.param(
        spec_set(maxAgents=0), "spec.maxAgents", "greater than or equal to 1", id="maxAgents-0"
    ),
    pytest.param(
        spec_set(maxAgents=1001),
        "spec.maxAgents",
        "less than or equal to 1000",
        id="maxAgents-1001",
    ),
    pytest.param(
        spec_set(maxAgents="8"), "spec.maxAgents", "must be of type integer", id="maxAgents-string"
    ),
    pytest.param(
        at("spec.budget.cpu", "-1"), "spec.budget.cpu", "should match", id="negative-budget-cpu"
    ),
    pytest.param(
        at("spec.budget.cpu", -2),
        "spec.budget.cpu",
        "greater than or equal to 0",
        id="negative-budget-cpu-number",
    ),
    pytest.param(
        at("spec.budget.cpu", "0"),
        "spec.budget",
        "must be greater than zero",
        id="zero-budget-cpu",
    ),
    pytest.param(
        at("spec.budget.memory", 0),
        "spec.budget",
        "must be greater than zero",
        id="zero-budget-memory-number",
    ),
    pytest.param(
        at("spec.budget.memory", "4 GB"),
        "spec.budget.memory",
        "should match",
        id="malformed-budget-memory",
    ),
    pytest.param(
        at("spec.budget", {"cpu": "1", "nvidia.com/gpu": "1"}),
        "spec.budget",
        "only cpu, memory and ephemeral-storage",
        id="unknown-budget-resource",
    ),
    pytest.param(
        at("spec.agentDefaults.resources", {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}),
        "spec.agentDefaults.resources.requests",
        "requests must be less than or equal to limits",
        id="defaults-requests-above-limits",
    ),
    pytest.param(
        at("spec.agentDefaults.resources.limits.gpu", "1"),
        "spec.agentDefaults.resources.limits",
        "only cpu, memory and ephemeral-storage",
        id="defaults-unknown-resource",
    ),
    pytest.param(
        at("spec.agentDefaults.network", {"egress": "Everything"}),
        "spec.agentDefaults.network.egress",
        "Unsupported value",
        id="defaults-unknown-egress-mode",
    ),
    pytest.param(
        at("spec.agentDefaults.network", {"egress": "Custom"}),
        "spec.agentDefaults.network.cidrs",
        "cidrs is required when egress is Custom",
        id="defaults-custom-egress-without-cidrs",
    ),
    *(
        pytest.param(
            at("spec.agentDefaults.network", {"egress": "Custom", "cidrs": [cidr]}),
            "spec.agentDefaults.network.cidrs[0]",
            "must not overlap the link-local and cloud metadata",
            id=f"defaults-custom-egress-{cidr}",
        )
        for cidr in ("169.254.169.254/32", "169.0.0.0/8", "fe80::/10")
    ),
    pytest.param(
        at("spec.agentDefaults.network", {"egress": "Hosts"}),
        "spec.agentDefaults.network.hosts",
        "hosts is required when egress is Hosts",
        id="defaults-hosts-egress-without-hosts",
    ),
    pytest.param(
        at("spec.agentDefaults.network", {"egress": "Hosts", "hosts": ["*.*.example.com"]}),
        "spec.agentDefaults.network.hosts[0]",
        None,
        id="defaults-hosts-egress-bad-wildcard",
    ),
    pytest.param(
        at("spec.agentDefaults.runtimeClassName", "gVisor_sandbox"),
        "spec.agentDefaults.runtimeClassName",
        "should match",
        id="defaults-bad-runtimeClassName",
    ),
    pytest.param(
        at("spec.agentDefaults.image", ""),
        "spec.agentDefaults.image",
        "at least 1 chars long",
        id="defaults-empty-image",
    ),
    pytest.param(
        at("spec.agentDefaults.env.1", {"name": "LOG_LEVEL", "value": "info"}),
        "spec.agentDefaults.env[1]",
        "Duplicate value",
        id="defaults-duplicate-env",
    ),
    pytest.param(
        at("spec.agentDefaults.config.tools/allowed", "read"),
        "spec.agentDefaults.config",
        "keys must consist of",
        id="defaults-bad-config-key",
    ),
    pytest.param(
        spec_set(activeDeadlineSeconds=0),
        "spec.activeDeadlineSeconds",
        "greater than or equal to 1",
        id="activeDeadlineSeconds-0",
    ),
    pytest.param(
        spec_set(ttlSecondsAfterFinished=-1),
        "spec.ttlSecondsAfterFinished",
        "greater than or equal to 0",
        id="ttlSecondsAfterFinished-negative",
    ),
    pytest.param(
        at("metadata.name", "Team_A"),
        "metadata.name",
        None,
        id="name-not-a-label",
    ),
    pytest.param(
        at("metadata.name", "team.v2"),
        "metadata.name",
        "DNS-1123 label",
        id="name-with-dot",
    ),
    pytest.param(
        at("metadata.name", "t" * 64),
        "metadata.name",
        "no more than 63 characters",
        id="name-64-chars",
    ),
]


@pytest.mark.parametrize(("mutation", "field", "reason"), INVALID_CREATES)
def test_invalid_session_is_rejected(
    cluster: Cluster,
    crds: None,
    namespace: str,
    mutation: Mutation,
    field: str,
    reason: str | None,
) -> None:
    body = copy.deepcopy(full_session())
    mutation(body)
    assert_rejected(lambda: create(cluster, namespace, body), field, reason=reason)


def test_unknown_field_is_rejected_with_strict_validation(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    body = full_session()
    body["spec"]["agentDefaults"]["command"] = ["/bin/agent"]  # not a session default
    assert_rejected(
        lambda: create(cluster, namespace, body), "spec.agentDefaults.command", status=400
    )


@pytest.mark.parametrize("key", CNI_ANNOTATIONS)
def test_agent_defaults_carry_no_pod_annotations(
    cluster: Cluster, crds: None, namespace: str, key: str
) -> None:
    """agentDefaults has no podMetadata: a CNI key there is refused, never merged."""
    body = full_session()
    body["spec"]["agentDefaults"]["podMetadata"] = {"annotations": {key: "x"}}
    assert_rejected(
        lambda: create(cluster, namespace, body), "spec.agentDefaults.podMetadata", status=400
    )


def test_agent_defaults_carry_no_credentials(cluster: Cluster, crds: None, namespace: str) -> None:
    """Credentials are an Agent's own (issue 21): a session cannot hand its Secrets out."""
    body = full_session()
    body["spec"]["agentDefaults"]["credentials"] = []
    assert_rejected(
        lambda: create(cluster, namespace, body), "spec.agentDefaults.credentials", status=400
    )


def test_hosts_egress_defaults_are_accepted(cluster: Cluster, crds: None, namespace: str) -> None:
    body = full_session()
    body["spec"]["agentDefaults"]["network"] = {"egress": "Hosts", "hosts": ["pypi.org:443"]}
    created = create(cluster, namespace, body)
    assert created["spec"]["agentDefaults"]["network"]["hosts"] == ["pypi.org:443"]


def test_full_session_is_accepted(cluster: Cluster, crds: None, namespace: str) -> None:
    created = create(cluster, namespace, full_session())
    assert created["spec"]["budget"] == {"cpu": 2, "memory": "4Gi", "ephemeral-storage": "20Gi"}
    defaults = created["spec"]["agentDefaults"]
    assert defaults["network"]["ports"] == [{"port": 443, "protocol": "TCP"}]
    session = AgentSession.model_validate(created)  # what the API server stores parses
    assert session.spec.budget == {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "20Gi"}
    assert session.spec.agent_defaults is not None
    assert session.spec.agent_defaults.image == "ghcr.io/example/coding-agent:1.4.2"


def test_defaults_are_applied(cluster: Cluster, crds: None, namespace: str) -> None:
    # No spec at all: the session gets the defaults.
    created = create(cluster, namespace, minimal_session())
    assert created["spec"] == {"maxAgents": 8, "suspend": False}
    body = minimal_session("with-defaults")
    body["spec"] = {"budget": {"cpu": "1"}, "agentDefaults": {"network": {}}}
    spec = create(cluster, namespace, body)["spec"]
    assert spec == {
        "maxAgents": 8,
        "suspend": False,
        "budget": {"cpu": "1"},
        "agentDefaults": {"network": {"egress": "None"}},
    }


def test_every_spec_field_is_mutable(cluster: Cluster, crds: None, namespace: str) -> None:
    create(cluster, namespace, full_session())
    updated = patch(
        cluster,
        namespace,
        "team",
        {
            "spec": {
                "maxAgents": 12,
                "suspend": True,
                "budget": {"cpu": "3", "memory": None},
                "agentDefaults": {"image": "ghcr.io/example/coding-agent:1.5.0", "env": None},
                "activeDeadlineSeconds": 10800,
                "ttlSecondsAfterFinished": None,
            }
        },
    )
    spec = updated["spec"]
    assert (spec["maxAgents"], spec["suspend"]) == (12, True)
    assert spec["budget"] == {"cpu": "3", "ephemeral-storage": "20Gi"}
    assert spec["agentDefaults"]["image"] == "ghcr.io/example/coding-agent:1.5.0"
    assert "env" not in spec["agentDefaults"]
    assert spec["activeDeadlineSeconds"] == 10800
    assert "ttlSecondsAfterFinished" not in spec
    assert updated["metadata"]["generation"] == 2
    lowered = patch(cluster, namespace, "team", {"spec": {"maxAgents": 1, "suspend": False}})
    assert (lowered["spec"]["maxAgents"], lowered["spec"]["suspend"]) == (1, False)
    # An update is validated like a create.
    assert_rejected(
        lambda: patch(cluster, namespace, "team", {"spec": {"maxAgents": 0}}),
        "spec.maxAgents",
        reason="greater than or equal to 1",
    )


def test_status_accepts_what_the_operator_writes(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    create(cluster, namespace, full_session())
    now = "2025-01-31T12:00:00Z"
    status = {
        "phase": "Active",
        "reason": "Active",
        "message": "2 agents pending or starting",
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Active",
                "message": "",
                "lastTransitionTime": now,
                "observedGeneration": 1,
            }
        ],
        "agents": {
            "pending": 1,
            "starting": 1,
            "running": 2,
            "succeeded": 3,
            "failed": 1,
            "paused": 0,
            "terminating": 0,
            "total": 8,
        },
        "admitted": 3,
        "admittedAgents": ["lint", "tests", "docs"],
        "usage": {"requests": {"cpu": "1500m", "memory": "1536Mi"}},
        "usageSummary": "cpu 1500m/2, ephemeral-storage 0/20Gi, memory 1536Mi/4Gi",
        "agentUsage": {"inputTokens": 1200, "outputTokens": 300, "costUSD": 0.42, "cacheReads": 9},
        "startTime": now,
    }
    written = cast(
        dict[str, Any],
        objects(cluster).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, SESSION_PLURAL, "team", {"status": status}
        ),
    )
    assert written["status"] == status
    assert AgentSession.model_validate(written).status is not None

    # The printer columns read these fields; `ags` is the short name. A running operator
    # may rewrite the status at any moment (it owns it), so compare the table with the
    # status stored at the same resourceVersion.
    def snapshot() -> tuple[dict[str, Any], dict[str, str]] | None:
        before = get(cluster, namespace, "team")
        header, row = cluster.kubectl(
            "-n", namespace, "get", "ags", "team", "-o", "wide"
        ).splitlines()
        after = get(cluster, namespace, "team")
        if before["metadata"]["resourceVersion"] != after["metadata"]["resourceVersion"]:
            return None
        cells = dict(zip(re.split(r"\s{2,}", header), re.split(r"\s{2,}", row), strict=True))
        return after.get("status") or {}, cells

    stored, cells = wait_for(snapshot, timeout=20, what="a stable session to print")
    agents = stored.get("agents") or {}
    assert cells == {
        "NAME": "team",
        "PHASE": stored["phase"],
        "AGENTS": str(agents.get("total", "<none>")),
        "RUNNING": str(agents.get("running", "<none>")),
        "USAGE": stored.get("usageSummary", "<none>"),
        "AGE": cells["AGE"],
        "ADMITTED": str(stored.get("admitted", "<none>")),
        "MAX": "4",
    }
    assert "team" in cluster.kubectl("-n", namespace, "get", "stockade", "-o", "name")


def test_session_sample_is_valid(cluster: Cluster, crds: None, namespace: str) -> None:
    docs = [d for d in yaml.safe_load_all(SAMPLE.read_text()) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds == [SESSION_KIND, AGENT_KIND, AGENT_KIND, AGENT_KIND]
    session = create(cluster, namespace, docs[0])
    assert session["spec"]["maxAgents"] == 2
    for doc in docs[1:]:
        agent = Agent.model_validate(create(cluster, namespace, doc, plural=AGENT_PLURAL))
        assert agent.spec.session_ref is not None
        assert agent.spec.session_ref.name == session["metadata"]["name"]
        assert agent.spec.image is None  # inherited from the session's agentDefaults
