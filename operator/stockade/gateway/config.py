"""The gateway's settings, read from the environment (set by the Helm chart).

=====================================  ==============================================
variable                               meaning (default)
=====================================  ==============================================
``STOCKADE_GATEWAY_PORT``              proxy port (3128)
``STOCKADE_GATEWAY_METRICS_PORT``      Prometheus port, 0 disables it (9090)
``STOCKADE_GATEWAY_NAMESPACE``         where the CA lives (else ``POD_NAMESPACE``)
``STOCKADE_GATEWAY_CA_SECRET``         the CA Secret (``stockade-gateway-ca``)
``STOCKADE_GATEWAY_CA_CONFIGMAP``      the published ConfigMap (``stockade-gateway-ca``)
``STOCKADE_GATEWAY_CLUSTER_CIDRS``     refused CIDRs, with ``STOCKADE_EGRESS_DENIED_CIDRS``
``STOCKADE_GATEWAY_ALLOW_ADDRESSES``   addresses allowed despite every rule (tests; none)
``STOCKADE_GATEWAY_MAX_HEAD_BYTES``    largest request/response head (32768)
``STOCKADE_GATEWAY_HEAD_TIMEOUT``      seconds to send a head (10)
``STOCKADE_GATEWAY_IDLE_TIMEOUT``      seconds a tunnel may stay silent both ways (300)
``STOCKADE_GATEWAY_CONNECT_TIMEOUT``   seconds to resolve and dial upstream (10)
``STOCKADE_GATEWAY_AGENT_CACHE_TTL``   seconds an Agent's credentials are cached (10)
``STOCKADE_GATEWAY_MAX_CONNECTIONS``   client connections open at once; more get 503 (4096)
=====================================  ==============================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from stockade.gateway.guard import AddressGuard, IPNetwork, parse_networks


class GatewayConfigError(ValueError):
    """An environment variable the gateway cannot use (the message names it)."""


@dataclass(frozen=True)
class GatewayConfig:
    """The settings of one gateway process (see the module's table; seconds, bytes)."""

    port: int = 3128
    metrics_port: int = 9090
    namespace: str = ""
    ca_secret: str = "stockade-gateway-ca"
    ca_configmap: str = "stockade-gateway-ca"
    cluster_cidrs: tuple[IPNetwork, ...] = ()
    allow_addresses: tuple[IPNetwork, ...] = ()
    max_head_bytes: int = 32768
    head_timeout: float = 10.0
    idle_timeout: float = 300.0
    connect_timeout: float = 10.0
    agent_cache_ttl: float = 10.0
    max_connections: int = 4096

    @property
    def guard(self) -> AddressGuard:
        """The :class:`AddressGuard` of these settings."""
        return AddressGuard(self.cluster_cidrs, self.allow_addresses)


def _number(
    environ: Mapping[str, str], name: str, default: float, low: float, high: float
) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError as exc:
        raise GatewayConfigError(f"{name}: not a number: {text!r}") from exc
    if not low <= value <= high:
        raise GatewayConfigError(f"{name}: {value} is outside {low}..{high}")
    return value


def _networks(environ: Mapping[str, str], *names: str) -> tuple[IPNetwork, ...]:
    found: list[IPNetwork] = []
    for name in names:
        try:
            found.extend(parse_networks(environ.get(name, "")))
        except ValueError as exc:
            raise GatewayConfigError(f"{name}: {exc}") from exc
    return tuple(found)


def load_gateway_config(environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read :class:`GatewayConfig` from `environ` (default: the process environment).

    Raises:
        GatewayConfigError: a number out of range or an unparsable CIDR list.

    """
    env = os.environ if environ is None else environ
    defaults = GatewayConfig()
    return GatewayConfig(
        port=int(_number(env, "STOCKADE_GATEWAY_PORT", defaults.port, 1, 65535)),
        metrics_port=int(
            _number(env, "STOCKADE_GATEWAY_METRICS_PORT", defaults.metrics_port, 0, 65535)
        ),
        namespace=env.get("STOCKADE_GATEWAY_NAMESPACE") or env.get("POD_NAMESPACE") or "",
        ca_secret=env.get("STOCKADE_GATEWAY_CA_SECRET") or defaults.ca_secret,
        ca_configmap=env.get("STOCKADE_GATEWAY_CA_CONFIGMAP") or defaults.ca_configmap,
        cluster_cidrs=_networks(
            env, "STOCKADE_GATEWAY_CLUSTER_CIDRS", "STOCKADE_EGRESS_DENIED_CIDRS"
        ),
        allow_addresses=_networks(env, "STOCKADE_GATEWAY_ALLOW_ADDRESSES"),
        max_head_bytes=int(
            _number(env, "STOCKADE_GATEWAY_MAX_HEAD_BYTES", defaults.max_head_bytes, 1024, 1 << 20)
        ),
        head_timeout=_number(env, "STOCKADE_GATEWAY_HEAD_TIMEOUT", defaults.head_timeout, 0.1, 600),
        idle_timeout=_number(env, "STOCKADE_GATEWAY_IDLE_TIMEOUT", defaults.idle_timeout, 1, 86400),
        connect_timeout=_number(
            env, "STOCKADE_GATEWAY_CONNECT_TIMEOUT", defaults.connect_timeout, 0.1, 600
        ),
        max_connections=int(
            _number(env, "STOCKADE_GATEWAY_MAX_CONNECTIONS", defaults.max_connections, 1, 1 << 20)
        ),
        agent_cache_ttl=_number(
            env, "STOCKADE_GATEWAY_AGENT_CACHE_TTL", defaults.agent_cache_ttl, 0, 3600
        ),
    )
