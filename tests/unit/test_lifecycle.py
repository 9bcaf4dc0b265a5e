"""The lifecycle state machine: one test per path, then properties over random histories."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.api.agent import Phase, RestartPolicy
from stockade.config import load_config
from stockade.core.backoff import Backoff
from stockade.core.lifecycle import (
    TRANSITIONS,
    Admission,
    AgentView,
    CreatePod,
    Decision,
    DeletePod,
    Observation,
    Reason,
    Rejection,
    decide,
    is_allowed,
)
from stockade.core.observe import PodView, Terminated, format_time

T0 = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)

ONE_SECOND = Backoff(1.0, 1.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def agent(**kw: Any) -> AgentView:
    return AgentView(name="a", **kw)


def pod(attempt: int = 1, phase: str = "Pending", **kw: Any) -> PodView:
    kw.setdefault("created", T0)
    return PodView(name=f"a-{attempt}", attempt=attempt, phase=phase, **kw)


def running(attempt: int = 1, ready: bool = True, **kw: Any) -> PodView:
    return pod(attempt, "Running", running_since=T0, ready=ready, node_name="n1", **kw)


def exited(
    attempt: int, code: int, finished: float = 5.0, message: str = "", reason: str = ""
) -> PodView:
    term = Terminated(
        code, reason or ("Completed" if code == 0 else "Error"), message, at(finished)
    )
    return pod(attempt, "Succeeded" if code == 0 else "Failed", terminated=term)


def cond(decision: Decision, type_: str) -> dict[str, Any]:
    return next(c for c in decision.status["conditions"] if c["type"] == type_)


def step(view: AgentView, decision: Decision) -> AgentView:
    """The Agent after the decision's status was written."""
    return replace(view, status=decision.status)


# --- the table ---------------------------------------------------------------------


def test_transition_table_is_the_design_diagram() -> None:
    P = Phase
    expected = {
        (None, P.Pending),
        (P.Pending, P.Starting),
        (P.Pending, P.Paused),
        (P.Pending, P.Failed),
        (P.Starting, P.Running),
        (P.Starting, P.Failed),
        (P.Starting, P.Paused),
        (P.Running, P.Succeeded),
        (P.Running, P.Failed),
        (P.Running, P.Starting),
        (P.Running, P.Paused),
        (P.Paused, P.Pending),
        (P.Paused, P.Failed),
    } | {(p, P.Terminating) for p in [None, *Phase] if p != P.Terminating}
    assert expected == TRANSITIONS
    assert not is_allowed(P.Succeeded, P.Running)
    assert not is_allowed(P.Failed, P.Pending)
    assert not is_allowed(P.Terminating, P.Pending)


# --- paths -------------------------------------------------------------------------


def test_new_agent_gets_a_pod() -> None:
    d = decide(Observation(agent=agent(), now=T0))
    assert d.phase == Phase.Starting
    assert d.actions == (CreatePod(1),)
    assert [(t.from_phase, t.to_phase) for t in d.transitions] == [
        (None, Phase.Pending),
        (Phase.Pending, Phase.Starting),
    ]
    assert d.status["attempts"] == 1
    assert d.status["startTime"] == format_time(T0)
    assert d.requeue_after == 300  # the startup timeout
    assert cond(d, "Reconciling")["status"] == "True"
    assert cond(d, "Ready")["status"] == "False"
    assert [h["seq"] for h in d.status["history"]] == [1, 2]


def test_running_then_succeeded_with_result_and_usage() -> None:
    d1 = decide(Observation(agent=agent(), now=T0))
    view = step(agent(), d1)
    d2 = decide(Observation(agent=view, now=at(2), pods={1: running()}))
    assert d2.phase == Phase.Running
    assert d2.actions == ()
    assert cond(d2, "Ready")["status"] == "True"
    assert cond(d2, "Reconciling")["status"] == "False"
    assert d2.status["podName"] == "a-1"
    view = step(view, d2)
    message = '{"result": "42", "usage": {"inputTokens": 10, "outputTokens": 3, "costUSD": 0.5}}'
    d3 = decide(Observation(agent=view, now=at(6), pods={1: exited(1, 0, message=message)}))
    assert d3.phase == Phase.Succeeded
    assert d3.status["result"] == "42"
    assert d3.status["usage"] == {"inputTokens": 10, "outputTokens": 3, "costUSD": 0.5}
    assert d3.status["exitCode"] == 0
    assert d3.status["completionTime"] == format_time(at(6))
    assert cond(d3, "Ready")["status"] == "True"
    assert cond(d3, "Stalled")["status"] == "False"
    assert cond(d3, "Admitted")["reason"] == Reason.FINISHED
    assert d3.actions == ()  # the finished pod stays for its logs


