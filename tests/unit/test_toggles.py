"""kopf's start-up gate wakes its waiters once, not once per indexed object (issue 11)."""

from __future__ import annotations

import asyncio

from kopf._cogs.aiokits import aiotoggles

from stockade.runtime import toggles


def test_waiters_on_the_gate_wake_once_when_the_last_object_is_indexed() -> None:
    """As kopf's queueing does at start-up: a toggle per listed object, each worker drops
    its own and waits for all. Unpatched, every make and drop wakes every waiter."""
    assert toggles.install()
    assert toggles.install()  # idempotent

    async def start_up(n: int) -> tuple[int, bool]:
        gate = aiotoggles.ToggleSet(all)
        blocker = await gate.make_toggle(name="orchestration blocker")
        wakeups = 0
        notify_all = gate._condition.notify_all

        def counting() -> None:
            nonlocal wakeups
            wakeups += 1
            notify_all()

        gate._condition.notify_all = counting  # type: ignore[method-assign]
        objects = [await gate.make_toggle(name=f"object {i}") for i in range(n)]
        await gate.drop_toggle(blocker)

        async def worker(toggle: aiotoggles.Toggle) -> None:
            await gate.drop_toggle(toggle)
            await gate.wait_for(True)

        workers = [asyncio.create_task(worker(t)) for t in objects[:-1]]
        await asyncio.sleep(0)
        early = any(w.done() for w in workers)
        await gate.drop_toggles(objects[-1:])
        await asyncio.wait_for(asyncio.gather(*workers), timeout=30)
        return wakeups, early

    wakeups, early = asyncio.run(start_up(3000))
    assert not early  # nobody passed the gate before the last object was indexed
    assert wakeups == 1  # the set turned on once (it was off from the first toggle on)


def test_a_single_toggle_still_wakes_its_own_waiter() -> None:
    toggles.install()

    async def scenario() -> bool:
        gate = aiotoggles.ToggleSet(any)
        toggle = await gate.make_toggle()
        waiter = asyncio.create_task(gate.wait_for(True))
        own = asyncio.create_task(toggle.wait_for(True))
        await asyncio.sleep(0)
        assert not waiter.done() and not own.done()
        await toggle.turn_to(True)
        await asyncio.wait_for(asyncio.gather(waiter, own), timeout=5)
        return gate.is_on()

    assert asyncio.run(scenario())
