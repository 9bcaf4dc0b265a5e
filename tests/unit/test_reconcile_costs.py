"""What keeps a reconcile cheap at scale (issue 11), as pure bookkeeping.

- the indexes hold trimmed bodies (Agents, sessions) and summaries (pods);
- the watch's echo of the operator's own status write is not reconciled again;
- a session member is prepared once per version, and its admission verdict is the one
  the session's last reconcile found (no admission over all members per member).

The end-to-end counterparts (writes and CPU per Agent) are measured by ``bench/``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import stockade.controllers.session as session_module
import stockade.core.spec as spec_module
from stockade.config import OperatorConfig
from stockade.core.observe import PodView
from stockade.handlers.agents import agent_pods
from stockade.reconcile import Reconciler, indexed_body
from stockade.runtime.cache import LAST_APPLIED
from tests.unit.conftest import FakeKube


def reconciler() -> Reconciler:
    r = Reconciler(FakeKube(), OperatorConfig())
    r.cache.bind({}, {}, {}, {})
    return r


def body(rv: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stockade.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {
            "name": "a",
            "namespace": "ns",
            "uid": "u1",
            "resourceVersion": rv,
            "creationTimestamp": "2026-11-21T12:00:00Z",
            **meta,
        },
        "spec": {"image": "i", "task": "t" * 1000},
    }


def test_indexed_bodies_drop_managed_fields_and_the_last_applied_copy() -> None:
    raw = body(
        "1",
        managedFields=[{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        annotations={LAST_APPLIED: '{"spec": "..."}', "team": "x"},
    )
    kept = indexed_body(raw)
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"team": "x"}
    assert kept["spec"] == raw["spec"]
    assert kept["metadata"]["resourceVersion"] == "1"
    assert LAST_APPLIED in raw["metadata"]["annotations"]  # the input is not changed


def test_the_pod_index_keeps_a_summary_and_skips_pods_without_an_attempt() -> None:
    index: Any = agent_pods  # the plain coroutine under kopf's decorator
    pod: dict[str, Any] = {
        "metadata": {
            "name": "a-1",
            "namespace": "ns",
            "uid": "p1",
            "labels": {"stockade.dev/agent": "a", "stockade.dev/attempt": "1"},
            "managedFields": [{"manager": "kubelet"}],
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "agent", "image": "i"}]},
        "status": {"phase": "Running"},
    }
    labels = pod["metadata"]["labels"]
    entry = asyncio.run(index(namespace="ns", labels=labels, body=pod))
    assert entry is not None
    (view,) = entry.values()
    assert isinstance(view, PodView)
    assert (view.name, view.attempt, view.node_name, view.uid) == ("a-1", 1, "n1", "p1")
    forged = {**pod, "metadata": {**pod["metadata"], "labels": {"stockade.dev/agent": "a"}}}
    assert (
        asyncio.run(index(namespace="ns", labels=forged["metadata"]["labels"], body=forged)) is None
    )


def test_the_echo_of_our_own_status_write_is_not_reconciled() -> None:
    r, key = reconciler(), ("ns", "a")
    assert not r.own_echo(key, body("2"))  # nothing written yet
    r.agents.ctx.echoes.wrote("agent", key, "1", "2")
    assert r.own_echo(key, body("2"))
    assert not r.own_echo(key, body("3"))  # someone else's change


def test_an_echo_a_reconcile_waited_for_is_reconciled() -> None:
    r, key = reconciler(), ("ns", "a")
    r.agents.ctx.echoes.wrote("agent", key, "1", "2")
    # A pod event made a reconcile read the body it had written over (the watch lags):
    # it stood back, counting on the echo.
    assert r.agents.ctx.echoes.stale("agent", key, body("1"))
    assert not r.own_echo(key, body("2"))


def test_a_member_is_prepared_once_per_version(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = spec_module.prepare

    def counting(agent: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(agent["metadata"]["resourceVersion"])
        return real(agent, *args, **kwargs)

    monkeypatch.setattr(session_module, "prepare", counting)
    r = reconciler()
    session = {"metadata": {"name": "s", "uid": "s1", "generation": 1}, "spec": {}}
    member = {**body("1"), "spec": {"image": "i", "sessionRef": {"name": "s"}}}
    for _ in range(3):
        r.sessions.member(member, session)
    assert calls == ["1"]
    r.sessions.member(
        {**member, "metadata": {**member["metadata"], "resourceVersion": "2"}}, session
    )
    r.sessions.member(member, {**session, "metadata": {**session["metadata"], "generation": 2}})
    assert calls == ["1", "2", "1"]


def full_session(admitted: str = "other") -> dict[str, Any]:
    """A session of one seat, taken by `admitted`."""
    return {
        "metadata": {"name": "s", "namespace": "ns", "uid": "s1", "generation": 1},
        "spec": {"maxAgents": 1},
        "status": {"phase": "Active", "admittedAgents": [admitted]},
    }


def member_of_s(name: str, created: str) -> dict[str, Any]:
    member = body("1", name=name, uid=f"u-{name}", creationTimestamp=created)
    return {**member, "spec": {"image": "i", "sessionRef": {"name": "s"}}}


def test_a_members_verdict_is_the_sessions_last_one() -> None:
    r = Reconciler(FakeKube(), OperatorConfig())
    first, agent = (
        member_of_s("other", "2026-11-21T11:00:00Z"),
        member_of_s("a", "2026-11-21T12:00:00Z"),
    )
    session = full_session()
    r.cache.bind(
        {("ns", "other"): [first], ("ns", "a"): [agent]},
        {},
        {("ns", "s"): [session]},
        {("ns", "s"): ["other", "a"]},
    )
    assert r.sessions.verdict(agent, "s", session) is None  # the session has not decided yet
    asyncio.run(r.reconcile_session(("ns", "s")))
    verdict = r.sessions.verdict(agent, "s", session)
    assert verdict is not None and (verdict.admitted, verdict.reason) == (False, "SessionFull")


def HeldName(pod: dict[str, Any]) -> FakeKube:
    """An API whose create is refused with 409: the name holds `pod` (a plain dict)."""
    return FakeKube(objects={("Pod", "ns", pod["metadata"]["name"]): pod})


def test_a_pod_of_ours_still_terminating_is_not_taken_for_the_new_attempt() -> None:
    """After a restart the pods may be listed after the Agents: a resumed Agent then asks
    for its pod's name while the suspended attempt's pod still terminates. That pod is
    the Agent's own but is going away: taking it for created made the attempt PodLost
    once it was gone (found by tests/reliability/test_crash.py under kills)."""
    from stockade.api.agent import AgentSpec
    from stockade.core.lifecycle import Reason, Rejection
    from stockade.reconcile import Prepared

    agent = body("1")
    owner = {"kind": "Agent", "name": "a", "uid": "u1", "controller": True}
    terminating: dict[str, Any] = {
        "kind": "Pod",
        "metadata": {
            "name": "a-1",
            "namespace": "ns",
            "uid": "p1",
            "resourceVersion": "9",
            "ownerReferences": [owner],
            "deletionTimestamp": "2026-11-21T12:00:00Z",
        },
    }
    r = Reconciler(HeldName(terminating), OperatorConfig())
    spec = AgentSpec.model_validate(agent["spec"])
    prepared = Prepared(spec, "gvisor", {"requests": {}, "limits": {}}, None)
    refused = asyncio.run(r.agents.children.create_pod(agent, prepared, 1))
    assert isinstance(refused, Rejection)
    assert refused.reason == Reason.RESOURCE_CONFLICT and not refused.stalled
    # The same pod, not terminating, is the attempt's (its creation was not recorded).
    alive: dict[str, Any] = {**terminating, "metadata": dict(terminating["metadata"])}
    del alive["metadata"]["deletionTimestamp"]
    r = Reconciler(HeldName(alive), OperatorConfig())
    assert asyncio.run(r.agents.children.create_pod(agent, prepared, 1)) is None


class SlowKube(FakeKube):
    """A create takes a moment, as over the network."""

    async def create(self, manifest: dict[str, Any]) -> bool:
        """Store `manifest` after 10 ms."""
        created = await super().create(manifest)
        await asyncio.sleep(0.01)
        return created

    def writes(self) -> list[tuple[str, str]]:
        """The creates and replaces, as ``(verb, name)``."""
        return [(verb, name) for verb, _, name in self.calls if verb in ("create", "replace")]


def test_a_namespaces_agents_share_one_policy_write() -> None:
    """A burst of Agents in one namespace: one create of the shared policy, whatever the
    concurrency; none while it is known created but not yet watched; one restore when
    it drifted."""
    from stockade.build.network import build_shared_network_policy
    from stockade.core.children import SHARED, ChildView

    kube = SlowKube()
    r = Reconciler(kube, OperatorConfig())
    children: dict[Any, list[ChildView]] = {}
    r.cache.bind({}, {}, {}, {}, children)
    policy = build_shared_network_policy("ns", "none")

    async def burst(n: int) -> list[Any]:
        return await asyncio.gather(*(r.shared.ensure("ns", "none") for _ in range(n)))

    assert asyncio.run(burst(50)) == [None] * 50
    assert asyncio.run(burst(50)) == [None] * 50  # created, not yet watched
    assert kube.writes() == [("create", "stockade-egress-none")]
    stored = {**policy, "metadata": {**policy["metadata"], "uid": "np1", "resourceVersion": "5"}}
    children[("ns", SHARED)] = [ChildView.of(stored)]
    assert asyncio.run(burst(50)) == [None] * 50
    assert len(kube.writes()) == 1
    opened = {**stored, "spec": {**stored["spec"], "policyTypes": ["Ingress"]}}
    children[("ns", SHARED)] = [ChildView.of(opened)]
    assert asyncio.run(burst(50)) == [None] * 50
    assert kube.writes()[1:] == [("replace", "stockade-egress-none")]


def test_a_member_its_session_has_not_judged_gets_no_status_write_yet() -> None:
    """A session's new member used to get "AwaitingAdmission" written, then its verdict
    a moment later: a status write per member for nothing (issue 11, session-one)."""
    kube = FakeKube()
    r = Reconciler(kube, OperatorConfig())
    first, member = (
        member_of_s("other", "2026-11-21T11:00:00Z"),
        member_of_s("a", "2026-11-21T12:00:00Z"),
    )
    r.cache.bind(
        {("ns", "other"): [first], ("ns", "a"): [member]},
        {},
        {("ns", "s"): [full_session()]},
        {("ns", "s"): ["other", "a"]},
    )

    async def scenario() -> None:
        await r.reconcile(("ns", "a"))
        assert kube.agent_patches("a") == []
        assert r.phases[("ns", "a")] == ("ns", "Pending")
        # The session judges its members and pokes the one it judged: that reconcile
        # writes the verdict (the real path, through the Agent queue).
        await r.reconcile_session(("ns", "s"))
        for _ in range(200):
            if kube.agent_patches("a"):
                break
            await asyncio.sleep(0.01)
        await r.close()

    asyncio.run(scenario())
    (patch,) = kube.agent_patches("a")
    assert patch["phase"] == "Pending" and patch["reason"] == "SessionFull"


def test_a_planted_immutable_input_configmap_is_recreated_before_any_pod() -> None:
    """Issue 20 class 5: an immutable ConfigMap with the Agent's input name, owned by its
    UID but with other data, could not be restored (the update's 422 was swallowed) and
    the pod started on it. The failed write now deletes it and holds the Agent; the next
    reconcile creates it as the spec says."""
    from stockade.api.agent import AgentSpec
    from stockade.build.configmap import build_input_configmap
    from stockade.build.names import AgentRef
    from stockade.core.lifecycle import Reason, Rejection
    from stockade.reconcile import Prepared

    agent = body("1")
    spec = AgentSpec.model_validate(agent["spec"])
    wanted = build_input_configmap(AgentRef("a", "ns", "u1"), spec)
    owner = {"kind": "Agent", "name": "a", "uid": "u1", "controller": True}
    planted = {
        **wanted,
        "metadata": {**wanted["metadata"], "uid": "cm1", "resourceVersion": "3"},
        "data": {key: "planted" for key in wanted["data"]},
        "immutable": True,
    }
    planted["metadata"]["ownerReferences"] = [owner]
    kube = FakeKube(objects={("ConfigMap", "ns", wanted["metadata"]["name"]): planted})
    r = Reconciler(kube, OperatorConfig())
    r.cache.bind({}, {}, {}, {}, {})
    prepared = Prepared(spec, "gvisor", {"requests": {}, "limits": {}}, None)
    held = asyncio.run(r.agents.children.ensure(agent, prepared))
    assert isinstance(held, Rejection) and held.reason == Reason.RESOURCE_CONFLICT
    assert ("ConfigMap", "ns", wanted["metadata"]["name"]) not in kube.objects
    assert asyncio.run(r.agents.children.ensure(agent, prepared)) is None
    stored = kube.objects[("ConfigMap", "ns", wanted["metadata"]["name"])]
    assert stored["data"] == wanted["data"]
