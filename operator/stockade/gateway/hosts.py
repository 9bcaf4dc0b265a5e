"""Host patterns of ``spec.network.hosts``: ``name[:port]``, ``*.`` only as the first label.

A pattern without a port allows ports 443 and 80. ``*.example.com`` matches every name
*below* ``example.com`` (``a.example.com``, ``a.b.example.com``), never ``example.com``
itself. Names compare case-insensitively, without a trailing dot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_PORTS: tuple[int, ...] = (443, 80)
"""The ports a pattern without ``:port`` allows."""

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class PatternError(ValueError):
    """A host pattern or host name that is not ``name[:port]`` as described above."""


def normalize_name(name: str) -> str:
    """Lower-case `name` and drop one trailing dot.

    Raises:
        PatternError: `name` is not a DNS name (labels of ``[a-z0-9-]``, 1..63 characters,
            253 in all, the last not all digits), e.g. an IP literal, an empty label or ``*``.

    """
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 253:
        raise PatternError(f"not a host name: {name!r}")
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        # An all-digit last label is an IPv4 literal (or one in disguise): no TLD is numeric.
        raise PatternError(f"not a host name: {name!r}")
    return name


def parse_port(text: str) -> int:
    """Parse a decimal TCP port 1..65535.

    Raises:
        PatternError: anything else.

    """
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise PatternError(f"not a port: {text!r}")
    return int(text)


@dataclass(frozen=True)
class HostPattern:
    """One parsed ``network.hosts`` entry.

    Attributes:
        name: the name without ``*.`` (lower case), e.g. ``github.com`` for ``*.github.com``.
        wildcard: the entry started with ``*.`` (match names strictly below `name`).
        ports: the allowed ports (:data:`DEFAULT_PORTS` when the entry has none).

    """

    name: str
    wildcard: bool
    ports: tuple[int, ...]

    def matches_name(self, host: str) -> bool:
        """Whether the normalized name `host` is this pattern's name (any port)."""
        if self.wildcard:
            return host.endswith("." + self.name)
        return host == self.name

    def matches(self, host: str, port: int) -> bool:
        """Whether the normalized name `host` on `port` is allowed by this pattern."""
        return port in self.ports and self.matches_name(host)


def parse_pattern(text: str) -> HostPattern:
    """Parse ``name[:port]`` (``*.`` allowed as the first label only).

    Raises:
        PatternError: a malformed name or port, ``*`` anywhere but a first label of its
            own (``*foo.com``, ``a.*.com``, ``*``), or an IP literal.

    """
    name, sep, port_text = text.strip().rpartition(":")
    if not sep:
        name, port_text = port_text, ""
    ports = (parse_port(port_text),) if sep else DEFAULT_PORTS
    wildcard = name.startswith("*.")
    if wildcard:
        name = name[2:]
    if "*" in name:
        raise PatternError(f"'*.' is allowed only as the first label: {text!r}")
    name = normalize_name(name)
    if wildcard and "." not in name:
        # "*.com" would allow a whole top-level domain.
        raise PatternError(f"a wildcard needs at least two labels after it: {text!r}")
    return HostPattern(name=name, wildcard=wildcard, ports=ports)


def parse_patterns(texts: Iterable[str]) -> tuple[tuple[HostPattern, ...], tuple[str, ...]]:
    """Parse every entry of `texts`.

    Returns:
        ``(patterns, rejected)``: the valid patterns, and the entries that did not parse
        (ignored: an entry the gateway cannot read allows nothing).

    """
    patterns: list[HostPattern] = []
    rejected: list[str] = []
    for text in texts:
        try:
            patterns.append(parse_pattern(text))
        except PatternError:
            rejected.append(text)
    return tuple(patterns), tuple(rejected)


def allowed(patterns: Iterable[HostPattern], host: str, port: int) -> bool:
    """Whether `host` (any case, trailing dot allowed) on `port` matches one of `patterns`.

    A `host` that is not a DNS name (an IP literal, ``*``) is never allowed.
    """
    try:
        name = normalize_name(host)
    except PatternError:
        return False
    return any(pattern.matches(name, port) for pattern in patterns)


def name_matches(entries: Iterable[str], host: str) -> bool:
    """Whether normalized `host` matches the *name* of one of `entries` (ports ignored).

    For ``credentials[].hosts``: names (a subset of ``network.hosts`` names), with or
    without ``*.`` and a port; an entry that does not parse matches nothing.
    """
    patterns, _ = parse_patterns(entries)
    return any(pattern.matches_name(host) for pattern in patterns)
