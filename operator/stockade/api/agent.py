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

import ipaddress
import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from kubernetes.utils.quantity import parse_quantity
from pydantic import ConfigDict, Field, field_validator, model_validator

from stockade.api.base import (
    CONFIG_KEY,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    ENV_VAR_NAME,
    LABEL_VALUE,
    QUALIFIED_NAME,
    Model,
    PortOrName,
    Quantity,
    cel,
    object_name_rules,
    rule,
)

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


class RestartPolicy(StrEnum):
    """What happens after a failed attempt: ``Never`` fails the Agent, ``OnFailure`` retries."""

    NEVER = "Never"
    ON_FAILURE = "OnFailure"


class EgressMode(StrEnum):
    """Outbound traffic the agent pod may send (enforced with a NetworkPolicy)."""

    NONE = "None"
    DNS = "DNS"
    INTERNET = "Internet"
    CUSTOM = "Custom"


def _exactly_one(*names: str) -> str:
    """Return a CEL rule that holds when exactly one of the fields `names` is set."""
    return "[" + ", ".join(f"has(self.{n})" for n in names) + "].exists_one(x, x)"


def _quantity(value: str) -> Decimal:
    """Parse a Kubernetes quantity (``500m``, ``1Gi``) into a Decimal."""
    parsed: Decimal = parse_quantity(value)  # type: ignore[no-untyped-call]
    return parsed


def _set_count(model: Model, *fields: str) -> int:
    return sum(getattr(model, f) is not None for f in fields)


# --- small string types ------------------------------------------------------------

DNSLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS1123_LABEL)]
DNSSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN)]
Arg = Annotated[str, Field(max_length=4096)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]

FORBIDDEN_ANNOTATIONS = (
    r"^(([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*(kubernetes\.io|k8s\.io)/"
    r"|io\.katacontainers\.|dev\.gvisor\.|io\.kubernetes\.|io\.containerd\."
    r"|run\.oci\.|org\.systemd\.property\."
    r"|([^/]*\.)?(crio\.io|cri-o\.io)(/|$))"
)
"""Pod annotation keys an Agent may not set (``spec.podMetadata.annotations``).

They configure the sandbox or the node, not the agent: AppArmor and seccomp
(``container.apparmor.security.beta.kubernetes.io/``,
``seccomp.security.alpha.kubernetes.io/``), Kata's VM (``io.katacontainers.``: kernel,
hypervisor, devices), gVisor (``dev.gvisor.``: flags, mounts), the container runtimes
(``io.kubernetes.cri-o.``, ``io.kubernetes.cri.``, ``io.containerd.``, CRI-O's
``*.crio.io`` and ``*.cri-o.io``, crun's ``run.oci.``, runc's systemd
``org.systemd.property.``), and every key of Kubernetes' own ``kubernetes.io/`` and
``k8s.io/`` prefixes and their subdomains (``*.kubernetes.io/``, ``*.k8s.io/``: e.g.
the cluster autoscaler's eviction and scale-down controls), except
:data:`ALLOWED_KUBERNETES_ANNOTATIONS`.
"""

ALLOWED_KUBERNETES_ANNOTATIONS = (
    "kubectl.kubernetes.io/default-container",
    "kubernetes.io/description",
)
"""The harmless keys among :data:`FORBIDDEN_ANNOTATIONS`: kubectl's default container for
``exec``/``logs`` (the pod has one container anyway) and a free-text description."""

_ANNOTATIONS_MESSAGE = (
    "annotation keys under kubernetes.io/, k8s.io/ (and their subdomains), "
    "io.katacontainers., dev.gvisor., io.kubernetes., io.containerd., run.oci., "
    "org.systemd.property., crio.io and cri-o.io are not allowed: they change the "
    "pod's sandbox, security profile or placement (allowed: "
    + ", ".join(ALLOWED_KUBERNETES_ANNOTATIONS)
    + ")"
)

_SAFE_ANNOTATION_KEYS = rule(
    f"self.all(k, !k.matches(r'{FORBIDDEN_ANNOTATIONS}') || "
    f"k in {list(ALLOWED_KUBERNETES_ANNOTATIONS)!r})",
    _ANNOTATIONS_MESSAGE,
    reason="FieldValueForbidden",
)


def _check_annotations(value: dict[str, str] | None) -> dict[str, str] | None:
    refused = sorted(
        key
        for key in value or ()
        if re.search(FORBIDDEN_ANNOTATIONS, key) and key not in ALLOWED_KUBERNETES_ANNOTATIONS
    )
    if refused:
        raise ValueError(f"{', '.join(refused)}: {_ANNOTATIONS_MESSAGE}")
    return value


