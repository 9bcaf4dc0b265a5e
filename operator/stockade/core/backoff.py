"""Exponential backoff: the one rule for how long to wait after n failures (pure).

Used by the lifecycle (the delay before the next attempt of a failed Agent, as the Job
controller's pod-failure backoff: base doubling per failure, capped) and by the work
queue (a reconcile that raised). Kubernetes' own ``wait.Backoff`` and client-go's
``ItemExponentialFailureRateLimiter`` follow the same rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


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
