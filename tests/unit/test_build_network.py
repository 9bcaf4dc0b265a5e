"""The NetworkPolicies that fence agent pods: ingress denied, egress by mode.

One shared policy per namespace and mode (None, DNS, Internet); a policy of its own
for an Agent with Custom egress.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.api.agent import AgentSpec
from stockade.api.network import ALWAYS_DENIED_CIDRS, EgressMode, Network, NetworkPort, overlaps
from stockade.build.errors import SpecError
from stockade.build.names import AgentRef, labels_for
from stockade.build.network import (
    DNS_PRESETS,
    OWN_POLICY,
    SHARED_MODES,
    DnsPeer,
    build_agent_network_policy,
    build_shared_network_policy,
    dns_peer,
    dns_rule,
    egress_label,
    egress_rules,
)
from stockade.build.pod import GatewayAccess, build_pod
from stockade.config import DNS_PRESETS as CONFIG_DNS_PRESETS
from stockade.config import OperatorConfig, load_config

REF = AgentRef("demo", "team-a", "uid-1")
CONFIG = OperatorConfig(operator_namespace="stockade-system", gateway_address="gw.svc:3128")
"""Where the egress gateway runs (the operator's namespace), for Hosts egress."""
GATEWAY_RULE: dict[str, Any] = {
    "to": [
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": "stockade-system"}
            },
            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}},
        }
    ],
    "ports": [{"protocol": "TCP", "port": 3128}],
}

DNS_RULE: dict[str, Any] = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
INTERNET_PEERS: list[dict[str, Any]] = [
    {
        "ipBlock": {
            "cidr": "0.0.0.0/0",
            "except": [
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "169.254.0.0/16",
                "100.64.0.0/10",
                "127.0.0.0/8",
            ],
        }
    },
    {"ipBlock": {"cidr": "::/0", "except": ["fc00::/7", "fe80::/10", "::1/128"]}},
]


def spec(**fields: Any) -> AgentSpec:
    return AgentSpec.model_validate({"image": "ghcr.io/x/agent:1", **fields})


def fence(ref: AgentRef, agent: AgentSpec, config: OperatorConfig | None = None) -> dict[str, Any]:
    """The policy that fences `agent`'s pods, as the controllers pick it: the Agent's own
    (controllers/children.py) for Custom egress, else its namespace's shared one
    (controllers/egress.py)."""
    label = egress_label(agent.network)
    if label == OWN_POLICY:
        return build_agent_network_policy(ref, agent, config)
    return build_shared_network_policy(ref.namespace, label, config)


def policy(network: dict[str, Any] | None = None) -> dict[str, Any]:
    fields = {} if network is None else {"network": network}
    return fence(REF, spec(**fields), CONFIG)


def test_default_is_the_namespaces_shared_none_policy() -> None:
    shared = {"app.kubernetes.io/managed-by": "stockade", "stockade.dev/egress": "none"}
    assert policy() == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "stockade-egress-none", "namespace": "team-a", "labels": shared},
        "spec": {
            "podSelector": {"matchLabels": shared},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [],
        },
    }


def test_custom_egress_gets_a_policy_of_its_own() -> None:
    np = policy({"egress": "Custom", "cidrs": ["203.0.113.0/24"]})
    assert np["metadata"] == {
        "name": "demo-egress",
        "namespace": "team-a",
        "labels": labels_for("demo"),
        "ownerReferences": [REF.owner_reference()],
    }
    assert np["spec"]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/managed-by": "stockade", "stockade.dev/agent": "demo"}
    }


def network_of(mode: EgressMode) -> dict[str, Any]:
    network: dict[str, Any] = {"egress": mode.value}
    if mode == EgressMode.CUSTOM:
        network["cidrs"] = ["203.0.113.0/24"]
    if mode == EgressMode.HOSTS:
        network["hosts"] = ["api.openai.com"]
    return network


