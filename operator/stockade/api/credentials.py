"""``spec.credentials`` of an Agent (issue 21): headers the egress gateway adds.

Each credential names a Secret key, the hosts (names of ``network.hosts`` entries)
whose requests get it, and the header; the gateway (:mod:`stockade.gateway`) reads the
Secret and sets the header on the intercepted requests, so the agent never sees the
value. Needs ``network.egress: Hosts``. See ``/work/gateway-contract.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import ConfigDict, Field, field_validator

from stockade.api.base import CONFIG_KEY, DNS1123_LABEL, ENV_VAR_NAME, Model, cel, rule
from stockade.api.corev1 import DNSSubdomain
from stockade.api.network import EgressMode, HostName, Network, host_name

DNSLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS1123_LABEL)]

AUTHORIZATION = "Authorization"
"""The default ``credentials[].header``."""

CREDENTIALS_MAX_ITEMS = 16
"""``spec.credentials`` holds at most this many entries (each at most 16 hosts)."""

PLACEHOLDER_PREFIX = "stockade-credential-placeholder:"
"""The value of a credential's ``env`` variable: this prefix and the credential's name.
Useless outside the gateway, which replaces the header anyway."""

_FORBIDDEN_HEADERS = (
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
)
"""Headers a credential may not set: they frame the request or speak to the gateway."""

HTTP_TOKEN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
"""An HTTP header field name (RFC 9110 token)."""


class CredentialSecretKeyRef(Model):
    """The key of a Secret in the Agent's namespace that holds the credential's value."""

    name: DNSSubdomain
    """Name of the Secret."""
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=CONFIG_KEY)]
    """The key of the Secret that holds the value."""


class Credential(Model):
    """A credential the egress gateway adds to the requests to some hosts.

    The agent never sees the value: the gateway reads the Secret, intercepts the TLS of
    these hosts (with a certificate of its own CA, which the pod trusts) and sets the
    header, replacing whatever the agent sent. Needs ``network.egress: Hosts``.
    """

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!(self.header.lowerAscii() in " + repr(list(_FORBIDDEN_HEADERS)) + ")",
                "header must not be one that frames the request or speaks to the proxy ("
                + ", ".join(_FORBIDDEN_HEADERS)
                + ")",
                field_path=".header",
                reason="FieldValueForbidden",
            )
        )
    )

    name: DNSLabel
    """Name of the credential, unique in the Agent (a DNS label)."""
    secret_key_ref: CredentialSecretKeyRef
    """The Secret key holding the value (its author must be allowed to get the Secret)."""
    hosts: Annotated[
        list[HostName], Field(min_length=1, max_length=16, json_schema_extra=cel(list_type="set"))
    ]
    """Hosts whose requests get the header; each must be the name of a network.hosts
    entry (e.g. api.openai.com, *.github.com)."""
    header: Annotated[str, Field(min_length=1, max_length=256, pattern=HTTP_TOKEN)] = AUTHORIZATION
    """HTTP header the gateway sets; Authorization when unset."""
    value_prefix: Annotated[str, Field(max_length=64)] | None = None
    """Text put before the Secret's value, e.g. 'Bearer ' or 'token '; 'Bearer ' when
    the header is Authorization (in any case) and unset, else empty."""
    env: Annotated[str, Field(min_length=1, max_length=256, pattern=ENV_VAR_NAME)] | None = None
    """Environment variable set to a placeholder (stockade-credential-placeholder:<name>),
    for agents that refuse to start without a key; must not be a spec.env name."""

    @field_validator("header")
    @classmethod
    def _allowed_header(cls, value: str) -> str:
        if value.lower() in _FORBIDDEN_HEADERS:
            raise ValueError(f"header {value!r} frames the request or speaks to the proxy")
        return value

    def prefix(self) -> str:
        """The effective ``valuePrefix`` ('Bearer ' for Authorization when unset)."""
        if self.value_prefix is not None:
            return self.value_prefix
        return "Bearer " if self.header.lower() == AUTHORIZATION.lower() else ""

    def placeholder(self) -> str:
        """The value of the ``env`` variable."""
        return PLACEHOLDER_PREFIX + self.name


CredentialList = Annotated[
    list[Credential],
    Field(
        max_length=CREDENTIALS_MAX_ITEMS,
        json_schema_extra=cel(list_type="map", list_map_keys=["name"]),
    ),
]
"""``spec.credentials``: at most 16, unique by name."""

CREDENTIAL_RULES = [
    rule(
        # A member with credentials references a Secret: it takes no network from its
        # session (stockade.core.spec.member_defaults), so it needs its own.
        "!has(self.credentials) || has(self.network) && self.network.egress == 'Hosts'",
        "credentials need network.egress Hosts (the egress gateway adds them), set on the "
        "Agent itself",
        field_path=".credentials",
        reason="FieldValueForbidden",
    ),
    rule(
        "!has(self.credentials) || !has(self.network) || !has(self.network.hosts) || "
        "self.credentials.all(c, c.hosts.all(h, self.network.hosts.exists(n, "
        "n == h || n.startsWith(h + ':'))))",
        "each credentials[].hosts entry must be the name of a network.hosts entry",
        field_path=".credentials",
        reason="FieldValueInvalid",
    ),
    rule(
        "!has(self.credentials) || !has(self.env) || self.credentials.all(c, "
        "!has(c.env) || !self.env.exists(e, e.name == c.env))",
        "credentials[].env must not be the name of a spec.env variable",
        field_path=".credentials",
        reason="FieldValueInvalid",
    ),
    rule(
        "!has(self.credentials) || self.credentials.all(c, !has(c.env) || "
        "self.credentials.exists_one(d, has(d.env) && d.env == c.env))",
        "credentials[].env must be unique",
        field_path=".credentials",
        reason="FieldValueInvalid",
    ),
]


def problems(
    credentials: Sequence[Credential],
    network: Network | None,
    env_names: Iterable[str],
) -> list[str]:
    """What is wrong with `credentials` given the spec's `network` and env names.

    Args:
        credentials: ``spec.credentials``.
        network: ``spec.network`` (None: unset).
        env_names: the names of ``spec.env``.

    Returns:
        Messages ``"<field path>: <problem>"``; empty when nothing is wrong.

    """
    if not credentials:
        return []
    if network is None:
        return ["spec.credentials: credentials need network.egress Hosts, set on the Agent"]
    if network.egress != EgressMode.HOSTS:
        return [f"spec.credentials: credentials need network.egress Hosts (it is {network.egress})"]
    found: list[str] = []
    names = {host_name(entry) for entry in network.hosts or ()}
    env = set(env_names)
    seen_names: set[str] = set()
    seen_env: set[str] = set()
    for index, cred in enumerate(credentials):
        where = f"spec.credentials[{index}]"
        if cred.name in seen_names:
            found.append(f"{where}.name: {cred.name!r} is not unique")
        seen_names.add(cred.name)
        found.extend(
            f"{where}.hosts: {host!r} is not the name of a network.hosts entry"
            for host in cred.hosts
            if host not in names
        )
        if cred.env is not None:
            if cred.env in env:
                found.append(f"{where}.env: {cred.env!r} is also a spec.env name")
            if cred.env in seen_env:
                found.append(f"{where}.env: {cred.env!r} is not unique")
            seen_env.add(cred.env)
    return found
