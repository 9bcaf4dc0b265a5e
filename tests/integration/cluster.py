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
) -> dict[str, Any]:
    """A one-container pod that satisfies the `restricted` Pod Security Standard.

    `privileged=True` makes it violate that standard on purpose.
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
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": dict(annotations or {})},
        "spec": spec,
    }
