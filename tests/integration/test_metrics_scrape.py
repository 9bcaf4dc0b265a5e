"""Scrape vs reality: the operator's /metrics after a known mix of Agents.

The suite's operator is restarted first (its counters start at zero), then runs one
Agent that succeeds, one that fails, one that fails after a retry, one that exceeds its
deadline and one created suspended. The scrape must hold every metric the dashboard and
the chart's alerts query, counters equal to what happened, and the gauges equal to the
Agents' phases; after another restart the gauges are equal again (they are recomputed
from the watched state). The scrapes are saved to .cache/monitoring/scrapes.json for the
picture in docs/operate.md (tests/monitoring/picture.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, cast

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.cluster import REPO_ROOT, SIM_EXIT_AFTER, SIM_EXIT_CODE, wait_for
from tests.integration.helm import Helm, by_kind
from tests.integration.operator import GROUP, PLURAL, VERSION, Agents, OperatorProcess
from tests.monitoring import dashboard

pytestmark = pytest.mark.integration

IMAGE = "registry.example/agent:1.0"
SCRAPES = REPO_ROOT / ".cache" / "monitoring" / "scrapes.json"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[set[str], Samples]:
    """The metric family names (counters with ``_total`` too) and every sample."""
    families, samples = set(), {}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        if family.type == "counter":
            families.add(f"{family.name}_total")
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def alert_metric_names() -> set[str]:
    import re

    (rule,) = by_kind(Helm().render({"metrics.prometheusRule.enabled": True}), "PrometheusRule")
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    return {name for expr in exprs for name in re.findall(r"\bstockade_[a-z_]+", expr)}


def spec(exit_code: int | None = None, **fields: object) -> dict[str, object]:
    body: dict[str, object] = {"image": IMAGE, **fields}
    if exit_code is not None:
        body["podMetadata"] = {
            "annotations": {SIM_EXIT_CODE: str(exit_code), SIM_EXIT_AFTER: "500ms"}
        }
    return body


def phase_gauges(samples: Samples, namespace: str) -> dict[str, float]:
    return {
        dict(labels)["phase"]: v
        for (name, labels), v in samples.items()
        if name == "stockade_agents" and dict(labels)["namespace"] == namespace and v
    }


def save(scrapes: Iterable[tuple[float, str]]) -> None:
    SCRAPES.parent.mkdir(parents=True, exist_ok=True)
    SCRAPES.write_text(json.dumps([{"time": t, "text": text} for t, text in scrapes]))


def others_settled(agents: Agents) -> bool:
    """No Agent outside this test's namespace has a pod that may still end.

    The counters carry no namespace: an earlier test's Agent still Running while its
    namespace is deleted in the background loses its pod (PodLost), counted here.
    """
    listed = cast(dict[str, Any], agents.api.list_cluster_custom_object(GROUP, VERSION, PLURAL))
    return not [
        a
        for a in listed["items"]
        if a["metadata"]["namespace"] != agents.namespace
        and (a.get("status") or {}).get("phase") in ("Starting", "Running")
    ]


@pytest.mark.timeout(600)
def test_scrape_matches_what_happened(agents: Agents, stockade_operator: OperatorProcess) -> None:
    wait_for(lambda: others_settled(agents), timeout=180, what="earlier tests' Agents settled")
    stockade_operator.restart()
    scrapes: list[tuple[float, str]] = [(time.time(), stockade_operator.metrics())]
    agents.create("ok", spec(0))
    agents.create("fails", spec(3))
    agents.create("retried", spec(1, restartPolicy="OnFailure", backoffLimit=1))
    agents.create("slow", spec(activeDeadlineSeconds=5))
    agents.create("paused", spec(suspend=True))
    expected = {
        "ok": "Succeeded",
        "fails": "Failed",
        "retried": "Failed",
        "slow": "Failed",
        "paused": "Paused",
    }

    def settled() -> bool:
        scrapes.append((time.time(), stockade_operator.metrics()))
        return all(agents.status(n).get("phase") == p for n, p in expected.items())

    wait_for(settled, timeout=180, interval=1.0, what=f"Agents in {expected}")
    reasons = {n: agents.status(n).get("reason") for n in expected}
    assert reasons["fails"] == "Error"
    assert reasons["retried"] == "BackoffLimitExceeded"
    assert reasons["slow"] == "DeadlineExceeded"
    want_gauges = {"Succeeded": 1.0, "Failed": 3.0, "Paused": 1.0}

    def gauges_follow() -> Samples | None:
        text = stockade_operator.metrics()
        scrapes.append((time.time(), text))
        _, samples = parse(text)
        return samples if phase_gauges(samples, agents.namespace) == want_gauges else None

    samples = wait_for(gauges_follow, timeout=30, what=f"stockade_agents == {want_gauges}")
    families, _ = parse(scrapes[-1][1])

    # Every metric the dashboard and the alerts query is exported.
    assert dashboard.metric_names() - families == set()
    assert alert_metric_names() - families == set()

    # Counters equal what happened: what the Agents' status.history records (the
    # operator's counters started at zero). Under load the deadline Agent may fail while
    # still Starting: the history tells, and the metrics must agree with it.
    histories = {n: agents.status(n).get("history") or [] for n in expected}
    steps = [(h.get("from", ""), h["to"]) for hist in histories.values() for h in hist]
    failures = {
        dict(labels)["reason"]: v
        for (name, labels), v in samples.items()
        if name == "stockade_agent_failures_total"
    }
    assert failures == {"Error": 1.0, "BackoffLimitExceeded": 1.0, "DeadlineExceeded": 1.0}
    attempts = {n: int(agents.status(n).get("attempts") or 0) for n in expected}
    assert attempts["retried"] == 2
    retries = sum(max(a - 1, 0) for a in attempts.values())
    assert value(samples, "stockade_agent_retries_total") == retries == 1
    for phase in ("Pending", "Starting", "Running", "Succeeded", "Failed", "Paused"):
        happened = sum(1 for _, to in steps if to == phase)
        scraped = value(samples, "stockade_agent_transitions_total", to_phase=phase)
        assert scraped == happened, (phase, histories)
    ran = [n for n, hist in histories.items() if any(h["to"] == "Running" for h in hist)]
    admitted = [n for n, hist in histories.items() if any(h["to"] == "Starting" for h in hist)]
    assert len(admitted) == 4
    assert value(samples, "stockade_agent_admission_wait_seconds_count") == len(admitted)
    assert value(samples, "stockade_agent_create_to_running_seconds_count") == len(ran)
    for final in ("Succeeded", "Failed"):
        ended = sum(1 for step in steps if step == ("Running", final))
        count = value(samples, "stockade_agent_run_duration_seconds_count", phase=final)
        assert count == ended, (final, histories)
    assert value(samples, "stockade_agent_invalid_transitions_total") == 0.0
    assert value(samples, "stockade_watch_events_total", resource="agents") > 0
    assert value(samples, "stockade_watch_events_total", resource="pods") > 0
    assert value(samples, "stockade_build_info") == 1.0
    age = value(
        samples, "stockade_agent_phase_oldest_seconds", namespace=agents.namespace, phase="Paused"
    )
    assert age >= 0.0
    assert ("stockade_workqueue_depth", (("queue", "agents"),)) in samples

    def resynced() -> bool:
        _, now = parse(stockade_operator.metrics())
        return value(now, "stockade_resync_last_success_timestamp_seconds") > 0

    wait_for(resynced, timeout=30, what="a successful resync")

    # After a restart the gauges are equal again, the counters start over.
    stockade_operator.restart()

    after = wait_for(gauges_follow, timeout=90, what=f"stockade_agents == {want_gauges} again")
    assert value(after, "stockade_agent_failures_total") == 0.0
    assert value(after, "stockade_agent_transitions_total") == 0.0
    paused_age = value(
        after, "stockade_agent_phase_oldest_seconds", namespace=agents.namespace, phase="Paused"
    )
    assert paused_age >= age  # from status.history: the same clock, not the restart
    save(scrapes)
