"""The input ConfigMap: an Agent's ``task`` and ``config``, mounted read-only in its pod.

Keys: ``task`` holds ``spec.task``; ``config.<key>`` holds ``spec.config[key]``. The
pod mounts them as ``/etc/stockade/task`` and ``/etc/stockade/config/<key>``
(see :mod:`stockade.build.pod`). The ConfigMap is immutable (KEP-1412): the kubelet
stops watching it, and an agent's input cannot change under it.
"""

from __future__ import annotations

import re
from typing import Any

from stockade.api.agent import AgentSpec
from stockade.build.errors import SpecError
from stockade.build.names import AgentRef, child_metadata, configmap_name, session_of

TASK_KEY = "task"
CONFIG_KEY_PREFIX = "config."

# A ConfigMap's data may hold at most 1 MiB (MaxSecretSize / ConfigMap limit).
CONFIGMAP_MAX_BYTES = 1024 * 1024
# ConfigMap keys: IsConfigMapKey (k8s.io/apimachinery validation), at most 253 characters.
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_KEY_MAX = 253 - len(CONFIG_KEY_PREFIX)


def has_input(spec: AgentSpec) -> bool:
    """Whether the Agent has a task or a non-empty config (and so an input ConfigMap)."""
    return spec.task is not None or bool(spec.config)


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


def build_input_configmap(agent_meta: AgentRef, spec: AgentSpec) -> dict[str, Any] | None:
    """Build the Agent's input ConfigMap ``<agent>-input`` (None without task and config).

    Returns:
        A core/v1 ConfigMap manifest: ``immutable: true``; data ``task`` (if
        ``spec.task`` is set, even empty) and ``config.<key>`` per ``spec.config`` entry;
        Stockade's labels and a controller ownerReference to the Agent.

    Raises:
        SpecError: a config key is invalid (see :func:`config_items`), or task and config
            together exceed the 1 MiB a ConfigMap may hold.

    """
    if not has_input(spec):
        return None
    data: dict[str, str] = {}
    if spec.task is not None:
        data[TASK_KEY] = spec.task
    config = spec.config or {}
    for cm_key, key in config_items(spec):
        data[cm_key] = config[key]
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
