"""The local control plane is a real Kubernetes API server with real controllers.

Each test proves one property the operator's integration tests rely on: fake nodes are
Ready, kwok's Stages drive pods through the simulation contract (hack/kwok/README.md),
and admission (RuntimeClass, PodSecurity, ResourceQuota), RBAC and garbage collection
behave as on a real cluster.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.cluster import (
    SIM_EXIT_AFTER,
    SIM_EXIT_CODE,
    SIM_IMAGE_PULL,
    SIM_OOM_KILL,
    SIM_TERMINATION_MESSAGE,
    Cluster,
    pod_manifest,
    wait_for,
)
from tests.integration.conftest import NamespaceFactory

pytestmark = pytest.mark.integration


def _pod(cluster: Cluster, namespace: str, name: str) -> client.V1Pod:
    return cluster.core.read_namespaced_pod(name, namespace)


def _phase_in(cluster: Cluster, namespace: str, name: str, phases: set[str]) -> client.V1Pod | None:
    pod = _pod(cluster, namespace, name)
    return pod if pod.status.phase in phases else None


def _terminated(pod: client.V1Pod) -> Any:
    statuses = pod.status.container_statuses or []
    assert len(statuses) == 1, statuses
    return statuses[0].state.terminated


def test_nodes_are_ready(cluster: Cluster) -> None:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-l", "type=kwok", "-o", "json"))["items"]
    assert len(nodes) >= 3
    for node in nodes:
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["metadata"]["name"]
        assert node["status"]["allocatable"]["cpu"] == "8"


def test_gvisor_pod_is_scheduled_and_runs(cluster: Cluster, namespace: str) -> None:
    cluster.create_pod(namespace, pod_manifest("runs", runtime_class="gvisor"))
    pod = wait_for(lambda: _phase_in(cluster, namespace, "runs", {"Running"}), what="pod Running")
    assert pod.spec.runtime_class_name == "gvisor"
    assert pod.spec.node_name.startswith("kwok-node-")
    ready = {c.type: c.status for c in pod.status.conditions}
    assert ready["Ready"] == "True"
    assert pod.status.container_statuses[0].state.running is not None
    # No exit annotation: the container keeps running.
    time.sleep(2)
    assert _pod(cluster, namespace, "runs").status.phase == "Running"


@pytest.mark.parametrize(
    ("code", "phase", "reason"), [(0, "Succeeded", "Completed"), (3, "Failed", "Error")]
)
def test_exit_code_contract(
    cluster: Cluster, namespace: str, code: int, phase: str, reason: str
) -> None:
    annotations = {
        SIM_EXIT_CODE: str(code),
        SIM_EXIT_AFTER: "2s",
        SIM_TERMINATION_MESSAGE: '{"result": "done"}',
    }
    cluster.create_pod(namespace, pod_manifest("exits", annotations=annotations))
    running = wait_for(lambda: _phase_in(cluster, namespace, "exits", {"Running"}), what="Running")
    started = running.status.container_statuses[0].state.running.started_at
    pod = wait_for(
        lambda: _phase_in(cluster, namespace, "exits", {"Succeeded", "Failed"}), what="finished"
    )
    assert pod.status.phase == phase
    terminated = _terminated(pod)
    assert terminated.exit_code == code
    assert terminated.reason == reason
    assert terminated.message == '{"result": "done"}'
    assert (terminated.finished_at - started).total_seconds() >= 1.5


def test_oom_kill_contract(cluster: Cluster, namespace: str) -> None:
    annotations = {SIM_OOM_KILL: "true", SIM_EXIT_AFTER: "500ms"}
    cluster.create_pod(namespace, pod_manifest("oom", annotations=annotations))
    pod = wait_for(lambda: _phase_in(cluster, namespace, "oom", {"Failed"}), what="Failed")
    terminated = _terminated(pod)
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137)


def test_image_pull_failure_contract(cluster: Cluster, namespace: str) -> None:
    annotations = {SIM_IMAGE_PULL: "fail"}
    cluster.create_pod(namespace, pod_manifest("nopull", annotations=annotations))

    def waiting_reason() -> str | None:
        statuses = _pod(cluster, namespace, "nopull").status.container_statuses or []
        return statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else None

    assert wait_for(waiting_reason, what="container waiting") == "ErrImagePull"
    time.sleep(2)
    pod = _pod(cluster, namespace, "nopull")
    assert pod.status.phase == "Pending"
    assert pod.status.container_statuses[0].state.waiting.reason == "ErrImagePull"


def test_missing_runtime_class_is_rejected(cluster: Cluster, namespace: str) -> None:
    with pytest.raises(ApiException) as raised:
        cluster.create_pod(namespace, pod_manifest("nosandbox", runtime_class="no-such-sandbox"))
    assert raised.value.status == 403
    assert "no-such-sandbox" in raised.value.body
    assert "RuntimeClass" in raised.value.body


def test_kata_overhead_is_added_by_admission(cluster: Cluster, namespace: str) -> None:
    created = cluster.create_pod(namespace, pod_manifest("vm", runtime_class="kata"))
    assert created.spec.overhead == {"cpu": "250m", "memory": "160Mi"}


def test_pod_security_restricted_rejects_privileged(
    cluster: Cluster, make_namespace: NamespaceFactory
) -> None:
    namespace = make_namespace({"pod-security.kubernetes.io/enforce": "restricted"})
    with pytest.raises(ApiException) as raised:
        cluster.create_pod(namespace, pod_manifest("priv", privileged=True))
    assert raised.value.status == 403
    assert "violates PodSecurity" in raised.value.body
    # A pod hardened to the restricted standard is admitted in the same namespace.
    cluster.create_pod(namespace, pod_manifest("hardened"))


def test_resource_quota_is_enforced(cluster: Cluster, namespace: str) -> None:
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="agents"),
        spec=client.V1ResourceQuotaSpec(hard={"requests.cpu": "1", "pods": "5"}),
    )
    cluster.core.create_namespaced_resource_quota(namespace, quota)
    # The quota controller computes status.hard before admission enforces the quota.
    wait_for(
        lambda: cluster.core.read_namespaced_resource_quota("agents", namespace).status.hard,
        what="quota status",
    )
    big = {"cpu": "600m", "memory": "64Mi"}
    cluster.create_pod(namespace, pod_manifest("first", requests=big))
    with pytest.raises(ApiException) as raised:
        cluster.create_pod(namespace, pod_manifest("second", requests=big))
    assert raised.value.status == 403
    assert "exceeded quota: agents" in raised.value.body


def test_garbage_collector_deletes_dependents(cluster: Cluster, namespace: str) -> None:
    owner = cluster.core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    dependent = pod_manifest("dependent")
    dependent["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "owner",
            "uid": owner.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    cluster.create_pod(namespace, dependent)
    cluster.core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    def dependent_gone() -> bool:
        try:
            _pod(cluster, namespace, "dependent")
        except ApiException as exc:
            return exc.status == 404
        return False

    assert wait_for(dependent_gone, timeout=60, what="garbage collection of the dependent pod")


def test_rbac_is_enforced(cluster: Cluster, namespace: str) -> None:
    """A ServiceAccount with no RoleBinding is forbidden from listing pods."""
    answer = cluster.kubectl(
        "auth",
        "can-i",
        "list",
        "pods",
        "-n",
        namespace,
        f"--as=system:serviceaccount:{namespace}:default",
        check=False,
    )
    assert answer.strip() == "no"
    assert cluster.kubectl("auth", "can-i", "list", "pods", "-n", namespace).strip() == "yes"
