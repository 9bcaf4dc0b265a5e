"""Metering end to end over loopback: the agent gets the model API's bytes unchanged, and
the audit record, the counters and the ledger get the counts read from them."""

from __future__ import annotations

import asyncio
import gzip
import json

from stockade.gateway import metrics
from stockade.gateway.credentials import Credential
from stockade.gateway.ledger import Ledger
from stockade.gateway.sources import AgentCredentials, StaticSource
from stockade.gateway.wire import parse_head
from tests.unit.gateway_harness import (
    GATEWAY_CA,
    UPSTREAM_CA,
    Audit,
    basic,
    client_context,
    connect,
    loopback_gateway,
    pod,
    server_context,
)

TOKEN = "token-of-meter-1"
NAMES = ["api.openai.com", "api.anthropic.com"]
SSE = (
    b'event: message_start\r\ndata: {"type":"message_start","message":{"usage":'
    b'{"input_tokens":21,"output_tokens":1}}}\r\n\r\n'
    b'event: content_block_delta\r\ndata: {"type":"content_block_delta","delta":'
    b'{"type":"text_delta","text":"hi"}}\r\n\r\n'
    b'event: message_delta\r\ndata: {"type":"message_delta","usage":{"output_tokens":8}}'
    b"\r\n\r\n"
)
JSON = json.dumps({"usage": {"prompt_tokens": 13, "completion_tokens": 5}}).encode()


def chunked(body: bytes, size: int) -> bytes:
    out = b""
    for at in range(0, len(body), size):
        piece = body[at : at + size]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    return out + b"0\r\n\r\n"


RESPONSES = {
    "/v1/messages": b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n" + chunked(SSE, 7),
    "/v1/chat/completions": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
    % (len(gzip.compress(JSON)), gzip.compress(JSON)),
    "/v1/models": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(JSON), JSON),
}


SEEN: list[tuple[str, str | None]] = []


async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = parse_head(await reader.readuntil(b"\r\n\r\n"))
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            SEEN.append((head.start[1], head.get("accept-encoding")))
            await reader.readexactly(int(head.get("content-length") or 0))
            writer.write(RESPONSES[head.start[1]])
            await writer.drain()
    finally:
        writer.close()


async def post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int, path: str
) -> bytes:
    body = b'{"model":"m"}'
    writer.write(
        b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nAccept-Encoding: br, zstd\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (path.encode(), host.encode(), port, len(body), body)
    )
    await writer.drain()
    expected = RESPONSES[path]
    return await reader.readexactly(len(expected))


def value(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_model_api_responses_are_metered_and_reach_the_agent_unchanged() -> None:
    before_in = value(
        "stockade_gateway_model_tokens_total", {"provider": "anthropic", "kind": "input"}
    )
    before_out = value(
        "stockade_gateway_model_tokens_total", {"provider": "openai", "kind": "output"}
    )

    async def main() -> tuple[Audit, Ledger]:
        up_server = await asyncio.start_server(
            upstream, "127.0.0.1", 0, ssl=server_context(UPSTREAM_CA, NAMES)
        )
        up_port = up_server.sockets[0].getsockname()[1]
        me = pod("127.0.0.1", TOKEN, [f"{n}:{up_port}" for n in NAMES], agent="meter")
        creds = (
            Credential("openai", "keys", "openai", ("api.openai.com",)),
            Credential("anthropic", "keys", "anthropic", ("api.anthropic.com",)),
        )
        source = StaticSource(
            [me], {me.agent_key: AgentCredentials(creds, {"openai": b"k1", "anthropic": b"k2"})}
        )
        audit, ledger = Audit(), Ledger()
        gateway = loopback_gateway(source, dict.fromkeys(NAMES, "127.0.0.1"), audit, ledger=ledger)
        server = await gateway.serve("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            for host, paths in (
                ("api.anthropic.com", ["/v1/messages", "/v1/messages"]),
                ("api.openai.com", ["/v1/chat/completions", "/v1/models"]),
            ):
                status, reader, writer = await connect(port, f"{host}:{up_port}", basic(TOKEN))
                assert status == 200
                await writer.start_tls(client_context(GATEWAY_CA), server_hostname=host)
                for path in paths:
                    assert await post(reader, writer, host, up_port, path) == RESPONSES[path]
                writer.close()
            for _ in range(200):
                if len([r for r in audit.records if r.method == "POST"]) >= 4:
                    break
                await asyncio.sleep(0.01)
        finally:
            server.close()
            up_server.close()
        return audit, ledger

    SEEN.clear()
    audit, ledger = asyncio.run(main())
    # metered requests may ask only for a coding the meter reads; others are untouched
    assert SEEN == [
        ("/v1/messages", "gzip, identity"),
        ("/v1/messages", "gzip, identity"),
        ("/v1/chat/completions", "gzip, identity"),
        ("/v1/models", "br, zstd"),
    ]
    posts = [r for r in audit.records if r.method == "POST"]
    assert [(r.provider, r.input_tokens, r.output_tokens) for r in posts] == [
        ("anthropic", 21, 8),
        ("anthropic", 21, 8),
        ("openai", 13, 5),
        ("", 0, 0),  # /v1/models is not a metered endpoint
    ]
    assert '"input_tokens":21' in posts[0].to_json()
    totals = ledger.snapshot()["uid-meter"]
    assert (totals.input_tokens, totals.output_tokens, totals.requests) == (55, 21, 3)
    after_in = value(
        "stockade_gateway_model_tokens_total", {"provider": "anthropic", "kind": "input"}
    )
    after_out = value(
        "stockade_gateway_model_tokens_total", {"provider": "openai", "kind": "output"}
    )
    assert after_in - before_in == 42
    assert after_out - before_out == 5
