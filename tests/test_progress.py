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
