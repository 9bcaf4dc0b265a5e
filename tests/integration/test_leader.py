"""Two operators, one Lease (issue 8): only the leader writes; a standby takes over.

Both replicas are real operator processes watching one fresh namespace, with leader
election on a Lease in that namespace and the chart's (controller-runtime's) durations:
lease 15 s, renew deadline 10 s, retry period 2 s. Who leads is read from each
process's ``stockade_leader`` gauge; who wrote, from ``stockade_api_writes_total``.
The session's shared operator is paused meanwhile: it would write to this namespace too.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.integration.cluster import Cluster, wait_for
from tests.integration.operator import Agents, OperatorProcess

pytestmark = pytest.mark.integration

IMAGE = "registry.example/agent:1.0"
LEASE = "stockade-operator"  # the operator's default Lease name


@pytest.fixture
def shared_operator_paused(stockade_operator: OperatorProcess) -> Iterator[None]:
    """Stop the session's operator (it watches every namespace) for one test."""
    stockade_operator.stop()
    try:
        yield
    finally:
        stockade_operator.start()


@pytest.fixture
def replicas(
    cluster: Cluster, crds: None, namespace: str, shared_operator_paused: None
) -> Iterator[list[OperatorProcess]]:
    """Operators started by the test (``start_replica``), stopped afterwards."""
    started: list[OperatorProcess] = []
    yield started
    for process in started:
        process.stop(signal.SIGKILL)


def start_replica(
    cluster: Cluster, namespace: str, pod: str, started: list[OperatorProcess]
) -> OperatorProcess:
    env = {
        "STOCKADE_NAMESPACES": namespace,
        "STOCKADE_LEADER_ELECTION": "true",
        "STOCKADE_LEADER_ELECTION_NAMESPACE": namespace,
        "STOCKADE_POD_NAME": pod,
    }
    process = OperatorProcess(cluster, env=env)
    started.append(process)
    process.start()
    return process


def sample(process: OperatorProcess, name: str) -> float:
    """The sum of metric `name`'s samples (0 when it has none or the process is down)."""
    try:
        text = process.metrics()
    except OSError:
        return 0.0
    pattern = rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$"
    return sum(float(v) for v in re.findall(pattern, text, re.M))


def leading(process: OperatorProcess) -> bool:
    return sample(process, "stockade_leader") == 1.0


def writes(process: OperatorProcess) -> float:
    return sample(process, "stockade_api_writes_total")


def lease(cluster: Cluster, namespace: str) -> client.V1Lease:
    return client.CoordinationV1Api(cluster.api).read_namespaced_lease(LEASE, namespace)


def leader_and_standby(
    cluster: Cluster, namespace: str, started: list[OperatorProcess]
) -> tuple[OperatorProcess, OperatorProcess]:
    """Start op-a, wait until it leads, then start op-b and see it stay a standby."""
    a = start_replica(cluster, namespace, "op-a", started)
    wait_for(lambda: leading(a), timeout=30, what="op-a leads")
    b = start_replica(cluster, namespace, "op-b", started)
    time.sleep(3)  # more than a retry period: b has seen the Lease and keeps waiting
    assert not leading(b)
    assert lease(cluster, namespace).spec.holder_identity.startswith("op-a_")
    return a, b


