"""Nothing builds inside a test (issue: the node build ran under pytest's timeout).

tests/conftest.py sets STOCKADE_NO_BUILD=1 for the whole run; with it, every hack/
script that would build (the control plane, promtool, the node's packages, binaries
and images) stops on an empty cache with an error naming the `make` target to run,
instead of building for minutes under a fixture's timeout.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

HACK = Path(__file__).resolve().parents[2] / "hack"


def test_the_test_run_forbids_builds() -> None:
    assert os.environ.get("STOCKADE_NO_BUILD") == "1"


@pytest.mark.parametrize(
    ("script", "target"),
    [
        ("k8s-binaries.sh", "make binaries"),
        ("cluster-up.sh", "make binaries"),
        ("promtool.sh", "make promtool"),
        ("node-binaries.sh", "make node-binaries"),
    ],
)
def test_a_build_script_on_an_empty_cache_names_its_make_target(
    tmp_path: Path, script: str, target: str
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"STOCKADE_K8S_BIN", "KUBEBUILDER_ASSETS", "STOCKADE_PROMTOOL"}
    }
    env |= {"STOCKADE_CACHE_DIR": str(tmp_path / "cache"), "STOCKADE_NO_BUILD": "1"}
    env["KWOK_WORKDIR"] = str(tmp_path / "kwok")
    env["STOCKADE_KUBECONFIG"] = str(tmp_path / "kubeconfig")
    # kubectl on PATH within skew would stand in for the cached one: hide PATH's.
    env["PATH"] = "/usr/bin:/bin:/usr/sbin:/sbin"
    result = subprocess.run(
        ["bash", str(HACK / script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0, result.stderr
    assert "tests do not build" in result.stderr and f"`{target}`" in result.stderr, result.stderr
    assert not list((tmp_path / "cache").rglob("*/bin/*")), "a build started"
