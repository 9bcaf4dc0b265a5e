"""The gateway's shell without a cluster: the pod index, the credential cache, the config."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from stockade.gateway.config import GatewayConfigError, load_gateway_config
from stockade.gateway.identity import pod_view
from stockade.gateway.index import PodIndex
from stockade.gateway.kube import POD_SELECTOR, KubeCredentialSource
from stockade.gateway.sources import AgentUnavailable
from tests.unit.test_gateway_identity import pod


def test_the_index_follows_events_and_a_pod_moving_ip() -> None:
    index = PodIndex()
    index.replace([pod()])
    assert index.synced and len(index) == 1
    assert [p.name for p in index.pods_at("10.0.0.5")] == ["demo-1"]
    index.apply("MODIFIED", pod(status__podIP="10.0.0.9", status__phase="Running"))
    assert index.pods_at("10.0.0.5") == []
    assert [p.name for p in index.pods_at("10.0.0.9")] == ["demo-1"]
    index.apply("ADDED", pod(metadata__name="demo-2"))
    index.apply("DELETED", pod(status__podIP="10.0.0.9"))
    assert index.pods_at("10.0.0.9") == []
    assert [p.name for p in index.pods_at("10.0.0.5")] == ["demo-2"]
    index.replace([])
    assert len(index) == 0


def test_the_watch_selects_stockades_hosts_pods_by_the_operators_labels() -> None:
    assert (
        POD_SELECTOR
        == "app.kubernetes.io/managed-by=stockade,stockade.dev/agent,stockade.dev/egress=hosts"
    )


class FakeReads:
    def __init__(self, agent: dict[str, Any] | None, secrets: dict[str, dict[str, Any]]) -> None:
        self.agent, self.secrets, self.calls = agent, secrets, 0

    async def get_agent(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls += 1
        await asyncio.sleep(0)
        return self.agent

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls += 1
        return self.secrets.get(name)


AGENT = {
    "metadata": {"name": "demo", "uid": "uid-1"},
    "spec": {
        "credentials": [
            {
                "name": "openai",
                "secretKeyRef": {"name": "keys", "key": "k"},
                "hosts": ["api.openai.com"],
            }
        ]
    },
}
SECRETS = {"keys": {"data": {"k": base64.b64encode(b"sk-1").decode()}}}


def test_credentials_are_read_once_per_ttl_and_shared_by_concurrent_callers() -> None:
    now = [0.0]
    reads = FakeReads(AGENT, SECRETS)
    source = KubeCredentialSource(reads, ttl=10, clock=lambda: now[0])
    view = pod_view(pod())

    async def main() -> None:
        results = await asyncio.gather(*(source.credentials_for(view) for _ in range(5)))
        assert all(r.values == {"openai": b"sk-1"} for r in results)
        assert reads.calls == 2  # one Agent GET, one Secret GET
        now[0] = 11
        await source.credentials_for(view)
        assert reads.calls == 4

    asyncio.run(main())


@pytest.mark.parametrize(
    ("agent", "secrets", "reason"),
    [
        (None, SECRETS, "agent-gone"),
        ({**AGENT, "metadata": {"name": "demo", "uid": "another"}}, SECRETS, "agent-gone"),
        (AGENT, {}, "secret-missing"),
        (AGENT, {"keys": {"data": {}}}, "secret-missing"),
    ],
)
def test_unreadable_agents_and_secrets(
    agent: dict[str, Any] | None, secrets: dict[str, Any], reason: str
) -> None:
    source = KubeCredentialSource(FakeReads(agent, secrets), ttl=10)

    async def main() -> None:
        with pytest.raises(AgentUnavailable) as caught:
            await source.credentials_for(pod_view(pod()))
        assert caught.value.reason == reason

    asyncio.run(main())


def test_the_secret_value_is_not_in_the_repr() -> None:
    async def main() -> str:
        source = KubeCredentialSource(FakeReads(AGENT, SECRETS), ttl=10)
        return repr(await source.credentials_for(pod_view(pod())))

    assert "sk-1" not in asyncio.run(main())


def test_config_defaults_and_errors() -> None:
    config = load_gateway_config({"POD_NAMESPACE": "stockade-system"})
    assert (config.port, config.metrics_port, config.namespace) == (3128, 9090, "stockade-system")
    assert config.allow_addresses == ()
    assert config.guard.refusal(__import__("ipaddress").ip_address("127.0.0.1")) == "loopback"
    both = load_gateway_config(
        {
            "STOCKADE_GATEWAY_CLUSTER_CIDRS": "10.96.0.0/12",
            "STOCKADE_EGRESS_DENIED_CIDRS": "34.0.0.0/8",
        }
    )
    assert [str(n) for n in both.cluster_cidrs] == ["10.96.0.0/12", "34.0.0.0/8"]
    for env in (
        {"STOCKADE_GATEWAY_PORT": "0"},
        {"STOCKADE_GATEWAY_HEAD_TIMEOUT": "x"},
        {"STOCKADE_GATEWAY_ALLOW_ADDRESSES": "nope"},
    ):
        with pytest.raises(GatewayConfigError):
            load_gateway_config(env)
