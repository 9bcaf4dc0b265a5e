"""Ownership by UID and drift of an Agent's children (stockade.core.children), pure."""

from __future__ import annotations

from typing import Any

from stockade.api.agent import AgentSpec
from stockade.build.configmap import build_input_configmap
from stockade.build.names import AgentRef
from stockade.build.network import build_agent_network_policy, build_shared_network_policy
from stockade.build.workspace import build_workspace_pvc
from stockade.core.children import ChildView, Ownership, Write, digest, ownership, plan

REF = AgentRef("a", "ns", "uid-new")
SPEC = AgentSpec.model_validate(
    {
        "image": "img",
        "task": "do it",
        "network": {"egress": "Custom", "cidrs": ["8.8.8.0/24"], "ports": [{"port": 443}]},
        "workspace": {"size": "1Gi"},
    }
)


def children(ref: AgentRef = REF, spec: AgentSpec = SPEC) -> list[dict[str, Any]]:
    built = [
        build_agent_network_policy(ref, spec),
        build_input_configmap(ref, spec),
        build_workspace_pvc(ref, spec),
    ]
    return [c for c in built if c is not None]


def as_read_back(manifest: dict[str, Any], uid: str = "x") -> dict[str, Any]:
    """`manifest` as the API server returns it: uid, version, defaulted fields, more labels."""
    out: dict[str, Any] = {**manifest, "metadata": dict(manifest["metadata"])}
    out["metadata"].update(uid=uid, resourceVersion="7")
    out["metadata"]["labels"] = {**manifest["metadata"]["labels"], "team": "added-by-someone"}
    if manifest["kind"] == "NetworkPolicy":
        spec = out["spec"] = {**manifest["spec"]}
        spec["egress"] = [
            {**rule, "ports": [{"protocol": "TCP", **p} for p in rule.get("ports") or ()]}
            if rule.get("ports")
            else rule
            for rule in manifest["spec"]["egress"]
        ]
    if manifest["kind"] == "PersistentVolumeClaim":
        out["spec"] = {**manifest["spec"], "volumeName": "pv-1", "volumeMode": "Filesystem"}
    return out


def observed(objs: list[dict[str, Any]]) -> dict[tuple[str, str], ChildView]:
    return {(o["kind"], o["metadata"]["name"]): ChildView.of(o) for o in objs}


def test_nothing_to_do_when_everything_is_ours_and_as_built() -> None:
    desired = children()
    seen = observed([as_read_back(c) for c in desired])
    assert plan(desired, seen, "a", "uid-new") == []


def test_a_deny_all_policy_reads_back_without_its_empty_lists() -> None:
    """The API server omits empty lists: built ``egress: []``, read back without it."""
    policy = build_shared_network_policy("ns", "none")
    assert policy["spec"].get("egress") == []
    stored = as_read_back(policy)
    stored["spec"] = {k: v for k, v in policy["spec"].items() if v != []}
    assert ChildView.of(stored).digest == digest(policy)


def test_a_shared_policy_is_ours_only_with_its_labels_and_no_controller() -> None:
    policy = build_shared_network_policy("ns", "dns")
    assert ChildView.of(as_read_back(policy)).shared == "dns"
    assert ownership(as_read_back(policy), "", "", False, shared="dns") is Ownership.OURS
    assert ownership(as_read_back(policy), "", "", False, shared="none") is Ownership.FOREIGN
    unlabelled = {**policy, "metadata": {k: v for k, v in policy["metadata"].items()}}
    unlabelled["metadata"]["labels"] = {"team": "a"}
    assert ChildView.of(unlabelled).shared is None
    assert ownership(unlabelled, "", "", False, shared="dns") is Ownership.FOREIGN
    held = as_read_back(policy)
    held["metadata"]["ownerReferences"] = [REF.owner_reference()]
    assert ownership(held, "", "", False, shared="dns") is Ownership.FOREIGN
    # An Agent's own policy (agent label) is never taken for a shared one.
    own = build_agent_network_policy(REF, SPEC)
    assert ChildView.of(own).shared is None


