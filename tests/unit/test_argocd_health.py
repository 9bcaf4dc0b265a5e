"""The Argo CD health checks (manifests/gitops/argocd/*/*/health.lua), run by real Lua.

Argo CD runs a health check as a Lua chunk with the live object in the global ``obj``
(a table converted from its JSON) and reads ``status`` and ``message`` from the table
it returns. These tests do the same with lupa's bundled interpreters: Lua 5.1 (Argo CD's
gopher-lua implements 5.1) and Lua 5.4, feeding each sample object as a Lua table
constructor, and check that argocd-cm-patch.yaml carries the same scripts.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ARGOCD = REPO_ROOT / "manifests" / "gitops" / "argocd"
AGENT_LUA = ARGOCD / "stockade.dev" / "Agent" / "health.lua"
SESSION_LUA = ARGOCD / "stockade.dev" / "AgentSession" / "health.lua"
RUNTIMES = ("lupa.lua51", "lupa.lua54")


def lua_literal(value: Any) -> str:
    """`value` (JSON-like) as Lua source: a table constructor for dicts and lists."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        assert math.isfinite(value)
        return repr(value)
    if isinstance(value, str):
        # Decimal byte escapes are valid in every Lua version (no \u in Lua 5.1).
        return (
            '"'
            + "".join(
                chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else f"\\{b}"
                for b in value.encode()
            )
            + '"'
        )
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"[{lua_literal(k)}] = {lua_literal(v)}" for k, v in value.items())
            + "}"
        )
    raise TypeError(f"no Lua literal for {type(value).__name__}")


def run_health(script: Path, obj: dict[str, Any], runtime: str) -> tuple[str, str]:
    """Run a health check on `obj` as Argo CD does; return (status, message)."""
    lupa = pytest.importorskip(runtime)
    lua = lupa.LuaRuntime()
    lua.execute(f"obj = {lua_literal(obj)}")
    result = lua.execute(script.read_text())
    return str(result["status"]), str(result["message"])


def cond(type_: str, status: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 1,
    }


def agent(
    phase: str | None,
    *,
    ready: bool = False,
    stalled: bool = False,
    reason: str = "",
    message: str = "",
    generation: int = 1,
    observed: int = 1,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "stockade.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "a", "namespace": "ns", "generation": generation},
        "spec": {"image": "x"},
    }
    if phase is None:
        return body
    reconciling = not ready and not stalled and phase not in ("Paused", "Succeeded", "Failed")
    status: dict[str, Any] = {
        "phase": phase,
        "observedGeneration": observed,
        "conditions": [
            cond("Ready", ready, reason, "" if ready else message),
            cond("Reconciling", reconciling, reason, message if reconciling else ""),
            cond("Stalled", stalled, reason, message if stalled else ""),
            cond("Suspended", phase == "Paused", "Suspended" if phase == "Paused" else ""),
        ],
        "attempts": 1,
        "history": [{"seq": 1, "to": "Pending", "reason": "Created", "message": "", "time": "t"}],
    }
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    body["status"] = status
    return body


AGENT_CASES = [
    ("no status yet", agent(None), "Progressing", "Waiting for the Stockade operator"),
    (
        "pending for quota",
        agent("Pending", reason="QuotaExceeded", message="exceeded quota: agents"),
        "Progressing",
        "Pending (QuotaExceeded): exceeded quota: agents",
    ),
    (
        "starting",
        agent("Starting", reason="ContainerCreating"),
        "Progressing",
        "Starting (ContainerCreating)",
    ),
    (
        "running and ready",
        agent("Running", ready=True, reason="PodRunning"),
        "Healthy",
        "Running (PodRunning)",
    ),
    (
        "running, not ready",
        agent("Running", reason="NotReady", message="the readiness probe has not passed"),
        "Progressing",
        "Running (NotReady): the readiness probe has not passed",
    ),
    (
        "succeeded",
        agent("Succeeded", ready=True, reason="Completed", message="done"),
        "Healthy",
        "Succeeded (Completed): done",
    ),
    (
        "failed",
        agent("Failed", stalled=True, reason="BackoffLimitExceeded", message="3 attempts failed"),
        "Degraded",
        "Failed (BackoffLimitExceeded): 3 attempts failed",
    ),
    (
        "pending but stalled",
        agent("Pending", stalled=True, reason="RuntimeClassNotFound", message="no gvisor"),
        "Degraded",
        "Pending (RuntimeClassNotFound): no gvisor",
    ),
    ("paused", agent("Paused", reason="Suspended"), "Suspended", "Paused (Suspended)"),
    ("terminating", agent("Terminating", reason="Deleted"), "Progressing", "Terminating (Deleted)"),
    (
        "spec changed, not yet observed",
        agent("Running", ready=True, generation=2, observed=1),
        "Progressing",
        "Waiting for the operator to observe generation 2",
    ),
    ("a phase from the future", agent("Hibernating"), "Unknown", "Unknown phase Hibernating"),
]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize(
    ("obj", "status", "message"), [c[1:] for c in AGENT_CASES], ids=[c[0] for c in AGENT_CASES]
)
def test_agent_health(runtime: str, obj: dict[str, Any], status: str, message: str) -> None:
    assert run_health(AGENT_LUA, obj, runtime) == (status, message)