def selects(np: dict[str, Any], pod: dict[str, Any]) -> bool:
    labels = pod["metadata"]["labels"]
    match = np["spec"]["podSelector"]["matchLabels"]
    return np["metadata"]["namespace"] == pod["metadata"]["namespace"] and all(
        labels.get(k) == v for k, v in match.items()
    )


def pod_of(ref: AgentRef, network: dict[str, Any]) -> dict[str, Any]:
    resources = {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}
    return build_pod(
        ref,
        spec(network=network),
        attempt=1,
        runtime_class="gvisor",
        resources=resources,
        gateway=GatewayAccess(address="gw.svc:3128", token="t"),
    )


@pytest.mark.parametrize("mode", list(EgressMode))
def test_every_mode_denies_ingress(mode: EgressMode) -> None:
    np = policy(network_of(mode))
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert np["spec"]["ingress"] == []
    for rule in np["spec"]["egress"]:
        assert rule.get("to"), "a rule without peers would allow every destination"


@pytest.mark.parametrize("mode", list(EgressMode))
def test_an_agents_pod_is_selected_by_its_policy_and_by_no_other(mode: EgressMode) -> None:
    """Policies add up: a pod selected by a wider one would get its egress too."""
    other = AgentRef("other", REF.namespace, "uid-2")
    others = [
        *(build_shared_network_policy(REF.namespace, label, CONFIG) for label in SHARED_MODES),
        fence(other, spec(network=network_of(EgressMode.CUSTOM))),
        build_shared_network_policy("elsewhere", "internet"),
        build_shared_network_policy("elsewhere", "hosts", CONFIG),
    ]
    pod = pod_of(REF, network_of(mode))
    mine = policy(network_of(mode))
    assert selects(mine, pod)
    assert [np["metadata"]["name"] for np in others if selects(np, pod) and np != mine] == []


def test_egress_labels() -> None:
    assert [
        egress_label(Network.model_validate(network_of(m)))
        for m in EgressMode
        if m != EgressMode.CUSTOM
    ] == ["none", "dns", "internet", "hosts"]
    assert egress_label(None) == "none"
    assert egress_label(Network(egress=EgressMode.CUSTOM, cidrs=["10.0.0.0/8"])) == OWN_POLICY
    # Ports (which the API admits only with Custom) need a policy of the Agent's own.
    slipped = Network.model_construct(
        egress=EgressMode.INTERNET, cidrs=None, ports=[NetworkPort(port=443)]
    )
    assert egress_label(slipped) == OWN_POLICY
    np = fence(REF, AgentSpec.model_construct(image="x", network=slipped))
    assert np["metadata"]["name"] == "demo-egress"
    assert np["spec"]["egress"][1]["ports"] == [{"protocol": "TCP", "port": 443}]


def test_shared_policies_of_a_namespace_are_the_same_for_every_agent() -> None:
    a = fence(REF, spec(network={"egress": "DNS"}))
    b = fence(AgentRef("b", REF.namespace, "uid-2"), spec(network={"egress": "DNS"}))
    assert a == b == build_shared_network_policy(REF.namespace, "dns")
    assert "ownerReferences" not in a["metadata"]


def test_none_mode() -> None:
    assert policy({"egress": "None"})["spec"]["egress"] == []


def test_dns_mode() -> None:
    assert policy({"egress": "DNS"})["spec"]["egress"] == [DNS_RULE]


def test_internet_mode() -> None:
    assert policy({"egress": "Internet"})["spec"]["egress"] == [DNS_RULE, {"to": INTERNET_PEERS}]


def test_internet_mode_with_ports() -> None:
    # The API admits ports only with Custom; should some slip through, they restrict.
    network = Network.model_construct(
        egress=EgressMode.INTERNET, cidrs=None, ports=[NetworkPort(port=443)]
    )
    egress = egress_rules(network)
    assert egress == [DNS_RULE, {"to": INTERNET_PEERS, "ports": [{"protocol": "TCP", "port": 443}]}]


