"""Operator configuration: one place, read from the environment (set by the Helm chart).

Every setting is an environment variable prefixed ``STOCKADE_``; lists are
comma-separated, maps are ``name=value`` pairs separated by commas
(``cpu=500m,memory=512Mi``; ``k8s-app=kube-dns``). Invalid values raise
:class:`ConfigError` at start-up, before the operator touches the cluster.

The allow-lists (``STOCKADE_ALLOWED_*``) hold names or patterns: an entry ending in
``*`` matches every name that starts with what comes before it (``kata-*``), and ``*``
alone matches everything. An allow-list variable that is set but empty is an empty
list (nothing allowed); unset, it keeps its default. The defaults are the safe ones
(issue 9: creating an Agent must never be more power than creating a pod): Agents run
only in a sandbox, and may not add pod labels outside ``user.stockade.dev/``,
tolerations or a PriorityClass unless an administrator allows it here.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from typing import Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from stockade.core.backoff import Backoff

SANDBOX_RUNTIME_CLASSES: tuple[str, ...] = ("gvisor", "kata", "kata-*")
"""The default ``allowed_runtime_classes``: sandboxes only.

``gvisor`` is the chart's gVisor RuntimeClass and GKE Sandbox's; ``kata`` the chart's
Kata RuntimeClass and kata-deploy's default alias; ``kata-*`` the RuntimeClasses
kata-deploy (and AKS pod sandboxing) create, one per hypervisor or TEE: ``kata-qemu``,
``kata-clh``, ``kata-fc``, ``kata-dragonball``, ``kata-stratovirt``, ``kata-qemu-tdx``,
``kata-qemu-snp``, ``kata-qemu-sev``, ``kata-qemu-se``, ``kata-qemu-nvidia-gpu*``,
``kata-qemu-coco-dev``, ``kata-remote``, ``kata-mshv-vm-isolation``, ...
(RuntimeClasses are cluster-scoped: only a cluster administrator names them.)
"""

DEFAULT_POD_LABEL_KEYS: tuple[str, ...] = ("user.stockade.dev/*",)
"""The default ``allowed_pod_label_keys``: only keys under ``user.stockade.dev/``.

