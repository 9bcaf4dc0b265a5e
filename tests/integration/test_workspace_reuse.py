"""Issue 20 class 9 on the real API server: a retained workspace is not anyone's to take.

A retained claim is mounted again only by the Agent that created it, or by a new Agent
of the same name that sets ``spec.workspace.reuse: true``; setting it needs ``get`` and
``update`` on that claim (the admission policy asks the authorizer as the requester).
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.cluster import Cluster, wait_for
from tests.integration.operator import Agents
from tests.integration.test_admission_policy import author, create, rbac
from tests.integration.test_agents import IMAGE

__all__ = ["author"]  # the fixture, shared with test_admission_policy.py

pytestmark = pytest.mark.integration

RETAINED = {"size": "1Gi", "retain": True}


def test_reuse_needs_get_and_update_on_the_claim(
    cluster: Cluster, namespace: str, author: client.CustomObjectsApi, agents: Agents
) -> None:
    """The author may manage Agents only: reuse of w-workspace is refused until a Role
    grants get and update on that claim (get alone is not enough)."""
    spec = {"image": IMAGE, "workspace": {**RETAINED, "reuse": True}}
    with pytest.raises(ApiException) as info:
        create(author, namespace, "Agent", "w", spec)
    assert info.value.status == 403, info.value.body
    body = str(info.value.body)
    assert "spec.workspace.reuse: user author may not get and update" in body, body
    assert "w-workspace" in body, body
    rule = {
        "apiGroups": [""],
        "resources": ["persistentvolumeclaims"],
        "resourceNames": ["w-workspace"],
    }
    rbac(cluster, namespace, "claim-get", "author", [{**rule, "verbs": ["get"]}])
    with pytest.raises(ApiException) as again:
        create(author, namespace, "Agent", "w", spec)
    assert again.value.status == 403, again.value.body
    rbac(cluster, namespace, "claim-update", "author", [{**rule, "verbs": ["update"]}])
    create(author, namespace, "Agent", "w", spec)
    # Without reuse nothing is checked (no claim is taken over).
    create(author, namespace, "Agent", "v", {"image": IMAGE, "workspace": RETAINED})


def test_a_retained_claim_of_an_earlier_agent_is_a_conflict_without_reuse(
    cluster: Cluster, namespace: str, agents: Agents
) -> None:
    """A new Agent of the same name no longer mounts the retained claim silently."""
    first = agents.create("keep", {"image": IMAGE, "workspace": RETAINED})

    def claim() -> Any:
        try:
            return cluster.core.read_namespaced_persistent_volume_claim("keep-workspace", namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    made = wait_for(claim, timeout=30, what="the retained claim")
    assert made.metadata.annotations["stockade.dev/retained-by"] == first["metadata"]["uid"]
    agents.delete("keep")
    wait_for(lambda: not agents.exists("keep"), timeout=30, what="the first Agent gone")
    agents.create("keep", {"image": IMAGE, "workspace": RETAINED})

    def refused() -> dict[str, Any] | None:
        cond = agents.condition("keep", "Admitted")
        return cond if cond.get("reason") == "ResourceConflict" else None

    cond = wait_for(refused, timeout=30, what="ResourceConflict on the retained claim")
    assert "keep-workspace" in cond["message"]
    assert not agents.pods("keep")
    # Opting in (spec.workspace is immutable: a new Agent) mounts it.
    agents.delete("keep")
    wait_for(lambda: not agents.exists("keep"), timeout=30, what="the second Agent gone")
    agents.create("keep", {"image": IMAGE, "workspace": {**RETAINED, "reuse": True}})
    wait_for(lambda: agents.pods("keep"), timeout=60, what="the pod, with reuse")
    assert claim().metadata.uid == made.metadata.uid
