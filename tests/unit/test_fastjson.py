"""kopf's watch streams decode with orjson (issue 11), and stop if kopf moves the code."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from kopf._cogs.clients import api

from stockade.runtime import fastjson


def decoder() -> Any:
    return getattr(api, "json")  # noqa: B009  (not exported)


def set_decoder(value: object) -> None:
    setattr(api, "json", value)  # noqa: B010


@pytest.fixture
def restore_kopf() -> Iterator[object]:
    saved = decoder()
    yield saved
    set_decoder(saved)


def test_kopf_still_decodes_watch_lines_with_its_json_module() -> None:
    """The patch point: if this fails, kopf changed and fastjson.install() is a no-op."""
    assert "json.loads(" in inspect.getsource(api.stream)


def test_install_puts_orjson_under_kopfs_stream_and_keeps_the_rest(
    restore_kopf: object,
) -> None:
    set_decoder(json)
    assert fastjson.install()
    assert decoder().loads is orjson.loads
    assert decoder().dumps is json.dumps
    assert fastjson.install()  # idempotent
    line = b'{"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "7"}}}'
    assert decoder().loads(line.decode("utf-8")) == json.loads(line)
    with pytest.raises(json.JSONDecodeError):  # kopf's handling of bad lines still applies
        decoder().loads("{not json")


def test_install_leaves_a_changed_kopf_alone(restore_kopf: object) -> None:
    other = object()
    set_decoder(other)
    assert not fastjson.install()
    assert decoder() is other
