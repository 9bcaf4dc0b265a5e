"""The gateway's Prometheus metrics: one registry, no per-Agent (or per-host) labels.

=============================================  ========================================
metric                                         meaning
=============================================  ========================================
``stockade_gateway_requests_total{result}``    requests by audit result
                                               (:data:`stockade.gateway.audit.RESULTS`)
``stockade_gateway_request_duration_seconds``  head received -> exchange over
``stockade_gateway_bytes_total{direction}``    payload bytes, ``up`` or ``down``
``stockade_gateway_connections``               client connections open now
``stockade_gateway_credentials_added_total``   requests that got a credential header
``stockade_gateway_pods``                      pods in the index
``stockade_gateway_agent_reads_total{result}`` Agent/Secret reads: ``ok``, ``cached``,
                                               or an :class:`AgentUnavailable` reason
``stockade_gateway_model_tokens_total``        measured model tokens; ``provider``,
``{provider,kind}``                            ``kind`` ``input`` or ``output``
``stockade_gateway_model_requests_total``      intercepted model API requests;
``{provider,metered}``                         ``metered`` ``yes`` when counts were read
=============================================  ========================================
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "stockade_gateway_requests",
    "Requests through the gateway, by result.",
    ["result"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "stockade_gateway_request_duration_seconds",
    "Time from a request's head to the end of its exchange (a tunnel's whole life).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
BYTES = Counter(
    "stockade_gateway_bytes",
    "Payload bytes relayed: up (client to upstream) or down.",
    ["direction"],
    registry=REGISTRY,
)
CONNECTIONS = Gauge(
    "stockade_gateway_connections", "Client connections open now.", registry=REGISTRY
)
CREDENTIALS_ADDED = Counter(
    "stockade_gateway_credentials_added",
    "Requests that got a credential header.",
    registry=REGISTRY,
)
PODS = Gauge("stockade_gateway_pods", "Pods in the gateway's index.", registry=REGISTRY)
AGENT_READS = Counter(
    "stockade_gateway_agent_reads",
    "Reads of a calling pod's Agent and Secrets, by result.",
    ["result"],
    registry=REGISTRY,
)
MODEL_TOKENS = Counter(
    "stockade_gateway_model_tokens",
    "Model tokens read from intercepted model API responses, by provider and kind.",
    ["provider", "kind"],
    registry=REGISTRY,
)
MODEL_REQUESTS = Counter(
    "stockade_gateway_model_requests",
    "Intercepted model API requests, by provider and whether usage was read.",
    ["provider", "metered"],
    registry=REGISTRY,
)
