"""Every relative link and #anchor in the documentation resolves, by GitHub's rules.

A link resolves when its file (or folder) exists relative to the page; an anchor, when the
target page has a heading whose GitHub slug is that anchor (or an explicit ``<a id>``).
GitHub's slug: the heading's text (code spans and links reduced to their text) in lower
case, every character that is not a letter, digit, ``_``, ``-`` or space dropped, spaces
made ``-``; a repeated slug gets ``-1``, ``-2``, … in order.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    {
        ROOT / "README.md",
        ROOT / "SECURITY.md",
        ROOT / "benchmarks" / "RESULTS.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "benchmarks" / "results").glob("*.md"),
    }
)
FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", flags=re.M | re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose(text: str) -> str:
    """The page without fenced code blocks and inline code (links there are not links)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def slug(heading: str) -> str:
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    text = FENCE.sub("", page.read_text())
    found: set[str] = set()
    counts: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M):
        base = slug(heading)
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    found.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", text))
    return frozenset(found)


def links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text())) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def test_the_slug_rules_match_githubs_on_known_headings() -> None:
    assert slug("12. Wire formats: JSON, JSON+gzip, npy, v2 binary and the SSE stream") == ("12-wire-formats-json-jsongzip-npy-v2-binary-and-the-sse-stream")
    assert slug("Why W2 stays above 1.2× its floor: the seed's schedule ends at ᾱ_T = 0.603") == (
        "why-w2-stays-above-12-its-floor-the-seeds-schedule-ends-at-ᾱ_t--0603"
    )
    assert slug("`/sample` and [the page](x.md)") == "sample-and-the-page"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no file {resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved}")
        elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


def test_the_documentation_pages_exist_and_the_readme_links_each() -> None:
    readme = set(links(ROOT / "README.md"))
    for name in ("api", "engine", "models", "quality", "deployment", "configuration", "performance"):
        assert (ROOT / "docs" / f"{name}.md").is_file(), name
        assert any(t.split("#")[0] == f"docs/{name}.md" for t in readme), f"README does not link docs/{name}.md"
    assert "SECURITY.md" in readme and "benchmarks/RESULTS.md" in readme
