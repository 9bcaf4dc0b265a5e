"""Is the admission policy that checks references really there and unchanged? (pure).

Issue 20, class 4: the guard's own integrity. The operator trusts Agents' references
(ServiceAccounts, Secrets, ConfigMaps) only while the chart's ValidatingAdmissionPolicy
checks them. Reading the binding alone is not enough: the policy it names may be
missing or edited (an expression replaced by ``true``), the binding may only warn, or
a ``namespaceSelector`` may exempt the namespaces the operator serves.
:func:`judge_admission_policy` decides from the binding and the policy as read; the
reconciler (:meth:`stockade.reconcile.Reconciler.check_admission_policy`) treats any
problem as an absent policy (references refused, ``ReferenceNotAllowed``).

The expected fingerprint (:data:`stockade.core.policy_fingerprint.EXPECTED`) is a
generated artifact: ``make manifests`` (``hack/manifests.sh``) computes it with
:func:`policy_fingerprint` from the chart's rendered template.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

#: The ``reason`` label values of ``stockade_admission_policy_problem`` (one each).
PROBLEM_REASONS: tuple[str, ...] = (
    "unconfigured",
    "unreadable",
    "binding-missing",
    "not-denying",
    "match-restricted",
    "policy-missing",
    "policy-changed",
)


@dataclass(frozen=True)
class PolicyVerdict:
    """The outcome of :func:`judge_admission_policy`.

    Attributes:
        reason: None when the policy is present and trusted, else one of
            :data:`PROBLEM_REASONS`.
        why: a sentence for the log.

    """

    reason: str | None
    why: str

    @property
    def present(self) -> bool:
        """True when the policy is trusted (no problem)."""
        return self.reason is None


def _rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A resource rule without the API server's default ``scope: "*"``."""
    return {k: v for k, v in rule.items() if not (k == "scope" and v == "*")}


def policy_projection(spec: dict[str, Any]) -> dict[str, Any]:
    """The parts of a policy's spec that decide what it admits, defaults removed.

    ``failurePolicy``, ``matchConstraints.resourceRules`` / ``excludeResourceRules``
    / ``namespaceSelector`` / ``objectSelector`` (empty selectors dropped: the API
    server defaults them to ``{}``), ``matchConditions``, ``variables``,
    ``validations`` and ``auditAnnotations``. ``matchPolicy`` is ignored when it is the
    default ``Equivalent``.
    """
    match = dict(spec.get("matchConstraints") or {})
    projected_match: dict[str, Any] = {}
    for key in ("resourceRules", "excludeResourceRules"):
        if match.get(key):
            projected_match[key] = [_rule(r) for r in match[key]]
    for key in ("namespaceSelector", "objectSelector"):
        if match.get(key):
            projected_match[key] = match[key]
    if match.get("matchPolicy", "Equivalent") != "Equivalent":
        projected_match["matchPolicy"] = match["matchPolicy"]
    projected: dict[str, Any] = {
        "failurePolicy": spec.get("failurePolicy", "Fail"),
        "matchConstraints": projected_match,
    }
    for key in ("matchConditions", "variables", "validations", "auditAnnotations"):
        if spec.get(key):
            projected[key] = spec[key]
    return projected


def policy_fingerprint(spec: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of :func:`policy_projection` of `spec`."""
    canonical = json.dumps(
        policy_projection(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def judge_binding(binding: dict[str, Any]) -> PolicyVerdict | None:
    """A problem with the binding itself (None when it denies and matches everything).

    The binding must have ``Deny`` among its ``validationActions`` and no
    ``matchResources`` narrowing: no ``namespaceSelector`` or ``objectSelector`` with
    terms, no ``resourceRules`` or ``excludeResourceRules`` (the chart renders none,
    so the binding covers every namespace the operator serves).
    """
    spec = binding.get("spec") or {}
    actions = spec.get("validationActions") or []
    if "Deny" not in actions:
        return PolicyVerdict("not-denying", f"the binding's validationActions is {actions}")
    match = spec.get("matchResources") or {}
    narrowing = sorted(
        key
        for key in ("namespaceSelector", "objectSelector", "resourceRules", "excludeResourceRules")
        if match.get(key)
    )
    if narrowing:
        return PolicyVerdict(
            "match-restricted",
            f"the binding's matchResources narrows what it covers ({', '.join(narrowing)})",
        )
    return None


def judge_admission_policy(
    binding: dict[str, Any] | None,
    policy: dict[str, Any] | None,
    expected: str,
) -> PolicyVerdict:
    """Decide whether the admission policy is trustworthy.

    Args:
        binding: the ValidatingAdmissionPolicyBinding as read (None when missing).
        policy: the ValidatingAdmissionPolicy the binding names (None when missing).
        expected: the fingerprint of the chart's policy
            (:data:`stockade.core.policy_fingerprint.EXPECTED`).

    Returns:
        A verdict: present, or the first problem found (binding, then policy).

    """
    if binding is None:
        return PolicyVerdict("binding-missing", "the binding is not found")
    problem = judge_binding(binding)
    if problem is not None:
        return problem
    name = (binding.get("spec") or {}).get("policyName") or ""
    if policy is None:
        return PolicyVerdict("policy-missing", f"the policy {name!r} it names is not found")
    found = policy_fingerprint(policy.get("spec") or {})
    if found != expected:
        return PolicyVerdict(
            "policy-changed",
            f"the policy {name!r} is not the chart's (fingerprint {found[:12]}, "
            f"expected {expected[:12]}): its rules were changed",
        )
    return PolicyVerdict(None, f"found, denying, policy {name!r} unchanged")
