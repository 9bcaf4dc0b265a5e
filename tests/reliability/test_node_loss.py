"""A node with running Agents is deleted: its Agents report PodLost and follow their policy.

When a node object is deleted, kube-controller-manager's pod garbage collector removes
the pods bound to it (after its quarantine of about 40 s). The contract: each Agent
that lost its pod records ``PodLost``; under ``restartPolicy: OnFailure`` it gets a new
pod (attempt 2) on another node and reaches Running; under ``Never`` it ends
Failed/PodLost. Agents on the other nodes are untouched (attempt 1, same pod).

The victim node is filled deterministically: the other nodes are cordoned while the
victim's Agents are scheduled. The node list is re-applied at the end
(hack/cluster/nodes.yaml), whatever happens.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import NamespaceFactory
from tests.integration.cluster import HACK, Cluster
from tests.integration.operator import GROUP, VERSION
from tests.reliability.conftest import OperatorFactory
from tests.reliability.harness import (
    Expect,
    Invariants,
    Plan,
    Reader,
    agent_spec,
    kopf_retries,
    live_by_agent,
    log_problems,
    report,
    wait_converged,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

NODES = ["kwok-node-0", "kwok-node-1", "kwok-node-2"]
VICTIM = NODES[0]


def cordon(core: client.CoreV1Api, nodes: list[str], unschedulable: bool) -> None:
    for node in nodes:
        core.patch_node(node, {"spec": {"unschedulable": unschedulable or None}})


def restore_nodes(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(HACK / "cluster" / "nodes.yaml"))
    cordon(cluster.core, NODES, False)
    cluster.kubectl("wait", "--for=condition=Ready", "node", "-l", "type=kwok", "--timeout=60s")


def history_reasons(status: dict[str, Any]) -> list[str]:
    return [str(h.get("reason")) for h in status.get("history") or []]


def test_node_loss(
    cluster: Cluster, make_namespace: NamespaceFactory, make_operator: OperatorFactory
) -> None:
    core = cluster.core
    present = {n.metadata.name for n in core.list_node(label_selector="type=kwok").items}
    if not set(NODES) <= present:
        pytest.skip(f"the local cluster's nodes {NODES} are not all there: {sorted(present)}")
    namespace = make_namespace()
    custom = client.CustomObjectsApi(cluster.api)
    reader = Reader(cluster)
    operator = make_operator()
    retried = [Plan(f"retry{i}", "retry", agent_spec(restartPolicy="OnFailure")) for i in range(4)]
    never = [Plan(f"never{i}", "never", agent_spec()) for i in range(4)]
    bystanders = [
        Plan(f"other{i}", "other", agent_spec(restartPolicy="OnFailure")) for i in range(4)
    ]
    failures: list[str] = []
    figures: dict[str, Any] = {"node": VICTIM}
    try:
        # The victim's Agents land on VICTIM, the bystanders elsewhere.
        for group, closed in ((retried + never, NODES[1:]), (bystanders, [VICTIM])):
            cordon(core, closed, True)
            try:
                for plan in group:
                    custom.create_namespaced_custom_object(
                        GROUP, VERSION, namespace, "agents", plan.body()
                    )
                running = {p.name: Expect("Running", attempts=1) for p in group}
                wait_converged(reader, namespace, running, timeout=60, what="placed")
            finally:
                cordon(core, closed, False)
        statuses = {a["metadata"]["name"]: a.get("status") or {} for a in reader.agents(namespace)}
        on_victim = sorted(n for n, s in statuses.items() if s.get("nodeName") == VICTIM)
        assert on_victim == sorted(p.name for p in retried + never), statuses

        with Invariants(cluster, [namespace]) as invariants:
            lost = time.monotonic()
            core.delete_node(VICTIM)

            def first_pod_lost() -> bool:
                return any(
                    "PodLost" in history_reasons(a.get("status") or {})
                    for a in reader.agents(namespace)
                )

            try:
                figures["pod_lost_in"] = round(
                    wait_until(first_pod_lost, timeout=150, what="a PodLost"), 1
                )
            except AssertionError as exc:
                failures.append(str(exc))
            expect = {p.name: Expect("Running", attempts=2) for p in retried}
            expect.update({p.name: Expect("Failed", "PodLost", attempts=1) for p in never})
            expect.update({p.name: Expect("Running", attempts=1) for p in bystanders})
            try:
                wait_converged(reader, namespace, expect, timeout=150, what="after the node loss")
            except AssertionError as exc:
                failures.append(str(exc))
            figures["recovered_in"] = round(time.monotonic() - lost, 1)
        if invariants.violations:
            failures.append("invariants broken:\n  " + "\n  ".join(invariants.violations[:20]))
        statuses = {a["metadata"]["name"]: a.get("status") or {} for a in reader.agents(namespace)}
        live = live_by_agent(reader.pods(namespace))
        for plan in retried:
            status = statuses[plan.name]
            if status.get("nodeName") == VICTIM or live.get(plan.name) != [f"{plan.name}-2"]:
                failures.append(
                    f"{plan.name}: node {status.get('nodeName')}, live pods {live.get(plan.name)}"
                )
            if "PodLost" not in history_reasons(status):
                failures.append(f"{plan.name}: no PodLost in its history")
        for plan in bystanders:
            if live.get(plan.name) != [f"{plan.name}-1"]:
                failures.append(f"{plan.name} (bystander): live pods {live.get(plan.name)}")
    finally:
        restore_nodes(cluster)
    text = operator.log()
    figures["kopf_retries"] = kopf_retries(text)
    problems = log_problems(text)
    figures["log_problems"] = len(problems)
    report("node-loss", **figures)
    if problems:
        failures.append("operator log:\n  " + "\n  ".join(problems[:15]))
    assert not failures, "\n\n".join(failures)
