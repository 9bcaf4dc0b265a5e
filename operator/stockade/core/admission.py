"""Session admission: which member Agents of an AgentSession may run now (pure).

The decision is a function of the session (capacity, budget, suspension) and its
members (creation order, requests, phase) plus the *recorded* admissions (the session's
``status.admittedAgents``, written only by the session's reconciler). Recording the
decision in the API, and computing it for one session at a time, is what rules out
double admission when two Agents race for the last slot, also across restarts.

Rules (docs/concepts/sessions.md):

- first come, first served by ``(creationTimestamp, name)``, bounded by ``maxAgents``
  and by the ``budget`` (the sum of the admitted members' effective requests);
- an admitted member keeps its admission while it is active (no preemption, also when
  ``maxAgents`` or the budget shrink); a finished, paused or deleted member frees its
  share at once;
- a member whose requests alone exceed the budget can never be admitted: it is reported
  (``BudgetExceeded``, stalled) and does not block the members behind it;
- strict order otherwise: a member that does not fit *now* blocks later ones, so a
  large agent is not starved by a stream of small ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

Requests = Mapping[str, Decimal]
"""Resource name (cpu, memory, ephemeral-storage) -> amount in base units."""


@dataclass(frozen=True)
class Member:
    """One member Agent as admission sees it.

    Attributes:
        name: the Agent's name.
        created: its ``metadata.creationTimestamp`` (the queue order, then `name`).
        requests: its effective requests (after session and operator defaults).
        active: it wants to run: not finished, not paused, not being deleted.

    """

    name: str
    created: datetime
    requests: Requests
    active: bool = True


@dataclass(frozen=True)
class Verdict:
    """Admission's word on one member: admitted, or why not (a lifecycle reason)."""

    admitted: bool
    reason: str = "Admitted"
    message: str = ""
    stalled: bool = False


@dataclass(frozen=True)
class SessionAdmission:
    """The session-wide outcome.

    Attributes:
        admitted: names holding an admission, in queue order (to record in the API).
        verdicts: a verdict for every member.
        used: the summed requests of the admitted members.

    """

    admitted: tuple[str, ...]
    verdicts: Mapping[str, Verdict] = field(default_factory=dict)
    used: Mapping[str, Decimal] = field(default_factory=dict)


def _add(a: Requests, b: Requests) -> dict[str, Decimal]:
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, Decimal(0)) + value
    return out


def _over(requests: Requests, budget: Requests | None) -> list[str]:
    """Resources in `requests` that exceed `budget` (only budgeted resources count)."""
    if budget is None:
        return []
    return [k for k, limit in budget.items() if requests.get(k, Decimal(0)) > limit]


def _fmt(requests: Requests, keys: Sequence[str]) -> str:
    return ", ".join(f"{k}={requests.get(k, Decimal(0)).normalize():f}" for k in keys)


def admit(
    members: Sequence[Member],
    *,
    max_agents: int,
    budget: Requests | None,
    recorded: Sequence[str],
    suspended: bool = False,
) -> SessionAdmission:
    """Decide which members hold an admission.

    Args:
        members: every member Agent of the session (any order).
        max_agents: most members admitted at once (>= 1).
        budget: the most the admitted members may request together; None = unlimited.
        recorded: the admissions recorded so far (the session's ``admittedAgents``).
        suspended: the session is suspended: nobody is admitted.

    Returns:
        The admitted names (queue order), a verdict per member, and the budget used.

    """
    queue = sorted(members, key=lambda m: (m.created, m.name))
    if suspended:
        paused = {
            m.name: Verdict(False, "SessionSuspended", "the session is suspended") for m in queue
        }
        return SessionAdmission((), paused, {})
    held = set(recorded)
    admitted: list[str] = []
    used: dict[str, Decimal] = {}
    verdicts: dict[str, Verdict] = {}
    # Holders keep their admission while active (no preemption).
    for member in queue:
        if member.active and member.name in held:
            admitted.append(member.name)
            used = _add(used, member.requests)
            verdicts[member.name] = Verdict(True)
    blocked_by: str | None = None
    for member in queue:
        if member.name in verdicts:
            continue
        if not member.active:
            verdicts[member.name] = Verdict(False, "Finished", "not waiting for admission")
            continue
        never = _over(member.requests, budget)
        if never and budget is not None:
            verdicts[member.name] = Verdict(
                False,
                "BudgetExceeded",
                f"requests {_fmt(member.requests, never)} exceed the session budget"
                f" {_fmt(budget, never)}: this agent can never be admitted",
                stalled=True,
            )
            continue
        if blocked_by is not None:
            verdicts[member.name] = Verdict(False, *_waiting(len(admitted), max_agents, blocked_by))
            continue
        if len(admitted) >= max_agents:
            blocked_by = member.name
            verdicts[member.name] = Verdict(
                False, "SessionFull", f"{len(admitted)} of {max_agents} agents admitted"
            )
            continue
        after = _add(used, member.requests)
        short = _over(after, budget)
        if short and budget is not None:
            blocked_by = member.name
            verdicts[member.name] = Verdict(
                False,
                "BudgetExceeded",
                f"waiting for budget: {_fmt(after, short)} would exceed {_fmt(budget, short)}",
            )
            continue
        admitted.append(member.name)
        used = after
        verdicts[member.name] = Verdict(True)
    order = {m.name: i for i, m in enumerate(queue)}
    return SessionAdmission(tuple(sorted(admitted, key=order.__getitem__)), verdicts, used)


def _waiting(count: int, max_agents: int, blocked_by: str) -> tuple[str, str]:
    if count >= max_agents:
        return "SessionFull", f"{count} of {max_agents} agents admitted"
    return "BudgetExceeded", f"queued behind {blocked_by}, which waits for budget"
