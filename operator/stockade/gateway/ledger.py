"""Per-Agent accounting: cumulative measured usage, keyed by the Agent's UID (pure).

One :class:`Ledger` per gateway process; the proxy records each metered response.
Counts only grow while the process lives (a restart starts from zero: the design for
the path to ``status`` sums per-replica cumulative counts, see README "Measured usage").
"""

from __future__ import annotations

from dataclasses import dataclass

from stockade.gateway.usage import Usage


@dataclass(frozen=True)
class AgentUsage:
    """One Agent's measured totals.

    Attributes:
        namespace, agent: the Agent's (for reading; the key is the UID).
        input_tokens, output_tokens: summed over metered responses.
        requests: metered model API requests (a response without counts included).

    """

    namespace: str
    agent: str
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0


class Ledger:
    """Cumulative per-Agent usage in memory; bounded by the number of Agents seen."""

    def __init__(self) -> None:
        self._by_uid: dict[str, AgentUsage] = {}

    def record(self, uid: str, namespace: str, agent: str, usage: Usage | None) -> AgentUsage:
        """Add one metered request of the Agent `uid` (`usage` None: no counts found).

        Returns:
            the Agent's new totals. An empty `uid` (no Agent) is not recorded.

        """
        if not uid:
            return AgentUsage(namespace, agent)
        old = self._by_uid.get(uid, AgentUsage(namespace, agent))
        add = usage or Usage()
        new = AgentUsage(
            namespace,
            agent,
            old.input_tokens + add.input_tokens,
            old.output_tokens + add.output_tokens,
            old.requests + 1,
        )
        self._by_uid[uid] = new
        return new

    def snapshot(self) -> dict[str, AgentUsage]:
        """A copy of every Agent's totals, keyed by UID."""
        return dict(self._by_uid)
