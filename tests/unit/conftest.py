"""Shared unit-test helpers: a valid AgentSpec, a reference, and one fake API client.

The helpers are plain functions and classes (imported as ``tests.unit.conftest``), so a
test module states what it builds. :class:`FakeKube` is the one stand-in for the API
server in the unit tests: it implements :class:`stockade.runtime.k8s.KubeApi` (mypy
checks it, no ``type: ignore`` to pass it), keeps what was written in memory and records
each call; a test that needs another answer subclasses it and overrides one method.
The real client runs against the real API server in the integration suites.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubernetes.aio.client.exceptions import ApiException

from stockade.api.agent import AgentSpec
from stockade.build.names import AgentRef

IMAGE = "ghcr.io/x/agent:1"
REF = AgentRef("demo", "team-a", "uid-1")


def spec(**fields: Any) -> AgentSpec:
    """A validated AgentSpec: :data:`IMAGE` and `fields` (camelCase, as in a manifest)."""
    return AgentSpec.model_validate({"image": IMAGE, **fields})


def _key(manifest: dict[str, Any]) -> tuple[str, str, str]:
    meta = manifest["metadata"]
    return (manifest["kind"], meta.get("namespace", ""), meta["name"])


@dataclass
class FakeKube:
    """An in-memory :class:`~stockade.runtime.k8s.KubeApi`.

    Attributes:
        objects: what was created or replaced, by ``(kind, namespace, name)``.
        calls: each call as ``(verb, kind or resource, name)``, in order.
        status_patches: each status patch as ``(resource, name, body)``, resource
            ``agents/status`` or ``agentsessions/status``.
        events: each Event as ``(reason, message, warning)``.
        uids: what :meth:`list_uids` answers per resource (absent: empty; None: the
            LIST failed).
        bindings: what :meth:`read_policy_binding` answers per name (an exception is
            raised).
        policies: what :meth:`read_admission_policy` answers per name (an exception
            is raised).
        api_server: what :meth:`read_api_server_addresses` answers (an exception is
            raised).
        config_maps: what :meth:`read_config_map_data` answers per ``(namespace,
            name)`` (absent: None; an exception is raised).
        version: the last resourceVersion handed out (one counter, as etcd's).

    """

    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    status_patches: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    events: list[tuple[str, str, bool]] = field(default_factory=list)
    uids: dict[str, set[str] | None] = field(default_factory=dict)
    bindings: dict[str, dict[str, Any] | Exception | None] = field(default_factory=dict)
    policies: dict[str, dict[str, Any] | Exception | None] = field(default_factory=dict)
    api_server: list[str] | Exception = field(default_factory=list)
    config_maps: dict[tuple[str, str], dict[str, str] | Exception] = field(default_factory=dict)
    version: int = 0

    def _stored(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        meta = {**manifest["metadata"], "resourceVersion": str(self.version)}
        return {**manifest, "metadata": meta}

    def agent_patches(self, name: str | None = None) -> list[dict[str, Any]]:
        """The bodies of the Agent status patches (of Agent `name`), in order."""
        return [
            body
            for resource, patched, body in self.status_patches
            if resource == "agents/status" and name in (None, patched)
        ]

    def created(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The objects stored (of `kind`), in creation order."""
        return [o for (k, _, _), o in self.objects.items() if kind in (None, k)]

    async def create(self, manifest: dict[str, Any]) -> bool:
        """Store `manifest`; False (409) when its name is taken."""
        key = _key(manifest)
        self.calls.append(("create", key[0], key[2]))
        if key in self.objects:
            return False
        self.objects[key] = self._stored(manifest)
        return True

    async def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object or None."""
        self.calls.append(("read", kind, name))
        return self.objects.get((kind, namespace, name))

    async def read_policy_binding(self, name: str) -> dict[str, Any] | None:
        """:attr:`bindings`' answer for `name` (None when absent)."""
        self.calls.append(("read", "ValidatingAdmissionPolicyBinding", name))
        answer = self.bindings.get(name)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def read_admission_policy(self, name: str) -> dict[str, Any] | None:
        """:attr:`policies`' answer for `name` (None when absent)."""
        self.calls.append(("read", "ValidatingAdmissionPolicy", name))
        answer = self.policies.get(name)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def read_api_server_addresses(self) -> list[str]:
        """:attr:`api_server` (raised when it is an exception)."""
        self.calls.append(("read", "EndpointSlice", "kubernetes"))
        if isinstance(self.api_server, Exception):
            raise self.api_server
        return list(self.api_server)

    async def read_config_map_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """:attr:`config_maps`' answer (raised when it is an exception)."""
        self.calls.append(("read", "ConfigMapData", name))
        answer = self.config_maps.get((namespace, name))
        if isinstance(answer, Exception):
            raise answer
        return None if answer is None else dict(answer)

    async def replace(self, manifest: dict[str, Any], resource_version: str) -> bool:
        """Store `manifest` over the object; False (404) when there is none; 422 as immutable."""
        key = _key(manifest)
        self.calls.append(("replace", key[0], key[2]))
        if key not in self.objects:
            return False
        stored = self.objects[key]
        if stored.get("immutable") and stored.get("data") != manifest.get("data"):
            raise ApiException(status=422, reason="field is immutable when `immutable` is set")
        self.objects[key] = self._stored(manifest)
        return True

    async def delete_child(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Forget the object if it has `uid`."""
        self.calls.append(("delete", kind, name))
        stored = self.objects.get((kind, namespace, name))
        if stored is not None and stored["metadata"].get("uid") == uid:
            del self.objects[(kind, namespace, name)]

    async def delete_pod(self, namespace: str, name: str, *, force: bool = False) -> None:
        """Forget the pod."""
        self.calls.append(("delete", "Pod", name))
        self.objects.pop(("Pod", namespace, name), None)

    async def list_uids(self, resource: str, namespaces: tuple[str, ...]) -> set[str] | None:
        """:attr:`uids`' answer for `resource` (empty when absent)."""
        self.calls.append(("list", resource, ""))
        return self.uids.get(resource, set())

    async def _patch(self, resource: str, name: str, patch: dict[str, Any]) -> str:
        self.calls.append(("patch", resource, name))
        self.status_patches.append((resource, name, patch))
        self.version += 1
        return str(self.version)

    async def patch_agent_status(
        self, namespace: str, name: str, patch: dict[str, Any], resource_version: str | None
    ) -> str | None:
        """Record the patch; a new resourceVersion."""
        return await self._patch("agents/status", name, patch)

    async def patch_agent_owners(
        self, namespace: str, name: str, owners: list[dict[str, Any]], resource_version: str
    ) -> str | None:
        """Record the call; a new resourceVersion."""
        self.calls.append(("patch", "agents", name))
        self.version += 1
        return str(self.version)

    async def patch_session_status(
        self, namespace: str, name: str, patch: dict[str, Any], resource_version: str | None
    ) -> str | None:
        """Record the patch; a new resourceVersion."""
        return await self._patch("agentsessions/status", name, patch)

    async def delete_session(self, namespace: str, name: str) -> None:
        """Record the call."""
        self.calls.append(("delete", "AgentSession", name))

    async def delete_agent(self, namespace: str, name: str) -> None:
        """Record the call."""
        self.calls.append(("delete", "Agent", name))

    async def event(
        self, agent: dict[str, Any], *, warning: bool, reason: str, message: str
    ) -> None:
        """Record the Event."""
        self.events.append((reason, message, warning))
