"""The decision log: one debug record per reconcile, with what was seen and written."""

from __future__ import annotations

import asyncio
import logging

import pytest
from kubernetes.aio.client.exceptions import ApiException

from stockade.core.observe import PodView
from stockade.runtime import decisionlog
from stockade.runtime.k8s import _write


async def _refused() -> None:
    raise ApiException(status=409, reason="Conflict")


async def _applied() -> dict[str, object]:
    return {"metadata": {"resourceVersion": "12"}}


def test_a_reconcile_record_lists_the_body_pods_decision_and_each_write(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def reconcile() -> None:
        trace = decisionlog.begin(("ns", "a"))
        assert trace is not None
        body = {
            "metadata": {"resourceVersion": "11", "generation": 3},
            "spec": {"suspend": True},
            "status": {"phase": "Running", "attempts": 1},
        }
        pod = PodView("a-1", 1, "Running", uid="0123456789", resource_version="7")
        trace.see(body, [pod])
        trace.decide("Paused", "Suspended", ["DeletePod(name='a-1')"])
        await _write("patch", "agents/status", _applied, name="a", precondition="11")
        await _write("patch", "agents/status", _refused, ok=(409,), name="a", precondition="11")
        decisionlog.end(trace)

    with caplog.at_level(logging.DEBUG, logger="stockade.decisions"):
        asyncio.run(reconcile())
    (record,) = [r for r in caplog.records if r.name == "stockade.decisions"]
    text = record.getMessage()
    assert "reconcile ns/a rv=11 suspend=True phase=Running->Paused reason=Suspended" in text
    assert "1:Running uid=01234567 rv=7" in text
    assert "patch agents/status a@11 -> rv 12; patch agents/status a@11 -> 409" in text
    assert record.decision["observed"]["rv"] == "11"  # type: ignore[attr-defined]


def test_quiet_at_info_and_writes_outside_a_reconcile_are_not_traced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="stockade.decisions"):
        assert decisionlog.begin(("ns", "a")) is None
        asyncio.run(_write("patch", "agents/status", _applied, name="a"))
    assert not [r for r in caplog.records if r.name == "stockade.decisions"]
