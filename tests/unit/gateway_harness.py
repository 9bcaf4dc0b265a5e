"""A loopback harness for the gateway: a stub HTTPS upstream, a static source, a client.

Nothing leaves 127.0.0.0/8: names resolve through an injected resolver, the upstream
listens on 127.0.0.1 with a certificate of a test CA, and clients may bind another
loopback address to pose as another pod.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stockade.gateway.audit import AuditRecord
from stockade.gateway.certs import CertificateAuthority, generate_ca, generate_leaf_key, issue_leaf
from stockade.gateway.config import GatewayConfig
from stockade.gateway.guard import IPAddress, parse_networks
from stockade.gateway.identity import PodView, parse_hosts_annotation, token_sha256
from stockade.gateway.ledger import Ledger
from stockade.gateway.proxy import Gateway, Resolver
from stockade.gateway.sources import StaticSource
from stockade.gateway.wire import parse_head

NOW = datetime.datetime.now(datetime.UTC)
UPSTREAM_CA = generate_ca(NOW, "test upstream CA")
GATEWAY_CA = generate_ca(NOW, "test gateway CA")


def server_context(ca: CertificateAuthority, hosts: list[str]) -> ssl.SSLContext:
    """A server context presenting a leaf of `ca` for each of `hosts` (by SNI)."""
    cert, key = ca.load()
    leaf_key = generate_leaf_key()
    contexts: dict[str, ssl.SSLContext] = {}
    for host in hosts:
        chain, pem = issue_leaf(cert, key, leaf_key, host, NOW)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.NamedTemporaryFile(suffix=".pem", delete=False) as handle:
            handle.write(pem + chain)
        ctx.load_cert_chain(handle.name)
        os.unlink(handle.name)
        contexts[host] = ctx
    default = contexts[hosts[0]]

    def pick(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        if name in contexts:
            sock.context = contexts[name]

    default.sni_callback = pick
    return default


def client_context(ca: CertificateAuthority) -> ssl.SSLContext:
    """A client context trusting only `ca`."""
    return ssl.create_default_context(cadata=ca.cert_pem.decode())


@dataclass
class Upstream:
    """A stub HTTPS server: answers every request ``200`` with a fixed body, keeps heads."""

    body: bytes = b"hello from upstream"
    requests: list[list[tuple[str, str]]] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    data = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                head = parse_head(data)
                self.requests.append(head.headers)
                self.targets.append(head.start[1])
                length = int(head.get("content-length") or 0)
                if length:
                    await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(self.body), self.body)
                )
                await writer.drain()
        finally:
            writer.close()


def resolver_for(table: Mapping[str, str]) -> Resolver:
    """A resolver answering from `table` (name -> address); unknown names fail like DNS."""

    async def resolve(host: str, port: int) -> list[IPAddress]:
        if host not in table:
            raise OSError(f"no such host: {host}")
        return [ipaddress.ip_address(table[host])]

    return resolve


def pod(
    ip: str, token: str, hosts: list[str], name: str = "demo-1", agent: str = "demo"
) -> PodView:
    return PodView(
        namespace="team-a",
        name=name,
        ip=ip,
        phase="Running",
        deleting=False,
        agent_name=agent,
        agent_uid=f"uid-{agent}",
        token_sha256=token_sha256(token),
        hosts=parse_hosts_annotation(json.dumps(hosts)),
    )


def basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"stockade:{token}".encode()).decode()


async def connect(
    gateway_port: int, target: str, auth: str | None, local: str = "127.0.0.1"
) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    """Send ``CONNECT target`` from `local`; returns the status and the open streams."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway_port, local_addr=(local, 0))
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if auth:
        lines.append(f"Proxy-Authorization: {auth}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    head = parse_head(await reader.readuntil(b"\r\n\r\n"))
    return int(head.start[1]), reader, writer


async def https_get(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    trust: CertificateAuthority,
    headers: Mapping[str, str] | None = None,
    port: int = 443,
) -> tuple[int, bytes]:
    """TLS over an established tunnel, then ``GET /`` with `headers`; returns status and body.

    The Host header names `host`, with `port` unless it is 443 (as clients send it).
    """
    await writer.start_tls(client_context(trust), server_hostname=host)
    lines = ["GET /v1/models HTTP/1.1", f"Host: {host}" if port == 443 else f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    head = parse_head(await reader.readuntil(b"\r\n\r\n"))
    body = await reader.readexactly(int(head.get("content-length") or 0))
    return int(head.start[1]), body


@dataclass
class Audit:
    """An audit sink keeping the records."""

    records: list[AuditRecord] = field(default_factory=list)

    def __call__(self, record: AuditRecord) -> None:
        self.records.append(record)


def loopback_gateway(
    source: StaticSource,
    table: Mapping[str, str],
    audit: Callable[[AuditRecord], None],
    *,
    allow: str = "127.0.0.1",
    trust: CertificateAuthority = UPSTREAM_CA,
    ledger: Ledger | None = None,
    **settings: Any,
) -> Gateway:
    """A :class:`Gateway` on loopback: pods and credentials from `source`, names resolved
    by `table` (name -> address), upstreams trusted by `trust` (the test upstream CA), the
    addresses of `allow` let through the guard, :data:`GATEWAY_CA` as its CA; `settings`
    override :class:`GatewayConfig` fields (e.g. ``head_timeout=2.0``)."""
    config = replace(GatewayConfig(), allow_addresses=parse_networks(allow), **settings)
    return Gateway(
        config,
        source,
        source,
        GATEWAY_CA,
        resolver=resolver_for(table),
        upstream_tls=client_context(trust),
        audit=audit,
        ledger=ledger,
    )
