"""Issue 8's defects, each reproduced on the real local control plane.

Ownership by UID (delete and re-create, forged pods, names held by others), children
observed and restored, retries refused by a ResourceQuota, session defaults applied
in any order and resolved once.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.cluster import (
    SIM_EXIT_AFTER,
    SIM_EXIT_CODE,
    SIM_TERMINATION_GRACE,
    SIM_TERMINATION_MESSAGE,
    Cluster,
    pod_manifest,
    wait_for,
)
from tests.integration.operator import Agents, OperatorProcess
from tests.integration.test_agents import IMAGE, spec
from tests.integration.test_sessions import Sessions

pytestmark = pytest.mark.integration

HOLD = "test.stockade.dev/hold"
OWN_POLICY = {"egress": "Custom", "cidrs": ["203.0.113.0/24"]}
"""Egress that gets the Agent a NetworkPolicy of its own (the other modes share one)."""


def owner_uid(obj: Any) -> str | None:
    for ref in obj.metadata.owner_references or ():
        if ref.controller:
            return str(ref.uid)
    return None


def policy(cluster: Cluster, namespace: str, name: str) -> client.V1NetworkPolicy | None:
    try:
        return client.NetworkingV1Api(cluster.api).read_namespaced_network_policy(
            f"{name}-egress", namespace
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def configmap(cluster: Cluster, namespace: str, name: str) -> client.V1ConfigMap | None:
    try:
        return cluster.core.read_namespaced_config_map(f"{name}-input", namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_orphaned_pod_of_a_predecessor_is_never_adopted(
    agents: Agents, cluster: Cluster, namespace: str
) -> None:
    """Delete an Agent leaving its pod behind, apply it again: the old result never
    becomes the new Agent's (on main it jumped to Succeeded with "OLD")."""
    old = agents.create(
        "twin",
        spec({SIM_EXIT_CODE: "0", SIM_TERMINATION_MESSAGE: "OLD"}, network=OWN_POLICY),
    )
    agents.wait_phase("twin", "Succeeded")
    agents.api.delete_namespaced_custom_object(
        "stockade.dev", "v1alpha1", namespace, "agents", "twin", propagation_policy="Orphan"
    )
    wait_for(lambda: not agents.exists("twin"), timeout=30, what="old twin gone")
    new = agents.create("twin", spec(task="new work", network=OWN_POLICY))
    assert new["metadata"]["uid"] != old["metadata"]["uid"]

    def refused() -> dict[str, Any] | None:
        cond = agents.condition("twin", "Admitted")
        return cond if cond.get("reason") == "ResourceConflict" else None

    cond = wait_for(refused, timeout=30, what="ResourceConflict on the new twin")
    assert "not owned by this Agent" in cond["message"]
    status = agents.status("twin")
    assert status["phase"] == "Pending" and "result" not in status
    assert agents.condition("twin", "Stalled")["status"] == "True"
    # Once the leftovers go (an orphaning delete leaves every child), the new Agent
    # runs its own pod.
    cluster.core.delete_namespaced_pod("twin-1", namespace)
    client.NetworkingV1Api(cluster.api).delete_namespaced_network_policy("twin-egress", namespace)
    agents.wait_phase("twin", "Running", timeout=60)
    (pod,) = [p for p in agents.pods("twin") if p.metadata.deletion_timestamp is None]
    assert owner_uid(pod) == new["metadata"]["uid"]
    assert "result" not in agents.status("twin")


