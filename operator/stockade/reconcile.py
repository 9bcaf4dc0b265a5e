"""The imperative shell: observe an Agent, call the lifecycle, and make the writes.

:class:`Reconciler` is a per-Agent single-flight work queue (in the manner of
controller-runtime's workqueue): kopf event handlers ``poke`` an Agent's key whenever the
Agent or one of its pods changes; a poke while the Agent is being reconciled marks it
dirty and it runs once more afterwards; ``decide``'s ``requeue_after`` becomes a timer.
Nothing is remembered between reconciles except pacing: every reconcile reads the
Agent and its pods from kopf's in-memory indexes (fed by watches; no polling), so an
operator restart simply reconciles everything again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from kubernetes.aio.client.exceptions import ApiException
from pydantic import ValidationError

from stockade import metrics
from stockade.api.agent import AgentSpec, Phase
from stockade.build.configmap import build_input_configmap
from stockade.build.errors import SpecError
from stockade.build.names import AgentRef, pod_name
from stockade.build.network import build_network_policy
from stockade.build.pod import build_pod
from stockade.build.resources import effective_resources
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


def prepare(agent: Mapping[str, Any], config: OperatorConfig) -> Prepared:
    """Validate an Agent's spec and resolve its RuntimeClass and resources (pure).

    Anything that slipped past the CRD schema becomes ``error`` (InvalidSpec), never an
    exception.
    """
    try:
        spec = AgentSpec.model_validate(agent.get("spec") or {})
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
        return Prepared(spec, runtime_class, resources, "spec.image: an image is required")
    return Prepared(spec, runtime_class, resources, None)


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
    """Per-Agent single-flight reconcile queue with timers (see the module docstring).

    Attributes:
        kube: the API client wrapper.
        config: operator settings.
        concurrency: most reconciles running at once.
        phases: ``(namespace, phase)`` per known Agent, read by the ``stockade_agents``
            gauge at scrape time.

    """

    kube: Kube
    config: OperatorConfig
    concurrency: int = 16
    phases: dict[AgentKey, tuple[str, str]] = field(default_factory=dict)
    _agents: IndexView | None = None
    _pods: IndexView | None = None
    _dirty: set[AgentKey] = field(default_factory=set)
    _running: set[AgentKey] = field(default_factory=set)
    _timers: dict[AgentKey, asyncio.TimerHandle] = field(default_factory=dict)
    _errors: dict[AgentKey, int] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _slots: asyncio.Semaphore | None = None

    def bind(self, agents: IndexView, pods: IndexView) -> None:
        """Give the reconciler kopf's indexes (the same objects on every call)."""
        self._agents, self._pods = agents, pods

    def poke(self, key: AgentKey, delay: float = 0.0) -> None:
        """Reconcile `key` now (or after `delay` seconds); coalesces repeated pokes."""
        loop = asyncio.get_running_loop()
        if delay > 0:
            timer = self._timers.get(key)
            due = loop.time() + delay
            if timer is not None and not timer.cancelled() and timer.when() <= due:
                return
            if timer is not None:
                timer.cancel()
            self._timers[key] = loop.call_at(due, self._fire, key)
            return
        if key in self._running:
            self._dirty.add(key)
            return
        self._running.add(key)
        task = loop.create_task(self._work(key), name=f"reconcile {key[0]}/{key[1]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fire(self, key: AgentKey) -> None:
        self._timers.pop(key, None)
        self.poke(key)

    async def _work(self, key: AgentKey) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        try:
            while True:
                self._dirty.discard(key)
                async with self._slots:
                    await self._guarded(key)
                if key not in self._dirty:
                    return
        finally:
            self._running.discard(key)

    async def _guarded(self, key: AgentKey) -> None:
        with metrics.RECONCILE_SECONDS.time():
            try:
                await self.reconcile(key)
                self._errors.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures = self._errors.get(key, 0) + 1
                self._errors[key] = failures
                delay = min(2.0**failures, 60.0)
                metrics.RECONCILE_ERRORS.inc()
                log.exception("reconcile of %s/%s failed; retrying in %.0fs", *key, delay)
                self.poke(key, delay)

    async def close(self) -> None:
        """Cancel timers and running reconciles (operator shutdown)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _agent(self, key: AgentKey) -> dict[str, Any] | None:
        store = self._agents.get(key) if self._agents is not None else None
        for body in store or ():
            return dict(body)
        return None

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
        namespace, name = key
        agent = self._agent(key)
        if agent is None:
            self.phases.pop(key, None)
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()
            return
        prepared = prepare(agent, self.config)
        view = agent_view(agent, prepared)
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
            admission=Admission(),
            spec_error=prepared.error,
            backoff=tuple(self.config.backoff_seconds(n) for n in range(1, 11)),
            history_limit=self.config.history_limit,
        )
        decision = decide(obs)
        decision = await self._act(agent, prepared, obs, decision)
        if decision.delete_agent:
            await self.kube.delete_agent(namespace, name)
            return
        await self._record(agent, view, decision)
        if decision.requeue_after is not None:
            self.poke(key, max(decision.requeue_after, 0.05))

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
            await self.kube.patch_agent_status(key[0], key[1], patch)
        self.phases[key] = (key[0], str(decision.phase))
        for step in decision.transitions:
            await self._announce(agent, step, view)
        reason = decision.status.get("reason")
        changed = reason != view.status.get("reason")
        if not decision.transitions and changed and reason in _WARNING_REASONS:
            await self.kube.event(
                agent,
                warning=True,
                reason=str(reason),
                message=decision.status.get("message", ""),
            )

    async def _announce(self, agent: dict[str, Any], step: Transition, view: AgentView) -> None:
        metrics.TRANSITIONS.labels(str(step.from_phase), str(step.to_phase), str(step.reason)).inc()
        if step.to_phase == Phase.Running and int(view.status.get("attempts") or 1) <= 1:
            created = parse_time(agent["metadata"].get("creationTimestamp"))
            if created is not None:
                metrics.CREATE_TO_RUNNING.observe((datetime.now(UTC) - created).total_seconds())
        text = f"{step.from_phase or 'New'} -> {step.to_phase}"
        if step.message:
            text = f"{text}: {step.message}"
        await self.kube.event(
            agent, warning=step.reason in _WARNING_REASONS, reason=str(step.reason), message=text
        )


def phase_samples(reconciler: Reconciler) -> Iterable[tuple[str, str]]:
    """``(namespace, phase)`` for every Agent the reconciler knows (the gauge's source)."""
    return list(reconciler.phases.values())
