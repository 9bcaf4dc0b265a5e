"""Kubernetes API access for ``kubectl stockade``: kubeconfig, namespace, helpful errors.

:class:`Connection` wraps the official client (synchronous: a CLI has nothing to overlap) and
turns :class:`ApiException` and connection failures into :class:`CliError` with the
plugin's exit codes. Objects are plain dicts (camelCase, as the API returns them).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream
from kubernetes.stream.ws_client import ERROR_CHANNEL

from stockade.api import AGENT_PLURAL, GROUP, SESSION_PLURAL, VERSION
from stockade.cli.errors import NOT_INSTALLED, TIMEOUT, CliError

T = TypeVar("T")

INSTALL_HINT = (
    "install them with `kubectl apply --server-side -f crds/` from the Stockade repository, "
    "or the Helm chart (`helm install stockade helm/stockade`)"
)
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass
class Target:
    """Where to connect: ``--kubeconfig``, ``--context``, ``--namespace`` (None: defaults)."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None


def _status_body(exc: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) and body.get("kind") == "Status" else {}


def _message(exc: ApiException) -> str:
    """The API server's message of `exc` (its Status body), else its reason."""
    return str(_status_body(exc).get("message") or exc.reason or exc)


def explain(exc: ApiException, kind: str, name: str | None, namespace: str | None) -> CliError:
    """A :class:`CliError` for an API error on ``kind`` (``Agent``) ``name``.

    A 404 without a Status naming an object means the resource itself is unknown: the
    CRDs are not installed (exit 4). A 404 naming the object: not found (exit 1).
    """
    body = _status_body(exc)
    details = body.get("details") or {}
    where = f" in namespace {namespace!r}" if namespace else ""
    if exc.status == 404:
        if details.get("kind") == "namespaces":
            return CliError(f"namespace {details.get('name')!r} not found")
        if not body:  # "404 page not found": the resource itself is unknown
            return CliError(
                f"the {kind} resource ({kind.lower()}s.{GROUP}/{VERSION}) is not known to the "
                f"API server: Stockade's CRDs are not installed; {INSTALL_HINT}",
                NOT_INSTALLED,
            )
        return CliError(f"{kind} {name!r} not found{where}")
    if exc.status == 409:
        return CliError(f"{kind} {name!r} already exists{where}: delete it or pick another name")
    message = body.get("message") or exc.reason or str(exc)
    if exc.status == 403:
        return CliError(f"forbidden: {message}")
    if exc.status == 422:
        return CliError(f"the API server refused the {kind}: {message}")
    return CliError(f"API error {exc.status}: {message}")


