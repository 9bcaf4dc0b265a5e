"""The pure part of the benchmark harness: percentiles, figures, ratios, tables, JSON shape.

No I/O here (``bench/harness.py`` is the imperative shell); everything is unit-tested in
``tests/unit/test_bench.py``.

Units: times in seconds (``float``), memory in MiB, CPU in seconds of user + system time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SCHEMA_VERSION = 1
"""Version of the result JSON's shape (:func:`check_result`); bump on incompatible change."""

PERCENTILES: tuple[int, ...] = (50, 90, 99)

_WRITES = re.compile(
    r"^stockade_api_writes_total\{([^}]*)\} ([0-9.eE+-]+)$",
    re.MULTILINE,
)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def percentile(values: Sequence[float], p: float) -> float:
    """Return the `p`-th percentile of `values` (nearest-rank method, no interpolation).

    The nearest-rank percentile is the smallest value such that at least ``p`` percent of
    the values are less than or equal to it (NIST / Hyndman & Fan definition 1), so it is
    always one of the measured values.

    Args:
        values: the sample, in any order; must not be empty.
        p: the percentile, 0 < p <= 100.

    Raises:
        ValueError: `values` is empty or `p` is out of range.

    """
    if not values:
        raise ValueError("percentile of an empty sample")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is not in (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[rank - 1]


def summarize(values: Sequence[float]) -> dict[str, float | int] | None:
    """Return ``{"count", "p50", "p90", "p99", "max", "mean"}`` of a latency sample (s).

    None for an empty sample (a scenario where nothing got that far).
    """
    if not values:
        return None
    out: dict[str, float | int] = {"count": len(values)}
    for p in PERCENTILES:
        out[f"p{p}"] = round(percentile(values, p), 3)
    out["max"] = round(max(values), 3)
    out["mean"] = round(sum(values) / len(values), 3)
    return out


def completion_curve(times: Iterable[float], points: int = 200) -> list[tuple[float, int]]:
    """Return the cumulative count of events over time, downsampled to about `points` steps.

    Args:
        times: when each object reached the state (seconds since the scenario's start).
        points: most points kept (the last one, all objects done, is always kept).

    Returns:
        ``[(t, count_done_by_t), ...]``, t ascending, counts strictly increasing.

    """
    ordered = sorted(times)
    if not ordered:
        return []
    step = max(1, len(ordered) // points)
    curve = [(round(t, 3), i + 1) for i, t in enumerate(ordered) if (i + 1) % step == 0]
    if curve[-1][1] != len(ordered):
        curve.append((round(ordered[-1], 3), len(ordered)))
    return curve


def per_minute(pairs: Iterable[tuple[float, float]], width: float = 60.0) -> list[dict[str, Any]]:
    """Group ``(created_at, latency)`` pairs by creation window: p50/p99 per window.

    Used by the steady scenario (latency must stay flat over time).

    Args:
        pairs: (creation time in seconds since the start, latency in seconds).
        width: window width in seconds (default one minute).

    Returns:
        ``[{"window": i, "start": i * width, "count", "p50", "p99"}, ...]`` by window.

    """
    windows: dict[int, list[float]] = {}
    for created, latency in pairs:
        windows.setdefault(int(created // width), []).append(latency)
    return [
        {
            "window": i,
            "start": i * width,
            "count": len(lat),
            "p50": round(percentile(lat, 50), 3),
            "p99": round(percentile(lat, 99), 3),
        }
        for i, lat in sorted(windows.items())
    ]


def parse_writes(metrics_text: str) -> dict[str, float]:
    """Sum ``stockade_api_writes_total`` samples by ``"<verb> <resource>"`` (all outcomes).

    Args:
        metrics_text: the operator's ``/metrics`` page (Prometheus text format).

    Returns:
        e.g. ``{"create pods": 1000.0, "patch agents/status": 2000.0, "create events": ...}``.

    """
    out: dict[str, float] = {}
    for match in _WRITES.finditer(metrics_text):
        labels = dict(_LABEL.findall(match.group(1)))
        key = f"{labels.get('verb', '?')} {labels.get('resource', '?')}"
        out[key] = out.get(key, 0.0) + float(match.group(2))
    return out


def sample_value(metrics_text: str, name: str) -> float:
    """Sum of every sample named exactly `name` (any labels) in ``/metrics`` text; 0 if none."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", re.MULTILINE)
    return sum(float(m.group(1)) for m in pattern.finditer(metrics_text))


def diff_counts(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    """``after - before`` per key, dropping keys that did not move."""
    out = {key: value - before.get(key, 0.0) for key, value in after.items()}
    return {key: value for key, value in sorted(out.items()) if value}


def per_agent(counts: Mapping[str, float], agents: int) -> dict[str, float]:
    """Each count divided by the number of Agents (3 decimals)."""
    return {key: round(value / agents, 3) for key, value in counts.items()} if agents else {}


def writes_excluding_events(counts: Mapping[str, float]) -> float:
    """Total writes except ``create events`` (the issue's per-lifecycle write budget)."""
    return sum(v for k, v in counts.items() if not k.endswith(" events"))


def ratio(value: float | None, floor: float | None) -> float | None:
    """``value / floor`` rounded to 2 decimals; None when either is missing or floor is 0."""
    if value is None or floor is None or floor == 0:
        return None
    return round(value / floor, 2)


RATIO_FIGURES: tuple[tuple[str, str], ...] = (
    ("all Running after (s)", "all_running_seconds"),
    ("all finished after (s)", "all_finished_seconds"),
    ("create-to-Running p50 (s)", "running.p50"),
    ("create-to-Running p90 (s)", "running.p90"),
    ("create-to-Running p99 (s)", "running.p99"),
)
"""Figures that have a floor: (label, key path in a scenario's ``figures``)."""

OPERATOR_FIGURES: tuple[tuple[str, str], ...] = (
    ("operator CPU (s)", "operator.cpu_seconds"),
    ("operator CPU per agent (ms)", "operator.cpu_ms_per_agent"),
    ("operator CPU share (CPU s per wall s)", "operator.cpu_share"),
    ("operator peak RSS (MiB)", "operator.peak_rss_mib"),
    ("writes per agent, Events excluded", "operator.writes_per_agent_excluding_events"),
    ("Events per agent", "operator.events_per_agent"),
    ("reconciles per agent", "operator.reconciles_per_agent"),
)
"""Figures only the operator has (no ratio)."""


def lookup(figures: Mapping[str, Any], path: str) -> Any:
    """Return ``figures[a][b]...`` for the dotted `path`; None when any step is missing."""
    node: Any = figures
    for part in path.split("."):
        if not isinstance(node, Mapping) or node.get(part) is None:
            return None
        node = node[part]
    return node


def ratios(stockade: Mapping[str, Any], floor: Mapping[str, Any]) -> dict[str, float | None]:
    """Stockade's figure over the floor's for each of :data:`RATIO_FIGURES` (key path)."""
    return {
        path: ratio(lookup(stockade, path), lookup(floor, path)) for _label, path in RATIO_FIGURES
    }


CPU_BASELINE = "burst-fixed"
"""The scenario whose operator CPU the session scenarios are compared with (same size,
plain Agents that run to Succeeded)."""
CPU_COMPARED = ("session-one", "sessions-many")


def cpu_ratios(scenarios: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Operator CPU of each session scenario over that of :data:`CPU_BASELINE` in the run.

    Returns ``{scenario name: {"operator CPU / burst-fixed's": ratio}}`` for the scenarios
    of :data:`CPU_COMPARED` present (empty without the baseline). Issue 11's target: a
    session of 1000 members costs at most 2x the CPU of 1000 Agents without one.
    """
    by_name = {s["name"]: s for s in scenarios}
    base = by_name.get(CPU_BASELINE)
    if base is None:
        return {}
    base_cpu = lookup(base["stockade"], "operator.cpu_seconds")
    return {
        name: {
            f"operator CPU / {CPU_BASELINE}'s": ratio(
                lookup(by_name[name]["stockade"], "operator.cpu_seconds"), base_cpu
            )
        }
        for name in CPU_COMPARED
        if name in by_name
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown(result: Mapping[str, Any]) -> str:
    """Render a result (:func:`check_result` shape) as Markdown: one table per scenario.

    Scenarios with a floor get three columns (floor, Stockade, ratio); the others one.
    """
    machine = result["machine"]
    lines = [
        f"# Stockade benchmark, {result['started']}",
        "",
        f"git {result['git']['commit'][:12]}{' (dirty)' if result['git']['dirty'] else ''};"
        f" {machine['cores']} cores, {machine['memory_mib']} MiB RAM, load average at start"
        f" {' / '.join(f'{x:.2f}' for x in machine['loadavg_start'])}, at end"
        f" {' / '.join(f'{x:.2f}' for x in machine['loadavg_end'])}; create concurrency"
        f" {result['options']['concurrency']}.",
        "",
    ]
    for scenario in result["scenarios"]:
        figures = scenario["stockade"]
        floor = scenario.get("floor")
        lines += [f"## {scenario['name']}: {scenario['description']}", ""]
        if floor is not None:
            lines += ["| | bare pods (the floor) | Stockade | ratio |", "| --- | --- | --- | --- |"]
            for label, path in RATIO_FIGURES:
                value, base = lookup(figures, path), lookup(floor, path)
                if value is None and base is None:
                    continue
                r = ratio(value, base)
                lines.append(
                    f"| {label} | {_fmt(base)} | {_fmt(value)} | {_fmt(r)}{'x' if r else ''} |"
                )
            for label, path in OPERATOR_FIGURES:
                lines.append(f"| {label} | - | {_fmt(lookup(figures, path))} | |")
        else:
            lines += ["| | Stockade |", "| --- | --- |"]
            for label, path in RATIO_FIGURES + OPERATOR_FIGURES:
                value = lookup(figures, path)
                if value is not None:
                    lines.append(f"| {label} | {_fmt(value)} |")
        for key, value in (scenario.get("extra") or {}).items():
            lines.append(
                f"| {key} | {_fmt(value)} |" if floor is None else f"| {key} | | {_fmt(value)} | |"
            )
        writes = lookup(figures, "operator.writes_per_agent") or {}
        if writes:
            listed = "; ".join(f"{k}: {_fmt(v)}" for k, v in writes.items())
            lines += ["", f"Operator writes per agent (verb resource: count): {listed}."]
        lines.append("")
    for name, error in (result.get("failed") or {}).items():
        lines += [f"## {name}: FAILED", "", error, ""]
    return "\n".join(lines)


REQUIRED_TOP = ("schema", "started", "finished", "git", "machine", "options", "scenarios")
REQUIRED_MACHINE = ("cores", "memory_mib", "loadavg_start", "loadavg_end", "python", "kernel")
REQUIRED_FIGURES = ("agents", "created_seconds", "all_running_seconds", "running")


def check_result(result: Mapping[str, Any]) -> list[str]:
    """Return the problems of a result document's shape (empty when it is well formed).

    The shape (``schema`` = :data:`SCHEMA_VERSION`)::

        {"schema": 1, "started": ISO time, "finished": ISO time,
         "git": {"commit": str, "dirty": bool},
         "machine": {"cores", "memory_mib", "loadavg_start": [1m, 5m, 15m],
                     "loadavg_end", "python", "kernel"},
         "options": {"agents", "concurrency", ...},
         "scenarios": [{"name", "description",
                        "stockade": FIGURES, "floor": FIGURES | null,
                        "ratios": {path: float | null}, "extra": {...}}]}

    where FIGURES holds ``agents``, ``created_seconds``, ``all_running_seconds``,
    ``all_finished_seconds`` (null for run-forever agents), ``running`` and ``finished``
    (:func:`summarize` or null), ``latencies`` (sorted create-to-Running seconds),
    ``curve`` (:func:`completion_curve`) and, for Stockade, ``operator``.
    """
    problems = [f"missing {key}" for key in REQUIRED_TOP if key not in result]
    if problems:
        return problems
    if result["schema"] != SCHEMA_VERSION:
        problems.append(f"schema {result['schema']} != {SCHEMA_VERSION}")
    problems += [f"missing machine.{k}" for k in REQUIRED_MACHINE if k not in result["machine"]]
    for key in ("commit", "dirty"):
        if key not in result["git"]:
            problems.append(f"missing git.{key}")
    for i, scenario in enumerate(result["scenarios"]):
        for key in ("name", "description", "stockade", "floor", "ratios"):
            if key not in scenario:
                problems.append(f"scenarios[{i}]: missing {key}")
        for side in ("stockade", "floor"):
            figures = scenario.get(side)
            if figures is None:
                continue
            problems += [
                f"scenarios[{i}].{side}: missing {k}" for k in REQUIRED_FIGURES if k not in figures
            ]
        if "stockade" in scenario and "operator" not in scenario["stockade"]:
            problems.append(f"scenarios[{i}].stockade: missing operator")
    return problems
