"""The Agent's network fence: ``spec.network`` (egress mode, custom destinations).

Enforced with a NetworkPolicy (:mod:`stockade.build.network`): ingress is always
denied; egress is None, DNS only, the Internet (no cluster or link-local addresses), or
Custom destinations.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from stockade.api.base import Model, cel, rule


class EgressMode(StrEnum):
    """Outbound traffic the agent pod may send (enforced with a NetworkPolicy)."""

    NONE = "None"
    DNS = "DNS"
    INTERNET = "Internet"
    CUSTOM = "Custom"


class NetworkPort(Model):
    """A destination port that Custom egress allows."""

    port: Annotated[int, Field(ge=1, le=65535)]
    """Port number."""
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    """Protocol: TCP, UDP or SCTP."""


ALWAYS_DENIED_CIDRS: tuple[str, ...] = (
    "169.254.0.0/16",  # IPv4 link-local (RFC 3927): the metadata service of AWS, GCP, Azure, ...
    "fe80::/10",  # IPv6 link-local (RFC 4291)
    "fd00:ec2::254/128",  # AWS's IPv6 instance metadata service (Nitro)
    "100.100.100.200/32",  # Alibaba Cloud's instance metadata service
)
"""What Custom egress never reaches, whatever the operator's settings: the link-local
ranges (the cloud metadata service ``169.254.169.254`` and the node's link-local
services) and the metadata services outside them. The CRD refuses a ``cidrs`` entry that
overlaps one (a wider CIDR such as ``0.0.0.0/0`` contains them: use egress Internet);
the operator's deny-list (:func:`stockade.core.policy.egress_problems`) adds the API
server's addresses and the administrator's ranges."""

_DENIED_MESSAGE = (
    "must not overlap the link-local and cloud metadata addresses "
    + ", ".join(ALWAYS_DENIED_CIDRS)
    + " (for every public address use egress Internet)"
)


def overlaps(a: str, b: str) -> bool:
    """Whether CIDRs `a` and `b` share an address (one contains the other).

    An IPv4-mapped IPv6 network (``::ffff:a.b.c.d/n``, n >= 96) is compared as the IPv4
    network it maps; networks of different families never overlap otherwise.

    Raises:
        ValueError: `a` or `b` is not a CIDR.

    """
    first, second = _as_ipv4(_network(a)), _as_ipv4(_network(b))
    if first.version != second.version:
        return False
    return first.overlaps(second)


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(value, strict=False)


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _as_ipv4(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR network address: {exc}") from None
    if any(overlaps(value, denied) for denied in ALWAYS_DENIED_CIDRS):
        raise ValueError(f"{value}: {_DENIED_MESSAGE}")
    return value


def _not_denied_rule() -> str:
    """CEL: the string `self` (a CIDR) overlaps none of :data:`ALWAYS_DENIED_CIDRS`."""
    parts = [
        f"!cidr(self).containsCIDR('{c}') && !cidr('{c}').containsCIDR(self)"
        for c in ALWAYS_DENIED_CIDRS
    ]
    return "!isCIDR(self) || (" + " && ".join(parts) + ")"


Cidr = Annotated[
    str,
    Field(
        max_length=64,
        json_schema_extra=cel(
            rule(
                "isCIDR(self) && cidr(self) == cidr(self).masked()",
                "must be a CIDR network address, e.g. 10.0.0.0/8 or 2001:db8::/32",
            ),
            rule(_not_denied_rule(), _DENIED_MESSAGE, reason="FieldValueForbidden"),
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
    """Destination networks Custom egress allows, e.g. 10.20.0.0/16 (Custom only). None
    may overlap the link-local ranges (169.254.0.0/16, fe80::/10) or a cloud metadata
    address (fd00:ec2::254, 100.100.100.200); the operator also
    refuses the API server's addresses and the ranges its administrator denies
    (egressDeniedCidrs): the Agent then fails with EgressDenied."""
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
