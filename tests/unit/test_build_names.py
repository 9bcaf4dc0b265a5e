"""Names, labels and owner references of an Agent's children."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.api.agent import AgentSpec
from stockade.build.names import (
    AGENT_LABEL,
    ATTEMPT_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_LABELS,
    MANAGED_SELECTOR,
    SESSION_LABEL,
    AgentRef,
    agent_selector,
    child_metadata,
    configmap_name,
    labels_for,
    networkpolicy_name,
    owner_reference,
    pod_name,
    pvc_name,
    session_of,
)

REF = AgentRef("demo", "team-a", "0b6c-uid")

# A DNS-1123 label of at most 52 characters: what the CRD admits as an Agent name.
AGENT_NAMES = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?\Z", fullmatch=True)
DNS_LABEL = r"\A[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z"


def test_label_keys_and_selector() -> None:
    assert MANAGED_BY_LABEL == "app.kubernetes.io/managed-by"
    assert AGENT_LABEL == "stockade.dev/agent"
    assert SESSION_LABEL == "stockade.dev/session"
    assert ATTEMPT_LABEL == "stockade.dev/attempt"
    assert MANAGED_SELECTOR == "app.kubernetes.io/managed-by=stockade"
    assert MANAGED_LABELS == {"app.kubernetes.io/managed-by": "stockade"}


def test_labels_without_session() -> None:
    assert labels_for("demo", None) == {
        "app.kubernetes.io/managed-by": "stockade",
        "stockade.dev/agent": "demo",
    }
    assert labels_for("demo") == labels_for("demo", None)
    assert labels_for("demo", "") == labels_for("demo", None)


def test_labels_with_session() -> None:
    assert labels_for("demo", "team") == {
        "app.kubernetes.io/managed-by": "stockade",
        "stockade.dev/agent": "demo",
        "stockade.dev/session": "team",
    }


def test_agent_selector() -> None:
    assert agent_selector("demo") == {
        "app.kubernetes.io/managed-by": "stockade",
        "stockade.dev/agent": "demo",
    }


def test_names() -> None:
    assert pod_name("demo", 1) == "demo-1"
    assert pod_name("demo", 12) == "demo-12"
    assert configmap_name("demo") == "demo-input"
    assert pvc_name("demo") == "demo-workspace"
    assert networkpolicy_name("demo") == "demo-egress"


@pytest.mark.parametrize("attempt", [0, -1])
def test_pod_name_needs_a_positive_attempt(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt"):
        pod_name("demo", attempt)


@given(name=AGENT_NAMES, attempt=st.integers(min_value=1, max_value=10**9))
def test_derived_names_are_dns_labels(name: str, attempt: int) -> None:
    import re

    for derived in (
        pod_name(name, attempt),
        configmap_name(name),
        pvc_name(name),
        networkpolicy_name(name),
    ):
        assert re.match(DNS_LABEL, derived), derived


def test_owner_reference() -> None:
    assert owner_reference("stockade.dev/v1alpha1", "Agent", "demo", "u1") == {
        "apiVersion": "stockade.dev/v1alpha1",
        "kind": "Agent",
        "name": "demo",
        "uid": "u1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    ref = owner_reference("v1", "ConfigMap", "x", "u2", controller=False)
    assert ref["controller"] is False
    assert ref["blockOwnerDeletion"] is True


def test_agent_ref() -> None:
    assert REF.api_version == "stockade.dev/v1alpha1"
    assert REF.kind == "Agent"
    assert REF.owner_reference() == owner_reference(
        "stockade.dev/v1alpha1", "Agent", "demo", "0b6c-uid"
    )
    assert REF.owner_reference(controller=False)["controller"] is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        REF.name = "other"  # type: ignore[misc]
    assert AgentRef("demo", "team-a", "0b6c-uid") == REF
    assert hash(AgentRef("demo", "team-a", "0b6c-uid")) == hash(REF)


def test_session_of() -> None:
    assert session_of(AgentSpec.model_validate({"image": "i"})) is None
    member = AgentSpec.model_validate({"image": "i", "sessionRef": {"name": "team"}})
    assert session_of(member) == "team"


def test_child_metadata() -> None:
    meta = child_metadata(REF, "demo-input", "team")
    assert meta == {
        "name": "demo-input",
        "namespace": "team-a",
        "labels": labels_for("demo", "team"),
        "ownerReferences": [REF.owner_reference()],
    }
    assert "ownerReferences" not in child_metadata(REF, "x", None, owned=False)


def test_child_metadata_own_labels_win() -> None:
    meta = child_metadata(
        REF,
        "demo-1",
        None,
        extra_labels={
            "team": "blue",
            AGENT_LABEL: "forged",
            SESSION_LABEL: "someone-elses",
            "stockade.dev/anything": "x",
            MANAGED_BY_LABEL: "helm",
        },
    )
    assert meta["labels"] == {
        "team": "blue",
        AGENT_LABEL: "demo",
        MANAGED_BY_LABEL: "stockade",
    }
