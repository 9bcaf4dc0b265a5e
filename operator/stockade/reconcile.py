"""The imperative shell: observe an Agent, call the lifecycle, and make the writes.

:class:`Reconciler` owns two single-flight work queues (:mod:`stockade.workqueue`),
one for Agents and one for AgentSessions. kopf event handlers ``poke`` a key whenever
the object, one of its pods, its session or a member changes; ``requeue_after`` becomes
a timer. Nothing is remembered between reconciles except pacing: every reconcile reads
the objects from kopf's in-memory indexes (fed by watches; no polling), so an operator
restart simply reconciles everything again. Session admission is decided only by the
session's reconcile and recorded in its ``status.admittedAgents``; an Agent runs only
once its name is recorded there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from kubernetes.aio.client.exceptions import ApiException
from pydantic import ValidationError

from stockade import admission, metrics
from stockade.api.agent import AgentSpec, Phase
from stockade.build.configmap import build_input_configmap
from stockade.build.errors import SpecError
from stockade.build.names import AgentRef, pod_name
from stockade.build.network import build_network_policy
from stockade.build.pod import build_pod
from stockade.build.resources import effective_resources, quantity_value
from stockade.build.runtime import resolve_runtime_class
from stockade.build.workspace import build_workspace_pvc
from stockade.config import OperatorConfig
from stockade.k8s import Kube, api_message, classify_rejection
from stockade.lifecycle import (
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
from stockade.observe import PodView, observe_pod, parse_time
from stockade.sessions import MemberView, SessionObservation, decide_session
from stockade.workqueue import WorkQueue

log = logging.getLogger("stockade.reconcile")

AgentKey = tuple[str, str]
"""``(namespace, name)`` of an Agent."""

_WARNING_REASONS = frozenset(
    {
        Reason.DEADLINE_EXCEEDED,
        Reason.STARTUP_TIMEOUT,
        Reason.BACKOFF_LIMIT_EXCEEDED,
        Reason.ERROR,
        Reason.OOM_KILLED,
        Reason.IMAGE_PULL_FAILED,
        Reason.EVICTED,
        Reason.POD_LOST,
        Reason.INVALID_SPEC,
        Reason.QUOTA_EXCEEDED,
        Reason.RUNTIME_CLASS_NOT_FOUND,
        Reason.POD_REJECTED,
    }
)


IndexView = Mapping[AgentKey, Any]
"""The read side of a kopf index: key -> the collection of values stored under it."""


def to_plain(value: Any) -> Any:
    """Deep-copy kopf's body views (Mappings, lists) into plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


@dataclass
class Prepared:
    """An Agent's spec turned into what its pod needs (or the reason it cannot be)."""

    spec: AgentSpec | None
    runtime_class: str | None
    resources: dict[str, dict[str, str]] | None
    error: str | None


