"""The imperative shell of the benchmark: cluster, fake nodes, operator process, watches.

Everything that talks to the API server or to the operator subprocess lives here; the
figures are computed by :mod:`bench.stats` (pure). One asyncio client (the official
``kubernetes.aio``) creates every object, Agents and bare pods alike, with at most
``concurrency`` requests in flight, and a watch per scenario records, with the bench
process's monotonic clock, when each object is first seen Running and finished.
Requests go straight through aiohttp and answers are parsed with :mod:`json`, so the bench
process spends as little CPU as it can on the two cores it shares with the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes.aio import client
from kubernetes.aio import config as aconfig

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION = "stockade.dev", "v1alpha1"

BENCH_NODE_LABEL = "bench.stockade.dev/node"
"""Label of the benchmark's fake nodes; the benchmark's pods select it."""
BENCH_TAINT_KEY = "bench.stockade.dev/dedicated"
"""NoSchedule taint on the benchmark's nodes: the test suites' pods never land there."""

CLK_TCK = os.sysconf("SC_CLK_TCK")


def bench_nodes(count: int, pods: int, cpu: int, memory_gi: int) -> list[dict[str, Any]]:
    """Return `count` fake Node manifests for kwok (``bench-node-<i>``).

    Each has room for `pods` pods, `cpu` cores and `memory_gi` GiB (ephemeral storage as
    much as memory), carries ``kwok.x-k8s.io/node: fake`` (kwok plays only annotated nodes,
    hack/kwok/kwokctl.yaml), both sandbox labels (hack/cluster/runtimeclasses.yaml) and
    the :data:`BENCH_TAINT_KEY` taint, so only pods that tolerate it are placed there.
    """
    capacity = {
        "cpu": str(cpu),
        "memory": f"{memory_gi}Gi",
        "ephemeral-storage": f"{memory_gi}Gi",
        "pods": str(pods),
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": f"bench-node-{i}",
                "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/hostname": f"bench-node-{i}",
                    "type": "kwok-bench",
                    BENCH_NODE_LABEL: "true",
                    "sandbox.stockade.dev/gvisor": "true",
                    "katacontainers.io/kata-runtime": "true",
                },
            },
            "spec": {"taints": [{"key": BENCH_TAINT_KEY, "value": "true", "effect": "NoSchedule"}]},
            "status": {"allocatable": capacity, "capacity": capacity},
        }
        for i in range(count)
    ]


def git_info() -> dict[str, Any]:
    """``{"commit": sha, "dirty": bool}`` of the checkout the benchmark runs from."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD") or "unknown",
        "dirty": bool(git("status", "-s", "--untracked-files=no")),
    }


def machine_info() -> dict[str, Any]:
    """Cores, RAM (MiB), load average, Python and kernel of this machine."""
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_mib": mem_kib // 1024,
        "loadavg_start": list(os.getloadavg()),
        "loadavg_end": list(os.getloadavg()),
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
    }


