"""The ``Agent`` kind (``stockade.dev/v1alpha1``): pydantic models of its spec and status.

These models are the single source of truth of the API: :mod:`stockade.api.crd`
generates the CRD's structural schema (types, enums, ranges, patterns, defaults,
``x-kubernetes-validations`` CEL rules and the descriptions ``kubectl explain`` shows)
from them. The Python validators mirror the CRD's cross-field rules, so a spec the API
server stored also parses here, and a spec that parses obeys them.

Shapes follow core/v1 where a field has a core/v1 counterpart (EnvVar, EnvFromSource,
Probe, Toleration, ResourceRequirements) and the Kubernetes API conventions elsewhere.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from kubernetes.utils.quantity import parse_quantity
from pydantic import ConfigDict, Field, field_validator, model_validator

from stockade.api.base import (
    CONFIG_KEY,
    DNS1123_LABEL,
    QUALIFIED_NAME,
    Model,
    Quantity,
    cel,
    object_name_rules,
    rule,
)
from stockade.api.corev1 import (
    Arg,
    DNSSubdomain,
    EnvFromSource,
    EnvVar,
    LabelValue,
    Probe,
    Toleration,
)
from stockade.api.credentials import CREDENTIAL_RULES, CredentialList, problems
from stockade.api.network import Network

GROUP = "stockade.dev"
VERSION = "v1alpha1"
AGENT_KIND = "Agent"
AGENT_PLURAL = "agents"

AGENT_NAME_MAX_LENGTH = 52
"""Agent names are DNS-1123 labels this short, so every derived child name is a label."""

TASK_MAX_LENGTH = 102400
"""``spec.task`` holds at most 100 KiB (characters)."""

RESULT_MAX_LENGTH = 4096
"""``status.result`` holds at most 4 KiB, the size of a termination message."""

HISTORY_MAX_ITEMS = 100
"""``status.history`` keeps at most this many transitions."""

RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")
"""The resources an Agent may request."""

MUTABLE_SPEC_FIELDS = frozenset(
    {"suspend", "activeDeadlineSeconds", "ttlSecondsAfterFinished", "backoffLimit"}
)
"""The spec fields (JSON names) that may change after creation; every other is immutable."""


class Phase(StrEnum):
    """The Agent's lifecycle phase: a summary for people; conditions are the contract."""

    Pending = "Pending"
    Starting = "Starting"
    Running = "Running"
    Succeeded = "Succeeded"
    Failed = "Failed"
    Paused = "Paused"
    Terminating = "Terminating"


TERMINAL_PHASES: frozenset[Phase] = frozenset({Phase.Succeeded, Phase.Failed})
"""The phases an Agent never leaves, but for Terminating when it is deleted."""


class RestartPolicy(StrEnum):
    """What happens after a failed attempt: ``Never`` fails the Agent, ``OnFailure`` retries."""

    NEVER = "Never"
    ON_FAILURE = "OnFailure"


def _quantity(value: str) -> Decimal:
    """Parse a Kubernetes quantity (``500m``, ``1Gi``) into a Decimal."""
    parsed: Decimal = parse_quantity(value)  # type: ignore[no-untyped-call]
    return parsed


# --- small string types ------------------------------------------------------------

DNSLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS1123_LABEL)]

ALLOWED_ANNOTATIONS = (
    "kubectl.kubernetes.io/default-container",
    "kubernetes.io/description",
)
"""The prefixed pod annotation keys an Agent may set (``spec.podMetadata.annotations``)
beyond :data:`ALLOWED_ANNOTATION_PREFIXES`: kubectl's default container for
``exec``/``logs`` (the pod has one container anyway) and a free-text description."""

ALLOWED_ANNOTATION_PREFIXES = ("user.stockade.dev/", "sim.stockade.dev/")
"""Annotation key prefixes an Agent may set: ``user.stockade.dev/`` (the Agent author's
own, as for labels: nothing may act on it) and ``sim.stockade.dev/`` (read only by the
local simulated kubelet, ``hack/kwok/``; nothing in a real cluster reads it)."""

_ANNOTATIONS_MESSAGE = (
    "annotation keys must be unprefixed and without dots (e.g. owner), under "
    + " or ".join(ALLOWED_ANNOTATION_PREFIXES)
    + ", or one of "
    + ", ".join(ALLOWED_ANNOTATIONS)
    + ": other prefixes are read by cluster components (CNI plugins such as Multus, "
    "Calico and Cilium, sidecar injectors, the container runtime, the sandbox, "
    "Kubernetes itself), which could change the pod's network, sandbox or placement"
)

