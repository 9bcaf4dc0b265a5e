r"""The Agent lifecycle state machine: one pure module, the single source of phase changes.

``decide(observation) -> Decision`` derives an Agent's phase, conditions and status from
what is observed (the Agent's spec and recorded status, its pod, its admission, the last
pod-creation rejection, the clock) and says what to do (create or delete a pod, delete
the Agent, look again later). It is level-triggered: it never relies on memory, so the
same observation gives the same decision, also after an operator restart.

Every phase change goes through :data:`TRANSITIONS`. A transition outside the table is a
bug: ``decide`` does not write it (the phase stays), and reports it in
``Decision.rejected`` for the caller to log and count.

Phases (docs/concepts/lifecycle.md, "Phases"; docs/architecture.md, "The controller contract")::

    Pending -> Starting -> Running -> Succeeded
                  ^          |   \\-> Failed   (exit != 0, deadline, backoff limit)
                  \\-retry---/
    Pending/Starting/Running -> Paused (suspend) -> Pending (resume)
    any -> Terminating (the Agent is being deleted)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from stockade.api.agent import Phase, RestartPolicy
from stockade.build.names import pod_name
from stockade.core.backoff import refusal_delay
from stockade.core.conditions import (
    ADMITTED,
    READY,
    RECONCILING,
    STALLED,
    SUSPENDED,
    Cond,
    merge_conditions,
)
from stockade.core.observation import (
    DEFAULT_BACKOFF,
    Action,
    Admission,
    AgentView,
    CreatePod,
    Decision,
    DeletePod,
    Observation,
    Rejection,
    Transition,
)
from stockade.core.observe import PodView, format_time, parse_termination_message, parse_time
from stockade.core.reasons import STALLING_REASONS, Reason, failure_of
from stockade.core.transitions import TERMINAL, TRANSITIONS, is_allowed

__all__ = [
    "DEFAULT_BACKOFF",
    "LAZY_STATUS_FIELDS",
    "TERMINAL",
    "TRANSITIONS",
    "Action",
    "Admission",
    "AgentView",
    "CreatePod",
    "Decision",
    "DeletePod",
    "Observation",
    "Reason",
    "Rejection",
    "Transition",
    "decide",
    "is_allowed",
]


# Waiting reasons of a container that never become a running container by themselves.
_PERMANENT_PULL_FAILURES = frozenset({"InvalidImageName", "ErrImageNeverPull"})
_PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", *_PERMANENT_PULL_FAILURES})


@dataclass
class _Draft:
    """Mutable working state of one ``decide`` call (never escapes it)."""

    obs: Observation
    phase: Phase | None
    reason: str
    message: str
    status: dict[str, Any]
    transitions: list[Transition] = field(default_factory=list)
    rejected: list[Transition] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    wake_at: list[datetime] = field(default_factory=list)
    admitted: Cond | None = None
    stalled: bool = False
    ready: bool = False
    delete_agent: bool = False

    def move(self, to: Phase, reason: str, message: str = "") -> None:
        """Change phase through the table; record the reason even without a change.

        A new Agent (no phase yet) always enters through Pending.
        """
        if self.phase is None and to not in (Phase.Pending, Phase.Terminating):
            self.move(Phase.Pending, Reason.CREATED)
        if to != self.phase:
            step = Transition(self.phase, to, reason, message)
            if not is_allowed(self.phase, to):
                self.rejected.append(step)
                return
            self.transitions.append(step)
            self.phase = to
        self.reason, self.message = reason, message

    def wake(self, at: datetime) -> None:
        self.wake_at.append(at)


def _stop(d: _Draft, pod: PodView | None) -> None:
    """Delete `pod` if anything in it may still run.

    A pod in a terminal phase stays, with its logs, until a newer attempt's pod exists
    or the Agent goes; so does a pod whose agent container has exited while nothing
    else runs in it (a real kubelet marks such a pod terminal a moment later).
    """
    if pod is None or pod.deleting or pod.phase in ("Succeeded", "Failed"):
        return
    if pod.terminated is not None and not pod.others_running:
        return
    if DeletePod(pod.name) not in d.actions:
        d.actions.append(DeletePod(pod.name))


def _fail(d: _Draft, reason: Reason, message: str, pod: PodView | None) -> None:
    d.move(Phase.Failed, reason, message)
    _stop(d, pod)


def _retry_or_fail(
    d: _Draft, attempt: int, pod: PodView | None, reason: Reason, message: str
) -> None:
    """After attempt `attempt` failed: schedule the next one, or fail the Agent.

    ``status.attempts`` counts pods that were created, never attempts that were only
    planned: it advances when the next pod is created, and the failed pod stays (for
    its logs, and as the record of the failure) until its successor exists. The failure
    is counted once (:func:`_count_failure`); ``backoffLimit`` bounds the count.
    """
    agent = d.obs.agent
    failures = _count_failure(d, attempt)
    if agent.restart_policy == RestartPolicy.ON_FAILURE and failures <= agent.backoff_limit:
        d.move(Phase.Starting, reason, f"attempt {attempt} failed: {message}")
        _await_retry(d, attempt + 1, pod, failures)
        return
    d.status["exitCode"] = pod.terminated.exit_code if pod and pod.terminated else None
    if agent.restart_policy == RestartPolicy.ON_FAILURE:
        _fail(
            d,
            Reason.BACKOFF_LIMIT_EXCEEDED,
            f"{failures} attempts failed (backoffLimit {agent.backoff_limit}); last: {message}",
            pod,
        )
    else:
        _fail(d, reason, message, pod)


def _failed_attempts(d: _Draft) -> int:
    """``status.failedAttempts``: how many attempts failed (as a Job's ``status.failed``)."""
    return int(d.status.get("failedAttempts") or 0)


def _counted(d: _Draft, attempt: int) -> bool:
    """Whether attempt `attempt`'s failure is already in ``status.failedAttempts``.

    ``status.lastFailedAttempt`` is the number of the last attempt counted. A status
    written before that field existed has none: attempt numbers and failures went
    together then (no attempt was skipped), so ``failedAttempts`` stands for it.
    """
    last = d.status.get("lastFailedAttempt")
    return int(_failed_attempts(d) if last is None else last) >= attempt


def _count_failure(d: _Draft, attempt: int) -> int:
    """Count attempt `attempt`'s failure once; return how many attempts failed.

    The failed pod is seen on every reconcile until the next attempt's pod exists.
    """
    if not _counted(d, attempt):
        d.status["failedAttempts"] = _failed_attempts(d) + 1
        d.status["lastFailedAttempt"] = attempt
    return _failed_attempts(d)


def _await_retry(d: _Draft, attempt: int, failed: PodView | None, failures: int) -> None:
    """Create attempt `attempt` once the backoff after `failures` failures has passed.

    The delay counts from the failed container's ``finishedAt``, so it is the same
    after an operator restart; a pod that vanished or was evicted retries at once.
    """
    finished = failed.terminated.finished_at if failed and failed.terminated else None
    retry_at = d.obs.now
    if finished is not None:
        retry_at = finished + timedelta(seconds=d.obs.backoff.delay(failures))
    if d.obs.now >= retry_at:
        _create(d, attempt)
        return
    wait = (retry_at - d.obs.now).total_seconds()
    d.message = f"{d.message}; attempt {attempt} starts in {wait:.0f}s".lstrip("; ")
    d.wake(retry_at)


def _create(d: _Draft, attempt: int) -> None:
    """Ask for attempt `attempt`'s pod, unless admission or the API server says no."""
    obs = d.obs
    if not obs.admission.admitted:
        d.admitted = Cond(ADMITTED, False, obs.admission.reason, obs.admission.message)
        d.stalled = obs.admission.stalled
        if d.phase in (None, Phase.Pending):
            d.move(Phase.Pending, obs.admission.reason, obs.admission.message)
        return
    if obs.rejection is not None:
        d.admitted = Cond(ADMITTED, False, obs.rejection.reason, obs.rejection.message)
        d.stalled = obs.rejection.stalled
        if d.phase in (None, Phase.Pending):
            d.move(Phase.Pending, obs.rejection.reason, obs.rejection.message)
        else:
            d.reason, d.message = obs.rejection.reason, obs.rejection.message
        d.wake(obs.now + timedelta(seconds=refusal_delay(d.status, obs.agent.name, obs.now)))
        return
    d.actions.append(CreatePod(attempt))
    d.status["attempts"] = attempt
    d.status["podName"] = pod_name(obs.agent.name, attempt)
    if not d.status.get("startTime"):
        d.status["startTime"] = format_time(obs.now)
    if d.phase in (None, Phase.Pending):
        d.move(Phase.Starting, Reason.POD_CREATED, f"creating pod for attempt {attempt}")
    d.wake(obs.now + timedelta(seconds=obs.agent.startup_timeout_seconds))


_STARTING_PROGRESS = ("", "ContainerCreating", "PodInitializing")
"""Waiting reasons of a pod that is starting normally (no problem to report)."""

LAZY_STATUS_FIELDS = ("nodeName",)
"""Status fields that never cause a write on their own: recorded with the next write.

The pod's node is known once it is scheduled, which is not worth a status write of its
own (issue 11's write budget); the Running transition (or any problem) records it.
"""


def _observe_pending_pod(d: _Draft, pod: PodView) -> None:
    """A pod that exists but does not run yet: Starting, or a startup failure."""
    agent = d.obs.agent
    waiting = pod.waiting_reason or ""
    if waiting in _PERMANENT_PULL_FAILURES:
        _fail(d, Reason.IMAGE_PULL_FAILED, f"{waiting}: {pod.waiting_message or ''}".strip(), pod)
        return
    if pod.unschedulable:
        reason, message = Reason.UNSCHEDULABLE, pod.unschedulable
    elif waiting in _PULL_FAILURES:
        reason, message = Reason.IMAGE_PULL_BACK_OFF, f"{waiting}: {pod.waiting_message or ''}"
    elif (
        waiting in _STARTING_PROGRESS
        and d.phase == Phase.Starting
        and d.reason
        in (
            Reason.POD_CREATED,
            Reason.CONTAINER_CREATING,
        )
    ):
        # Ordinary progress (the pod seen, scheduled, its sandbox being made): the
        # status already says so; a write per kubelet update would say nothing new.
        reason, message = Reason(d.reason), d.message
    else:
        reason, message = Reason.CONTAINER_CREATING, waiting or "waiting for the sandbox to start"
    created = pod.created or d.obs.now
    deadline = created + timedelta(seconds=agent.startup_timeout_seconds)
    if d.obs.now >= deadline:
        _fail(
            d,
            Reason.STARTUP_TIMEOUT,
            f"pod {pod.name} did not start within {agent.startup_timeout_seconds}s"
            f" ({reason}: {message.strip()})",
            pod,
        )
        return
    d.move(Phase.Starting, reason, message.strip())
    d.wake(deadline)


def _observe_finished_pod(d: _Draft, pod: PodView, attempt: int) -> None:
    counted = not pod.succeeded and _counted(d, attempt)
    if not counted:  # first sight of the outcome: it ran (however briefly)
        if d.phase in (None, Phase.Pending):
            d.move(Phase.Starting, Reason.POD_CREATED, f"pod {pod.name} created")
        if d.phase == Phase.Starting:
            d.move(Phase.Running, Reason.POD_RUNNING, f"pod {pod.name} is running")
    term = pod.terminated
    # A termination message the status cannot hold as written is sanitized, never
    # refused: the note says what was dropped, in the message of the transition.
    note = ""
    if term is not None and term.message:
        result, usage, dropped = parse_termination_message(term.message)
        d.status["result"], d.status["usage"] = result, usage
        note = f" (termination message: {dropped})" if dropped else ""
    if pod.succeeded:
        d.status["exitCode"] = term.exit_code if term else 0
        d.move(Phase.Succeeded, Reason.COMPLETED, "the agent finished successfully" + note)
        _stop(d, pod)  # a sidecar may keep the pod running
        return
    reason, message = failure_of(pod)
    _retry_or_fail(d, attempt, pod, reason, message + note)


def _run(d: _Draft) -> None:
    """The non-terminal, non-suspended part of the machine."""
    obs, agent = d.obs, d.obs.agent
    attempt = max([int(d.status.get("attempts") or 0), *obs.pods])
    pod = obs.pods.get(attempt)
    if pod is not None and _stopped(d, attempt):
        # The pod a suspend stopped, seen again before its deletion is (an index that
        # lags): never adopted, never its outcome; stopped again if it seems to run.
        _stop(d, pod)
        _await_deletion(d, pod)
        return
    if not d.status.get("startTime") and pod is not None and not pod.deleting:
        # Adopted: the operator stopped between creating the pod and recording it.
        d.status["startTime"] = format_time(pod.created or obs.now)
    start = parse_time(d.status.get("startTime"))
    if agent.active_deadline_seconds is not None and start is not None:
        deadline = start + timedelta(seconds=agent.active_deadline_seconds)
        if obs.now >= deadline:
            _fail(
                d,
                Reason.DEADLINE_EXCEEDED,
                "the agent ran longer than activeDeadlineSeconds"
                f" ({agent.active_deadline_seconds}s)",
                pod,
            )
            return
        d.wake(deadline)
    if pod is not None and pod.deleting:
        _await_deletion(d, pod)
        return
    if pod is not None and pod.finished:
        d.status["attempts"] = max(int(d.status.get("attempts") or 0), attempt)
        _observe_finished_pod(d, pod, attempt)
        return
    if pod is None:
        previous = obs.pods.get(attempt - 1)
        if d.phase == Phase.Starting and previous is not None and previous.finished:
            # Written by an operator that advanced attempts before creating the pod.
            _await_retry(d, attempt, previous, max(_failed_attempts(d), 1))
            return
        if attempt >= 1 and d.phase in (Phase.Starting, Phase.Running):
            _retry_or_fail(
                d, attempt, None, Reason.POD_LOST, f"pod of attempt {attempt} disappeared"
            )
            return
        # Pending with a pod created before (attempts >= 1) and gone: the operator
        # stopped it (a suspend). The next pod is a new attempt, under a new name: a
        # pod name is never reused, so nothing still acting on the stopped pod by name
        # (a kubelet or a controller with a stale cache, kwok's simulated one) can touch
        # its successor, and the stopped pod's going is an older attempt's, never a loss.
        _create(d, max(attempt, int(d.status.get("stoppedAttempt") or 0)) + 1)
        return
    d.admitted = Cond(ADMITTED, True, Reason.ADMITTED, "")
    # Recorded here too: a pod whose creation was never recorded (the operator stopped
    # between creating it and writing status) is adopted, not duplicated.
    d.status["attempts"] = attempt
    d.status["podName"], d.status["nodeName"] = pod.name, pod.node_name

    if d.phase in (None, Phase.Pending):
        d.move(Phase.Starting, Reason.POD_CREATED, f"pod {pod.name} created")
    if pod.phase == "Running" and pod.running_since is not None:
        d.move(Phase.Running, Reason.POD_RUNNING, f"pod {pod.name} is running")
        d.ready = pod.ready
        if not pod.ready:
            d.reason, d.message = Reason.NOT_READY, "the readiness probe has not passed"
        return
    _observe_pending_pod(d, pod)


def _stopped(d: _Draft, attempt: int) -> bool:
    """Whether a suspend stopped attempt `attempt` (``status.stoppedAttempt``).

    Recorded when the suspend deletes (or finds gone) the attempt's pod; not when that
    pod had finished already, for its outcome is still to be read.
    """
    return attempt >= 1 and int(d.status.get("stoppedAttempt") or 0) >= attempt


def _await_deletion(d: _Draft, pod: PodView) -> None:
    """A pod being deleted never decides its attempt's outcome: wait until it is gone.

    A real kubelet marks a pod it SIGTERMs during its grace period ``Failed`` (exit 137
    or 143); that is the deletion, not the agent's result. Its disappearance is the next
    observation (PodLost if the Agent was running it, else a new pod). A pod still there
    ``terminating_timeout`` seconds after its deletionTimestamp sits on a lost node: it
    is force-deleted so that the attempt can be replaced (as PodGC does for pods of
    out-of-service nodes).
    """
    obs = d.obs
    if d.phase is None:
        d.move(Phase.Pending, Reason.CREATED)
    bound = (pod.deletion_deadline or obs.now) + timedelta(seconds=obs.terminating_timeout)
    if obs.now >= bound:
        d.actions.append(DeletePod(pod.name, force=True))
        return
    d.wake(bound)


def _conditions(d: _Draft) -> list[Cond]:
    phase, reason, message = d.phase, d.reason, d.message
    ready = phase == Phase.Succeeded or (phase == Phase.Running and d.ready)
    stalled = phase == Phase.Failed or (
        phase == Phase.Pending and (reason in STALLING_REASONS or d.stalled)
    )
    reconciling = not ready and not stalled and phase not in (Phase.Paused, *TERMINAL)
    if d.admitted is None:
        if phase in TERMINAL:
            d.admitted = Cond(ADMITTED, False, Reason.FINISHED, "the agent has finished")
        elif phase == Phase.Paused:
            d.admitted = Cond(ADMITTED, False, Reason.SUSPENDED, "the agent is suspended")
        elif phase in (Phase.Starting, Phase.Running):
            d.admitted = Cond(ADMITTED, True, Reason.ADMITTED, "")
        else:
            d.admitted = Cond(ADMITTED, False, reason, message)
    summary = message or str(reason)
    return [
        Cond(
            READY,
            ready,
            Reason.COMPLETED if phase == Phase.Succeeded else reason,
            "" if ready else summary,
        ),
        Cond(RECONCILING, reconciling, reason, summary if reconciling else ""),
        Cond(STALLED, stalled, reason, summary if stalled else ""),
        d.admitted,
        Cond(
            SUSPENDED,
            phase == Phase.Paused,
            Reason.SUSPENDED if phase == Phase.Paused else Reason.NOT_SUSPENDED,
            "",
        ),
    ]


def decide(obs: Observation) -> Decision:
    """Derive the Agent's next status and the actions that make the world match it.

    Pure and deterministic: the result depends on `obs` only. See the module docstring
    for the phases; :class:`Reason` lists every reason written.
    """
    agent = obs.agent
    status = dict(agent.status)
    previous = Phase(status["phase"]) if status.get("phase") else None
    d = _Draft(
        obs, previous, str(status.get("reason") or ""), str(status.get("message") or ""), status
    )
    attempt = max([int(status.get("attempts") or 0), *obs.pods])
    current = obs.pods.get(attempt)

    if agent.deleting or previous == Phase.Terminating:
        # A deletionTimestamp is never removed: Terminating is the last phase.
        d.move(Phase.Terminating, Reason.DELETED, "the Agent is being deleted")
    elif previous in TERMINAL:
        _finished(d)
    elif obs.spec_error is not None and not _awaiting_session(obs):
        _fail(d, obs.spec_error_reason, obs.spec_error, current)
    elif obs.session_failure is not None:
        _fail(d, Reason.DEADLINE_EXCEEDED, obs.session_failure, current)
    elif agent.suspend:
        d.move(Phase.Paused, Reason.SUSPENDED, agent.suspended_by)
        for pod in obs.pods.values():
            _stop(d, pod)
        status["startTime"] = None
        if attempt >= 1 and (current is None or current.deleting or not current.finished):
            # The attempt is over: resuming starts the next one (:func:`_stopped`). Its
            # pod existed, so it counts even if the write that recorded it was lost.
            status["stoppedAttempt"] = attempt
            status["attempts"] = max(int(status.get("attempts") or 0), attempt)
    else:
        if previous == Phase.Paused:
            d.move(Phase.Pending, Reason.RESUMED, "spec.suspend is false")
        _run(d)

    # Older attempts' pods are garbage once a newer attempt's pod exists (observed: a
    # pod only asked for may yet be refused, and the failed one is the record).
    latest = max([int(status.get("attempts") or 0), *obs.pods], default=0)
    if latest in obs.pods:
        for number, pod in obs.pods.items():
            if number < latest and not pod.deleting and DeletePod(pod.name) not in d.actions:
                d.actions.append(DeletePod(pod.name))

    if d.phase in TERMINAL and not status.get("completionTime"):
        status["completionTime"] = format_time(obs.now)
    if d.phase in TERMINAL:
        _ttl(d)
    return _finish(d)


def _awaiting_session(obs: Observation) -> bool:
    """Whether a member waits for its session instead of failing for an invalid spec.

    The session is not there yet, and its defaults may supply what the spec lacks
    (``kubectl apply -f dir/`` and Argo CD apply the member first); not once its
    defaults were recorded.
    """
    return (
        obs.admission.reason == Reason.SESSION_NOT_FOUND
        and obs.spec_error_reason == Reason.INVALID_SPEC
        and obs.agent.status.get("sessionDefaults") is None
    )


def _same_but_lazy(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Whether `new` differs from `old` in :data:`LAZY_STATUS_FIELDS` only (if at all)."""
    return {k: v for k, v in new.items() if k not in LAZY_STATUS_FIELDS} == {
        k: v for k, v in old.items() if k not in LAZY_STATUS_FIELDS
    }


def _finished(d: _Draft) -> None:
    """A terminal Agent stays terminal; its unfinished pod (if any) is stopped."""
    for pod in d.obs.pods.values():
        _stop(d, pod)


def _ttl(d: _Draft) -> None:
    ttl = d.obs.agent.ttl_seconds_after_finished
    done = parse_time(d.status.get("completionTime"))
    if ttl is None or done is None:
        return
    expiry = done + timedelta(seconds=ttl)
    if d.obs.now >= expiry:
        d.delete_agent = True
    else:
        d.wake(expiry)


def _finish(d: _Draft) -> Decision:
    obs = d.obs
    now = format_time(obs.now)
    phase = d.phase or Phase.Pending
    d.phase = phase
    status = d.status
    status["phase"] = str(phase)
    status["reason"] = str(d.reason) or None
    status["message"] = d.message or None
    status["observedGeneration"] = obs.agent.generation
    live = phase in (Phase.Starting, Phase.Running)
    if live and obs.session_defaults is not None and "sessionDefaults" not in status:
        # Admitted and running: its defaults are resolved once, now, and kept.
        status["sessionDefaults"] = dict(obs.session_defaults)
    if obs.agent.runtime_class:
        status["runtimeClassName"] = obs.agent.runtime_class
    status["conditions"] = merge_conditions(
        status.get("conditions"), _conditions(d), now=now, generation=obs.agent.generation
    )
    history = list(status.get("history") or [])
    seq = int(history[-1]["seq"]) if history else 0
    for step in d.transitions:
        seq += 1
        entry: dict[str, Any] = {"seq": seq}
        if step.from_phase is not None:  # the API server drops nulls: never write one
            entry["from"] = str(step.from_phase)
        entry.update(to=str(step.to_phase), reason=str(step.reason), message=step.message, time=now)
        history.append(entry)
    status["history"] = history[-obs.history_limit :]
    requeue = None
    if d.wake_at and not d.delete_agent:
        soonest = min(d.wake_at)
        requeue = max((soonest - obs.now).total_seconds(), 0.0)
    final = {k: v for k, v in status.items() if v is not None}
    if _same_but_lazy(final, obs.agent.status):
        final = dict(obs.agent.status)
    return Decision(
        status=final,
        transitions=tuple(d.transitions),
        actions=tuple(d.actions),
        requeue_after=requeue,
        delete_agent=d.delete_agent,
        rejected=tuple(d.rejected),
        awaiting_verdict=(
            obs.admission.reason == Reason.AWAITING_ADMISSION
            and phase == Phase.Pending
            and obs.agent.status.get("phase") in (None, Phase.Pending)
            and not d.delete_agent
        ),
    )
