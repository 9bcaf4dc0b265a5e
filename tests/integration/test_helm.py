"""The Helm chart (helm/stockade): lint, render, schema, install into the real API server.

Rendering needs only the helm binary; the install tests use the local cluster. The
operator's Deployment runs there too (kwok plays its pod), in a namespace that enforces
the Pod Security Standard `restricted`. RBAC is checked with `kubectl auth can-i --as`
the chart's ServiceAccount: what it may do is exactly the operator's API calls
(tests/integration/test_operator_auth.py runs the Agent suite with those rights).
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.cluster import HACK, Cluster
from tests.integration.helm import CHART, NO_CRDS, TEST_IMAGE, Helm, by_kind, set_args

pytestmark = pytest.mark.integration

NAMESPACED = {"rbac.scope": "namespaced", "watchNamespaces": ["team-a", "team-b"]}
MODES: dict[str, dict[str, Any]] = {"default": {}, "cluster": {"rbac.scope": "cluster"}}
MODES["namespaced"] = NAMESPACED

# Every permission the operator has, and the call that needs it (docs/security.md, "RBAC").
EXPECTED_RULES = [
    {
        "apiGroups": ["stockade.dev"],
        "resources": ["agents"],
        "verbs": ["get", "list", "watch", "patch", "delete"],
    },
    {"apiGroups": ["stockade.dev"], "resources": ["agents/status"], "verbs": ["patch"]},
    {
        "apiGroups": ["stockade.dev"],
        "resources": ["agentsessions"],
        "verbs": ["get", "list", "watch", "delete"],
    },
    {"apiGroups": ["stockade.dev"], "resources": ["agentsessions/status"], "verbs": ["patch"]},
    {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["get", "list", "watch", "create", "delete"],
    },
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "verbs": ["get", "list", "watch", "create", "update", "delete"],
    },
    {
        "apiGroups": [""],
        "resources": ["persistentvolumeclaims"],
        "verbs": ["get", "list", "watch", "create"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["networkpolicies"],
        "verbs": ["get", "list", "watch", "create", "update"],
    },
]


@pytest.fixture(scope="module")
def helm() -> Helm:
    return Helm()


# What the downward API gives the operator's pod in these tests.
POD_FIELDS = {"metadata.namespace": "stockade-system", "metadata.name": "stockade-7c9d-x2x4q"}


def env_of(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The operator's environment, downward-API fields resolved as for POD_FIELDS."""
    (deployment,) = [
        d
        for d in by_kind(objects, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {}
    for e in container["env"]:
        field = (e.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
        env[e["name"]] = POD_FIELDS[field] if field else e.get("value", "")
    return env


LEASE_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["stockade"],
        "verbs": ["get", "update"],
    },
]


# --- lint and render (no cluster) ----------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_lint(helm: Helm, mode: str) -> None:
    result = helm.run("lint", "--strict", str(CHART), *set_args(MODES[mode]))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("mode", MODES)
def test_template(helm: Helm, mode: str) -> None:
    objects = helm.render(MODES[mode])
    kinds = sorted({o["kind"] for o in objects})
    # ClusterRole(Binding) in every mode: at least the admission policy binding's `get`.
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",  # templates/crds.yaml: upgraded with the chart
        "Deployment",
        "Pod",  # the `helm test` hook
        "Role",  # the leader-election Lease's (and the namespaced mode's)
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]


def test_default_deployment_is_hardened_and_probed(helm: Helm) -> None:
    objects = helm.render()
    (deployment,) = by_kind(objects, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    # With leader election the new pod starts as a standby; the old one releases the Lease.
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "stockade"
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == f"{TEST_IMAGE}:0.1.0.dev0"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsUser"] == 65532
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert env_of(objects) == {
        "STOCKADE_DEFAULT_RUNTIME_CLASS": "gvisor",
        "STOCKADE_ALLOWED_RUNTIME_CLASSES": "gvisor,kata,kata-*",
        "STOCKADE_ALLOWED_POD_LABEL_KEYS": "user.stockade.dev/*",
        "STOCKADE_ALLOWED_TOLERATION_KEYS": "",
        "STOCKADE_ALLOWED_PRIORITY_CLASSES": "",
        "STOCKADE_ADMISSION_POLICY_BINDING": "stockade-references",
        "STOCKADE_REFERENCES_WITHOUT_POLICY": "refuse",
        "STOCKADE_OPERATOR_NAMESPACE": "stockade-system",
        "STOCKADE_DEFAULT_REQUESTS": "cpu=250m,ephemeral-storage=1Gi,memory=256Mi",
        "STOCKADE_DEFAULT_LIMITS": "cpu=1,ephemeral-storage=2Gi,memory=1Gi",
        "STOCKADE_NAMESPACES": "",
        "STOCKADE_BACKOFF_BASE_SECONDS": "10",
        "STOCKADE_BACKOFF_MAX_SECONDS": "360",
        "STOCKADE_HISTORY_LIMIT": "20",
        "STOCKADE_LOG_FORMAT": "text",
        "STOCKADE_LOG_LEVEL": "info",
        "STOCKADE_AGENT_UID": "65532",
        "STOCKADE_TMP_SIZE_LIMIT": "1Gi",
        "STOCKADE_HOME_SIZE_LIMIT": "1Gi",
        "STOCKADE_EGRESS_DNS_PRESET": "kube-dns",
        "STOCKADE_EGRESS_DNS_NAMESPACE_LABELS": "",
        "STOCKADE_EGRESS_DNS_POD_LABELS": "",
        "STOCKADE_EGRESS_DNS_CIDRS": "",
        "STOCKADE_EGRESS_DNS_PORTS": "",
        "STOCKADE_EGRESS_DENIED_CIDRS": "",
        "STOCKADE_METRICS_PORT": "8080",
        "STOCKADE_HEALTH_PORT": "8081",
        "STOCKADE_LEADER_ELECTION": "true",
        "STOCKADE_LEADER_ELECTION_NAMESPACE": "stockade-system",
        "STOCKADE_LEADER_ELECTION_LEASE_NAME": "stockade",
        "STOCKADE_LEADER_ELECTION_LEASE_DURATION_SECONDS": "15",
        "STOCKADE_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": "10",
        "STOCKADE_LEADER_ELECTION_RETRY_PERIOD_SECONDS": "2",
        "STOCKADE_POD_NAME": "stockade-7c9d-x2x4q",
    }
    # Agents never run in the operator's namespace: the downward API tells it which.
    (namespace_env,) = [e for e in container["env"] if e["name"] == "STOCKADE_OPERATOR_NAMESPACE"]
    assert namespace_env["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    (service,) = by_kind(objects, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_settings_become_operator_environment(helm: Helm) -> None:
    from stockade.build.network import DnsPeer, dns_peer
    from stockade.config import load_config

    values = {
        "config": {
            "defaultRuntimeClass": "kata",
            "allowedRuntimeClasses": ["kata", "gvisor"],
            "allowedPodLabelKeys": [],
            "allowedTolerationKeys": ["sandbox.example.com/*"],
            "allowedPriorityClasses": ["agents-low"],
            "defaultRequests": {"cpu": "100m", "memory": "128Mi"},
            "defaultLimits": {"cpu": 2, "memory": "2Gi"},
            "backoff": {"baseSeconds": 0.5, "maxSeconds": 60},
            "historyLimit": 50,
            "logFormat": "json",
            "metricsPort": 9090,
            "healthPort": 9091,
            "tmpSizeLimit": "256Mi",
            "homeSizeLimit": "4Gi",
            "agentUid": "platform",
        },
        "logLevel": "debug",
        "egress": {
            "dns": {
                "preset": "openshift",
                "namespaceLabels": {"kubernetes.io/metadata.name": "dns"},
                "podLabels": {"app": "dns", "tier": "infra"},
                "cidrs": ["169.254.20.10/32", "fd00::a/128"],
                "ports": [53, 1053],
            }
        },
        "image.digest": "sha256:" + "a" * 64,
    }
    objects = helm.render(values)
    env = env_of(objects)
    config = load_config(env)  # the operator accepts what the chart writes
    assert config.default_runtime_class == "kata"
    assert config.allowed_runtime_classes == ("kata", "gvisor")
    assert config.allowed_pod_label_keys == ()  # [] is none, not the default
    assert config.allowed_toleration_keys == ("sandbox.example.com/*",)
    assert config.allowed_priority_classes == ("agents-low",)
    # Helm merges maps with the defaults (null removes a key).
    assert config.default_requests == {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "1Gi"}
    assert config.default_limits == {"cpu": "2", "memory": "2Gi", "ephemeral-storage": "2Gi"}
    assert (config.backoff_base_seconds, config.backoff_max_seconds) == (0.5, 60)
    assert (config.history_limit, config.log_format) == (50, "json")
    assert (config.metrics_port, config.health_port) == (9090, 9091)
    assert config.namespaces == ()
    assert config.leader_election
    assert config.leader_election_namespace == "stockade-system"
    assert config.log_level == "debug"
    assert (config.tmp_size_limit, config.home_size_limit) == ("256Mi", "4Gi")
    assert config.agent_uid == "platform"
    assert dns_peer(config) == DnsPeer(
        namespace_labels={"kubernetes.io/metadata.name": "dns"},
        pod_labels={"app": "dns", "tier": "infra"},
        cidrs=("169.254.20.10/32", "fd00::a/128"),
        ports=(53, 1053),
    )
    (deployment,) = by_kind(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
        "@sha256:" + "a" * 64
    )
    (service,) = by_kind(objects, "Service")
    assert service["spec"]["ports"][0]["port"] == 9090


def test_cluster_rbac_is_exactly_the_operators_calls(helm: Helm) -> None:
    objects = helm.render()
    (role,) = [r for r in by_kind(objects, "ClusterRole") if r["metadata"]["name"] == "stockade"]
    assert role["rules"] == EXPECTED_RULES
    (binding,) = [
        b for b in by_kind(objects, "ClusterRoleBinding") if b["metadata"]["name"] == "stockade"
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "stockade", "namespace": "stockade-system"}
    ]
    assert env_of(objects)["STOCKADE_NAMESPACES"] == ""


API_SERVER_ADDRESS = "stockade-api-server-address"
"""The Role (in ``default``) that lets the operator read the API server's EndpointSlice."""


def test_namespaced_rbac_is_one_role_per_watched_namespace(helm: Helm) -> None:
    objects = helm.render(NAMESPACED)
    # Cluster-wide: only the admission policy binding's `get` (test below).
    assert [r["metadata"]["name"] for r in by_kind(objects, "ClusterRole")] == [
        "stockade-admission-policy"
    ]
    others = {"stockade-leader-election", API_SERVER_ADDRESS}
    roles = [r for r in by_kind(objects, "Role") if r["metadata"]["name"] not in others]
    bindings = [b for b in by_kind(objects, "RoleBinding") if b["metadata"]["name"] not in others]
    assert [r["metadata"]["namespace"] for r in roles] == ["team-a", "team-b"]
    assert [b["metadata"]["namespace"] for b in bindings] == ["team-a", "team-b"]
    assert all(r["rules"] == EXPECTED_RULES for r in roles)
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "stockade",
        }
        assert binding["subjects"][0]["namespace"] == "stockade-system"
    assert env_of(objects)["STOCKADE_NAMESPACES"] == "team-a,team-b"


