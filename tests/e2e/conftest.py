"""Fixtures of the end-to-end tests: Agents that really run under gVisor on a real node.

- `real_node` (session): runs ``hack/node-up.sh`` (the local control plane, then
  containerd + runsc + a kubelet registering ``stockade-node-0``; idempotent; it only
  starts what ``make e2e`` built before pytest, and fails naming anything missing) and, when
  this session brought the node up, ``hack/node-down.sh`` at the end (unless
  STOCKADE_KEEP_NODE=1). If the node cannot come up the session FAILS; it is skipped,
  with the reason, only when STOCKADE_E2E_SKIP_WITHOUT_NODE=1 asks for that.
- `e2e_operator` (session): the real operator, allowed to tolerate the node's taint
  (STOCKADE_ALLOWED_TOLERATION_KEYS), which it refuses by default, with the chart's
  ValidatingAdmissionPolicy installed (without it the operator refuses Agents that
  reference Secrets, as the example agent's API key is).
- `agents` (per test): Agent helpers in a fresh namespace.

The cluster, namespace and CRD fixtures are tests/conftest.py's (every suite shares
them). Timings (node-up, first gVisor pod) are printed at the end of the session;
``--durations`` gives each test's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.admission import install_admission_policy
from tests.integration.auth import OperatorAuth
from tests.integration.cluster import HACK, Cluster
from tests.integration.operator import Agents, OperatorProcess, running_operator

NODE_NAME = "stockade-node-0"
TAINT_KEY = "stockade.dev/real-node"
AGENT_IMAGE = "localhost/stockade/e2e-agent:1"
EXAMPLE_AGENT_IMAGE = "localhost/stockade/example-agent:1"
NODE_IP = "10.88.77.1"
"""The node's address on its pod bridge (hack/lib.sh NODE_IP): pods reach the host here."""
NODE_RUN = "/run/stockade-node"
NODE_ROOT = "/var/lib/stockade-node"
STORAGE_CLASS = "stockade-node"
SKIP_ENV = "STOCKADE_E2E_SKIP_WITHOUT_NODE"

TIMINGS: dict[str, float] = {}


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM ends the session as Ctrl-C does, so that fixtures still tear down.

    Without it a terminated pytest (CI's timeout, ``hack/e2e.sh`` stopped) leaves the
    operator subprocess running: it keeps the leader Lease, and the next session's
    operator only stands by while the stale one reconciles with old code.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("stockade e2e timings")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{what:<48} {seconds:7.1f}s")


def _node_ready(cluster: Cluster) -> bool:
    try:
        node = cluster.core.read_node(NODE_NAME)
    except Exception:  # absent or unreachable: not ready
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


@pytest.fixture(scope="session")
def real_node(cluster: Cluster) -> Iterator[str]:
    was_up = _node_ready(cluster)
    start = time.monotonic()
    up = subprocess.run(
        ["bash", str(HACK / "node-up.sh")], capture_output=True, text=True, check=False
    )
    if up.returncode != 0:
        message = f"hack/node-up.sh failed (exit {up.returncode}):\n{up.stderr[-4000:]}"
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(f"no real node ({SKIP_ENV}=1): {message}")
        pytest.fail(message)
    TIMINGS["node-up" + (" (node already up)" if was_up else "")] = time.monotonic() - start
    try:
        yield NODE_NAME
    finally:
        if not was_up and os.environ.get("STOCKADE_KEEP_NODE") != "1":
            subprocess.run(["bash", str(HACK / "node-down.sh")], check=False)


@pytest.fixture(scope="session")
def e2e_operator(
    cluster: Cluster, crds: None, operator_auth: OperatorAuth, real_node: str
) -> Iterator[OperatorProcess]:
    binding = install_admission_policy(cluster)
    env = {
        "STOCKADE_ADMISSION_POLICY_BINDING": binding,
        **operator_auth.operator_env,
        "STOCKADE_ALLOWED_TOLERATION_KEYS": TAINT_KEY,
        # The node's address stands for its resolver (as NodeLocal DNSCache's would):
        # DNS egress allows port 53 there (tests/e2e/test_egress_enforced.py).
        "STOCKADE_EGRESS_DNS_CIDRS": f"{NODE_IP}/32",
    }
    with running_operator(cluster, env, operator_auth.kubeconfig) as process:
        yield process


@pytest.fixture
def agents(cluster: Cluster, namespace: str, e2e_operator: OperatorProcess) -> Agents:
    return Agents(cluster, namespace)


def real_node_placement() -> dict[str, Any]:
    """The Agent spec fields that put its pod on the real node under gVisor."""
    return {
        "runtimeClassName": "gvisor",
        "nodeSelector": {TAINT_KEY: "true"},
        "tolerations": [
            {"key": TAINT_KEY, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
        ],
    }


def workspace(size: str = "64Mi") -> dict[str, Any]:
    """A workspace on the real node: a local PV of hack/node-up.sh's StorageClass."""
    return {"size": size, "storageClassName": STORAGE_CLASS}


def workspace_dir(cluster: Cluster, namespace: str, claim: str) -> str:
    """The host directory of the local PV bound to the PVC `claim` (the pod's /workspace)."""
    pvc = cluster.core.read_namespaced_persistent_volume_claim(claim, namespace)
    assert pvc.spec.volume_name, f"PVC {claim} is not bound"
    pv = cluster.core.read_persistent_volume(pvc.spec.volume_name)
    path: str = pv.spec.local.path
    return path


def host_leftovers() -> list[str]:
    """runsc sandboxes, shims and mounts of the node's pods still on this machine."""
    found: list[str] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "runsc" in cmdline and NODE_RUN in cmdline:
            found.append(f"process {entry}: {cmdline[:160]}")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4]
            if target.startswith(
                (f"{NODE_RUN}/containerd/io.containerd", f"{NODE_ROOT}/kubelet/pods/")
            ) or (target.startswith(f"{NODE_RUN}/containerd/") and "/netns" in target):
                found.append(f"mount {target}")
    return found
