"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's ``leaderelection``.

Several operator replicas may run; only the one holding the Lease writes (one active
replica at a time; docs/operate.md, "High availability"). The semantics and defaults are
those of client-go's ``tools/leaderelection`` as configured by controller-runtime (and
kube-controller-manager):

- a candidate *acquires* the Lease when it does not exist (create), when its
  ``holderIdentity`` is empty (released), or when it has *expired*: no change of the
  record was observed for ``leaseDurationSeconds`` (default 15) **by the local monotonic
  clock**, counted from the moment this candidate saw the record change (as client-go
  does). Wall-clock timestamps in the Lease (``renewTime``) are written for humans and
  tools but never compared across machines, so clock skew cannot cause two leaders;
- the leader *renews* (``renewTime``) every retry period (2 s). It stops leading when no
  renewal succeeded for the renew deadline (10 s) counted from the start of its last
  successful request (client-go counts from the start of the renewal round, a retry
  period later: ours is the stricter), or at once when it sees another holder;
- every write is an update with the last seen ``resourceVersion`` (optimistic
  concurrency): a 409 means someone else wrote first, and this attempt failed;
- ``leaseTransitions`` is incremented when the holder changes, ``acquireTime`` set then;
- :meth:`LeaderElector.stop` *releases* the Lease on graceful shutdown (client-go's
  ``ReleaseOnCancel``): empty holder, ``leaseDurationSeconds`` 1, so a standby takes over
  at its next retry instead of waiting for expiry.

