"""The operator's own token is fenced (issue 20 class 10): the chart's operatorPolicy.

A stolen operator token must not run arbitrary pods. As a ServiceAccount the chart's
``templates/operator-policy.yaml`` names (rendered with ``helm template``, applied as the
admin), with RBAC to create pods, ConfigMaps and NetworkPolicies, each request below is
sent with that account's token (server-side dry run: admission runs, nothing is
stored). Only what Stockade builds is admitted; the same objects from the admin are.
"""

from __future__ import annotations

import copy
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stockade.api.agent import AgentSpec
from stockade.build.names import MANAGED_LABELS, AgentRef
from stockade.build.pod import build_pod
from tests.integration.auth import service_account_kubeconfig
from tests.integration.cluster import Cluster, wait_for
from tests.integration.helm import Helm, set_args

UNSANDBOXED = f"t-fence-runc-{uuid.uuid4().hex[:5]}"
"""A RuntimeClass outside config.allowedRuntimeClasses (the fixture creates it)."""


@pytest.fixture(scope="module")
def fenced(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """``(namespace, kubeconfig)``: a ServiceAccount fenced as the operator's would be."""
    suffix = uuid.uuid4().hex[:5]
    namespace, account = f"t-fence-{suffix}", "stockade-operator"
    cluster.create_namespace(namespace)
    cluster.kubectl("-n", namespace, "create", "serviceaccount", account)
    cluster.kubectl(
        "-n", namespace, "create", "rolebinding", account, "--clusterrole=edit",
        f"--serviceaccount={namespace}:{account}",
    )  # fmt: skip
    values = {"serviceAccount.name": account}
    rendered = Helm().run(
        "template", f"fence-{suffix}", str(Path(__file__).parents[2] / "helm" / "stockade"),
        "--namespace", namespace, "--show-only", "templates/operator-policy.yaml",
        *set_args(values),
    ).stdout  # fmt: skip
    runtime_class = {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": UNSANDBOXED},
        "handler": "runc",
    }
    cluster.kubectl("apply", "-f", "-", stdin=rendered + "\n---\n" + yaml.safe_dump(runtime_class))
    token = cluster.kubectl("-n", namespace, "create", "token", account).strip()
    kubeconfig = service_account_kubeconfig(
        cluster, token, tmp_path_factory.mktemp("fence") / "kubeconfig"
    )
    try:
        yield namespace, kubeconfig
    finally:
        cluster.kubectl("delete", "runtimeclass", UNSANDBOXED, "--ignore-not-found", check=False)
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", stdin=rendered, check=False)
        cluster.delete_namespaces([namespace])


def dry_run(
    cluster: Cluster, kubeconfig: Path | None, manifest: dict[str, Any]
) -> tuple[bool, str]:
    """Create `manifest` with a server-side dry run, as `kubeconfig` (None: the admin)."""
    result = subprocess.run(
        [cluster.kubectl_path, "--kubeconfig", str(kubeconfig or cluster.kubeconfig),
         "create", "--dry-run=server", "-f", "-"],
        input=yaml.safe_dump(manifest), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return result.returncode == 0, result.stdout + result.stderr


def stockade_pod(namespace: str) -> dict[str, Any]:
    """A pod as the operator builds it (stockade.build.pod)."""
    spec = AgentSpec.model_validate({"image": "registry.example/agent:1", "task": "hi"})
    ref = AgentRef("fenced", namespace, str(uuid.uuid4()))
    resources = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}}
    return build_pod(ref, spec, attempt=1, runtime_class="gvisor", resources=resources)


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod["spec"]["containers"]
    return containers[0]