def test_missing_children_are_created() -> None:
    desired = children()
    steps = plan(desired, {}, "a", "uid-new")
    assert [s.write for s in steps] == [Write.CREATE] * 3


def test_edited_policy_and_input_are_replaced_but_not_the_claim() -> None:
    desired = children()
    edited = [as_read_back(c) for c in desired]
    edited[0]["spec"] = {"podSelector": {}, "policyTypes": ["Ingress"]}  # egress opened
    edited[1]["data"] = {"task": "something else"}
    edited[2]["spec"] = {**edited[2]["spec"], "resources": {"requests": {"storage": "9Gi"}}}
    steps = plan(desired, observed(edited), "a", "uid-new")
    assert [(s.write, s.desired["kind"]) for s in steps] == [
        (Write.REPLACE, "NetworkPolicy"),
        (Write.REPLACE, "ConfigMap"),
    ]


def test_a_removed_stockade_label_is_drift() -> None:
    desired = children()
    edited = as_read_back(desired[1])
    del edited["metadata"]["labels"]["stockade.dev/agent"]
    assert digest(edited) != digest(desired[1])


def test_a_predecessors_children_are_waited_for_never_adopted() -> None:
    old = AgentRef("a", "ns", "uid-old")
    desired = children()
    seen = observed([as_read_back(c) for c in children(old)])
    steps = plan(desired, seen, "a", "uid-new")
    assert [s.write for s in steps] == [Write.WAIT] * 3


def test_an_object_nobody_owns_is_a_conflict() -> None:
    desired = children()
    forged = as_read_back(desired[0])
    del forged["metadata"]["ownerReferences"]
    steps = plan(desired, observed([forged]), "a", "uid-new")
    assert steps[0].write is Write.CONFLICT
    assert ownership(forged, "a", "uid-new", retained_ok=False) is Ownership.FOREIGN


def test_a_retained_workspace_is_mounted_again_by_the_same_name_only() -> None:
    spec = SPEC.model_copy(update={"workspace": SPEC.workspace.model_copy(update={"retain": True})})
    (claim,) = [c for c in children(spec=spec) if c["kind"] == "PersistentVolumeClaim"]
    left = as_read_back(claim)
    assert "ownerReferences" not in left["metadata"]
    # Its creator mounts it again (a retry, a restart); a new Agent of the same name only
    # with spec.workspace.reuse (issue 20 class 9: else any author reads another's).
    assert ownership(left, "a", REF.uid, retained_ok=True) is Ownership.OURS
    assert ownership(left, "a", "uid-later", retained_ok=True) is Ownership.FOREIGN
    assert ownership(left, "a", "uid-later", retained_ok=True, reuse=True) is Ownership.OURS
    assert ownership(left, "b", "uid-later", retained_ok=True, reuse=True) is Ownership.FOREIGN
    assert ownership(left, "a", "uid-new", retained_ok=False) is Ownership.FOREIGN


def test_a_retained_workspace_of_an_earlier_agent_is_a_conflict_without_reuse() -> None:
    spec = SPEC.model_copy(update={"workspace": SPEC.workspace.model_copy(update={"retain": True})})
    (claim,) = [c for c in children(spec=spec) if c["kind"] == "PersistentVolumeClaim"]
    seen = observed([as_read_back(claim)])
    later = AgentRef(REF.name, REF.namespace, "uid-later")
    (wanted,) = [c for c in children(later, spec) if c["kind"] == "PersistentVolumeClaim"]
    assert [s.write for s in plan([wanted], seen, "a", "uid-later")] == [Write.CONFLICT]
    assert plan([wanted], seen, "a", "uid-later", reuse=True) == []
    assert plan([claim], seen, "a", REF.uid) == []


def test_a_child_being_deleted_is_waited_for() -> None:
    desired = children()
    going = as_read_back(desired[2], uid="c")
    going["metadata"]["deletionTimestamp"] = "2026-11-21T12:00:00Z"
    steps = plan(desired[2:], observed([going]), "a", "uid-new")
    assert [s.write for s in steps] == [Write.WAIT]
