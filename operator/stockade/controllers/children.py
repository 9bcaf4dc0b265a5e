"""What an Agent's pod needs, applied: its children and the pod of an attempt.

The children are its ConfigMap, NetworkPolicy (or its namespace's shared policy) and
workspace PVC.
An Agent with egress Hosts (issue 21) also gets the egress gateway's CA in its ConfigMap
(read from ``STOCKADE_GATEWAY_CA_CONFIGMAP``, at most once a minute) and, in each pod,
a fresh random token for the gateway (:class:`stockade.build.pod.GatewayAccess`).
Children are created when missing and put back when they drifted, judged by UID
(:func:`stockade.core.children.plan`); a name held by anything else is a
``ResourceConflict``, never success.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.aio.client.exceptions import ApiException

from stockade.api.agent import AgentSpec
from stockade.build.configmap import build_input_configmap, gateway_ca_data, uses_gateway
from stockade.build.errors import SpecError
from stockade.build.names import RETAINED_ANNOTATION, AgentRef, configmap_name
from stockade.build.network import OWN_POLICY, build_agent_network_policy, egress_label
from stockade.build.pod import GatewayAccess, build_pod
from stockade.build.workspace import build_workspace_pvc
from stockade.config import OperatorConfig
from stockade.controllers.egress import SharedPolicies
from stockade.core.children import ChildView, Ownership, Write, digest, ownership, plan
from stockade.core.lifecycle import Reason, Rejection
from stockade.core.spec import Prepared
from stockade.runtime.apply import conflict, create_or_find
from stockade.runtime.cache import Cache
from stockade.runtime.expectations import Expectations
from stockade.runtime.k8s import KubeApi, api_message

log = logging.getLogger("stockade.reconcile")

GATEWAY_CA_TTL_SECONDS = 60.0
"""How long a read of the gateway's CA ConfigMap is reused."""


