"""docs/index.md is the way in: it must reach every page, and the links of the tour, the
architecture page and the integration guide must resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCED = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
MERMAID = re.compile(r"```mermaid\n(.*?)```", re.S)
DIAGRAM_TYPES = ("flowchart", "sequenceDiagram", "stateDiagram-v2", "classDiagram")
OWN_PAGES = ["index.md", "architecture.md", "integration.md"]


def relative_links(page: Path) -> list[str]:
    prose = CODE_SPAN.sub("", FENCED.sub("", page.read_text(encoding="utf-8")))
    return [
        target.split("#")[0]
        for target in LINK.findall(prose)
        if not re.match(r"^[a-z]+:", target) and not target.startswith("#")
    ]


def test_the_tour_links_every_page() -> None:
    linked = {(DOCS / target).resolve() for target in relative_links(DOCS / "index.md")}
    pages = {p.resolve() for p in DOCS.rglob("*.md") if p.name != "index.md"}
    assert sorted(p.relative_to(DOCS).as_posix() for p in pages - linked) == []


@pytest.mark.parametrize("name", OWN_PAGES)
def test_relative_links_resolve(name: str) -> None:
    page = DOCS / name
    missing = [t for t in relative_links(page) if t and not (page.parent / t).exists()]
    assert missing == []


def test_the_architecture_page_draws_what_it_promises() -> None:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    blocks = MERMAID.findall(text)
    kinds = [block.split()[0] for block in blocks]
    assert set(kinds) <= set(DIAGRAM_TYPES)
    assert {"flowchart", "sequenceDiagram", "stateDiagram-v2"} <= set(kinds)
    for needle in ("### SQLite: one box", "### PostgreSQL: many machines", "## Invariants"):
        assert needle in text
    for block in blocks:
        if block.startswith("sequenceDiagram"):
            # Mermaid ends a sequence statement at ";": a message must not contain one.
            assert not [line for line in block.splitlines() if ";" in line]
