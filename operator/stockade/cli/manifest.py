"""Build an Agent manifest from ``kubectl stockade run`` flags (pure, no I/O).

The spec goes through :class:`stockade.api.AgentSpec`, the same models the CRD is
generated from, so most mistakes are reported before anything reaches the API server.
"""

from __future__ import annotations

import re
from typing import Any

from stockade.cli.errors import USAGE, CliError

# The API models (pydantic) are imported where they are used, not with the module:
# `kubectl stockade --help` must not pay for them (tests/unit/test_cli_help.py).

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_name(name: str) -> None:
    """Raise :class:`CliError` (exit 2) unless ``name`` is a DNS label of <= 52 characters."""
    from stockade.api.agent import AGENT_NAME_MAX_LENGTH

    if len(name) > AGENT_NAME_MAX_LENGTH or not _DNS_LABEL.match(name):
        raise CliError(
            f"invalid Agent name {name!r}: lower-case letters, digits and '-', starting and "
            f"ending with a letter or digit, at most {AGENT_NAME_MAX_LENGTH} characters",
            USAGE,
        )


def agent_manifest(
    name: str,
    namespace: str,
    *,
    image: str | None = None,
    task: str | None = None,
    config: dict[str, str] | None = None,
    session: str | None = None,
    runtime: str | None = None,
    egress: str | None = None,
    env: dict[str, str] | None = None,
    pod_annotations: dict[str, str] | None = None,
    restart_policy: str | None = None,
    backoff_limit: int | None = None,
    active_deadline_seconds: int | None = None,
) -> dict[str, Any]:
    """The Agent manifest (a camelCase dict) for ``run``; only the fields given are set.

    Raises :class:`CliError` (exit 2) for an invalid name, no image without a session, or
    a spec the API models refuse (the message names the field).
    """
    from pydantic import ValidationError

    from stockade.api import GROUP, VERSION, AgentSpec
    from stockade.api.agent import AGENT_KIND

    check_name(name)
    if not image and not session:
        raise CliError("--image is required (unless --session supplies one)", USAGE)
    fields: dict[str, Any] = {
        "image": image,
        "task": task,
        "config": config or None,
        "sessionRef": {"name": session} if session else None,
        "runtimeClassName": runtime,
        "network": {"egress": egress} if egress else None,
        "env": [{"name": k, "value": v} for k, v in env.items()] if env else None,
        "podMetadata": {"annotations": pod_annotations} if pod_annotations else None,
        "restartPolicy": restart_policy,
        "backoffLimit": backoff_limit,
        "activeDeadlineSeconds": active_deadline_seconds,
    }
    given = {k: v for k, v in fields.items() if v is not None}
    try:
        AgentSpec.model_validate(given)
    except ValidationError as exc:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise CliError(f"invalid Agent: {problems}", USAGE) from None
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": AGENT_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": given,
    }
