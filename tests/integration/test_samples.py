"""The samples users copy (manifests/samples/) against the real API server.

Every sample is rendered by kubectl's own kustomize (``kubectl kustomize``, as
``kubectl apply -k`` would) and sent with a server-side dry-run, so the CRD schemas, CEL
rules and strict field validation of the API server judge it, not a Python model. The pods
and workspace claims the operator would build for the sample Agents are dry-run too, in a
namespace prepared as the namespace bootstrap sample prepares one (Pod Security
``restricted``, its ResourceQuota and LimitRange): the samples fit the namespace they come
with. The local overlay (hack/samples/local/, used by ``make run``) must render and add the
simulator's annotations to every Agent, and nothing else that users would see.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes.client import V1PersistentVolumeClaim, V1Pod
from kubernetes.client.exceptions import ApiException

from stockade.api.agent import AGENT_KIND
from stockade.api.session import SESSION_KIND
from stockade.build.names import AgentRef
from stockade.build.pod import build_pod
from stockade.build.workspace import build_workspace_pvc
from stockade.config import OperatorConfig
from stockade.reconcile import prepare
from tests.conftest import NamespaceFactory
from tests.integration.cluster import REPO_ROOT, Cluster, wait_for

pytestmark = pytest.mark.integration

SAMPLES = REPO_ROOT / "manifests" / "samples"
LOCAL_OVERLAY = REPO_ROOT / "hack" / "samples" / "local"
SIM_PREFIX = "sim.stockade.dev/"


def render(cluster: Cluster, directory: Path) -> list[dict[str, Any]]:
    """The objects `directory`'s kustomization renders, by kubectl's built-in kustomize."""
    out = cluster.kubectl("kustomize", str(directory))
    return [doc for doc in yaml.safe_load_all(out) if doc]


def dry_run_apply(cluster: Cluster, docs: list[dict[str, Any]]) -> str:
    """``kubectl apply --dry-run=server`` of `docs` (strict field validation); its stdout."""
    stream = yaml.safe_dump_all(docs, sort_keys=False)
    return cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=stream
    )


def in_namespace(docs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """Deep copies of the namespaced `docs` moved into `namespace` (Namespaces left out)."""
    moved = []
    for doc in docs:
        if doc["kind"] == "Namespace":
            continue
        doc = copy.deepcopy(doc)
        doc["metadata"]["namespace"] = namespace
        moved.append(doc)
    return moved


def accepted(out: str, doc: dict[str, Any]) -> bool:
    """Whether kubectl's dry-run output names `doc` as created or configured."""
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    resource = doc["kind"].lower() + (f".{group}" if group else "")
    name = doc["metadata"]["name"]
    return any(
        line.startswith(f"{resource}/{name} ") and "(server dry run)" in line
        for line in out.splitlines()
    )


@pytest.fixture(scope="module")
def samples(cluster: Cluster) -> list[dict[str, Any]]:
    return render(cluster, SAMPLES)


def test_the_kustomization_renders_every_sample_file(samples: list[dict[str, Any]]) -> None:
    expected = []
    for path in sorted(SAMPLES.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            expected += [
                (d["kind"], d["metadata"]["name"])
                for d in yaml.safe_load_all(path.read_text())
                if d
            ]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in samples) == sorted(expected)
    namespaced = [d for d in samples if d["kind"] != "Namespace"]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"agents"}


def test_every_sample_passes_a_server_side_dry_run(
    cluster: Cluster, crds: None, make_namespace: NamespaceFactory, samples: list[dict[str, Any]]
) -> None:
    (bootstrap,) = [d for d in samples if d["kind"] == "Namespace"]
    out = dry_run_apply(cluster, [bootstrap])
    assert accepted(out, bootstrap), out

    # The bootstrap for real, in a namespace of the test's own: its labels, quota and
    # LimitRange; then everything else with a dry-run.
    namespace = make_namespace(bootstrap["metadata"]["labels"])
    rest = in_namespace(samples, namespace)
    policies = [d for d in rest if d["kind"] in ("ResourceQuota", "LimitRange")]
    assert len(policies) == 2
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(policies))
    others = [d for d in rest if d not in policies]
    out = dry_run_apply(cluster, others)
    refused = [f"{d['kind']}/{d['metadata']['name']}" for d in others if not accepted(out, d)]
    assert not refused, out
    assert {d["kind"] for d in others} == {AGENT_KIND, SESSION_KIND}


