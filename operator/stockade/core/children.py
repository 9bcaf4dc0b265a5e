"""Ownership and drift of an Agent's children (ConfigMap, NetworkPolicy, PVC), pure.

docs/architecture.md, "The controller contract": a child is the Agent's only if its
controller ownerReference carries the Agent's UID (as the Job controller adopts pods, never by name
or label alone), and everything the operator creates it observes and restores.

The operator's watches keep a :class:`ChildView` per child (a summary, not the body: a
ConfigMap holds the task text, up to 100 KiB). :func:`plan` compares what an Agent needs
with what is observed and says what to write; :func:`ownership` judges an object found
under a child's name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from stockade.build.names import (
    AGENT_LABEL,
    EGRESS_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    RETAINED_ANNOTATION,
    RETAINED_BY_ANNOTATION,
    SESSION_LABEL,
)

_OUR_LABELS = (MANAGED_BY_LABEL, AGENT_LABEL, SESSION_LABEL, EGRESS_LABEL)

SHARED = ""
"""The name part of the index key ``(namespace, SHARED)`` under which the children that
belong to no single Agent (the namespace's shared NetworkPolicies) are kept; no Agent
has an empty name."""


def shared_label(obj: Mapping[str, Any]) -> str | None:
    """The egress label of a namespace's shared NetworkPolicy, or None for anything else.

    Shared: a NetworkPolicy labelled managed-by Stockade and ``stockade.dev/egress``,
    without ``stockade.dev/agent`` (:func:`stockade.build.network.build_shared_network_policy`).
    Whether it is really Stockade's (no controller owner) is :func:`ownership`'s call.
    """
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if obj.get("kind") != "NetworkPolicy" or AGENT_LABEL in labels:
        return None
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
        return None
    label = labels.get(EGRESS_LABEL)
    return str(label) if label else None


def digest(obj: Mapping[str, Any]) -> str:
    """A short hash of the parts of a child Stockade manages (what drift means).

    ConfigMap: ``data`` and ``binaryData``; NetworkPolicy: ``spec``; PVC: nothing beyond
    existence (its spec is immutable, and the binder and provisioner annotate it). For
    every kind Stockade's own labels (``app.kubernetes.io/managed-by``,
    ``stockade.dev/agent``, ``stockade.dev/session``) count; labels others add do not.
    """
    labels = (obj.get("metadata") or {}).get("labels") or {}
    managed: dict[str, Any] = {"labels": {k: labels[k] for k in _OUR_LABELS if k in labels}}
    kind = obj.get("kind")
    if kind == "ConfigMap":
        managed["data"] = obj.get("data") or {}
        managed["binaryData"] = obj.get("binaryData") or {}
    elif kind == "NetworkPolicy":
        managed["spec"] = _defaulted_policy_spec(obj.get("spec") or {})
    text = json.dumps(managed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _defaulted_policy_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """`spec` as the API server stores it, so that built and read back hash alike.

    A port's protocol defaults to TCP, and empty lists and maps are dropped (the server
    omits them: ``egress: []`` reads back as no ``egress``; both deny all).
    """
    out = json.loads(json.dumps(spec))
    for direction in ("ingress", "egress"):
        for rule in out.get(direction) or ():
            for port in rule.get("ports") or ():
                port.setdefault("protocol", "TCP")
    pruned = _without_empty(out)
    return dict(pruned) if isinstance(pruned, dict) else {}


def _without_empty(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


def controller_of(obj: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """``(kind, name, uid)`` of `obj`'s controller ownerReference, or None."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return (str(ref.get("kind")), str(ref.get("name")), str(ref.get("uid")))
    return None


