"""Which resolved addresses the gateway may connect to (checked after its own resolution).

Refused: every address that is not globally routable (private, loopback, link-local,
CGNAT ``100.64.0.0/10``, multicast, unspecified, reserved, documentation, IPv6 ULA and
link-local, ...), the cloud metadata addresses, and the configured cluster CIDRs (pod
and service ranges, which may well be public addresses). IPv4 addresses embedded in
IPv6 (IPv4-mapped ``::ffff:0:0/96``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) are
checked as the IPv4 address they carry.

An explicit allow-list (``STOCKADE_GATEWAY_ALLOW_ADDRESSES``, for tests with upstreams on
127.0.0.1; empty by default) overrides every refusal, the metadata addresses included:
set it only to the test upstreams.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES: tuple[IPAddress, ...] = (
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack...
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
)
"""Cloud metadata endpoints, refused by name whatever else the ranges say."""

CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address carried by an IPv4-mapped, NAT64 or 6to4 IPv6 `address`, else None."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return None


def builtin_refusal(address: IPAddress) -> str | None:
    """Why `address` is refused by the built-in rules, or None if it is globally routable.

    Returns:
        a short reason (``loopback``, ``private``, ``link-local``, ``cgnat``, ``multicast``,
        ``unspecified``, ``metadata``, ``not-global``), or None.

    """
    inner = embedded_ipv4(address)
    if inner is not None:
        return builtin_refusal(inner)
    if address in METADATA_ADDRESSES:
        return "metadata"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in CGNAT:
        return "cgnat"
    if address.is_private:
        return "private"
    if not address.is_global or address.is_reserved:
        return "not-global"
    return None


@dataclass(frozen=True)
class AddressGuard:
    """The gateway's address rules.

    Attributes:
        cluster_networks: the cluster's pod and service CIDRs (refused).
        allowed_networks: explicitly allowed addresses (tests only; empty by default).

    """

    cluster_networks: tuple[IPNetwork, ...] = ()
    allowed_networks: tuple[IPNetwork, ...] = ()

    def refusal(self, address: IPAddress) -> str | None:
        """Why the gateway must not connect to `address`, or None if it may.

        An address in `allowed_networks` is allowed; else the cluster CIDRs
        (``cluster``) and then :func:`builtin_refusal` decide.
        """
        if any(address in network for network in self.allowed_networks):
            return None
        inner = embedded_ipv4(address)
        for candidate in (address, inner):
            if candidate is not None and any(
                candidate in network for network in self.cluster_networks
            ):
                return "cluster"
        return builtin_refusal(address)

    def permitted(self, addresses: Iterable[IPAddress]) -> tuple[list[IPAddress], list[str]]:
        """Split resolved `addresses` into those the gateway may use and the refusal reasons.

        Returns:
            ``(permitted, reasons)``, order kept; a name whose every address is refused
            is refused (``permitted`` empty). Only permitted addresses are ever dialled,
            so a name resolving to both a public and a private address cannot reach the
            private one.

        """
        permitted: list[IPAddress] = []
        reasons: list[str] = []
        for address in addresses:
            reason = self.refusal(address)
            if reason is None:
                permitted.append(address)
            else:
                reasons.append(reason)
        return permitted, reasons


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Parse a comma-separated list of CIDRs or single addresses (``10.0.0.0/8,127.0.0.1``).

    Raises:
        ValueError: an entry is not an address or network.

    """
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    )
