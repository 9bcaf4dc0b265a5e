"""RuntimeClass resolution and the allow-list."""

from __future__ import annotations

import pytest

from stockade.build.errors import SpecError
from stockade.build.runtime import resolve_runtime_class
from stockade.config import OperatorConfig

OPEN = OperatorConfig(allowed_runtime_classes=("*",))
SANDBOXES = OperatorConfig(allowed_runtime_classes=("gvisor", "kata"))
DEFAULT = OperatorConfig()


@pytest.mark.parametrize(
    ("spec_name", "session_default", "expected"),
    [
        ("kata", "other", "kata"),
        ("kata", None, "kata"),
        (None, "kata", "kata"),
        ("", "kata", "kata"),
        (None, None, "gvisor"),
        ("", "", "gvisor"),
    ],
)
def test_precedence(spec_name: str | None, session_default: str | None, expected: str) -> None:
    assert resolve_runtime_class(spec_name, session_default, OPEN) == expected
    assert resolve_runtime_class(spec_name, session_default, SANDBOXES) == expected


def test_operator_default_is_configurable() -> None:
    config = OperatorConfig(default_runtime_class="kata")
    assert resolve_runtime_class(None, None, config) == "kata"


def test_star_allows_anything() -> None:
    assert resolve_runtime_class("runc", None, OPEN) == "runc"


@pytest.mark.parametrize(
    "name", ["gvisor", "kata", "kata-qemu", "kata-clh", "kata-fc", "kata-qemu-nvidia-gpu-snp"]
)
def test_default_allows_the_sandboxes(name: str) -> None:
    assert resolve_runtime_class(name, None, DEFAULT) == name


@pytest.mark.parametrize("name", ["runc", "crun", "katana", "gvisor-dev", "youki"])
def test_default_refuses_running_without_a_sandbox(name: str) -> None:
    with pytest.raises(SpecError) as info:
        resolve_runtime_class(name, None, DEFAULT)
    assert info.value.field == "spec.runtimeClassName"
    assert "STOCKADE_ALLOWED_RUNTIME_CLASSES" in info.value.message
    assert "config.allowedRuntimeClasses" in info.value.message
    assert "gvisor, kata, kata-*" in info.value.message


@pytest.mark.parametrize(
    ("spec_name", "session_default", "source"),
    [
        ("runc", None, "the Agent's"),
        (None, "runc", "the AgentSession's default"),
    ],
)
def test_allow_list_forbids(
    spec_name: str | None, session_default: str | None, source: str
) -> None:
    with pytest.raises(SpecError) as info:
        resolve_runtime_class(spec_name, session_default, SANDBOXES)
    error = info.value
    assert error.field == "spec.runtimeClassName"
    assert "'runc'" in error.message
    assert source in error.message
    assert "gvisor, kata" in error.message
    assert str(error) == f"spec.runtimeClassName: {error.message}"


def test_allow_list_forbids_the_operator_default() -> None:
    # load_config refuses this combination; the resolver still guards against it.
    config = OperatorConfig.model_construct(
        default_runtime_class="runc", allowed_runtime_classes=("gvisor",)
    )
    with pytest.raises(SpecError, match="operator's default"):
        resolve_runtime_class(None, None, config)


def test_spec_error_is_a_value_error() -> None:
    error = SpecError("spec.image", "an image is required")
    assert isinstance(error, ValueError)
    assert (error.field, error.message) == ("spec.image", "an image is required")
    assert str(error) == "spec.image: an image is required"
