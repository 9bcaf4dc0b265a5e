"""Conflicting writers: a client edits specs in a tight loop while the operator writes status.

Users (and GitOps tools) own ``spec``; the operator owns ``status``. Writers toggle
``spec.suspend`` and change ``spec.activeDeadlineSeconds`` of running Agents as fast as
the API server answers, half of the edits as merge patches, half as read-modify-write
updates (``resourceVersion`` preconditions, retried on 409 Conflict as kubectl edit
would). The contract: the spec holds the last edit of each Agent (the operator never
overwrites a spec), and each Agent converges to the phase its final spec dictates
(``observedGeneration`` caught up; no wedge), with never two live pods at once.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import NamespaceFactory
from tests.integration.cluster import Cluster
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
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

AGENTS = 12
WRITERS = 3
WRITE_SECONDS = 15.0


class Writer(threading.Thread):
    """Edits its own Agents (one writer per Agent, so "the last edit" is well defined)."""

    def __init__(self, cluster: Cluster, namespace: str, names: list[str], seed: int) -> None:
        super().__init__(name=f"writer-{seed}", daemon=True)
        api = client.ApiClient(cluster.api.configuration)
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.names = names
        self.random = random.Random(seed)
        self.last: dict[str, dict[str, Any]] = {}
        self.edits = 0
        self.conflicts = 0
        self.error: BaseException | None = None
        self.until = 0.0

    def run(self) -> None:
        try:
            while time.monotonic() < self.until:
                for name in self.names:
                    self.edit(name, self.random_edit())
        except BaseException as exc:  # reported by the test
            self.error = exc

    def random_edit(self) -> dict[str, Any]:
        edit: dict[str, Any] = {}
        if self.random.random() < 0.6:
            edit["suspend"] = self.random.random() < 0.5
        if not edit or self.random.random() < 0.5:
            edit["activeDeadlineSeconds"] = self.random.randint(600, 3600)
        return edit

    def edit(self, name: str, edit: dict[str, Any]) -> None:
        """Apply `edit` to the Agent's spec: a merge patch, or a conditional update."""
        if self.random.random() < 0.5:
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "agents", name, {"spec": edit}
            )
        else:
            while True:
                body = cast(
                    dict[str, Any],
                    self.custom.get_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, "agents", name
                    ),
                )
                body["spec"].update(edit)
                try:
                    self.custom.replace_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, "agents", name, body
                    )
                    break
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    self.conflicts += 1
        self.edits += 1
        self.last.setdefault(name, {}).update(edit)


def final_edit(index: int) -> dict[str, Any]:
    """The last edit of Agent `index`: paused, running on, or running out of time."""
    if index % 3 == 0:
        return {"suspend": True, "activeDeadlineSeconds": 3600}
    if index % 3 == 1:
        return {"suspend": False, "activeDeadlineSeconds": 3600}
    return {"suspend": False, "activeDeadlineSeconds": 5}


def test_conflicting_writers(
    cluster: Cluster, make_namespace: NamespaceFactory, make_operator: OperatorFactory
) -> None:
    namespace = make_namespace()
    custom = client.CustomObjectsApi(cluster.api)
    reader = Reader(cluster)
    operator = make_operator()
    plans = [Plan(f"w{i:02d}", "edited", agent_spec()) for i in range(AGENTS)]
    for plan in plans:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "agents", plan.body())
    running = {p.name: Expect("Running", attempts=1) for p in plans}
    wait_converged(reader, namespace, running, timeout=60, what="running before the edits")

    failures: list[str] = []
    figures: dict[str, Any] = {"agents": AGENTS, "writers": WRITERS}
    names = [p.name for p in plans]
    writers = [Writer(cluster, namespace, names[i::WRITERS], seed=i) for i in range(WRITERS)]
    with Invariants(cluster, [namespace]) as invariants:
        started = time.monotonic()
        for writer in writers:
            writer.until = started + WRITE_SECONDS
            writer.start()
        for writer in writers:
            writer.join(timeout=WRITE_SECONDS + 60)
        for writer in writers:  # the last word, right after the storm
            for name in writer.names:
                writer.edit(name, final_edit(names.index(name)))
        figures["edits"] = sum(w.edits for w in writers)
        figures["conflicts"] = sum(w.conflicts for w in writers)
        figures["edits_per_s"] = round(figures["edits"] / (time.monotonic() - started), 1)
        for writer in writers:
            if writer.error is not None:
                failures.append(f"{writer.name} failed: {writer.error!r}")
        last = {name: edit for w in writers for name, edit in w.last.items()}
        expect: dict[str, Expect] = {}
        for plan in plans:
            plan.spec.update(last[plan.name])
            if plan.spec["activeDeadlineSeconds"] == 5:
                expect[plan.name] = Expect("Failed", "DeadlineExceeded")
            elif plan.spec["suspend"]:
                expect[plan.name] = Expect("Paused", "Suspended")
            else:
                expect[plan.name] = Expect("Running")
        settled = time.monotonic()
        try:
            figures["converged_in"] = round(
                wait_converged(reader, namespace, expect, timeout=60, what="after the edits"), 1
            )
        except AssertionError as exc:
            failures.append(str(exc))
    figures.update(samples=invariants.samples, violations=len(invariants.violations))
    if invariants.violations:
        failures.append("invariants broken:\n  " + "\n  ".join(invariants.violations[:20]))
    for body in reader.agents(namespace):
        name = body["metadata"]["name"]
        spec = body["spec"]
        for key, value in last[name].items():
            if spec.get(key) != value:
                failures.append(f"{name}: spec.{key} is {spec.get(key)!r}, last edit {value!r}")
    live = live_by_agent(reader.pods(namespace))
    for name, wanted in expect.items():
        count = len(live.get(name, []))
        if count != (1 if wanted.phase == "Running" else 0):
            failures.append(f"{name} ({wanted.phase}): live pods {live.get(name)}")
    figures["settled_in"] = round(time.monotonic() - settled, 1)
    text = operator.log()
    figures["kopf_retries"] = kopf_retries(text)
    problems = log_problems(text)
    figures["log_problems"] = len(problems)
    report("conflicting-writers", **figures)
    if problems:
        failures.append("operator log:\n  " + "\n  ".join(problems[:15]))
    assert not failures, "\n\n".join(failures)
