"""The asyncio Kubernetes API client of Stockade's processes (the operator and the gateway).

A neutral module: it imports none of Stockade's layers, so both the operator's handlers
and the gateway (whose layer test forbids the operator's runtime) may use it.
"""

from __future__ import annotations

from kubernetes.aio import client as aclient
from kubernetes.aio import config as aconfig
from kubernetes.aio.config.config_exception import ConfigException


async def api_client() -> aclient.ApiClient:
    """An asyncio API client: in-cluster credentials if present, else the kubeconfig.

    Like kopf's own connection (``settings.networking.trust_env`` is False by default),
    it reads no proxy or netrc settings from the environment: aiohttp would otherwise
    look them up in a worker thread on every request.

    Raises:
        ConfigException: neither in-cluster credentials nor a usable kubeconfig.

    """
    configuration = aclient.Configuration()
    try:
        aconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except ConfigException:
        await aconfig.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.client_session_kwargs = {"trust_env": False}
    return aclient.ApiClient(configuration)
