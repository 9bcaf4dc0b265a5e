"""Leader election (stockade.runtime.leader): the pure rules, then electors on an in-memory Lease.

The in-memory API keeps client-go's contract: a write carries the resourceVersion it was
based on and a stale one is refused with 409. The electors run with short durations
(lease 1 s, renew deadline 0.6 s, retry 0.1 s) on the real event loop.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.aio.client.exceptions import ApiException

from stockade.runtime.leader import (
    LeaderElector,
    LeaseRecord,
    claim,
    expires_in,
    lease_body,
    may_acquire,
    micro_time,
    record_of,
    released,
)
from tests.unit.conftest import FakeKube

T0 = datetime(2025, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


# --- the pure rules ------------------------------------------------------------------


def held(holder: str = "a", duration: int = 15) -> LeaseRecord:
    return LeaseRecord(holder, duration, T0, T0, 3, "7")


def test_expiry_counts_from_the_local_observation() -> None:
    record = held(duration=15)
    assert expires_in(record, observed_at=100.0, now=100.0) == 15
    assert expires_in(record, observed_at=100.0, now=114.5) == 0.5
    assert expires_in(record, observed_at=100.0, now=116.0) == -1


@pytest.mark.parametrize(
    ("holder", "identity", "now", "allowed"),
    [
        ("a", "a", 101.0, True),  # the holder renews at any time
        ("a", "b", 101.0, False),  # someone else's, still valid
        ("a", "b", 114.9, False),
        ("a", "b", 115.0, True),  # expired: no change seen for leaseDurationSeconds
        ("", "b", 101.0, True),  # released
    ],
)
def test_who_may_acquire(holder: str, identity: str, now: float, allowed: bool) -> None:
    assert may_acquire(held(holder), identity, observed_at=100.0, now=now) is allowed


def test_claim_creates_renews_and_takes_over() -> None:
    later = T0 + timedelta(seconds=5)
    created = claim(None, "a", 15, T0)
    assert created == LeaseRecord("a", 15, T0, T0, 0, None)
    renewed = claim(held("a"), "a", 15, later)
    assert (renewed.acquire_time, renewed.renew_time, renewed.transitions) == (T0, later, 3)
    assert renewed.resource_version == "7"  # an update based on what was read
    taken = claim(held("a"), "b", 15, later)
    assert (taken.holder, taken.acquire_time, taken.renew_time) == ("b", later, later)
    assert taken.transitions == 4
    after_release = claim(released(held("a"), T0), "b", 15, later)
    assert after_release.transitions == 4


def test_release_empties_the_holder_and_keeps_the_count() -> None:
    record = released(held("a"), T0)
    assert (record.holder, record.lease_duration_seconds, record.transitions) == ("", 1, 3)


def test_lease_body_and_back() -> None:
    body = lease_body("stockade", "ops", held("a"))
    assert body["metadata"] == {"name": "stockade", "namespace": "ops", "resourceVersion": "7"}
    assert body["spec"] == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "acquireTime": "2025-05-01T12:00:00.123456Z",
        "renewTime": "2025-05-01T12:00:00.123456Z",
        "leaseTransitions": 3,
    }
    assert "resourceVersion" not in lease_body("s", "ops", claim(None, "a", 15, T0))["metadata"]
    assert lease_body("s", "ops", released(held(), T0))["spec"]["holderIdentity"] is None
    assert record_of(FakeLeases.parse(body, "7")) == held("a")
    assert micro_time(None) is None


# --- electors on an in-memory Lease --------------------------------------------------


class FakeLeases:
    """CoordinationV1Api's three Lease calls over one in-memory object."""

    def __init__(self) -> None:
        self.lease: SimpleNamespace | None = None
        self.version = 0
        self.broken: set[str] = set()  # identities whose requests fail (a partition)
        self.caller = ""

    @staticmethod
    def parse(body: dict[str, Any], version: str) -> SimpleNamespace:
        spec = body["spec"]

        def when(value: str | None) -> datetime | None:
            return datetime.fromisoformat(value) if value else None

        return SimpleNamespace(
            metadata=SimpleNamespace(resource_version=version),
            spec=SimpleNamespace(
                holder_identity=spec["holderIdentity"],
                lease_duration_seconds=spec["leaseDurationSeconds"],
                acquire_time=when(spec["acquireTime"]),
                renew_time=when(spec["renewTime"]),
                lease_transitions=spec["leaseTransitions"],
            ),
        )

    def _store(self, body: dict[str, Any]) -> SimpleNamespace:
        self.version += 1
        self.lease = self.parse(body, str(self.version))
        return self.lease

    def holder(self) -> str | None:
        return self.lease.spec.holder_identity if self.lease else None

    def transitions(self) -> int:
        return int(self.lease.spec.lease_transitions) if self.lease else -1


