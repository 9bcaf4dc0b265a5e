"""The gateway's asyncio HTTP proxy: CONNECT tunnels, interception on credential hosts, http://.

The request path (docs/architecture.md, "The egress gateway"):

0. more than ``max_connections`` client connections open: 503;
1. read the head (bounded in size and time: 400 / 408);
2. identify the caller (:func:`stockade.gateway.identity.identify`: 407);
3. check the target against the pod's hosts (403 ``denied-host``);
4. read the owning Agent's credentials (502 when unavailable);
5. resolve the name with the injected resolver and keep only the addresses the
   :class:`~stockade.gateway.guard.AddressGuard` permits (403 ``denied-address``);
6. dial (502 / 504), then either tunnel (SNI checked against the name), or, on a
   credential host, terminate TLS with a leaf of the gateway CA and forward each request
   over verified TLS with the credential header set; plain ``http://`` is forwarded
   with ``Connection: close`` and never gets a credential (403 ``credential-needs-tls``).

One audit record per request (:class:`~stockade.gateway.audit.AuditRecord`); a failure in
one connection never touches another.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from stockade.gateway import metrics
from stockade.gateway.audit import AuditRecord
from stockade.gateway.certs import CertificateAuthority
from stockade.gateway.config import GatewayConfig
from stockade.gateway.credentials import CredentialError, apply_headers, render, select
from stockade.gateway.guard import IPAddress
from stockade.gateway.hosts import allowed
from stockade.gateway.identity import PodView, Refusal, identify
from stockade.gateway.leaves import LeafCache
from stockade.gateway.ledger import Ledger
from stockade.gateway.metering import account, meter_for
from stockade.gateway.relay import (
    Closed,
    copy_body,
    pipe,
    read_client_hello,
    read_head,
    request_framing,
    response_framing,
)
from stockade.gateway.sources import AgentUnavailable, CredentialSource, PodSource
from stockade.gateway.usage import model_api
from stockade.gateway.wire import (
    Head,
    WireError,
    client_hello_sni,
    parse_absolute_uri,
    parse_authority,
    parse_head,
    serialize_head,
)

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""``(host, port) -> addresses``; raises OSError when the name does not resolve."""
AuditSink = Callable[[AuditRecord], None]