@dataclass(frozen=True)
class ChildView:
    """What the operator keeps of one observed child.

    Attributes:
        kind: ``ConfigMap``, ``NetworkPolicy`` or ``PersistentVolumeClaim``.
        name / uid / resource_version: the object's metadata.
        owner: its controller ownerReference as ``(kind, name, uid)`` (None without).
        deleting: it has a deletionTimestamp (a PVC in use waits for its pod).
        retained_for: the Agent name of a retained workspace (no owner, by design).
        retained_by: the UID of the Agent that created that retained workspace.
        digest: :func:`digest` of the object.
        shared: the egress label of a shared NetworkPolicy (:func:`shared_label`).

    """

    kind: str
    name: str
    uid: str
    resource_version: str
    owner: tuple[str, str, str] | None
    deleting: bool
    retained_for: str | None
    digest: str
    retained_by: str | None = None
    shared: str | None = None

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ChildView:
        """Summarize an API object (a plain dict or kopf body)."""
        meta = obj.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        labels = meta.get("labels") or {}
        retained = annotations.get(RETAINED_ANNOTATION) == "true"
        return cls(
            kind=str(obj.get("kind") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
            owner=controller_of(obj),
            deleting=meta.get("deletionTimestamp") is not None,
            retained_for=labels.get(AGENT_LABEL) if retained else None,
            digest=digest(obj),
            shared=shared_label(obj),
            retained_by=annotations.get(RETAINED_BY_ANNOTATION) if retained else None,
        )

    @property
    def owner_uid(self) -> str | None:
        """The UID of the controller ownerReference (None without one)."""
        return self.owner[2] if self.owner else None

    def describe(self) -> str:
        """`ConfigMap a-input (controller: Agent a, uid ...)`, for messages."""
        held = f"{self.kind} {self.name}"
        if self.owner:
            return f"{held} (controller: {self.owner[0]} {self.owner[1]}, uid {self.owner[2]})"
        return f"{held} (no controller)"


class Ownership(StrEnum):
    """Whose an object found under a child's name is."""

    OURS = "Ours"
    PREDECESSOR = "Predecessor"  # an earlier Agent of the same name's: GC removes it
    FOREIGN = "Foreign"  # someone else's: it will not go away by itself


def ownership(
    found: ChildView | Mapping[str, Any],
    agent_name: str,
    agent_uid: str,
    retained_ok: bool,
    shared: str | None = None,
    reuse: bool = False,
) -> Ownership:
    """Judge an object found under the name of one of an Agent's children.

    `agent_name` and `agent_uid` identify the Agent; `retained_ok`: it has a retained
    workspace, whose PVC has no owner by design and is mounted again by an Agent of
    the same name; `shared`: the name is that of the namespace's shared policy with
    this egress label, which is Stockade's when it has that label and no controller;
    `reuse`: the Agent opted in (``spec.workspace.reuse``) to mount a retained claim an
    earlier Agent of its name created (else only its own creator's UID mounts it).
    """
    view = found if isinstance(found, ChildView) else ChildView.of(found)
    if shared is not None:
        ours = view.owner is None and view.shared == shared
        return Ownership.OURS if ours else Ownership.FOREIGN
    if view.owner_uid == agent_uid:
        return Ownership.OURS
    if retained_ok and view.owner_uid is None and view.retained_for == agent_name:
        if reuse or view.retained_by == agent_uid:
            return Ownership.OURS
        return Ownership.FOREIGN  # an earlier Agent's retained workspace: opt in to reuse
    if view.owner is not None and view.owner[:2] == ("Agent", agent_name):
        # An earlier Agent of the same name: the garbage collector removes its children
        # once it is gone (a delete and re-create, as GitOps tools do).
        return Ownership.PREDECESSOR
    return Ownership.FOREIGN


class Write(StrEnum):
    """What to do about one child."""

    CREATE = "Create"
    REPLACE = "Replace"  # restore what drifted (optimistic concurrency on its version)
    WAIT = "Wait"  # being deleted, or a predecessor's: it goes away by itself
    CONFLICT = "Conflict"  # someone else's object holds the name


@dataclass(frozen=True)
class Step:
    """One write (or refusal) for one desired child; ``found`` is what is there."""

    write: Write
    desired: Mapping[str, Any]
    found: ChildView | None = None


def plan(
    desired: Iterable[Mapping[str, Any]],
    observed: Mapping[tuple[str, str], ChildView],
    agent_name: str,
    agent_uid: str,
    reuse: bool = False,
) -> list[Step]:
    """Compare the children an Agent needs with those observed; list what to write.

    Args:
        desired: the child manifests (builders' output; ``kind`` and ``metadata.name``).
        observed: ``(kind, name) -> ChildView`` of the Agent's namespace, from the watch.
        agent_name: the Agent's name.
        agent_uid: the Agent's UID.
        reuse: ``spec.workspace.reuse``: a retained claim an earlier Agent of this
            name created is the Agent's (else it is a conflict).

    Returns:
        A :class:`Step` for every child that is missing, drifted, foreign or going
        away; nothing for a child that is the Agent's and as it should be.

    """
    steps: list[Step] = []
    for manifest in desired:
        kind, name = str(manifest["kind"]), str(manifest["metadata"]["name"])
        found = observed.get((kind, name))
        retained = RETAINED_ANNOTATION in (manifest["metadata"].get("annotations") or {})
        if found is None:
            steps.append(Step(Write.CREATE, manifest))
            continue
        whose = ownership(found, agent_name, agent_uid, retained, reuse=reuse)
        if whose is Ownership.FOREIGN:
            steps.append(Step(Write.CONFLICT, manifest, found))
        elif whose is Ownership.PREDECESSOR or found.deleting:
            steps.append(Step(Write.WAIT, manifest, found))
        elif kind != "PersistentVolumeClaim" and found.digest != digest(manifest):
            steps.append(Step(Write.REPLACE, manifest, found))
    return steps
