"""Run the real operator (``python -m stockade``) against the local control plane.

:class:`OperatorProcess` starts it as a subprocess with the test cluster's kubeconfig and
fast retry settings, waits until its liveness endpoint answers, and can stop or
restart it (the restart test kills it mid-lifecycle). Its log goes to
``.cache/operator-<port>.log`` for post-mortems.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from kubernetes import client

from tests.integration.cluster import REPO_ROOT, Cluster, wait_for

GROUP, VERSION, PLURAL = "stockade.dev", "v1alpha1", "agents"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OperatorProcess:
    """One operator process; ``env`` overrides its STOCKADE_* settings.

    ``kubeconfig`` is the operator's own (default: the cluster's admin kubeconfig), e.g.
    one with a ServiceAccount token (tests/integration/auth.py).
    """

    def __init__(
        self,
        cluster: Cluster,
        env: dict[str, str] | None = None,
        kubeconfig: Path | None = None,
    ) -> None:
        self.cluster = cluster
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig or cluster.kubeconfig),
            "STOCKADE_BACKOFF_BASE_SECONDS": "1",
            "STOCKADE_BACKOFF_MAX_SECONDS": "4",
            # Exercise the resync LIST against the real API server in every test.
            "STOCKADE_RESYNC_SECONDS": "5",
            "STOCKADE_TERMINATING_TIMEOUT_SECONDS": "15",
            "STOCKADE_METRICS_PORT": str(self.metrics_port),
            "STOCKADE_HEALTH_PORT": str(self.health_port),
            **(env or {}),
        }
        self.log_path = REPO_ROOT / ".cache" / f"operator-{self.metrics_port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stockade"], env=self.env, stdout=log, stderr=log
        )
        wait_for(self._healthy, timeout=60, what=f"operator liveness (log: {self.log_path})")

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"operator exited: {self.log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1):
                return True
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, sig: int = signal.SIGKILL) -> None:
        self.stop(sig)
        self.start()

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            return str(r.read().decode())

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


@contextmanager
def running_operator(
    cluster: Cluster, env: dict[str, str] | None = None, kubeconfig: Path | None = None
) -> Iterator[OperatorProcess]:
    """Start an :class:`OperatorProcess` (healthy before it yields); stop it afterwards.

    The one way every suite's fixture (integration, reliability, e2e) runs the operator.
    """
    process = OperatorProcess(cluster, env=env, kubeconfig=kubeconfig)
    process.start()
    try:
        yield process
    finally:
        process.stop()


class Agents:
    """Create, read, patch and wait for Agents in one namespace."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.api = client.CustomObjectsApi(cluster.api)

    def create(self, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Agent",
            "metadata": {"name": name, **metadata},
            "spec": spec,
        }
        result = self.api.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return cast(dict[str, Any], result)

    def get(self, name: str) -> dict[str, Any]:
        result = self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        return cast(dict[str, Any], result)

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def patch(self, name: str, spec: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def wait_phase(self, name: str, *phases: str, timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("phase") in phases else None

        try:
            return wait_for(reached, timeout=timeout, what=f"Agent {name} in {phases}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstatus: {self.status(name)}") from None

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        conditions = self.status(name).get("conditions", [])
        return next((c for c in conditions if c["type"] == type_), {})

    def pods(self, name: str) -> list[client.V1Pod]:
        pods = self.cluster.core.list_namespaced_pod(
            self.namespace, label_selector=f"stockade.dev/agent={name}"
        )
        return list(pods.items)

    def events(self, name: str) -> list[client.CoreV1Event]:
        events = self.cluster.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=Agent"
        )
        return list(events.items)


def log_tail(path: Path, chars: int = 4000) -> str:
    return path.read_text()[-chars:] if path.exists() else ""
