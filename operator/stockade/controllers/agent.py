"""The Agent controller: observe an Agent, call the lifecycle, make the writes.

One reconcile (:meth:`Agents.reconcile`) reads the Agent, its pods, its children and its
session from the cache, asks :func:`stockade.core.lifecycle.decide`, creates what the
decision needs (children first, then the pod), writes the status conditionally, and only
then deletes the pods the decision lets go: so a lost status write can never turn a
suspend or a deadline into a lost pod. Nothing is remembered between reconciles but the
expectations and echoes of :mod:`stockade.runtime`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from stockade.api.agent import Phase
from stockade.build.names import pod_name
from stockade.controllers.children import Children
from stockade.controllers.context import Context
from stockade.controllers.session import Sessions
from stockade.core.lifecycle import (
    Admission,
    AgentView,
    CreatePod,
    Decision,
    DeletePod,
    Observation,
    Reason,
    Rejection,
    Transition,
    decide,
)
from stockade.core.observe import PodView, observe_pod, parse_time
from stockade.core.reasons import WARNING_REASONS
from stockade.core.sessions import member_terms
from stockade.core.spec import (
    Prepared,
    agent_view,
    prepare,
    session_defaults,
    session_name,
    status_patch,
)
from stockade.runtime import decisionlog, metrics, tracing
from stockade.runtime.cache import AgentKey, uid_of
from stockade.runtime.events import EventRecorder
from stockade.runtime.expectations import Expectations

log = logging.getLogger("stockade.reconcile")

DEFAULT_GRACE_SECONDS = 30
"""A pod's grace period when it sets none (core/v1 terminationGracePeriodSeconds)."""


