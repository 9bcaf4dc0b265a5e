"""The shared egress NetworkPolicy controller: one policy per namespace and mode.

Agents whose egress is one of :data:`~stockade.build.network.SHARED_MODES` share their
namespace's ``stockade-egress-<mode>`` policy instead of owning one each. It is made
before the first pod of that mode runs (:meth:`SharedPolicies.ensure`, called by the
Agent controller) and put back, on its own watch events, while such a pod may run
(:meth:`SharedPolicies.reconcile`). One write at a time per policy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stockade.build.network import SHARED_MODES, build_shared_network_policy
from stockade.config import OperatorConfig
from stockade.core.children import SHARED, ChildView, Ownership, digest, ownership, shared_label
from stockade.core.lifecycle import Rejection
from stockade.runtime.apply import conflict, create_or_find
from stockade.runtime.cache import AgentKey, Cache
from stockade.runtime.expectations import Expectations
from stockade.runtime.k8s import KubeApi

log = logging.getLogger("stockade.reconcile")


@dataclass
class SharedPolicies:
    """Reconciles the namespaces' shared egress policies (see the module docstring).

    Attributes:
        leading: a callable telling whether this replica may write.

    """

    kube: KubeApi
    config: OperatorConfig
    cache: Cache
    expectations: Expectations
    leading: Callable[[], bool] = lambda: True
    _writes: dict[AgentKey, asyncio.Task[Rejection | None]] = field(default_factory=dict)
    _built: dict[tuple[str, str], tuple[dict[str, Any], str]] = field(default_factory=dict)

    async def reconcile(self, key: AgentKey) -> None:
        """Restore the namespace's shared NetworkPolicy `key` if a live pod needs it.

        Poked by the policy's watch events: a deletion or an edit (anyone's) is put
        back while a pod labelled with its mode may still run; an unneeded one is left
        alone (and one deleted then is not made again until a pod needs it).
        """
        namespace, name = key
        label = name.removeprefix("stockade-egress-")
        if not self.leading() or label not in SHARED_MODES:
            return
        if self.cache.live_pods_with_egress(namespace, label):
            problem = await self.ensure(namespace, label, trust_watch=True)
            if problem is not None:
                log.warning("%s/%s: %s", namespace, name, problem.message)

    def _policy(self, namespace: str, label: str) -> tuple[dict[str, Any], str]:
        """The shared policy of `label` in `namespace` as built, and its digest.

        Built once: every reconcile of a live Agent checks it.
        """
        built = self._built.get((namespace, label))
        if built is None:
            manifest = build_shared_network_policy(namespace, label, self.config)
            built = self._built[(namespace, label)] = (manifest, digest(manifest))
        return built

    async def ensure(
        self, namespace: str, label: str, *, trust_watch: bool = False
    ) -> Rejection | None:
        """Make sure `namespace`'s shared policy of egress `label` exists, as built.

        Needed before a pod of that mode runs. One write at a time per policy:
        concurrent reconciles of the namespace's Agents wait for the same create (or
        restore) rather than racing to a 409. A policy created a moment ago and not
        yet watched is taken as there, unless
        `trust_watch` (the caller acts on the policy's own watch event, which is newer).

        Returns None when it is there and as built; a Rejection when another object
        holds its name (ResourceConflict), it is being deleted (transient: its DELETED
        event restores it), or the API server refused it.
        """
        manifest, built = self._policy(namespace, label)
        key = (namespace, str(manifest["metadata"]["name"]))
        running = self._writes.get(key)
        if running is not None:
            return await asyncio.shield(running)
        found = self.cache.children_of((key[0], SHARED)).get(("NetworkPolicy", key[1]))
        awaited = self.expectations.awaiting_creation(("shared", key), seen=found is not None)
        if found is None:
            if awaited and not trust_watch:
                return None
        else:
            problem = self._problem(manifest, found)
            if problem is not None or found.digest == built:
                return problem
        task = asyncio.create_task(self._write(manifest, found))
        self._writes[key] = task
        task.add_done_callback(lambda _: self._writes.pop(key, None))
        return await asyncio.shield(task)

    async def _write(self, manifest: dict[str, Any], found: ChildView | None) -> Rejection | None:
        """Create the shared policy `manifest`, or put `found` (ours) back to it."""
        meta = manifest["metadata"]
        if found is None:
            view = await create_or_find(self.kube, manifest)
            if view is None:
                self.expectations.created(("shared", (str(meta["namespace"]), str(meta["name"]))))
                return None
            if isinstance(view, Rejection):
                return view
            problem = self._problem(manifest, view)
            if problem is not None or view.digest == digest(manifest):
                return problem
            found = view
        log.info("restoring NetworkPolicy %s/%s", meta["namespace"], meta["name"])
        await self.kube.replace(manifest, found.resource_version)
        return None

    @staticmethod
    def _problem(manifest: Mapping[str, Any], found: ChildView) -> Rejection | None:
        """Why the policy `found` under the shared policy's name will not do, or None."""
        label = shared_label(manifest)
        if ownership(found, "", "", False, shared=label) is not Ownership.OURS:
            return conflict(manifest, found, transient=False)
        if found.deleting:
            return conflict(manifest, found, transient=True)
        return None
