"""Fixtures shared by the suites that need the local Kubernetes control plane.

tests/integration and tests/reliability both use them (one cluster per pytest session):

- `cluster` (session): starts the cluster with hack/cluster-up.sh (reusing one that is
  already up for this checkout; the binaries must be in the cache already: tests never
  build, see `pytest_configure`) and deletes it at the end if this session started it.
  With STOCKADE_USE_EXISTING_CLUSTER=1 it uses the cluster named by KUBECONFIG instead
  and never starts or stops anything. STOCKADE_KEEP_CLUSTER=1 keeps a started cluster.
- `crds` (session): Stockade's CRDs installed and Established.
- `make_namespace` / `namespace` (per test): fresh namespaces, ready for pods (their
  default ServiceAccount exists), deleted after the test.
- `operator_auth` (session): who the integration suite's operator runs as: the admin
  (default) or the Helm chart's ServiceAccount, cluster-wide or namespaced, as
  STOCKADE_TEST_AUTH says (tests/integration/auth.py). In the namespaced mode
  `make_namespace` hands out the operator's pre-created, watched namespaces instead of
  creating new ones.

The operator fixtures live with their suites: tests/integration/conftest.py runs one
operator for the whole integration package; tests/reliability runs one per test (it
kills it).
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from tests.integration.auth import OperatorAuth, auth_mode, set_up, tear_down
from tests.integration.cluster import HACK, Cluster, default_kubeconfig, resolve_binary, wait_for


def _healthy(kubeconfig: str, kubectl: str) -> bool:
    probe = subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, "get", "--raw", "/readyz"],
        capture_output=True,
        timeout=10,
    )
    return probe.returncode == 0


def pytest_configure(config: pytest.Config) -> None:
    """Nothing builds inside a test: the hack/ scripts the fixtures call (cluster-up,
    node-up, promtool) only check the binary cache, and name the `make` target that
    fills it when something is missing (hack/lib.sh ``refuse_build``). `make test` and
    `make e2e` build before pytest starts, as their own timed steps."""
    os.environ["STOCKADE_NO_BUILD"] = "1"


def run_hack(script: str) -> None:
    """Run hack/<script>; on failure end the test with the script's own error (the last
    lines of its stderr: for a missing binary, which one and the make target to run)."""
    result = subprocess.run(
        ["bash", str(HACK / script)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"hack/{script} failed (exit {result.returncode}):\n{result.stderr[-4000:]}")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if os.environ.get("STOCKADE_USE_EXISTING_CLUSTER") == "1":
        named = os.environ.get("KUBECONFIG")
        if not named:
            pytest.fail("STOCKADE_USE_EXISTING_CLUSTER=1 needs KUBECONFIG to name the cluster")
        try:
            kubectl = resolve_binary("kubectl")
        except subprocess.CalledProcessError:
            kubectl = "kubectl"
        yield Cluster(kubeconfig=Path(named), kubectl_path=kubectl)
        return

    run_hack("k8s-binaries.sh")
    kubectl = resolve_binary("kubectl")
    kubeconfig = default_kubeconfig()
    started_here = not (kubeconfig.exists() and _healthy(str(kubeconfig), kubectl))
    run_hack("cluster-up.sh")
    try:
        yield Cluster(kubeconfig=kubeconfig, kubectl_path=kubectl)
    finally:
        if started_here and os.environ.get("STOCKADE_KEEP_CLUSTER") != "1":
            subprocess.run(["bash", str(HACK / "cluster-down.sh")], check=False)


NamespaceFactory = Callable[..., str]


@pytest.fixture(scope="session")
def operator_auth(cluster: Cluster) -> Iterator[OperatorAuth]:
    """The operator's credentials and namespaces (STOCKADE_TEST_AUTH; admin by default)."""
    auth = set_up(cluster, auth_mode())
    try:
        yield auth
    finally:
        tear_down(cluster, auth)


@pytest.fixture
def make_namespace(
    cluster: Cluster, operator_auth: OperatorAuth, request: pytest.FixtureRequest
) -> Iterator[NamespaceFactory]:
    """Factory: make_namespace(labels=None) -> name of a new, pod-ready namespace.

    In the namespaced service-account mode it is the next namespace of the operator's
    pool (labelled as asked; the pool is deleted at the end of the session).
    """
    created: list[str] = []
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")

    def make(labels: dict[str, str] | None = None) -> str:
        if operator_auth.namespaces is not None:
            name = operator_auth.next_namespace()
            if labels:
                cluster.core.patch_namespace(name, {"metadata": {"labels": labels}})
        else:
            name = f"t-{slug}-{uuid.uuid4().hex[:5]}"
            cluster.create_namespace(name, labels)
            created.append(name)

        def default_sa_exists() -> bool:
            try:
                cluster.core.read_namespaced_service_account("default", name)
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        wait_for(default_sa_exists, timeout=30, what=f"ServiceAccount {name}/default")
        return name

    yield make
    cluster.delete_namespaces(created)


@pytest.fixture
def namespace(make_namespace: NamespaceFactory) -> str:
    """A fresh namespace for one test, deleted afterwards."""
    return make_namespace()


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    """Stockade's CRDs installed (server-side apply) and Established."""
    from tests.integration.crds import install_crds

    install_crds(cluster)


E2E_DIR = Path(__file__).resolve().parent / "e2e"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave ``tests/e2e`` out unless it is asked for by path (``make e2e``): it needs a
    real node (kubelet + containerd + runsc, ``make node-up``) and takes minutes."""
    if collection_path != E2E_DIR:
        return None
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if path == E2E_DIR or E2E_DIR in path.parents:
            return None
    return True
