"""Egress policies enforced on the real node: what an agent's process could really reach.

hack/node-up.sh runs kube-router's network-policy controller beside the kubelet, so the
NetworkPolicies Stockade writes for an Agent's ``spec.network.egress`` are enforced on
the node's pods (iptables and ipsets on the host). Each test runs, under gVisor, a pod
whose command (busybox ``nc`` and ``nslookup``) tries connections and writes what
happened to its termination message; the test reads it back (the Agent's
``status.result``, or the plain pod's container status) and also checks, on the node,
which connections its listeners really accepted.

Every address is on this machine: the node's bridge address (NODE_IP) and a second
address the tests put on the bridge (OTHER_IP, outside the pod subnet); the listeners
bind those. A DNS listener on NODE_IP port 53 stands for the node's resolver, and the
e2e operator lists NODE_IP/32 in STOCKADE_EGRESS_DNS_CIDRS (as NodeLocal DNSCache's
address would be): DNS egress allows exactly that. The ports are ephemeral ones,
outside the node-port range (30000-32767) that kube-router always lets reach the node.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.conftest import AGENT_IMAGE, NODE_IP, NODE_NAME, real_node_placement
from tests.integration.cluster import wait_for
from tests.integration.operator import Agents

pytestmark = pytest.mark.e2e

OTHER_IP = "10.88.78.1"
"""A second address of the node's bridge, outside the pod subnet (pods reach it through
their gateway, NODE_IP): the destination a Custom CIDR of NODE_IP/32 does not allow."""
BRIDGE = "stockade0"
DNS_ANSWER = "192.0.2.53"
"""The A record the test's DNS listener answers (a documentation address: never used)."""
START_TIMEOUT = 120
# The pod waits before its first connection so that kube-router (which syncs on the
# pod's update with its IP) has written the pod's rules; it syncs in well under a second.
SETTLE_SECONDS = 5

PROBE = r"""
sleep "$1"; shift
out=""
for target in "$@"; do
  case "${target}" in
    dns:*)
      reply="$(timeout 8 nslookup probe.stockade.test. "${target#dns:}" 2>&1)"
      case "${reply}" in *"DNS_ANSWER"*) r=ok ;; *) r=fail ;; esac ;;
    *)
      reply="$(echo ping | timeout 8 nc -w 3 "${target%:*}" "${target##*:}" 2>&1)"
      case "${reply}" in *pong*) r=ok ;; *) r=fail ;; esac ;;
  esac
  out="${out}${out:+ }${target}=${r}"
done
echo "${out}"
printf '%s' "${out}" >/dev/termination-log
""".replace("DNS_ANSWER", DNS_ANSWER)
"""The probe (busybox sh): after $1 seconds, for each target ``IP:PORT`` (TCP: sends
ping, expects pong) or ``dns:IP`` (an A query over UDP port 53, expects DNS_ANSWER),
``target=ok`` or ``target=fail``, space-separated, as the termination message."""


@dataclass
class Listeners:
    """TCP listeners on NODE_IP:port, OTHER_IP:port and NODE_IP:53, a DNS one on UDP 53.

    ``seen`` maps each listener ("tcp NODE_IP:port", "udp NODE_IP:53", ...) to the source
    addresses it got a connection or a query from.
    """

    port: int
    seen: dict[str, list[str]] = field(default_factory=dict)
    sockets: list[socket.socket] = field(default_factory=list)

    def tcp(self, ip: str, port: int) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((ip, port))
        server.listen(16)
        self.sockets.append(server)
        key = f"tcp {ip}:{port}"
        self.seen[key] = []

        def serve() -> None:
            while True:
                try:
                    conn, peer = server.accept()
                except OSError:
                    return
                self.seen[key].append(peer[0])
                with conn:
                    conn.settimeout(3)
                    try:
                        conn.recv(64)
                        conn.sendall(b"pong\n")
                    except OSError:
                        pass

        threading.Thread(target=serve, daemon=True).start()

    def dns(self, ip: str) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind((ip, 53))
        self.sockets.append(server)
        key = f"udp {ip}:53"
        self.seen[key] = []

        def serve() -> None:
            while True:
                try:
                    query, peer = server.recvfrom(512)
                except OSError:
                    return
                self.seen[key].append(peer[0])
                reply = dns_reply(query)
                if reply:
                    server.sendto(reply, peer)

        threading.Thread(target=serve, daemon=True).start()

    def sources(self, key: str) -> list[str]:
        return list(self.seen[key])

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def dns_reply(query: bytes) -> bytes | None:
    """A response to a one-question DNS query: an A record DNS_ANSWER for type A, no
    answer (NOERROR) for any other type; None for what does not parse."""
    if len(query) < 17:
        return None
    end = 12
    while end < len(query) and query[end] != 0:
        end += 1 + query[end]
    end += 5  # the root label, QTYPE, QCLASS
    if end > len(query):
        return None
    question = query[12:end]
    (qtype,) = struct.unpack("!H", query[end - 4 : end - 2])
    answers = b""
    if qtype == 1:
        answers = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(DNS_ANSWER)
    header = query[:2] + struct.pack("!HHHHH", 0x8180, 1, 1 if answers else 0, 0, 0)
    return header + question + answers


def free_port(ip: str) -> int:
    """An ephemeral TCP port free on `ip` (outside the node-port range)."""
    while True:
        with socket.socket() as s:
            s.bind((ip, 0))
            port: int = s.getsockname()[1]
        if not 30000 <= port <= 32767:
            return port


