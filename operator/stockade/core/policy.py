"""What an Agent may ask of its pod beyond what the CRD schema checks (pure).

Creating an Agent must never be more power than creating a pod (docs/security.md,
"Threat model"). The CRD's schema refuses what is never safe (probe ``host``,
annotations that change the sandbox; see :mod:`stockade.api.agent`); this module
refuses what only the cluster's administrator can allow, through the operator's
settings (:class:`~stockade.config.OperatorConfig`):

- the namespace: never ``kube-system``, ``kube-public``, ``kube-node-lease`` nor the
  operator's own (``NamespaceNotAllowed``), whatever the watched namespaces say;
- ``spec.podMetadata.labels``: only keys in ``allowedPodLabelKeys`` (default
  ``user.stockade.dev/*``), so that an Agent cannot select its pod into another
  NetworkPolicy or a Service;
- ``spec.tolerations``: only taint keys in ``allowedTolerationKeys`` (default none);
- ``spec.priorityClassName``: only ``allowedPriorityClasses`` (default none).

- references (:func:`reference_problems`): ``spec.serviceAccountName``,
  ``spec.env[].valueFrom.secretKeyRef`` / ``configMapKeyRef``,
  ``spec.envFrom[].secretRef`` / ``configMapRef`` and
  ``spec.credentials[].secretKeyRef`` (also from a session's ``agentDefaults``) are
  checked with the requester's own rights by the chart's
  ValidatingAdmissionPolicy; while its binding is absent the operator refuses them
  (``ReferenceNotAllowed``) unless ``referencesWithoutPolicy`` is ``allow``.

- ``spec.network.cidrs`` of Custom egress (:func:`egress_problems`): no entry may
  overlap the link-local and cloud metadata addresses, the API server's addresses, or
  ``egressDeniedCidrs`` (``EgressDenied``).

- egress Hosts and ``spec.credentials`` (:func:`gateway_problems`, issue 21): Hosts
  needs the egress gateway (``STOCKADE_GATEWAY_ADDRESS`` and the operator's
  namespace, else ``GatewayNotConfigured``); credentials need the effective egress to
  be Hosts (a member may take its network from its session) with their hosts among
  its ``network.hosts`` (``InvalidSpec``).

The RuntimeClass allow-list is applied where the RuntimeClass is resolved
(:func:`stockade.build.runtime.resolve_runtime_class`). A problem fails the Agent
(``InvalidSpec``, or ``NamespaceNotAllowed``) with a message naming the field and the
setting that refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from stockade.api.agent import AgentSpec
from stockade.api.credentials import problems as credential_problems
from stockade.api.network import ALWAYS_DENIED_CIDRS, EgressMode, overlaps
from stockade.config import OperatorConfig, matches, setting
from stockade.core.lifecycle import Reason


@dataclass(frozen=True)
class Problem:
    """One thing the operator's policy refuses.

    Attributes:
        field: the offending field, e.g. ``spec.tolerations[0].key``.
        message: what is refused and which setting refuses it (no trailing period).
        reason: the Agent's failure reason (``InvalidSpec``, ``NamespaceNotAllowed`` or
            ``ReferenceNotAllowed``).

    """

    field: str
    message: str
    reason: Reason = Reason.INVALID_SPEC

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def describe(problems: list[Problem]) -> str:
    """All `problems` as one ``status.message``."""
    return "; ".join(str(p) for p in problems)


def _allowed(field: str, patterns: tuple[str, ...]) -> str:
    listed = ", ".join(patterns) if patterns else "none"
    return f"{setting(field)} allows {listed}"


def namespace_problem(namespace: str | None, config: OperatorConfig) -> Problem | None:
    """Refuse an Agent in a system namespace or the operator's own (NamespaceNotAllowed)."""
    if not namespace or namespace not in config.refused_namespaces():
        return None
    what = (
        "the operator's own namespace"
        if namespace == config.operator_namespace
        else "a Kubernetes system namespace"
    )
    return Problem(
        "metadata.namespace",
        f"Agents never run in namespace {namespace!r} ({what}); create it in another namespace",
        Reason.NAMESPACE_NOT_ALLOWED,
    )