_PROBE_HOST_MESSAGE = (
    "host is not allowed: the kubelet would connect to that address from the node's "
    "network; a probe checks the agent's own pod (its IP, the default)"
)
_NO_PROBE_HOST = rule(
    "!has(self.host) || self.host == ''",
    _PROBE_HOST_MESSAGE,
    field_path=".host",
    reason="FieldValueForbidden",
)


def _check_probe_host(value: str | None) -> str | None:
    if value:
        raise ValueError(_PROBE_HOST_MESSAGE)
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

    @field_validator("size")
    @classmethod
    def _positive(cls, value: str) -> str:
        if _quantity(value) <= 0:
            raise ValueError("size must be greater than zero")
        return value


class NetworkPort(Model):
    """A destination port that Custom egress allows."""

    port: Annotated[int, Field(ge=1, le=65535)]
    """Port number."""
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    """Protocol: TCP, UDP or SCTP."""


def _check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR network address: {exc}") from None
    return value


Cidr = Annotated[
    str,
    Field(
        max_length=64,
        json_schema_extra=cel(
            rule(
                "isCIDR(self) && cidr(self) == cidr(self).masked()",
                "must be a CIDR network address, e.g. 10.0.0.0/8 or 2001:db8::/32",
            )
        ),
    ),
]


class Network(Model):
    """Network access of the agent pod. Ingress is always denied."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "self.egress != 'Custom' || (has(self.cidrs) && self.cidrs.size() > 0)",
                "cidrs is required when egress is Custom",
                field_path=".cidrs",
                reason="FieldValueRequired",
            ),
            rule(
                "self.egress == 'Custom' || !has(self.cidrs)",
                "cidrs is only allowed when egress is Custom",
                field_path=".cidrs",
                reason="FieldValueForbidden",
            ),
            rule(
                "self.egress == 'Custom' || !has(self.ports)",
                "ports is only allowed when egress is Custom",
                field_path=".ports",
                reason="FieldValueForbidden",
            ),
        )
    )

    egress: EgressMode = EgressMode.NONE
    """Outbound traffic allowed: None (nothing), DNS (only the cluster DNS), Internet
    (DNS and public addresses, no private ranges), or Custom (DNS and the listed cidrs
    and ports)."""
    cidrs: Annotated[
        list[Cidr] | None, Field(max_length=32, json_schema_extra=cel(list_type="set"))
    ] = None
    """Destination networks Custom egress allows, e.g. 10.20.0.0/16 (Custom only)."""
    ports: Annotated[
        list[NetworkPort] | None,
        Field(
            max_length=32,
            json_schema_extra=cel(list_type="map", list_map_keys=["port", "protocol"]),
        ),
    ] = None
    """Destination ports Custom egress allows; all ports of the cidrs when unset (Custom only)."""

    @model_validator(mode="after")
    def _custom_only(self) -> Network:
        if self.egress == EgressMode.CUSTOM:
            if not self.cidrs:
                raise ValueError("cidrs is required when egress is Custom")
        elif self.cidrs is not None or self.ports is not None:
            raise ValueError("cidrs and ports are only allowed when egress is Custom")
        for cidr in self.cidrs or ():
            _check_cidr(cidr)
        return self


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
    """Annotations added to the pod. Keys that configure the sandbox, the runtime or
    Kubernetes itself are refused: kubernetes.io/, k8s.io/ and their subdomains (except
    kubectl.kubernetes.io/default-container and kubernetes.io/description),
    io.katacontainers., dev.gvisor., io.kubernetes., io.containerd., run.oci.,
    org.systemd.property., crio.io and cri-o.io."""

    @field_validator("annotations")
    @classmethod
    def _safe_annotations(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return _check_annotations(value)


class ConfigMapKeySelector(Model):
    """A key of a ConfigMap in the Agent's namespace."""

    name: DNSSubdomain
    """Name of the ConfigMap."""
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=CONFIG_KEY)]
    """The key to select."""
    optional: bool | None = None
    """Whether the ConfigMap or its key may be missing."""


class SecretKeySelector(Model):
    """A key of a Secret in the Agent's namespace."""

    name: DNSSubdomain
    """Name of the Secret."""
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=CONFIG_KEY)]
    """The key to select."""
    optional: bool | None = None
    """Whether the Secret or its key may be missing."""


