"""The Grafana dashboard: generated from tests/monitoring/dashboard.py, querying real metrics."""

from __future__ import annotations

import json

from prometheus_client import REGISTRY, CollectorRegistry

from stockade.runtime import metrics
from tests.monitoring import dashboard


def defined_metric_names() -> set[str]:
    """Every metric family stockade.runtime.metrics defines (counters also with ``_total``)."""
    registry = CollectorRegistry()
    registry.register(metrics.PhaseCollector("stockade_agents", "", list))
    registry.register(metrics.PhaseCollector("stockade_sessions", "", list))
    registry.register(metrics.BudgetCollector(dict))
    registry.register(metrics.QueueCollector(dict))
    registry.register(metrics.PhaseAgeCollector(list))
    families = [*REGISTRY.collect(), *registry.collect()]
    names = {family.name for family in families}
    names |= {f"{family.name}_total" for family in families if family.type == "counter"}
    return {name for name in names if name.startswith("stockade_")}


def test_the_committed_dashboard_is_the_generated_one() -> None:
    text = dashboard.render()
    for path in dashboard.OUTPUTS:
        assert path.read_text() == text, f"{path} is stale: run `make dashboard`"


def test_every_metric_the_dashboard_queries_is_defined() -> None:
    used = dashboard.metric_names()
    assert used - defined_metric_names() == set()
    # The panels the issue asks for read these.
    for name in (
        "stockade_agents",
        "stockade_agent_create_to_running_seconds",
        "stockade_agent_failures_total",
        "stockade_agent_admission_wait_seconds",
        "stockade_session_budget_usage_ratio",
        "stockade_reconcile_duration_seconds",
        "stockade_reconcile_errors_total",
        "stockade_workqueue_depth",
    ):
        assert name in used


def test_panels_are_valid_grafana_time_series_with_a_datasource_variable() -> None:
    board = json.loads(dashboard.render())
    assert board["uid"] == dashboard.UID
    variables = board["templating"]["list"]
    assert [(v["name"], v["type"], v["query"]) for v in variables] == [
        ("datasource", "datasource", "prometheus")
    ]
    positions = set()
    for panel in board["panels"]:
        assert panel["type"] == "timeseries"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])
        grid = panel["gridPos"]
        positions.add((grid["x"], grid["y"]))
    assert len(positions) == len(board["panels"])  # no two panels overlap
