"""Operator start-up and shutdown: settings, clients, the reconciler, metrics, leadership.

With leader election on, a :class:`~stockade.runtime.leader.LeaderElector` gates the reconciler's
writes (several replicas: one leader, the others warm standbys).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Iterable
from typing import Any

import kopf
from kubernetes.aio import client as aclient
from prometheus_client import start_http_server

from stockade.apiclient import api_client
from stockade.build.names import MANAGED_SELECTOR
from stockade.config import OperatorConfig, load_config
from stockade.reconcile import Reconciler, phase_samples, session_phase_samples
from stockade.runtime import metrics, tracing
from stockade.runtime.health import Health, HealthServer
from stockade.runtime.k8s import KubeClient
from stockade.runtime.kinds import OWNED_KINDS
from stockade.runtime.leader import LeaderElector

log = logging.getLogger("stockade")


class NoDiffBase(kopf.DiffBaseStorage):
    """A diff-base storage that keeps and builds nothing.

    kopf computes an object's "essence" (a deep copy of its body) and a diff on every
    watch event, for its on.create/update/delete handlers
    (https://kopf.readthedocs.io/en/stable/configuration/#change-detection). Stockade
    has none (event and index handlers only), so this is pure overhead: the empty
    essence makes it free.
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        """The empty essence (no change-detecting handler reads it)."""
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        """Nothing was stored."""
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        """Store nothing (kopf writes no annotation to the objects)."""


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Configure kopf for a level-triggered operator and build the reconciler.

    - pods are watched with a server-side label selector (only Stockade's pods stream);
    - kopf posts no Events of its own (the reconciler records one per transition);
    - kopf scans no CRDs or namespaces (least privilege: see the Helm chart's RBAC);
    - no handler needs kopf's progress or diff-base annotations: only event and index
      handlers are used, so kopf writes nothing to the Agents.
    """
    config: OperatorConfig = memo.get("config") or load_config()
    memo["config"] = config
    for owned in OWNED_KINDS:
        resource = (owned.group, owned.plural) if owned.group else (owned.version, owned.plural)
        settings.watching.label_selectors[resource] = MANAGED_SELECTOR
    settings.posting.enabled = False
    settings.persistence.diffbase_storage = NoDiffBase()
    # No CRD or namespace scanning: the watched resources are known at start (one
    # discovery call) and the namespaces are the configured ones, so the operator needs
    # no cluster-scoped read access to customresourcedefinitions or namespaces (the
    # chart's least-privilege RBAC grants none; scanning would be refused with 403s).
    settings.scanning.disabled = True
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    if tracing.configure():
        log.info(
            "tracing: one trace per Agent attempt to %s", os.environ[tracing.ENDPOINT_VARIABLE]
        )
    kube = KubeClient(await api_client())
    reconciler = Reconciler(kube, config)
    memo["kube"], memo["reconciler"] = kube, reconciler
    health = start_health(config, memo)
    if health is not None:
        reconciler.on_watch_checked = health.watch_checked
    if config.leader_election:
        reconciler.set_leading(False)
        metrics.LEADER.set(0)
        memo["elector"] = elector = elector_for(config, reconciler, await api_client())
        elector.start()
    else:
        metrics.LEADER.set(1)
    # Before any Agent is reconciled: the references it may make depend on the answer.
    await reconciler.check_admission_policy()
    await reconciler.check_api_server()  # Custom egress may not reach it
    memo["resync"] = reconciler.start_resync()
    if config.metrics_port and not memo.get("metrics_started"):
        metrics.register_gauges(
            lambda: phase_samples(memo["reconciler"]),
            lambda: session_phase_samples(memo["reconciler"]),
            lambda: dict(memo["reconciler"].budget_usage),
            lambda: memo["reconciler"].queues(),
            lambda: list(memo["reconciler"].phase_entered.values()),
        )
        start_http_server(config.metrics_port)
        memo["metrics_started"] = True
        log.info("metrics on :%d/metrics", config.metrics_port)
    if health is not None:
        # The endpoints answer from now on (the Deployment's startupProbe waits for them);
        # ready once the API answers the operator's LIST of Agents (its initial listing).
        if not memo.get("health_served"):
            HealthServer(health, config.health_port).start()
            memo["health_served"] = True

        async def become_ready() -> None:
            while await reconciler.kube.list_uids("agents", config.namespaces) is None:
                await asyncio.sleep(5)
            health.set_ready()

        memo["ready"] = asyncio.get_running_loop().create_task(become_ready())


def start_health(config: OperatorConfig, memo: kopf.Memo) -> Health | None:
    """The liveness state, with its heartbeat started (served at the end of start-up).

    See :mod:`stockade.runtime.health`; None when ``health_port`` is 0. The state and its server
    thread outlive an operator restart within the process (tests): made once.
    """
    if not config.health_port:
        return None
    health: Health | None = memo.get("health")
    if health is None:
        health = Health(stall_seconds=config.liveness_stall_seconds)
        memo["health"] = health
    health.ready = False
    memo["heartbeat"] = asyncio.get_running_loop().create_task(health.beat())
    return health


def elector_for(
    config: OperatorConfig, reconciler: Reconciler, api: aclient.ApiClient
) -> LeaderElector:
    """A LeaderElector for this process that gates `reconciler`'s writes.

    The identity is the pod name (else the host name) and a random suffix, as
    controller-runtime's: a restarted process is a new candidate. Losing the Lease
    stops all writes at once, then exits the process (status 1), as controller-runtime
    does: the Deployment restarts it, and it rejoins as a standby.
    """
    identity = f"{config.pod_name or socket.gethostname()}_{uuid.uuid4().hex[:12]}"

    def started() -> None:
        reconciler.set_leading(True)
        metrics.LEADER.set(1)

    def lost() -> None:
        reconciler.set_leading(False)
        metrics.LEADER.set(0)
        log.critical(
            "leader election lost (lease %s, identity %s): exiting; a restart rejoins as a standby",
            elector.lease,
            identity,
        )
        logging.shutdown()
        os._exit(1)

    elector = LeaderElector(
        api,
        namespace=config.leader_election_namespace,
        name=config.leader_election_lease_name,
        identity=identity,
        lease_duration=config.leader_election_lease_duration_seconds,
        renew_deadline=config.leader_election_renew_deadline_seconds,
        retry_period=config.leader_election_retry_period_seconds,
        on_started_leading=started,
        on_stopped_leading=lost,
    )
    return elector


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Stop writing, cancel timers and reconciles, release the Lease, close the clients.

    The Lease is released only after the last write, so a standby that takes over at
    once never overlaps with this replica.
    """
    for task in (memo.get("resync"), memo.get("heartbeat"), memo.get("ready")):
        if task is not None:
            task.cancel()
    reconciler: Reconciler | None = memo.get("reconciler")
    elector: LeaderElector | None = memo.get("elector")
    if reconciler is not None:
        reconciler.set_leading(False)
        await reconciler.close()
    if elector is not None:
        await elector.stop()
        await elector.leases.api_client.close()
    kube: KubeClient | None = memo.get("kube")
    if kube is not None:
        await kube.api.close()  # type: ignore[no-untyped-call]
