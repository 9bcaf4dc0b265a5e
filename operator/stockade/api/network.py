"""The Agent's network fence: ``spec.network`` (egress mode, custom destinations, hosts).

Enforced with a NetworkPolicy (:mod:`stockade.build.network`): ingress is always
denied; egress is None, DNS only, the Internet (no cluster or link-local addresses),
Custom destinations, or Hosts: DNS and the egress gateway only, which lets the pod reach
the listed host names (issue 21, ``/work/gateway-contract.md``; the gateway is
:mod:`stockade.gateway`).
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema, model_validator

from stockade.api.base import Model, cel, rule


class EgressMode(StrEnum):
    """Outbound traffic the agent pod may send (enforced with a NetworkPolicy)."""

    NONE = "None"
    DNS = "DNS"
    INTERNET = "Internet"
    CUSTOM = "Custom"
    HOSTS = "Hosts"


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


_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"

HOST_NAME = rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$"
"""A host name of Hosts egress: a lower-case DNS name, ``*.`` allowed only as the first
label (``*.github.com`` matches every name under github.com, not github.com itself)."""

HOST_ENTRY = rf"^(\*\.)?{_LABEL}(\.{_LABEL})*(:{_PORT})?$"
"""A ``network.hosts`` entry: :data:`HOST_NAME` with an optional ``:port`` (1-65535);
without a port, 443 and 80."""

_NOT_AN_ADDRESS = rule(
    "!self.matches(r'^[0-9.]+(:[0-9]+)?$')",
    "must be a DNS name, not an IP address",
)


def host_name(entry: str) -> str:
    """The name part of a ``network.hosts`` entry (``pypi.org:443`` -> ``pypi.org``)."""
    return entry.rsplit(":", 1)[0] if ":" in entry else entry


def _check_host(value: str, pattern: str, what: str) -> str:
    if len(value) > 253 + 6 or not re.fullmatch(pattern, value):
        raise ValueError(
            f"{value!r} is not a {what}: a lower-case DNS name, '*.' only as the first label"
            + (", an optional :port in 1-65535" if pattern == HOST_ENTRY else "")
        )
    if re.fullmatch(r"[0-9.]+(:[0-9]+)?", value):
        raise ValueError(f"{value!r}: must be a DNS name, not an IP address")
    return value


def _host_schema(pattern: str, max_length: int) -> WithJsonSchema:
    """The API server's check of a host string (its JSON schema).

    `pattern`, 1 to `max_length` characters, not an IP address.
    """
    return WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": max_length,
            "pattern": pattern,
            "x-kubernetes-validations": [_NOT_AN_ADDRESS],
        }
    )


HostEntry = Annotated[
    str,
    AfterValidator(lambda v: _check_host(v, HOST_ENTRY, "host entry")),
    _host_schema(HOST_ENTRY, 259),
]
"""``name[:port]``, e.g. ``api.openai.com``, ``*.github.com``, ``pypi.org:443``."""

HostName = Annotated[
    str,
    AfterValidator(lambda v: _check_host(v, HOST_NAME, "host name")),
    _host_schema(HOST_NAME, 253),
]
"""A host name without a port, e.g. ``api.openai.com`` or ``*.github.com``."""

HOSTS_MAX_ITEMS = 64
"""``network.hosts`` holds at most this many entries."""


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
                "self.egress != 'Hosts' || (has(self.hosts) && self.hosts.size() > 0)",
                "hosts is required when egress is Hosts",
                field_path=".hosts",
                reason="FieldValueRequired",
            ),
            rule(
                "self.egress == 'Hosts' || !has(self.hosts)",
                "hosts is only allowed when egress is Hosts",
                field_path=".hosts",
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
    (DNS and public addresses, no private ranges), Custom (DNS and the listed cidrs
    and ports), or Hosts (DNS and the operator's egress gateway, which lets through
    only the listed hosts and may add credentials; needs the gateway, else the Agent
    fails with GatewayNotConfigured)."""
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
    hosts: Annotated[
        list[HostEntry] | None,
        Field(max_length=HOSTS_MAX_ITEMS, json_schema_extra=cel(list_type="set")),
    ] = None
    """Hosts that Hosts egress allows through the egress gateway (Hosts only, required
    there): name[:port] with a lower-case DNS name, '*.' only as the first label (e.g.
    api.openai.com, *.github.com, pypi.org:443); no port means 443 and 80."""

    @model_validator(mode="after")
    def _custom_only(self) -> Network:
        if self.egress == EgressMode.CUSTOM:
            if not self.cidrs:
                raise ValueError("cidrs is required when egress is Custom")
        elif self.cidrs is not None or self.ports is not None:
            raise ValueError("cidrs and ports are only allowed when egress is Custom")
        if self.egress == EgressMode.HOSTS:
            if not self.hosts:
                raise ValueError("hosts is required when egress is Hosts")
        elif self.hosts is not None:
            raise ValueError("hosts is only allowed when egress is Hosts")
        if self.hosts is not None and len(set(self.hosts)) != len(self.hosts):
            raise ValueError("hosts must not repeat an entry")
        for cidr in self.cidrs or ():
            _check_cidr(cidr)
        return self
