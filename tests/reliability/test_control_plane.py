"""The API server, then etcd, crash and come back mid-run: the operator rides it out.

The contract (docs/architecture.md): what the operator holds in memory converges to a
fresh LIST after any reconnection. So the operator process survives the outage (same
PID), its watches resume (Agents created after the outage run), Agents that finished
or were edited while it was cut off reach the outcome their spec dictates, running
Agents keep their one pod, and its log shows no failure beyond kopf's own
"will retry" lines for requests made while the API was unreachable.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import NamespaceFactory
from tests.integration.cluster import Cluster
from tests.integration.operator import GROUP, VERSION
from tests.reliability.conftest import OperatorFactory
from tests.reliability.controlplane import Component, all_components, restore, wait_ready
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
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

DOWN_SECONDS = 6.0


def create(custom: client.CustomObjectsApi, namespace: str, plan: Plan) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "agents", plan.body())


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_control_plane_restart(
    component: str,
    cluster: Cluster,
    make_namespace: NamespaceFactory,
    make_operator: OperatorFactory,
) -> None:
    target = Component.find(component)
    everyone = all_components()
    if target is None:
        pytest.skip(f"no {component} process of a kwokctl binary-runtime cluster to restart")
    namespace = make_namespace()
    custom = client.CustomObjectsApi(cluster.api)
    reader = Reader(cluster)
    operator = make_operator()
    assert operator.process is not None
    pid = operator.process.pid
    # Before: Agents that finish during the outage, Agents that run on through it.
    finishing = [
        Plan(f"fin{i}", "finish", agent_spec(exit_code=0, exit_after="10s")) for i in range(8)
    ]
    steady = [Plan(f"run{i}", "run", agent_spec(restartPolicy="OnFailure")) for i in range(6)]
    for plan in finishing + steady:
        create(custom, namespace, plan)
    running = {p.name: Expect("Running", attempts=1) for p in finishing + steady}
    wait_converged(reader, namespace, running, timeout=60, what="running before the outage")

    failures: list[str] = []
    figures: dict[str, Any] = {"component": component}
    with Invariants(cluster, [namespace]) as invariants:
        try:
            killed = time.monotonic()
            target.kill()
            time.sleep(DOWN_SECONDS)
            target.start()
            figures["ready_in"] = round(wait_ready(cluster) + DOWN_SECONDS, 1)
        finally:
            # Whatever happened: every component runs again (a controller-manager or a
            # scheduler may exit when it loses its lease during the outage).
            figures["restored"] = restore(everyone, cluster)
        back = time.monotonic()
        figures["outage_s"] = round(back - killed, 1)
        # After: new Agents (the watches must have resumed) and edits of running ones.
        fresh = [Plan(f"new{i}", "new", agent_spec(exit_code=0, exit_after="1s")) for i in range(8)]
        for plan in fresh:
            create(custom, namespace, plan)
        for plan in steady[:2]:
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, "agents", plan.name, {"spec": {"suspend": True}}
            )
            plan.spec["suspend"] = True
        expect = {p.name: p.expect for p in finishing + fresh}
        expect.update({p.name: Expect("Running", attempts=1) for p in steady[2:]})
        expect.update({p.name: Expect("Paused", "Suspended") for p in steady[:2]})
        try:
            figures["converged_in"] = round(
                wait_converged(reader, namespace, expect, timeout=120, what=f"after {component}"),
                1,
            )
        except AssertionError as exc:
            failures.append(str(exc))
    figures.update(samples=invariants.samples, api_errors=invariants.errors)
    if invariants.violations:
        failures.append("invariants broken:\n  " + "\n  ".join(invariants.violations[:20]))
    live = live_by_agent(reader.pods(namespace))
    for plan in steady[2:]:
        if live.get(plan.name) != [f"{plan.name}-1"]:
            failures.append(f"{plan.name}: live pods {live.get(plan.name)}, want its first pod")
    for plan in steady[:2] + finishing + fresh:
        if live.get(plan.name):
            failures.append(f"{plan.name}: live pods {live.get(plan.name)}, want none")
    figures["restored"] += restore(everyone, cluster)
    alive = operator.process is not None and operator.process.poll() is None
    same = alive and operator.process is not None and operator.process.pid == pid
    figures["operator_pid_unchanged"] = same
    if not same:
        failures.append(f"the operator did not survive the {component} restart (pid {pid})")
    text = operator.log()
    figures["kopf_retries"] = kopf_retries(text)
    problems = log_problems(text)
    figures["log_problems"] = len(problems)
    report(f"restart-{component}", **figures)
    if problems:
        failures.append("operator log:\n  " + "\n  ".join(problems[:15]))
    assert not failures, "\n\n".join(failures)