def _mutated(pod: dict[str, Any], change: str) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    if change == "no labels":
        pod["metadata"]["labels"] = {}
    elif change == "no owner":
        pod["metadata"].pop("ownerReferences")
    elif change == "unsandboxed":
        pod["spec"]["runtimeClassName"] = UNSANDBOXED
    elif change == "privileged":
        _container(pod)["securityContext"]["privileged"] = True
        _container(pod)["securityContext"]["allowPrivilegeEscalation"] = True
    elif change == "capability":
        _container(pod)["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]
    elif change == "host network":
        pod["spec"]["hostNetwork"] = True
    elif change == "hostPath":
        pod["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    elif change == "root":
        pod["spec"]["securityContext"]["runAsNonRoot"] = False
    return pod


def test_a_pod_stockade_builds_is_admitted_for_the_operator(
    cluster: Cluster, fenced: tuple[str, Path]
) -> None:
    namespace, kubeconfig = fenced
    pod = stockade_pod(namespace)
    wait_for(
        lambda: not dry_run(cluster, kubeconfig, _mutated(pod, "unsandboxed"))[0],
        timeout=30,
        what="the operator policy in force",
    )
    admitted, out = dry_run(cluster, kubeconfig, pod)
    assert admitted, out


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("no labels", "labelled app.kubernetes.io/managed-by=stockade"),
        ("no owner", "controlled by an Agent"),
        ("unsandboxed", "RuntimeClass of config.allowedRuntimeClasses"),
        ("privileged", "neither privileged"),
        ("capability", "add none"),
        ("host network", "no host namespaces"),
        ("hostPath", "no hostPath volumes"),
        ("root", "runAsNonRoot"),
    ],
)
def test_any_other_pod_is_refused_for_the_operator_and_not_for_the_admin(
    cluster: Cluster, fenced: tuple[str, Path], change: str, says: str
) -> None:
    """Each change alone makes the operator's token useless for that pod (on main any
    of them was admitted). The admin, who is not fenced, gets past this policy."""
    namespace, kubeconfig = fenced
    pod = _mutated(stockade_pod(namespace), change)
    wait_for(
        lambda: not dry_run(cluster, kubeconfig, _mutated(pod, "unsandboxed"))[0],
        timeout=30,
        what="the operator policy in force",
    )
    admitted, out = dry_run(cluster, kubeconfig, pod)
    assert not admitted, f"{change}: admitted for the operator"
    assert says in out, out
    if change in ("no labels", "no owner", "unsandboxed"):  # valid pods for anyone else
        assert dry_run(cluster, None, pod)[0]


@pytest.mark.parametrize("kind", ["ConfigMap", "NetworkPolicy"])
def test_only_labelled_configmaps_and_network_policies(
    cluster: Cluster, fenced: tuple[str, Path], kind: str
) -> None:
    namespace, kubeconfig = fenced
    manifest: dict[str, Any] = {
        "apiVersion": "v1" if kind == "ConfigMap" else "networking.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": f"fence-{kind.lower()}", "namespace": namespace},
    }
    if kind == "ConfigMap":
        manifest["data"] = {"task": "hi"}
    else:
        manifest["spec"] = {"podSelector": {}, "policyTypes": ["Egress"]}
    wait_for(
        lambda: not dry_run(cluster, kubeconfig, manifest)[0],
        timeout=30,
        what="the operator policy in force",
    )
    admitted, out = dry_run(cluster, kubeconfig, manifest)
    assert not admitted and "managed-by=stockade" in out, out
    assert dry_run(cluster, None, manifest)[0]  # the admin is not fenced
    labelled = copy.deepcopy(manifest)
    labelled["metadata"]["labels"] = dict(MANAGED_LABELS)
    admitted, out = dry_run(cluster, kubeconfig, labelled)
    assert admitted, out


@pytest.mark.parametrize("kind", ["ConfigMap", "Pod"])
def test_the_operator_deletes_only_what_it_labelled(
    cluster: Cluster, fenced: tuple[str, Path], kind: str
) -> None:
    """Its RBAC ``delete`` on pods and ConfigMaps reaches only managed-by objects."""
    namespace, kubeconfig = fenced
    names = {"plain": f"fence-del-{kind.lower()}", "labelled": f"fence-del-{kind.lower()}-l"}
    for which, name in names.items():
        labels = dict(MANAGED_LABELS) if which == "labelled" else {}
        if kind == "ConfigMap":
            manifest: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "data": {}}
        else:  # never scheduled (no node has this name): the object is what matters
            manifest = {
                "apiVersion": "v1",
                "kind": "Pod",
                "spec": {
                    "nodeName": "t-fence-nowhere",
                    "containers": [{"name": "c", "image": "x"}],
                },
            }
        manifest["metadata"] = {"name": name, "namespace": namespace, "labels": labels}
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))

    def delete(name: str) -> tuple[bool, str]:
        result = subprocess.run(
            [cluster.kubectl_path, "--kubeconfig", str(kubeconfig), "-n", namespace,
             "delete", "--dry-run=server", kind.lower(), name],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return result.returncode == 0, result.stdout + result.stderr

    wait_for(lambda: not delete(names["plain"])[0], timeout=30, what="the fence on DELETE")
    refused, out = delete(names["plain"])
    assert not refused and "managed-by=stockade" in out, out
    admitted, out = delete(names["labelled"])
    assert admitted, out
