"""Helpers for tests that talk to the local control plane.

`Cluster` wraps the kubeconfig that hack/cluster-up.sh writes (or the one named by
KUBECONFIG); `wait_for` polls a condition with a deadline; `pod_manifest` builds pods
that pass the Pod Security Standard `restricted` and use the kwok simulation contract
documented in hack/kwok/README.md.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

REPO_ROOT = Path(__file__).resolve().parents[2]
HACK = REPO_ROOT / "hack"

# The simulation contract (hack/kwok/README.md): pod annotations read by kwok's Stages.
SIM_EXIT_CODE = "sim.stockade.dev/exit-code"
SIM_EXIT_AFTER = "sim.stockade.dev/exit-after"
SIM_OOM_KILL = "sim.stockade.dev/oom-kill"
SIM_IMAGE_PULL = "sim.stockade.dev/image-pull"
SIM_START_DELAY = "sim.stockade.dev/start-delay"
SIM_TERMINATION_MESSAGE = "sim.stockade.dev/termination-message"
SIM_TERMINATION_GRACE = "sim.stockade.dev/termination-grace"
SIM_IGNORE_SIGTERM = "sim.stockade.dev/ignore-sigterm"
SIM_SIDECAR_KEEPS_RUNNING = "sim.stockade.dev/sidecar-keeps-running"
# Node annotation (value "stop") marking a node whose heartbeat was stopped with
# Cluster.stop_heartbeat; the Lease holder that stands for "no kubelet renews this".
SIM_HEARTBEAT = "sim.stockade.dev/heartbeat"
HEARTBEAT_STOPPED_HOLDER = "sim.stockade.dev/heartbeat-stopped"
NODE_LEASE_NAMESPACE = "kube-node-lease"

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.2, what: str = ""
) -> T:
    """Call `probe` until it returns a truthy value, and return that value.

    Raises AssertionError naming `what` (and the last value seen) after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}: last={last!r}")


@dataclass
class Cluster:
    """A reachable API server: its kubeconfig, a kubectl binary and API clients."""

    kubeconfig: Path
    kubectl_path: str
    api: client.ApiClient = field(init=False)

    def __post_init__(self) -> None:
        self.api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def coordination(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api)

    def stop_heartbeat(self, node: str) -> None:
        """Make `node` look like its kubelet died (hack/kwok/README.md, "Lost nodes").

        Its Lease gets another holder with a lease that does not expire for a year, so
        kwok's controller stops renewing it and leaves the node and its pods alone; the
        last renewTime stays as it was. The node is annotated sim.stockade.dev/heartbeat=stop.
        """
        self.coordination.patch_namespaced_lease(
            node,
            NODE_LEASE_NAMESPACE,
            {
                "spec": {
                    "holderIdentity": HEARTBEAT_STOPPED_HOLDER,
                    "leaseDurationSeconds": 365 * 24 * 3600,
                }
            },
        )
        self.core.patch_node(node, {"metadata": {"annotations": {SIM_HEARTBEAT: "stop"}}})

    def resume_heartbeat(self, node: str) -> None:
        """Undo `stop_heartbeat`: the lease expires, so kwok takes it back (within ~10 s)."""
        self.core.patch_node(node, {"metadata": {"annotations": {SIM_HEARTBEAT: None}}})
        self.coordination.patch_namespaced_lease(
            node, NODE_LEASE_NAMESPACE, {"spec": {"leaseDurationSeconds": 1}}
        )

    def create_pod(self, namespace: str, manifest: dict[str, Any]) -> client.V1Pod:
        """Create a pod from a manifest dict (the client serializes dicts as they are)."""
        return self.core.create_namespaced_pod(namespace, cast(client.V1Pod, manifest))

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """Create namespace `name` with `labels`."""
        meta = client.V1ObjectMeta(name=name, labels=dict(labels) if labels else None)
        self.core.create_namespace(client.V1Namespace(metadata=meta))

    def delete_namespaces(self, names: list[str]) -> None:
        """Delete namespaces in the background (test teardown); missing ones are fine."""
        for name in names:
            try:
                self.core.delete_namespace(name, propagation_policy="Background")
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        """Run kubectl against this cluster and return its stdout."""
        result = subprocess.run(
            [self.kubectl_path, "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result.stdout


def resolve_binary(name: str) -> str:
    """Path of a control-plane binary, resolved the way hack/lib.sh does."""
    result = subprocess.run(
        ["bash", "-c", f'source "{HACK}/lib.sh" && find_bin {name}'],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def default_kubeconfig() -> Path:
    """The fixed kubeconfig path hack/cluster-up.sh writes."""
    return Path(os.environ.get("STOCKADE_KUBECONFIG", REPO_ROOT / ".cache/cluster/kubeconfig"))


def pod_manifest(
    name: str,
    *,
    runtime_class: str | None = "gvisor",
    annotations: Mapping[str, str] | None = None,
    requests: Mapping[str, str] | None = None,
    privileged: bool = False,
    sidecar: bool = False,
) -> dict[str, Any]:
    """A one-container pod that satisfies the `restricted` Pod Security Standard.

    `privileged=True` makes it violate that standard on purpose. `sidecar=True` adds a
    second container, `proxy`, after `agent` (what a mutating webhook such as Istio's
    injects).
    """
    resources = dict(requests or {"cpu": "100m", "memory": "64Mi"})
    container: dict[str, Any] = {
        "name": "agent",
        "image": "registry.example/agent:1.0",
        "resources": {"requests": resources, "limits": resources},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if privileged:
        container["securityContext"] = {"privileged": True}
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "containers": [container],
    }
    if sidecar:
        proxy = {**container, "name": "proxy", "image": "registry.example/proxy:1.0"}
        spec["containers"].append(proxy)
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": dict(annotations or {})},
        "spec": spec,
    }


SCRATCH_TAINT = "sim.stockade.dev/scratch"


def scratch_node_manifest(name: str) -> dict[str, Any]:
    """A kwok node like those of hack/cluster/nodes.yaml, for one test to lose.

    Labelled type=kwok-scratch (not type=kwok, so the shared nodes' checks ignore it) and
    tainted sim.stockade.dev/scratch:NoSchedule, so only pods pinned to it land there
    (see `pin_to_node`).
    """
    resources = {"cpu": "8", "memory": "32Gi", "ephemeral-storage": "100Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "type": "kwok-scratch",
                "sandbox.stockade.dev/gvisor": "true",
            },
        },
        "spec": {"taints": [{"key": SCRATCH_TAINT, "effect": "NoSchedule"}]},
        "status": {"allocatable": resources, "capacity": resources},
    }


def pin_to_node(
    manifest: dict[str, Any], node: str, tolerations: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Schedule the pod of `manifest` onto scratch node `node` (plus extra tolerations)."""
    spec = manifest["spec"]
    spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    spec["tolerations"] = [
        {"key": SCRATCH_TAINT, "operator": "Exists", "effect": "NoSchedule"},
        *(tolerations or []),
    ]
    return manifest
