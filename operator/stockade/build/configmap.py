"""The input ConfigMap: an Agent's ``task`` and ``config``, mounted read-only in its pod.

Keys: ``task`` holds ``spec.task``; ``config.<key>`` holds ``spec.config[key]``. The
pod mounts them as ``/etc/stockade/task`` and ``/etc/stockade/config/<key>``
(see :mod:`stockade.build.pod`). An Agent with egress Hosts (issue 21) also gets
the egress gateway's CA, copied from the gateway's CA ConfigMap: ``gateway.ca.crt`` and
``gateway.ca-bundle.crt`` (public roots plus the gateway CA), mounted under
``/etc/stockade/gateway/``. The ConfigMap is immutable (KEP-1412): the kubelet
stops watching it, and an agent's input cannot change under it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from stockade.api.agent import AgentSpec
from stockade.api.network import EgressMode
from stockade.build.errors import SpecError
from stockade.build.names import AgentRef, child_metadata, configmap_name, session_of

TASK_KEY = "task"
CONFIG_KEY_PREFIX = "config."

GATEWAY_CA_KEYS = ("ca.crt", "ca-bundle.crt")
"""The keys of the gateway's CA ConfigMap the input ConfigMap copies."""
GATEWAY_KEY_PREFIX = "gateway."
"""Prefix of the copied CA keys in the input ConfigMap (``gateway.ca.crt``)."""

# A ConfigMap's data may hold at most 1 MiB (MaxSecretSize / ConfigMap limit).
CONFIGMAP_MAX_BYTES = 1024 * 1024
# ConfigMap keys: IsConfigMapKey (k8s.io/apimachinery validation), at most 253 characters.
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_KEY_MAX = 253 - len(CONFIG_KEY_PREFIX)


def uses_gateway(spec: AgentSpec) -> bool:
    """Whether the Agent's egress is Hosts (through the egress gateway)."""
    return spec.network is not None and spec.network.egress == EgressMode.HOSTS


def gateway_ca_data(spec: AgentSpec, gateway_ca: Mapping[str, str] | None) -> dict[str, str]:
    """The CA entries of the input ConfigMap: ``gateway.<key>`` per :data:`GATEWAY_CA_KEYS`.

    Args:
        spec: the effective spec; only egress Hosts gets a CA.
        gateway_ca: the data of the gateway's CA ConfigMap (None: not known or absent);
            only both keys together are copied (a half-published CA is none).

    Returns:
        ``{"gateway.ca.crt": ..., "gateway.ca-bundle.crt": ...}``, or empty.

    """
    if not uses_gateway(spec) or not gateway_ca:
        return {}
    if not all(gateway_ca.get(key) for key in GATEWAY_CA_KEYS):
        return {}
    return {f"{GATEWAY_KEY_PREFIX}{key}": str(gateway_ca[key]) for key in GATEWAY_CA_KEYS}


def has_input(spec: AgentSpec, gateway_ca: Mapping[str, str] | None = None) -> bool:
    """Whether the Agent has a task, a non-empty config or a gateway CA (an input ConfigMap)."""
    return spec.task is not None or bool(spec.config) or bool(gateway_ca_data(spec, gateway_ca))


def config_items(spec: AgentSpec) -> list[tuple[str, str]]:
    """``(ConfigMap key, config key)`` of each ``spec.config`` entry, sorted by key.

    Raises:
        SpecError: a config key is not usable as a ConfigMap key and file name
            (``[-._a-zA-Z0-9]+``, not ``.`` or ``..``, at most 246 characters).

    """
    items: list[tuple[str, str]] = []
    for key in sorted(spec.config or {}):
        if not _KEY.match(key) or key in (".", "..") or len(key) > _KEY_MAX:
            raise SpecError(
                f"spec.config[{key}]",
                "config keys must consist of letters, digits, '-', '_' or '.', must not be "
                f"'.' or '..', and have at most {_KEY_MAX} characters",
            )
        items.append((f"{CONFIG_KEY_PREFIX}{key}", key))
    return items


def build_input_configmap(
    agent_meta: AgentRef, spec: AgentSpec, gateway_ca: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """Build the Agent's input ConfigMap ``<agent>-input`` (None without any input).

    Args:
        agent_meta: the owning Agent.
        spec: its effective spec.
        gateway_ca: the data of the egress gateway's CA ConfigMap, read by the shell
            (None: unknown or absent); copied for egress Hosts (:func:`gateway_ca_data`).

    Returns:
        A core/v1 ConfigMap manifest: ``immutable: true``; data ``task`` (if
        ``spec.task`` is set, even empty), ``config.<key>`` per ``spec.config`` entry
        and the gateway CA's ``gateway.<key>`` entries; Stockade's labels and a
        controller ownerReference to the Agent.

    Raises:
        SpecError: a config key is invalid (see :func:`config_items`), or task and config
            together exceed the 1 MiB a ConfigMap may hold.

    """
    if not has_input(spec, gateway_ca):
        return None
    data: dict[str, str] = {}
    if spec.task is not None:
        data[TASK_KEY] = spec.task
    config = spec.config or {}
    for cm_key, key in config_items(spec):
        data[cm_key] = config[key]
    data.update(gateway_ca_data(spec, gateway_ca))
    size = sum(len(k.encode()) + len(v.encode()) for k, v in data.items())
    if size > CONFIGMAP_MAX_BYTES:
        raise SpecError(
            "spec.config",
            f"task and config take {size} bytes; together they may take at most "
            f"{CONFIGMAP_MAX_BYTES} bytes (1 MiB)",
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(agent_meta, configmap_name(agent_meta.name), session_of(spec)),
        "immutable": True,
        "data": data,
    }
