"""Exponential backoff: the one rule for how long to wait after n failures (pure).

Used by the lifecycle (the delay before the next attempt of a failed Agent, as the Job
controller's pod-failure backoff: base doubling per failure, capped) and by the work
queue (a reconcile that raised); Kubernetes' own ``wait.Backoff`` and client-go's
``ItemExponentialFailureRateLimiter`` follow the same rule. :func:`refusal_delay` is
the other delay: how long to wait before asking again for a pod the API server refused.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stockade.core.conditions import ADMITTED
from stockade.core.observe import parse_time


@dataclass(frozen=True)
class Backoff:
    """``delay(n) = min(base * 2**(n-1), cap)`` seconds after the n-th failure (n >= 1).

    Attributes:
        base: seconds after the first failure (> 0).
        cap: the longest delay, in seconds (>= base); every later failure waits this.

    """

    base: float
    cap: float

    def delay(self, failures: int) -> float:
        """Seconds to wait after `failures` failures (0 or fewer counts as 1)."""
        exponent = max(failures - 1, 0)
        # 2**exponent overflows a float past ~1024 failures; the cap is long reached.
        if exponent >= math.log2(max(self.cap / self.base, 1.0)) + 1:
            return float(self.cap)
        return float(min(self.base * 2.0**exponent, self.cap))


def refusal_delay(status: Mapping[str, Any], name: str, now: datetime) -> float:
    """Seconds before asking again for a pod the API server refused (1 s .. 60 s, +25%).

    As long as it has been refused so far: derived from the Admitted condition's
    ``lastTransitionTime`` in `status`, so the delay doubles without any memory and
    survives a restart. A jitter of up to +25%, fixed per Agent `name` and step (a hash:
    the lifecycle stays deterministic), spreads the retries of many Agents refused by
    the same ResourceQuota.
    """
    since = None
    for cond in status.get("conditions") or ():
        if cond.get("type") == ADMITTED and cond.get("status") == "False":
            since = parse_time(cond.get("lastTransitionTime"))
    elapsed = (now - since).total_seconds() if since else 0.0
    delay = min(max(elapsed, 1.0), 60.0)
    seed = zlib.crc32(f"{name}/{int(delay)}".encode())
    return delay * (1.0 + (seed % 1000) / 4000.0)
