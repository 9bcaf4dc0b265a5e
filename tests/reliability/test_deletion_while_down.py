"""Deletions made while the operator is down complete once it is back, and only those.

With the operator stopped, some Agents are deleted (background and foreground
propagation) and a whole namespace full of Agents (and a session) is deleted. Started
again, the operator must not resurrect anything nor block anything: the deleted Agents
and their children are gone, the namespace is gone, within a bound; the Agents that
were not deleted still run on their first pod. Last, the other namespace is deleted
with the operator up: it goes, and the operator logs no failure over it.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import NamespaceFactory
from tests.integration.cluster import Cluster
from tests.integration.operator import GROUP, VERSION
from tests.reliability.conftest import OperatorFactory
from tests.reliability.harness import (
    AGENT_LABEL,
    IMAGE,
    Expect,
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

BOUND_SECONDS = 90.0


def namespace_gone(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def test_deletion_while_operator_down(
    cluster: Cluster, make_namespace: NamespaceFactory, make_operator: OperatorFactory
) -> None:
    kept_ns, doomed_ns = make_namespace(), make_namespace()
    custom = client.CustomObjectsApi(cluster.api)
    reader = Reader(cluster)
    operator = make_operator()
    kept = [
        Plan(f"k{i}", "kept", agent_spec(task=f"task {i}", restartPolicy="OnFailure"))
        for i in range(8)
    ]
    doomed_plans = [
        Plan(f"d{i}", "doomed", agent_spec(task=f"task {i}", restartPolicy="OnFailure"))
        for i in range(8)
    ]
    session = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AgentSession",
        "metadata": {"name": "team"},
        "spec": {"maxAgents": 4, "agentDefaults": {"image": IMAGE}},
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, doomed_ns, "agentsessions", session)
    members = [Plan(f"m{i}", "member", agent_spec(sessionRef={"name": "team"})) for i in range(4)]
    for plan in kept:
        custom.create_namespaced_custom_object(GROUP, VERSION, kept_ns, "agents", plan.body())
    for plan in doomed_plans + members:
        custom.create_namespaced_custom_object(GROUP, VERSION, doomed_ns, "agents", plan.body())
    running = {p.name: Expect("Running", attempts=1) for p in kept}
    wait_converged(reader, kept_ns, running, timeout=60, what="running")
    running = {p.name: Expect("Running", attempts=1) for p in doomed_plans + members}
    wait_converged(reader, doomed_ns, running, timeout=60, what="running")

    failures: list[str] = []
    figures: dict[str, Any] = {"deleted_agents": 4, "namespace_agents": 12}
    operator.stop(signal.SIGKILL)
    deleted, survivors = kept[:4], kept[4:]
    for i, plan in enumerate(deleted):
        policy = "Foreground" if i % 2 else "Background"
        custom.delete_namespaced_custom_object(
            GROUP, VERSION, kept_ns, "agents", plan.name, propagation_policy=policy
        )
    cluster.core.delete_namespace(doomed_ns)
    time.sleep(1)  # the garbage collector and namespace controller work meanwhile
    restarted = time.monotonic()
    operator.start()

    def deletions_done() -> bool:
        names = {a["metadata"]["name"] for a in reader.agents(kept_ns)}
        live = live_by_agent(reader.pods(kept_ns))
        return (
            not names & {p.name for p in deleted}
            and not any(p.name in live for p in deleted)
            and namespace_gone(cluster.core, doomed_ns)
        )

    try:
        figures["deletions_done_in"] = round(
            wait_until(deletions_done, timeout=BOUND_SECONDS, what="the deletions"), 1
        )
    except AssertionError as exc:
        failures.append(str(exc))
        figures["agents_left"] = sorted(a["metadata"]["name"] for a in reader.agents(kept_ns))
    selector = f"{AGENT_LABEL} in ({','.join(p.name for p in deleted)})"
    leftovers = reader.leftovers(kept_ns, selector)
    if leftovers:
        failures.append(f"children of deleted Agents left: {leftovers}")
    try:
        wait_converged(
            reader,
            kept_ns,
            {p.name: Expect("Running", attempts=1) for p in survivors},
            timeout=30,
            what="survivors",
        )
    except AssertionError as exc:
        failures.append(str(exc))
    live = live_by_agent(reader.pods(kept_ns))
    for plan in survivors:
        if live.get(plan.name) != [f"{plan.name}-1"]:
            failures.append(f"{plan.name}: live pods {live.get(plan.name)}, want its first pod")
    figures["total_in"] = round(time.monotonic() - restarted, 1)
    # And a namespace deleted while the operator runs: its running Agents (OnFailure)
    # lose their pods with the namespace; no new pod can be made there, nor may the
    # operator fail over it (the log is checked below).
    cluster.core.delete_namespace(kept_ns)
    try:
        figures["live_namespace_deleted_in"] = round(
            wait_until(
                lambda: namespace_gone(cluster.core, kept_ns), timeout=BOUND_SECONDS, what="gone"
            ),
            1,
        )
    except AssertionError as exc:
        failures.append(f"namespace {kept_ns} deleted with the operator up: {exc}")
    time.sleep(2)  # the operator's last reconciles of the namespace's Agents
    text = operator.log()
    figures["kopf_retries"] = kopf_retries(text)
    problems = log_problems(text)
    figures["log_problems"] = len(problems)
    report("deletion-while-down", **figures)
    if problems:
        failures.append("operator log:\n  " + "\n  ".join(problems[:15]))
    assert not failures, "\n\n".join(failures)
