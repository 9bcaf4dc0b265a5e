"""Agents on the real node: the real operator, kubelet, containerd and gVisor (runsc).

Each Agent runs the e2e agent image (hack/node/agent/agent.sh), pinned to
``stockade-node-0`` by a nodeSelector and a toleration of its taint. The agent reports
what it saw inside the container as a JSON ``result`` (parsed here) and fixed ``usage``;
its config (``mode``, ``exitCode``, ``seconds``, ...) tells it how to behave.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.conftest import (
    AGENT_IMAGE,
    NODE_NAME,
    TIMINGS,
    host_leftovers,
    real_node_placement,
    workspace,
)
from tests.integration.cluster import Cluster, wait_for
from tests.integration.operator import Agents
from tests.integration.test_sessions import Sampler, Sessions, live_pods

pytestmark = pytest.mark.e2e

USAGE = {"inputTokens": 12, "outputTokens": 34, "costUSD": 0.5}
# A pod on the real node: image present, gVisor sandbox start; generous on a busy VM.
START_TIMEOUT = 120


def on_node(
    mode: str = "exit", config: dict[str, str] | None = None, **fields: Any
) -> dict[str, Any]:
    """An Agent spec for the real node, its agent told `mode` (and more `config`)."""
    return {
        "image": AGENT_IMAGE,
        **real_node_placement(),
        "config": {"mode": mode, **(config or {})},
        **fields,
    }


def result(status: dict[str, Any]) -> dict[str, Any]:
    assert status.get("result"), f"no result in status: {status}"
    parsed: dict[str, Any] = json.loads(status["result"])
    return parsed


def agent_container(agents: Agents, name: str) -> Any:
    (pod,) = agents.pods(name)
    assert pod.spec.node_name == NODE_NAME
    (state,) = pod.status.container_statuses or [None]
    return pod, state


def test_agent_runs_under_gvisor_hardened(agents: Agents) -> None:
    task = 'Fix "the" bug.\nThen report.'
    # The API server's Pod Security admission refuses any pod that is not `restricted`.
    agents.cluster.core.patch_namespace(
        agents.namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    start = time.monotonic()
    agents.create(
        "sandboxed",
        on_node("sleep", {"seconds": "3", "model": "m1"}, task=task, workspace=workspace()),
    )
    agents.wait_phase("sandboxed", "Running", timeout=START_TIMEOUT)
    TIMINGS["Agent created -> Running under gVisor"] = time.monotonic() - start
    status = agents.wait_phase("sandboxed", "Succeeded", "Failed", timeout=60)
    TIMINGS["Agent created -> Succeeded"] = time.monotonic() - start
    assert status["phase"] == "Succeeded", status
    seen = result(status)
    # gVisor is the kernel: its Sentry reports a "-gvisor" release (e.g. 4.19.0-gvisor),
    # and an unprivileged process may not read its log (syslog needs CAP_SYSLOG).
    assert "-gvisor " in seen["kernel"], seen["kernel"]
    assert "not permitted" in seen["dmesg"], seen["dmesg"]
    # Restricted: uid/gid 65532, no capabilities, read-only root filesystem.
    assert (seen["uid"], seen["gid"]) == ("65532", "65532")
    assert int(seen["capEff"], 16) == 0
    assert seen["rootfsWritable"] is False
    # Its input and its workspace.
    assert seen["task"] == task
    assert seen["configKeys"].split() == ["mode", "model", "seconds"]
    assert seen["workspace"].startswith("attempts=1 ")
    assert seen["event"] == "slept"
    assert status["usage"] == USAGE
    assert (status["exitCode"], status["attempts"]) == (0, 1)
    pod, state = agent_container(agents, "sandboxed")
    assert pod.spec.runtime_class_name == "gvisor"
    assert state.state.terminated.exit_code == 0
    assert state.state.terminated.reason == "Completed"


def test_non_zero_exit_retries_then_fails(agents: Agents) -> None:
    agents.create(
        "flaky",
        on_node("exit", {"exitCode": "3"}, restartPolicy="OnFailure", backoffLimit=1),
    )
    status = agents.wait_phase("flaky", "Failed", timeout=START_TIMEOUT * 2)
    assert status["reason"] == "BackoffLimitExceeded", status
    assert (status["exitCode"], status["attempts"]) == (3, 2)
    assert result(status)["event"] == "exit"
    retries = [h for h in status["history"] if (h.get("from"), h["to"]) == ("Running", "Starting")]
    assert len(retries) == 1 and retries[0]["reason"] == "Error", status["history"]


def test_oom_kill_is_reported_as_oomkilled(agents: Agents) -> None:
    agents.create(
        "hungry",
        on_node(
            "oom",
            {"megabytes": "1024"},
            resources={
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "1", "memory": "128Mi"},
            },
        ),
    )
    status = agents.wait_phase("hungry", "Failed", timeout=START_TIMEOUT)
    assert status["reason"] == "OOMKilled", status
    _, state = agent_container(agents, "hungry")
    assert state.state.terminated.reason == "OOMKilled"
    # gVisor reports the OOM-killed container with exit code 128 (runc: 137).
    assert status["exitCode"] in (128, 137), status
    TIMINGS[f"(info) OOMKilled exit code under gVisor = {status['exitCode']}"] = 0.0


def test_failing_liveness_probe_ends_the_attempt(agents: Agents) -> None:
    probe = {
        "exec": {"command": ["/agent/agent.sh", "probe"]},
        "initialDelaySeconds": 1,
        "periodSeconds": 2,
        "failureThreshold": 1,
        "timeoutSeconds": 5,
    }
    agents.create("stuck", on_node("fail-liveness", {"seconds": "600"}, livenessProbe=probe))
    status = agents.wait_phase("stuck", "Failed", timeout=START_TIMEOUT)
    assert status["attempts"] == 1
    pod, state = agent_container(agents, "stuck")
    terminated = state.state.terminated
    # The kubelet stops the container with SIGTERM (the busybox sh exits 143); the pod's
    # status says only that (reason Error, no word of the probe), so the Agent's reason
    # is Error with that exit code: the status holds nothing that would make a
    # LivenessProbeFailed reason true.
    assert terminated is not None and (terminated.reason, terminated.exit_code) == ("Error", 143)
    assert (status["reason"], status["exitCode"]) == ("Error", 143), status

    # Only the kubelet's Events name the probe: Unhealthy "Liveness probe failed: ..." then
    # Killing "Stopping container agent" (with restartPolicy Never it does not say why).
    def probe_events() -> list[str] | None:
        events = agents.cluster.core.list_namespaced_event(
            agents.namespace, field_selector=f"involvedObject.name={pod.metadata.name}"
        ).items
        seen = [f"{e.reason}: {e.message}" for e in events]
        unhealthy = any(s.startswith("Unhealthy: Liveness probe failed") for s in seen)
        killing = "Killing: Stopping container agent" in seen
        return seen if unhealthy and killing else None

    wait_for(probe_events, timeout=30, what="the kubelet's Unhealthy and Killing events")


def test_active_deadline_kills_a_real_process(agents: Agents) -> None:
    agents.create("slow", on_node("sleep", {"seconds": "600"}, activeDeadlineSeconds=10))
    agents.wait_phase("slow", "Running", timeout=START_TIMEOUT)
    status = agents.wait_phase("slow", "Failed", timeout=60)
    assert status["reason"] == "DeadlineExceeded", status
    wait_for(lambda: not agents.pods("slow"), timeout=60, what="pod deleted")
    wait_for(lambda: not host_leftovers(), timeout=60, what="no runsc sandbox left on the node")


def test_suspend_sends_sigterm_and_resume_keeps_the_workspace(
    agents: Agents, cluster: Cluster
) -> None:
    agents.create(
        "pausable",
        on_node("sleep", {"seconds": "600", "resumeSeconds": "1"}, workspace=workspace()),
    )
    agents.wait_phase("pausable", "Running", timeout=START_TIMEOUT)
    time.sleep(2)  # the agent has counted itself in /workspace
    agents.patch("pausable", {"suspend": True})
    agents.wait_phase("pausable", "Paused", timeout=30)
    wait_for(lambda: not agents.pods("pausable"), timeout=60, what="pod deleted while paused")
    agents.patch("pausable", {"suspend": False})
    status = agents.wait_phase("pausable", "Succeeded", "Failed", timeout=START_TIMEOUT)
    assert status["phase"] == "Succeeded", status
    seen = result(status)
    # The second attempt found the first one's count, and the SIGTERM it logged.
    assert seen["workspace"].startswith("attempts=2 events=sigterm"), seen["workspace"]


def test_resume_within_the_grace_period_does_not_fail_the_agent(agents: Agents) -> None:
    # The agent ignores SIGTERM, so its pod stays Terminating for the grace period (30 s).
    agents.create(
        "stubborn",
        on_node("ignore-sigterm", {"seconds": "600", "resumeSeconds": "1"}, workspace=workspace()),
    )
    agents.wait_phase("stubborn", "Running", timeout=START_TIMEOUT)
    time.sleep(2)
    agents.patch("stubborn", {"suspend": True})
    agents.wait_phase("stubborn", "Paused", timeout=30)
    time.sleep(3)
    pods = agents.pods("stubborn")
    assert pods and pods[0].metadata.deletion_timestamp, "the old pod should be Terminating"
    agents.patch("stubborn", {"suspend": False})
    status = agents.wait_phase("stubborn", "Succeeded", "Failed", timeout=START_TIMEOUT)
    assert status["phase"] == "Succeeded", status
    assert result(status)["workspace"].startswith("attempts=2 "), status["result"]


def test_deleting_the_agent_leaves_nothing_on_the_node(agents: Agents) -> None:
    agents.create("doomed", on_node("sleep", {"seconds": "600"}, workspace=workspace(), task="t"))
    agents.wait_phase("doomed", "Running", timeout=START_TIMEOUT)
    assert host_leftovers(), "a running gVisor pod should show runsc processes and mounts"
    agents.delete("doomed")
    wait_for(lambda: not agents.exists("doomed"), timeout=60, what="Agent deleted")
    wait_for(lambda: not agents.pods("doomed"), timeout=60, what="pod deleted")
    wait_for(lambda: not host_leftovers(), timeout=90, what="nothing of the pod left on the node")


def agents_at_work(agents: Agents) -> list[str]:
    """Pods whose agent container has not finished (a real kubelet reports the container
    terminated a moment before the pod's phase, and the finished pod stays)."""
    return [
        pod.metadata.name
        for pod in live_pods(agents)
        if not any(
            c.name == "agent" and c.state and c.state.terminated
            for c in pod.status.container_statuses or []
        )
    ]


def test_session_budget_admits_agents_in_turn_on_the_real_node(
    agents: Agents, cluster: Cluster
) -> None:
    """Four agents of 100m cpu in a session whose budget is 200m: two run at a time."""
    sessions = Sessions(cluster, agents.namespace)
    sessions.create(
        "team",
        {
            "maxAgents": 8,
            "budget": {"cpu": "200m", "memory": "256Mi"},
            "agentDefaults": {
                "image": AGENT_IMAGE,
                "runtimeClassName": "gvisor",
                "resources": {
                    "requests": {"cpu": "100m", "memory": "64Mi"},
                    "limits": {"cpu": "500m", "memory": "64Mi"},
                },
            },
        },
    )
    names = [f"member-{i}" for i in range(4)]
    placement = {k: v for k, v in real_node_placement().items() if k != "runtimeClassName"}
    for name in names:
        agents.create(
            name,
            {
                "sessionRef": {"name": "team"},
                **placement,
                "config": {"mode": "sleep", "seconds": "6"},
            },
        )
    start = time.monotonic()
    with Sampler(lambda: len(agents_at_work(agents))) as sampler:
        # The later members wait for the budget, not for room in the session.
        wait_for(
            lambda: agents.condition("member-3", "Admitted").get("reason") == "BudgetExceeded",
            timeout=30,
            what="member-3 Admitted=False/BudgetExceeded",
        )
        admitted = sessions.status("team")
        requests = admitted["usage"]["requests"]
        assert (requests["cpu"], requests["memory"]) == ("200m", "128Mi"), admitted
        status = sessions.wait_phase("team", "Succeeded", timeout=START_TIMEOUT * 3)
    TIMINGS["session of 4 agents, 2 at a time -> Succeeded"] = time.monotonic() - start
    assert sampler.samples > 10 and sampler.maximum == 2, (sampler.samples, sampler.maximum)
    for name in names:
        member = agents.status(name)
        assert member["phase"] == "Succeeded", (name, member)
        assert member["usage"] == USAGE
        assert (member["nodeName"], member["runtimeClassName"]) == (NODE_NAME, "gvisor")
        # The finished pod stays with its logs (the operator deleted it when the kubelet
        # reported the container terminated a moment before the pod's phase).
        (pod,) = agents.pods(name)
        assert pod.metadata.deletion_timestamp is None, pod.metadata
        assert (pod.spec.node_name, pod.spec.runtime_class_name) == (NODE_NAME, "gvisor")
    assert status["agents"]["succeeded"] == 4 and status["agents"]["total"] == 4, status
    assert status["agentUsage"] == {
        "inputTokens": 4 * USAGE["inputTokens"],
        "outputTokens": 4 * USAGE["outputTokens"],
        "costUSD": 4 * USAGE["costUSD"],
    }, status
    assert not status.get("admitted"), status  # finished members release the budget
