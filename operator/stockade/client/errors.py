"""Typed errors of :mod:`stockade.client`: one class per failure, never a raw ApiException.

Every error derives from :class:`ClientError`, which carries ``kind`` (``"Agent"``,
``"AgentSession"``, ``"Pod"``), ``name``, ``namespace`` and ``status`` (the HTTP status,
0 when no response came). :func:`from_status` maps an API server answer to its class; it
is pure (it takes the status code and the response body as text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stockade.client.core import Outcome


class ClientError(Exception):
    """Base of the client's errors: ``str(err)`` is a sentence for people.

    Attributes: ``kind``, ``name`` and ``namespace`` of the object concerned (None when
    unknown), ``status`` (HTTP status code; 0 when there was no answer).
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        status: int = 0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.name = name
        self.namespace = namespace
        self.status = status


class NotFound(ClientError):
    """404: the object (or its namespace, or the Stockade CRDs themselves) does not exist."""


class Forbidden(ClientError):
    """403: RBAC (or an admission policy acting as the caller) refused the request."""


class Conflict(ClientError):
    """409: the object already exists, or a write raced another (stale resourceVersion)."""


@dataclass(frozen=True)
class FieldCause:
    """One reason the API server gave for refusing an object (``details.causes[]``).

    ``field`` is the JSON path (``spec.image``), ``reason`` a machine code
    (``FieldValueRequired``, ``FieldValueInvalid``), ``message`` a sentence.
    """

    field: str
    reason: str
    message: str


class Invalid(ClientError):
    """422: the API server refused the object (schema, CEL rules, admission policy).

    ``causes`` lists the field causes the API server gave (possibly empty).
    """

    def __init__(self, message: str, *, causes: tuple[FieldCause, ...] = (), **kw: Any) -> None:
        super().__init__(message, **kw)
        self.causes = causes


class Unreachable(ClientError):
    """No answer from the API server (connection refused, reset, TLS, read timeout)."""


class Timeout(ClientError):
    """A wait ran out of time: ``timeout`` (seconds) passed before the condition held.

    ``last_phase`` is the last phase seen (None when the status had none yet).
    """

    def __init__(self, message: str, *, timeout: float, last_phase: str | None, **kw: Any):
        super().__init__(message, **kw)
        self.timeout = timeout
        self.last_phase = last_phase


class Deleted(ClientError):
    """The object was deleted (or began to be) while a call waited for it."""


class AgentFailed(ClientError):
    """``run`` (with ``check=True``): the Agent ended in phase Failed; ``outcome`` tells how."""

    def __init__(self, message: str, *, outcome: Outcome, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.outcome = outcome


def _status_body(body: str | bytes | None) -> dict[str, Any]:
    """The metav1.Status in a response body, else ``{}``."""
    try:
        parsed = json.loads(body or "")
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) and parsed.get("kind") == "Status" else {}


def from_status(
    status: int,
    body: str | bytes | None,
    reason: str | None = None,
    *,
    kind: str | None = None,
    name: str | None = None,
    namespace: str | None = None,
) -> ClientError:
    """The :class:`ClientError` for an API server answer ``status`` with ``body``.

    ``reason`` is the HTTP reason phrase (used when the body is not a Status). 404 ->
    :class:`NotFound` (also when the CRDs are missing: the message says so), 403 ->
    :class:`Forbidden`, 409 -> :class:`Conflict`, 422 -> :class:`Invalid` with the
    field causes, anything else -> :class:`ClientError`.
    """
    parsed = _status_body(body)
    message = str(parsed.get("message") or reason or f"HTTP {status}")
    details = parsed.get("details") or {}
    where: dict[str, Any] = {"kind": kind, "name": name, "namespace": namespace, "status": status}
    if status == 404:
        if not parsed:
            return NotFound(
                f"the {kind or 'requested'} resource is not known to the API server: "
                "are Stockade's CRDs installed?",
                **where,
            )
        if details.get("kind") == "namespaces":
            return NotFound(f"namespace {details.get('name')!r} not found", **where)
        return NotFound(f"{kind} {name!r} not found in namespace {namespace!r}", **where)
    if status == 403:
        return Forbidden(f"forbidden: {message}", **where)
    if status == 409:
        return Conflict(f"conflict: {message}", **where)
    if status == 422:
        causes = tuple(
            FieldCause(
                str(c.get("field") or ""), str(c.get("reason") or ""), str(c.get("message") or "")
            )
            for c in details.get("causes") or []
            if isinstance(c, dict)
        )
        return Invalid(f"invalid: {message}", causes=causes, **where)
    return ClientError(f"API error {status}: {message}", **where)