class ObjectFieldSelector(Model):
    """A field of the pod, e.g. metadata.name or status.podIP."""

    api_version: Annotated[str, Field(max_length=64)] | None = None
    """Version of the schema the fieldPath is written in; v1 when unset."""
    field_path: Annotated[str, Field(min_length=1, max_length=256)]
    """Path of the field to select."""


class ResourceFieldSelector(Model):
    """A resource limit or request of the agent container, e.g. limits.memory."""

    container_name: Annotated[str, Field(max_length=63)] | None = None
    """Container name; the agent container when unset."""
    resource: Annotated[str, Field(min_length=1, max_length=64)]
    """Resource to select, e.g. limits.cpu."""
    divisor: Quantity | None = None
    """Output format of the exposed resources; 1 when unset."""


class EnvVarSource(Model):
    """A source for an environment variable's value; exactly one field is set."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                _exactly_one("configMapKeyRef", "secretKeyRef", "fieldRef", "resourceFieldRef"),
                "exactly one of configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef "
                "must be set",
            )
        )
    )

    config_map_key_ref: ConfigMapKeySelector | None = None
    """A key of a ConfigMap."""
    secret_key_ref: SecretKeySelector | None = None
    """A key of a Secret."""
    field_ref: ObjectFieldSelector | None = None
    """A field of the pod."""
    resource_field_ref: ResourceFieldSelector | None = None
    """A resource of the agent container."""

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        fields = ("config_map_key_ref", "secret_key_ref", "field_ref", "resource_field_ref")
        if _set_count(self, *fields) != 1:
            raise ValueError("exactly one of " + ", ".join(fields) + " must be set")
        return self


class EnvVar(Model):
    """An environment variable of the agent container (as in core/v1)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!has(self.value) || !has(self.valueFrom)",
                "value and valueFrom are mutually exclusive",
                field_path=".valueFrom",
                reason="FieldValueForbidden",
            )
        )
    )

    name: Annotated[str, Field(min_length=1, max_length=256, pattern=ENV_VAR_NAME)]
    """Name of the variable."""
    value: Annotated[str, Field(max_length=32768)] | None = None
    """Value of the variable; $(VAR) references to earlier variables are expanded."""
    value_from: EnvVarSource | None = None
    """Source of the value; cannot be used with value."""

    @model_validator(mode="after")
    def _value_or_source(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError("value and valueFrom are mutually exclusive")
        return self


class ConfigMapEnvSource(Model):
    """A ConfigMap whose keys become environment variables."""

    name: DNSSubdomain
    """Name of the ConfigMap."""
    optional: bool | None = None
    """Whether the ConfigMap may be missing."""


class SecretEnvSource(Model):
    """A Secret whose keys become environment variables."""

    name: DNSSubdomain
    """Name of the Secret."""
    optional: bool | None = None
    """Whether the Secret may be missing."""


class EnvFromSource(Model):
    """A set of environment variables from a ConfigMap or a Secret (as in core/v1)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                _exactly_one("configMapRef", "secretRef"),
                "exactly one of configMapRef or secretRef must be set",
            )
        )
    )

    prefix: Annotated[str, Field(max_length=253, pattern=r"^[-._a-zA-Z0-9]*$")] | None = None
    """A prefix for every variable name."""
    config_map_ref: ConfigMapEnvSource | None = None
    """The ConfigMap to read."""
    secret_ref: SecretEnvSource | None = None
    """The Secret to read."""

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if _set_count(self, "config_map_ref", "secret_ref") != 1:
            raise ValueError("exactly one of configMapRef or secretRef must be set")
        return self


class ExecAction(Model):
    """Run a command in the agent container; exit status 0 is success."""

    command: Annotated[list[Arg], Field(min_length=1, max_length=128)]
    """The command line (not run in a shell)."""


class HTTPHeader(Model):
    """A header of an HTTP probe."""

    name: Annotated[str, Field(min_length=1, max_length=256)]
    """Header name."""
    value: Annotated[str, Field(max_length=4096)]
    """Header value."""


class HTTPGetAction(Model):
    """An HTTP GET against the agent container; a 2xx or 3xx status is success."""

    model_config = ConfigDict(json_schema_extra=cel(_NO_PROBE_HOST))

    path: Annotated[str, Field(max_length=2048)] | None = None
    """Path to request."""
    port: PortOrName
    """Port number or name."""
    host: Annotated[str, Field(max_length=253)] | None = None
    """Not allowed (only empty): the probe always connects to the pod's IP. (The Pod
    Security Standard baseline refuses it too.)"""

    @field_validator("host")
    @classmethod
    def _no_host(cls, value: str | None) -> str | None:
        return _check_probe_host(value)

    scheme: Literal["HTTP", "HTTPS"] | None = None
    """HTTP or HTTPS; HTTP when unset."""
    http_headers: Annotated[list[HTTPHeader] | None, Field(max_length=16)] = None
    """Extra request headers."""


class TCPSocketAction(Model):
    """Open a TCP connection to the agent container; a connection is success."""

    model_config = ConfigDict(json_schema_extra=cel(_NO_PROBE_HOST))

    port: PortOrName
    """Port number or name."""
    host: Annotated[str, Field(max_length=253)] | None = None
    """Not allowed (only empty): the probe always connects to the pod's IP. (The Pod
    Security Standard baseline refuses it too.)"""

    @field_validator("host")
    @classmethod
    def _no_host(cls, value: str | None) -> str | None:
        return _check_probe_host(value)


class GRPCAction(Model):
    """A gRPC health check (grpc.health.v1) against the agent container."""

    port: Annotated[int, Field(ge=1, le=65535)]
    """Port number."""
    service: Annotated[str, Field(max_length=256)] | None = None
    """Service name sent in the HealthCheckRequest."""


class Probe(Model):
    """A health check of the agent container (as in core/v1); exactly one handler is set."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                _exactly_one("exec", "httpGet", "tcpSocket", "grpc"),
                "exactly one of exec, httpGet, tcpSocket or grpc must be set",
            )
        )
    )

    exec: ExecAction | None = None
    """Run a command."""
    http_get: HTTPGetAction | None = None
    """Send an HTTP GET request."""
    tcp_socket: TCPSocketAction | None = None
    """Open a TCP connection."""
    grpc: GRPCAction | None = None
    """Make a gRPC health check."""
    initial_delay_seconds: Annotated[int, Field(ge=0, le=86400)] | None = None
    """Seconds after the container starts before the first probe; 0 when unset."""
    timeout_seconds: Annotated[int, Field(ge=1, le=3600)] | None = None
    """Seconds after which the probe times out; 1 when unset."""
    period_seconds: Annotated[int, Field(ge=1, le=86400)] | None = None
    """Seconds between probes; 10 when unset."""
    success_threshold: Annotated[int, Field(ge=1, le=100)] | None = None
    """Consecutive successes that count as success after a failure; 1 when unset (and
    must be 1 for a liveness probe)."""
    failure_threshold: Annotated[int, Field(ge=1, le=100)] | None = None
    """Consecutive failures that count as failure; 3 when unset."""
    termination_grace_period_seconds: Annotated[int, Field(ge=1, le=86400)] | None = None
    """Grace period when a liveness failure kills the container; the pod's when unset."""

    @model_validator(mode="after")
    def _one_handler(self) -> Probe:
        if _set_count(self, "exec", "http_get", "tcp_socket", "grpc") != 1:
            raise ValueError("exactly one of exec, httpGet, tcpSocket or grpc must be set")
        return self


