"""Kubernetes Events, posted in the background and bounded.

Events inform (``kubectl describe`` shows them): they must never slow a reconcile down
or fail it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from stockade.runtime import metrics
from stockade.runtime.k8s import KubeApi

log = logging.getLogger("stockade.reconcile")

EVENTS_IN_FLIGHT = 200
"""Most Events being posted at once; more are dropped (and counted): they inform only."""


@dataclass
class EventRecorder:
    """Posts core/v1 Events on Agents, at most :data:`EVENTS_IN_FLIGHT` at once."""

    kube: KubeApi
    _events: set[asyncio.Task[None]] = field(default_factory=set)

    def post(self, agent: dict[str, Any], *, warning: bool, reason: str, message: str) -> None:
        """Record an Event on `agent` in the background (dropped, and counted, when full)."""

        async def post() -> None:
            try:
                await self.kube.event(agent, warning=warning, reason=reason, message=message)
            except Exception:  # an Event lost is not worth a failed reconcile
                log.warning("could not record Event %s on %s", reason, agent["metadata"]["name"])

        if len(self._events) >= EVENTS_IN_FLIGHT:
            metrics.EVENTS_DROPPED.inc()
            return
        task = asyncio.get_running_loop().create_task(post())
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def close(self) -> None:
        """Wait for the Events being posted."""
        await asyncio.gather(*self._events, return_exceptions=True)
