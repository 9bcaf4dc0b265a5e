"""The gateway's reads of the API server (``kubernetes.aio``): pods, Agents, Secrets, the CA.

- :func:`watch_pods` keeps a :class:`~stockade.gateway.index.PodIndex` of the pods
  Stockade labels for ``Hosts`` egress (LIST, then WATCH from its resourceVersion; a
  410 or an error re-lists after a short pause).
- :class:`KubeCredentialSource` GETs a calling pod's Agent and the Secrets its
  ``spec.credentials`` name, cached for ``ttl`` seconds (a positive or negative answer).
- :func:`bootstrap_ca` creates the CA Secret if absent and publishes the ConfigMap.

Needs (RBAC): ``list``/``watch`` pods cluster-wide; ``get`` agents.stockade.dev and
secrets cluster-wide; ``get``/``create``/``update`` the CA Secret and ConfigMap in its
own namespace.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import certifi
from kubernetes.aio import client, watch
from kubernetes.aio.client.exceptions import ApiException

from stockade.api.agent import AGENT_PLURAL, GROUP, VERSION
from stockade.build.names import AGENT_LABEL, EGRESS_LABEL, MANAGED_SELECTOR
from stockade.gateway import metrics
from stockade.gateway.certs import CertificateAuthority, ca_bundle, generate_ca
from stockade.gateway.credentials import parse_credentials
from stockade.gateway.identity import PodView
from stockade.gateway.index import PodIndex
from stockade.gateway.sources import AgentCredentials, AgentUnavailable

log = logging.getLogger("stockade.gateway")

HOSTS_EGRESS = "hosts"
"""The ``stockade.dev/egress`` label value of pods with ``Hosts`` egress (the contract)."""
POD_SELECTOR = f"{MANAGED_SELECTOR},{AGENT_LABEL},{EGRESS_LABEL}={HOSTS_EGRESS}"
"""Only Stockade's agent pods of Hosts egress stream to the gateway."""
RELIST_PAUSE = 2.0


async def _json(call: Any) -> dict[str, Any]:
    """Await a ``*_without_preload_content`` call and decode its JSON body.

    Those calls do not raise on an error status; this does.

    Raises:
        ApiException: the status is 400 or above (``status``, ``reason``, ``body`` set).

    """
    response = await call
    raw = await response.read()
    if response.status >= 400:
        raise ApiException(status=response.status, reason=response.reason, body=raw.decode())
    body: dict[str, Any] = json.loads(raw)
    return body


async def watch_pods(api: client.ApiClient, index: PodIndex, stop: asyncio.Event) -> None:
    """Keep `index` equal to the pods of :data:`POD_SELECTOR` until `stop` is set."""
    core = client.CoreV1Api(api)
    while not stop.is_set():
        try:
            listing = await _json(
                core.list_pod_for_all_namespaces_without_preload_content(
                    label_selector=POD_SELECTOR
                )
            )
            index.replace(listing.get("items") or ())
            version = (listing.get("metadata") or {}).get("resourceVersion")
            async with watch.Watch() as stream:  # type: ignore[no-untyped-call]
                async for event in stream.stream(
                    core.list_pod_for_all_namespaces,
                    label_selector=POD_SELECTOR,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=300,
                ):
                    if stop.is_set():
                        return
                    kind, raw = event.get("type"), event.get("raw_object") or {}
                    if kind == "ERROR":
                        break
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        index.apply(kind, raw)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # re-list: the index converges to a fresh LIST
            log.warning("gateway: pod watch: %s; re-listing", exc)
            await asyncio.sleep(RELIST_PAUSE)