ADMISSION_POLICY_RULES = [
    {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["validatingadmissionpolicybindings"],
        "resourceNames": ["stockade-references"],
        "verbs": ["get"],
    },
    {  # issue 20 class 4: the policy the binding names, to compare its fingerprint
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["validatingadmissionpolicies"],
        "resourceNames": ["stockade-references"],
        "verbs": ["get"],
    },
]


def is_refs(obj: Mapping[str, Any]) -> bool:
    """Is `obj` the references policy (or binding), not the operator's fence?"""
    return str(obj["metadata"]["name"]).endswith("-references")


@pytest.mark.parametrize("mode", MODES)
def test_admission_policy_is_on_by_default_and_readable_by_name_only(helm: Helm, mode: str) -> None:
    """Issue 9: the policy, its binding, and `get` on that one binding and policy."""
    objects = helm.render(MODES[mode])
    (policy,) = [p for p in by_kind(objects, "ValidatingAdmissionPolicy") if is_refs(p)]
    (binding,) = [b for b in by_kind(objects, "ValidatingAdmissionPolicyBinding") if is_refs(b)]
    assert policy["metadata"]["name"] == binding["metadata"]["name"] == "stockade-references"
    assert binding["spec"] == {"policyName": "stockade-references", "validationActions": ["Deny"]}
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rules[0]["resources"] == ["agents", "agentsessions"]  # never the status
    assert rules[0]["operations"] == ["CREATE", "UPDATE"]
    (role,) = [
        r for r in by_kind(objects, "ClusterRole") if r["metadata"]["name"].endswith("-policy")
    ]
    assert role["rules"] == ADMISSION_POLICY_RULES
    env = env_of(objects)
    assert env["STOCKADE_ADMISSION_POLICY_BINDING"] == "stockade-references"
    assert env["STOCKADE_REFERENCES_WITHOUT_POLICY"] == "refuse"


def test_admission_policy_can_be_disabled(helm: Helm) -> None:
    objects = helm.render(
        {"admissionPolicy.enabled": False, "config.referencesWithoutPolicy": "allow"}
    )
    assert not [p for p in by_kind(objects, "ValidatingAdmissionPolicy") if is_refs(p)]
    assert not [b for b in by_kind(objects, "ValidatingAdmissionPolicyBinding") if is_refs(b)]
    assert all(
        not r["metadata"]["name"].endswith("-policy") for r in by_kind(objects, "ClusterRole")
    )
    env = env_of(objects)
    assert env["STOCKADE_ADMISSION_POLICY_BINDING"] == ""
    assert env["STOCKADE_REFERENCES_WITHOUT_POLICY"] == "allow"


def test_install_yaml_carries_the_admission_policy() -> None:
    from tests.integration.cluster import REPO_ROOT

    docs = [d for d in yaml.safe_load_all((REPO_ROOT / "manifests/install.yaml").read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} <= kinds


@pytest.mark.parametrize("enforcement", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_no_secrets_exec_wildcards_or_cluster_resources(
    helm: Helm, mode: str, enforcement: bool
) -> None:
    values = {**MODES[mode], "rbac.ownerReferencesPermissionEnforcement": enforcement}
    objects = helm.render(values)
    rules = [r for o in objects if o["kind"] in ("ClusterRole", "Role") for r in o["rules"]]
    assert rules
    resources = {res for r in rules for res in r["resources"]}
    verbs = {v for r in rules for v in r["verbs"]}
    assert "*" not in resources | verbs | {g for r in rules for g in r["apiGroups"]}
    assert not {"secrets", "pods/exec", "pods/attach", "pods/portforward", "pods/log"} & resources
    assert not {"namespaces", "nodes", "customresourcedefinitions", "runtimeclasses"} & resources
    assert not {"escalate", "bind", "impersonate", "deletecollection"} & verbs
    finalizers = [r for r in rules if "agents/finalizers" in r["resources"]]
    assert bool(finalizers) == enforcement
    if enforcement:
        assert finalizers[0]["verbs"] == ["update"]


@pytest.mark.parametrize("mode", MODES)
def test_leader_election_rbac_is_one_lease_in_the_release_namespace(helm: Helm, mode: str) -> None:
    objects = helm.render(MODES[mode])
    (role,) = [r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("-election")]
    assert role["metadata"]["name"] == "stockade-leader-election"
    assert role["metadata"]["namespace"] == "stockade-system"
    assert role["rules"] == LEASE_RULES
    (binding,) = [
        b for b in by_kind(objects, "RoleBinding") if b["metadata"]["name"].endswith("-election")
    ]
    assert binding["metadata"]["namespace"] == "stockade-system"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "stockade-leader-election",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "stockade", "namespace": "stockade-system"}
    ]
    lease_name = env_of(objects)["STOCKADE_LEADER_ELECTION_LEASE_NAME"]
    assert role["rules"][1]["resourceNames"] == [lease_name]


