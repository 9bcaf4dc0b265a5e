"""The workspace PersistentVolumeClaim."""

from __future__ import annotations

from stockade.build.names import labels_for
from stockade.build.workspace import build_workspace_pvc
from tests.unit.conftest import REF, spec


def test_no_workspace_no_claim() -> None:
    assert build_workspace_pvc(REF, spec()) is None


def test_owned_claim() -> None:
    pvc = build_workspace_pvc(REF, spec(workspace={"size": "5Gi"}))
    assert pvc == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "demo-workspace",
            "namespace": "team-a",
            "labels": labels_for("demo"),
            "ownerReferences": [REF.owner_reference()],
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "5Gi"}},
        },
    }
    assert pvc["metadata"]["ownerReferences"][0]["controller"] is True


def test_storage_class() -> None:
    pvc = build_workspace_pvc(REF, spec(workspace={"size": "1Gi", "storageClassName": "fast"}))
    assert pvc is not None
    assert pvc["spec"]["storageClassName"] == "fast"


def test_retained_claim_has_no_owner() -> None:
    pvc = build_workspace_pvc(REF, spec(workspace={"size": "1Gi", "retain": True}))
    assert pvc is not None
    assert "ownerReferences" not in pvc["metadata"]
    # Who created it: only that Agent mounts it without spec.workspace.reuse.
    assert pvc["metadata"]["annotations"] == {
        "stockade.dev/retained": "true",
        "stockade.dev/retained-by": REF.uid,
    }
    assert pvc["metadata"]["labels"] == labels_for("demo")


def test_not_retained_has_no_annotation() -> None:
    pvc = build_workspace_pvc(REF, spec(workspace={"size": "1Gi", "retain": False}))
    assert pvc is not None
    assert "annotations" not in pvc["metadata"]
    assert "storageClassName" not in pvc["spec"]


def test_session_label() -> None:
    pvc = build_workspace_pvc(REF, spec(workspace={"size": "1Gi"}, sessionRef={"name": "s"}))
    assert pvc is not None
    assert pvc["metadata"]["labels"] == labels_for("demo", "s")


def test_deterministic() -> None:
    agent = spec(workspace={"size": "1Gi", "storageClassName": "x", "retain": True})
    assert build_workspace_pvc(REF, agent) == build_workspace_pvc(REF, agent)
