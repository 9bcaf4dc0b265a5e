"""The user documents: every in-page anchor names a heading, every relative link names a
file of the repository (README.md, SECURITY.md, CHANGELOG.md, docs/**/*.md), and so does
every link to the repository's own files on GitHub (``.../blob/main/PATH``, ``tree``,
``raw``), which the docs pages use for files outside ``docs/``. README.md stays short
(at most 2,000 words) and every docs page is in mkdocs.yml's nav.

Anchors follow GitHub's heading slugs: lower case, punctuation other than ``-`` and
``_`` dropped, spaces to hyphens, ``-1``, ``-2``... for repeated headings.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    REPO_ROOT / "README.md",
    REPO_ROOT / "SECURITY.md",
    REPO_ROOT / "CHANGELOG.md",
    *sorted((REPO_ROOT / "docs").rglob("*.md")),
]
GITHUB = re.compile(
    r"^https://github\.com/stockade-dev/stockade/(?:blob|tree|raw)/main/([^#]+)(?:#.*)?$"
)
README_MAX_WORDS = 2000
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")  # a regex in code, `([-a-z0-9]*)`, is not a link


def slugs(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of `markdown` (fenced code left out)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", markdown).splitlines():
        match = re.match(r"^#{1,6} (.*)$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_slugs_follow_github() -> None:
    text = "# A\n## The Agent API (`stockade.dev/v1alpha1`, kind `Agent`)\n## A\n"
    assert slugs(text) == {"a", "the-agent-api-stockadedevv1alpha1-kind-agent", "a-1"}


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_links_resolve(path: Path) -> None:
    text = path.read_text()
    broken = []
    for target in LINK.findall(INLINE_CODE.sub("", FENCE.sub("", text))):
        own = GITHUB.match(target)
        if own:
            if not (REPO_ROOT / own.group(1)).exists():
                broken.append(target)
            continue
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        missing_anchor = bool(anchor) and linked.suffix == ".md"
        if not linked.exists() or (missing_anchor and anchor not in slugs(linked.read_text())):
            broken.append(target)
    assert not broken, f"{path.name}: broken links {broken}"


def prose_words(markdown: str) -> int:
    """Words (whitespace-separated tokens) of `markdown` outside fenced code blocks."""
    return len(FENCE.sub("", markdown).split())


def test_prose_words_leave_code_out() -> None:
    assert prose_words("one two\n```sh\nmake run\nmake test\n```\nthree\n") == 3


def test_readme_is_short() -> None:
    """README.md is a newcomer's page: at most 2,000 words outside fenced code blocks
    (the commands and the manifest are not counted; the rest is in docs/)."""
    words = prose_words((REPO_ROOT / "README.md").read_text())
    assert words <= README_MAX_WORDS, f"README.md has {words} words; move some into docs/"


def nav_pages(nav: object) -> set[str]:
    """Every page path (relative to docs/) in a mkdocs `nav` value, nested sections too."""
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return set().union(*(nav_pages(item) for item in nav)) if nav else set()
    if isinstance(nav, dict):
        return set().union(*(nav_pages(value) for value in nav.values())) if nav else set()
    return set()


def test_nav_pages_are_found_in_sections() -> None:
    nav = [{"Home": "index.md"}, {"A": [{"B": "a/b.md"}, "c.md"]}]
    assert nav_pages(nav) == {"index.md", "a/b.md", "c.md"}


def test_every_docs_page_is_in_the_nav() -> None:
    config = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text())
    listed = nav_pages(config["nav"])
    docs = REPO_ROOT / "docs"
    pages = {str(path.relative_to(docs)) for path in docs.rglob("*.md")}
    assert pages - listed == set(), "docs pages missing from mkdocs.yml's nav"
    assert listed - pages == set(), "nav entries without a page"
