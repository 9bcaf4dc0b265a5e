"""The ``AgentSession`` kind (``stockade.dev/v1alpha1``): pydantic models of its spec and status.

A session is a team of Agents working on one task: it caps how many of them are admitted
at once (``maxAgents``), bounds the resources they request together (``budget``), supplies
defaults they inherit (``agentDefaults``) and gives them one lifetime
(``activeDeadlineSeconds``, ``ttlSecondsAfterFinished``, ``suspend``). Member Agents name it
in ``spec.sessionRef``.

As for the Agent (:mod:`stockade.api.agent`), these models are the single source of truth:
:mod:`stockade.api.crd` generates ``crds/agentsessions.yaml`` from them, and the Python
validators mirror the CRD's rules. The defaults reuse the Agent's own types, so a default
is valid exactly when the same value would be valid on an Agent.

Every spec field is mutable: raising ``maxAgents`` or the ``budget`` of a running session
is how a user adds capacity, and ``suspend`` must be switchable.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, GetJsonSchemaHandler, field_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from stockade.api.agent import (
    _RESOURCE_KEYS,
    GROUP,
    RESOURCE_NAMES,
    VERSION,
    AgentConfig,
    Condition,
    ResourceRequirements,
    Timestamp,
    Usage,
    _check_resource_list,
    _quantity,
)
from stockade.api.base import (
    Model,
    Quantity,
    cel,
    object_name_rules,
    rule,
)
from stockade.api.corev1 import DNSSubdomain, EnvVar
from stockade.api.network import Network

SESSION_KIND = "AgentSession"
SESSION_PLURAL = "agentsessions"

SESSION_NAME_MAX_LENGTH = 63
"""AgentSession names are DNS-1123 labels: ``spec.sessionRef.name`` of an Agent and the
``stockade.dev/session`` label of its pod hold them."""

MAX_AGENTS_LIMIT = 1000
"""The largest ``spec.maxAgents``."""

DEFAULT_MAX_AGENTS = 8
"""``spec.maxAgents`` when unset."""


class SessionPhase(StrEnum):
    """The AgentSession's phase: a summary for people; conditions are the contract."""

    Active = "Active"
    Suspended = "Suspended"
    Succeeded = "Succeeded"
    Failed = "Failed"
    Terminating = "Terminating"


@dataclass(frozen=True, eq=False)  # hashable (by identity), as Annotated metadata must be
class _SchemaExtra:
    """Annotation adding keys to a type's JSON schema, even one set by ``WithJsonSchema``.

    (``Field(json_schema_extra=...)`` does not reach a dict's values.)
    """

    extra: dict[str, Any]

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(core_schema), **self.extra}


def _check_positive(value: str) -> str:
    if _quantity(value) <= 0:
        raise ValueError(f"{value} must be greater than zero")
    return value


BudgetQuantity = Annotated[
    Quantity,
    _SchemaExtra(
        cel(
            rule(
                # Malformed quantities are reported by the schema's pattern, not here.
                "!isQuantity(string(self)) || quantity(string(self)).isGreaterThan(quantity('0'))",
                "must be greater than zero",
            )
        )
    ),
]
"""A budget amount: a Kubernetes quantity greater than zero (a zero budget could admit no
Agent at all; ``suspend`` is the way to run none)."""

ResourceList = Annotated[
    dict[str, BudgetQuantity],
    Field(max_length=len(RESOURCE_NAMES), json_schema_extra=cel(_RESOURCE_KEYS)),
]
"""Amounts of cpu, memory and ephemeral-storage, keyed by resource name."""


# --- spec ------------------------------------------------------------------------------


class AgentDefaults(Model):
    """Defaults merged into each member Agent's effective spec; the Agent's own fields win.

    They are applied when the operator builds the Agent's pod and are never written
    into the Agent (GitOps tools see no drift). Each field has the type of the Agent
    field of the same name.
    """

    image: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    """Container image of member Agents that set none."""
    runtime_class_name: DNSSubdomain | None = None
    """RuntimeClass (sandbox) of member Agents that set none, e.g. gvisor or kata; the
    operator's default when unset."""
    resources: ResourceRequirements | None = None
    """Requests and limits (cpu, memory, ephemeral-storage) of member Agents, per value:
    a request or limit the Agent sets wins over the one here."""
    network: Network | None = None
    """Network access of member Agents that set none."""
    env: Annotated[
        list[EnvVar] | None,
        Field(max_length=128, json_schema_extra=cel(list_type="map", list_map_keys=["name"])),
    ] = None
    """Environment variables of member Agents, by name: a variable the Agent sets wins."""
    config: AgentConfig | None = None
    """String settings of member Agents, by key: a key the Agent sets wins."""


