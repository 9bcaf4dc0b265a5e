"""The NetworkPolicy that fences an Agent's pods: no ingress, egress by ``spec.network``.

The rules of the modes ``None``, ``DNS``, ``Internet`` and ``Hosts`` depend on nothing but the mode
(and the operator's DNS settings and namespace), so one policy per namespace and mode,
``stockade-egress-<mode>``, fences the pods of every Agent of that mode there: it
selects the pod label ``stockade.dev/egress: <mode>`` (:func:`egress_label`), and it
belongs to no Agent (no ownerReference; it stays while the namespace does and selects
nothing but Stockade's pods). An Agent with ``Custom`` egress (or, should any slip past
the API, ``ports`` on another mode) gets its own policy ``<agent>-egress``, owned by
the Agent and selecting its pods (every attempt). Every policy lists both policy
types, so ingress is denied outright and egress is allowed only by the rules of the
mode (https://kubernetes.io/docs/concepts/services-networking/network-policies/):

- ``None``: no egress at all (not even DNS);
- ``DNS``: UDP and TCP to the cluster DNS: its pods, selected by namespace and pod
  labels, and any extra CIDRs, on its ports; where that is comes from the operator's
  configuration (:class:`DnsPeer`, :data:`DNS_PRESETS`; default ``kube-dns``: pods
  ``k8s-app=kube-dns`` in ``kube-system``, the label CoreDNS keeps for compatibility,
  port 53);
- ``Internet``: DNS, plus every public address: ``0.0.0.0/0`` and ``::/0`` minus the
  private, shared, loopback and link-local ranges (which include the cloud metadata
  endpoint 169.254.169.254 and the cluster's pod and service networks when they use
  private ranges, as they usually do); the API admits ``ports`` only with Custom, but
  should any reach this mode they restrict it (never widen);
- ``Custom``: DNS, plus ``spec.network.cidrs`` (at least one), restricted to
  ``spec.network.ports`` when given;
- ``Hosts`` (issue 21): DNS, plus the egress gateway's pods (``app.kubernetes.io/component:
  gateway`` in the operator's namespace) on TCP :data:`GATEWAY_PORT`; the gateway lets
  through only the Agent's ``network.hosts`` (:mod:`stockade.gateway`).

A NetworkPolicy only takes effect with a network plugin that enforces it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from stockade.api.agent import AgentSpec
from stockade.api.network import EgressMode, Network
from stockade.build.errors import SpecError
from stockade.build.names import (
    EGRESS_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    AgentRef,
    agent_selector,
    child_metadata,
    networkpolicy_name,
    session_of,
    shared_networkpolicy_name,
)
from stockade.config import OperatorConfig

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""The label the API server sets on every namespace to its name (Kubernetes >= 1.22)."""
NODELOCAL_DNS_ADDRESS = "169.254.20.10"
"""NodeLocal DNSCache's usual link-local listen address (``__PILLAR__LOCAL__DNS__`` in
https://kubernetes.io/docs/tasks/administer-cluster/nodelocaldns/)."""


GATEWAY_PORT = 3128
"""The egress gateway's proxy port (TCP)."""
GATEWAY_POD_LABELS: Mapping[str, str] = MappingProxyType({"app.kubernetes.io/component": "gateway"})
"""The labels of the egress gateway's pods (the chart's gateway Deployment)."""


@dataclass(frozen=True)
class DnsPeer:
    """Where the cluster DNS answers, as NetworkPolicy peers of the DNS egress rule.

    Attributes:
        namespace_labels: ``matchLabels`` of the DNS pods' namespace; empty together
            with `pod_labels` means no pod peer (only `cidrs`).
        pod_labels: ``matchLabels`` of the DNS pods.
        cidrs: ``ipBlock`` peers, e.g. NodeLocal DNSCache's ``169.254.20.10/32`` (its
            pods use the host network, so no pod selector reaches them).
        ports: destination ports, each allowed over UDP and TCP. A NetworkPolicy sees
            the pod's own port after Service translation: OpenShift's DNS pods listen
            on 5353 behind the Service's 53.

    """

    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    cidrs: tuple[str, ...] = ()
    ports: tuple[int, ...] = (53,)