def test_plain_lifecycle_costs_three_status_writes() -> None:
    """Every kubelet update is observed, but only Starting, Running, Succeeded are writes.

    The pod appearing, being scheduled (nodeName) and ContainerCreating are ordinary
    progress of Starting: recording each would be a status write per pod update
    (issue 11's budget: the pod and at most 3 status patches per one-shot Agent).
    """
    updates = [
        pod(1),  # the watch shows the created pod
        pod(1, node_name="n1"),  # scheduled
        pod(1, node_name="n1", waiting_reason="ContainerCreating"),  # the kubelet starts it
        running(),
        exited(1, 0),
    ]
    view, writes = agent(), 0
    d = decide(Observation(agent=view, now=T0))
    for n, observed in enumerate([None, *updates]):
        pods = {} if observed is None else {1: observed}
        d = decide(Observation(agent=view, now=at(n), pods=pods))
        if d.status != view.status:
            writes += 1
            view = step(view, d)
    assert d.phase == Phase.Succeeded
    assert writes == 3
    assert view.status["nodeName"] == "n1"  # recorded with the Running write


def test_a_problem_while_starting_is_still_written() -> None:
    view = agent(status={"phase": "Starting", "attempts": 1, "startTime": format_time(T0)})
    d = decide(
        Observation(
            agent=step(view, decide(Observation(agent=view, now=T0, pods={1: pod(1)}))),
            now=at(1),
            pods={1: pod(1, node_name="n1", waiting_reason="ImagePullBackOff")},
        )
    )
    assert d.status["reason"] == Reason.IMAGE_PULL_BACK_OFF
    assert d.status["nodeName"] == "n1"


def test_plain_text_termination_message_is_the_result() -> None:
    view = agent(status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)})
    d = decide(Observation(agent=view, now=at(6), pods={1: exited(1, 0, message="all done\n")}))
    assert d.status["result"] == "all done"
    assert "usage" not in d.status


def test_hostile_termination_message_still_finishes_and_says_what_was_dropped() -> None:
    view = agent(status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)})
    message = '{"result": "a\\ud800", "usage": {"costUSD": NaN, "inputTokens": 4}}' + " " * 9
    d = decide(Observation(agent=view, now=at(6), pods={1: exited(1, 0, message=message)}))
    assert d.phase == Phase.Succeeded
    assert (d.status["result"], d.status["usage"]) == ("a\ufffd", {"inputTokens": 4})
    assert d.status["message"] == (
        "the agent finished successfully (termination message: result: invalid Unicode"
        " replaced by U+FFFD; usage.costUSD dropped: not a finite number)"
    )
    assert d.status["history"][-1]["message"] == d.status["message"]
    json.dumps(d.status, allow_nan=False).encode("utf-8")


def test_hostile_termination_message_of_a_failed_pod_is_noted_too() -> None:
    view = agent(status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)})
    deep = "[" * 100_000
    d = decide(Observation(agent=view, now=at(6), pods={1: exited(1, 2, message=deep)}))
    assert d.phase == Phase.Failed
    assert d.status["reason"] == Reason.ERROR
    assert d.status["message"].endswith(
        "(termination message: nested deeper than 64 levels: taken as plain text;"
        " result cut to 4096 characters)"
    )
    assert d.status["result"] == "[" * 4096


def test_fast_pod_finishing_before_running_was_seen_records_both_steps() -> None:
    view = step(agent(), decide(Observation(agent=agent(), now=T0)))
    d = decide(Observation(agent=view, now=at(3), pods={1: exited(1, 0)}))
    assert [(t.from_phase, t.to_phase) for t in d.transitions] == [
        (Phase.Starting, Phase.Running),
        (Phase.Running, Phase.Succeeded),
    ]


def test_exit_nonzero_with_never_fails_with_error() -> None:
    view = agent(status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)})
    d = decide(Observation(agent=view, now=at(6), pods={1: exited(1, 3, message="boom")}))
    assert d.phase == Phase.Failed
    assert d.status["reason"] == Reason.ERROR
    assert "exited with code 3" in d.status["message"]
    assert d.status["exitCode"] == 3
    assert cond(d, "Stalled")["status"] == "True"
    assert cond(d, "Ready")["status"] == "False"


def test_on_failure_retries_with_backoff_then_gives_up() -> None:
    view = agent(
        restart_policy=RestartPolicy.ON_FAILURE,
        backoff_limit=1,
        status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)},
    )
    backoff = Backoff(10.0, 20.0)
    failed = exited(1, 1, finished=5)
    d = decide(Observation(agent=view, now=at(6), pods={1: failed}, backoff=backoff))
    assert d.phase == Phase.Starting
    assert d.status["attempts"] == 1  # counts pods created, not attempts planned
    assert d.actions == ()  # waiting for the backoff
    assert d.requeue_after == pytest.approx(9.0)
    assert d.transitions[0].reason == Reason.ERROR
    view = step(view, d)
    # Still waiting: idempotent, no new transition.
    d = decide(Observation(agent=view, now=at(10), pods={1: failed}, backoff=backoff))
    assert d.transitions == () and d.actions == ()
    # Backoff over: next attempt; the failed pod stays until its successor exists.
    d = decide(Observation(agent=view, now=at(15), pods={1: failed}, backoff=backoff))
    assert d.actions == (CreatePod(2),)
    assert d.status["attempts"] == 2
    view = step(view, d)
    d = decide(
        Observation(agent=view, now=at(16), pods={1: failed, 2: running(2)}, backoff=backoff)
    )
    assert d.phase == Phase.Running
    assert d.actions == (DeletePod("a-1"),)
    view = step(view, d)
    d = decide(
        Observation(agent=view, now=at(20), pods={2: exited(2, 1, finished=19)}, backoff=backoff)
    )
    assert d.phase == Phase.Failed
    assert d.status["reason"] == Reason.BACKOFF_LIMIT_EXCEEDED
    assert "2 attempts failed" in d.status["message"]


