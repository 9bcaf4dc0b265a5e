"""``kubectl stockade``, run as a subprocess against the local control plane.

The operator runs (the `agents` fixture); the plugin is ``python -m stockade.cli`` with the
cluster's kubeconfig in KUBECONFIG, as kubectl passes it to plugins. kwok plays the pods
(hack/kwok/README.md): they have no logs and no exec, so those commands are checked for
their clear errors only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.integration.cluster import (
    SIM_EXIT_AFTER,
    SIM_EXIT_CODE,
    SIM_TERMINATION_MESSAGE,
    Cluster,
    wait_for,
)
from tests.integration.operator import Agents

pytestmark = pytest.mark.integration

IMAGE = "registry.example/agent:1.0"


def plugin(cluster: Cluster, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "stockade.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def sim_flags(*pairs: tuple[str, str]) -> list[str]:
    return [arg for key, value in pairs for arg in ("--pod-annotation", f"{key}={value}")]


def test_run_wait_succeeds_with_result_and_usage(agents: Agents, cluster: Cluster) -> None:
    message = '{"result": "patched 3 files", "usage": {"inputTokens": 1200, "costUSD": 0.02}}'
    started = time.monotonic()
    done = plugin(
        cluster,
        "-n",
        agents.namespace,
        "run",
        "hello",
        "--image",
        IMAGE,
        "--task",
        "Say hello.",
        "--config",
        "model=m1",
        *sim_flags(
            (SIM_EXIT_CODE, "0"), (SIM_EXIT_AFTER, "1s"), (SIM_TERMINATION_MESSAGE, message)
        ),
        "--wait",
        "--timeout",
        "60s",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "agent.stockade.dev/hello created"
    assert any("Pending -> Starting" in line for line in lines)
    assert any("Running -> Succeeded" in line for line in lines)
    assert "Succeeded (Completed, exit code 0, 1 attempt(s))" in lines
    assert "result: patched 3 files" in lines
    assert "usage: inputTokens=1200 costUSD=0.02" in lines
    assert time.monotonic() - started < 60
    spec = agents.get("hello")["spec"]
    assert (spec["task"], spec["config"]) == ("Say hello.", {"model": "m1"})

    # result -o json parses; text prints the result alone.
    shown = plugin(cluster, "result", "hello", "-o", "json", "-n", agents.namespace)
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["phase"] == "Succeeded"
    assert document["result"] == "patched 3 files"
    assert document["usage"] == {"inputTokens": 1200, "costUSD": 0.02}
    text = plugin(cluster, "result", "hello", "-n", agents.namespace)
    assert text.stdout == "patched 3 files\n"

    # describe: phase, conditions, the timeline and the pod of attempt 1.
    described = plugin(cluster, "describe", "hello", "-n", agents.namespace)
    assert described.returncode == 0, described.stderr
    out = described.stdout
    assert "Phase:       Succeeded  (Completed)" in out
    assert "Conditions:" in out and "Ready" in out
    assert "Timeline:" in out and "Running -> Succeeded" in out
    pod_line = out.split("Pods:\n")[1].splitlines()[1].split()
    assert pod_line[:3] == ["1", "hello-1", "Succeeded"]

    # kwok pods have no logs: the API server answers "no logs found"; the plugin says so.
    logs = plugin(cluster, "logs", "hello", "-n", agents.namespace)
    assert logs.returncode == 1
    assert "logs of pod 'hello-1' are not available" in logs.stderr

    # exec needs a Running agent.
    execd = plugin(cluster, "exec", "hello", "-n", agents.namespace, "--", "ls")
    assert execd.returncode == 1
    assert "is Succeeded, not Running" in execd.stderr


def test_run_wait_fails_with_exit_code_1(agents: Agents, cluster: Cluster) -> None:
    done = plugin(
        cluster,
        "run",
        "broken",
        "-n",
        agents.namespace,
        "--image",
        IMAGE,
        *sim_flags((SIM_EXIT_CODE, "3"), (SIM_EXIT_AFTER, "500ms")),
        "--wait",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Failed (Error, exit code 3, 1 attempt(s))" in done.stdout
    assert "Running -> Failed" in done.stdout


def test_run_wait_times_out_with_exit_code_3(agents: Agents, cluster: Cluster) -> None:
    done = plugin(
        cluster,
        "run",
        "long",
        "-n",
        agents.namespace,
        "--image",
        IMAGE,
        "--wait",
        "--timeout",
        "4s",
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "timed out after 4s" in done.stderr


def test_usage_and_lookup_errors(agents: Agents, cluster: Cluster) -> None:
    ns = agents.namespace
    missing = plugin(cluster, "describe", "nobody", "-n", ns)
    assert missing.returncode == 1
    assert f"Agent 'nobody' not found in namespace '{ns}'" in missing.stderr
    assert plugin(cluster, "run", "x", "-n", ns).returncode == 2  # no --image
    plugin(cluster, "run", "twice", "-n", ns, "--image", IMAGE)
    again = plugin(cluster, "run", "twice", "-n", ns, "--image", IMAGE)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_suspend_resume_exec_on_a_running_agent(agents: Agents, cluster: Cluster) -> None:
    ns = agents.namespace
    assert plugin(cluster, "run", "worker", "-n", ns, "--image", IMAGE).returncode == 0
    agents.wait_phase("worker", "Running")
    # kwok plays no containers: exec reaches the API server and fails with its message.
    execd = plugin(cluster, "exec", "worker", "-n", ns, "--timeout", "10s", "--", "true")
    assert execd.returncode == 1
    assert "exec into pod 'worker-1' failed" in execd.stderr

    suspended = plugin(cluster, "suspend", "worker", "-n", ns)
    assert suspended.returncode == 0, suspended.stderr
    assert suspended.stdout == "agent.stockade.dev/worker suspended\n"
    assert agents.get("worker")["spec"]["suspend"] is True
    agents.wait_phase("worker", "Paused")
    execd = plugin(cluster, "exec", "worker", "-n", ns, "--", "true")
    assert execd.returncode == 1 and "is Paused, not Running" in execd.stderr

    resumed = plugin(cluster, "resume", "worker", "-n", ns)
    assert resumed.stdout == "agent.stockade.dev/worker resumed\n"
    agents.wait_phase("worker", "Running")
    described = plugin(cluster, "describe", "worker", "-n", ns).stdout
    assert "Paused -> Pending" in described


def test_sessions_table(agents: Agents, cluster: Cluster) -> None:
    ns = agents.namespace
    session = {
        "apiVersion": "stockade.dev/v1alpha1",
        "kind": "AgentSession",
        "metadata": {"name": "review"},
        "spec": {"maxAgents": 1, "budget": {"cpu": "2"}},
    }
    agents.api.create_namespaced_custom_object(
        "stockade.dev", "v1alpha1", ns, "agentsessions", session
    )
    for name in ("first", "second"):
        done = plugin(cluster, "run", name, "-n", ns, "--image", IMAGE, "--session", "review")
        assert done.returncode == 0, done.stderr
    agents.wait_phase("first", "Running")

    # The second waits for the session: describe says why.
    def waiting() -> str | None:
        out = plugin(cluster, "describe", "second", "-n", ns).stdout
        return out if "Waiting:     SessionFull" in out else None

    wait_for(waiting, timeout=30, what="describe second shows SessionFull")

    def row() -> list[str] | None:
        listed = plugin(cluster, "sessions", "-n", ns)
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        cells = lines[1].split() if len(lines) > 1 else []
        return cells if cells[:4] == ["review", "Active", "1/1", "2"] else None

    cells = wait_for(row, timeout=30, what="sessions row")
    headers = plugin(cluster, "sessions", "-n", ns).stdout.splitlines()[0].split()
    assert headers == ["NAME", "PHASE", "ADMITTED", "AGENTS", "BUDGET", "TOKENS", "COST", "AGE"]
    assert "cpu" in cells[4]
    everywhere = plugin(cluster, "sessions", "-A").stdout
    assert any(line.split()[:2] == [ns, "review"] for line in everywhere.splitlines())
