"""Effective requests and limits: always all set, requests <= limits."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.utils.quantity import parse_quantity

from stockade.api.agent import ResourceRequirements
from stockade.build.errors import SpecError
from stockade.build.resources import MANAGED_RESOURCES, effective_resources, quantity_value
from stockade.config import OperatorConfig

CONFIG = OperatorConfig(
    default_requests={"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "1Gi"},
    default_limits={"cpu": "1", "memory": "1Gi", "ephemeral-storage": "2Gi"},
)


def resources(requests: dict[str, str] | None = None, limits: dict[str, str] | None = None) -> Any:
    return ResourceRequirements.model_validate({"requests": requests, "limits": limits})


def unchecked(requests: dict[str, str] | None = None, limits: dict[str, str] | None = None) -> Any:
    """Requirements the CRD schema would refuse (quantities that slipped past it)."""
    return ResourceRequirements.model_construct(requests=requests, limits=limits)


_parse: Callable[[str], Decimal] = parse_quantity  # untyped in the kubernetes client


def value(quantity: str) -> Decimal:
    return _parse(quantity)


def test_nothing_given_gives_the_defaults() -> None:
    expected = {
        "requests": {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "1Gi"},
        "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "2Gi"},
    }
    assert effective_resources(None, CONFIG) == expected
    assert effective_resources(resources(), CONFIG) == expected
    assert effective_resources(resources({}, {}), CONFIG) == expected


def test_output_key_order_is_canonical() -> None:
    out = effective_resources(resources({"memory": "1Gi", "cpu": "1"}), CONFIG)
    assert tuple(out["requests"]) == MANAGED_RESOURCES
    assert tuple(out["limits"]) == MANAGED_RESOURCES


def test_both_given_are_kept_verbatim() -> None:
    out = effective_resources(
        resources({"cpu": "500m", "memory": "0.5Gi"}, {"cpu": "2000m", "memory": "536870912"}),
        CONFIG,
    )
    assert out["requests"]["cpu"] == "500m"
    assert out["limits"]["cpu"] == "2000m"
    assert out["requests"]["memory"] == "0.5Gi"
    assert out["limits"]["memory"] == "536870912"  # equal to the request: kept


def test_request_only_gets_the_default_limit() -> None:
    out = effective_resources(resources({"cpu": "500m"}), CONFIG)
    assert out["requests"]["cpu"] == "500m"
    assert out["limits"]["cpu"] == "1"


def test_request_above_the_default_limit_raises_the_limit() -> None:
    out = effective_resources(resources({"cpu": "4", "memory": "8Gi"}), CONFIG)
    assert out["requests"]["cpu"] == "4"
    assert out["limits"]["cpu"] == "4"
    assert out["limits"]["memory"] == "8Gi"


def test_limit_below_request_is_raised_to_the_request() -> None:
    # The CRD refuses this, but session defaults merged in may produce it.
    out = effective_resources(unchecked({"memory": "2Gi"}, {"memory": "1Gi"}), CONFIG)
    assert out["requests"]["memory"] == "2Gi"
    assert out["limits"]["memory"] == "2Gi"


def test_limit_only_above_default_request_keeps_default_request() -> None:
    out = effective_resources(resources(limits={"cpu": "2"}), CONFIG)
    assert out["requests"]["cpu"] == "250m"
    assert out["limits"]["cpu"] == "2"


def test_limit_only_below_default_request_lowers_the_request() -> None:
    out = effective_resources(resources(limits={"cpu": "100m", "memory": "64Mi"}), CONFIG)
    assert out["requests"]["cpu"] == "100m"
    assert out["limits"]["cpu"] == "100m"
    assert out["requests"]["memory"] == "64Mi"


def test_defaults_with_limit_below_request_are_made_consistent() -> None:
    config = OperatorConfig(
        default_requests={"cpu": "2", "memory": "1Gi", "ephemeral-storage": "1Gi"},
        default_limits={"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1Gi"},
    )
    out = effective_resources(None, config)
    assert out["requests"]["cpu"] == "2"
    assert out["limits"]["cpu"] == "2"


def test_resources_missing_from_the_configuration_use_the_builtin_defaults() -> None:
    config = OperatorConfig(default_requests={"cpu": "100m"}, default_limits={"cpu": "200m"})
    builtin = OperatorConfig()
    out = effective_resources(None, config)
    assert out["requests"] == {
        "cpu": "100m",
        "memory": builtin.default_requests["memory"],
        "ephemeral-storage": builtin.default_requests["ephemeral-storage"],
    }
    assert out["limits"]["cpu"] == "200m"
    assert out["limits"]["memory"] == builtin.default_limits["memory"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (unchecked({"cpu": "lots"}), "spec.resources.requests.cpu"),
        (unchecked(limits={"memory": "1Gib"}), "spec.resources.limits.memory"),
        (unchecked({"ephemeral-storage": "-1Gi"}), "spec.resources.requests.ephemeral-storage"),
        (unchecked(limits={"cpu": "inf"}), "spec.resources.limits.cpu"),
        (unchecked({"cpu": " 1"}), "spec.resources.requests.cpu"),
        (
            unchecked(limits={"ephemeral-storage": "1.2.3Gi"}),
            "spec.resources.limits.ephemeral-storage",
        ),
    ],
)
def test_bad_quantities_are_spec_errors(spec: Any, field: str) -> None:
    with pytest.raises(SpecError) as info:
        effective_resources(spec, CONFIG)
    assert info.value.field == field


def test_bad_configured_default_names_the_variable() -> None:
    config = OperatorConfig(default_requests={"cpu": "fast"})
    with pytest.raises(SpecError) as info:
        effective_resources(None, config)
    assert info.value.field == "STOCKADE_DEFAULT_REQUESTS.cpu"


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("250m", "0.25"), ("1", "1"), ("1Ki", "1024"), ("1k", "1000"), ("1e3", "1000"), ("0", "0")],
)
def test_quantity_value(quantity: str, expected: str) -> None:
    assert quantity_value(quantity, "f") == Decimal(expected)


# --- properties ------------------------------------------------------------------------

CPU = st.one_of(
    st.integers(min_value=0, max_value=64_000).map(lambda n: f"{n}m"),
    st.integers(min_value=0, max_value=64).map(str),
    st.decimals(min_value=0, max_value=64, places=1).map(str),
)
BYTES = st.builds(
    lambda n, suffix: f"{n}{suffix}",
    st.integers(min_value=0, max_value=4096),
    st.sampled_from(["", "k", "Ki", "M", "Mi", "G", "Gi", "m"]),
)


def quantities_for(name: str) -> st.SearchStrategy[str]:
    return CPU if name == "cpu" else BYTES


def resource_maps() -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries(
        {}, optional={name: quantities_for(name) for name in MANAGED_RESOURCES}
    )


def full_maps() -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({name: quantities_for(name) for name in MANAGED_RESOURCES})


@given(
    requests=st.none() | resource_maps(),
    limits=st.none() | resource_maps(),
    default_requests=full_maps(),
    default_limits=full_maps(),
)
def test_always_complete_and_requests_within_limits(
    requests: dict[str, str] | None,
    limits: dict[str, str] | None,
    default_requests: dict[str, str],
    default_limits: dict[str, str],
) -> None:
    config = OperatorConfig(default_requests=default_requests, default_limits=default_limits)
    spec = unchecked(requests, limits)
    out = effective_resources(spec, config)
    assert set(out) == {"requests", "limits"}
    assert tuple(out["requests"]) == MANAGED_RESOURCES
    assert tuple(out["limits"]) == MANAGED_RESOURCES
    for name in MANAGED_RESOURCES:
        request, limit = out["requests"][name], out["limits"][name]
        assert value(request) <= value(limit)
        # Every output string is one somebody wrote: the user's or the configuration's.
        written = {
            *(requests or {}).values(),
            *(limits or {}).values(),
            *default_requests.values(),
            *default_limits.values(),
        }
        assert request in written
        assert limit in written
        # The user's request is never changed; the user's limit only ever raised to it.
        if requests and name in requests:
            assert request == requests[name]
        if limits and name in limits:
            assert value(limit) == max(value(limits[name]), value(request))
        if limits and name in limits and not (requests and name in requests):
            assert value(request) == min(value(default_requests[name]), value(limits[name]))
    # Deterministic.
    assert effective_resources(spec, config) == out
