"""The admission policy's own integrity (issue 20, class 4): core.policy_integrity."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from stockade.config import OperatorConfig
from stockade.core.policy_fingerprint import EXPECTED
from stockade.core.policy_integrity import (
    PROBLEM_REASONS,
    judge_admission_policy,
    policy_fingerprint,
)
from stockade.reconcile import Reconciler
from stockade.runtime import metrics
from tests.unit.conftest import FakeKube

INSTALL = Path(__file__).resolve().parents[2] / "manifests" / "install.yaml"


def _rendered(kind: str) -> dict[str, Any]:
    """The chart's `kind` object as manifests/install.yaml renders it."""
    with INSTALL.open() as f:
        found = [
            d
            for d in yaml.safe_load_all(f)
            if d and d.get("kind") == kind and d["metadata"]["name"].endswith("-references")
        ]
    assert len(found) == 1
    result: dict[str, Any] = found[0]
    return result


def chart_policy() -> dict[str, Any]:
    """The chart's ValidatingAdmissionPolicy, as the API server returns it (defaulted)."""
    policy = copy.deepcopy(_rendered("ValidatingAdmissionPolicy"))
    match = policy["spec"]["matchConstraints"]
    match.update(matchPolicy="Equivalent", namespaceSelector={}, objectSelector={})
    for rule in match["resourceRules"]:
        rule.setdefault("scope", "*")
    return policy


def chart_binding() -> dict[str, Any]:
    """The chart's binding, defaulted as the API server returns it."""
    binding = copy.deepcopy(_rendered("ValidatingAdmissionPolicyBinding"))
    binding["spec"]["matchResources"] = {
        "matchPolicy": "Equivalent",
        "namespaceSelector": {},
        "objectSelector": {},
    }
    return binding


def test_the_generated_fingerprint_is_the_charts() -> None:
    """Fails when the template changed without `make manifests` (the artifact drifts)."""
    assert policy_fingerprint(_rendered("ValidatingAdmissionPolicy")["spec"]) == EXPECTED


def test_api_server_defaults_do_not_change_the_fingerprint() -> None:
    assert policy_fingerprint(chart_policy()["spec"]) == EXPECTED


def test_the_charts_policy_and_binding_are_trusted() -> None:
    verdict = judge_admission_policy(chart_binding(), chart_policy(), EXPECTED)
    assert verdict.present, verdict.why


def _edited_expression() -> tuple[dict[str, Any], dict[str, Any]]:
    policy = chart_policy()
    policy["spec"]["validations"][0]["expression"] = "true"
    return chart_binding(), policy


def _dropped_variable() -> tuple[dict[str, Any], dict[str, Any]]:
    policy = chart_policy()
    policy["spec"]["variables"].pop()
    return chart_binding(), policy


def _narrowed_match() -> tuple[dict[str, Any], dict[str, Any]]:
    policy = chart_policy()
    policy["spec"]["matchConstraints"]["resourceRules"][0]["operations"] = ["CREATE"]
    return chart_binding(), policy


def _policy_selector() -> tuple[dict[str, Any], dict[str, Any]]:
    policy = chart_policy()
    policy["spec"]["matchConstraints"]["namespaceSelector"] = {"matchLabels": {"x": "y"}}
    return chart_binding(), policy


def _ignore_failures() -> tuple[dict[str, Any], dict[str, Any]]:
    policy = chart_policy()
    policy["spec"]["failurePolicy"] = "Ignore"
    return chart_binding(), policy


def _warn_only() -> tuple[dict[str, Any], dict[str, Any]]:
    binding = chart_binding()
    binding["spec"]["validationActions"] = ["Warn", "Audit"]
    return binding, chart_policy()


def _namespace_selector() -> tuple[dict[str, Any], dict[str, Any]]:
    binding = chart_binding()
    binding["spec"]["matchResources"]["namespaceSelector"] = {"matchLabels": {"a": "b"}}
    return binding, chart_policy()


def _object_selector() -> tuple[dict[str, Any], dict[str, Any]]:
    binding = chart_binding()
    binding["spec"]["matchResources"]["objectSelector"] = {
        "matchExpressions": [{"key": "k", "operator": "Exists"}]
    }
    return binding, chart_policy()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_edited_expression, "policy-changed"),
        (_dropped_variable, "policy-changed"),
        (_narrowed_match, "policy-changed"),
        (_policy_selector, "policy-changed"),
        (_ignore_failures, "policy-changed"),
        (_warn_only, "not-denying"),
        (_namespace_selector, "match-restricted"),
        (_object_selector, "match-restricted"),
    ],
)
def test_a_changed_policy_or_binding_is_not_trusted(make: Any, reason: str) -> None:
    binding, policy = make()
    verdict = judge_admission_policy(binding, policy, EXPECTED)
    assert verdict.reason == reason, verdict.why
    assert reason in PROBLEM_REASONS


def test_missing_binding_or_policy() -> None:
    assert judge_admission_policy(None, None, EXPECTED).reason == "binding-missing"
    assert judge_admission_policy(chart_binding(), None, EXPECTED).reason == "policy-missing"


def _problem(reason: str) -> float:
    value: float = metrics.ADMISSION_POLICY_PROBLEM.labels(reason=reason)._value.get()
    return value


@pytest.mark.parametrize(
    ("policy", "present", "reason"),
    [
        ("chart", True, None),
        ("edited", False, "policy-changed"),
        (None, False, "policy-missing"),
        (RuntimeError("403 Forbidden"), False, "unreadable"),
    ],
)
def test_the_reconciler_reads_the_policy_the_binding_names(
    policy: Any, present: bool, reason: str | None
) -> None:
    binding = chart_binding()
    name = binding["spec"]["policyName"]
    answer: Any = policy
    if policy == "chart":
        answer = chart_policy()
    elif policy == "edited":
        answer = _edited_expression()[1]
    kube = FakeKube(bindings={"stockade-references": binding}, policies={name: answer})
    reconciler = Reconciler(kube, OperatorConfig(admission_policy_binding="stockade-references"))
    assert asyncio.run(reconciler.check_admission_policy()) is present
    assert kube.calls == [
        ("read", "ValidatingAdmissionPolicyBinding", "stockade-references"),
        ("read", "ValidatingAdmissionPolicy", name),
    ]
    assert metrics.ADMISSION_POLICY_PRESENT._value.get() == (1.0 if present else 0.0)
    for each in PROBLEM_REASONS:
        assert _problem(each) == (1.0 if each == reason else 0.0)
