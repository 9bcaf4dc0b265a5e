"""``kubectl stockade <TAB>`` through the real kubectl: it finds ``kubectl_complete-stockade``
on PATH and returns what the plugin answered (kubernetes/kubernetes#105867)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration


def kubectl_complete(cluster: Cluster, *words: str) -> list[str]:
    """``kubectl __complete stockade WORDS`` with this virtualenv's scripts first on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [cluster.kubectl_path, "__complete", "stockade", *words],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.splitlines()


def test_kubectl_completes_the_plugins_commands_and_flags(cluster: Cluster) -> None:
    commands = kubectl_complete(cluster, "")
    assert commands[-1] == ":4"  # no file names offered instead
    assert {line.split("\t")[0] for line in commands[:-1]} >= {"run", "logs", "suspend"}
    assert kubectl_complete(cluster, "logs", "--fo") == [
        "--follow\tStream the log as it grows.",
        ":4",
    ]
