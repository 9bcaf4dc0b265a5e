"""The benchmark's scenarios: burst (with the floor), steady, sessions, restart.

Each scenario runs in a namespace of its own, with an operator process of its own that
watches only that namespace (so its counters, CPU time and peak RSS belong to the
scenario), and ends by deleting the namespace while the operator still runs. The floor
runs with no operator at all: bare pods, the very pods Stockade would create (from the
operator's own :func:`stockade.build.pod.build_pod`), by the same client at the same
concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bench import stats
from bench.harness import (
    BENCH_NODE_LABEL,
    BENCH_TAINT_KEY,
    ApiError,
    Kube,
    Operator,
    Tracker,
    create_all,
    create_at_rate,
    memory_mib,
    path_of,
)
from stockade.build.names import AgentRef
from stockade.build.pod import build_pod
from stockade.config import load_config
from stockade.reconcile import prepare

IMAGE = "registry.example/agent:1.0"
EVENT_COMPONENT = "stockade.dev/operator"
WARM_UP = "warm-up"
"""Name of the Agent each operator serves before a scenario starts (not counted)."""

OPERATOR_ENV: dict[str, str] = {"STOCKADE_ALLOWED_TOLERATION_KEYS": BENCH_TAINT_KEY}
"""The operator settings of every run: Agents may tolerate the benchmark nodes' taint."""


@dataclass
class Options:
    """What to run: sizes in objects, times in seconds."""

    kubeconfig: str
    agents: int = 1000
    concurrency: int = 32
    run_time: float = 10.0
    session_run_time: float = 1.0
    rate: float = 5.0
    duration: float = 120.0
    timeout: float = 900.0


def sim_annotations(run_time: float | None) -> dict[str, str]:
    """Kwok pod annotations (hack/kwok/README.md): none runs forever, else exit 0 after."""
    if run_time is None:
        return {}
    return {"sim.stockade.dev/exit-code": "0", "sim.stockade.dev/exit-after": f"{run_time:g}s"}


