"""Who the operator under test is: the cluster admin, or the Helm chart's ServiceAccount.

``STOCKADE_TEST_AUTH`` selects it for the ``stockade_operator`` fixture:

- ``admin`` (default): the operator uses the test cluster's admin kubeconfig.
- ``serviceaccount-cluster``: the chart is installed with ``operator.enabled=false``
  (ServiceAccount and RBAC only, ``rbac.scope=cluster``), a token of its ServiceAccount
  is minted through the TokenRequest API (``kubectl create token``) and written into a
  kubeconfig, and the operator runs with that: it can do exactly what the chart grants.
- ``serviceaccount-namespaced``: the same with ``rbac.scope=namespaced`` over a pool of
  namespaces created up front (``STOCKADE_TEST_NAMESPACE_POOL``, default 96); the
  operator watches only those (``STOCKADE_NAMESPACES``) and the ``make_namespace``
  fixture hands them out instead of creating new ones.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.cluster import REPO_ROOT, Cluster
from tests.integration.helm import NO_CRDS, Helm

AUTH_ENV = "STOCKADE_TEST_AUTH"
POOL_ENV = "STOCKADE_TEST_NAMESPACE_POOL"
ADMIN = "admin"
SA_CLUSTER = "serviceaccount-cluster"
SA_NAMESPACED = "serviceaccount-namespaced"
MODES = (ADMIN, SA_CLUSTER, SA_NAMESPACED)


def auth_mode() -> str:
    """The mode named by STOCKADE_TEST_AUTH (default admin); anything else is an error."""
    mode = os.environ.get(AUTH_ENV, ADMIN) or ADMIN
    if mode not in MODES:
        raise ValueError(f"{AUTH_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


def service_account_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    """Write a kubeconfig for `cluster`'s API server that authenticates with `token`."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    contexts = {c["name"]: c["context"] for c in admin["contexts"]}
    cluster_name = contexts[admin["current-context"]]["cluster"]
    (entry,) = [c for c in admin["clusters"] if c["name"] == cluster_name]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [entry],
        "users": [{"name": "stockade-operator", "user": {"token": token}}],
        "contexts": [
            {
                "name": "stockade-operator",
                "context": {"cluster": cluster_name, "user": "stockade-operator"},
            }
        ],
        "current-context": "stockade-operator",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@dataclass
class OperatorAuth:
    """How the operator under test authenticates, and where it may work.

    Attributes:
        mode: one of :data:`MODES`.
        kubeconfig: the operator's kubeconfig (None: the cluster's admin kubeconfig).
        namespaces: the namespace pool of the namespaced mode (None otherwise).
        release / namespace / service_account: the chart's release, its namespace and
            ServiceAccount name (service-account modes).

    """

    mode: str = ADMIN
    kubeconfig: Path | None = None
    namespaces: list[str] | None = None
    release: str = ""
    namespace: str = ""
    service_account: str = ""
    _handed_out: int = field(default=0, repr=False)

    @property
    def username(self) -> str:
        """The API server's name for the operator's ServiceAccount."""
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    @property
    def operator_env(self) -> dict[str, str]:
        """Extra environment of the operator process."""
        env = {"STOCKADE_NAMESPACES": ",".join(self.namespaces)} if self.namespaces else {}
        if self.release:
            # The release's own policy binding (<fullname>-references; the release name
            # contains "stockade", so it is the fullname): the one its RBAC may read.
            env["STOCKADE_ADMISSION_POLICY_BINDING"] = f"{self.release}-references"
        return env

    def next_namespace(self) -> str:
        """Hand out the next unused namespace of the pool."""
        assert self.namespaces is not None
        if self._handed_out >= len(self.namespaces):
            raise AssertionError(
                f"the namespace pool ({len(self.namespaces)}) is used up: raise {POOL_ENV}"
            )
        name = self.namespaces[self._handed_out]
        self._handed_out += 1
        return name


def set_up(cluster: Cluster, mode: str) -> OperatorAuth:
    """Install the chart's ServiceAccount and RBAC for `mode` and mint the token."""
    if mode == ADMIN:
        return OperatorAuth()
    suffix = uuid.uuid4().hex[:5]
    release = namespace = f"stockade-sa-{suffix}"
    values: dict[str, Any] = {"operator.enabled": False, "metrics.service.enabled": False}
    pool: list[str] | None = None
    if mode == SA_NAMESPACED:
        size = int(os.environ.get(POOL_ENV, "96"))
        pool = [f"t-pool-{suffix}-{i:02d}" for i in range(size)]
        for name in pool:
            cluster.core.create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
            )
        values.update({"rbac.scope": "namespaced", "watchNamespaces": pool})
    helm = Helm(cluster.kubeconfig)
    # The CRDs are installed by the `crds` fixture; the chart's copies are not needed.
    helm.install(release, namespace, {**values, **NO_CRDS})
    token = cluster.kubectl("-n", namespace, "create", "token", release, "--duration", "2h").strip()
    kubeconfig = service_account_kubeconfig(
        cluster, token, REPO_ROOT / ".cache" / "operator-auth" / f"{release}.kubeconfig"
    )
    return OperatorAuth(
        mode=mode,
        kubeconfig=kubeconfig,
        namespaces=pool,
        release=release,
        namespace=namespace,
        service_account=release,
    )


def tear_down(cluster: Cluster, auth: OperatorAuth) -> None:
    """Uninstall the release and delete its namespace and the pool (best effort)."""
    if auth.mode == ADMIN:
        return
    Helm(cluster.kubeconfig).uninstall(auth.release, auth.namespace)
    for name in [auth.namespace, *(auth.namespaces or [])]:
        try:
            cluster.core.delete_namespace(name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
    if auth.kubeconfig is not None:
        auth.kubeconfig.unlink(missing_ok=True)


@contextmanager
def gateway_ca_reader(
    cluster: Cluster, auth: OperatorAuth, namespace: str, configmap: str
) -> Iterator[None]:
    """Grant the ServiceAccount what the chart grants with ``gateway.enabled=true``.

    The suite's operator is configured with a gateway (its address and CA ConfigMap in
    `namespace`, the operator's namespace there); the chart then binds the Role
    ``<release>-gateway-ca-reader`` (``get`` on that one ConfigMap, by name) in the
    operator's namespace. The same Role and RoleBinding are made in `namespace` for
    `auth`'s ServiceAccount, and removed on exit. Nothing to do as the admin.
    """
    if auth.mode == ADMIN:
        yield
        return
    core, rbac = client.CoreV1Api(cluster.api), client.RbacAuthorizationV1Api(cluster.api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    except ApiException as exc:
        if exc.status != 409:
            raise
    name = f"{auth.release}-gateway-ca-reader"
    rule = client.V1PolicyRule(
        api_groups=[""], resources=["configmaps"], resource_names=[configmap], verbs=["get"]
    )
    rbac.create_namespaced_role(
        namespace, client.V1Role(metadata=client.V1ObjectMeta(name=name), rules=[rule])
    )
    subject = client.RbacV1Subject(
        kind="ServiceAccount", name=auth.service_account, namespace=auth.namespace
    )
    binding = client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name=name),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=name),
        subjects=[subject],
    )
    rbac.create_namespaced_role_binding(namespace, binding)
    try:
        yield
    finally:
        for delete in (rbac.delete_namespaced_role_binding, rbac.delete_namespaced_role):
            try:
                delete(name, namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