class Connection:
    """A connection to one cluster and a default namespace."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.api, self.namespace, self.server = self._connect(target)
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    @staticmethod
    def _connect(target: Target) -> tuple[client.ApiClient, str, str]:
        namespace = target.namespace
        try:
            contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                target.kubeconfig
            )
            if target.context:
                chosen = next((c for c in contexts if c["name"] == target.context), None)
                if chosen is None:
                    raise CliError(f"context {target.context!r} not found in the kubeconfig")
            else:
                chosen = active
            api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=target.kubeconfig, context=target.context
            )
            namespace = namespace or chosen.get("context", {}).get("namespace") or "default"
        except config.ConfigException as exc:
            if target.kubeconfig or target.context:
                raise CliError(f"cannot load the kubeconfig: {exc}") from None
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except config.ConfigException:
                raise CliError(
                    f"no usable kubeconfig ({exc}); pass --kubeconfig or set KUBECONFIG"
                ) from None
            api = client.ApiClient()
            if namespace is None and SERVICE_ACCOUNT_NAMESPACE.exists():
                namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
            namespace = namespace or "default"
        return api, namespace, str(api.configuration.host)

    def call(
        self, fn: Callable[..., T], *args: Any, kind: str, name: str | None = None, **kw: Any
    ) -> T:
        """``fn(*args, **kw)`` with API errors and connection failures as :class:`CliError`."""
        try:
            return fn(*args, **kw)
        except ApiException as exc:
            raise explain(exc, kind, name, kw.get("namespace") or self.namespace) from None
        except urllib3.exceptions.HTTPError as exc:
            raise CliError(f"cannot reach the API server at {self.server}: {exc}") from None

    # --- Agents ------------------------------------------------------------------------

    def create_agent(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create the Agent ``manifest`` in its namespace; the created object."""
        namespace = manifest["metadata"]["namespace"]
        name = manifest["metadata"]["name"]
        created = self.call(
            self.custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            AGENT_PLURAL,
            manifest,
            kind="Agent",
            name=name,
        )
        return cast(dict[str, Any], created)

    def get_agent(self, name: str) -> dict[str, Any]:
        """The Agent ``name`` in the namespace (CliError: not found, CRDs missing, ...)."""
        agent = self.call(
            self.custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            AGENT_PLURAL,
            name,
            kind="Agent",
            name=name,
        )
        return cast(dict[str, Any], agent)

    def patch_agent_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch ``spec`` into the Agent's spec; the patched object."""
        self.get_agent(name)  # a clear "not found" before the patch
        patched = self.call(
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            AGENT_PLURAL,
            name,
            {"spec": spec},
            kind="Agent",
            name=name,
        )
        return cast(dict[str, Any], patched)

    def watch_agent(self, name: str, timeout: float) -> Iterator[dict[str, Any] | None]:
        """The Agent ``name`` now and after each change, until ``timeout`` seconds passed.

        Yields None when it is deleted, and at least every 5 seconds the latest known
        object again (so callers can check their own deadlines). A watch with a field
        selector on the name, re-established when it ends or expires (410).
        """
        deadline = time.monotonic() + timeout
        first = self.get_agent(name)
        current: dict[str, Any] | None = first
        version = (first.get("metadata") or {}).get("resourceVersion")
        yield first
        while time.monotonic() < deadline:
            window = max(1, min(5, int(deadline - time.monotonic()) or 1))
            events = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in events.stream(  # type: ignore[no-untyped-call]
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    AGENT_PLURAL,
                    field_selector=f"metadata.name={name}",
                    resource_version=version,
                    timeout_seconds=window,
                    _request_timeout=window + 5,
                ):
                    obj = cast(dict[str, Any], event["object"])
                    if event["type"] == "ERROR":
                        version = None
                        break
                    version = (obj.get("metadata") or {}).get("resourceVersion")
                    current = None if event["type"] == "DELETED" else obj
                    yield current
            except ApiException as exc:
                if exc.status != 410:
                    raise explain(exc, "Agent", name, self.namespace) from None
                version = None
            except urllib3.exceptions.HTTPError:
                time.sleep(1)  # a dropped watch: re-list below
                version = None
            if version is None:
                try:
                    current = self.get_agent(name)
                except CliError:
                    current = None
                version = ((current or {}).get("metadata") or {}).get("resourceVersion")
            yield current

    # --- pods --------------------------------------------------------------------------

    def owned_pods(self, agent: dict[str, Any]) -> list[dict[str, Any]]:
        """The Agent's pods: labelled with its name and controlled by its UID."""
        name = agent["metadata"]["name"]
        pods = self.call(
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=f"stockade.dev/agent={name}",
            kind="Pod",
        )
        serialize = self.api.sanitize_for_serialization
        items = [serialize(p) for p in pods.items]  # type: ignore[no-untyped-call]
        return [p for p in items if controlled_by(p, agent)]

    def owned_pod(self, agent: dict[str, Any], pod_name: str) -> dict[str, Any]:
        """The pod ``pod_name`` if the Agent controls it (CliError otherwise)."""
        agent_name = agent["metadata"]["name"]
        try:
            pod = self.core.read_namespaced_pod(pod_name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise CliError(
                    f"pod {pod_name!r} of Agent {agent_name!r} does not exist (any more)"
                ) from None
            raise explain(exc, "Pod", pod_name, self.namespace) from None
        body = cast(dict[str, Any], self.api.sanitize_for_serialization(pod))  # type: ignore[no-untyped-call]
        if not controlled_by(body, agent):
            raise CliError(
                f"pod {pod_name!r} is not controlled by Agent {agent_name!r} (its controller "
                "ownerReference carries another UID): refusing to use it"
            )
        return body

    def logs(self, pod: str, follow: bool, tail: int | None) -> Iterator[bytes]:
        """The ``agent`` container's log of ``pod``, chunk by chunk (``follow``: until it ends)."""
        try:
            response = self.core.read_namespaced_pod_log(
                pod,
                self.namespace,
                container="agent",
                follow=follow,
                tail_lines=tail,
                _preload_content=False,
            )
        except ApiException as exc:
            raise CliError(f"the logs of pod {pod!r} are not available: {_message(exc)}") from None
        except urllib3.exceptions.HTTPError as exc:
            raise CliError(f"cannot reach the API server at {self.server}: {exc}") from None
        with contextlib.closing(cast(urllib3.HTTPResponse, response)) as body:
            yield from body.stream(4096)

    def exec(
        self,
        pod: str,
        command: list[str],
        timeout: float,
        out: Callable[[str], None],
        err: Callable[[str], None],
    ) -> int:
        """Run ``command`` in the ``agent`` container (pods/exec); its exit code.

        ``out``/``err`` receive stdout/stderr as they come. Raises :class:`CliError` with
        exit 3 when ``timeout`` seconds pass first, exit 1 when exec is refused.
        """
        try:
            session = stream(
                self.core.connect_get_namespaced_pod_exec,
                pod,
                self.namespace,
                container="agent",
                command=command,
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                _preload_content=False,
            )
        except ApiException as exc:
            raise CliError(f"exec into pod {pod!r} failed: {_message(exc)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise CliError(f"exec into pod {pod!r} failed: {exc}") from None
        deadline = time.monotonic() + timeout
        try:
            while session.is_open():
                if time.monotonic() > deadline:
                    raise CliError(f"the command did not finish within {timeout:g}s", TIMEOUT)
                session.update(timeout=1)
                if session.peek_stdout():
                    out(session.read_stdout())
                if session.peek_stderr():
                    err(session.read_stderr())
            error = session.read_channel(ERROR_CHANNEL)
        finally:
            session.close()
        return exec_exit_code(error, pod)

    # --- sessions ----------------------------------------------------------------------

    def list_sessions(self, all_namespaces: bool) -> list[dict[str, Any]]:
        """AgentSessions in the namespace (or all namespaces), sorted by namespace and name."""
        if all_namespaces:
            listed = self.call(
                self.custom.list_cluster_custom_object,
                GROUP,
                VERSION,
                SESSION_PLURAL,
                kind="AgentSession",
            )
        else:
            listed = self.call(
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                SESSION_PLURAL,
                kind="AgentSession",
            )
        items = cast(list[dict[str, Any]], cast(dict[str, Any], listed).get("items") or [])
        return sorted(items, key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"]))


def controlled_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    """True if ``obj``'s controller ownerReference carries ``owner``'s UID (never by name)."""
    uid = (owner.get("metadata") or {}).get("uid")
    references = (obj.get("metadata") or {}).get("ownerReferences") or []
    return bool(uid) and any(r.get("controller") and r.get("uid") == uid for r in references)


def exec_exit_code(error_channel: str, pod: str) -> int:
    """The exit code in an exec's error channel (a metav1.Status as JSON).

    ``Success`` -> 0; ``NonZeroExitCode`` -> the code its ``ExitCode`` cause carries;
    any other failure (the command could not run) -> :class:`CliError` with its message.
    """
    try:
        status = json.loads(error_channel) if error_channel else {}
    except ValueError:
        status = {"message": error_channel}
    if not status or status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                break
    raise CliError(f"exec into pod {pod!r} failed: {status.get('message') or error_channel}")
