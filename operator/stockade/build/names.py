"""Names, labels and owner references of an Agent's children.

Names are deterministic, so that creating a child twice is harmless (the second create
gets 409 AlreadyExists) and an operator restart finds the children it made:

=================  ==========================
child              name
=================  ==========================
Pod                ``<agent>-<attempt>``
ConfigMap          ``<agent>-input``
PVC                ``<agent>-workspace``
NetworkPolicy      ``stockade-egress-<mode>`` (one per namespace and egress mode,
                   shared by the Agents of that mode), or ``<agent>-egress`` (Custom)
=================  ==========================

Agent names are DNS-1123 labels of at most 52 characters (enforced by the CRD), so every
derived name is a valid DNS label (at most 63 characters) as well.

Labels (recommended labels, https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/):
every child carries ``app.kubernetes.io/managed-by: stockade`` and
``stockade.dev/agent: <agent>``, plus ``stockade.dev/session: <session>`` for members of an
AgentSession; pods also carry ``stockade.dev/attempt: "<n>"`` and
``stockade.dev/egress: <mode>`` (what the namespace's shared policy of that mode
selects). A shared NetworkPolicy carries the managed-by and egress labels and no
``stockade.dev/agent``: it belongs to no single Agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from stockade.api.agent import AGENT_KIND, GROUP, VERSION, AgentSpec

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "stockade"
AGENT_LABEL = "stockade.dev/agent"
SESSION_LABEL = "stockade.dev/session"
ATTEMPT_LABEL = "stockade.dev/attempt"
EGRESS_LABEL = "stockade.dev/egress"
RETAINED_ANNOTATION = "stockade.dev/retained"
RETAINED_BY_ANNOTATION = "stockade.dev/retained-by"
"""On a retained workspace claim: the UID of the Agent that created it.

Only that Agent mounts it without ``spec.workspace.reuse: true``; a later Agent of the
same name must opt in (and the admission policy checks its author may get and update
the claim), so no author reads another's retained workspace by reusing a name.
"""
RESERVED_LABEL_PREFIX = "stockade.dev/"

MANAGED_LABELS: dict[str, str] = {MANAGED_BY_LABEL: MANAGED_BY}
"""The label every Stockade child carries (a kopf ``labels=`` filter)."""

MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
"""Server-side label selector of the operator's pod watch: only Stockade's pods stream."""

AGENT_API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class AgentRef:
    """The identity of an Agent, as its children need it.

    Attributes:
        name: ``metadata.name`` (a DNS-1123 label of at most 52 characters).
        namespace: ``metadata.namespace``; every child lives in the same namespace.
        uid: ``metadata.uid``, for owner references.

    """

    name: str
    namespace: str
    uid: str

    api_version: ClassVar[str] = AGENT_API_VERSION
    kind: ClassVar[str] = AGENT_KIND

    def owner_reference(self, controller: bool = True) -> dict[str, Any]:
        """Return an ownerReference to this Agent (see :func:`owner_reference`)."""
        return owner_reference(self.api_version, self.kind, self.name, self.uid, controller)


def labels_for(agent_name: str, session: str | None = None) -> dict[str, str]:
    """Return the labels every child of Agent `agent_name` carries.

    Args:
        agent_name: the Agent's name.
        session: the AgentSession's name for session members, else None (no label).

    Returns:
        ``{"app.kubernetes.io/managed-by": "stockade", "stockade.dev/agent": agent_name}``
        plus ``"stockade.dev/session": session`` when `session` is given.

    """
    labels = {MANAGED_BY_LABEL: MANAGED_BY, AGENT_LABEL: agent_name}
    if session:
        labels[SESSION_LABEL] = session
    return labels


def session_of(spec: AgentSpec) -> str | None:
    """Return the AgentSession `spec` belongs to (``spec.sessionRef.name``), or None."""
    return spec.session_ref.name if spec.session_ref is not None else None


def agent_selector(agent_name: str) -> dict[str, str]:
    """``matchLabels`` that select the pods of Agent `agent_name` (all attempts)."""
    return {MANAGED_BY_LABEL: MANAGED_BY, AGENT_LABEL: agent_name}


def pod_name(agent: str, attempt: int) -> str:
    """Name the pod of `agent`'s attempt number `attempt` (``<agent>-<attempt>``).

    Raises:
        ValueError: `attempt` is below 1 (attempts count from 1).

    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    return f"{agent}-{attempt}"


def configmap_name(agent: str) -> str:
    """Name the ConfigMap holding `agent`'s task and config (``<agent>-input``)."""
    return f"{agent}-input"


def pvc_name(agent: str) -> str:
    """Name `agent`'s workspace PersistentVolumeClaim (``<agent>-workspace``)."""
    return f"{agent}-workspace"


def networkpolicy_name(agent: str) -> str:
    """Name `agent`'s NetworkPolicy (``<agent>-egress``)."""
    return f"{agent}-egress"


def shared_networkpolicy_name(mode: str) -> str:
    """Name the namespace's shared NetworkPolicy of egress `mode` (``stockade-egress-<mode>``).

    `mode` is the lower-case value of the ``stockade.dev/egress`` label (``none``,
    ``dns``, ``internet``). No per-Agent name can collide: those end in ``-egress``.
    """
    return f"stockade-egress-{mode}"


def owner_reference(
    api_version: str, kind: str, name: str, uid: str, controller: bool = True
) -> dict[str, Any]:
    """Return a metav1.OwnerReference to the object `kind`/`name` with UID `uid`.

    ``blockOwnerDeletion`` is always true, so foreground deletion of the owner waits for
    this dependent. At most one owner of an object may be its controller.

    Returns:
        ``{"apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"}``.

    """
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def child_metadata(
    agent: AgentRef,
    name: str,
    session: str | None,
    *,
    owned: bool = True,
    extra_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``metadata`` of a child of `agent` named `name`: namespace, labels, ownerReference.

    Args:
        agent: the owning Agent.
        name: the child's name.
        session: the Agent's session name (label), or None.
        owned: give the child a controller ownerReference to the Agent (garbage
            collection deletes it with the Agent).
        extra_labels: more labels (``podMetadata.labels``); Stockade's own labels win
            on a conflict, and keys under the reserved ``stockade.dev/`` prefix are
            dropped (so no pod can pose as another session's or attempt's).

    """
    labels = {
        key: value
        for key, value in (extra_labels or {}).items()
        if not key.startswith(RESERVED_LABEL_PREFIX)
    }
    labels.update(labels_for(agent.name, session))
    metadata: dict[str, Any] = {"name": name, "namespace": agent.namespace, "labels": labels}
    if owned:
        metadata["ownerReferences"] = [agent.owner_reference()]
    return metadata
