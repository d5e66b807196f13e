"""Progress callbacks and the cancel token."""

import threading

import pytest

from inference.errors import CancelledError, InputError
from inference.progress import CancelToken, check_cancel, report, sub_progress


def test_cancel_token_across_threads():
    token = CancelToken()
    check_cancel(token)
    check_cancel(None)
    t = threading.Thread(target=token.cancel)
    t.start()
    t.join()
    assert token.cancelled
    with pytest.raises(CancelledError):
        check_cancel(token)


def test_sub_progress_maps_range():
    seen = []
    sub = sub_progress(lambda f, m: seen.append((round(f, 6), m)), 0.5, 0.75)
    sub(0.0, "a")
    sub(1.0, "b")
    sub(2.0, "clamped")
    assert seen == [(0.5, "a"), (0.75, "b"), (0.75, "clamped")]
    report(None)(0.3, "no-op is fine")


def test_input_error_is_one_line_and_names_path():
    err = InputError("/data/ct", "bad thing\n  on two lines")
    assert str(err) == "/data/ct: bad thing on two lines"
    assert isinstance(err, ValueError) and err.path == "/data/ct"


def test_without_a_terminal_progress_is_printed_as_plain_lines(capsys):
    """A log file or `make demo` gets one line per stage and per tenth of the work, not silence."""
    from inference.cli import _plain_progress, _progress_bar

    assert _progress_bar()[0] is None  # quick commands stay silent without a terminal (scripts parse their output)
    quiet, _ = _progress_bar(plain=True)  # pytest's stderr is not a terminal
    quiet(0.05, "reading image")  # within the first seconds: nothing (a quick refusal stays one error line)
    assert capsys.readouterr().err == ""
    progress, close = _plain_progress(after_s=0.0)
    progress(0.05, "localizing vertebrae")
    progress(0.06, "localizing vertebrae")  # same stage, little progress: no line
    progress(0.4, "following the spinal column")
    for n in range(1, 9):
        progress(0.5 + 0.45 * n / 8, f"segmented {n}/8")
    progress(1.0, "8 vertebrae")
    close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("[  5%") and lines[0].endswith("localizing vertebrae")
    assert sum("localizing" in x for x in lines) == 1
    assert any("following the spinal column" in x for x in lines)
    assert 2 <= sum("segmented" in x for x in lines) <= 5
    assert lines[-1].startswith("[100%") and lines[-1].endswith("8 vertebrae")