_SAFE_ANNOTATION_KEYS = rule(
    "self.all(k, !(k.contains('/') || k.contains('.')) || k in "
    + repr(list(ALLOWED_ANNOTATIONS))
    + "".join(f" || k.startsWith('{prefix}')" for prefix in ALLOWED_ANNOTATION_PREFIXES)
    + ")",
    _ANNOTATIONS_MESSAGE,
    reason="FieldValueForbidden",
)


def annotation_allowed(key: str) -> bool:
    """Whether an Agent may set pod annotation `key` (the CRD's rule, in Python).

    Allowed: unprefixed keys without dots (no ``/``: private to the user, per the
    Kubernetes conventions; no ``.``: the container runtimes and sandboxes read dotted
    reverse-DNS names without a prefix, such as ``io.katacontainers.config...``,
    ``dev.gvisor...``, ``io.kubernetes.cri-o...``, ``cpu-quota.crio.io``), keys under
    :data:`ALLOWED_ANNOTATION_PREFIXES`, and :data:`ALLOWED_ANNOTATIONS`. Every other
    key may be read by some cluster component (issue 20: Multus'
    ``k8s.v1.cni.cncf.io/networks`` attaches the pod to a network no NetworkPolicy
    fences), so an allow-list, not a deny-list.
    """
    return (
        ("/" not in key and "." not in key)
        or key in ALLOWED_ANNOTATIONS
        or key.startswith(ALLOWED_ANNOTATION_PREFIXES)
    )


def _check_annotations(value: dict[str, str] | None) -> dict[str, str] | None:
    refused = sorted(key for key in value or () if not annotation_allowed(key))
    if refused:
        raise ValueError(f"{', '.join(refused)}: {_ANNOTATIONS_MESSAGE}")
    return value


_QUALIFIED_KEYS = rule(
    f"self.all(k, k.size() <= 317 && k.matches(r'{QUALIFIED_NAME}'))",
    "keys must be qualified names ([prefix/]name, e.g. example.com/team)",
)


# --- spec ------------------------------------------------------------------------------


class SessionRef(Model):
    """A reference to an AgentSession in the Agent's namespace."""

    name: DNSLabel
    """Name of the AgentSession."""


def _check_resource_list(value: dict[str, str] | None) -> dict[str, str] | None:
    unknown = sorted(set(value or ()) - set(RESOURCE_NAMES))
    if unknown:
        raise ValueError(f"unsupported resources {unknown}: only {', '.join(RESOURCE_NAMES)}")
    return value


_RESOURCE_KEYS = rule(
    "self.all(k, k in ['cpu', 'memory', 'ephemeral-storage'])",
    "only cpu, memory and ephemeral-storage are supported",
)


