"""The core/v1 shapes an Agent's spec reuses: env, envFrom, probes, tolerations.

Field for field as in core/v1 (the pod's ``env``, ``envFrom``, ``readinessProbe``,
``tolerations``), with the CEL rules and validators the API server would apply to a pod,
so a spec the CRD admits builds a pod the API server admits.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from stockade.api.base import (
    CONFIG_KEY,
    DNS1123_SUBDOMAIN,
    ENV_VAR_NAME,
    LABEL_VALUE,
    QUALIFIED_NAME,
    Model,
    PortOrName,
    Quantity,
    cel,
    rule,
)

_PROBE_HOST_MESSAGE = (
    "host is not allowed: the kubelet would connect to that address from the node's "
    "network; a probe checks the agent's own pod (its IP, the default)"
)


def _exactly_one(*names: str) -> str:
    """Return a CEL rule that holds when exactly one of the fields `names` is set."""
    return "[" + ", ".join(f"has(self.{n})" for n in names) + "].exists_one(x, x)"


def _set_count(model: Model, *fields: str) -> int:
    return sum(getattr(model, f) is not None for f in fields)


DNSSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN)]


Arg = Annotated[str, Field(max_length=4096)]


LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]


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


class _PodLocalAction(Model):
    """A probe action that may only reach the pod itself: ``host`` must be empty.

    One rule for the HTTP and TCP actions (the CRD's CEL rule and the model's
    validator); the Pod Security Standard baseline refuses ``host`` too.
    """

    model_config = ConfigDict(json_schema_extra=cel(_NO_PROBE_HOST))

    host: Annotated[str, Field(max_length=253)] | None = None
    """Not allowed (only empty): the probe always connects to the pod's IP. (The Pod
    Security Standard baseline refuses it too.)"""

    @field_validator("host")
    @classmethod
    def _no_host(cls, value: str | None) -> str | None:
        return _check_probe_host(value)


class HTTPGetAction(_PodLocalAction):
    """An HTTP GET against the agent container; a 2xx or 3xx status is success."""

    path: Annotated[str, Field(max_length=2048)] | None = None
    """Path to request."""
    port: PortOrName
    """Port number or name."""
    scheme: Literal["HTTP", "HTTPS"] | None = None
    """HTTP or HTTPS; HTTP when unset."""
    http_headers: Annotated[list[HTTPHeader] | None, Field(max_length=16)] = None
    """Extra request headers."""


class TCPSocketAction(_PodLocalAction):
    """Open a TCP connection to the agent container; a connection is success."""

    port: PortOrName
    """Port number or name."""


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
