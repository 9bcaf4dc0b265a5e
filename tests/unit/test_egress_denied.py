"""Custom egress may not reach denied ranges (issue 20, class 8): the overlap rule.

The CRD and the model refuse the link-local and cloud metadata addresses; the operator
refuses those, the API server's addresses and the administrator's ranges
(``STOCKADE_EGRESS_DENIED_CIDRS``) with ``EgressDenied``.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from stockade.api.agent import AgentSpec
from stockade.api.network import ALWAYS_DENIED_CIDRS, Network, overlaps
from stockade.config import ConfigError, OperatorConfig, load_config
from stockade.core.lifecycle import Reason
from stockade.core.policy import egress_problems
from stockade.core.reasons import STALLING_REASONS, WARNING_REASONS
from stockade.reconcile import prepare

CLUSTER = OperatorConfig(egress_denied_cidrs=("10.96.0.0/12", "10.244.0.0/16", "fd00:10::/64"))


def custom(*cidrs: str) -> dict[str, Any]:
    return {"egress": "Custom", "cidrs": list(cidrs)}


def agent(network: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "a", "namespace": "team-a"},
        "spec": {"image": "registry.example/agent:1", "network": network},
        "status": status,
    }


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("169.254.169.254/32", "169.254.0.0/16", True),  # inside
        ("169.0.0.0/8", "169.254.0.0/16", True),  # contains it
        ("0.0.0.0/0", "169.254.0.0/16", True),
        ("169.255.0.0/16", "169.254.0.0/16", False),  # adjacent
        ("10.96.0.1/32", "10.96.0.0/12", True),
        ("10.112.0.0/12", "10.96.0.0/12", False),
        ("fe80::1/128", "fe80::/10", True),
        ("::/0", "fe80::/10", True),
        ("2001:db8::/32", "fe80::/10", False),
        ("0.0.0.0/0", "fe80::/10", False),  # families never overlap
        ("::ffff:169.254.169.254/128", "169.254.0.0/16", True),  # IPv4-mapped
        ("::ffff:0:0/96", "10.0.0.0/8", True),
        ("::ffff:8.8.8.8/128", "169.254.0.0/16", False),
    ],
)
def test_overlap_rule(a: str, b: str, expected: bool) -> None:
    assert overlaps(a, b) is expected
    assert overlaps(b, a) is expected


@pytest.mark.parametrize(
    "cidr",
    ["169.254.169.254/32", "169.0.0.0/8", "0.0.0.0/0", "::/0", "fe80::/64", "fd00:ec2::254/128"],
)
def test_the_model_refuses_always_denied_ranges(cidr: str) -> None:
    with pytest.raises(ValidationError, match="must not overlap the link-local and cloud"):
        Network.model_validate(custom("203.0.113.0/24", cidr))


def test_the_always_denied_ranges_include_link_local_and_metadata() -> None:
    assert {"169.254.0.0/16", "fe80::/10"} <= set(ALWAYS_DENIED_CIDRS)
    assert any(overlaps("169.254.169.254/32", c) for c in ALWAYS_DENIED_CIDRS)


def test_config_reads_denied_cidrs_and_refuses_malformed_ones() -> None:
    config = load_config({"STOCKADE_EGRESS_DENIED_CIDRS": "10.96.0.0/12, fd00:10::/64"})
    assert config.egress_denied_cidrs == ("10.96.0.0/12", "fd00:10::/64")
    assert load_config({}).egress_denied_cidrs == ()
    with pytest.raises(ConfigError, match="STOCKADE_EGRESS_DENIED_CIDRS"):
        load_config({"STOCKADE_EGRESS_DENIED_CIDRS": "10.96.0.1/12"})
    with pytest.raises(ConfigError, match="STOCKADE_EGRESS_DENIED_CIDRS"):
        load_config({"STOCKADE_EGRESS_DENIED_CIDRS": "cluster"})


def spec(network: dict[str, Any]) -> AgentSpec:
    return AgentSpec.model_validate({"image": "i", "network": network})


def test_a_cidr_overlapping_a_configured_range_is_refused() -> None:
    problems = egress_problems(spec(custom("203.0.113.0/24", "10.0.0.0/8")), CLUSTER, ())
    assert problems is not None
    (problem,) = problems
    assert problem.field == "spec.network.cidrs[1]"
    assert problem.reason == Reason.EGRESS_DENIED
    assert "10.0.0.0/8 overlaps 10.96.0.0/12" in problem.message
    assert "STOCKADE_EGRESS_DENIED_CIDRS" in problem.message


def test_a_cidr_overlapping_the_api_server_is_refused() -> None:
    problems = egress_problems(spec(custom("192.0.2.0/24")), OperatorConfig(), ("192.0.2.2/32",))
    assert problems is not None
    assert problems[0].field == "spec.network.cidrs[0]"
    assert "the API server" in problems[0].message


def test_every_overlapping_entry_is_named_once() -> None:
    problems = egress_problems(
        spec(custom("10.244.1.0/24", "198.51.100.0/24", "10.96.0.10/32")), CLUSTER, ()
    )
    assert problems is not None
    assert [p.field for p in problems] == ["spec.network.cidrs[0]", "spec.network.cidrs[2]"]


def test_disjoint_cidrs_and_other_modes_pass() -> None:
    assert egress_problems(spec(custom("203.0.113.0/24")), CLUSTER, ("192.0.2.2/32",)) is None
    assert egress_problems(spec({"egress": "Internet"}), CLUSTER, None) is None
    assert egress_problems(spec({"egress": "None"}), CLUSTER, None) is None


def test_unknown_api_server_addresses_refuse_custom_egress_before_it_starts() -> None:
    problems = egress_problems(spec(custom("203.0.113.0/24")), OperatorConfig(), None)
    assert problems is not None
    assert problems[0].reason == Reason.EGRESS_DENIED
    assert "API server's addresses are not known" in problems[0].message
    # One that already runs keeps running: only known overlaps stop it.
    started = egress_problems(spec(custom("203.0.113.0/24")), OperatorConfig(), None, started=True)
    assert started is None


def test_prepare_refuses_with_egress_denied() -> None:
    prepared = prepare(agent(custom("10.96.0.0/16")), CLUSTER, api_server_cidrs=())
    assert prepared.reason == Reason.EGRESS_DENIED
    assert prepared.error is not None and "spec.network.cidrs[0]" in prepared.error
    ok = prepare(agent(custom("203.0.113.0/24")), CLUSTER, api_server_cidrs=("192.0.2.2/32",))
    assert ok.error is None
    assert prepare(agent(custom("203.0.113.0/24")), CLUSTER, api_server_cidrs=None).error


def test_prepare_refuses_a_session_default_that_overlaps() -> None:
    member = agent({})
    member["spec"].pop("network")
    member["spec"]["sessionRef"] = {"name": "s"}
    session = {"spec": {"agentDefaults": {"network": custom("10.244.0.0/24")}}}
    prepared = prepare(member, CLUSTER, session, api_server_cidrs=())
    assert prepared.reason == Reason.EGRESS_DENIED


def test_egress_denied_stalls_and_warns() -> None:
    assert Reason.EGRESS_DENIED in STALLING_REASONS
    assert Reason.EGRESS_DENIED in WARNING_REASONS


def test_the_reconciler_learns_the_api_server_and_keeps_it_through_a_failed_read() -> None:
    """The addresses become CIDRs; a refused read keeps the last known ones, and with
    none known Custom egress stays refused (None)."""
    import asyncio

    from stockade.reconcile import Reconciler
    from tests.unit.conftest import FakeKube

    kube = FakeKube(api_server=PermissionError("403 endpointslices"))
    reconciler = Reconciler(kube, OperatorConfig())
    check = reconciler.check_api_server
    assert asyncio.run(check()) is None
    kube.api_server = ["10.96.0.1", "fd00::1", "not-an-ip"]
    assert asyncio.run(check()) == ("10.96.0.1/32", "fd00::1/128")
    kube.api_server = PermissionError("403 endpointslices")
    assert asyncio.run(check()) == ("10.96.0.1/32", "fd00::1/128")
    assert reconciler.api_server_cidrs == ("10.96.0.1/32", "fd00::1/128")
