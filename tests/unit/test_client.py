"""The pure part of stockade.client (issue 22), and what importing it pulls in."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from stockade.api import Agent, AgentSession, AgentSpec, Phase
from stockade.client import core
from stockade.client.errors import (
    AgentFailed,
    ClientError,
    Conflict,
    Deleted,
    Forbidden,
    Invalid,
    NotFound,
    from_status,
)

OPERATOR_MODULES = (
    "kopf",
    "prometheus_client",
    "stockade.runtime",
    "stockade.handlers",
    "stockade.controllers",
    "stockade.reconcile",
    "stockade.cli",
    "stockade.gateway",
)


def test_importing_the_client_imports_nothing_of_the_operator() -> None:
    probe = "import json, sys, stockade.client\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout)
    assert "stockade.client" in loaded
    leaked = [m for m in loaded if any(m == o or m.startswith(o + ".") for o in OPERATOR_MODULES)]
    assert leaked == []


def agent(phase: str | None = None, **status: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "apiVersion": "stockade.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "7", "uid": "u1"},
        "spec": {"image": "img:1"},
    }
    if phase or status:
        raw["status"] = {"phase": phase, **status} if phase else status
    return raw


def status_body(code: int, message: str, **details: Any) -> str:
    return json.dumps(
        {
            "kind": "Status",
            "status": "Failure",
            "code": code,
            "message": message,
            "details": details,
        }
    )


@pytest.mark.parametrize(
    ("code", "cls"),
    [(404, NotFound), (403, Forbidden), (409, Conflict), (422, Invalid), (500, ClientError)],
)
def test_status_codes_map_to_typed_errors(code: int, cls: type[ClientError]) -> None:
    error = from_status(code, status_body(code, "no"), kind="Agent", name="a", namespace="ns")
    assert type(error) is cls
    assert (error.status, error.kind, error.name, error.namespace) == (code, "Agent", "a", "ns")


def test_invalid_carries_the_field_causes() -> None:
    body = status_body(
        422,
        'Agent.stockade.dev "a" is invalid',
        causes=[{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.x"}],
    )
    error = from_status(422, body)
    assert isinstance(error, Invalid)
    assert [(c.field, c.reason) for c in error.causes] == [("spec.x", "FieldValueRequired")]


def test_a_404_without_a_status_means_the_crds_are_missing() -> None:
    error = from_status(404, "404 page not found", "Not Found", kind="Agent")
    assert isinstance(error, NotFound) and "CRDs" in str(error)


def test_manifests_from_models_specs_and_dicts() -> None:
    from_spec = core.to_manifest(AgentSpec(image="img:1"), "ns")
    assert from_spec["metadata"] == {"generateName": "run-", "namespace": "ns"}
    assert from_spec["kind"] == "Agent" and from_spec["spec"]["image"] == "img:1"
    from_dict = core.to_manifest({**agent(), "metadata": {"name": "b", "namespace": "x"}}, "ns")
    assert from_dict["metadata"] == {"name": "b", "namespace": "x"}
    session = core.to_manifest(
        {"kind": "AgentSession", "metadata": {"name": "s"}, "spec": {"maxAgents": 1}}, "ns"
    )
    assert session["kind"] == "AgentSession" and session["metadata"]["namespace"] == "ns"
    with pytest.raises(Invalid, match="neither"):
        core.to_manifest(Agent(spec=AgentSpec(image="i")), "ns")
    with pytest.raises(Invalid, match="unknown kind"):
        core.to_manifest({"kind": "Pod", "metadata": {"name": "p"}}, "ns")
    with pytest.raises(Invalid, match="does not match"):
        core.to_manifest({"kind": "Agent", "metadata": {"name": "p"}, "spec": {"nope": 1}}, "ns")


def test_predicates() -> None:
    running = core.parse(agent("Running"))
    assert core.predicate_of({"Running"})(running)
    assert core.predicate_of("Running")(running)
    assert not core.predicate_of("Runnin")(running)
    assert not core.predicate_of(None)(running)
    assert core.predicate_of(None)(core.parse(agent("Failed")))
    assert core.predicate_of([Phase.Running, Phase.Paused])(running)
    assert core.predicate_of(lambda a: a.metadata["name"] == "a")(running)


def state(timeout: float = 10) -> core.WaitState:
    return core.WaitState(Agent, "a", "ns", core.predicate_of({"Succeeded"}), timeout, 5)


def test_wait_state_follows_events_to_the_condition() -> None:
    waiting = state()
    assert waiting.observe(agent("Pending")) is None
    assert (waiting.version, waiting.last_phase) == ("7", "Pending")
    bookmark = {"metadata": {"resourceVersion": "9"}}
    assert waiting.event("BOOKMARK", bookmark) is None and waiting.version == "9"
    running = agent("Running")
    running["metadata"]["resourceVersion"] = "10"
    assert waiting.event("MODIFIED", running) is None and waiting.version == "10"
    done = waiting.event("MODIFIED", agent("Succeeded"))
    assert isinstance(done, Agent) and done.status and done.status.phase == Phase.Succeeded


def test_wait_state_expiry_and_drops_force_a_reread() -> None:
    waiting = state()
    waiting.observe(agent("Pending"))
    waiting.gone()
    assert (waiting.version, waiting.expired) == (None, 1)
    waiting.observe(agent("Running"))
    waiting.dropped()
    assert (waiting.version, waiting.reconnects) == (None, 1)


def test_wait_state_deletion_and_timeout() -> None:
    waiting = state(timeout=2.5)
    waiting.observe(agent("Running"))
    with pytest.raises(Deleted, match="was deleted"):
        waiting.event("DELETED", agent("Running"))
    terminating = agent("Running")
    terminating["metadata"]["deletionTimestamp"] = "2026-12-03T00:00:00Z"
    with pytest.raises(Deleted, match="being deleted"):
        waiting.observe(terminating)
    timeout = waiting.timed_out()
    assert (timeout.last_phase, timeout.timeout) == ("Running", 2.5)
    assert [waiting.window(r) for r in (0.2, 3.1, 100)] == [1, 4, 5]


def test_outcomes() -> None:
    usage = {"inputTokens": 3, "costUSD": 0.5}
    ok = core.outcome_of(
        Agent.model_validate(
            agent("Succeeded", reason="Completed", result="r", exitCode=0, usage=usage)
        )
    )
    assert (ok.phase, ok.reason, ok.result, ok.exit_code, ok.succeeded) == (
        Phase.Succeeded,
        "Completed",
        "r",
        0,
        True,
    )
    assert ok.usage and ok.usage.input_tokens == 3
    assert core.check_outcome(ok) is ok
    failed = core.outcome_of(Agent.model_validate(agent("Failed", reason="Error", exitCode=7)))
    with pytest.raises(AgentFailed) as caught:
        core.check_outcome(failed)
    assert caught.value.outcome.exit_code == 7 and not caught.value.outcome.succeeded


def test_pod_names_as_the_cli_finds_them() -> None:
    assert core.pod_name_of(agent("Running", podName="a-2", attempts=2)) == "a-2"
    assert core.pod_name_of(agent("Failed", attempts=3)) == "a-3"
    assert core.pod_name_of(agent("Failed", attempts=3), attempt=1) == "a-1"
    with pytest.raises(NotFound, match="no pod yet"):
        core.pod_name_of(agent("Pending"))
    pod = {"metadata": {"ownerReferences": [{"controller": True, "uid": "u1"}]}}
    assert core.controlled_by(pod, agent())
    assert not core.controlled_by(pod, {"metadata": {"uid": "u2"}})


def test_line_splitter_keeps_partial_lines_and_utf8() -> None:
    splitter = core.LineSplitter()
    assert splitter.feed(b"one\ntw") == ["one"]
    assert splitter.feed("o \u00e9\n".encode()[:-2]) == []
    assert splitter.feed("o \u00e9\n".encode()[-2:] + b"three") == ["two \u00e9"]
    assert splitter.close() == ["three"] and splitter.close() == []


def test_context_namespace() -> None:
    contexts = [{"name": "a", "context": {"namespace": "x"}}, {"name": "b", "context": {}}]
    assert core.context_namespace(contexts, contexts[1], None) is None
    assert core.context_namespace(contexts, contexts[1], "a") == "x"
    with pytest.raises(ClientError, match="not found"):
        core.context_namespace(contexts, None, "c")


def test_sessions_parse_to_their_model() -> None:
    raw = {"kind": "AgentSession", "metadata": {"name": "s"}, "spec": {"maxAgents": 2}}
    assert isinstance(core.parse(raw), AgentSession)
    assert core.suspend_patch(True) == {"spec": {"suspend": True}}