class Api:
    """One candidate's view of the shared FakeLeases (so a partition can cut it off)."""

    def __init__(self, store: FakeLeases, identity: str) -> None:
        self.store, self.identity = store, identity

    def _check(self) -> None:
        if self.identity in self.store.broken:
            raise ApiException(status=503, reason="Service Unavailable")

    async def read_namespaced_lease(self, name: str, namespace: str, **_: Any) -> Any:
        self._check()
        if self.store.lease is None:
            raise ApiException(status=404, reason="Not Found")
        return self.store.lease

    async def create_namespaced_lease(self, namespace: str, body: Any, **_: Any) -> Any:
        self._check()
        if self.store.lease is not None:
            raise ApiException(status=409, reason="AlreadyExists")
        return self.store._store(body)

    async def replace_namespaced_lease(self, name: str, namespace: str, body: Any, **_: Any) -> Any:
        self._check()
        assert self.store.lease is not None
        if body["metadata"]["resourceVersion"] != self.store.lease.metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        return self.store._store(body)


class Candidate:
    def __init__(self, store: FakeLeases, identity: str) -> None:
        self.events: list[tuple[str, float]] = []
        self.elector = LeaderElector(
            None,  # its API is replaced below
            namespace="ops",
            name="stockade",
            identity=identity,
            lease_duration=1,
            renew_deadline=0.6,
            retry_period=0.1,
            on_started_leading=lambda: self.events.append(("started", time.monotonic())),
            on_stopped_leading=lambda: self.events.append(("stopped", time.monotonic())),
        )
        self.elector.leases = Api(store, identity)  # type: ignore[assignment]

    def when(self, event: str) -> float | None:
        return next((t for e, t in self.events if e == event), None)


