"""Reconciler.resync: index entries a fresh LIST no longer has become ghosts.

kopf drops an index entry only on a DELETED event (kopf/_core/engines/indexing.py,
``index_resource``), so an object deleted while a watch was broken stays indexed. The
LIST side is a stand-in here (its real counterpart, ``KubeClient.list_uids``, runs against
the API server in every integration test with a 5 s resync); what is tested is the
reconciler's bookkeeping.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stockade.config import OperatorConfig
from stockade.reconcile import Reconciler
from tests.unit.conftest import FakeKube


def Listing(**uids: set[str] | None) -> FakeKube:
    """What a LIST returns: UIDs per resource (None: the LIST failed)."""
    return FakeKube(uids=uids)


def agent(name: str, uid: str, created: str = "2026-11-21T12:00:00Z") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "creationTimestamp": created},
        "spec": {"image": "i"},
    }


def reconciler(listing: FakeKube, agents: dict[Any, list[Any]]) -> Reconciler:
    r = Reconciler(listing, OperatorConfig(), ghost_grace=0.0)
    r.cache.bind(agents, {}, {}, {})
    return r


def test_entries_the_list_lacks_become_ghosts_and_are_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agents = {("ns", "a"): [agent("a", "u1")], ("ns", "b"): [agent("b", "u2")]}
    r = reconciler(Listing(agents={"u1"}), agents)
    poked: list[Any] = []
    monkeypatch.setattr(r, "poke", lambda key, delay=0.0: poked.append(key))
    assert asyncio.run(r.resync()) == 1
    assert poked == [("ns", "b")]
    assert r.cache.agent(("ns", "b")) is None
    assert r.cache.agent(("ns", "a")) is not None
    # Found once, counted once.
    assert asyncio.run(r.resync()) == 0


def test_a_ghost_of_an_earlier_incarnation_hides_behind_the_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old, new = agent("a", "u-old", "2026-11-21T11:00:00Z"), agent("a", "u-new")
    agents = {("ns", "a"): [new, old]}
    r = reconciler(Listing(agents={"u-new"}), agents)
    monkeypatch.setattr(r, "poke", lambda key, delay=0.0: None)
    assert r.cache.agent(("ns", "a"))["metadata"]["uid"] == "u-new"
    agents[("ns", "a")] = [old, new]
    assert r.cache.agent(("ns", "a"))["metadata"]["uid"] == "u-new"
    asyncio.run(r.resync())
    assert r.cache.ghosts == {"u-old"}


def test_a_failed_list_makes_no_ghosts() -> None:
    agents = {("ns", "a"): [agent("a", "u1")]}
    r = reconciler(Listing(agents=None), agents)
    assert asyncio.run(r.resync()) == 0 and r.cache.ghosts == set()


def test_an_entry_whose_deletion_event_arrives_meanwhile_is_no_ghost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deleted between the index snapshot and the LIST, its DELETED event in flight: the
    index drops it within the grace, so it is not counted (a CI run counted three)."""
    agents: dict[Any, list[Any]] = {("ns", "a"): [agent("a", "u1")]}
    r = Reconciler(Listing(agents=set()), OperatorConfig(), ghost_grace=0.05)
    r.cache.bind(agents, {}, {}, {})
    monkeypatch.setattr(r, "poke", lambda key, delay=0.0: None)

    async def scenario() -> int:
        async def event_arrives() -> None:
            await asyncio.sleep(0.01)
            agents.pop(("ns", "a"))

        task = asyncio.create_task(event_arrives())
        found = await r.resync()
        await task
        return found

    assert asyncio.run(scenario()) == 0 and r.cache.ghosts == set()


def test_a_listed_object_the_watch_never_delivers_marks_the_watch_stuck() -> None:
    """In the LIST, not indexed a grace period later, and no event of its kind: stuck."""
    from stockade.runtime import metrics

    agents: dict[Any, list[Any]] = {("ns", "a"): [agent("a", "u1")]}
    checked: list[tuple[str, int]] = []
    r = Reconciler(Listing(agents={"u1", "u-new"}), OperatorConfig(), ghost_grace=0.05)
    r.cache.bind(agents, {}, {}, {})
    r.on_watch_checked = lambda resource, missed: checked.append((resource, missed))
    metrics.LAST_EVENT.pop("agents", None)
    before = metrics.WATCH_MISSED.labels("agents")._value.get()
    asyncio.run(r.resync())
    assert ("agents", 1) in checked
    assert metrics.WATCH_MISSED.labels("agents")._value.get() == before + 1

    # The same, but events of that kind keep arriving (the object came and went within
    # the grace period, or its event is queued behind others): the watch is alive.
    checked.clear()

    async def with_events() -> None:
        async def event_arrives() -> None:
            await asyncio.sleep(0.01)
            metrics.watch_event("agents")

        await asyncio.gather(r.resync(), event_arrives())

    asyncio.run(with_events())
    assert ("agents", 0) in checked
    # Delivered meanwhile: not missed either.
    checked.clear()
    metrics.LAST_EVENT.pop("agents", None)
    agents[("ns", "b")] = [agent("b", "u-new")]
    asyncio.run(r.resync())
    assert ("agents", 0) in checked
