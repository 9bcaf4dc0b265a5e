"""Observations: the operator's view of the world, reduced to what the lifecycle needs.

Pure functions that turn API objects (plain dicts as the API server returns them) into
small frozen dataclasses. The lifecycle (`stockade.lifecycle`) decides from these alone,
so the same observation always gives the same decision, also after an operator restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ATTEMPT_LABEL = "stockade.dev/attempt"
RESULT_MAX_CHARS = 4096


def parse_time(value: str | None) -> datetime | None:
    """Parse an RFC 3339 timestamp as the API server writes it (``2026-11-21T04:50:00Z``)."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def format_time(value: datetime) -> str:
    """Format a datetime as an RFC 3339 UTC timestamp with second precision."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Terminated:
    """A container's terminated state (core/v1 ContainerStateTerminated)."""

    exit_code: int
    reason: str
    message: str
    finished_at: datetime | None


@dataclass(frozen=True)
class PodView:
    """What the lifecycle needs to know about one agent pod.

    Attributes:
        name: pod name (``<agent>-<attempt>``).
        attempt: the attempt number from the ``stockade.dev/attempt`` label (>= 1).
        phase: the pod's ``status.phase`` (Pending, Running, Succeeded, Failed, Unknown).
        created: ``metadata.creationTimestamp``.
        deleting: ``metadata.deletionTimestamp`` is set.
        node_name: ``spec.nodeName`` once scheduled.
        unschedulable: the scheduler's message when PodScheduled is False/Unschedulable.
        ready: the pod's Ready condition is True.
        running_since: the agent container's ``state.running.startedAt``.
        waiting_reason / waiting_message: the agent container's ``state.waiting``.
        terminated: the agent container's ``state.terminated``.
        reason / message: the pod's own ``status.reason`` / ``status.message`` (Evicted).
        owner_uid: the UID of the pod's controller ownerReference (None without one):
            the pod belongs to the Agent with that UID and to no other (DESIGN.md 4).
        deletion_deadline: ``metadata.deletionTimestamp``, the end of the grace period.

    """

    name: str
    attempt: int
    phase: str
    created: datetime | None = None
    deleting: bool = False
    node_name: str | None = None
    unschedulable: str | None = None
    ready: bool = False
    running_since: datetime | None = None
    waiting_reason: str | None = None
    waiting_message: str | None = None
    terminated: Terminated | None = None
    reason: str | None = None
    message: str | None = None
    owner_uid: str | None = None
    deletion_deadline: datetime | None = None

    @property
    def finished(self) -> bool:
        """The attempt is over: the pod is terminal, or its agent container has exited.

        Agent pods never restart a container (``restartPolicy: Never``), so an exited
        agent container ends the attempt even when a sidecar injected by someone else
        (a service mesh) keeps the pod ``Running``.
        """
        return self.phase in ("Succeeded", "Failed") or self.terminated is not None

    @property
    def succeeded(self) -> bool:
        """The attempt succeeded: the pod Succeeded, or the agent container exited 0."""
        if self.phase == "Succeeded":
            return True
        return (
            self.phase != "Failed"
            and self.terminated is not None
            and (self.terminated.exit_code == 0)
        )


def _agent_container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == "agent":
            return dict(status)
    return dict(statuses[0]) if statuses else {}


def observe_pod(pod: dict[str, Any]) -> PodView:
    """Summarize a pod (as a dict from the API server) into a :class:`PodView`.

    Raises:
        ValueError: the pod carries no valid ``stockade.dev/attempt`` label.

    """
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    attempt = int((metadata.get("labels") or {}).get(ATTEMPT_LABEL, "0"))
    if attempt < 1:
        raise ValueError(f"pod {metadata.get('name')} has no valid {ATTEMPT_LABEL} label")
    owner_uid = None
    for ref in metadata.get("ownerReferences") or ():
        if ref.get("controller"):
            owner_uid = ref.get("uid")
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    scheduled = conditions.get("PodScheduled") or {}
    unschedulable = None
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        unschedulable = scheduled.get("message") or "the scheduler found no node"
    container = _agent_container_status(pod)
    state = container.get("state") or {}
    running = state.get("running")
    waiting = state.get("waiting") or {}
    terminated_raw = state.get("terminated")
    terminated = None
    if terminated_raw is not None:
        terminated = Terminated(
            exit_code=int(terminated_raw.get("exitCode", 0)),
            reason=terminated_raw.get("reason") or "",
            message=terminated_raw.get("message") or "",
            finished_at=parse_time(terminated_raw.get("finishedAt")),
        )
    return PodView(
        name=metadata.get("name", ""),
        attempt=attempt,
        phase=status.get("phase") or "Pending",
        created=parse_time(metadata.get("creationTimestamp")),
        deleting=metadata.get("deletionTimestamp") is not None,
        node_name=spec.get("nodeName"),
        unschedulable=unschedulable,
        ready=(conditions.get("Ready") or {}).get("status") == "True",
        running_since=parse_time(running.get("startedAt")) if running else None,
        waiting_reason=waiting.get("reason"),
        waiting_message=waiting.get("message"),
        terminated=terminated,
        reason=status.get("reason"),
        message=status.get("message"),
        owner_uid=owner_uid,
        deletion_deadline=parse_time(metadata.get("deletionTimestamp")),
    )


def parse_termination_message(text: str) -> tuple[str | None, dict[str, Any] | None]:
    """Split an agent's termination message into ``(result, usage)``.

    A JSON object may carry ``result`` (any JSON; non-strings are re-serialized) and
    ``usage`` (an object, e.g. ``{"inputTokens": 1200, "outputTokens": 300,
    "costUSD": 0.02}``); anything else is plain text and becomes ``result``. Results are
    cut to 4096 characters, the size of a termination message.
    """
    text = text.strip()
    if not text:
        return None, None
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return text[:RESULT_MAX_CHARS], None
    result = parsed.get("result")
    if result is not None and not isinstance(result, str):
        result = json.dumps(result, sort_keys=True)
    usage = parsed.get("usage")
    if not isinstance(usage, dict):
        usage = None
    else:
        usage = {
            k: v
            for k, v in usage.items()
            if isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
        }
    return (result[:RESULT_MAX_CHARS] if result is not None else None), usage