def test_the_sample_agents_pods_fit_the_bootstrapped_namespace(
    cluster: Cluster, crds: None, make_namespace: NamespaceFactory, samples: list[dict[str, Any]]
) -> None:
    """The pods (and workspace claims) the operator builds for the sample Agents pass Pod
    Security ``restricted``, the LimitRange and the ResourceQuota of namespace.yaml."""
    (bootstrap,) = [d for d in samples if d["kind"] == "Namespace"]
    namespace = make_namespace(bootstrap["metadata"]["labels"])
    rest = in_namespace(samples, namespace)
    policies = [d for d in rest if d["kind"] in ("ResourceQuota", "LimitRange")]
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(policies))
    (quota,) = [d for d in policies if d["kind"] == "ResourceQuota"]

    def quota_counted() -> bool:
        status = cluster.core.read_namespaced_resource_quota(
            quota["metadata"]["name"], namespace
        ).status
        return bool(status and status.hard)

    # Until the quota controller has counted, the API server refuses what the quota covers.
    wait_for(quota_counted, timeout=60, what="the ResourceQuota's first count")

    config = OperatorConfig()
    sessions = {d["metadata"]["name"]: d for d in rest if d["kind"] == SESSION_KIND}
    agents = [d for d in rest if d["kind"] == AGENT_KIND]
    assert agents
    for agent in agents:
        session = sessions.get((agent["spec"].get("sessionRef") or {}).get("name"))
        prepared = prepare(agent, config, session, policy_present=True)
        assert prepared.error is None, prepared.error
        assert prepared.spec and prepared.runtime_class and prepared.resources
        ref = AgentRef(agent["metadata"]["name"], namespace, str(uuid.uuid4()))
        pod = build_pod(
            ref,
            prepared.spec,
            attempt=1,
            runtime_class=prepared.runtime_class,
            resources=prepared.resources,
        )
        name = agent["metadata"]["name"]
        try:
            cluster.core.create_namespaced_pod(namespace, cast(V1Pod, pod), dry_run="All")
            claim = build_workspace_pvc(ref, prepared.spec)
            if claim is not None:
                cluster.core.create_namespaced_persistent_volume_claim(
                    namespace, cast(V1PersistentVolumeClaim, claim), dry_run="All"
                )
        except ApiException as exc:
            message = json.loads(exc.body or "{}").get("message", exc.body)
            pytest.fail(f"the pod or workspace of sample Agent {name} was refused: {message}")


def test_the_local_overlay_adds_only_the_simulator(
    cluster: Cluster, crds: None, namespace: str, samples: list[dict[str, Any]]
) -> None:
    local = render(cluster, LOCAL_OVERLAY)
    by_key = {(d["kind"], d["metadata"]["name"]): d for d in local}
    # The same objects as the samples, plus the stand-in Secret the model samples read.
    assert set(by_key) == {(d["kind"], d["metadata"]["name"]) for d in samples} | {
        ("Secret", "model-api")
    }
    assert SIM_PREFIX not in yaml.safe_dump_all(samples)
    for sample in samples:
        overlaid = by_key[(sample["kind"], sample["metadata"]["name"])]
        if sample["kind"] != AGENT_KIND:
            assert overlaid == sample
            continue
        annotations = overlaid["spec"]["podMetadata"]["annotations"]
        assert annotations and all(key.startswith(SIM_PREFIX) for key in annotations)
        without = copy.deepcopy(overlaid)
        del without["spec"]["podMetadata"]
        assert without == sample, sample["metadata"]["name"]
    out = dry_run_apply(cluster, in_namespace(local, namespace))
    assert out.count("(server dry run)") == len(local) - 1, out
