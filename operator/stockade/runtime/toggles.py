"""kopf's start-up gate for indexes without a wake-up of every waiter per object.

With index handlers, kopf holds every handler back until all objects of all indexed
kinds are indexed (https://kopf.readthedocs.io/en/stable/indexing/, "Load-time
indexing"). It does so with a ``ToggleSet(all)`` that gets one toggle per object seen
in the initial listing; each object's worker drops its toggle once indexed and then
waits for the whole set. kopf 1.45's ``make_toggle`` and ``drop_toggle`` wake every
waiter on each call, so a start with n objects costs O(n^2) wake-ups: measured here, a
restart with 1000 Agents (some 3000 objects) took 35 s to re-observe them all, and one
with 5000 had not finished after 6 minutes at 100% CPU.

:func:`install` makes both notify only when the set's overall state changes. A waiter on
the set waits for that state; a waiter on a single toggle waits for that toggle's own
state, which adding or dropping it does not change; so nobody misses a wake-up.
If kopf's class no longer looks as expected, nothing is changed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from kopf._cogs.aiokits import aiotoggles

log = logging.getLogger(__name__)

_PATCHED = "_stockade_quiet"


async def _make_toggle(
    self: aiotoggles.ToggleSet, __val: bool = False, *, name: str | None = None
) -> aiotoggles.Toggle:
    toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
    async with self._condition:
        before = self.is_on()
        self._toggles.add(toggle)
        if self.is_on() != before:
            self._condition.notify_all()
    return toggle


async def _drop_toggle(self: aiotoggles.ToggleSet, toggle: aiotoggles.Toggle) -> None:
    async with self._condition:
        before = self.is_on()
        self._toggles.discard(toggle)
        if self.is_on() != before:
            self._condition.notify_all()


async def _drop_toggles(self: aiotoggles.ToggleSet, toggles: Iterable[aiotoggles.Toggle]) -> None:
    async with self._condition:
        before = self.is_on()
        self._toggles.difference_update(toggles)
        if self.is_on() != before:
            self._condition.notify_all()


def install() -> bool:
    """Make kopf's ToggleSet wake its waiters only on a change of state; True if it did.

    Idempotent; False (and a log line) when kopf's ToggleSet lacks what this relies on
    (``_condition``, ``_toggles``, the three methods).
    """
    cls: Any = aiotoggles.ToggleSet
    if getattr(cls, _PATCHED, False):
        return True
    probe = cls(all)
    expected = ("make_toggle", "drop_toggle", "drop_toggles", "is_on")
    if not all(hasattr(cls, name) for name in expected) or not (
        hasattr(probe, "_condition") and isinstance(getattr(probe, "_toggles", None), set)
    ):
        log.info("kopf's ToggleSet changed: its start-up gate is left as it is")
        return False
    cls.make_toggle = _make_toggle
    cls.drop_toggle = _drop_toggle
    cls.drop_toggles = _drop_toggles
    setattr(cls, _PATCHED, True)
    return True