_KUBE_DNS = DnsPeer(
    namespace_labels={NAMESPACE_NAME_LABEL: "kube-system"}, pod_labels={"k8s-app": "kube-dns"}
)
DNS_PRESETS: Mapping[str, DnsPeer] = MappingProxyType(
    {
        # kube-dns, and CoreDNS, which keeps the k8s-app=kube-dns label for compatibility
        # (kubeadm, kind, GKE, EKS, AKS).
        "kube-dns": _KUBE_DNS,
        # OpenShift's cluster DNS operator: a daemonset in openshift-dns whose pods listen
        # on 5353 (the dns-default Service maps 53 to it).
        "openshift": DnsPeer(
            namespace_labels={NAMESPACE_NAME_LABEL: "openshift-dns"},
            pod_labels={"dns.operator.openshift.io/daemonset-dns": "default"},
            ports=(53, 5353),
        ),
        # NodeLocal DNSCache in front of kube-dns/CoreDNS: pods query the node-local
        # cache at its link-local address, which the cache forwards to kube-dns.
        "nodelocal": DnsPeer(
            namespace_labels=_KUBE_DNS.namespace_labels,
            pod_labels=_KUBE_DNS.pod_labels,
            cidrs=(f"{NODELOCAL_DNS_ADDRESS}/32",),
        ),
    }
)
"""The DNS peers of the presets ``STOCKADE_EGRESS_DNS_PRESET`` names
(:data:`stockade.config.DnsPreset`)."""


def dns_peer(config: OperatorConfig) -> DnsPeer:
    """The DNS peer `config` describes: its preset, with the overrides it sets.

    ``egress_dns_namespace_labels`` / ``egress_dns_pod_labels`` / ``egress_dns_ports``
    replace the preset's; ``egress_dns_cidrs`` are added to the preset's CIDRs.
    """
    preset = DNS_PRESETS[config.egress_dns_preset]
    extra = tuple(c for c in config.egress_dns_cidrs if c not in preset.cidrs)
    return DnsPeer(
        namespace_labels=dict(
            preset.namespace_labels
            if config.egress_dns_namespace_labels is None
            else config.egress_dns_namespace_labels
        ),
        pod_labels=dict(
            preset.pod_labels
            if config.egress_dns_pod_labels is None
            else config.egress_dns_pod_labels
        ),
        cidrs=preset.cidrs + extra,
        ports=preset.ports if config.egress_dns_ports is None else config.egress_dns_ports,
    )


PRIVATE_IPV4: tuple[str, ...] = (
    "10.0.0.0/8",  # RFC 1918
    "172.16.0.0/12",  # RFC 1918
    "192.168.0.0/16",  # RFC 1918
    "169.254.0.0/16",  # link-local, cloud metadata (RFC 3927)
    "100.64.0.0/10",  # carrier-grade NAT shared space (RFC 6598)
    "127.0.0.0/8",  # loopback
)
PRIVATE_IPV6: tuple[str, ...] = (
    "fc00::/7",  # unique local (RFC 4193)
    "fe80::/10",  # link-local
    "::1/128",  # loopback
)


