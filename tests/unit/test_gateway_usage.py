"""The usage meter on realistic model API bodies, split at arbitrary byte boundaries."""

from __future__ import annotations

import gzip
import json
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.gateway import usage as usage_module
from stockade.gateway.ledger import Ledger
from stockade.gateway.usage import Usage, UsageMeter, model_api

OPENAI_JSON = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    }
).encode()
RESPONSES_JSON = json.dumps(
    {"id": "resp_1", "object": "response", "usage": {"input_tokens": 30, "output_tokens": 4}}
).encode()
ANTHROPIC_JSON = json.dumps(
    {
        "id": "msg_1",
        "type": "message",
        "content": [{"type": "text", "text": 'say "usage": {"input_tokens": 0}'}],
        "usage": {"input_tokens": 25, "output_tokens": 11},
    }
).encode()


def sse(events: list[tuple[str | None, object]]) -> bytes:
    out = b""
    for name, data in events:
        if name:
            out += b"event: " + name.encode() + b"\n"
        text = data if isinstance(data, str) else json.dumps(data)
        out += b"data: " + text.encode() + b"\n\n"
    return out


ANTHROPIC_SSE = sse(
    [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {"id": "msg_1", "usage": {"input_tokens": 25, "output_tokens": 1}},
            },
        ),
        ("ping", {"type": "ping"}),
        (
            "content_block_delta",
            {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hel\nlo"}},
        ),
        ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 15}}),
        ("message_stop", {"type": "message_stop"}),
    ]
).replace(b"\n", b"\r\n")
OPENAI_SSE = sse(
    [
        (None, {"object": "chat.completion.chunk", "choices": [{"delta": {"content": "Hi"}}]}),
        (None, {"object": "chat.completion.chunk", "choices": [], "usage": None}),
        (
            None,
            {
                "object": "chat.completion.chunk",
                "choices": [],
                "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
            },
        ),
        (None, "[DONE]"),
    ]
)
RESPONSES_SSE = sse(
    [
        ("response.created", {"type": "response.created", "response": {"usage": None}}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "x"}),
        (
            "response.completed",
            {
                "type": "response.completed",
                "response": {"usage": {"input_tokens": 40, "output_tokens": 6}},
            },
        ),
    ]
)
CASES = [
    ("application/json", OPENAI_JSON, Usage(12, 7)),
    ("application/json; charset=utf-8", RESPONSES_JSON, Usage(30, 4)),
    ("application/json", ANTHROPIC_JSON, Usage(25, 11)),
    ("text/event-stream; charset=utf-8", ANTHROPIC_SSE, Usage(25, 15)),
    ("text/event-stream", OPENAI_SSE, Usage(9, 3)),
    ("text/event-stream", RESPONSES_SSE, Usage(40, 6)),
]


def feed_split(meter: UsageMeter, body: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(body)) for c in cuts})
    start = 0
    for point in [*points, len(body)]:
        meter.feed(body[start:point])
        start = point


@settings(max_examples=200, deadline=None)
@given(case=st.sampled_from(CASES), cuts=st.lists(st.integers(0, 2000), max_size=40))
def test_any_split_reads_the_same_usage(case: tuple[str, bytes, Usage], cuts: list[int]) -> None:
    kind, body, expected = case
    meter = UsageMeter(kind)
    feed_split(meter, body, cuts)
    assert meter.metered
    assert meter.usage() == expected


@settings(max_examples=50, deadline=None)
@given(case=st.sampled_from(CASES), cuts=st.lists(st.integers(0, 2000), max_size=20))
def test_gzip_and_deflate_bodies_are_decoded_from_a_copy(
    case: tuple[str, bytes, Usage], cuts: list[int]
) -> None:
    kind, body, expected = case
    for coding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        meter = UsageMeter(kind, coding)
        feed_split(meter, packed, cuts)
        assert meter.usage() == expected


def test_other_codings_and_media_types_are_not_metered() -> None:
    br = UsageMeter("application/json", "br")
    br.feed(OPENAI_JSON)
    assert not br.metered and br.usage() is None
    html = UsageMeter("text/html")
    html.feed(OPENAI_JSON)
    assert not html.metered and html.usage() is None


def test_a_large_json_body_is_read_from_its_bounded_tail() -> None:
    filler = "x" * (usage_module.MAX_JSON_BYTES * 2)
    body = json.dumps(
        {
            "content": [{"text": filler + '\\"usage\\": {"input_tokens": 1}'}],
            "usage": {"input_tokens": 5, "output_tokens": 6},
        }
    ).encode()
    meter = UsageMeter("application/json")
    for at in range(0, len(body), 65536):
        meter.feed(body[at : at + 65536])
    assert len(meter._buffer) <= usage_module.TAIL_BYTES
    assert meter.usage() == Usage(5, 6)