def test_children_of_a_predecessor_are_waited_for_not_taken(
    agents: Agents, cluster: Cluster, namespace: str
) -> None:
    """The old NetworkPolicy and ConfigMap linger (slow garbage collection: a finalizer
    holds them): the new Agent must not run under them (on main their 409 was taken as
    success, leaving the agent without a policy once the old one went)."""
    old = agents.create("again", spec(task="first", network=OWN_POLICY))
    agents.wait_phase("again", "Running")
    net = client.NetworkingV1Api(cluster.api)
    hold = {"metadata": {"finalizers": [HOLD]}}
    net.patch_namespaced_network_policy("again-egress", namespace, hold)
    cluster.core.patch_namespaced_config_map("again-input", namespace, hold)
    agents.delete("again")
    wait_for(lambda: not agents.exists("again"), timeout=30, what="old Agent gone")
    wait_for(
        lambda: (p := policy(cluster, namespace, "again")) and p.metadata.deletion_timestamp,
        timeout=120,  # the GC pauses while it resyncs its monitors (CRD changes)
        what="the garbage collector deleting the old policy",
    )
    new = agents.create("again", spec(task="second", network=OWN_POLICY))
    uid = new["metadata"]["uid"]
    time.sleep(5)
    status = agents.status("again")
    assert status["phase"] == "Pending", status
    assert agents.condition("again", "Admitted")["reason"] == "ResourceConflict"
    assert agents.condition("again", "Stalled")["status"] == "False"  # GC will fix it
    assert not [p for p in agents.pods("again") if owner_uid(p) == uid]
    release = {"metadata": {"finalizers": None}}
    net.patch_namespaced_network_policy("again-egress", namespace, release)
    cluster.core.patch_namespaced_config_map("again-input", namespace, release)
    agents.wait_phase("again", "Running", timeout=60)
    assert owner_uid(policy(cluster, namespace, "again")) == uid
    mine = configmap(cluster, namespace, "again")
    assert mine is not None and owner_uid(mine) == uid and mine.data["task"] == "second"
    assert old["metadata"]["uid"] != uid


def test_a_forged_pod_with_stockade_labels_is_ignored(
    agents: Agents, cluster: Cluster, namespace: str
) -> None:
    agents.create("target", spec())
    agents.wait_phase("target", "Running")
    forged = pod_manifest(
        "target-7", annotations={SIM_EXIT_CODE: "0", SIM_TERMINATION_MESSAGE: "FORGED"}
    )
    forged["metadata"]["labels"] = {
        "app.kubernetes.io/managed-by": "stockade",
        "stockade.dev/agent": "target",
        "stockade.dev/attempt": "7",
    }
    cluster.create_pod(namespace, forged)
    wait_for(
        lambda: cluster.core.read_namespaced_pod("target-7", namespace).status.phase == "Succeeded",
        timeout=30,
        what="the forged pod to finish",
    )
    time.sleep(2)
    status = agents.status("target")
    assert (status["phase"], status["attempts"], status["podName"]) == ("Running", 1, "target-1")
    assert "result" not in status


def test_deleted_and_edited_children_are_restored(
    agents: Agents, cluster: Cluster, namespace: str
) -> None:
    agents.create("keep", spec(task="the task", network=OWN_POLICY))
    agents.wait_phase("keep", "Running")
    uid = agents.get("keep")["metadata"]["uid"]
    net = client.NetworkingV1Api(cluster.api)
    original = policy(cluster, namespace, "keep")
    assert original is not None
    net.delete_namespaced_network_policy("keep-egress", namespace)

    def restored() -> client.V1NetworkPolicy | None:
        p = policy(cluster, namespace, "keep")
        return p if p is not None and p.metadata.uid != original.metadata.uid else None

    again = wait_for(restored, timeout=30, what="the NetworkPolicy restored")
    assert owner_uid(again) == uid
    assert again.spec.to_dict() == original.spec.to_dict()
    # An edit that opens egress is put back.
    net.patch_namespaced_network_policy(
        "keep-egress", namespace, {"spec": {"policyTypes": ["Ingress"], "egress": None}}
    )
    wait_for(
        lambda: policy(cluster, namespace, "keep").spec.to_dict() == original.spec.to_dict(),
        timeout=30,
        what="the edited NetworkPolicy put back",
    )
    # The input is immutable (nobody can edit its data), but it can be deleted.
    first = configmap(cluster, namespace, "keep")
    assert first is not None and first.immutable
    cluster.core.delete_namespaced_config_map("keep-input", namespace)

    def input_restored() -> client.V1ConfigMap | None:
        found = configmap(cluster, namespace, "keep")
        return found if found is not None and found.metadata.uid != first.metadata.uid else None

    again_input = wait_for(input_restored, timeout=30, what="the deleted input restored")
    assert again_input.data == first.data and owner_uid(again_input) == uid
    assert agents.status("keep")["phase"] == "Running"


