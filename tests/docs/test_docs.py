"""The docs site: generated reference pages match their sources; the site builds strictly."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

import click

from tests.docs.reference import REPO_ROOT, api_page, cli_page, helm_values_page, pages


def test_generated_pages_match_their_sources() -> None:
    """Fails when a model, a click command or values.yaml changed without `make docs`."""
    drifted = {
        str(path.relative_to(REPO_ROOT)): "".join(
            list(difflib.unified_diff(path.read_text().splitlines(True), content.splitlines(True)))[
                :20
            ]
        )
        for path, content in pages().items()
        if not path.exists() or path.read_text() != content
    }
    assert not drifted, f"differ from their sources (run `make docs`): {drifted}"


def test_the_site_builds_with_strict_links(tmp_path: Path) -> None:
    """mkdocs --strict: a broken link, a missing nav page or a bad anchor fails."""
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "reference" / "api" / "index.html").exists()


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    """The strict build can fail: the same config with a page linking nowhere."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\n[gone](missing.md)\n")
    (tmp_path / "mkdocs.yml").write_text("site_name: x\nnav:\n  - index.md\n")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode != 0
    assert "missing.md" in built.stderr


def test_helm_values_take_the_helm_docs_comment_of_each_key() -> None:
    page = helm_values_page(
        "# -- The image.\nimage:\n  # -- Its tag.\n  tag: v1\n  pull: Always\n\nplain: 3\n"
    )
    assert "| `image` | | The image. |" in page
    assert '| `image.tag` | `"v1"` | Its tag. |' in page
    assert '| `image.pull` | `"Always"` |  |' in page
    assert "| `plain` | `3` |  |" in page


def test_api_page_lists_nested_fields_with_their_constraints() -> None:
    crd = {
        "spec": {
            "names": {"kind": "Thing", "plural": "things"},
            "versions": [
                {
                    "schema": {
                        "openAPIV3Schema": {
                            "properties": {
                                "spec": {
                                    "required": ["items"],
                                    "properties": {
                                        "items": {
                                            "type": "array",
                                            "maxItems": 4,
                                            "description": "The | items.",
                                            "items": {
                                                "properties": {
                                                    "mode": {"type": "string", "enum": ["A", "B"]}
                                                }
                                            },
                                        }
                                    },
                                }
                            }
                        }
                    }
                }
            ],
        }
    }
    page = api_page({"things.yaml": crd})
    assert "| `spec.items` | list of any | yes |  | items ≤ 4 | The \\| items. |" in page
    assert "| `spec.items[].mode` | string |  |  | one of `A`, `B` |" in page


def test_cli_page_has_every_command() -> None:
    @click.group()
    def group() -> None:
        """The group."""

    @group.command()
    def hello() -> None:
        """Say hello."""

    page = cli_page(group, prog="demo")
    assert "## demo hello" in page and "Say hello." in page
