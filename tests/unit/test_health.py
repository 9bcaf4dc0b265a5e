"""Liveness and readiness (stockade.runtime.health): a blocked event loop fails /healthz."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

from stockade.runtime import health as health_module
from stockade.runtime.health import Health, HealthServer, problems


def test_problems_of_a_live_operator_are_none() -> None:
    assert problems(100.0, 99.0, 30.0, {"agents": 1, "pods": 0}) == []
    assert problems(100.0, None, 30.0, {}) == []  # heartbeat not started yet


def test_an_overdue_heartbeat_is_a_stalled_loop() -> None:
    (why,) = problems(100.0, 60.0, 30.0, {})
    assert "event loop stalled" in why and "40.0s" in why


def test_a_watch_found_behind_in_consecutive_resyncs_is_stuck() -> None:
    state = Health()
    state.watch_checked("pods", 3)
    assert state.stale_rounds == {"pods": 1}
    state.watch_checked("pods", 0)  # caught up: a late event, not a stuck watch
    assert state.stale_rounds == {"pods": 0}
    for _ in range(health_module.STALE_ROUNDS):
        state.watch_checked("pods", 1)
    (why,) = problems(0.0, None, 30.0, state.stale_rounds)
    assert "watch of pods stuck" in why


def get(port: int, path: str) -> tuple[int, list[str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())["problems"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["problems"]


def test_healthz_fails_while_the_event_loop_is_blocked_and_recovers() -> None:
    state = Health(stall_seconds=1.0, interval=0.05)
    server = HealthServer(state, 0, host="127.0.0.1")
    server.start()
    seen: dict[str, tuple[int, list[str]]] = {}

    async def scenario() -> None:
        beat = asyncio.get_running_loop().create_task(state.beat())
        await asyncio.sleep(0.3)
        seen["before"] = await asyncio.to_thread(get, server.port, "/healthz")
        seen["not ready"] = await asyncio.to_thread(get, server.port, "/readyz")
        state.set_ready()
        seen["ready"] = await asyncio.to_thread(get, server.port, "/readyz")
        time.sleep(2.5)  # blocks the event loop: no heartbeat meanwhile
        # Asked from another thread while the loop is still blocked.
        seen["blocked"] = get(server.port, "/healthz")
        seen["blocked ready"] = get(server.port, "/readyz")
        await asyncio.sleep(0.5)  # the loop runs again, the heartbeat with it
        seen["after"] = await asyncio.to_thread(get, server.port, "/healthz")
        beat.cancel()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
    assert seen["before"] == (200, [])
    assert seen["not ready"] == (503, ["initial listing not done"])
    assert seen["ready"] == (200, [])
    status, why = seen["blocked"]
    assert status == 503 and "event loop stalled" in why[0]
    assert seen["blocked ready"][0] == 503
    assert seen["after"] == (200, [])


def test_unknown_paths_are_not_found() -> None:
    server = HealthServer(Health(), 0, host="127.0.0.1")
    server.start()
    try:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/nope", timeout=5)
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
        else:
            raise AssertionError("expected 404")
    finally:
        server.stop()