def spec_problems(spec: AgentSpec, config: OperatorConfig) -> list[Problem] | None:
    """What the operator's allow-lists refuse in a validated (effective) spec; None if nothing."""
    problems: list[Problem] = []
    labels = spec.pod_metadata.labels if spec.pod_metadata else None
    for key in sorted(labels or ()):
        if not matches(key, config.allowed_pod_label_keys):
            problems.append(
                Problem(
                    "spec.podMetadata.labels",
                    f"label key {key!r} is not allowed (it could select the pod into a "
                    f"NetworkPolicy or Service): "
                    + _allowed("allowed_pod_label_keys", config.allowed_pod_label_keys),
                )
            )
    for index, toleration in enumerate(spec.tolerations or ()):
        key = toleration.key or ""
        if not matches(key, config.allowed_toleration_keys):
            what = f"taint key {key!r}" if key else "every taint (empty key)"
            problems.append(
                Problem(
                    f"spec.tolerations[{index}].key",
                    f"tolerating {what} is not allowed: "
                    + _allowed("allowed_toleration_keys", config.allowed_toleration_keys),
                )
            )
    name = spec.priority_class_name
    if name and not matches(name, config.allowed_priority_classes):
        problems.append(
            Problem(
                "spec.priorityClassName",
                f"PriorityClass {name!r} is not allowed: "
                + _allowed("allowed_priority_classes", config.allowed_priority_classes),
            )
        )
    return problems or None


def references(spec: AgentSpec) -> list[tuple[str, str]]:
    """Every ServiceAccount, Secret and ConfigMap `spec` makes the pod use, in spec order.

    Returns ``(field, what)`` pairs, e.g. ``("spec.env[2].valueFrom.secretKeyRef",
    "Secret 'api-key'")``; `spec` is the effective spec (a session's ``agentDefaults``
    merged in, so their env appears under ``spec.env``). Variables from ``fieldRef`` and
    ``resourceFieldRef`` reference nothing and are not listed.
    """
    found: list[tuple[str, str]] = []
    if spec.service_account_name:
        found.append(("spec.serviceAccountName", f"ServiceAccount {spec.service_account_name!r}"))
    for index, var in enumerate(spec.env or ()):
        source = var.value_from
        if source is None:
            continue
        if source.secret_key_ref is not None:
            found.append(
                (
                    f"spec.env[{index}].valueFrom.secretKeyRef",
                    f"Secret {source.secret_key_ref.name!r}",
                )
            )
        if source.config_map_key_ref is not None:
            found.append(
                (
                    f"spec.env[{index}].valueFrom.configMapKeyRef",
                    f"ConfigMap {source.config_map_key_ref.name!r}",
                )
            )
    for index, env_from in enumerate(spec.env_from or ()):
        if env_from.secret_ref is not None:
            found.append(
                (f"spec.envFrom[{index}].secretRef", f"Secret {env_from.secret_ref.name!r}")
            )
        if env_from.config_map_ref is not None:
            found.append(
                (
                    f"spec.envFrom[{index}].configMapRef",
                    f"ConfigMap {env_from.config_map_ref.name!r}",
                )
            )
    found.extend(
        (f"spec.credentials[{index}].secretKeyRef", f"Secret {cred.secret_key_ref.name!r}")
        for index, cred in enumerate(spec.credentials or ())
    )
    return found


def reference_problems(
    spec: AgentSpec, config: OperatorConfig, *, policy_present: bool
) -> list[Problem] | None:
    """Refuse references while the admission policy that checks them is absent.

    Defence in depth for issue 9: the chart's ValidatingAdmissionPolicy checks, with the
    requester's own rights, every reference :func:`references` lists (``get`` on each
    Secret and ConfigMap, ``create`` on ``serviceaccounts/token`` for the
    ServiceAccount; KEP-3488's CEL ``authorizer`` library). Without it (`policy_present`
    False: the binding named by ``STOCKADE_ADMISSION_POLICY_BINDING`` is missing or
    does not deny) nobody checked the Agent's author, so each reference is refused
    (``ReferenceNotAllowed``) unless ``config.references_without_policy`` is
    ``allow``. ConfigMaps are refused too: the policy checks them, and one rule for
    every reference is easier to trust than a list of exceptions.

    Returns:
        One :class:`Problem` naming every referencing field (None when nothing is
        refused).

    """
    if policy_present or config.references_without_policy == "allow":
        return None
    install = (
        f"install the Stockade chart's ValidatingAdmissionPolicy and its binding "
        f"{config.admission_policy_binding or '<release>-references'} (Helm value "
        f"admissionPolicy.enabled=true; Kubernetes >= 1.30), or set "
        f"{setting('references_without_policy')} to allow"
    )
    found = references(spec)
    if not found:
        return None
    fields = ", ".join(field for field, _ in found)
    whats = ", ".join(dict.fromkeys(what for _, what in found))
    return [
        Problem(
            fields,
            f"{whats}: not allowed, because no admission policy checks that the Agent's "
            f"author may use them; {install}",
            Reason.REFERENCE_NOT_ALLOWED,
        )
    ]


DENIED_CIDRS_SETTING = "egress.deniedCidrs (STOCKADE_EGRESS_DENIED_CIDRS)"
"""How an administrator changes :attr:`OperatorConfig.egress_denied_cidrs`."""


