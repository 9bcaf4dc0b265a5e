"""Where the gateway learns about pods and Agents: the interfaces, and a static source.

The proxy (:mod:`stockade.gateway.proxy`) depends only on :class:`PodSource` and
:class:`CredentialSource`; :mod:`stockade.gateway.kube` implements both over the API
server, :class:`StaticSource` over fixed data (tests, the benchmark).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from stockade.gateway.credentials import Credential
from stockade.gateway.identity import PodView


class AgentUnavailable(Exception):
    """The calling pod's Agent or one of its Secrets cannot be read now.

    Attributes:
        reason: ``agent-gone`` (404, or another UID than the pod's ownerReference),
            ``secret-missing`` (a Secret or key is absent) or ``api-error``.

    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AgentCredentials:
    """An Agent's credentials and their secret values (by credential name, raw bytes)."""

    credentials: tuple[Credential, ...] = ()
    values: Mapping[str, bytes] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Never print a secret value, whatever logs this object.
        return f"AgentCredentials(credentials={self.credentials!r}, values=<{len(self.values)}>)"


class PodSource(Protocol):
    """The pods that may call the gateway, looked up by IP."""

    def pods_at(self, ip: str) -> list[PodView]:
        """Every known pod whose ``status.podIP`` is `ip` (any phase)."""
        ...


class CredentialSource(Protocol):
    """The credentials of the Agent that owns a pod."""

    async def credentials_for(self, pod: PodView) -> AgentCredentials:
        """Read (or serve from a short cache) the credentials of `pod`'s owning Agent.

        Only the Agent whose UID equals `pod.agent_uid` counts; the values come from the
        Secrets its ``spec.credentials`` name, in its namespace.

        Raises:
            AgentUnavailable: the Agent, a Secret or a key cannot be read.

        """
        ...


class StaticSource:
    """Fixed pods and Agents (tests, the benchmark): a PodSource and a CredentialSource.

    Args:
        pods: the pods.
        agents: credentials by ``(namespace, agent name, agent uid)``; a pod whose Agent
            is missing here raises :class:`AgentUnavailable` (``agent-gone``).

    """

    def __init__(
        self,
        pods: Iterable[PodView],
        agents: Mapping[tuple[str, str, str], AgentCredentials] | None = None,
    ) -> None:
        self._pods = tuple(pods)
        self._agents = dict(agents or {})

    def pods_at(self, ip: str) -> list[PodView]:
        """See :meth:`PodSource.pods_at`."""
        return [pod for pod in self._pods if pod.ip == ip]

    async def credentials_for(self, pod: PodView) -> AgentCredentials:
        """See :meth:`CredentialSource.credentials_for`."""
        found = self._agents.get(pod.agent_key)
        if found is None:
            raise AgentUnavailable("agent-gone")
        return found
