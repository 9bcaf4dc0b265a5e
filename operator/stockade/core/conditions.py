"""Condition helpers (metav1.Condition semantics, kstatus condition types).

Sources: the Kubernetes API conventions ("Typical status properties": conditions with
``type``, ``status``, ``reason`` in CamelCase, ``message``, ``lastTransitionTime``,
``observedGeneration``) and kstatus (sigs.k8s.io/cli-utils/pkg/kstatus): ``Ready`` is the
summary, ``Reconciling`` and ``Stalled`` are "abnormal-true" conditions that GitOps tools
(Flux, Argo CD) read to tell progress from failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
ADMITTED = "Admitted"
SUSPENDED = "Suspended"


@dataclass(frozen=True)
class Cond:
    """A desired condition before timestamps: ``(type, status, reason, message)``."""

    type: str
    status: bool
    reason: str
    message: str = ""


def merge_conditions(
    previous: Iterable[Mapping[str, Any]] | None,
    desired: Iterable[Cond],
    *,
    now: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Return the conditions to write, in `desired` order.

    ``lastTransitionTime`` is kept from `previous` when a condition's status did not
    change (API conventions) and set to `now` (an RFC 3339 string) otherwise.
    Conditions of other types found in `previous` are kept after the desired ones.
    """
    before = {str(c.get("type")): dict(c) for c in previous or ()}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for cond in desired:
        status = "True" if cond.status else "False"
        old = before.get(cond.type)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        entry: dict[str, Any] = {
            "type": cond.type,
            "status": status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": since or now,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        out.append(entry)
        seen.add(cond.type)
    out.extend(c for t, c in before.items() if t not in seen)
    return out