def test_oom_killed() -> None:
    view = agent(status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)})
    d = decide(Observation(agent=view, now=at(6), pods={1: exited(1, 137, reason="OOMKilled")}))
    assert (d.phase, d.status["reason"]) == (Phase.Failed, Reason.OOM_KILLED)


def test_evicted_pod() -> None:
    view = agent(status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)})
    evicted = pod(1, "Failed", reason="Evicted", message="node pressure")
    d = decide(Observation(agent=view, now=at(6), pods={1: evicted}))
    assert (d.phase, d.status["reason"]) == (Phase.Failed, Reason.EVICTED)


def test_active_deadline_exceeded_deletes_the_pod() -> None:
    view = agent(
        active_deadline_seconds=30,
        status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)},
    )
    d = decide(Observation(agent=view, now=at(10), pods={1: running()}))
    assert d.phase == Phase.Running and d.requeue_after == pytest.approx(20)
    d = decide(Observation(agent=view, now=at(30), pods={1: running()}))
    assert (d.phase, d.status["reason"]) == (Phase.Failed, Reason.DEADLINE_EXCEEDED)
    assert d.actions == (DeletePod("a-1"),)


def test_startup_timeout_while_image_does_not_pull() -> None:
    view = agent(
        startup_timeout_seconds=20,
        status={"phase": "Starting", "attempts": 1, "startTime": format_time(T0)},
    )
    stuck = pod(1, waiting_reason="ErrImagePull", waiting_message="not found")
    d = decide(Observation(agent=view, now=at(5), pods={1: stuck}))
    assert d.phase == Phase.Starting
    assert d.status["reason"] == Reason.IMAGE_PULL_BACK_OFF
    assert d.requeue_after == pytest.approx(15)
    d = decide(Observation(agent=view, now=at(20), pods={1: stuck}))
    assert (d.phase, d.status["reason"]) == (Phase.Failed, Reason.STARTUP_TIMEOUT)
    assert "ErrImagePull" in d.status["message"]
    assert d.actions == (DeletePod("a-1"),)


def test_invalid_image_name_fails_at_once() -> None:
    view = agent(status={"phase": "Starting", "attempts": 1, "startTime": format_time(T0)})
    bad = pod(1, waiting_reason="InvalidImageName", waiting_message="bad ref")
    d = decide(Observation(agent=view, now=at(1), pods={1: bad}))
    assert (d.phase, d.status["reason"]) == (Phase.Failed, Reason.IMAGE_PULL_FAILED)


def test_unschedulable_is_reported_while_starting() -> None:
    view = agent(status={"phase": "Starting", "attempts": 1, "startTime": format_time(T0)})
    d = decide(Observation(agent=view, now=at(1), pods={1: pod(1, unschedulable="0/3 nodes")}))
    assert (d.phase, d.status["reason"]) == (Phase.Starting, Reason.UNSCHEDULABLE)
    assert cond(d, "Ready")["message"] == "0/3 nodes"


def test_suspend_and_resume() -> None:
    view = agent(status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)})
    d = decide(Observation(agent=replace(view, suspend=True), now=at(5), pods={1: running()}))
    assert d.phase == Phase.Paused
    assert d.actions == (DeletePod("a-1"),)
    assert cond(d, "Suspended")["status"] == "True"
    assert cond(d, "Admitted")["reason"] == Reason.SUSPENDED
    assert cond(d, "Reconciling")["status"] == "False"
    assert "startTime" not in d.status
    paused = step(replace(view, suspend=True), d)
    # The old pod is still going away: resume waits for it.
    leaving = replace(running(), deleting=True)
    d = decide(Observation(agent=replace(paused, suspend=False), now=at(6), pods={1: leaving}))
    assert d.phase == Phase.Pending and d.actions == ()
    d = decide(Observation(agent=replace(paused, suspend=False), now=at(7)))
    assert d.phase == Phase.Starting
    # A new attempt under a new name: the stopped pod's name is never reused.
    assert d.actions == (CreatePod(2),)
    assert d.status["attempts"] == 2 and d.status["podName"] == "a-2"
    assert [t.to_phase for t in d.transitions] == [Phase.Pending, Phase.Starting]


def stopped_pod_sightings() -> list[dict[int, PodView]]:
    """What the pod index may show of a stopped attempt 1, in any order, while attempt 2
    starts: still running (the delete not yet seen), deleting, marked Failed by its
    SIGTERM while deleting, gone, or recreated by nobody but still listed."""
    sigterm = replace(exited(1, 143), deleting=True)
    return [
        {1: running()},
        {1: replace(running(), deleting=True)},
        {1: sigterm},
        {},
        {1: sigterm, 2: pod(2)},
        {2: pod(2)},
        {1: replace(running(), deleting=True), 2: running(2)},
        {2: running(2)},
    ]


