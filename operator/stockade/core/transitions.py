"""The Agent lifecycle's transition table: every phase change the state machine may make.

A transition outside the table is a bug: :func:`stockade.core.lifecycle.decide` does
not write it and reports it.
"""

from __future__ import annotations

from stockade.api.agent import TERMINAL_PHASES, Phase

P = Phase
_NEXT: dict[Phase | None, tuple[Phase, ...]] = {
    None: (P.Pending,),
    P.Pending: (P.Starting, P.Paused, P.Failed),
    P.Starting: (P.Running, P.Failed, P.Paused),
    P.Running: (P.Succeeded, P.Failed, P.Starting, P.Paused),
    P.Paused: (P.Pending, P.Failed),
}
TRANSITIONS: frozenset[tuple[Phase | None, Phase]] = frozenset(
    {(source, target) for source, targets in _NEXT.items() for target in targets}
    | {(p, P.Terminating) for p in (None, *Phase) if p is not P.Terminating}
)
"""Every allowed ``(from, to)`` phase change; ``None`` is an Agent without a phase yet."""

TERMINAL = TERMINAL_PHASES


# Pod-creation rejections that need a person (not time) to fix: Stalled=True.
def is_allowed(from_phase: Phase | None, to_phase: Phase) -> bool:
    """Whether the table allows changing `from_phase` into `to_phase`."""
    return (from_phase, to_phase) in TRANSITIONS
