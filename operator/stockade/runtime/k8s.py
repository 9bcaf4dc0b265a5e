"""Thin asynchronous access to the API server (``kubernetes.aio``), and its errors.

Each write is counted in ``stockade_api_writes_total``. Creation is idempotent (an
existing object is not an error: names are deterministic), deletion too (a missing
object is not an error). :func:`classify_rejection` turns the API server's refusal of a
pod into a lifecycle :class:`~stockade.core.lifecycle.Rejection`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from stockade.api.agent import AGENT_PLURAL, GROUP, VERSION
from stockade.api.session import SESSION_PLURAL
from stockade.build.names import MANAGED_SELECTOR
from stockade.core.lifecycle import Reason, Rejection
from stockade.core.observe import format_time
from stockade.runtime import decisionlog, fastjson
from stockade.runtime.kinds import OWNED_KINDS
from stockade.runtime.metrics import API_WRITES

KIND_RESOURCE = {owned.kind: owned.plural for owned in OWNED_KINDS}
_COLLECTIONS = {
    **{owned.kind: owned.collection for owned in OWNED_KINDS},
    "Event": "/api/v1/namespaces/{namespace}/events",
}
"""The REST collection of each kind the operator reads and writes (a path template)."""
MERGE_PATCH = "application/merge-patch+json"


def api_message(exc: ApiException) -> str:
    """The ``message`` of the API server's Status body, else the exception's reason."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    return str(body.get("message") or exc.reason or exc)


def classify_rejection(exc: ApiException) -> Rejection | None:
    """Map a refused pod creation to a waiting reason, or None if it is not a refusal.

    403 with "exceeded quota" -> QuotaExceeded; 403 naming a missing RuntimeClass ->
    RuntimeClassNotFound; other 403s (PodSecurity, other admission) -> PodRejected;
    422 (the pod is invalid: input that slipped past the CRD schema) -> InvalidSpec;
    404 (its namespace was deleted, with the Agent) -> PodRejected.
    """
    message = api_message(exc)
    if exc.status == 403:
        lowered = message.lower()
        if "exceeded quota" in lowered:
            return Rejection(Reason.QUOTA_EXCEEDED, message)
        if "runtimeclass" in lowered and "not found" in lowered:
            return Rejection(Reason.RUNTIME_CLASS_NOT_FOUND, message)
        return Rejection(Reason.POD_REJECTED, message)
    if exc.status == 422:
        return Rejection(Reason.INVALID_SPEC, message)
    if exc.status == 404:  # the namespace is gone (and the Agent with it)
        return Rejection(Reason.POD_REJECTED, message)
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is an API error expected now and then (retried, no traceback).

    The API server unreachable or restarting (a connection error, a timeout),
    overloaded (429) or failing (5xx); anything else is a bug to show.
    """
    if isinstance(exc, ApiException):
        return exc.status == 429 or (exc.status or 0) >= 500
    return isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | ConnectionError)


async def _write(
    verb: str,
    resource: str,
    call: Callable[[], Awaitable[Any]],
    ok: tuple[int, ...] = (),
    *,
    name: str = "",
    precondition: str | None = None,
) -> Any:
    """Run one write, count it, and swallow the statuses in `ok` (returning None).

    The write and its outcome go to the decision log of the reconcile running it
    (:func:`stockade.runtime.decisionlog.write`): `name` is the object's, `precondition` the
    resourceVersion the write is conditional on.
    """
    try:
        result = await call()
    except ApiException as exc:
        API_WRITES.labels(verb, resource, str(exc.status)).inc()
        decisionlog.write(verb, resource, name, precondition, str(exc.status))
        if exc.status in ok:
            return None
        raise
    API_WRITES.labels(verb, resource, "2xx").inc()
    if isinstance(result, dict):
        version = (result.get("metadata") or {}).get("resourceVersion")
        decisionlog.write(verb, resource, name, precondition, f"rv {version}" if version else "ok")
    else:
        decisionlog.write(verb, resource, name, precondition, "ok")
    return result


class KubeApi(Protocol):
    """The operations the controllers need from the API server (:class:`KubeClient`).

    The one seam between the reconcilers and the cluster: the operator passes a
    :class:`KubeClient`; unit tests pass one in-memory fake implementing this protocol
    (``tests/unit/conftest.py``). Each method is documented on :class:`KubeClient`.
    """

    async def create(self, manifest: dict[str, Any]) -> bool:
        """Create a namespaced object; False if it already exists."""

    async def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """GET a child (a kind of KIND_RESOURCE) as a plain dict; None if absent."""

    async def read_policy_binding(self, name: str) -> dict[str, Any] | None:
        """The ValidatingAdmissionPolicyBinding `name`, None when missing."""

    async def read_admission_policy(self, name: str) -> dict[str, Any] | None:
        """The ValidatingAdmissionPolicy `name`, None when missing."""

    async def read_api_server_addresses(self) -> list[str]:
        """The API server's addresses (EndpointSlice ``default/kubernetes``)."""

    async def read_config_map_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The ``data`` of ConfigMap `namespace`/`name`; None when it is absent."""

    async def replace(self, manifest: dict[str, Any], resource_version: str) -> bool:
        """Replace an object conditionally on `resource_version`; False on 409/404."""

    async def delete_child(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Delete a child object, preconditioned on its `uid` (a missing one is fine)."""

    async def delete_pod(self, namespace: str, name: str, *, force: bool = False) -> None:
        """Delete a pod (a missing one is fine); `force`: grace period 0."""

    async def list_uids(self, resource: str, namespaces: tuple[str, ...]) -> set[str] | None:
        """The UIDs of every `resource` object in `namespaces`; None when refused."""

    async def patch_agent_status(
        self, namespace: str, name: str, patch: dict[str, Any], resource_version: str | None
    ) -> str | None:
        """Merge-patch an Agent's status; the new resourceVersion or None."""

    async def patch_agent_owners(
        self, namespace: str, name: str, owners: list[dict[str, Any]], resource_version: str
    ) -> str | None:
        """Set an Agent's ownerReferences conditionally; the new version."""

    async def patch_session_status(
        self, namespace: str, name: str, patch: dict[str, Any], resource_version: str | None
    ) -> str | None:
        """Merge-patch an AgentSession's status; the new version or None."""

    async def delete_session(self, namespace: str, name: str) -> None:
        """Delete an AgentSession (background propagation)."""

    async def delete_agent(self, namespace: str, name: str) -> None:
        """Delete an Agent (background propagation)."""

    async def event(
        self, agent: dict[str, Any], *, warning: bool, reason: str, message: str
    ) -> None:
        """Record a core/v1 Event on the Agent."""


