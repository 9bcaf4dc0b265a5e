"""An Agent's effective spec: the session's defaults merged in, validated, resolved (pure).

What the Agent controller and the session's admission both read of a spec: the
``agentDefaults`` of its session under its own fields (:func:`merge_defaults`), the
pydantic validation, the RuntimeClass and resources it resolves to, and the policy
checks (:func:`prepare`); the lifecycle's view of it (:func:`agent_view`).

Issue 20: which fields shape what a pod runs (:data:`AGENT_CODE_FIELDS`,
:data:`DEFAULTS_CODE_FIELDS`, the same lists as the chart's admission policy), and the
rule that a member with references of its own takes no code from its session
(:func:`member_defaults`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from stockade.api.agent import AgentSpec
from stockade.build.errors import SpecError
from stockade.build.resources import effective_resources, quantity_value
from stockade.build.runtime import resolve_runtime_class
from stockade.config import OperatorConfig
from stockade.core import policy
from stockade.core.lifecycle import AgentView, Reason


@dataclass
class Prepared:
    """An Agent's spec turned into what its pod needs (or the reason it cannot be)."""

    spec: AgentSpec | None
    runtime_class: str | None
    resources: dict[str, dict[str, str]] | None
    error: str | None
    reason: Reason = Reason.INVALID_SPEC


AGENT_CODE_FIELDS = frozenset(
    {
        "sessionRef",
        "image",
        "command",
        "args",
        "env",
        "envFrom",
        "workingDir",
        "task",
        "config",
        "runtimeClassName",
        "network",
        "livenessProbe",
        "readinessProbe",
        "serviceAccountName",
        "podMetadata",
        "credentials",
    }
)
"""The Agent spec fields (JSON names) that shape what its pod runs (issue 20).

The code and its input (image, command, args, env, envFrom, workingDir, task, config),
the probes (an ``exec`` probe runs a command), the sandbox and the network (where the
code may send what it reads), the credentials (Secrets the egress gateway adds to its
requests), the ServiceAccount, ``podMetadata`` (annotations other
admission webhooks act on) and ``sessionRef`` (where defaults come from). Whoever
changes one of them must be allowed to use every reference the pod gets: the chart's
admission policy lists the same names (a unit test keeps them equal). The rest
(resources, deadlines, timeouts, restarts, suspend, TTL, workspace, placement) decide
when and where the code runs, not what it is.
"""

DEFAULTS_CODE_FIELDS = ("image", "runtimeClassName", "network", "env", "config")
"""The session ``agentDefaults`` fields that shape what a member runs (JSON names):
each is an :data:`AGENT_CODE_FIELDS` field; only ``resources`` is not."""


def own_references(spec: Mapping[str, Any]) -> list[str]:
    """The fields of an Agent's own `spec` (a raw camelCase dict) that reference objects.

    ``serviceAccountName``, each ``env[i].valueFrom.secretKeyRef`` / ``configMapKeyRef``,
    each ``envFrom[i].secretRef`` / ``configMapRef`` and each
    ``credentials[i].secretKeyRef`` (issue 21), as paths such as
    ``"spec.env[0].valueFrom.secretKeyRef"``, in spec order; defaults are not merged in.
    Pure; malformed entries (the CRD schema refuses them) are skipped.
    """
    found = ["spec.serviceAccountName"] if spec.get("serviceAccountName") else []
    for index, var in enumerate(spec.get("env") or ()):
        source = var.get("valueFrom") if isinstance(var, Mapping) else None
        for key in ("secretKeyRef", "configMapKeyRef"):
            if isinstance(source, Mapping) and source.get(key):
                found.append(f"spec.env[{index}].valueFrom.{key}")
    for index, env_from in enumerate(spec.get("envFrom") or ()):
        for key in ("secretRef", "configMapRef"):
            if isinstance(env_from, Mapping) and env_from.get(key):
                found.append(f"spec.envFrom[{index}].{key}")
    for index, credential in enumerate(spec.get("credentials") or ()):
        if isinstance(credential, Mapping) and credential.get("secretKeyRef"):
            found.append(f"spec.credentials[{index}].secretKeyRef")
    return found


