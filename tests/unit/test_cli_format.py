"""The kubectl plugin's pure parts: parsing flags, building the Agent, formatting output."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
import pytest
from click.testing import CliRunner

from stockade.cli import format as fmt
from stockade.cli.commands import cli
from stockade.cli.connection import controlled_by, exec_exit_code
from stockade.cli.errors import USAGE, CliError
from stockade.cli.manifest import agent_manifest

NOW = datetime(2025, 1, 31, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("1h30m", 5400), ("500ms", 0.5), ("90", 90), ("1.5m", 90)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert fmt.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "0s", "-5s", "m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(CliError) as caught:
        fmt.parse_duration(text)
    assert caught.value.code == USAGE


def test_parse_pairs() -> None:
    assert fmt.parse_pairs(["a=1", "b=x=y", "a=2", "c="], "--config") == {
        "a": "2",
        "b": "x=y",
        "c": "",
    }
    with pytest.raises(CliError, match="--config takes KEY=VALUE"):
        fmt.parse_pairs(["novalue"], "--config")
    with pytest.raises(CliError):
        fmt.parse_pairs(["=v"], "--config")


@pytest.mark.parametrize(
    ("stamp", "shown"),
    [
        ("2025-01-31T11:59:18Z", "42s"),
        ("2025-01-31T11:55:00Z", "5m"),
        ("2025-01-31T09:00:00Z", "3h"),
        ("2025-01-29T12:00:00Z", "2d"),
        (None, "<unknown>"),
        ("garbage", "<unknown>"),
    ],
)
def test_age(stamp: str | None, shown: str) -> None:
    assert fmt.age(stamp, NOW) == shown


def test_table_aligns_ignoring_colour() -> None:
    text = fmt.table(["NAME", "PHASE"], [["a", fmt.phase("Succeeded")], ["long-name", "x"]])
    assert click.unstyle(text).split("\n") == [
        "NAME        PHASE",
        "a           Succeeded",
        "long-name   x",
    ]


def test_usage_tokens_and_cost() -> None:
    usage = {"costUSD": 0.02, "outputTokens": 300, "inputTokens": 1200, "cacheHits": 4}
    assert fmt.usage_text(usage) == "inputTokens=1200 outputTokens=300 costUSD=0.02 cacheHits=4"
    assert fmt.usage_text(None) == "-"
    assert fmt.tokens(usage) == "1500"
    assert fmt.tokens({"costUSD": 1}) == "-"
    assert fmt.cost(usage) == "$0.02"
    assert fmt.cost({}) == "-"


def entry(seq: int, to: str, source: str | None = None, **extra: Any) -> dict[str, Any]:
    body = {"seq": seq, "to": to, "reason": "R", "message": "", "time": "2025-01-31T12:00:03Z"}
    if source:
        body["from"] = source
    return {**body, **extra}


def test_transition_lines() -> None:
    assert click.unstyle(fmt.transition_line(entry(1, "Pending"))) == "12:00:03  Pending  R"
    line = fmt.transition_line(entry(2, "Running", "Starting", message="pod x is running"))
    assert click.unstyle(line) == "12:00:03  Starting -> Running  R: pod x is running"


def test_new_transitions_are_ordered_and_after_seq() -> None:
    status = {"history": [entry(3, "Running"), entry(1, "Pending"), entry(2, "Starting")]}
    assert [h["seq"] for h in fmt.new_transitions(status, 1)] == [2, 3]
    assert fmt.new_transitions(None, 0) == []


def admitted(status: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": "Admitted", "status": status, "reason": reason, "message": message}


def test_waiting_reason_only_while_pending() -> None:
    waiting = {"phase": "Pending", "conditions": [admitted("False", "SessionFull", "8/8")]}
    assert fmt.waiting_reason(waiting) == "SessionFull: 8/8"
    finished = {"phase": "Succeeded", "conditions": [admitted("False", "Finished", "done")]}
    assert fmt.waiting_reason(finished) is None
    assert fmt.waiting_reason({"phase": "Pending", "conditions": []}) is None


def agent(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "a", "namespace": "ns", "uid": "u1"},
        "spec": {"image": "img"},
        "status": status,
    }


def test_outcome_of_success_and_failure() -> None:
    ok = agent(phase="Succeeded", reason="Completed", exitCode=0, attempts=1, result="done")
    ok["status"]["usage"] = {"inputTokens": 5}
    assert [click.unstyle(line) for line in fmt.outcome(ok)] == [
        "Succeeded (Completed, exit code 0, 1 attempt(s))",
        "result: done",
        "usage: inputTokens=5",
    ]
    failed = fmt.outcome(agent(phase="Failed", reason="Error", exitCode=3, message="exited 3"))
    assert [click.unstyle(line) for line in failed] == [
        "Failed (Error, exit code 3)",
        "message: exited 3",
        "usage: -",
    ]


def test_result_document() -> None:
    document = fmt.result_document(agent(phase="Succeeded", result="r", exitCode=0))
    assert json.loads(fmt.to_json(document)) == {
        "name": "a",
        "namespace": "ns",
        "phase": "Succeeded",
        "reason": None,
        "exitCode": 0,
        "result": "r",
        "usage": {},
    }


def pod(name: str, attempt: str, exit_code: int | None = None) -> dict[str, Any]:
    statuses = []
    if exit_code is not None:
        statuses = [{"name": "agent", "state": {"terminated": {"exitCode": exit_code}}}]
    return {
        "metadata": {
            "name": name,
            "labels": {"stockade.dev/attempt": attempt},
            "creationTimestamp": "2025-01-31T11:59:00Z",
        },
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Failed", "containerStatuses": statuses},
    }


def test_describe_shows_waiting_conditions_timeline_and_pods() -> None:
    status = {
        "phase": "Pending",
        "reason": "SessionFull",
        "conditions": [admitted("False", "SessionFull", "session s admits 8 agents")],
        "history": [entry(1, "Pending")],
    }
    text = click.unstyle(fmt.describe(agent(**status), [pod("a-2", "2"), pod("a-1", "1", 1)], NOW))
    assert "Waiting:     SessionFull: session s admits 8 agents" in text
    assert "Admitted   False    SessionFull" in text
    assert "12:00:03  Pending  R" in text
    pods = text.split("Pods:\n")[1].split("\n")
    assert pods[1].split() == ["1", "a-1", "Failed", "n1", "1", "60s"]
    assert pods[2].split() == ["2", "a-2", "Failed", "n1", "-", "60s"]


def test_describe_without_status_points_at_the_operator() -> None:
    text = fmt.describe({"metadata": {"name": "a"}, "spec": {}}, [], NOW)
    assert "the operator has not seen this Agent" in text


def test_session_table() -> None:
    session = {
        "metadata": {"name": "s", "namespace": "ns", "creationTimestamp": "2025-01-31T11:00:00Z"},
        "spec": {"maxAgents": 3},
        "status": {
            "phase": "Active",
            "admitted": 2,
            "agents": {"total": 5},
            "usageSummary": "cpu 500m/2",
            "agentUsage": {"inputTokens": 10, "outputTokens": 5, "costUSD": 0.5},
        },
    }
    lines = click.unstyle(fmt.session_table([session], all_namespaces=True, now=NOW)).split("\n")
    assert lines[0].split() == [
        "NAMESPACE",
        "NAME",
        "PHASE",
        "ADMITTED",
        "AGENTS",
        "BUDGET",
        "TOKENS",
        "COST",
        "AGE",
    ]
    assert lines[1].split() == [
        "ns",
        "s",
        "Active",
        "2/3",
        "5",
        "cpu",
        "500m/2",
        "15",
        "$0.5",
        "60m",
    ]


def test_agent_manifest_sets_only_given_fields() -> None:
    manifest = agent_manifest(
        "hello",
        "ns",
        image="img:1",
        task="do it",
        config={"model": "m"},
        egress="DNS",
        pod_annotations={"a": "b"},
    )
    assert manifest == {
        "apiVersion": "stockade.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "hello", "namespace": "ns"},
        "spec": {
            "image": "img:1",
            "task": "do it",
            "config": {"model": "m"},
            "network": {"egress": "DNS"},
            "podMetadata": {"annotations": {"a": "b"}},
        },
    }
    session = agent_manifest("m", "ns", session="s")
    assert session["spec"] == {"sessionRef": {"name": "s"}}


@pytest.mark.parametrize(
    ("name", "fields", "message"),
    [
        ("Bad_Name", {"image": "i"}, "invalid Agent name"),
        ("x" * 53, {"image": "i"}, "invalid Agent name"),
        ("ok", {}, "--image is required"),
        ("ok", {"image": "i", "runtime": "Not_Valid"}, "spec.runtimeClassName"),
        ("ok", {"image": "i", "pod_annotations": {"kubernetes.io/x": "v"}}, "podMetadata"),
    ],
)
def test_agent_manifest_refuses(name: str, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(CliError, match=message) as caught:
        agent_manifest(name, "ns", **fields)
    assert caught.value.code == USAGE


def test_controlled_by_uid_only() -> None:
    owner = {"metadata": {"uid": "u1"}}

    def child(uid: str, controller: bool) -> dict[str, Any]:
        return {"metadata": {"ownerReferences": [{"uid": uid, "controller": controller}]}}

    assert controlled_by(child("u1", True), owner)
    assert not controlled_by(child("u1", False), owner)
    assert not controlled_by(child("u2", True), owner)
    assert not controlled_by({"metadata": {}}, owner)


def test_exec_exit_code() -> None:
    assert exec_exit_code('{"status": "Success"}', "p") == 0
    nonzero = {
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "42"}]},
    }
    assert exec_exit_code(json.dumps(nonzero), "p") == 42
    with pytest.raises(CliError, match="no exec found"):
        exec_exit_code('{"status": "Failure", "message": "no exec found"}', "p")


def test_dry_run_prints_yaml_without_a_cluster(tmp_path: Any) -> None:
    runner = CliRunner()
    missing = str(tmp_path / "none")
    args = ["--kubeconfig", missing, "run", "hi", "--image", "i", "--dry-run", "-n", "team"]
    outcome = runner.invoke(cli, args)
    assert outcome.exit_code == 0, outcome.output
    assert "namespace: team" in outcome.output
    assert "image: i" in outcome.output


def test_usage_errors_exit_2() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["run", "x", "--image", "i", "--timeout", "soon"]).exit_code == 2
    assert (
        runner.invoke(cli, ["run", "x", "--image", "i", "--dry-run", "--config", "k"]).exit_code
        == 2
    )
    assert runner.invoke(cli, ["nope"]).exit_code == 2
