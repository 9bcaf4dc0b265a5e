"""The one table of the kinds the operator creates and watches besides its own CRDs.

Each is watched with the server-side label selector ``app.kubernetes.io/managed-by``
(only what Stockade made streams to it), indexed per Agent, and written through
:mod:`stockade.runtime.k8s` at its REST collection. Pods feed the ``agent_pods`` index;
the other kinds (an Agent's *children*) feed ``agent_children``
(:mod:`stockade.handlers.agents`). The chart's RBAC grants exactly these.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OwnedKind:
    """A kind of object the operator creates for an Agent.

    Attributes:
        kind: ``Pod``, ``ConfigMap``, ...
        group: the API group (``""`` for core).
        version: the API version within the group.
        plural: the resource name (``pods``).

    """

    kind: str
    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        """``v1`` or ``<group>/<version>``, as in a manifest's ``apiVersion``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def collection(self) -> str:
        """The namespaced REST collection, a template with ``{namespace}``."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{root}/namespaces/{{namespace}}/{self.plural}"


POD = OwnedKind("Pod", "", "v1", "pods")
CHILD_KINDS = (
    OwnedKind("ConfigMap", "", "v1", "configmaps"),
    OwnedKind("PersistentVolumeClaim", "", "v1", "persistentvolumeclaims"),
    OwnedKind("NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies"),
)
"""An Agent's children: made before its pod, restored when they drift."""
OWNED_KINDS = (POD, *CHILD_KINDS)
"""Everything the operator creates (and watches by label) for Agents."""