def test_quota_refused_retry_burns_no_attempt_and_keeps_the_failed_pod(
    agents: Agents, cluster: Cluster, namespace: str
) -> None:
    """On main the refused retry deleted the failed pod, then counted PodLost."""
    blocker = pod_manifest("blocker")
    cluster.create_pod(namespace, blocker)
    agents.create(
        "retry",
        spec(
            {SIM_EXIT_CODE: "1", SIM_EXIT_AFTER: "4s"},
            restartPolicy="OnFailure",
            backoffLimit=1,
        ),
    )
    agents.wait_phase("retry", "Running")
    quota: Any = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "two-pods"},
        "spec": {"hard": {"pods": "2"}},
    }
    cluster.core.create_namespaced_resource_quota(namespace, quota)
    wait_for(
        lambda: cluster.core.read_namespaced_resource_quota("two-pods", namespace).status.used,
        timeout=30,
        what="quota status",
    )
    cluster.core.patch_namespaced_resource_quota(
        "two-pods", namespace, {"spec": {"hard": {"pods": "1"}}}
    )

    def quota_exceeded() -> dict[str, Any] | None:
        status = agents.status("retry")
        return status if status.get("reason") == "QuotaExceeded" else None

    wait_for(quota_exceeded, timeout=60, what="the retry refused by the quota")
    time.sleep(6)  # several refused creates
    status = agents.status("retry")
    assert status["phase"] in ("Starting", "Pending"), status
    assert status["attempts"] == 1 and status.get("failedAttempts") == 1, status
    assert "PodLost" not in [h["reason"] for h in status.get("history", [])]
    failed = cluster.core.read_namespaced_pod("retry-1", namespace)
    assert failed.status.phase == "Failed" and failed.metadata.deletion_timestamp is None
    cluster.core.delete_namespaced_pod("blocker", namespace)
    final = agents.wait_phase("retry", "Failed", timeout=90)
    assert final["reason"] == "BackoffLimitExceeded"
    assert final["attempts"] == 2 and final["failedAttempts"] == 2


def test_member_applied_before_its_session_waits_then_runs(
    agents: Agents, cluster: Cluster, namespace: str
) -> None:
    """`kubectl apply -f dir/` may create the image-less member first (on main:
    Failed/InvalidSpec)."""
    agents.create("early", {"sessionRef": {"name": "late"}})

    def waiting() -> dict[str, Any] | None:
        cond = agents.condition("early", "Admitted")
        return cond if cond.get("reason") == "SessionNotFound" else None

    wait_for(waiting, timeout=30, what="SessionNotFound")
    assert agents.status("early")["phase"] == "Pending"
    sessions = Sessions(cluster, namespace)
    sessions.create("late", {"agentDefaults": {"image": IMAGE, "runtimeClassName": "kata"}})
    status = agents.wait_phase("early", "Running", timeout=60)
    assert status["runtimeClassName"] == "kata"
    (pod,) = agents.pods("early")
    assert pod.spec.runtime_class_name == "kata" and pod.spec.containers[0].image == IMAGE


