"""``python -m bench.gateway``: the egress gateway's added latency and tunnel throughput.

Everything on 127.0.0.1 (a stub HTTPS upstream of a test CA, the gateway in-process with
a static pod source and an injected resolver): the figures are the gateway's own cost
on this machine, not a network's. Three paths:

- ``direct``: the client talks TLS to the upstream itself;
- ``tunnel``: CONNECT through the gateway, TLS end to end (SNI checked);
- ``intercept``: CONNECT to a credential host: TLS to the gateway's leaf, the request
  re-sent upstream over a second TLS session with the credential header set.

Latency is per request (``GET``, 19-byte body) on a new connection each time (connect +
CONNECT + TLS handshake(s) + request) and on one kept-alive connection; throughput is one
download of ``--mib`` MiB. Then ``--held`` (default 1000) tunnels are opened at once
(64 handshakes in flight) and held open together; every one must then answer a request,
all concurrently. The process's RSS before and after (client, gateway and upstream in one
process) and the gateway's open connections are printed. Prints a table; ``--json``
prints the figures as JSON too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.unit.gateway_harness import (
    GATEWAY_CA,
    UPSTREAM_CA,
    Upstream,
    basic,
    client_context,
    loopback_gateway,
    pod,
    server_context,
)

from bench.stats import percentile
from stockade.gateway import metrics
from stockade.gateway.credentials import Credential
from stockade.gateway.sources import AgentCredentials, StaticSource
from stockade.gateway.wire import parse_head

TOKEN = "bench-token"
HOSTS = ["tunnel.bench.test", "intercept.bench.test"]

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> int:
    """``GET /`` with ``Host: host`` (name:port); returns the body's size (bytes)."""
    writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    head = parse_head(await reader.readuntil(b"\r\n\r\n"))
    size = int(head.get("content-length") or 0)
    left = size
    while left:
        left -= len(await reader.read(min(left, 1 << 20)))
    return size