def free_port() -> int:
    """A free loopback TCP port (chosen by the kernel)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far, seconds (/proc/<pid>/stat, proc(5))."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14, 15


def memory_mib(pid: int, key: str) -> float:
    """A ``/proc/<pid>/status`` memory line (``VmHWM`` peak RSS, ``VmRSS``), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class Operator:
    """The operator as a subprocess (``python -m stockade``) limited to some namespaces.

    Its metrics port is scraped over HTTP; its CPU time and memory are read from /proc.
    The log goes to ``.cache/bench-operator-<n>.log``.
    """

    count = 0

    def __init__(self, kubeconfig: str, namespaces: Iterable[str], env: Mapping[str, str]) -> None:
        """Start the operator; call :meth:`wait_ready` before using it."""
        Operator.count += 1
        self.port = free_port()
        self.log_path = ROOT / f".cache/bench-operator-{Operator.count}.log"
        environ = {
            **os.environ,
            **env,
            "KUBECONFIG": kubeconfig,
            "STOCKADE_NAMESPACES": ",".join(namespaces),
            "STOCKADE_METRICS_PORT": str(self.port),
            "STOCKADE_HEALTH_PORT": "0",
        }
        self.started = time.monotonic()
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stockade"], env=environ, stdout=log, stderr=log
            )
        self.profiler = self._profile(os.environ.get("BENCH_PROFILE_DIR"))

    def _profile(self, directory: str | None) -> subprocess.Popen[bytes] | None:
        """With BENCH_PROFILE_DIR set: sample the operator with py-spy (collapsed stacks).

        ``<dir>/operator-<n>.raw`` (50 Hz, non-blocking), one line per stack and count,
        for flame graphs or :file:`bench/profile.py`; py-spy must be installed.
        """
        if not directory:
            return None
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        out = Path(directory) / f"operator-{Operator.count}.raw"
        out.parent.mkdir(parents=True, exist_ok=True)
        command = [spy, "record", "-p", str(self.pid), "-r", "50", "-f", "raw", "-o", str(out)]
        return subprocess.Popen(
            [*command, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    @property
    def pid(self) -> int:
        """The operator's process id."""
        return self.proc.pid

    def scrape(self) -> str:
        """The operator's ``/metrics`` page (raises OSError when it does not answer)."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    async def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until the metrics endpoint answers (raises TimeoutError, RuntimeError)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited ({self.proc.returncode}); see {self.log_path}")
            try:
                await asyncio.to_thread(self.scrape)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("operator metrics did not answer") from None
                await asyncio.sleep(0.2)

    def cpu(self) -> float:
        """CPU seconds used so far."""
        return cpu_seconds(self.pid)

    def kill(self) -> None:
        """SIGKILL the operator (a crash: no clean shutdown) and reap it."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._profiled()

    def stop(self) -> None:
        """SIGTERM the operator and wait for it (SIGKILL after 20 s)."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        self._profiled()

    def _profiled(self) -> None:
        """Let py-spy write its profile (it stops with the operator)."""
        if self.profiler is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.profiler.wait(timeout=30)


@dataclass
class Tracked:
    """One object's client-side timeline (monotonic seconds since the scenario's t0)."""

    sent: float | None = None
    running: float | None = None
    finished: float | None = None
    finished_phase: str | None = None


RUNNING_OR_LATER = frozenset({"Running", "Succeeded", "Failed"})
FINISHED = frozenset({"Succeeded", "Failed"})


@dataclass
class Tracker:
    """Timelines by name, filled by a watch and by the creator.

    ``t0`` is the scenario's start (monotonic clock), ``cpu0`` the bench process's CPU
    time then (:func:`time.process_time`), so the harness's own cost is reported too.

    An object counts as Running when the watch first shows ``status.phase`` Running, or
    already finished (an Agent may go from Starting straight to Succeeded when its short
    run ended between two reconciles).
    """

    t0: float = field(default_factory=time.monotonic)
    cpu0: float = field(default_factory=time.process_time)
    objects: dict[str, Tracked] = field(default_factory=dict)
    ignore: set[str] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        """Start the clocks now (wall and the bench process's CPU)."""
        self.t0, self.cpu0 = time.monotonic(), time.process_time()

    def now(self) -> float:
        """Seconds since t0."""
        return time.monotonic() - self.t0

    def observe(self, name: str, phase: str | None) -> None:
        """Record what the watch showed for `name` (unless it is in ``ignore``)."""
        if name in self.ignore:
            return
        entry = self.objects.setdefault(name, Tracked())
        now = self.now()
        if phase in RUNNING_OR_LATER and entry.running is None:
            entry.running = now
            self.changed.set()
        if phase in FINISHED and entry.finished is None:
            entry.finished, entry.finished_phase = now, phase
            self.changed.set()

    def count(self, what: str) -> int:
        """How many objects reached ``running`` or ``finished``."""
        return sum(1 for e in self.objects.values() if getattr(e, what) is not None)

    async def wait_for(self, what: str, n: int, timeout: float) -> float | None:
        """Wait until `n` objects reached `what`; return the time the last one did.

        None on timeout (the caller records how many got there).
        """
        deadline = time.monotonic() + timeout
        while self.count(what) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=min(remaining, 5.0))
        reached: list[float] = [getattr(e, what) for e in self.objects.values()]
        return max(t for t in reached if t is not None)

    def latencies(self, what: str) -> list[tuple[float, float]]:
        """``(sent, reached - sent)`` for every object that reached `what`."""
        out = []
        for e in self.objects.values():
            reached = getattr(e, what)
            if reached is not None and e.sent is not None:
                out.append((e.sent, reached - e.sent))
        return out


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, text: str) -> None:
        """Record the HTTP status and the (truncated) body."""
        super().__init__(f"{status}: {text[:300]}")
        self.status = status


