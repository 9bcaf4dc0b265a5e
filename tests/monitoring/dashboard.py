"""Stockade's Grafana dashboard, built with grafana-foundation-sdk (a dev dependency).

``python -m tests.monitoring.dashboard`` (``make dashboard``) writes
manifests/monitoring/stockade-dashboard.json and the same file into the chart
(helm/stockade/dashboards/stockade.json), which ships it as a ConfigMap for Grafana's
dashboard sidecar (helm/stockade/templates/dashboard.yaml, ``dashboard.enabled``).
tests/monitoring/test_dashboard.py fails when the committed JSON drifts from this file.

:data:`PANELS` is the one list of panels: a title, a unit and PromQL queries (with their
legends) over the metrics of :mod:`stockade.runtime.metrics`. The docs' picture is drawn from
the same list (tests/monitoring/picture.py).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, timeseries
from grafana_foundation_sdk.builders.common import StackingConfig
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import StackingMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = (
    ROOT / "manifests" / "monitoring" / "stockade-dashboard.json",
    ROOT / "helm" / "stockade" / "dashboards" / "stockade.json",
)
"""Where the JSON goes: for any Grafana, and into the chart (Helm reads only its own files)."""
UID = "stockade-operator"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Panel:
    """One time-series panel: `queries` are ``(PromQL, legend)``; `unit` is Grafana's."""

    title: str
    description: str
    unit: str
    queries: tuple[tuple[str, str], ...]
    stacked: bool = False


def quantiles(metric: str, by: str = "") -> tuple[tuple[str, str], ...]:
    """p50, p90 and p99 of histogram `metric` (seconds), optionally by label `by`."""
    labels = f"le, {by}" if by else "le"
    legend_by = f"{{{{{by}}}}} " if by else ""
    return tuple(
        (
            f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket[{RATE}])))",
            f"{legend_by}p{round(q * 100)}",
        )
        for q in (0.5, 0.9, 0.99)
    )


