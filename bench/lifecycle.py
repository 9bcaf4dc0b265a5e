"""Benchmark: N Agents through their whole lifecycle on the local control plane.

Starts (or reuses) the local cluster, installs the CRDs, runs the operator as a
subprocess, creates N one-shot Agents at once (each runs 2 s on the fake kubelet) and
prints measured figures:

- create-to-Running latency per Agent (from ``status.history``: p50, p95, max);
- wall time until every Agent Succeeded;
- API writes per Agent, by verb and resource (the operator's
  ``stockade_api_writes_total``), i.e. the write cost of one lifecycle;
- reconcile duration (mean) and the operator's peak resident memory.

Usage: ``python bench/lifecycle.py [--agents N] [--session]`` (``make bench``).
With ``--session`` the Agents join one AgentSession of 8 slots.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION = "stockade.dev", "v1alpha1"


def sh(*args: str) -> str:
    """Run a command; return its stdout (raises on failure)."""
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def kubectl_path() -> str:
    """The kubectl that hack/lib.sh resolves."""
    return sh("bash", "-c", f'source "{ROOT}/hack/lib.sh" && find_bin kubectl').strip()


def parse(ts: str) -> datetime:
    """An RFC 3339 timestamp."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def free_port() -> int:
    """A free loopback port."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    """The operator's /metrics text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def writes(metrics: str) -> dict[str, float]:
    """``stockade_api_writes_total`` samples as ``"verb resource (code)" -> count``."""
    out: dict[str, float] = {}
    pattern = (
        r'stockade_api_writes_total\{code="([^"]+)",resource="([^"]+)",verb="([^"]+)"\}'
        r" ([0-9.e+]+)"
    )
    for m in re.finditer(pattern, metrics):
        code, resource, verb, value = m.groups()
        key = f"{verb} {resource} ({code})"
        out[key] = out.get(key, 0) + float(value)
    return out


def sample(metrics: str, name: str) -> float:
    """The value of an unlabelled sample in /metrics text."""
    found = re.search(rf"^{name} ([0-9.e+-]+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def rss_kib(pid: int) -> int:
    """Peak resident memory (VmHWM) of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    """Run the benchmark and print its figures; 0 on success."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--session", action="store_true")
    args = ap.parse_args()

    subprocess.run(["bash", str(ROOT / "hack/cluster-up.sh")], check=True, capture_output=True)
    kubeconfig = os.environ.get("STOCKADE_KUBECONFIG", str(ROOT / ".cache/cluster/kubeconfig"))
    kubectl = kubectl_path()
    crds = str(ROOT / "crds")
    sh(
        kubectl,
        "--kubeconfig",
        kubeconfig,
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        crds,
    )
    sh(kubectl, "--kubeconfig", kubeconfig, "wait", "--for", "condition=established", "-f", crds)
    api = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    while True:
        try:
            core.read_namespaced_service_account("default", namespace)
            break
        except client.ApiException:
            time.sleep(0.2)

    metrics_port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "STOCKADE_NAMESPACES": namespace,
        "STOCKADE_METRICS_PORT": str(metrics_port),
        "STOCKADE_HEALTH_PORT": "0",
    }
    log = open(ROOT / ".cache/bench-operator.log", "w")  # noqa: SIM115
    operator = subprocess.Popen([sys.executable, "-m", "stockade"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                scrape(metrics_port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        time.sleep(2)  # let kopf finish its initial listing
        spec_extra: dict[str, Any] = {}
        if args.session:
            custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                "agentsessions",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "AgentSession",
                    "metadata": {"name": "bench"},
                    "spec": {"maxAgents": 8},
                },
            )
            spec_extra = {"sessionRef": {"name": "bench"}}
        start = time.monotonic()
        for i in range(args.agents):
            custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                "agents",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Agent",
                    "metadata": {"name": f"a{i:04d}"},
                    "spec": {
                        "image": "registry.example/agent:1.0",
                        "podMetadata": {
                            "annotations": {
                                "sim.stockade.dev/exit-code": "0",
                                "sim.stockade.dev/exit-after": "2s",
                            }
                        },
                        **spec_extra,
                    },
                },
            )
        created = time.monotonic() - start
        while True:
            listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "agents")
            items = cast(dict[str, Any], listed)["items"]
            done = [a for a in items if (a.get("status") or {}).get("phase") == "Succeeded"]
            if len(done) == args.agents:
                break
            if time.monotonic() - start > 600:
                print(f"timeout: {len(done)}/{args.agents} succeeded", file=sys.stderr)
                return 1
            time.sleep(0.5)
        total = time.monotonic() - start
        latencies = []
        for agent in items:
            created_at = parse(agent["metadata"]["creationTimestamp"])
            running = next(h for h in agent["status"]["history"] if h["to"] == "Running")
            latencies.append((parse(running["time"]) - created_at).total_seconds())
        latencies.sort()
        time.sleep(1)
        text = scrape(metrics_port)
        reconcile_sum = sample(text, "stockade_reconcile_duration_seconds_sum")
        reconcile_count = sample(text, "stockade_reconcile_duration_seconds_count")
        mode = "in one session of 8 slots" if args.session else "without a session"
        print(f"{args.agents} agents {mode} (2 s of work each), 2-core VM")
        print(f"  created in {created:.1f}s; all Succeeded after {total:.1f}s")
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        p50 = statistics.median(latencies)
        print(
            f"  create-to-Running: p50 {p50:.1f}s  p95 {p95:.1f}s"
            f"  max {latencies[-1]:.1f}s (status times have 1 s resolution)"
        )
        per_agent = reconcile_count / args.agents
        mean_ms = 1000 * reconcile_sum / reconcile_count
        print(
            f"  reconciles: {reconcile_count:.0f} ({per_agent:.1f} per agent),"
            f" mean {mean_ms:.1f} ms"
        )
        print("  API writes per agent:")
        for key, value in sorted(writes(text).items()):
            print(f"    {value / args.agents:5.2f}  {key}")
        print(f"  operator peak RSS: {rss_kib(operator.pid) / 1024:.0f} MiB")
    finally:
        operator.terminate()
        operator.wait(timeout=20)
        core.delete_namespace(namespace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
