"""The pure part of :mod:`stockade.client`, shared by :class:`Client` and :class:`AsyncClient`.

No I/O here: manifests in and models out, the watch-driven wait as a state machine
(:class:`WaitState`), the outcome of a finished Agent, which pod holds an Agent's logs,
and the namespace a kubeconfig context names. The two clients only move bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from stockade.api import (
    AGENT_KIND,
    AGENT_PLURAL,
    SESSION_KIND,
    SESSION_PLURAL,
    Agent,
    AgentSession,
    AgentSpec,
    Phase,
    Usage,
)
from stockade.api.agent import TERMINAL_PHASES
from stockade.client.errors import AgentFailed, ClientError, Deleted, Invalid, NotFound, Timeout

Object = Agent | AgentSession
"""An object the client handles: an Agent or an AgentSession model."""
M = TypeVar("M", Agent, AgentSession)

WATCH_SECONDS = 60
"""The server-side ``timeoutSeconds`` of one watch call (the wait re-watches after it)."""
RECONNECT_PAUSE = 1.0
"""Seconds between a dropped watch and the next attempt."""

PLURALS: dict[str, str] = {AGENT_KIND: AGENT_PLURAL, SESSION_KIND: SESSION_PLURAL}
MODELS: dict[str, type[Object]] = {AGENT_KIND: Agent, SESSION_KIND: AgentSession}


def kind_of(model: type[Object]) -> str:
    """``"Agent"`` or ``"AgentSession"`` for the model class."""
    return AGENT_KIND if model is Agent else SESSION_KIND


def to_manifest(obj: Object | AgentSpec | Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """The camelCase manifest to create for ``obj``, in ``namespace`` unless it names one.

    ``obj``: an :class:`Agent` or :class:`AgentSession` model, an :class:`AgentSpec`
    (an Agent with ``generateName: run-``), or a manifest dict (``kind`` ``Agent`` or
    ``AgentSession``; validated against the models). Raises :class:`Invalid` when the
    manifest does not match the models, or names neither ``name`` nor ``generateName``.
    """
    if isinstance(obj, AgentSpec):
        obj = Agent(metadata={"generateName": "run-"}, spec=obj)
    if isinstance(obj, Mapping):
        obj = parse(dict(obj))
    manifest = obj.model_dump(by_alias=True, exclude_none=True, mode="json")
    manifest.pop("status", None)
    metadata = dict(manifest.get("metadata") or {})
    if not metadata.get("name") and not metadata.get("generateName"):
        raise Invalid(f"the {obj.kind} names neither metadata.name nor metadata.generateName")
    metadata.setdefault("namespace", namespace)
    manifest["metadata"] = metadata
    return manifest


def parse(raw: Mapping[str, Any], model: type[Object] | None = None) -> Object:
    """The model of ``raw`` (a camelCase object; ``kind`` picks the model unless given).

    Raises :class:`Invalid` for an unknown kind or a body the models refuse.
    """
    kind = str(raw.get("kind") or (kind_of(model) if model else ""))
    chosen = model or MODELS.get(kind)
    if chosen is None:
        raise Invalid(f"unknown kind {kind!r}: expected {AGENT_KIND} or {SESSION_KIND}")
    try:
        return chosen.model_validate(dict(raw))
    except ValidationError as exc:
        name = (raw.get("metadata") or {}).get("name")
        raise Invalid(f"the {kind} {name!r} does not match the API models: {exc}") from None


def metadata_of(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw["metadata"]`` (``{}`` when absent)."""
    return dict(raw.get("metadata") or {})


# --- waiting -----------------------------------------------------------------------------

Predicate = Callable[[Any], bool]
"""A wait condition: called with the model (Agent or AgentSession), True when done."""


def predicate_of(for_: Iterable[str] | Predicate | None) -> Predicate:
    """The condition of ``wait(for_=...)``: a set of phases, a predicate, or None.

    None means the terminal phases (Succeeded, Failed; for an AgentSession the same
    names). A set of phase names (or one name) holds when ``status.phase`` is one of them.
    """
    if for_ is None:
        return predicate_of(TERMINAL_PHASES)
    if callable(for_):
        return for_
    if isinstance(for_, str):  # one phase name, not its letters
        for_ = (for_,)
    phases = frozenset(str(p) for p in for_)

    def in_phases(obj: Any) -> bool:
        return phase_of(obj) in phases

    return in_phases


