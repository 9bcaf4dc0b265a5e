"""The gateway's reads of the real local control plane: the CA bootstrap, the pod watch,
the Agent read by UID (no operator running: the test makes the Agent and its pod itself).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_process_bootstraps_serves_407_audits_and_exports_metrics(
    cluster: Cluster, namespace: str
) -> None:
    port, metrics_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "STOCKADE_GATEWAY_NAMESPACE": namespace,
        "STOCKADE_GATEWAY_PORT": str(port),
        "STOCKADE_GATEWAY_METRICS_PORT": str(metrics_port),
    }
    env.pop("KUBERNETES_SERVICE_HOST", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "stockade.gateway"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                connection = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                assert process.poll() is None, "the gateway exited"
                assert time.monotonic() < deadline, "the gateway did not listen in 30s"
                time.sleep(0.2)
        with connection:
            connection.sendall(b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n")
            answer = connection.recv(4096)
        assert answer.startswith(b"HTTP/1.1 407")
        assert b'Proxy-Authenticate: Basic realm="stockade"' in answer
        scrape = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
        assert 'stockade_gateway_requests_total{result="unauthenticated"} 1.0' in scrape
        assert cluster.core.read_namespaced_config_map("stockade-gateway-ca", namespace).data[
            "ca.crt"
        ]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    audits = [line for line in lines if line.get("audit") is True]
    assert [(a["result"], a["reason"], a["host"]) for a in audits] == [
        ("unauthenticated", "no-pod", "")
    ]
