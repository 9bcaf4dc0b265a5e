"""The input ConfigMap (task and config)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.api.agent import AgentSpec
from stockade.build.configmap import build_input_configmap, config_items, has_input
from stockade.build.errors import SpecError
from stockade.build.names import labels_for
from tests.unit.conftest import REF, spec


def unchecked_config(config: dict[str, str]) -> AgentSpec:
    """A spec whose config keys the CRD schema would have refused."""
    return spec().model_copy(update={"config": config})


@pytest.mark.parametrize("fields", [{}, {"config": {}}])
def test_no_input_no_configmap(fields: dict[str, Any]) -> None:
    assert not has_input(spec(**fields))
    assert build_input_configmap(REF, spec(**fields)) is None


def test_task_only() -> None:
    cm = build_input_configmap(REF, spec(task="Fix the bug.\nThen test."))
    assert cm == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "demo-input",
            "namespace": "team-a",
            "labels": labels_for("demo"),
            "ownerReferences": [
                {
                    "apiVersion": "stockade.dev/v1alpha1",
                    "kind": "Agent",
                    "name": "demo",
                    "uid": "uid-1",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "immutable": True,
        "data": {"task": "Fix the bug.\nThen test."},
    }


def test_empty_task_still_counts() -> None:
    cm = build_input_configmap(REF, spec(task=""))
    assert cm is not None
    assert cm["data"] == {"task": ""}


def test_config_only() -> None:
    cm = build_input_configmap(REF, spec(config={"tools": "bash,git", "model": "m-1"}))
    assert cm is not None
    assert cm["data"] == {"config.model": "m-1", "config.tools": "bash,git"}
    assert list(cm["data"]) == ["config.model", "config.tools"]  # sorted, deterministic
    assert cm["immutable"] is True


def test_task_and_config() -> None:
    cm = build_input_configmap(REF, spec(task="t", config={"a": "1"}))
    assert cm is not None
    assert cm["data"] == {"task": "t", "config.a": "1"}


def test_session_member_is_labelled() -> None:
    cm = build_input_configmap(REF, spec(task="t", sessionRef={"name": "team"}))
    assert cm is not None
    assert cm["metadata"]["labels"]["stockade.dev/session"] == "team"


def test_config_items() -> None:
    assert config_items(spec(config={"b.x": "", "a_1-z": ""})) == [
        ("config.a_1-z", "a_1-z"),
        ("config.b.x", "b.x"),
    ]
    assert config_items(spec()) == []


@pytest.mark.parametrize("key", ["a/b", ".", "..", "with space", "ü", "x" * 247, ""])
def test_bad_config_keys_are_spec_errors(key: str) -> None:
    with pytest.raises(SpecError) as info:
        build_input_configmap(REF, unchecked_config({key: "v"}))
    assert info.value.field == f"spec.config[{key}]"


def test_longest_config_key_is_accepted() -> None:
    key = "k" * 246
    cm = build_input_configmap(REF, unchecked_config({key: "v"}))
    assert cm is not None
    assert len(next(iter(cm["data"]))) == 253


def test_oversized_input_is_a_spec_error() -> None:
    big = unchecked_config({"a": "x" * (700 * 1024), "b": "y" * (400 * 1024)})
    with pytest.raises(SpecError, match="1 MiB"):
        build_input_configmap(REF, big)


@given(
    task=st.none() | st.text(max_size=200),
    config=st.none()
    | st.dictionaries(st.from_regex(r"\A[a-z][a-z0-9_.-]{0,20}\Z"), st.text(max_size=50)),
)
def test_deterministic_and_complete(task: str | None, config: dict[str, str] | None) -> None:
    agent = spec(task=task, config=config)
    cm = build_input_configmap(REF, agent)
    assert cm == build_input_configmap(REF, agent)
    if task is None and not config:
        assert cm is None
        return
    assert cm is not None
    expected = {f"config.{k}": v for k, v in (config or {}).items()}
    if task is not None:
        expected["task"] = task
    assert cm["data"] == expected