class PodSampler(threading.Thread):
    """Lists the namespace's agent pods every 0.3 s; records any Agent with two live pods."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.namespace = cluster, namespace
        self.done = threading.Event()
        self.doubles: list[tuple[float, str, list[str]]] = []
        self.samples = 0

    def run(self) -> None:
        while not self.done.is_set():
            pods = self.cluster.core.list_namespaced_pod(
                self.namespace, label_selector="stockade.dev/agent"
            ).items
            live: dict[str, list[str]] = {}
            for pod in pods:
                if pod.metadata.deletion_timestamp or pod.status.phase in ("Succeeded", "Failed"):
                    continue
                live.setdefault(pod.metadata.labels["stockade.dev/agent"], []).append(
                    pod.metadata.name
                )
            self.doubles += [(time.time(), a, names) for a, names in live.items() if len(names) > 1]
            self.samples += 1
            self.done.wait(0.3)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=10)


def running_agent(agents: Agents, name: str) -> dict[str, Any]:
    return agents.create(name, {"image": IMAGE})


def test_only_the_leader_writes_and_a_standby_takes_over_after_sigkill(
    cluster: Cluster, namespace: str, replicas: list[OperatorProcess]
) -> None:
    agents = Agents(cluster, namespace)
    a, b = leader_and_standby(cluster, namespace, replicas)
    running_agent(agents, "first")
    agents.wait_phase("first", "Running")
    assert writes(a) > 0
    assert writes(b) == 0, "the standby wrote"
    assert lease(cluster, namespace).spec.lease_transitions == 0

    sampler = PodSampler(cluster, namespace)
    sampler.start()
    names = [f"burst-{i:02d}" for i in range(20)]
    killed = 0.0
    for i, name in enumerate(names):
        running_agent(agents, name)
        if i == 9:  # mid-burst: half the Agents are being reconciled by the leader
            a.stop(signal.SIGKILL)
            killed = time.monotonic()
    took = wait_for(
        lambda: leading(b) and time.monotonic(), timeout=30, interval=0.1, what="op-b leads"
    )
    takeover = took - killed
    print(f"\nSIGKILL takeover: {takeover:.1f}s")
    assert takeover < 20
    for name in ["first", *names]:
        agents.wait_phase(name, "Running", timeout=60)
    sampler.stop()
    assert sampler.samples > 10
    assert not sampler.doubles, f"Agents with two live pods: {sampler.doubles[:5]}"
    record = lease(cluster, namespace).spec
    assert record.holder_identity.startswith("op-b_")
    assert record.lease_transitions == 1
    assert all(len(agents.pods(name)) == 1 for name in ["first", *names])


def test_a_graceful_stop_releases_the_lease(
    cluster: Cluster, namespace: str, replicas: list[OperatorProcess]
) -> None:
    agents = Agents(cluster, namespace)
    a, b = leader_and_standby(cluster, namespace, replicas)
    running_agent(agents, "steady")
    agents.wait_phase("steady", "Running")
    signalled = time.monotonic()
    a.stop(signal.SIGTERM)
    shutdown = time.monotonic() - signalled
    took = wait_for(
        lambda: leading(b) and time.monotonic(), timeout=30, interval=0.1, what="op-b leads"
    )
    takeover = took - signalled
    print(f"\nSIGTERM takeover: {takeover:.1f}s (the old leader's shutdown: {shutdown:.1f}s)")
    assert "released lease" in a.log()
    assert takeover < 2 + shutdown + 1  # one retry period, not a lease duration
    record = lease(cluster, namespace).spec
    assert record.holder_identity.startswith("op-b_")
    assert record.lease_transitions == 1
    running_agent(agents, "after")
    agents.wait_phase("after", "Running")
    assert [p.metadata.name for p in agents.pods("steady")] == ["steady-1"]


def test_a_leader_that_loses_the_lease_exits(
    cluster: Cluster, namespace: str, replicas: list[OperatorProcess]
) -> None:
    a = start_replica(cluster, namespace, "op-a", replicas)
    wait_for(lambda: leading(a), timeout=30, what="op-a leads")
    # Someone else takes the Lease (as another leader would after a partition).
    leases = client.CoordinationV1Api(cluster.api)
    leases.patch_namespaced_lease(LEASE, namespace, {"spec": {"holderIdentity": "intruder"}})
    assert a.process is not None
    code = a.process.wait(timeout=15)
    assert code == 1
    assert "leader election lost" in a.log()
    a.process = None
    assert lease(cluster, namespace).spec.holder_identity == "intruder"  # not released
