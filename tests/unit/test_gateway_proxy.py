"""The gateway end to end over loopback: a stub HTTPS upstream, static pods and Agents.

No name is resolved by DNS (an injected table maps them to 127.0.0.1 or to a private
address) and no packet leaves 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from stockade.gateway.certs import CertificateAuthority
from stockade.gateway.credentials import Credential
from stockade.gateway.proxy import source_address
from stockade.gateway.sources import AgentCredentials, StaticSource
from tests.unit.gateway_harness import (
    GATEWAY_CA,
    UPSTREAM_CA,
    Audit,
    Upstream,
    basic,
    client_context,
    connect,
    https_get,
    loopback_gateway,
    pod,
    server_context,
)

TOKEN = "token-of-demo-1"
OTHER_TOKEN = "token-of-other-1"
SECRET = b"sk-REAL-KEY-never-in-the-pod-1234567890"
PLACEHOLDER = "Bearer stockade-credential-placeholder:openai"
NAMES = ["allowed.example.test", "creds.example.test", "denied.example.test"]
TABLE = {name: "127.0.0.1" for name in NAMES} | {"private.example.test": "10.0.0.1"}


@dataclass
class Setup:
    port: int
    upstream: Upstream
    audit: Audit


@asynccontextmanager
async def running(
    allow: str = "127.0.0.1",
    extra_hosts: tuple[str, ...] = (),
    upstream_trust: CertificateAuthority = UPSTREAM_CA,
    max_connections: int = 100,
) -> AsyncIterator[Setup]:
    upstream = Upstream()
    up_server = await asyncio.start_server(
        upstream.handle, "127.0.0.1", 0, ssl=server_context(UPSTREAM_CA, NAMES)
    )
    up_port = up_server.sockets[0].getsockname()[1]
    upstream.port = up_port
    hosts = [
        f"allowed.example.test:{up_port}",
        f"creds.example.test:{up_port}",
        f"private.example.test:{up_port}",
        *extra_hosts,
    ]
    me = pod("127.0.0.1", TOKEN, hosts)
    other = pod("127.0.0.2", OTHER_TOKEN, hosts, name="other-1", agent="other")
    credential = Credential("openai", "keys", "openai", ("creds.example.test",))
    source = StaticSource(
        [me, other],
        {
            me.agent_key: AgentCredentials((credential,), {"openai": SECRET}),
            other.agent_key: AgentCredentials(),
        },
    )
    audit = Audit()
    gateway = loopback_gateway(
        source,
        TABLE,
        audit,
        allow=allow,
        trust=upstream_trust,
        head_timeout=2.0,
        max_connections=max_connections,
    )
    server = await gateway.serve("127.0.0.1", 0)
    try:
        yield Setup(server.sockets[0].getsockname()[1], upstream, audit)
    finally:
        server.close()
        up_server.close()


async def wait_for_records(audit: Audit, count: int) -> None:
    for _ in range(200):
        if len(audit.records) >= count:
            return
        await asyncio.sleep(0.01)


def test_an_allowed_host_is_tunnelled_end_to_end() -> None:
    async def main() -> None:
        async with running() as s:
            target = f"allowed.example.test:{s.upstream.port}"
            status, reader, writer = await connect(s.port, target, basic(TOKEN))
            assert status == 200
            # The client verifies the upstream's own certificate: nothing intercepted.
            assert await https_get(reader, writer, "allowed.example.test", UPSTREAM_CA) == (
                200,
                b"hello from upstream",
            )
            writer.close()
            await wait_for_records(s.audit, 1)
            record = s.audit.records[0]
            assert (record.result, record.status, record.method) == ("allowed", 200, "CONNECT")
            assert (record.namespace, record.agent, record.pod) == ("team-a", "demo", "demo-1")
            assert record.bytes_up > 0 and record.bytes_down > 0
            assert not record.credential

    asyncio.run(main())


def test_a_tunnel_whose_sni_names_another_host_is_cut() -> None:
    async def main() -> None:
        async with running() as s:
            status, reader, writer = await connect(
                s.port, f"allowed.example.test:{s.upstream.port}", basic(TOKEN)
            )
            assert status == 200
            with pytest.raises((ConnectionError, OSError, asyncio.IncompleteReadError)):
                await https_get(reader, writer, "denied.example.test", UPSTREAM_CA)
            await wait_for_records(s.audit, 1)
            assert (s.audit.records[0].result, s.audit.records[0].reason) == (
                "denied-host",
                "sni-mismatch",
            )
            assert s.upstream.requests == []

    asyncio.run(main())


def test_a_host_not_in_the_list_gets_403_and_an_audit_record() -> None:
    async def main() -> None:
        async with running() as s:
            for target in (f"denied.example.test:{s.upstream.port}", "allowed.example.test:443"):
                status, _, writer = await connect(s.port, target, basic(TOKEN))
                writer.close()
                assert status == 403
            await wait_for_records(s.audit, 2)
            assert [(r.result, r.host) for r in s.audit.records] == [
                ("denied-host", "denied.example.test"),
                ("denied-host", "allowed.example.test"),
            ]
            assert s.upstream.requests == []

    asyncio.run(main())


def test_wrong_token_wrong_source_or_no_credentials_get_407() -> None:
    async def main() -> None:
        async with running() as s:
            target = f"allowed.example.test:{s.upstream.port}"
            cases = [
                (basic("wrong"), "127.0.0.1", "bad-token"),
                # another pod's token from this pod's address: the pair must match
                (basic(OTHER_TOKEN), "127.0.0.1", "bad-token"),
                (None, "127.0.0.1", "no-credentials"),
                (basic(TOKEN), "127.0.0.3", "no-pod"),
            ]
            for auth, local, _ in cases:
                status, _, writer = await connect(s.port, target, auth, local=local)
                writer.close()
                assert status == 407
            await wait_for_records(s.audit, len(cases))
            assert [(r.result, r.reason) for r in s.audit.records] == [
                ("unauthenticated", reason) for _, _, reason in cases
            ]
            # the right token from the other pod's own address works
            status, _, writer = await connect(s.port, target, basic(OTHER_TOKEN), local="127.0.0.2")
            writer.close()
            assert status == 200

    asyncio.run(main())


def test_a_credential_host_is_intercepted_and_gets_the_real_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        async with running() as s:
            status, reader, writer = await connect(
                s.port, f"creds.example.test:{s.upstream.port}", basic(TOKEN)
            )
            assert status == 200
            # The client trusts the gateway's CA (the pod's bundle): the leaf is the gateway's.
            headers = {"Authorization": PLACEHOLDER, "X-Other": "kept"}
            reply = await https_get(
                reader, writer, "creds.example.test", GATEWAY_CA, headers, port=s.upstream.port
            )
            assert reply == (
                200,
                b"hello from upstream",
            )
            # keep-alive: a second request on the same tunnel gets the key too
            again = f"GET /again HTTP/1.1\r\nHost: creds.example.test:{s.upstream.port}\r\n\r\n"
            writer.write(again.encode())
            await writer.drain()
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            writer.close()
            await wait_for_records(s.audit, 3)
            received = [dict((k.lower(), v) for k, v in h) for h in s.upstream.requests]
            assert [r["authorization"] for r in received] == ["Bearer " + SECRET.decode()] * 2
            assert received[0]["x-other"] == "kept"
            assert all(PLACEHOLDER not in str(h) for h in s.upstream.requests)
            assert all("proxy-authorization" not in r for r in received)
            requests = [r for r in s.audit.records if r.method == "GET"]
            assert [(r.result, r.credential, r.status) for r in requests] == [
                ("intercepted", True, 200)
            ] * 2
            for record in s.audit.records:
                assert SECRET.decode() not in record.to_json()
                assert TOKEN not in record.to_json()

    asyncio.run(main())
    assert SECRET.decode() not in caplog.text
    assert TOKEN not in caplog.text


def test_inside_an_interception_another_origin_gets_no_credential() -> None:
    async def main() -> None:
        async with running() as s:
            for extra in ({"Host": "denied.example.test"}, {}):
                status, reader, writer = await connect(
                    s.port, f"creds.example.test:{s.upstream.port}", basic(TOKEN)
                )
                assert status == 200
                await writer.start_tls(
                    client_context(GATEWAY_CA), server_hostname="creds.example.test"
                )
                target = "/" if extra else "http://denied.example.test/"
                host = extra.get("Host", f"creds.example.test:{s.upstream.port}")
                writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                await writer.drain()
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 403")
                writer.close()
            assert s.upstream.requests == []
            assert [r.reason for r in s.audit.records if r.method == "GET"] == ["host-mismatch"] * 2

    asyncio.run(main())


def test_plain_http_to_a_credential_host_is_refused() -> None:
    async def main() -> None:
        async with running() as s:
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            writer.write(
                f"GET http://creds.example.test:{s.upstream.port}/ HTTP/1.1\r\n"
                f"Proxy-Authorization: {basic(TOKEN)}\r\n\r\n".encode()
            )
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 403")
            writer.close()

    asyncio.run(main())


def test_private_addresses_are_refused_unless_allow_listed() -> None:
    async def main() -> None:
        # 10.0.0.1 is never dialled: refused after resolution, allow-list or not.
        async with running() as s:
            status, _, writer = await connect(
                s.port, f"private.example.test:{s.upstream.port}", basic(TOKEN)
            )
            writer.close()
            assert status == 403
            await wait_for_records(s.audit, 1)
            assert (s.audit.records[0].result, s.audit.records[0].reason) == (
                "denied-address",
                "private",
            )
        # Without the test allow-list, 127.0.0.1 is loopback: refused.
        async with running(allow="") as s:
            status, _, writer = await connect(
                s.port, f"allowed.example.test:{s.upstream.port}", basic(TOKEN)
            )
            writer.close()
            assert status == 403
            await wait_for_records(s.audit, 1)
            assert (s.audit.records[0].result, s.audit.records[0].reason) == (
                "denied-address",
                "loopback",
            )

    asyncio.run(main())


def test_bad_requests_slow_clients_and_big_heads_get_errors_and_others_are_served() -> None:
    async def main() -> None:
        async with running() as s:
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            writer.write(b"NONSENSE\r\n\r\n")
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 400")
            writer.close()
            big_reader, big_writer = await asyncio.open_connection("127.0.0.1", s.port)
            big_writer.write(b"CONNECT a.test:443 HTTP/1.1\r\nX: " + b"a" * 40000 + b"\r\n\r\n")
            assert (await big_reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 400")
            big_writer.close()
            slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", s.port)
            slow_writer.write(b"CONNECT allowed.example.test")  # and nothing more
            # meanwhile another client is served
            status, _, writer = await connect(
                s.port, f"allowed.example.test:{s.upstream.port}", basic(TOKEN)
            )
            writer.close()
            assert status == 200
            head = await asyncio.wait_for(slow_reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 408")
            slow_writer.close()
            unknown, _, writer = await connect(s.port, "nowhere.example.test:443", basic(TOKEN))
            writer.close()
            assert unknown == 403  # not in the list, so never resolved

    asyncio.run(main())


def test_a_name_that_does_not_resolve_is_a_502() -> None:
    async def main() -> None:
        async with running(extra_hosts=("nowhere.example.test",)) as s:
            status, _, writer = await connect(s.port, "nowhere.example.test:443", basic(TOKEN))
            writer.close()
            assert status == 502

    asyncio.run(main())


def test_the_source_address_is_spelled_as_pod_ips_are() -> None:
    assert source_address(("::ffff:10.0.0.5", 1234, 0, 0)) == "10.0.0.5"
    assert source_address(("2001:db8:0::1", 1, 0, 0)) == "2001:db8::1"
    assert source_address(("10.0.0.5", 1)) == "10.0.0.5"
    assert source_address(None) == ""
    assert source_address(("not-an-ip", 1)) == ""


def test_an_upstream_the_gateway_cannot_verify_gets_no_credential() -> None:
    async def main() -> None:
        # The gateway trusts another CA than the upstream's: interception must not start.
        async with running(upstream_trust=GATEWAY_CA) as s:
            target = f"creds.example.test:{s.upstream.port}"
            status, _, writer = await connect(s.port, target, basic(TOKEN))
            writer.close()
            assert status == 502
            await wait_for_records(s.audit, 1)
            assert (s.audit.records[0].result, s.audit.records[0].reason) == (
                "upstream-error",
                "tls-failure",
            )
            assert s.upstream.requests == []

    asyncio.run(main())


def test_connections_beyond_the_limit_get_503_and_the_first_ones_keep_working() -> None:
    async def main() -> None:
        async with running(max_connections=1) as s:
            target = f"allowed.example.test:{s.upstream.port}"
            status, reader, writer = await connect(s.port, target, basic(TOKEN))
            assert status == 200
            over, _, extra = await connect(s.port, target, basic(TOKEN))
            extra.close()
            assert over == 503
            assert await https_get(
                reader, writer, "allowed.example.test", UPSTREAM_CA, port=s.upstream.port
            ) == (
                200,
                b"hello from upstream",
            )
            writer.close()

    asyncio.run(main())


def test_plain_http_to_an_allowed_host_is_forwarded_in_origin_form() -> None:
    async def main() -> None:
        plain = Upstream(body=b"plain")
        plain_server = await asyncio.start_server(plain.handle, "127.0.0.1", 0)
        plain_port = plain_server.sockets[0].getsockname()[1]
        async with running(extra_hosts=(f"allowed.example.test:{plain_port}",)) as s:
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            writer.write(
                f"POST http://allowed.example.test:{plain_port}/x?y=1 HTTP/1.1\r\n"
                f"Host: allowed.example.test:{plain_port}\r\n"
                f"Proxy-Authorization: {basic(TOKEN)}\r\n"
                "Content-Length: 3\r\n\r\nabc".encode()
            )
            await writer.drain()
            response = await reader.read()  # the gateway closes after the response
            writer.close()
            assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"plain")
            assert plain.targets == ["/x?y=1"]
            headers = dict((k.lower(), v) for k, v in plain.requests[0])
            assert "proxy-authorization" not in headers
            assert headers["connection"] == "close"
            await wait_for_records(s.audit, 1)
            record = s.audit.records[0]
            assert (record.method, record.result, record.status, record.bytes_up) == (
                "POST",
                "allowed",
                200,
                3,
            )
        plain_server.close()

    asyncio.run(main())