def member_defaults(spec: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The part of its session's ``agentDefaults`` a member takes (issue 20, pure).

    A member that references a ServiceAccount, Secret or ConfigMap of its own
    (:func:`own_references`) takes no code from its session: none of
    :data:`DEFAULTS_CODE_FIELDS` (image, runtimeClassName, network, env, config), only
    ``resources``. Whoever may create or edit the session (possibly after the member,
    as GitOps applies them) would otherwise choose the code that reads the member's
    Secrets; such a member sets its own image (else ``OwnImageRequired``, see
    :func:`prepare`). A member without references of its own takes all of them.
    """
    if not own_references(spec):
        return dict(defaults)
    return {k: v for k, v in defaults.items() if k not in DEFAULTS_CODE_FIELDS}


def merge_defaults(spec: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The Agent's effective spec: the session's ``agentDefaults`` under its own fields.

    image, runtimeClassName and network are taken when the Agent sets none; resources
    merge per resource, config per key and env per name, the Agent's values winning.
    Pure; nothing is written back to the Agent (GitOps tools see no drift). :func:`prepare`
    passes only the :func:`member_defaults` the member may take.
    """
    out = dict(spec)
    for key in ("image", "runtimeClassName", "network"):
        if out.get(key) is None and defaults.get(key) is not None:
            out[key] = defaults[key]
    if defaults.get("resources"):
        mine, theirs = out.get("resources") or {}, defaults["resources"]
        merged = {
            part: {**(theirs.get(part) or {}), **(mine.get(part) or {})}
            for part in ("requests", "limits")
            if theirs.get(part) or mine.get(part)
        }
        out["resources"] = merged
    if defaults.get("config"):
        out["config"] = {**defaults["config"], **(out.get("config") or {})}
    if defaults.get("env"):
        names = {e.get("name") for e in out.get("env") or ()}
        out["env"] = [e for e in defaults["env"] if e.get("name") not in names] + list(
            out.get("env") or []
        )
    return out


def session_defaults(
    agent: Mapping[str, Any], session: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The ``agentDefaults`` that apply to a member (None without any).

    Those recorded in its status when it was admitted, else the session's current ones.
    """
    recorded = (agent.get("status") or {}).get("sessionDefaults")
    if recorded is not None:
        return dict(recorded)
    if session is None:
        return None
    return dict((session.get("spec") or {}).get("agentDefaults") or {})


def prepare(
    agent: Mapping[str, Any],
    config: OperatorConfig,
    session: Mapping[str, Any] | None = None,
    *,
    policy_present: bool = False,
    api_server_cidrs: tuple[str, ...] | None = (),
) -> Prepared:
    """Validate an Agent's effective spec and resolve its RuntimeClass and resources (pure).

    Anything that slipped past the CRD schema becomes ``error`` (InvalidSpec), never an
    exception. A member uses :func:`session_defaults`, and only those
    :func:`member_defaults` lets it take: a member with ServiceAccount, Secret or
    ConfigMap references of its own and no image of its own is refused at once
    (``OwnImageRequired``; no session could supply it). Without `policy_present` (the
    chart's admission policy binding was found), an Agent that has not created a pod yet
    and references a ServiceAccount, Secret or ConfigMap is refused
    (``ReferenceNotAllowed``, :func:`stockade.core.policy.reference_problems`); one that
    already ran keeps running (its references were accepted then). Custom egress CIDRs
    that overlap a denied range fail it with ``EgressDenied``
    (:func:`stockade.core.policy.egress_problems`; `api_server_cidrs` are the API
    server's addresses, None when they could not be read, empty when none are known).
    Egress Hosts without the egress gateway fails it with ``GatewayNotConfigured``, and
    credentials that do not fit the effective network with ``InvalidSpec``
    (:func:`stockade.core.policy.gateway_problems`).
    """
    refused = policy.namespace_problem((agent.get("metadata") or {}).get("namespace"), config)
    if refused is not None:
        return Prepared(None, None, None, str(refused), refused.reason)
    raw = dict(agent.get("spec") or {})
    own = own_references(raw) if session_name(agent) else []
    defaults = session_defaults(agent, session)
    if defaults is not None:
        raw = merge_defaults(raw, member_defaults(raw, defaults))
    if own and not raw.get("image"):
        return Prepared(None, None, None, _own_image_required(session_name(agent), own),
                        Reason.OWN_IMAGE_REQUIRED)  # fmt: skip
    try:
        spec = AgentSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        return Prepared(None, None, None, problems)
    try:
        runtime_class = resolve_runtime_class(spec.runtime_class_name, None, config)
        resources = effective_resources(spec.resources, config)
    except SpecError as exc:
        return Prepared(spec, None, None, str(exc))
    if refusals := policy.spec_problems(spec, config):
        return Prepared(spec, None, None, policy.describe(refusals))
    if refusals := policy.gateway_problems(spec, config):
        return Prepared(spec, None, None, policy.describe(refusals), refusals[0].reason)
    started = int((agent.get("status") or {}).get("attempts") or 0) > 0
    if refusals := policy.egress_problems(spec, config, api_server_cidrs, started=started):
        return Prepared(spec, None, None, policy.describe(refusals), refusals[0].reason)
    if not started and (
        refusals := policy.reference_problems(spec, config, policy_present=policy_present)
    ):
        return Prepared(spec, None, None, policy.describe(refusals), refusals[0].reason)
    if not spec.image:
        return Prepared(
            spec, runtime_class, resources, "spec.image: no image (nor a session default)"
        )
    return Prepared(spec, runtime_class, resources, None)


def _own_image_required(session: str | None, own: list[str]) -> str:
    """The message of a member with references of its own and no image."""
    return (
        f"spec.image: required, because this Agent references objects itself "
        f"({', '.join(own[:4])}{', ...' if len(own) > 4 else ''}): a member with its own "
        f"ServiceAccount, Secret or ConfigMap references takes no image, runtimeClassName, "
        f'network, env or config from session "{session}"\'s agentDefaults (whoever may '
        f"edit the session would choose the code that reads them); set spec.image"
    )


def requests_of(prepared: Prepared) -> dict[str, Decimal]:
    """The effective requests of a prepared Agent in base units (empty if unprepared)."""
    if prepared.resources is None:
        return {}
    out: dict[str, Decimal] = {}
    for name, value in prepared.resources.get("requests", {}).items():
        try:
            out[name] = quantity_value(value, f"requests.{name}")
        except SpecError:
            continue
    return out


def session_name(agent: Mapping[str, Any]) -> str | None:
    """The AgentSession an Agent names in ``spec.sessionRef``, if any."""
    ref = (agent.get("spec") or {}).get("sessionRef") or {}
    name = ref.get("name")
    return str(name) if name else None


def agent_view(agent: Mapping[str, Any], prepared: Prepared) -> AgentView:
    """The lifecycle's view of an Agent (pure)."""
    metadata = agent.get("metadata") or {}
    spec = prepared.spec
    raw_spec = agent.get("spec") or {}
    return AgentView(
        name=str(metadata.get("name")),
        generation=int(metadata.get("generation") or 1),
        deleting=metadata.get("deletionTimestamp") is not None,
        suspend=bool(spec.suspend if spec else raw_spec.get("suspend", False)),
        active_deadline_seconds=spec.active_deadline_seconds if spec else None,
        startup_timeout_seconds=(
            spec.startup_timeout_seconds if spec else AgentView.startup_timeout_seconds
        ),
        restart_policy=spec.restart_policy if spec else AgentView.restart_policy,
        backoff_limit=spec.backoff_limit if spec else AgentView.backoff_limit,
        ttl_seconds_after_finished=spec.ttl_seconds_after_finished if spec else None,
        runtime_class=prepared.runtime_class,
        status=dict(agent.get("status") or {}),
    )


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns status `old` into `new` (pure)."""
    patch: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new})
    return patch


def budget_of(spec: Mapping[str, Any]) -> dict[str, Decimal] | None:
    """A session's budget in base units; None when it sets none."""
    raw = spec.get("budget")
    if not raw:
        return None
    budget: dict[str, Decimal] = {}
    for name, value in raw.items():
        try:
            budget[name] = quantity_value(str(value), f"spec.budget.{name}")
        except SpecError:
            continue
    return budget
