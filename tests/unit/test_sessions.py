"""Session status: phases, counts, usage, deadline and TTL (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from stockade.core.sessions import MemberView, SessionObservation, decide_session, format_quantity

T0 = datetime(2026, 11, 21, tzinfo=UTC)


def m(i: int, phase: str | None = None, cpu: str = "0.5", **kw: Any) -> MemberView:
    return MemberView(f"a{i}", T0 + timedelta(seconds=i), phase, {"cpu": Decimal(cpu)}, **kw)


def obs(members: list[MemberView], now: float = 0, **kw: Any) -> SessionObservation:
    base: dict[str, Any] = dict(
        now=T0 + timedelta(seconds=now),
        generation=1,
        deleting=False,
        suspend=False,
        max_agents=8,
        budget=None,
        active_deadline_seconds=None,
        ttl_seconds_after_finished=None,
        status={},
        members=members,
    )
    base.update(kw)
    return SessionObservation(**base)


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_active_session_counts_and_usage() -> None:
    members = [m(0, "Running"), m(1, "Pending"), m(2, "Succeeded", usage={"inputTokens": 5})]
    d = decide_session(obs(members, budget={"cpu": Decimal(2)}, status={"admittedAgents": ["a0"]}))
    s = d.status
    assert s["phase"] == "Active"
    assert s["agents"]["running"] == 1 and s["agents"]["pending"] == 1 and s["agents"]["total"] == 3
    assert s["admittedAgents"] == ["a0", "a1"]
    assert s["usage"] == {"requests": {"cpu": "1"}}
    assert s["usageSummary"] == "cpu 1/2"
    assert s["agentUsage"] == {"inputTokens": 5}
    assert cond(s, "Reconciling")["status"] == "True"


def test_all_succeeded_then_ttl() -> None:
    d = decide_session(obs([m(0, "Succeeded"), m(1, "Succeeded")], ttl_seconds_after_finished=30))
    assert d.status["phase"] == "Succeeded" and d.finished
    assert d.requeue_after == 30
    later = decide_session(
        obs([m(0, "Succeeded")], now=31, status=d.status, ttl_seconds_after_finished=30)
    )
    assert later.delete_session


def test_a_failed_member_fails_the_finished_session() -> None:
    d = decide_session(obs([m(0, "Succeeded"), m(1, "Failed")]))
    assert (d.status["phase"], d.status["reason"]) == ("Failed", "AgentsFailed")
    assert cond(d.status, "Stalled")["status"] == "True"
    assert d.failure is None  # members are not failed for it


def test_deadline_fails_the_session_and_its_members() -> None:
    d = decide_session(
        obs(
            [m(0, "Running")],
            now=5,
            active_deadline_seconds=10,
            status={"startTime": "2026-11-21T00:00:00Z"},
        )
    )
    assert d.status["phase"] == "Active" and d.requeue_after == 5
    d = decide_session(obs([m(0, "Running")], now=10, active_deadline_seconds=10, status=d.status))
    assert (d.status["phase"], d.status["reason"]) == ("Failed", "DeadlineExceeded")
    assert d.failure and "activeDeadlineSeconds" in d.failure
    assert d.status["admittedAgents"] == []


def test_suspend_admits_nobody() -> None:
    d = decide_session(obs([m(0, "Running")], suspend=True, status={"admittedAgents": ["a0"]}))
    assert d.status["phase"] == "Suspended"
    assert d.status["admittedAgents"] == []
    assert cond(d.status, "Suspended")["status"] == "True"


def test_an_agent_that_never_fits_stalls_the_session() -> None:
    d = decide_session(obs([m(0, None, cpu="5")], budget={"cpu": Decimal(2)}))
    assert cond(d.status, "Stalled")["status"] == "True"
    assert "a0" in cond(d.status, "Stalled")["message"]


def test_quantities_render_like_kubernetes() -> None:
    assert format_quantity("cpu", Decimal("1.5")) == "1500m"
    assert format_quantity("cpu", Decimal(2)) == "2"
    assert format_quantity("memory", Decimal(2 * 2**30)) == "2Gi"
    assert format_quantity("memory", Decimal(1536 * 2**20)) == "1536Mi"


def test_member_terms_read_the_sessions_recorded_word() -> None:
    from stockade.core.admission import Verdict
    from stockade.core.lifecycle import AgentView, Reason
    from stockade.core.sessions import member_terms

    view = AgentView(name="a")
    _, missing, _ = member_terms(view, "s", None, None)
    assert missing.reason == Reason.SESSION_NOT_FOUND and not missing.admitted
    admitted = {"spec": {}, "status": {"phase": "Active", "admittedAgents": ["a"]}}
    assert member_terms(view, "s", admitted, None)[1].admitted
    paused, _, _ = member_terms(view, "s", {"spec": {"suspend": True}, "status": {}}, None)
    assert paused.suspend and paused.suspended_by == "session s is suspended"
    late = {
        "spec": {},
        "status": {
            "phase": "Failed",
            "reason": "DeadlineExceeded",
            "message": "the session ran out of time",
        },
    }
    assert member_terms(view, "s", late, None)[2] == "the session ran out of time"
    full = Verdict(False, "SessionFull", "8 of 8 agents admitted")
    waiting = member_terms(view, "s", {"spec": {}, "status": {"phase": "Active"}}, full)[1]
    assert (waiting.reason, waiting.admitted) == ("SessionFull", False)
    done = {"spec": {}, "status": {"phase": "Succeeded"}}
    assert member_terms(view, "s", done, None)[1].stalled
