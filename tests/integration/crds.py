"""Install Stockade's CRDs (the committed crds/*.yaml) into a test cluster.

`install_crds(cluster)` server-side applies every file in crds/ and waits until each
CRD is Established; it is idempotent, so any fixture may call it.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.cluster import REPO_ROOT, Cluster

CRD_DIR = REPO_ROOT / "crds"
FIELD_MANAGER = "stockade-tests"


def crd_files() -> list[Path]:
    """The CRD manifests, in a stable order."""
    return sorted(CRD_DIR.glob("*.yaml"))


def install_crds(cluster: Cluster, timeout: str = "60s") -> list[str]:
    """Apply crds/*.yaml to `cluster` and wait until they are Established.

    Returns the CRD names (``agents.stockade.dev``, ...). Applying again is harmless:
    server-side apply with a fixed field manager (and --force-conflicts, so that a
    copy applied by hand or by the Helm chart is taken over) converges to the files.
    """
    files = crd_files()
    if not files:
        raise AssertionError(f"no CRDs in {CRD_DIR}: run `make crds`")
    names: list[str] = []
    for path in files:
        out = cluster.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            f"--field-manager={FIELD_MANAGER}",
            "-f",
            str(path),
            "-o",
            "name",
        )
        names.extend(line.strip() for line in out.splitlines() if line.strip())
    cluster.kubectl("wait", "--for", "condition=established", f"--timeout={timeout}", *names)
    return [name.split("/", 1)[-1] for name in names]
