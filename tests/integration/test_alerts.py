"""The chart's alerts, checked by the real Prometheus rule engine (promtool).

The rules are rendered from the chart (helm/stockade/templates/prometheusrule.yaml, the
one source of truth) with the pinned helm, and handed to the pinned promtool
(`make promtool` builds it into the cache; `make test` does so before pytest):
``promtool check rules`` on them, then ``promtool test rules`` with input series for
which each alert fires, and series for which it stays quiet. Every alert of the chart
must have both cases. No cluster is needed.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.cluster import HACK
from tests.integration.helm import Helm, by_kind

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

NS = "stockade-system"
JOB = "stockade-metrics"
TARGET = f'job="{JOB}",namespace="{NS}",instance="10.0.0.7:8080"'
"""The target labels the chart's ServiceMonitor gives the operator's series."""
AGENTS_TARGET = f'job="{JOB}",instance="10.0.0.7:8080"'
"""The same for a series with its own ``namespace`` (the Agents'; honorLabels keeps it)."""


def series(name: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": values}


# alert -> (labels it fires with (besides severity), series that fire it, series that do not)
# at EVAL; every series is scraped once a minute.
EVAL = "90m"
CASES: dict[str, tuple[dict[str, str], list[dict[str, str]], list[dict[str, str]]]] = {
    "StockadeOperatorDown": (
        {},  # absent() of a comparison carries no labels
        [series("up", TARGET, "0x100")],
        [series("up", TARGET, "1x100")],
    ),
    "StockadeInvalidTransition": (
        {},
        [
            series(
                "stockade_agent_invalid_transitions_total",
                f'{TARGET},from_phase="Succeeded",to_phase="Running"',
                "0x85 1x15",
            )
        ],
        [
            series(
                "stockade_agent_invalid_transitions_total",
                f'{TARGET},from_phase="Succeeded",to_phase="Running"',
                "0x5 1x95",  # once, long ago
            )
        ],
    ),
    "StockadeReconcileErrors": (
        {},
        [series("stockade_reconcile_errors_total", TARGET, "0+6x100")],  # 0.1/s
        [series("stockade_reconcile_errors_total", TARGET, "0+1x100")],  # 0.017/s
    ),
    "StockadeAgentsFailing": (
        {"namespace": NS, "reason": "Error"},
        [
            series(
                "stockade_agent_transitions_total",
                f'{TARGET},from_phase="Running",to_phase="Failed",reason="Error"',
                "0x85 1x15",
            )
        ],
        [
            series(
                "stockade_agent_transitions_total",
                f'{TARGET},from_phase="Running",to_phase="Succeeded",reason="Completed"',
                "0+1x100",
            )
        ],
    ),
    "StockadeAgentFailureRatio": (
        {},
        [  # 3 of 4 finished fail
            series("stockade_agent_failures_total", f'{TARGET},reason="Error"', "0+3x100"),
            series(
                "stockade_agent_transitions_total",
                f'{TARGET},from_phase="Running",to_phase="Failed",reason="Error"',
                "0+3x100",
            ),
            series(
                "stockade_agent_transitions_total",
                f'{TARGET},from_phase="Running",to_phase="Succeeded",reason="Completed"',
                "0+1x100",
            ),
        ],
        [  # all fail, but only 2 finished in the hour: too few to judge
            series("stockade_agent_failures_total", f'{TARGET},reason="Error"', "0x60 1x30 2x10"),
            series(
                "stockade_agent_transitions_total",
                f'{TARGET},from_phase="Running",to_phase="Failed",reason="Error"',
                "0x60 1x30 2x10",
            ),
        ],
    ),
    "StockadeAgentStuckPending": (
        {"namespace": "team-a"},
        [
            series(
                "stockade_agent_phase_oldest_seconds",
                f'{AGENTS_TARGET},namespace="team-a",phase="Pending"',
                "0+60x100",  # the same Agent, waiting since the start
            )
        ],
        [  # Agents come and go; none waits long
            series(
                "stockade_agent_phase_oldest_seconds",
                f'{AGENTS_TARGET},namespace="team-a",phase="Pending"',
                "30x100",
            ),
            series(
                "stockade_agent_phase_oldest_seconds",
                f'{AGENTS_TARGET},namespace="team-a",phase="Running"',
                "0+60x100",
            ),
        ],
    ),
    "StockadeAgentStuckStarting": (
        {"namespace": "team-b"},
        [
            series(
                "stockade_agent_phase_oldest_seconds",
                f'{AGENTS_TARGET},namespace="team-b",phase="Starting"',
                "0+60x100",
            )
        ],
        [
            series(
                "stockade_agent_phase_oldest_seconds",
                f'{AGENTS_TARGET},namespace="team-b",phase="Starting"',
                "0+60x10 5x90",  # it started after 10 minutes; a new one is starting
            )
        ],
    ),
    "StockadeQueueBacklog": (
        {"namespace": NS, "queue": "agents"},
        [series("stockade_workqueue_oldest_seconds", f'{TARGET},queue="agents"', "0x80 120x20")],
        [series("stockade_workqueue_oldest_seconds", f'{TARGET},queue="agents"', "2x100")],
    ),
    "StockadeWatchMissedEvents": (
        {},
        [series("stockade_index_ghosts_total", TARGET, "0x80 1x20")],
        [series("stockade_index_ghosts_total", TARGET, "0x100")],
    ),
    "StockadeAdmissionPolicyUntrusted": (
        {"namespace": NS, "reason": "policy-changed"},
        [
            series(
                "stockade_admission_policy_problem",
                f'{TARGET},reason="policy-changed"',
                "0x80 1x20",
            )
        ],
        [  # fixed after a few minutes; admissionPolicy.enabled=false is no fault
            series(
                "stockade_admission_policy_problem",
                f'{TARGET},reason="policy-changed"',
                "0x80 1x3 0x17",
            ),
            series("stockade_admission_policy_problem", f'{TARGET},reason="unconfigured"', "1x100"),
        ],
    ),
    "StockadeResyncStalled": (
        {"namespace": NS},
        # The last success at 10m (Unix time 600 in promtool's clock), then none.
        [series("stockade_resync_last_success_timestamp_seconds", TARGET, "0x10 600x90")],
        # A success every 5 minutes.
        [
            series(
                "stockade_resync_last_success_timestamp_seconds",
                TARGET,
                " ".join(str(300 * (m // 5)) for m in range(101)),
            )
        ],
    ),
}


@pytest.fixture(scope="module")
def promtool() -> str:
    """The pinned promtool from the cache (``make promtool`` builds it; tests do not)."""
    result = subprocess.run(
        ["bash", str(HACK / "promtool.sh")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def rule_groups() -> dict[str, Any]:
    """The PrometheusRule's spec (``groups``) as the chart renders it by default."""
    objects = Helm().render({"metrics.prometheusRule.enabled": True}, namespace=NS)
    (rule,) = by_kind(objects, "PrometheusRule")
    return dict(rule["spec"])


@pytest.fixture()
def rules_file(tmp_path: Path, rule_groups: dict[str, Any]) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule_groups))
    return path


def alerts_of(groups: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups["groups"] for r in g["rules"] if "alert" in r}


def test_promtool_checks_the_rendered_rules(promtool: str, rules_file: Path) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case(rule_groups: dict[str, Any]) -> None:
    assert set(alerts_of(rule_groups)) == set(CASES)


def unit_test(rules_file: Path, alert: str, inputs: list[dict[str, str]], fires: bool) -> str:
    """A promtool unit-test file: `alert` under `inputs` at EVAL, expected firing or not."""
    labels, _, _ = CASES[alert]
    rule = alerts_of(yaml.safe_load(rules_file.read_text()))[alert]
    expected: list[dict[str, Any]] = []
    if fires:
        expected = [{"exp_labels": {**labels, "severity": rule["labels"]["severity"]}}]
    return yaml.safe_dump(
        {
            "rule_files": [str(rules_file)],
            "evaluation_interval": "1m",
            "tests": [
                {
                    "interval": "1m",
                    "input_series": inputs,
                    "alert_rule_test": [
                        {"eval_time": EVAL, "alertname": alert, "exp_alerts": expected}
                    ],
                }
            ],
        }
    )


@pytest.fixture()
def rules_without_annotations(tmp_path: Path, rule_groups: dict[str, Any]) -> Path:
    """The rules with their annotations removed, for ``promtool test rules``.

    promtool compares annotations as well as labels; the annotation templates are
    checked by ``promtool check rules`` (above), the unit tests check when each alert
    fires and with which labels.
    """
    groups = copy.deepcopy(rule_groups)
    for group in groups["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path = tmp_path / "rules-for-tests.yaml"
    path.write_text(yaml.safe_dump(groups))
    return path


@pytest.mark.parametrize("fires", [True, False], ids=["fires", "quiet"])
@pytest.mark.parametrize("alert", sorted(CASES))
def test_promtool_unit_tests_each_alert(
    promtool: str, rules_without_annotations: Path, tmp_path: Path, alert: str, fires: bool
) -> None:
    _, firing, quiet = CASES[alert]
    path = tmp_path / f"{alert}.test.yaml"
    path.write_text(unit_test(rules_without_annotations, alert, firing if fires else quiet, fires))
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