@pytest.fixture(scope="module")
def listeners(real_node: str) -> Iterator[Listeners]:
    subprocess.run(["ip", "addr", "add", f"{OTHER_IP}/32", "dev", BRIDGE], check=True)
    found = Listeners(port=free_port(NODE_IP))
    try:
        found.tcp(NODE_IP, found.port)
        found.tcp(OTHER_IP, found.port)
        found.tcp(NODE_IP, 53)
        found.dns(NODE_IP)
        yield found
    finally:
        found.close()
        subprocess.run(["ip", "addr", "del", f"{OTHER_IP}/32", "dev", BRIDGE], check=False)


def targets(listeners: Listeners) -> list[str]:
    return [
        f"{NODE_IP}:{listeners.port}",
        f"{OTHER_IP}:{listeners.port}",
        f"{NODE_IP}:53",
        f"dns:{NODE_IP}",
    ]


def parse(message: str) -> dict[str, str]:
    """``a=ok b=fail`` as {"a": "ok", "b": "fail"}."""
    return dict(item.split("=", 1) for item in message.split())


def run_agent(agents: Agents, name: str, network: dict[str, Any], probe: list[str]) -> str:
    """Run the probe as Agent `name` with `network`; its pod IP. Asserts it Succeeded."""
    agents.create(
        name,
        {
            "image": AGENT_IMAGE,
            **real_node_placement(),
            "command": ["/bin/sh", "-c", PROBE, "probe", str(SETTLE_SECONDS), *probe],
            "network": network,
        },
    )
    status = agents.wait_phase(name, "Succeeded", "Failed", timeout=START_TIMEOUT)
    assert status["phase"] == "Succeeded", status
    (pod,) = agents.pods(name)
    assert pod.spec.node_name == NODE_NAME
    ip: str = pod.status.pod_ip
    return f"{ip} {status.get('result', '')}"


def outcome(agents: Agents, name: str, network: dict[str, Any], probe: list[str]) -> Any:
    ip, _, message = run_agent(agents, name, network, probe).partition(" ")
    return ip, parse(message)


def test_egress_none_blocks_everything(agents: Agents, listeners: Listeners) -> None:
    probe = targets(listeners)
    ip, seen = outcome(agents, "fenced", {"egress": "None"}, probe)
    assert seen == dict.fromkeys(probe, "fail"), seen
    # Nothing of the pod's reached the node's listeners.
    for key in listeners.seen:
        assert ip not in listeners.sources(key), (key, listeners.seen)


def test_egress_dns_allows_only_dns(agents: Agents, listeners: Listeners) -> None:
    probe = targets(listeners)
    ip, seen = outcome(agents, "dns-only", {"egress": "DNS"}, probe)
    assert seen == {
        f"{NODE_IP}:{listeners.port}": "fail",
        f"{OTHER_IP}:{listeners.port}": "fail",
        f"{NODE_IP}:53": "ok",
        f"dns:{NODE_IP}": "ok",
    }, seen
    assert ip in listeners.sources(f"udp {NODE_IP}:53")
    assert ip in listeners.sources(f"tcp {NODE_IP}:53")
    assert ip not in listeners.sources(f"tcp {NODE_IP}:{listeners.port}")


def test_egress_custom_allows_its_cidr_only(agents: Agents, listeners: Listeners) -> None:
    probe = targets(listeners)[:2]
    network = {"egress": "Custom", "cidrs": [f"{NODE_IP}/32"]}
    ip, seen = outcome(agents, "custom", network, probe)
    assert seen == {f"{NODE_IP}:{listeners.port}": "ok", f"{OTHER_IP}:{listeners.port}": "fail"}
    assert ip in listeners.sources(f"tcp {NODE_IP}:{listeners.port}")
    assert ip not in listeners.sources(f"tcp {OTHER_IP}:{listeners.port}")


def test_pod_without_policy_reaches_everything(agents: Agents, listeners: Listeners) -> None:
    """The control: the same probe, image and sandbox in a pod no NetworkPolicy selects
    (not an Agent) reaches every listener, so the tests above can fail."""
    probe = targets(listeners)
    placement = real_node_placement()
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "unfenced"},
        "spec": {
            "restartPolicy": "Never",
            "runtimeClassName": placement["runtimeClassName"],
            "nodeSelector": placement["nodeSelector"],
            "tolerations": placement["tolerations"],
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "probe",
                    "image": AGENT_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c", PROBE, "probe", str(SETTLE_SECONDS), *probe],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    agents.cluster.create_pod(agents.namespace, pod)
    core = agents.cluster.core

    def finished() -> Any:
        found = core.read_namespaced_pod("unfenced", agents.namespace)
        return found if found.status.phase in ("Succeeded", "Failed") else None

    found = wait_for(finished, timeout=START_TIMEOUT)
    (state,) = found.status.container_statuses
    assert found.status.phase == "Succeeded", state
    seen = parse(state.state.terminated.message or "")
    assert seen == dict.fromkeys(probe, "ok"), seen
    ip = found.status.pod_ip
    for key in listeners.seen:
        assert ip in listeners.sources(key), (key, listeners.seen)


def test_enforcer_runs(real_node: str) -> None:
    """kube-router's chains hook the node's INPUT, FORWARD and OUTPUT."""
    rules = subprocess.run(
        ["iptables", "-t", "filter", "-S"], capture_output=True, text=True, check=True
    ).stdout
    for chain in ("INPUT", "FORWARD", "OUTPUT"):
        assert f"-A {chain} " in rules and f"-j KUBE-ROUTER-{chain}" in rules, rules
