"""Stockade from Python: run Agents, wait for them, read their outcome and logs.

:class:`Client` (synchronous, the ``kubernetes`` package) and :class:`AsyncClient`
(asyncio, ``kubernetes.aio``) have the same methods: ``create`` / ``get`` / ``list`` /
``delete`` for Agents and AgentSessions (the :mod:`stockade.api` models), ``wait``,
``run`` (create, wait, :class:`Outcome`), ``logs``, ``suspend`` / ``resume``. Errors are
the classes of :mod:`stockade.client.errors`. Neither imports the operator (kopf,
prometheus-client, stockade.runtime): the client needs the API models and the
Kubernetes client only.
"""

from stockade.api import Agent, AgentSession, AgentSessionSpec, AgentSpec, Phase
from stockade.client.aio import AsyncClient
from stockade.client.core import Outcome
from stockade.client.errors import (
    AgentFailed,
    ClientError,
    Conflict,
    Deleted,
    FieldCause,
    Forbidden,
    Invalid,
    NotFound,
    Timeout,
    Unreachable,
)
from stockade.client.sync import Client

__all__ = [
    "Agent",
    "AgentFailed",
    "AgentSession",
    "AgentSessionSpec",
    "AgentSpec",
    "AsyncClient",
    "Client",
    "ClientError",
    "Conflict",
    "Deleted",
    "FieldCause",
    "Forbidden",
    "Invalid",
    "NotFound",
    "Outcome",
    "Phase",
    "Timeout",
    "Unreachable",
]