async def until(condition: Any, timeout: float = 5.0) -> float:
    """Wait until `condition()` is true; return the monotonic time it became so."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)
    return time.monotonic()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_one_leader_then_a_fast_takeover_on_release() -> None:
    async def scenario() -> None:
        store = FakeLeases()
        a, b = Candidate(store, "a"), Candidate(store, "b")
        a.elector.start()
        await until(lambda: a.elector.leading)
        b.elector.start()
        await asyncio.sleep(1.5)  # longer than the lease: a keeps renewing it
        assert (a.elector.leading, b.elector.leading) == (True, False)
        assert store.holder() == "a" and store.transitions() == 0
        stopped = time.monotonic()
        await a.elector.stop()
        assert store.holder() is None  # released
        took = await until(lambda: b.elector.leading) - stopped
        assert took < 0.5  # one retry period, not a lease duration
        assert store.holder() == "b" and store.transitions() == 1
        assert a.when("stopped") is None  # a release is not a loss
        await b.elector.stop()

    run(scenario())


def test_a_dead_leaders_lease_is_taken_after_it_expires() -> None:
    async def scenario() -> None:
        store = FakeLeases()
        a, b = Candidate(store, "a"), Candidate(store, "b")
        a.elector.start()
        await until(lambda: a.elector.leading)
        b.elector.start()
        await asyncio.sleep(0.3)
        assert a.elector._task is not None
        a.elector._task.cancel()  # SIGKILL: no release
        killed = time.monotonic()
        took = await until(lambda: b.elector.leading) - killed
        # The lease (1 s) from b's last sight of a renewal, at most a retry period ago.
        assert 0.85 <= took <= 1.0 + 0.1 + 0.2
        assert store.transitions() == 1
        await b.elector.stop()

    run(scenario())


def test_a_leader_cut_off_stops_within_the_renew_deadline() -> None:
    async def scenario() -> None:
        store = FakeLeases()
        a, b = Candidate(store, "a"), Candidate(store, "b")
        a.elector.start()
        await until(lambda: a.elector.leading)
        b.elector.start()
        await asyncio.sleep(0.3)
        store.broken.add("a")
        cut = time.monotonic()
        lost = await until(lambda: a.when("stopped") is not None) - cut
        assert not a.elector.leading
        assert lost <= 0.6 + 0.05  # the renew deadline, from its last successful renewal
        gained = await until(lambda: b.elector.leading) - cut
        assert gained > lost  # never two leaders: b waits for the whole lease
        await b.elector.stop()
        assert not await a.elector.release()  # no longer ours: nothing to release

    run(scenario())


def test_a_leader_that_sees_another_holder_stops_at_once() -> None:
    async def scenario() -> None:
        store = FakeLeases()
        a = Candidate(store, "a")
        a.elector.start()
        await until(lambda: a.elector.leading)
        # Someone overwrote the Lease (e.g. an operator forced it): a must step down.
        body = lease_body("stockade", "ops", LeaseRecord("intruder", 15, T0, T0, 5, None))
        store._store(body)
        await until(lambda: a.when("stopped") is not None, timeout=1.0)
        assert store.holder() == "intruder"

    run(scenario())


def test_an_unexpected_error_counts_as_a_loss() -> None:
    async def scenario() -> None:
        store = FakeLeases()
        a = Candidate(store, "a")
        a.elector.start()
        await until(lambda: a.elector.leading)

        async def bug(*_: Any, **__: Any) -> Any:
            raise ValueError("a bug, not an API failure")

        a.elector.leases.replace_namespaced_lease = bug  # type: ignore[method-assign]
        await until(lambda: a.when("stopped") is not None, timeout=1.0)
        assert not a.elector.leading

    run(scenario())


# --- the reconciler's gate -----------------------------------------------------------


def test_a_standby_reconciler_writes_nothing_and_catches_up_on_leading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stockade.config import OperatorConfig
    from stockade.reconcile import Reconciler

    kube = FakeKube()

    async def scenario() -> None:
        reconciler = Reconciler(kube, OperatorConfig())
        agent = {"metadata": {"name": "x", "namespace": "ns", "uid": "u"}, "spec": {}}
        session = {"metadata": {"name": "s", "namespace": "ns"}, "spec": {}}
        reconciler.cache.bind({("ns", "x"): [agent]}, {}, {("ns", "s"): [session]}, {})
        reconciler.set_leading(False)
        await reconciler.reconcile(("ns", "x"))  # returns at its top: no kube call
        await reconciler.reconcile_session(("ns", "s"))
        assert reconciler.phases == {} and reconciler.session_phases == {}
        assert kube.calls == []  # a standby reads and writes nothing
        poked: list[tuple[str, Any]] = []
        monkeypatch.setattr(reconciler, "poke", lambda key, delay=0.0: poked.append(("agent", key)))
        monkeypatch.setattr(
            reconciler, "poke_session", lambda key, delay=0.2: poked.append(("session", key))
        )
        reconciler.set_leading(True)
        assert poked == [("agent", ("ns", "x")), ("session", ("ns", "s"))]
        await reconciler.close()

    run(scenario())
