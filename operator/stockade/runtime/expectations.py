"""Expectations: what this operator wrote and its watches have not shown yet.

The Job controller's idea (``pkg/controller/controller_utils.go``, "expectations"): a
controller that acts on a cache remembers the creations and deletions it made until the
cache reflects them, so that it neither makes them twice nor reads their absence (or
presence) as someone else's doing. Two kinds, one class:

- *created*: a child (ConfigMap, NetworkPolicy, PVC, a shared policy) created a moment
  ago is taken as there for ``CREATED_GRACE`` seconds, or until the watch lists it;
  creating it again would be a 409 and a GET.
- *deleted*: a pod deleted by the operator is read as being deleted until the watch
  shows its deletionTimestamp (or ``DELETE_MEMORY`` seconds passed): its going is the
  operator's doing, never a lost pod.

Memory only: after a restart kopf lists everything afresh, which is the truth.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime

CREATED_GRACE = 10.0
"""Seconds a child just created is trusted to exist before its watch event arrives."""

DELETE_MEMORY = 600.0
"""Seconds a deletion is remembered when the watch never shows the pod deleting."""


@dataclass
class Expectations:
    """Creations and deletions made and not yet seen (see the module docstring)."""

    _created: dict[Hashable, float] = field(default_factory=dict)
    _deleted: dict[str, datetime] = field(default_factory=dict)

    def created(self, key: Hashable, seconds: float = CREATED_GRACE) -> None:
        """Note that the object `key` was just created."""
        self._created[key] = time.monotonic() + seconds

    def awaiting_creation(self, key: Hashable, *, seen: bool = False) -> bool:
        """Whether `key` was created a moment ago and is not `seen` by the watch yet.

        Forgets the creation once it is seen or its grace period is over.
        """
        until = self._created.get(key)
        if until is None:
            return False
        if seen or until < time.monotonic():
            del self._created[key]
            return False
        return True

    def deleted(self, uid: str, at: datetime) -> None:
        """Note that the pod `uid` was deleted at `at`; forget deletions long past."""
        for old, asked in list(self._deleted.items()):
            if (at - asked).total_seconds() > DELETE_MEMORY:
                del self._deleted[old]
        self._deleted[uid] = at

    def deletion_asked(self, uid: str, *, seen_deleting: bool) -> datetime | None:
        """When the pod `uid` was deleted by us, if the watch does not show it yet.

        None when we did not delete it, or when the watch shows it deleting
        (`seen_deleting`): the expectation is then met and forgotten.
        """
        asked = self._deleted.get(uid)
        if asked is not None and seen_deleting:
            del self._deleted[uid]
            return None
        return asked
