"""The benchmark harness's pure parts: percentiles, figures, ratios, table, JSON shape."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
from bench import stats
from bench.harness import BENCH_TAINT_KEY, bench_nodes
from bench.scenarios import agent_manifest, floor_pod, sim_annotations
from hypothesis import given
from hypothesis import strategies as st


def test_percentile_nearest_rank() -> None:
    values = [float(x) for x in range(1, 101)]  # 1..100
    assert stats.percentile(values, 50) == 50.0
    assert stats.percentile(values, 90) == 90.0
    assert stats.percentile(values, 99) == 99.0
    assert stats.percentile(values, 100) == 100.0
    assert stats.percentile([3.0, 1.0, 2.0], 50) == 2.0  # order does not matter
    assert stats.percentile([7.0], 99) == 7.0


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1.0], 0)
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)


@given(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1), st.floats(0.01, 100))
def test_percentile_is_a_sample_value_with_enough_below(values: list[float], p: float) -> None:
    q = stats.percentile(values, p)
    assert q in values
    assert sum(1 for v in values if v <= q) >= math.ceil(p / 100 * len(values))


def test_summarize() -> None:
    assert stats.summarize([]) is None
    summary = stats.summarize([1.0, 2.0, 3.0, 4.0])
    assert summary == {"count": 4, "p50": 2.0, "p90": 4.0, "p99": 4.0, "max": 4.0, "mean": 2.5}


def test_completion_curve_downsamples_and_keeps_the_end() -> None:
    times = [i / 10 for i in range(1000, 0, -1)]
    curve = stats.completion_curve(times, points=100)
    assert len(curve) <= 101
    assert curve[-1] == (100.0, 1000)
    assert [c for _, c in curve] == sorted({c for _, c in curve})
    assert stats.completion_curve([]) == []
    assert stats.completion_curve([2.0, 1.0]) == [(1.0, 1), (2.0, 2)]


def test_per_minute_groups_by_creation_time() -> None:
    pairs = [(5.0, 1.0), (30.0, 3.0), (65.0, 2.0), (119.0, 4.0)]
    assert stats.per_minute(pairs) == [
        {"window": 0, "start": 0.0, "count": 2, "p50": 1.0, "p99": 3.0},
        {"window": 1, "start": 60.0, "count": 2, "p50": 2.0, "p99": 4.0},
    ]


METRICS = """\
# HELP stockade_api_writes_total Write requests ...
# TYPE stockade_api_writes_total counter
stockade_api_writes_total{code="2xx",resource="pods",verb="create"} 100.0
stockade_api_writes_total{code="409",resource="pods",verb="create"} 2.0
stockade_api_writes_total{code="2xx",resource="agents/status",verb="patch"} 250.0
stockade_api_writes_total{code="2xx",resource="events",verb="create"} 300.0
stockade_reconcile_duration_seconds_count 412.0
stockade_agents{namespace="a",phase="Running"} 60.0
stockade_agents{namespace="a",phase="Pending"} 40.0
"""


def test_parse_writes_sums_outcomes_by_verb_and_resource() -> None:
    assert stats.parse_writes(METRICS) == {
        "create pods": 102.0,
        "patch agents/status": 250.0,
        "create events": 300.0,
    }
    assert stats.parse_writes("") == {}


def test_sample_value_sums_labelled_samples() -> None:
    assert stats.sample_value(METRICS, "stockade_agents") == 100.0
    assert stats.sample_value(METRICS, "stockade_reconcile_duration_seconds_count") == 412.0
    assert stats.sample_value(METRICS, "stockade_missing") == 0.0


def test_writes_per_agent_and_without_events() -> None:
    before = {"create pods": 2.0}
    writes = stats.diff_counts(stats.parse_writes(METRICS), before)
    assert writes["create pods"] == 100.0
    assert stats.per_agent(writes, 100) == {
        "create events": 3.0,
        "create pods": 1.0,
        "patch agents/status": 2.5,
    }
    assert stats.writes_excluding_events(writes) == 350.0
    assert stats.diff_counts({"a": 1.0}, {"a": 1.0}) == {}


def test_ratios_against_the_floor() -> None:
    stockade = {"all_running_seconds": 30.6, "running": {"p50": 24.5, "p90": 25.0, "p99": 25.9}}
    floor = {"all_running_seconds": 18.1, "running": {"p50": 5.0, "p90": 0.0, "p99": 13.7}}
    assert stats.ratios(stockade, floor) == {
        "all_running_seconds": 1.69,
        "all_finished_seconds": None,  # neither side has it
        "running.p50": 4.9,
        "running.p90": None,  # a zero floor has no ratio
        "running.p99": 1.89,
    }
    assert stats.ratio(1.0, None) is None


def test_cpu_ratios_compare_sessions_with_the_plain_burst() -> None:
    def scenario(name: str, cpu: float) -> dict[str, Any]:
        return {"name": name, "stockade": {"operator": {"cpu_seconds": cpu}}}

    run = [scenario("burst-fixed", 20.0), scenario("session-one", 50.0), scenario("restart", 1)]
    assert stats.cpu_ratios(run) == {"session-one": {"operator CPU / burst-fixed's": 2.5}}
    assert stats.cpu_ratios(run[1:]) == {}


def figures(running: float, operator: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "agents": 2,
        "created_seconds": 0.1,
        "all_running_seconds": running,
        "all_finished_seconds": None,
        "running": stats.summarize([running / 2, running]),
        "latencies": [running / 2, running],
        "curve": [(running / 2, 1), (running, 2)],
    }
    if operator:
        out["operator"] = {
            "cpu_seconds": 0.04,
            "cpu_ms_per_agent": 20.0,
            "peak_rss_mib": 120.0,
            "writes_per_agent": {"create pods": 1.0, "create events": 3.0},
            "writes_per_agent_excluding_events": 3.0,
            "events_per_agent": 3.0,
        }
    return out


def result() -> dict[str, Any]:
    stockade, floor = figures(4.0, True), figures(2.0, False)
    return {
        "schema": stats.SCHEMA_VERSION,
        "started": "2026-11-21T23:00:00Z",
        "finished": "2026-11-21T23:05:00Z",
        "git": {"commit": "0123456789abcdef", "dirty": False},
        "machine": {
            "cores": 2,
            "memory_mib": 24000,
            "loadavg_start": [1.0, 2.0, 3.0],
            "loadavg_end": [1.5, 2.0, 3.0],
            "python": "3.11.9",
            "kernel": "6.1",
        },
        "options": {"agents": 2, "concurrency": 32},
        "scenarios": [
            {
                "name": "burst-forever",
                "description": "2 Agents at once",
                "stockade": stockade,
                "floor": floor,
                "ratios": stats.ratios(stockade, floor),
                "extra": {},
            },
            {
                "name": "restart",
                "description": "kill it",
                "stockade": figures(1.0, True),
                "floor": None,
                "ratios": {},
                "extra": {"writes after restart": 0.0},
            },
        ],
        "failed": {"steady": "TimeoutError: nodes not Ready"},
    }


def test_result_shape_is_checked() -> None:
    good = result()
    assert stats.check_result(good) == []
    assert stats.check_result(json.loads(json.dumps(good))) == []  # survives JSON
    bad = copy.deepcopy(good)
    del bad["machine"]["loadavg_start"]
    del bad["scenarios"][0]["stockade"]["operator"]
    del bad["scenarios"][1]["stockade"]["running"]
    bad["schema"] = 0
    assert stats.check_result(bad) == [
        f"schema 0 != {stats.SCHEMA_VERSION}",
        "missing machine.loadavg_start",
        "scenarios[0].stockade: missing operator",
        "scenarios[1].stockade: missing running",
    ]
    assert stats.check_result({}) == [f"missing {k}" for k in stats.REQUIRED_TOP]


def test_markdown_table() -> None:
    text = stats.markdown(result())
    assert "| all Running after (s) | 2.00 | 4.00 | 2.00x |" in text
    assert "| create-to-Running p50 (s) | 1.00 | 2.00 | 2.00x |" in text
    assert "| operator CPU per agent (ms) | - | 20.0 | |" in text
    assert "all finished" not in text  # neither side finished: no row
    assert "## restart: kill it" in text
    assert "| writes after restart | 0.00 |" in text
    assert "create pods: 1.00; create events: 3.00." in text
    assert "load average at start 1.00 / 2.00 / 3.00" in text
    assert "## steady: FAILED\n\nTimeoutError: nodes not Ready" in text


def test_sim_annotations() -> None:
    assert sim_annotations(None) == {}
    assert sim_annotations(10.0) == {
        "sim.stockade.dev/exit-code": "0",
        "sim.stockade.dev/exit-after": "10s",
    }


def test_floor_pod_is_the_operators_pod_without_an_owner() -> None:
    agent = agent_manifest("a00001", "ns", 10.0)
    pod = floor_pod(agent)
    assert pod["kind"] == "Pod"
    assert pod["metadata"]["name"] == "a00001-1"
    assert pod["metadata"]["namespace"] == "ns"
    assert "ownerReferences" not in pod["metadata"]
    assert pod["metadata"]["labels"]["stockade.dev/agent"] == "a00001"
    assert pod["metadata"]["annotations"] == sim_annotations(10.0)
    assert pod["spec"]["runtimeClassName"] == "gvisor"
    assert pod["spec"]["tolerations"][0]["key"] == BENCH_TAINT_KEY
    container = pod["spec"]["containers"][0]
    assert container["resources"]["requests"]["cpu"] == "250m"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_bench_nodes() -> None:
    nodes = bench_nodes(15, pods=400, cpu=400, memory_gi=800)
    assert [n["metadata"]["name"] for n in nodes] == [f"bench-node-{i}" for i in range(15)]
    assert sum(int(n["status"]["capacity"]["pods"]) for n in nodes) >= 5000
    for node in nodes:
        assert node["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"}
        assert node["spec"]["taints"][0]["key"] == BENCH_TAINT_KEY
