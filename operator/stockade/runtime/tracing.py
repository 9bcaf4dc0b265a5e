"""Optional OpenTelemetry traces: one trace per Agent attempt.

Off by default, at no cost: nothing of OpenTelemetry is imported unless
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (then the ``[otel]`` extra must be installed:
``pip install 'stockade[otel]'``). With it, every attempt that ends (the Agent succeeds,
fails, retries or is paused) becomes one trace exported over OTLP/HTTP, with the SDK's
standard ``OTEL_*`` settings (``OTEL_SERVICE_NAME``, headers, ...):

- ``agent attempt`` (the root): from the attempt's first step to its end;
- ``admission``: creation (or the last entry into Pending) to admission, first attempt only;
- ``pod create``: admission (or the retry) to Running (to the end if it never ran);
- ``running``: Running to the end;
- ``finish``: the end (an instant), with the final phase and reason.

The spans are derived from ``status.history`` (:func:`attempt_spans`, pure), so they are
the same whichever replica or incarnation of the operator writes the ending transition,
and they cost nothing while the attempt runs. Timestamps have the history's one-second
precision. Semantic conventions: https://opentelemetry.io/docs/specs/otel/trace/api/.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"

_tracer: Any = None
"""The OpenTelemetry tracer once configured (None: tracing is off)."""


@dataclass(frozen=True)
class SpanSpec:
    """One span to emit: `name`, `start`/`end` (aware datetimes), its attributes.

    `parent` is the name of the parent span in the same trace (None: the root).
    """

    name: str
    start: datetime
    end: datetime
    attributes: Mapping[str, str | int] = field(default_factory=dict)
    parent: str | None = None


ENDS = {("Running", "Succeeded"), ("Running", "Failed"), ("Starting", "Failed")}
ENDS |= {("Running", "Starting"), ("Running", "Paused"), ("Starting", "Paused")}
"""``(from, to)`` steps that end an attempt (a retry is Running -> Starting)."""


def _time(entry: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00"))


def attempt_spans(
    history: Sequence[Mapping[str, Any]], end: int, attributes: Mapping[str, str | int]
) -> list[SpanSpec]:
    """The spans of the attempt that `history[end]` ends (see the module docstring).

    Args:
        history: ``status.history`` entries (``from``, ``to``, ``reason``, ``time``).
        end: the index of the entry that ends the attempt (its ``(from, to)`` in :data:`ENDS`).
        attributes: put on the root span (namespace, name, uid, attempt).

    Returns the root first. Pure; raises IndexError for an `end` outside `history`.

    """
    last = history[end]
    finish = _time(last)
    start_index = max(end - 1, 0)  # the ending entry may itself go to Starting (a retry)
    while start_index > 0 and history[start_index].get("to") != "Starting":
        start_index -= 1
    started = history[start_index]
    pod_start = _time(started)
    spans: list[SpanSpec] = []
    begin = pod_start
    if started.get("from") == "Pending":
        pending = start_index - 1
        while pending > 0 and history[pending].get("to") != "Pending":
            pending -= 1
        if pending >= 0 and history[pending].get("to") == "Pending":
            begin = _time(history[pending])
            spans.append(SpanSpec("admission", begin, pod_start, {}, "agent attempt"))
    running = next(
        (_time(entry) for entry in history[start_index : end + 1] if entry.get("to") == "Running"),
        None,
    )
    spans.append(SpanSpec("pod create", pod_start, running or finish, {}, "agent attempt"))
    if running is not None:
        spans.append(SpanSpec("running", running, finish, {}, "agent attempt"))
    outcome = {"stockade.phase": str(last.get("to")), "stockade.reason": str(last.get("reason"))}
    spans.append(SpanSpec("finish", finish, finish, outcome, "agent attempt"))
    root = SpanSpec("agent attempt", begin, finish, {**attributes, **outcome})
    return [root, *spans]


def configure(provider: Any = None) -> bool:
    """Turn tracing on if ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (or `provider` is given).

    `provider` is an ``opentelemetry.sdk.trace.TracerProvider`` (tests pass one with an
    in-memory exporter). Returns whether tracing is on. Without either, imports nothing.

    Raises:
        ImportError: the endpoint is set but the ``[otel]`` extra is not installed.

    """
    global _tracer
    if provider is None and not os.environ.get(ENDPOINT_VARIABLE):
        _tracer = None
        return False
    if provider is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME", "stockade")}
        )
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _tracer = provider.get_tracer("stockade")
    return True


def enabled() -> bool:
    """Whether :func:`configure` turned tracing on."""
    return _tracer is not None


def emit(spans: Sequence[SpanSpec]) -> None:
    """Export `spans` (root first, as :func:`attempt_spans` returns them) as one trace."""
    if _tracer is None or not spans:
        return
    from opentelemetry import trace

    def ns(value: datetime) -> int:
        return int(value.timestamp() * 1_000_000_000)

    root_spec, *children = spans
    root = _tracer.start_span(
        root_spec.name, start_time=ns(root_spec.start), attributes=dict(root_spec.attributes)
    )
    context = trace.set_span_in_context(root)
    for spec in children:
        child = _tracer.start_span(
            spec.name, context=context, start_time=ns(spec.start), attributes=dict(spec.attributes)
        )
        child.end(end_time=ns(spec.end))
    root.end(end_time=ns(root_spec.end))


def record(agent: Mapping[str, Any], new_status: Mapping[str, Any], steps: Sequence[Any]) -> None:
    """Emit a trace for each attempt that the written `steps` end (no-op when off).

    `agent` is the Agent as read, `new_status` its status as written: its ``history``
    ends with `steps` (``lifecycle.Transition``s).
    """
    if _tracer is None:
        return
    history = list(new_status.get("history") or [])
    metadata = agent.get("metadata") or {}
    base = {
        "stockade.namespace": str(metadata.get("namespace")),
        "stockade.agent": str(metadata.get("name")),
        "stockade.agent.uid": str(metadata.get("uid")),
    }
    first = len(history) - len(steps)
    for index in range(max(first, 0), len(history)):
        entry = history[index]
        if (entry.get("from"), entry.get("to")) in ENDS:
            attempt = int(new_status.get("attempts") or 1)
            emit(attempt_spans(history, index, {**base, "stockade.attempt": attempt}))