class KubeReads(Protocol):
    """The two GETs the credential source needs (faked in tests)."""

    async def get_agent(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Agent object (camelCase dict), or None when it does not exist."""
        ...

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret object (``data`` base64), or None when it does not exist."""
        ...


class ApiReads:
    """:class:`KubeReads` over ``kubernetes.aio``. Raises ApiException on other errors."""

    def __init__(self, api: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)

    async def get_agent(self, namespace: str, name: str) -> dict[str, Any] | None:
        """See :class:`KubeReads`."""
        try:
            return await _json(
                self._custom.get_namespaced_custom_object_without_preload_content(
                    GROUP, VERSION, namespace, AGENT_PLURAL, name
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """See :class:`KubeReads`."""
        try:
            return await _json(
                self._core.read_namespaced_secret_without_preload_content(name, namespace)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


class KubeCredentialSource:
    """A :class:`~stockade.gateway.sources.CredentialSource` over :class:`KubeReads`.

    Args:
        reads: the GETs.
        ttl: seconds an answer (credentials or :class:`AgentUnavailable`) is served from
            the cache; concurrent misses of one Agent share one read.
        clock: monotonic seconds (injectable for tests).

    """

    def __init__(
        self, reads: KubeReads, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._reads, self._ttl, self._clock = reads, ttl, clock
        self._cache: dict[
            tuple[str, str, str], tuple[float, AgentCredentials | AgentUnavailable]
        ] = {}
        self._inflight: dict[
            tuple[str, str, str], asyncio.Future[AgentCredentials | AgentUnavailable]
        ] = {}

    async def credentials_for(self, pod: PodView) -> AgentCredentials:
        """See :meth:`CredentialSource.credentials_for`."""
        key = pod.agent_key
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            metrics.AGENT_READS.labels("cached").inc()
            answer = cached[1]
        elif key in self._inflight:
            answer = await asyncio.shield(self._inflight[key])
        else:
            future: asyncio.Future[AgentCredentials | AgentUnavailable] = (
                asyncio.get_running_loop().create_future()
            )
            self._inflight[key] = future
            try:
                answer = await self._read(pod)
                metrics.AGENT_READS.labels(
                    answer.reason if isinstance(answer, AgentUnavailable) else "ok"
                ).inc()
                self._cache[key] = (self._clock() + self._ttl, answer)
                future.set_result(answer)
            finally:
                if not future.done():
                    future.cancel()
                del self._inflight[key]
            self._expire()
        if isinstance(answer, AgentUnavailable):
            raise AgentUnavailable(answer.reason)
        return answer

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, (until, _) in self._cache.items() if until <= now]:
            del self._cache[key]

    async def _read(self, pod: PodView) -> AgentCredentials | AgentUnavailable:
        try:
            agent = await self._reads.get_agent(pod.namespace, pod.agent_name)
            if agent is None or (agent.get("metadata") or {}).get("uid") != pod.agent_uid:
                return AgentUnavailable("agent-gone")
            credentials = parse_credentials(agent.get("spec") or {})
            secrets: dict[str, Mapping[str, Any] | None] = {}
            values: dict[str, bytes] = {}
            for credential in credentials:
                if credential.secret_name not in secrets:
                    secrets[credential.secret_name] = await self._reads.get_secret(
                        pod.namespace, credential.secret_name
                    )
                secret = secrets[credential.secret_name]
                encoded = ((secret or {}).get("data") or {}).get(credential.secret_key)
                if encoded is None:
                    return AgentUnavailable("secret-missing")
                values[credential.name] = base64.b64decode(encoded)
            return AgentCredentials(credentials, values)
        except (ApiException, OSError, ValueError) as exc:
            log.warning(
                "gateway: reading Agent %s/%s: %s",
                pod.namespace,
                pod.agent_name,
                type(exc).__name__,
            )
            return AgentUnavailable("api-error")


async def bootstrap_ca(
    api: client.ApiClient, namespace: str, secret_name: str, configmap_name: str
) -> CertificateAuthority:
    """Load the CA from Secret `secret_name` (creating it if absent), publish the ConfigMap.

    The ConfigMap `configmap_name` gets ``ca.crt`` and ``ca-bundle.crt`` (certifi's roots
    followed by ``ca.crt``); it is created, or replaced when its data differ.

    Raises:
        ApiException: the API server refused a read or write (the process exits: no CA,
            no interception).

    """
    core = client.CoreV1Api(api)
    try:
        secret = await _json(
            core.read_namespaced_secret_without_preload_content(secret_name, namespace)
        )
    except ApiException as exc:
        if exc.status != 404:
            raise
        ca = generate_ca(datetime.datetime.now(datetime.UTC))
        body: Any = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret_name, "namespace": namespace},
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": base64.b64encode(ca.cert_pem).decode(),
                "tls.key": base64.b64encode(ca.key_pem).decode(),
            },
        }
        try:
            await core.create_namespaced_secret(namespace, body)
            log.info("gateway: created CA Secret %s/%s", namespace, secret_name)
            secret = body
        except ApiException as race:
            if race.status != 409:  # another replica created it first: use theirs
                raise
            secret = await _json(
                core.read_namespaced_secret_without_preload_content(secret_name, namespace)
            )
    data = secret.get("data") or {}
    ca = CertificateAuthority(base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"]))
    ca.load()  # fail at start-up on a broken Secret
    with open(certifi.where(), "rb") as roots:
        bundle = ca_bundle(roots.read(), ca.cert_pem)
    wanted: dict[str, str] = {"ca.crt": ca.cert_pem.decode(), "ca-bundle.crt": bundle.decode()}
    configmap: Any = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": configmap_name, "namespace": namespace},
        "data": wanted,
    }
    try:
        await core.create_namespaced_config_map(namespace, configmap)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = await _json(
            core.read_namespaced_config_map_without_preload_content(configmap_name, namespace)
        )
        if current.get("data") != wanted:
            configmap["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            await core.replace_namespaced_config_map(configmap_name, namespace, configmap)
    return ca
