"""Moving bytes: tunnels both ways with an idle timeout, and HTTP/1.1 bodies by their framing.

Every function counts the payload bytes it moves and returns the count; none parses more
than the framing (``Content-Length``, ``chunked``, read-until-close).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from stockade.gateway.wire import (
    MAX_CLIENT_HELLO,
    Head,
    WireError,
    content_length,
    handshake_complete,
    is_chunked,
    record_length,
)

CHUNK = 64 * 1024
MAX_CHUNK_LINE = 4096
Tap = Callable[[bytes], None]
"""Sees a copy of the payload bytes a body copy writes (framing excluded); must not raise."""


class Closed(Exception):
    """The peer closed or went silent in the middle of a message."""


async def read_head(reader: asyncio.StreamReader, timeout: float) -> bytes | None:
    """Read one head (up to the blank line) within `timeout` seconds.

    Returns:
        the head's bytes, or None when the peer closed before sending a byte.

    Raises:
        TimeoutError: the head did not arrive in time (a slow client).
        WireError: the head is longer than the reader's limit.
        Closed: the peer closed in the middle of the head.

    """
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except asyncio.LimitOverrunError as exc:
        raise WireError("head too large") from exc
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise Closed("closed in the head") from exc
    except ValueError as exc:  # the separator was found but beyond the limit
        raise WireError("head too large") from exc


async def copy_exactly(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    size: int,
    timeout: float,
    tap: Tap | None = None,
) -> int:
    """Copy `size` bytes; each read waits at most `timeout` seconds; `tap` sees each piece.

    Raises:
        Closed: EOF or silence before `size` bytes.

    """
    left = size
    while left:
        try:
            data = await asyncio.wait_for(reader.read(min(CHUNK, left)), timeout)
        except TimeoutError as exc:
            raise Closed("silent in a body") from exc
        if not data:
            raise Closed("closed in a body")
        writer.write(data)
        if tap is not None:
            tap(data)
        await writer.drain()
        left -= len(data)
    return size


async def copy_chunked(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    timeout: float,
    tap: Tap | None = None,
) -> int:
    """Copy a ``chunked`` body, trailers included; returns the bytes written.

    `tap` sees the chunk data only (no size lines, CRLFs or trailers).

    Raises:
        Closed: EOF or silence in the body.
        WireError: a bad chunk-size line.

    """
    total = 0
    while True:
        line = await _line(reader, timeout)
        writer.write(line)
        total += len(line)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise WireError("bad chunk size") from exc
        if size < 0:
            raise WireError("bad chunk size")
        if size == 0:
            while True:  # trailers, then the empty line
                trailer = await _line(reader, timeout)
                writer.write(trailer)
                total += len(trailer)
                if trailer in (b"\r\n", b"\n"):
                    await writer.drain()
                    return total
        total += await copy_exactly(reader, writer, size, timeout, tap)
        total += await copy_exactly(reader, writer, 2, timeout)


async def _line(reader: asyncio.StreamReader, timeout: float) -> bytes:
    try:
        line = await asyncio.wait_for(reader.readuntil(b"\n"), timeout)
    except (asyncio.IncompleteReadError, TimeoutError) as exc:
        raise Closed("closed in a chunked body") from exc
    except (asyncio.LimitOverrunError, ValueError) as exc:
        raise WireError("chunk line too long") from exc
    if len(line) > MAX_CHUNK_LINE:
        raise WireError("chunk line too long")
    return line


async def copy_until_eof(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    timeout: float,
    tap: Tap | None = None,
) -> int:
    """Copy until the peer closes (a response without length); silence ends it too."""
    total = 0
    while True:
        try:
            data = await asyncio.wait_for(reader.read(CHUNK), timeout)
        except TimeoutError:
            return total
        if not data:
            return total
        writer.write(data)
        if tap is not None:
            tap(data)
        await writer.drain()
        total += len(data)


def request_framing(head: Head) -> tuple[str, int]:
    """How a request's body is delimited: ``("chunked", 0)``, ``("length", n)``.

    Raises:
        WireError: a Transfer-Encoding not ending in chunked, or chunked together with
            Content-Length (request smuggling), or a bad Content-Length.

    """
    if head.get("transfer-encoding") is not None:
        if not is_chunked(head) or head.get("content-length") is not None:
            raise WireError("unsupported Transfer-Encoding")
        return "chunked", 0
    return "length", content_length(head) or 0


def response_framing(head: Head, method: str) -> tuple[str, int]:
    """How a response's body is delimited: ``none``, ``chunked``, ``length`` or ``eof``."""
    status = head.start[1]
    if method == "HEAD" or status.startswith("1") or status in ("204", "304"):
        return "none", 0
    if is_chunked(head):
        return "chunked", 0
    length = content_length(head)
    return ("eof", 0) if length is None else ("length", length)


async def copy_body(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    framing: tuple[str, int],
    timeout: float,
    tap: Tap | None = None,
) -> int:
    """Copy a body framed as :func:`request_framing` / :func:`response_framing` say.

    `tap` (optional) sees a copy of the payload bytes after they are written.
    """
    kind, size = framing
    if kind == "chunked":
        return await copy_chunked(reader, writer, timeout, tap)
    if kind == "length":
        return await copy_exactly(reader, writer, size, timeout, tap)
    if kind == "eof":
        return await copy_until_eof(reader, writer, timeout, tap)
    return 0


async def pipe(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
    idle_timeout: float,
) -> tuple[int, int]:
    """Copy a -> b and b -> a until both sides close, or both stay silent `idle_timeout` s.

    One side's EOF half-closes the other (``write_eof``) where the transport allows it.

    Returns:
        ``(bytes a -> b, bytes b -> a)``.

    """
    last = [time.monotonic()]
    counts = [0, 0]

    async def one_way(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int
    ) -> None:
        while True:
            try:
                data = await asyncio.wait_for(reader.read(CHUNK), idle_timeout)
            except TimeoutError:
                if time.monotonic() - last[0] >= idle_timeout:
                    raise
                continue
            except (ConnectionError, OSError):
                data = b""
            if not data:
                if writer.can_write_eof():
                    with contextlib.suppress(OSError, RuntimeError):
                        writer.write_eof()
                return
            last[0] = time.monotonic()
            counts[index] += len(data)
            writer.write(data)
            await writer.drain()

    tasks = [
        asyncio.ensure_future(one_way(a_reader, b_writer, 0)),
        asyncio.ensure_future(one_way(b_reader, a_writer, 1)),
    ]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.exception()  # retrieved: an idle timeout or a reset ends the tunnel
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
    return counts[0], counts[1]


async def read_client_hello(reader: asyncio.StreamReader, timeout: float) -> tuple[bytes, bytes]:
    """Read the TLS records holding the ClientHello (each within `timeout` seconds).

    Returns:
        ``(raw records, handshake payload)``; the payload is ``b""`` when the client sent
        something else than a TLS handshake, closed, went silent, or sent more than
        :data:`~stockade.gateway.wire.MAX_CLIENT_HELLO` bytes.

    """
    raw, payload = b"", b""
    try:
        while not handshake_complete(payload) and len(raw) < MAX_CLIENT_HELLO:
            header = await asyncio.wait_for(reader.readexactly(5), timeout)
            size = record_length(header)
            body = await asyncio.wait_for(reader.readexactly(size), timeout)
            raw += header + body
            payload += body
    except (WireError, asyncio.IncompleteReadError, TimeoutError):
        return raw, b""
    return (raw, payload) if handshake_complete(payload) else (raw, b"")
