"""The reconciler builds an Agent's children with the operator's configuration.

The builders are tested on their own (test_build_pod.py, test_build_network.py); this
checks the seam: what the Reconciler hands the API server carries the settings it was
started with (DNS preset, emptyDir sizes), not the builders' defaults.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stockade.config import load_config
from stockade.reconcile import Reconciler, prepare
from tests.unit.conftest import FakeKube


def test_children_carry_the_operators_settings() -> None:
    config = load_config(
        {
            "STOCKADE_EGRESS_DNS_PRESET": "nodelocal",
            "STOCKADE_TMP_SIZE_LIMIT": "256Mi",
            "STOCKADE_HOME_SIZE_LIMIT": "3Gi",
        }
    )
    agent: dict[str, Any] = {
        "apiVersion": "stockade.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "demo", "namespace": "team-a", "uid": "uid-1"},
        "spec": {"image": "ghcr.io/x/agent:1", "network": {"egress": "DNS"}},
    }
    prepared = prepare(agent, config)
    assert prepared.error is None
    kube = FakeKube()
    reconciler = Reconciler(kube, config)

    async def scenario() -> None:
        assert await reconciler.agents.children.ensure(agent, prepared) is None
        assert await reconciler.agents.children.create_pod(agent, prepared, 1) is None

    asyncio.run(scenario())
    by_kind = {m["kind"]: m for m in kube.created()}
    (dns,) = by_kind["NetworkPolicy"]["spec"]["egress"]
    assert {"ipBlock": {"cidr": "169.254.20.10/32"}} in dns["to"]
    volumes = {v["name"]: v for v in by_kind["Pod"]["spec"]["volumes"]}
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "256Mi"}
    assert volumes["home"]["emptyDir"] == {"sizeLimit": "3Gi"}
