"""``python -m bench``: run the benchmark scenarios and write bench/results/.

Starts (or reuses) the local control plane, installs the CRDs, adds the benchmark's fake
nodes (tainted, so the test suites' pods never land there), runs the chosen scenarios
(:mod:`bench.scenarios`) and writes ``bench/results/<UTC time>.json``, ``latest.json``,
``latest.md`` and ``latest.png``.

Examples::

    python -m bench                              # the standard set, 1000 agents
    python -m bench --agents 100                 # a quick smoke run
    python -m bench --agents 5000 --scenarios burst-forever
    python -m bench --scenarios steady --rate 5 --duration 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import stats
from bench.harness import ROOT, Kube, bench_nodes, git_info, machine_info
from bench.plot import plot
from bench.scenarios import Bench, Options

RESULTS = ROOT / "bench" / "results"
SCENARIOS = ("burst-forever", "burst-fixed", "session-one", "sessions-many", "restart", "steady")
STANDARD = ("burst-forever", "burst-fixed", "session-one", "sessions-many", "restart")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see ``--help``)."""
    ap = argparse.ArgumentParser(
        prog="python -m bench", description="Stockade against bare pods on the local cluster."
    )
    ap.add_argument("--agents", type=int, default=1000, help="Agents per scenario (1000)")
    ap.add_argument(
        "--scenarios",
        default=",".join(STANDARD),
        help=f"comma-separated, from {', '.join(SCENARIOS)} (default: all but steady)",
    )
    ap.add_argument("--concurrency", type=int, default=32, help="creates in flight (32)")
    ap.add_argument("--run-time", type=float, default=10.0, help="fixed run time, s (10)")
    ap.add_argument(
        "--session-run-time", type=float, default=1.0, help="run time of session-one members (1)"
    )
    ap.add_argument("--rate", type=float, default=5.0, help="steady: Agents per second (5)")
    ap.add_argument("--duration", type=float, default=120.0, help="steady: seconds (120)")
    ap.add_argument("--timeout", type=float, default=900.0, help="per wait, seconds (900)")
    ap.add_argument("--nodes", type=int, default=15, help="fake nodes to add (15)")
    ap.add_argument("--pods-per-node", type=int, default=400, help="pod capacity per node")
    ap.add_argument("--output", type=Path, default=RESULTS, help="results directory")
    args = ap.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def kubectl(kubeconfig: str, *args: str) -> None:
    """Run the kubectl hack/lib.sh resolves against `kubeconfig` (raises on failure)."""
    found = subprocess.run(
        ["bash", "-c", f'source "{ROOT}/hack/lib.sh" && find_bin kubectl'],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run([found, "--kubeconfig", kubeconfig, *args], check=True, capture_output=True)


def write_results(result: dict[str, Any], directory: Path) -> Path:
    """Write the run's JSON (timestamped and latest.json), latest.md and latest.png."""
    directory.mkdir(parents=True, exist_ok=True)
    problems = stats.check_result(result)
    if problems:
        raise ValueError(f"malformed result: {problems}")
    stamp = result["started"].replace(":", "").replace("-", "")
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    shutil.copyfile(path, directory / "latest.json")
    (directory / "latest.md").write_text(stats.markdown(result))
    plot(result, directory / "latest.png")
    return path


def document(
    args: argparse.Namespace,
    started: str,
    machine: dict[str, Any],
    scenarios: list[dict[str, Any]],
    failed: dict[str, str],
) -> dict[str, Any]:
    """The result document (:func:`bench.stats.check_result` shape) of what ran so far."""
    for name, extra in stats.cpu_ratios(scenarios).items():
        next(s for s in scenarios if s["name"] == name)["extra"].update(extra)
    return {
        "schema": stats.SCHEMA_VERSION,
        "started": started,
        "finished": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": git_info(),
        "machine": {**machine, "loadavg_end": list(os.getloadavg())},
        "options": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k != "output"
        },
        "scenarios": scenarios,
        "failed": failed,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up the cluster, run the scenarios, return the result document.

    The results are written after each scenario, so an interrupted run keeps what it
    measured; a scenario that raises is recorded under ``failed`` and the next one runs.
    """
    kubeconfig = os.environ.get("STOCKADE_KUBECONFIG", str(ROOT / ".cache/cluster/kubeconfig"))
    machine = machine_info()
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    subprocess.run(["bash", str(ROOT / "hack/cluster-up.sh")], check=True, capture_output=True)
    crds = str(ROOT / "crds")
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", crds)
    kubectl(kubeconfig, "wait", "--for", "condition=established", "-f", crds)
    kube = await Kube.connect(kubeconfig, pool=max(args.concurrency, 8) + 8)
    options = Options(
        kubeconfig=kubeconfig,
        agents=args.agents,
        concurrency=args.concurrency,
        run_time=args.run_time,
        session_run_time=args.session_run_time,
        rate=args.rate,
        duration=args.duration,
        timeout=args.timeout,
    )
    scenarios: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    try:
        # Memory and ephemeral storage: the operator's default request (256Mi, 1Gi) times
        # the pods per node, with room to spare.
        pods = args.pods_per_node
        nodes = bench_nodes(args.nodes, pods, cpu=pods, memory_gi=2 * pods)
        await kube.apply_nodes(nodes)
        await kube.wait_nodes_ready([n["metadata"]["name"] for n in nodes])
        bench = Bench(kube, options)
        runners = {
            "burst-forever": lambda: bench.burst(None),
            "burst-fixed": lambda: bench.burst(options.run_time),
            "session-one": bench.session_one,
            "sessions-many": bench.sessions_many,
            "restart": bench.restart,
            "steady": bench.steady,
        }
        for name in args.scenarios.split(","):
            begin = time.monotonic()
            try:
                scenario = await runners[name]()
            except Exception as exc:  # record it, run the next one
                failed[name] = f"{type(exc).__name__}: {exc}"
                bench.log(f"{name} FAILED: {failed[name]}")
                continue
            scenario["wall_seconds"] = round(time.monotonic() - begin, 1)
            scenarios.append(scenario)
            bench.log(f"{name} took {scenario['wall_seconds']} s")
            write_results(document(args, started, machine, scenarios, failed), args.output)
    finally:
        await kube.close()
    return document(args, started, machine, scenarios, failed)


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 when every scenario ran (figures may still miss their targets)."""
    args = parse_args(argv)
    result = asyncio.run(run(args))
    path = write_results(result, args.output)
    print(stats.markdown(result))
    print(f"results: {path}, {args.output}/latest.md, {args.output}/latest.png")
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