def agent_manifest(
    name: str,
    namespace: str,
    run_time: float | None,
    session: str | None = None,
    ttl: int | None = None,
) -> dict[str, Any]:
    """A representative plain Agent: an image, the operator's default resources.

    It selects and tolerates the benchmark's fake nodes, and carries the kwok annotations
    that make its pod run forever (`run_time` None) or exit 0 after `run_time` seconds.
    """
    spec: dict[str, Any] = {
        "image": IMAGE,
        "nodeSelector": {BENCH_NODE_LABEL: "true"},
        "tolerations": [
            {"key": BENCH_TAINT_KEY, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
        ],
    }
    annotations = sim_annotations(run_time)
    if annotations:
        spec["podMetadata"] = {"annotations": annotations}
    if session:
        spec["sessionRef"] = {"name": session}
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {
        "apiVersion": "stockade.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def floor_pod(agent: Mapping[str, Any]) -> dict[str, Any]:
    """The pod the operator would create for `agent`'s first attempt, as a bare pod.

    Built by the operator's own code (:func:`stockade.reconcile.prepare`, then
    :func:`stockade.build.pod.build_pod`) with the benchmark's operator settings, so it
    cannot drift from what Stockade creates. The only change: no ownerReference (its
    owner does not exist, and the garbage collector would delete it).

    Raises:
        ValueError: the operator would refuse the Agent.

    """
    body = {**agent, "metadata": {**agent["metadata"], "uid": str(uuid.uuid4())}}
    config = load_config(OPERATOR_ENV)
    prepared = prepare(body, config)
    if prepared.spec is None or prepared.runtime_class is None or prepared.resources is None:
        raise ValueError(f"the operator would refuse the Agent: {prepared.error}")
    meta = body["metadata"]
    pod = build_pod(
        AgentRef(meta["name"], meta["namespace"], meta["uid"]),
        prepared.spec,
        attempt=1,
        runtime_class=prepared.runtime_class,
        resources=prepared.resources,
        config=config,
    )
    pod["metadata"].pop("ownerReferences", None)
    return pod


def _namespace(tag: str) -> str:
    return f"bench-{tag}-{uuid.uuid4().hex[:5]}"


def figures_of(
    tracker: Tracker, n: int, created: float, running: float | None, finished: float | None
) -> dict[str, Any]:
    """The client-side figures of one side (Stockade or floor) of a scenario."""
    to_running = sorted(lat for _sent, lat in tracker.latencies("running"))
    to_finished = sorted(lat for _sent, lat in tracker.latencies("finished"))
    return {
        "agents": n,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "bench_cpu_seconds": round(time.process_time() - tracker.cpu0, 2),
        "created_seconds": round(created, 3),
        "all_running_seconds": None if running is None else round(running, 3),
        "all_finished_seconds": None if finished is None else round(finished, 3),
        "reached_running": tracker.count("running"),
        "reached_finished": tracker.count("finished"),
        "running": stats.summarize(to_running),
        "finished": stats.summarize(to_finished),
        "latencies": [round(x, 3) for x in to_running],
        "curve": stats.completion_curve(
            e.running for e in tracker.objects.values() if e.running is not None
        ),
    }


async def settle(operator: Operator, quiet: float = 3.0, limit: float = 60.0) -> str:
    """Wait until the operator's write and reconcile counters stop moving for `quiet` s.

    Returns the last ``/metrics`` text (at most `limit` seconds of waiting).
    """
    deadline = time.monotonic() + limit
    last = ""
    last_key: tuple[float, float] | None = None
    stable_since = time.monotonic()
    while True:
        text = await asyncio.to_thread(operator.scrape)
        key = (
            sum(stats.parse_writes(text).values()),
            stats.sample_value(text, "stockade_reconcile_duration_seconds_count"),
        )
        now = time.monotonic()
        if key != last_key:
            last_key, stable_since = key, now
        last = text
        if now - stable_since >= quiet or now > deadline:
            return last
        await asyncio.sleep(0.5)


def operator_figures(
    operator: Operator, n: int, before: str, after: str, cpu: float, events_api: int | None
) -> dict[str, Any]:
    """Operator-side figures between two scrapes: CPU, memory, writes, reconciles."""
    writes = stats.diff_counts(stats.parse_writes(after), stats.parse_writes(before))
    reconciles = stats.sample_value(
        after, "stockade_reconcile_duration_seconds_count"
    ) - stats.sample_value(before, "stockade_reconcile_duration_seconds_count")
    events = writes.get("create events", 0.0)
    return {
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_agent": round(1000 * cpu / n, 2) if n else None,
        "peak_rss_mib": memory_mib(operator.pid, "VmHWM"),
        "rss_end_mib": memory_mib(operator.pid, "VmRSS"),
        "writes": writes,
        "writes_per_agent": stats.per_agent(writes, n),
        "writes_per_agent_excluding_events": round(stats.writes_excluding_events(writes) / n, 3)
        if n
        else None,
        "events_per_agent": round(events / n, 3) if n else None,
        "events_in_api": events_api,  # cross-check of "create events" (None: not counted)
        "reconciles": reconciles,
        "reconciles_per_agent": round(reconciles / n, 2) if n else None,
    }


class Bench:
    """Runs scenarios against one cluster with one client."""

    def __init__(self, kube: Kube, options: Options) -> None:
        """Use `kube` for every request."""
        self.kube = kube
        self.options = options

    def log(self, message: str) -> None:
        """Progress on stdout (time-stamped)."""
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    async def _cleanup(self, namespace: str) -> float | None:
        gone = await self.kube.delete_namespace(namespace, timeout=self.options.timeout)
        self.log(f"  {namespace} deleted in {gone if gone is None else round(gone, 1)} s")
        return None if gone is None else round(gone, 1)

    async def _sample_pod(self, namespace: str) -> dict[str, Any] | None:
        """The first Agent's pod as stored (defaults applied), minus what differs by run.

        The burst compares the floor's with Stockade's, so the floor provably has the
        same spec, labels and annotations (ownerReferences, names of the node and
        namespace, uid and times left out).
        """
        try:
            pod = await self.kube.request("GET", path_of("Pod", namespace, "a00000-1"))
        except ApiError:
            return None
        spec = {k: v for k, v in pod["spec"].items() if k != "nodeName"}
        meta = pod["metadata"]
        return {"spec": spec, "labels": meta.get("labels"), "annotations": meta.get("annotations")}

    async def _start_operator(self, namespace: str, warm_up: bool = True) -> Operator:
        """Start an operator for `namespace`; with `warm_up`, wait until it has served one.

        The warm-up Agent (:data:`WARM_UP`, runs forever) is created after the metrics
        port answers and must reach Running before the scenario starts, so that the
        operator's start-up (imports, kopf's first LISTs and watches) is not counted as
        per-Agent latency. It stays in the namespace; trackers ignore it.
        """
        operator = Operator(self.options.kubeconfig, [namespace], OPERATOR_ENV)
        await operator.wait_ready()
        if not warm_up:
            await asyncio.sleep(1.0)  # kopf's first LISTs
            return operator
        await self.kube.create(agent_manifest(WARM_UP, namespace, None))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            agent = await self.kube.request("GET", path_of("Agent", namespace, WARM_UP))
            if (agent.get("status") or {}).get("phase") == "Running":
                return operator
            await asyncio.sleep(0.25)
        operator.stop()
        raise TimeoutError(f"the warm-up Agent is not Running; see {operator.log_path}")

    async def floor(self, tag: str, run_time: float | None) -> dict[str, Any]:
        """Bare pods (Stockade's pod spec), no operator: the floor of a burst."""
        n, namespace = self.options.agents, _namespace(f"{tag}-floor")
        await self.kube.create_namespace(namespace)
        tracker = Tracker()
        watch = asyncio.create_task(self.kube.watch("Pod", namespace, tracker))
        try:
            pods = [floor_pod(agent_manifest(f"a{i:05d}", namespace, run_time)) for i in range(n)]
            await asyncio.sleep(0.5)
            tracker.start()
            created = await create_all(self.kube, pods, tracker, self.options.concurrency)
            running = await tracker.wait_for("running", n, self.options.timeout)
            finished = None
            if run_time is not None:
                finished = await tracker.wait_for("finished", n, self.options.timeout)
            out = figures_of(tracker, n, created, running, finished)
            out["sample_pod"] = await self._sample_pod(namespace)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        out["deleted_seconds"] = await self._cleanup(namespace)
        self.log(f"  floor: all Running after {out['all_running_seconds']} s")
        return out

    async def agents(
        self,
        tag: str,
        make: Callable[[int, str], dict[str, Any]],
        run_time: float | None,
        sessions: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """N Agents at once through a fresh operator; figures of both sides."""
        n, namespace = self.options.agents, _namespace(tag)
        await self.kube.create_namespace(namespace)
        operator = await self._start_operator(namespace)
        tracker, pods = Tracker(ignore={WARM_UP}), Tracker(ignore={f"{WARM_UP}-1"})
        watches = [
            asyncio.create_task(self.kube.watch("Agent", namespace, tracker)),
            asyncio.create_task(self.kube.watch("Pod", namespace, pods)),
        ]
        try:
            for session in sessions or ():
                session["metadata"]["namespace"] = namespace
                await self.kube.create(session)
            manifests = [make(i, namespace) for i in range(n)]
            await asyncio.sleep(0.5)
            before, cpu0 = await asyncio.to_thread(operator.scrape), operator.cpu()
            tracker.start()
            pods.t0 = tracker.t0
            created = await create_all(self.kube, manifests, tracker, self.options.concurrency)
            for name, entry in tracker.objects.items():
                pods.objects.setdefault(f"{name}-1", type(entry)()).sent = entry.sent
            running = await tracker.wait_for("running", n, self.options.timeout)
            finished = None
            if run_time is not None:
                finished = await tracker.wait_for("finished", n, self.options.timeout)
            after = await settle(operator)
            cpu = operator.cpu() - cpu0
            wall = tracker.now()
            events_api = await self.kube.count_events(namespace, EVENT_COMPONENT)
            out = figures_of(tracker, n, created, running, finished)
            out["operator"] = operator_figures(operator, n, before, after, cpu, events_api)
            out["operator"]["measured_seconds"] = round(wall, 2)
            out["operator"]["cpu_share"] = round(cpu / wall, 3) if wall > 0 else None
            pod_running = sorted(lat for _s, lat in pods.latencies("running"))
            out["pod_running"] = stats.summarize(pod_running)
            out["sample_pod"] = await self._sample_pod(namespace)
            out["pod_latencies"] = [round(x, 3) for x in pod_running]
            out["pod_curve"] = stats.completion_curve(
                e.running for e in pods.objects.values() if e.running is not None
            )
        finally:
            for watch in watches:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
        try:
            out["deleted_seconds"] = await self._cleanup(namespace)
        finally:
            operator.stop()
        self.log(
            f"  stockade: all Running after {out['all_running_seconds']} s,"
            f" CPU {out['operator']['cpu_seconds']} s,"
            f" peak RSS {out['operator']['peak_rss_mib']} MiB"
        )
        return out

    async def burst(self, run_time: float | None) -> dict[str, Any]:
        """N plain Agents at once, and the floor (same pods, same client) first."""
        n = self.options.agents
        tag = "forever" if run_time is None else "fixed"
        what = "run until deleted" if run_time is None else f"run {run_time:g} s to Succeeded"
        self.log(f"burst-{tag}: {n} at once, {what}")
        floor = await self.floor(tag, run_time)
        stockade = await self.agents(
            tag, lambda i, ns: agent_manifest(f"a{i:05d}", ns, run_time), run_time
        )
        return {
            "name": f"burst-{tag}",
            "description": f"{n} Agents at once, each {what}; the floor: {n} bare pods",
            "stockade": stockade,
            "floor": floor,
            "ratios": stats.ratios(stockade, floor),
            "extra": {
                "floor pod = Stockade's pod (spec, labels, annotations)": stockade.pop("sample_pod")
                == floor.pop("sample_pod")
            },
        }

    async def session_one(self) -> dict[str, Any]:
        """One AgentSession of 8 slots with N members (each runs session_run_time)."""
        n, run = self.options.agents, self.options.session_run_time
        self.log(f"session-one: 1 session of 8 slots, {n} members of {run:g} s")
        session = {
            "apiVersion": "stockade.dev/v1alpha1",
            "kind": "AgentSession",
            "metadata": {"name": "s"},
            "spec": {"maxAgents": 8},
        }
        stockade = await self.agents(
            "session",
            lambda i, ns: agent_manifest(f"a{i:05d}", ns, run, session="s"),
            run,
            sessions=[session],
        )
        return {
            "name": "session-one",
            "description": f"one AgentSession of 8 slots with {n} members, each runs {run:g} s",
            "stockade": stockade,
            "floor": None,
            "ratios": {},
            "extra": {},
        }

    async def sessions_many(self, size: int = 10) -> dict[str, Any]:
        """N/size AgentSessions of `size` slots, `size` members each (all admitted)."""
        n, run = self.options.agents, self.options.run_time
        count = max(1, n // size)
        self.log(f"sessions-many: {count} sessions of {size}, members run {run:g} s")
        sessions = [
            {
                "apiVersion": "stockade.dev/v1alpha1",
                "kind": "AgentSession",
                "metadata": {"name": f"s{j:04d}"},
                "spec": {"maxAgents": size},
            }
            for j in range(count)
        ]
        stockade = await self.agents(
            "sessions",
            lambda i, ns: agent_manifest(
                f"a{i:05d}", ns, run, session=f"s{(i // size) % count:04d}"
            ),
            run,
            sessions=sessions,
        )
        return {
            "name": "sessions-many",
            "description": f"{count} AgentSessions of {size} slots, {size} members each,"
            f" each runs {run:g} s",
            "stockade": stockade,
            "floor": None,
            "ratios": {},
            "extra": {},
        }

    async def steady(self) -> dict[str, Any]:
        """Agents created at a fixed rate for a fixed time; latency per minute, RSS."""
        o = self.options
        namespace = _namespace("steady")
        self.log(f"steady: {o.rate:g}/s for {o.duration:g} s, each runs {o.run_time:g} s")
        await self.kube.create_namespace(namespace)
        operator = await self._start_operator(namespace)
        tracker = Tracker(ignore={WARM_UP})
        watch = asyncio.create_task(self.kube.watch("Agent", namespace, tracker))
        try:
            rss_start = memory_mib(operator.pid, "VmRSS")
            before, cpu0 = await asyncio.to_thread(operator.scrape), operator.cpu()
            tracker.start()
            n = await create_at_rate(
                self.kube,
                lambda i: agent_manifest(f"a{i:05d}", namespace, o.run_time, ttl=5),
                tracker,
                o.rate,
                o.duration,
            )
            created = tracker.now()
            running = await tracker.wait_for("running", n, o.timeout)
            finished = await tracker.wait_for("finished", n, o.timeout)
            after = await settle(operator)
            cpu = operator.cpu() - cpu0
            wall = tracker.now()
            out = figures_of(tracker, n, created, running, finished)
            events_api = await self.kube.count_events(namespace, EVENT_COMPONENT)
            out["operator"] = operator_figures(operator, n, before, after, cpu, events_api)
            out["operator"]["measured_seconds"] = round(wall, 2)
            out["operator"]["cpu_share"] = round(cpu / wall, 3) if wall > 0 else None
            out["operator"]["rss_start_mib"] = rss_start
            out["per_minute"] = stats.per_minute(tracker.latencies("running"))
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        try:
            out["deleted_seconds"] = await self._cleanup(namespace)
        finally:
            operator.stop()
        minutes = out["per_minute"]
        return {
            "name": "steady",
            "description": f"{o.rate:g} Agents/s for {o.duration:g} s, each runs {o.run_time:g} s"
            " (deleted 5 s after it finished)",
            "stockade": out,
            "floor": None,
            "ratios": {},
            "extra": {
                "operator RSS at start (MiB)": rss_start,
                "operator RSS at end (MiB)": out["operator"]["rss_end_mib"],
                "p50 first minute (s)": minutes[0]["p50"] if minutes else None,
                "p50 last minute (s)": minutes[-1]["p50"] if minutes else None,
            },
        }

    async def restart(self) -> dict[str, Any]:
        """Kill the operator with N Agents Running, start another: re-observation, writes.

        "Re-observed" is measured two ways from the new operator's metrics: the
        ``stockade_agents`` gauge (its index) counts all N, and the reconcile counter
        (``stockade_reconcile_duration_seconds_count``) reached N (every Agent is poked
        once by the initial LIST; the counter counts runs, not distinct Agents).
        """
        n, o = self.options.agents, self.options
        namespace = _namespace("restart")
        self.log(f"restart: {n} Agents Running, SIGKILL the operator, start another")
        await self.kube.create_namespace(namespace)
        operator = await self._start_operator(namespace, warm_up=False)
        tracker = Tracker()
        watch = asyncio.create_task(self.kube.watch("Agent", namespace, tracker))
        second: Operator | None = None
        try:
            manifests = [agent_manifest(f"a{i:05d}", namespace, None) for i in range(n)]
            tracker.start()
            created = await create_all(self.kube, manifests, tracker, o.concurrency)
            running = await tracker.wait_for("running", n, o.timeout)
            first_after = await settle(operator)
            operator.kill()
            second = Operator(o.kubeconfig, [namespace], OPERATOR_ENV)
            up_at = indexed_at = reconciled_at = None
            text = ""
            while time.monotonic() - second.started < o.timeout:
                with contextlib.suppress(OSError):
                    text = await asyncio.to_thread(second.scrape)
                    t = time.monotonic() - second.started
                    up_at = t if up_at is None else up_at
                    if indexed_at is None and stats.sample_value(text, "stockade_agents") >= n:
                        indexed_at = t
                    done = stats.sample_value(text, "stockade_reconcile_duration_seconds_count")
                    if reconciled_at is None and done >= n:
                        reconciled_at = t
                    if indexed_at is not None and reconciled_at is not None:
                        break
                await asyncio.sleep(0.25)
            after = await settle(second, quiet=5.0)
            settled_at = time.monotonic() - second.started
            cpu = second.cpu()
            out = figures_of(tracker, n, created, running, None)
            out["operator"] = operator_figures(second, n, "", after, cpu, None)
            writes_after = stats.parse_writes(after)
            first_writes = stats.parse_writes(first_after)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        try:
            out["deleted_seconds"] = await self._cleanup(namespace)
        finally:
            operator.stop()
            if second is not None:
                second.stop()
        extra = {
            "metrics answering after restart (s)": None if up_at is None else round(up_at, 2),
            "all indexed after restart (s)": None if indexed_at is None else round(indexed_at, 2),
            "N reconciles after restart (s)": None
            if reconciled_at is None
            else round(reconciled_at, 2),
            "settled after restart (s)": round(settled_at, 2),
            "writes after restart": sum(writes_after.values()),
            "writes before the kill, per agent": round(sum(first_writes.values()) / n, 3),
        }
        self.log(f"  restart: {extra}")
        return {
            "name": "restart",
            "description": f"SIGKILL the operator with {n} Agents Running, start a new one"
            " (times from the new process's start)",
            "stockade": out,
            "floor": None,
            "ratios": {},
            "extra": extra,
        }
