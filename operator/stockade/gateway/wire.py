"""HTTP/1.1 message heads and the TLS ClientHello's server name: parsing only, no I/O.

Heads are bounded by the caller (it reads at most ``max_head_bytes`` up to the blank
line); every parser here raises :class:`WireError` (a 400) on anything malformed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from stockade.gateway.hosts import PatternError, normalize_name, parse_port

MAX_HEADERS = 100


class WireError(ValueError):
    """A malformed request or response head, authority or ClientHello."""


@dataclass(frozen=True)
class Head:
    """A parsed request or response head.

    Attributes:
        start: the three parts of the start line: ``(method, target, version)`` for a
            request, ``(version, status, reason)`` for a response.
        headers: ``(name, value)`` pairs in order, names as sent.

    """

    start: tuple[str, str, str]
    headers: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        """The first value of header `name` (any case), or None."""
        lowered = name.lower()
        return next((v for n, v in self.headers if n.lower() == lowered), None)

    def get_all(self, name: str) -> list[str]:
        """Every value of header `name` (any case), in order."""
        lowered = name.lower()
        return [v for n, v in self.headers if n.lower() == lowered]


def parse_head(data: bytes) -> Head:
    """Parse a head (start line and header fields, ending in CRLF CRLF or LF LF).

    Raises:
        WireError: not ISO-8859-1 text, a start line without three parts, a header line
            without ``:`` or with whitespace before it, obsolete line folding, more than
            :data:`MAX_HEADERS` fields.

    """
    text = data.decode("latin-1")
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise WireError("empty head")
    parts = lines[0].split(" ", 2)
    if len(parts) != 3 or not all(parts[:2]):
        raise WireError("bad start line")
    if len(lines) - 1 > MAX_HEADERS:
        raise WireError("too many header fields")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or line[0] in " \t":
            raise WireError("bad header line")
        if any(ch in value for ch in "\r\0"):
            raise WireError("bad header value")
        headers.append((name, value.strip()))
    return Head(start=(parts[0], parts[1], parts[2]), headers=headers)


def serialize_head(start: tuple[str, str, str], headers: list[tuple[str, str]]) -> bytes:
    """The wire form of a head: start line, fields, blank line (CRLF throughout)."""
    lines = [" ".join(start), *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_authority(authority: str, default_port: int | None = None) -> tuple[str, int]:
    """Parse ``host:port`` (a CONNECT target, a Host header) into a normalized name and port.

    Raises:
        WireError: no port and no `default_port`, a bad port, or a host that is not a DNS
            name (IP literals are refused: the gateway allows names only).

    """
    host, sep, port_text = authority.rpartition(":")
    if not sep or "]" in port_text:
        host, port_text = authority, ""
    if host.startswith("["):
        raise WireError("IP literals are not allowed")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise WireError("IP literals are not allowed")
    try:
        port = parse_port(port_text) if port_text else default_port
        if port is None:
            raise WireError("no port")
        return normalize_name(host), port
    except PatternError as exc:
        raise WireError(str(exc)) from exc


def parse_absolute_uri(target: str) -> tuple[str, int, str]:
    """Parse an absolute-form request target ``http://host[:port]/path?query``.

    Returns:
        ``(host, port, origin-form target)``, the latter ``/`` when the path is empty.

    Raises:
        WireError: not ``http://`` (``https://`` goes through CONNECT), user info, or a
            bad authority.

    """
    parts = urlsplit(target)
    if parts.scheme.lower() != "http" or not parts.netloc:
        raise WireError("only http:// absolute URIs (use CONNECT for TLS)")
    if "@" in parts.netloc:
        raise WireError("user info in the URI")
    host, port = parse_authority(parts.netloc, 80)
    origin = parts.path or "/"
    if parts.query:
        origin += "?" + parts.query
    return host, port, origin


def content_length(head: Head) -> int | None:
    """The ``Content-Length`` of `head`, or None if absent.

    Raises:
        WireError: several different values or a non-decimal one (request smuggling).

    """
    values = {v.strip() for value in head.get_all("content-length") for v in value.split(",")}
    if not values:
        return None
    if len(values) > 1 or not all(v.isdigit() for v in values):
        raise WireError("bad Content-Length")
    return int(values.pop())


def is_chunked(head: Head) -> bool:
    """Whether the last transfer coding of `head` is ``chunked``.

    A request whose ``Transfer-Encoding`` ends in anything else has no delimitable body
    (the caller answers 400).
    """
    codings = [c.strip().lower() for v in head.get_all("transfer-encoding") for c in v.split(",")]
    return bool(codings) and codings[-1] == "chunked"


# --- TLS ClientHello (RFC 8446 4.1.2, RFC 6066 3) ---------------------------------------

TLS_HANDSHAKE = 0x16
CLIENT_HELLO = 0x01
SERVER_NAME_EXTENSION = 0x0000
MAX_CLIENT_HELLO = 64 * 1024


def record_length(header: bytes) -> int:
    """The payload length of the TLS record whose 5-byte header is `header`.

    Raises:
        WireError: not a handshake record.

    """
    if len(header) != 5 or header[0] != TLS_HANDSHAKE or header[1] != 3:
        raise WireError("not a TLS handshake")
    return int.from_bytes(header[3:5], "big")


def handshake_complete(payload: bytes) -> bool:
    """Whether `payload` (handshake records' payloads concatenated) holds a whole message."""
    return len(payload) >= 4 and len(payload) >= 4 + int.from_bytes(payload[1:4], "big")


def client_hello_sni(payload: bytes) -> str | None:
    """The server name of a ClientHello handshake message, or None when it names none.

    Args:
        payload: the handshake message (type, 3-byte length, body), e.g. the
            concatenated payloads of the first TLS records.

    Raises:
        WireError: not a ClientHello, or truncated.

    """
    if not handshake_complete(payload) or payload[0] != CLIENT_HELLO:
        raise WireError("not a ClientHello")
    body = payload[4 : 4 + int.from_bytes(payload[1:4], "big")]
    try:
        pos = 2 + 32  # version, random
        pos += 1 + body[pos]  # session id
        pos += 2 + int.from_bytes(body[pos : pos + 2], "big")  # cipher suites
        pos += 1 + body[pos]  # compression methods
        if pos == len(body):
            return None
        end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
        pos += 2
        while pos + 4 <= end:
            kind = int.from_bytes(body[pos : pos + 2], "big")
            size = int.from_bytes(body[pos + 2 : pos + 4], "big")
            data = body[pos + 4 : pos + 4 + size]
            if len(data) != size:
                raise WireError("truncated extension")
            if kind == SERVER_NAME_EXTENSION:
                # server_name_list: 2-byte length, then (type, 2-byte length, name)*
                if len(data) < 5 or data[2] != 0:
                    raise WireError("bad server_name extension")
                name_len = int.from_bytes(data[3:5], "big")
                name = data[5 : 5 + name_len]
                if len(name) != name_len:
                    raise WireError("truncated server name")
                return name.decode("ascii").lower().rstrip(".")
            pos += 4 + size
    except (IndexError, UnicodeDecodeError) as exc:
        raise WireError("truncated ClientHello") from exc
    return None