class AgentSessionSpec(Model):
    """The desired state of an AgentSession: capacity, budget, member defaults, lifetime.

    Every field may change after creation.
    """

    max_agents: Annotated[int, Field(ge=1, le=MAX_AGENTS_LIMIT)] = DEFAULT_MAX_AGENTS
    """Most member Agents admitted (holding a pod) at once; the others wait in Pending
    with Admitted=False (SessionFull), first come first served by creation time."""
    budget: ResourceList | None = None
    """Total cpu, memory and ephemeral-storage the admitted Agents may request together
    (each amount greater than zero); an Agent that would exceed it waits with
    Admitted=False (BudgetExceeded). Unbounded when unset; a resource not listed is not
    limited."""
    agent_defaults: AgentDefaults | None = None
    """Defaults merged into member Agents (image, runtimeClassName, resources, network,
    env, config); the Agent's own fields win."""
    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    """Maximum seconds from the session's start; then its unfinished Agents fail with
    DeadlineExceeded and the session Failed."""
    ttl_seconds_after_finished: Annotated[int, Field(ge=0)] | None = None
    """Delete the session (and, by garbage collection, its Agents) this many seconds
    after it Succeeded or Failed; kept when unset."""
    suspend: bool = False
    """True pauses every member Agent (pods deleted, workspaces kept) and admits none;
    false resumes them."""

    @field_validator("budget")
    @classmethod
    def _known_positive_resources(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for amount in (value or {}).values():
            _check_positive(amount)
        return _check_resource_list(value)


# --- status ----------------------------------------------------------------------------

Count = Annotated[int, Field(ge=0)]


class AgentCounts(Model):
    """How many member Agents are in each phase."""

    pending: Count = 0
    """Agents in Pending (waiting for admission or their pod)."""
    starting: Count = 0
    """Agents in Starting."""
    running: Count = 0
    """Agents in Running."""
    succeeded: Count = 0
    """Agents in Succeeded."""
    failed: Count = 0
    """Agents in Failed."""
    paused: Count = 0
    """Agents in Paused."""
    terminating: Count = 0
    """Agents in Terminating (being deleted)."""
    total: Count = 0
    """All member Agents, whatever their phase (also those without a phase yet)."""


class ResourceUsage(Model):
    """Resources the admitted member Agents hold, against the session's budget."""

    requests: Annotated[
        dict[str, Quantity] | None,
        Field(max_length=len(RESOURCE_NAMES), json_schema_extra=cel(_RESOURCE_KEYS)),
    ] = None
    """Sum of the admitted Agents' effective requests (cpu, memory, ephemeral-storage)."""

    @field_validator("requests")
    @classmethod
    def _known_resources(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return _check_resource_list(value)


class AgentSessionStatus(Model):
    """The observed state of an AgentSession, written by the operator."""

    phase: SessionPhase | None = None
    """Active, Suspended, Succeeded, Failed or Terminating. A summary for people;
    conditions are the contract."""
    reason: str | None = None
    """CamelCase reason of the current phase, e.g. DeadlineExceeded."""
    message: str | None = None
    """Human-readable details of the current phase."""
    conditions: Annotated[
        list[Condition] | None,
        Field(json_schema_extra=cel(list_type="map", list_map_keys=["type"])),
    ] = None
    """Current conditions: Ready, Reconciling, Stalled (kstatus), Suspended."""
    observed_generation: int | None = None
    """The metadata.generation the status was computed from."""
    agents: AgentCounts | None = None
    """Member Agents per phase, and in total."""
    admitted: Count | None = None
    """Member Agents currently holding an admission."""
    admitted_agents: Annotated[
        list[Annotated[str, Field(max_length=63)]] | None, Field(max_length=MAX_AGENTS_LIMIT)
    ] = None
    """Names of the member Agents holding an admission, in admission order: the
    operator's record that keeps admissions unique across restarts. Written only by
    the operator."""
    usage: ResourceUsage | None = None
    """Resources the admitted Agents request together, against budget."""
    usage_summary: Annotated[str, Field(max_length=256)] | None = None
    """Requests in use against the budget, for people (the Usage column), e.g.
    "cpu 1500m/2, memory 1536Mi/2Gi"."""
    agent_usage: Usage | None = None
    """The sum of what the member Agents reported they used (tokens, cost)."""
    start_time: Timestamp | None = None
    """When the session became Active for the first time."""
    completion_time: Timestamp | None = None
    """When the session Succeeded or Failed."""


# --- the kind ----------------------------------------------------------------------------


class AgentSession(Model):
    """A team of Agents on one task, with shared capacity, budget, defaults and lifetime.

    The session caps how many Agents run at once, bounds the resources they request
    together, supplies defaults they inherit, and ends them together. Member Agents
    name the session in spec.sessionRef; the operator admits them first come first
    served, makes them owned dependents of the session (deleting the session deletes
    them), and reports their phases, resource usage and reported usage here.
    """

    model_config = ConfigDict(json_schema_extra=object_name_rules(SESSION_NAME_MAX_LENGTH))

    api_version: str = f"{GROUP}/{VERSION}"
    """``stockade.dev/v1alpha1``."""
    kind: str = SESSION_KIND
    """``AgentSession``."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata (a plain dict)."""
    spec: AgentSessionSpec = AgentSessionSpec()
    """The desired state of the AgentSession."""
    status: AgentSessionStatus | None = None
    """The observed state of the AgentSession, written by the operator."""
