"""The generated corpus of bad and awkward inputs (tests/input_corpus.py) through the command line.

Every item ends in exit 0 with the geometry that was written, or exit 2 with one line naming the
path: no crash, no signal, no wrong success, no refusal of good input, and no worker past the
memory budget. The outcome table is printed (it shows in CI's log) whether the test passes or not.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import input_corpus  # noqa: E402


def test_every_corpus_item_is_read_right_or_refused_in_one_line(capsys):
    work = Path(tempfile.mkdtemp(prefix="spinenav-corpus-"))
    try:
        items = input_corpus.build_corpus(work)
        outcomes = input_corpus.run_corpus(items, work)
    finally:
        input_corpus._restore_modes(work)
        shutil.rmtree(work, ignore_errors=True)
    summary = input_corpus.summarize(outcomes)
    with capsys.disabled():
        print("\n" + input_corpus.format_summary(summary))
    assert len(items) >= 300
    assert summary["failures"] == [], input_corpus.format_summary(summary)
    assert summary["peak_rss_mb"] < input_corpus.BUDGET_GB * 1000
    # each kind of trouble is really in the corpus, and good input is in it too
    cats = summary["by_category"]
    for category in ("truncation", "dicom tags", "odd headers", "non-HU", "giant", "path kinds", "permissions",
                     "output policy", "label maps"):
        assert cats[category].get("refused", 0) >= 2, category
    assert cats["orientation"].get("ok", 0) >= 30 and cats["names"].get("ok", 0) >= 10