@dataclass
class Agents:
    """Reconciles Agents (see the module docstring).

    Attributes:
        ctx: the collaborators it shares with the session controller (:class:`Context`).
        forget_agent: drops an Agent's timers (it is gone).
        phases: ``(namespace, phase)`` per known Agent (the ``stockade_agents`` gauge).
        phase_entered: ``(namespace, phase, Unix time it was entered)`` per known Agent
            (``stockade_agent_phase_oldest_seconds``).

    """

    ctx: Context
    expectations: Expectations
    events: EventRecorder
    children: Children
    sessions: Sessions
    forget_agent: Callable[[AgentKey], None]
    phases: dict[AgentKey, tuple[str, str]] = field(default_factory=dict)
    phase_entered: dict[AgentKey, tuple[str, str, float]] = field(default_factory=dict)
    _warned: set[tuple[str, str]] = field(default_factory=set)

    async def reconcile(self, key: AgentKey) -> None:
        """Observe Agent `key`, decide, and write children, status and Events.

        At debug level each reconcile ends with its decision record
        (:mod:`stockade.runtime.decisionlog`).
        """
        trace = decisionlog.begin(key)
        try:
            await self._reconcile(key, trace)
        finally:
            decisionlog.end(trace)

    async def _reconcile(self, key: AgentKey, trace: decisionlog.Trace | None) -> None:
        if not self.ctx.leading():
            if trace:
                trace.skipped = "not the leader"
            return
        namespace, name = key
        agent = self.ctx.cache.agent(key)
        if agent is None:
            if trace:
                trace.skipped = "not in the index (deleted)"
            self.phases.pop(key, None)
            self.phase_entered.pop(key, None)
            self.ctx.echoes.forget("agent", key)
            self.sessions.forget_member(key)
            self.forget_agent(key)
            return
        if self.ctx.echoes.stale("agent", key, agent):
            if trace:
                trace.see(agent, ())
                trace.skipped = f"older than our write {self.ctx.echoes.last('agent', key)}"
            return
        self.ctx.echoes.resume("agent", key)
        uid = uid_of(agent)
        session_ref = session_name(agent)
        session = self.ctx.cache.session((namespace, session_ref)) if session_ref else None
        prepared = prepare(
            agent,
            self.ctx.config,
            session,
            policy_present=self.ctx.policy_present(),
            api_server_cidrs=self.ctx.api_server_cidrs(),
        )
        spec_error = prepared.error
        view = agent_view(agent, prepared)
        admission_, failure = Admission(), None
        if session_ref is not None:
            view, admission_, failure = self._session_terms(agent, view, session_ref, session)
        pods = self._observed_pods(key, uid)
        attempt = int(view.status.get("attempts") or 0)
        expected = view.status.get("phase") in (Phase.Starting, Phase.Running)
        if attempt >= 1 and expected and attempt not in pods:
            # The watch may not have delivered a pod we just created: ask once.
            raw = await self.ctx.kube.read("Pod", namespace, pod_name(name, attempt))
            if raw is not None and observe_pod(raw).owner_uid == uid:
                pods[attempt] = observe_pod(raw)
        if trace:
            trace.see(agent, pods.values())
        obs = Observation(
            agent=view,
            now=datetime.now(UTC),
            pods=pods,
            admission=admission_,
            spec_error=spec_error,
            spec_error_reason=prepared.reason,
            session_failure=failure,
            session_defaults=session_defaults(agent, session) if session is not None else None,
            backoff=self.ctx.config.backoff,
            history_limit=self.ctx.config.history_limit,
            terminating_timeout=self.ctx.config.terminating_timeout_seconds,
        )
        decision = decide(obs)
        if decision.awaiting_verdict:  # the session's reconcile pokes it with one
            self.phases[key] = (namespace, str(Phase.Pending))
            if trace:
                trace.skipped = "awaiting its session's admission"
            return
        decision = await self._act(agent, prepared, obs, decision)
        if trace:
            trace.decide(decision.phase, str(decision.status.get("reason")), decision.actions)
        if decision.delete_agent:
            await self.ctx.kube.delete_agent(namespace, name)
            return
        if await self._record(agent, view, decision):
            await self._delete_pods(namespace, decision, pods)
        if session is not None:
            await self._adopt(agent, session)
        if session_ref is not None and decision.status != view.status:
            self.ctx.poke_session((namespace, session_ref), 0.2)
        if decision.requeue_after is not None:
            self.ctx.poke_agent(key, max(decision.requeue_after, 0.05))

    def _session_terms(
        self,
        agent: dict[str, Any],
        view: AgentView,
        session_ref: str,
        session: dict[str, Any] | None,
    ) -> tuple[AgentView, Admission, str | None]:
        """What an Agent's session says (:func:`stockade.core.sessions.member_terms`)."""
        verdict = self.sessions.verdict(agent, session_ref, session) if session else None
        return member_terms(view, session_ref, session, verdict)

    def _observed_pods(self, key: AgentKey, uid: str) -> dict[int, PodView]:
        """Agent `key`'s pods by attempt, a pod we deleted read as being deleted.

        Deleted by us and not yet seen so (the expectations): its going must not read
        as a lost pod.
        """
        pods: dict[int, PodView] = {}
        for view in self.ctx.cache.pods_of(key, uid):
            asked = self.expectations.deletion_asked(view.uid, seen_deleting=view.deleting)
            if asked is not None:
                grace = asked + timedelta(seconds=DEFAULT_GRACE_SECONDS)
                view = replace(view, deleting=True, deletion_deadline=grace)
            pods[view.attempt] = view
        return pods

    async def _adopt(self, agent: dict[str, Any], session: dict[str, Any]) -> None:
        """Make the Agent an owned dependent of its session (garbage collection)."""
        uid = (session.get("metadata") or {}).get("uid")
        refs = list((agent.get("metadata") or {}).get("ownerReferences") or [])
        if not uid or any(r.get("uid") == uid for r in refs):
            return
        refs.append(
            {
                "apiVersion": "stockade.dev/v1alpha1",
                "kind": "AgentSession",
                "name": session["metadata"]["name"],
                "uid": uid,
                "blockOwnerDeletion": True,
            }
        )
        meta = agent["metadata"]
        key = (meta["namespace"], meta["name"])
        base = str(meta.get("resourceVersion") or "")
        ours = self.ctx.echoes.last("agent", key)
        if ours is not None and ours[0] == base:
            base = ours[1]  # this reconcile wrote the status on top of `agent`
        written = await self.ctx.kube.patch_agent_owners(key[0], key[1], refs, base)
        if written is None:  # changed meanwhile: its watch event brings it back
            self.ctx.poke_agent(key, 1.0)
        else:  # its echo needs no reconcile (:meth:`own_echo`)
            self.ctx.echoes.wrote("agent", key, base, written)

    async def _act(
        self, agent: dict[str, Any], prepared: Prepared, obs: Observation, decision: Decision
    ) -> Decision:
        """Create what the decision needs; re-decide if the API server refuses a pod.

        Children first (a pod needs its ConfigMap and its NetworkPolicy before it runs),
        restored whenever the Agent has or is about to have a pod; then the pod. Deletes
        wait until the status is written (:meth:`_delete_pods`).
        """
        creates = [a for a in decision.actions if isinstance(a, CreatePod)]
        live = decision.phase in (Phase.Starting, Phase.Running)
        if (creates or live) and not obs.agent.deleting:
            problem = await self.children.ensure(agent, prepared)
            if problem is not None and creates:
                return await self._refused(obs, problem)
            if problem is not None:
                self._warn_once(agent, problem)
        for action in creates:
            problem = await self.children.create_pod(agent, prepared, action.attempt)
            if problem is not None:
                return await self._refused(obs, problem)
        return decision

    async def _delete_pods(
        self, namespace: str, decision: Decision, pods: Mapping[int, PodView]
    ) -> None:
        """Delete the pods the decision lets go, once its status is recorded.

        Recorded first, so the pod of a suspend, a deadline or a failure is never found
        gone under a status that still says Running (which reads as PodLost): if the
        status write loses a race with an edit, nothing is deleted and the next
        reconcile decides again.
        """
        uids = {pod.name: pod.uid for pod in pods.values()}
        now = datetime.now(UTC)
        for delete in decision.actions:
            if isinstance(delete, DeletePod):
                await self.ctx.kube.delete_pod(namespace, delete.name, force=delete.force)
                if uids.get(delete.name):
                    self.expectations.deleted(uids[delete.name], now)

    async def _refused(self, obs: Observation, problem: Rejection | str) -> Decision:
        """Decide again knowing the pod (or a child) was refused; nothing was created.

        A 422 means the pod itself is invalid (input that slipped past the CRD schema):
        InvalidSpec, which fails the Agent, as documented.
        """
        if isinstance(problem, Rejection) and problem.reason != Reason.INVALID_SPEC:
            return decide(replace(obs, rejection=problem))
        message = problem.message if isinstance(problem, Rejection) else problem
        return decide(replace(obs, spec_error=message))

    def _warn_once(self, agent: dict[str, Any], problem: Rejection | str) -> None:
        """A running Agent's child cannot be restored: say so (once per Agent and text)."""
        if not isinstance(problem, Rejection):
            return
        meta = agent["metadata"]
        said = (uid_of(agent), problem.message)
        if said in self._warned:
            return
        self._warned.add(said)
        log.warning("%s/%s: %s", meta["namespace"], meta["name"], problem.message)
        self.events.post(agent, warning=True, reason=str(problem.reason), message=problem.message)

    async def _record(self, agent: dict[str, Any], view: AgentView, decision: Decision) -> bool:
        """Write the status patch, Events and metrics of one decision.

        Returns False when the conditional write was refused (the Agent changed since it
        was read, or is gone): the decision is then void and will be made again.
        """
        metadata = agent["metadata"]
        key = (metadata["namespace"], metadata["name"])
        for bad in decision.rejected:
            metrics.INVALID_TRANSITIONS.labels(str(bad.from_phase), str(bad.to_phase)).inc()
            log.error(
                "BUG: transition %s -> %s of %s/%s refused", bad.from_phase, bad.to_phase, *key
            )
        patch = status_patch(view.status, decision.status)
        if patch:
            base = metadata.get("resourceVersion")
            written = await self.ctx.kube.patch_agent_status(key[0], key[1], patch, base)
            self.ctx.echoes.wrote("agent", key, base, written)
            if written is None:
                # Someone changed the Agent since we looked (its watch event re-pokes
                # it), or it is gone: then a resync tells (a 409 and a 404 look alike
                # here), so look again after a short while.
                self.ctx.poke_agent(key, 1.0)
                return False
        self.phases[key] = (key[0], str(decision.phase))
        entered = metrics.phase_entered(decision.status, metadata.get("creationTimestamp"))
        if entered is not None:
            self.phase_entered[key] = (key[0], str(decision.phase), entered)
        created = parse_time(metadata.get("creationTimestamp"))
        now = datetime.now(UTC)
        metrics.record(
            metrics.observations(decision.transitions, view.status, decision.status, created, now)
        )
        tracing.record(agent, decision.status, decision.transitions)
        for step in decision.transitions:
            self._announce(agent, step, view)
        reason = decision.status.get("reason")
        changed = reason != view.status.get("reason")
        if not decision.transitions and changed and reason in WARNING_REASONS:
            self.events.post(
                agent,
                warning=True,
                reason=str(reason),
                message=decision.status.get("message", ""),
            )
        return True

    def _announce(self, agent: dict[str, Any], step: Transition, view: AgentView) -> None:
        text = f"{step.from_phase or 'New'} -> {step.to_phase}"
        if step.message:
            text = f"{text}: {step.message}"
        self.events.post(
            agent, warning=step.reason in WARNING_REASONS, reason=str(step.reason), message=text
        )
