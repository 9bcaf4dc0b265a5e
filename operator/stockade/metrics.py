"""Prometheus metrics: the one place they are defined (prometheus-client's registry).

Names follow Prometheus conventions (https://prometheus.io/docs/practices/naming/):
``stockade_`` prefix, base units (seconds), ``_total`` for counters.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping

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
    "stockade_session_admission_wait_seconds",
    "Time from a session member's creation to its admission.",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
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


def register_gauges(
    agents: Callable[[], Iterable[tuple[str, str]]],
    sessions: Callable[[], Iterable[tuple[str, str]]],
    budgets: Callable[[], Mapping[tuple[str, str, str], float]],
) -> None:
    """Register ``stockade_agents``, ``stockade_sessions`` and the budget gauge (once)."""
    REGISTRY.register(PhaseCollector("stockade_agents", "Agents by namespace and phase.", agents))
    REGISTRY.register(
        PhaseCollector("stockade_sessions", "AgentSessions by namespace and phase.", sessions)
    )
    REGISTRY.register(BudgetCollector(budgets))
