"""The decision log: one debug record per reconcile, saying what was seen, decided, written.

At ``STOCKADE_LOG_LEVEL=debug`` every Agent reconcile ends with one record on the
``stockade.decisions`` logger::

    reconcile ns/name rv=4711 phase=Running->Paused reason=Suspended
      pods=[1:Running uid=3f2a… rv=4702] actions=[delete ns-name-1]
      writes=[patch agents/status name@4711 -> 4712; delete pods name-1 -> ok]

The same facts are attached to the record as ``extra={"decision": {...}}`` (kopf's JSON
log format prints them as fields). Every write the operator makes during the reconcile
(``stockade.runtime.k8s`` records them here through a context variable, so no call site passes
the log around) is listed with its precondition (the resourceVersion it was based on)
and its outcome: the new resourceVersion, ``ok``, or the HTTP status that refused it
(409 Conflict, 404 Not Found, ...). At ``info`` nothing is built: :func:`begin` returns
None and :func:`write` is a context-variable lookup.

A trace of a wrong phase reads straight from these records: which body (rv) and which
pods the decision saw, and whether its writes landed.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("stockade.decisions")

_CURRENT: contextvars.ContextVar[Trace | None] = contextvars.ContextVar(
    "stockade_decision_trace", default=None
)


@dataclass
class Trace:
    """What one reconcile observed, decided and wrote (built only at debug level).

    Attributes:
        key: ``namespace/name`` of the Agent.
        observed: the Agent's resourceVersion and phase as read, and its pods as
            ``attempt:phase uid=… rv=…`` (``deleting`` when being deleted, or deleted by
            the operator and not yet seen so).
        decided: phase after, reason, actions; empty when the reconcile stopped early
            (``skipped`` then says why).
        writes: ``verb resource name@precondition -> outcome`` per write, in order.

    """

    key: str
    observed: dict[str, Any] = field(default_factory=dict)
    decided: dict[str, Any] = field(default_factory=dict)
    writes: list[str] = field(default_factory=list)
    skipped: str = ""

    def see(self, body: Mapping[str, Any], pods: Iterable[Any]) -> None:
        """Record the Agent body and the pod views (:class:`~stockade.core.observe.PodView`)."""
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        self.observed = {
            "rv": meta.get("resourceVersion"),
            "generation": meta.get("generation"),
            "phase": status.get("phase"),
            "attempts": status.get("attempts"),
            "suspend": bool((body.get("spec") or {}).get("suspend")),
            "pods": [_pod(p) for p in pods],
        }

    def decide(self, phase: str, reason: str, actions: Iterable[Any]) -> None:
        """Record the decision: the phase after it, its reason, its actions."""
        self.decided = {"phase": phase, "reason": reason, "actions": [str(a) for a in actions]}

    def text(self) -> str:
        """The record's message (one line)."""
        o, d = self.observed, self.decided
        head = f"reconcile {self.key} rv={o.get('rv')} suspend={o.get('suspend')}"
        pods = ", ".join(o.get("pods") or ()) or "none"
        if self.skipped:
            return f"{head} phase={o.get('phase')} pods=[{pods}] skipped: {self.skipped}"
        actions = ", ".join(d.get("actions") or ())
        return (
            f"{head} phase={o.get('phase')}->{d.get('phase')} reason={d.get('reason')} "
            f"attempts={o.get('attempts')} pods=[{pods}] actions=[{actions}] "
            f"writes=[{'; '.join(self.writes)}]"
        )


def _pod(view: Any) -> str:
    state = "deleting" if view.deleting else view.phase
    return f"{view.attempt}:{state} uid={str(view.uid)[:8]} rv={view.resource_version}"


def begin(key: tuple[str, str]) -> Trace | None:
    """Start the trace of one reconcile in this task's context (None unless debugging)."""
    if not log.isEnabledFor(logging.DEBUG):
        return None
    trace = Trace(f"{key[0]}/{key[1]}")
    _CURRENT.set(trace)
    return trace


def write(verb: str, resource: str, name: str, precondition: str | None, outcome: str) -> None:
    """Note one write of the current reconcile (a no-op outside a traced reconcile)."""
    trace = _CURRENT.get()
    if trace is not None:
        at = f"@{precondition}" if precondition else ""
        trace.writes.append(f"{verb} {resource} {name}{at} -> {outcome}")


def end(trace: Trace | None) -> None:
    """Emit the record of `trace` (if any) and leave the reconcile's context."""
    if trace is None:
        return
    _CURRENT.set(None)
    log.debug(
        trace.text(),
        extra={
            "decision": {
                "key": trace.key,
                "observed": trace.observed,
                "decided": trace.decided,
                "writes": trace.writes,
                "skipped": trace.skipped,
            }
        },
    )
