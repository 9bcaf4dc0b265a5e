"""The asyncio client, :class:`AsyncClient`, over ``kubernetes.aio``: :class:`Client`'s twin."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast, overload

import aiohttp
from kubernetes.aio import client, config, watch
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.config.config_exception import ConfigException

from stockade.api import AGENT_KIND, GROUP, VERSION, Agent, AgentSession, AgentSpec
from stockade.client import core
from stockade.client.core import M, Object, Outcome, Predicate
from stockade.client.errors import ClientError, NotFound, Unreachable, from_status

log = logging.getLogger("stockade.client")
T = TypeVar("T")

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
CONNECTION_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


async def connect(
    kubeconfig: str | None, context: str | None
) -> tuple[client.ApiClient, str | None]:
    """An aio ApiClient for the kubeconfig (or in-cluster config) and its context's namespace.

    As :func:`stockade.client.sync.connect`; raises :class:`ClientError` when neither works.
    """
    configuration = client.Configuration()
    try:
        contexts, active = config.list_kube_config_contexts(kubeconfig)  # type: ignore[no-untyped-call]
        namespace = core.context_namespace(contexts, active, context)
        await config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    except ConfigException as exc:
        if kubeconfig or context:
            raise ClientError(f"cannot load the kubeconfig: {exc}") from None
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException:
            raise ClientError(f"no usable kubeconfig ({exc}) and not in a cluster") from None
        own = SERVICE_ACCOUNT_NAMESPACE
        namespace = own.read_text().strip() if own.exists() else None
    return client.ApiClient(configuration), namespace


class AsyncClient:
    """:class:`~stockade.client.Client`'s methods as coroutines (``logs``: an async iterator).

    ``AsyncClient(kubeconfig=None, context=None, namespace=None, api_client=None)``
    connects on first use (or on ``async with``); ``api_client`` is a
    ``kubernetes.aio.client.ApiClient``. ``async with AsyncClient() as c:`` deletes on
    exit every object it created and closes the connection.
    """

    def __init__(
        self,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str | None = None,
        *,
        api_client: client.ApiClient | None = None,
        watch_seconds: int = core.WATCH_SECONDS,
    ) -> None:
        self._kubeconfig, self._context, self._namespace = kubeconfig, context, namespace
        self._owns_api = api_client is None
        self._api = api_client
        self.namespace: str = namespace or "default"
        """The namespace of calls that name none (the context's, once connected)."""
        self.watch_seconds = watch_seconds
        """Server-side ``timeoutSeconds`` of each watch call of a wait (then re-watched)."""
        self.created: list[tuple[str, str, str]] = []
        """(kind, namespace, name) of every object this client created."""

    async def connect(self) -> client.ApiClient:
        """The ApiClient, connecting first if needed. Raises :class:`ClientError`."""
        if self._api is None:
            self._api, default = await connect(self._kubeconfig, self._context)
            self.namespace = self._namespace or default or "default"
        return self._api

    # --- plumbing ----------------------------------------------------------------------

    async def _call(
        self,
        fn: Callable[[client.ApiClient], Awaitable[T]],
        what: tuple[str, str | None, str],
    ) -> T:
        kind, name, namespace = what
        api = await self.connect()
        try:
            return await fn(api)
        except ApiException as exc:
            raise from_status(
                exc.status or 0, exc.body, exc.reason, kind=kind, name=name, namespace=namespace
            ) from None
        except CONNECTION_ERRORS as exc:
            raise Unreachable(
                f"cannot reach the API server at {api.configuration.host}: {exc!r}",
                kind=kind,
                name=name,
                namespace=namespace,
            ) from None

    def _where(self, namespace: str | None) -> str:
        return namespace or self.namespace

    async def _get_raw(self, name: str, kind: str, namespace: str | None) -> dict[str, Any]:
        await self.connect()
        where = self._where(namespace)
        raw = await self._call(
            lambda api: client.CustomObjectsApi(api).get_namespaced_custom_object(
                GROUP, VERSION, where, core.PLURALS[kind], name
            ),
            (kind, name, where),
        )
        return cast(dict[str, Any], raw)

    # --- objects -----------------------------------------------------------------------

    @overload
    async def create(self, obj: Agent | AgentSpec, *, namespace: str | None = None) -> Agent: ...
    @overload
    async def create(self, obj: AgentSession, *, namespace: str | None = None) -> AgentSession: ...
    @overload
    async def create(self, obj: Mapping[str, Any], *, namespace: str | None = None) -> Object: ...
    async def create(
        self, obj: Object | AgentSpec | Mapping[str, Any], *, namespace: str | None = None
    ) -> Object:
        """As :meth:`Client.create <stockade.client.Client.create>`."""
        await self.connect()
        manifest = core.to_manifest(obj, self._where(namespace))
        kind = str(manifest["kind"])
        where = str(manifest["metadata"]["namespace"])
        raw = await self._call(
            lambda api: client.CustomObjectsApi(api).create_namespaced_custom_object(
                GROUP, VERSION, where, core.PLURALS[kind], manifest
            ),
            (kind, manifest["metadata"].get("name"), where),
        )
        created = core.parse(cast(dict[str, Any], raw))
        self.created.append((kind, where, str(created.metadata["name"])))
        return created

    async def get(self, name: str, kind: type[M] = Agent, *, namespace: str | None = None) -> M:  # type: ignore[assignment]
        """As :meth:`Client.get <stockade.client.Client.get>`."""
        return cast(M, core.parse(await self._get_raw(name, core.kind_of(kind), namespace), kind))

    async def list(
        self,
        kind: type[M] = Agent,  # type: ignore[assignment]
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        all_namespaces: bool = False,
    ) -> list[M]:
        """As :meth:`Client.list <stockade.client.Client.list>`."""
        await self.connect()
        plural = core.PLURALS[core.kind_of(kind)]
        where = self._where(namespace)

        async def listed(api: client.ApiClient) -> Any:
            custom = client.CustomObjectsApi(api)
            if all_namespaces:
                return await custom.list_cluster_custom_object(
                    GROUP, VERSION, plural, label_selector=label_selector
                )
            return await custom.list_namespaced_custom_object(
                GROUP, VERSION, where, plural, label_selector=label_selector
            )

        raw = await self._call(listed, (core.kind_of(kind), None, where))
        items = cast(dict[str, Any], raw).get("items") or []
        return [cast(M, core.parse(item, kind)) for item in items]

    async def delete(
        self, name: str, kind: type[Object] = Agent, *, namespace: str | None = None
    ) -> None:
        """As :meth:`Client.delete <stockade.client.Client.delete>`."""
        await self.connect()
        where = self._where(namespace)
        await self._call(
            lambda api: client.CustomObjectsApi(api).delete_namespaced_custom_object(
                GROUP,
                VERSION,
                where,
                core.PLURALS[core.kind_of(kind)],
                name,
                propagation_policy="Background",
            ),
            (core.kind_of(kind), name, where),
        )

    async def _patch_suspend(
        self, name: str, kind: type[M], namespace: str | None, value: bool
    ) -> M:
        await self.connect()
        where = self._where(namespace)
        raw = await self._call(
            lambda api: client.CustomObjectsApi(api).patch_namespaced_custom_object(
                GROUP,
                VERSION,
                where,
                core.PLURALS[core.kind_of(kind)],
                name,
                core.suspend_patch(value),
            ),
            (core.kind_of(kind), name, where),
        )
        return cast(M, core.parse(cast(dict[str, Any], raw), kind))

    async def suspend(self, name: str, kind: type[M] = Agent, *, namespace: str | None = None) -> M:  # type: ignore[assignment]
        """As :meth:`Client.suspend <stockade.client.Client.suspend>`."""
        return await self._patch_suspend(name, kind, namespace, True)

    async def resume(self, name: str, kind: type[M] = Agent, *, namespace: str | None = None) -> M:  # type: ignore[assignment]
        """As :meth:`Client.resume <stockade.client.Client.resume>`."""
        return await self._patch_suspend(name, kind, namespace, False)

    # --- waiting -----------------------------------------------------------------------

    async def wait(
        self,
        name: str,
        for_: Iterable[str] | Predicate | None = None,
        *,
        kind: type[M] = Agent,  # type: ignore[assignment]
        timeout: float = 300,
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> M:
        """As :meth:`Client.wait <stockade.client.Client.wait>` (same errors)."""
        api = await self.connect()
        where = self._where(namespace)
        state = core.WaitState(
            kind, name, where, core.predicate_of(for_), timeout, self.watch_seconds
        )
        deadline = time.monotonic() + timeout
        done = state.observe(await self._get_raw(name, state.kind, where))
        if done is not None:
            return cast(M, done)
        if resource_version:
            state.version = resource_version
        custom = client.CustomObjectsApi(api)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise state.timed_out()
            if state.version is None:
                try:
                    done = state.observe(await self._get_raw(name, state.kind, where))
                except NotFound:
                    raise state.missing() from None
                except Unreachable:
                    await asyncio.sleep(min(core.RECONNECT_PAUSE, remaining))
                    continue
                if done is not None:
                    return cast(M, done)
            window = state.window(remaining)
            try:
                async with watch.Watch() as events:  # type: ignore[no-untyped-call]
                    async for event in events.stream(
                        custom.list_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        where,
                        core.PLURALS[state.kind],
                        field_selector=f"metadata.name={name}",
                        resource_version=state.version,
                        allow_watch_bookmarks=True,
                        timeout_seconds=window,
                        _request_timeout=window + 10,
                    ):
                        done = state.event(str(event["type"]), event["raw_object"])
                        if done is not None:
                            return cast(M, done)
            except ApiException as exc:
                if exc.status != 410:
                    raise from_status(
                        exc.status or 0,
                        exc.body,
                        exc.reason,
                        kind=state.kind,
                        name=name,
                        namespace=where,
                    ) from None
                log.info(
                    "watch of %s %s/%s expired (410 Gone): re-listing", state.kind, where, name
                )
                state.gone()
            except CONNECTION_ERRORS as exc:
                log.info(
                    "watch of %s %s/%s dropped (%r): reconnecting", state.kind, where, name, exc
                )
                state.dropped()
                await asyncio.sleep(
                    min(core.RECONNECT_PAUSE, max(0.0, deadline - time.monotonic()))
                )

    async def run(
        self,
        agent: Agent | AgentSpec | Mapping[str, Any],
        *,
        namespace: str | None = None,
        timeout: float = 3600,
        check: bool = True,
    ) -> Outcome:
        """As :meth:`Client.run <stockade.client.Client.run>`."""
        created = await self.create(agent, namespace=namespace)
        if not isinstance(created, Agent):
            raise ClientError(f"run() runs an Agent, not a {created.kind}")
        name, where = str(created.metadata["name"]), str(created.metadata["namespace"])
        finished = await self.wait(name, kind=Agent, timeout=timeout, namespace=where)
        outcome = core.outcome_of(finished)
        return core.check_outcome(outcome) if check else outcome

    # --- logs --------------------------------------------------------------------------

    async def logs(
        self,
        name: str,
        *,
        follow: bool = False,
        attempt: int | None = None,
        tail_lines: int | None = None,
        namespace: str | None = None,
    ) -> AsyncIterator[str]:
        """As :meth:`Client.logs <stockade.client.Client.logs>`: ``async for line in ...``."""
        await self.connect()
        where = self._where(namespace)
        agent = await self._get_raw(name, AGENT_KIND, where)
        pod = core.pod_name_of(agent, attempt)
        what = ("Pod", pod, where)
        body = await self._call(
            lambda api: client.CoreV1Api(api).read_namespaced_pod(pod, where), what
        )
        api = await self.connect()
        if not core.controlled_by(api.sanitize_for_serialization(body), agent):  # type: ignore[no-untyped-call]
            raise core.not_controlled(pod, name)
        options: dict[str, Any] = {"container": core.AGENT_CONTAINER, "follow": follow}
        if tail_lines is not None:
            options["tail_lines"] = tail_lines
        response = await self._call(
            lambda api: client.CoreV1Api(api).read_namespaced_pod_log_without_preload_content(
                pod, where, **options
            ),
            what,
        )
        try:
            if response.status >= 300:
                raise from_status(
                    response.status,
                    await response.text(),
                    response.reason,
                    kind="Pod",
                    name=pod,
                    namespace=where,
                )
            splitter = core.LineSplitter()
            try:
                async for chunk in response.content.iter_any():
                    for line in splitter.feed(chunk):
                        yield line
            except CONNECTION_ERRORS as exc:
                raise Unreachable(
                    f"the log of pod {pod!r} broke off: {exc!r}", kind="Pod"
                ) from None
            for line in splitter.close():
                yield line
        finally:
            response.release()

    # --- lifetime ----------------------------------------------------------------------

    async def cleanup(self) -> None:
        """Delete every object this client created (newest first; gone ones are skipped)."""
        while self.created:
            kind, where, name = self.created.pop()
            with contextlib.suppress(NotFound):
                await self.delete(name, core.MODELS[kind], namespace=where)

    async def close(self) -> None:
        """Close the connection (when the client made its own ApiClient)."""
        if self._owns_api and self._api is not None:
            await self._api.close()  # type: ignore[no-untyped-call]
            self._api = None

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.cleanup()
        finally:
            await self.close()
