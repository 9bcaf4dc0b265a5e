"""The CLI's help screens and --version (issue 22: a literal \\b showed in the help)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from stockade import __version__
from stockade.cli.commands import cli


@pytest.mark.parametrize(
    ("args", "example"),
    [
        ([], "Exit codes: 0 success;"),
        (["run"], "kubectl stockade run hello --image"),
        (["exec"], "kubectl stockade exec NAME -- ls /workspace"),
    ],
)
def test_help_keeps_its_preformatted_lines_without_escape_marks(
    args: list[str], example: str
) -> None:
    """click's \\b marker (a backspace on its own line) keeps the next paragraph as
    written; a raw docstring printed it as the two characters \\ and b."""
    result = CliRunner().invoke(cli, [*args, "--help"], prog_name="kubectl stockade")
    assert result.exit_code == 0, result.output
    assert "\\b" not in result.output and "\b" not in result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert any(line.startswith(example) for line in lines), result.output


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"], prog_name="kubectl stockade")
    assert result.exit_code == 0
    assert result.output.strip() == f"kubectl stockade, version {__version__}"


def test_help_does_not_import_the_kubernetes_client_or_the_models() -> None:
    """`kubectl stockade --help` stays fast: kubernetes and the pydantic models (about
    0.4 s of imports) load only when a command connects or builds a manifest."""
    import subprocess
    import sys

    probe = (
        "import sys, stockade.cli.commands as c; c.cli(['--help'], standalone_mode=False); "
        "print(sorted(m for m in ('kubernetes', 'pydantic', 'stockade.api') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
