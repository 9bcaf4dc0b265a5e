"""A keyed, single-flight work queue with timers (in the manner of controller-runtime's).

``poke(key)`` runs the handler for `key` soon; pokes for a key that is running mark it
dirty and it runs once more afterwards (never twice at once); ``poke(key, delay)``
schedules a run, keeping only the earliest timer per key, which also coalesces bursts.
A handler that raises is retried with exponential backoff (1 s doubling to 60 s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from stockade.core.backoff import Backoff
from stockade.runtime import metrics

log = logging.getLogger("stockade.workqueue")

RETRY_BACKOFF = Backoff(1.0, 60.0)
"""A reconcile that raised is retried after 1 s, doubling up to 60 s."""

K = TypeVar("K", bound=Hashable)


@dataclass
class WorkQueue(Generic[K]):
    """Run ``handler(key)`` for poked keys, one run per key at a time.

    Attributes:
        handler: the coroutine function that reconciles one key.
        concurrency: most handler runs at once across keys.
        transient: tells the errors that are expected now and then (the API server
            restarting): logged as a warning without a traceback, retried the same way.

    """

    handler: Callable[[K], Awaitable[None]]
    concurrency: int = 16
    transient: Callable[[BaseException], bool] = lambda exc: False
    _dirty: set[K] = field(default_factory=set)
    _running: set[K] = field(default_factory=set)
    _timers: dict[K, asyncio.TimerHandle] = field(default_factory=dict)
    _errors: dict[K, int] = field(default_factory=dict)
    _waiting: dict[K, float] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _slots: asyncio.Semaphore | None = None

    def poke(self, key: K, delay: float = 0.0) -> None:
        """Run `key` now, or after `delay` seconds (the earliest pending time wins)."""
        loop = asyncio.get_running_loop()
        if delay > 0:
            timer = self._timers.get(key)
            due = loop.time() + delay
            if timer is not None and timer.when() <= due:
                return
            if timer is not None:
                timer.cancel()
            self._timers[key] = loop.call_at(due, self._fire, key)
            return
        self._waiting.setdefault(key, time.monotonic())
        if key in self._running:
            self._dirty.add(key)
            return
        self._running.add(key)
        task = loop.create_task(self._work(key), name=f"reconcile {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, key: K) -> None:
        """Drop the timer and error count of a key whose object is gone."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._errors.pop(key, None)

    def waiting_since(self) -> list[float]:
        """``time.monotonic()`` of the first poke of each key waiting for its run to start.

        A key waits from its first poke (a watch event, a resync, a due timer) until its
        handler starts: while a run of it is going on, or for a concurrency slot. The
        queue-depth and oldest-key metrics read this
        (:class:`stockade.runtime.metrics.QueueCollector`), from the scrape thread: a
        copy, taken in one step.
        """
        return list(self._waiting.values())

    def clock(self) -> float:
        """The clock of :meth:`waiting_since`: ``time.monotonic()``, in seconds."""
        return time.monotonic()

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.poke(key)

    async def _work(self, key: K) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        try:
            while True:
                self._dirty.discard(key)
                async with self._slots:
                    self._waiting.pop(key, None)
                    await self._guarded(key)
                if key not in self._dirty:
                    return
        finally:
            self._running.discard(key)

    async def _guarded(self, key: K) -> None:
        with metrics.RECONCILE_SECONDS.time():
            try:
                await self.handler(key)
                self._errors.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures = self._errors.get(key, 0) + 1
                self._errors[key] = failures
                delay = RETRY_BACKOFF.delay(failures)
                metrics.RECONCILE_ERRORS.inc()
                if self.transient(exc):
                    log.warning("reconcile of %s: %s; retrying in %.0fs", key, exc, delay)
                else:
                    log.exception("reconcile of %s failed; retrying in %.0fs", key, delay)
                self.poke(key, delay)

    async def close(self) -> None:
        """Cancel timers and running handlers (operator shutdown)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._waiting.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
