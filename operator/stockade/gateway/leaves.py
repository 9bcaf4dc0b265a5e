"""The server-side TLS contexts of intercepted hosts: one leaf per host, cached (LRU).

``SSLContext.load_cert_chain`` reads files only, so each leaf's PEM goes through a file
in a private directory (mode 0700, from :func:`tempfile.mkdtemp`) that is removed as
soon as it is loaded: the gateway needs a writable temporary directory (an ``emptyDir``
under a read-only root filesystem).
"""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile
from collections import OrderedDict
from collections.abc import Callable

from stockade.gateway.certs import CertificateAuthority, generate_leaf_key, issue_leaf

LEAF_CACHE_SIZE = 1024
LEAF_REFRESH = datetime.timedelta(days=1)
"""A cached leaf is reissued after this long (leaves are valid for a week)."""


class LeafCache:
    """TLS server contexts presenting a leaf of `ca` for each host name.

    Args:
        ca: the gateway's CA (its key signs the leaves).
        size: how many hosts' contexts are kept (least recently used goes first).

    """

    def __init__(
        self,
        ca: CertificateAuthority,
        size: int = LEAF_CACHE_SIZE,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._ca_cert, self._ca_key = ca.load()
        self._leaf_key = generate_leaf_key()
        self._contexts: OrderedDict[str, tuple[datetime.datetime, ssl.SSLContext]] = OrderedDict()
        self._now = now
        self._size = size
        self._keydir = tempfile.mkdtemp(prefix="stockade-gateway-")

    def context(self, host: str) -> ssl.SSLContext:
        """The context for `host` (TLS 1.2+, ALPN ``http/1.1`` only), made on first use."""
        now = self._now()
        cached = self._contexts.get(host)
        if cached is not None and now - cached[0] < LEAF_REFRESH:
            self._contexts.move_to_end(host)
            return cached[1]
        chain, key = issue_leaf(self._ca_cert, self._ca_key, self._leaf_key, host, now)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        fd, path = tempfile.mkstemp(dir=self._keydir, suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(key + chain)
            context.load_cert_chain(path)
        finally:
            os.unlink(path)
        self._contexts[host] = (now, context)
        self._contexts.move_to_end(host)
        if len(self._contexts) > self._size:
            self._contexts.popitem(last=False)
        return context
