"""Stockade's API, ``stockade.dev/v1alpha1``: pydantic models, the source of the CRDs.

:mod:`stockade.api.agent` holds the Agent kind; :mod:`stockade.api.crd` generates
``crds/*.yaml`` from the models (``make crds``).
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
    EgressMode,
    EnvFromSource,
    EnvVar,
    HistoryEntry,
    Network,
    NetworkPort,
    Phase,
    PodMetadata,
    Probe,
    ResourceRequirements,
    RestartPolicy,
    SessionRef,
    Toleration,
    Usage,
    Workspace,
)

__all__ = [
    "AGENT_KIND",
    "AGENT_PLURAL",
    "GROUP",
    "VERSION",
    "Agent",
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
    "RestartPolicy",
    "SessionRef",
    "Toleration",
    "Usage",
    "Workspace",
]