PANELS: tuple[Panel, ...] = (
    Panel(
        "Agents by phase",
        "Agents the operator knows, by phase (stockade_agents, read from the watched state).",
        "short",
        (("sum by (phase) (stockade_agents)", "{{phase}}"),),
        stacked=True,
    ),
    Panel(
        "Startup latency (creation to Running)",
        "Percentiles of stockade_agent_create_to_running_seconds: admission, pod creation,"
        " image pull and sandbox start.",
        "s",
        quantiles("stockade_agent_create_to_running_seconds"),
    ),
    Panel(
        "Failures by reason",
        "Agents that went to Failed, per reason, per 5 minutes (stockade_agent_failures_total).",
        "short",
        (("sum by (reason) (increase(stockade_agent_failures_total[5m]))", "{{reason}}"),),
        stacked=True,
    ),
    Panel(
        "Admission wait",
        "Creation to admission (stockade_agent_admission_wait_seconds): long for session"
        " members waiting for a slot or budget.",
        "s",
        quantiles("stockade_agent_admission_wait_seconds"),
    ),
    Panel(
        "Run time by final phase",
        "Start to end of the Agents that ran (stockade_agent_run_duration_seconds).",
        "s",
        quantiles("stockade_agent_run_duration_seconds", by="phase"),
    ),
    Panel(
        "Session budget usage",
        "Requests of each session's admitted agents over its budget, per resource.",
        "percentunit",
        (
            (
                "max by (namespace, session, resource) (stockade_session_budget_usage_ratio)",
                "{{namespace}}/{{session}} {{resource}}",
            ),
        ),
    ),
    Panel(
        "Reconcile latency and errors",
        "Percentiles of one Agent reconcile (stockade_reconcile_duration_seconds) and"
        " failed reconciles per second.",
        "s",
        (
            *quantiles("stockade_reconcile_duration_seconds")[::2],
            ("sum(rate(stockade_reconcile_errors_total[" + RATE + "]))", "errors/s"),
        ),
    ),
    Panel(
        "Queue depth and oldest key",
        "Keys waiting for their reconcile (stockade_workqueue_depth) and how long the"
        " oldest has waited (stockade_workqueue_oldest_seconds), per queue.",
        "short",
        (
            ("max by (queue) (stockade_workqueue_depth)", "{{queue}} depth"),
            ("max by (queue) (stockade_workqueue_oldest_seconds)", "{{queue}} oldest (s)"),
        ),
    ),
    Panel(
        "Retries and transitions",
        "Retried attempts and phase transitions per second.",
        "ops",
        (
            ("sum(rate(stockade_agent_retries_total[" + RATE + "]))", "retries"),
            (
                "sum by (to_phase) (rate(stockade_agent_transitions_total[" + RATE + "]))",
                "to {{to_phase}}",
            ),
        ),
    ),
    Panel(
        "Oldest Agent per phase",
        "How long the Agent longest in Pending, Starting, Running or Paused has been in it"
        " (stockade_agent_phase_oldest_seconds): the stuck-Agent alerts read it.",
        "s",
        (("max by (phase) (stockade_agent_phase_oldest_seconds)", "{{phase}}"),),
    ),
    Panel(
        "Watch streams",
        "Watch events per second by resource, and seconds since the last event and the"
        " last successful resync LIST.",
        "short",
        (
            (
                "sum by (resource) (rate(stockade_watch_events_total[" + RATE + "]))",
                "{{resource}} events/s",
            ),
            (
                "time() - max(stockade_resync_last_success_timestamp_seconds)",
                "since last resync (s)",
            ),
        ),
    ),
    Panel(
        "Sessions by phase",
        "AgentSessions by phase (stockade_sessions); the leader (stockade_leader).",
        "short",
        (
            ("sum by (phase) (stockade_sessions)", "{{phase}}"),
            ("max(stockade_leader)", "leader"),
            ("count by (version) (stockade_build_info)", "version {{version}}"),
        ),
    ),
)


def metric_names() -> set[str]:
    """Every ``stockade_*`` metric family the panels query (histograms without suffix)."""
    names: set[str] = set()
    for panel in PANELS:
        for expr, _ in panel.queries:
            for name in re.findall(r"\bstockade_[a-z_]+", expr):
                names.add(re.sub(r"_(bucket|count|sum)$", "", name))
    return names


def build() -> dict[str, object]:
    """The dashboard as a JSON-ready dict (Grafana's dashboard model, schema v1)."""
    board = (
        dashboard.Dashboard("Stockade")
        .uid(UID)
        .tags(["stockade", "kubernetes", "operator"])
        .description("Stockade operator: Agents, sessions, latency, failures, queues, watches.")
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
    )
    for index, panel in enumerate(PANELS):
        chart = (
            timeseries.Panel()
            .title(panel.title)
            .description(panel.description)
            .unit(panel.unit)
            .datasource(DATASOURCE)
            .grid_pos(GridPos(h=8, w=12, x=12 * (index % 2), y=8 * (index // 2)))
        )
        if panel.stacked:
            chart = chart.stacking(StackingConfig().mode(StackingMode.NORMAL)).fill_opacity(40)
        for ref, (expr, legend) in zip("ABCDEFGH", panel.queries, strict=False):
            chart = chart.with_target(
                prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)
            )
        board = board.with_panel(chart)
    encoded = json.dumps(board.build(), cls=JSONEncoder, sort_keys=True)
    result: dict[str, object] = json.loads(encoded)
    return result


def render() -> str:
    """The committed file's text: :func:`build`, indented, with a final newline."""
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    """Write :data:`OUTPUTS`; with ``--check``, exit 1 when one differs instead."""
    text = render()
    if "--check" in sys.argv[1:]:
        return 0 if all(path.read_text() == text for path in OUTPUTS) else 1
    for path in OUTPUTS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
