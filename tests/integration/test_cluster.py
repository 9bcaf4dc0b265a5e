"""The local control plane is a real Kubernetes API server with real controllers.

Each test proves one property the operator's integration tests rely on: fake nodes are
Ready, kwok's Stages drive pods through the simulation contract (hack/kwok/README.md),
and admission (RuntimeClass, PodSecurity, ResourceQuota), RBAC and garbage collection
behave as on a real cluster.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.integration.cluster import (
    SIM_EXIT_AFTER,
    SIM_EXIT_CODE,
    SIM_IGNORE_SIGTERM,
    SIM_IMAGE_PULL,
    SIM_OOM_KILL,
    SIM_SIDECAR_KEEPS_RUNNING,
    SIM_TERMINATION_GRACE,
    SIM_TERMINATION_MESSAGE,
    Cluster,
    pin_to_node,
    pod_manifest,
    scratch_node_manifest,
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


def _gone(cluster: Cluster, namespace: str, name: str) -> bool:
    try:
        _pod(cluster, namespace, name)
    except ApiException as exc:
        return exc.status == 404
    return False


def _states(pod: client.V1Pod) -> dict[str, Any]:
    """Container name -> its state (V1ContainerState)."""
    return {s.name: s.state for s in pod.status.container_statuses or []}


@dataclass
class PodRecorder:
    """Records every watch event of one pod (monotonic time, type, pod) in a thread."""

    cluster: Cluster
    namespace: str
    name: str
    timeout: int = 60
    events: list[tuple[float, str, client.V1Pod]] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def start(self) -> PodRecorder:
        """Start watching; returns once the watch is live (its initial ADDED arrived)."""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        wait_for(lambda: self.events, timeout=10, what=f"watch on pod {self.name}")
        return self

    def _run(self) -> None:
        watcher = watch.Watch()  # type: ignore[no-untyped-call]
        stream = watcher.stream(  # type: ignore[no-untyped-call]
            self.cluster.core.list_namespaced_pod,
            self.namespace,
            field_selector=f"metadata.name={self.name}",
            timeout_seconds=self.timeout,
        )
        for event in stream:
            self.events.append((time.monotonic(), event["type"], event["object"]))
            if event["type"] == "DELETED":
                return

    def first(self, what: str, match: Any, timeout: float = 30) -> tuple[float, client.V1Pod]:
        """The first recorded (time, pod) for which match(type, pod) is true."""

        def find() -> tuple[float, client.V1Pod] | None:
            for at, kind, pod in list(self.events):
                if match(kind, pod):
                    return at, pod
            return None

        return wait_for(find, timeout=timeout, what=what)


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


def _delete(cluster: Cluster, namespace: str, name: str, grace: int | None = None) -> float:
    """Delete a pod (gracefully) and return when the request was answered."""
    cluster.core.delete_namespaced_pod(name, namespace, grace_period_seconds=grace)
    return time.monotonic()


def test_graceful_deletion_sigterm_contract(cluster: Cluster, namespace: str) -> None:
    """termination-grace: on delete the container exits 143 at once; the pod object stays
    (Failed, with a deletionTimestamp) for the annotated delay, then is removed."""
    annotations = {SIM_TERMINATION_GRACE: "4s"}
    cluster.create_pod(namespace, pod_manifest("graceful", annotations=annotations))
    wait_for(lambda: _phase_in(cluster, namespace, "graceful", {"Running"}), what="Running")
    recorder = PodRecorder(cluster, namespace, "graceful").start()
    deleted = _delete(cluster, namespace, "graceful")

    failed_at, failed = recorder.first(
        "Failed while terminating",
        lambda kind, pod: kind == "MODIFIED" and pod.status.phase == "Failed",
    )
    assert failed.metadata.deletion_timestamp is not None
    terminated = _terminated(failed)
    assert (terminated.exit_code, terminated.reason) == (143, "Error")
    assert failed_at - deleted < 3, "SIGTERM should end the container at once"

    gone_at, _ = recorder.first("pod removed", lambda kind, pod: kind == "DELETED", timeout=20)
    assert 3.5 <= gone_at - failed_at <= 8, gone_at - failed_at
    assert _gone(cluster, namespace, "graceful")


def test_deletion_without_annotations_is_immediate(cluster: Cluster, namespace: str) -> None:
    """The default (no termination-grace): a deleted pod is removed at once, still Running."""
    cluster.create_pod(namespace, pod_manifest("quick"))
    wait_for(lambda: _phase_in(cluster, namespace, "quick", {"Running"}), what="Running")
    recorder = PodRecorder(cluster, namespace, "quick").start()
    deleted = _delete(cluster, namespace, "quick")
    gone_at, last = recorder.first("pod removed", lambda kind, pod: kind == "DELETED")
    assert gone_at - deleted < 3
    assert last.status.phase == "Running"


def test_ignore_sigterm_contract(cluster: Cluster, namespace: str) -> None:
    """ignore-sigterm: the container runs until the grace period ends, then exits 137."""
    annotations = {SIM_IGNORE_SIGTERM: "true"}
    cluster.create_pod(namespace, pod_manifest("stubborn", annotations=annotations))
    wait_for(lambda: _phase_in(cluster, namespace, "stubborn", {"Running"}), what="Running")
    recorder = PodRecorder(cluster, namespace, "stubborn").start()
    deleted = _delete(cluster, namespace, "stubborn", grace=3)

    time.sleep(1.5)
    terminating = _pod(cluster, namespace, "stubborn")
    assert terminating.metadata.deletion_timestamp is not None
    assert terminating.status.phase == "Running"
    assert _states(terminating)["agent"].running is not None

    killed_at, killed = recorder.first(
        "SIGKILL at the end of the grace period",
        lambda kind, pod: kind == "MODIFIED" and pod.status.phase == "Failed",
    )
    terminated = _terminated(killed)
    assert (terminated.exit_code, terminated.reason) == (137, "Error")
    # deletionTimestamp has whole seconds (truncated), so the kill may come up to 1 s early.
    assert 1.8 <= killed_at - deleted <= 6, killed_at - deleted
    # Without termination-grace the object goes right after the kill.
    gone_at, _ = recorder.first("pod removed", lambda kind, pod: kind == "DELETED")
    assert gone_at - killed_at < 3


def test_sidecar_keeps_pod_running_contract(cluster: Cluster, namespace: str) -> None:
    """sidecar-keeps-running: exit-code ends only `agent`; the sidecar and the pod run on.
    Deleting the pod then SIGTERMs the sidecar (143) and keeps the agent's exit code."""
    annotations = {
        SIM_EXIT_CODE: "3",
        SIM_EXIT_AFTER: "1s",
        SIM_SIDECAR_KEEPS_RUNNING: "true",
        SIM_TERMINATION_GRACE: "1s",
    }
    cluster.create_pod(namespace, pod_manifest("meshed", annotations=annotations, sidecar=True))

    def agent_terminated() -> client.V1Pod | None:
        pod = _pod(cluster, namespace, "meshed")
        agent = _states(pod).get("agent")
        return pod if agent is not None and agent.terminated is not None else None

    pod = wait_for(agent_terminated, what="agent container terminated")
    states = _states(pod)
    assert (states["agent"].terminated.exit_code, states["agent"].terminated.reason) == (3, "Error")
    assert states["proxy"].running is not None
    assert pod.status.phase == "Running"
    conditions = {c.type: c.status for c in pod.status.conditions}
    assert conditions["Ready"] == "False"
    time.sleep(2)
    pod = _pod(cluster, namespace, "meshed")
    assert pod.status.phase == "Running"
    assert _states(pod)["proxy"].running is not None

    recorder = PodRecorder(cluster, namespace, "meshed").start()
    _delete(cluster, namespace, "meshed")
    _, failed = recorder.first(
        "Failed while terminating",
        lambda kind, pod: kind == "MODIFIED" and pod.status.phase == "Failed",
    )
    codes = {name: state.terminated.exit_code for name, state in _states(failed).items()}
    assert codes == {"agent": 3, "proxy": 143}
    recorder.first("pod removed", lambda kind, pod: kind == "DELETED", timeout=15)


