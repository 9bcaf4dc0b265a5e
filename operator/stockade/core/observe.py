"""Observations: the operator's view of the world, reduced to what the lifecycle needs.

Pure functions that turn API objects (plain dicts as the API server returns them) into
small frozen dataclasses. The lifecycle (`stockade.core.lifecycle`) decides from these alone,
so the same observation always gives the same decision, also after an operator restart.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from stockade.build.names import ATTEMPT_LABEL, EGRESS_LABEL


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
            the pod belongs to the Agent with that UID and to no other (docs/architecture.md).
        deletion_deadline: ``metadata.deletionTimestamp``, the end of the grace period.
        uid: ``metadata.uid``.
        others_running: a container other than the agent's (one of ``spec.containers``,
            or a native sidecar: an init container with ``restartPolicy: Always``) has
            no terminated state, so something besides the agent may still run. A real
            kubelet reports the agent container terminated a moment before it moves
            the pod to Succeeded/Failed; without other containers nothing runs then.
        egress: the pod's ``stockade.dev/egress`` label: which NetworkPolicy fences it
            (:func:`stockade.build.network.egress_label`; None on pods made before it).
        resource_version: ``metadata.resourceVersion`` (for the decision log).

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
    uid: str = ""
    others_running: bool = False
    egress: str | None = None
    resource_version: str = ""

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


def _agent_container_status(pod: Mapping[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == "agent":
            return dict(status)
    return dict(statuses[0]) if statuses else {}


def _others_running(spec: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether a container besides the agent's may still run (see PodView.others_running)."""
    states = {
        s.get("name"): s.get("state") or {}
        for s in (status.get("containerStatuses") or [])
        + (status.get("initContainerStatuses") or [])
    }
    others = [c.get("name") for c in spec.get("containers") or () if c.get("name") != "agent"]
    others += [
        c.get("name")
        for c in spec.get("initContainers") or ()
        if c.get("restartPolicy") == "Always"
    ]
    return any("terminated" not in states.get(name, {}) for name in others)


def observe_pod(pod: Mapping[str, Any]) -> PodView:
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
        uid=str(metadata.get("uid") or ""),
        others_running=_others_running(spec, status),
        egress=(metadata.get("labels") or {}).get(EGRESS_LABEL),
        resource_version=str(metadata.get("resourceVersion") or ""),
    )


class TerminationMessage(NamedTuple):
    """An agent's termination message, made safe for ``status.result``/``status.usage``.

    Attributes:
        result: for ``status.result``: a string of at most :data:`RESULT_MAX_CHARS`
            characters that encodes as UTF-8, or None.
        usage: for ``status.usage``: at most :data:`USAGE_MAX_KEYS` keys matching
            :data:`USAGE_KEY_PATTERN`, each a finite int or float from 0 to
            :data:`USAGE_MAX_ABS` (``inputTokens``/``outputTokens`` always ints), or None.
        note: what was dropped or changed on the way, for people (e.g. ``usage.costUSD
            dropped: not a finite number``); None when the message was taken as written.

    """

    result: str | None
    usage: dict[str, int | float] | None
    note: str | None


RESULT_MAX_CHARS = 4096
"""``status.result`` holds at most this many characters (the CRD's maxLength)."""
USAGE_MAX_KEYS = 32
"""``status.usage`` keeps at most this many keys (the known ones first)."""
USAGE_KEY_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,62}")
"""The keys ``status.usage`` keeps: an ASCII letter, then up to 62 of ``[A-Za-z0-9_.-]``."""
USAGE_MAX_ABS = 2**53 - 1
"""The largest magnitude a usage number may have: 9007199254740991.

Every integer up to it is exact as a float64, so a kept number means the same in every
JSON reader (the API server's int64/float64 decoding, kubectl, JavaScript, jq), and a
session's sum of its members' usage stays within int64 up to 1024 members.
"""
JSON_MAX_DEPTH = 64
"""A termination message nested deeper than this is not parsed as JSON (plain text)."""
_USAGE_INTEGERS = ("inputTokens", "outputTokens")
"""Usage keys the CRD types as integer; the other known key, costUSD, is a number."""
_KNOWN_USAGE = (*_USAGE_INTEGERS, "costUSD")
_NOTE_MAX_ITEMS = 3
_SURROGATE = re.compile("[\ud800-\udfff]")
# A JSON string (possibly unterminated) or one bracket: enough to measure nesting without
# recursion, and the same tokenization as json.loads for every input it would accept.
_JSON_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[{]|[\]}]', re.DOTALL)


