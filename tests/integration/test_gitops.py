"""GitOps health of real Agents: the Argo CD Lua check and kstatus, on what the operator wrote.

tests/unit/test_argocd_health.py covers every branch of the Lua scripts on hand-made
objects; this runs the Agent script (Lua 5.1, Argo CD's dialect) on Agents the real
operator drove through their lifecycle, and checks the kstatus reading Flux's
`wait: true` relies on (Reconciling/Stalled conditions, observedGeneration).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.cluster import SIM_EXIT_AFTER, SIM_EXIT_CODE, wait_for
from tests.integration.operator import Agents
from tests.unit.test_argocd_health import AGENT_LUA, run_health

pytestmark = pytest.mark.integration


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus' generic rules for a custom resource (sigs.k8s.io/cli-utils kstatus)."""
    status = obj.get("status") or {}
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return "InProgress"
    for condition in status.get("conditions", []):
        if condition["type"] == "Reconciling" and condition["status"] == "True":
            return "InProgress"
        if condition["type"] == "Stalled" and condition["status"] == "True":
            return "Failed"
    return "Current"


def image(annotations: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": "registry.example/agent:1.0", **fields}
    if annotations:
        spec["podMetadata"] = {"annotations": annotations}
    return spec


def test_lifecycle_health_as_argo_cd_and_flux_see_it(agents: Agents) -> None:
    agents.create("done", image({SIM_EXIT_CODE: "0", SIM_EXIT_AFTER: "500ms"}))
    agents.create("broken", image({SIM_EXIT_CODE: "2", SIM_EXIT_AFTER: "500ms"}))
    agents.create("napping", image(suspend=True))
    agents.create("busy", image())
    agents.create("nosandbox", image(runtimeClassName="no-such-sandbox"))

    agents.wait_phase("done", "Succeeded")
    agents.wait_phase("broken", "Failed")
    agents.wait_phase("napping", "Paused")
    agents.wait_phase("busy", "Running")
    wait_for(
        lambda: agents.condition("nosandbox", "Stalled").get("status") == "True", what="Stalled"
    )

    expected = {
        "done": ("Healthy", "Current"),
        "broken": ("Degraded", "Failed"),
        "napping": ("Suspended", "Current"),
        "busy": ("Healthy", "Current"),
        "nosandbox": ("Degraded", "Failed"),
    }
    seen = {}
    for name in expected:
        obj = agents.get(name)
        argo, message = run_health(AGENT_LUA, obj, "lupa.lua51")
        seen[name] = (argo, kstatus(obj))
        assert message.startswith(obj["status"]["phase"]), message
    assert seen == expected

    # A spec change is Progressing/InProgress until the operator observes it.
    agents.patch("napping", {"suspend": False})
    obj = agents.get("napping")
    if obj["status"].get("observedGeneration") != obj["metadata"]["generation"]:
        assert run_health(AGENT_LUA, obj, "lupa.lua51")[0] == "Progressing"
        assert kstatus(obj) == "InProgress"
    agents.wait_phase("napping", "Running")
    assert kstatus(agents.get("napping")) == "Current"
