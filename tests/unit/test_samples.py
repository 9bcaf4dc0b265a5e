"""The samples users copy (manifests/samples/): what they say and what they leave out.

The API server's verdict on them is tests/integration/test_samples.py; here, the file-level
rules: each file opens with a header comment saying what it shows and what it needs, the
kustomization lists every file, nothing of the local simulator leaks in, and the demo
(hack/run.sh) expects a phase for exactly the sample Agents.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT / "manifests" / "samples"
FILES = sorted(p for p in SAMPLES.glob("*.yaml") if p.name != "kustomization.yaml")


def _header(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_each_sample_says_what_it_shows_and_needs(path: Path) -> None:
    header = _header(path)
    assert len(header.splitlines()) >= 3, f"{path.name}: no header comment"
    assert "# Needs:" in header, f"{path.name}: the header does not say what it needs"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_samples_carry_no_simulator_fixture_or_placeholder_image(path: Path) -> None:
    text = path.read_text()
    assert "sim.stockade.dev/" not in text
    assert "ghcr.io/example" not in text


def test_the_kustomization_lists_every_sample() -> None:
    kustomization = yaml.safe_load((SAMPLES / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in FILES)


def test_the_demo_expects_a_phase_for_every_sample_agent() -> None:
    agents = {
        doc["metadata"]["name"]
        for path in FILES
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] == "Agent"
    }
    run = (REPO_ROOT / "hack" / "run.sh").read_text()
    (block,) = re.findall(r"declare -A expected=\((.*?)\)\n", run, re.DOTALL)
    expected = dict(re.findall(r"\[([a-z0-9-]+)\]=(\w+)", block))
    assert set(expected) == agents
    assert set(expected.values()) <= {"Succeeded", "Failed", "Running", "Paused"}
