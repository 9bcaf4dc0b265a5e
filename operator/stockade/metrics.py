"""Prometheus metrics: the one place they are defined (prometheus-client's registry).

Names follow Prometheus conventions (https://prometheus.io/docs/practices/naming/):
``stockade_`` prefix, base units (seconds), ``_total`` for counters.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import Counter, Histogram
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
API_WRITES = Counter(
    "stockade_api_writes_total",
    "Write requests the operator sent to the API server, by verb, resource and outcome.",
    ["verb", "resource", "code"],
)


class AgentPhaseCollector(Collector):
    """``stockade_agents{namespace, phase}``: Agents by phase, read at scrape time.

    `snapshot` returns ``(namespace, phase)`` pairs for every known Agent; the collector
    keeps no state of its own.
    """

    def __init__(self, snapshot: Callable[[], Iterable[tuple[str, str]]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the gauge family (one sample per namespace and phase)."""
        family = GaugeMetricFamily(
            "stockade_agents", "Agents by namespace and phase.", labels=["namespace", "phase"]
        )
        for (namespace, phase), count in sorted(Tally(self._snapshot()).items()):
            family.add_metric([namespace, phase], count)
        yield family


def register_agent_gauge(snapshot: Callable[[], Iterable[tuple[str, str]]]) -> Collector:
    """Register the ``stockade_agents`` collector (once per process) and return it."""
    collector = AgentPhaseCollector(snapshot)
    REGISTRY.register(collector)
    return collector
