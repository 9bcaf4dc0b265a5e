"""The read model: typed reads over kopf's in-memory indexes, and ghosts found by resync.

kopf keeps one index per watched kind (:data:`stockade.handlers.WATCHED`); every
reconcile reads the objects from here (no polling, no GETs on the hot path). An index
entry a watch never reported deleted (a re-list after 410 Gone does not) is a *ghost*:
:meth:`Cache.resync` finds them with a fresh LIST, and every read skips them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stockade.core.children import ChildView
from stockade.core.observe import PodView
from stockade.runtime import metrics
from stockade.runtime.k8s import KubeApi

log = logging.getLogger("stockade.reconcile")

AgentKey = tuple[str, str]
"""``(namespace, name)`` of an Agent (or of a session, a shared policy)."""

IndexView = Mapping[AgentKey, Any]
"""The read side of a kopf index: key -> the collection of values stored under it."""


def to_plain(value: Any) -> Any:
    """Deep-copy kopf's body views (Mappings, lists) into plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def indexed_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain copy of an Agent or session body, without what the operator never reads.

    ``metadata.managedFields`` and kubectl's last-applied annotation (a second copy of
    the spec, task text included) are dropped: the indexes hold one body per object, so
    they would roughly double the operator's memory per Agent.
    """
    plain: dict[str, Any] = {str(k): to_plain(v) for k, v in body.items() if k != "metadata"}
    metadata = {
        str(k): to_plain(v) for k, v in (body.get("metadata") or {}).items() if k != "managedFields"
    }
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict) and LAST_APPLIED in annotations:
        metadata["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    plain["metadata"] = metadata
    return plain


@dataclass
class Cache:
    """Reads over the indexes kopf fills (:meth:`bind`), ghosts skipped.

    Attributes:
        kube: the API client (for :meth:`resync`'s LISTs).
        namespaces: the watched namespaces (empty: cluster-wide).
        ghost_grace: seconds an entry a LIST lacks may stay indexed before it is taken
            for a ghost (its DELETED event may be on its way).
        on_watch_checked: called after each resync with a resource (plural) and how
            many listed objects its watch had not delivered (the liveness check).
        on_ghost: called with ``(resource, key)`` for each new ghost (its key must be
            reconciled: a ghost member frees its session slot).

    """

    kube: KubeApi
    namespaces: tuple[str, ...] = ()
    ghost_grace: float = 10.0
    on_watch_checked: Callable[[str, int], None] | None = None
    on_ghost: Callable[[str, AgentKey], None] | None = None
    ghosts: set[str] = field(default_factory=set)
    agents: IndexView | None = None
    pods: IndexView | None = None
    sessions: IndexView | None = None
    members: IndexView | None = None
    children: IndexView | None = None

    def bind(
        self,
        agents: IndexView,
        pods: IndexView,
        sessions: IndexView,
        members: IndexView,
        children: IndexView | None = None,
    ) -> None:
        """Take kopf's indexes (the same objects on every call)."""
        self.agents, self.pods = agents, pods
        self.sessions, self.members = sessions, members
        self.children = children

    def first(self, index: IndexView | None, key: AgentKey) -> dict[str, Any] | None:
        """The object under `key`, ghosts skipped; of two incarnations, the newest.

        Two: an Agent deleted and created again before the watch reported the deletion.
        """
        found = [
            body
            for body in (index.get(key) if index is not None else None) or ()
            if uid_of(body) not in self.ghosts
        ]
        if not found:
            return None
        newest = max(found, key=lambda b: str(b["metadata"].get("creationTimestamp") or ""))
        return dict(newest)

    def agent(self, key: AgentKey) -> dict[str, Any] | None:
        """The Agent under `key` (a plain copy), or None."""
        return self.first(self.agents, key)

    def session(self, key: AgentKey) -> dict[str, Any] | None:
        """The AgentSession under `key` (a plain copy), or None."""
        return self.first(self.sessions, key)

    def member_bodies(self, session: AgentKey) -> list[dict[str, Any]]:
        """The Agents whose sessionRef names `session` (bodies from the Agent index)."""
        found = (self.agent((session[0], name)) for name in self.member_names(session))
        return [body for body in found if body is not None]

    def member_names(self, session: AgentKey) -> list[str]:
        """The names of the Agents whose sessionRef names `session`."""
        names = (self.members.get(session) if self.members is not None else None) or ()
        return [str(name) for name in names]

    def pods_of(self, key: AgentKey, uid: str) -> list[PodView]:
        """The pods of Agent `key` whose controller ownerReference carries `uid`.

        Pods with Stockade's labels but another (or no) owner are not its attempts: a
        predecessor's of the same name awaiting garbage collection, or a forgery.
        """
        store = self.pods.get(key) if self.pods is not None else None
        return [
            view
            for view in store or ()
            if isinstance(view, PodView) and view.owner_uid == uid and view.uid not in self.ghosts
        ]

    def children_of(self, key: AgentKey) -> dict[tuple[str, str], ChildView]:
        """``(kind, name) -> ChildView`` of Agent `key`'s children.

        With the name :data:`~stockade.core.children.SHARED`: its namespace's shared
        policies.
        """
        store = self.children.get(key) if self.children is not None else None
        return {
            (child.kind, child.name): child
            for child in store or ()
            if isinstance(child, ChildView) and child.uid not in self.ghosts
        }

    def live_pods_with_egress(self, namespace: str, label: str) -> bool:
        """Whether a pod of `namespace` labelled with egress mode `label` may still run."""
        pods = self.pods
        return pods is not None and any(
            isinstance(view, PodView)
            and view.egress == label
            and not view.finished
            and view.uid not in self.ghosts
            for (ns, _), views in pods.items()
            if ns == namespace
            for view in views
        )

    async def resync(self) -> int:
        """Converge the indexes to a fresh LIST; return how many ghosts were found.

        kopf drops an index entry only on a DELETED event; an object deleted while a
        watch was broken (410 Gone and a re-list, an API server restart) stays in the
        indexes. Entries seen before the LIST started, absent from it, and still indexed
        ``ghost_grace`` seconds later (an ordinary deletion's event arrives well within
        that) are ghosts: readers skip them, and their keys are reconciled (so a ghost
        member frees its session slot and a ghost pod stops keeping its Agent Running).
        """
        indexes = {"agents": self.agents, "agentsessions": self.sessions, "pods": self.pods}
        found: list[tuple[str, AgentKey, str]] = []
        unseen: dict[str, set[str]] = {}
        complete = True
        for resource, index in indexes.items():
            if index is None:
                continue
            before = [
                (key, uid_of(body)) for key, store in list(index.items()) for body in store or ()
            ]
            listed = await self.kube.list_uids(resource, self.namespaces)
            complete = complete and listed is not None
            if listed is not None:
                found.extend((resource, key, uid) for key, uid in before if uid not in listed)
                unseen[resource] = listed - {uid for _, uid in before}
        listed_at = time.time()
        if complete:
            metrics.RESYNC_LAST_SUCCESS.set(listed_at)
        if (found or any(unseen.values())) and self.ghost_grace:
            await asyncio.sleep(self.ghost_grace)
        for resource, uids in unseen.items():
            # Listed, still not indexed a grace period later, and no event of that kind
            # meanwhile: the watch is stuck. (With events flowing, an object created and
            # deleted within the grace period is the likelier story.)
            indexed = {
                uid_of(b) for store in (indexes[resource] or {}).values() for b in store or ()
            }
            flowing = metrics.LAST_EVENT.get(resource, 0.0) > listed_at
            missed = 0 if flowing else len(uids - indexed)
            if missed:
                metrics.WATCH_MISSED.labels(resource).inc(missed)
            if self.on_watch_checked is not None:
                self.on_watch_checked(resource, missed)
        found = [
            (resource, key, uid)
            for resource, key, uid in found
            if any(uid_of(body) == uid for body in (indexes[resource] or {}).get(key) or ())
        ]
        gone = {uid for _, _, uid in found}
        new = [(resource, key, uid) for resource, key, uid in found if uid not in self.ghosts]
        self.ghosts = gone  # a ghost the index dropped since, or that is back, is no more
        for resource, key, uid in new:
            metrics.INDEX_GHOSTS.inc()
            log.info("%s %s/%s (uid %s) is gone: forgetting it", resource, *key, uid)
            if self.on_ghost is not None:
                self.on_ghost(resource, key)
        return len(new)


def uid_of(body: Mapping[str, Any] | PodView | ChildView) -> str:
    """The UID of an indexed object: a body, or the summary an index keeps of it."""
    if isinstance(body, PodView | ChildView):
        return body.uid
    return str((body.get("metadata") or {}).get("uid") or "")
