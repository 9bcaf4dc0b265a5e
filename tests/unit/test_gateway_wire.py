from __future__ import annotations

import datetime
import ssl

import pytest
from cryptography import x509

from stockade.gateway.certs import ca_bundle, generate_ca, generate_leaf_key, issue_leaf
from stockade.gateway.wire import (
    WireError,
    client_hello_sni,
    content_length,
    handshake_complete,
    is_chunked,
    parse_absolute_uri,
    parse_authority,
    parse_head,
    record_length,
    serialize_head,
)

NOW = datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC)


def client_hello(server_hostname: str | None) -> bytes:
    """The first flight of a real TLS client (Python's ssl): TLS records."""
    ctx = ssl.create_default_context()
    if server_hostname is None:
        ctx.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def handshake_payload(records: bytes) -> bytes:
    payload, pos = b"", 0
    while pos < len(records) and not handshake_complete(payload):
        size = record_length(records[pos : pos + 5])
        payload += records[pos + 5 : pos + 5 + size]
        pos += 5 + size
    return payload


def test_sni_of_a_real_client_hello() -> None:
    assert client_hello_sni(handshake_payload(client_hello("API.example.com"))) == "api.example.com"
    assert client_hello_sni(handshake_payload(client_hello(None))) is None


def test_truncated_or_non_tls_data_raises() -> None:
    payload = handshake_payload(client_hello("a.example.com"))
    with pytest.raises(WireError):
        client_hello_sni(payload[:40])
    with pytest.raises(WireError):
        record_length(b"GET /")
    with pytest.raises(WireError):
        client_hello_sni(b"\x02" + payload[1:])


def test_parse_and_serialize_a_head() -> None:
    head = parse_head(b"CONNECT a.com:443 HTTP/1.1\r\nHost: a.com:443\r\nX-A:  1 \r\n\r\n")
    assert head.start == ("CONNECT", "a.com:443", "HTTP/1.1")
    assert head.get("host") == "a.com:443"
    assert head.get("x-a") == "1"
    assert parse_head(serialize_head(head.start, head.headers)) == head


@pytest.mark.parametrize(
    "data",
    [
        b"\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        b"GET / HTTP/1.1\r\nA : b\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 101 + b"\r\n",
    ],
)
def test_malformed_heads_raise(data: bytes) -> None:
    with pytest.raises(WireError):
        parse_head(data)


def test_authorities_and_absolute_uris() -> None:
    assert parse_authority("API.a.com:8443") == ("api.a.com", 8443)
    assert parse_authority("a.com", 80) == ("a.com", 80)
    assert parse_absolute_uri("http://a.com/x?y=1") == ("a.com", 80, "/x?y=1")
    assert parse_absolute_uri("http://a.com:8080") == ("a.com", 8080, "/")
    for bad in ("10.0.0.1:443", "[::1]:443", "a.com", "a.com:0", "a b:443"):
        with pytest.raises(WireError):
            parse_authority(bad)
    for bad in ("https://a.com/", "/path", "http://u:p@a.com/", "http://127.0.0.1/"):
        with pytest.raises(WireError):
            parse_absolute_uri(bad)


def test_body_framing() -> None:
    assert content_length(parse_head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n")) == 5
    assert content_length(parse_head(b"GET / HTTP/1.1\r\n\r\n")) is None
    with pytest.raises(WireError):
        content_length(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
        )
    with pytest.raises(WireError):
        content_length(parse_head(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"))
    assert is_chunked(parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"))
    assert not is_chunked(
        parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")
    )


def test_a_leaf_is_signed_by_the_ca_and_names_the_host_only() -> None:
    ca = generate_ca(NOW)
    ca_cert, ca_key = ca.load()
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    chain, _key = issue_leaf(ca_cert, ca_key, generate_leaf_key(), "api.example.com", NOW)
    leaf = x509.load_pem_x509_certificates(chain)[0]
    leaf.verify_directly_issued_by(ca_cert)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.example.com"]
    assert leaf.not_valid_after_utc - NOW <= datetime.timedelta(days=7)
    bundle = ca_bundle(b"ROOTS", ca.cert_pem)
    assert bundle.startswith(b"ROOTS\n") and bundle.endswith(ca.cert_pem)


def test_leaf_contexts_are_cached_bounded_and_reissued_after_a_day() -> None:
    from stockade.gateway.leaves import LeafCache

    now = [NOW]
    cache = LeafCache(generate_ca(NOW), size=2, now=lambda: now[0])
    first = cache.context("a.example.com")
    assert cache.context("a.example.com") is first
    cache.context("b.example.com")
    cache.context("c.example.com")  # evicts a (least recently used)
    assert cache.context("a.example.com") is not first
    again = cache.context("a.example.com")
    now[0] = NOW + datetime.timedelta(days=1, seconds=1)
    assert cache.context("a.example.com") is not again
