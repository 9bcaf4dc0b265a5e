"""Echo suppression: the watch events that carry the operator's own status writes.

Every conditional status write (``resourceVersion`` precondition, the API conventions'
optimistic concurrency) is remembered as ``(base, new)`` resourceVersions per object:

- a body at ``base`` is *stale* (the watch lags behind the write): deciding from it
  would undo the write, so the reconcile is put off until the echo arrives;
- a body at ``new`` is the *echo*: it was decided from everything observed then, so it
  needs no reconcile of its own, unless one was put off waiting for it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any


def _version(body: Mapping[str, Any]) -> Any:
    return (body.get("metadata") or {}).get("resourceVersion")


@dataclass
class Echoes:
    """The last status write per ``(kind, key)`` and the reconciles put off for its echo."""

    _written: dict[tuple[str, Hashable], tuple[str, str]] = field(default_factory=dict)
    _deferred: set[tuple[str, Hashable]] = field(default_factory=set)

    def wrote(self, kind: str, key: Hashable, base: str | None, new: str | None) -> None:
        """Record a write of `key` from version `base` to `new` (None: refused, forget)."""
        if base and new:
            self._written[(kind, key)] = (base, new)
        else:
            self._written.pop((kind, key), None)

    def last(self, kind: str, key: Hashable) -> tuple[str, str] | None:
        """The ``(base, new)`` versions of the last write of `key`, if any."""
        return self._written.get((kind, key))

    def stale(self, kind: str, key: Hashable, body: Mapping[str, Any]) -> bool:
        """Whether `body` predates our last write of `key` (then put off until its echo)."""
        written = self._written.get((kind, key))
        stale = written is not None and _version(body) == written[0]
        if stale:
            self._deferred.add((kind, key))
        return stale

    def resume(self, kind: str, key: Hashable) -> None:
        """A reconcile of `key` is running from a current body: nothing waits any more."""
        self._deferred.discard((kind, key))

    def own_echo(self, kind: str, key: Hashable, body: Mapping[str, Any]) -> bool:
        """Whether `body` is the echo of our last write of `key`, with nothing waiting."""
        written = self._written.get((kind, key))
        return (
            written is not None
            and _version(body) == written[1]
            and (kind, key) not in self._deferred
        )

    def forget(self, kind: str, key: Hashable) -> None:
        """The object is gone."""
        self._written.pop((kind, key), None)
        self._deferred.discard((kind, key))
