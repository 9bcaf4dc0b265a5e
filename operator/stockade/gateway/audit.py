"""The audit record: one JSON log line per request, never a secret.

Fields (contract of issue 21): namespace, agent, host, port, method, status, bytes up
and down, whether a credential was added; plus the pod, the source address, the result
word (the ``result`` label of ``stockade_gateway_requests_total``), a reason and the
duration; on a model API (:data:`stockade.gateway.usage.MODEL_APIS`) the provider and
the token counts read from the response. No header, body, URL path or credential is
ever part of it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

RESULTS = (
    "allowed",
    "intercepted",
    "denied-host",
    "denied-address",
    "unauthenticated",
    "bad-request",
    "upstream-error",
    "overloaded",
)
"""The values of ``result``: tunnelled; credential host served through interception;
host not in the pod's list; every resolved address refused; 407; 400/408; 502/504;
503 (more than ``max_connections`` open)."""


@dataclass(frozen=True)
class AuditRecord:
    """One request through the gateway.

    Attributes:
        namespace, agent, pod: the caller ("" when unknown, e.g. a 407).
        source: the peer address.
        method: ``CONNECT`` for tunnels, else the HTTP method (inside an interception
            too: one record per intercepted request).
        host, port: the target as the client named it.
        status: the HTTP status the gateway answered or relayed (200 for a tunnel).
        result: one of :data:`RESULTS`.
        reason: a short word on a refusal or error ("" otherwise).
        bytes_up, bytes_down: payload bytes client -> upstream and back.
        credential: a credential header was added.
        duration_seconds: from the request head to the end of the exchange.
        provider: the model API's provider ("" when the host is none).
        input_tokens, output_tokens: the usage read from its response (0 when none).

    """

    namespace: str
    agent: str
    pod: str
    source: str
    method: str
    host: str
    port: int
    status: int
    result: str
    reason: str = ""
    bytes_up: int = 0
    bytes_down: int = 0
    credential: bool = False
    duration_seconds: float = 0.0
    provider: str = ""
    input_tokens: int = 0
    output_tokens: int = 0

    def to_json(self) -> str:
        """One line of JSON with ``"audit": true`` (a log shipper's filter) and every field."""
        record = {"audit": True, **asdict(self)}
        record["duration_seconds"] = round(self.duration_seconds, 6)
        return json.dumps(record, separators=(",", ":"), sort_keys=True)
