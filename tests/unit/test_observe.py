"""Turning API objects into observations, and termination messages into results."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.core.observe import (
    RESULT_MAX_CHARS,
    USAGE_KEY_PATTERN,
    USAGE_MAX_KEYS,
    TerminationMessage,
    format_time,
    observe_pod,
    parse_termination_message,
    parse_time,
)


def test_time_round_trip() -> None:
    moment = datetime(2026, 11, 21, 4, 50, tzinfo=UTC)
    assert format_time(moment) == "2026-11-21T04:50:00Z"
    assert parse_time("2026-11-21T04:50:00Z") == moment
    assert parse_time(None) is None


def pod(**status: object) -> dict[str, object]:
    return {
        "metadata": {
            "name": "a-2",
            "labels": {"stockade.dev/attempt": "2"},
            "creationTimestamp": "2026-11-21T04:50:00Z",
        },
        "spec": {"nodeName": "n1"},
        "status": status,
    }


def test_running_pod() -> None:
    view = observe_pod(
        pod(
            phase="Running",
            conditions=[{"type": "Ready", "status": "True"}],
            containerStatuses=[
                {"name": "agent", "state": {"running": {"startedAt": "2026-11-21T04:50:01Z"}}}
            ],
        )
    )
    assert (view.name, view.attempt, view.phase, view.ready) == ("a-2", 2, "Running", True)
    assert view.running_since == datetime(2026, 11, 21, 4, 50, 1, tzinfo=UTC)
    assert view.node_name == "n1"
    assert not view.finished


def test_terminated_and_unschedulable_and_waiting() -> None:
    done = observe_pod(
        pod(
            phase="Failed",
            containerStatuses=[
                {
                    "name": "agent",
                    "state": {
                        "terminated": {
                            "exitCode": 137,
                            "reason": "OOMKilled",
                            "finishedAt": "2026-11-21T04:51:00Z",
                        }
                    },
                }
            ],
        )
    )
    assert done.terminated is not None and done.terminated.exit_code == 137 and done.finished
    stuck = observe_pod(
        pod(
            phase="Pending",
            conditions=[
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3",
                }
            ],
        )
    )
    assert stuck.unschedulable == "0/3"
    pulling = observe_pod(
        pod(
            phase="Pending",
            containerStatuses=[{"name": "agent", "state": {"waiting": {"reason": "ErrImagePull"}}}],
        )
    )
    assert pulling.waiting_reason == "ErrImagePull"


def test_pod_without_attempt_label_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        observe_pod({"metadata": {"name": "x"}})


def test_termination_message_forms() -> None:
    assert parse_termination_message("") == (None, None, None)
    assert parse_termination_message("done\n") == ("done", None, None)
    assert parse_termination_message("[1, 2]") == ("[1, 2]", None, None)
    assert parse_termination_message('{"result": {"files": 3}}') == ('{"files": 3}', None, None)
    result, usage, note = parse_termination_message(
        '{"result": "ok", "usage": {"inputTokens": 5, "note": "x", "flag": true, "costUSD": 0.1}}'
    )
    assert result == "ok" and usage == {"inputTokens": 5, "costUSD": 0.1}
    assert note == "usage.note dropped: not a number; usage.flag dropped: not a number"


@given(st.text(max_size=6000))
def test_any_termination_message_is_safe(text: str) -> None:
    result, usage, _ = parse_termination_message(text)
    assert result is None or len(result) <= RESULT_MAX_CHARS
    assert usage is None or all(isinstance(v, int | float) for v in usage.values())


# --- hostile termination messages (issue 8, defect 5) ---------------------------------
#
# Whatever the agent writes, what the parser returns must be writable into the Agent's
# status: the CRD's schema for status.result/status.usage accepts it, it serializes as
# strict JSON (no NaN/Infinity) and it encodes as UTF-8.

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "agents.yaml"


def _status_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    # Only what the parser produces; the rest of the status is the lifecycle's.
    return {
        "type": "object",
        "properties": {"result": status["result"], "usage": status["usage"]},
    }


# Draft 4 is what OpenAPI v3 schemas follow; unlike later drafts its "integer" refuses
# 5.0, as the API server does for an integer field.
STATUS_VALIDATOR = jsonschema.Draft4Validator(_status_schema())
USAGE_BOUND = 2**53 - 1


def assert_writable(result: object, usage: object) -> None:
    """The status fields the parser returns can be merge-patched into the Agent."""
    status = {k: v for k, v in (("result", result), ("usage", usage)) if v is not None}
    STATUS_VALIDATOR.validate(status)
    for ensure_ascii in (True, False):
        json.dumps(status, allow_nan=False, ensure_ascii=ensure_ascii).encode("utf-8")
    if isinstance(result, str):
        result.encode("utf-8")  # strict: no lone surrogates
        assert len(result) <= RESULT_MAX_CHARS
    if usage is not None:
        assert isinstance(usage, dict)
        assert len(usage) <= USAGE_MAX_KEYS
        for key, value in usage.items():
            assert isinstance(key, str) and USAGE_KEY_PATTERN.fullmatch(key), key
            assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
            assert math.isfinite(value) and abs(value) <= USAGE_BOUND, (key, value)


def parsed(text: str) -> tuple[str | None, dict[str, Any] | None]:
    out = parse_termination_message(text)
    result, usage = out[0], out[1]
    assert_writable(result, usage)
    return result, usage


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_usage_number_is_dropped(token: str) -> None:
    result, usage = parsed(
        '{"result": "ok", "usage": {"costUSD": ' + token + ', "inputTokens": 7}}'
    )
    assert result == "ok" and usage == {"inputTokens": 7}


@pytest.mark.parametrize("number", [2**53, -(2**53), 10**30, 1e300])
def test_usage_number_out_of_range_is_dropped(number: float) -> None:
    _, usage = parsed(json.dumps({"usage": {"big": number, "outputTokens": 1}}))
    assert usage == {"outputTokens": 1}


def test_usage_numbers_at_the_bound_are_kept() -> None:
    _, usage = parsed(json.dumps({"usage": {"a": USAGE_BOUND, "b": 0, "c": 1e-300, "d": -0.0}}))
    assert usage == {"a": USAGE_BOUND, "b": 0, "c": 1e-300, "d": 0.0}


@pytest.mark.parametrize(
    ("key", "value"),
    [("inputTokens", -1), ("outputTokens", -5000), ("costUSD", -0.02), ("cacheTokens", -3)],
)
def test_negative_usage_is_dropped_with_a_note(key: str, value: float) -> None:
    # A session sums its members' usage: a negative count or cost would erase the others'.
    text = json.dumps({"result": "ok", "usage": {key: value, "otherTokens": 9}})
    out = parse_termination_message(text)
    assert out.result == "ok" and out.usage == {"otherTokens": 9}
    assert out.note == f"usage.{key} dropped: negative"
    assert_writable(out.result, out.usage)


def test_fractional_tokens_and_non_finite_cost_are_noted() -> None:
    out = parse_termination_message('{"usage": {"inputTokens": 0.5, "costUSD": NaN}}')
    assert out.usage == {}
    assert out.note == (
        "usage.inputTokens dropped: not a whole number; usage.costUSD dropped: not a finite number"
    )


def test_integer_usage_fields_refuse_fractions_and_keep_whole_floats() -> None:
    _, usage = parsed('{"usage": {"inputTokens": 1.5, "outputTokens": 3.0, "costUSD": 2}}')
    assert usage == {"outputTokens": 3, "costUSD": 2}
    assert type(usage["outputTokens"]) is int


def test_non_finite_numbers_inside_a_json_result_become_null() -> None:
    result, _ = parsed('{"result": {"score": NaN, "all": [Infinity, -Infinity, 1e999, 1]}}')
    assert result is not None
    assert json.loads(result, parse_constant=_refuse) == {
        "all": [None, None, None, 1],
        "score": None,
    }


def _refuse(token: str) -> object:
    raise AssertionError(f"{token} is not JSON")


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,
        "{" * 100_000,
        '{"a":' * 100_000,
        "[" * 5_000 + "]" * 5_000,
        '{"result": ' + "[" * 100_000 + "]" * 100_000 + ', "usage": {"inputTokens": 1}}',
        '{"usage": {"inputTokens": 1}, "result": ' + "[" * 3_000 + "]" * 3_000 + "}",
    ],
    ids=["open-lists", "open-objects", "open-members", "closed-lists", "deep-result", "3000"],
)
def test_deep_nesting_does_not_escape(text: str) -> None:
    result, _ = parsed(text)
    assert result is not None


def test_lone_surrogates_in_a_json_result_are_replaced() -> None:
    result, _ = parsed('{"result": "a\\ud800b\\udfff"}')
    assert result == "a\ufffdb\ufffd"


def test_invalid_utf8_in_plain_text_is_replaced() -> None:
    raw = b"done \xff\xfe and \xed\xa0\x80".decode("utf-8", "surrogateescape")
    result, _ = parsed(raw)
    assert result is not None and result.startswith("done \ufffd")


@pytest.mark.parametrize(
    "key", ["", "\\ud800", "a b", "x" * 64, "\\u0000", "tokens\\n", "über", "-lead"]
)
def test_usage_keys_outside_the_documented_pattern_are_dropped(key: str) -> None:
    _, usage = parsed('{"usage": {"' + key + '": 1, "inputTokens": 2}}')
    assert usage == {"inputTokens": 2}


def test_too_many_usage_keys_keep_the_known_ones_and_the_first_others() -> None:
    others = {f"k{i}": i for i in range(200)}
    _, usage = parsed(json.dumps({"usage": {**others, "costUSD": 0.5}}))
    assert usage is not None and len(usage) == USAGE_MAX_KEYS
    assert usage["costUSD"] == 0.5
    assert [k for k in usage if k != "costUSD"] == [f"k{i}" for i in range(USAGE_MAX_KEYS - 1)]


@pytest.mark.parametrize(
    "text",
    ["null", "true", "12", "1e400", "NaN", '"\\ud800"', "[NaN]", '"quoted"', "1" * 5000],
)
def test_non_object_json_is_plain_text(text: str) -> None:
    assert parsed(text) == (text[:RESULT_MAX_CHARS], None)


@pytest.mark.parametrize(
    "usage", ["1", '"many"', "[1, 2]", "true", "null", '{"a": {"b": 1}}', '{"a": [1]}']
)
def test_usage_of_other_types_is_dropped(usage: str) -> None:
    _, got = parsed('{"result": "r", "usage": ' + usage + "}")
    assert not got


def test_notes_name_what_was_dropped() -> None:
    text = '{"result": [NaN], "usage": {"costUSD": Infinity, "a b": 1, "inputTokens": 1.5}}'
    result, usage, note = parse_termination_message(text)
    assert (result, usage) == ("[null]", {})
    assert note == (
        "result: non-finite numbers replaced by null; usage.costUSD dropped: not a finite"
        ' number; usage["a b"] dropped: not a valid key; and 1 more'
    )
    _, _, note = parse_termination_message('{"usage": {"\\ud800' + "x" * 100 + '": 1}}')
    assert note == 'usage["\\ud800xxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."] dropped: not a valid key'
    assert parse_termination_message("[" * 65 + "]" * 65).note == (
        "nested deeper than 64 levels: taken as plain text"
    )
    assert parse_termination_message("[" * 64 + "]" * 64).note is None


# --- fuzzing: whatever the container writes, the status takes it ---------------------

# Every code point, lone surrogates (what surrogateescape makes of bad UTF-8) drawn on
# purpose: st.characters() alone practically never yields them. JSON's own syntax too.
any_char = (
    st.characters(exclude_categories=())
    | st.integers(0xD800, 0xDFFF).map(chr)
    | st.sampled_from('\x00\n"\\[]{}')
)
any_text = st.text(any_char, max_size=64)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.sampled_from([2**53 - 1, 2**53, -(2**53), 2**63, 10**400])
    | st.floats()  # nan, inf, -inf, subnormals, -0.0
    | any_text
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            any_text | st.sampled_from(["inputTokens", "costUSD"]), children, max_size=5
        )
    ),
    max_leaves=40,
)
usage_keys = (
    st.sampled_from(["inputTokens", "outputTokens", "costUSD", "", "a b", "x" * 64, "x" * 63])
    | st.from_regex(USAGE_KEY_PATTERN, fullmatch=True)
    | any_text
)
usage_objects = st.dictionaries(usage_keys, json_leaves, max_size=50)
messages = st.fixed_dictionaries(
    {}, optional={"result": json_values, "usage": usage_objects | json_values, "x": json_values}
)


def dumps_loosely(value: object, ensure_ascii: bool) -> str:
    """JSON as a careless agent writes it: NaN/Infinity tokens, raw or escaped Unicode."""
    return json.dumps(value, ensure_ascii=ensure_ascii)  # allow_nan by default


def check(text: str) -> TerminationMessage:
    out = parse_termination_message(text)
    assert isinstance(out, TerminationMessage)
    assert_writable(out.result, out.usage)
    if out.note is not None:
        out.note.encode("utf-8")
        assert 0 < len(out.note) <= 400
    return out


@given(st.text(any_char, max_size=6000))
def test_fuzz_any_text(text: str) -> None:
    check(text)


@given(json_values, st.booleans())
def test_fuzz_any_json_value(value: object, ensure_ascii: bool) -> None:
    check(dumps_loosely(value, ensure_ascii))


@given(messages, st.booleans())
def test_fuzz_objects_with_result_and_usage_of_every_type(
    message: dict[str, Any], ensure_ascii: bool
) -> None:
    out = check(dumps_loosely(message, ensure_ascii))
    result = message.get("result")
    if (
        isinstance(result, str)
        and len(result) <= RESULT_MAX_CHARS
        and not any("\ud800" <= c <= "\udfff" for c in result)
    ):
        assert out.result == result  # ordinary results pass untouched


@settings(deadline=None)  # up to 700 KB of input, on CPUs shared with other work
@given(
    st.sampled_from(["[", "{", '{"a":', '{"result":', "[1,", '"\\"', " "]),
    st.integers(min_value=1, max_value=100_000),
    st.booleans(),
)
def test_fuzz_deep_nesting(opener: str, depth: int, closed: bool) -> None:
    closer = {"[": "]", "{": "}", '{"a":': "}", '{"result":': "}", "[1,": "]"}.get(opener, "")
    check(opener * depth + ("0" + closer * depth if closed else ""))


@given(st.dictionaries(st.from_regex(USAGE_KEY_PATTERN, fullmatch=True), st.integers(0, 10**9)))
def test_fuzz_ordinary_usage_is_kept_as_written(usage: dict[str, int]) -> None:
    out = check(json.dumps({"result": "ok", "usage": usage}))
    if len(usage) <= USAGE_MAX_KEYS:
        assert out == ("ok", usage, None)


def test_other_containers_still_running_are_seen() -> None:
    """A real kubelet reports the agent container terminated while the pod is still
    Running for a moment; only another container (a sidecar) may still run in it."""
    done = {"name": "agent", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
    alone = pod(phase="Running", containerStatuses=[done])
    alone["spec"] = {"containers": [{"name": "agent"}]}
    assert observe_pod(alone).others_running is False
    sidecar = {"name": "mesh", "state": {"running": {"startedAt": "2026-11-21T04:50:01Z"}}}
    meshed = pod(phase="Running", containerStatuses=[done, sidecar])
    meshed["spec"] = {"containers": [{"name": "agent"}, {"name": "mesh"}]}
    assert observe_pod(meshed).others_running is True
    # A container of the spec without a status yet may still run.
    unreported = pod(phase="Running", containerStatuses=[done])
    unreported["spec"] = {"containers": [{"name": "agent"}, {"name": "mesh"}]}
    assert observe_pod(unreported).others_running is True
    # A native sidecar (an init container with restartPolicy Always) counts; a plain
    # init container does not.
    native = pod(
        phase="Running",
        containerStatuses=[done],
        initContainerStatuses=[{**sidecar, "name": "proxy"}],
    )
    native["spec"] = {
        "containers": [{"name": "agent"}],
        "initContainers": [{"name": "setup"}, {"name": "proxy", "restartPolicy": "Always"}],
    }
    assert observe_pod(native).others_running is True
    stopped = {**sidecar, "state": {"terminated": {"exitCode": 0}}}
    native["status"]["initContainerStatuses"] = [{**stopped, "name": "proxy"}]  # type: ignore[index]
    assert observe_pod(native).others_running is False
