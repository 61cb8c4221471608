"""Every relative link and anchor in the repository's Markdown resolves.

For each Markdown file of the checkout (README.md, docs/, models/ cards, any other tracked
or new ``*.md``), every inline link, image and reference definition is checked:

- ``http(s)://`` and ``mailto:`` targets are external: not fetched, not checked;
- any other target is a path relative to the file (or to the repository root when it starts
  with ``/``); it must exist and lie inside the repository;
- an anchor (``#section``, alone or after a path) must match a heading of the target
  Markdown file, slugged as GitHub does (lower case; punctuation other than ``-`` and ``_``
  removed; spaces to ``-``; a repeated heading gets ``-1``, ``-2``, ...), or an explicit
  ``<a id="...">`` / ``<a name="...">``; on other files only GitHub's line anchors (``#L12``,
  ``#L12-L20``) are accepted.

Fenced code blocks and inline code are not scanned. Only ATX headings (``## Title``) are
read: a setext heading (a title underlined with ``===``) is not seen, so a link to one
fails rather than passing unchecked.
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent

FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)")
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"  # [text], one level of nested brackets allowed
    r"\(\s*(?:<([^<>]*)>|([^\s()]*(?:\([^\s()]*\)[^\s()]*)*))"  # (target) or (<target>)
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)"  # optional "title"
)
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
ATX_HEADING = re.compile(r"^\s{0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$")
HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.I)
LINE_ANCHOR = re.compile(r"L\d+(?:C\d+)?(?:-L\d+(?:C\d+)?)?")
EXTERNAL = ("http://", "https://", "mailto:")


def markdown_files(root: Path = ROOT) -> list[Path]:
    """The checkout's Markdown: tracked files and new ones git does not ignore."""
    done = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "*.md"],
        cwd=root,
        capture_output=True,
        check=True,
    )
    names = {name for name in done.stdout.decode("utf-8").split("\0") if name}
    return sorted(root / name for name in names if (root / name).is_file())


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code blanked out."""
    lines = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if fence is not None:
            if opening and opening[1][0] == fence[0] and len(opening[1]) >= len(fence):
                fence = None
            continue
        if opening:
            fence = opening[1]
            continue
        lines.append((number, CODE_SPAN.sub(lambda m: " " * len(m[0]), line)))
    return lines


def heading_text(raw: str) -> str:
    """What a heading's Markdown renders as, as far as its slug is concerned."""
    text = CODE_SPAN.sub(lambda m: m[2].strip(), raw)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link is its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"(?<!\w)_(\S(?:.*?\S)?)_(?!\w)", r"\1", text)  # _emphasis_
    return text.strip()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but ``-``/``_`` dropped,
    each space a ``-``."""
    kept = []
    for char in heading.strip().lower():
        category = unicodedata.category(char)
        if char in " -" or category[0] in "LMN" or category == "Pc":
            kept.append(char)
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub makes for a Markdown file."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    text = path.read_text(encoding="utf-8")
    for _, line in prose_lines(text):
        found.update(HTML_ANCHOR.findall(line))
    for _, line in _lines_with_code_spans(text):
        match = ATX_HEADING.match(line)
        if not match:
            continue
        base = slug(heading_text(match[2] or ""))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def _lines_with_code_spans(text: str) -> list[tuple[int, str]]:
    """Lines outside fenced code, inline code kept (a heading's code counts in its slug)."""
    keep = {number for number, _ in prose_lines(text)}
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if n in keep]


