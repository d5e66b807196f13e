"""The documentation matches the repository: every picture in docs/ is linked from a page."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_png_in_docs_is_linked_from_a_page():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(p.read_text(encoding="utf-8") for p in pages)
    orphans = [p.name for p in sorted((ROOT / "docs").glob("*.png")) if p.name not in text]
    assert not orphans, f"linked from no page (README.md, docs/*.md): {orphans}; link them or delete them"


def test_every_figure_script_is_run_by_make_docs():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    target = makefile[makefile.index("\ndocs:"):]
    missing = [p.stem[5:] for p in sorted((ROOT / "docs").glob("make_*.py")) if p.stem[5:] not in target]
    assert not missing, f"docs/make_*.py not run by `make docs`: {missing}"
