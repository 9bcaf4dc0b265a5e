"""The gateway's in-memory index of agent pods, fed by a watch (:mod:`stockade.gateway.kube`).

Keyed by ``(namespace, name)``; looked up by ``status.podIP``. Holds only
:class:`~stockade.gateway.identity.PodView` (no pod object, no secret).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stockade.gateway import metrics
from stockade.gateway.identity import PodView, pod_view


class PodIndex:
    """Pods by key and by IP; a :class:`~stockade.gateway.sources.PodSource`.

    Every method is synchronous and O(1) but :meth:`replace` (O(pods)); the asyncio
    shell calls them from one task, so no lock is needed.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], PodView] = {}
        self._by_ip: dict[str, dict[tuple[str, str], PodView]] = {}
        self.synced = False

    def __len__(self) -> int:
        return len(self._by_key)

    def pods_at(self, ip: str) -> list[PodView]:
        """Every indexed pod whose IP is `ip` (see :class:`PodSource`)."""
        return list(self._by_ip.get(ip, {}).values())

    def replace(self, pods: Iterable[Mapping[str, Any]]) -> None:
        """Forget everything and index `pods` (a fresh LIST's items); marks the index synced."""
        self._by_key.clear()
        self._by_ip.clear()
        for pod in pods:
            self._put(pod_view(pod))
        self.synced = True
        metrics.PODS.set(len(self._by_key))

    def apply(self, event_type: str, pod: Mapping[str, Any]) -> None:
        """Apply a watch event (``ADDED``, ``MODIFIED``, ``DELETED``) for `pod`."""
        view = pod_view(pod)
        self._drop((view.namespace, view.name))
        if event_type != "DELETED":
            self._put(view)
        metrics.PODS.set(len(self._by_key))

    def _put(self, view: PodView) -> None:
        key = (view.namespace, view.name)
        self._by_key[key] = view
        if view.ip:
            self._by_ip.setdefault(view.ip, {})[key] = view

    def _drop(self, key: tuple[str, str]) -> None:
        old = self._by_key.pop(key, None)
        if old is not None and old.ip:
            same_ip = self._by_ip.get(old.ip, {})
            same_ip.pop(key, None)
            if not same_ip:
                self._by_ip.pop(old.ip, None)
