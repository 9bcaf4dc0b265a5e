"""Create-or-find: the one way a child is created, and the summary of what holds a name.

A create that answers 409 is followed by a GET, so the caller can judge the holder by
its controller ownerReference (ours, a predecessor's of the same name, someone else's:
:func:`stockade.core.children.ownership`), never by its name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kubernetes.aio.client.exceptions import ApiException

from stockade.core.children import ChildView
from stockade.core.lifecycle import Reason, Rejection
from stockade.runtime.k8s import KubeApi, api_message, classify_rejection

log = logging.getLogger("stockade.reconcile")


async def create_or_find(
    kube: KubeApi, manifest: dict[str, Any], *, look_first: bool = False
) -> ChildView | Rejection | None:
    """Create `manifest`, or find what holds its name (for the caller to judge).

    Returns None when it was created now; a Rejection when the API server refused
    it (quota, admission, 422) or its holder vanished between the 409 and the GET
    (transient: the next reconcile creates it); else the summary of the object that
    holds the name, whoever owns it. With `look_first`, a GET comes first: a
    refused create (409) is a write too.
    """
    kind, meta = manifest["kind"], manifest["metadata"]
    found = await kube.read(kind, meta["namespace"], meta["name"]) if look_first else None
    if found is None:
        try:
            if await kube.create(manifest):
                return None
        except ApiException as exc:
            rejection = classify_rejection(exc)
            if rejection is None:
                raise
            log.info(
                "%s %s/%s refused: %s", kind, meta["namespace"], meta["name"], api_message(exc)
            )
            return rejection
        # 409: the watch has not shown it yet, or it is not ours.
        found = await kube.read(kind, meta["namespace"], meta["name"])
    if found is None:
        return conflict(manifest, None, transient=True)
    found.setdefault("kind", kind)
    return ChildView.of(found)


def conflict(manifest: Mapping[str, Any], found: ChildView | None, *, transient: bool) -> Rejection:
    """A child's name is held by an object this Agent does not own (ResourceConflict).

    `transient`: an earlier Agent's of the same name (garbage collection removes it) or
    one being deleted; otherwise it is someone else's and waiting will not help
    (Stalled=True).
    """
    held = found.describe() if found else f"{manifest['kind']} {manifest['metadata']['name']}"
    if transient:
        message = f"{held} is not this Agent's or is being deleted; waiting for it to go"
    else:
        message = f"{held} exists and is not owned by this Agent: delete or rename it"
    return Rejection(Reason.RESOURCE_CONFLICT, message, stalled=not transient)
