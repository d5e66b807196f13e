"""Atomic output folders: a bundle appears complete or not at all (DESIGN §5).

Files are written into a hidden temporary folder beside the target (same parent, so the final
rename stays on one file system and is atomic); it is renamed into place only when complete. On
an error or a cancel the temporary folder is removed and the target is left as it was.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError, OutputExistsError


def check_output_dir(out_dir: str | Path, *, force: bool) -> Path:
    """Validate a bundle folder to be created; returns its absolute path.

    Raises
    ------
    InputError
        The parent folder is missing or not writable, or the path is a file.
    OutputExistsError
        The folder exists, is not empty, and ``force`` is False.
    """
    out = Path(os.path.abspath(Path(out_dir).expanduser()))
    parent = out.parent
    if not parent.is_dir():
        raise InputError(out, f"the parent folder {parent} does not exist; create it first or choose another folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(out, f"cannot write in {parent} (permission denied); choose a folder you can write to")
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is a file, not a folder; choose another output folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputExistsError(out, "exists and is not empty; choose another folder or pass --force")
    return out


@contextmanager
def atomic_output_dir(out_dir: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Context manager yielding an empty temporary folder that becomes ``out_dir`` on success.

    With ``force`` an existing ``out_dir`` is replaced only once the new folder is complete: the
    old one is renamed aside, the new one renamed in, then the old one deleted. Any exception
    inside the block (including `CancelledError` and KeyboardInterrupt) removes the temporary
    folder and leaves ``out_dir`` untouched.
    """
    out = check_output_dir(out_dir, force=force)
    tmp = _make_sibling(out, "tmp")
    try:
        yield tmp
        _commit(tmp, out, force=force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _make_sibling(out: Path, kind: str) -> Path:
    """Create a new hidden folder ``.NAME.<kind>-<random>`` beside ``out`` (mode from the umask)."""
    for _ in range(100):
        candidate = out.parent / f".{out.name}.{kind}-{secrets.token_hex(4)}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise InputError(out, f"cannot create a folder in {out.parent} ({exc.strerror}); choose another "
                             "output folder") from None
        return candidate
    raise InputError(out, f"cannot create a temporary folder in {out.parent}")


def _commit(tmp: Path, out: Path, *, force: bool) -> None:
    # Re-check: another process may have filled the folder while this one was working.
    check_output_dir(out, force=force)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        tmp.rename(out)
        return
    old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
    out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        old.rename(out)  # put the previous bundle back
        raise
    shutil.rmtree(old, ignore_errors=True)
