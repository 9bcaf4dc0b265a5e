"""The operator's shell, assembled: the controllers, their queues, and what they share.

:class:`Reconciler` owns three single-flight work queues (:mod:`stockade.runtime.workqueue`):
Agents (:mod:`stockade.controllers.agent`), AgentSessions
(:mod:`stockade.controllers.session`) and the shared egress policies
(:mod:`stockade.controllers.egress`). The kopf handlers (:mod:`stockade.handlers`)
``poke`` a key whenever an object, one of its pods, its session or a member changes;
``requeue_after`` becomes a timer. Every reconcile reads from the cache over kopf's
indexes (:mod:`stockade.runtime.cache`), so an operator restart simply reconciles
everything again. How an event reaches a reconcile, and where each rule lives:
docs/architecture.md.

Ownership is decided by UID: only pods and children whose controller ownerReference
carries the Agent's UID are its own; a name held by anything else is a
``ResourceConflict``, never success.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stockade.config import OperatorConfig
from stockade.controllers.agent import Agents
from stockade.controllers.children import Children
from stockade.controllers.context import Context
from stockade.controllers.egress import SharedPolicies
from stockade.controllers.session import Sessions
from stockade.core.policy_fingerprint import EXPECTED as EXPECTED_POLICY_FINGERPRINT
from stockade.core.policy_integrity import (
    PROBLEM_REASONS,
    PolicyVerdict,
    judge_admission_policy,
)
from stockade.core.spec import (
    Prepared,
    agent_view,
    merge_defaults,
    prepare,
    requests_of,
    session_defaults,
    session_name,
    status_patch,
)
from stockade.runtime import metrics
from stockade.runtime.cache import AgentKey, Cache, IndexView, indexed_body, to_plain
from stockade.runtime.echoes import Echoes
from stockade.runtime.events import EventRecorder
from stockade.runtime.expectations import Expectations
from stockade.runtime.k8s import KubeApi, is_transient
from stockade.runtime.workqueue import WorkQueue

log = logging.getLogger("stockade.reconcile")

__all__ = [
    "AgentKey",
    "IndexView",
    "Prepared",
    "Reconciler",
    "agent_view",
    "indexed_body",
    "merge_defaults",
    "phase_samples",
    "prepare",
    "requests_of",
    "session_defaults",
    "session_name",
    "session_phase_samples",
    "status_patch",
    "to_plain",
]


@dataclass
class Reconciler:
    """The controllers of Agents, AgentSessions and shared policies, with their queues.

    Attributes:
        kube: the API client wrapper.
        config: operator settings.
        leading: whether this replica may write (:meth:`set_leading`; True unless leader
            election is on).
        policy_present: whether the chart's admission policy binding was found
            (:meth:`check_admission_policy`); False until checked (references refused).
        api_server_cidrs: the API server's addresses as CIDRs (:meth:`check_api_server`),
            which Custom egress may not reach; None until read (Custom egress refused).
        ghost_grace: see :class:`~stockade.runtime.cache.Cache`.

    The parts: :attr:`cache`, :attr:`agents`, :attr:`sessions`, :attr:`shared`.

    """

    kube: KubeApi
    config: OperatorConfig
    leading: bool = True
    policy_present: bool = False
    api_server_cidrs: tuple[str, ...] | None = None
    ghost_grace: float = 10.0
    _policy_checked: bool = False
    _policy_reason: str | None = None
    cache: Cache = field(init=False)
    agents: Agents = field(init=False)
    sessions: Sessions = field(init=False)
    shared: SharedPolicies = field(init=False)
    events: EventRecorder = field(init=False)
    _agent_queue: WorkQueue[AgentKey] = field(init=False)
    _session_queue: WorkQueue[AgentKey] = field(init=False)
    _policy_queue: WorkQueue[AgentKey] = field(init=False)

    def __post_init__(self) -> None:
        self.cache = Cache(self.kube, self.config.namespaces, self.ghost_grace)
        self.cache.on_ghost = self._ghost_found
        echoes, expectations = Echoes(), Expectations()
        self.events = EventRecorder(self.kube)
        leading: Callable[[], bool] = lambda: self.leading  # noqa: E731
        present: Callable[[], bool] = lambda: self.policy_present  # noqa: E731
        api_server: Callable[[], tuple[str, ...] | None] = lambda: self.api_server_cidrs  # noqa: E731
        self.shared = SharedPolicies(self.kube, self.config, self.cache, expectations, leading)
        context = Context(
            self.kube,
            self.config,
            self.cache,
            echoes,
            self.poke,
            self.poke_session,
            leading,
            present,
            api_server,
        )
        self.sessions = Sessions(context)
        children = Children(self.kube, self.config, self.cache, expectations, self.shared)
        self.agents = Agents(
            context, expectations, self.events, children, self.sessions, self._forget_agent
        )
        self._agent_queue = WorkQueue(
            self.agents.reconcile,
            concurrency=self.config.reconcile_concurrency,
            transient=is_transient,
        )
        self._session_queue = WorkQueue(self.reconcile_session, transient=is_transient)
        self._policy_queue = WorkQueue(self.shared.reconcile, transient=is_transient)

    # --- what the handlers call ------------------------------------------------------

    @property
    def on_watch_checked(self) -> Callable[[str, int], None] | None:
        """Called after each resync with a resource and its missed count (liveness)."""
        return self.cache.on_watch_checked

    @on_watch_checked.setter
    def on_watch_checked(self, callback: Callable[[str, int], None] | None) -> None:
        self.cache.on_watch_checked = callback

    @property
    def phases(self) -> dict[AgentKey, tuple[str, str]]:
        """``(namespace, phase)`` per known Agent (the ``stockade_agents`` gauge)."""
        return self.agents.phases

    @property
    def phase_entered(self) -> dict[AgentKey, tuple[str, str, float]]:
        """``(namespace, phase, Unix time entered)`` per known Agent."""
        return self.agents.phase_entered

    @property
    def session_phases(self) -> dict[AgentKey, tuple[str, str]]:
        """``(namespace, phase)`` per known session (the ``stockade_sessions`` gauge)."""
        return self.sessions.session_phases

    @property
    def budget_usage(self) -> dict[tuple[str, str, str], float]:
        """``(namespace, session, resource) -> used/budget`` ratios."""
        return self.sessions.budget_usage

    def own_echo(self, key: AgentKey, body: Mapping[str, Any]) -> bool:
        """Whether `body` is the echo of our own last status write to Agent `key`."""
        return self.agents.ctx.echoes.own_echo("agent", key, body)

    def member_names(self, session: AgentKey) -> list[str]:
        """The names of the Agents whose sessionRef names `session`."""
        return self.cache.member_names(session)

    def waiting_member(self, session: AgentKey, name: str) -> bool:
        """Whether Agent `name` is a member of `session` that has not started yet."""
        body = self.cache.agent((session[0], name))
        if body is None or session_name(body) != session[1]:
            return False
        return (body.get("status") or {}).get("phase") in (None, "Pending")

    def set_leading(self, leading: bool) -> None:
        """Allow or forbid writes (leader election).

        A standby's reconciles return at once, writing nothing, while kopf's watches
        keep its indexes warm; on becoming the leader every Agent and session in them is
        poked, so everything is reconciled at once.
        """
        self.leading = leading
        if leading:
            for key in list(self.cache.agents or ()):
                self.poke(key)
            for key in list(self.cache.sessions or ()):
                self.poke_session(key, 0.0)

    def queues(self) -> dict[str, WorkQueue[AgentKey]]:
        """The work queues by name, for the queue metrics.

        ``agents``, ``agentsessions`` and ``networkpolicies`` (the shared policies).
        """
        return {
            "agents": self._agent_queue,
            "agentsessions": self._session_queue,
            "networkpolicies": self._policy_queue,
        }

    def poke(self, key: AgentKey, delay: float = 0.0) -> None:
        """Reconcile Agent `key` now (or after `delay` seconds); coalesces pokes."""
        self._agent_queue.poke(key, delay)

    def poke_session(self, key: AgentKey, delay: float = 0.2) -> None:
        """Reconcile session `key` soon: a short delay coalesces bursts of member events."""
        self._session_queue.poke(key, delay)

    def poke_shared_policy(self, key: AgentKey) -> None:
        """Check the namespace's shared NetworkPolicy `key` (it changed or went away)."""
        self._policy_queue.poke(key)

    async def close(self) -> None:
        """Cancel timers and running reconciles (operator shutdown)."""
        await self._agent_queue.close()
        await self._session_queue.close()
        await self._policy_queue.close()
        await self.events.close()

    async def check_admission_policy(self) -> bool:
        """GET the admission policy and its binding; set :attr:`policy_present` and gauges.

        Present means the binding named by ``config.admission_policy_binding`` exists,
        has ``Deny`` among its ``validationActions``, does not narrow what it matches
        (``matchResources``), and the ValidatingAdmissionPolicy it names exists with the
        chart's rules (its fingerprint is :data:`~stockade.core.policy_fingerprint.
        EXPECTED`; :func:`~stockade.core.policy_integrity.judge_admission_policy`).
        Anything else (absent, edited, unnamed, not readable: 403, other errors) counts
        as absent: fail closed. ``stockade_admission_policy_problem{reason}`` says why;
        a line is logged when the answer changes (and at the first check).
        """
        name = self.config.admission_policy_binding
        verdict = PolicyVerdict(
            "unconfigured", "no binding configured (STOCKADE_ADMISSION_POLICY_BINDING)"
        )
        if name:
            try:
                binding = await self.kube.read_policy_binding(name)
                policy_name = ((binding or {}).get("spec") or {}).get("policyName") or ""
                policy = (
                    await self.kube.read_admission_policy(policy_name)
                    if binding is not None and policy_name
                    else None
                )
            except Exception as exc:  # 403, network: fail closed, try again later
                verdict = PolicyVerdict("unreadable", f"cannot read it: {exc}")
            else:
                verdict = judge_admission_policy(binding, policy, EXPECTED_POLICY_FINGERPRINT)
        present, why = verdict.present, verdict.why
        for reason in PROBLEM_REASONS:
            metrics.ADMISSION_POLICY_PROBLEM.labels(reason=reason).set(
                1 if reason == verdict.reason else 0
            )
        if verdict.reason != self._policy_reason:
            self._policy_checked = False  # a new reason: log it
        self._policy_reason = verdict.reason
        changed = present != self.policy_present or not self._policy_checked
        self.policy_present, self._policy_checked = present, True
        metrics.ADMISSION_POLICY_PRESENT.set(1 if present else 0)
        if changed:
            mode = self.config.references_without_policy
            log.log(
                logging.INFO if present else logging.WARNING,
                "admission policy binding %r: %s; Agents referencing ServiceAccounts, "
                "Secrets or ConfigMaps are %s",
                name,
                why,
                "checked at admission"
                if present
                else ("allowed unchecked" if mode == "allow" else "refused (ReferenceNotAllowed)"),
            )
        return present

    async def check_api_server(self) -> tuple[str, ...] | None:
        """Read the API server's addresses; set :attr:`api_server_cidrs` (Custom egress).

        From the ``kubernetes`` EndpointSlice in ``default``, which the API server keeps
        (:meth:`KubeClient.read_api_server_addresses`). A failed read keeps the last known
        addresses (none known: Custom egress is refused, ``EgressDenied``) and is
        logged; a change is logged too.
        """
        try:
            found = await self.kube.read_api_server_addresses()
        except Exception as exc:  # 403, network: keep what we know, try again later
            log.warning(
                "cannot read the API server's addresses (EndpointSlice default/kubernetes): %s; %s",
                exc,
                "keeping the last known ones"
                if self.api_server_cidrs is not None
                else "Agents with Custom egress are refused (EgressDenied) until they are known",
            )
            return self.api_server_cidrs
        cidrs = tuple(str(ipaddress.ip_network(a)) for a in found if _is_ip(a))
        if cidrs != self.api_server_cidrs:
            log.info("the API server's addresses (denied to Custom egress): %s", cidrs)
        self.api_server_cidrs = cidrs
        return cidrs

    def start_resync(self) -> asyncio.Task[None] | None:
        """Start :meth:`resync` every ``config.resync_seconds`` (None when disabled)."""
        if not self.config.resync_seconds:
            return None

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.config.resync_seconds)
                try:
                    await self.check_admission_policy()
                    await self.check_api_server()
                    await self.resync()
                except Exception as exc:  # the next round tries again
                    if is_transient(exc):
                        log.warning(
                            "resync: %s; next round in %.0fs", exc, self.config.resync_seconds
                        )
                    else:
                        log.exception("resync failed")

        return asyncio.get_running_loop().create_task(loop())

    async def resync(self) -> int:
        """Converge the cache to a fresh LIST (:meth:`Cache.resync`); the new ghosts."""
        return await self.cache.resync()

    def _ghost_found(self, resource: str, key: AgentKey) -> None:
        if resource == "agentsessions":
            self.poke_session(key)
        else:
            self.poke(key)

    def _forget_agent(self, key: AgentKey) -> None:
        self._agent_queue.forget(key)

    async def reconcile(self, key: AgentKey) -> None:
        """Reconcile Agent `key` now (:meth:`Agents.reconcile`)."""
        await self.agents.reconcile(key)

    async def reconcile_session(self, key: AgentKey) -> None:
        """Reconcile AgentSession `key` now (:meth:`Sessions.reconcile`)."""
        await self.sessions.reconcile(key)
        if self.cache.session(key) is None:
            self._session_queue.forget(key)

    async def reconcile_shared_policy(self, key: AgentKey) -> None:
        """Check the shared policy `key` now (:meth:`SharedPolicies.reconcile`)."""
        await self.shared.reconcile(key)


def phase_samples(reconciler: Reconciler) -> Iterable[tuple[str, str]]:
    """``(namespace, phase)`` for every Agent the reconciler knows (the gauge's source)."""
    return list(reconciler.phases.values())


def session_phase_samples(reconciler: Reconciler) -> Iterable[tuple[str, str]]:
    """``(namespace, phase)`` for every AgentSession the reconciler knows."""
    return list(reconciler.session_phases.values())


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
