"""Liveness and readiness that look at the event loop and the watches, not only "it runs".

kopf's own liveness endpoint is served by the event loop it reports on, and answers
200 whenever its probe handlers return. Here:

- a :class:`Heartbeat` task beats in the event loop every ``interval`` seconds and
  records how late each beat was (the loop's lag, ``stockade_event_loop_lag_seconds``);
- the endpoints are served from a thread (:class:`HealthServer`), so a blocked loop gets
  a prompt 503 with the reason instead of a hung connection;
- ``/healthz`` (liveness) fails when the last beat is older than ``stall_seconds`` (the
  loop is blocked or starved), or when the last :data:`STALE_ROUNDS` resyncs in a row
  found objects in a fresh LIST that the watch of their resource had not delivered a
  grace period later, while it delivered no event at all (the watch stream is stuck: a
  restart lists and watches anew);
- ``/readyz`` (readiness) answers 200 once the operator has started and its initial
  listing succeeded (:meth:`Health.set_ready`), and while it is live.

The decision is the pure function :func:`problems`. Kubernetes probes: see
https://kubernetes.io/docs/concepts/configuration/liveness-readiness-startup-probes/.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from stockade.runtime import metrics

log = logging.getLogger("stockade.health")

STALE_ROUNDS = 2
"""Consecutive resyncs that must find a watch behind before liveness fails."""


def problems(
    now: float,
    last_beat: float | None,
    stall_seconds: float,
    stale_rounds: Mapping[str, int],
) -> list[str]:
    """Why the operator is not live (empty: live).

    Args:
        now: the monotonic clock now (seconds).
        last_beat: the monotonic time of the heartbeat's last beat (None: not started).
        stall_seconds: the longest a beat may be overdue.
        stale_rounds: per watched resource (plural), how many resyncs in a row found
            objects its watch had not delivered.

    """
    found: list[str] = []
    if last_beat is not None and now - last_beat > stall_seconds:
        found.append(f"event loop stalled: no heartbeat for {now - last_beat:.1f}s")
    for resource, rounds in sorted(stale_rounds.items()):
        if rounds >= STALE_ROUNDS:
            found.append(f"watch of {resource} stuck: {rounds} resyncs found objects it missed")
    return found


@dataclass
class Health:
    """The operator's liveness and readiness state (shared with the HTTP thread).

    Attributes:
        stall_seconds: liveness fails when the heartbeat is this overdue.
        interval: seconds between heartbeats.
        ready: the operator started and its initial listing succeeded.
        last_beat: monotonic time of the last beat (None before the first).
        stale_rounds: resource -> consecutive resyncs that found its watch behind.

    """

    stall_seconds: float = 30.0
    interval: float = 1.0
    ready: bool = False
    last_beat: float | None = None
    stale_rounds: dict[str, int] = field(default_factory=dict)

    def set_ready(self) -> None:
        """Mark the initial listing done (readiness may pass from now on)."""
        self.ready = True

    def watch_checked(self, resource: str, missed: int) -> None:
        """Record one resync's verdict on `resource`'s watch: `missed` objects it lacked."""
        self.stale_rounds[resource] = self.stale_rounds.get(resource, 0) + 1 if missed else 0

    def live(self) -> list[str]:
        """:func:`problems` now (empty: live)."""
        return problems(time.monotonic(), self.last_beat, self.stall_seconds, self.stale_rounds)

    async def beat(self) -> None:
        """Beat forever in the event loop, recording the loop's lag (run as a task)."""
        while True:
            before = time.monotonic()
            self.last_beat = before
            await asyncio.sleep(self.interval)
            metrics.LOOP_LAG.observe(max(time.monotonic() - before - self.interval, 0.0))


class HealthServer:
    """``/healthz`` and ``/readyz`` for `health`, served from a daemon thread.

    Each answers 200 or 503 with a JSON body ``{"problems": [...]}``.
    """

    def __init__(self, health: Health, port: int, host: str = "0.0.0.0") -> None:
        owner = health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = owner.live()
                if self.path.startswith("/readyz") and not owner.ready:
                    found = ["initial listing not done", *found]
                elif not self.path.startswith(("/healthz", "/readyz")):
                    self.send_error(404)
                    return
                body = json.dumps({"problems": found}).encode()
                self.send_response(503 if found else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="stockade-health", daemon=True
        )

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
