"""The user documents' links: every in-page anchor names a heading, every relative link
names a file of the repository (README.md, SECURITY.md, CHANGELOG.md, docs/).

Anchors follow GitHub's heading slugs: lower case, punctuation other than ``-`` and
``_`` dropped, spaces to hyphens, ``-1``, ``-2``... for repeated headings.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    REPO_ROOT / "README.md",
    REPO_ROOT / "SECURITY.md",
    REPO_ROOT / "CHANGELOG.md",
    *sorted((REPO_ROOT / "docs").glob("*.md")),
]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


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


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_links_resolve(path: Path) -> None:
    text = path.read_text()
    broken = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        missing_anchor = bool(anchor) and linked.suffix == ".md"
        if not linked.exists() or (missing_anchor and anchor not in slugs(linked.read_text())):
            broken.append(target)
    assert not broken, f"{path.name}: broken links {broken}"