def denied_ranges(
    config: OperatorConfig, api_server: tuple[str, ...] | None
) -> list[tuple[str, str]]:
    """Every range Custom egress may not reach, as ``(cidr, why)`` pairs, in that order.

    The link-local and cloud metadata addresses
    (:data:`~stockade.api.network.ALWAYS_DENIED_CIDRS`), the API server's addresses
    `api_server` (from the ``kubernetes`` EndpointSlice; None: not known), and
    ``config.egress_denied_cidrs`` (the cluster's ranges, set by its administrator).
    """
    ranges = [(c, "a link-local or cloud metadata address") for c in ALWAYS_DENIED_CIDRS]
    ranges += [(c, "the API server's address") for c in api_server or ()]
    ranges += [
        (c, f"a range the operator denies, {DENIED_CIDRS_SETTING}")
        for c in config.egress_denied_cidrs
    ]
    return ranges


def egress_problems(
    spec: AgentSpec,
    config: OperatorConfig,
    api_server: tuple[str, ...] | None,
    *,
    started: bool = False,
) -> list[Problem] | None:
    """Refuse Custom egress CIDRs that overlap a denied range (issue 20, ``EgressDenied``).

    Args:
        spec: the effective spec (a session's ``agentDefaults.network`` merged in).
        config: the operator's settings (``egress_denied_cidrs``).
        api_server: the API server's addresses as CIDRs (``192.0.2.2/32``); None when
            they could not be read: then Custom egress is refused (fail closed) unless
            the Agent has `started` (its pod ran under the rules known then; only a
            known overlap stops it).
        started: whether the Agent already created a pod.

    Returns:
        One :class:`Problem` per overlapping ``spec.network.cidrs[i]`` (naming the first
        denied range it overlaps and why it is denied); None when nothing is refused.

    """
    network = spec.network
    if network is None or network.egress != EgressMode.CUSTOM or not network.cidrs:
        return None
    problems: list[Problem] = []
    ranges = denied_ranges(config, api_server)
    for index, cidr in enumerate(network.cidrs):
        hit = next(((c, why) for c, why in ranges if _overlap(cidr, c)), None)
        if hit is not None:
            problems.append(
                Problem(
                    f"spec.network.cidrs[{index}]",
                    f"{cidr} overlaps {hit[0]} ({hit[1]}), which Custom egress may not reach",
                    Reason.EGRESS_DENIED,
                )
            )
    if api_server is None and not started and not problems:
        problems.append(
            Problem(
                "spec.network.cidrs",
                "Custom egress is refused while the API server's addresses are not known "
                "(the operator cannot read the EndpointSlice default/kubernetes: see its "
                "log and its RBAC)",
                Reason.EGRESS_DENIED,
            )
        )
    return problems or None


def _overlap(a: str, b: str) -> bool:
    try:
        return overlaps(a, b)
    except ValueError:  # not a CIDR: the model refuses it before this is asked
        return True


def gateway_problems(spec: AgentSpec, config: OperatorConfig) -> list[Problem] | None:
    """Refuse egress Hosts without the egress gateway, and misfit credentials (issue 21).

    Args:
        spec: the effective spec (a session's ``agentDefaults.network`` merged in).
        config: the operator's settings (``gateway_address``, ``operator_namespace``).

    Returns:
        ``InvalidSpec`` problems for ``spec.credentials`` that do not fit the effective
        network (:func:`stockade.api.credentials.problems`, also for a member
        whose network came from its session, or that has none), else one
        ``GatewayNotConfigured`` problem when the egress is Hosts and the gateway's
        address or namespace is unset; None when nothing is refused.

    """
    network = spec.network
    hosts = network is not None and network.egress == EgressMode.HOSTS
    if spec.credentials:
        env = {var.name for var in spec.env or ()}
        found = credential_problems(spec.credentials, network, env)
        if found:
            return [Problem(*_split_problem(text)) for text in found]
    if not hosts:
        return None
    missing = [
        name
        for name, value in (
            ("STOCKADE_GATEWAY_ADDRESS", config.gateway_address),
            ("STOCKADE_OPERATOR_NAMESPACE", config.operator_namespace),
        )
        if not value
    ]
    if not missing:
        return None
    return [
        Problem(
            "spec.network.egress",
            "Hosts egress goes through the egress gateway, which this operator does not "
            f"know ({' and '.join(missing)} unset): install the chart with "
            "gateway.enabled=true",
            Reason.GATEWAY_NOT_CONFIGURED,
        )
    ]


def _split_problem(text: str) -> tuple[str, str]:
    """``"spec.x: message"`` as ``("spec.x", "message")``."""
    where, _, message = text.partition(": ")
    return where, message
