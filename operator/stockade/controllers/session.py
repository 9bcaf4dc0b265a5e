"""The AgentSession controller: admission of its members, its phase, its status.

Session admission is decided here and nowhere else (:func:`stockade.core.sessions.decide_session`
over its members as :meth:`Sessions.member` sees them) and recorded in the session's
``status.admittedAgents``: an Agent runs only once its name is recorded there. A member
whose verdict changed is poked; its own reconcile reads the reason from
:meth:`Sessions.verdict` (O(1), not an admission per member).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from stockade.controllers.context import Context
from stockade.core import admission
from stockade.core.observe import parse_time
from stockade.core.sessions import MemberView, SessionObservation, decide_session
from stockade.core.spec import budget_of, prepare, requests_of, status_patch
from stockade.runtime.cache import AgentKey

log = logging.getLogger("stockade.reconcile")


@dataclass
class Sessions:
    """Reconciles AgentSessions (see the module docstring).

    Attributes:
        ctx: the collaborators it shares with the Agent controller (:class:`Context`).
        session_phases: ``(namespace, phase)`` per known session (``stockade_sessions``).
        budget_usage: ``(namespace, session, resource) -> used/budget`` ratios.

    """

    ctx: Context
    session_phases: dict[AgentKey, tuple[str, str]] = field(default_factory=dict)
    budget_usage: dict[tuple[str, str, str], float] = field(default_factory=dict)
    _verdicts: dict[AgentKey, Mapping[str, admission.Verdict]] = field(default_factory=dict)
    _member_views: dict[AgentKey, tuple[tuple[Any, ...], MemberView]] = field(default_factory=dict)

    async def reconcile(self, key: AgentKey) -> None:
        """Observe session `key` and its members, admit, summarize, write its status."""
        if not self.ctx.leading():
            return
        namespace, name = key
        session = self.ctx.cache.session(key)
        if session is not None and self.ctx.echoes.stale("session", key, session):
            return
        if session is None:
            self.ctx.echoes.forget("session", key)
            self._verdicts.pop(key, None)
            self.session_phases.pop(key, None)
            for usage_key in [k for k in self.budget_usage if k[:2] == key]:
                del self.budget_usage[usage_key]
            return
        metadata, spec = session.get("metadata") or {}, session.get("spec") or {}
        status = dict(session.get("status") or {})
        self.ctx.echoes.resume("session", key)
        bodies = self.ctx.cache.member_bodies(key)
        members = [self.member(body, session) for body in bodies]
        budget = budget_of(spec)
        obs = SessionObservation(
            now=datetime.now(UTC),
            generation=int(metadata.get("generation") or 1),
            deleting=metadata.get("deletionTimestamp") is not None,
            suspend=bool(spec.get("suspend")),
            max_agents=int(spec.get("maxAgents") or 8),
            budget=budget,
            active_deadline_seconds=spec.get("activeDeadlineSeconds"),
            ttl_seconds_after_finished=spec.get("ttlSecondsAfterFinished"),
            status=status,
            members=members,
        )
        decision = decide_session(obs)
        if decision.delete_session:
            await self.ctx.kube.delete_session(namespace, name)
            return
        patch = status_patch(status, decision.status)
        if patch:
            base = metadata.get("resourceVersion")
            written = await self.ctx.kube.patch_session_status(namespace, name, patch, base)
            self.ctx.echoes.wrote("session", key, base, written)
            if written is None:
                self.ctx.poke_session(key, 1.0)
                return
        self.session_phases[key] = (namespace, str(decision.status["phase"]))
        for resource, limit in (budget or {}).items():
            used = decision.admission.used.get(resource, Decimal(0))
            ratio = float(used / limit) if limit else 0.0
            self.budget_usage[(namespace, name, resource)] = ratio
        before = set(status.get("admittedAgents") or ())
        after = set(decision.status.get("admittedAgents") or ())
        verdicts, previous = decision.admission.verdicts, self._verdicts.get(key) or {}
        self._verdicts[key] = verdicts
        changed_phase = status.get("phase") != decision.status.get("phase")
        for member in members:
            newly = member.name in after - before
            verdict = verdicts.get(member.name)
            if (
                newly
                or member.name in before - after
                or changed_phase
                or verdict != previous.get(member.name)
            ):
                self.ctx.poke_agent((namespace, member.name), 0.0)
        if decision.requeue_after is not None:
            self.ctx.poke_session(key, max(decision.requeue_after, 0.05))

    def verdict(
        self, agent: dict[str, Any], session_ref: str, session: dict[str, Any]
    ) -> admission.Verdict | None:
        """Why admission keeps this Agent waiting, as the session's last reconcile found.

        For its reason only (the session decides admission). Kept from
        :meth:`reconcile_session`, which pokes a member whose verdict changed: a member's
        reconcile costs O(1), not an admission over every member (O(m) per member,
        O(m^2) per session).
        """
        verdicts = self._verdicts.get((agent["metadata"]["namespace"], session_ref))
        return verdicts.get(agent["metadata"]["name"]) if verdicts is not None else None

    def member(self, body: Mapping[str, Any], session: Mapping[str, Any]) -> MemberView:
        """A member as its session's admission sees it, prepared once per version.

        Remembered per member until the member or the session's spec changes (their
        resourceVersion and generation), so a session reconcile costs O(m) lookups,
        not m validations.
        """
        metadata = body.get("metadata") or {}
        session_meta = session.get("metadata") or {}
        key = (str(metadata.get("namespace")), str(metadata.get("name")))
        stamp = (
            metadata.get("uid"),
            metadata.get("resourceVersion"),
            session_meta.get("uid"),
            session_meta.get("generation"),
            self.ctx.policy_present(),
            self.ctx.api_server_cidrs(),
        )
        cached = self._member_views.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        view = self._member_view(body, session)
        self._member_views[key] = (stamp, view)
        return view

    def _member_view(self, body: Mapping[str, Any], session: Mapping[str, Any]) -> MemberView:
        metadata = body.get("metadata") or {}
        status = body.get("status") or {}
        prepared = prepare(
            body,
            self.ctx.config,
            session,
            policy_present=self.ctx.policy_present(),
            api_server_cidrs=self.ctx.api_server_cidrs(),
        )
        return MemberView(
            name=str(metadata.get("name")),
            created=parse_time(metadata.get("creationTimestamp")) or datetime.now(UTC),
            phase=status.get("phase"),
            requests=requests_of(prepared),
            usage=dict(status.get("usage") or {}),
            deleting=metadata.get("deletionTimestamp") is not None,
            paused=bool((body.get("spec") or {}).get("suspend")),
        )

    def forget_member(self, key: AgentKey) -> None:
        """Agent `key` is gone: drop what was remembered of it as a member."""
        self._member_views.pop(key, None)
