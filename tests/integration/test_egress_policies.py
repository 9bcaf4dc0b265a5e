"""One NetworkPolicy per namespace and egress mode, on the real local control plane.

The Agents of a namespace with egress None, DNS or Internet share the policy
``stockade-egress-<mode>``, which selects their pods by the ``stockade.dev/egress``
label; Custom egress gets a policy of the Agent's own. A shared policy is made before
the first pod that needs it, restored when deleted or edited while a pod needs it,
and a name held by someone else's policy stalls the Agents that need it (issue 11:
one write less per Agent; docs/architecture.md: a NetworkPolicy per egress mode).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.cluster import Cluster, wait_for
from tests.integration.conftest import (
    DENIED_CLUSTER_RANGE,
    GATEWAY_ADDRESS,
    GATEWAY_CA_CONFIGMAP,
    GATEWAY_NAMESPACE,
)
from tests.integration.operator import Agents
from tests.integration.test_agents import spec

pytestmark = pytest.mark.integration

CUSTOM = {"egress": "Custom", "cidrs": ["203.0.113.0/24"]}


def policies(cluster: Cluster, namespace: str) -> dict[str, client.V1NetworkPolicy]:
    items = client.NetworkingV1Api(cluster.api).list_namespaced_network_policy(namespace).items
    return {p.metadata.name: p for p in items}


def selects(policy: client.V1NetworkPolicy, pod: client.V1Pod) -> bool:
    match = policy.spec.pod_selector.match_labels or {}
    labels = pod.metadata.labels or {}
    return all(labels.get(k) == v for k, v in match.items())


def read(cluster: Cluster, namespace: str, name: str) -> client.V1NetworkPolicy | None:
    try:
        return client.NetworkingV1Api(cluster.api).read_namespaced_network_policy(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_agents_of_a_mode_share_one_policy_that_fences_exactly_their_pods(
    agents: Agents, cluster: Cluster, namespace: str
) -> None:
    modes: dict[str, dict[str, Any] | None] = {
        "quiet-1": None,
        "quiet-2": None,
        "quiet-3": {"egress": "None"},
        "lookup": {"egress": "DNS"},
        "browse": {"egress": "Internet"},
        "narrow": CUSTOM,
    }
    for name, network in modes.items():
        agents.create(name, spec(task="t", network=network) if network else spec(task="t"))
    for name in modes:
        agents.wait_phase(name, "Running")
    found = policies(cluster, namespace)
    assert sorted(found) == [
        "narrow-egress",
        "stockade-egress-dns",
        "stockade-egress-internet",
        "stockade-egress-none",
    ]
    for name in ("stockade-egress-none", "stockade-egress-dns", "stockade-egress-internet"):
        assert not found[name].metadata.owner_references  # no single Agent's
    (owner,) = found["narrow-egress"].metadata.owner_references
    assert owner.uid == agents.get("narrow")["metadata"]["uid"]
    expected = {
        "quiet-1": "stockade-egress-none",
        "quiet-2": "stockade-egress-none",
        "quiet-3": "stockade-egress-none",
        "lookup": "stockade-egress-dns",
        "browse": "stockade-egress-internet",
        "narrow": "narrow-egress",
    }
    for name, fence in expected.items():
        (pod,) = agents.pods(name)
        # Policies add up: a pod selected by a second, wider policy would get its egress.
        assert [p for p, policy in found.items() if selects(policy, pod)] == [fence], name
    assert found["stockade-egress-none"].spec.egress is None  # no egress at all
    assert found["stockade-egress-none"].spec.policy_types == ["Ingress", "Egress"]
    for name in modes:
        agents.delete(name)
    wait_for(lambda: not any(agents.exists(n) for n in modes), what="the Agents gone")
    # The Agent's own policy goes with it; the shared ones stay with the namespace.
    wait_for(
        lambda: "narrow-egress" not in policies(cluster, namespace),
        timeout=120,
        what="the garbage collector removing narrow-egress",
    )
    assert sorted(policies(cluster, namespace)) == [
        "stockade-egress-dns",
        "stockade-egress-internet",
        "stockade-egress-none",
    ]


def test_a_shared_policy_deleted_or_opened_is_put_back(
    agents: Agents, cluster: Cluster, namespace: str
) -> None:
    agents.create("guarded", spec(task="t", network={"egress": "DNS"}))
    agents.wait_phase("guarded", "Running")
    net = client.NetworkingV1Api(cluster.api)
    original = read(cluster, namespace, "stockade-egress-dns")
    assert original is not None
    net.delete_namespaced_network_policy("stockade-egress-dns", namespace)

    def restored() -> client.V1NetworkPolicy | None:
        found = read(cluster, namespace, "stockade-egress-dns")
        return found if found is not None and found.metadata.uid != original.metadata.uid else None

    again = wait_for(restored, timeout=30, what="the shared policy restored")
    assert again.spec.to_dict() == original.spec.to_dict()
    assert not again.metadata.owner_references
    net.patch_namespaced_network_policy(
        "stockade-egress-dns", namespace, {"spec": {"policyTypes": ["Ingress"], "egress": None}}
    )
    wait_for(
        lambda: (
            read(cluster, namespace, "stockade-egress-dns").spec.to_dict()
            == original.spec.to_dict()
        ),
        timeout=30,
        what="the opened policy put back",
    )
    assert agents.status("guarded")["phase"] == "Running"


def test_a_shared_policys_name_held_by_someone_else_stalls_only_its_agents(
    agents: Agents, cluster: Cluster, namespace: str
) -> None:
    """Someone's own policy under the shared name: Stockade neither takes it over nor
    runs a pod that only it would fence (it may allow anything)."""
    theirs: dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "stockade-egress-internet", "labels": {"team": "a"}},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
    }
    client.NetworkingV1Api(cluster.api).create_namespaced_network_policy(namespace, theirs)  # type: ignore[arg-type]
    agents.create("blocked", spec(task="t", network={"egress": "Internet"}))
    agents.create("fine", spec(task="t"))
    agents.wait_phase("fine", "Running")

    def stalled() -> dict[str, Any] | None:
        cond = agents.condition("blocked", "Admitted")
        return cond if cond.get("reason") == "ResourceConflict" else None

    cond = wait_for(stalled, timeout=30, what="ResourceConflict on blocked")
    assert "stockade-egress-internet" in cond["message"]
    assert agents.condition("blocked", "Stalled")["status"] == "True"
    assert agents.status("blocked")["phase"] == "Pending"
    assert agents.pods("blocked") == []
    found = read(cluster, namespace, "stockade-egress-internet")
    assert found is not None and found.metadata.labels == {"team": "a"}  # untouched


def api_server_addresses(cluster: Cluster) -> list[str]:
    """The addresses of the EndpointSlice the API server keeps for itself."""
    found = client.DiscoveryV1Api(cluster.api).read_namespaced_endpoint_slice(
        "kubernetes", "default"
    )
    return [a for endpoint in found.endpoints or () for a in endpoint.addresses]


@pytest.mark.parametrize("target", ["api-server", "cluster-range"])
def test_custom_egress_to_a_denied_range_is_held_without_a_pod(
    agents: Agents, cluster: Cluster, namespace: str, target: str
) -> None:
    """Issue 20, class 8: a CIDR overlapping the API server or a denied range fails
    with EgressDenied, and neither a pod nor a NetworkPolicy is made."""
    if target == "api-server":
        (address, *_) = api_server_addresses(cluster)
        prefix = 24 if ":" not in address else 64
        cidr = str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
    else:
        cidr = DENIED_CLUSTER_RANGE.replace("0/24", "128/25")
    network = {"egress": "Custom", "cidrs": ["203.0.113.0/24", cidr]}
    agents.create("held", spec(task="t", network=network))
    status = agents.wait_phase("held", "Failed")
    assert status["reason"] == "EgressDenied", status
    assert "spec.network.cidrs[1]" in status["message"]
    assert cidr in status["message"]
    assert agents.condition("held", "Stalled")["status"] == "True"
    assert agents.condition("held", "Stalled")["reason"] == "EgressDenied"
    assert agents.pods("held") == []
    assert read(cluster, namespace, "held-egress") is None
    # An allowed neighbour in the same namespace still runs.
    agents.create("fine", spec(task="t", network=CUSTOM))
    agents.wait_phase("fine", "Running", "Succeeded")


def test_a_hosts_agent_reaches_only_dns_and_the_gateway(
    cluster: Cluster, namespace: str, agents: Agents
) -> None:
    """Issue 21: the pod's label, annotations, proxy and CA, and the shared hosts policy.

    As the chart's ServiceAccount the operator reads the CA by the Role the chart binds
    with ``gateway.enabled`` (``tests.integration.auth.gateway_ca_reader``).
    """
    import hashlib
    import json

    core = client.CoreV1Api(cluster.api)
    try:
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=GATEWAY_NAMESPACE))
        )
    except ApiException as exc:
        if exc.status != 409:
            raise
    ca = {"ca.crt": "GATEWAY CA", "ca-bundle.crt": "ROOTS AND GATEWAY CA"}
    try:
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=GATEWAY_CA_CONFIGMAP), data=ca)
        core.create_namespaced_config_map(GATEWAY_NAMESPACE, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
    hosts = ["api.openai.com", "*.github.com", "pypi.org:443"]
    credential = {
        "name": "openai",
        "secretKeyRef": {"name": "llm", "key": "api-key"},
        "hosts": ["api.openai.com"],
        "env": "OPENAI_API_KEY",
    }
    agents.create(
        "proxied",
        spec(network={"egress": "Hosts", "hosts": hosts}, credentials=[credential]),
    )
    agents.wait_phase("proxied", "Running")
    (pod,) = agents.pods("proxied")
    assert pod.metadata.labels["stockade.dev/egress"] == "hosts"
    annotations = pod.metadata.annotations
    assert json.loads(annotations["stockade.dev/gateway-hosts"]) == hosts
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    proxy = env["HTTPS_PROXY"]
    assert proxy.startswith("http://stockade:") and proxy.endswith(f"@{GATEWAY_ADDRESS}")
    token = proxy.removeprefix("http://stockade:").removesuffix(f"@{GATEWAY_ADDRESS}")
    assert (
        hashlib.sha256(token.encode()).hexdigest()
        == annotations["stockade.dev/gateway-token-sha256"]
    )
    assert env["OPENAI_API_KEY"] == "stockade-credential-placeholder:openai"
    assert env["SSL_CERT_FILE"] == "/etc/stockade-gateway/ca-bundle.crt"
    data = core.read_namespaced_config_map("proxied-input", namespace).data
    assert data["gateway.ca.crt"] == "GATEWAY CA"
    policy = read(cluster, namespace, "stockade-egress-hosts")
    assert policy is not None and selects(policy, pod)
    assert policy.spec.ingress is None  # no ingress at all
    dns, gateway = policy.spec.egress
    assert {p.port for p in dns.ports} == {53}
    (peer,) = gateway.to
    assert peer.namespace_selector.match_labels == {
        "kubernetes.io/metadata.name": GATEWAY_NAMESPACE
    }
    assert peer.pod_selector.match_labels == {"app.kubernetes.io/component": "gateway"}
    assert [(p.protocol, p.port) for p in gateway.ports] == [("TCP", 3128)]
