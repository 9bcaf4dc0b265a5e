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
