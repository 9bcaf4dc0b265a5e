"""Session admission: capacity, budget, first-come first-served, no double admission."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.core.admission import Member, admit

T0 = datetime(2026, 11, 21, tzinfo=UTC)


def member(i: int, cpu: str = "0.5", active: bool = True) -> Member:
    return Member(f"a{i:02d}", T0 + timedelta(seconds=i), {"cpu": Decimal(cpu)}, active)


def test_twelve_into_eight() -> None:
    members = [member(i) for i in range(12)]
    d = admit(members, max_agents=8, budget=None, recorded=())
    assert d.admitted == tuple(f"a{i:02d}" for i in range(8))
    assert d.verdicts["a08"].reason == "SessionFull"
    assert d.verdicts["a11"].reason == "SessionFull"


def test_budget_bounds_the_admitted() -> None:
    members = [member(i, "0.5") for i in range(6)]
    d = admit(members, max_agents=8, budget={"cpu": Decimal(2)}, recorded=())
    assert len(d.admitted) == 4
    assert d.used == {"cpu": Decimal(2)}
    assert d.verdicts["a04"].reason == "BudgetExceeded"


def test_finished_members_free_their_share_at_once() -> None:
    members = [member(0, active=False), *(member(i) for i in range(1, 10))]
    d = admit(members, max_agents=8, budget=None, recorded=[f"a{i:02d}" for i in range(8)])
    assert "a00" not in d.admitted
    assert "a08" in d.admitted and len(d.admitted) == 8


def test_holders_are_never_preempted() -> None:
    members = [member(i) for i in range(4)]
    d = admit(members, max_agents=2, budget=None, recorded=["a02", "a03"])
    assert d.admitted == ("a02", "a03")  # the earlier a00, a01 wait: no preemption


def test_an_agent_that_can_never_fit_is_reported_and_skipped() -> None:
    members = [member(0, "3"), member(1, "0.5")]
    d = admit(members, max_agents=8, budget={"cpu": Decimal(2)}, recorded=())
    assert d.admitted == ("a01",)
    verdict = d.verdicts["a00"]
    assert (verdict.reason, verdict.stalled) == ("BudgetExceeded", True)
    assert "never" in verdict.message


def test_strict_order_a_big_agent_is_not_starved() -> None:
    members = [member(0, "1.5"), member(1, "1"), member(2, "0.5")]
    d = admit(members, max_agents=8, budget={"cpu": Decimal(2)}, recorded=["a01"])
    # a00 waits for budget; a02 would fit but must not jump ahead of it.
    assert d.admitted == ("a01",)
    assert d.verdicts["a02"].reason == "BudgetExceeded"
    assert "queued behind a00" in d.verdicts["a02"].message


def test_suspended_session_admits_nobody() -> None:
    d = admit([member(0)], max_agents=8, budget=None, recorded=["a00"], suspended=True)
    assert d.admitted == ()
    assert d.verdicts["a00"].reason == "SessionSuspended"


sessions = st.fixed_dictionaries(
    {
        "cpus": st.lists(st.sampled_from(["0.25", "0.5", "1", "3"]), max_size=30),
        "active": st.lists(st.booleans(), min_size=30, max_size=30),
        "max_agents": st.integers(1, 10),
        "budget": st.sampled_from([None, Decimal(2), Decimal("2.5")]),
        "recorded": st.lists(st.integers(0, 29), max_size=12),
    }
)


@settings(max_examples=400)
@given(sessions)
def test_capacity_budget_and_order_always_hold(s: dict) -> None:  # type: ignore[type-arg]
    members = [member(i, cpu, s["active"][i]) for i, cpu in enumerate(s["cpus"])]
    recorded = [f"a{i:02d}" for i in s["recorded"]]
    d = admit(
        members,
        max_agents=s["max_agents"],
        budget=s["budget"] and {"cpu": s["budget"]},
        recorded=recorded,
    )
    by_name = {m.name: m for m in members}
    newly = [n for n in d.admitted if n not in recorded]
    holders = [n for n in d.admitted if n in recorded]
    assert len(set(d.admitted)) == len(d.admitted)
    assert all(by_name[n].active for n in d.admitted)
    # New admissions never push past capacity or budget.
    if newly:
        assert len(d.admitted) <= s["max_agents"]
        if s["budget"] is not None:
            assert sum(by_name[n].requests["cpu"] for n in d.admitted) <= s["budget"]
    # Every active holder keeps its admission.
    assert set(holders) == {n for n in recorded if n in by_name and by_name[n].active}
    # Deterministic, and stable: recording the result and deciding again changes nothing.
    again = admit(
        members,
        max_agents=s["max_agents"],
        budget=s["budget"] and {"cpu": s["budget"]},
        recorded=d.admitted,
    )
    assert again.admitted == d.admitted
    # Every member has a verdict that agrees with the admitted set.
    assert {n for n, v in d.verdicts.items() if v.admitted} == set(d.admitted)