def test_editing_agent_defaults_does_not_fail_running_members(
    agents: Agents, cluster: Cluster, namespace: str
) -> None:
    sessions = Sessions(cluster, namespace)
    sessions.create("team", {"agentDefaults": {"image": IMAGE}})
    agents.create(
        "member",
        {"sessionRef": {"name": "team"}, "resources": {"requests": {"cpu": "200m"}}},
    )
    agents.wait_phase("member", "Running")
    assert agents.status("member")["sessionDefaults"] == {"image": IMAGE}
    # Limits below the member's requests: invalid for new members, none of its business.
    sessions.patch("team", {"agentDefaults": {"resources": {"limits": {"cpu": "100m"}}}})
    time.sleep(4)
    status = agents.status("member")
    assert status["phase"] == "Running", status
    assert status["sessionDefaults"] == {"image": IMAGE}


def test_a_pod_the_api_server_finds_invalid_fails_the_agent(agents: Agents) -> None:
    """A 422 on the pod (input the CRD schema cannot see: a pod's annotations may total
    256 KiB) is Failed/InvalidSpec as documented, not Pending forever (main)."""
    blobs = {f"user.stockade.dev/blob-{i}": "x" * 60000 for i in range(5)}
    agents.create("huge", spec(blobs))
    status = agents.wait_phase("huge", "Failed", timeout=30)
    assert status["reason"] == "InvalidSpec", status
    assert "annotations" in status["message"]
    assert agents.condition("huge", "Stalled")["status"] == "True"


def test_resync_finds_no_ghost_in_ordinary_operation(
    agents: Agents, stockade_operator: OperatorProcess
) -> None:
    """The 5 s resync LISTs against the real API server; with no watch broken it must
    never take a live object for a ghost (that would wreck its Agent)."""
    agents.create("plain", spec({SIM_EXIT_CODE: "0", SIM_EXIT_AFTER: "8s"}))
    agents.wait_phase("plain", "Succeeded", timeout=60)
    text = stockade_operator.metrics()
    line = next(li for li in text.splitlines() if li.startswith("stockade_index_ghosts_total"))
    assert float(line.split()[-1]) == 0.0


def test_resume_within_the_grace_period_neither_fails_nor_burns_a_retry(
    agents: Agents, cluster: Cluster, namespace: str
) -> None:
    """A kubelet marks a pod it SIGTERMs during its grace period Failed (143): on main,
    suspend then resume read that as the attempt's outcome and failed the Agent."""
    agents.create("nap", spec({SIM_TERMINATION_GRACE: "6s"}))
    agents.wait_phase("nap", "Running")
    agents.patch("nap", {"suspend": True})

    def terminating() -> client.V1Pod | None:
        pod = cluster.core.read_namespaced_pod("nap-1", namespace)
        return pod if pod.metadata.deletion_timestamp and pod.status.phase == "Failed" else None

    killed = wait_for(terminating, timeout=30, what="nap-1 Failed while terminating")
    assert killed.status.container_statuses[0].state.terminated.exit_code == 143
    agents.patch("nap", {"suspend": False})
    time.sleep(2)
    status = agents.status("nap")
    assert status["phase"] in ("Pending", "Starting"), status
    status = agents.wait_phase("nap", "Running", timeout=60)
    assert "Failed" not in [h["to"] for h in status["history"]]
    # A new attempt (a new pod name), not a retry: no failure counted.
    assert status.get("failedAttempts") is None and status["attempts"] == 2


def test_children_as_built_are_never_rewritten(
    agents: Agents, stockade_operator: OperatorProcess
) -> None:
    """What the API server stores must compare equal to what was built (it drops empty
    lists, defaults a port's protocol): otherwise every reconcile "restores" the child,
    whose watch event reconciles again, forever (found on the real node)."""

    def updates() -> float:
        return sum(
            float(line.split()[-1])
            for line in stockade_operator.metrics().splitlines()
            if line.startswith("stockade_api_writes_total") and 'verb="update"' in line
        )

    before = updates()
    for name, network in (("quiet-none", None), ("quiet-custom", CUSTOM)):
        agents.create(name, spec(task="t", network=network) if network else spec(task="t"))
        agents.wait_phase(name, "Running")
    time.sleep(5)
    assert updates() == before


