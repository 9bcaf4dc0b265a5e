"""The NetworkPolicy that fences an Agent's pods: no ingress, egress by ``spec.network``.

One policy ``<agent>-egress`` per Agent selects its pods (every attempt) and lists both
policy types, so ingress is denied outright and egress is allowed only by the rules of
the mode (https://kubernetes.io/docs/concepts/services-networking/network-policies/):

- ``None``: no egress at all (not even DNS);
- ``DNS``: UDP and TCP port 53 to the cluster DNS (pods ``k8s-app=kube-dns`` in
  ``kube-system``, the label CoreDNS keeps for compatibility);
- ``Internet``: DNS, plus every public address: ``0.0.0.0/0`` and ``::/0`` minus the
  private, shared, loopback and link-local ranges (which include the cloud metadata
  endpoint 169.254.169.254 and the cluster's pod and service networks when they use
  private ranges, as they usually do); the API admits ``ports`` only with Custom, but
  should any reach this mode they restrict it (never widen);
- ``Custom``: DNS, plus ``spec.network.cidrs`` (at least one), restricted to
  ``spec.network.ports`` when given.

A NetworkPolicy only takes effect with a network plugin that enforces it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from stockade.api.agent import AgentSpec, EgressMode, Network
from stockade.build.errors import SpecError
from stockade.build.names import (
    AgentRef,
    agent_selector,
    child_metadata,
    networkpolicy_name,
    session_of,
)

DNS_NAMESPACE = "kube-system"
DNS_POD_LABELS: dict[str, str] = {"k8s-app": "kube-dns"}
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

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


def dns_rule() -> dict[str, Any]:
    """Return the egress rule to the cluster DNS: UDP and TCP 53 to kube-dns in kube-system."""
    return {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: DNS_NAMESPACE}},
                "podSelector": {"matchLabels": dict(DNS_POD_LABELS)},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


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


def egress_rules(network: Network) -> list[dict[str, Any]]:
    """Return the ``spec.egress`` rules of the policy for `network` (see the module doc).

    Raises:
        SpecError: Custom without valid CIDRs (see :func:`custom_peers`).

    """
    mode = network.egress
    if mode == EgressMode.NONE:
        return []
    if mode == EgressMode.DNS:
        return [dns_rule()]
    if mode == EgressMode.INTERNET:
        return [dns_rule(), _rule(internet_peers(), network)]
    if mode == EgressMode.CUSTOM:
        return [dns_rule(), _rule(custom_peers(network), network)]
    raise SpecError("spec.network.egress", f"unknown egress mode {mode!r}")


def build_network_policy(agent_meta: AgentRef, spec: AgentSpec) -> dict[str, Any]:
    """Build the Agent's NetworkPolicy ``<agent>-egress`` (networking.k8s.io/v1).

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
            "egress": egress_rules(spec.network or Network()),
        },
    }
