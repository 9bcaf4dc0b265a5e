"""The keyed single-flight work queue: coalescing, timers, error backoff, shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest

from stockade.runtime.k8s import is_transient
from stockade.runtime.workqueue import WorkQueue


class Recorder:
    """A handler that counts runs per key and the most runs of one key at once."""

    def __init__(self, gate: asyncio.Event | None = None, fail_first: int = 0) -> None:
        self.runs: Counter[str] = Counter()
        self.times: list[float] = []
        self.active: Counter[str] = Counter()
        self.most_at_once: Counter[str] = Counter()
        self.gate = gate
        self.fail_first = fail_first

    async def __call__(self, key: str) -> None:
        self.active[key] += 1
        self.most_at_once[key] = max(self.most_at_once[key], self.active[key])
        try:
            self.runs[key] += 1
            self.times.append(asyncio.get_running_loop().time())
            if self.gate is not None:
                await self.gate.wait()
            if self.runs[key] <= self.fail_first:
                raise RuntimeError("boom")
        finally:
            self.active[key] -= 1


async def settle(queue: WorkQueue[str], seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)
    await asyncio.gather(*list(queue._tasks))


def test_pokes_while_running_coalesce_into_one_more_run() -> None:
    async def scenario() -> Recorder:
        gate = asyncio.Event()
        handler = Recorder(gate)
        queue = WorkQueue(handler)
        queue.poke("a")
        await asyncio.sleep(0)
        for _ in range(5):
            queue.poke("a")
        gate.set()
        await settle(queue)
        return handler

    handler = asyncio.run(scenario())
    assert handler.runs["a"] == 2
    assert handler.most_at_once["a"] == 1


@pytest.mark.parametrize(
    ("keys", "concurrency", "at_once"),
    [("abc", 16, 3), ("abcde", 2, 2)],
    ids=["different-keys-run-together", "concurrency-bounds-them"],
)
def test_keys_run_concurrently_up_to_the_bound(keys: str, concurrency: int, at_once: int) -> None:
    async def scenario() -> int:
        gate = asyncio.Event()
        handler = Recorder(gate)
        queue = WorkQueue(handler, concurrency=concurrency)
        for key in keys:
            queue.poke(key)
        await asyncio.sleep(0.01)
        running = sum(handler.active.values())
        gate.set()
        await settle(queue)
        assert sum(handler.runs.values()) == len(keys)
        return running

    assert asyncio.run(scenario()) == at_once


def test_the_earliest_timer_wins() -> None:
    async def scenario() -> Counter[str]:
        handler = Recorder()
        queue = WorkQueue(handler)
        queue.poke("late-first", 0.05)
        queue.poke("late-first", 60)
        queue.poke("soon-second", 60)
        queue.poke("soon-second", 0.05)
        await settle(queue, 0.3)
        await queue.close()
        return handler.runs

    runs = asyncio.run(scenario())
    assert runs == Counter({"late-first": 1, "soon-second": 1})


def test_forget_drops_a_pending_timer() -> None:
    async def scenario() -> Counter[str]:
        handler = Recorder()
        queue = WorkQueue(handler)
        queue.poke("gone", 0.05)
        queue.forget("gone")
        await settle(queue, 0.2)
        return handler.runs

    assert asyncio.run(scenario())["gone"] == 0


def test_a_failing_handler_is_retried_after_one_second_then_two() -> None:
    async def scenario() -> list[float]:
        handler = Recorder(fail_first=2)
        queue = WorkQueue(handler)
        queue.poke("flaky")
        for _ in range(100):
            if handler.runs["flaky"] == 3:
                break
            await asyncio.sleep(0.1)
        await queue.close()
        return handler.times

    first, second, third = asyncio.run(scenario())
    # The gaps are the backoff (1 s doubling); the upper bounds only tell 1 s from 2 s.
    assert 0.95 <= second - first < 1.9
    assert 1.95 <= third - second < 3.9


def test_close_cancels_timers_and_running_handlers() -> None:
    async def scenario() -> Counter[str]:
        handler = Recorder(asyncio.Event())  # never set: the run blocks until cancelled
        queue = WorkQueue(handler)
        queue.poke("running")
        queue.poke("timer", 0.05)
        await asyncio.sleep(0.01)
        await queue.close()
        await asyncio.sleep(0.1)
        assert not queue._tasks
        return handler.runs

    assert asyncio.run(scenario()) == Counter({"running": 1})


def test_a_transient_error_is_a_warning_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The API server restarting is expected: retried, logged without a traceback;
    anything else keeps its traceback (the reliability suite asserts on the log)."""

    async def scenario() -> None:
        async def handler(key: str) -> None:
            raise (ConnectionError("refused") if key == "down" else ValueError("bug"))

        queue: WorkQueue[str] = WorkQueue(handler, transient=is_transient)
        queue.poke("down")
        queue.poke("bug")
        await asyncio.sleep(0.2)
        await queue.close()

    with caplog.at_level(logging.WARNING, logger="stockade.runtime.workqueue"):
        asyncio.run(scenario())
    down = [r for r in caplog.records if "'down'" in r.getMessage() or "down" in r.getMessage()]
    bug = [r for r in caplog.records if "bug" in r.getMessage()]
    assert down and all(r.levelno == logging.WARNING and not r.exc_info for r in down)
    assert bug and all(r.levelno == logging.ERROR and r.exc_info for r in bug)
