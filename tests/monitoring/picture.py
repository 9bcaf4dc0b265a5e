"""Draw the dashboard's main panels from a real run, for docs/operate.md (docs/dashboard.png).

``python -m tests.monitoring.picture`` reads the scrapes that
tests/integration/test_metrics_scrape.py saved (.cache/monitoring/scrapes.json: the
operator's /metrics text about once a second while a known mix of Agents ran) and draws,
with matplotlib, what the Grafana panels of the same names show: Agents by phase,
transitions and failures by reason (cumulative), startup latency and admission wait
percentiles (histogram_quantile over the buckets so far), and the work queues. The
values are the scraped ones; nothing is made up.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
SCRAPES = ROOT / ".cache" / "monitoring" / "scrapes.json"
OUTPUT = ROOT / "docs" / "dashboard.png"

Sample = tuple[str, dict[str, str], float]


def samples(text: str) -> list[Sample]:
    """Every sample of one scrape as ``(name, labels, value)``."""
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative `buckets` (upper bound -> count)."""
    bounds = sorted(buckets)
    total = buckets.get(float("inf"), 0.0)
    if not total:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower


def series(scrapes: list[dict[str, object]]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Panel -> legend -> ``(seconds since the first scrape, value)`` points."""
    start = float(scrapes[0]["time"])  # type: ignore[arg-type]
    out: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for scrape in scrapes:
        t = float(scrape["time"]) - start  # type: ignore[arg-type]
        found = samples(str(scrape["text"]))
        by_phase: dict[str, float] = defaultdict(float)
        failures: dict[str, float] = defaultdict(float)
        histograms: dict[str, dict[float, float]] = defaultdict(dict)
        for name, labels, value in found:
            if name == "stockade_agents":
                by_phase[labels["phase"]] += value
            elif name == "stockade_agent_failures_total":
                failures[labels["reason"]] += value
            elif name.endswith("_bucket"):
                histograms[name][float(labels["le"])] = value
            elif name == "stockade_workqueue_depth":
                out["Queue depth"][labels["queue"]].append((t, value))
        for phase, value in by_phase.items():
            out["Agents by phase"][phase].append((t, value))
        for reason, value in failures.items():
            out["Failures by reason (total)"][reason].append((t, value))
        for title, metric in (
            ("Startup latency (creation to Running)", "stockade_agent_create_to_running_seconds"),
            ("Admission wait", "stockade_agent_admission_wait_seconds"),
            ("Reconcile latency", "stockade_reconcile_duration_seconds"),
        ):
            for q in (0.5, 0.9, 0.99):
                value_q = quantile(q, histograms.get(f"{metric}_bucket", {}))
                if value_q is not None:
                    out[title][f"p{round(q * 100)}"].append((t, value_q))
    return out


PANELS = (
    ("Agents by phase", ""),
    ("Failures by reason (total)", ""),
    ("Startup latency (creation to Running)", "s"),
    ("Admission wait", "s"),
    ("Reconcile latency", "s"),
    ("Queue depth", ""),
)


def draw(scrapes: list[dict[str, object]], output: Path) -> None:
    """Draw :data:`PANELS` from `scrapes` into the PNG `output`."""
    data = series(scrapes)
    fig, axes = plt.subplots(3, 2, figsize=(12, 9), constrained_layout=True)
    fig.patch.set_facecolor("#111217")
    for ax, (title, unit) in zip(axes.flat, PANELS, strict=True):
        ax.set_facecolor("#181b1f")
        ax.set_title(title, color="#ccccdc", fontsize=11, loc="left")
        ax.tick_params(colors="#9fa3ab", labelsize=8)
        for side in ax.spines.values():
            side.set_color("#2c3235")
        ax.grid(color="#2c3235", linewidth=0.6)
        for legend, points in sorted(data.get(title, {}).items()):
            xs, ys = zip(*points, strict=True)
            ax.step(xs, ys, where="post", label=legend, linewidth=1.6)
        ax.set_xlabel("seconds into the run", color="#9fa3ab", fontsize=8)
        if unit:
            ax.set_ylabel(unit, color="#9fa3ab", fontsize=8)
        if data.get(title):
            ax.legend(fontsize=7, facecolor="#181b1f", labelcolor="#ccccdc", edgecolor="#2c3235")
    fig.suptitle(
        "Stockade: one run of tests/integration/test_metrics_scrape.py (scraped /metrics)",
        color="#ccccdc",
        fontsize=12,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=80, facecolor=fig.get_facecolor())
    plt.close(fig)


def main() -> int:
    """Draw :data:`OUTPUT` from :data:`SCRAPES` (run the scrape test first)."""
    if not SCRAPES.exists():
        print(
            f"{SCRAPES} is missing: run tests/integration/test_metrics_scrape.py", file=sys.stderr
        )
        return 1
    draw(json.loads(SCRAPES.read_text()), OUTPUT)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