@settings(max_examples=300, deadline=None)
@given(order=st.lists(st.sampled_from(range(8)), min_size=1, max_size=12))
def test_a_stopped_pod_never_reads_as_lost_whatever_order_its_events_arrive_in(
    order: list[int],
) -> None:
    """Issue 25: suspend, resume at once, then the stopped pod's events in any order
    (and anyone deleting "a-1" by name meanwhile) never fail the Agent."""
    view = agent(status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)})
    d = decide(Observation(agent=replace(view, suspend=True), now=at(5), pods={1: running()}))
    view = step(view, d)
    sightings = stopped_pod_sightings()
    for n, index in enumerate(order):
        pods = sightings[index]
        if int(view.status.get("attempts") or 0) < 2:
            pods = {k: v for k, v in pods.items() if k == 1}  # a-2 not created yet
        else:  # created: the shell reads it when the index has not shown it yet
            pods = {2: pod(2), **pods}
        d = decide(Observation(agent=view, now=at(6 + n), pods=pods))
        assert d.phase != Phase.Failed, (order, n, d.status.get("message"))
        assert all(a != CreatePod(1) for a in d.actions)
        view = step(view, d)


def test_failures_are_counted_apart_from_attempt_numbers() -> None:
    """Attempts resumed after a suspend take numbers without failing: backoffLimit
    counts failures (status.failedAttempts), and each one once."""
    view = agent(
        restart_policy=RestartPolicy.ON_FAILURE,
        backoff_limit=1,
        status={
            "phase": "Running",
            "attempts": 3,
            "startTime": format_time(T0),
            "failedAttempts": 0,
        },
    )
    failed = exited(3, 1, finished=5)
    d = decide(Observation(agent=view, now=at(6), pods={3: failed}, backoff=ONE_SECOND))
    assert d.phase == Phase.Starting  # 1 failure <= backoffLimit 1: retried
    assert d.status["failedAttempts"] == 1 and d.status["lastFailedAttempt"] == 3
    view = step(view, d)
    d = decide(Observation(agent=view, now=at(6.5), pods={3: failed}, backoff=ONE_SECOND))
    assert d.status["failedAttempts"] == 1  # seen again: not counted again
    d = decide(Observation(agent=view, now=at(7), pods={3: failed}, backoff=ONE_SECOND))
    assert d.actions == (CreatePod(4),)
    view = step(view, d)
    d = decide(Observation(agent=view, now=at(9), pods={3: failed, 4: exited(4, 1, finished=8)}))
    assert d.phase == Phase.Failed and d.status["reason"] == Reason.BACKOFF_LIMIT_EXCEEDED
    assert d.status["failedAttempts"] == 2
    assert "2 attempts failed (backoffLimit 1)" in d.status["message"]


def test_a_status_from_before_last_failed_attempt_counts_as_before() -> None:
    view = agent(
        restart_policy=RestartPolicy.ON_FAILURE,
        backoff_limit=3,
        status={
            "phase": "Starting",
            "attempts": 2,
            "failedAttempts": 2,
            "startTime": format_time(T0),
        },
    )
    d = decide(Observation(agent=view, now=at(6), pods={2: exited(2, 1)}, backoff=ONE_SECOND))
    assert d.status["failedAttempts"] == 2  # attempt 2's failure was counted already


def test_deletion_is_terminating_from_any_phase() -> None:
    for phase in Phase:
        if phase == Phase.Terminating:
            continue
        view = agent(deleting=True, status={"phase": str(phase)})
        d = decide(Observation(agent=view, now=T0))
        assert d.phase == Phase.Terminating
        assert d.actions == ()


def test_ttl_after_finished_deletes_the_agent() -> None:
    done = {"phase": "Succeeded", "completionTime": format_time(T0), "attempts": 1}
    view = agent(ttl_seconds_after_finished=60, status=done)
    d = decide(Observation(agent=view, now=at(30)))
    assert not d.delete_agent and d.requeue_after == pytest.approx(30)
    assert decide(Observation(agent=view, now=at(60))).delete_agent


def test_quota_rejection_waits_with_growing_backoff() -> None:
    rejection = Rejection(Reason.QUOTA_EXCEEDED, 'exceeded quota: "q"')
    d = decide(Observation(agent=agent(), now=T0, rejection=rejection))
    assert d.phase == Phase.Pending
    assert d.actions == ()
    admitted = cond(d, "Admitted")
    assert (admitted["status"], admitted["reason"]) == ("False", Reason.QUOTA_EXCEEDED)
    assert cond(d, "Stalled")["status"] == "False"
    assert 1.0 <= d.requeue_after <= 1.25  # 1 s, plus up to 25% jitter
    later = decide(Observation(agent=step(agent(), d), now=at(8), rejection=rejection))
    assert 8.0 <= later.requeue_after <= 10.0
    # The jitter is fixed per Agent name (deterministic) and differs between Agents.
    again = decide(Observation(agent=step(agent(), d), now=at(8), rejection=rejection))
    assert again.requeue_after == later.requeue_after
    delays = {
        decide(
            Observation(agent=AgentView(name=f"a{i}"), now=T0, rejection=rejection)
        ).requeue_after
        for i in range(20)
    }
    assert len(delays) > 10
    # Quota raised: the next observation has no rejection and creates the pod.
    ok = decide(Observation(agent=step(agent(), d), now=at(9)))
    assert ok.actions == (CreatePod(1),)
    assert cond(ok, "Admitted")["status"] == "True"


