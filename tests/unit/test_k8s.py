"""How the API server's refusals of a create map to lifecycle reasons (k8s.classify_rejection)."""

from __future__ import annotations

import json

import pytest
from kubernetes.aio.client.exceptions import ApiException

from stockade.core.lifecycle import Reason
from stockade.runtime.k8s import classify_rejection


def refusal(status: int, message: str) -> ApiException:
    exc = ApiException(status=status, reason="refused")
    exc.body = json.dumps({"kind": "Status", "message": message, "code": status})
    return exc


@pytest.mark.parametrize(
    ("status", "message", "reason"),
    [
        (403, 'pods "a-1" is forbidden: exceeded quota: q, requested: pods=1', "QuotaExceeded"),
        (403, 'pod rejected: RuntimeClass "x" not found', "RuntimeClassNotFound"),
        (403, "violates PodSecurity", "PodRejected"),
        (422, "metadata.annotations: Too long", "InvalidSpec"),
        # The namespace was deleted under the Agent (with it): a refusal, never a crash
        # (the reliability suite found a traceback here).
        (404, 'namespaces "t-x" not found', "PodRejected"),
    ],
)
def test_refusals(status: int, message: str, reason: str) -> None:
    rejection = classify_rejection(refusal(status, message))
    assert rejection is not None and rejection.reason == Reason(reason)
    assert rejection.message == message


def test_a_server_error_is_not_a_refusal() -> None:
    assert classify_rejection(refusal(500, "etcd timeout")) is None
