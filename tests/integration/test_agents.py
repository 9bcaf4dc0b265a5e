"""Every Agent lifecycle path, end to end: the real operator against the real API server.

Pods are driven by the kwok simulation contract (hack/kwok/README.md) through
``spec.podMetadata.annotations``; the operator runs as a subprocess with 1s retry backoff.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.auth import OperatorAuth
from tests.integration.cluster import (
    SIM_EXIT_AFTER,
    SIM_EXIT_CODE,
    SIM_IMAGE_PULL,
    SIM_OOM_KILL,
    SIM_TERMINATION_MESSAGE,
    Cluster,
    wait_for,
)
from tests.integration.conftest import NamespaceFactory
from tests.integration.operator import Agents, OperatorProcess

pytestmark = pytest.mark.integration

IMAGE = "registry.example/agent:1.0"


def spec(annotations: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"image": IMAGE, **fields}
    if annotations:
        body["podMetadata"] = {"annotations": annotations}
    return body


def exits(code: int, after: str = "1s", message: str | None = None) -> dict[str, str]:
    annotations = {SIM_EXIT_CODE: str(code), SIM_EXIT_AFTER: after}
    if message is not None:
        annotations[SIM_TERMINATION_MESSAGE] = message
    return annotations


def history(status: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(h.get("from"), h["to"]) for h in status.get("history", [])]


def test_success(agents: Agents) -> None:
    message = '{"result": "patched 3 files", "usage": {"inputTokens": 1200, "costUSD": 0.02}}'
    agents.create("ok", spec(exits(0, "2s", message), task="Fix the bug.", config={"model": "m1"}))
    running = agents.wait_phase("ok", "Running")
    assert running["runtimeClassName"] == "gvisor"
    assert agents.condition("ok", "Ready")["status"] == "True"
    status = agents.wait_phase("ok", "Succeeded")
    assert status["result"] == "patched 3 files"
    assert status["usage"] == {"inputTokens": 1200, "costUSD": 0.02}
    assert status["exitCode"] == 0
    assert status["attempts"] == 1
    assert status["observedGeneration"] == 1
    assert history(status) == [
        (None, "Pending"),
        ("Pending", "Starting"),
        ("Starting", "Running"),
        ("Running", "Succeeded"),
    ]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Stalled"]["status"] == "False"
    assert conditions["Reconciling"]["status"] == "False"
    # Events are posted in the background, just after the status write.
    wanted = {"Created", "PodCreated", "PodRunning", "Completed"}
    wait_for(lambda: wanted <= {e.reason for e in agents.events("ok")}, what=f"Events {wanted}")
    # The pod: hardened, sandboxed, owned, labelled, fed its task and config.
    (pod,) = agents.pods("ok")
    assert pod.metadata.name == "ok-1"
    assert pod.spec.runtime_class_name == "gvisor"
    assert pod.spec.automount_service_account_token is False
    assert pod.metadata.owner_references[0].kind == "Agent"
    assert pod.metadata.owner_references[0].controller is True
    assert pod.metadata.labels["app.kubernetes.io/managed-by"] == "stockade"
    container = pod.spec.containers[0]
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.capabilities.drop == ["ALL"]
    assert container.resources.requests and container.resources.limits
    input_cm = agents.cluster.core.read_namespaced_config_map("ok-input", agents.namespace)
    assert input_cm.data["task"] == "Fix the bug."
    # kopf wrote no annotations of its own (no progress or diff-base storage).
    annotations = agents.get("ok")["metadata"].get("annotations") or {}
    assert not [k for k in annotations if "kopf" in k]


def test_failure_retries_then_backoff_limit_exceeded(agents: Agents) -> None:
    agents.create("flaky", spec(exits(1, "500ms"), restartPolicy="OnFailure", backoffLimit=2))
    status = agents.wait_phase("flaky", "Failed", timeout=90)
    assert status["reason"] == "BackoffLimitExceeded"
    assert status["attempts"] == 3
    assert status["exitCode"] == 1
    retries = [h for h in status["history"] if (h.get("from"), h["to"]) == ("Running", "Starting")]
    assert len(retries) == 2 and retries[0]["reason"] == "Error"
    assert agents.condition("flaky", "Stalled")["status"] == "True"
    # Only the last attempt's pod remains (older ones are cleaned up).
    assert [p.metadata.name for p in agents.pods("flaky")] == ["flaky-3"]


def test_failure_without_retries(agents: Agents) -> None:
    agents.create("once", spec(exits(7, "500ms")))
    status = agents.wait_phase("once", "Failed")
    assert (status["reason"], status["exitCode"], status["attempts"]) == ("Error", 7, 1)


def test_deadline_exceeded(agents: Agents) -> None:
    agents.create("slow", spec(activeDeadlineSeconds=3))
    agents.wait_phase("slow", "Running")
    status = agents.wait_phase("slow", "Failed", timeout=30)
    assert status["reason"] == "DeadlineExceeded"
    wait_for(lambda: not agents.pods("slow"), timeout=20, what="pod deleted")


def test_startup_timeout_when_the_image_never_pulls(agents: Agents) -> None:
    agents.create("nopull", spec({SIM_IMAGE_PULL: "fail"}, startupTimeoutSeconds=3))
    starting = agents.wait_phase("nopull", "Starting")
    assert starting["attempts"] == 1
    wait_for(lambda: agents.status("nopull").get("reason") == "ImagePullBackOff", what="pull error")
    status = agents.wait_phase("nopull", "Failed", timeout=30)
    assert status["reason"] == "StartupTimeout"
    assert "ErrImagePull" in status["message"]


def test_oom_killed(agents: Agents) -> None:
    agents.create("hungry", spec({SIM_OOM_KILL: "true", SIM_EXIT_AFTER: "500ms"}))
    status = agents.wait_phase("hungry", "Failed")
    assert (status["reason"], status["exitCode"]) == ("OOMKilled", 137)


def test_suspend_and_resume_keep_the_workspace(agents: Agents, cluster: Cluster) -> None:
    agents.create("pausable", spec(workspace={"size": "1Gi"}))
    agents.wait_phase("pausable", "Running")
    pvc = cluster.core.read_namespaced_persistent_volume_claim(
        "pausable-workspace", agents.namespace
    )
    agents.patch("pausable", {"suspend": True})
    status = agents.wait_phase("pausable", "Paused")
    assert agents.condition("pausable", "Suspended")["status"] == "True"
    assert status["reason"] == "Suspended"
    wait_for(lambda: not agents.pods("pausable"), timeout=20, what="pod deleted while paused")
    agents.patch("pausable", {"suspend": False})
    status = agents.wait_phase("pausable", "Running", timeout=30)
    assert ("Paused", "Pending") in history(status)
    same = cluster.core.read_namespaced_persistent_volume_claim(
        "pausable-workspace", agents.namespace
    )
    assert same.metadata.uid == pvc.metadata.uid
    (pod,) = agents.pods("pausable")
    claims = [
        v.persistent_volume_claim.claim_name for v in pod.spec.volumes if v.persistent_volume_claim
    ]
    assert claims == ["pausable-workspace"]


def test_deletion_while_running_removes_children(agents: Agents, cluster: Cluster) -> None:
    agents.create("doomed", spec(workspace={"size": "1Gi"}, task="t"))
    agents.wait_phase("doomed", "Running")
    agents.create("keeper", spec(workspace={"size": "1Gi", "retain": True}))
    agents.wait_phase("keeper", "Running")
    agents.delete("doomed")
    agents.delete("keeper")
    wait_for(
        lambda: not agents.pods("doomed") and not agents.pods("keeper"),
        timeout=60,
        what="pods gone",
    )

    def gone(read: Any, name: str) -> bool:
        try:
            read(name, agents.namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    core = cluster.core
    wait_for(
        lambda: gone(core.read_namespaced_config_map, "doomed-input"), timeout=60, what="cm gone"
    )
    wait_for(
        lambda: gone(core.read_namespaced_persistent_volume_claim, "doomed-workspace"),
        timeout=60,
        what="workspace deleted",
    )
    assert not agents.exists("doomed")
    # retain: true keeps the workspace after the Agent is gone.
    time.sleep(2)
    kept = core.read_namespaced_persistent_volume_claim("keeper-workspace", agents.namespace)
    assert not kept.metadata.owner_references


def test_pod_deleted_behind_the_operators_back(agents: Agents, cluster: Cluster) -> None:
    agents.create("phoenix", spec(restartPolicy="OnFailure"))
    agents.wait_phase("phoenix", "Running")
    cluster.core.delete_namespaced_pod("phoenix-1", agents.namespace)

    def second_attempt_running() -> dict[str, Any] | None:
        status = agents.status("phoenix")
        return status if status.get("attempts") == 2 and status["phase"] == "Running" else None

    status = wait_for(second_attempt_running, timeout=30, what="attempt 2 running")
    lost = [h for h in status["history"] if h["reason"] == "PodLost"]
    assert lost and lost[0].get("from") == "Running"
    assert [p.metadata.name for p in agents.pods("phoenix")] == ["phoenix-2"]


def test_runtime_class_not_found(agents: Agents) -> None:
    # kata-* is in the default allow-list (kata-deploy's classes); this one does not exist.
    agents.create("nosandbox", spec(runtimeClassName="kata-no-such-sandbox"))

    def stalled() -> bool:
        return agents.condition("nosandbox", "Stalled").get("status") == "True"

    wait_for(stalled, what="Stalled")
    status = agents.status("nosandbox")
    assert status["phase"] == "Pending"
    admitted = agents.condition("nosandbox", "Admitted")
    assert (admitted["status"], admitted["reason"]) == ("False", "RuntimeClassNotFound")
    assert "kata-no-such-sandbox" in admitted["message"]
    assert not agents.pods("nosandbox")
    wait_for(
        lambda: any(
            e.type == "Warning" and e.reason == "RuntimeClassNotFound"
            for e in agents.events("nosandbox")
        ),
        what="Warning Event RuntimeClassNotFound",
    )


def test_running_without_a_sandbox_is_refused_by_default(agents: Agents) -> None:
    agents.create("runc", spec(runtimeClassName="runc"))
    status = agents.wait_phase("runc", "Failed")
    assert status["reason"] == "InvalidSpec"
    assert status["message"].startswith("spec.runtimeClassName: RuntimeClass 'runc'")
    assert "STOCKADE_ALLOWED_RUNTIME_CLASSES" in status["message"]
    assert agents.condition("runc", "Stalled")["status"] == "True"
    assert not agents.pods("runc")


def test_labels_tolerations_and_priority_outside_the_allow_lists_are_refused(
    agents: Agents,
) -> None:
    agents.create(
        "grabby",
        spec(
            podMetadata={"labels": {"app": "web", "user.stockade.dev/team": "a"}},
            tolerations=[{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}],
            priorityClassName="system-cluster-critical",
        ),
    )
    status = agents.wait_phase("grabby", "Failed")
    assert status["reason"] == "InvalidSpec"
    message = status["message"]
    for named in (
        "spec.podMetadata.labels: label key 'app'",
        "STOCKADE_ALLOWED_POD_LABEL_KEYS",
        "spec.tolerations[0].key",
        "STOCKADE_ALLOWED_TOLERATION_KEYS",
        "spec.priorityClassName",
        "STOCKADE_ALLOWED_PRIORITY_CLASSES",
    ):
        assert named in message, message
    assert "user.stockade.dev/team" not in message.split("allows")[0]
    assert not agents.pods("grabby")


def test_agents_never_run_in_a_system_namespace(
    cluster: Cluster, stockade_operator: OperatorProcess, operator_auth: OperatorAuth
) -> None:
    if operator_auth.namespaces is not None:
        pytest.skip("the namespaced operator does not watch kube-public")
    system = Agents(cluster, "kube-public")
    system.create("intruder", spec(exits(0)))
    try:
        status = system.wait_phase("intruder", "Failed")
        assert status["reason"] == "NamespaceNotAllowed"
        assert status["message"].startswith("metadata.namespace: ")
        stalled = system.condition("intruder", "Stalled")
        assert (stalled["status"], stalled["reason"]) == ("True", "NamespaceNotAllowed")
        assert not system.pods("intruder")
        wait_for(
            lambda: any(
                e.type == "Warning" and e.reason == "NamespaceNotAllowed"
                for e in system.events("intruder")
            ),
            what="Warning Event NamespaceNotAllowed",
        )
    finally:
        system.delete("intruder")
        wait_for(lambda: not system.exists("intruder"), what="intruder deleted")


def test_quota_exceeded_then_raised(agents: Agents, cluster: Cluster) -> None:
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="agents"),
        spec=client.V1ResourceQuotaSpec(hard={"requests.cpu": "100m"}),
    )
    cluster.core.create_namespaced_resource_quota(agents.namespace, quota)
    wait_for(
        lambda: cluster.core.read_namespaced_resource_quota("agents", agents.namespace).status.hard,
        what="quota status",
    )
    agents.create("squeezed", spec(resources={"requests": {"cpu": "500m"}}))

    def quota_exceeded() -> bool:
        cond = agents.condition("squeezed", "Admitted")
        return cond.get("status") == "False" and cond.get("reason") == "QuotaExceeded"

    wait_for(quota_exceeded, what="Admitted=False/QuotaExceeded")
    assert agents.status("squeezed")["phase"] == "Pending"
    assert agents.condition("squeezed", "Stalled")["status"] == "False"
    cluster.core.patch_namespaced_resource_quota(
        "agents", agents.namespace, {"spec": {"hard": {"requests.cpu": "4"}}}
    )
    agents.wait_phase("squeezed", "Running", timeout=90)
    assert agents.condition("squeezed", "Admitted")["status"] == "True"


def test_restricted_namespace_accepts_stockade_pods(
    make_namespace: NamespaceFactory, cluster: Cluster, stockade_operator: OperatorProcess
) -> None:
    namespace = make_namespace({"pod-security.kubernetes.io/enforce": "restricted"})
    restricted = Agents(cluster, namespace)
    restricted.create("strict", spec(exits(0), workspace={"size": "1Gi"}, task="x"))
    restricted.wait_phase("strict", "Succeeded")


def test_operator_restart_mid_lifecycle(agents: Agents, stockade_operator: OperatorProcess) -> None:
    agents.create("survivor", spec(exits(0, "6s")))
    agents.wait_phase("survivor", "Running")
    stockade_operator.restart()
    status = agents.wait_phase("survivor", "Succeeded", timeout=60)
    assert status["attempts"] == 1
    assert [p.metadata.name for p in agents.pods("survivor")] == ["survivor-1"]
    assert history(status) == [
        (None, "Pending"),
        ("Pending", "Starting"),
        ("Starting", "Running"),
        ("Running", "Succeeded"),
    ]


def test_ttl_after_finished_deletes_the_agent(agents: Agents) -> None:
    agents.create("ephemeral", spec(exits(0, "500ms"), ttlSecondsAfterFinished=2))
    agents.wait_phase("ephemeral", "Succeeded")
    wait_for(lambda: not agents.exists("ephemeral"), timeout=30, what="Agent deleted by TTL")


def test_metrics_are_exported(agents: Agents, stockade_operator: OperatorProcess) -> None:
    agents.create("counted", spec(exits(0, "500ms")))
    agents.wait_phase("counted", "Succeeded")
    # The gauge follows the status write the test just saw.
    gauge = f'stockade_agents{{namespace="{agents.namespace}",phase="Succeeded"}} 1.0'

    def scraped() -> str | None:
        text = stockade_operator.metrics()
        return text if gauge in text else None

    text = wait_for(scraped, timeout=10, what=gauge)
    assert (
        'stockade_agent_transitions_total{from_phase="Running",reason="Completed",to_phase="Succeeded"}'
        in text
    )
    assert "stockade_agent_create_to_running_seconds_count" in text