@dataclass
class KubeClient:
    """The operator's API client: :class:`KubeApi` over the official asyncio client.

    The API groups' clients are built once, with the KubeClient: the client library
    imports each group's (large) module on first use, which is better paid at start-up
    than in the first reconcile.
    """

    api: client.ApiClient
    core: client.CoreV1Api = field(init=False)
    custom: client.CustomObjectsApi = field(init=False)

    def __post_init__(self) -> None:
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """Send one request with the official client's connection, auth and TLS.

        Returns the JSON answer as a plain dict. The typed API methods validate a plain
        dict body into models (pydantic's ``validate_call``), serialize it back, and
        build models from the answer, which the operator turns into dicts again: on the
        hot paths (pods, status patches, Events, children) that was a third of a
        write's CPU. This sends the body as it is and parses the answer with orjson
        (:mod:`stockade.runtime.fastjson`).

        Raises:
            ApiException: a status outside 2xx (its subclasses by status, as the typed
                methods raise them).

        """
        headers = {"Accept": "application/json", "Content-Type": content_type}
        verb, url, headers, _, _ = await self.api.param_serialize(
            method=method, resource_path=path, header_params=headers, auth_settings=["BearerToken"]
        )
        response = await self.api.call_api(verb, url, headers, body)
        data = await response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            text = data.decode("utf-8", "replace") if data else None
            raise ApiException.from_response(http_resp=response, body=text, data=None)
        found = fastjson.loads(data) if data else {}
        return found if isinstance(found, dict) else {}

    async def create(self, manifest: dict[str, Any]) -> bool:
        """Create a namespaced object; False if it already exists (409).

        Raises:
            ApiException: any other refusal (403 quota/admission, 422 invalid, ...).

        """
        kind = manifest["kind"]
        path = _collection(kind, manifest["metadata"]["namespace"])
        created = await _write(
            "create",
            KIND_RESOURCE[kind],
            lambda: self.request("POST", path, manifest),
            ok=(409,),
            name=manifest["metadata"]["name"],
        )
        return created is not None

    async def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """GET a child (a kind of :data:`KIND_RESOURCE`) as a plain dict; None if absent."""
        try:
            found = await self.request("GET", f"{_collection(kind, namespace)}/{quote(name)}")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        found.setdefault("kind", kind)
        return found

    async def read_policy_binding(self, name: str) -> dict[str, Any] | None:
        """GET ValidatingAdmissionPolicyBinding `name` (cluster-scoped); None if absent.

        Raises:
            ApiException: anything but 404 (403 when RBAC does not grant ``get``).

        """
        api = client.AdmissionregistrationV1Api(self.api)
        return await self._read_or_none(api.read_validating_admission_policy_binding(name))

    async def read_admission_policy(self, name: str) -> dict[str, Any] | None:
        """GET ValidatingAdmissionPolicy `name` (cluster-scoped); None if absent.

        Raises:
            ApiException: anything but 404 (403 when RBAC does not grant ``get``).

        """
        api = client.AdmissionregistrationV1Api(self.api)
        return await self._read_or_none(api.read_validating_admission_policy(name))

    async def _read_or_none(self, call: Awaitable[Any]) -> dict[str, Any] | None:
        """Await a typed GET `call`; its object as a plain dict, None on 404."""
        try:
            found = await call
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        result: dict[str, Any] = self.api.sanitize_for_serialization(found)  # type: ignore[no-untyped-call]
        return result

    async def read_api_server_addresses(self) -> list[str]:
        """The API server's addresses: the ``kubernetes`` EndpointSlice in ``default``.

        The API server keeps that EndpointSlice (and the Endpoints of the same name) to
        its own advertised addresses. Returns every endpoint address (IPv4 or IPv6), in
        the slice's order, duplicates removed.

        Raises:
            ApiException: the GET failed (403 without the chart's RBAC, 404 when the
                API server does not reconcile its endpoints).

        """
        found = await self.request(
            "GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes"
        )
        addresses = [
            str(address)
            for endpoint in found.get("endpoints") or ()
            for address in endpoint.get("addresses") or ()
        ]
        return list(dict.fromkeys(addresses))

    async def read_config_map_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """GET ConfigMap `namespace`/`name` and return its ``data`` (issue 21).

        Used for the egress gateway's CA ConfigMap (``STOCKADE_GATEWAY_CA_CONFIGMAP``
        in the operator's namespace), which any ConfigMap the operator may read could be.

        Returns:
            ``{key: value}`` of its ``data`` (empty when it has none); None on 404.

        Raises:
            ApiException: anything but 404 (403 when RBAC does not grant ``get``).

        """
        try:
            found = await self.request(
                "GET", f"/api/v1/namespaces/{quote(namespace)}/configmaps/{quote(name)}"
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {str(k): str(v) for k, v in (found.get("data") or {}).items()}

    async def replace(self, manifest: dict[str, Any], resource_version: str) -> bool:
        """PUT a ConfigMap or NetworkPolicy back to `manifest` (restore drift).

        Conditional on `resource_version` (optimistic concurrency): False on 409/404,
        when someone changed or deleted it meanwhile (its watch event brings it back).

        Raises:
            ApiException: any other refusal, e.g. 422 for an immutable ConfigMap whose
                data differs (it cannot be put back: the caller deletes it).

        """
        kind, meta = manifest["kind"], manifest["metadata"]
        body = {**manifest, "metadata": {**meta, "resourceVersion": resource_version}}
        path = f"{_collection(kind, meta['namespace'])}/{quote(meta['name'])}"
        done = await _write(
            "update",
            KIND_RESOURCE[kind],
            lambda: self.request("PUT", path, body),
            ok=(404, 409),
            name=meta["name"],
            precondition=resource_version,
        )
        return done is not None

    async def delete_child(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """DELETE a child object only if it still has `uid` (404, 409: gone or another).

        The UID precondition makes sure only the object judged (owned by this Agent)
        is deleted, never one created under its name meanwhile.
        """
        path = f"{_collection(kind, namespace)}/{quote(name)}"
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}}
        await _write(
            "delete",
            KIND_RESOURCE[kind],
            lambda: self.request("DELETE", path, options),
            ok=(404, 409),
            name=name,
            precondition=uid,
        )

    async def delete_pod(self, namespace: str, name: str, *, force: bool = False) -> None:
        """Delete a pod (background propagation); a missing pod is fine.

        `force` deletes it at once (grace period 0), for a pod stuck terminating on a
        lost node (``kubectl delete --force``).
        """
        core = self.core
        grace = 0 if force else None
        await _write(
            "delete",
            "pods",
            lambda: core.delete_namespaced_pod(name, namespace, grace_period_seconds=grace),
            ok=(404,),
            name=name,
        )

    async def list_uids(self, resource: str, namespaces: tuple[str, ...]) -> set[str] | None:
        """The UIDs of every object of `resource` now in the API; None if a LIST failed.

        A fresh LIST, cluster-wide or per namespace. `resource` is ``agents``,
        ``agentsessions`` or ``pods`` (Stockade's, by label).
        """
        custom, core = self.custom, self.core
        uids: set[str] = set()
        try:
            for namespace in namespaces or (None,):
                if resource == "pods":
                    if namespace is None:
                        result = await core.list_pod_for_all_namespaces(
                            label_selector=MANAGED_SELECTOR
                        )
                    else:
                        result = await core.list_namespaced_pod(
                            namespace, label_selector=MANAGED_SELECTOR
                        )
                    uids.update(str(item.metadata.uid) for item in result.items if item.metadata)
                    continue
                if namespace is None:
                    raw = await custom.list_cluster_custom_object(GROUP, VERSION, resource)
                else:
                    raw = await custom.list_namespaced_custom_object(
                        GROUP, VERSION, namespace, resource
                    )
                items: list[dict[str, Any]] = dict(raw).get("items") or []  # type: ignore[call-overload]
                uids.update(str(item["metadata"]["uid"]) for item in items)
        except (TimeoutError, ApiException, aiohttp.ClientError, ConnectionError):
            return None
        return uids

    async def patch_agent_status(
        self, namespace: str, name: str, patch: dict[str, Any], resource_version: str | None
    ) -> str | None:
        """Merge-patch an Agent's status (RFC 7386: null deletes a key).

        With `resource_version` the patch is conditional (optimistic concurrency, as the
        API conventions describe): a stale write is refused with 409 instead of undoing
        a newer one. Returns the new resourceVersion, or None on 404/409.
        """
        return await self._patch_status(AGENT_PLURAL, namespace, name, patch, resource_version)

    async def _patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        resource_version: str | None,
    ) -> str | None:
        body: dict[str, Any] = {"status": patch}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{quote(name)}/status"
        result = await _write(
            "patch",
            f"{plural}/status",
            lambda: self.request("PATCH", path, body, MERGE_PATCH),
            ok=(404, 409),
            name=name,
            precondition=resource_version,
        )
        if not isinstance(result, dict):
            return None
        return str((result.get("metadata") or {}).get("resourceVersion") or "") or None

    async def patch_agent_owners(
        self, namespace: str, name: str, owners: list[dict[str, Any]], resource_version: str
    ) -> str | None:
        """Set an Agent's ``metadata.ownerReferences`` (merge patch replaces the list).

        Conditional on `resource_version`: a list someone changed meanwhile is never
        overwritten (None on 409/404; the watch event of their change brings it back).
        Returns the Agent's new resourceVersion.
        """
        custom = self.custom
        meta = {"ownerReferences": owners, "resourceVersion": resource_version}
        done = await _write(
            "patch",
            "agents",
            lambda: custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                AGENT_PLURAL,
                name,
                {"metadata": meta},
            ),
            ok=(404, 409),
            name=name,
            precondition=resource_version,
        )
        if not isinstance(done, dict):
            return None
        return str((done.get("metadata") or {}).get("resourceVersion") or "") or None

    async def patch_session_status(
        self, namespace: str, name: str, patch: dict[str, Any], resource_version: str | None
    ) -> str | None:
        """Conditionally merge-patch an AgentSession's status (see patch_agent_status)."""
        return await self._patch_status(SESSION_PLURAL, namespace, name, patch, resource_version)

    async def delete_session(self, namespace: str, name: str) -> None:
        """Delete an AgentSession (its Agents follow by garbage collection)."""
        await self._delete(SESSION_PLURAL, namespace, name)

    async def delete_agent(self, namespace: str, name: str) -> None:
        """Delete an Agent (its children follow by garbage collection)."""
        await self._delete(AGENT_PLURAL, namespace, name)

    async def _delete(self, plural: str, namespace: str, name: str) -> None:
        """Delete a Stockade object with background propagation; a missing one is fine."""
        custom = self.custom
        await _write(
            "delete",
            plural,
            lambda: custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, propagation_policy="Background"
            ),
            ok=(404,),
            name=name,
        )

    async def event(
        self, agent: dict[str, Any], *, warning: bool, reason: str, message: str
    ) -> None:
        """Record a core/v1 Event on the Agent (``kubectl describe agent`` shows it)."""
        metadata = agent["metadata"]
        now = datetime.now(UTC)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{metadata['name']}.{uuid.uuid4().hex[:12]}",
                "namespace": metadata["namespace"],
            },
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Agent",
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata["uid"],
            },
            "type": "Warning" if warning else "Normal",
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "stockade"},
            "reportingComponent": "stockade.dev/operator",
            "reportingInstance": "stockade",
            "firstTimestamp": format_time(now),
            "lastTimestamp": format_time(now),
            "count": 1,
        }
        path = _collection("Event", metadata["namespace"])
        await _write(
            "create", "events", lambda: self.request("POST", path, event), ok=(403, 404, 409)
        )


def _collection(kind: str, namespace: str) -> str:
    """The REST path of `kind`'s collection in `namespace` (:data:`_COLLECTIONS`)."""
    return _COLLECTIONS[kind].format(namespace=quote(namespace))
