"""``python -m stockade.gateway``: run the egress gateway.

Reads :class:`~stockade.gateway.config.GatewayConfig` from the environment, loads (or
creates) the CA and publishes its ConfigMap, starts the pod watch, serves Prometheus
metrics on ``STOCKADE_GATEWAY_METRICS_PORT`` and, once the first pod LIST is in, the
proxy on ``STOCKADE_GATEWAY_PORT``, until SIGTERM or SIGINT.

Logs go to stderr; each audit record is one JSON line on logger
``stockade.gateway.audit`` (the line is the record, nothing around it).
Exit status: 0 after a signal, 2 on a configuration error, 1 if the CA cannot be read
or created.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys

from stockade.extras import require

require("gateway", "cryptography", "certifi", "prometheus_client")

import certifi
from kubernetes.aio.client.exceptions import ApiException
from prometheus_client import start_http_server

from stockade.apiclient import api_client
from stockade.gateway import metrics
from stockade.gateway.config import GatewayConfig, GatewayConfigError, load_gateway_config
from stockade.gateway.index import PodIndex
from stockade.gateway.kube import ApiReads, KubeCredentialSource, bootstrap_ca, watch_pods
from stockade.gateway.proxy import Gateway

log = logging.getLogger("stockade.gateway")
FIRST_LIST_WAIT = 30.0


def configure_logging() -> None:
    """Plain records at INFO on stderr; audit records are bare JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    audit = logging.getLogger("stockade.gateway.audit")
    audit_handler = logging.StreamHandler(sys.stderr)
    audit_handler.setFormatter(logging.Formatter("%(message)s"))
    audit.addHandler(audit_handler)
    audit.propagate = False


async def run(config: GatewayConfig) -> None:
    """Run the gateway until SIGTERM/SIGINT (see the module's docstring)."""
    api = await api_client()
    ca = await bootstrap_ca(api, config.namespace, config.ca_secret, config.ca_configmap)
    index = PodIndex()
    gateway = Gateway(
        config,
        index,
        KubeCredentialSource(ApiReads(api), config.agent_cache_ttl),
        ca,
        upstream_tls=ssl.create_default_context(cafile=certifi.where()),
    )
    if config.metrics_port:
        start_http_server(config.metrics_port, registry=metrics.REGISTRY)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(watch_pods(api, index, stop))
    for _ in range(int(FIRST_LIST_WAIT * 10)):
        if index.synced or stop.is_set():
            break
        await asyncio.sleep(0.1)
    server = await gateway.serve()
    log.info("gateway: serving on :%d, %d pods indexed", config.port, len(index))
    try:
        await stop.wait()
    finally:
        server.close()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await api.close()  # type: ignore[no-untyped-call]


def main() -> int:
    """The process entry point; returns the exit status."""
    configure_logging()
    try:
        config = load_gateway_config()
        if not config.namespace:
            raise GatewayConfigError("STOCKADE_GATEWAY_NAMESPACE (or POD_NAMESPACE) is not set")
    except GatewayConfigError as exc:
        log.error("gateway: %s", exc)
        return 2
    try:
        asyncio.run(run(config))
    except ApiException as exc:
        log.error("gateway: the CA Secret or ConfigMap: %s %s", exc.status, exc.reason)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