class Toleration(Model):
    """A toleration of the agent pod (as in core/v1)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "(has(self.key) && self.key != '') || "
                "(has(self.operator) && self.operator == 'Exists')",
                "operator must be Exists when key is empty",
                field_path=".operator",
            ),
            rule(
                "!has(self.operator) || self.operator != 'Exists' || "
                "!has(self.value) || self.value == ''",
                "value must be empty when operator is Exists",
                field_path=".value",
            ),
            rule(
                "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                "tolerationSeconds requires effect NoExecute",
                field_path=".tolerationSeconds",
            ),
        )
    )

    key: Annotated[str, Field(max_length=317, pattern=f"^({QUALIFIED_NAME[1:-1]})?$")] | None = None
    """Taint key to tolerate; empty with operator Exists tolerates every taint."""
    operator: Literal["Exists", "Equal"] | None = None
    """Exists or Equal; Equal when unset."""
    value: LabelValue | None = None
    """Taint value to match (operator Equal)."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; every effect when unset."""
    toleration_seconds: int | None = None
    """For NoExecute: seconds the pod stays bound after the taint appears; forever when unset."""

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if not self.key and self.operator != "Exists":
            raise ValueError("operator must be Exists when key is empty")
        if self.operator == "Exists" and self.value:
            raise ValueError("value must be empty when operator is Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds requires effect NoExecute")
        return self


def _spec_rules(schema: dict[str, Any]) -> None:
    """Add the AgentSpec's CEL rules: presence, probe and immutability rules."""
    rules = [
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
