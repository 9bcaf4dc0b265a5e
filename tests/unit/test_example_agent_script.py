"""examples/agent/agent.sh run on this machine, as the local node image runs it.

The script runs under busybox (``busybox sh`` with only busybox's applets on PATH: no
curl, so busybox wget over plain HTTP, as in ``localhost/stockade/example-agent:1``)
against the stub chat completions server on 127.0.0.1; its termination message and
workspace go to a temporary directory (the script's EXAMPLE_AGENT_* overrides). The
same script runs under gVisor in tests/e2e/test_example_agent.py. Needs
``/bin/busybox`` (Debian's busybox-static, which ``make node-up`` installs); skipped,
with that reason, without it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stub_model import ANSWER, COMPLETION_TOKENS, PROMPT_TOKENS, StubModel

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "agent" / "agent.sh"
BUSYBOX = Path("/bin/busybox")
TASK = 'Say "hi"\n\tin two lines.'

pytestmark = pytest.mark.skipif(
    not BUSYBOX.exists(), reason="needs /bin/busybox (Debian busybox-static)"
)


def run(
    tmp_path: Path, config: dict[str, str], key: str | None = "sk-unit", task: str = TASK
) -> tuple[int, dict[str, Any], Path]:
    """Run the script; return its exit code, parsed termination message and workspace."""
    applets = tmp_path / "bin"
    if not applets.exists():
        applets.mkdir()
        listed = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True)
        for applet in listed.stdout.split():
            (applets / applet).symlink_to(BUSYBOX)
    (tmp_path / "task").write_text(task)
    config_dir = tmp_path / "config"
    config_dir.mkdir(exist_ok=True)
    for name, value in config.items():
        (config_dir / name).write_text(value)
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    env = {
        "PATH": str(applets),
        "STOCKADE_TASK_FILE": str(tmp_path / "task"),
        "STOCKADE_CONFIG_DIR": str(config_dir),
        "EXAMPLE_AGENT_WORKSPACE": str(workspace),
        "EXAMPLE_AGENT_TERMINATION_LOG": str(tmp_path / "termination-log"),
        "TMPDIR": str(tmp_path),
    }
    if key is not None:
        env["OPENAI_API_KEY"] = key
    done = subprocess.run(
        [BUSYBOX, "sh", SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    message = json.loads((tmp_path / "termination-log").read_text())
    return done.returncode, message, workspace


def test_the_answer_and_usage_reach_the_termination_message_and_workspace(
    tmp_path: Path,
) -> None:
    with StubModel("127.0.0.1") as stub:
        code, message, workspace = run(
            tmp_path,
            {"baseURL": stub.base_url + "/", "model": "m", "usdPerMillionOutputTokens": "4"},
        )
    assert code == 0, message
    assert message == {
        "result": ANSWER,
        "usage": {
            "inputTokens": PROMPT_TOKENS,
            "outputTokens": COMPLETION_TOKENS,
            "costUSD": pytest.approx(COMPLETION_TOKENS * 4 / 1e6),
        },
    }
    assert (workspace / "answer.md").read_text(encoding="utf-8") == ANSWER + "\n"
    (request,) = stub.requests
    assert request.headers["Authorization"] == "Bearer sk-unit"
    assert request.body["model"] == "m"
    assert request.body["messages"][1] == {"role": "user", "content": TASK}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("agent.")]  # tmp removed


def test_a_long_answer_is_named_not_copied(tmp_path: Path) -> None:
    long = "x" * 5000
    with StubModel("127.0.0.1", answer=long) as stub:
        code, message, workspace = run(tmp_path, {"baseURL": stub.base_url, "outputFile": "a.txt"})
    assert code == 0, message
    assert message["result"] == f"the answer (5001 bytes) is in {workspace}/a.txt"
    assert (workspace / "a.txt").read_text() == long + "\n"


@pytest.mark.parametrize(
    ("config", "key", "code", "says"),
    [
        ({}, None, 2, "no API key"),
        ({"baseURL": "https://api.example.com/v1"}, "k", 2, "only http:// is allowed"),
        ({"outputFile": "../escape"}, "k", 2, "outputFile must be a plain file name"),
    ],
)
def test_bad_input_exits_2_with_the_reason_as_result(
    tmp_path: Path, config: dict[str, str], key: str | None, code: int, says: str
) -> None:
    got, message, _ = run(tmp_path, config, key=key)
    assert (got, "usage" in message) == (code, False), message
    assert says in message["result"], message


def test_a_failed_call_exits_1(tmp_path: Path) -> None:
    with StubModel("127.0.0.1", status=500) as stub:
        code, message, workspace = run(tmp_path, {"baseURL": stub.base_url})
    assert code == 1, message
    assert "the model API call" in message["result"] and "failed" in message["result"]
    assert not list(workspace.iterdir())


def test_without_a_task_it_exits_2(tmp_path: Path) -> None:
    code, message, _ = run(tmp_path, {}, task="")
    assert code == 2 and message["result"].startswith("no task"), message
