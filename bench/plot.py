"""The benchmark's PNG: completion over time and latency distribution, Stockade vs floor."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to a file
import matplotlib.pyplot as plt


def plot(result: Mapping[str, Any], path: Path) -> None:
    """Write a two-panel PNG of the scenarios that have a floor (else all) to `path`.

    Left: Agents (pods, for the floor) Running over time since the burst started.
    Right: the empirical CDF of create-to-Running latency. Stockade's Agents solid, their
    pods dotted, the floor dashed; one colour per scenario.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    scenarios = [s for s in result["scenarios"] if s.get("floor")] or result["scenarios"]
    for i, scenario in enumerate(scenarios):
        colour = colours[i % len(colours)]
        stockade = scenario["stockade"]
        sides = [("Stockade", stockade, "-")]
        if stockade.get("pod_curve"):
            pods = {"curve": stockade["pod_curve"], "latencies": stockade.get("pod_latencies")}
            sides.append(("Stockade's pods", pods, ":"))
        if scenario.get("floor"):
            sides.append(("floor", scenario["floor"], "--"))
        for label, figures, style in sides:
            name = f"{scenario['name']} ({label})"
            curve = figures.get("curve") or []
            if curve:
                left.step(
                    [0.0] + [t for t, _ in curve],
                    [0] + [c for _, c in curve],
                    where="post",
                    linestyle=style,
                    color=colour,
                    label=name,
                )
            latencies = figures.get("latencies") or []
            if latencies:
                n = len(latencies)
                right.step(
                    latencies,
                    [(k + 1) / n for k in range(n)],
                    where="post",
                    linestyle=style,
                    color=colour,
                    label=name,
                )
    left.set(xlabel="seconds since the first create", ylabel="Running", title="Completion")
    right.set(xlabel="create-to-Running (s, client-side)", ylabel="fraction", title="Latency CDF")
    for axis in (left, right):
        axis.grid(alpha=0.3)
    right.legend(fontsize=7, loc="lower right")
    machine = result["machine"]
    fig.suptitle(
        f"Stockade vs bare pods, {result['options']['agents']} agents;"
        f" {machine['cores']} cores, load {machine['loadavg_start'][0]:.1f} at start;"
        f" git {result['git']['commit'][:10]}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
