"""The programs name their pyproject extra when its modules are missing (issue 22)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from stockade.extras import missing, require

PYPROJECT = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())


def test_require_exits_naming_the_extra_and_the_missing_module() -> None:
    with pytest.raises(SystemExit) as exc:
        require("operator", "json", "no_such_module_stockade")
    assert str(exc.value) == (
        "stockade: no_such_module_stockade not installed; this program needs the "
        "'operator' extra: pip install 'stockade[operator]'"
    )


def test_require_passes_when_everything_imports() -> None:
    require("operator", "json", "asyncio")
    assert missing("json", "no_such_module_stockade") == ["no_such_module_stockade"]


def test_the_default_install_has_none_of_the_operators_dependencies() -> None:
    names = {
        dep.split(">")[0].split("=")[0].lower() for dep in PYPROJECT["project"]["dependencies"]
    }
    assert names == {"kubernetes", "pydantic", "pyyaml", "click"}
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {d.split(">")[0] for d in extras["operator"]} == {"kopf", "prometheus-client", "orjson"}