async def main(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Run the measurements; returns ``{path: {figure: value}}`` (ms, MiB/s)."""
    small, big = Upstream(), Upstream(body=b"x" * (args.mib << 20))
    ctx = server_context(UPSTREAM_CA, HOSTS)
    small_server = await asyncio.start_server(small.handle, "127.0.0.1", 0, ssl=ctx)
    big_server = await asyncio.start_server(big.handle, "127.0.0.1", 0, ssl=ctx)
    small_port = small_server.sockets[0].getsockname()[1]
    big_port = big_server.sockets[0].getsockname()[1]
    hosts = [f"{h}:{p}" for h in HOSTS for p in (small_port, big_port)]
    me = pod("127.0.0.1", TOKEN, hosts)
    cred = Credential("key", "s", "k", ("intercept.bench.test",))
    source = StaticSource([me], {me.agent_key: AgentCredentials((cred,), {"key": b"sk-bench"})})
    gateway = loopback_gateway(source, dict.fromkeys(HOSTS, "127.0.0.1"), lambda record: None)
    server = await gateway.serve("127.0.0.1", 0)
    gw_port = server.sockets[0].getsockname()[1]

    async def open_path(path: str, port: int) -> tuple[Streams, str]:
        host = HOSTS[1] if path == "intercept" else HOSTS[0]
        if path == "direct":
            streams = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context(UPSTREAM_CA), server_hostname=host
            )
            return streams, f"{host}:{port}"
        reader, writer = await asyncio.open_connection("127.0.0.1", gw_port)
        auth = basic(TOKEN)
        request = f"CONNECT {host}:{port} HTTP/1.1\r\nProxy-Authorization: {auth}\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        trust = GATEWAY_CA if path == "intercept" else UPSTREAM_CA
        await writer.start_tls(client_context(trust), server_hostname=host)
        return (reader, writer), f"{host}:{port}"

    async def timed(n: int, once: Callable[[], Awaitable[object]]) -> list[float]:
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            await once()
            samples.append((time.perf_counter() - start) * 1000)
        return samples

    results: dict[str, dict[str, float]] = {}
    for path in ("direct", "tunnel", "intercept"):

        async def fresh(path: str = path) -> None:
            (reader, writer), host = await open_path(path, small_port)
            await _get(reader, writer, host)
            writer.close()

        new = await timed(args.requests, fresh)
        (reader, writer), host = await open_path(path, small_port)

        async def again(
            r: asyncio.StreamReader = reader, w: asyncio.StreamWriter = writer, h: str = host
        ) -> int:
            return await _get(r, w, h)

        kept = await timed(args.requests, again)
        writer.close()
        (reader, writer), host = await open_path(path, big_port)
        start = time.perf_counter()
        size = await _get(reader, writer, host)
        elapsed = time.perf_counter() - start
        writer.close()
        results[path] = {
            "new_p50_ms": percentile(new, 50),
            "new_p99_ms": percentile(new, 99),
            "kept_p50_ms": percentile(kept, 50),
            "kept_p99_ms": percentile(kept, 99),
            "throughput_mib_s": size / elapsed / (1 << 20),
        }
    results["held"] = await _hold(args.held, lambda: open_path("tunnel", small_port))
    for s in (server, small_server, big_server):
        s.close()
    return results


def _rss_mib() -> float:
    """The resident set of this process (MiB), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _hold(
    count: int, open_one: Callable[[], Awaitable[tuple[Streams, str]]]
) -> dict[str, float]:
    """Open `count` tunnels (64 at a time), hold them all, then GET on each at once."""
    before = _rss_mib()
    gate = asyncio.Semaphore(64)

    async def opened() -> tuple[Streams, str]:
        async with gate:
            return await open_one()

    start = time.perf_counter()
    tunnels = await asyncio.gather(*(opened() for _ in range(count)))
    open_s = time.perf_counter() - start
    held = metrics.REGISTRY.get_sample_value("stockade_gateway_connections") or 0.0
    start = time.perf_counter()
    sizes = await asyncio.gather(*(_get(r, w, host) for (r, w), host in tunnels))
    answer_s = time.perf_counter() - start
    after = _rss_mib()
    for (_, writer), _host in tunnels:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for (_, w), _ in tunnels), return_exceptions=True)
    for _ in range(200):  # let the gateway and the upstream finish their side
        if not metrics.REGISTRY.get_sample_value("stockade_gateway_connections"):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    if len([n for n in sizes if n > 0]) != count:
        raise SystemExit(f"only {len([n for n in sizes if n])} of {count} held tunnels answered")
    return {
        "count": float(count),
        "gateway_open_connections": float(held),
        "open_all_s": open_s,
        "answer_all_s": answer_s,
        "rss_before_mib": before,
        "rss_after_mib": after,
    }


def report(results: dict[str, dict[str, float]]) -> str:
    """A text table, with the added latency of each path over ``direct``."""
    held = results.get("held")
    base = results["direct"]
    lines = [
        f"{'path':<10} {'new p50':>9} {'new p99':>9} {'kept p50':>9} {'kept p99':>9}"
        f" {'+p50 new':>9} {'+p50 kept':>9} {'MiB/s':>8}"
    ]
    for path, r in results.items():
        if path == "held":
            continue
        lines.append(
            f"{path:<10} {r['new_p50_ms']:>9.2f} {r['new_p99_ms']:>9.2f} {r['kept_p50_ms']:>9.3f}"
            f" {r['kept_p99_ms']:>9.3f} {r['new_p50_ms'] - base['new_p50_ms']:>9.2f}"
            f" {r['kept_p50_ms'] - base['kept_p50_ms']:>9.3f} {r['throughput_mib_s']:>8.0f}"
        )
    text = "\n".join(lines) + "\n(ms; +p50 = added over direct)"
    if held:
        text += (
            f"\nheld: {held['count']:.0f} tunnels open at once (the gateway counted"
            f" {held['gateway_open_connections']:.0f}), opened in {held['open_all_s']:.2f} s,"
            f" all answered in {held['answer_all_s']:.2f} s; process RSS"
            f" {held['rss_before_mib']:.0f} -> {held['rss_after_mib']:.0f} MiB"
        )
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per latency series")
    parser.add_argument("--mib", type=int, default=64, help="MiB of the throughput download")
    parser.add_argument("--held", type=int, default=1000, help="tunnels held open at once")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    options = parser.parse_args()
    figures = asyncio.run(main(options))
    print(report(figures))
    if options.json:
        print(json.dumps(figures, indent=2))
