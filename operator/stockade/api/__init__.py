"""Stockade's API, ``stockade.dev/v1alpha1``: pydantic models, the source of the CRDs.

:mod:`stockade.api.agent` holds the Agent kind, :mod:`stockade.api.session` the
AgentSession kind; :mod:`stockade.api.crd` generates ``crds/*.yaml`` from the models
(``make crds``).
"""

from stockade.api.agent import (
    AGENT_KIND,
    AGENT_PLURAL,
    GROUP,
    VERSION,
    Agent,
    AgentSpec,
    AgentStatus,
    Condition,
    HistoryEntry,
    Phase,
    PodMetadata,
    ResourceRequirements,
    RestartPolicy,
    SessionRef,
    Usage,
    Workspace,
)
from stockade.api.corev1 import EnvFromSource, EnvVar, Probe, Toleration
from stockade.api.network import EgressMode, Network, NetworkPort
from stockade.api.session import (
    SESSION_KIND,
    SESSION_PLURAL,
    AgentCounts,
    AgentDefaults,
    AgentSession,
    AgentSessionSpec,
    AgentSessionStatus,
    ResourceUsage,
    SessionPhase,
)

__all__ = [
    "AGENT_KIND",
    "AGENT_PLURAL",
    "GROUP",
    "SESSION_KIND",
    "SESSION_PLURAL",
    "VERSION",
    "Agent",
    "AgentCounts",
    "AgentDefaults",
    "AgentSession",
    "AgentSessionSpec",
    "AgentSessionStatus",
    "AgentSpec",
    "AgentStatus",
    "Condition",
    "EgressMode",
    "EnvFromSource",
    "EnvVar",
    "HistoryEntry",
    "Network",
    "NetworkPort",
    "Phase",
    "PodMetadata",
    "Probe",
    "ResourceRequirements",
    "ResourceUsage",
    "RestartPolicy",
    "SessionPhase",
    "SessionRef",
    "Toleration",
    "Usage",
    "Workspace",
]
