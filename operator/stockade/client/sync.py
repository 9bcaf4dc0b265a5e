"""The synchronous client, :class:`Client`, over the official ``kubernetes`` package."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast, overload

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from stockade.api import AGENT_KIND, GROUP, VERSION, Agent, AgentSession, AgentSpec
from stockade.client import core
from stockade.client.core import M, Object, Outcome, Predicate
from stockade.client.errors import ClientError, NotFound, Unreachable, from_status

log = logging.getLogger("stockade.client")
T = TypeVar("T")

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def connect(kubeconfig: str | None, context: str | None) -> tuple[client.ApiClient, str | None]:
    """An ApiClient for the kubeconfig (or in-cluster config) and its context's namespace.

    ``kubeconfig``: a path (None: ``$KUBECONFIG`` or ``~/.kube/config``); ``context``: a
    context name (None: the current one). Without a kubeconfig the in-cluster
    ServiceAccount is used. Raises :class:`ClientError` when neither works.
    """
    try:
        contexts, active = config.list_kube_config_contexts(kubeconfig)  # type: ignore[no-untyped-call]
        namespace = core.context_namespace(contexts, active, context)
        api = config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        return api, namespace
    except config.ConfigException as exc:
        if kubeconfig or context:
            raise ClientError(f"cannot load the kubeconfig: {exc}") from None
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            raise ClientError(f"no usable kubeconfig ({exc}) and not in a cluster") from None
        own = SERVICE_ACCOUNT_NAMESPACE
        return client.ApiClient(), own.read_text().strip() if own.exists() else None


class Client:
    """Stockade's Agents and AgentSessions from Python, synchronously.

    ``Client(kubeconfig=None, context=None, namespace=None)`` connects as the kubeconfig
    says (or the in-cluster ServiceAccount); ``namespace`` defaults to the context's,
    else ``default``. ``api_client`` (a ``kubernetes.client.ApiClient``) replaces the
    kubeconfig. Used as a context manager, it deletes on exit every object it created.
    Every call raises a :class:`~stockade.client.errors.ClientError` subclass, never
    ``ApiException``. :class:`~stockade.client.AsyncClient` has the same methods.
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
        default: str | None = None
        self._owns_api = api_client is None
        if api_client is None:
            api_client, default = connect(kubeconfig, context)
        self.api = api_client
        self.namespace: str = namespace or default or "default"
        """The namespace of calls that name none."""
        self.watch_seconds = watch_seconds
        """Server-side ``timeoutSeconds`` of each watch call of a wait (then re-watched)."""
        self.created: list[tuple[str, str, str]] = []
        """(kind, namespace, name) of every object this client created."""
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)

    # --- plumbing ----------------------------------------------------------------------

    def _call(
        self, fn: Callable[..., T], *args: Any, what: tuple[str, str | None, str], **kw: Any
    ) -> T:
        kind, name, namespace = what
        try:
            return fn(*args, **kw)
        except ApiException as exc:
            raise from_status(
                exc.status or 0, exc.body, exc.reason, kind=kind, name=name, namespace=namespace
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(
                f"cannot reach the API server at {self.api.configuration.host}: {exc}",
                kind=kind,
                name=name,
                namespace=namespace,
            ) from None

    def _get_raw(self, name: str, kind: str, namespace: str) -> dict[str, Any]:
        raw = self._call(
            self._custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            core.PLURALS[kind],
            name,
            what=(kind, name, namespace),
        )
        return cast(dict[str, Any], raw)

    # --- objects -----------------------------------------------------------------------

    @overload
    def create(self, obj: Agent | AgentSpec, *, namespace: str | None = None) -> Agent: ...
    @overload
    def create(self, obj: AgentSession, *, namespace: str | None = None) -> AgentSession: ...
    @overload
    def create(self, obj: Mapping[str, Any], *, namespace: str | None = None) -> Object: ...
    def create(
        self, obj: Object | AgentSpec | Mapping[str, Any], *, namespace: str | None = None
    ) -> Object:
        """Create ``obj``; the created object as a model (Agent or AgentSession).

        ``obj``: a model, an :class:`AgentSpec` (an Agent named ``run-<random>``) or a
        manifest dict. ``namespace``: where, unless the manifest names one (default:
        the client's). Raises Conflict (exists), Invalid (refused, with field causes),
        Forbidden, NotFound (namespace or CRDs missing).
        """
        manifest = core.to_manifest(obj, namespace or self.namespace)
        kind = str(manifest["kind"])
        where = str(manifest["metadata"]["namespace"])
        raw = self._call(
            self._custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            where,
            core.PLURALS[kind],
            manifest,
            what=(kind, manifest["metadata"].get("name"), where),
        )
        created = core.parse(cast(dict[str, Any], raw))
        self.created.append((kind, where, str(created.metadata["name"])))
        return created

    def get(self, name: str, kind: type[M] = Agent, *, namespace: str | None = None) -> M:  # type: ignore[assignment]
        """The object ``name`` of ``kind`` (Agent or AgentSession). Raises NotFound, Forbidden."""
        where = namespace or self.namespace
        return cast(M, core.parse(self._get_raw(name, core.kind_of(kind), where), kind))

    def list(
        self,
        kind: type[M] = Agent,  # type: ignore[assignment]
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        all_namespaces: bool = False,
    ) -> list[M]:
        """The objects of ``kind`` in the namespace (or all), optionally by label selector."""
        plural = core.PLURALS[core.kind_of(kind)]
        what = (core.kind_of(kind), None, namespace or self.namespace)
        if all_namespaces:
            raw = self._call(
                self._custom.list_cluster_custom_object,
                GROUP,
                VERSION,
                plural,
                label_selector=label_selector,
                what=what,
            )
        else:
            raw = self._call(
                self._custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                what[2],
                plural,
                label_selector=label_selector,
                what=what,
            )
        items = cast(dict[str, Any], raw).get("items") or []
        return [cast(M, core.parse(item, kind)) for item in items]

    def delete(
        self, name: str, kind: type[Object] = Agent, *, namespace: str | None = None
    ) -> None:
        """Delete the object (background propagation: its pods go with it). Raises NotFound."""
        where = namespace or self.namespace
        self._call(
            self._custom.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            where,
            core.PLURALS[core.kind_of(kind)],
            name,
            propagation_policy="Background",
            what=(core.kind_of(kind), name, where),
        )

    def _patch_suspend(self, name: str, kind: type[M], namespace: str | None, value: bool) -> M:
        where = namespace or self.namespace
        raw = self._call(
            self._custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            where,
            core.PLURALS[core.kind_of(kind)],
            name,
            core.suspend_patch(value),
            what=(core.kind_of(kind), name, where),
        )
        return cast(M, core.parse(cast(dict[str, Any], raw), kind))

    def suspend(self, name: str, kind: type[M] = Agent, *, namespace: str | None = None) -> M:  # type: ignore[assignment]
        """Set ``spec.suspend: true`` (an Agent's pod stops, its workspace stays); the object."""
        return self._patch_suspend(name, kind, namespace, True)

    def resume(self, name: str, kind: type[M] = Agent, *, namespace: str | None = None) -> M:  # type: ignore[assignment]
        """Set ``spec.suspend: false``; the object."""
        return self._patch_suspend(name, kind, namespace, False)

    # --- waiting -----------------------------------------------------------------------

    def wait(
        self,
        name: str,
        for_: Iterable[str] | Predicate | None = None,
        *,
        kind: type[M] = Agent,  # type: ignore[assignment]
        timeout: float = 300,
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> M:
        """Wait until the object ``name`` meets ``for_``; the object then.

        ``for_``: phase names (``{"Running"}``), a predicate on the model, or None (a
        terminal phase: Succeeded or Failed). ``timeout``: seconds. A watch from the
        object's resourceVersion (or ``resource_version``), re-established after each
        ``watch_seconds``, after 410 Gone (re-read, then watch from the new version) and
        after a dropped connection. Raises NotFound (no such object at the start),
        Deleted (deleted while waiting), Timeout (with the last phase), Forbidden.
        """
        where = namespace or self.namespace
        state = core.WaitState(
            kind, name, where, core.predicate_of(for_), timeout, self.watch_seconds
        )
        deadline = time.monotonic() + timeout
        done = state.observe(self._get_raw(name, state.kind, where))
        if done is not None:
            return cast(M, done)
        if resource_version:
            state.version = resource_version
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise state.timed_out()
            if state.version is None:
                try:
                    done = state.observe(self._get_raw(name, state.kind, where))
                except NotFound:
                    raise state.missing() from None
                except Unreachable:
                    time.sleep(min(core.RECONNECT_PAUSE, remaining))
                    continue
                if done is not None:
                    return cast(M, done)
            try:
                window = state.window(remaining)
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self._custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    where,
                    core.PLURALS[state.kind],
                    field_selector=f"metadata.name={name}",
                    resource_version=state.version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=window,
                    _request_timeout=window + 10,
                )
                for event in stream:
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
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                log.info(
                    "watch of %s %s/%s dropped (%s): reconnecting", state.kind, where, name, exc
                )
                state.dropped()
                time.sleep(min(core.RECONNECT_PAUSE, max(0.0, deadline - time.monotonic())))

    def run(
        self,
        agent: Agent | AgentSpec | Mapping[str, Any],
        *,
        namespace: str | None = None,
        timeout: float = 3600,
        check: bool = True,
    ) -> Outcome:
        """Create the Agent, wait for Succeeded or Failed, and return its :class:`Outcome`.

        ``agent``: an Agent model, an AgentSpec (named ``run-<random>``) or a manifest.
        ``timeout``: seconds from creation. With ``check`` (the default) a Failed Agent
        raises :class:`~stockade.client.errors.AgentFailed` (its ``outcome`` attached);
        ``check=False`` returns the Failed outcome. Raises what create and wait raise;
        after a Timeout the Agent is left as it is (delete it, or use the client as a
        context manager).
        """
        created = self.create(agent, namespace=namespace)
        if not isinstance(created, Agent):
            raise ClientError(f"run() runs an Agent, not a {created.kind}")
        name, where = str(created.metadata["name"]), str(created.metadata["namespace"])
        finished = self.wait(name, kind=Agent, timeout=timeout, namespace=where)
        outcome = core.outcome_of(finished)
        return core.check_outcome(outcome) if check else outcome

    # --- logs --------------------------------------------------------------------------

    def logs(
        self,
        name: str,
        *,
        follow: bool = False,
        attempt: int | None = None,
        tail_lines: int | None = None,
        namespace: str | None = None,
    ) -> Iterator[str]:
        """The lines (without newlines) of the Agent's ``agent`` container log.

        The pod of ``attempt`` (default: the current or last one), only if the Agent
        controls it (ownerReference UID). ``follow``: go on until the container ends.
        Raises NotFound (no Agent, no pod yet), ClientError (logs not available).
        """
        where = namespace or self.namespace
        agent = self._get_raw(name, AGENT_KIND, where)
        pod = core.pod_name_of(agent, attempt)
        body = self._call(self._core.read_namespaced_pod, pod, where, what=("Pod", pod, where))
        if not core.controlled_by(self.api.sanitize_for_serialization(body), agent):  # type: ignore[no-untyped-call]
            raise core.not_controlled(pod, name)
        response = self._call(
            self._core.read_namespaced_pod_log,
            pod,
            where,
            container=core.AGENT_CONTAINER,
            follow=follow,
            tail_lines=tail_lines,
            _preload_content=False,
            what=("Pod", pod, where),
        )
        return self._lines(cast(urllib3.HTTPResponse, response), pod, where)

    def _lines(self, response: urllib3.HTTPResponse, pod: str, where: str) -> Iterator[str]:
        splitter = core.LineSplitter()
        try:
            for chunk in response.stream(4096):
                yield from splitter.feed(chunk)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(f"the log of pod {pod!r} broke off: {exc}", kind="Pod") from None
        finally:
            response.release_conn()
        yield from splitter.close()

    # --- lifetime ----------------------------------------------------------------------

    def cleanup(self) -> None:
        """Delete every object this client created (newest first; gone ones are skipped)."""
        while self.created:
            kind, where, name = self.created.pop()
            with contextlib.suppress(NotFound):
                self.delete(name, core.MODELS[kind], namespace=where)

    def close(self) -> None:
        """Close the connection pool (when the client made its own ApiClient)."""
        if self._owns_api:
            self.api.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.cleanup()
        finally:
            self.close()