class ResourceRequirements(Model):
    """Compute resources of the agent container (a core/v1 ResourceRequirements).

    Unset values come from the AgentSession's defaults, then the operator's.
    """

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                # Malformed quantities are reported by the schema's pattern, not here.
                "!has(self.requests) || !has(self.limits) || self.requests.all(k, "
                "!(k in self.limits) || "
                "!isQuantity(string(self.requests[k])) || !isQuantity(string(self.limits[k])) || "
                "quantity(string(self.requests[k])).compareTo("
                "quantity(string(self.limits[k]))) <= 0)",
                "requests must be less than or equal to limits",
                field_path=".requests",
            )
        )
    )

    requests: Annotated[
        dict[str, Quantity] | None,
        Field(max_length=3, json_schema_extra=cel(_RESOURCE_KEYS)),
    ] = None
    """Minimum resources the agent needs (cpu, memory, ephemeral-storage), used for scheduling."""
    limits: Annotated[
        dict[str, Quantity] | None,
        Field(max_length=3, json_schema_extra=cel(_RESOURCE_KEYS)),
    ] = None
    """Maximum resources the agent may use (cpu, memory, ephemeral-storage)."""

    @field_validator("requests", "limits")
    @classmethod
    def _known_resources(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return _check_resource_list(value)

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ResourceRequirements:
        for name, request in (self.requests or {}).items():
            limit = (self.limits or {}).get(name)
            if limit is not None and _quantity(request) > _quantity(limit):
                raise ValueError(f"requests.{name} ({request}) exceeds limits.{name} ({limit})")
        return self


class Workspace(Model):
    """A persistent volume mounted at /workspace; it survives suspension and retries."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!isQuantity(string(self.size)) || "
                "quantity(string(self.size)).isGreaterThan(quantity('0'))",
                "size must be greater than zero",
                field_path=".size",
            )
        )
    )

    size: Quantity
    """Requested capacity of the volume, e.g. 10Gi."""
    storage_class_name: DNSSubdomain | None = None
    """StorageClass of the volume; the cluster's default StorageClass when unset."""
    retain: bool = False
    """Keep the volume (its PersistentVolumeClaim) when the Agent is deleted."""
    reuse: bool = False
    """Mount the retained claim ``<name>-workspace`` an earlier Agent of this name left.

    Without it such a claim is a ResourceConflict, never mounted. The admission policy
    lets an Agent set it only if its author may get and update that claim.
    """

    @field_validator("size")
    @classmethod
    def _positive(cls, value: str) -> str:
        if _quantity(value) <= 0:
            raise ValueError("size must be greater than zero")
        return value


class PodMetadata(Model):
    """Extra labels and annotations for the agent pod.

    Stockade's own labels (app.kubernetes.io/managed-by, stockade.dev/*) always win.
    """

    labels: Annotated[
        dict[str, LabelValue] | None,
        Field(
            max_length=64,
            json_schema_extra=cel(
                _QUALIFIED_KEYS,
                rule(
                    "self.all(k, !k.startsWith('stockade.dev/'))",
                    "the stockade.dev/ label prefix is reserved",
                ),
            ),
        ),
    ] = None
    """Labels added to the pod."""
    annotations: Annotated[
        dict[str, Annotated[str, Field(max_length=65536)]] | None,
        Field(max_length=64, json_schema_extra=cel(_QUALIFIED_KEYS, _SAFE_ANNOTATION_KEYS)),
    ] = None
    """Annotations added to the pod. Only unprefixed keys without dots (e.g. owner), keys under
    user.stockade.dev/ or sim.stockade.dev/, kubectl.kubernetes.io/default-container and
    kubernetes.io/description: any other prefix may be read by a cluster component (CNI
    plugins, sidecar injectors, the runtime, the sandbox, Kubernetes itself)."""

    @field_validator("annotations")
    @classmethod
    def _safe_annotations(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return _check_annotations(value)


def _spec_rules(schema: dict[str, Any]) -> None:
    """Add the AgentSpec's CEL rules: presence, probe, credential and immutability rules."""
    rules = [
        *CREDENTIAL_RULES,
        rule(
            "has(self.image) || has(self.sessionRef)",
            "image is required unless sessionRef is set",
            field_path=".image",
            reason="FieldValueRequired",
        ),
        rule(
            "!has(self.livenessProbe) || !has(self.livenessProbe.successThreshold) || "
            "self.livenessProbe.successThreshold == 1",
            "successThreshold must be 1 for a liveness probe",
            field_path=".livenessProbe.successThreshold",
        ),
    ]
    # Setting or unsetting a field is a change too. (The equivalent optional comparison
    # `self.?f == oldSelf.?f` is costed as unbounded by the API server's estimator.)
    rules.extend(
        rule(
            f"has(self.{name}) == has(oldSelf.{name}) && "
            f"(!has(self.{name}) || self.{name} == oldSelf.{name})",
            f"{name} is immutable",
            field_path=f".{name}",
        )
        for name in schema["properties"]
        if name not in MUTABLE_SPEC_FIELDS
    )
    schema["x-kubernetes-validations"] = rules


AgentConfig = Annotated[
    dict[str, Annotated[str, Field(max_length=65536)]],
    Field(
        max_length=64,
        json_schema_extra=cel(
            rule(
                f"self.all(k, k.size() <= 253 && k.matches(r'{CONFIG_KEY}') "
                "&& k != '.' && k != '..')",
                "keys must consist of alphanumerics, '-', '_' or '.' (at most 253)",
            )
        ),
    ),
]
"""``config``: at most 64 string settings whose keys are valid ConfigMap keys."""


class AgentSpec(Model):
    """The desired state of an Agent: its container, sandbox, limits and lifecycle policy.

    Only suspend, activeDeadlineSeconds, ttlSecondsAfterFinished and backoffLimit may
    change after creation.
    """

    model_config = ConfigDict(json_schema_extra=lambda schema, _cls: _spec_rules(schema))

    session_ref: SessionRef | None = None
    """AgentSession this Agent belongs to (same namespace); it admits the Agent and
    supplies defaults. Immutable."""
    image: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    """Container image of the agent. Required unless sessionRef is set (the session's
    agentDefaults may supply it)."""
    command: Annotated[list[Arg] | None, Field(max_length=128)] = None
    """Entrypoint array (not run in a shell); the image's ENTRYPOINT when unset."""
    args: Annotated[list[Arg] | None, Field(max_length=128)] = None
    """Arguments to the entrypoint; the image's CMD when unset."""
    env: Annotated[
        list[EnvVar] | None,
        Field(max_length=128, json_schema_extra=cel(list_type="map", list_map_keys=["name"])),
    ] = None
    """Environment variables of the agent container."""
    env_from: Annotated[list[EnvFromSource] | None, Field(max_length=16)] = None
    """ConfigMaps and Secrets whose keys become environment variables."""
    working_dir: Annotated[str, Field(max_length=4096)] | None = None
    """Working directory of the agent container; the image's when unset."""
    task: Annotated[str, Field(max_length=TASK_MAX_LENGTH)] | None = None
    """Text handed to the agent (at most 100 KiB), mounted read-only as a file under
    /etc/stockade."""
    config: AgentConfig | None = None
    """String settings handed to the agent (allowed tools, model, ...), mounted
    read-only as files under /etc/stockade."""
    runtime_class_name: DNSSubdomain | None = None
    """RuntimeClass (sandbox) of the pod, e.g. gvisor or kata; the operator's default
    when unset."""
    resources: ResourceRequirements | None = None
    """Requests and limits for cpu, memory and ephemeral-storage."""
    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    """Maximum seconds from start to finish; the Agent then fails with DeadlineExceeded."""
    startup_timeout_seconds: Annotated[int, Field(ge=1)] = 300
    """Maximum seconds from pod creation to Running (image pull, sandbox creation); an
    attempt that takes longer fails with StartupTimeout."""
    restart_policy: RestartPolicy = RestartPolicy.NEVER
    """Never (a failed attempt fails the Agent) or OnFailure (retry with exponential
    backoff, at most backoffLimit times)."""
    backoff_limit: Annotated[int, Field(ge=0, le=100)] = 3
    """Retries after failed attempts (OnFailure) before the Agent fails with
    BackoffLimitExceeded."""
    suspend: bool = False
    """True pauses the Agent: its pod is deleted, its workspace kept; false resumes it."""
    ttl_seconds_after_finished: Annotated[int, Field(ge=0)] | None = None
    """Delete the Agent this many seconds after it Succeeded or Failed; kept when unset."""
    workspace: Workspace | None = None
    """A persistent volume mounted at /workspace."""
    network: Network | None = None
    """Network access of the agent. Unset means the session's default, else no egress
    (egress None); no CRD default, so that a session's agentDefaults can apply."""
    liveness_probe: Probe | None = None
    """Restarts the attempt when it fails; failures count as attempts (a heartbeat)."""
    readiness_probe: Probe | None = None
    """Decides whether the running Agent is Ready."""
    service_account_name: DNSSubdomain | None = None
    """ServiceAccount of the pod; without it no API token is mounted."""
    priority_class_name: DNSSubdomain | None = None
    """PriorityClass of the pod."""
    node_selector: Annotated[
        dict[str, LabelValue] | None,
        Field(max_length=64, json_schema_extra=cel(_QUALIFIED_KEYS)),
    ] = None
    """Node labels the pod's node must have."""
    tolerations: Annotated[list[Toleration] | None, Field(max_length=32)] = None
    """Taints the pod tolerates."""
    pod_metadata: PodMetadata | None = None
    """Extra labels and annotations for the pod."""
    credentials: CredentialList | None = None
    """Credentials the egress gateway adds to requests to some of network.hosts (a
    header from a Secret key; the agent never sees the value). Need network.egress Hosts
    on the Agent itself (a member with credentials takes no network from its session)."""

    @model_validator(mode="after")
    def _credentials_fit(self) -> AgentSpec:
        env = {var.name for var in self.env or ()}
        found = problems(self.credentials or [], self.network, env)
        if found:
            raise ValueError("; ".join(found))
        return self


# --- status ----------------------------------------------------------------------------

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
"""An RFC 3339 time in UTC, e.g. 2025-01-31T12:00:00Z."""


class Condition(Model):
    """An observation of one aspect of the Agent (a metav1.Condition).

    Types: Ready (summary), Reconciling and Stalled (abnormal-true, kstatus), Admitted,
    Suspended.
    """

    type: str
    """Type of the condition, e.g. Ready."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str
    """Machine-readable CamelCase reason of the last transition."""
    message: str
    """Human-readable details."""
    last_transition_time: Timestamp
    """When the status last changed."""
    observed_generation: int | None = None
    """The metadata.generation this condition was computed from."""


class Usage(Model):
    """What the agent reported it used (its termination message's usage object).

    Known keys are below; other numeric keys are kept as reported.
    """

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra=cel(preserve_unknown_fields=True),
    )

    input_tokens: int | None = None
    """Model input tokens."""
    output_tokens: int | None = None
    """Model output tokens."""
    cost_usd: float | None = Field(default=None, alias="costUSD")
    """Cost in US dollars."""

    @model_validator(mode="after")
    def _numeric_extras(self) -> Usage:
        for key, value in (self.model_extra or {}).items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"usage.{key} must be a number")
        return self


class SessionDefaults(Model):
    """The AgentSession's ``agentDefaults`` as they were when the Agent was admitted.

    Defaults are resolved once: a member keeps running with what it was admitted with,
    whatever later edits of the session's ``agentDefaults`` say.
    """

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra=cel(preserve_unknown_fields=True),
    )


class HistoryEntry(Model):
    """One phase transition of the Agent."""

    seq: int
    """Sequence number, increasing by one per transition."""
    from_: Phase | None = Field(default=None, alias="from")
    """Phase before the transition; unset for the first one."""
    to: Phase
    """Phase after the transition."""
    reason: str
    """CamelCase reason of the transition."""
    message: str
    """Human-readable details."""
    time: Timestamp
    """When the transition happened."""


class AgentStatus(Model):
    """The observed state of an Agent, written by the operator."""

    phase: Phase | None = None
    """Lifecycle phase: Pending, Starting, Running, Succeeded, Failed, Paused or
    Terminating. A summary for people; conditions are the contract."""
    conditions: Annotated[
        list[Condition] | None,
        Field(json_schema_extra=cel(list_type="map", list_map_keys=["type"])),
    ] = None
    """Current conditions: Ready, Reconciling, Stalled, Admitted, Suspended."""
    observed_generation: int | None = None
    """The metadata.generation the status was computed from."""
    pod_name: str | None = None
    """Name of the current (or last) pod."""
    node_name: str | None = None
    """Node of the current (or last) pod."""
    runtime_class_name: str | None = None
    """RuntimeClass the pod runs under."""
    start_time: Timestamp | None = None
    """When the Agent first started."""
    completion_time: Timestamp | None = None
    """When the Agent Succeeded or Failed."""
    attempts: int | None = None
    """Number of the current attempt: advances when its pod is created (a refused pod is
    not an attempt). A resume after a suspend starts a new attempt: a pod name is never
    reused."""
    failed_attempts: int | None = None
    """Attempts that failed so far (as a Job's status.failed); backoffLimit bounds it."""
    last_failed_attempt: int | None = None
    """Number of the last attempt counted in failedAttempts (each failure counts once)."""
    stopped_attempt: int | None = None
    """Number of the last attempt a suspend stopped: its pod is never adopted again."""
    exit_code: int | None = None
    """Exit code of the last finished attempt."""
    reason: str | None = None
    """CamelCase reason of the current phase, e.g. DeadlineExceeded."""
    message: str | None = None
    """Human-readable details of the current phase."""
    result: Annotated[str, Field(max_length=RESULT_MAX_LENGTH)] | None = None
    """What the agent reported (its termination message, at most 4 KiB)."""
    usage: Usage | None = None
    """What the agent reported it used (tokens, cost)."""
    history: Annotated[list[HistoryEntry] | None, Field(max_length=HISTORY_MAX_ITEMS)] = None
    """The last phase transitions, oldest first."""
    session_defaults: SessionDefaults | None = None
    """The session's agentDefaults this member was admitted with (used from then on)."""


# --- the kind ----------------------------------------------------------------------------


class Agent(Model):
    """An AI agent run as a sandboxed pod (gVisor, Kata) with a managed lifecycle.

    The operator creates the pod (and its input ConfigMap, workspace volume and
    NetworkPolicy), retries failed attempts, enforces deadlines, and reports the
    phase, conditions and the agent's result and usage in the status.
    """

    model_config = ConfigDict(json_schema_extra=object_name_rules(AGENT_NAME_MAX_LENGTH))

    api_version: str = f"{GROUP}/{VERSION}"
    """``stockade.dev/v1alpha1``."""
    kind: str = AGENT_KIND
    """``Agent``."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata (a plain dict)."""
    spec: AgentSpec
    """The desired state of the Agent."""
    status: AgentStatus | None = None
    """The observed state of the Agent, written by the operator."""