CUSTOM = {"egress": "Custom", "cidrs": ["203.0.113.0/24"], "ports": [{"port": 443}]}


def test_a_restart_with_nothing_changed_writes_nothing(
    agents: Agents, stockade_operator: OperatorProcess
) -> None:
    """Issue 11: a restarted operator re-observes every Agent and writes nothing.

    Its watches list Agents and children in no set order: an Agent reconciled before its
    NetworkPolicy is listed must not take the policy for missing (a create refused with
    409 is a write all the same). Nothing else changes these Agents, so their status
    and children keep their resourceVersions.
    """
    names = [f"steady-{i}" for i in range(8)]
    own = set(names[::2])  # with a policy of their own; the others share one
    for name in names:
        agents.create(name, spec(task="t", network=CUSTOM) if name in own else spec(task="t"))
    for name in names:
        agents.wait_phase(name, "Running")
    core = agents.cluster.core
    networking = client.NetworkingV1Api(agents.cluster.api)

    def versions() -> dict[str, str]:
        out = {}
        for name in names:
            out[f"agent {name}"] = agents.get(name)["metadata"]["resourceVersion"]
            out[f"configmap {name}"] = str(
                core.read_namespaced_config_map(
                    f"{name}-input", agents.namespace
                ).metadata.resource_version
            )
            fence = f"{name}-egress" if name in own else "stockade-egress-none"
            out[f"policy {name}"] = str(
                networking.read_namespaced_network_policy(
                    fence, agents.namespace
                ).metadata.resource_version
            )
        return out

    time.sleep(2)  # the last status writes' echoes
    before = versions()
    stockade_operator.restart()

    def sample(prefix: str) -> float:
        return sum(
            float(line.split()[-1])
            for line in stockade_operator.metrics().splitlines()
            if line.startswith(prefix)
        )

    wait_for(
        lambda: sample("stockade_reconcile_duration_seconds_count") >= len(names),
        what="the restarted operator's first reconciles",
    )
    time.sleep(3)
    refused_creates = sum(
        float(line.split()[-1])
        for line in stockade_operator.metrics().splitlines()
        if line.startswith("stockade_api_writes_total")
        and 'verb="create"' in line
        and 'code="409"' in line
    )
    assert refused_creates == 0
    assert versions() == before
    # Agents first, so that the namespace's teardown does not take their pods from
    # under them (PodLost failures in the counters later tests read).
    for name in names:
        agents.delete(name)
    wait_for(lambda: not any(agents.exists(name) for name in names), what="the Agents deleted")


def test_a_planted_immutable_input_never_reaches_the_pod(
    agents: Agents, cluster: Cluster, namespace: str, stockade_operator: OperatorProcess
) -> None:
    """Issue 20 class 5: an immutable ConfigMap under the Agent's input name, owned by
    its UID (planted while no operator ran), used to survive "restoring" (the update's
    422 was swallowed) and be mounted. It is deleted and created as the spec says
    before the pod exists."""
    stockade_operator.stop()
    try:
        created = agents.create("planted", spec(task="the real task"))
        owner = client.V1OwnerReference(
            api_version="stockade.dev/v1alpha1",
            kind="Agent",
            name="planted",
            uid=created["metadata"]["uid"],
            controller=True,
        )
        planted = cluster.core.create_namespaced_config_map(
            namespace,
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(
                    name="planted-input",
                    owner_references=[owner],
                    labels={"stockade.dev/agent": "planted"},
                ),
                data={"task": "a task the author never wrote"},
                immutable=True,
            ),
        )
    finally:
        stockade_operator.start()
    agents.wait_phase("planted", "Running", "Succeeded", timeout=60)
    mounted = configmap(cluster, namespace, "planted")
    assert mounted is not None and mounted.metadata.uid != planted.metadata.uid
    assert (mounted.data or {}).get("task") == "the real task"
    (pod,) = agents.pods("planted")
    assert pod.metadata.creation_timestamp >= mounted.metadata.creation_timestamp