def dns_rule(dns: DnsPeer = _KUBE_DNS) -> dict[str, Any]:
    """Return the egress rule to the cluster DNS `dns` (default: kube-dns in kube-system).

    Returns:
        ``{"to": peers, "ports": ...}``: one peer selecting the DNS pods (namespace and
        pod ``matchLabels``; left out when both are empty), one ``ipBlock`` per CIDR;
        UDP then TCP for each port.

    Raises:
        SpecError: `dns` has no peer at all (a rule without ``to`` would allow every
            destination on those ports).

    """
    peers: list[dict[str, Any]] = []
    if dns.namespace_labels or dns.pod_labels:
        peers.append(
            {
                "namespaceSelector": {"matchLabels": dict(dns.namespace_labels)},
                "podSelector": {"matchLabels": dict(dns.pod_labels)},
            }
        )
    peers.extend({"ipBlock": {"cidr": cidr}} for cidr in dns.cidrs)
    if not peers:
        raise SpecError("egress.dns", "the operator's DNS peer selects nothing")
    ports = [{"protocol": proto, "port": port} for port in dns.ports for proto in ("UDP", "TCP")]
    return {"to": peers, "ports": ports}


def _ports(network: Network) -> list[dict[str, Any]]:
    return [{"protocol": p.protocol, "port": p.port} for p in network.ports or ()]


def _rule(peers: list[dict[str, Any]], network: Network) -> dict[str, Any]:
    rule: dict[str, Any] = {"to": peers}
    ports = _ports(network)
    if ports:
        rule["ports"] = ports
    return rule


def internet_peers() -> list[dict[str, Any]]:
    """Peers for every public IPv4 and IPv6 address (the world minus private ranges)."""
    return [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": list(PRIVATE_IPV4)}},
        {"ipBlock": {"cidr": "::/0", "except": list(PRIVATE_IPV6)}},
    ]


def custom_peers(network: Network) -> list[dict[str, Any]]:
    """One ``ipBlock`` peer per ``spec.network.cidrs`` entry, in the order given.

    Raises:
        SpecError: no CIDR is given (a rule without peers would allow every
            destination), or an entry is not a CIDR.

    """
    cidrs = network.cidrs or []
    if not cidrs:
        raise SpecError("spec.network.cidrs", "Custom egress needs at least one CIDR")
    for index, cidr in enumerate(cidrs):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise SpecError(f"spec.network.cidrs[{index}]", f"{cidr!r} is not a CIDR") from exc
        if "/" not in cidr:
            raise SpecError(
                f"spec.network.cidrs[{index}]", f"{cidr!r} is not a CIDR (missing /prefix)"
            )
    return [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]


def gateway_rule(namespace: str) -> dict[str, Any]:
    """Return the egress rule to the egress gateway's pods in `namespace` (TCP 3128).

    Returns:
        ``{"to": [{namespaceSelector, podSelector}], "ports": [TCP 3128]}``: the namespace
        by its ``kubernetes.io/metadata.name`` label, the pods by
        :data:`GATEWAY_POD_LABELS`.

    """
    return {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}},
                "podSelector": {"matchLabels": dict(GATEWAY_POD_LABELS)},
            }
        ],
        "ports": [{"protocol": "TCP", "port": GATEWAY_PORT}],
    }


def egress_rules(
    network: Network, dns: DnsPeer = _KUBE_DNS, gateway_namespace: str | None = None
) -> list[dict[str, Any]]:
    """Return the ``spec.egress`` rules of the policy for `network` (see the module doc).

    Args:
        network: the Agent's ``spec.network``.
        dns: where the cluster DNS answers (:func:`dns_peer` of the operator's config).
        gateway_namespace: where the egress gateway runs (the operator's namespace);
            needed by Hosts egress.

    Raises:
        SpecError: Custom without valid CIDRs (see :func:`custom_peers`); Hosts without
            `gateway_namespace`.

    """
    mode = network.egress
    if mode == EgressMode.NONE:
        return []
    if mode == EgressMode.DNS:
        return [dns_rule(dns)]
    if mode == EgressMode.INTERNET:
        return [dns_rule(dns), _rule(internet_peers(), network)]
    if mode == EgressMode.CUSTOM:
        return [dns_rule(dns), _rule(custom_peers(network), network)]
    if mode == EgressMode.HOSTS:
        if not gateway_namespace:
            raise SpecError(
                "spec.network.egress",
                "Hosts egress needs the egress gateway's namespace (the operator's, "
                "STOCKADE_OPERATOR_NAMESPACE)",
            )
        return [dns_rule(dns), gateway_rule(gateway_namespace)]
    raise SpecError("spec.network.egress", f"unknown egress mode {mode!r}")