Worst case, a standby takes over ``leaseDurationSeconds`` + one retry period after the
leader's last renewal (17 s with the defaults): it polls every retry period and, once it
has seen the record, retries exactly when the record would expire. The loop has no
jitter (client-go's 1.2 factor): with two replicas there is no thundering herd.

kubernetes' own ``kubernetes.aio.leaderelection`` (a port of the sync module) was
considered: it does not release on shutdown (a graceful restart would leave the operator
without a leader for a whole lease), keeps no ``leaseTransitions``, writes local naive
times as UTC and does not bound a hung renewal by the renew deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

log = logging.getLogger("stockade.leader")

_FAILURES = (ApiException, aiohttp.ClientError, TimeoutError, OSError)
"""What one request to the API server may fail with (the attempt fails; it is retried)."""


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says (client-go's ``LeaderElectionRecord``), plus its resourceVersion.

    Attributes:
        holder: ``spec.holderIdentity``; empty when nobody holds it (released).
        lease_duration_seconds: ``spec.leaseDurationSeconds``.
        acquire_time / renew_time: ``spec.acquireTime`` / ``spec.renewTime`` (UTC).
        transitions: ``spec.leaseTransitions``.
        resource_version: ``metadata.resourceVersion`` (None for a Lease not yet created).

    """

    holder: str
    lease_duration_seconds: int
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0
    resource_version: str | None = None


def record_of(lease: Any) -> LeaseRecord:
    """The record of a ``V1Lease`` (as the asyncio client returns it)."""
    spec = lease.spec
    return LeaseRecord(
        holder=(spec.holder_identity or "") if spec else "",
        lease_duration_seconds=int((spec.lease_duration_seconds if spec else 0) or 0),
        acquire_time=spec.acquire_time if spec else None,
        renew_time=spec.renew_time if spec else None,
        transitions=int((spec.lease_transitions if spec else 0) or 0),
        resource_version=lease.metadata.resource_version if lease.metadata else None,
    )


def micro_time(value: datetime | None) -> str | None:
    """A ``MicroTime`` as the API server writes it: RFC 3339, microseconds, ``Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_body(name: str, namespace: str, record: LeaseRecord) -> dict[str, Any]:
    """The Lease manifest of `record` (with its resourceVersion, for an update)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if record.resource_version is not None:
        metadata["resourceVersion"] = record.resource_version
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": record.holder or None,
            "leaseDurationSeconds": record.lease_duration_seconds,
            "acquireTime": micro_time(record.acquire_time),
            "renewTime": micro_time(record.renew_time),
            "leaseTransitions": record.transitions,
        },
    }


def expires_in(record: LeaseRecord, observed_at: float, now: float) -> float:
    """Seconds until `record` expires for a candidate that saw it change at `observed_at`.

    Both times are the candidate's own monotonic clock (seconds); negative: expired.
    """
    return observed_at + record.lease_duration_seconds - now


def may_acquire(record: LeaseRecord, identity: str, observed_at: float, now: float) -> bool:
    """Whether `identity` may write `record`'s Lease now (client-go's tryAcquireOrRenew).

    Yes when it holds it already (a renewal), when nobody does (released), or when the
    record has not changed for its ``leaseDurationSeconds`` since `observed_at`.
    """
    if not record.holder or record.holder == identity:
        return True
    return expires_in(record, observed_at, now) <= 0


def claim(old: LeaseRecord | None, identity: str, duration: int, now: datetime) -> LeaseRecord:
    """The record `identity` writes to acquire or renew (pure).

    A renewal keeps ``acquireTime`` and ``leaseTransitions``; a takeover sets
    ``acquireTime`` to `now` and increments ``leaseTransitions`` (0 on creation).
    """
    if old is None:
        return LeaseRecord(identity, duration, now, now, 0, None)
    if old.holder == identity:
        return replace(old, lease_duration_seconds=duration, renew_time=now)
    return replace(
        old,
        holder=identity,
        lease_duration_seconds=duration,
        acquire_time=now,
        renew_time=now,
        transitions=old.transitions + 1,
    )


def released(old: LeaseRecord, now: datetime) -> LeaseRecord:
    """The record a leader writes to give the Lease up (client-go's release)."""
    return replace(old, holder="", lease_duration_seconds=1, acquire_time=now, renew_time=now)


class LeaderElector:
    """Campaign for one Lease and keep it; call back on gaining and on losing it.

    ``on_started_leading`` runs once the Lease is acquired; ``on_stopped_leading`` runs
    once if it is lost afterwards (renew deadline passed, or another holder seen) or
    if the election itself fails unexpectedly, never on :meth:`stop`. Both are plain
    callables run on the event loop; the operator's stops all writes and exits the
    process, as controller-runtime does.

    Args:
        api: an asyncio API client of its own (so that renewals never queue behind the
            reconciler's requests in a shared connection pool).
        namespace / name: the Lease.
        identity: the holder identity, unique per process (pod name + random suffix).
        lease_duration: ``leaseDurationSeconds`` written (s).
        renew_deadline / retry_period: seconds, as in client-go.
        clock: monotonic seconds (tests substitute their own).

    """

    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: int = 15,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started_leading: Callable[[], None] = lambda: None,
        on_stopped_leading: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration = lease_duration
        self.renew_deadline, self.retry_period = renew_deadline, retry_period
        self.on_started_leading, self.on_stopped_leading = on_started_leading, on_stopped_leading
        self.clock = clock
        self.leading = False
        self._record: LeaseRecord | None = None
        self._observed_at = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def lease(self) -> str:
        """``namespace/name`` of the Lease (for log lines)."""
        return f"{self.namespace}/{self.name}"

    def start(self) -> None:
        """Run :meth:`run` as a background task."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="leader election")

    async def stop(self) -> None:
        """Stop campaigning and release the Lease if held (graceful shutdown)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.release()

    async def run(self) -> None:
        """Acquire the Lease (waiting as a standby), then renew it until it is lost.

        An unexpected error (a bug, not an API failure: those are retried) counts as a
        loss: a leader that no longer renews must not go on writing.
        """
        try:
            await self._campaign()
        except Exception:
            log.exception("leader election failed (lease %s)", self.lease)
        self.leading = False
        self.on_stopped_leading()

    async def _campaign(self) -> None:
        log.info("waiting to lead: lease %s, identity %s", self.lease, self.identity)
        while True:
            started = self.clock()
            if await self._attempt():
                break
            await asyncio.sleep(self._standby_delay())
        self.leading = True
        log.info("became the leader: lease %s, identity %s", self.lease, self.identity)
        self.on_started_leading()
        await self._renew_loop(started)

    async def _renew_loop(self, last: float) -> None:
        """Renew every retry period; return once the Lease is lost.

        `last` is when the last successful write was sent (monotonic seconds): the renew
        deadline counts from there, so this replica stops before any other can see the
        Lease expire (its clock starts when it sees the write, later).
        """
        while True:
            await asyncio.sleep(self.retry_period)
            while True:
                remaining = last + self.renew_deadline - self.clock()
                if remaining <= 0:
                    log.error("could not renew lease %s for %.0fs", self.lease, self.renew_deadline)
                    return
                started = self.clock()
                try:
                    async with asyncio.timeout(remaining):
                        renewed = await self._attempt()
                except TimeoutError:
                    continue
                if renewed:
                    last = started
                    break
                if self._record is not None and self._record.holder not in ("", self.identity):
                    log.error("lease %s is held by %s", self.lease, self._record.holder)
                    return
                await asyncio.sleep(min(self.retry_period, max(remaining - 0.01, 0.0)))

    def _standby_delay(self) -> float:
        """Until the next attempt: the retry period, or less when the record expires sooner."""
        if self._record is None or not self._record.holder:
            return self.retry_period
        left = expires_in(self._record, self._observed_at, self.clock())
        return min(self.retry_period, max(left, 0.0) + 0.01)

    def _observe(self, record: LeaseRecord) -> None:
        """Remember `record`; restart its expiry clock when it changed."""
        if record != self._record:
            if self._record is not None and record.holder != self._record.holder:
                log.info("lease %s is now held by %r", self.lease, record.holder)
            self._record = record
            self._observed_at = self.clock()

    async def _attempt(self) -> bool:
        """One try to acquire or renew (client-go's tryAcquireOrRenew); True on success."""
        now = datetime.now(UTC)
        # Fast path (as client-go's): the leader updates what it wrote last, without a GET.
        mine = self._record if self.leading else None
        if mine is not None and await self._write(
            claim(mine, self.identity, self.lease_duration, now)
        ):
            return True
        record = await self._read()
        if record is None:
            return await self._write(claim(None, self.identity, self.lease_duration, now))
        if not record.resource_version:  # the read failed
            return False
        self._observe(record)
        if not may_acquire(record, self.identity, self._observed_at, self.clock()):
            return False
        return await self._write(claim(record, self.identity, self.lease_duration, now))

    async def _read(self) -> LeaseRecord | None:
        """GET the Lease: its record, None if it does not exist, an empty record on error."""
        timeout = max(self.retry_period, 1.0)
        try:
            lease = await self.leases.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=timeout
            )
        except _FAILURES as exc:
            if isinstance(exc, ApiException) and exc.status == 404:
                return None
            log.warning("could not read lease %s: %s", self.lease, _describe(exc))
            return LeaseRecord("", 0)
        return record_of(lease)

    async def _write(self, record: LeaseRecord) -> bool:
        """Create (no resourceVersion) or update the Lease; False on a conflict or error."""
        body = lease_body(self.name, self.namespace, record)
        timeout = max(self.retry_period, 1.0)
        try:
            if record.resource_version is None:
                lease = await self.leases.create_namespaced_lease(
                    self.namespace,
                    body,  # type: ignore[arg-type]  # a dict is serialized as is
                    _request_timeout=timeout,
                )
            else:
                lease = await self.leases.replace_namespaced_lease(
                    self.name,
                    self.namespace,
                    body,  # type: ignore[arg-type]
                    _request_timeout=timeout,
                )
        except _FAILURES as exc:
            if not (isinstance(exc, ApiException) and exc.status == 409):
                log.warning("could not write lease %s: %s", self.lease, _describe(exc))
            return False
        self._observe(record_of(lease))
        return True

    async def release(self) -> bool:
        """Give the Lease up if this elector leads; True if it was released.

        Writing stops before this is called (the caller's duty); afterwards any standby
        acquires the Lease at its next retry.
        """
        if not self.leading or self._record is None:
            return False
        self.leading = False
        done = await self._write(released(self._record, datetime.now(UTC)))
        if not done:
            # Our last renewal may have landed unseen (cancelled in flight): look again.
            record = await self._read()
            if record is not None and record.holder == self.identity:
                done = await self._write(released(record, datetime.now(UTC)))
        if done:
            log.info("released lease %s", self.lease)
        return done


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return repr(exc)