def phase_of(obj: Object) -> str | None:
    """The object's ``status.phase`` as a string (None when it has no status yet)."""
    status = obj.status
    return str(status.phase) if status is not None and status.phase is not None else None


class WaitState:
    """The wait's state machine; the clients feed it objects and watch events.

    ``version`` is the resourceVersion to watch from (None: re-read the object first,
    after an expiry or a dropped connection). Methods return the model when the
    condition holds, None to go on, or raise :class:`Deleted` / :class:`Timeout`.
    """

    def __init__(
        self,
        model: type[Object],
        name: str,
        namespace: str,
        predicate: Predicate,
        timeout: float,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        self.model = model
        self.kind = kind_of(model)
        self.name = name
        self.namespace = namespace
        self.predicate = predicate
        self.timeout = timeout
        self.watch_seconds = max(1, watch_seconds)
        self.version: str | None = None
        self.last_phase: str | None = None
        self.expired = 0
        """How many watches ended in 410 Gone (re-listed)."""
        self.reconnects = 0
        """How many watches broke off (re-listed)."""

    def observe(self, raw: Mapping[str, Any]) -> Object | None:
        """The current object ``raw`` (a GET, or a watch event's object)."""
        obj = parse(raw, self.model)
        self.version = metadata_of(raw).get("resourceVersion") or self.version
        self.last_phase = phase_of(obj) or self.last_phase
        if self.predicate(obj):
            return obj
        if metadata_of(raw).get("deletionTimestamp"):
            raise self.deleted("is being deleted")
        return None

    def event(self, kind: str, raw: Mapping[str, Any]) -> Object | None:
        """A watch event (``ADDED``, ``MODIFIED``, ``DELETED``, ``BOOKMARK``)."""
        if kind == "BOOKMARK":
            self.version = metadata_of(raw).get("resourceVersion") or self.version
            return None
        if kind == "DELETED":
            raise self.deleted("was deleted")
        if kind in ("ADDED", "MODIFIED"):
            return self.observe(raw)
        return None

    def gone(self) -> None:
        """The watch answered 410 Gone: its resourceVersion expired; re-read and re-watch."""
        self.expired += 1
        self.version = None

    def dropped(self) -> None:
        """The connection broke: re-read the object before watching again."""
        self.reconnects += 1
        self.version = None

    def missing(self) -> Deleted:
        """The error for a re-read that found no object (it went between two watches)."""
        return self.deleted("was deleted")

    def deleted(self, what: str) -> Deleted:
        """:class:`Deleted` for this object (``what``: ``"was deleted"``)."""
        return Deleted(
            f"{self.kind} {self.name!r} {what} while waiting (last phase {self.last_phase})",
            kind=self.kind,
            name=self.name,
            namespace=self.namespace,
        )

    def window(self, remaining: float) -> int:
        """The next watch call's server-side ``timeoutSeconds`` (whole seconds >= 1)."""
        return max(1, min(self.watch_seconds, math.ceil(remaining)))

    def timed_out(self) -> Timeout:
        """:class:`Timeout` with the last phase seen."""
        return Timeout(
            f"{self.kind} {self.name!r} did not reach the condition within {self.timeout:g}s "
            f"(last phase {self.last_phase})",
            timeout=self.timeout,
            last_phase=self.last_phase,
            kind=self.kind,
            name=self.name,
            namespace=self.namespace,
        )


# --- outcomes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How an Agent ended, from its status.

    ``phase``: Succeeded or Failed (or the phase it had, for a non-terminal outcome);
    ``reason`` / ``message``: the status' (e.g. ``Completed``, ``BackoffLimitExceeded``);
    ``result``: the agent's result (its termination message, at most 4096 bytes);
    ``usage``: token counts and cost the agent reported; ``exit_code``: the exit code of
    the last attempt, when the status has it; ``attempts``: pods started; ``agent``: the
    whole object.
    """

    name: str
    namespace: str
    phase: Phase | None
    reason: str | None
    message: str | None
    result: str | None
    usage: Usage | None
    exit_code: int | None
    attempts: int | None
    agent: Agent

    @property
    def succeeded(self) -> bool:
        """True when the phase is Succeeded."""
        return self.phase == Phase.Succeeded


def outcome_of(agent: Agent) -> Outcome:
    """The :class:`Outcome` of ``agent`` (any phase; ``run`` calls it on a terminal one)."""
    status = agent.status
    metadata = agent.metadata
    return Outcome(
        name=str(metadata.get("name")),
        namespace=str(metadata.get("namespace")),
        phase=status.phase if status else None,
        reason=status.reason if status else None,
        message=status.message if status else None,
        result=status.result if status else None,
        usage=status.usage if status else None,
        exit_code=status.exit_code if status else None,
        attempts=status.attempts if status else None,
        agent=agent,
    )


def check_outcome(outcome: Outcome) -> Outcome:
    """``outcome`` itself, or :class:`AgentFailed` when its phase is Failed."""
    if outcome.phase == Phase.Failed:
        raise AgentFailed(
            f"Agent {outcome.name!r} failed: {outcome.reason}: {outcome.message} "
            f"(exit code {outcome.exit_code})",
            outcome=outcome,
            kind=AGENT_KIND,
            name=outcome.name,
            namespace=outcome.namespace,
        )
    return outcome


# --- pods and logs -----------------------------------------------------------------------

AGENT_CONTAINER = "agent"
"""The container of an Agent's pod that runs the agent."""


def pod_name_of(agent: Mapping[str, Any], attempt: int | None = None) -> str:
    """The name of the Agent's pod of ``attempt`` (default: its current or last one).

    As ``kubectl stockade logs`` finds it: ``<name>-<attempt>``, else ``status.podName``,
    else ``<name>-<status.attempts>``. Raises :class:`NotFound` when there is no pod yet.
    """
    name = str(metadata_of(agent).get("name"))
    status = agent.get("status") or {}
    if attempt is not None:
        return f"{name}-{attempt}"
    if status.get("podName"):
        return str(status["podName"])
    if status.get("attempts"):
        return f"{name}-{status['attempts']}"
    raise NotFound(
        f"Agent {name!r} has no pod yet (phase {status.get('phase')})",
        kind="Pod",
        name=None,
        namespace=metadata_of(agent).get("namespace"),
    )


def controlled_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """True if ``obj``'s controller ownerReference carries ``owner``'s UID (never by name)."""
    uid = metadata_of(owner).get("uid")
    references = metadata_of(obj).get("ownerReferences") or []
    return bool(uid) and any(r.get("controller") and r.get("uid") == uid for r in references)


def not_controlled(pod: str, agent: str) -> ClientError:
    """The error for a pod named like the Agent's that another owner controls."""
    return ClientError(
        f"pod {pod!r} is not controlled by Agent {agent!r}: refusing to read it", kind="Pod"
    )


class LineSplitter:
    """Bytes chunks in, complete text lines out (UTF-8, without their newline)."""

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, chunk: bytes) -> list[str]:
        """The lines ``chunk`` completes."""
        *lines, self._rest = (self._rest + chunk).split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]

    def close(self) -> list[str]:
        """The last, unterminated line (if any)."""
        rest, self._rest = self._rest, b""
        return [rest.decode("utf-8", "replace")] if rest else []


# --- connection --------------------------------------------------------------------------


def context_namespace(
    contexts: list[dict[str, Any]], active: dict[str, Any] | None, context: str | None
) -> str | None:
    """The namespace the kubeconfig context ``context`` (None: the active one) names."""
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    if context and chosen is None:
        raise ClientError(f"context {context!r} not found in the kubeconfig")
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def suspend_patch(suspend: bool) -> dict[str, Any]:
    """The merge patch that sets ``spec.suspend``."""
    return {"spec": {"suspend": suspend}}


__all__ = [
    "LineSplitter",
    "Object",
    "Outcome",
    "WaitState",
    "check_outcome",
    "context_namespace",
    "controlled_by",
    "outcome_of",
    "parse",
    "pod_name_of",
    "predicate_of",
    "to_manifest",
]
