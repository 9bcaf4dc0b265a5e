"""The operator's policy (issue 9): what an Agent may ask of its pod, and where it may run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from stockade.config import OperatorConfig, load_config
from stockade.core.lifecycle import Reason
from stockade.core.policy import (
    Problem,
    describe,
    namespace_problem,
    reference_problems,
    references,
    spec_problems,
)
from stockade.reconcile import Reconciler, prepare
from stockade.runtime import metrics
from tests.unit.conftest import IMAGE, FakeKube, spec

DEFAULT = OperatorConfig()
ANNOTATION_REFUSED = "annotation keys must be unprefixed and without dots"
"""The start of the CRD's (and the model's) message for a refused annotation key."""
SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"


def agent(namespace: str = "team-a", **fields: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "a", "namespace": namespace},
        "spec": {"image": IMAGE, **fields},
    }


# --- namespaces --------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease"])
def test_system_namespaces_are_refused(namespace: str) -> None:
    problem = namespace_problem(namespace, DEFAULT)
    assert problem is not None
    assert problem.reason == Reason.NAMESPACE_NOT_ALLOWED
    assert problem.field == "metadata.namespace"
    assert repr(namespace) in problem.message
    assert "system namespace" in problem.message


def test_the_operators_namespace_is_refused() -> None:
    config = OperatorConfig(operator_namespace="stockade-system")
    problem = namespace_problem("stockade-system", config)
    assert problem is not None and problem.reason == Reason.NAMESPACE_NOT_ALLOWED
    assert "operator's own namespace" in problem.message
    assert namespace_problem("stockade-system", DEFAULT) is None


@pytest.mark.parametrize("namespace", ["default", "team-a", "kube-systemx", None, ""])
def test_other_namespaces_are_fine(namespace: str | None) -> None:
    assert namespace_problem(namespace, DEFAULT) is None


def test_watched_namespaces_do_not_override_the_refusal() -> None:
    config = load_config({"STOCKADE_NAMESPACES": "kube-system,team-a"})
    assert namespace_problem("kube-system", config) is not None


def test_the_namespace_problem_comes_alone() -> None:
    body = {
        "metadata": {"name": "a", "namespace": "kube-system"},
        "spec": {"image": "ghcr.io/x/agent:1", "priorityClassName": "high"},
    }
    prepared = prepare(body, DEFAULT)
    assert prepared.reason == Reason.NAMESPACE_NOT_ALLOWED
    assert "priorityClassName" not in str(prepared.error)
    body["metadata"]["namespace"] = "team-a"
    assert prepare(body, DEFAULT).error is not None  # the spec's own problem, now
    assert prepare({**body, "spec": {"image": "ghcr.io/x/agent:1"}}, DEFAULT).error is None


# --- labels ------------------------------------------------------------------------


def test_default_allows_only_user_prefixed_labels() -> None:
    ok = spec(podMetadata={"labels": {"user.stockade.dev/team": "platform"}})
    assert spec_problems(ok, DEFAULT) is None


@pytest.mark.parametrize(
    "key", ["app", "team", "app.kubernetes.io/name", "example.com/role", "user.stockade.devx/a"]
)
def test_default_refuses_labels_that_could_select_the_pod(key: str) -> None:
    problems = spec_problems(spec(podMetadata={"labels": {key: "x"}}), DEFAULT)
    assert problems is not None
    (problem,) = problems
    assert problem.field == "spec.podMetadata.labels"
    assert repr(key) in problem.message
    assert "config.allowedPodLabelKeys (STOCKADE_ALLOWED_POD_LABEL_KEYS)" in problem.message
    assert "user.stockade.dev/*" in problem.message
    assert problem.reason == Reason.INVALID_SPEC


def test_label_allow_list_is_configurable() -> None:
    config = OperatorConfig(allowed_pod_label_keys=("team", "example.com/*"))
    labels = {"team": "a", "example.com/role": "b"}
    assert spec_problems(spec(podMetadata={"labels": labels}), config) is None
    anything = OperatorConfig(allowed_pod_label_keys=("*",))
    assert spec_problems(spec(podMetadata={"labels": {"app": "web"}}), anything) is None
    none = OperatorConfig(allowed_pod_label_keys=())
    problems = spec_problems(spec(podMetadata={"labels": {"user.stockade.dev/a": "b"}}), none)
    assert problems is not None and "allows none" in problems[0].message


def test_annotations_alone_are_not_the_policys_business() -> None:
    annotations = {"sim.stockade.dev/exit-code": "0", "user.stockade.dev/owner": "alice"}
    assert spec_problems(spec(podMetadata={"annotations": annotations}), DEFAULT) is None


# --- tolerations and priority -------------------------------------------------------


def test_default_refuses_every_toleration() -> None:
    tolerations = [
        {"key": "sandbox", "operator": "Equal", "value": "gvisor", "effect": "NoSchedule"},
        {"operator": "Exists"},
    ]
    problems = spec_problems(spec(tolerations=tolerations), DEFAULT)
    assert problems is not None
    assert [p.field for p in problems] == ["spec.tolerations[0].key", "spec.tolerations[1].key"]
    assert "'sandbox'" in problems[0].message
    assert "every taint" in problems[1].message
    for problem in problems:
        assert "config.allowedTolerationKeys (STOCKADE_ALLOWED_TOLERATION_KEYS)" in problem.message
        assert "allows none" in problem.message


def test_allowed_toleration_keys() -> None:
    config = OperatorConfig(allowed_toleration_keys=("sandbox.example.com/*", "gpu"))
    ok = [
        {"key": "sandbox.example.com/gvisor", "operator": "Exists"},
        {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]
    assert spec_problems(spec(tolerations=ok), config) is None
    # Tolerating every taint (empty key) needs "*".
    everything = spec(tolerations=[{"operator": "Exists"}])
    assert spec_problems(everything, config) is not None
    assert spec_problems(everything, OperatorConfig(allowed_toleration_keys=("*",))) is None


def test_default_refuses_every_priority_class() -> None:
    problems = spec_problems(spec(priorityClassName="system-cluster-critical"), DEFAULT)
    assert problems is not None
    (problem,) = problems
    assert problem.field == "spec.priorityClassName"
    assert "'system-cluster-critical'" in problem.message
    assert "config.allowedPriorityClasses (STOCKADE_ALLOWED_PRIORITY_CLASSES)" in problem.message


def test_allowed_priority_classes() -> None:
    config = OperatorConfig(allowed_priority_classes=("agents-*",))
    assert spec_problems(spec(priorityClassName="agents-low"), config) is None
    assert spec_problems(spec(priorityClassName="system-node-critical"), config) is not None


def test_every_problem_is_reported() -> None:
    problems = spec_problems(
        spec(
            podMetadata={"labels": {"app": "web", "role": "db"}},
            tolerations=[{"key": "a", "operator": "Exists"}],
            priorityClassName="high",
        ),
        DEFAULT,
    )
    assert problems is not None and len(problems) == 4
    text = describe(problems)
    assert text.count("; ") == 3
    assert str(problems[0]).startswith("spec.podMetadata.labels: label key 'app'")


def test_problem_str() -> None:
    assert str(Problem("spec.x", "no")) == "spec.x: no"


# --- the API's own refusals (mirrors of the CRD rules) ------------------------------


@pytest.mark.parametrize("handler", ["httpGet", "tcpSocket"])
def test_probe_host_is_refused(handler: str) -> None:
    probe = {handler: {"port": 8080, "host": "169.254.169.254"}}
    for field in ("livenessProbe", "readinessProbe"):
        with pytest.raises(ValidationError, match="host is not allowed"):
            spec(**{field: probe})
    assert spec(readinessProbe={handler: {"port": 8080, "host": ""}}).readiness_probe


@pytest.mark.parametrize(
    "key",
    [
        "container.apparmor.security.beta.kubernetes.io/agent",
        "seccomp.security.alpha.kubernetes.io/pod",
        "io.katacontainers.config.hypervisor.kernel_params",
        "dev.gvisor.flag.network",
        "kubernetes.io/egress-bandwidth",
        "k8s.io/anything",
        "cluster-autoscaler.kubernetes.io/safe-to-evict",
        "io.kubernetes.cri-o.Devices",
        "cpu-quota.crio.io",
        "seccomp-profile.kubernetes.cri-o.io/agent",
    ],
)
def test_isolation_annotations_are_refused(key: str) -> None:
    with pytest.raises(ValidationError, match=ANNOTATION_REFUSED):
        spec(podMetadata={"annotations": {key: "x"}})


CNI_ANNOTATIONS = (
    "k8s.v1.cni.cncf.io/networks",
    "v1.multus-cni.io/default-network",
    "cni.projectcalico.org/ipAddrs",
    "cni.projectcalico.org/ipv4pools",
    "cni.projectcalico.org/ipv6pools",
    "cni.projectcalico.org/floatingIPs",
    "ovn.kubernetes.io/logical_switch",
    "io.cilium/proxy-visibility",
    "policy.cilium.io/proxy-visibility",
    "kube-ovn.io/logical_switch",
    "sidecar.istio.io/inject",
    "linkerd.io/inject",
    "vault.hashicorp.com/agent-inject",
    "example.com/owner",
    "notkubernetes.io/x",
)
"""Keys some cluster component may read: the CNI plugins' network attachment and address
annotations, sidecar injectors, and any other domain (issue 20, class 3)."""


@pytest.mark.parametrize("key", CNI_ANNOTATIONS)
def test_annotations_outside_the_allow_list_are_refused(key: str) -> None:
    with pytest.raises(ValidationError, match=ANNOTATION_REFUSED):
        spec(podMetadata={"annotations": {key: "x"}})


@pytest.mark.parametrize(
    "key",
    [
        "kubectl.kubernetes.io/default-container",
        "kubernetes.io/description",
        "sim.stockade.dev/exit-code",
        "user.stockade.dev/owner",
        "owner",
        "description",
    ],
)
def test_harmless_annotations_are_accepted(key: str) -> None:
    assert spec(podMetadata={"annotations": {key: "x"}}).pod_metadata


# --- prepare() applies the policy ---------------------------------------------------


def test_prepare_refuses_a_system_namespace() -> None:
    prepared = prepare(agent("kube-system"), DEFAULT)
    assert prepared.reason == Reason.NAMESPACE_NOT_ALLOWED
    assert prepared.error is not None and prepared.error.startswith("metadata.namespace: ")
    assert prepared.runtime_class is None


def test_prepare_refuses_the_operators_namespace() -> None:
    config = load_config({"POD_NAMESPACE": "stockade-system"})
    assert prepare(agent("stockade-system"), config).reason == Reason.NAMESPACE_NOT_ALLOWED
    assert prepare(agent("team-a"), config).error is None


def test_prepare_reports_policy_problems_as_invalid_spec() -> None:
    prepared = prepare(agent(priorityClassName="high"), DEFAULT)
    assert prepared.reason == Reason.INVALID_SPEC
    assert prepared.error is not None and prepared.error.startswith("spec.priorityClassName: ")
    assert prepared.resources is None  # requests nothing from a session's budget


@pytest.mark.parametrize(
    ("fields", "session_defaults"),
    [({"runtimeClassName": "runc"}, {}), ({}, {"runtimeClassName": "runc"})],
)
def test_prepare_refuses_running_without_a_sandbox(
    fields: dict[str, Any], session_defaults: dict[str, Any]
) -> None:
    session = {"spec": {"agentDefaults": session_defaults}}
    prepared = prepare(agent(**fields), DEFAULT, session)
    assert prepared.reason == Reason.INVALID_SPEC
    assert prepared.error is not None
    assert prepared.error.startswith("spec.runtimeClassName: RuntimeClass 'runc'")
    assert "STOCKADE_ALLOWED_RUNTIME_CLASSES" in prepared.error
    assert "gvisor, kata, kata-*" in prepared.error
    anything = OperatorConfig(allowed_runtime_classes=("*",))
    assert prepare(agent(**fields), anything, session).runtime_class == "runc"


def test_prepare_accepts_a_plain_agent() -> None:
    prepared = prepare(agent(), DEFAULT)
    assert (prepared.error, prepared.runtime_class) == (None, "gvisor")


def _sample_agents() -> list[Any]:
    """Each sample Agent with the sample AgentSession it names (None for the others)."""
    docs = []
    for path in sorted(SAMPLES.glob("*.yaml")):
        found = [d for d in yaml.safe_load_all(path.read_text()) if d]
        sessions = {d["metadata"]["name"]: d for d in found if d.get("kind") == "AgentSession"}
        for doc in found:
            if doc.get("kind") == "Agent":
                session = sessions.get((doc["spec"].get("sessionRef") or {}).get("name"))
                docs.append(pytest.param(doc, session, id=f"{path.stem}/{doc['metadata']['name']}"))
    return docs


@pytest.mark.parametrize(("body", "session"), _sample_agents())
def test_samples_pass_the_default_policy(
    body: dict[str, Any], session: dict[str, Any] | None
) -> None:
    """The samples need no setting beyond the chart's defaults, which include the
    admission policy (the model samples reference a Secret)."""
    body = {**body, "metadata": {**body["metadata"], "namespace": "demo"}}
    prepared = prepare(body, DEFAULT, session, policy_present=True)
    assert prepared.error is None, prepared.error


# --- references without the admission policy (issue 9, defence in depth) -----------

ENV_REFS: list[dict[str, Any]] = [
    {"name": "A", "value": "plain"},
    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "api-key", "key": "k"}}},
    {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}},
    {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
]
ENV_FROM_REFS: list[dict[str, Any]] = [
    {"secretRef": {"name": "bundle"}},
    {"configMapRef": {"name": "more"}},
]


def test_references_lists_every_referencing_field_in_order() -> None:
    found = references(spec(serviceAccountName="robot", env=ENV_REFS, envFrom=ENV_FROM_REFS))
    assert found == [
        ("spec.serviceAccountName", "ServiceAccount 'robot'"),
        ("spec.env[1].valueFrom.secretKeyRef", "Secret 'api-key'"),
        ("spec.env[2].valueFrom.configMapKeyRef", "ConfigMap 'settings'"),
        ("spec.envFrom[0].secretRef", "Secret 'bundle'"),
        ("spec.envFrom[1].configMapRef", "ConfigMap 'more'"),
    ]


def test_plain_env_and_field_refs_reference_nothing() -> None:
    assert references(spec(env=[ENV_REFS[0], ENV_REFS[3]])) == []
    assert reference_problems(spec(env=ENV_REFS[:1]), DEFAULT, policy_present=False) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"serviceAccountName": "robot"},
        {"env": [ENV_REFS[1]]},
        {"env": [ENV_REFS[2]]},
        {"envFrom": [ENV_FROM_REFS[0]]},
        {"envFrom": [ENV_FROM_REFS[1]]},
    ],
)
def test_references_are_refused_without_the_policy(fields: dict[str, Any]) -> None:
    problems = reference_problems(spec(**fields), DEFAULT, policy_present=False)
    assert problems is not None and len(problems) == 1
    (problem,) = problems
    assert problem.reason == Reason.REFERENCE_NOT_ALLOWED
    assert "admissionPolicy.enabled=true" in problem.message
    assert "STOCKADE_REFERENCES_WITHOUT_POLICY" in problem.message
    assert references(spec(**fields))[0][0] in problem.field


def test_references_pass_with_the_policy_or_when_allowed() -> None:
    refs = spec(serviceAccountName="robot", env=ENV_REFS, envFrom=ENV_FROM_REFS)
    assert reference_problems(refs, DEFAULT, policy_present=True) is None
    allow = OperatorConfig(references_without_policy="allow")
    assert reference_problems(refs, allow, policy_present=False) is None


def test_the_refusal_names_the_configured_binding() -> None:
    config = OperatorConfig(admission_policy_binding="acme-stockade-references")
    problems = reference_problems(spec(serviceAccountName="robot"), config, policy_present=False)
    assert problems is not None
    assert "acme-stockade-references" in problems[0].message


def test_prepare_refuses_references_before_the_first_pod() -> None:
    body = agent(env=[ENV_REFS[1]])
    prepared = prepare(body, DEFAULT)
    assert prepared.reason == Reason.REFERENCE_NOT_ALLOWED
    assert prepared.error is not None and "spec.env[0].valueFrom.secretKeyRef" in prepared.error
    assert prepare(body, DEFAULT, policy_present=True).error is None
    started = {**body, "status": {"attempts": 1}}
    assert prepare(started, DEFAULT).error is None  # accepted when its pod was created


def test_prepare_refuses_a_sessions_default_references() -> None:
    session = {"spec": {"agentDefaults": {"env": [ENV_REFS[1]]}}}
    body = agent(sessionRef={"name": "s"})
    prepared = prepare(body, DEFAULT, session)
    assert prepared.reason == Reason.REFERENCE_NOT_ALLOWED
    assert prepare(body, DEFAULT, session, policy_present=True).error is None


def test_reference_settings_are_read_from_the_environment() -> None:
    config = load_config(
        {
            "STOCKADE_ADMISSION_POLICY_BINDING": "stockade-references",
            "STOCKADE_REFERENCES_WITHOUT_POLICY": "allow",
        }
    )
    assert config.admission_policy_binding == "stockade-references"
    assert config.references_without_policy == "allow"
    assert OperatorConfig().references_without_policy == "refuse"
    with pytest.raises(ValueError, match="STOCKADE_REFERENCES_WITHOUT_POLICY"):
        load_config({"STOCKADE_REFERENCES_WITHOUT_POLICY": "maybe"})


# --- the operator's knowledge of the policy ------------------------------------------


@pytest.mark.parametrize(
    ("answer", "present"),
    [
        ({"spec": {"policyName": "p", "validationActions": ["Deny"]}}, True),
        ({"spec": {"policyName": "p", "validationActions": ["Warn", "Audit"]}}, False),
        (None, False),
        (RuntimeError("403 Forbidden"), False),
    ],
)
def test_the_policy_is_present_only_if_its_binding_denies(
    answer: dict[str, Any] | Exception | None, present: bool
) -> None:
    from tests.unit.test_policy_integrity import chart_policy

    kube = FakeKube(bindings={"stockade-references": answer}, policies={"p": chart_policy()})
    config = OperatorConfig(admission_policy_binding="stockade-references")
    reconciler = Reconciler(kube, config)
    assert reconciler.policy_present is False  # fail closed until checked
    assert asyncio.run(reconciler.check_admission_policy()) is present
    assert reconciler.policy_present is present
    assert kube.calls[0] == ("read", "ValidatingAdmissionPolicyBinding", "stockade-references")
    assert metrics.ADMISSION_POLICY_PRESENT._value.get() == (1.0 if present else 0.0)


def test_without_a_binding_name_nothing_is_asked() -> None:
    kube = FakeKube(bindings={"stockade-references": {"spec": {"validationActions": ["Deny"]}}})
    reconciler = Reconciler(kube, DEFAULT)
    assert asyncio.run(reconciler.check_admission_policy()) is False
    assert kube.calls == []
