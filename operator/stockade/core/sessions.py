"""AgentSession lifecycle: phase, conditions, counts and usage from the members (pure).

``decide_session(observation) -> SessionDecision`` is the session's counterpart of
:func:`stockade.core.lifecycle.decide`: level-triggered, deterministic, no I/O. It runs the
admission (:func:`stockade.core.admission.admit`) and summarizes the members.

Phases: ``Active`` -> ``Succeeded`` (every member finished, none failed) or ``Failed``
(a member failed, or ``activeDeadlineSeconds`` passed: the remaining members then fail
with DeadlineExceeded); ``Active`` <-> ``Suspended`` (``spec.suspend``: every member is
paused); any -> ``Terminating`` (deleted; the members follow by garbage collection).
A session finishes once it has members and all of them have finished; Agents created
for a finished session are not admitted (``SessionFinished``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from stockade.api.agent import TERMINAL_PHASES, Phase
from stockade.core import admission
from stockade.core.conditions import READY, RECONCILING, STALLED, SUSPENDED, Cond, merge_conditions
from stockade.core.observation import Admission, AgentView
from stockade.core.observe import format_time, parse_time
from stockade.core.reasons import Reason

ACTIVE, SUSPENDED_PHASE, SUCCEEDED, FAILED, TERMINATING = (
    "Active",
    "Suspended",
    "Succeeded",
    "Failed",
    "Terminating",
)
_COUNTED = tuple(str(phase) for phase in Phase)
"""The member phases a session counts (every Agent phase, in the lifecycle's order)."""


@dataclass(frozen=True)
class MemberView:
    """A member Agent: its name, creation time, phase, effective requests, usage."""

    name: str
    created: datetime
    phase: str | None
    requests: Mapping[str, Decimal]
    usage: Mapping[str, Any] = field(default_factory=dict)
    deleting: bool = False
    paused: bool = False

    @property
    def finished(self) -> bool:
        """The member Succeeded or Failed."""
        return self.phase in TERMINAL_PHASES


@dataclass(frozen=True)
class SessionObservation:
    """Everything ``decide_session`` reads (durations in seconds, None = unset)."""

    now: datetime
    generation: int
    deleting: bool
    suspend: bool
    max_agents: int
    budget: Mapping[str, Decimal] | None
    active_deadline_seconds: int | None
    ttl_seconds_after_finished: int | None
    status: Mapping[str, Any]
    members: Sequence[MemberView]


@dataclass(frozen=True)
class SessionDecision:
    """The session's new status and what follows from it.

    Attributes:
        status: the complete new ``status`` (camelCase).
        admission: the admission decision (verdict per member).
        failure: set when the session failed by deadline: the message its remaining
            members fail with (reason DeadlineExceeded).
        finished: the session is Succeeded or Failed (new members are not admitted).
        requeue_after: seconds until a deadline or TTL needs a look; None if none.
        delete_session: ttlSecondsAfterFinished has expired.

    """

    status: dict[str, Any]
    admission: admission.SessionAdmission
    failure: str | None = None
    finished: bool = False
    requeue_after: float | None = None
    delete_session: bool = False


def format_quantity(resource: str, value: Decimal) -> str:
    """Render an amount as a Kubernetes quantity: millicores for cpu, binary bytes else."""
    if resource == "cpu":
        milli = value * 1000
        return f"{value.normalize():f}" if milli % 1000 == 0 else f"{milli.normalize():f}m"
    for suffix, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value >= size and value % size == 0:
            return f"{(value / size).normalize():f}{suffix}"
    return f"{value.normalize():f}"


def _sum_usage(members: Sequence[MemberView]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for member in members:
        for key, value in member.usage.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in sorted(total.items())}


def decide_session(obs: SessionObservation) -> SessionDecision:
    """Derive the session's status, its admissions and its deadline/TTL consequences."""
    status = dict(obs.status)
    previous = status.get("phase")
    now = format_time(obs.now)
    status.setdefault("startTime", now)
    members = list(obs.members)
    wants = [
        admission.Member(m.name, m.created, m.requests, not (m.finished or m.deleting or m.paused))
        for m in members
    ]
    phase, reason, message = ACTIVE, "Active", ""
    failure = None
    wake: list[datetime] = []
    start = parse_time(status.get("startTime")) or obs.now
    if obs.deleting:
        phase, reason, message = TERMINATING, "Deleted", "the session is being deleted"
    elif previous in (SUCCEEDED, FAILED):
        phase, reason, message = (
            previous,
            str(status.get("reason") or ""),
            str(status.get("message") or ""),
        )
        if previous == FAILED and reason == "DeadlineExceeded":
            failure = message
    elif obs.active_deadline_seconds is not None and obs.now >= start + timedelta(
        seconds=obs.active_deadline_seconds
    ):
        phase, reason = FAILED, "DeadlineExceeded"
        message = (
            f"the session ran longer than activeDeadlineSeconds ({obs.active_deadline_seconds}s)"
        )
        failure = message
    elif obs.suspend:
        phase, reason, message = SUSPENDED_PHASE, "Suspended", "spec.suspend is true"
    elif members and all(m.finished for m in members):
        failed = [m.name for m in members if m.phase == "Failed"]
        if failed:
            phase, reason = FAILED, "AgentsFailed"
            message = f"{len(failed)} of {len(members)} agents failed: {', '.join(failed[:10])}"
        else:
            phase, reason, message = SUCCEEDED, "Completed", f"all {len(members)} agents succeeded"
    if phase == ACTIVE and obs.active_deadline_seconds is not None:
        wake.append(start + timedelta(seconds=obs.active_deadline_seconds))

    finished = phase in (SUCCEEDED, FAILED)
    decision = admission.admit(
        wants,
        max_agents=obs.max_agents,
        budget=obs.budget,
        recorded=status.get("admittedAgents") or (),
        suspended=phase != ACTIVE,
    )
    counts = {p.lower(): 0 for p in _COUNTED}
    for member in members:
        key = (member.phase or "Pending").lower()
        counts[key] = counts.get(key, 0) + 1
    counts["total"] = len(members)
    used = {k: format_quantity(k, v) for k, v in sorted(decision.used.items())}
    if obs.budget:
        parts = [
            f"{k} {used.get(k, '0')}/{format_quantity(k, v)}" for k, v in sorted(obs.budget.items())
        ]
    else:
        parts = [f"{k} {v}" for k, v in used.items() if k in ("cpu", "memory")]
    summary = ", ".join(parts)
    status.update(
        phase=phase,
        reason=reason,
        message=message or None,
        observedGeneration=obs.generation,
        agents=counts,
        admitted=len(decision.admitted),
        admittedAgents=list(decision.admitted),
        usage={"requests": used} if used else None,
        usageSummary=summary or None,
        agentUsage=_sum_usage(members) or None,
    )
    if finished and not status.get("completionTime"):
        status["completionTime"] = now
    delete = False
    done = parse_time(status.get("completionTime"))
    if finished and obs.ttl_seconds_after_finished is not None and done is not None:
        expiry = done + timedelta(seconds=obs.ttl_seconds_after_finished)
        if obs.now >= expiry:
            delete = True
        else:
            wake.append(expiry)
    waiting = counts["pending"] + counts["starting"]
    stalled_members = [n for n, v in decision.verdicts.items() if v.stalled]
    conds = [
        Cond(
            READY,
            phase in (ACTIVE, SUCCEEDED) and not stalled_members,
            reason if phase != ACTIVE else "Active",
            message,
        ),
        Cond(
            RECONCILING,
            phase == ACTIVE and waiting > 0,
            "AgentsWaiting" if waiting else reason,
            f"{waiting} agents pending or starting" if waiting else "",
        ),
        Cond(
            STALLED,
            phase == FAILED or (phase == ACTIVE and bool(stalled_members)),
            reason if phase == FAILED else "BudgetExceeded" if stalled_members else reason,
            message
            if phase == FAILED
            else f"can never be admitted: {', '.join(stalled_members)}"
            if stalled_members
            else "",
        ),
        Cond(
            SUSPENDED,
            phase == SUSPENDED_PHASE,
            "Suspended" if phase == SUSPENDED_PHASE else "NotSuspended",
            "",
        ),
    ]
    status["conditions"] = merge_conditions(
        status.get("conditions"), conds, now=now, generation=obs.generation
    )
    requeue = None
    if wake and not delete:
        requeue = max((min(wake) - obs.now).total_seconds(), 0.0)
    return SessionDecision(
        status={k: v for k, v in status.items() if v is not None},
        admission=decision,
        failure=failure,
        finished=finished,
        requeue_after=requeue,
        delete_session=delete,
    )


def member_terms(
    view: AgentView,
    session_name: str,
    session: Mapping[str, Any] | None,
    verdict: admission.Verdict | None,
) -> tuple[AgentView, Admission, str | None]:
    """What a member's session says of it: suspension, admission, failure (pure).

    Read from the session's recorded status (``admittedAgents``, its phase), so it is
    the same after a restart; `verdict` is the session's last word on a member still
    waiting (for its reason). Returns the member's view (suspended with its session),
    its :class:`Admission`, and the message that fails it when the session failed by
    its deadline.
    """
    if session is None:
        message = f'AgentSession "{session_name}" not found'
        return view, Admission(False, Reason.SESSION_NOT_FOUND, message), None
    spec = session.get("spec") or {}
    status = session.get("status") or {}
    if spec.get("suspend") and not view.suspend:
        view = replace(view, suspend=True, suspended_by=f"session {session_name} is suspended")
    phase, reason = status.get("phase"), status.get("reason")
    if phase == FAILED and reason == Reason.DEADLINE_EXCEEDED:
        return view, Admission(), str(status.get("message") or "the session's deadline passed")
    if view.name in (status.get("admittedAgents") or ()):
        return view, Admission(), None
    if phase in (SUCCEEDED, FAILED):
        message = f"session {session_name} has finished"
        return view, Admission(False, Reason.SESSION_FINISHED, message, stalled=True), None
    if verdict is None or verdict.admitted:
        message = f"waiting for session {session_name} to admit it"
        return view, Admission(False, Reason.AWAITING_ADMISSION, message), None
    return view, Admission(False, verdict.reason, verdict.message, verdict.stalled), None
