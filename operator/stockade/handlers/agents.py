"""Agent, AgentSession, pod and child watches: index what is seen, poke the reconciler.

The handlers are coroutines (kopf runs plain functions in a thread pool); none of them
waits on I/O. kopf passes each index to handlers as a keyword argument named after its
function: ``agents``, ``agent_pods``, ``agent_sessions``, ``session_members`` and
``agent_children`` (ConfigMaps, NetworkPolicies and PVCs, as summaries). Pods and
children stream through a server-side label selector (``app.kubernetes.io/managed-by``).
"""

from __future__ import annotations

from typing import Any

import kopf

from stockade.api.agent import AGENT_PLURAL, GROUP, VERSION
from stockade.api.session import SESSION_PLURAL
from stockade.build.names import AGENT_LABEL, MANAGED_LABELS
from stockade.core.children import SHARED, ChildView, shared_label
from stockade.core.observe import PodView, observe_pod
from stockade.reconcile import AgentKey, Reconciler, indexed_body, session_name
from stockade.runtime import metrics
from stockade.runtime.kinds import CHILD_KINDS


@kopf.index(GROUP, VERSION, AGENT_PLURAL)
async def agents(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[AgentKey, Any] | None:
    """Index: ``(namespace, name)`` -> the Agent, as last seen by the watch."""
    return {(namespace, name): indexed_body(body)} if namespace else None


@kopf.index(GROUP, VERSION, AGENT_PLURAL)
async def session_members(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[AgentKey, str] | None:
    """Index: ``(namespace, session)`` -> names of the Agents whose sessionRef names it.

    Names only: the bodies are in the ``agents`` index (one copy per Agent).
    """
    session = session_name(body)
    return {(namespace, session): name} if namespace and session else None


@kopf.index(GROUP, VERSION, SESSION_PLURAL)
async def agent_sessions(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[AgentKey, Any] | None:
    """Index: ``(namespace, name)`` -> the AgentSession, as last seen by the watch."""
    return {(namespace, name): indexed_body(body)} if namespace else None


@kopf.index("v1", "pods", labels=MANAGED_LABELS)
async def agent_pods(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[AgentKey, PodView] | None:
    """Index: ``(namespace, agent)`` -> that Agent's pods, as last seen by the watch.

    Each pod is kept as its :class:`~stockade.core.observe.PodView` (what the lifecycle
    reads), summarized once per watch event rather than on every reconcile; the body
    itself (spec, managedFields) is not kept. A pod without a valid attempt label is
    not an attempt of any Agent and is not indexed.
    """
    agent = labels.get(AGENT_LABEL)
    if not agent or not namespace:
        return None
    try:
        return {(namespace, agent): observe_pod(body)}
    except ValueError:
        return None


async def agent_children(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[AgentKey, ChildView] | None:
    """Index: ``(namespace, agent)`` -> summaries of the Agent's ConfigMap, PVC, policy.

    Name, owner UID and digest (:class:`~stockade.core.children.ChildView`): never the body,
    which may hold the task text. The namespace's shared NetworkPolicies are kept under
    ``(namespace, SHARED)``.
    """
    if not namespace:
        return None
    agent = labels.get(AGENT_LABEL)
    if agent:
        return {(namespace, agent): ChildView.of(body)}
    view = ChildView.of(body)
    return {(namespace, SHARED): view} if view.shared else None


@kopf.on.event("v1", "pods", labels=MANAGED_LABELS)
async def pod_changed(
    namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **kwargs: Any
) -> None:
    """A pod was created, changed or deleted (by anyone): reconcile its Agent.

    The Agent is the one its ``stockade.dev/agent`` label names.
    """
    agent = labels.get(AGENT_LABEL)
    if agent and namespace:
        _reconciler(memo, kwargs).poke((namespace, agent))


async def child_changed(
    namespace: str | None,
    name: str,
    labels: kopf.Labels,
    body: kopf.Body,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """A child (ConfigMap, PVC, NetworkPolicy) was created, changed or deleted: reconcile.

    The Agent is the one its ``stockade.dev/agent`` label names; a shared NetworkPolicy
    (no such label) is checked on its own.
    """
    agent = labels.get(AGENT_LABEL)
    if agent and namespace:
        _reconciler(memo, kwargs).poke((namespace, agent))
    elif namespace and shared_label(body):
        _reconciler(memo, kwargs).poke_shared_policy((namespace, name))


for _child in CHILD_KINDS:  # one index and one handler over the children's kinds
    _resource = (*_child.api_version.split("/"), _child.plural)
    kopf.index(*_resource, labels=MANAGED_LABELS, id="agent_children")(agent_children)
    kopf.on.event(*_resource, labels=MANAGED_LABELS, id="child_changed")(child_changed)


@kopf.on.event(GROUP, VERSION, AGENT_PLURAL)
async def agent_changed(
    namespace: str | None, name: str, body: kopf.Body, memo: kopf.Memo, **kwargs: Any
) -> None:
    """Any change of an Agent (or its first sight after start-up) -> reconcile it.

    Its session is poked too: a member's arrival, end or deletion changes admission.
    """
    if namespace:
        reconciler = _reconciler(memo, kwargs)
        if not reconciler.own_echo((namespace, name), body):
            reconciler.poke((namespace, name))
        session = session_name(body)
        if session:
            reconciler.poke_session((namespace, session))


@kopf.on.event(GROUP, VERSION, SESSION_PLURAL)
async def session_changed(
    type: str | None,
    namespace: str | None,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """Any change of an AgentSession -> reconcile it, and the members it concerns.

    Every member reads the session, but most session events are the operator's own
    status writes: then only admitted members still waiting need a nudge (the session's
    reconcile pokes the others it affects). All members are poked when the session
    appears or goes, its spec changed, or it is not Active (suspended, finished).
    """
    if not namespace:
        return
    reconciler = _reconciler(memo, kwargs)
    reconciler.poke_session((namespace, name), delay=0.0)
    status = body.get("status") or {}
    spec_changed = body.get("metadata", {}).get("generation") != status.get("observedGeneration")
    everyone = type in (None, "ADDED", "DELETED") or spec_changed or status.get("phase") != "Active"
    key = (namespace, name)
    if everyone:
        for member in reconciler.member_names(key):
            reconciler.poke((namespace, member))
        return
    for member in status.get("admittedAgents") or ():  # at most maxAgents: O(1) per event
        if reconciler.waiting_member(key, str(member)):
            reconciler.poke((namespace, str(member)))


def _reconciler(memo: kopf.Memo, kwargs: dict[str, Any]) -> Reconciler:
    """The reconciler, bound to kopf's indexes; counts the watch event being handled."""
    resource = kwargs.get("resource")
    metrics.watch_event(resource.plural if resource is not None else "unknown")
    reconciler: Reconciler = memo["reconciler"]
    reconciler.cache.bind(
        kwargs["agents"],
        kwargs["agent_pods"],
        kwargs["agent_sessions"],
        kwargs["session_members"],
        kwargs["agent_children"],
    )
    return reconciler