def test_missing_runtime_class_stalls() -> None:
    rejection = Rejection(Reason.RUNTIME_CLASS_NOT_FOUND, 'RuntimeClass "x" not found')
    d = decide(Observation(agent=agent(), now=T0, rejection=rejection))
    assert d.phase == Phase.Pending
    assert cond(d, "Stalled")["status"] == "True"
    assert d.status["reason"] == Reason.RUNTIME_CLASS_NOT_FOUND


def test_invalid_spec_fails() -> None:
    d = decide(Observation(agent=agent(), now=T0, spec_error="spec.image: required"))
    assert (d.phase, d.status["reason"]) == (Phase.Failed, Reason.INVALID_SPEC)
    assert d.status["message"] == "spec.image: required"


def test_refused_namespace_fails_and_stalls() -> None:
    message = "metadata.namespace: Agents never run in namespace 'kube-system'"
    obs = Observation(
        agent=agent(),
        now=T0,
        spec_error=message,
        spec_error_reason=Reason.NAMESPACE_NOT_ALLOWED,
    )
    d = decide(obs)
    assert (d.phase, d.status["reason"]) == (Phase.Failed, Reason.NAMESPACE_NOT_ALLOWED)
    assert d.actions == ()
    assert cond(d, "Stalled")["status"] == "True"
    assert cond(d, "Stalled")["reason"] == Reason.NAMESPACE_NOT_ALLOWED
    assert d.transitions[-1].reason == Reason.NAMESPACE_NOT_ALLOWED


def test_session_admission_keeps_the_agent_pending() -> None:
    waiting = Admission(False, Reason.SESSION_FULL, "8 of 8 agents running")
    d = decide(Observation(agent=agent(), now=T0, admission=waiting))
    assert d.phase == Phase.Pending and d.actions == ()
    assert cond(d, "Admitted")["reason"] == Reason.SESSION_FULL


def test_pod_lost_is_retried_under_on_failure_and_fatal_under_never() -> None:
    status = {"phase": "Running", "attempts": 1, "startTime": format_time(T0)}
    d = decide(
        Observation(agent=agent(restart_policy=RestartPolicy.ON_FAILURE, status=status), now=at(5))
    )
    assert d.phase == Phase.Starting
    assert d.actions == (CreatePod(2),)
    d = decide(Observation(agent=agent(status=status), now=at(5)))
    assert (d.phase, d.status["reason"]) == (Phase.Failed, Reason.POD_LOST)


def test_adopts_a_pod_whose_creation_was_not_recorded() -> None:
    # Crash between creating the pod and writing status: the pod is adopted, not duplicated.
    d = decide(Observation(agent=agent(), now=at(1), pods={1: running()}))
    assert d.actions == ()
    assert d.phase == Phase.Running
    assert d.status["attempts"] == 1
    finished = decide(Observation(agent=agent(), now=at(1), pods={1: exited(1, 0)}))
    assert finished.status["attempts"] == 1


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    view = agent(status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)})
    d1 = decide(Observation(agent=view, now=at(1), pods={1: running()}))
    d2 = decide(Observation(agent=step(view, d1), now=at(50), pods={1: running()}))
    assert cond(d2, "Ready")["lastTransitionTime"] == format_time(at(1))
    assert d2.status == d1.status


def test_history_keeps_the_last_n() -> None:
    history = [
        {"seq": i, "from": "Pending", "to": "Starting", "reason": "x", "message": "", "time": "t"}
        for i in range(1, 21)
    ]
    view = agent(status={"phase": "Running", "attempts": 1, "history": history})
    d = decide(Observation(agent=view, now=at(5), pods={1: exited(1, 0)}, history_limit=20))
    assert len(d.status["history"]) == 20
    assert d.status["history"][-1]["seq"] == 21
    assert d.status["history"][-1]["to"] == "Succeeded"


def test_observed_generation_is_written() -> None:
    d = decide(Observation(agent=agent(generation=7), now=T0))
    assert d.status["observedGeneration"] == 7
    assert all(c["observedGeneration"] == 7 for c in d.status["conditions"])


# --- properties ----------------------------------------------------------------------

pod_states = st.sampled_from(
    [
        "none",
        "pending",
        "pull-error",
        "unschedulable",
        "running",
        "not-ready",
        "ok",
        "error",
        "oom",
        "evicted",
        "deleting",
        "invalid-image",
    ]
)


def make_pod(kind: str, attempt: int, now: datetime) -> PodView | None:
    return {
        "none": None,
        "pending": pod(attempt, created=now),
        "pull-error": pod(attempt, created=now, waiting_reason="ImagePullBackOff"),
        "unschedulable": pod(attempt, created=now, unschedulable="no nodes"),
        "running": running(attempt),
        "not-ready": running(attempt, ready=False),
        "ok": exited(attempt, 0, finished=0),
        "error": exited(attempt, 2, finished=0),
        "oom": exited(attempt, 137, finished=0, reason="OOMKilled"),
        "evicted": pod(attempt, "Failed", reason="Evicted"),
        "deleting": replace(running(attempt), deleting=True),
        "invalid-image": pod(attempt, created=now, waiting_reason="InvalidImageName"),
    }[kind]


