"""What the Agent lifecycle reads and what it answers: its typed input and output.

:class:`Observation` (the Agent, its pods, its admission, the clock) goes into
:func:`stockade.core.lifecycle.decide`; a :class:`Decision` (the new status, the
transitions, the actions) comes out. Pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stockade.api.agent import Phase, RestartPolicy
from stockade.core.backoff import Backoff
from stockade.core.observe import PodView
from stockade.core.reasons import Reason


@dataclass(frozen=True)
class AgentView:
    """The Agent as the lifecycle sees it: the effective spec and the recorded status.

    Durations are in seconds; ``None`` means unset. ``status`` is the Agent's current
    ``status`` dict (camelCase, as stored); ``generation`` its ``metadata.generation``.
    """

    name: str
    generation: int = 1
    deleting: bool = False
    suspend: bool = False
    active_deadline_seconds: int | None = None
    startup_timeout_seconds: int = 300
    restart_policy: RestartPolicy = RestartPolicy.NEVER
    backoff_limit: int = 3
    ttl_seconds_after_finished: int | None = None
    runtime_class: str | None = None
    status: Mapping[str, Any] = field(default_factory=dict)
    suspended_by: str = "spec.suspend is true"


@dataclass(frozen=True)
class Admission:
    """Whether the Agent may have a pod now; a waiting reason and message when not.

    ``stalled`` marks a refusal that waiting cannot fix (e.g. requests larger than the
    whole session budget): the Agent shows ``Stalled=True``.
    """

    admitted: bool = True
    reason: str = Reason.ADMITTED
    message: str = ""
    stalled: bool = False


@dataclass(frozen=True)
class Rejection:
    """The API server refused the pod (or a child it needs).

    ``reason`` is a :class:`Reason`, ``message`` its words; ``stalled`` marks a refusal
    that time will not fix (e.g. a name taken by an object no Agent owns).
    """

    reason: Reason
    message: str
    stalled: bool = False


DEFAULT_BACKOFF = Backoff(10.0, 10.0)
"""The backoff of an Observation that names none (the operator passes its own)."""


@dataclass(frozen=True)
class Observation:
    """Everything ``decide`` reads.

    Attributes:
        agent: the Agent.
        pods: the agent's pods keyed by attempt number (usually zero or one).
        admission: the session's (or quota's) word on running a pod now.
        rejection: the API server's refusal of the last pod creation, if any.
        spec_error: a message when the spec cannot be turned into a pod (InvalidSpec).
        spec_error_reason: the failure reason of `spec_error`: InvalidSpec, or
            NamespaceNotAllowed when the Agent's namespace is refused.
        session_defaults: the ``agentDefaults`` its session gives a member now (None for
            an Agent without a session): recorded in ``status.sessionDefaults`` when it
            starts, and kept from then on, whatever later edits of the session say.
        session_failure: the Agent's session failed by its deadline: this message
            fails the Agent (DeadlineExceeded) unless it has finished already.
        now: the current time (UTC).
        backoff: how long to wait before attempt n+1 after n failures
            (:class:`~stockade.core.backoff.Backoff`); the operator config provides it.
        history_limit: how many transitions ``status.history`` keeps.
        terminating_timeout: seconds past a pod's ``deletionTimestamp`` after which a
            pod still terminating (its node is lost) is force-deleted and replaced.

    """

    agent: AgentView
    now: datetime
    pods: Mapping[int, PodView] = field(default_factory=dict)
    admission: Admission = Admission()
    rejection: Rejection | None = None
    spec_error: str | None = None
    spec_error_reason: Reason = Reason.INVALID_SPEC
    session_failure: str | None = None
    session_defaults: Mapping[str, Any] | None = None
    backoff: Backoff = DEFAULT_BACKOFF
    history_limit: int = 20
    terminating_timeout: float = 60.0


@dataclass(frozen=True)
class Transition:
    """One phase change: recorded as a history entry, an Event and a metric."""

    from_phase: Phase | None
    to_phase: Phase
    reason: str
    message: str


@dataclass(frozen=True)
class CreatePod:
    """Create the pod of this attempt (idempotent: its name is deterministic)."""

    attempt: int


@dataclass(frozen=True)
class DeletePod:
    """Delete this pod; ``force`` skips the grace period (a pod stuck terminating)."""

    name: str
    force: bool = False


Action = CreatePod | DeletePod


@dataclass(frozen=True)
class Decision:
    """What ``decide`` concluded.

    Attributes:
        status: the complete new ``status`` (camelCase dict) to write.
        transitions: the phase changes made, in order (possibly several in one pass,
            e.g. Starting -> Running -> Succeeded for an agent that finished between
            two observations).
        actions: children to create or delete.
        requeue_after: look again after this many seconds even if nothing changes
            (deadlines, backoff, TTL); None when only a change can matter.
        delete_agent: ttlSecondsAfterFinished has expired.
        rejected: transitions the table forbids (not written; a bug to log and count).
        awaiting_verdict: a new member its session has not judged yet (or admitted and
            is recording so): nothing to write or do; the session's reconcile pokes it
            with a verdict (a status "awaiting admission" first would be one more write
            per member for a moment).

    """

    status: dict[str, Any]
    transitions: tuple[Transition, ...] = ()
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = None
    delete_agent: bool = False
    rejected: tuple[Transition, ...] = ()
    awaiting_verdict: bool = False

    @property
    def phase(self) -> Phase:
        """The phase after this decision."""
        return Phase(self.status["phase"])
