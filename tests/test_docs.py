"""The shipped documentation is a user's first contact: its snippets run, its links resolve, and
it points at nothing outside the repository.

Every ```python block of README.md and docs/*.md runs, a document's blocks in order in one
namespace (later snippets build on earlier ones, as a reader would type them), in a fresh
interpreter whose working directory is a temporary folder. A block that cannot run as written is
marked by the line ``<!-- notest: REASON -->`` right above its fence, and the reason is required.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```python[ \t]*$")
NOTEST = re.compile(r"^<!--\s*notest:(.*?)-->\s*$")
#: a shipped document that names these points at the workplace, not at anything a user has
FORBIDDEN = ("../shared", "shared/reference")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
#: generous: the longest document trains a few tiny models on a shared 2-core machine
TIMEOUT_S = 600


def python_blocks(path: Path) -> list[tuple[int, str, str | None]]:
    """``(line, code, notest reason or None)`` of each ```python block, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if FENCE.match(lines[i].strip()):
            prev = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = NOTEST.match(prev.strip())
            start, body = i + 1, []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            assert i < len(lines), f"{path.name}:{start}: unterminated ```python block"
            code = textwrap.dedent("\n".join(body))
            blocks.append((start, code, marker.group(1).strip() if marker else None))
        i += 1
    return blocks


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_blocks_run(doc: Path, tmp_path: Path) -> None:
    blocks = python_blocks(doc)
    for line, _, reason in blocks:
        assert reason is None or reason, (
            f"{doc.name}:{line}: <!-- notest: --> needs a reason (why the block cannot run)")
    runnable = [(line, code) for line, code, reason in blocks if reason is None]
    if not runnable:
        pytest.skip(f"{doc.name} has no runnable ```python block")
    # one script, each block compiled under its own line number so a failure names the block
    parts = [f"__blocks = {[(line, code) for line, code in runnable]!r}",
             "for __line, __code in __blocks:",
             f"    exec(compile(__code, {doc.name!r} + ':' + str(__line), 'exec'))"]
    script = tmp_path / "snippets.py"
    script.write_text("\n".join(parts) + "\n", encoding="utf-8")
    work = tmp_path / "cwd"
    work.mkdir()
    proc = subprocess.run([sys.executable, str(script)], cwd=work, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, (
        f"a ```python block of {doc.relative_to(ROOT)} failed:\n{proc.stderr[-4000:]}")


def shipped_texts() -> list[Path]:
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"),
             *(p for p in (ROOT / "examples").rglob("*") if p.is_file()),
             *(ROOT / "mtlkit").rglob("*.py")]
    return [p for p in files if "__pycache__" not in p.parts]


def test_no_reference_to_the_workplace() -> None:
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
            for p in shipped_texts()
            for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace")
                                     .splitlines(), 1)
            if any(f in line for f in FORBIDDEN)]
    assert not hits, "shipped files point outside the repository:\n" + "\n".join(hits)


@pytest.mark.parametrize("doc", [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (http:, mailto:) or an anchor in the same page
        path = target.split("#", 1)[0]
        if path and not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)} links to missing files: {broken}"


def test_notest_marker_is_parsed(tmp_path: Path) -> None:
    """The extractor itself: a marker applies to the next block only, and keeps its reason."""
    doc = tmp_path / "d.md"
    doc.write_text("<!-- notest: needs a GPU -->\n```python\nraise SystemExit(1)\n```\n\n"
                   "```python\nx = 1\n```\n<!-- notest: -->\n```python\ny = 2\n```\n")
    assert [(c, r) for _, c, r in python_blocks(doc)] == [
        ("raise SystemExit(1)", "needs a GPU"), ("x = 1", None), ("y = 2", "")]