world = st.fixed_dictionaries(
    {
        "pod": pod_states,
        "attempt_offset": st.sampled_from([-1, 0, 0, 0, 1]),
        "suspend": st.booleans(),
        "deleting": st.sampled_from([False] * 9 + [True]),
        "advance": st.floats(min_value=0, max_value=400),
        "admitted": st.sampled_from([True, True, True, False]),
        "rejection": st.sampled_from([None, None, None, Reason.QUOTA_EXCEEDED]),
    }
)
agent_specs = st.builds(
    lambda policy, limit, deadline, ttl: agent(
        restart_policy=policy,
        backoff_limit=limit,
        active_deadline_seconds=deadline,
        ttl_seconds_after_finished=ttl,
        startup_timeout_seconds=120,
    ),
    st.sampled_from(list(RestartPolicy)),
    st.integers(0, 3),
    st.sampled_from([None, 60, 600]),
    st.sampled_from([None, 0, 100]),
)


def observation(view: AgentView, w: dict[str, Any], now: datetime) -> Observation:
    attempt = max(int(view.status.get("attempts") or 0) + w["attempt_offset"], 1)
    p = make_pod(w["pod"], attempt, now)
    rejection = Rejection(w["rejection"], "no") if w["rejection"] else None
    return Observation(
        agent=replace(view, suspend=w["suspend"], deleting=w["deleting"]),
        now=now,
        pods={attempt: p} if p else {},
        admission=Admission() if w["admitted"] else Admission(False, Reason.SESSION_FULL, "full"),
        rejection=rejection,
        backoff=Backoff(5.0, 10.0),
    )


@settings(max_examples=300, deadline=None)
@given(agent_specs, st.lists(world, min_size=1, max_size=25))
def test_no_history_leaves_the_table(view: AgentView, worlds: list[dict[str, Any]]) -> None:
    now = T0
    for w in worlds:
        now += timedelta(seconds=w["advance"])
        d = decide(observation(view, w, now))
        assert d.rejected == ()
        for t in d.transitions:
            assert is_allowed(t.from_phase, t.to_phase), t
        phases = [view.status.get("phase")] + [str(t.to_phase) for t in d.transitions]
        for a, b in itertools.pairwise(phases):
            assert a != b
        assert d.status["phase"] == (
            str(d.transitions[-1].to_phase)
            if d.transitions
            else view.status.get("phase", d.status["phase"])
        )
        seqs = [h["seq"] for h in d.status["history"]]
        assert seqs == sorted(set(seqs))
        if view.status.get("phase") in ("Succeeded", "Failed") and not w["deleting"]:
            assert d.status["phase"] == view.status["phase"]  # terminal stays terminal
        view = replace(view, status=d.status)


@settings(max_examples=300, deadline=None)
@given(agent_specs, st.lists(world, min_size=1, max_size=10), world)
def test_deciding_twice_gives_the_same_answer(
    view: AgentView, history: list[dict[str, Any]], last: dict[str, Any]
) -> None:
    now = T0
    for w in history:
        now += timedelta(seconds=w["advance"])
        view = replace(view, status=decide(observation(view, w, now)).status)
    obs = observation(view, last, now + timedelta(seconds=last["advance"]))
    assert decide(obs) == decide(obs)


def test_session_deadline_fails_a_running_member() -> None:
    view = agent(status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)})
    d = decide(
        Observation(agent=view, now=at(5), pods={1: running()}, session_failure="session late")
    )
    assert (d.phase, d.status["reason"], d.status["message"]) == (
        Phase.Failed,
        Reason.DEADLINE_EXCEEDED,
        "session late",
    )
    assert d.actions == (DeletePod("a-1"),)


def test_a_budget_that_never_fits_stalls_the_agent() -> None:
    never = Admission(False, Reason.BUDGET_EXCEEDED, "can never be admitted", stalled=True)
    d = decide(Observation(agent=agent(), now=T0, admission=never))
    assert d.phase == Phase.Pending
    assert cond(d, "Stalled")["status"] == "True"
    waiting = Admission(False, Reason.BUDGET_EXCEEDED, "waiting for budget")
    d = decide(Observation(agent=agent(), now=T0, admission=waiting))
    assert cond(d, "Stalled")["status"] == "False"


# --- issue 8: what a real kubelet and a real API server do ---------------------------


def deleting(p: PodView, seconds: float = 30.0) -> PodView:
    """`p` after a DELETE: Terminating until `seconds` past T0 (its deletionTimestamp)."""
    return replace(p, deleting=True, deletion_deadline=at(seconds))