def test_internet_excludes_private_and_metadata_addresses() -> None:
    v4, v6 = (peer["ipBlock"] for peer in INTERNET_PEERS)
    excluded = [ipaddress.ip_network(c) for c in v4["except"] + v6["except"]]
    for address in (
        "10.1.2.3",
        "172.20.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "127.0.0.1",
        "fd00:ec2::254",
        "fe80::1",
        "::1",
    ):
        ip = ipaddress.ip_address(address)
        assert any(ip in net for net in excluded if net.version == ip.version), address
    for address in ("8.8.8.8", "1.1.1.1", "2606:4700::1111"):
        ip = ipaddress.ip_address(address)
        assert not any(ip in net for net in excluded if net.version == ip.version), address
    # Every exception lies inside its block, as the API server requires.
    for block in (v4, v6):
        outer = ipaddress.ip_network(block["cidr"])
        for cidr in block["except"]:
            inner = ipaddress.ip_network(cidr)
            assert inner.network_address in outer
            assert inner.broadcast_address in outer


def test_custom_mode() -> None:
    egress = policy({"egress": "Custom", "cidrs": ["203.0.113.0/24", "2001:db8::/32"]})["spec"][
        "egress"
    ]
    assert egress == [
        DNS_RULE,
        {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}, {"ipBlock": {"cidr": "2001:db8::/32"}}]},
    ]


def test_custom_mode_with_ports() -> None:
    egress = policy(
        {
            "egress": "Custom",
            "cidrs": ["10.0.0.0/8"],
            "ports": [{"port": 443}, {"port": 5353, "protocol": "UDP"}],
        }
    )["spec"]["egress"]
    assert egress[1] == {
        "to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
        "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "UDP", "port": 5353}],
    }


def test_dns_mode_ignores_cidrs_and_ports() -> None:
    network = Network.model_construct(egress=EgressMode.DNS, cidrs=["1.2.3.4/32"], ports=None)
    assert egress_rules(network) == [DNS_RULE]


def test_unknown_mode_is_a_spec_error() -> None:
    network = Network.model_construct(egress="Everything", cidrs=None, ports=None)
    with pytest.raises(SpecError) as info:
        egress_rules(network)
    assert info.value.field == "spec.network.egress"


@pytest.mark.parametrize("cidrs", [None, []])
def test_custom_without_cidrs_is_a_spec_error(cidrs: list[str] | None) -> None:
    network = Network.model_construct(egress=EgressMode.CUSTOM, cidrs=cidrs, ports=None)
    with pytest.raises(SpecError) as info:
        egress_rules(network)
    assert info.value.field == "spec.network.cidrs"


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "not-a-cidr", "10.0.0.1", "2001:db8::/129"])
def test_custom_with_a_bad_cidr_is_a_spec_error(bad: str) -> None:
    network = Network.model_construct(
        egress=EgressMode.CUSTOM, cidrs=["192.0.2.0/24", bad], ports=None
    )
    with pytest.raises(SpecError) as info:
        egress_rules(network)
    assert info.value.field == "spec.network.cidrs[1]"


def test_session_label() -> None:
    custom = {"egress": "Custom", "cidrs": ["203.0.113.0/24"]}
    np = fence(REF, spec(sessionRef={"name": "s"}, network=custom))
    assert np["metadata"]["labels"]["stockade.dev/session"] == "s"
    # The pod selector stays per Agent (not per session).
    assert "stockade.dev/session" not in np["spec"]["podSelector"]["matchLabels"]