def targets(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link, image and reference definition in a file."""
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in INLINE_LINK.finditer(line):
            found.append((number, match[1] if match[1] is not None else match[2]))
        reference = REFERENCE.match(line)
        if reference:
            found.append((number, reference[1]))
    return found


@dataclass(frozen=True)
class Broken:
    source: str
    line: int
    target: str
    why: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: ({self.target}) {self.why}"


def check(path: Path, root: Path = ROOT) -> list[Broken]:
    """The links of ``path`` that do not resolve."""
    root = root.resolve()
    source = str(path.relative_to(root))
    broken = []
    for line, target in targets(path):
        if target.lower().startswith(EXTERNAL):
            continue
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            broken.append(Broken(source, line, target, "is not a relative link or http(s)"))
            continue
        if not target:
            broken.append(Broken(source, line, target, "is empty"))
            continue
        where, _, anchor = target.partition("#")
        where = unquote(where)
        if where:
            base = root if where.startswith("/") else path.parent
            resolved = (base / where.lstrip("/")).resolve()
            if not resolved.is_relative_to(root):
                broken.append(Broken(source, line, target, "points outside the repository"))
                continue
            if not resolved.exists():
                broken.append(Broken(source, line, target, "does not exist"))
                continue
        else:
            resolved = path.resolve()
        if not anchor:
            continue
        anchor = unquote(anchor)
        if resolved.suffix.lower() == ".md" and resolved.is_file():
            if anchor not in anchors(resolved):
                broken.append(Broken(source, line, target, f"no heading gives #{anchor}"))
        elif not (resolved.is_file() and LINE_ANCHOR.fullmatch(anchor)):
            broken.append(Broken(source, line, target, f"#{anchor} cannot be checked there"))
    return broken


FILES = markdown_files()


def test_the_docs_are_among_the_files_checked() -> None:
    names = {str(path.relative_to(ROOT)) for path in FILES}
    assert {"README.md", "docs/configuration.md", "docs/architecture.md"} <= names
    assert any(name.startswith("models/") for name in names)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    broken = check(path)
    assert not broken, "\n".join(str(b) for b in broken)


# -- the checker itself --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("Quick start", "quick-start"),
        ("Outbox: caps, eviction, salvage, replay", "outbox-caps-eviction-salvage-replay"),
        ("`gpio.counter`", "gpiocounter"),
        ("`[storage]`", "storage"),
        ("`[[sensors]]`", "sensors"),
        ("Looking inside: `edge outbox`", "looking-inside-edge-outbox"),
        ("snake_case and kebab-case", "snake_case-and-kebab-case"),
        ("What it costs (in writes)?", "what-it-costs-in-writes"),
        ("Ünïcode héading", "ünïcode-héading"),
        ("A [linked](other.md) heading", "a-linked-heading"),
    ],
)
def test_headings_slug_as_on_github(heading: str, expected: str) -> None:
    assert slug(heading_text(heading)) == expected


def test_the_checker_finds_each_kind_of_broken_link(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (tmp_path / "outside.md").write_text("# Outside\n", encoding="utf-8")
    (root / "docs" / "guide.md").write_text(
        '# Guide\n\n## Setup\n\n## Setup\n\n### `edge run`\n\n<a id="custom"></a>\n',
        encoding="utf-8",
    )
    (root / "tool.py").write_text("print()\n", encoding="utf-8")
    page = root / "README.md"
    page.write_text(
        "\n".join(
            [
                "# Title",
                "[ok](docs/guide.md) [ok](docs/guide.md#setup) [ok](docs/guide.md#setup-1)",
                "[ok](docs/guide.md#edge-run) [ok](docs/guide.md#custom) [ok](#title)",
                "[ok](tool.py#L1) [ok](https://example.com/x#y) ![ok](docs/guide.md)",
                "[ok](docs/) [ok](</docs/guide.md>)",
                "`[not a link](missing.md)`",
                "```",
                "[not a link](missing.md)",
                "```",
                "[missing](docs/nothing.md)",
                "[bad anchor](docs/guide.md#setup-2)",
                "[bad here](#nowhere)",
                "[outside](../outside.md)",
                "[absolute](/../outside.md)",
                "[line anchor on md](tool.py#main)",
                "[scheme](ftp://example.com/file)",
                "[ref]: docs/gone.md",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    found = [(b.line, b.target, b.why) for b in check(page, root)]
    assert found == [
        (10, "docs/nothing.md", "does not exist"),
        (11, "docs/guide.md#setup-2", "no heading gives #setup-2"),
        (12, "#nowhere", "no heading gives #nowhere"),
        (13, "../outside.md", "points outside the repository"),
        (14, "/../outside.md", "points outside the repository"),
        (15, "tool.py#main", "#main cannot be checked there"),
        (16, "ftp://example.com/file", "is not a relative link or http(s)"),
        (17, "docs/gone.md", "does not exist"),
    ]
