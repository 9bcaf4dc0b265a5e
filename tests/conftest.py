"""Root test configuration: the end-to-end suite runs only when asked for by path.

``tests/e2e`` needs a real node (kubelet + containerd + runsc, ``make node-up``) and
takes minutes, so ``pytest tests`` (``make test``) leaves it out; ``pytest tests/e2e``
(``make e2e``) runs it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent / "e2e"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path != E2E_DIR:
        return None
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if path == E2E_DIR or E2E_DIR in path.parents:
            return None
    return True
