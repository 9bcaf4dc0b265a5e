"""Where a metered response's counts go: the ledger, the counters, the audit record."""

from __future__ import annotations

from dataclasses import replace

from stockade.gateway import metrics
from stockade.gateway.audit import AuditRecord
from stockade.gateway.ledger import Ledger
from stockade.gateway.usage import ModelAPI, UsageMeter
from stockade.gateway.wire import Head


def meter_for(api: ModelAPI | None, response: Head) -> UsageMeter | None:
    """A meter for `response` (its Content-Type and -Encoding) on a model API, else None.

    A ``101`` (an upgrade) has no body to read.
    """
    if api is None or response.start[1] == "101":
        return None
    return UsageMeter(response.get("content-type") or "", response.get("content-encoding") or "")


def account(
    api: ModelAPI | None,
    meter: UsageMeter | None,
    ledger: Ledger,
    agent_uid: str,
    record: AuditRecord,
) -> AuditRecord:
    """Book one finished response: returns `record` with the provider and its counts.

    Adds the request to `ledger` under `agent_uid` and the counts to
    ``stockade_gateway_model_tokens_total`` / ``_model_requests_total``; without a meter
    (not a model API) `record` is returned unchanged.
    """
    if api is None or meter is None:
        return record
    usage = meter.usage()
    ledger.record(agent_uid, record.namespace, record.agent, usage)
    metrics.MODEL_REQUESTS.labels(api.provider, "yes" if usage else "no").inc()
    if usage is None:
        return replace(record, provider=api.provider)
    metrics.MODEL_TOKENS.labels(api.provider, "input").inc(usage.input_tokens)
    metrics.MODEL_TOKENS.labels(api.provider, "output").inc(usage.output_tokens)
    return replace(
        record,
        provider=api.provider,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
    )
