"""The imperative shell: observe an Agent, call the lifecycle, and make the writes.

:class:`Reconciler` owns two single-flight work queues (:mod:`stockade.runtime.workqueue`),
one for Agents and one for AgentSessions. kopf event handlers ``poke`` a key whenever
the object, one of its pods, its session or a member changes; ``requeue_after`` becomes
a timer. Nothing is remembered between reconciles except pacing: every reconcile reads
the objects from kopf's in-memory indexes (fed by watches; no polling), so an operator
restart simply reconciles everything again. Session admission is decided only by the
session's reconcile and recorded in its ``status.admittedAgents``; an Agent runs only
once its name is recorded there.

Ownership is decided by UID (DESIGN.md 4): only pods and children whose controller
ownerReference carries the Agent's UID are its own; a name held by anything else is a
``ResourceConflict``, never success. What the indexes hold converges to the API: a 404
on a status write, and a periodic LIST (:meth:`Reconciler.resync`), mark entries the
watch never reported deleted (a re-list after 410 Gone does not) as ghosts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from kubernetes.aio.client.exceptions import ApiException
from pydantic import ValidationError

from stockade.api.agent import AgentSpec, Phase
from stockade.build.configmap import build_input_configmap
from stockade.build.errors import SpecError
from stockade.build.names import RETAINED_ANNOTATION, AgentRef, pod_name
from stockade.build.network import (
    OWN_POLICY,
    SHARED_MODES,
    build_agent_network_policy,
    build_shared_network_policy,
    egress_label,
)
from stockade.build.pod import build_pod
from stockade.build.resources import effective_resources, quantity_value
from stockade.build.runtime import resolve_runtime_class
from stockade.build.workspace import build_workspace_pvc
from stockade.config import OperatorConfig
from stockade.core import admission, policy
from stockade.core.children import (
    SHARED,
    ChildView,
    Ownership,
    Write,
    digest,
    ownership,
    plan,
    shared_label,
)
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
from stockade.core.sessions import MemberView, SessionObservation, decide_session
from stockade.runtime import decisionlog, metrics, tracing
from stockade.runtime.k8s import Kube, api_message, classify_rejection, is_transient
from stockade.runtime.workqueue import WorkQueue

log = logging.getLogger("stockade.reconcile")

AgentKey = tuple[str, str]
"""``(namespace, name)`` of an Agent."""

DEFAULT_GRACE_SECONDS = 30
"""A pod's grace period when it sets none (core/v1 terminationGracePeriodSeconds)."""

CREATED_GRACE = 10.0
"""Seconds a child just created is trusted to exist before its watch event arrives."""

EVENTS_IN_FLIGHT = 200
"""Most Events being posted at once; more are dropped (and counted): they inform only."""

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
        Reason.NAMESPACE_NOT_ALLOWED,
        Reason.QUOTA_EXCEEDED,
        Reason.RUNTIME_CLASS_NOT_FOUND,
        Reason.POD_REJECTED,
        Reason.RESOURCE_CONFLICT,
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


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def indexed_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain copy of an Agent or session body, without what the operator never reads.

    ``metadata.managedFields`` and kubectl's last-applied annotation (a second copy of
    the spec, task text included) are dropped: the indexes hold one body per object, so
    they would roughly double the operator's memory per Agent.
    """
    plain: dict[str, Any] = {str(k): to_plain(v) for k, v in body.items() if k != "metadata"}
    metadata = {
        str(k): to_plain(v) for k, v in (body.get("metadata") or {}).items() if k != "managedFields"
    }
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict) and LAST_APPLIED in annotations:
        metadata["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    plain["metadata"] = metadata
    return plain


@dataclass
class Prepared:
    """An Agent's spec turned into what its pod needs (or the reason it cannot be)."""

    spec: AgentSpec | None
    runtime_class: str | None
    resources: dict[str, dict[str, str]] | None
    error: str | None
    reason: Reason = Reason.INVALID_SPEC


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
) -> Prepared:
    """Validate an Agent's effective spec and resolve its RuntimeClass and resources (pure).

    Anything that slipped past the CRD schema becomes ``error`` (InvalidSpec), never an
    exception. A member uses :func:`session_defaults`. Without `policy_present` (the
    chart's admission policy binding was found), an Agent that has not created a pod yet
    and references a ServiceAccount, Secret or ConfigMap is refused
    (``ReferenceNotAllowed``, :func:`stockade.core.policy.reference_problems`); one that
    already ran keeps running (its references were accepted then).
    """
    refused = policy.namespace_problem((agent.get("metadata") or {}).get("namespace"), config)
    if refused is not None:
        return Prepared(None, None, None, str(refused), refused.reason)
    raw = dict(agent.get("spec") or {})
    defaults = session_defaults(agent, session)
    if defaults is not None:
        raw = merge_defaults(raw, defaults)
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
    started = int((agent.get("status") or {}).get("attempts") or 0) > 0
    if not started and (
        refusals := policy.reference_problems(spec, config, policy_present=policy_present)
    ):
        return Prepared(spec, None, None, policy.describe(refusals), refusals[0].reason)
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