def merge_defaults(spec: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The Agent's effective spec: the session's ``agentDefaults`` under its own fields.

    image, runtimeClassName and network are taken when the Agent sets none; resources
    merge per resource, config per key and env per name, the Agent's values winning.
    Pure; nothing is written back to the Agent (GitOps tools see no drift).
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


def prepare(
    agent: Mapping[str, Any], config: OperatorConfig, session: Mapping[str, Any] | None = None
) -> Prepared:
    """Validate an Agent's effective spec and resolve its RuntimeClass and resources (pure).

    Anything that slipped past the CRD schema becomes ``error`` (InvalidSpec), never an
    exception.
    """
    raw = dict(agent.get("spec") or {})
    if session is not None:
        raw = merge_defaults(raw, (session.get("spec") or {}).get("agentDefaults") or {})
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
    if not spec.image:
        return Prepared(
            spec, runtime_class, resources, "spec.image: no image (nor a session default)"
        )
    return Prepared(spec, runtime_class, resources, None)


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
        startup_timeout_seconds=spec.startup_timeout_seconds if spec else 300,
        restart_policy=spec.restart_policy if spec else AgentView.restart_policy,
        backoff_limit=spec.backoff_limit if spec else 0,
        ttl_seconds_after_finished=spec.ttl_seconds_after_finished if spec else None,
        runtime_class=prepared.runtime_class,
        status=dict(agent.get("status") or {}),
    )


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns status `old` into `new` (pure)."""
    patch: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new})
    return patch


@dataclass
class Reconciler:
    """Reconciles Agents and AgentSessions (see the module docstring).

    Attributes:
        kube: the API client wrapper.
        config: operator settings.
        phases: ``(namespace, phase)`` per known Agent (the ``stockade_agents`` gauge).
        session_phases: ``(namespace, phase)`` per known session (``stockade_sessions``).
        budget_usage: ``(namespace, session, resource) -> used/budget`` ratios.
        leading: whether this replica may write (:meth:`set_leading`; True unless leader
            election is on).

    """

    kube: Kube
    config: OperatorConfig
    phases: dict[AgentKey, tuple[str, str]] = field(default_factory=dict)
    session_phases: dict[AgentKey, tuple[str, str]] = field(default_factory=dict)
    budget_usage: dict[tuple[str, str, str], float] = field(default_factory=dict)
    leading: bool = True
    _agents: IndexView | None = None
    _pods: IndexView | None = None
    _sessions: IndexView | None = None
    _members: IndexView | None = None
    _written: dict[tuple[str, AgentKey], tuple[str, str]] = field(default_factory=dict)
    _events: set[asyncio.Task[None]] = field(default_factory=set)
    _agent_queue: WorkQueue[AgentKey] = field(init=False)
    _session_queue: WorkQueue[AgentKey] = field(init=False)

    def __post_init__(self) -> None:
        self._agent_queue = WorkQueue(self.reconcile)
        self._session_queue = WorkQueue(self.reconcile_session)

    def bind(
        self, agents: IndexView, pods: IndexView, sessions: IndexView, members: IndexView
    ) -> None:
        """Give the reconciler kopf's indexes (the same objects on every call)."""
        self._agents, self._pods = agents, pods
        self._sessions, self._members = sessions, members

    def set_leading(self, leading: bool) -> None:
        """Allow or forbid writes (leader election).

        A standby's reconciles return at once, writing nothing, while kopf's watches
        keep its indexes warm; on becoming the leader every Agent and session in them is
        poked, so everything is reconciled at once.
        """
        self.leading = leading
        if leading:
            for key in list(self._agents or ()):
                self.poke(key)
            for key in list(self._sessions or ()):
                self.poke_session(key, 0.0)

    def poke(self, key: AgentKey, delay: float = 0.0) -> None:
        """Reconcile Agent `key` now (or after `delay` seconds); coalesces pokes."""
        self._agent_queue.poke(key, delay)

    def poke_session(self, key: AgentKey, delay: float = 0.2) -> None:
        """Reconcile session `key` soon: a short delay coalesces bursts of member events."""
        self._session_queue.poke(key, delay)

    async def close(self) -> None:
        """Cancel timers and running reconciles (operator shutdown)."""
        await self._agent_queue.close()
        await self._session_queue.close()
        await asyncio.gather(*self._events, return_exceptions=True)

    def _stale(self, kind: str, key: AgentKey, body: Mapping[str, Any]) -> bool:
        """Whether `body` predates our own last status write (the watch lags behind).

        Deciding from it would undo that write; the watch event carrying the write
        pokes the key again.
        """
        written = self._written.get((kind, key))
        version = (body.get("metadata") or {}).get("resourceVersion")
        return written is not None and version == written[0]

    def _wrote(self, kind: str, key: AgentKey, base: str | None, new: str | None) -> None:
        if base and new:
            self._written[(kind, key)] = (base, new)
        else:
            self._written.pop((kind, key), None)

    def member_bodies(self, session: AgentKey) -> list[dict[str, Any]]:
        """The Agents whose sessionRef names `session` (bodies from the Agent index)."""
        names = (self._members.get(session) if self._members is not None else None) or ()
        found = (self._agent((session[0], name)) for name in names)
        return [body for body in found if body is not None]

    @staticmethod
    def _first(index: IndexView | None, key: AgentKey) -> dict[str, Any] | None:
        for body in (index.get(key) if index is not None else None) or ():
            return dict(body)
        return None

    def _agent(self, key: AgentKey) -> dict[str, Any] | None:
        return self._first(self._agents, key)

    def _observed_pods(self, key: AgentKey) -> dict[int, PodView]:
        pods: dict[int, PodView] = {}
        store = self._pods.get(key) if self._pods is not None else None
        for raw in store or ():
            try:
                view = observe_pod(raw)
            except ValueError:
                continue
            pods[view.attempt] = view
        return pods

    async def reconcile(self, key: AgentKey) -> None:
        """Observe Agent `key`, decide, and write children, status and Events."""
        if not self.leading:
            return
        namespace, name = key
        agent = self._agent(key)
        if agent is None:
            self.phases.pop(key, None)
            self._written.pop(("agent", key), None)
            self._agent_queue.forget(key)
            return
        if self._stale("agent", key, agent):
            return
        session_ref = session_name(agent)
        session = self._first(self._sessions, (namespace, session_ref)) if session_ref else None
        prepared = prepare(agent, self.config, session)
        view = agent_view(agent, prepared)
        admission_, failure = Admission(), None
        if session_ref is not None:
            view, admission_, failure = self._session_terms(agent, view, session_ref, session)
        pods = self._observed_pods(key)
        attempt = int(view.status.get("attempts") or 0)
        expected = view.status.get("phase") in (Phase.Starting, Phase.Running)
        if attempt >= 1 and expected and attempt not in pods:
            # The watch may not have delivered a pod we just created: ask once.
            raw = await self.kube.read_pod(namespace, pod_name(name, attempt))
            if raw is not None:
                pods[attempt] = observe_pod(raw)
        obs = Observation(
            agent=view,
            now=datetime.now(UTC),
            pods=pods,
            admission=admission_,
            spec_error=prepared.error,
            session_failure=failure,
            backoff=tuple(self.config.backoff_seconds(n) for n in range(1, 11)),
            history_limit=self.config.history_limit,
        )
        decision = decide(obs)
        decision = await self._act(agent, prepared, obs, decision)
        if decision.delete_agent:
            await self.kube.delete_agent(namespace, name)
            return
        await self._record(agent, view, decision)
        if session is not None:
            await self._adopt(agent, session)
        if session_ref is not None and decision.status != view.status:
            self.poke_session((namespace, session_ref))
        if decision.requeue_after is not None:
            self.poke(key, max(decision.requeue_after, 0.05))

    def _session_terms(
        self,
        agent: dict[str, Any],
        view: AgentView,
        session_ref: str,
        session: dict[str, Any] | None,
    ) -> tuple[AgentView, Admission, str | None]:
        """What an Agent's session says: suspension, admission, failure."""
        name = view.name
        if session is None:
            message = f'AgentSession "{session_ref}" not found'
            return view, Admission(False, Reason.SESSION_NOT_FOUND, message), None
        spec = session.get("spec") or {}
        status = session.get("status") or {}
        if spec.get("suspend") and not view.suspend:
            view = replace(view, suspend=True, suspended_by=f"session {session_ref} is suspended")
        phase, reason = status.get("phase"), status.get("reason")
        if phase == "Failed" and reason == "DeadlineExceeded":
            return view, Admission(), str(status.get("message") or "the session's deadline passed")
        if name in (status.get("admittedAgents") or ()):
            return view, Admission(), None
        if phase in ("Succeeded", "Failed"):
            message = f"session {session_ref} has finished"
            return view, Admission(False, Reason.SESSION_FINISHED, message, stalled=True), None
        verdict = self._verdict(agent, session_ref, session)
        if verdict is None or verdict.admitted:
            message = f"waiting for session {session_ref} to admit it"
            return view, Admission(False, Reason.AWAITING_ADMISSION, message), None
        return view, Admission(False, verdict.reason, verdict.message, verdict.stalled), None

    def _verdict(
        self, agent: dict[str, Any], session_ref: str, session: dict[str, Any]
    ) -> admission.Verdict | None:
        """Why admission (as recorded) keeps this Agent waiting: for its reason only."""
        namespace = agent["metadata"]["namespace"]
        members = [
            self._member(body, session) for body in self.member_bodies((namespace, session_ref))
        ]
        spec, status = session.get("spec") or {}, session.get("status") or {}
        decision = admission.admit(
            [admission.Member(m.name, m.created, m.requests, _wants(m)) for m in members],
            max_agents=int(spec.get("maxAgents") or 8),
            budget=_budget(spec),
            recorded=status.get("admittedAgents") or (),
        )
        return decision.verdicts.get(agent["metadata"]["name"])

    def _member(self, body: Mapping[str, Any], session: Mapping[str, Any]) -> MemberView:
        metadata = body.get("metadata") or {}
        status = body.get("status") or {}
        prepared = prepare(body, self.config, session)
        return MemberView(
            name=str(metadata.get("name")),
            created=parse_time(metadata.get("creationTimestamp")) or datetime.now(UTC),
            phase=status.get("phase"),
            requests=requests_of(prepared),
            usage=dict(status.get("usage") or {}),
            deleting=metadata.get("deletionTimestamp") is not None,
            paused=bool((body.get("spec") or {}).get("suspend")),
        )

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
        await self.kube.patch_agent_owners(meta["namespace"], meta["name"], refs)

    async def reconcile_session(self, key: AgentKey) -> None:
        """Observe session `key` and its members, admit, summarize, write its status."""
        if not self.leading:
            return
        namespace, name = key
        session = self._first(self._sessions, key)
        if session is not None and self._stale("session", key, session):
            return
        if session is None:
            self._written.pop(("session", key), None)
            self.session_phases.pop(key, None)
            for usage_key in [k for k in self.budget_usage if k[:2] == key]:
                del self.budget_usage[usage_key]
            self._session_queue.forget(key)
            return
        metadata, spec = session.get("metadata") or {}, session.get("spec") or {}
        status = dict(session.get("status") or {})
        bodies = self.member_bodies(key)
        members = [self._member(body, session) for body in bodies]
        budget = _budget(spec)
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
            await self.kube.delete_session(namespace, name)
            return
        patch = status_patch(status, decision.status)
        if patch:
            base = metadata.get("resourceVersion")
            written = await self.kube.patch_session_status(namespace, name, patch, base)
            self._wrote("session", key, base, written)
            if written is None:
                self.poke_session(key, 1.0)
                return
        self.session_phases[key] = (namespace, str(decision.status["phase"]))
        for resource, limit in (budget or {}).items():
            used = decision.admission.used.get(resource, Decimal(0))
            ratio = float(used / limit) if limit else 0.0
            self.budget_usage[(namespace, name, resource)] = ratio
        before = set(status.get("admittedAgents") or ())
        after = set(decision.status.get("admittedAgents") or ())
        for member in members:
            newly = member.name in after - before
            if newly:
                metrics.ADMISSION_WAIT.observe(max((obs.now - member.created).total_seconds(), 0.0))
            changed_phase = status.get("phase") != decision.status.get("phase")
            if newly or member.name in before - after or changed_phase:
                self.poke((namespace, member.name))
        if decision.requeue_after is not None:
            self.poke_session(key, max(decision.requeue_after, 0.05))

    async def _act(
        self, agent: dict[str, Any], prepared: Prepared, obs: Observation, decision: Decision
    ) -> Decision:
        """Carry out the decision's actions; re-decide if the API server refuses a pod."""
        namespace = agent["metadata"]["namespace"]
        for action in decision.actions:
            if isinstance(action, DeletePod):
                await self.kube.delete_pod(namespace, action.name)
        for action in decision.actions:
            if not isinstance(action, CreatePod):
                continue
            problem = await self._create_pod(agent, prepared, action.attempt)
            if isinstance(problem, Rejection):
                return decide(replace(obs, rejection=problem))
            if problem is not None:
                return decide(replace(obs, spec_error=problem))
        return decision

    async def _create_pod(
        self, agent: dict[str, Any], prepared: Prepared, attempt: int
    ) -> Rejection | str | None:
        """Create the pod of `attempt` and the children it mounts (all idempotent).

        Returns None on success, a Rejection when the API server refuses the pod, or a
        message when the spec cannot become a pod.
        """
        spec = prepared.spec
        if spec is None or prepared.runtime_class is None or prepared.resources is None:
            return prepared.error or "the spec could not be prepared"
        metadata = agent["metadata"]
        ref = AgentRef(metadata["name"], metadata["namespace"], metadata["uid"])
        try:
            children = [
                build_network_policy(ref, spec),
                build_input_configmap(ref, spec),
                build_workspace_pvc(ref, spec),
            ]
            pod = build_pod(
                ref,
                spec,
                attempt=attempt,
                runtime_class=prepared.runtime_class,
                resources=prepared.resources,
            )
        except SpecError as exc:
            return str(exc)
        try:
            for child in children:
                if child is not None:
                    await self.kube.create(child)
            await self.kube.create(pod)
        except ApiException as exc:
            rejection = classify_rejection(exc)
            if rejection is None:
                raise
            log.info("pod for %s/%s refused: %s", ref.namespace, ref.name, api_message(exc))
            return rejection
        return None

    async def _record(self, agent: dict[str, Any], view: AgentView, decision: Decision) -> None:
        """Write the status patch, Events and metrics of one decision."""
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
            written = await self.kube.patch_agent_status(key[0], key[1], patch, base)
            self._wrote("agent", key, base, written)
            if written is None:
                # Someone changed the Agent since we looked: its watch event re-pokes it.
                self.poke(key, 1.0)
                return
        self.phases[key] = (key[0], str(decision.phase))
        for step in decision.transitions:
            self._announce(agent, step, view)
        reason = decision.status.get("reason")
        changed = reason != view.status.get("reason")
        if not decision.transitions and changed and reason in _WARNING_REASONS:
            self._post(
                agent,
                warning=True,
                reason=str(reason),
                message=decision.status.get("message", ""),
            )

    def _post(self, agent: dict[str, Any], *, warning: bool, reason: str, message: str) -> None:
        """Record an Event in the background: Events inform, they must not slow a reconcile."""

        async def post() -> None:
            try:
                await self.kube.event(agent, warning=warning, reason=reason, message=message)
            except Exception:  # an Event lost is not worth a failed reconcile
                log.warning("could not record Event %s on %s", reason, agent["metadata"]["name"])

        task = asyncio.get_running_loop().create_task(post())
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    def _announce(self, agent: dict[str, Any], step: Transition, view: AgentView) -> None:
        metrics.TRANSITIONS.labels(str(step.from_phase), str(step.to_phase), str(step.reason)).inc()
        if step.to_phase == Phase.Running and int(view.status.get("attempts") or 1) <= 1:
            created = parse_time(agent["metadata"].get("creationTimestamp"))
            if created is not None:
                metrics.CREATE_TO_RUNNING.observe((datetime.now(UTC) - created).total_seconds())
        text = f"{step.from_phase or 'New'} -> {step.to_phase}"
        if step.message:
            text = f"{text}: {step.message}"
        self._post(
            agent, warning=step.reason in _WARNING_REASONS, reason=str(step.reason), message=text
        )


def _wants(member: MemberView) -> bool:
    return not (member.finished or member.deleting or member.paused)


def _budget(spec: Mapping[str, Any]) -> dict[str, Decimal] | None:
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


def phase_samples(reconciler: Reconciler) -> Iterable[tuple[str, str]]:
    """``(namespace, phase)`` for every Agent the reconciler knows (the gauge's source)."""
    return list(reconciler.phases.values())


def session_phase_samples(reconciler: Reconciler) -> Iterable[tuple[str, str]]:
    """``(namespace, phase)`` for every AgentSession the reconciler knows."""
    return list(reconciler.session_phases.values())
