"""The gateway's reads of the real local control plane: the CA bootstrap, the pod watch,
the Agent read by UID (no operator running: the test makes the Agent and its pod itself).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Any, cast

import certifi
import pytest
from kubernetes import client
from kubernetes.aio import client as aclient
from kubernetes.aio import config as aconfig

from stockade.api.agent import AGENT_PLURAL, GROUP, VERSION
from stockade.build.names import AgentRef, labels_for
from stockade.gateway.identity import HOSTS_ANNOTATION, TOKEN_ANNOTATION, token_sha256
from stockade.gateway.index import PodIndex
from stockade.gateway.kube import ApiReads, KubeCredentialSource, bootstrap_ca, watch_pods
from stockade.gateway.sources import AgentUnavailable
from tests.integration.cluster import Cluster
from tests.integration.test_agents import spec

pytestmark = pytest.mark.integration


async def aio_api(cluster: Cluster) -> aclient.ApiClient:
    api: aclient.ApiClient = await aconfig.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig)
    )
    return api


def test_the_ca_is_created_once_and_published_with_the_public_roots(
    cluster: Cluster, namespace: str
) -> None:
    async def main() -> tuple[bytes, bytes]:
        api = await aio_api(cluster)
        try:
            first = await bootstrap_ca(api, namespace, "gw-ca", "gw-ca-bundle")
            second = await bootstrap_ca(api, namespace, "gw-ca", "gw-ca-bundle")
            assert second == first  # the Secret is read, not replaced
            return first.cert_pem, first.key_pem
        finally:
            await api.close()  # type: ignore[no-untyped-call]

    cert, _ = asyncio.run(main())
    secret = cluster.core.read_namespaced_secret("gw-ca", namespace)
    assert secret.type == "kubernetes.io/tls"
    data = cluster.core.read_namespaced_config_map("gw-ca-bundle", namespace).data
    assert data["ca.crt"] == cert.decode()
    with open(certifi.where()) as roots:
        assert data["ca-bundle.crt"].startswith(roots.read().rstrip("\n"))
    assert data["ca-bundle.crt"].endswith(cert.decode())
    assert "tls.key" not in data and "PRIVATE KEY" not in data["ca-bundle.crt"]


def make_agent(cluster: Cluster, namespace: str) -> AgentRef:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Agent",
        "metadata": {"name": "gw", "namespace": namespace},
        "spec": spec(),
    }
    made = cast(
        dict[str, Any],
        client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, AGENT_PLURAL, body
        ),
    )
    return AgentRef("gw", namespace, made["metadata"]["uid"])


def agent_pod(agent: AgentRef, name: str, egress: str) -> dict[str, Any]:
    labels = labels_for(agent.name) | {"stockade.dev/egress": egress}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": agent.namespace,
            "labels": labels,
            "annotations": {
                TOKEN_ANNOTATION: token_sha256("t"),
                HOSTS_ANNOTATION: '["api.openai.com"]',
            },
            "ownerReferences": [agent.owner_reference()],
        },
        "spec": {"containers": [{"name": "agent", "image": "registry.invalid/agent:1"}]},
    }


def test_the_watch_indexes_hosts_pods_and_the_agent_is_read_by_uid(
    cluster: Cluster, namespace: str, crds: None
) -> None:
    agent = make_agent(cluster, namespace)
    cluster.core.create_namespaced_pod(
        namespace, cast(client.V1Pod, agent_pod(agent, "gw-1", "hosts"))
    )
    cluster.core.create_namespaced_pod(
        namespace, cast(client.V1Pod, agent_pod(agent, "gw-other", "internet"))
    )

    async def main() -> None:
        api = await aio_api(cluster)
        index, stop = PodIndex(), asyncio.Event()
        task = asyncio.create_task(watch_pods(api, index, stop))
        try:
            view = None
            for _ in range(300):  # kwok makes it Running with an IP
                mine = [
                    p
                    for ip in _ips(cluster, namespace)
                    for p in index.pods_at(ip)
                    if p.namespace == namespace
                ]
                if mine and mine[0].phase == "Running":
                    view = mine[0]
                    break
                await asyncio.sleep(0.1)
            assert view is not None, "the hosts pod never reached the index as Running"
            assert view.name == "gw-1"  # the Internet pod is not selected
            assert view.agent_key == (namespace, "gw", agent.uid)
            source = KubeCredentialSource(ApiReads(api), ttl=10)
            assert (await source.credentials_for(view)).credentials == ()
            with pytest.raises(AgentUnavailable) as caught:
                await source.credentials_for(replace(view, agent_uid=str(uuid.uuid4())))
            assert caught.value.reason == "agent-gone"
            cluster.core.delete_namespaced_pod("gw-1", namespace, grace_period_seconds=0)
            for _ in range(300):
                if not index.pods_at(view.ip):
                    break
                await asyncio.sleep(0.1)
            assert index.pods_at(view.ip) == []
        finally:
            stop.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await api.close()  # type: ignore[no-untyped-call]

    asyncio.run(main())


def _ips(cluster: Cluster, namespace: str) -> list[str]:
    pods = cluster.core.list_namespaced_pod(namespace).items
    return [p.status.pod_ip for p in pods if p.status and p.status.pod_ip]
