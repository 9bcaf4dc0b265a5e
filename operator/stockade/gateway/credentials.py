"""Credentials of an Agent (``spec.credentials[]``) and the header each adds on its hosts.

Read from the Agent object itself, never from the pod (contract of issue 21)::

    {name, secretKeyRef: {name, key}, hosts: [names], header: "Authorization",
     valuePrefix: "Bearer " (default when header is Authorization, else ""), env}

The agent's pod only ever holds :data:`PLACEHOLDER_PREFIX` ``<name>``; the gateway
replaces whatever the agent sent in `header` with ``valuePrefix + <secret value>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stockade.gateway.hosts import name_matches

PLACEHOLDER_PREFIX = "stockade-credential-placeholder:"
DEFAULT_HEADER = "Authorization"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP header field name (RFC 9110 token)."""


class CredentialError(ValueError):
    """A credential that cannot be rendered (bad header name, a value with CR, LF or NUL)."""


@dataclass(frozen=True)
class Credential:
    """One ``spec.credentials[]`` entry.

    Attributes:
        name: the credential's name (unique in the Agent).
        secret_name, secret_key: ``secretKeyRef`` (in the Agent's namespace).
        hosts: host names it applies to (``*.`` allowed, ports ignored).
        header: the header it sets.
        value_prefix: put before the secret value.

    """

    name: str
    secret_name: str
    secret_key: str
    hosts: tuple[str, ...]
    header: str = DEFAULT_HEADER
    value_prefix: str = "Bearer "


def parse_credentials(spec: Mapping[str, Any]) -> tuple[Credential, ...]:
    """The credentials of an Agent's `spec` (camelCase dict); malformed entries are dropped.

    ``valuePrefix`` defaults to ``"Bearer "`` when the header is ``Authorization`` (any
    case) and to ``""`` otherwise.
    """
    found: list[Credential] = []
    for entry in spec.get("credentials") or ():
        if not isinstance(entry, Mapping):
            continue
        ref = entry.get("secretKeyRef") or {}
        hosts = entry.get("hosts") or ()
        name, secret_name, secret_key = entry.get("name"), ref.get("name"), ref.get("key")
        if not (isinstance(name, str) and isinstance(secret_name, str) and secret_name):
            continue
        if not isinstance(secret_key, str) or not secret_key:
            continue
        header = entry.get("header") or DEFAULT_HEADER
        default_prefix = "Bearer " if header.lower() == DEFAULT_HEADER.lower() else ""
        prefix = entry.get("valuePrefix")
        found.append(
            Credential(
                name=name,
                secret_name=secret_name,
                secret_key=secret_key,
                hosts=tuple(h for h in hosts if isinstance(h, str)),
                header=str(header),
                value_prefix=default_prefix if prefix is None else str(prefix),
            )
        )
    return tuple(found)


def select(credentials: Iterable[Credential], host: str) -> tuple[Credential, ...]:
    """The credentials that apply to normalized `host` (by name), in spec order.

    Two credentials setting the same header on one host: the first wins (see
    :func:`render`).
    """
    return tuple(c for c in credentials if name_matches(c.hosts, host))


def render(credentials: Iterable[Credential], values: Mapping[str, bytes]) -> dict[str, str]:
    """The headers to set: ``{header (as spelled in the spec): valuePrefix + value}``.

    Args:
        credentials: the host's credentials (:func:`select`).
        values: the secret value of each credential, by credential name; surrounding
            whitespace (a trailing newline from ``echo``) is stripped.

    Raises:
        CredentialError: a header name that is not a token, a value missing from
            `values`, not UTF-8, or holding CR, LF or NUL (header injection).

    """
    headers: dict[str, str] = {}
    seen: set[str] = set()
    for credential in credentials:
        if credential.header.lower() in seen:
            continue
        if not _TOKEN.fullmatch(credential.header):
            raise CredentialError(f"credential {credential.name}: bad header name")
        raw = values.get(credential.name)
        if raw is None:
            raise CredentialError(f"credential {credential.name}: no value")
        try:
            value = credential.value_prefix + raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise CredentialError(f"credential {credential.name}: not UTF-8") from exc
        if any(ch in value for ch in "\r\n\0"):
            raise CredentialError(f"credential {credential.name}: CR, LF or NUL in the value")
        seen.add(credential.header.lower())
        headers[credential.header] = value
    return headers


def apply_headers(
    headers: list[tuple[str, str]], added: Mapping[str, str]
) -> list[tuple[str, str]]:
    """`headers` (a request's, in order) with every field named in `added` replaced.

    Each name of `added` is removed (any case, every occurrence: whatever the agent
    sent, the placeholder included) and appended once with the gateway's value.
    """
    names = {name.lower() for name in added}
    kept = [(name, value) for name, value in headers if name.lower() not in names]
    return kept + list(added.items())