@given(
    mode=st.sampled_from(list(EgressMode)),
    cidrs=st.lists(
        st.builds(
            lambda a, p: str(ipaddress.ip_network(f"{ipaddress.IPv4Address(a)}/{p}", strict=False)),
            st.integers(min_value=0, max_value=2**32 - 1),
            st.integers(min_value=0, max_value=32),
        ).filter(lambda c: not any(overlaps(c, denied) for denied in ALWAYS_DENIED_CIDRS)),
        min_size=1,
        max_size=4,
    ),
    ports=st.none()
    | st.lists(
        st.fixed_dictionaries(
            {"port": st.integers(1, 65535), "protocol": st.sampled_from(["TCP", "UDP", "SCTP"])}
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_deterministic_and_dns_first(
    mode: EgressMode, cidrs: list[str], ports: list[dict[str, Any]] | None
) -> None:
    network: dict[str, Any] = {"egress": mode.value}
    if mode == EgressMode.CUSTOM:
        network["cidrs"] = cidrs
        network["ports"] = ports
    if mode == EgressMode.HOSTS:
        network["hosts"] = ["pypi.org"]
    agent = spec(network=network)
    np = fence(REF, agent, CONFIG)
    assert np == fence(REF, agent, CONFIG)
    egress = np["spec"]["egress"]
    if mode == EgressMode.NONE:
        assert egress == []
    else:
        assert egress[0] == DNS_RULE
    if mode == EgressMode.CUSTOM:
        assert [p["ipBlock"]["cidr"] for p in egress[1]["to"]] == cidrs
        assert ("ports" in egress[1]) == bool(ports)
    if mode == EgressMode.HOSTS:
        assert egress[1:] == [GATEWAY_RULE]


# --- Hosts egress: DNS and the egress gateway only (issue 21) -------------------------


def test_hosts_mode_reaches_dns_and_the_gateway_only() -> None:
    np = policy({"egress": "Hosts", "hosts": ["api.openai.com", "*.github.com:22"]})
    shared = {"app.kubernetes.io/managed-by": "stockade", "stockade.dev/egress": "hosts"}
    assert np == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "stockade-egress-hosts", "namespace": "team-a", "labels": shared},
        "spec": {
            "podSelector": {"matchLabels": shared},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [DNS_RULE, GATEWAY_RULE],
        },
    }
    assert "hosts" in SHARED_MODES
    # The hosts are the gateway's business: every Hosts Agent shares the policy.
    other = fence(
        AgentRef("b", REF.namespace, "uid-2"),
        spec(network={"egress": "Hosts", "hosts": ["pypi.org"]}),
        CONFIG,
    )
    assert other == np == build_shared_network_policy(REF.namespace, "hosts", CONFIG)


def test_hosts_mode_follows_the_dns_preset() -> None:
    config = load_config(
        {"STOCKADE_EGRESS_DNS_PRESET": "openshift", "STOCKADE_OPERATOR_NAMESPACE": "ops"}
    )
    egress = build_shared_network_policy("team-a", "hosts", config)["spec"]["egress"]
    assert egress[0] == dns_rule(DNS_PRESETS["openshift"])
    assert egress[1]["to"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "ops"}
    }


def test_hosts_mode_without_the_operators_namespace_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="gateway"):
        build_shared_network_policy("team-a", "hosts", OperatorConfig())
    with pytest.raises(SpecError, match="gateway"):
        build_shared_network_policy("team-a", "hosts")


# --- where the cluster DNS is: presets and overrides --------------------------------

KUBE_DNS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
PORT_53 = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
PRESET_RULES: dict[str, dict[str, Any]] = {
    "kube-dns": {"to": [KUBE_DNS_PEER], "ports": PORT_53},
    "openshift": {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "openshift-dns"}
                },
                "podSelector": {
                    "matchLabels": {"dns.operator.openshift.io/daemonset-dns": "default"}
                },
            }
        ],
        "ports": [*PORT_53, {"protocol": "UDP", "port": 5353}, {"protocol": "TCP", "port": 5353}],
    },
    "nodelocal": {
        "to": [KUBE_DNS_PEER, {"ipBlock": {"cidr": "169.254.20.10/32"}}],
        "ports": PORT_53,
    },
}