AUDIT_LOG = logging.getLogger("stockade.gateway.audit")
log = logging.getLogger("stockade.gateway")
HOP_BY_HOP_PROXY = ("proxy-authorization", "proxy-connection")
METERED_ENCODING = "gzip, identity"
"""``Accept-Encoding`` sent upstream on metered model API requests."""
REASONS = {
    200: "Connection established",
    400: "Bad Request",
    403: "Forbidden",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Resolve `host` with the system resolver (``getaddrinfo``), addresses in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address not in found:
            found.append(address)
    return found


def source_address(peer: object) -> str:
    """The text form of a peer address as ``status.podIP`` spells it ("" when unknown).

    An IPv4-mapped IPv6 peer (``::ffff:10.0.0.5``, a dual-stack socket) is its IPv4
    address, and IPv6 is compressed, so the pod lookup compares like with like.
    """
    if not isinstance(peer, tuple) or not peer:
        return ""
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def log_audit(record: AuditRecord) -> None:
    """The default audit sink: one JSON line at INFO on ``stockade.gateway.audit``."""
    AUDIT_LOG.info(record.to_json())


class Refused(Exception):
    """Answer `status` to the client and audit `result`/`reason`."""

    def __init__(self, status: int, result: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.result, self.reason = status, result, reason


@dataclass
class Exchange:
    """What one request's audit record will say; filled in as the request goes."""

    record: AuditRecord
    started: float = field(default_factory=time.monotonic)


class Gateway:
    """The proxy. Every collaborator is injected; :meth:`serve` opens the listening socket.

    Args:
        config: the settings (timeouts in seconds, sizes in bytes, the address guard).
        pods: who may call.
        agents: their Agents' credentials.
        ca: the CA that signs the interception leaves.
        resolver: name resolution (tests map names to 127.0.0.1).
        upstream_tls: verifies upstream servers when intercepting (default: the system's
            roots via ``ssl.create_default_context()``).
        audit: the audit sink (default :func:`log_audit`).
        ledger: per-Agent measured model usage (default: a new, empty one).

    """

    def __init__(
        self,
        config: GatewayConfig,
        pods: PodSource,
        agents: CredentialSource,
        ca: CertificateAuthority,
        resolver: Resolver = system_resolver,
        upstream_tls: ssl.SSLContext | None = None,
        audit: AuditSink = log_audit,
        ledger: Ledger | None = None,
    ) -> None:
        self.config = config
        self.guard = config.guard
        self.pods, self.agents, self.resolver, self.audit = pods, agents, resolver, audit
        self.upstream_tls = upstream_tls or ssl.create_default_context()
        self._leaves = LeafCache(ca)
        self._open = 0
        self.ledger = ledger if ledger is not None else Ledger()

    async def serve(self, host: str = "", port: int | None = None) -> asyncio.Server:
        """Listen on `host`:`port` (default: every address, ``config.port``)."""
        return await asyncio.start_server(
            self.handle,
            host or None,
            self.config.port if port is None else port,
            limit=self.config.max_head_bytes,
        )

    # --- one client connection ----------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection (one request, or one tunnel); never raises."""
        metrics.CONNECTIONS.inc()
        self._open += 1
        source = source_address(writer.get_extra_info("peername"))
        exchange = Exchange(AuditRecord("", "", "", source, "", "", 0, 0, ""))
        try:
            if self._open > self.config.max_connections:
                raise Refused(503, "overloaded", "max-connections")
            await self._serve(reader, writer, exchange)
        except Refused as refused:
            self._finish(
                exchange, status=refused.status, result=refused.result, reason=refused.reason
            )
            await answer(writer, refused.status)
        except (Closed, ConnectionError, OSError, TimeoutError, ssl.SSLError) as exc:
            if exchange.record.result == "":
                self._finish(
                    exchange, status=502, result="upstream-error", reason=type(exc).__name__
                )
        except Exception:  # the gateway keeps serving everyone else
            log.exception("gateway: unexpected error")
            if exchange.record.result == "":
                self._finish(exchange, status=502, result="upstream-error", reason="internal")
        finally:
            self._open -= 1
            metrics.CONNECTIONS.dec()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, exchange: Exchange
    ) -> None:
        try:
            data = await read_head(reader, self.config.head_timeout)
        except TimeoutError as exc:
            raise Refused(408, "bad-request", "slow-head") from exc
        except WireError as exc:
            raise Refused(400, "bad-request", "head-too-large") from exc
        if data is None:
            return
        try:
            head = parse_head(data)
        except WireError as exc:
            raise Refused(400, "bad-request", "bad-head") from exc
        method, target, _ = head.start
        exchange.record = replace(exchange.record, method=method)
        caller = identify(
            self.pods.pods_at(exchange.record.source),
            exchange.record.source,
            head.get("proxy-authorization"),
        )
        if isinstance(caller, Refusal):
            if caller.pod is not None:
                exchange.record = replace(
                    exchange.record, namespace=caller.pod.namespace, pod=caller.pod.name
                )
            raise Refused(407, "unauthenticated", caller.reason)
        exchange.record = replace(
            exchange.record, namespace=caller.namespace, agent=caller.agent_name, pod=caller.name
        )
        try:
            if method == "CONNECT":
                host, port = parse_authority(target)
                origin = ""
            else:
                host, port, origin = parse_absolute_uri(target)
        except WireError as exc:
            raise Refused(400, "bad-request", "bad-target") from exc
        exchange.record = replace(exchange.record, host=host, port=port)
        if not allowed(caller.hosts, host, port):
            raise Refused(403, "denied-host", "not-in-hosts")
        try:
            agent = await self.agents.credentials_for(caller)
        except AgentUnavailable as exc:
            metrics.AGENT_READS.labels(exc.reason).inc()
            raise Refused(502, "upstream-error", exc.reason) from exc
        chosen = select(agent.credentials, host)
        if chosen and method != "CONNECT":
            raise Refused(403, "denied-host", "credential-needs-tls")
        addresses = await self._resolve(host, port)
        if method != "CONNECT":
            await self._forward_http(reader, writer, head, origin, addresses, exchange)
        elif chosen:
            try:
                added = render(chosen, agent.values)
            except CredentialError as exc:
                log.warning("gateway: %s/%s: %s", caller.namespace, caller.agent_name, exc)
                raise Refused(502, "upstream-error", "credential-error") from exc
            await self._intercept(reader, writer, caller, host, addresses, added, exchange)
        else:
            await self._tunnel(reader, writer, host, addresses, exchange)

    # --- the steps ----------------------------------------------------------------------

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            found = await asyncio.wait_for(self.resolver(host, port), self.config.connect_timeout)
        except TimeoutError as exc:
            raise Refused(504, "upstream-error", "dns-timeout") from exc
        except OSError as exc:
            raise Refused(502, "upstream-error", "dns-failure") from exc
        permitted, reasons = self.guard.permitted(found)
        if not permitted:
            raise Refused(403, "denied-address", reasons[0] if reasons else "no-address")
        return permitted

    async def _dial(
        self,
        addresses: list[IPAddress],
        port: int,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        last: Exception | None = None
        for address in addresses:
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(
                        str(address),
                        port,
                        ssl=tls,
                        server_hostname=server_hostname,
                        limit=self.config.max_head_bytes,
                    ),
                    self.config.connect_timeout,
                )
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                last = exc
        reason = "tls-failure" if isinstance(last, ssl.SSLError) else "connect-failure"
        status = 504 if isinstance(last, TimeoutError) else 502
        raise Refused(status, "upstream-error", reason)

    async def _tunnel(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: str,
        addresses: list[IPAddress],
        exchange: Exchange,
    ) -> None:
        up_reader, up_writer = await self._dial(addresses, exchange.record.port)
        try:
            await answer(writer, 200, close=False)
            hello = await read_client_hello(reader, self.config.head_timeout)
            try:
                sni = client_hello_sni(hello[1])
            except WireError:
                sni = None
            if sni != host:
                # Past the 200 no status can be sent: the record says why it closed.
                self._finish(exchange, status=403, result="denied-host", reason="sni-mismatch")
                return
            up_writer.write(hello[0])
            await up_writer.drain()
            up, down = await pipe(reader, writer, up_reader, up_writer, self.config.idle_timeout)
            self._finish(exchange, status=200, result="allowed", up=up + len(hello[0]), down=down)
        finally:
            up_writer.close()

    async def _intercept(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        caller: PodView,
        host: str,
        addresses: list[IPAddress],
        added: dict[str, str],
        exchange: Exchange,
    ) -> None:
        upstream_tls = self.upstream_tls
        up_reader, up_writer = await self._dial(addresses, exchange.record.port, upstream_tls, host)
        try:
            await answer(writer, 200, close=False)
            try:
                await writer.start_tls(self._leaves.context(host))
            except (ssl.SSLError, OSError, ConnectionError):
                self._finish(
                    exchange, status=200, result="intercepted", reason="client-tls-failure"
                )
                return
            self._finish(exchange, status=200, result="intercepted", reason="tunnel")
            while await self._intercept_one(
                reader, writer, up_reader, up_writer, host, added, exchange, caller.agent_uid
            ):
                pass
        finally:
            up_writer.close()

    async def _intercept_one(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        host: str,
        added: dict[str, str],
        exchange: Exchange,
        agent_uid: str = "",
    ) -> bool:
        """Forward one request inside an intercepted tunnel; False when the connection ends.

        On a model API (:data:`stockade.gateway.usage.MODEL_APIS`) a copy of the response
        body goes through a :class:`~stockade.gateway.usage.UsageMeter`; the counts go to
        the audit record, the metrics and the ledger under `agent_uid`.
        """
        base = exchange.record
        try:
            data = await read_head(reader, self.config.idle_timeout)
        except (TimeoutError, WireError, Closed):
            return False
        if data is None:
            return False
        started = time.monotonic()
        try:
            head = parse_head(data)
            framing = request_framing(head)
        except WireError:
            await answer(writer, 400)
            return False
        method, target, version = head.start
        if not _same_origin(head, target, host, base.port):
            # The credential goes only to the name it is for: a Host header or an
            # absolute URI naming another origin (a shared front end would route it
            # there) is refused.
            self._emit(
                replace(
                    base, method=method, status=403, result="denied-host", reason="host-mismatch"
                ),
                started,
            )
            await answer(writer, 403)
            return False
        headers = [(n, v) for n, v in head.headers if n.lower() not in HOP_BY_HOP_PROXY]
        headers = apply_headers(headers, added)
        api = model_api(host, target)
        if api is not None:
            # The meter decodes gzip only: a metered request may not ask for br or zstd
            # (an agent could otherwise hide its usage behind a coding the meter skips).
            headers = apply_headers(headers, {"Accept-Encoding": METERED_ENCODING})
        up_writer.write(serialize_head((method, target, version), headers))
        up = await copy_body(reader, up_writer, framing, self.config.idle_timeout)
        response_data = await read_head(up_reader, self.config.idle_timeout)
        if response_data is None:
            raise Closed("upstream closed")
        response = parse_head(response_data)
        writer.write(response_data)
        meter = meter_for(api, response)
        down = await copy_body(
            up_reader,
            writer,
            response_framing(response, method),
            self.config.idle_timeout,
            meter.feed if meter is not None else None,
        )
        status = int(response.start[1]) if response.start[1].isdigit() else 0
        metrics.CREDENTIALS_ADDED.inc()
        record = replace(
            base,
            method=method,
            status=status,
            result="intercepted",
            reason="",
            bytes_up=up + len(data),
            bytes_down=down + len(response_data),
            credential=True,
        )
        record = account(api, meter, self.ledger, agent_uid, record)
        self._emit(record, started)
        if status == 101:
            await pipe(reader, writer, up_reader, up_writer, self.config.idle_timeout)
            return False
        return (
            not _closes(head)
            and not _closes(response)
            and response_framing(response, method)[0] != "eof"
        )

    async def _forward_http(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        head: Head,
        origin: str,
        addresses: list[IPAddress],
        exchange: Exchange,
    ) -> None:
        try:
            framing = request_framing(head)
        except WireError as exc:
            raise Refused(400, "bad-request", "bad-framing") from exc
        up_reader, up_writer = await self._dial(addresses, exchange.record.port)
        try:
            headers = [
                (n, v)
                for n, v in head.headers
                if n.lower() not in (*HOP_BY_HOP_PROXY, "connection")
            ]
            headers.append(("Connection", "close"))
            up_writer.write(serialize_head((head.start[0], origin, head.start[2]), headers))
            up = await copy_body(reader, up_writer, framing, self.config.idle_timeout)
            response_data = await read_head(up_reader, self.config.idle_timeout)
            if response_data is None:
                raise Refused(502, "upstream-error", "empty-response")
            response = parse_head(response_data)
            writer.write(response_data)
            down = await copy_body(
                up_reader,
                writer,
                response_framing(response, head.start[0]),
                self.config.idle_timeout,
            )
            status = int(response.start[1]) if response.start[1].isdigit() else 0
            self._finish(
                exchange, status=status, result="allowed", up=up, down=down + len(response_data)
            )
        finally:
            up_writer.close()

    # --- answers and records --------------------------------------------------------------

    def _finish(
        self,
        exchange: Exchange,
        *,
        status: int,
        result: str,
        reason: str = "",
        up: int = 0,
        down: int = 0,
    ) -> None:
        exchange.record = replace(
            exchange.record,
            status=status,
            result=result,
            reason=reason,
            bytes_up=up,
            bytes_down=down,
        )
        self._emit(exchange.record, exchange.started)

    def _emit(self, record: AuditRecord, started: float) -> None:
        duration = time.monotonic() - started
        record = replace(record, duration_seconds=duration)
        metrics.REQUESTS.labels(record.result).inc()
        metrics.DURATION.observe(duration)
        metrics.BYTES.labels("up").inc(record.bytes_up)
        metrics.BYTES.labels("down").inc(record.bytes_down)
        self.audit(record)


async def answer(writer: asyncio.StreamWriter, status: int, close: bool = True) -> None:
    """Write a bodiless answer `status` (with ``Proxy-Authenticate`` on a 407); never raises."""
    headers = [("Content-Length", "0")] if status != 200 else []
    if status == 407:
        headers.append(("Proxy-Authenticate", 'Basic realm="stockade"'))
    if close and status != 200:
        headers.append(("Connection", "close"))
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.write(serialize_head(("HTTP/1.1", str(status), REASONS.get(status, "")), headers))
        await writer.drain()


def _same_origin(head: Head, target: str, host: str, port: int) -> bool:
    """Whether a request inside an intercepted tunnel to `host`:`port` names only that origin.

    The target must be origin-form (``/...``, or ``*`` for OPTIONS) and every ``Host``
    header must be `host` (with `port`, or without it when `port` is 443).
    """
    if not (target.startswith("/") or (target == "*" and head.start[0] == "OPTIONS")):
        return False
    values = head.get_all("host")
    if len(values) != 1:
        return False
    try:
        return parse_authority(values[0], 443) == (host, port)
    except WireError:
        return False


def _closes(head: Head) -> bool:
    return any(
        token.strip().lower() == "close"
        for value in head.get_all("connection")
        for token in value.split(",")
    )