def test_refused_retry_keeps_the_failed_pod_and_burns_no_attempt() -> None:
    view = agent(
        restart_policy=RestartPolicy.ON_FAILURE,
        backoff_limit=1,
        status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)},
    )
    failed = exited(1, 1, finished=5)
    d = decide(Observation(agent=view, now=at(5.5), pods={1: failed}, backoff=ONE_SECOND))
    view = step(view, d)
    assert d.status["failedAttempts"] == 1 and d.actions == ()
    quota = Rejection(Reason.QUOTA_EXCEEDED, 'exceeded quota: "q"')
    # The ResourceQuota refuses attempt 2 again and again: nothing is counted, the
    # failed pod is not deleted, the Agent waits.
    for second in (7, 20, 60, 300):
        d = decide(
            Observation(
                agent=view,
                now=at(second),
                pods={1: failed},
                rejection=quota,
                backoff=ONE_SECOND,
            )
        )
        assert d.actions == ()
        assert d.status["attempts"] == 1 and d.status["failedAttempts"] == 1
        assert (d.phase, d.status["reason"]) == (Phase.Starting, Reason.QUOTA_EXCEEDED)
        assert d.transitions == ()
        view = step(view, d)
    # Even if someone deletes the failed pod meanwhile, no attempt is burnt.
    d = decide(Observation(agent=view, now=at(301), pods={}, rejection=quota, backoff=ONE_SECOND))
    assert d.phase == Phase.Starting and d.status["failedAttempts"] == 1
    d = decide(Observation(agent=view, now=at(302), pods={}, backoff=ONE_SECOND))
    assert d.actions == (CreatePod(2),) and d.status["attempts"] == 2


def test_a_deleting_pod_never_decides_the_outcome() -> None:
    # A real kubelet marks a pod it SIGTERMs during the grace period Failed (143).
    view = agent(status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)})
    killed = deleting(exited(1, 143, finished=5))
    d = decide(Observation(agent=view, now=at(6), pods={1: killed}))
    assert d.phase == Phase.Running and d.actions == ()
    assert "exitCode" not in d.status and d.transitions == ()
    # Gone: the attempt's pod was lost (Never: the Agent fails with PodLost).
    d = decide(Observation(agent=view, now=at(31), pods={}))
    assert (d.phase, d.status["reason"]) == (Phase.Failed, Reason.POD_LOST)


def test_resume_within_the_grace_period_waits_for_the_old_pod() -> None:
    view = agent(
        restart_policy=RestartPolicy.ON_FAILURE,
        backoff_limit=0,
        status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)},
    )
    d = decide(Observation(agent=replace(view, suspend=True), now=at(5), pods={1: running()}))
    assert d.phase == Phase.Paused and d.actions == (DeletePod("a-1"),)
    view = step(view, d)
    # Resumed while the pod still terminates and shows Failed/143, then Succeeded/0.
    for p in (deleting(exited(1, 143, finished=6)), deleting(exited(1, 0, finished=6))):
        d = decide(Observation(agent=view, now=at(7), pods={1: p}))
        assert d.phase == Phase.Pending and d.actions == ()
        assert d.status.get("failedAttempts") is None
        assert d.requeue_after == pytest.approx(30 - 7 + 60)
    view = step(view, d)
    d = decide(Observation(agent=view, now=at(12), pods={}))
    assert d.actions == (CreatePod(2),) and d.phase == Phase.Starting  # a new name


def test_a_pod_stuck_terminating_is_force_deleted_after_the_bound() -> None:
    view = agent(status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)})
    stuck = deleting(running(), seconds=30)
    d = decide(Observation(agent=view, now=at(80), pods={1: stuck}, terminating_timeout=60))
    assert d.actions == () and d.requeue_after == pytest.approx(10)
    d = decide(Observation(agent=view, now=at(90), pods={1: stuck}, terminating_timeout=60))
    assert d.actions == (DeletePod("a-1", force=True),)


def test_agent_container_exit_ends_the_attempt_despite_a_sidecar() -> None:
    view = agent(status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)})
    term = Terminated(0, "Completed", '{"result": "done"}', at(5))
    sidecar_keeps_running = pod(1, "Running", terminated=term, node_name="n1", others_running=True)
    d = decide(Observation(agent=view, now=at(6), pods={1: sidecar_keeps_running}))
    assert (d.phase, d.status["result"]) == (Phase.Succeeded, "done")
    assert d.actions == (DeletePod("a-1"),)  # stop the sidecar
    term = Terminated(2, "Error", "", at(5))
    d = decide(Observation(agent=view, now=at(400), pods={1: pod(1, "Running", terminated=term)}))
    assert (d.phase, d.status["reason"], d.status["exitCode"]) == (Phase.Failed, Reason.ERROR, 2)


def test_a_finished_pod_not_yet_marked_terminal_stays_for_its_logs() -> None:
    """A real kubelet reports the agent container terminated a moment before the pod's
    phase: with nothing else running in it, the pod is not deleted (found on the real
    node, where finished pods vanished with their logs; kwok changes both at once)."""
    view = agent(status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)})
    term = Terminated(0, "Completed", '{"result": "done"}', at(5))
    d = decide(Observation(agent=view, now=at(6), pods={1: pod(1, "Running", terminated=term)}))
    assert (d.phase, d.status["result"], d.actions) == (Phase.Succeeded, "done", ())
    term = Terminated(2, "Error", "", at(5))
    d = decide(Observation(agent=view, now=at(6), pods={1: pod(1, "Running", terminated=term)}))
    assert (d.phase, d.status["exitCode"], d.actions) == (Phase.Failed, 2, ())


