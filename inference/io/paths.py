"""The input-path contract: every path a user gives is checked here before anything opens it.

One place decides what a path is (a regular file, a folder, something else) and translates the
operating system's refusals (no such file, permission denied, a name too long, a symbolic link
loop, a pipe) into one-line `InputError` messages that say what to do. Nothing here opens a file
for reading, so a FIFO given as a CT never blocks the program.

`itk_path` gives SimpleITK a path it can always open: ITK converts file names to C++ strings and
aborts the process on names that are not valid UTF-8, and its NIfTI reader, given ``X.nii.gz``,
reads ``X.nii`` when both lie in one folder. Reading through a private link with a plain ASCII name
removes both hazards at their root.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError, display_path

__all__ = ["check_input_path", "display_path", "itk_path", "itk_write_path"]

_OS_REASONS = {
    errno.ENOENT: "no such file or folder; check the path",
    errno.EACCES: "permission denied; ask for read access or copy the data to a folder you can read",
    errno.EPERM: "permission denied; ask for read access or copy the data to a folder you can read",
    errno.ENAMETOOLONG: "a name in this path is longer than the file system allows (255 bytes); rename or move it",
    errno.ELOOP: "a symbolic link in this path points back to itself (a loop); fix or remove the link",
    errno.ENOTDIR: "a part of this path is a file, not a folder; check the path",
}


def os_error_message(exc: OSError) -> str:
    """What to tell the user about an `OSError` raised while looking at their path (one line)."""
    return _OS_REASONS.get(exc.errno, f"cannot be read ({exc.strerror or type(exc).__name__}); check the path "
                                      "and its permissions")


def check_input_path(path: str | os.PathLike, *, what: str = "input", kind: str = "any") -> Path:
    """Check that ``path`` names something SpineNav can read; returns it as a `Path`.

    Parameters
    ----------
    path : path
        As the user gave it (relative paths stay relative).
    what : str
        What the path should be ("CT", "label map", ...), for messages.
    kind : {"any", "file", "folder"}
        What is acceptable.

    Raises
    ------
    InputError
        Missing, a broken or looping symbolic link, a name too long, permission denied, a pipe,
        socket or device instead of a file or folder, or the wrong kind.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT and os.path.islink(path):
            target = os.readlink(path)
            raise InputError(path, f"a broken symbolic link (it points to {display_path(target)}, which does not "
                             "exist); fix the link or give the file itself") from None
        raise InputError(path, os_error_message(exc)) from None
    except ValueError:  # an embedded NUL byte
        raise InputError(path, "the path holds a NUL character; check the path") from None
    if stat.S_ISDIR(st.st_mode):
        if kind == "file":
            raise InputError(path, f"is a folder; give the {what} file")
        if not os.access(path, os.R_OK | os.X_OK):
            raise InputError(path, "permission denied: this folder cannot be listed; ask for read access or copy "
                             "the data to a folder you can read")
        return path
    if not stat.S_ISREG(st.st_mode):
        sort = ("a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device")
        raise InputError(path, f"is {sort}, not a file; give the {what} as a regular file or folder")
    if kind == "folder":
        raise InputError(path, f"is a file; give the {what} folder")
    if not os.access(path, os.R_OK):
        raise InputError(path, "permission denied: this file cannot be read; ask for read access or copy it to a "
                         "folder you can read")
    return path


def _itk_safe(text: str) -> bool:
    """True for a path string ITK can take as is: encodable as UTF-8 and with no control characters."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(ord(c) < 32 for c in text)


# Formats whose header names a separate data file relative to its own folder: the folder must stay.
_DETACHED = (".nhdr", ".mhd")


@contextmanager
def itk_path(path: str | os.PathLike) -> Iterator[str]:
    """A path string to hand SimpleITK's reader for the file ``path`` (see the module docstring).

    Single-file formats are read through a symbolic link named ``image<suffix>`` in a fresh private
    folder, so no sibling file can stand in for it and the name is plain ASCII. Detached headers
    (.nhdr, .mhd) name their data file relative to their own folder: they are read in place and
    refused when their path is not safe for ITK. Where links cannot be made (some Windows setups),
    the file is read in place after checking that no sibling could be read instead.
    """
    path = Path(os.path.abspath(path))
    name = path.name.lower()
    if name.endswith(_DETACHED):
        if not _itk_safe(str(path)):
            raise InputError(path, "this path holds characters that are not valid UTF-8 text (or control characters); "
                             "rename the header and its data file, then load it")
        yield str(path)
        return
    suffix = ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()
    folder = tempfile.mkdtemp(prefix="spinenav-read-")
    try:
        link = os.path.join(folder, "image" + suffix)
        try:
            os.symlink(path, link)
        except (OSError, NotImplementedError):
            if not _itk_safe(str(path)):
                raise InputError(path, "this path holds characters that are not valid UTF-8 text; rename the file "
                                 "and load it") from None
            _refuse_shadowing_sibling(path)
            link = str(path)
        yield link
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def itk_write_path(path: str | os.PathLike) -> Iterator[str]:
    """A path string SimpleITK's writer can take for the new file ``path``.

    When ``path``'s folder has a name ITK cannot take (not UTF-8), the file is written through a
    symbolic link to that folder made in a private temporary folder.
    """
    path = Path(os.path.abspath(path))
    if _itk_safe(str(path)) and _itk_safe(path.name):
        yield str(path)
        return
    if not _itk_safe(path.name):
        raise ValueError(f"SpineNav writes ASCII file names only, got {path.name!r}")
    folder = tempfile.mkdtemp(prefix="spinenav-write-")
    try:
        link = os.path.join(folder, "out")
        os.symlink(path.parent, link)
        yield os.path.join(link, path.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _refuse_shadowing_sibling(path: Path) -> None:
    """NIfTI-1 readers look for ``X.nii`` (and ``X.hdr``) before ``X.nii.gz``: refuse when one is there."""
    name = path.name
    lower = name.lower()
    if not lower.endswith((".nii", ".nii.gz")):
        return
    stem = name[: -len(".nii.gz")] if lower.endswith(".nii.gz") else name[: -len(".nii")]
    for other in (".nii", ".hdr", ".nii.gz", ".hdr.gz"):
        sibling = path.with_name(stem + other)
        if sibling.name != name and sibling.exists():
            raise InputError(path, f"{sibling.name} lies beside it and NIfTI readers may read that file instead; "
                             "move one of the two into another folder")