def test_an_escaped_usage_key_in_a_tail_is_not_taken() -> None:
    tail = b'"text": "a \\"usage\\": {\\"input_tokens\\": 999}"'
    assert usage_module._last_usage(tail) is None


def test_an_overlong_sse_line_is_dropped_and_memory_stays_bounded() -> None:
    meter = UsageMeter("text/event-stream")
    meter.feed(b"data: " + b"y" * (usage_module.MAX_LINE_BYTES + 10))
    assert len(meter._buffer) <= usage_module.MAX_LINE_BYTES
    meter.feed(b'{"usage": {"input_tokens": 999}}\n\n')  # the rest of the dropped event
    meter.feed(sse([(None, {"usage": {"prompt_tokens": 2, "completion_tokens": 1}})]))
    assert meter.usage() == Usage(2, 1)


def test_a_gzip_bomb_stops_metering_at_the_decode_bound() -> None:
    bomb = gzip.compress(b" " * (usage_module.MAX_DECODED_BYTES + 1024 * 1024))
    meter = UsageMeter("application/json", "gzip")
    meter.feed(bomb)
    assert not meter.metered and meter.usage() is None


def test_repeated_or_hostile_counts_do_not_add_up() -> None:
    meter = UsageMeter("text/event-stream")
    delta = {"type": "message_delta", "usage": {"output_tokens": 15}}
    meter.feed(sse([(None, delta), (None, delta), (None, {"usage": {"input_tokens": -3}})]))
    meter.feed(sse([(None, {"usage": {"input_tokens": True, "output_tokens": "9"}})]))
    assert meter.usage() == Usage(0, 15)


def test_garbage_never_raises() -> None:
    for body in (b"", b"\x00\xff" * 100, b"{", b"data: {\n\n", b"[1,2]"):
        for kind in ("application/json", "text/event-stream"):
            meter = UsageMeter(kind)
            meter.feed(body)
            assert meter.usage() is None


def test_only_the_model_endpoints_of_the_table_are_metered() -> None:
    assert model_api("api.openai.com", "/v1/chat/completions")
    assert model_api("API.OpenAI.com.", "/v1/responses?x=1")
    assert model_api("api.anthropic.com", "/v1/messages")
    assert model_api("api.anthropic.com", "/v1/messages/count_tokens") is None
    assert model_api("api.openai.com", "/v1/models") is None
    assert model_api("example.com", "/v1/messages") is None


def test_the_ledger_sums_per_agent_uid() -> None:
    ledger = Ledger()
    ledger.record("uid-a", "ns", "a", Usage(10, 2))
    ledger.record("uid-a", "ns", "a", None)
    ledger.record("uid-b", "ns", "b", Usage(1, 1))
    ledger.record("", "ns", "nobody", Usage(100, 100))
    totals = ledger.snapshot()
    assert set(totals) == {"uid-a", "uid-b"}
    assert (totals["uid-a"].input_tokens, totals["uid-a"].output_tokens) == (10, 2)
    assert totals["uid-a"].requests == 2
    assert totals["uid-b"].requests == 1


def test_deeply_nested_json_does_not_raise_into_the_copy_loop() -> None:
    deep = b"[" * 200_000
    for kind, body in (
        ("application/json", deep),
        ("text/event-stream", b"data: " + deep + b"\n\n"),
    ):
        meter = UsageMeter(kind)
        meter.feed(body)
        assert meter.usage() is None
    tail = b'"usage": ' + b"[" * 60_000
    assert usage_module._last_usage(tail) is None


def test_an_incomplete_streamed_response_is_counted_too() -> None:
    meter = UsageMeter("text/event-stream")
    event = {
        "type": "response.incomplete",
        "response": {"usage": {"input_tokens": 8, "output_tokens": 2}},
    }
    meter.feed(sse([("response.incomplete", event)]))
    assert meter.usage() == Usage(8, 2)


@settings(max_examples=100, deadline=None)
@given(
    kind=st.sampled_from(["application/json", "text/event-stream"]),
    pieces=st.lists(
        st.binary(max_size=4096) | st.sampled_from([b"\n", b"\r\n", b"data: ", b"{"]), max_size=60
    ),
)
def test_any_bytes_never_raise_and_stay_bounded(kind: str, pieces: list[bytes]) -> None:
    meter = UsageMeter(kind)
    for piece in pieces:
        meter.feed(piece)
        assert len(meter._buffer) <= usage_module.MAX_JSON_BYTES
        assert len(meter._event) <= usage_module.MAX_EVENT_BYTES
    result = meter.usage()
    assert result is None or (result.input_tokens >= 0 and result.output_tokens >= 0)
