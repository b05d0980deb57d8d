"""Every relative link and image in README.md and docs/*.md points at a file or folder of this
repository, and every ``#anchor`` at a heading that exists (GitHub's heading ids). The README stays
short (the details live in docs/, each file linked from it)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 300

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_REF = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
HTML_ID = re.compile(r"""<[a-z]+\b[^>]*?\b(?:id|name)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's id for a heading: the rendered text, lower case, without punctuation, spaces as '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"(^|\W)_+|_+(\W|$)", r"\1\2", text)  # _emphasis_, not snake_case
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        found.update(HTML_ID.findall(line))
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    out = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        line = CODE_SPAN.sub(lambda m: "code", line)  # `[x](y)` in code is not a link
        out += [(number, target) for target in LINK.findall(line) + HTML_REF.findall(line)]
    return out


def broken_links(path: Path, root: Path = ROOT) -> list[tuple[str, str]]:
    """(link target, what is wrong with it) for each bad link of one markdown file."""
    problems = []
    root = root.resolve()
    for number, target in links(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / unquote(file_part)).resolve() if file_part else path.resolve()
        where = f"{path.resolve().relative_to(root)}:{number}"
        if not target:
            problems.append((target, f"{where}: an empty link"))
        elif root not in (resolved, *resolved.parents):
            problems.append((target, f"{where}: leads out of the repository"))
        elif not resolved.exists():
            problems.append((target, f"{where}: {resolved.relative_to(root)} does not exist"))
        elif anchor and resolved.suffix == ".md" and unquote(anchor).lower() not in anchors(resolved):
            problems.append((target, f"{where}: no heading with the id #{anchor} in {resolved.relative_to(root)}"))
    return problems


# ---------------------------------------------------------------------------- the real files

@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_the_readme_shows_its_screenshot_and_links_every_docs_file() -> None:
    targets = {target.partition("#")[0] for _, target in links(ROOT / "README.md")}
    assert any(t.startswith(".ci/screenshots/") and t.endswith(".png") for t in targets)
    unlinked = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if f"docs/{p.name}" not in targets]
    assert unlinked == [], "docs files the README does not link"


def test_the_readme_stays_short() -> None:
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move details into docs/"


# ---------------------------------------------------------------------------- the checker itself

def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_checker_reports_missing_files_images_anchors_and_escapes(tmp_path: Path) -> None:
    write(tmp_path, "docs/b.md", "# B\n\n## Where the LoRA goes\n\n## `python -m x` (1/2)\n\n## Twice\n\n## Twice\n")
    write(tmp_path, "pic.png", "")
    a = write(tmp_path, "README.md", "\n".join([
        "# A",
        "[ok](docs/b.md) [ok](docs/b.md#where-the-lora-goes) ![ok](pic.png) [ok](docs/b.md#python--m-x-12)",
        "[ok](docs/b.md#twice-1) [ok](#a) [ok](https://example.com/x.md) [ok](docs/)",
        "[gone](docs/c.md) ![gone](shots/none.png) [bad](docs/b.md#nowhere) [bad](#nope) [out](../x.md)",
        '<img src="missing.png"> `[not a link](nowhere.md)`',
        "```",
        "[in code](nowhere.md)",
        "```",
    ]))
    problems = broken_links(a, tmp_path)
    assert [target for target, _ in problems] == ["docs/c.md", "shots/none.png", "docs/b.md#nowhere", "#nope",
                                                  "../x.md", "missing.png"], problems


def test_heading_ids_follow_github() -> None:
    assert slug("Quick start (two commands, on a fresh Linux machine)") == \
        "quick-start-two-commands-on-a-fresh-linux-machine"
    assert slug("What musubi-tuner's process gets") == "what-musubi-tuners-process-gets"
    assert slug("The `musubi_tuner.progress` websocket event") == "the-musubi_tunerprogress-websocket-event"
    assert slug("Scripting it: an API client example") == "scripting-it-an-api-client-example"
