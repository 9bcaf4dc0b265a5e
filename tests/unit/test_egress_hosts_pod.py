"""Issue 21, the operator's side of the egress gateway: pods, ConfigMaps, refusals.

A Hosts pod carries the label ``stockade.dev/egress: hosts``, the gateway's annotations
(its hosts, its token's sha256), the proxy and CA environment and the credential
placeholders; the CA is copied into the input ConfigMap; without the gateway's address
the Agent fails with ``GatewayNotConfigured``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest

from stockade.build.configmap import build_input_configmap, gateway_ca_data
from stockade.build.errors import SpecError
from stockade.build.pod import GATEWAY_ENV, GatewayAccess, build_pod
from stockade.config import OperatorConfig
from stockade.core.lifecycle import Reason
from stockade.core.policy import gateway_problems
from stockade.core.reasons import STALLING_REASONS, WARNING_REASONS
from stockade.reconcile import Reconciler, prepare
from tests.unit.conftest import REF, FakeKube, spec

RESOURCES = {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}
HOSTS = {"egress": "Hosts", "hosts": ["api.openai.com", "*.github.com", "pypi.org:443"]}
CA = {"ca.crt": "GATEWAY CA", "ca-bundle.crt": "ROOTS + GATEWAY CA", "other": "x"}
ACCESS = GatewayAccess(address="stockade-gateway.stockade-system.svc:3128", token="tok", ca=True)
CONFIG = OperatorConfig(
    operator_namespace="stockade-system",
    gateway_address="stockade-gateway.stockade-system.svc:3128",
    gateway_ca_configmap="stockade-gateway-ca",
)
CREDENTIAL = {
    "name": "openai",
    "secretKeyRef": {"name": "llm", "key": "api-key"},
    "hosts": ["api.openai.com"],
    "env": "OPENAI_API_KEY",
}


def hosts_pod(gateway: GatewayAccess | None = ACCESS, **fields: Any) -> dict[str, Any]:
    return build_pod(
        REF,
        spec(network=HOSTS, **fields),
        attempt=1,
        runtime_class="gvisor",
        resources=RESOURCES,
        gateway=gateway,
    )


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_a_hosts_pod_carries_what_the_gateway_reads() -> None:
    pod = hosts_pod(credentials=[CREDENTIAL])
    meta = pod["metadata"]
    assert meta["labels"]["stockade.dev/egress"] == "hosts"
    assert json.loads(meta["annotations"]["stockade.dev/gateway-hosts"]) == HOSTS["hosts"]
    assert (
        meta["annotations"]["stockade.dev/gateway-token-sha256"]
        == hashlib.sha256(b"tok").hexdigest()
    )
    env = env_of(pod)
    proxy = "http://stockade:tok@stockade-gateway.stockade-system.svc:3128"
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        assert env[name] == proxy
    assert env["NO_PROXY"] == env["no_proxy"] == "localhost,127.0.0.1,::1"
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO"):
        assert env[name] == "/etc/stockade-gateway/ca-bundle.crt"
    assert env["PIP_CERT"] == "/etc/stockade-gateway/ca-bundle.crt"
    assert env["NODE_EXTRA_CA_CERTS"] == "/etc/stockade-gateway/ca.crt"
    assert env["OPENAI_API_KEY"] == "stockade-credential-placeholder:openai"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["gateway-ca"]["configMap"] == {
        "name": "demo-input",
        "items": [
            {"key": "gateway.ca.crt", "path": "ca.crt"},
            {"key": "gateway.ca-bundle.crt", "path": "ca-bundle.crt"},
        ],
        "defaultMode": 0o444,
        "optional": True,
    }
    (container,) = pod["spec"]["containers"]
    assert {"name": "gateway-ca", "mountPath": "/etc/stockade-gateway", "readOnly": True} in (
        container["volumeMounts"]
    )


def test_without_the_ca_the_pod_keeps_the_proxy_and_trusts_nothing_new() -> None:
    pod = hosts_pod(GatewayAccess(address="gw:3128", token="tok"))
    env = env_of(pod)
    assert env["HTTPS_PROXY"] == "http://stockade:tok@gw:3128"
    assert "SSL_CERT_FILE" not in env and "NODE_EXTRA_CA_CERTS" not in env
    assert all(v["name"] != "gateway-ca" for v in pod["spec"]["volumes"])


def test_the_agents_env_cannot_override_the_gateway_variables() -> None:
    user_env = [{"name": name, "value": "user"} for name in sorted(GATEWAY_ENV)]
    user_env.append({"name": "MINE", "value": "kept"})
    env = env_of(hosts_pod(env=user_env))
    assert env["MINE"] == "kept"
    assert all(env[name] != "user" for name in GATEWAY_ENV)
    (container,) = hosts_pod(env=user_env)["spec"]["containers"]
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names))


def test_other_modes_get_nothing_of_the_gateway() -> None:
    pod = build_pod(
        REF,
        spec(network={"egress": "Internet"}),
        attempt=1,
        runtime_class="gvisor",
        resources=RESOURCES,
        gateway=ACCESS,
    )
    assert "annotations" not in pod["metadata"]
    assert not set(env_of(pod)) & GATEWAY_ENV
    assert all(v["name"] != "gateway-ca" for v in pod["spec"]["volumes"])


def test_a_hosts_pod_without_the_gateway_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="STOCKADE_GATEWAY_ADDRESS"):
        hosts_pod(None)


def test_the_token_changes_the_annotation_only_through_its_hash() -> None:
    a = hosts_pod(GatewayAccess(address="gw:3128", token="one"))
    b = hosts_pod(GatewayAccess(address="gw:3128", token="two"))
    key = "stockade.dev/gateway-token-sha256"
    assert a["metadata"]["annotations"][key] != b["metadata"]["annotations"][key]
    assert "one" not in json.dumps(a["metadata"])


def test_the_input_configmap_copies_the_ca_for_hosts_only() -> None:
    cm = build_input_configmap(REF, spec(network=HOSTS), CA)
    assert cm is not None
    assert cm["data"] == {
        "gateway.ca.crt": "GATEWAY CA",
        "gateway.ca-bundle.crt": "ROOTS + GATEWAY CA",
    }
    assert cm["immutable"] is True
    assert build_input_configmap(REF, spec(network=HOSTS), None) is None
    assert build_input_configmap(REF, spec(network={"egress": "DNS"}), CA) is None
    # Half a CA is none.
    assert gateway_ca_data(spec(network=HOSTS), {"ca.crt": "x"}) == {}
    with_task = build_input_configmap(REF, spec(network=HOSTS, task="t"), CA)
    assert with_task is not None and set(with_task["data"]) == {
        "task",
        "gateway.ca.crt",
        "gateway.ca-bundle.crt",
    }


def agent(network: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "demo", "namespace": "team-a", "uid": "uid-1"},
        "spec": {"image": "registry.example/agent:1", "network": network, **fields},
    }


def test_hosts_without_the_gateway_address_is_gateway_not_configured() -> None:
    prepared = prepare(agent(HOSTS), OperatorConfig(operator_namespace="stockade-system"))
    assert prepared.reason is Reason.GATEWAY_NOT_CONFIGURED
    assert prepared.error is not None and "STOCKADE_GATEWAY_ADDRESS" in prepared.error
    assert Reason.GATEWAY_NOT_CONFIGURED in STALLING_REASONS
    assert Reason.GATEWAY_NOT_CONFIGURED in WARNING_REASONS
    no_namespace = prepare(agent(HOSTS), OperatorConfig(gateway_address="gw:3128"))
    assert no_namespace.reason is Reason.GATEWAY_NOT_CONFIGURED
    assert prepare(agent(HOSTS), CONFIG).error is None
    assert prepare(agent({"egress": "DNS"}), OperatorConfig()).error is None


def test_a_members_credentials_need_the_effective_network_to_be_hosts() -> None:
    member = {
        "metadata": {"name": "m", "namespace": "team-a", "uid": "u"},
        "spec": {"sessionRef": {"name": "team"}, "image": "x", "credentials": [CREDENTIAL]},
    }
    # Credentials reference a Secret: the member takes no network from its session, so
    # it has none and its credentials cannot be used.
    session = {"spec": {"agentDefaults": {"network": HOSTS}}}
    prepared = prepare(member, CONFIG, session, policy_present=True)
    assert prepared.reason is Reason.INVALID_SPEC
    assert prepared.error is not None and "spec.credentials" in prepared.error
    assert prepared.error.count("spec.credentials") == 1


def test_gateway_problems_name_the_credential_fields() -> None:
    parsed = spec(network=HOSTS, credentials=[CREDENTIAL])
    assert gateway_problems(parsed, CONFIG) is None
    problems = gateway_problems(parsed, OperatorConfig())
    assert problems is not None and problems[0].field == "spec.network.egress"


def test_credentials_are_secret_references() -> None:
    prepared = prepare(agent(HOSTS, credentials=[CREDENTIAL]), CONFIG, policy_present=False)
    assert prepared.reason is Reason.REFERENCE_NOT_ALLOWED
    assert prepared.error is not None and "spec.credentials[0].secretKeyRef" in prepared.error


def test_the_reconciler_copies_the_ca_and_gives_each_pod_its_own_token() -> None:
    config = CONFIG.model_copy(update={"references_without_policy": "allow"})
    body = agent(HOSTS, credentials=[CREDENTIAL])
    prepared = prepare(body, config)
    assert prepared.error is None
    kube = FakeKube(config_maps={("stockade-system", "stockade-gateway-ca"): dict(CA)})
    reconciler = Reconciler(kube, config)

    async def scenario() -> None:
        assert await reconciler.agents.children.ensure(body, prepared) is None
        assert await reconciler.agents.children.create_pod(body, prepared, 1) is None
        assert await reconciler.agents.children.create_pod(body, prepared, 2) is None

    asyncio.run(scenario())
    created = kube.created()
    (cm,) = [m for m in created if m["kind"] == "ConfigMap"]
    assert cm["data"]["gateway.ca.crt"] == "GATEWAY CA"
    (np,) = [m for m in created if m["kind"] == "NetworkPolicy"]
    assert np["metadata"]["name"] == "stockade-egress-hosts"
    pods = [m for m in created if m["kind"] == "Pod"]
    hashes = {p["metadata"]["annotations"]["stockade.dev/gateway-token-sha256"] for p in pods}
    assert len(hashes) == 2
    for pod in pods:
        env = env_of(pod)
        token = env["HTTPS_PROXY"].split(":")[2].split("@")[0]
        assert len(token) >= 43
        assert hashlib.sha256(token.encode()).hexdigest() in hashes
        assert env["SSL_CERT_FILE"] == "/etc/stockade-gateway/ca-bundle.crt"
    # The CA ConfigMap is read at most once a minute.
    assert [c for c in kube.calls if c[1] == "ConfigMapData"] == [
        ("read", "ConfigMapData", "stockade-gateway-ca")
    ]


def test_an_absent_ca_configmap_leaves_the_proxy_without_a_ca() -> None:
    config = CONFIG.model_copy(update={"references_without_policy": "allow"})
    body = agent(HOSTS)
    prepared = prepare(body, config)
    kube = FakeKube()
    reconciler = Reconciler(kube, config)

    async def scenario() -> None:
        assert await reconciler.agents.children.ensure(body, prepared) is None
        assert await reconciler.agents.children.create_pod(body, prepared, 1) is None

    asyncio.run(scenario())
    (pod,) = [m for m in kube.created() if m["kind"] == "Pod"]
    env = env_of(pod)
    assert env["HTTPS_PROXY"].endswith("@stockade-gateway.stockade-system.svc:3128")
    assert "SSL_CERT_FILE" not in env
    assert not [m for m in kube.created() if m["kind"] == "ConfigMap"]
