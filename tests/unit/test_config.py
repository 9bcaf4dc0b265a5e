"""Operator configuration from the environment."""

from __future__ import annotations

import pytest

from stockade.config import ConfigError, OperatorConfig, load_config


def test_defaults() -> None:
    config = load_config({})
    assert config.default_runtime_class == "gvisor"
    assert config.allowed_runtime_classes == ()
    assert config.runtime_class_allowed("anything")
    assert config.default_requests["cpu"] == "250m"


def test_environment_values() -> None:
    config = load_config(
        {
            "STOCKADE_ALLOWED_RUNTIME_CLASSES": "gvisor, kata",
            "STOCKADE_DEFAULT_REQUESTS": "cpu=100m,memory=128Mi",
            "STOCKADE_NAMESPACES": "a,b",
            "STOCKADE_BACKOFF_BASE_SECONDS": "2",
            "STOCKADE_LOG_FORMAT": "json",
        }
    )
    assert config.allowed_runtime_classes == ("gvisor", "kata")
    assert not config.runtime_class_allowed("runc")
    assert config.default_requests == {"cpu": "100m", "memory": "128Mi"}
    assert config.namespaces == ("a", "b")
    assert config.log_format == "json"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"STOCKADE_HISTORY_LIMIT": "0"}, "STOCKADE_HISTORY_LIMIT"),
        ({"STOCKADE_METRICS_PORT": "http"}, "STOCKADE_METRICS_PORT"),
        ({"STOCKADE_DEFAULT_LIMITS": "cpu"}, "STOCKADE_DEFAULT_LIMITS"),
        ({"STOCKADE_LOG_FORMAT": "xml"}, "STOCKADE_LOG_FORMAT"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(env)


def test_backoff_doubles_and_caps() -> None:
    config = OperatorConfig(backoff_base_seconds=10, backoff_max_seconds=60)
    assert [config.backoff_seconds(n) for n in range(1, 6)] == [10, 20, 40, 60, 60]
