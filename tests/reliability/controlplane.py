"""Stop and start one process of the local control plane (kwokctl's binary runtime).

kwokctl runs each component as a detached process and records its pid in
``<KWOK_WORKDIR>/clusters/<name>/pids/<component>.pid``. :class:`Component` reads the
process's command line, working directory, environment and log file from ``/proc``,
kills it, and starts the same command again (writing the new pid back, so that
``kwokctl delete cluster`` still finds it). :meth:`Component.ensure_running` puts it back
whatever happened (tests call it in ``finally``: other tests share the cluster).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.integration.cluster import REPO_ROOT, Cluster


def cluster_workdir() -> Path:
    """The kwokctl workdir of this checkout's cluster (as hack/lib.sh names it)."""
    workdir = Path(os.environ.get("KWOK_WORKDIR", REPO_ROOT / ".cache" / "kwok"))
    return workdir / "clusters" / os.environ.get("STOCKADE_CLUSTER_NAME", "stockade")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child) counts as dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Component:
    """One control-plane process as kwokctl started it."""

    name: str
    pid_file: Path
    argv: list[str]
    cwd: str
    env: dict[str, str]
    log_file: str | None

    @classmethod
    def find(cls, name: str) -> Component | None:
        """The running component `name`, or None when this is not a kwokctl cluster."""
        pid_file = cluster_workdir() / "pids" / f"{name}.pid"
        try:
            pid = int(pid_file.read_text().strip())
            proc = Path(f"/proc/{pid}")
            argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
            cwd = os.readlink(proc / "cwd")
            raw_env = (proc / "environ").read_bytes().split(b"\0")
            log_file = os.readlink(proc / "fd" / "2")
        except (OSError, ValueError):
            return None
        env = dict(e.decode().split("=", 1) for e in raw_env if b"=" in e)
        if not log_file.startswith("/") or log_file.startswith("/dev/"):
            log_file = None
        return cls(name, pid_file, argv, cwd, env, log_file)

    @property
    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid
        return pid is not None and _alive(pid)

    def kill(self) -> None:
        """SIGKILL the process (a crash, not a graceful stop) and wait until it is gone."""
        pid = self.pid
        if pid is None or not _alive(pid):
            return
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def start(self) -> None:
        """Run the recorded command line again, detached, logging where it logged."""
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        self.pid_file.write_text(str(process.pid))

    def ensure_running(self) -> None:
        if not self.running():
            self.start()


def all_components() -> list[Component]:
    """Every running component of the cluster (to restore any that died with the outage)."""
    found = (Component.find(f.stem) for f in sorted((cluster_workdir() / "pids").glob("*.pid")))
    return [component for component in found if component is not None]


def restore(components: list[Component], cluster: Cluster) -> list[str]:
    """Start again every component of `components` that is not running; wait until ready.

    Returns the names of those restarted.
    """
    restarted = [c.name for c in components if not c.running()]
    for component in components:
        component.ensure_running()
    wait_ready(cluster)
    return restarted


def ready(cluster: Cluster) -> bool:
    """The API server answers /readyz with 200 (its readiness includes etcd)."""
    try:
        method, url, headers, _, _ = cluster.api.param_serialize(
            "GET", "/readyz", auth_settings=["BearerToken"]
        )
        response = cluster.api.call_api(method, url, headers, _request_timeout=3)
        response.read()  # type: ignore[no-untyped-call]
    except Exception:
        return False
    return bool(response.status == 200)


def wait_ready(cluster: Cluster, timeout: float = 90) -> float:
    """Wait until the API server is ready; return the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if ready(cluster):
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"the API server was not ready within {timeout:.0f}s")
