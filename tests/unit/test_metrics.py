"""The pure parts of stockade.runtime.metrics: what a written decision adds, queue samples."""

from __future__ import annotations

import asyncio
import platform
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from stockade.runtime import metrics
from stockade.runtime.workqueue import WorkQueue

T0 = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Step:
    from_phase: str | None
    to_phase: str
    reason: str


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rfc(seconds: float) -> str:
    return at(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def names(triples: list[tuple[str, tuple[str, ...], float]]) -> list[str]:
    return [name for name, _, _ in triples]


def test_a_new_agent_admitted_at_once_records_its_admission_wait() -> None:
    steps = [Step(None, "Pending", "Created"), Step("Pending", "Starting", "PodCreated")]
    out = metrics.observations(steps, {}, {"attempts": 1}, T0, at(2.5))
    assert ("admission_wait", (), 2.5) in out
    assert ("transitions", ("", "Pending", "Created"), 1.0) in out
    assert ("transitions", ("Pending", "Starting", "PodCreated"), 1.0) in out
    assert "retries" not in names(out)


def test_a_resumed_agent_is_not_admitted_again() -> None:
    steps = [Step("Pending", "Starting", "PodCreated")]
    out = metrics.observations(steps, {"attempts": 1}, {"attempts": 2}, T0, at(100))
    assert "admission_wait" not in names(out)


def test_first_running_records_create_to_running_but_a_retry_does_not() -> None:
    first = metrics.observations(
        [Step("Starting", "Running", "PodRunning")], {"attempts": 1}, {"attempts": 1}, T0, at(7)
    )
    assert ("create_to_running", (), 7.0) in first
    ran = {"attempts": 1, "history": [{"to": "Running"}, {"to": "Starting"}]}
    retry = metrics.observations(
        [Step("Starting", "Running", "PodRunning")], ran, {"attempts": 2}, T0, at(70)
    )
    assert "create_to_running" not in names(retry)
    # Seen late: the first run, its failure and the retry's run in one decision.
    steps = [
        Step("Starting", "Running", "PodRunning"),
        Step("Running", "Starting", "Error"),
        Step("Starting", "Running", "PodRunning"),
    ]
    late = metrics.observations(steps, {"attempts": 1}, {"attempts": 2}, T0, at(9))
    assert names(late).count("create_to_running") == 1


def test_the_end_of_a_run_records_its_duration_by_final_phase() -> None:
    status = {"startTime": rfc(10), "completionTime": rfc(40), "attempts": 1}
    done = metrics.observations([Step("Running", "Succeeded", "Completed")], {}, status, T0, at(50))
    assert ("run", ("Succeeded",), 30.0) in done
    assert "failures" not in names(done)


def test_a_failure_counts_by_reason_and_its_run_if_it_ran() -> None:
    status = {"startTime": rfc(0), "attempts": 1}
    out = metrics.observations(
        [Step("Running", "Failed", "DeadlineExceeded")], {}, status, T0, at(60)
    )
    assert ("failures", ("DeadlineExceeded",), 1.0) in out
    assert ("run", ("Failed",), 60.0) in out
    never_ran = metrics.observations(
        [Step("Starting", "Failed", "StartupTimeout")], {}, {"attempts": 1}, T0, at(60)
    )
    assert ("failures", ("StartupTimeout",), 1.0) in never_ran
    assert "run" not in names(never_ran)


def test_retries_are_the_attempts_created_beyond_the_first() -> None:
    assert metrics.observations([], {}, {"attempts": 1}, T0, at(1)) == []
    assert ("retries", (), 1.0) in metrics.observations(
        [], {"attempts": 1}, {"attempts": 2}, T0, at(1)
    )
    # Two observations' worth at once (the watch lagged): both count, once.
    assert ("retries", (), 2.0) in metrics.observations(
        [], {"attempts": 1}, {"attempts": 3}, T0, at(1)
    )
    assert metrics.observations([], {"attempts": 3}, {"attempts": 3}, T0, at(1)) == []


def test_record_applies_observations_to_the_registry() -> None:
    before = metrics.FAILURES.labels("OOMKilled")._value.get()
    metrics.record([("failures", ("OOMKilled",), 1.0)])
    assert metrics.FAILURES.labels("OOMKilled")._value.get() == before + 1


def test_queue_samples() -> None:
    assert metrics.queue_samples([], 100.0) == (0, 0.0)
    assert metrics.queue_samples([90.0, 95.0, 99.0], 100.0) == (3, 10.0)


class FakeQueue:
    def __init__(self, since: list[float], now: float) -> None:
        self.since, self.now = since, now

    def waiting_since(self) -> list[float]:
        return self.since

    def clock(self) -> float:
        return self.now


def test_queue_collector_exposes_depth_and_oldest_age_per_queue() -> None:
    registry = CollectorRegistry()
    queues: dict[str, Any] = {
        "agents": FakeQueue([1.0, 4.0], 11.0),
        "agentsessions": FakeQueue([], 11.0),
    }
    registry.register(metrics.QueueCollector(lambda: queues))
    text = generate_latest(registry).decode()
    assert 'stockade_workqueue_depth{queue="agents"} 2.0' in text
    assert 'stockade_workqueue_oldest_seconds{queue="agents"} 10.0' in text
    assert 'stockade_workqueue_depth{queue="agentsessions"} 0.0' in text


def test_build_info_names_the_running_versions() -> None:
    info = metrics.build_info()
    assert info["python"] == platform.python_version()
    assert info["version"] and info["kopf"] != "unknown"


def test_a_workqueue_reports_keys_waiting_until_their_run_starts() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        started: list[str] = []

        async def handler(key: str) -> None:
            started.append(key)
            await gate.wait()

        queue: WorkQueue[str] = WorkQueue(handler, concurrency=1)
        queue.poke("a")
        queue.poke("b")
        assert len(queue.waiting_since()) == 2  # neither has started
        await asyncio.sleep(0.05)
        assert started == ["a"]
        assert len(queue.waiting_since()) == 1  # b waits for the slot
        queue.poke("a")  # a changes again while it runs: waits for its next run
        assert len(queue.waiting_since()) == 2
        depth, age = metrics.queue_samples(queue.waiting_since(), queue.clock())
        assert depth == 2 and age >= 0.04
        queue.poke("a", delay=60)  # a timer is not a queued key
        assert len(queue.waiting_since()) == 2
        gate.set()
        await asyncio.sleep(0.05)
        assert queue.waiting_since() == []
        await queue.close()

    asyncio.run(scenario())


def test_watch_event_counts_and_stamps() -> None:
    before = metrics.WATCH_EVENTS.labels("agents")._value.get()
    metrics.watch_event("agents", now=1234.0)
    assert metrics.WATCH_EVENTS.labels("agents")._value.get() == before + 1
    assert metrics.WATCH_LAST_EVENT.labels("agents")._value.get() == 1234.0


def test_phase_entered_is_the_last_history_entry_into_the_phase() -> None:
    status = {
        "phase": "Starting",
        "history": [
            {"seq": 1, "to": "Pending", "time": rfc(0)},
            {"seq": 2, "from": "Pending", "to": "Starting", "time": rfc(5)},
            {"seq": 3, "from": "Starting", "to": "Running", "time": rfc(9)},
            {"seq": 4, "from": "Running", "to": "Starting", "time": rfc(30)},
        ],
    }
    assert metrics.phase_entered(status) == at(30).timestamp()
    assert metrics.phase_entered({"phase": "Pending"}, rfc(3)) == at(3).timestamp()
    assert metrics.phase_entered({}) is None


def test_phase_age_collector_reports_the_oldest_per_namespace_and_live_phase() -> None:
    registry = CollectorRegistry()
    samples = [
        ("a", "Pending", 100.0),
        ("a", "Pending", 40.0),
        ("a", "Starting", 90.0),
        ("b", "Pending", 95.0),
        ("a", "Succeeded", 0.0),  # terminal phases are not ages anyone waits on
    ]
    registry.register(metrics.PhaseAgeCollector(lambda: samples, now=lambda: 100.0))
    text = generate_latest(registry).decode()
    assert 'stockade_agent_phase_oldest_seconds{namespace="a",phase="Pending"} 60.0' in text
    assert 'stockade_agent_phase_oldest_seconds{namespace="a",phase="Starting"} 10.0' in text
    assert 'stockade_agent_phase_oldest_seconds{namespace="b",phase="Pending"} 5.0' in text
    assert "Succeeded" not in text