def test_replicas_and_leader_election_off(helm: Helm) -> None:
    objects = helm.render({"replicas": 3})
    (deployment,) = by_kind(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    single = helm.render({"leaderElection.enabled": False})
    (deployment,) = by_kind(single, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    env = env_of(single)
    assert env["STOCKADE_LEADER_ELECTION"] == "false"
    assert "STOCKADE_LEADER_ELECTION_NAMESPACE" not in env
    # Only the API server's EndpointSlice is read by a Role then (test below).
    assert [r["metadata"]["name"] for r in by_kind(single, "Role")] == [API_SERVER_ADDRESS]
    assert [b["metadata"]["name"] for b in by_kind(single, "RoleBinding")] == [API_SERVER_ADDRESS]


@pytest.mark.parametrize("values", [{}, NAMESPACED], ids=["cluster", "namespaced"])
def test_the_api_server_endpointslice_is_the_only_read_in_default(
    helm: Helm, values: dict[str, Any]
) -> None:
    """Custom egress may not reach the API server: the operator reads its addresses from
    one EndpointSlice, by name, in `default`, whatever rbac.scope says (issue 20)."""
    objects = helm.render(values)
    (role,) = [r for r in by_kind(objects, "Role") if r["metadata"]["name"] == API_SERVER_ADDRESS]
    assert role["metadata"]["namespace"] == "default"
    assert role["rules"] == [
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "resourceNames": ["kubernetes"],
            "verbs": ["get"],
        }
    ]
    (binding,) = [
        b for b in by_kind(objects, "RoleBinding") if b["metadata"]["name"] == API_SERVER_ADDRESS
    ]
    assert binding["metadata"]["namespace"] == "default"
    assert binding["roleRef"]["name"] == API_SERVER_ADDRESS
    assert binding["subjects"][0]["name"] == "stockade"
    env = env_of(helm.render({**values, "egress.deniedCidrs": ["10.96.0.0/12", "10.244.0.0/16"]}))
    assert env["STOCKADE_EGRESS_DENIED_CIDRS"] == "10.96.0.0/12,10.244.0.0/16"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"replicas": 2, "leaderElection.enabled": False},
            "replicas > 1 needs leaderElection.enabled=true",
        ),
        (
            {"leaderElection.renewDeadlineSeconds": 20},
            "leaseDurationSeconds > renewDeadlineSeconds > 1.2 x retryPeriodSeconds",
        ),
    ],
)
def test_unsafe_leader_election_values_fail(
    helm: Helm, values: dict[str, Any], message: str
) -> None:
    result = helm.run("template", "x", str(CHART), *set_args(values), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_operator_disabled_renders_only_the_identity_and_rbac(helm: Helm) -> None:
    objects = helm.render({"operator.enabled": False})
    assert sorted(o["kind"] for o in objects) == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "Role",
        "Role",
        "RoleBinding",
        "RoleBinding",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",  # the references policy
        "ValidatingAdmissionPolicy",  # the operator's fence (operatorPolicy)
        "ValidatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicyBinding",
    ]


def test_optional_objects(helm: Helm) -> None:
    values = {
        "watchNamespaces": ["agents"],
        "metrics.serviceMonitor.enabled": True,
        "metrics.serviceMonitor.labels": {"release": "prometheus"},
        "metrics.prometheusRule.enabled": True,
        "runtimeClasses.gvisor.create": True,
        "runtimeClasses.kata.create": True,
        "agentNamespaces.resourceQuota.enabled": True,
        "agentNamespaces.limitRange.enabled": True,
    }
    objects = helm.render(values)
    (monitor,) = by_kind(objects, "ServiceMonitor")
    (service,) = by_kind(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    (rule,) = by_kind(objects, "PrometheusRule")
    alerts = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    # Every alert and when it fires: tests/integration/test_alerts.py (promtool).
    assert {"StockadeOperatorDown", "StockadeAgentStuckStarting"} <= set(alerts)
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    assert "stockade_agent_invalid_transitions_total" in alerts["StockadeInvalidTransition"]["expr"]
    assert "stockade_reconcile_errors_total" in alerts["StockadeReconcileErrors"]["expr"]
    assert 'to_phase="Failed"' in alerts["StockadeAgentsFailing"]["expr"]
    assert "{{ $labels.reason }}" in alerts["StockadeAgentsFailing"]["annotations"]["description"]
    runtime_classes = {r["metadata"]["name"]: r for r in by_kind(objects, "RuntimeClass")}
    assert runtime_classes["gvisor"]["handler"] == "runsc"
    kata = runtime_classes["kata"]
    assert kata["handler"] == "kata-qemu"
    assert kata["overhead"] == {"podFixed": {"cpu": "250m", "memory": "160Mi"}}
    assert kata["scheduling"]["nodeSelector"] == {"katacontainers.io/kata-runtime": "true"}
    (quota,) = by_kind(objects, "ResourceQuota")
    (limits,) = by_kind(objects, "LimitRange")
    assert quota["metadata"]["namespace"] == limits["metadata"]["namespace"] == "agents"
    assert quota["spec"]["hard"]["requests.cpu"] == "8"


SPREAD: dict[str, Any] = {
    "maxSkew": 1,
    "topologyKey": "topology.kubernetes.io/zone",
    "whenUnsatisfiable": "ScheduleAnyway",
    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "stockade"}},
}
AFFINITY: dict[str, Any] = {
    "podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 100,
                "podAffinityTerm": {
                    "topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "stockade"}},
                },
            }
        ]
    }
}


