"""Building blocks shared by Stockade's API models.

- :class:`Model`: the base of every API model (camelCase JSON names, unknown fields
  forbidden, attribute docstrings become the schema descriptions that
  ``kubectl explain`` shows).
- Patterns of the Kubernetes name and value formats (k8s.io/apimachinery
  ``pkg/util/validation`` and ``pkg/api/resource``), usable both by pydantic (Python
  validation) and in the CRD's OpenAPI schema (API-server validation). They are RE2 and
  Rust-regex compatible: no look-arounds.
- :data:`Quantity` and :data:`PortOrName`: ``x-kubernetes-int-or-string`` types, as
  core/v1 declares ``resource.Quantity`` and ``intstr.IntOrString``.
- :func:`cel`: ``x-kubernetes-validations`` rules (Kubernetes CEL validation rules, KEP-2876)
  to attach to a model or a field through ``json_schema_extra``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, WithJsonSchema
from pydantic.alias_generators import to_camel

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""RFC 1123 label (namespaces, Service names): at most 63 characters (checked apart)."""

DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""RFC 1123 subdomain (most object names): at most 253 characters (checked apart)."""

QUANTITY = (
    r"^(\+)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?[0-9]+))?$"
)
"""A non-negative ``resource.Quantity`` in its string form (``500m``, ``1.5Gi``, ``1e3``).

The core/v1 pattern without the leading minus sign, and with the integer exponent that
``resource.ParseQuantity`` (and CEL's ``quantity()``) accept.
"""

ENV_VAR_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
"""An environment variable name as every supported Kubernetes release accepts it."""

CONFIG_KEY = r"^[-._a-zA-Z0-9]+$"
"""A ConfigMap / Secret key (at most 253 characters, not ``.`` or ``..``)."""

LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
"""A label value (at most 63 characters)."""

QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
"""A label or annotation key: ``[prefix/]name`` (prefix a DNS subdomain, name <= 63)."""

IANA_SVC_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""A named port: at most 15 characters (checked apart)."""


class Model(BaseModel):
    """Base of the API models: ``Model.model_validate(camelCaseDict)`` parses a manifest.

    ``model.model_dump(by_alias=True, exclude_none=True, mode="json")`` gives the
    Kubernetes-shaped camelCase dict. Unknown fields are errors. Attribute docstrings
    are the field descriptions of the generated CRD (see :mod:`stockade.api.crd`).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )


Reason = Literal["FieldValueRequired", "FieldValueInvalid", "FieldValueForbidden"]


def rule(
    expression: str,
    message: str,
    *,
    field_path: str | None = None,
    reason: Reason | None = None,
) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry (a CEL rule, ``self`` is the annotated node).

    `field_path` is relative to that node (``.image``) and names the field the API
    server's error reports; `reason` is one of the field error types it supports.
    """
    out = {"rule": expression, "message": message}
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


def cel(*rules: dict[str, str], **extensions: Any) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL `rules` and other ``x-kubernetes-*`` `extensions`.

    Keyword names use underscores for dashes: ``list_type="map"`` becomes
    ``x-kubernetes-list-type: map``.
    """
    out: dict[str, Any] = {}
    for key, value in extensions.items():
        out["x-kubernetes-" + key.replace("_", "-")] = value
    if rules:
        out["x-kubernetes-validations"] = list(rules)
    return out


def object_name_rules(max_length: int) -> dict[str, Any]:
    """``json_schema_extra`` for a kind's root: metadata.name rules.

    The name must be a DNS-1123 label of at most `max_length` characters (pods, labels
    and child names derive from it). CEL rules at the root may read ``metadata.name``
    (apiextensions' documented exception); the errors point at ``.metadata.name``.
    """
    return cel(
        rule(
            f"self.metadata.name.size() <= {max_length}",
            f"must be no more than {max_length} characters",
            field_path=".metadata.name",
        ),
        rule(
            f"self.metadata.name.matches(r'{DNS1123_LABEL}')",
            "must be a DNS-1123 label: lowercase alphanumerics or '-', starting and "
            "ending with an alphanumeric",
            field_path=".metadata.name",
        ),
    )


def _number_to_string(value: Any) -> Any:
    """YAML ``cpu: 1`` arrives as a number; a Quantity is kept as its string form."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format(value, "g") if isinstance(value, float) else str(value)
    return value


def _check_quantity(value: str) -> str:
    if not re.fullmatch(QUANTITY, value):
        raise ValueError(f"{value!r} is not a non-negative Kubernetes quantity (e.g. 500m, 1Gi)")
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_number_to_string),
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "minimum": 0,
            "maxLength": 64,
            "pattern": QUANTITY,
        }
    ),
]
"""A non-negative Kubernetes quantity, always held as a string (``"1"``, ``"512Mi"``).

Accepts numbers as YAML gives them (``cpu: 1``) like core/v1 does; parse it with
``kubernetes.utils.quantity.parse_quantity`` (a ``Decimal``).
"""


def _check_port(value: int | str) -> int | str:
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            raise ValueError(f"port {value} is not in 1..65535")
    elif len(value) > 15 or not re.fullmatch(IANA_SVC_NAME, value):
        raise ValueError(f"{value!r} is not a port number or an IANA service name")
    return value


PortOrName = Annotated[
    int | str,
    AfterValidator(_check_port),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "minimum": 1,
            "maximum": 65535,
            "maxLength": 15,
            "pattern": IANA_SVC_NAME,
        }
    ),
]
"""A container port: a number in 1..65535 or a named port (an IANA service name)."""