@pytest.fixture
def scratch_node(cluster: Cluster) -> Iterator[str]:
    """A fresh, Ready kwok node for one test to lose; deleted (with its pods) afterwards."""
    name = f"kwok-scratch-{uuid.uuid4().hex[:5]}"
    cluster.core.create_node(scratch_node_manifest(name))  # type: ignore[arg-type]

    def ready() -> bool:
        node = cluster.core.read_node(name)
        return any(
            c.type == "Ready" and c.status == "True" for c in node.status.conditions or []
        ) and not any(t.key == "node.kubernetes.io/not-ready" for t in node.spec.taints or [])

    wait_for(ready, timeout=60, what=f"node {name} Ready")
    try:
        yield name
    finally:
        pods = cluster.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={name}")
        for pod in pods.items:
            try:
                cluster.core.delete_namespaced_pod(
                    pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
        try:
            cluster.core.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_deleted_node_pods_are_removed_by_pod_gc(
    cluster: Cluster, namespace: str, scratch_node: str
) -> None:
    """A node object deleted under running pods: kwok stops playing them; kube-controller-
    manager's PodGC marks them Failed (DisruptionTarget, DeletionByPodGC) and force-deletes
    them 40-60 s later (20 s GC period plus a 40 s quarantine for the missing node)."""
    cluster.create_pod(namespace, pin_to_node(pod_manifest("orphan"), scratch_node))
    wait_for(lambda: _phase_in(cluster, namespace, "orphan", {"Running"}), what="Running")
    recorder = PodRecorder(cluster, namespace, "orphan", timeout=120).start()
    cluster.core.delete_node(scratch_node)
    deleted = time.monotonic()

    time.sleep(5)
    pod = _pod(cluster, namespace, "orphan")
    assert (pod.status.phase, pod.metadata.deletion_timestamp) == ("Running", None)

    gone_at, last = recorder.first(
        "PodGC to delete the orphaned pod", lambda kind, pod: kind == "DELETED", timeout=100
    )
    assert last.status.phase == "Failed"
    reasons = {c.type: c.reason for c in last.status.conditions or []}
    assert reasons.get("DisruptionTarget") == "DeletionByPodGC"
    assert 20 <= gone_at - deleted <= 95, gone_at - deleted


def test_stopped_heartbeat_node_goes_unknown_and_evicts(
    cluster: Cluster, namespace: str, scratch_node: str
) -> None:
    """A node whose heartbeat stops: after kube-controller-manager's 40 s grace period it is
    Ready=Unknown and tainted unreachable; its pods become not Ready; a pod tolerating that
    taint for 1 s is evicted and then stays Terminating, as nothing on the node finishes
    the deletion; the default toleration (300 s) keeps the other. When the heartbeat comes
    back, the node is Ready again."""
    unreachable = {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 1,
    }
    cluster.create_pod(namespace, pin_to_node(pod_manifest("evicted"), scratch_node, [unreachable]))
    cluster.create_pod(namespace, pin_to_node(pod_manifest("stays"), scratch_node))
    wait_for(lambda: _phase_in(cluster, namespace, "evicted", {"Running"}), what="Running")
    wait_for(lambda: _phase_in(cluster, namespace, "stays", {"Running"}), what="Running")
    stays = _pod(cluster, namespace, "stays")
    default_toleration = [t for t in stays.spec.tolerations if t.key == unreachable["key"]]
    assert default_toleration[0].toleration_seconds == 300

    cluster.stop_heartbeat(scratch_node)
    stopped = time.monotonic()

    def ready_status() -> str | None:
        node = cluster.core.read_node(scratch_node)
        status = next(c.status for c in node.status.conditions if c.type == "Ready")
        return status if status != "True" else None

    assert wait_for(ready_status, timeout=75, interval=1, what="node not Ready") == "Unknown"
    unknown_after = time.monotonic() - stopped
    assert 25 <= unknown_after <= 70, unknown_after

    def evicted() -> bool:
        try:
            return _pod(cluster, namespace, "evicted").metadata.deletion_timestamp is not None
        except ApiException as exc:
            return exc.status == 404

    # kwok v0.8 may still play pods of a node whose Lease it lost, so the evicted pod is
    # either Terminating or already removed (hack/kwok/README.md, "Lost nodes").
    wait_for(evicted, timeout=20, what="eviction of the pod tolerating 1 s")
    taints = {t.key: t.effect for t in cluster.core.read_node(scratch_node).spec.taints or []}
    assert "node.kubernetes.io/unreachable" in taints
    stays = _pod(cluster, namespace, "stays")
    assert stays.metadata.deletion_timestamp is None
    assert {c.type: c.status for c in stays.status.conditions}["Ready"] == "False"

    cluster.resume_heartbeat(scratch_node)

    def ready_again() -> bool:
        node = cluster.core.read_node(scratch_node)
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)

    wait_for(ready_again, timeout=40, interval=1, what="node Ready after the heartbeat resumed")
    assert wait_for(lambda: _gone(cluster, namespace, "evicted"), timeout=20, what="evicted gone")
    assert _pod(cluster, namespace, "stays").metadata.deletion_timestamp is None