def path_of(kind: str, namespace: str | None = None, name: str | None = None) -> str:
    """The REST path of a collection or an object of `kind` (Pod, Agent, ...)."""
    plural = {
        "Pod": "pods",
        "Event": "events",
        "Namespace": "namespaces",
        "Node": "nodes",
        "ServiceAccount": "serviceaccounts",
        "Agent": "agents",
        "AgentSession": "agentsessions",
    }[kind]
    base = f"/apis/{GROUP}/{VERSION}" if kind.startswith("Agent") else "/api/v1"
    if namespace is not None:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return base if name is None else f"{base}/{name}"


class Kube:
    """The benchmark's API client: one aiohttp session, raw JSON in and out.

    TLS and credentials come from the kubeconfig through the official client's
    ``kubernetes.aio`` configuration loader; requests go straight through aiohttp, so
    that neither side of a comparison pays for model (de)serialization in the bench
    process.
    """

    def __init__(self, server: str, session: aiohttp.ClientSession) -> None:
        """Wrap a session (from :meth:`connect`)."""
        self.server = server
        self.session = session

    @classmethod
    async def connect(cls, kubeconfig: str, pool: int) -> Kube:
        """Connect with the kubeconfig at `kubeconfig`, with up to `pool` connections."""
        configuration = client.Configuration()
        await aconfig.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, keyfile=configuration.key_file)
        headers = {"Accept": "application/json"}
        token = (configuration.api_key or {}).get("authorization")
        if token:
            headers["Authorization"] = token
        connector = aiohttp.TCPConnector(limit=pool, ssl=context)
        session = aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None),
            read_bufsize=2**22,  # a watch event is one line; allow large objects
        )
        return cls(configuration.host, session)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.session.close()

    async def request(
        self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None
    ) -> Any:
        """Send one request; return the parsed JSON answer (raises :class:`ApiError`)."""
        kwargs: dict[str, Any] = {"params": dict(params or {})}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
            kwargs["headers"] = {"Content-Type": ctype}
        async with self.session.request(method, self.server + path, **kwargs) as response:
            text = await response.text()
            if response.status >= 300:
                raise ApiError(response.status, text)
            return json.loads(text) if text else None

    async def create_namespace(self, name: str) -> None:
        """Create namespace `name` and wait for its default ServiceAccount."""
        await self.request("POST", path_of("Namespace"), {"metadata": {"name": name}})
        while True:
            try:
                await self.request("GET", path_of("ServiceAccount", name, "default"))
                return
            except ApiError:
                await asyncio.sleep(0.2)

    async def delete_namespace(self, name: str, timeout: float) -> float | None:
        """Delete namespace `name`; return seconds until it is gone (None: timeout)."""
        start = time.monotonic()
        with contextlib.suppress(ApiError):
            await self.request("DELETE", path_of("Namespace", None, name))
        while time.monotonic() - start < timeout:
            try:
                await self.request("GET", path_of("Namespace", None, name))
            except ApiError as exc:
                if exc.status == 404:
                    return time.monotonic() - start
            await asyncio.sleep(1.0)
        return None

    async def apply_nodes(self, nodes: list[dict[str, Any]]) -> None:
        """Create each Node and write its status (capacity), or leave an existing one."""
        for node in nodes:
            try:
                await self.request("POST", path_of("Node"), node)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                continue
            # A create drops the status; kwok's node-initialize Stage copies capacity from
            # the object, so write the status subresource once.
            await self.request(
                "PATCH",
                path_of("Node", None, node["metadata"]["name"]) + "/status",
                {"status": node["status"]},
            )

    async def wait_nodes_ready(self, names: list[str], timeout: float = 120.0) -> None:
        """Wait until every named node is Ready (raises TimeoutError)."""
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending:
            listed = await self.request(
                "GET", path_of("Node"), params={"labelSelector": f"{BENCH_NODE_LABEL}=true"}
            )
            for node in listed["items"]:
                for cond in (node.get("status") or {}).get("conditions") or ():
                    if cond["type"] == "Ready" and cond["status"] == "True":
                        pending.discard(node["metadata"]["name"])
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"nodes not Ready: {sorted(pending)}")
            if pending:
                await asyncio.sleep(1.0)

    async def create(self, manifest: Mapping[str, Any]) -> None:
        """Create a namespaced object (Pod, Agent, AgentSession) as given."""
        await self.request(
            "POST", path_of(manifest["kind"], manifest["metadata"]["namespace"]), manifest
        )

    async def list(self, kind: str, namespace: str) -> dict[str, Any]:
        """LIST `kind` in `namespace` (raw JSON)."""
        listed: dict[str, Any] = await self.request("GET", path_of(kind, namespace))
        return listed

    async def watch(self, kind: str, namespace: str, tracker: Tracker) -> None:
        """Feed `tracker` from a LIST + WATCH of `kind` in `namespace` until cancelled.

        The watch restarts from the last resourceVersion, or re-lists after 410 Gone.
        """
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    listed = await self.list(kind, namespace)
                    for item in listed["items"]:
                        tracker.observe(
                            item["metadata"]["name"], (item.get("status") or {}).get("phase")
                        )
                    rv = listed["metadata"]["resourceVersion"]
                params = {
                    "watch": "true",
                    "resourceVersion": rv,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": "300",
                }
                url = self.server + path_of(kind, namespace)
                async with self.session.get(url, params=params) as response:
                    if response.status >= 300:
                        raise ApiError(response.status, await response.text())
                    async for line in response.content:
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            if obj.get("code") == 410:
                                rv = None
                            break
                        rv = obj["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED"):
                            tracker.observe(
                                obj["metadata"]["name"], (obj.get("status") or {}).get("phase")
                            )
            except Exception as exc:  # a dead watch would stall the scenario: retry
                print(f"watch {kind} {namespace}: {exc!r}; again", file=sys.stderr, flush=True)
                await asyncio.sleep(0.5)

    async def count_events(self, namespace: str, component: str) -> int:
        """Events in `namespace` whose ``reportingComponent`` is `component` (API-side count)."""
        listed = await self.request("GET", path_of("Event", namespace))
        return sum(1 for e in listed["items"] if e.get("reportingComponent") == component)


