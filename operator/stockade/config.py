"""Operator configuration: one place, read from the environment (set by the Helm chart).

Every setting is an environment variable prefixed ``STOCKADE_``; lists are
comma-separated, resource maps are ``name=quantity`` pairs separated by commas
(``cpu=500m,memory=512Mi``). Invalid values raise :class:`ConfigError` at start-up,
before the operator touches the cluster.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """An operator setting is missing or malformed; the message names the variable."""


class OperatorConfig(BaseModel):
    """Settings of one operator process (immutable).

    Attributes:
        default_runtime_class: RuntimeClass for Agents that name none (``gvisor``).
        allowed_runtime_classes: RuntimeClasses Agents may use; empty means any.
            A sandbox-only cluster lists its sandboxes here, so an Agent cannot run
            without one (an Agent naming another gets ``InvalidSpec``).
        default_requests / default_limits: resources for Agents that set none
            (a core/v1 ResourceList: ``{"cpu": "500m", "memory": "512Mi"}``).
        namespaces: namespaces to watch; empty means cluster-wide.
        backoff_base_seconds / backoff_max_seconds: retry delay after the n-th failed
            attempt is ``min(base * 2**(n-1), max)`` seconds (as the Job controller's).
        history_limit: transitions kept in ``status.history``.
        metrics_port: port of the Prometheus endpoint (0 disables it).
        health_port: port of the liveness/readiness endpoint (0 disables it).
        log_format: ``text`` or ``json``.
        leader_election: campaign for a coordination.k8s.io/v1 Lease and write only
            while holding it (:mod:`stockade.leader`). Off by default, so a single
            operator run by hand (tests, ``make run``) needs no Lease; the Helm chart
            turns it on (several replicas then share the work as leader and standbys).
        leader_election_namespace: namespace of the Lease (the chart passes the pod's
            own namespace through the downward API); required with leader election.
        leader_election_lease_name: name of the Lease (the chart: the release's name).
        leader_election_lease_duration_seconds / _renew_deadline_seconds /
            _retry_period_seconds: client-go's LeaseDuration, RenewDeadline and
            RetryPeriod, with controller-runtime's defaults (15 s, 10 s, 2 s). A standby
            takes over at most lease duration + retry period after the leader's last
            renewal; a leader that cannot renew for the renew deadline stops. Must satisfy
            lease duration > renew deadline > 1.2 x retry period (client-go's checks).
        pod_name: this replica's pod name (downward API; default: the host name), the
            first part of its Lease holder identity.

    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    default_runtime_class: str = "gvisor"
    allowed_runtime_classes: tuple[str, ...] = ()
    default_requests: Mapping[str, str] = Field(
        default_factory=lambda: {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "1Gi"}
    )
    default_limits: Mapping[str, str] = Field(
        default_factory=lambda: {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "2Gi"}
    )
    namespaces: tuple[str, ...] = ()
    backoff_base_seconds: float = Field(default=10.0, gt=0)
    backoff_max_seconds: float = Field(default=360.0, gt=0)
    history_limit: int = Field(default=20, ge=1, le=100)
    metrics_port: int = Field(default=8080, ge=0, le=65535)
    health_port: int = Field(default=8081, ge=0, le=65535)
    log_format: str = Field(default="text", pattern="^(text|json)$")
    leader_election: bool = False
    leader_election_namespace: str = ""
    leader_election_lease_name: str = Field(
        default="stockade-operator",
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    )
    leader_election_lease_duration_seconds: int = Field(default=15, ge=1)
    leader_election_renew_deadline_seconds: float = Field(default=10.0, gt=0)
    leader_election_retry_period_seconds: float = Field(default=2.0, gt=0)
    pod_name: str = ""

    @field_validator("default_runtime_class")
    @classmethod
    def _runtime_class_named(cls, value: str) -> str:
        if not value:
            raise ValueError("must name a RuntimeClass")
        return value

    @model_validator(mode="after")
    def _leader_election_consistent(self) -> OperatorConfig:
        if not self.leader_election:
            return self
        if not self.leader_election_namespace:
            raise ValueError(
                "STOCKADE_LEADER_ELECTION_NAMESPACE: leader election needs the Lease's namespace"
            )
        lease = self.leader_election_lease_duration_seconds
        deadline = self.leader_election_renew_deadline_seconds
        retry = self.leader_election_retry_period_seconds
        if not lease > deadline > 1.2 * retry:
            raise ValueError(
                "STOCKADE_LEADER_ELECTION_LEASE_DURATION_SECONDS > _RENEW_DEADLINE_SECONDS"
                f" > 1.2 x _RETRY_PERIOD_SECONDS does not hold ({lease}, {deadline}, {retry})"
            )
        return self

    def backoff_seconds(self, failures: int) -> float:
        """Delay before the attempt that follows `failures` failed ones (>= 1)."""
        return float(
            min(self.backoff_base_seconds * 2 ** max(failures - 1, 0), self.backoff_max_seconds)
        )

    def runtime_class_allowed(self, name: str) -> bool:
        """Whether the allow-list permits RuntimeClass `name` (an empty list allows all)."""
        return not self.allowed_runtime_classes or name in self.allowed_runtime_classes


_ENV = {
    "default_runtime_class": "STOCKADE_DEFAULT_RUNTIME_CLASS",
    "allowed_runtime_classes": "STOCKADE_ALLOWED_RUNTIME_CLASSES",
    "default_requests": "STOCKADE_DEFAULT_REQUESTS",
    "default_limits": "STOCKADE_DEFAULT_LIMITS",
    "namespaces": "STOCKADE_NAMESPACES",
    "backoff_base_seconds": "STOCKADE_BACKOFF_BASE_SECONDS",
    "backoff_max_seconds": "STOCKADE_BACKOFF_MAX_SECONDS",
    "history_limit": "STOCKADE_HISTORY_LIMIT",
    "metrics_port": "STOCKADE_METRICS_PORT",
    "health_port": "STOCKADE_HEALTH_PORT",
    "log_format": "STOCKADE_LOG_FORMAT",
    "leader_election": "STOCKADE_LEADER_ELECTION",
    "leader_election_namespace": "STOCKADE_LEADER_ELECTION_NAMESPACE",
    "leader_election_lease_name": "STOCKADE_LEADER_ELECTION_LEASE_NAME",
    "leader_election_lease_duration_seconds": "STOCKADE_LEADER_ELECTION_LEASE_DURATION_SECONDS",
    "leader_election_renew_deadline_seconds": "STOCKADE_LEADER_ELECTION_RENEW_DEADLINE_SECONDS",
    "leader_election_retry_period_seconds": "STOCKADE_LEADER_ELECTION_RETRY_PERIOD_SECONDS",
    "pod_name": "STOCKADE_POD_NAME",
}
_LISTS = {"allowed_runtime_classes", "namespaces"}
_MAPS = {"default_requests", "default_limits"}


def _split(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _parse_map(variable: str, raw: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in _split(raw):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{variable}: expected name=quantity pairs, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def load_config(environ: Mapping[str, str] | None = None) -> OperatorConfig:
    """Build the configuration from `environ` (default: ``os.environ``).

    Raises:
        ConfigError: a variable is malformed; the message names it.

    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for field, variable in _ENV.items():
        raw = env.get(variable)
        if raw is None or raw == "":
            continue
        if field in _LISTS:
            values[field] = tuple(_split(raw))
        elif field in _MAPS:
            values[field] = _parse_map(variable, raw)
        else:
            values[field] = raw
    try:
        return OperatorConfig.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(_problem(err["loc"], err["msg"]) for err in exc.errors())
        raise ConfigError(problems) from exc


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    """One validation error, named by its variable (cross-field errors name their own)."""
    if not loc:
        return message.removeprefix("Value error, ")
    return f"{_ENV.get(str(loc[0]), loc[0])}: {message}"