def session(
    phase: str | None,
    *,
    ready: bool = False,
    stalled: bool = False,
    reason: str = "",
    message: str = "",
    agents: dict[str, int] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "stockade.dev/v1alpha1",
        "kind": "AgentSession",
        "metadata": {"name": "s", "namespace": "ns", "generation": 1},
        "spec": {"maxAgents": 2},
    }
    if phase is None:
        return body
    status: dict[str, Any] = {
        "phase": phase,
        "observedGeneration": 1,
        "conditions": [cond("Ready", ready, reason), cond("Stalled", stalled, reason, message)],
    }
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if agents is not None:
        status["agents"] = agents
    body["status"] = status
    return body


COUNTS = {"pending": 1, "starting": 0, "running": 2, "succeeded": 3, "failed": 0, "total": 6}
SESSION_CASES = [
    ("no status yet", session(None), "Progressing", "Waiting for the Stockade operator"),
    (
        "active and ready",
        session("Active", ready=True, agents=COUNTS),
        "Healthy",
        "Active [6 agents: 2 running, 1 waiting, 3 succeeded, 0 failed]",
    ),
    (
        "active, not ready",
        session("Active", reason="SessionFull"),
        "Progressing",
        "Active (SessionFull)",
    ),
    ("suspended", session("Suspended", reason="Suspended"), "Suspended", "Suspended (Suspended)"),
    (
        "failed",
        session("Failed", stalled=True, reason="DeadlineExceeded", message="1800s elapsed"),
        "Degraded",
        "Failed (DeadlineExceeded): 1800s elapsed",
    ),
    (
        "stalled while active",
        session("Active", stalled=True, reason="Broken"),
        "Degraded",
        "Active (Broken)",
    ),
    (
        "succeeded",
        session("Succeeded", ready=True, reason="Completed"),
        "Healthy",
        "Succeeded (Completed)",
    ),
    ("terminating", session("Terminating"), "Progressing", "Terminating"),
    ("a phase from the future", session("Paused"), "Unknown", "Unknown phase Paused"),
]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize(
    ("obj", "status", "message"), [c[1:] for c in SESSION_CASES], ids=[c[0] for c in SESSION_CASES]
)
def test_session_health(runtime: str, obj: dict[str, Any], status: str, message: str) -> None:
    assert run_health(SESSION_LUA, obj, runtime) == (status, message)


def test_non_ascii_messages_survive() -> None:
    obj = agent("Failed", stalled=True, reason="Error", message='exit 1: "ünïcode" \\ ok')
    assert run_health(AGENT_LUA, obj, RUNTIMES[0])[1] == 'Failed (Error): exit 1: "ünïcode" \\ ok'


def test_argocd_cm_patch_carries_the_lua_files() -> None:
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert (patch["kind"], patch["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    prefix = "resource.customizations.health."
    expected = {
        f"{prefix}{lua.parent.parent.name}_{lua.parent.name}": lua.read_text()
        for lua in sorted(ARGOCD.glob("*/*/health.lua"))
    }
    assert set(expected) == {
        "resource.customizations.health.stockade.dev_Agent",
        "resource.customizations.health.stockade.dev_AgentSession",
    }
    assert patch["data"] == expected, "run `make manifests`"


def test_lua_literal_round_trips_through_lua() -> None:
    lupa = importlib.import_module("lupa.lua51")
    value = {"a": [1, 2.5, {"b": None, "c": True}], "d": "x\ny"}
    lua = lupa.LuaRuntime()
    lua.execute(f"v = {lua_literal(value)}")
    assert lua.eval("v.a[1] + v.a[2]") == 3.5
    assert lua.eval("v.a[3].c") is True
    assert lua.eval("v.d") == "x\ny"
    assert json.loads(json.dumps(value))  # JSON-like input only