async def create_all(
    kube: Kube, manifests: list[dict[str, Any]], tracker: Tracker, concurrency: int
) -> float:
    """Create `manifests` with at most `concurrency` in flight; return seconds taken.

    Each object's ``sent`` time is taken just before its create request is sent (after
    it got a slot), so latencies do not include the wait for a slot.
    """
    slots = asyncio.Semaphore(concurrency)
    start = tracker.now()

    async def one(manifest: dict[str, Any]) -> None:
        async with slots:
            name = manifest["metadata"]["name"]
            tracker.objects.setdefault(name, Tracked()).sent = tracker.now()
            for attempt in range(5):
                try:
                    await kube.create(manifest)
                    return
                except ApiError as exc:
                    if exc.status == 409 or attempt == 4 or exc.status < 500:
                        raise
                    await asyncio.sleep(0.5 * (attempt + 1))

    await asyncio.gather(*(one(m) for m in manifests))
    return tracker.now() - start


async def create_at_rate(
    kube: Kube,
    make: Callable[[int], dict[str, Any]],
    tracker: Tracker,
    rate: float,
    duration: float,
) -> int:
    """Create ``make(i)`` at `rate` per second for `duration` seconds; return how many.

    Creates are issued on a fixed schedule (i / rate after the start), each in its own
    task, so a slow response does not delay the next one.
    """
    total = int(rate * duration)
    tasks: list[asyncio.Task[None]] = []

    async def one(manifest: dict[str, Any]) -> None:
        tracker.objects.setdefault(manifest["metadata"]["name"], Tracked()).sent = tracker.now()
        await kube.create(manifest)

    start = tracker.now()
    for i in range(total):
        delay = start + i / rate - tracker.now()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(make(i))))
    await asyncio.gather(*tasks)
    return total