Any other key could select the agent pod into someone else's NetworkPolicy (policies
are additive: one that selects ``app: web`` would widen the agent's egress or ingress)
or a Service's endpoints (the agent would receive, and could answer, that Service's
traffic). Unprefixed keys are exactly the ones Services and NetworkPolicies select on,
so they are not allowed by default. ``user.stockade.dev/`` is a prefix nothing selects
on: it is documented as set by whoever creates an Agent, so no policy may trust it.
"""

QUANTITY_PATTERN = r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
"""A Kubernetes quantity (``512Mi``, ``1Gi``, ``2``): the serialization format of
https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/
without exponents (the chart's values.schema.json accepts the same)."""

LogLevel = Literal["debug", "info", "warning", "error"]
"""``STOCKADE_LOG_LEVEL``: the operator's (and kopf's) logging threshold."""

DnsPreset = Literal["kube-dns", "openshift", "nodelocal"]
"""``STOCKADE_EGRESS_DNS_PRESET``: where the cluster DNS runs (see
:data:`stockade.build.network.DNS_PRESETS`)."""
DNS_PRESETS: tuple[str, ...] = get_args(DnsPreset)

SYSTEM_NAMESPACES: frozenset[str] = frozenset({"kube-system", "kube-public", "kube-node-lease"})
"""Namespaces Agents never run in, whatever ``namespaces`` says (with the operator's own)."""


class ConfigError(ValueError):
    """An operator setting is missing or malformed; the message names the variable."""


class OperatorConfig(BaseModel):
    """Settings of one operator process (immutable).

    Attributes:
        default_runtime_class: RuntimeClass for Agents that name none (``gvisor``);
            the allow-list must allow it.
        allowed_runtime_classes: RuntimeClasses (names or ``prefix*`` patterns) Agents
            may run under; default :data:`SANDBOX_RUNTIME_CLASSES`, the sandboxes only.
            An Agent (or its session's default) naming another fails with
            ``InvalidSpec``. Running without a sandbox (``runc``, the node's default
            runtime) takes an explicit entry: ``runc``, or ``*`` for any RuntimeClass.
            Never empty.
        allowed_pod_label_keys: label keys (or ``prefix*`` patterns) an Agent's
            ``spec.podMetadata.labels`` may set; default :data:`DEFAULT_POD_LABEL_KEYS`
            (only ``user.stockade.dev/*``, which no NetworkPolicy or Service may
            select on). Empty: no labels; ``*``: any key (Stockade's own always win).
        allowed_toleration_keys: taint keys (or ``prefix*`` patterns) an Agent's
            ``spec.tolerations`` may tolerate; default empty: no tolerations at all
            (the pod gets only those the namespace's admission plugins add). A
            toleration with an empty key (every taint) needs ``*``.
        allowed_priority_classes: PriorityClasses (or ``prefix*`` patterns) an Agent's
            ``spec.priorityClassName`` may name; default empty: none (the pod gets the
            cluster's default priority).
        admission_policy_binding: name of the chart's ValidatingAdmissionPolicyBinding
            (cluster-scoped; ``STOCKADE_ADMISSION_POLICY_BINDING``, set by the chart).
            The operator GETs it at start and every ``resync_seconds``; empty means no
            policy is expected (it counts as absent).
        references_without_policy: ``refuse`` (default) or ``allow``: what to do with an
            Agent that references a ServiceAccount, Secret or ConfigMap (its own spec or
            its session's ``agentDefaults``) while that binding is absent. ``refuse``
            fails the Agent (``ReferenceNotAllowed``) before its first pod; ``allow``
            lets anyone who may create Agents use every ServiceAccount, Secret and
            ConfigMap of the namespace (issue 9).
        operator_namespace: the operator's own namespace (``STOCKADE_OPERATOR_NAMESPACE``,
            else the downward API's ``POD_NAMESPACE``); Agents there, and in
            :data:`SYSTEM_NAMESPACES`, fail with ``NamespaceNotAllowed``.
        default_requests / default_limits: resources for Agents that set none
            (a core/v1 ResourceList: ``{"cpu": "500m", "memory": "512Mi"}``).
        namespaces: namespaces to watch; empty means cluster-wide.
        backoff_base_seconds / backoff_max_seconds: retry delay after the n-th failed
            attempt is ``min(base * 2**(n-1), max)`` seconds (as the Job controller's).
        history_limit: transitions kept in ``status.history``.
        terminating_timeout_seconds: how long past its deletionTimestamp a pod may stay
            terminating (its node is lost) before it is force-deleted and replaced.
        reconcile_concurrency: most Agent reconciles in flight at once (each holds its
            slot through its API requests, so this bounds the operator's throughput
            while the API server is slow to answer, as in a burst).
        resync_seconds: how often the operator LISTs what it watches and forgets what
            its watch-fed indexes still hold but the API no longer has (0 disables).
        metrics_port: port of the Prometheus endpoint (0 disables it).
        health_port: port of the liveness/readiness endpoint (0 disables it).
        liveness_stall_seconds: liveness fails when the event loop has not run its
            heartbeat (every second) for this long (:mod:`stockade.runtime.health`).
        log_format: ``text`` or ``json``.
        log_level: ``debug``, ``info`` (default), ``warning`` or ``error``: the root
            logger's threshold; ``debug`` adds the decision log (one record per
            reconcile: what was observed, decided and written, :mod:`stockade.runtime.decisionlog`);
            kopf's own records stay at info (its per-handler ones at warning).
        agent_uid: the uid, gid and fsGroup of agent pods (default 65532, the
            distroless ``nonroot`` user), or ``"platform"``: leave them out, so the
            platform assigns them (OpenShift's ``restricted-v2`` SCC picks a uid from the
            namespace's range and refuses a fixed one outside it). ``runAsNonRoot``
            stays either way.
        tmp_size_limit / home_size_limit: ``sizeLimit`` of the agent pod's ``/tmp`` and
            ``HOME`` emptyDirs (Kubernetes quantities, default ``1Gi`` each); the
            kubelet evicts a pod whose volume grows past it. Both count against the
            container's ``ephemeral-storage`` limit. ``HOME`` is the workspace when the
            Agent has one (then no emptyDir is mounted for it).
        egress_dns_preset: where the cluster DNS runs, for the DNS rule of every egress
            mode but ``None`` (:data:`stockade.build.network.DNS_PRESETS`): ``kube-dns``
            (default: ``k8s-app=kube-dns`` pods in ``kube-system``, also CoreDNS),
            ``openshift`` (``openshift-dns``, ports 53 and 5353) or ``nodelocal``
            (kube-dns plus NodeLocal DNSCache's ``169.254.20.10/32``).
        egress_dns_namespace_labels / egress_dns_pod_labels: replace the preset's
            namespace and pod selector labels (``key=value`` pairs); unset: the preset's.
        egress_dns_cidrs: CIDRs added to the preset's DNS peers (e.g. a NodeLocal
            DNSCache address or a DNS server outside the cluster).
        egress_dns_ports: replace the preset's DNS ports (each allowed over UDP and TCP).
        egress_denied_cidrs: CIDRs Custom egress may not reach (issue 20), on top of the
            link-local and cloud metadata addresses
            (:data:`stockade.api.network.ALWAYS_DENIED_CIDRS`, refused by the CRD) and
            the API server's addresses (read from the ``kubernetes`` EndpointSlice in
            ``default``): typically the cluster's pod and service ranges and the nodes'
            network. An Agent whose ``spec.network.cidrs`` entry overlaps one fails
            with ``EgressDenied`` before it gets a pod. Default: none.
        gateway_address: ``host:port`` of the egress gateway's Service (issue 21), e.g.
            ``stockade-gateway.stockade-system.svc:3128`` (set by the chart when
            ``gateway.enabled``). The pods of Agents with egress ``Hosts`` get it as
            their ``HTTPS_PROXY``/``HTTP_PROXY``; unset (the default), such an Agent fails
            with ``GatewayNotConfigured`` before it gets a pod.
        gateway_ca_configmap: the ConfigMap in the operator's namespace where the
            gateway publishes its CA (``ca.crt``, ``ca-bundle.crt``: public roots plus
            the gateway CA); copied into a Hosts Agent's input ConfigMap and trusted by
            its pod (``SSL_CERT_FILE`` and the like). Empty (the default), or while it
            is absent, the pod gets no CA (intercepted hosts then fail TLS
            verification; tunnelled hosts work).
        leader_election: campaign for a coordination.k8s.io/v1 Lease and write only
            while holding it (:mod:`stockade.runtime.leader`). Off by default, so a single
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
    allowed_runtime_classes: tuple[str, ...] = SANDBOX_RUNTIME_CLASSES
    allowed_pod_label_keys: tuple[str, ...] = DEFAULT_POD_LABEL_KEYS
    allowed_toleration_keys: tuple[str, ...] = ()
    allowed_priority_classes: tuple[str, ...] = ()
    admission_policy_binding: str = Field(
        default="",
        max_length=253,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$",
    )
    references_without_policy: str = Field(default="refuse", pattern="^(refuse|allow)$")
    operator_namespace: str | None = None
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
    terminating_timeout_seconds: float = Field(default=60.0, ge=0)
    reconcile_concurrency: int = Field(default=64, ge=1, le=1000)
    resync_seconds: float = Field(default=300.0, ge=0)
    metrics_port: int = Field(default=8080, ge=0, le=65535)
    health_port: int = Field(default=8081, ge=0, le=65535)
    liveness_stall_seconds: float = Field(default=30.0, gt=0)
    log_format: str = Field(default="text", pattern="^(text|json)$")
    log_level: LogLevel = "info"
    agent_uid: int | Literal["platform"] = 65532
    tmp_size_limit: str = Field(default="1Gi", pattern=QUANTITY_PATTERN)
    home_size_limit: str = Field(default="1Gi", pattern=QUANTITY_PATTERN)
    egress_dns_preset: DnsPreset = "kube-dns"
    egress_dns_namespace_labels: Mapping[str, str] | None = None
    egress_dns_pod_labels: Mapping[str, str] | None = None
    egress_dns_cidrs: tuple[str, ...] = ()
    egress_dns_ports: tuple[int, ...] | None = None
    egress_denied_cidrs: tuple[str, ...] = ()
    gateway_address: str | None = Field(
        default=None, max_length=260, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?:[0-9]{1,5}$"
    )
    gateway_ca_configmap: str = Field(
        default="",
        max_length=253,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$",
    )
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

    @field_validator("agent_uid")
    @classmethod
    def _uid_not_root(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 2147483647:
            raise ValueError("must be a uid from 1 to 2147483647 (never root), or platform")
        return value

    @field_validator("default_runtime_class")
    @classmethod
    def _runtime_class_named(cls, value: str) -> str:
        if not value:
            raise ValueError("must name a RuntimeClass")
        return value

    @field_validator(
        "allowed_runtime_classes",
        "allowed_pod_label_keys",
        "allowed_toleration_keys",
        "allowed_priority_classes",
    )
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not pattern or "*" in pattern[:-1]:
                raise ValueError(f"{pattern!r}: '*' may only end an entry")
        return value

    @field_validator("egress_dns_cidrs", "egress_denied_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a CIDR ({exc})") from exc
            if "/" not in cidr:
                raise ValueError(f"{cidr!r} is not a CIDR (missing /prefix)")
        return value

    @field_validator("egress_dns_ports")
    @classmethod
    def _ports(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None:
            if not value:
                raise ValueError("must list at least one port")
            for port in value:
                if not 1 <= port <= 65535:
                    raise ValueError(f"{port} is not a port (1-65535)")
        return value

    @field_validator("allowed_runtime_classes")
    @classmethod
    def _some_runtime_class(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must list at least one RuntimeClass ('*' allows any, even none)")
        return value

    @model_validator(mode="after")
    def _default_allowed(self) -> OperatorConfig:
        if not self.runtime_class_allowed(self.default_runtime_class):
            raise ValueError(
                "STOCKADE_DEFAULT_RUNTIME_CLASS / STOCKADE_ALLOWED_RUNTIME_CLASSES: the"
                f" default RuntimeClass {self.default_runtime_class!r} is not in"
                f" allowedRuntimeClasses ({', '.join(self.allowed_runtime_classes)})"
            )
        return self

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

    @property
    def backoff(self) -> Backoff:
        """The retry backoff of failed attempts: base doubling per failure, capped."""
        return Backoff(self.backoff_base_seconds, self.backoff_max_seconds)

    def backoff_seconds(self, failures: int) -> float:
        """Delay before the attempt that follows `failures` failed ones (>= 1)."""
        return self.backoff.delay(failures)

    def runtime_class_allowed(self, name: str) -> bool:
        """Whether ``allowed_runtime_classes`` permits RuntimeClass `name`."""
        return matches(name, self.allowed_runtime_classes)

    def refused_namespaces(self) -> frozenset[str]:
        """Namespaces no Agent runs in: the system ones and the operator's own."""
        own = {self.operator_namespace} if self.operator_namespace else set()
        return SYSTEM_NAMESPACES | own


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether `name` matches one of `patterns`: ``*`` is any, ``prefix*`` a prefix."""
    for pattern in patterns:
        if pattern.endswith("*"):
            if name.startswith(pattern[:-1]):
                return True
        elif name == pattern:
            return True
    return False


def setting(field: str) -> str:
    """How an administrator changes setting `field`: its chart value and variable."""
    return f"config.{_CHART[field]} ({_ENV[field]})"


_ENV = {
    "default_runtime_class": "STOCKADE_DEFAULT_RUNTIME_CLASS",
    "allowed_runtime_classes": "STOCKADE_ALLOWED_RUNTIME_CLASSES",
    "allowed_pod_label_keys": "STOCKADE_ALLOWED_POD_LABEL_KEYS",
    "allowed_toleration_keys": "STOCKADE_ALLOWED_TOLERATION_KEYS",
    "allowed_priority_classes": "STOCKADE_ALLOWED_PRIORITY_CLASSES",
    "admission_policy_binding": "STOCKADE_ADMISSION_POLICY_BINDING",
    "references_without_policy": "STOCKADE_REFERENCES_WITHOUT_POLICY",
    "operator_namespace": "STOCKADE_OPERATOR_NAMESPACE",
    "default_requests": "STOCKADE_DEFAULT_REQUESTS",
    "default_limits": "STOCKADE_DEFAULT_LIMITS",
    "namespaces": "STOCKADE_NAMESPACES",
    "backoff_base_seconds": "STOCKADE_BACKOFF_BASE_SECONDS",
    "backoff_max_seconds": "STOCKADE_BACKOFF_MAX_SECONDS",
    "history_limit": "STOCKADE_HISTORY_LIMIT",
    "terminating_timeout_seconds": "STOCKADE_TERMINATING_TIMEOUT_SECONDS",
    "reconcile_concurrency": "STOCKADE_RECONCILE_CONCURRENCY",
    "resync_seconds": "STOCKADE_RESYNC_SECONDS",
    "metrics_port": "STOCKADE_METRICS_PORT",
    "health_port": "STOCKADE_HEALTH_PORT",
    "liveness_stall_seconds": "STOCKADE_LIVENESS_STALL_SECONDS",
    "log_format": "STOCKADE_LOG_FORMAT",
    "log_level": "STOCKADE_LOG_LEVEL",
    "agent_uid": "STOCKADE_AGENT_UID",
    "tmp_size_limit": "STOCKADE_TMP_SIZE_LIMIT",
    "home_size_limit": "STOCKADE_HOME_SIZE_LIMIT",
    "egress_dns_preset": "STOCKADE_EGRESS_DNS_PRESET",
    "egress_dns_namespace_labels": "STOCKADE_EGRESS_DNS_NAMESPACE_LABELS",
    "egress_dns_pod_labels": "STOCKADE_EGRESS_DNS_POD_LABELS",
    "egress_dns_cidrs": "STOCKADE_EGRESS_DNS_CIDRS",
    "egress_dns_ports": "STOCKADE_EGRESS_DNS_PORTS",
    "egress_denied_cidrs": "STOCKADE_EGRESS_DENIED_CIDRS",
    "gateway_address": "STOCKADE_GATEWAY_ADDRESS",
    "gateway_ca_configmap": "STOCKADE_GATEWAY_CA_CONFIGMAP",
    "leader_election": "STOCKADE_LEADER_ELECTION",
    "leader_election_namespace": "STOCKADE_LEADER_ELECTION_NAMESPACE",
    "leader_election_lease_name": "STOCKADE_LEADER_ELECTION_LEASE_NAME",
    "leader_election_lease_duration_seconds": "STOCKADE_LEADER_ELECTION_LEASE_DURATION_SECONDS",
    "leader_election_renew_deadline_seconds": "STOCKADE_LEADER_ELECTION_RENEW_DEADLINE_SECONDS",
    "leader_election_retry_period_seconds": "STOCKADE_LEADER_ELECTION_RETRY_PERIOD_SECONDS",
    "pod_name": "STOCKADE_POD_NAME",
}
_CHART = {
    "allowed_runtime_classes": "allowedRuntimeClasses",
    "allowed_pod_label_keys": "allowedPodLabelKeys",
    "allowed_toleration_keys": "allowedTolerationKeys",
    "allowed_priority_classes": "allowedPriorityClasses",
    "references_without_policy": "referencesWithoutPolicy",
}
"""The chart value (under ``config``) of each setting that refusal messages name."""
_ALLOW_LISTS = frozenset(
    {
        "allowed_runtime_classes",
        "allowed_pod_label_keys",
        "allowed_toleration_keys",
        "allowed_priority_classes",
    }
)
_LISTS = {
    "namespaces",
    "egress_dns_cidrs",
    "egress_dns_ports",
    "egress_denied_cidrs",
    *_ALLOW_LISTS,
}
"""Lists where a set-but-empty variable means "nothing allowed", not "the default"."""
_FALLBACK = {"operator_namespace": "POD_NAMESPACE"}
"""Variables read when a setting's own is unset (the downward API's namespace)."""
_MAPS = {
    "default_requests",
    "default_limits",
    "egress_dns_namespace_labels",
    "egress_dns_pod_labels",
}


def _split(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _parse_map(variable: str, raw: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in _split(raw):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{variable}: expected name=value pairs, got {item!r}")
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
        if raw is None and field in _FALLBACK:
            raw = env.get(_FALLBACK[field])
        if raw is None or (raw == "" and field not in _ALLOW_LISTS):
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
