"""AgentSessions end to end: capacity, budget, defaults, lifetime, and admission races."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.cluster import SIM_EXIT_AFTER, SIM_EXIT_CODE, Cluster, wait_for
from tests.integration.operator import GROUP, VERSION, Agents, OperatorProcess

pytestmark = pytest.mark.integration

IMAGE = "registry.example/agent:1.0"


class Sessions:
    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.api = client.CustomObjectsApi(cluster.api)
        self.namespace = namespace

    def create(self, name: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AgentSession",
            "metadata": {"name": name},
            "spec": spec,
        }
        self.api.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "agentsessions", body
        )

    def get(self, name: str) -> dict[str, Any]:
        result = self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "agentsessions", name
        )
        return cast(dict[str, Any], result)

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def patch(self, name: str, spec: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "agentsessions", name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "agentsessions", name
        )

    def wait_phase(self, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("phase") == phase else None

        return wait_for(reached, timeout=timeout, what=f"session {name} {phase}")


@pytest.fixture
def sessions(agents: Agents, cluster: Cluster) -> Sessions:
    return Sessions(cluster, agents.namespace)


def member(session: str, after: str = "3s", code: int = 0, **fields: Any) -> dict[str, Any]:
    return {
        "sessionRef": {"name": session},
        "podMetadata": {"annotations": {SIM_EXIT_CODE: str(code), SIM_EXIT_AFTER: after}},
        **fields,
    }


def live_pods(agents: Agents) -> list[client.V1Pod]:
    pods = agents.cluster.core.list_namespaced_pod(
        agents.namespace, label_selector="app.kubernetes.io/managed-by=stockade"
    ).items
    return [
        p
        for p in pods
        if p.status.phase in (None, "Pending", "Running") and not p.metadata.deletion_timestamp
    ]


class Sampler:
    """Samples a value in the background; keeps the maximum seen."""

    def __init__(self, probe: Any, interval: float = 0.2) -> None:
        self.probe, self.interval = probe, interval
        self.maximum = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.maximum = max(self.maximum, self.probe())
            self.samples += 1
            time.sleep(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_capacity_twelve_agents_eight_slots(agents: Agents, sessions: Sessions) -> None:
    sessions.create("team", {"maxAgents": 8, "agentDefaults": {"image": IMAGE}})
    for i in range(12):
        agents.create(f"m{i:02d}", member("team", after="4s"))
    wait_for(lambda: len(live_pods(agents)) == 8, timeout=30, what="8 pods")
    time.sleep(1)
    assert len(live_pods(agents)) == 8
    waiting = [
        f"m{i:02d}" for i in range(12) if agents.status(f"m{i:02d}").get("phase") == "Pending"
    ]
    # First come, first served: the 8 oldest run first.
    assert sorted(waiting) == ["m08", "m09", "m10", "m11"]

    def full(name: str) -> bool:
        cond = agents.condition(name, "Admitted")
        return (cond.get("status"), cond.get("reason")) == ("False", "SessionFull")

    wait_for(lambda: all(full(name) for name in waiting), timeout=5, what="SessionFull")
    status = sessions.status("team")
    assert status["admitted"] == 8
    with Sampler(lambda: len(live_pods(agents))) as sampler:
        sessions.wait_phase("team", "Succeeded", timeout=90)
    assert sampler.maximum <= 8
    status = sessions.status("team")
    assert status["agents"]["succeeded"] == 12 and status["agents"]["total"] == 12
    # The session owns its members (set by the operator).
    owners = agents.get("m00")["metadata"]["ownerReferences"]
    assert [o["kind"] for o in owners] == ["AgentSession"]


def test_budget_limits_concurrency(agents: Agents, sessions: Sessions) -> None:
    sessions.create(
        "budgeted",
        {"maxAgents": 8, "budget": {"cpu": "2"}, "agentDefaults": {"image": IMAGE}},
    )
    for i in range(7):
        agents.create(
            f"b{i}", member("budgeted", after="3s", resources={"requests": {"cpu": "500m"}})
        )
    with Sampler(lambda: len(live_pods(agents))) as sampler:
        wait_for(lambda: sessions.status("budgeted").get("admitted") == 4, what="4 admitted")
        status = sessions.status("budgeted")
        assert status["usage"]["requests"]["cpu"] == "2"
        assert "cpu 2/2" in status.get("usageSummary", "")
        # The session's verdict lands first; the waiting member's own status follows it.
        waiting = wait_for(
            lambda: agents.condition("b6", "Admitted").get("reason") == "BudgetExceeded",
            timeout=10,
            what="b6 Admitted/BudgetExceeded",
        )
        assert waiting and agents.condition("b6", "Admitted")["status"] == "False"
        sessions.wait_phase("budgeted", "Succeeded", timeout=90)
    assert 1 <= sampler.maximum <= 4


def test_defaults_reach_the_pod_but_not_the_agent(agents: Agents, sessions: Sessions) -> None:
    sessions.create(
        "defaults",
        {
            "agentDefaults": {
                "image": IMAGE,
                "runtimeClassName": "kata",
                "resources": {"requests": {"cpu": "300m", "memory": "300Mi"}},
                "config": {"model": "m-default", "tools": "read"},
                "env": [{"name": "TEAM", "value": "blue"}],
            }
        },
    )
    agents.create("d1", {"sessionRef": {"name": "defaults"}, "config": {"model": "mine"}})
    agents.wait_phase("d1", "Running")
    (pod,) = agents.pods("d1")
    container = pod.spec.containers[0]
    assert container.image == IMAGE
    assert pod.spec.runtime_class_name == "kata"
    assert container.resources.requests["cpu"] == "300m"
    assert {e.name: e.value for e in container.env}["TEAM"] == "blue"
    config = agents.cluster.core.read_namespaced_config_map("d1-input", agents.namespace).data
    assert config["config.model"] == "mine" and config["config.tools"] == "read"
    spec = agents.get("d1")["spec"]
    assert "image" not in spec and "runtimeClassName" not in spec and "env" not in spec


def test_missing_session_then_created(agents: Agents, sessions: Sessions) -> None:
    agents.create("early", member("later-team", image=IMAGE))

    def not_found() -> bool:
        return agents.condition("early", "Admitted").get("reason") == "SessionNotFound"

    wait_for(not_found, what="SessionNotFound")
    assert agents.status("early")["phase"] == "Pending"
    sessions.create("later-team", {})
    agents.wait_phase("early", "Running", "Succeeded", timeout=30)


def test_session_deletion_removes_agents_and_pods(agents: Agents, sessions: Sessions) -> None:
    sessions.create("doomed", {"agentDefaults": {"image": IMAGE}})
    for i in range(3):
        agents.create(f"x{i}", {"sessionRef": {"name": "doomed"}})
    for i in range(3):
        agents.wait_phase(f"x{i}", "Running")
    wait_for(
        lambda: len(agents.get("x2")["metadata"].get("ownerReferences") or []) == 1, what="owned"
    )
    sessions.delete("doomed")
    wait_for(
        lambda: not any(agents.exists(f"x{i}") for i in range(3)), timeout=60, what="agents gone"
    )
    wait_for(lambda: not live_pods(agents), timeout=60, what="pods gone")


def test_session_suspend_and_resume(agents: Agents, sessions: Sessions) -> None:
    sessions.create("pausing", {"agentDefaults": {"image": IMAGE}})
    for i in range(2):
        agents.create(f"p{i}", {"sessionRef": {"name": "pausing"}})
    for i in range(2):
        agents.wait_phase(f"p{i}", "Running")
    sessions.patch("pausing", {"suspend": True})
    sessions.wait_phase("pausing", "Suspended")
    for i in range(2):
        status = agents.wait_phase(f"p{i}", "Paused")
        assert "session pausing is suspended" in status["message"]
    wait_for(lambda: not live_pods(agents), timeout=30, what="pods deleted")
    sessions.patch("pausing", {"suspend": False})
    for i in range(2):
        agents.wait_phase(f"p{i}", "Running", timeout=30)
    assert sessions.status("pausing")["phase"] == "Active"


def test_session_deadline_fails_remaining_members(agents: Agents, sessions: Sessions) -> None:
    sessions.create("hurry", {"activeDeadlineSeconds": 4, "agentDefaults": {"image": IMAGE}})
    agents.create("quick", member("hurry", after="500ms"))
    agents.create("slowpoke", {"sessionRef": {"name": "hurry"}})
    agents.wait_phase("quick", "Succeeded")
    status = sessions.wait_phase("hurry", "Failed", timeout=30)
    assert status["reason"] == "DeadlineExceeded"
    slow = agents.wait_phase("slowpoke", "Failed", timeout=30)
    assert slow["reason"] == "DeadlineExceeded"
    assert agents.status("quick")["phase"] == "Succeeded"


def test_fifty_agents_race_for_eight_slots_across_a_restart(
    agents: Agents, sessions: Sessions, stockade_operator: OperatorProcess
) -> None:
    sessions.create("race", {"maxAgents": 8, "agentDefaults": {"image": IMAGE}})

    def admitted_now() -> int:
        try:
            return int(sessions.status("race").get("admitted") or 0)
        except ApiException:
            return 0

    def holding() -> int:
        return max(len(live_pods(agents)), admitted_now())

    with Sampler(holding) as sampler:
        threads = [
            threading.Thread(target=agents.create, args=(f"r{i:02d}", member("race", after="2s")))
            for i in range(50)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wait_for(
            lambda: sessions.status("race").get("agents", {}).get("succeeded", 0) >= 16,
            timeout=90,
            what="two waves",
        )
        stockade_operator.restart()
        sessions.wait_phase("race", "Succeeded", timeout=180)
    assert sampler.samples > 20
    assert sampler.maximum == 8  # the limit was reached, and never passed
    succeeded = [a for a in range(50) if agents.status(f"r{a:02d}").get("phase") == "Succeeded"]
    assert len(succeeded) == 50
    # No Agent ever ran twice: one attempt each.
    reruns = {
        f"r{a:02d}": (
            agents.status(f"r{a:02d}").get("attempts"),
            agents.status(f"r{a:02d}").get("podName"),
        )
        for a in range(50)
        if agents.status(f"r{a:02d}").get("attempts") != 1
    }
    assert not reruns