def test_an_adopted_pod_starts_the_deadline_clock() -> None:
    """The operator died between creating the pod and recording it: the next one adopts
    the pod, and the deadline counts from the pod's creation (it never fired before)."""
    view = agent(active_deadline_seconds=5, status={})
    d = decide(Observation(agent=view, now=at(3), pods={1: running()}))
    assert d.phase == Phase.Running and d.status["startTime"] == format_time(T0)
    assert d.requeue_after == pytest.approx(2)
    d = decide(Observation(agent=step(view, d), now=at(6), pods={1: running()}))
    assert (d.phase, d.status["reason"]) == (Phase.Failed, Reason.DEADLINE_EXCEEDED)


def test_the_backoff_doubles_up_to_its_cap_however_many_attempts_failed() -> None:
    """The 15th retry with base 1 s and cap 3600 s waits 3600 s (it waited 512 s when the
    shell handed the lifecycle ten precomputed steps and the last one repeated)."""
    config = load_config(
        {"STOCKADE_BACKOFF_BASE_SECONDS": "1", "STOCKADE_BACKOFF_MAX_SECONDS": "3600"}
    )
    view = agent(
        restart_policy=RestartPolicy.ON_FAILURE,
        backoff_limit=20,
        status={
            "phase": "Running",
            "attempts": 16,
            "failedAttempts": 15,
            "startTime": format_time(T0),
        },
    )
    failed = exited(16, 1, finished=5)
    d = decide(Observation(agent=view, now=at(6), pods={16: failed}, backoff=config.backoff))
    assert d.actions == ()
    assert d.requeue_after == pytest.approx(3600.0 - 1.0)
    assert [config.backoff.delay(n) for n in (1, 2, 10, 12, 13, 1000, 10**6)] == [
        1.0,
        2.0,
        512.0,
        2048.0,
        3600.0,
        3600.0,
        3600.0,
    ]


def test_a_suspend_counts_the_pod_whose_creation_was_not_recorded() -> None:
    """Found by the decision log: a resume created a-6, its status write lost a race
    (attempts stayed 5); the suspend that followed stopped a-6. The next pod must be
    a-7: a-6 again would be read as the stopped pod and deleted, then lost."""
    view = agent(status={"phase": "Pending", "attempts": 5, "startTime": None})
    d = decide(Observation(agent=replace(view, suspend=True), now=at(1), pods={6: pod(6)}))
    assert d.actions == (DeletePod("a-6"),)
    assert d.status["stoppedAttempt"] == 6 and d.status["attempts"] == 6
    view = step(view, d)
    d = decide(Observation(agent=view, now=at(2), pods={}))
    assert d.actions == (CreatePod(7),)
    view = step(view, d)
    d = decide(Observation(agent=view, now=at(3), pods={7: pod(7)}))
    assert d.actions == () and d.phase == Phase.Starting
    # Even with attempts still 5 in the status (the suspend's write lost too).
    stale = replace(view, status={**view.status, "attempts": 5, "phase": "Pending"})
    assert decide(Observation(agent=stale, now=at(3), pods={})).actions == (CreatePod(7),)


def test_a_members_session_defaults_are_recorded_when_it_starts_and_kept() -> None:
    defaults = {"image": "ghcr.io/x/agent:1"}
    waiting = decide(
        Observation(
            agent=agent(),
            now=T0,
            session_defaults=defaults,
            admission=Admission(False, Reason.AWAITING_ADMISSION, "w"),
        )
    )
    assert "sessionDefaults" not in waiting.status
    d = decide(Observation(agent=agent(), now=T0, session_defaults=defaults))
    assert d.phase == Phase.Starting and d.status["sessionDefaults"] == defaults
    later = decide(
        Observation(
            agent=step(agent(), d),
            now=at(1),
            pods={1: pod(1)},
            session_defaults={"image": "edited"},
        )
    )
    assert later.status["sessionDefaults"] == defaults


def test_a_member_waits_for_its_missing_session_rather_than_failing_its_spec() -> None:
    missing = Admission(False, Reason.SESSION_NOT_FOUND, 'AgentSession "s" not found')
    obs = Observation(agent=agent(), now=T0, admission=missing, spec_error="spec.image: none")
    d = decide(obs)
    assert d.phase == Phase.Pending and d.status["reason"] == Reason.SESSION_NOT_FOUND
    recorded = agent(status={"sessionDefaults": {"image": "i"}})
    assert decide(replace(obs, agent=recorded)).phase == Phase.Failed
    refused = replace(obs, spec_error_reason=Reason.NAMESPACE_NOT_ALLOWED)
    assert decide(refused).phase == Phase.Failed


def test_a_new_member_awaiting_its_sessions_verdict_writes_nothing() -> None:
    waiting = Admission(False, Reason.AWAITING_ADMISSION, "waiting for session s to admit it")
    assert decide(Observation(agent=agent(), now=T0, admission=waiting)).awaiting_verdict
    full = Admission(False, "SessionFull", "8 of 8 agents admitted")
    assert not decide(Observation(agent=agent(), now=T0, admission=full)).awaiting_verdict
    started = agent(status={"phase": "Running", "attempts": 1, "startTime": format_time(T0)})
    d = decide(Observation(agent=started, now=at(1), admission=waiting, pods={1: running()}))
    assert not d.awaiting_verdict
