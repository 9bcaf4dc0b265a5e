"""Shell completion of ``kubectl stockade``: kubectl's plugin protocol and click's variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stockade.cli.commands import cli
from stockade.cli.complete import candidates

BIN = Path(sys.executable).parent


def test_a_new_word_lists_every_command_then_no_file_completion() -> None:
    lines = candidates([""])
    assert lines[-1] == ":4"
    assert sorted(line.split("\t")[0] for line in lines[:-1]) == sorted(cli.commands)
    assert all("\t" in line for line in lines[:-1])  # each with its help


def test_options_of_a_command_complete_after_connection_flags() -> None:
    assert candidates(["-n", "team", "logs", "--fo"]) == [
        "--follow\tStream the log as it grows.",
        ":4",
    ]
    assert candidates(["res"]) == [
        line for line in candidates([""]) if line.startswith(("result\t", "resume\t"))
    ] + [":4"]


def test_no_words_completes_an_empty_one() -> None:
    assert candidates([]) == candidates([""])


def test_the_console_script_speaks_kubectls_protocol() -> None:
    out = subprocess.run(
        [str(BIN / "kubectl_complete-stockade"), "sus"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert out.splitlines() == [line for line in candidates(["sus"])]
    assert out.splitlines()[0].startswith("suspend\t")


def test_clicks_completion_variable_works_despite_the_spaced_program_name() -> None:
    env = {
        **os.environ,
        "_KUBECTL_STOCKADE_COMPLETE": "bash_complete",
        "COMP_WORDS": "kubectl-stockade sess",
        "COMP_CWORD": "1",
    }
    out = subprocess.run(
        [str(BIN / "kubectl-stockade")], env=env, capture_output=True, text=True, timeout=30
    ).stdout
    assert out.splitlines() == ["plain,sessions"]
