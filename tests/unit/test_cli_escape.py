"""Agent-controlled text never drives the terminal: every command's output is escaped."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import click
import pytest
from click.testing import CliRunner

from stockade.cli import commands
from stockade.cli import format as fmt
from stockade.cli.commands import cli

HOSTILE = "\x1b]0;pwned\x07title \x1b[2J clear \x9b1;1H csi \x07bel ok\rFAKE \x00nul\x7f"
"""An OSC window title (ESC ] ... BEL), a screen clear, a one-byte CSI, BEL, a CR overwrite."""

RAW = ("\x1b", "\x07", "\x9b", "\r", "\x00", "\x7f")


def hostile_agent() -> dict[str, Any]:
    """An Agent whose every agent-influenced status field carries :data:`HOSTILE`."""
    entry = {"seq": 1, "time": "2025-01-31T12:00:00Z", "from": "Running", "to": "Failed"}
    return {
        "metadata": {"name": "a", "namespace": "ns", "uid": "u-1"},
        "spec": {"image": "img"},
        "status": {
            "phase": "Failed",
            "reason": "Bad" + HOSTILE,
            "message": "m" + HOSTILE,
            "result": "r" + HOSTILE,
            "usage": {"inputTokens": 1, "costUSD": 0.5},
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "X" + HOSTILE, "message": HOSTILE}
            ],
            "history": [{**entry, "reason": "Y" + HOSTILE, "message": "h" + HOSTILE}],
        },
    }


class FakeConnection:
    """The :class:`stockade.cli.connection.Connection` calls the commands make, from memory."""

    namespace = "ns"

    def __init__(self) -> None:
        self.agent = hostile_agent()

    def create_agent(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(self.agent)

    def get_agent(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.agent)

    def patch_agent_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(self.agent)

    def watch_agent(self, name: str, timeout: float) -> Iterator[dict[str, Any] | None]:
        yield copy.deepcopy(self.agent)

    def owned_pods(self, agent: dict[str, Any]) -> list[dict[str, Any]]:
        pod = {
            "metadata": {"name": "a-1", "labels": {"stockade.dev/attempt": "1"}},
            "spec": {"nodeName": "n" + HOSTILE},
            "status": {"phase": "Failed" + HOSTILE},
        }
        return [pod]

    def list_sessions(self, all_namespaces: bool) -> list[dict[str, Any]]:
        return [
            {
                "metadata": {"name": "s", "namespace": "ns"},
                "spec": {"maxAgents": 2},
                "status": {"phase": "Active" + HOSTILE, "usageSummary": "u" + HOSTILE},
            }
        ]


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    fake = FakeConnection()
    monkeypatch.setattr(commands, "connect", lambda ctx: fake)
    return CliRunner()


@pytest.mark.parametrize(
    "args",
    [
        ["run", "a", "--image", "img", "--wait"],
        ["result", "a"],
        ["result", "a", "-o", "json"],
        ["describe", "a"],
        ["sessions"],
        ["sessions", "-A"],
        ["suspend", "a"],
        ["resume", "a"],
    ],
)
@pytest.mark.parametrize("colour", [False, True])
def test_no_command_prints_a_raw_control_character(
    runner: CliRunner, args: list[str], colour: bool
) -> None:
    outcome = runner.invoke(cli, args, color=colour)
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), outcome
    printed = outcome.stdout + outcome.stderr
    assert colour or "\x1b" not in printed
    # Only click.style's SGR colours may remain (with colour on): nothing raw besides them.
    leftover = fmt._STYLE_SGR.sub("", printed)
    for char in RAW:
        assert char not in leftover, (args, char, printed)
    if args[0] in ("describe", "result") and args[-1] != "json":
        assert "^[]0;pwned^Gtitle ^[[2J clear \\x9b1;1H csi ^Gbel ok\\rFAKE ^@nul^?" in printed


def test_terminal_safe_escapes_as_kubectl_and_keeps_tabs_newlines_and_styles() -> None:
    assert fmt.terminal_safe("a\tb\nc") == "a\tb\nc"
    assert fmt.terminal_safe("\x1b]8;;http://x\x1b\\link") == "^[]8;;http://x^[\\link"
    assert fmt.terminal_safe("ok\rno") == "ok\\rno"
    assert fmt.terminal_safe("\x9b2J\x85") == "\\x9b2J\\x85"
    styled = click.style("Running", fg="cyan", bold=True)
    assert fmt.terminal_safe(styled) == styled
    assert fmt.terminal_safe("\x1b[8mhidden\x1b[0m") == "^[[8mhidden\x1b[0m"
    assert fmt.terminal_safe("\x1b[2J\x1b[1;1H") == "^[[2J^[[1;1H"
