"""Session and per-test fixtures for the local Kubernetes control plane.

- `cluster` (session): starts the cluster with hack/cluster-up.sh (reusing one that is
  already up for this checkout) and deletes it at the end if this session started it.
  With STOCKADE_USE_EXISTING_CLUSTER=1 it uses the cluster named by KUBECONFIG instead
  and never starts or stops anything. STOCKADE_KEEP_CLUSTER=1 keeps a started cluster.
- `namespace` (per test): a fresh namespace, ready for pods (its default ServiceAccount
  exists), deleted after the test.
- `operator_auth` (session): who the `stockade_operator` runs as: the admin (default) or
  the Helm chart's ServiceAccount, cluster-wide or namespaced, as STOCKADE_TEST_AUTH says
  (tests/integration/auth.py). In the namespaced mode `make_namespace` hands out the
  operator's pre-created, watched namespaces instead of creating new ones.
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
from tests.integration.operator import Agents, OperatorProcess


def _healthy(kubeconfig: str, kubectl: str) -> bool:
    probe = subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, "get", "--raw", "/readyz"],
        capture_output=True,
        timeout=10,
    )
    return probe.returncode == 0


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

    subprocess.run(["bash", str(HACK / "k8s-binaries.sh")], check=True)
    kubectl = resolve_binary("kubectl")
    kubeconfig = default_kubeconfig()
    started_here = not (kubeconfig.exists() and _healthy(str(kubeconfig), kubectl))
    subprocess.run(["bash", str(HACK / "cluster-up.sh")], check=True)
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


@pytest.fixture(scope="session")
def admission_policy(cluster: Cluster, crds: None) -> str:
    """The chart's ValidatingAdmissionPolicy and binding installed; the binding's name."""
    from tests.integration.admission import install_admission_policy

    return install_admission_policy(cluster)


@pytest.fixture(scope="session")
def stockade_operator(
    cluster: Cluster, crds: None, admission_policy: str, operator_auth: OperatorAuth
) -> Iterator[OperatorProcess]:
    """The real operator, running as a subprocess against the local cluster.

    It authenticates as `operator_auth` says (the admin unless STOCKADE_TEST_AUTH), and
    checks the tests' admission policy binding (the chart's own, as the chart's
    ServiceAccount: RBAC lets it read only that one).
    """
    env = {"STOCKADE_ADMISSION_POLICY_BINDING": admission_policy, **operator_auth.operator_env}
    process = OperatorProcess(cluster, env=env, kubeconfig=operator_auth.kubeconfig)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def agents(cluster: Cluster, namespace: str, stockade_operator: OperatorProcess) -> Agents:
    """Agent helpers for a fresh namespace watched by the running operator."""
    return Agents(cluster, namespace)
