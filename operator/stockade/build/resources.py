"""Effective requests and limits of an Agent's container (always all set).

Sandboxed agents must never run unbounded: cpu, memory and ephemeral-storage always get
both a request and a limit. What the Agent leaves out comes from the operator's
configuration (``STOCKADE_DEFAULT_REQUESTS`` / ``STOCKADE_DEFAULT_LIMITS``; session
defaults are merged into the spec before this runs), so that:

- a resource with neither request nor limit gets the default request and limit;
- a resource with only a limit gets ``request = min(default request, limit)``;
- a resource with only a request gets the default limit;
- a limit below its request is raised to the request (the API server would reject the
  pod otherwise: https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/).

Quantities are compared by value (``kubernetes.utils.quantity.parse_quantity``) but the
strings in the output are the ones the user or configuration wrote (``"500m"`` stays
``"500m"``), so the pod reads back as the Agent was written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal

from kubernetes.utils.quantity import parse_quantity

from stockade.api.agent import ResourceRequirements
from stockade.build.errors import SpecError
from stockade.config import OperatorConfig

MANAGED_RESOURCES: tuple[str, ...] = ("cpu", "memory", "ephemeral-storage")
"""The resources Stockade always sets, in output order."""

# The quantity grammar of the Kubernetes OpenAPI schema (resource.Quantity).
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")

_BUILTIN = OperatorConfig()

# The kubernetes client ships no type hints; this is its signature.
_parse_quantity: Callable[[str], Decimal] = parse_quantity


def quantity_value(value: str, field: str) -> Decimal:
    """Return the value of Kubernetes quantity `value` (``"250m"`` -> ``Decimal("0.25")``).

    Raises:
        SpecError: `value` is not a quantity, or is negative (`field` names it).

    """
    if not isinstance(value, str) or not _QUANTITY.match(value):
        raise SpecError(field, f"{value!r} is not a Kubernetes quantity")
    try:
        parsed = _parse_quantity(value)
    except (ValueError, ArithmeticError) as exc:
        raise SpecError(field, f"{value!r} is not a Kubernetes quantity") from exc
    if not parsed.is_finite() or parsed < 0:
        raise SpecError(field, f"{value!r} must be a non-negative quantity")
    return parsed


def _default(
    configured: Mapping[str, str], builtin: Mapping[str, str], name: str, variable: str
) -> tuple[str, str]:
    """Return the configured default of resource `name` (else built-in) and its source."""
    if name in configured:
        return configured[name], f"{variable}.{name}"
    return builtin[name], f"{variable}.{name} (built-in)"


def effective_resources(
    spec_resources: ResourceRequirements | None, config: OperatorConfig
) -> dict[str, dict[str, str]]:
    """Return the container's requests and limits: the Agent's, completed, consistent.

    Args:
        spec_resources: ``spec.resources`` of the Agent (after session defaults), or None.
        config: the operator configuration, source of the defaults. A resource missing
            from its maps falls back to ``OperatorConfig``'s built-in default.

    Returns:
        ``{"requests": {...}, "limits": {...}}`` (a core/v1 ResourceRequirements), both
        with keys ``cpu``, ``memory``, ``ephemeral-storage`` in that order and
        ``requests[r] <= limits[r]`` by value; any other resource the spec names is
        passed through unchanged after them.

    Raises:
        SpecError: a quantity in the spec (or in the configuration) is malformed or
            negative; ``field`` names it (``spec.resources.limits.cpu``).

    """
    requests_in = dict(spec_resources.requests or {}) if spec_resources else {}
    limits_in = dict(spec_resources.limits or {}) if spec_resources else {}
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    for name in MANAGED_RESOURCES:
        default_request = _default(
            config.default_requests, _BUILTIN.default_requests, name, "STOCKADE_DEFAULT_REQUESTS"
        )
        default_limit = _default(
            config.default_limits, _BUILTIN.default_limits, name, "STOCKADE_DEFAULT_LIMITS"
        )
        given_request = requests_in.get(name)
        given_limit = limits_in.get(name)
        limit, limit_value = (
            (given_limit, quantity_value(given_limit, f"spec.resources.limits.{name}"))
            if given_limit
            else (default_limit[0], quantity_value(*default_limit))
        )
        if given_request:
            request = given_request
            request_value = quantity_value(given_request, f"spec.resources.requests.{name}")
        else:
            request, request_value = default_request[0], quantity_value(*default_request)
            if given_limit and limit_value < request_value:
                request, request_value = given_limit, limit_value
        if limit_value < request_value:
            limit = request
        requests[name] = request
        limits[name] = limit
    for name, value in requests_in.items():
        requests.setdefault(name, value)
    for name, value in limits_in.items():
        limits.setdefault(name, value)
    return {"requests": requests, "limits": limits}