def test_every_preset_the_config_accepts_has_a_peer() -> None:
    assert set(DNS_PRESETS) == set(CONFIG_DNS_PRESETS) == set(PRESET_RULES)


def test_the_default_preset_is_todays_kube_dns_rule() -> None:
    assert PRESET_RULES["kube-dns"] == DNS_RULE
    assert fence(REF, spec(network={"egress": "DNS"}), OperatorConfig()) == (
        fence(REF, spec(network={"egress": "DNS"}))
    )


@pytest.mark.parametrize("preset", sorted(PRESET_RULES))
@pytest.mark.parametrize("mode", ["DNS", "Internet", "Custom"])
def test_each_preset_renders_its_dns_peers(preset: str, mode: str) -> None:
    config = load_config({"STOCKADE_EGRESS_DNS_PRESET": preset})
    network: dict[str, Any] = {"egress": mode}
    if mode == "Custom":
        network["cidrs"] = ["203.0.113.0/24"]
    np = fence(REF, spec(network=network), config)
    egress = np["spec"]["egress"]
    assert egress[0] == PRESET_RULES[preset]
    assert len(egress) == (1 if mode == "DNS" else 2)


@pytest.mark.parametrize("preset", sorted(PRESET_RULES))
def test_no_egress_has_no_dns_whatever_the_preset(preset: str) -> None:
    config = load_config({"STOCKADE_EGRESS_DNS_PRESET": preset})
    assert fence(REF, spec(), config)["spec"]["egress"] == []


def test_nodelocal_address_is_reachable_only_on_dns_ports() -> None:
    # Internet mode excepts 169.254.0.0/16; the DNS rule lets 169.254.20.10:53 through.
    config = load_config({"STOCKADE_EGRESS_DNS_PRESET": "nodelocal"})
    dns, internet = egress_rules(Network(egress=EgressMode.INTERNET), dns_peer(config))
    assert {"ipBlock": {"cidr": "169.254.20.10/32"}} in dns["to"]
    assert dns["ports"] == PORT_53
    assert "169.254.0.0/16" in internet["to"][0]["ipBlock"]["except"]


def test_overrides_replace_labels_and_ports_and_add_cidrs() -> None:
    config = load_config(
        {
            "STOCKADE_EGRESS_DNS_PRESET": "nodelocal",
            "STOCKADE_EGRESS_DNS_NAMESPACE_LABELS": "kubernetes.io/metadata.name=dns",
            "STOCKADE_EGRESS_DNS_POD_LABELS": "app.kubernetes.io/name=coredns",
            "STOCKADE_EGRESS_DNS_CIDRS": "10.96.0.10/32,169.254.20.10/32",
            "STOCKADE_EGRESS_DNS_PORTS": "1053",
        }
    )
    assert dns_rule(dns_peer(config)) == {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dns"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "coredns"}},
            },
            {"ipBlock": {"cidr": "169.254.20.10/32"}},  # the preset's, not repeated
            {"ipBlock": {"cidr": "10.96.0.10/32"}},
        ],
        "ports": [{"protocol": "UDP", "port": 1053}, {"protocol": "TCP", "port": 1053}],
    }


def test_cidrs_only_dns_peer() -> None:
    rule = dns_rule(DnsPeer(cidrs=("192.0.2.53/32",)))
    assert rule["to"] == [{"ipBlock": {"cidr": "192.0.2.53/32"}}]


def test_a_dns_peer_that_selects_nothing_is_refused() -> None:
    # A rule without peers would allow every destination on the DNS ports.
    with pytest.raises(SpecError):
        dns_rule(DnsPeer())
    empty = OperatorConfig(egress_dns_namespace_labels={}, egress_dns_pod_labels={})
    with pytest.raises(SpecError):
        fence(REF, spec(network={"egress": "DNS"}), empty)
