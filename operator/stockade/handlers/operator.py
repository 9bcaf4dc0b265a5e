"""Operator start-up and shutdown: settings, the API client, the reconciler, metrics."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes.aio import client as aclient
from kubernetes.aio import config as aconfig
from kubernetes.aio.config.config_exception import ConfigException
from prometheus_client import start_http_server

from stockade import metrics
from stockade.build.names import MANAGED_SELECTOR
from stockade.config import OperatorConfig, load_config
from stockade.k8s import Kube
from stockade.reconcile import Reconciler, phase_samples, session_phase_samples

log = logging.getLogger("stockade")


async def api_client() -> aclient.ApiClient:
    """An asyncio API client: in-cluster credentials if present, else the kubeconfig."""
    try:
        aconfig.load_incluster_config()  # type: ignore[no-untyped-call]
    except ConfigException:
        await aconfig.load_kube_config()  # type: ignore[no-untyped-call]
    return aclient.ApiClient()


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
    for resource in (
        ("v1", "pods"),
        ("v1", "configmaps"),
        ("v1", "persistentvolumeclaims"),
        ("networking.k8s.io", "networkpolicies"),
    ):
        settings.watching.label_selectors[resource] = MANAGED_SELECTOR
    settings.posting.enabled = False
    # No CRD or namespace scanning: the watched resources are known at start (one
    # discovery call) and the namespaces are the configured ones, so the operator needs
    # no cluster-scoped read access to customresourcedefinitions or namespaces (the
    # chart's least-privilege RBAC grants none; scanning would be refused with 403s).
    settings.scanning.disabled = True
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    reconciler = Reconciler(Kube(await api_client()), config)
    memo["reconciler"] = reconciler
    memo["resync"] = reconciler.start_resync()
    if config.metrics_port and not memo.get("metrics_started"):
        metrics.register_gauges(
            lambda: phase_samples(memo["reconciler"]),
            lambda: session_phase_samples(memo["reconciler"]),
            lambda: dict(memo["reconciler"].budget_usage),
        )
        start_http_server(config.metrics_port)
        memo["metrics_started"] = True
        log.info("metrics on :%d/metrics", config.metrics_port)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Stop timers and reconciles, close the API client."""
    resync = memo.get("resync")
    if resync is not None:
        resync.cancel()
    reconciler: Reconciler | None = memo.get("reconciler")
    if reconciler is not None:
        await reconciler.close()
        await reconciler.kube.api.close()  # type: ignore[no-untyped-call]