@dataclass
class Reconciler:
    """Reconciles Agents and AgentSessions (see the module docstring).

    Attributes:
        kube: the API client wrapper.
        config: operator settings.
        phases: ``(namespace, phase)`` per known Agent (the ``stockade_agents`` gauge).
        session_phases: ``(namespace, phase)`` per known session (``stockade_sessions``).
        phase_entered: ``(namespace, phase, Unix time it was entered)`` per known Agent
            (``stockade_agent_phase_oldest_seconds``).
        budget_usage: ``(namespace, session, resource) -> used/budget`` ratios.
        ghost_grace: seconds an entry a LIST lacks may stay indexed before it is taken
            for a ghost (its DELETED event may be on its way).
        leading: whether this replica may write (:meth:`set_leading`; True unless leader
            election is on).
        on_watch_checked: called after each resync with a resource (plural) and how
            many listed objects its watch had not delivered (the liveness check).
        policy_present: whether the chart's admission policy binding was found
            (:meth:`check_admission_policy`); False until checked (references refused).

    """

    kube: Kube
    config: OperatorConfig
    phases: dict[AgentKey, tuple[str, str]] = field(default_factory=dict)
    session_phases: dict[AgentKey, tuple[str, str]] = field(default_factory=dict)
    phase_entered: dict[AgentKey, tuple[str, str, float]] = field(default_factory=dict)
    budget_usage: dict[tuple[str, str, str], float] = field(default_factory=dict)
    leading: bool = True
    policy_present: bool = False
    _agents: IndexView | None = None
    _pods: IndexView | None = None
    _sessions: IndexView | None = None
    _members: IndexView | None = None
    _children: IndexView | None = None
    ghost_grace: float = 10.0
    _ghosts: set[str] = field(default_factory=set)
    _warned: set[tuple[str, str]] = field(default_factory=set)
    _policy_checked: bool = False
    _created: dict[tuple[str, str, str], float] = field(default_factory=dict)
    _deleted: dict[str, datetime] = field(default_factory=dict)
    _written: dict[tuple[str, AgentKey], tuple[str, str]] = field(default_factory=dict)
    _deferred: set[AgentKey] = field(default_factory=set)
    _verdicts: dict[AgentKey, Mapping[str, admission.Verdict]] = field(default_factory=dict)
    _member_views: dict[AgentKey, tuple[tuple[Any, ...], MemberView]] = field(default_factory=dict)
    _events: set[asyncio.Task[None]] = field(default_factory=set)
    _shared_writes: dict[AgentKey, asyncio.Task[Rejection | None]] = field(default_factory=dict)
    _shared_created: dict[AgentKey, float] = field(default_factory=dict)
    _shared_built: dict[tuple[str, str], tuple[dict[str, Any], str]] = field(default_factory=dict)
    on_watch_checked: Callable[[str, int], None] | None = None
    _agent_queue: WorkQueue[AgentKey] = field(init=False)
    _session_queue: WorkQueue[AgentKey] = field(init=False)
    _policy_queue: WorkQueue[AgentKey] = field(init=False)

    def __post_init__(self) -> None:
        self._agent_queue = WorkQueue(
            self.reconcile, concurrency=self.config.reconcile_concurrency, transient=is_transient
        )
        self._session_queue = WorkQueue(self.reconcile_session, transient=is_transient)
        self._policy_queue = WorkQueue(self.reconcile_shared_policy, transient=is_transient)

    def bind(
        self,
        agents: IndexView,
        pods: IndexView,
        sessions: IndexView,
        members: IndexView,
        children: IndexView | None = None,
    ) -> None:
        """Give the reconciler kopf's indexes (the same objects on every call)."""
        self._agents, self._pods = agents, pods
        self._sessions, self._members = sessions, members
        self._children = children

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
        await asyncio.gather(*self._events, return_exceptions=True)

    def _stale(self, kind: str, key: AgentKey, body: Mapping[str, Any]) -> bool:
        """Whether `body` predates our own last status write (the watch lags behind).

        Deciding from it would undo that write; the watch event carrying the write
        pokes the key again.
        """
        written = self._written.get((kind, key))
        version = (body.get("metadata") or {}).get("resourceVersion")
        stale = written is not None and version == written[0]
        if stale and kind == "agent":
            self._deferred.add(key)
        return stale

    def own_echo(self, key: AgentKey, body: Mapping[str, Any]) -> bool:
        """Whether `body` is the watch's echo of our own last status write to Agent `key`.

        The write was decided from everything observed then, and any later change (a
        pod's, someone's edit) pokes the Agent on its own: reconciling the echo would
        decide the same again. Unless a reconcile was put off waiting for this very
        echo (:meth:`_stale`): then it is needed.
        """
        written = self._written.get(("agent", key))
        version = (body.get("metadata") or {}).get("resourceVersion")
        return written is not None and version == written[1] and key not in self._deferred

    def _wrote(self, kind: str, key: AgentKey, base: str | None, new: str | None) -> None:
        if base and new:
            self._written[(kind, key)] = (base, new)
        else:
            self._written.pop((kind, key), None)

    def member_bodies(self, session: AgentKey) -> list[dict[str, Any]]:
        """The Agents whose sessionRef names `session` (bodies from the Agent index)."""
        found = (self._agent((session[0], name)) for name in self.member_names(session))
        return [body for body in found if body is not None]

    def member_names(self, session: AgentKey) -> list[str]:
        """The names of the Agents whose sessionRef names `session`."""
        names = (self._members.get(session) if self._members is not None else None) or ()
        return [str(name) for name in names]

    def waiting_member(self, session: AgentKey, name: str) -> bool:
        """Whether Agent `name` is a member of `session` that has not started yet."""
        body = self._agent((session[0], name))
        if body is None or session_name(body) != session[1]:
            return False
        return (body.get("status") or {}).get("phase") in (None, "Pending")

    def _first(self, index: IndexView | None, key: AgentKey) -> dict[str, Any] | None:
        """The object under `key`, ghosts skipped; of two incarnations, the newest.

        Two: an Agent deleted and created again before the watch reported the deletion.
        """
        found = [
            body
            for body in (index.get(key) if index is not None else None) or ()
            if _uid(body) not in self._ghosts
        ]
        if not found:
            return None
        newest = max(found, key=lambda b: str(b["metadata"].get("creationTimestamp") or ""))
        return dict(newest)

    def _agent(self, key: AgentKey) -> dict[str, Any] | None:
        return self._first(self._agents, key)

    def _observed_pods(self, key: AgentKey, uid: str) -> dict[int, PodView]:
        """The pods of Agent `key` whose controller ownerReference carries `uid`.

        Pods with Stockade's labels but another (or no) owner are not its attempts: a
        predecessor's of the same name awaiting garbage collection, or a forgery.
        """
        pods: dict[int, PodView] = {}
        store = self._pods.get(key) if self._pods is not None else None
        for view in store or ():
            if not isinstance(view, PodView) or view.owner_uid != uid or view.uid in self._ghosts:
                continue
            asked = self._deleted.get(view.uid)
            if asked is not None and view.deleting:
                del self._deleted[view.uid]  # the watch caught up
            elif asked is not None:
                # Deleted by us, not yet seen so (the Job controller's "expectations"):
                # its going must not read as a lost pod if the Agent resumes meanwhile.
                grace = asked + timedelta(seconds=DEFAULT_GRACE_SECONDS)
                view = replace(view, deleting=True, deletion_deadline=grace)
            pods[view.attempt] = view
        return pods

    def _observed_children(self, key: AgentKey) -> dict[tuple[str, str], ChildView]:
        """``(kind, name) -> ChildView`` of Agent `key`'s children.

        With the name :data:`~stockade.core.children.SHARED`: its namespace's shared policies.
        """
        store = self._children.get(key) if self._children is not None else None
        return {
            (child.kind, child.name): child
            for child in store or ()
            if isinstance(child, ChildView) and child.uid not in self._ghosts
        }

    async def check_admission_policy(self) -> bool:
        """GET the admission policy binding; set :attr:`policy_present` and the gauge.

        Present means the binding named by ``config.admission_policy_binding`` exists
        and its ``validationActions`` include ``Deny``. Absent (404), unnamed, or not
        readable (403, other errors: logged) counts as absent: fail closed. A line is
        logged when the answer changes (and at the first check).
        """
        name = self.config.admission_policy_binding
        present, why = False, "no binding configured (STOCKADE_ADMISSION_POLICY_BINDING)"
        if name:
            try:
                binding = await self.kube.read_policy_binding(name)
            except Exception as exc:  # 403, network: fail closed, try again later
                binding, why = None, f"cannot read it: {exc}"
            else:
                why = "not found"
            if binding is not None:
                actions = (binding.get("spec") or {}).get("validationActions") or []
                present = "Deny" in actions
                why = "found" if present else f"found, but validationActions is {actions}"
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

    def start_resync(self) -> asyncio.Task[None] | None:
        """Start :meth:`resync` every ``config.resync_seconds`` (None when disabled)."""
        if not self.config.resync_seconds:
            return None

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.config.resync_seconds)
                try:
                    await self.check_admission_policy()
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
        """Converge the indexes to a fresh LIST; return how many ghosts were found.

        kopf drops an index entry only on a DELETED event; an object deleted while a
        watch was broken (410 Gone and a re-list, an API server restart) stays in the
        indexes. Entries seen before the LIST started, absent from it, and still indexed
        ``ghost_grace`` seconds later (an ordinary deletion's event arrives well within
        that) are ghosts: readers skip them, and their keys are reconciled (so a ghost
        member frees its session slot and a ghost pod stops keeping its Agent Running).
        """
        indexes = {"agents": self._agents, "agentsessions": self._sessions, "pods": self._pods}
        found: list[tuple[str, AgentKey, str]] = []
        unseen: dict[str, set[str]] = {}
        complete = True
        for resource, index in indexes.items():
            if index is None:
                continue
            before = [
                (key, _uid(body)) for key, store in list(index.items()) for body in store or ()
            ]
            listed = await self.kube.list_uids(resource, self.config.namespaces)
            complete = complete and listed is not None
            if listed is not None:
                found.extend((resource, key, uid) for key, uid in before if uid not in listed)
                unseen[resource] = listed - {uid for _, uid in before}
        listed_at = time.time()
        if complete:
            metrics.RESYNC_LAST_SUCCESS.set(listed_at)
        if (found or any(unseen.values())) and self.ghost_grace:
            await asyncio.sleep(self.ghost_grace)
        for resource, uids in unseen.items():
            # Listed, still not indexed a grace period later, and no event of that kind
            # meanwhile: the watch is stuck. (With events flowing, an object created and
            # deleted within the grace period is the likelier story.)
            indexed = {_uid(b) for store in (indexes[resource] or {}).values() for b in store or ()}
            flowing = metrics.LAST_EVENT.get(resource, 0.0) > listed_at
            missed = 0 if flowing else len(uids - indexed)
            if missed:
                metrics.WATCH_MISSED.labels(resource).inc(missed)
            if self.on_watch_checked is not None:
                self.on_watch_checked(resource, missed)
        found = [
            (resource, key, uid)
            for resource, key, uid in found
            if any(_uid(body) == uid for body in (indexes[resource] or {}).get(key) or ())
        ]
        gone = {uid for _, _, uid in found}
        new = [(resource, key, uid) for resource, key, uid in found if uid not in self._ghosts]
        self._ghosts = gone  # a ghost the index dropped since, or that is back, is no more
        for resource, key, uid in new:
            metrics.INDEX_GHOSTS.inc()
            log.info("%s %s/%s (uid %s) is gone: forgetting it", resource, *key, uid)
            if resource == "agentsessions":
                self.poke_session(key)
            else:
                self.poke(key)
        return len(new)

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
        if not self.leading:
            if trace:
                trace.skipped = "not the leader"
            return
        namespace, name = key
        agent = self._agent(key)
        if agent is None:
            if trace:
                trace.skipped = "not in the index (deleted)"
            self.phases.pop(key, None)
            self.phase_entered.pop(key, None)
            self._written.pop(("agent", key), None)
            self._deferred.discard(key)
            self._member_views.pop(key, None)
            self._agent_queue.forget(key)
            return
        if self._stale("agent", key, agent):
            if trace:
                trace.see(agent, ())
                trace.skipped = f"older than our write {self._written.get(('agent', key))}"
            return
        self._deferred.discard(key)
        uid = _uid(agent)
        session_ref = session_name(agent)
        session = self._first(self._sessions, (namespace, session_ref)) if session_ref else None
        prepared = prepare(agent, self.config, session, policy_present=self.policy_present)
        spec_error = prepared.error
        view = agent_view(agent, prepared)
        admission_, failure = Admission(), None
        if session_ref is not None:
            view, admission_, failure = self._session_terms(agent, view, session_ref, session)
            missing = session is None and session_defaults(agent, None) is None
            if missing and prepared.reason == Reason.INVALID_SPEC:
                # Its session (and the defaults it may supply) is not there yet, as when
                # `kubectl apply -f dir/` or Argo CD applies the member first: wait.
                spec_error = None
        pods = self._observed_pods(key, uid)
        attempt = int(view.status.get("attempts") or 0)
        expected = view.status.get("phase") in (Phase.Starting, Phase.Running)
        if attempt >= 1 and expected and attempt not in pods:
            # The watch may not have delivered a pod we just created: ask once.
            raw = await self.kube.read("Pod", namespace, pod_name(name, attempt))
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
            backoff=self.config.backoff,
            history_limit=self.config.history_limit,
            terminating_timeout=self.config.terminating_timeout_seconds,
        )
        decision = decide(obs)
        if (
            session is not None
            and admission_.reason == Reason.AWAITING_ADMISSION
            and decision.phase == Phase.Pending
            and view.status.get("phase") in (None, Phase.Pending)
            and not decision.delete_agent
        ):
            # Its session has not judged it yet (or admitted it and is recording so):
            # the session's reconcile pokes it with a verdict. Saying "awaiting
            # admission" first would be a status write per member for a moment.
            self.phases[key] = (namespace, str(Phase.Pending))
            if trace:
                trace.skipped = "awaiting its session's admission"
            return
        decision = await self._act(agent, prepared, obs, decision)
        if trace:
            trace.decide(decision.phase, str(decision.status.get("reason")), decision.actions)
        if decision.delete_agent:
            await self.kube.delete_agent(namespace, name)
            return
        defaults = session_defaults(agent, session)
        if (
            session is not None
            and defaults is not None
            and "sessionDefaults" not in decision.status
            and decision.phase in (Phase.Starting, Phase.Running)
        ):
            # Admitted and running: its defaults are resolved once, now, and kept.
            decision = replace(decision, status={**decision.status, "sessionDefaults": defaults})
        if await self._record(agent, view, decision):
            await self._delete_pods(namespace, decision, pods)
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
        """Why admission keeps this Agent waiting, as the session's last reconcile found.

        For its reason only (the session decides admission). Kept from
        :meth:`reconcile_session`, which pokes a member whose verdict changed: a member's
        reconcile costs O(1), not an admission over every member (O(m) per member,
        O(m^2) per session).
        """
        verdicts = self._verdicts.get((agent["metadata"]["namespace"], session_ref))
        return verdicts.get(agent["metadata"]["name"]) if verdicts is not None else None

    def _member(self, body: Mapping[str, Any], session: Mapping[str, Any]) -> MemberView:
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
            self.policy_present,
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
        prepared = prepare(body, self.config, session, policy_present=self.policy_present)
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
        key = (meta["namespace"], meta["name"])
        base = str(meta.get("resourceVersion") or "")
        ours = self._written.get(("agent", key))
        if ours is not None and ours[0] == base:
            base = ours[1]  # this reconcile wrote the status on top of `agent`
        written = await self.kube.patch_agent_owners(key[0], key[1], refs, base)
        if written is None:  # changed meanwhile: its watch event brings it back
            self.poke(key, 1.0)
        else:  # its echo needs no reconcile (:meth:`own_echo`)
            self._wrote("agent", key, base, written)

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
            self._verdicts.pop(key, None)
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
                self.poke((namespace, member.name))
        if decision.requeue_after is not None:
            self.poke_session(key, max(decision.requeue_after, 0.05))

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
            problem = await self._ensure_children(agent, prepared)
            if problem is not None and creates:
                return await self._refused(obs, problem)
            if problem is not None:
                self._warn_once(agent, problem)
        for action in creates:
            problem = await self._create_pod(agent, prepared, action.attempt)
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
        for uid, asked in list(self._deleted.items()):
            if (now - asked).total_seconds() > 600:  # never seen again: gone long ago
                del self._deleted[uid]
        for delete in decision.actions:
            if isinstance(delete, DeletePod):
                await self.kube.delete_pod(namespace, delete.name, force=delete.force)
                if uids.get(delete.name):
                    self._deleted[uids[delete.name]] = now

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
        said = (_uid(agent), problem.message)
        if said in self._warned:
            return
        self._warned.add(said)
        log.warning("%s/%s: %s", meta["namespace"], meta["name"], problem.message)
        self._post(agent, warning=True, reason=str(problem.reason), message=problem.message)

    async def _ensure_children(
        self, agent: dict[str, Any], prepared: Prepared
    ) -> Rejection | str | None:
        """Create what is missing of the Agent's children, restore what drifted.

        The ConfigMap, NetworkPolicy and workspace PVC (:func:`stockade.core.children.plan`).

        Returns None when every child is the Agent's and as built; a ResourceConflict
        Rejection when a name is held by something else (stalled unless it is a
        predecessor's, which garbage collection removes); a message for a spec that
        cannot be built.
        """
        spec = prepared.spec
        if spec is None:
            return prepared.error or "the spec could not be prepared"
        metadata = agent["metadata"]
        ref = AgentRef(metadata["name"], metadata["namespace"], metadata["uid"])
        label = egress_label(spec.network)
        if label != OWN_POLICY:
            problem = await self._ensure_shared(ref.namespace, label)
            if problem is not None:
                return problem
        try:
            own = label == OWN_POLICY  # else the shared one, ensured above
            fence = build_agent_network_policy(ref, spec, self.config) if own else None
            built = [fence, build_input_configmap(ref, spec), build_workspace_pvc(ref, spec)]
        except SpecError as exc:
            return str(exc)
        observed = self._observed_children((ref.namespace, ref.name))
        started = int((agent.get("status") or {}).get("attempts") or 0) >= 1
        desired = [child for child in built if child is not None and self._expects(ref, child)]
        for step in plan(desired, observed, ref.name, ref.uid):
            manifest = dict(step.desired)
            if step.write is Write.CREATE:
                # Made with the first pod, it most likely exists and the watch has not
                # listed it yet (the operator just started): look before writing.
                found = await self._create_or_find(manifest, look_first=started)
                if found is None:
                    until = time.monotonic() + CREATED_GRACE
                    self._created[_created_key(ref, manifest)] = until
                    continue
                if isinstance(found, Rejection):
                    return found
                view = found
                retained = RETAINED_ANNOTATION in (manifest["metadata"].get("annotations") or {})
                whose = ownership(view, ref.name, ref.uid, retained)
                if whose is not Ownership.OURS:
                    return _conflict(manifest, view, transient=whose is Ownership.PREDECESSOR)
                if manifest["kind"] != "PersistentVolumeClaim" and view.digest != digest(manifest):
                    await self.kube.replace(manifest, view.resource_version)
            elif step.write is Write.REPLACE and step.found is not None:
                log.info("restoring %s %s/%s", manifest["kind"], ref.namespace, step.found.name)
                await self.kube.replace(manifest, step.found.resource_version)
            elif step.write is Write.CONFLICT:
                return _conflict(manifest, step.found, transient=False)
            elif step.write is Write.WAIT:
                return _conflict(manifest, step.found, transient=True)
        return None

    async def reconcile_shared_policy(self, key: AgentKey) -> None:
        """Restore the namespace's shared NetworkPolicy `key` if a live pod needs it.

        Poked by the policy's watch events: a deletion or an edit (anyone's) is put
        back while a pod labelled with its mode may still run; an unneeded one is left
        alone (and one deleted then is not made again until a pod needs it).
        """
        namespace, name = key
        label = name.removeprefix("stockade-egress-")
        if not self.leading or label not in SHARED_MODES:
            return
        pods = self._pods
        needed = pods is not None and any(
            isinstance(view, PodView)
            and view.egress == label
            and not view.finished
            and view.uid not in self._ghosts
            for (ns, _), views in pods.items()
            if ns == namespace
            for view in views
        )
        if needed:
            problem = await self._ensure_shared(namespace, label, trust_watch=True)
            if problem is not None:
                log.warning("%s/%s: %s", namespace, name, problem.message)

    def _shared_policy(self, namespace: str, label: str) -> tuple[dict[str, Any], str]:
        """The shared policy of `label` in `namespace` as built, and its digest.

        Built once: every reconcile of a live Agent checks it.
        """
        built = self._shared_built.get((namespace, label))
        if built is None:
            manifest = build_shared_network_policy(namespace, label, self.config)
            built = self._shared_built[(namespace, label)] = (manifest, digest(manifest))
        return built

    async def _ensure_shared(
        self, namespace: str, label: str, *, trust_watch: bool = False
    ) -> Rejection | None:
        """Make sure `namespace`'s shared policy of egress `label` exists, as built.

        Needed before a pod of that mode runs. One write at a time per policy:
        concurrent reconciles of the namespace's Agents wait for the same create (or
        restore) rather than racing to a 409. A policy created a moment ago and not
        yet watched is taken as there, unless
        `trust_watch` (the caller acts on the policy's own watch event, which is newer).

        Returns None when it is there and as built; a Rejection when another object
        holds its name (ResourceConflict), it is being deleted (transient: its DELETED
        event restores it), or the API server refused it.
        """
        manifest, built = self._shared_policy(namespace, label)
        key = (namespace, str(manifest["metadata"]["name"]))
        running = self._shared_writes.get(key)
        if running is not None:
            return await asyncio.shield(running)
        found = self._observed_children((key[0], SHARED)).get(("NetworkPolicy", key[1]))
        if found is None:
            until = self._shared_created.get(key, 0.0)
            if not trust_watch and until > time.monotonic():
                return None
        else:
            self._shared_created.pop(key, None)
            problem = self._shared_problem(manifest, found)
            if problem is not None or found.digest == built:
                return problem
        task = asyncio.create_task(self._write_shared(manifest, found))
        self._shared_writes[key] = task
        task.add_done_callback(lambda _: self._shared_writes.pop(key, None))
        return await asyncio.shield(task)

    async def _write_shared(
        self, manifest: dict[str, Any], found: ChildView | None
    ) -> Rejection | None:
        """Create the shared policy `manifest`, or put `found` (ours) back to it."""
        meta = manifest["metadata"]
        if found is None:
            view = await self._create_or_find(manifest)
            if view is None:
                key = (str(meta["namespace"]), str(meta["name"]))
                self._shared_created[key] = time.monotonic() + CREATED_GRACE
                return None
            if isinstance(view, Rejection):
                return view
            problem = self._shared_problem(manifest, view)
            if problem is not None or view.digest == digest(manifest):
                return problem
            found = view
        log.info("restoring NetworkPolicy %s/%s", meta["namespace"], meta["name"])
        await self.kube.replace(manifest, found.resource_version)
        return None

    @staticmethod
    def _shared_problem(manifest: Mapping[str, Any], found: ChildView) -> Rejection | None:
        """Why the policy `found` under the shared policy's name will not do, or None."""
        label = shared_label(manifest)
        if ownership(found, "", "", False, shared=label) is not Ownership.OURS:
            return _conflict(manifest, found, transient=False)
        if found.deleting:
            return _conflict(manifest, found, transient=True)
        return None

    async def _create_or_find(
        self, manifest: dict[str, Any], *, look_first: bool = False
    ) -> ChildView | Rejection | None:
        """Create `manifest`, or find what holds its name (for the caller to judge).

        Returns None when it was created now; a Rejection when the API server refused
        it (quota, admission, 422) or its holder vanished between the 409 and the GET
        (transient: the next reconcile creates it); else the summary of the object that
        holds the name, whoever owns it. With `look_first`, a GET comes first: a
        refused create (409) is a write too.
        """
        kind, meta = manifest["kind"], manifest["metadata"]
        found = await self.kube.read(kind, meta["namespace"], meta["name"]) if look_first else None
        if found is None:
            try:
                if await self.kube.create(manifest):
                    return None
            except ApiException as exc:
                rejection = classify_rejection(exc)
                if rejection is None:
                    raise
                log.info(
                    "%s %s/%s refused: %s", kind, meta["namespace"], meta["name"], api_message(exc)
                )
                return rejection
            # 409: the watch has not shown it yet, or it is not ours.
            found = await self.kube.read(kind, meta["namespace"], meta["name"])
        if found is None:
            return _conflict(manifest, None, transient=True)
        found.setdefault("kind", kind)
        return ChildView.of(found)

    def _expects(self, ref: AgentRef, child: Mapping[str, Any]) -> bool:
        """Whether to plan `child`: not if created a moment ago and not yet watched.

        Creating it again before its watch event arrives would be a 409 and a GET.
        """
        key = _created_key(ref, child)
        until = self._created.get(key)
        if until is None:
            return True
        kind, name = key[1], key[2]
        if until < time.monotonic() or (kind, name) in self._observed_children(
            (ref.namespace, ref.name)
        ):
            del self._created[key]
            return True
        return False

    async def _create_pod(
        self, agent: dict[str, Any], prepared: Prepared, attempt: int
    ) -> Rejection | str | None:
        """Create the pod of `attempt` (its children exist: :meth:`_ensure_children`).

        Returns None on success (also when the pod exists and is this Agent's: the
        status write that recorded it was lost), a Rejection when the API server refuses
        it or its name is held by a pod the Agent does not own, or a message when the
        spec cannot become a pod.
        """
        spec = prepared.spec
        if spec is None or prepared.runtime_class is None or prepared.resources is None:
            return prepared.error or "the spec could not be prepared"
        metadata = agent["metadata"]
        ref = AgentRef(metadata["name"], metadata["namespace"], metadata["uid"])
        try:
            pod = build_pod(
                ref,
                spec,
                attempt=attempt,
                runtime_class=prepared.runtime_class,
                resources=prepared.resources,
                config=self.config,
            )
        except SpecError as exc:
            return str(exc)
        view = await self._create_or_find(pod)
        if view is None or isinstance(view, Rejection):
            return view
        whose = ownership(view, ref.name, ref.uid, False)
        if whose is Ownership.OURS and not view.deleting:
            return None  # created before, but not recorded (the operator stopped)
        # Ours but terminating (a suspended attempt's pod, its deletion not yet watched:
        # the pods may be listed after the Agents at start-up) is no new attempt: wait.
        return _conflict(pod, view, transient=whose is Ownership.PREDECESSOR or view.deleting)

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
            written = await self.kube.patch_agent_status(key[0], key[1], patch, base)
            self._wrote("agent", key, base, written)
            if written is None:
                # Someone changed the Agent since we looked (its watch event re-pokes
                # it), or it is gone: then a resync tells (a 409 and a 404 look alike
                # here), so look again after a short while.
                self.poke(key, 1.0)
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
        if not decision.transitions and changed and reason in _WARNING_REASONS:
            self._post(
                agent,
                warning=True,
                reason=str(reason),
                message=decision.status.get("message", ""),
            )
        return True

    def _post(self, agent: dict[str, Any], *, warning: bool, reason: str, message: str) -> None:
        """Record an Event in the background: Events inform, they must not slow a reconcile."""

        async def post() -> None:
            try:
                await self.kube.event(agent, warning=warning, reason=reason, message=message)
            except Exception:  # an Event lost is not worth a failed reconcile
                log.warning("could not record Event %s on %s", reason, agent["metadata"]["name"])

        if len(self._events) >= EVENTS_IN_FLIGHT:
            metrics.EVENTS_DROPPED.inc()
            return
        task = asyncio.get_running_loop().create_task(post())
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    def _announce(self, agent: dict[str, Any], step: Transition, view: AgentView) -> None:
        text = f"{step.from_phase or 'New'} -> {step.to_phase}"
        if step.message:
            text = f"{text}: {step.message}"
        self._post(
            agent, warning=step.reason in _WARNING_REASONS, reason=str(step.reason), message=text
        )


def _created_key(ref: AgentRef, child: Mapping[str, Any]) -> tuple[str, str, str]:
    return (ref.uid, str(child["kind"]), str(child["metadata"]["name"]))


def _uid(body: Mapping[str, Any] | PodView | ChildView) -> str:
    """The UID of an indexed object: a body, or the summary an index keeps of it."""
    if isinstance(body, PodView | ChildView):
        return body.uid
    return str((body.get("metadata") or {}).get("uid") or "")


def _conflict(
    manifest: Mapping[str, Any], found: ChildView | None, *, transient: bool
) -> Rejection:
    """A child's name is held by an object this Agent does not own (ResourceConflict).

    `transient`: an earlier Agent's of the same name (garbage collection removes it) or
    one being deleted; otherwise it is someone else's and waiting will not help
    (Stalled=True).
    """
    held = found.describe() if found else f"{manifest['kind']} {manifest['metadata']['name']}"
    if transient:
        message = f"{held} is not this Agent's or is being deleted; waiting for it to go"
    else:
        message = f"{held} exists and is not owned by this Agent: delete or rename it"
    return Rejection(Reason.RESOURCE_CONFLICT, message, stalled=not transient)


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