def test_operator_pod_values_are_top_level(helm: Helm) -> None:
    """Issue 13: the conventional top-level values shape the operator's pod."""
    values = {
        "resources": {"requests": {"cpu": "50m"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": AFFINITY,
        "topologySpreadConstraints": [SPREAD],
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"example.com/scrape": "yes"},
        "podLabels": {"team": "platform"},
        "extraEnv": [{"name": "EXTRA", "value": "1"}],
    }
    (deployment,) = by_kind(helm.render(values), "Deployment")
    template = deployment["spec"]["template"]
    pod = template["spec"]
    (container,) = pod["containers"]
    # Helm merges maps with the defaults: requests.memory stays.
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == AFFINITY
    assert pod["topologySpreadConstraints"] == [SPREAD]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert template["metadata"]["annotations"] == {"example.com/scrape": "yes"}
    assert template["metadata"]["labels"]["team"] == "platform"
    # Selector labels stay (a pod label never replaces them).
    assert deployment["spec"]["selector"]["matchLabels"].items() <= (
        template["metadata"]["labels"].items()
    )
    assert container["env"][-1] == {"name": "EXTRA", "value": "1"}
    # The defaults leave them out.
    (default,) = by_kind(helm.render(), "Deployment")
    default_pod = default["spec"]["template"]["spec"]
    for absent in ("nodeSelector", "tolerations", "affinity", "topologySpreadConstraints"):
        assert absent not in default_pod
    assert "priorityClassName" not in default_pod
    assert "annotations" not in default["spec"]["template"]["metadata"]


def test_without_an_image_the_install_fails_and_says_why(helm: Helm) -> None:
    """Issue 23: no image is published, so the chart has none and says what to do."""
    result = helm.run(
        "template", "x", str(CHART), "--set", "image.repository=", check=False
    )  # fmt: skip
    assert result.returncode != 0
    assert "image.repository is not set" in result.stderr, result.stderr
    assert "Dockerfile" in result.stderr


@pytest.mark.parametrize(
    ("values", "image"),
    [
        ({"image.registry": "mirror.example:5000"}, f"mirror.example:5000/{TEST_IMAGE}"),
        (
            {"image.registry": "a.example", "global.imageRegistry": "b.example/"},
            f"b.example/{TEST_IMAGE}",
        ),
        ({"image.tag": "v9"}, f"{TEST_IMAGE}:v9"),
        ({"image.digest": "sha256:" + "a" * 64}, f"{TEST_IMAGE}@sha256:{'a' * 64}"),
    ],
)
def test_image_registry_tag_and_digest(helm: Helm, values: dict[str, Any], image: str) -> None:
    (deployment,) = by_kind(helm.render(values), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    expected = image if ("@" in image or values.get("image.tag")) else f"{image}:0.1.0.dev0"
    assert container["image"] == expected


def test_revision_history_pdb_and_extra_volumes(helm: Helm) -> None:
    """Issue 23: the Deployment values platform teams expect."""
    volume = {"name": "ca", "configMap": {"name": "corp-ca"}}
    mount = {"name": "ca", "mountPath": "/etc/corp-ca", "readOnly": True}
    values = {
        "replicas": 2,
        "revisionHistoryLimit": 3,
        "podDisruptionBudget.enabled": True,
        "extraVolumes": [volume],
        "extraVolumeMounts": [mount],
    }
    objects = helm.render(values)
    (deployment,) = by_kind(objects, "Deployment")
    assert deployment["spec"]["revisionHistoryLimit"] == 3
    pod = deployment["spec"]["template"]["spec"]
    assert volume in pod["volumes"] and pod["volumes"][0]["name"] == "tmp"
    assert mount in pod["containers"][0]["volumeMounts"]
    (pdb,) = by_kind(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    # Off by default, and refused with one replica (it would block every drain).
    assert by_kind(helm.render(), "PodDisruptionBudget") == []
    assert by_kind(helm.render(), "Deployment")[0]["spec"]["revisionHistoryLimit"] == 10
    refused = helm.run(
        "template", "x", str(CHART), *set_args({"podDisruptionBudget.enabled": True}),
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "replicas >= 2" in refused.stderr, refused.stderr


def test_security_contexts_can_drop_the_fixed_uid(helm: Helm) -> None:
    """OpenShift's restricted-v2 assigns the uid: null leaves a key out."""
    openshift = {
        "podSecurityContext.runAsUser": None,
        "podSecurityContext.runAsGroup": None,
        "podSecurityContext.fsGroup": None,
        "securityContext.runAsUser": None,
        "securityContext.runAsGroup": None,
    }
    (deployment,) = by_kind(helm.render(openshift), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    changed = {"podSecurityContext.supplementalGroups": [1000], "securityContext.runAsUser": 1001}
    (deployment,) = by_kind(helm.render(changed), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["supplementalGroups"] == [1000]
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["containers"][0]["securityContext"]["runAsUser"] == 1001


@pytest.mark.parametrize(
    ("level", "python_level"), [("debug", 10), ("info", 20), ("warning", 30), ("error", 40)]
)
def test_log_level_reaches_the_operator(helm: Helm, level: str, python_level: int) -> None:
    import logging

    from stockade.__main__ import configure_logging
    from stockade.config import load_config

    config = load_config(env_of(helm.render({"logLevel": level})))
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        configure_logging(config)
        assert logging.getLogger("stockade.reconcile").getEffectiveLevel() == python_level
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


@pytest.mark.parametrize("preset", ["kube-dns", "openshift", "nodelocal"])
def test_dns_preset_reaches_the_operator(helm: Helm, preset: str) -> None:
    from stockade.build.network import DNS_PRESETS, dns_peer
    from stockade.config import load_config

    env = env_of(helm.render({"egress.dns.preset": preset}))
    assert env["STOCKADE_EGRESS_DNS_PRESET"] == preset
    assert dns_peer(load_config(env)) == DNS_PRESETS[preset]


def test_chart_readme_documents_every_top_level_value(helm: Helm) -> None:
    readme = helm.run("show", "readme", str(CHART)).stdout
    assert readme.startswith("# Stockade Helm chart")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert [key for key in values if f"`{key}" not in readme] == []


# --- kubeVersion: the oldest API server that accepts the CRDs' CEL rules --------------

CEL_BASE = (1, 25)
"""x-kubernetes-validations (KEP-2876) are beta and on by default from 1.25 (GA 1.29).

Standard CEL (has, all, exists, exists_one, map, filter, size, matches, startsWith,
endsWith, contains, string, int, ...) and Kubernetes' list, regex and URL libraries
and the strings extension (v0) are there from the start.
"""
_LIBRARIES: dict[tuple[int, int], str] = {
    # Standard CEL, Kubernetes' list, regex and URL libraries, the strings extension v0.
    CEL_BASE: "has all exists exists_one map filter size matches startsWith endsWith contains"
    " string int uint double bool bytes duration timestamp type dyn isSorted sum min max"
    " indexOf lastIndexOf find findAll url isURL getScheme getHost getHostname getPort"
    " getEscapedPath getQuery charAt lowerAscii upperAscii replace split substring trim",
    # Quantity library, optional types (IntroducedVersion 1.28).
    (1, 29): "isQuantity quantity sign isGreaterThan isLessThan compareTo add sub asInteger"
    " asApproximateFloat isInteger optMap optFlatMap orValue hasValue value",
    # Strings extension v2 and sets (1.29).
    (1, 30): "join quote",
    # IP and CIDR libraries (1.30).
    (1, 31): "isIP ip isCIDR cidr family isUnspecified isLoopback isLinkLocalMulticast"
    " isLinkLocalUnicast isGlobalUnicast containsIP containsCIDR prefixLength masked"
    " isCanonical",
    # Format library (1.31).
    (1, 32): "validate",
    # Two-variable comprehensions (1.32).
    (1, 33): "transformList transformMap transformMapEntry",
    # Semver library (1.33).
    (1, 34): "isSemver semver major minor patch",
}
CEL_SINCE: dict[str, tuple[int, int]] = {}
for _version, _names in _LIBRARIES.items():
    CEL_SINCE.update(dict.fromkeys(_names.split(), _version))
"""The first Kubernetes minor whose API server accepts each CEL function in a new CRD rule.

Source: the Kubernetes CEL reference (https://kubernetes.io/docs/reference/using-api/cel/)
and k8s.io/apiserver pkg/cel/environment/base.go, where each library has an
IntroducedVersion. A new expression (a CRD create, or a changed rule) is compiled against
the environment of the API server's compatibility version, one minor behind its own
(so that a rollback still understands it): a library introduced in 1.N is usable from
1.N+1. Hence isCIDR/cidr() (the CIDR library, introduced in 1.30) need 1.31.
"""

_CEL_STRING = re.compile(r"""[rR]?'(?:\\.|[^'\\])*'|[rR]?"(?:\\.|[^"\\])*\"""")
_CEL_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def cel_rules(documents: Iterable[Any]) -> Iterator[str]:
    """Every CEL expression (rule, messageExpression) of x-kubernetes-validations."""
    for doc in documents:
        if isinstance(doc, dict):
            for key, value in doc.items():
                if key == "x-kubernetes-validations":
                    for validation in value:
                        yield validation["rule"]
                        if "messageExpression" in validation:
                            yield validation["messageExpression"]
                else:
                    yield from cel_rules([value])
        elif isinstance(doc, list):
            yield from cel_rules(doc)


def minimum_kubernetes(rules: Iterable[str]) -> tuple[tuple[int, int], dict[str, tuple[int, int]]]:
    """The oldest minor that accepts `rules`, and the version each function they call needs.

    Raises:
        AssertionError: a rule calls a function :data:`CEL_SINCE` does not know.

    """
    used: dict[str, tuple[int, int]] = {}
    for rule in rules:
        for name in _CEL_CALL.findall(_CEL_STRING.sub("''", rule)):
            assert name in CEL_SINCE, f"CEL function {name}() is not in CEL_SINCE ({rule})"
            used[name] = CEL_SINCE[name]
    return max([CEL_BASE, *used.values()]), used


def test_minimum_kubernetes_of_some_rules() -> None:
    assert minimum_kubernetes(["self.size() <= 3"])[0] == (1, 25)
    assert minimum_kubernetes(["quantity(self).isGreaterThan(quantity('0'))"])[0] == (1, 29)
    assert minimum_kubernetes(["isCIDR(self) && cidr(self) == cidr(self).masked()"])[0] == (
        1,
        31,
    )
    assert minimum_kubernetes(["isSemver(self)", "self.size() > 0"])[0] == (1, 34)
    # Names inside string literals are not calls.
    assert minimum_kubernetes([r"self.matches(r'^semver(x)$') && self != 'cidr(1)'"])[0] == (
        1,
        25,
    )
    with pytest.raises(AssertionError, match="frobnicate"):
        minimum_kubernetes(["frobnicate(self)"])


def test_kube_version_is_true_to_the_crds_cel_rules() -> None:
    from tests.integration.cluster import REPO_ROOT

    documents = [
        doc
        for path in sorted((REPO_ROOT / "crds").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    rules = list(cel_rules(documents))
    assert len(rules) > 50  # the scan found the CRDs' rules
    (major, minor), used = minimum_kubernetes(rules)
    assert {"isCIDR", "cidr", "masked", "quantity"} <= set(used)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == f">={major}.{minor}.0-0", used


# --- helm test ------------------------------------------------------------------------


def hook_pod(objects: list[dict[str, Any]]) -> Any:
    """The `helm test` pod among the rendered objects."""
    (pod,) = by_kind(objects, "Pod")
    return pod


def run_check(pod: Any, url: str) -> subprocess.CompletedProcess[str]:
    """Run the test pod's check here, with this Python, against `url`."""
    (container,) = pod["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["python", "-c"]
    return subprocess.run(
        [sys.executable, "-c", command[2]],
        env={"STOCKADE_METRICS_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_helm_test_pod_asks_the_metrics_service(helm: Helm) -> None:
    objects = helm.render()
    pod = hook_pod(objects)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == f"{TEST_IMAGE}:0.1.0.dev0"
    (service,) = by_kind(objects, "Service")
    url = {e["name"]: e["value"] for e in container["env"]}["STOCKADE_METRICS_URL"]
    name, port = service["metadata"]["name"], service["spec"]["ports"][0]["port"]
    assert url == f"http://{name}.stockade-system.svc:{port}/metrics"
    assert restricted_violations(pod) == []
    # No Service, no test; and it can be turned off.
    assert not by_kind(helm.render({"metrics.service.enabled": False}), "Pod")
    assert not by_kind(helm.render({"tests.enabled": False}), "Pod")


def restricted_violations(pod: Any) -> list[str]:
    """The checks of tests/unit/test_build_pod.py's Pod Security `restricted` checker."""
    from tests.unit.test_build_pod import restricted_violations as check

    return check(pod)


def test_helm_test_check_passes_on_stockades_metrics_and_fails_elsewhere(helm: Helm) -> None:
    from prometheus_client import start_http_server

    import stockade.runtime.metrics  # noqa: F401  (registers Stockade's metrics)

    pod = hook_pod(helm.render())
    server, thread = start_http_server(0, addr="127.0.0.1")
    try:
        result = run_check(pod, f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert result.returncode == 0, result.stderr
    assert "stockade_* samples" in result.stdout

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        result = run_check(pod, f"http://127.0.0.1:{other.server_port}/metrics")
    finally:
        other.shutdown()
    assert result.returncode == 1
    assert "without stockade_* metrics" in result.stderr


BAD_VALUES = [
    ("config: {logFormat: xml}", "at '/config/logFormat': value must be one of 'text', 'json'"),
    ("config: {historyLimit: lots}", "at '/config/historyLimit': got string, want integer"),
    ("watchNamespaces: team-a", "at '/watchNamespaces': got string, want array"),
    ("rbac: {scope: namespaced}", "at '/watchNamespaces': minItems: got 0, want 1"),
    ("rbac: {scope: everywhere}", "at '/rbac/scope': value must be one of"),
    ("config: {defaultRequests: {gpu: 1}}", "additional properties 'gpu' not allowed"),
    ("config: {defaultLimits: {memory: 1 GB}}", "'1 GB' does not match pattern"),
    (
        "config: {allowedRuntimeClasses: []}",
        "at '/config/allowedRuntimeClasses': minItems: got 0, want 1",
    ),
    ("config: {allowedTolerationKeys: ['a*b']}", "'a*b' does not match pattern"),
    ("config: {metricsPort: 0}", "at '/config/metricsPort': minimum: got 0, want 1"),
    ("operator: {enabled: 'yes'}", "at '/operator/enabled': got string, want boolean"),
    ("replicas: two", "at '/replicas': got string, want integer"),
    ("leaderElection: {leaseDurationSeconds: 1.5}", "at '/leaderElection/leaseDurationSeconds'"),
    ("leaderElection: {ttl: 5}", "additional properties 'ttl' not allowed"),
    # The operator pod's values moved to the top level: the old keys fail loudly.
    ("operator: {resources: {}}", "additional properties 'resources' not allowed"),
    ("resources: {limit: {cpu: 1}}", "additional properties 'limit' not allowed"),
    ("resources: {limits: {cpu: lots}}", "'lots' does not match pattern"),
    ("logLevel: verbose", "at '/logLevel': value must be one of 'debug', 'info'"),
    ("podSecurityContext: {runAsUsr: 1}", "additional properties 'runAsUsr' not allowed"),
    ("securityContext: {runAsUser: root}", "at '/securityContext/runAsUser'"),
    ("affinity: {nodeAfinity: {}}", "additional properties 'nodeAfinity' not allowed"),
    ("topologySpreadConstraints: {}", "at '/topologySpreadConstraints': got object, want array"),
    ("priorityClassName: 5", "at '/priorityClassName': got number, want string"),
    ("egress: {dns: {preset: coredns}}", "at '/egress/dns/preset': value must be one of"),
    ("egress: {dns: {cidrs: [169.254.20.10]}}", "'169.254.20.10' does not match pattern"),
    ("egress: {dns: {ports: [0]}}", "at '/egress/dns/ports/0': minimum: got 0, want 1"),
    ("egress: {dns: {podLabels: {k8s-app: [a]}}}", "at '/egress/dns/podLabels/k8s-app'"),
    ("egress: {dns: {server: 1.1.1.1}}", "additional properties 'server' not allowed"),
    ("config: {homeSizeLimit: 1 GB}", "'1 GB' does not match pattern"),
    ("tests: {enable: false}", "additional properties 'enable' not allowed"),
]


@pytest.mark.parametrize(("text", "message"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_wrong_values_fail_with_the_schemas_message(
    helm: Helm, tmp_path: Path, text: str, message: str
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(text + "\n")
    for command in (["template", "x", str(CHART)], ["lint", str(CHART)]):
        result = helm.run(*command, "-f", str(values), check=False)
        assert result.returncode != 0
        output = result.stdout + result.stderr
        assert "values don't meet the specifications of the schema" in output, output
        assert message in output, output


def test_install_yaml_and_chart_crds_are_up_to_date() -> None:
    result = subprocess.run(
        ["bash", str(HACK / "manifests.sh"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_install_yaml_is_the_default_chart(helm: Helm) -> None:
    from tests.integration.cluster import REPO_ROOT

    docs = [d for d in yaml.safe_load_all((REPO_ROOT / "manifests/install.yaml").read_text()) if d]
    assert docs[0]["kind"] == "Namespace" and docs[0]["metadata"]["name"] == "stockade-system"
    crds = sorted(d["metadata"]["name"] for d in by_kind(docs, "CustomResourceDefinition"))
    expected = sorted(
        yaml.safe_load(p.read_text().split("---", 1)[1])["metadata"]["name"]
        for p in (REPO_ROOT / "crds").glob("*.yaml")
    )
    assert crds == expected
    rest = [d for d in docs[1:] if d["kind"] != "CustomResourceDefinition"]
    rendered = helm.render(extra=["--skip-tests"])  # no one-shot test pod in it
    assert rest == [d for d in rendered if d["kind"] != "CustomResourceDefinition"]


# --- in the cluster ------------------------------------------------------------------


def fresh_namespace(cluster: Cluster, prefix: str, labels: dict[str, str] | None = None) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    cluster.create_namespace(name, labels)
    return name


@pytest.fixture
def namespaces(cluster: Cluster) -> Iterator[list[str]]:
    """Namespaces a test creates (by appending), deleted afterwards."""
    created: list[str] = []
    yield created
    cluster.delete_namespaces(created)


@pytest.fixture
def release(cluster: Cluster, crds: None) -> Iterator[tuple[Helm, list[tuple[str, str]]]]:
    """A helm bound to the cluster and the releases a test installs (uninstalled after)."""
    helm = Helm(cluster.kubeconfig)
    installed: list[tuple[str, str]] = []
    yield helm, installed
    for name, namespace in installed:
        helm.uninstall(name, namespace)


def can_i(cluster: Cluster, user: str, *args: str) -> bool:
    out = cluster.kubectl("auth", "can-i", "--as", user, *args, check=False)
    return out.strip() == "yes"


def test_install_cluster_mode(
    cluster: Cluster, release: tuple[Helm, list[tuple[str, str]]], namespaces: list[str]
) -> None:
    helm, installed = release
    restricted = {"pod-security.kubernetes.io/enforce": "restricted"}
    namespace = fresh_namespace(cluster, "t-helm-cluster", restricted)
    namespaces.append(namespace)
    other = fresh_namespace(cluster, "t-helm-other")
    namespaces.append(other)
    name = f"stockade-{namespace[-5:]}"
    installed.append((name, namespace))
    # The CRDs exist already (the `crds` fixture, from crds/; the chart's copies are the
    # same files): helm skips them. --wait: the operator's pod is admitted under
    # `restricted`, scheduled and (kwok) Running and Ready.
    result = helm.install(name, namespace, NO_CRDS, "--wait", "--timeout", "120s")
    assert "kubectl get agents -A" in result.stdout  # NOTES.txt
    deployment = client.AppsV1Api(cluster.api).read_namespaced_deployment(name, namespace)
    assert deployment.status.ready_replicas == 1
    user = f"system:serviceaccount:{namespace}:{name}"
    for ns in (namespace, other):
        assert can_i(cluster, user, "watch", "agents.stockade.dev", "-n", ns)
        assert can_i(
            cluster, user, "patch", "agents.stockade.dev", "--subresource=status", "-n", ns
        )
        assert can_i(cluster, user, "create", "pods", "-n", ns)
        assert can_i(cluster, user, "create", "events", "-n", ns)
    assert can_i(cluster, user, "list", "agents.stockade.dev", "--all-namespaces")
    assert can_i(cluster, user, "list", "pods", "--all-namespaces")
    # Leader election: its own Lease in the release namespace, nothing else.
    lease = f"leases.coordination.k8s.io/{name}"
    for verb in ("get", "update"):
        assert can_i(cluster, user, verb, lease, "-n", namespace)
    assert can_i(cluster, user, "create", "leases.coordination.k8s.io", "-n", namespace)
    denied = [
        ("update", "leases.coordination.k8s.io/kube-scheduler", "-n", namespace),
        ("delete", lease, "-n", namespace),
        ("list", "leases.coordination.k8s.io", "-n", namespace),
        ("create", "leases.coordination.k8s.io", "-n", other),
        ("update", "leases.coordination.k8s.io", "--all-namespaces"),
        ("list", "secrets", "--all-namespaces"),
        ("get", "secrets", "-n", namespace),
        ("create", "pods", "--subresource=exec", "-n", other),
        ("create", "pods", "--subresource=attach", "-n", other),
        ("get", "pods", "--subresource=log", "-n", other),
        ("update", "agents.stockade.dev", "-n", other),
        ("create", "agents.stockade.dev", "-n", other),
        # `delete configmaps` is granted (an input ConfigMap that cannot be restored is
        # recreated); the operator policy limits it to labelled ones (test_operator_fence).
        ("deletecollection", "configmaps", "-n", other),
        ("update", "persistentvolumeclaims", "-n", other),
        ("delete", "networkpolicies.networking.k8s.io", "-n", other),
        ("delete", "persistentvolumeclaims", "-n", other),
        ("list", "namespaces"),
        ("list", "customresourcedefinitions"),
        ("create", "clusterrolebindings"),
    ]
    for args in denied:
        assert not can_i(cluster, user, *args), args


def test_install_namespaced_mode(
    cluster: Cluster, release: tuple[Helm, list[tuple[str, str]]], namespaces: list[str]
) -> None:
    helm, installed = release
    home = fresh_namespace(cluster, "t-helm-home")
    watched = [fresh_namespace(cluster, "t-helm-watched") for _ in range(2)]
    other = fresh_namespace(cluster, "t-helm-other")
    namespaces.extend([home, *watched, other])
    name = f"stockade-{home[-5:]}"
    installed.append((name, home))
    values = {**NO_CRDS, "rbac.scope": "namespaced", "watchNamespaces": watched}
    helm.install(name, home, values, "--wait", "--timeout", "120s")
    user = f"system:serviceaccount:{home}:{name}"
    for ns in watched:
        assert can_i(cluster, user, "list", "agents.stockade.dev", "-n", ns)
        assert can_i(cluster, user, "delete", "pods", "-n", ns)
        assert can_i(cluster, user, "create", "networkpolicies.networking.k8s.io", "-n", ns)
        assert not can_i(cluster, user, "list", "secrets", "-n", ns)
        assert not can_i(cluster, user, "create", "pods", "--subresource=exec", "-n", ns)
    for ns in (home, other, "default"):
        assert not can_i(cluster, user, "list", "agents.stockade.dev", "-n", ns)
        assert not can_i(cluster, user, "create", "pods", "-n", ns)
    assert not can_i(cluster, user, "list", "agents.stockade.dev", "--all-namespaces")
    assert not can_i(cluster, user, "list", "pods", "--all-namespaces")
    assert not can_i(cluster, user, "list", "namespaces")
    # Its Lease lives in the release namespace, whatever it watches.
    assert can_i(cluster, user, "update", f"leases.coordination.k8s.io/{name}", "-n", home)
    assert not can_i(cluster, user, "update", "leases.coordination.k8s.io", "-n", watched[0])
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    assert not [r for r in rbac.list_cluster_role().items if r.metadata.name == name]
    (deployment,) = client.AppsV1Api(cluster.api).list_namespaced_deployment(home).items
    (container,) = deployment.spec.template.spec.containers
    env = {e.name: e.value for e in container.env}
    assert env["STOCKADE_NAMESPACES"] == ",".join(watched)


def test_optional_objects_are_accepted_server_side(
    cluster: Cluster, helm: Helm, namespaces: list[str]
) -> None:
    """Everything the cluster knows the kinds of, dry-run by the real API server.

    (ServiceMonitor and PrometheusRule need the prometheus-operator's CRDs, which the
    local cluster does not have: test_optional_objects checks their shape.)
    """
    namespace = fresh_namespace(cluster, "t-helm-dry")
    namespaces.append(namespace)
    suffix = namespace[-5:]
    values = {
        "watchNamespaces": [namespace],
        "rbac.scope": "namespaced",
        "rbac.ownerReferencesPermissionEnforcement": True,
        "runtimeClasses.gvisor.create": True,
        "runtimeClasses.gvisor.name": f"gvisor-{suffix}",
        "runtimeClasses.gvisor.tolerations": [{"key": "sandbox", "operator": "Exists"}],
        "runtimeClasses.kata.create": True,
        "runtimeClasses.kata.name": f"kata-{suffix}",
        "agentNamespaces.resourceQuota.enabled": True,
        "agentNamespaces.limitRange.enabled": True,
        "podAnnotations": {"example.com/a": "b"},
        "extraEnv": [{"name": "EXTRA", "value": "1"}],
        "topologySpreadConstraints": [SPREAD],
        "affinity": AFFINITY,
        "podSecurityContext.runAsUser": None,
        "securityContext.runAsUser": None,
        "imagePullSecrets": [{"name": "registry"}],
        "dashboard.enabled": True,
    }
    rendered = helm.template(values, namespace=namespace, extra=["--include-crds"]).stdout
    out = cluster.kubectl(
        "apply", "--dry-run=server", "--server-side", "--force-conflicts", "-f", "-",
        stdin=rendered,
    )  # fmt: skip
    for kind in ("runtimeclass", "resourcequota", "limitrange", "role", "rolebinding"):
        assert f"\n{kind}" in f"\n{out}", out
    assert "customresourcedefinition.apiextensions.k8s.io/agents.stockade.dev" in out
    assert "configmap/stockade-dashboard" in out, out


def test_wrong_values_fail_helm_install(
    cluster: Cluster, release: tuple[Helm, list[tuple[str, str]]], tmp_path: Path
) -> None:
    helm, _ = release
    values = tmp_path / "values.yaml"
    values.write_text("config:\n  backoff: {baseSeconds: soon}\n")
    name = f"t-helm-bad-{uuid.uuid4().hex[:5]}"
    result = helm.run(
        "install", name, str(CHART), "-n", name, "--create-namespace", "-f", str(values),
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "at '/config/backoff/baseSeconds': got string, want number" in result.stderr
    assert name not in helm.run("list", "-A", "-q").stdout
    # Nothing was created: not even the namespace.
    with pytest.raises(ApiException) as err:
        cluster.core.read_namespace(name)
    assert err.value.status == 404


def test_kind_e2e_samples_are_valid_agents(cluster: Cluster, crds: None) -> None:
    from tests.integration.cluster import REPO_ROOT

    out = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        "default",
        "-f",
        str(REPO_ROOT / "hack/kind/samples.yaml"),
    )
    assert out.count("agent.stockade.dev/") == 3, out


APPLY_DRY_RUN = ("apply", "--dry-run=server", "-f", "-")


def test_helm_test_pod_is_admitted_under_restricted(cluster: Cluster, helm: Helm) -> None:
    restricted = {"pod-security.kubernetes.io/enforce": "restricted"}
    namespace = fresh_namespace(cluster, "t-helm-test", restricted)
    try:
        for values, admitted in (({}, True), ({"securityContext.runAsNonRoot": False}, False)):
            pod = hook_pod(helm.render(values, namespace=namespace))
            result = subprocess.run(
                [cluster.kubectl_path, "--kubeconfig", str(cluster.kubeconfig), *APPLY_DRY_RUN],
                input=yaml.safe_dump(pod),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if admitted:
                assert result.returncode == 0, result.stderr
                assert "created (server dry run)" in result.stdout
            else:
                assert result.returncode != 0
                assert 'violates PodSecurity "restricted' in result.stderr, result.stderr
    finally:
        cluster.delete_namespaces([namespace])


@pytest.mark.parametrize("preset", ["kube-dns", "openshift", "nodelocal"])
def test_dns_presets_make_policies_the_api_server_accepts(
    cluster: Cluster, helm: Helm, namespaces: list[str], preset: str
) -> None:
    """From chart value to NetworkPolicy: each preset's policy passes server-side dry-run."""
    from stockade.api.agent import AgentSpec
    from stockade.build.network import build_shared_network_policy, egress_label
    from stockade.config import load_config

    namespace = fresh_namespace(cluster, "t-helm-dns")
    namespaces.append(namespace)
    config = load_config(env_of(helm.render({"egress.dns.preset": preset})))
    spec = AgentSpec.model_validate({"image": "busybox", "network": {"egress": "Internet"}})
    policy = build_shared_network_policy(namespace, egress_label(spec.network), config)
    out = cluster.kubectl(*APPLY_DRY_RUN, stdin=yaml.safe_dump(policy))
    assert (
        "networkpolicy.networking.k8s.io/stockade-egress-internet created (server dry run)" in out
    )


def test_the_dashboard_configmap_is_optional_and_labelled_for_the_sidecar(helm: Helm) -> None:
    assert not [
        o
        for o in by_kind(helm.render(), "ConfigMap")
        if o["metadata"]["name"].endswith("dashboard")
    ]
    values = {"dashboard.enabled": True, "dashboard.annotations": {"grafana_folder": "Stockade"}}
    (board,) = by_kind(helm.render(values), "ConfigMap")
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert board["metadata"]["annotations"] == {"grafana_folder": "Stockade"}
    shipped = (CHART.parent.parent / "manifests/monitoring/stockade-dashboard.json").read_text()
    assert json.loads(board["data"]["stockade.json"]) == json.loads(shipped)


def _widget_crd(group: str, fields: list[str]) -> str:
    """A small CRD ``widgets.<group>`` whose spec has string `fields` (for the upgrade test)."""
    properties = {f: {"type": "string"} for f in fields}
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object", "properties": properties}},
                        }
                    },
                }
            ],
        },
    }
    return yaml.safe_dump(crd)


def test_helm_upgrade_updates_the_crds_and_uninstall_keeps_them(
    cluster: Cluster, tmp_path: Path, namespaces: list[str]
) -> None:
    """The CRDs are templates (templates/crds.yaml over files/crds/): `helm upgrade`
    applies a changed CRD (a chart's crds/ directory is never upgraded), and with
    crds.keep (the default) `helm uninstall` leaves it. The chart is a copy whose
    files/crds/ holds a test CRD, so the shared Stockade CRDs are not touched."""
    chart = tmp_path / "stockade"
    shutil.copytree(CHART, chart)
    for old in (chart / "files" / "crds").glob("*.yaml"):
        old.unlink()
    group = f"t{uuid.uuid4().hex[:6]}.stockade.dev"
    crd_file = chart / "files" / "crds" / "widgets.yaml"
    namespace = fresh_namespace(cluster, "t-helm-crds")
    namespaces.append(namespace)
    helm = Helm(cluster.kubeconfig)
    values = {"operator.enabled": False, "admissionPolicy.enabled": False}
    extensions = client.ApiextensionsV1Api(cluster.api)
    name = f"widgets.{group}"

    def install() -> None:
        helm.run("upgrade", "--install", "crds", str(chart), "--namespace", namespace,
                 *set_args(values))  # fmt: skip

    def fields() -> set[str]:
        crd = extensions.read_custom_resource_definition(name)
        spec = crd.spec.versions[0].schema.open_apiv3_schema.properties["spec"]
        return set(spec.properties or {})

    try:
        crd_file.write_text(_widget_crd(group, ["size"]))
        install()
        assert fields() == {"size"}
        crd_file.write_text(_widget_crd(group, ["size", "colour"]))
        install()
        assert fields() == {"size", "colour"}, "helm upgrade left the CRD as it was"
        kept = extensions.read_custom_resource_definition(name)
        assert kept.metadata.annotations["helm.sh/resource-policy"] == "keep"
        helm.uninstall("crds", namespace)
        assert fields() == {"size", "colour"}, "helm uninstall deleted a kept CRD"
    finally:
        helm.uninstall("crds", namespace)
        try:
            extensions.delete_custom_resource_definition(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


# --- the egress gateway (issue 21) -----------------------------------------------------

GATEWAY = {"gateway.enabled": True}


def _gateway_objects(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (o["kind"], o["metadata"]["name"]): o
        for o in objects
        if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "gateway"
    }


def _env_of(deployment: Mapping[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_the_gateway_is_off_by_default(helm: Helm) -> None:
    objects = helm.render()
    assert _gateway_objects(objects) == {}
    (deployment,) = by_kind(objects, "Deployment")
    env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not {"STOCKADE_GATEWAY_ADDRESS", "STOCKADE_GATEWAY_CA_CONFIGMAP"} & env


def test_the_gateway_deployment_is_hardened_and_separate_from_the_operator(helm: Helm) -> None:
    objects = helm.render(GATEWAY)
    mine = _gateway_objects(objects)
    deployment = mine[("Deployment", "stockade-gateway")]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "stockade-gateway"
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "stockade.gateway"]
    operator = next(
        d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "stockade"
    )
    assert container["image"] == operator["spec"]["template"]["spec"]["containers"][0]["image"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["STOCKADE_GATEWAY_CA_SECRET"] == "stockade-gateway-ca"
    assert env["STOCKADE_GATEWAY_CA_CONFIGMAP"] == "stockade-gateway-ca"
    assert container["ports"] == [
        {"name": "proxy", "containerPort": 3128, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},  # stockade_gateway_*
    ]
    # Neither Deployment (nor Service) selects the other's pods.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "gateway"
    selector = operator["spec"]["selector"]["matchLabels"]
    assert not all(labels.get(k) == v for k, v in selector.items())
    service = mine[("Service", "stockade-gateway")]
    assert service["spec"]["ports"] == [
        {"name": "proxy", "port": 3128, "targetPort": "proxy", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_operator_learns_the_gateway_address_and_ca(helm: Helm) -> None:
    objects = helm.render(GATEWAY, namespace="ops")
    operator = next(
        d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "stockade"
    )
    env = _env_of(operator)
    assert env["STOCKADE_GATEWAY_ADDRESS"] == "stockade-gateway.ops.svc:3128"
    assert env["STOCKADE_GATEWAY_CA_CONFIGMAP"] == "stockade-gateway-ca"
    named = helm.render({**GATEWAY, "gateway.caConfigMapName": "gw-ca"})
    operator = next(d for d in by_kind(named, "Deployment") if d["metadata"]["name"] == "stockade")
    assert _env_of(operator)["STOCKADE_GATEWAY_CA_CONFIGMAP"] == "gw-ca"


def test_the_gateway_rbac_is_least_privilege(helm: Helm) -> None:
    mine = _gateway_objects(helm.render(GATEWAY))
    cluster = mine[("ClusterRole", "stockade-gateway")]["rules"]
    assert cluster == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["stockade.dev"], "resources": ["agents"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    ]
    role = mine[("Role", "stockade-gateway")]
    assert role["metadata"]["namespace"] == "stockade-system"
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= {"create", "get", "update", "patch"}
        if set(rule["verbs"]) - {"create"}:
            assert rule["resourceNames"] == ["stockade-gateway-ca"]
    binding = mine[("ClusterRoleBinding", "stockade-gateway")]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "stockade-gateway", "namespace": "stockade-system"}
    ]
    # The operator reads the published CA, by name, in its namespace only.
    reader = mine[("Role", "stockade-gateway-ca-reader")]
    assert reader["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["stockade-gateway-ca"],
            "verbs": ["get"],
        }
    ]
    assert mine[("RoleBinding", "stockade-gateway-ca-reader")]["subjects"][0]["name"] == "stockade"
    all_rules = [
        r for o in mine.values() if o["kind"] in ("Role", "ClusterRole") for r in o["rules"]
    ]
    assert "*" not in {v for r in all_rules for v in r["verbs"]}


def test_the_gateway_network_policy(helm: Helm) -> None:
    mine = _gateway_objects(helm.render(GATEWAY))
    policy = mine[("NetworkPolicy", "stockade-gateway")]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {},
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/managed-by": "stockade",
                            "stockade.dev/egress": "hosts",
                        }
                    },
                }
            ],
            "ports": [{"protocol": "TCP", "port": 3128}],
        }
    ]
    dns, api, public = policy["egress"]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert {"protocol": "UDP", "port": 53} in dns["ports"]
    assert [p["port"] for p in api["ports"]] == [443, 6443]
    assert "ports" not in public
    assert "169.254.0.0/16" in public["to"][0]["ipBlock"]["except"]
    assert "10.0.0.0/8" in public["to"][0]["ipBlock"]["except"]
    pinned = _gateway_objects(
        helm.render(
            {
                **GATEWAY,
                "gateway.networkPolicy.apiServerCidrs": ["192.0.2.10/32"],
                "egress.dns.preset": "nodelocal",
            }
        )
    )[("NetworkPolicy", "stockade-gateway")]["spec"]
    dns, api, _ = pinned["egress"]
    assert {"ipBlock": {"cidr": "169.254.20.10/32"}} in dns["to"]
    assert api["to"] == [{"ipBlock": {"cidr": "192.0.2.10/32"}}]
    off = _gateway_objects(helm.render({**GATEWAY, "gateway.networkPolicy.enabled": False}))
    assert ("NetworkPolicy", "stockade-gateway") not in off


@pytest.mark.parametrize(
    "values",
    [
        {"gateway.enabled": "yes"},
        {"gateway.replicas": 0},
        {"gateway.caConfigMapName": "Not_A_Name"},
        {"gateway.networkPolicy.apiServerCidrs": ["not-a-cidr"]},
        {"gateway.unknown": 1},
    ],
)
def test_wrong_gateway_values_fail(helm: Helm, values: dict[str, Any]) -> None:
    result = helm.template(values, check=False)
    assert result.returncode != 0


def test_the_gateway_objects_are_accepted_server_side(
    cluster: Cluster, helm: Helm, namespaces: list[str]
) -> None:
    """The gateway's objects, and the shared hosts policy of an Agent namespace, dry-run."""
    from stockade.api.agent import AgentSpec
    from stockade.build.network import build_shared_network_policy, egress_label
    from stockade.config import load_config

    namespace = fresh_namespace(cluster, "t-helm-gw")
    namespaces.append(namespace)
    values = {
        **GATEWAY,
        "gateway.networkPolicy.apiServerCidrs": ["192.0.2.10/32"],
        "gateway.podLabels": {"team": "platform"},
    }
    rendered = helm.template(values, namespace=namespace).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    gateway = [d for d in docs if d["metadata"]["name"].startswith("stockade-gateway")]
    out = cluster.kubectl(*APPLY_DRY_RUN, stdin=yaml.safe_dump_all(gateway))
    for kind in ("deployment.apps", "service", "networkpolicy.networking.k8s.io"):
        assert f"{kind}/stockade-gateway created (server dry run)" in out, out
    config = load_config({**env_of(helm.render(values)), "STOCKADE_OPERATOR_NAMESPACE": namespace})
    spec = AgentSpec.model_validate(
        {"image": "busybox", "network": {"egress": "Hosts", "hosts": ["pypi.org"]}}
    )
    policy = build_shared_network_policy(namespace, egress_label(spec.network), config)
    out = cluster.kubectl(*APPLY_DRY_RUN, stdin=yaml.safe_dump(policy))
    assert "networkpolicy.networking.k8s.io/stockade-egress-hosts created (server dry run)" in out


@pytest.mark.parametrize(
    "example",
    ["manifests/gitops/argocd/application.yaml", "manifests/gitops/flux/helmrelease.yaml"],
)
def test_gitops_examples_install_this_chart(helm: Helm, example: str) -> None:
    """Issue 23: the Argo CD Application and the Flux HelmRelease of the operator itself
    point at this chart, and their values render (schema included)."""
    from tests.integration.cluster import REPO_ROOT

    docs = [d for d in yaml.safe_load_all((REPO_ROOT / example).read_text()) if d]
    (release,) = [d for d in docs if d["kind"] in ("Application", "HelmRelease")]
    if release["kind"] == "Application":
        path, values = release["spec"]["source"]["path"], release["spec"]["source"]["helm"]
        values = values["valuesObject"]
    else:
        path, values = release["spec"]["chart"]["spec"]["chart"], release["spec"]["values"]
    assert (REPO_ROOT / path).resolve() == CHART.resolve()
    values_file = REPO_ROOT / ".cache" / f"gitops-values-{release['kind']}.yaml"
    values_file.parent.mkdir(parents=True, exist_ok=True)
    values_file.write_text(yaml.safe_dump(values))
    out = helm.run("template", "stockade", str(CHART), "-f", str(values_file)).stdout
    (deployment,) = by_kind([d for d in yaml.safe_load_all(out) if d], "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    image = values["image"]
    assert container["image"] == f"{image['repository']}:{image['tag']}"
