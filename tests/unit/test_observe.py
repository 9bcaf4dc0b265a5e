"""Turning API objects into observations, and termination messages into results."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.observe import (
    RESULT_MAX_CHARS,
    format_time,
    observe_pod,
    parse_termination_message,
    parse_time,
)


def test_time_round_trip() -> None:
    moment = datetime(2026, 11, 21, 4, 50, tzinfo=UTC)
    assert format_time(moment) == "2026-11-21T04:50:00Z"
    assert parse_time("2026-11-21T04:50:00Z") == moment
    assert parse_time(None) is None


def pod(**status: object) -> dict[str, object]:
    return {
        "metadata": {
            "name": "a-2",
            "labels": {"stockade.dev/attempt": "2"},
            "creationTimestamp": "2026-11-21T04:50:00Z",
        },
        "spec": {"nodeName": "n1"},
        "status": status,
    }


def test_running_pod() -> None:
    view = observe_pod(
        pod(
            phase="Running",
            conditions=[{"type": "Ready", "status": "True"}],
            containerStatuses=[
                {"name": "agent", "state": {"running": {"startedAt": "2026-11-21T04:50:01Z"}}}
            ],
        )
    )
    assert (view.name, view.attempt, view.phase, view.ready) == ("a-2", 2, "Running", True)
    assert view.running_since == datetime(2026, 11, 21, 4, 50, 1, tzinfo=UTC)
    assert view.node_name == "n1"
    assert not view.finished


def test_terminated_and_unschedulable_and_waiting() -> None:
    done = observe_pod(
        pod(
            phase="Failed",
            containerStatuses=[
                {
                    "name": "agent",
                    "state": {
                        "terminated": {
                            "exitCode": 137,
                            "reason": "OOMKilled",
                            "finishedAt": "2026-11-21T04:51:00Z",
                        }
                    },
                }
            ],
        )
    )
    assert done.terminated is not None and done.terminated.exit_code == 137 and done.finished
    stuck = observe_pod(
        pod(
            phase="Pending",
            conditions=[
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3",
                }
            ],
        )
    )
    assert stuck.unschedulable == "0/3"
    pulling = observe_pod(
        pod(
            phase="Pending",
            containerStatuses=[{"name": "agent", "state": {"waiting": {"reason": "ErrImagePull"}}}],
        )
    )
    assert pulling.waiting_reason == "ErrImagePull"


def test_pod_without_attempt_label_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        observe_pod({"metadata": {"name": "x"}})


def test_termination_message_forms() -> None:
    assert parse_termination_message("") == (None, None)
    assert parse_termination_message("done\n") == ("done", None)
    assert parse_termination_message("[1, 2]") == ("[1, 2]", None)
    assert parse_termination_message('{"result": {"files": 3}}') == ('{"files": 3}', None)
    result, usage = parse_termination_message(
        '{"result": "ok", "usage": {"inputTokens": 5, "note": "x", "flag": true, "costUSD": 0.1}}'
    )
    assert result == "ok" and usage == {"inputTokens": 5, "costUSD": 0.1}


@given(st.text(max_size=6000))
def test_any_termination_message_is_safe(text: str) -> None:
    result, usage = parse_termination_message(text)
    assert result is None or len(result) <= RESULT_MAX_CHARS
    assert usage is None or all(isinstance(v, int | float) for v in usage.values())
