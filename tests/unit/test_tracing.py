"""OpenTelemetry traces (stockade.runtime.tracing): one trace per attempt, off by default."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stockade.runtime import tracing


@dataclass(frozen=True)
class Step:
    from_phase: str | None
    to_phase: str
    reason: str


def entry(seq: int, source: str | None, to: str, reason: str, second: int) -> dict[str, object]:
    found: dict[str, object] = {"seq": seq, "to": to, "reason": reason}
    if source:
        found["from"] = source
    found["time"] = f"2026-11-21T12:00:{second:02d}Z"
    return found


HISTORY = [
    entry(1, None, "Pending", "Created", 0),
    entry(2, "Pending", "Starting", "PodCreated", 4),
    entry(3, "Starting", "Running", "PodRunning", 10),
    entry(4, "Running", "Starting", "Error", 20),  # attempt 1 failed: retry
    entry(5, "Starting", "Running", "PodRunning", 25),
    entry(6, "Running", "Succeeded", "Completed", 40),
]
AGENT = {"metadata": {"namespace": "team-a", "name": "fixer", "uid": "u-1"}}


def seconds(spec: tracing.SpanSpec) -> tuple[str, int, int]:
    return spec.name, spec.start.second, spec.end.second


def test_the_first_attempt_has_admission_pod_create_running_and_finish() -> None:
    spans = tracing.attempt_spans(HISTORY, 3, {"stockade.attempt": 1})
    assert [seconds(s) for s in spans] == [
        ("agent attempt", 0, 20),
        ("admission", 0, 4),
        ("pod create", 4, 10),
        ("running", 10, 20),
        ("finish", 20, 20),
    ]
    assert spans[0].attributes["stockade.reason"] == "Error"
    assert all(s.parent == "agent attempt" for s in spans[1:])


def test_a_retry_starts_at_the_retry() -> None:
    spans = tracing.attempt_spans(HISTORY, 5, {})
    assert [seconds(s) for s in spans] == [
        ("agent attempt", 20, 40),
        ("pod create", 20, 25),
        ("running", 25, 40),
        ("finish", 40, 40),
    ]


def test_an_attempt_that_never_ran_has_no_running_span() -> None:
    history = [*HISTORY[:2], entry(3, "Starting", "Failed", "StartupTimeout", 30)]
    names = [s.name for s in tracing.attempt_spans(history, 2, {})]
    assert names == ["agent attempt", "admission", "pod create", "finish"]


@pytest.fixture()
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    assert tracing.configure(provider)
    yield memory
    tracing._tracer = None


def test_recorded_steps_export_one_trace_per_ended_attempt(
    exporter: InMemorySpanExporter,
) -> None:
    status = {"history": HISTORY, "attempts": 2}
    # The decision that wrote the last two entries: attempt 2 ran and succeeded.
    steps = [Step("Starting", "Running", "PodRunning"), Step("Running", "Succeeded", "Completed")]
    tracing.record(AGENT, status, steps)
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == [
        "agent attempt",
        "finish",
        "pod create",
        "running",
    ]
    root = next(s for s in spans if s.name == "agent attempt")
    assert root.attributes is not None
    assert root.attributes["stockade.agent"] == "fixer"
    assert root.attributes["stockade.attempt"] == 2
    assert root.attributes["stockade.phase"] == "Succeeded"
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    assert all(s.parent.span_id == root.context.span_id for s in spans if s is not root)
    # Steps that end no attempt export nothing.
    exporter.clear()
    tracing.record(AGENT, {"history": HISTORY[:3]}, [Step("Starting", "Running", "PodRunning")])
    assert exporter.get_finished_spans() == ()


def test_off_without_the_endpoint_and_imports_nothing() -> None:
    code = (
        "import os, sys; os.environ.pop('OTEL_EXPORTER_OTLP_ENDPOINT', None);"
        "from stockade import reconcile; from stockade.runtime import tracing;"
        "assert not tracing.configure(); assert not tracing.enabled();"
        "tracing.record({}, {'history': []}, []);"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
