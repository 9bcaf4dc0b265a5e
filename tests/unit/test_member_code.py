"""Issue 20: who shapes what a member runs (stockade.core.spec), and the policy's lists.

A member with ServiceAccount, Secret or ConfigMap references of its own takes no code
from its session; the admission policy's code-shaping field lists are the core's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from stockade.api.agent import MUTABLE_SPEC_FIELDS, AgentSpec
from stockade.api.session import AgentDefaults
from stockade.config import OperatorConfig
from stockade.core.reasons import STALLING_REASONS, Reason
from stockade.core.spec import (
    AGENT_CODE_FIELDS,
    DEFAULTS_CODE_FIELDS,
    member_defaults,
    own_references,
    prepare,
)

TEMPLATE = (
    Path(__file__).resolve().parents[2]
    / "helm"
    / "stockade"
    / "templates"
    / "admission-policy.yaml"
)
SECRET_ENV = {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "api-key", "key": "k"}}}
DEFAULTS = {
    "image": "registry.example/session:1",
    "runtimeClassName": "kata",
    "network": {"egress": "Internet"},
    "env": [{"name": "NODE_OPTIONS", "value": "--require /x.js"}],
    "config": {"model": "m"},
    "resources": {"requests": {"cpu": "150m"}},
}
CONFIG = OperatorConfig(allowed_runtime_classes=("gvisor", "kata"))
# With the policy's binding present: the operator's own reference refusal is not at play.
PRESENT: dict[str, Any] = {"policy_present": True}


def member(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "m", "namespace": "team-a"},
        "spec": {"sessionRef": {"name": "team"}, **spec},
    }


def session(defaults: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "team"}, "spec": {"agentDefaults": defaults}}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"image": "x"}, []),
        ({"serviceAccountName": "robot"}, ["spec.serviceAccountName"]),
        (
            {"env": [{"name": "A", "value": "1"}, SECRET_ENV]},
            ["spec.env[1].valueFrom.secretKeyRef"],
        ),
        (
            {"env": [{"name": "C", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]},
            ["spec.env[0].valueFrom.configMapKeyRef"],
        ),
        (
            {"env": [{"name": "P", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
            [],
        ),
        (
            {"envFrom": [{"configMapRef": {"name": "c"}}, {"secretRef": {"name": "s"}}]},
            ["spec.envFrom[0].configMapRef", "spec.envFrom[1].secretRef"],
        ),
    ],
)
def test_own_references_lists_the_fields_that_name_objects(
    spec: dict[str, Any], expected: list[str]
) -> None:
    assert own_references(spec) == expected


def test_a_member_without_references_takes_every_default() -> None:
    assert member_defaults({"task": "review"}, DEFAULTS) == DEFAULTS


def test_a_member_with_its_own_references_takes_only_resources() -> None:
    mine = {"image": "registry.example/mine:1", "env": [SECRET_ENV]}
    assert member_defaults(mine, DEFAULTS) == {"resources": DEFAULTS["resources"]}


def test_a_member_with_a_secret_runs_its_own_code_whatever_its_session_says() -> None:
    """On main the session's env, network, config and sandbox came with it."""
    prepared = prepare(
        member(image="registry.example/mine:1", env=[SECRET_ENV]),
        CONFIG,
        session(DEFAULTS),
        **PRESENT,
    )
    assert prepared.error is None and prepared.spec is not None
    spec = prepared.spec
    assert spec.image == "registry.example/mine:1"
    assert [e.name for e in spec.env or ()] == ["KEY"]
    assert spec.network is None and spec.config is None
    assert prepared.runtime_class == "gvisor"  # the operator's default, not the session's
    assert prepared.resources is not None
    assert prepared.resources["requests"]["cpu"] == "150m"


@pytest.mark.parametrize("with_session", [True, False])
def test_a_member_with_a_secret_and_no_image_is_refused_at_once(with_session: bool) -> None:
    """With or without its session (GitOps may apply the member first): none may give
    it an image. On main it ran the session's."""
    prepared = prepare(
        member(env=[SECRET_ENV]), CONFIG, session(DEFAULTS) if with_session else None, **PRESENT
    )
    assert prepared.reason == Reason.OWN_IMAGE_REQUIRED
    assert prepared.error is not None
    assert prepared.error.startswith("spec.image: required")
    assert "spec.env[0].valueFrom.secretKeyRef" in prepared.error
    assert 'session "team"' in prepared.error
    assert Reason.OWN_IMAGE_REQUIRED in STALLING_REASONS


def test_pinned_defaults_obey_the_same_rule() -> None:
    """status.sessionDefaults (pinned when the member started) is a session's word too."""
    body = member(serviceAccountName="robot")
    body["status"] = {"sessionDefaults": DEFAULTS, "attempts": 1}
    assert prepare(body, CONFIG, None, **PRESENT).reason == Reason.OWN_IMAGE_REQUIRED


def test_a_member_without_references_still_gets_the_session_image() -> None:
    prepared = prepare(member(task="review"), CONFIG, session(DEFAULTS), **PRESENT)
    assert prepared.error is None and prepared.spec is not None
    assert prepared.spec.image == DEFAULTS["image"]
    assert prepared.runtime_class == "kata"


def test_an_agent_outside_sessions_is_not_concerned() -> None:
    body = {"metadata": {"name": "a", "namespace": "team-a"},
            "spec": {"image": "registry.example/mine:1", "env": [SECRET_ENV]}}  # fmt: skip
    assert prepare(body, CONFIG, None, **PRESENT).error is None


# --- the classification is complete, and the policy has the same lists --------------

NOT_CODE = frozenset(
    {
        "resources",
        "activeDeadlineSeconds",
        "startupTimeoutSeconds",
        "restartPolicy",
        "backoffLimit",
        "suspend",
        "ttlSecondsAfterFinished",
        "workspace",
        "priorityClassName",
        "nodeSelector",
        "tolerations",
    }
)
"""What decides when and where the code runs (reviewed one by one): a new AgentSpec
field fails the next test until it is put in AGENT_CODE_FIELDS or here."""


def _properties(model: type[AgentSpec] | type[AgentDefaults]) -> set[str]:
    return set(model.model_json_schema(by_alias=True)["properties"])


def test_every_agent_field_is_classified() -> None:
    assert _properties(AgentSpec) == AGENT_CODE_FIELDS | NOT_CODE
    assert not AGENT_CODE_FIELDS & NOT_CODE
    assert MUTABLE_SPEC_FIELDS <= NOT_CODE  # what may change never shapes the code


def test_the_defaults_code_fields_are_the_agents() -> None:
    assert set(DEFAULTS_CODE_FIELDS) == _properties(AgentDefaults) & AGENT_CODE_FIELDS
    assert _properties(AgentDefaults) - set(DEFAULTS_CODE_FIELDS) == {"resources"}


def _template_list(name: str) -> list[str]:
    match = re.search(r"\{\{- \$" + name + r" := list ([^}]*)\}\}", TEMPLATE.read_text())
    assert match is not None, name
    return re.findall(r'"([A-Za-z]+)"', match.group(1))


def test_the_admission_policy_checks_the_same_fields() -> None:
    assert sorted(_template_list("agentCode")) == sorted(AGENT_CODE_FIELDS)
    assert _template_list("defaultsCode") == list(DEFAULTS_CODE_FIELDS)
