"""Typed errors, translated once: by the CLI (`inference.cli`) and by the GUI (`navapp`).

Library code raises these and never prints or exits.
"""

from __future__ import annotations

from os import PathLike, fspath


def display_path(path: str | PathLike) -> str:
    """A path as one printable line: bytes that are not UTF-8 shown as ``\\xNN``, control characters
    (a newline in a file name) as escapes, everything else as is."""
    text = fspath(path)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        elif code < 32 or code == 127:
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


class SpineNavError(Exception):
    """Base of every error SpineNav raises on purpose."""


class InputError(SpineNavError, ValueError):
    """The user's input (a CT, a label map, an output folder, an argument) cannot be used.

    The message is one line that names the file and says what to do about it.
    """

    def __init__(self, path: str | PathLike | None, message: str):
        self.path = None if path is None else display_path(path)
        self.message = " ".join(str(message).split())  # always one line
        super().__init__(f"{self.path}: {self.message}" if self.path else self.message)


class OutputExistsError(InputError):
    """The output folder exists and is not empty, and overwriting was not asked for."""


class WeightsError(SpineNavError):
    """Model weights are missing, corrupt (hash mismatch) or do not match their manifest."""

    def __init__(self, path: str | PathLike | None, message: str):
        self.path = None if path is None else display_path(path)
        self.message = " ".join(str(message).split())
        super().__init__(f"{self.path}: {self.message}" if self.path else self.message)


class CancelledError(SpineNavError):
    """The user cancelled a running job; nothing was written."""