OWN_POLICY = "custom"
"""The ``stockade.dev/egress`` label of pods fenced by a policy of their Agent's own."""
SHARED_MODES: Mapping[str, EgressMode] = MappingProxyType(
    {
        mode.value.lower(): mode
        for mode in (EgressMode.NONE, EgressMode.DNS, EgressMode.INTERNET, EgressMode.HOSTS)
    }
)
"""``stockade.dev/egress`` label values of the shared policies, and their modes."""


def egress_label(network: Network | None) -> str:
    """The ``stockade.dev/egress`` label of a pod whose Agent has ``spec.network`` `network`.

    Returns:
        ``none``, ``dns``, ``internet`` or ``hosts``: the namespace's shared policy of that mode
        fences the pod; :data:`OWN_POLICY` (``custom``): the Agent's own policy does
        (Custom egress, or ports, which only an Agent's own policy can hold).

    """
    network = network or Network()
    if network.egress == EgressMode.CUSTOM or network.ports:
        return OWN_POLICY
    return network.egress.value.lower()


def build_shared_network_policy(
    namespace: str, label: str, config: OperatorConfig | None = None
) -> dict[str, Any]:
    """Build namespace `namespace`'s shared policy ``stockade-egress-<label>``.

    Args:
        namespace: where it lives.
        label: one of :data:`SHARED_MODES` (``none``, ``dns``, ``internet``, ``hosts``).
        config: where the cluster DNS is (:func:`dns_peer`) and the operator's
            namespace (the gateway's, for ``hosts``); None: kube-dns, no namespace.

    Returns:
        A manifest selecting the pods labelled ``stockade.dev/egress: <label>`` (and
        managed by Stockade), both policy types, no ingress, the mode's egress rules;
        labelled with the managed-by and egress labels; no ownerReference.

    Raises:
        KeyError: `label` is not a shared mode.
        SpecError: ``hosts`` without ``config.operator_namespace``.

    """
    mode = SHARED_MODES[label]
    selector = {MANAGED_BY_LABEL: MANAGED_BY, EGRESS_LABEL: label}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": shared_networkpolicy_name(label),
            "namespace": namespace,
            "labels": dict(selector),
        },
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": egress_rules(
                # model_construct: the rules of a mode need no hosts (Hosts requires them).
                Network.model_construct(egress=mode, cidrs=None, ports=None, hosts=None),
                dns_peer(config) if config else _KUBE_DNS,
                config.operator_namespace if config else None,
            ),
        },
    }


def build_agent_network_policy(
    agent_meta: AgentRef, spec: AgentSpec, config: OperatorConfig | None = None
) -> dict[str, Any]:
    """Build the Agent's own NetworkPolicy ``<agent>-egress`` (networking.k8s.io/v1).

    `config` says where the cluster DNS is (:func:`dns_peer`); None: the defaults
    (kube-dns in kube-system).

    Returns:
        A manifest selecting the Agent's pods (``stockade.dev/agent`` and the managed-by
        label), ``policyTypes: [Ingress, Egress]``, no ingress rules (all ingress
        denied), the egress rules of ``spec.network``; Stockade's labels and a controller
        ownerReference to the Agent.

    Raises:
        SpecError: ``spec.network`` is Custom without valid CIDRs.

    """
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(
            agent_meta, networkpolicy_name(agent_meta.name), session_of(spec)
        ),
        "spec": {
            "podSelector": {"matchLabels": agent_selector(agent_meta.name)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": egress_rules(
                spec.network or Network(),
                dns_peer(config) if config else _KUBE_DNS,
                config.operator_namespace if config else None,
            ),
        },
    }