@dataclass
class Children:
    """Creates and restores an Agent's children and creates its pods."""

    kube: KubeApi
    config: OperatorConfig
    cache: Cache
    expectations: Expectations
    shared: SharedPolicies
    clock: Callable[[], float] = time.monotonic
    _ca: tuple[float, dict[str, str] | None] | None = field(default=None, repr=False)

    async def _read_gateway_ca(self) -> dict[str, str] | None:
        """The data of the gateway's CA ConfigMap (None: not configured, absent, unreadable).

        Read at most once per :data:`GATEWAY_CA_TTL_SECONDS`; a failed read is logged
        and counts as absent (the pod then gets no CA, the proxy still works).
        """
        name, namespace = self.config.gateway_ca_configmap, self.config.operator_namespace
        if not name or not namespace:
            return None
        now = float(self.clock())
        if self._ca is not None and now - self._ca[0] < GATEWAY_CA_TTL_SECONDS:
            return self._ca[1]
        try:
            data = await self.kube.read_config_map_data(namespace, name)
        except ApiException as exc:
            log.warning("cannot read the gateway CA ConfigMap %s/%s: %s", namespace, name, exc)
            data = None
        self._ca = (now, data)
        return data

    async def _gateway_ca(self, ref: AgentRef, spec: AgentSpec) -> dict[str, str] | None:
        """The gateway CA the Agent's input ConfigMap holds, or is to hold.

        The ConfigMap is immutable: one made before the CA was published keeps going
        without it (its digest is the CA-less build's), rather than a replace that the
        API server refuses at every reconcile.
        """
        if not uses_gateway(spec):
            return None
        ca = await self._read_gateway_ca()
        if not gateway_ca_data(spec, ca):
            return None
        found = self.cache.children_of((ref.namespace, ref.name)).get(
            ("ConfigMap", configmap_name(ref.name))
        )
        if found is not None:
            without = build_input_configmap(ref, spec)
            if without is not None and found.digest == digest(without):
                return None
        return ca

    async def ensure(self, agent: dict[str, Any], prepared: Prepared) -> Rejection | str | None:
        """Create what is missing of the Agent's children, restore what drifted.

        The ConfigMap, NetworkPolicy and workspace PVC (:func:`stockade.core.children.plan`).

        Returns None when every child is the Agent's and as built; a ResourceConflict
        Rejection when a name is held by something else (stalled unless it is a
        predecessor's, which garbage collection removes); a message for a spec that
        cannot be built.
        """
        spec = prepared.spec
        if spec is None:
            return prepared.error or "the spec could not be prepared"
        metadata = agent["metadata"]
        ref = AgentRef(metadata["name"], metadata["namespace"], metadata["uid"])
        label = egress_label(spec.network)
        if label != OWN_POLICY:
            problem = await self.shared.ensure(ref.namespace, label)
            if problem is not None:
                return problem
        try:
            own = label == OWN_POLICY  # else the shared one, ensured above
            fence = build_agent_network_policy(ref, spec, self.config) if own else None
            ca = await self._gateway_ca(ref, spec)
            built = [fence, build_input_configmap(ref, spec, ca), build_workspace_pvc(ref, spec)]
        except SpecError as exc:
            return str(exc)
        observed = self.cache.children_of((ref.namespace, ref.name))
        started = int((agent.get("status") or {}).get("attempts") or 0) >= 1
        desired = [c for c in built if c is not None and self._expected(ref, c, observed)]
        reuse = spec.workspace is not None and spec.workspace.reuse
        for step in plan(desired, observed, ref.name, ref.uid, reuse):
            manifest = dict(step.desired)
            if step.write is Write.CREATE:
                # Made with the first pod, it most likely exists and the watch has not
                # listed it yet (the operator just started): look before writing.
                found = await create_or_find(self.kube, manifest, look_first=started)
                if found is None:
                    self.expectations.created(_created_key(ref, manifest))
                    continue
                if isinstance(found, Rejection):
                    return found
                view = found
                retained = RETAINED_ANNOTATION in (manifest["metadata"].get("annotations") or {})
                whose = ownership(view, ref.name, ref.uid, retained, reuse=reuse)
                if whose is not Ownership.OURS:
                    return conflict(manifest, view, transient=whose is Ownership.PREDECESSOR)
                if manifest["kind"] != "PersistentVolumeClaim" and view.digest != digest(manifest):
                    problem = await self._restore(ref, manifest, view)
                    if problem is not None:
                        return problem
            elif step.write is Write.REPLACE and step.found is not None:
                log.info("restoring %s %s/%s", manifest["kind"], ref.namespace, step.found.name)
                problem = await self._restore(ref, manifest, step.found)
                if problem is not None:
                    return problem
            elif step.write is Write.CONFLICT:
                return conflict(manifest, step.found, transient=False)
            elif step.write is Write.WAIT:
                return conflict(manifest, step.found, transient=True)
        return None

    async def _restore(
        self, ref: AgentRef, manifest: dict[str, Any], found: ChildView
    ) -> Rejection | None:
        """Put the Agent's own drifted child back to `manifest`; None once it is.

        A failed write is never taken for a restored child: the pod would start on
        content the operator did not write (an input ConfigMap someone replaced). A
        409/404 (changed or deleted meanwhile) waits for the next reconcile; a refusal
        (422: an immutable ConfigMap whose data differs cannot be updated) deletes the
        child, preconditioned on its UID, and the next reconcile creates it as built.
        Either way the Agent waits (a transient ResourceConflict) and gets no pod.
        """
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        try:
            if await self.kube.replace(manifest, found.resource_version):
                return None
            why = "changed or deleted while it was restored; trying again"
        except ApiException as exc:
            if exc.status not in (400, 403, 422):
                raise
            log.warning(
                "%s %s/%s cannot be restored (%s): deleting it to create it again",
                kind,
                ref.namespace,
                name,
                api_message(exc),
            )
            await self.kube.delete_child(kind, ref.namespace, name, found.uid)
            why = (
                f"differs from the spec and cannot be updated ({api_message(exc)}): "
                "deleted, to be created again"
            )
        return Rejection(Reason.RESOURCE_CONFLICT, f"{kind} {name} {why}", stalled=False)

    def _expected(
        self, ref: AgentRef, child: Mapping[str, Any], observed: Mapping[tuple[str, str], Any]
    ) -> bool:
        """Whether to plan `child`: not if created a moment ago and not yet watched.

        Creating it again before its watch event arrives would be a 409 and a GET.
        """
        key = _created_key(ref, child)
        seen = (key[1], key[2]) in observed
        return not self.expectations.awaiting_creation(key, seen=seen)

    async def create_pod(
        self, agent: dict[str, Any], prepared: Prepared, attempt: int
    ) -> Rejection | str | None:
        """Create the pod of `attempt` (its children exist: :meth:`_ensure_children`).

        Returns None on success (also when the pod exists and is this Agent's: the
        status write that recorded it was lost), a Rejection when the API server refuses
        it or its name is held by a pod the Agent does not own, or a message when the
        spec cannot become a pod.
        """
        spec = prepared.spec
        if spec is None or prepared.runtime_class is None or prepared.resources is None:
            return prepared.error or "the spec could not be prepared"
        metadata = agent["metadata"]
        ref = AgentRef(metadata["name"], metadata["namespace"], metadata["uid"])
        gateway = None
        if uses_gateway(spec) and self.config.gateway_address:
            ca = await self._gateway_ca(ref, spec)
            gateway = GatewayAccess(
                address=self.config.gateway_address,
                token=secrets.token_urlsafe(32),
                ca=bool(gateway_ca_data(spec, ca)),
            )
        try:
            pod = build_pod(
                ref,
                spec,
                attempt=attempt,
                runtime_class=prepared.runtime_class,
                resources=prepared.resources,
                config=self.config,
                gateway=gateway,
            )
        except SpecError as exc:
            return str(exc)
        view = await create_or_find(self.kube, pod)
        if view is None or isinstance(view, Rejection):
            return view
        whose = ownership(view, ref.name, ref.uid, False)
        if whose is Ownership.OURS and not view.deleting:
            return None  # created before, but not recorded (the operator stopped)
        # Ours but terminating (a suspended attempt's pod, its deletion not yet watched:
        # the pods may be listed after the Agents at start-up) is no new attempt: wait.
        return conflict(pod, view, transient=whose is Ownership.PREDECESSOR or view.deleting)


def _created_key(ref: AgentRef, child: Mapping[str, Any]) -> tuple[str, str, str]:
    return (ref.uid, str(child["kind"]), str(child["metadata"]["name"]))