def parse_termination_message(text: str) -> TerminationMessage:
    r"""Split an agent's termination message into ``(result, usage, note)``.

    Plain text (anything but a JSON object) becomes ``result``, stripped of surrounding
    whitespace. A JSON object may carry ``result`` (a string, or any JSON value, which is
    re-serialized as JSON with sorted keys) and ``usage``: an object of numbers, e.g.
    ``{"inputTokens": 1200, "outputTokens": 300, "costUSD": 0.02}`` (tokens are counts,
    cost is in US dollars); other keys of the object are ignored.

    Whatever the container wrote, the outcome is something the API server accepts into
    the Agent's status, so a hostile or broken message can never wedge the Agent:

    * ``result`` is cut to :data:`RESULT_MAX_CHARS` characters; lone surrogates (invalid
      UTF-8 read with ``surrogateescape``, or ``\ud800`` escapes) become U+FFFD;
      NaN/Infinity (and numbers that overflow to them) inside a JSON result become null.
    * ``usage`` keeps finite, non-negative, non-boolean numbers up to :data:`USAGE_MAX_ABS` under
      keys matching :data:`USAGE_KEY_PATTERN`; ``inputTokens``/``outputTokens`` must be
      whole (``3.0`` becomes ``3``); at most :data:`USAGE_MAX_KEYS` keys are kept, the
      known ones first, then the others in the order written. A ``usage`` that is not an
      object is dropped.
    * A message nested deeper than :data:`JSON_MAX_DEPTH` is plain text.

    Everything dropped or changed is named in ``note`` (a short sentence). The function
    is pure and never raises for any ``str``.
    """
    notes: list[str] = []
    text = text.strip()
    if not text:
        return TerminationMessage(None, None, None)
    parsed: Any = None
    if _deeper_than(text, JSON_MAX_DEPTH):
        notes.append(f"nested deeper than {JSON_MAX_DEPTH} levels: taken as plain text")
    else:
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: belt and braces
            parsed = None
    if not isinstance(parsed, dict):
        return TerminationMessage(_result_text(text, notes), None, _join(notes))
    result = parsed.get("result")
    if result is not None and not isinstance(result, str):
        if _has_non_finite(result):
            notes.append("result: non-finite numbers replaced by null")
            result = _replace_non_finite(result)
        result = json.dumps(result, sort_keys=True, allow_nan=False)
    if result is not None:
        result = _result_text(result, notes)
    usage = _usage(parsed.get("usage"), notes)
    return TerminationMessage(result, usage, _join(notes))


def _deeper_than(text: str, limit: int) -> bool:
    """Whether ``text``, read as JSON, nests brackets deeper than ``limit`` (no recursion)."""
    depth = 0
    for match in _JSON_NESTING.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif token in ("]", "}"):
            depth -= 1
    return False


def _result_text(text: str, notes: list[str]) -> str:
    if len(text) > RESULT_MAX_CHARS:
        text = text[:RESULT_MAX_CHARS]
        notes.append(f"result cut to {RESULT_MAX_CHARS} characters")
    clean = _SURROGATE.sub("\ufffd", text)
    if clean != text:
        notes.append("result: invalid Unicode replaced by U+FFFD")
    return clean


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    return False


def _replace_non_finite(value: Any) -> Any:
    """``value`` (parsed JSON, nesting already bounded) with NaN/±Infinity as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_replace_non_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _replace_non_finite(v) for k, v in value.items()}
    return value


def _usage(raw: Any, notes: list[str]) -> dict[str, int | float] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        notes.append("usage dropped: not an object")
        return None
    kept: dict[str, int | float] = {}
    for key, value in raw.items():
        number, why = _usage_number(key, value)
        if why:
            notes.append(f"{_usage_name(key)} dropped: {why}")
        elif number is not None:  # always, when there is no reason
            kept[key] = number
    if len(kept) > USAGE_MAX_KEYS:
        known = [k for k in _KNOWN_USAGE if k in kept]
        others = [k for k in kept if k not in _KNOWN_USAGE][: USAGE_MAX_KEYS - len(known)]
        notes.append(f"usage: {len(kept) - USAGE_MAX_KEYS} keys dropped (at most {USAGE_MAX_KEYS})")
        kept = {k: v for k, v in kept.items() if k in known or k in others}
    return kept


def _usage_number(key: str, value: Any) -> tuple[int | float | None, str]:
    """The number to keep under ``key`` and "", or None and why it is dropped."""
    if not USAGE_KEY_PATTERN.fullmatch(key):
        return None, "not a valid key"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, "not a number"
    if isinstance(value, float) and not math.isfinite(value):
        return None, "not a finite number"
    if abs(value) > USAGE_MAX_ABS:
        return None, f"out of range (at most {USAGE_MAX_ABS} in magnitude)"
    if value < 0:
        # Usage is counts and costs; a session sums its members', so a negative number
        # would erase (part of) the others' usage from the session's total.
        return None, "negative"
    if isinstance(value, float) and value == 0:
        value = 0.0  # -0.0 is kept as 0.0
    if key in _USAGE_INTEGERS and isinstance(value, float):
        if not value.is_integer():
            return None, "not a whole number"
        return int(value), ""
    return value, ""


def _usage_name(key: str) -> str:
    if USAGE_KEY_PATTERN.fullmatch(key):
        return f"usage.{key}"
    shown = json.dumps(key)  # ASCII: escapes control characters and surrogates
    if len(shown) > 40:
        shown = shown[:36] + '..."'
    return f"usage[{shown}]"


def _join(notes: list[str]) -> str | None:
    if not notes:
        return None
    shown = notes[:_NOTE_MAX_ITEMS]
    if len(notes) > _NOTE_MAX_ITEMS:
        shown.append(f"and {len(notes) - _NOTE_MAX_ITEMS} more")
    return "; ".join(shown)
