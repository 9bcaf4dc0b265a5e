"""The workspace PersistentVolumeClaim mounted at ``/workspace`` in an Agent's pods.

The claim outlives the pods (retries and suspend/resume keep the workspace). By default
it is owned by the Agent, so garbage collection deletes it with the Agent; with
``spec.workspace.retain: true`` it has no owner and stays after the Agent is deleted
(marked with the annotation ``stockade.dev/retained: "true"``); an Agent created again
under the same name finds and mounts it.
"""

from __future__ import annotations

from typing import Any

from stockade.api.agent import AgentSpec
from stockade.build.names import (
    RETAINED_ANNOTATION,
    RETAINED_BY_ANNOTATION,
    AgentRef,
    child_metadata,
    pvc_name,
    session_of,
)


def build_workspace_pvc(agent_meta: AgentRef, spec: AgentSpec) -> dict[str, Any] | None:
    """Build the Agent's workspace claim ``<agent>-workspace`` (None without a workspace).

    Returns:
        A core/v1 PersistentVolumeClaim manifest: ``accessModes: [ReadWriteOnce]``,
        ``resources.requests.storage = spec.workspace.size``, ``storageClassName`` when
        given (else the cluster's default StorageClass); Stockade's labels; a controller
        ownerReference to the Agent unless ``retain`` (then the retained annotation).

    """
    workspace = spec.workspace
    if workspace is None:
        return None
    metadata = child_metadata(
        agent_meta, pvc_name(agent_meta.name), session_of(spec), owned=not workspace.retain
    )
    if workspace.retain:
        metadata["annotations"] = {
            RETAINED_ANNOTATION: "true",
            RETAINED_BY_ANNOTATION: agent_meta.uid,
        }
    pvc_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": workspace.size}},
    }
    if workspace.storage_class_name:
        pvc_spec["storageClassName"] = workspace.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata,
        "spec": pvc_spec,
    }
