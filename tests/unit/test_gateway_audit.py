from __future__ import annotations

import json

from stockade.gateway.audit import RESULTS, AuditRecord


def test_the_record_is_one_json_line_with_every_contract_field() -> None:
    record = AuditRecord(
        namespace="team-a",
        agent="demo",
        pod="demo-1",
        source="10.0.0.5",
        method="CONNECT",
        host="pypi.org",
        port=443,
        status=200,
        result="allowed",
        bytes_up=10,
        bytes_down=20,
        credential=False,
        duration_seconds=0.1234567,
    )
    line = record.to_json()
    assert "\n" not in line
    data = json.loads(line)
    assert data["audit"] is True
    for key in (
        "namespace",
        "agent",
        "host",
        "port",
        "method",
        "status",
        "bytes_up",
        "bytes_down",
        "credential",
        "provider",
        "input_tokens",
        "output_tokens",
    ):
        assert key in data
    assert data["duration_seconds"] == 0.123457
    assert data["result"] in RESULTS


def test_measured_tokens_are_in_the_record() -> None:
    record = AuditRecord(
        "team-a",
        "demo",
        "demo-1",
        "10.0.0.5",
        "POST",
        "api.anthropic.com",
        443,
        200,
        "intercepted",
        provider="anthropic",
        input_tokens=21,
        output_tokens=8,
    )
    data = json.loads(record.to_json())
    assert (data["provider"], data["input_tokens"], data["output_tokens"]) == ("anthropic", 21, 8)
