"""Prometheus metrics: the one place they are defined (prometheus-client's registry).

Names follow Prometheus conventions (https://prometheus.io/docs/practices/naming/):
``stockade_`` prefix, base units (seconds), ``_total`` for counters. Labels are bounded
sets (phases, reasons, resources, namespaces, sessions): never an Agent's name.

Counters and histograms count what this process did (they start at zero after a
restart, as Prometheus' ``rate``/``increase`` expect); gauges are read at scrape time
from the watched state, so they are right again as soon as a restarted operator has
listed and reconciled. docs/operate.md, "Metrics, alerts and the dashboard", is the reference.
"""

from __future__ import annotations

import platform
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from importlib import metadata
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

TRANSITIONS = Counter(
    "stockade_agent_transitions_total",
    "Agent phase transitions, by from-phase, to-phase and reason.",
    ["from_phase", "to_phase", "reason"],
)
INVALID_TRANSITIONS = Counter(
    "stockade_agent_invalid_transitions_total",
    "Phase changes the transition table forbids (a bug; never written).",
    ["from_phase", "to_phase"],
)
CREATE_TO_RUNNING = Histogram(
    "stockade_agent_create_to_running_seconds",
    "Time from an Agent's creation to its first Running phase.",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
RECONCILE_SECONDS = Histogram(
    "stockade_reconcile_duration_seconds",
    "Duration of one Agent reconcile (observe, decide, write).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
RECONCILE_ERRORS = Counter(
    "stockade_reconcile_errors_total",
    "Reconciles that raised an unexpected error (retried with backoff).",
)
ADMISSION_WAIT = Histogram(
    "stockade_agent_admission_wait_seconds",
    "Time from an Agent's creation to its admission (its first Pending -> Starting),"
    " for every Agent: a session member waits for a slot and budget, others do not.",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)
RUN_SECONDS = Histogram(
    "stockade_agent_run_duration_seconds",
    "Time from an Agent's start (status.startTime) to its end, by final phase"
    " (Succeeded, Failed), for Agents that reached Running.",
    ["phase"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
)
FAILURES = Counter(
    "stockade_agent_failures_total",
    "Agents that went to Failed, by reason (DeadlineExceeded, Error, ...).",
    ["reason"],
)
RETRIES = Counter(
    "stockade_agent_retries_total",
    "Attempts after an Agent's first: pods created to retry a failed attempt.",
)
WATCH_EVENTS = Counter(
    "stockade_watch_events_total",
    "Watch events received (and the objects of each initial listing), by resource.",
    ["resource"],
)
WATCH_LAST_EVENT = Gauge(
    "stockade_watch_last_event_timestamp_seconds",
    "Unix time of the last watch event received, by resource (0: none yet).",
    ["resource"],
)
WATCH_MISSED = Counter(
    "stockade_watch_missed_objects_total",
    "Objects a resync LIST found that their watch had not delivered a grace period"
    " later, while that watch delivered no event at all: it is stuck. By resource.",
    ["resource"],
)
LOOP_LAG = Histogram(
    "stockade_event_loop_lag_seconds",
    "How late the event loop ran the liveness heartbeat (a blocked or starved loop).",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
)
RESYNC_LAST_SUCCESS = Gauge(
    "stockade_resync_last_success_timestamp_seconds",
    "Unix time of the last resync whose LISTs all succeeded (0: none yet).",
)
API_WRITES = Counter(
    "stockade_api_writes_total",
    "Write requests the operator sent to the API server, by verb, resource and outcome.",
    ["verb", "resource", "code"],
)

EVENTS_DROPPED = Counter(
    "stockade_events_dropped_total",
    "Kubernetes Events not posted because too many were already being posted.",
)
INDEX_GHOSTS = Counter(
    "stockade_index_ghosts_total",
    "Watched objects found gone by a resync LIST (their DELETED event was missed).",
)
LEADER = Gauge(
    "stockade_leader",
    "1 while this replica leads (holds the leader-election Lease, or runs without"
    " leader election), else 0: only the leader writes.",
)

ADMISSION_POLICY_PRESENT = Gauge(
    "stockade_admission_policy_present",
    "1 while the chart's ValidatingAdmissionPolicyBinding (STOCKADE_ADMISSION_POLICY_BINDING)"
    " exists and denies, else 0: then Agents referencing ServiceAccounts, Secrets or"
    " ConfigMaps are refused unless STOCKADE_REFERENCES_WITHOUT_POLICY=allow.",
)
ADMISSION_POLICY_PROBLEM = Gauge(
    "stockade_admission_policy_problem",
    "1 for the reason the admission policy is not trusted (unconfigured, unreadable,"
    " binding-missing, not-denying, match-restricted, policy-missing, policy-changed),"
    " 0 for the other reasons; all 0 while it is present and unchanged.",
    ["reason"],
)


class PhaseCollector(Collector):
    """A ``<name>{namespace, phase}`` gauge counting objects by phase at scrape time.

    `snapshot` returns ``(namespace, phase)`` pairs, one per object; the collector keeps
    no state of its own.
    """

    def __init__(
        self, name: str, help_text: str, snapshot: Callable[[], Iterable[tuple[str, str]]]
    ) -> None:
        self._name, self._help, self._snapshot = name, help_text, snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the gauge family (one sample per namespace and phase)."""
        family = GaugeMetricFamily(self._name, self._help, labels=["namespace", "phase"])
        for (namespace, phase), count in sorted(Tally(self._snapshot()).items()):
            family.add_metric([namespace, phase], count)
        yield family


class BudgetCollector(Collector):
    """``stockade_session_budget_usage_ratio{namespace, session, resource}`` gauge.

    The admitted members' requests divided by the session's budget (0..1), per budgeted
    resource, read at scrape time.
    """

    def __init__(self, snapshot: Callable[[], Mapping[tuple[str, str, str], float]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the gauge family."""
        family = GaugeMetricFamily(
            "stockade_session_budget_usage_ratio",
            "Requests of a session's admitted agents divided by its budget, per resource.",
            labels=["namespace", "session", "resource"],
        )
        for (namespace, session, resource), ratio in sorted(self._snapshot().items()):
            family.add_metric([namespace, session, resource], ratio)
        yield family


class PhaseAgeCollector(Collector):
    """``stockade_agent_phase_oldest_seconds{namespace, phase}``, read at scrape time.

    For each namespace and non-terminal phase (Pending, Starting, Running, Paused): how
    long the Agent that entered it longest ago has been in it. `snapshot` returns
    ``(namespace, phase, entered)`` per Agent, `entered` in Unix seconds (from
    ``status.history``: :func:`phase_entered`), so the gauge is the same after a restart.
    The alerts on Agents stuck in Pending or Starting read it (no Agent names needed).
    """

    PHASES = ("Pending", "Starting", "Running", "Paused")

    def __init__(
        self,
        snapshot: Callable[[], Iterable[tuple[str, str, float]]],
        now: Callable[[], float] = time.time,
    ) -> None:
        self._snapshot, self._now = snapshot, now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the gauge family (one sample per namespace and phase with an Agent)."""
        family = GaugeMetricFamily(
            "stockade_agent_phase_oldest_seconds",
            "How long the Agent longest in a non-terminal phase has been in it, by"
            " namespace and phase.",
            labels=["namespace", "phase"],
        )
        now = self._now()
        oldest: dict[tuple[str, str], float] = {}
        for namespace, phase, entered in self._snapshot():
            if phase in self.PHASES:
                key = (namespace, phase)
                oldest[key] = min(oldest.get(key, entered), entered)
        for (namespace, phase), entered in sorted(oldest.items()):
            family.add_metric([namespace, phase], max(now - entered, 0.0))
        yield family


def phase_entered(status: Mapping[str, Any], created: str | None = None) -> float | None:
    """When an Agent entered its current phase, in Unix seconds, from its status.

    The time of the last ``status.history`` entry into ``status.phase``; else (history
    cut short, or no phase yet) `created`, the ``creationTimestamp``; else None.
    """
    phase = status.get("phase")
    for entry in reversed(status.get("history") or []):
        if entry.get("to") == phase and entry.get("time"):
            return _unix(str(entry["time"]))
    return _unix(created) if created else None


def _unix(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def register_gauges(
    agents: Callable[[], Iterable[tuple[str, str]]],
    sessions: Callable[[], Iterable[tuple[str, str]]],
    budgets: Callable[[], Mapping[tuple[str, str, str], float]],
    queues: Callable[[], Mapping[str, QueueStats]] | None = None,
    phase_ages: Callable[[], Iterable[tuple[str, str, float]]] | None = None,
) -> None:
    """Register ``stockade_agents``, ``stockade_sessions``, budget, queue, phase-age gauges."""
    REGISTRY.register(PhaseCollector("stockade_agents", "Agents by namespace and phase.", agents))
    REGISTRY.register(
        PhaseCollector("stockade_sessions", "AgentSessions by namespace and phase.", sessions)
    )
    REGISTRY.register(BudgetCollector(budgets))
    if queues is not None:
        REGISTRY.register(QueueCollector(queues))
    if phase_ages is not None:
        REGISTRY.register(PhaseAgeCollector(phase_ages))


RUNNING = "Running"
FAILED = "Failed"
TERMINAL_PHASES = ("Succeeded", FAILED)


class Step(Protocol):
    """The part of a lifecycle transition the metrics read (``lifecycle.Transition``)."""

    @property
    def from_phase(self) -> Any:
        """The phase left (None for a new Agent)."""

    @property
    def to_phase(self) -> Any:
        """The phase entered."""

    @property
    def reason(self) -> str:
        """Why (a ``lifecycle.Reason``)."""


def _seconds(start: datetime | str | None, end: datetime | str | None) -> float | None:
    """Seconds from `start` to `end` (datetimes or RFC 3339 strings), at least 0.

    None when either is missing.
    """

    def parse(value: datetime | str) -> datetime:
        if isinstance(value, datetime):
            return value
        return datetime.fromisoformat(value.replace("Z", "+00:00"))

    if not start or not end:
        return None
    return max((parse(end) - parse(start)).total_seconds(), 0.0)


def observations(
    steps: Sequence[Step],
    old_status: Mapping[str, Any],
    new_status: Mapping[str, Any],
    created: datetime | None,
    now: datetime,
) -> list[tuple[str, tuple[str, ...], float]]:
    """What one written decision adds to the metrics: ``(metric, labels, value)`` triples.

    Pure (the caller applies them with :func:`record`). From the transitions `steps`
    and the Agent's status before (`old_status`) and after (`new_status`) the write,
    with the Agent's ``creationTimestamp`` `created` and the time `now` (aware datetimes):

    - ``transitions`` ``(from, to, reason)``, 1 per step;
    - ``create_to_running`` seconds, at the Agent's first Running (none in its history);
    - ``admission_wait`` seconds, at the first ``Pending -> Starting`` (no attempt yet);
    - ``run`` seconds ``(phase,)``, at ``Running -> Succeeded|Failed`` (``startTime`` to
      ``completionTime``, else to `now`);
    - ``failures`` ``(reason,)``, 1 per step to Failed;
    - ``retries``: the attempts created beyond the first (``status.attempts`` growth).
    """
    out: list[tuple[str, tuple[str, ...], float]] = []
    attempts_before = int(old_status.get("attempts") or 0)
    attempts_after = int(new_status.get("attempts") or 0)
    ran_before = any(entry.get("to") == RUNNING for entry in old_status.get("history") or ())
    for step in steps:
        source, target = str(step.from_phase or ""), str(step.to_phase)
        out.append(("transitions", (source, target, str(step.reason)), 1.0))
        if target == RUNNING and not ran_before and attempts_before <= 1:
            ran_before = True  # a retry within the same decision is not the first start
            wait = _seconds(created, now)
            if wait is not None:
                out.append(("create_to_running", (), wait))
        if source == "Pending" and target == "Starting" and attempts_before == 0:
            wait = _seconds(created, now)
            if wait is not None:
                out.append(("admission_wait", (), wait))
        if source == RUNNING and target in TERMINAL_PHASES:
            ran = _seconds(new_status.get("startTime"), new_status.get("completionTime") or now)
            if ran is not None:
                out.append(("run", (target,), ran))
        if target == FAILED:
            out.append(("failures", (str(step.reason),), 1.0))
    retries = attempts_after - max(attempts_before, 1)
    if retries > 0:
        out.append(("retries", (), float(retries)))
    return out


def record(triples: Iterable[tuple[str, tuple[str, ...], float]]) -> None:
    """Apply :func:`observations` to the metrics."""
    for name, labels, value in triples:
        if name == "transitions":
            TRANSITIONS.labels(*labels).inc(value)
        elif name == "create_to_running":
            CREATE_TO_RUNNING.observe(value)
        elif name == "admission_wait":
            ADMISSION_WAIT.observe(value)
        elif name == "run":
            RUN_SECONDS.labels(*labels).observe(value)
        elif name == "failures":
            FAILURES.labels(*labels).inc(value)
        elif name == "retries":
            RETRIES.inc(value)


LAST_EVENT: dict[str, float] = {}
"""resource -> Unix time of its last watch event (what the gauge shows), for the health check."""


def watch_event(resource: str, now: float | None = None) -> None:
    """Count a watch event of `resource` (a plural, e.g. ``agents``) and stamp its time."""
    stamp = time.time() if now is None else now
    WATCH_EVENTS.labels(resource).inc()
    WATCH_LAST_EVENT.labels(resource).set(stamp)
    LAST_EVENT[resource] = stamp


class QueueStats(Protocol):
    """What :class:`QueueCollector` reads from a work queue (``workqueue.WorkQueue``)."""

    def waiting_since(self) -> list[float]:
        """The time (:meth:`clock`) at which each key now waiting to run was first poked."""

    def clock(self) -> float:
        """The queue's clock (monotonic seconds), comparable with :meth:`waiting_since`."""


def queue_samples(waiting_since: Sequence[float], now: float) -> tuple[int, float]:
    """``(depth, oldest age in seconds)`` of a queue whose keys wait since those times.

    An empty queue has depth 0 and age 0.
    """
    if not waiting_since:
        return 0, 0.0
    return len(waiting_since), max(now - min(waiting_since), 0.0)


class QueueCollector(Collector):
    """``stockade_workqueue_depth{queue}`` and ``stockade_workqueue_oldest_seconds{queue}``.

    Read at scrape time from the reconciler's work queues (``agents``, ``agentsessions``):
    the depth is the number of keys poked (by a watch event, a resync or a due timer)
    whose reconcile has not started yet; the age is how long the oldest of them has been
    waiting. Keys waiting only for a timer (a requeue after, a backoff) are not queued
    until it fires, as in client-go's workqueue. kopf's own per-object event queues in
    front of the handlers are not covered (kopf exports no metric for them).
    """

    def __init__(self, queues: Callable[[], Mapping[str, QueueStats]]) -> None:
        self._queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the two gauge families."""
        depth = GaugeMetricFamily(
            "stockade_workqueue_depth",
            "Keys waiting for their reconcile to start, by queue.",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "stockade_workqueue_oldest_seconds",
            "How long the key waiting longest has waited for its reconcile, by queue.",
            labels=["queue"],
        )
        for name, queue in sorted(self._queues().items()):
            count, oldest = queue_samples(queue.waiting_since(), queue.clock())
            depth.add_metric([name], count)
            age.add_metric([name], oldest)
        yield depth
        yield age


def build_info() -> dict[str, str]:
    """The ``stockade_build_info`` labels: Stockade's, Python's and kopf's versions."""
    from stockade import __version__

    try:
        kopf_version = metadata.version("kopf")
    except metadata.PackageNotFoundError:  # pragma: no cover: kopf is a dependency
        kopf_version = "unknown"
    return {"version": __version__, "python": platform.python_version(), "kopf": kopf_version}


BUILD_INFO = Gauge(
    "stockade_build_info",
    "Always 1; the labels say which Stockade, Python and kopf run.",
    ["version", "python", "kopf"],
)
BUILD_INFO.labels(**build_info()).set(1)
