"""Token usage read from model API responses: pure, bounded, incremental.

The proxy feeds a :class:`UsageMeter` the *payload* bytes of an intercepted response as
they pass (after the chunked framing is removed; the bytes to the agent are never
delayed or altered: the meter sees a copy). The meter keeps at most a bounded amount:

* ``application/json``: the whole body while it is at most :data:`MAX_JSON_BYTES`
  (then ``json.loads`` and the top-level ``usage``); a larger body keeps only its last
  :data:`TAIL_BYTES` and the last unescaped ``"usage":{...}`` object in them is read;
* ``text/event-stream``: one line at a time (at most :data:`MAX_LINE_BYTES`) and one
  event's ``data`` (at most :data:`MAX_EVENT_BYTES`); a longer line or event is dropped;
* ``Content-Encoding: gzip`` / ``deflate``: a copy is decompressed, at most
  :data:`MAX_DECODED_BYTES` in all (then metering stops: a bomb costs bounded CPU);
  any other coding (``br``, ``zstd``) is not metered (:attr:`UsageMeter.metered` False).

Shapes read (both providers report counts; the meter never estimates):

* OpenAI chat completions: ``usage.prompt_tokens`` / ``completion_tokens``; streamed, the
  chunk carrying ``usage`` (sent when ``stream_options.include_usage`` is set);
* OpenAI responses: ``usage.input_tokens`` / ``output_tokens``; streamed, the
  ``response.usage`` of ``response.completed`` (or ``.incomplete`` / ``.failed``);
* Anthropic messages: ``usage.input_tokens`` / ``output_tokens``; streamed,
  ``message_start`` (``message.usage``) and ``message_delta`` (``usage``, cumulative).

Counts are ``max``-merged within one response (a streamed count is cumulative, never a
delta), so a repeated event cannot double a count.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass

MAX_JSON_BYTES = 1024 * 1024
TAIL_BYTES = 64 * 1024
MAX_LINE_BYTES = 256 * 1024
MAX_EVENT_BYTES = 1024 * 1024
MAX_DECODED_BYTES = 64 * 1024 * 1024
DECODE_STEP = 64 * 1024


@dataclass(frozen=True)
class ModelAPI:
    """A model API host: `provider` (a metric label) and the metered path prefixes."""

    provider: str
    paths: tuple[str, ...]


MODEL_APIS: dict[str, ModelAPI] = {
    "api.openai.com": ModelAPI("openai", ("/v1/chat/completions", "/v1/responses")),
    "api.anthropic.com": ModelAPI("anthropic", ("/v1/messages",)),
}
"""Which hosts are model APIs, keyed by the lower-case host name."""


def model_api(host: str, target: str) -> ModelAPI | None:
    """The :class:`ModelAPI` when `host` is one and `target` (origin-form) a metered path.

    ``/v1/messages/count_tokens`` and other sub-paths are not metered; a query string is.
    """
    api = MODEL_APIS.get(host.lower().rstrip("."))
    if api is None:
        return None
    path = target.split("?", 1)[0]
    return api if path in api.paths else None


@dataclass(frozen=True)
class Usage:
    """Token counts of one response (or a sum): non-negative ints."""

    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def usage_of(obj: object) -> tuple[int | None, int | None]:
    """``(input, output)`` of a ``usage`` object of either provider; None where absent."""
    if not isinstance(obj, dict):
        return None, None
    inp = _count(obj.get("input_tokens"))
    if inp is None:
        inp = _count(obj.get("prompt_tokens"))
    out = _count(obj.get("output_tokens"))
    if out is None:
        out = _count(obj.get("completion_tokens"))
    return inp, out


_USAGE_KEY = re.compile(rb'"usage"\s*:\s*')


def _last_usage(tail: bytes) -> object:
    """The last unescaped ``"usage": {...}`` object in `tail`, or None."""
    for match in reversed(list(_USAGE_KEY.finditer(tail))):
        slashes = 0
        at = match.start() - 1
        while at >= 0 and tail[at] == 0x5C:
            slashes, at = slashes + 1, at - 1
        if slashes % 2:
            continue  # an escaped quote: inside a string
        rest = tail[match.end() :].decode("utf-8", "replace")
        try:
            value, _ = json.JSONDecoder().raw_decode(rest)
        except (ValueError, RecursionError):  # RecursionError: deep nesting
            continue
        return value
    return None


class _Decoder:
    """A bounded copy-decoder for gzip/deflate; passes identity bytes through."""

    def __init__(self, coding: str) -> None:
        self.ok = coding in ("", "identity", "gzip", "x-gzip", "deflate")
        self._z = zlib.decompressobj(47) if coding in ("gzip", "x-gzip", "deflate") else None
        self._left = MAX_DECODED_BYTES

    def decode(self, data: bytes) -> list[bytes]:
        if not self.ok or self._z is None:
            return [data] if self.ok else []
        out: list[bytes] = []
        try:
            while data and self.ok:
                piece = self._z.decompress(data, min(DECODE_STEP, self._left) or 1)
                data = self._z.unconsumed_tail
                self._left -= len(piece)
                if self._left <= 0:
                    self.ok = False
                if piece:
                    out.append(piece)
                if self._z.eof:
                    break
        except zlib.error:
            self.ok = False
        return out


class UsageMeter:
    """Reads token usage from one response body fed in arbitrary pieces.

    Args:
        content_type: the response's ``Content-Type`` ("" when absent).
        content_encoding: its ``Content-Encoding`` ("" when absent).

    Feed with :meth:`feed` (payload bytes, any split), then read :meth:`usage`.
    Never raises on any input; memory stays below the module's bounds.

    """

    def __init__(self, content_type: str, content_encoding: str = "") -> None:
        media = content_type.split(";", 1)[0].strip().lower()
        self._sse = media == "text/event-stream"
        self._json = media == "application/json" or media.endswith("+json")
        coding = content_encoding.strip().lower()
        self._decoder = _Decoder(coding)
        self._buffer = bytearray()
        self._whole = True
        self._event = bytearray()
        self._event_ok = True
        self._line_ok = True
        self._input: int | None = None
        self._output: int | None = None

    @property
    def metered(self) -> bool:
        """Whether this body can be read (a JSON or SSE body in a coding the meter decodes)."""
        return (self._sse or self._json) and self._decoder.ok

    def feed(self, data: bytes) -> None:
        """Take the next payload bytes (a copy; the caller forwards the original)."""
        if not (self._sse or self._json) or not data or not self._decoder.ok:
            return
        try:
            for piece in self._decoder.decode(bytes(data)):
                if self._sse:
                    self._feed_sse(piece)
                else:
                    self._feed_json(piece)
        except Exception:  # a meter bug must never cut the agent's response: stop metering
            self._decoder.ok = False
            self._input = self._output = None

    def usage(self) -> Usage | None:
        """The counts read so far (the body's end for JSON); None when none were found."""
        if not self._decoder.ok:
            return None
        if self._json:
            self._finish_json()
        if self._input is None and self._output is None:
            return None
        return Usage(self._input or 0, self._output or 0)

    # --- JSON ---------------------------------------------------------------------------

    def _feed_json(self, piece: bytes) -> None:
        self._buffer += piece
        if self._whole and len(self._buffer) > MAX_JSON_BYTES:
            self._whole = False
        if not self._whole and len(self._buffer) > TAIL_BYTES:
            del self._buffer[: len(self._buffer) - TAIL_BYTES]

    def _finish_json(self) -> None:
        usage: object = None
        if self._whole:
            try:
                doc = json.loads(bytes(self._buffer))
            except (ValueError, RecursionError):  # RecursionError: deep nesting
                doc = None
            if isinstance(doc, dict):
                usage = doc.get("usage")
                response = doc.get("response")
                if usage is None and isinstance(response, dict):
                    usage = response.get("usage")
        else:
            usage = _last_usage(bytes(self._buffer))
        self._merge(*usage_of(usage))

    # --- SSE ----------------------------------------------------------------------------

    def _feed_sse(self, piece: bytes) -> None:
        start = 0
        while True:
            end = piece.find(b"\n", start)
            if end < 0:
                self._append_line(piece[start:])
                return
            self._append_line(piece[start:end])
            if self._line_ok:
                self._line(bytes(self._buffer).rstrip(b"\r"))
            self._buffer.clear()
            self._line_ok = True
            start = end + 1

    def _append_line(self, part: bytes) -> None:
        if not self._line_ok:
            return
        if len(self._buffer) + len(part) > MAX_LINE_BYTES:
            self._line_ok = False
            self._event_ok = False  # the event lost a line: it is not read
            self._buffer.clear()
            return
        self._buffer += part

    def _line(self, line: bytes) -> None:
        if not line:
            if self._event_ok and self._event:
                self._dispatch(bytes(self._event))
            self._event.clear()
            self._event_ok = True
            return
        if not line.startswith(b"data:"):
            return  # event:, id:, retry:, comments: the type is in the data too
        value = line[5:]
        if value.startswith(b" "):
            value = value[1:]
        if self._event:
            self._event += b"\n"
        self._event += value
        if len(self._event) > MAX_EVENT_BYTES:
            self._event_ok = False
            self._event.clear()

    def _dispatch(self, data: bytes) -> None:
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: deep nesting
            return  # [DONE] and anything else
        if not isinstance(doc, dict):
            return
        kind = doc.get("type")
        if kind == "message_start":
            message = doc.get("message")
            self._merge(*usage_of(message.get("usage") if isinstance(message, dict) else None))
        elif isinstance(doc.get("response"), dict):  # response.completed / .incomplete
            self._merge(*usage_of(doc["response"].get("usage")))
        else:
            self._merge(*usage_of(doc.get("usage")))

    def _merge(self, inp: int | None, out: int | None) -> None:
        if inp is not None:
            self._input = inp if self._input is None else max(self._input, inp)
        if out is not None:
            self._output = out if self._output is None else max(self._output, out)
