"""Output folders: a bundle appears complete or not at all, and no user file is ever lost (DESIGN §5).

Files are written into a hidden temporary folder beside the target (same parent, so the final
rename stays on one file system and is atomic); it takes the target's place only when complete. On
an error or a cancel the temporary folder is removed and the target is left as it was.

The output-folder policy, in one place (`check_output_dir`):

- a new or empty folder is always fine;
- ``force`` replaces only a folder that is itself a SpineNav bundle (its manifest.json says
  ``"software": {"name": "spinenav"}``), never any other folder;
- never ``/``, a home folder or one above it, never the input, a folder holding the input, or a
  folder inside an input folder;
- a replacement leaves either the old or the new bundle under the target's name at every instant
  (an atomic exchange of the two folders on Linux; elsewhere the old bundle is put back by the next
  run if the process dies between two renames);
- hidden ``.NAME.tmp-PID-*`` / ``.NAME.old-PID-*`` folders left by a killed run are removed by the
  next run to the same target (only when that process is gone).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError, OutputExistsError

BUNDLE_SOFTWARE = "spinenav"
"""``manifest.json`` → ``software.name`` of every bundle SpineNav writes."""


def is_bundle(folder: str | Path) -> bool:
    """True when ``folder`` holds a manifest.json written by SpineNav."""
    try:
        doc = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    software = doc.get("software") if isinstance(doc, dict) else None
    return isinstance(software, dict) and software.get("name") == BUNDLE_SOFTWARE


def check_output_dir(out_dir: str | Path, *, force: bool, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Validate a bundle folder to be created or replaced; returns its absolute path.

    Parameters
    ----------
    out_dir : path
        The bundle folder.
    force : bool
        Replace an existing non-empty folder, which must be a SpineNav bundle.
    inputs : paths
        The files and folders the bundle is made from: the output may not be one of them, hold
        one, or lie inside one.

    Raises
    ------
    InputError
        The parent folder is missing or not writable, the path is a file, a protected folder
        (``/``, home), an input or near one, or (with ``force``) a folder that is not a bundle.
    OutputExistsError
        The folder exists, is not empty, and ``force`` is False.
    """
    out = Path(os.path.abspath(Path(out_dir).expanduser()))
    real = Path(os.path.realpath(out))
    if real.parent == real or _is_home_or_above(real):
        raise InputError(out, "is the root or a home folder; SpineNav writes a bundle only into a new folder of its "
                         "own, choose one (e.g. a new folder inside this one)")
    for item in inputs:
        if not item:
            continue
        src = Path(os.path.realpath(os.path.abspath(item)))
        if real == src or src.is_relative_to(real):
            raise InputError(out, f"holds the input {item}; choose an output folder apart from the input")
        if real.is_relative_to(src) and src.is_dir():
            raise InputError(out, f"lies inside the input folder {item}; choose an output folder outside it")
    parent = out.parent
    if not parent.is_dir():
        raise InputError(out, f"the parent folder {parent} does not exist; create it first or choose another folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(out, f"cannot write in {parent} (permission denied); choose a folder you can write to")
    restored = _recover_interrupted(out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is a file, not a folder; choose another output folder")
    if out.is_dir() and _non_empty(out):
        note = " (the previous bundle, put back after an interrupted replacement)" if restored else ""
        if not force:
            raise OutputExistsError(out, f"exists and is not empty{note}; choose another folder or pass --force")
        if not is_bundle(out):
            raise InputError(out, "is not a SpineNav bundle (no manifest.json written by SpineNav in it), and --force "
                             "replaces only a bundle; choose a new or empty folder")
    return out


@contextmanager
def atomic_output_dir(out_dir: str | Path, *, force: bool = False,
                      inputs: Iterable[str | Path | None] = ()) -> Iterator[Path]:
    """Context manager yielding an empty temporary folder that becomes ``out_dir`` on success.

    With ``force`` an existing bundle at ``out_dir`` is replaced only once the new folder is
    complete, by an atomic exchange where the system offers one. Any exception inside the block
    (including `CancelledError` and KeyboardInterrupt) removes the temporary folder and leaves
    ``out_dir`` untouched. ``inputs`` as in `check_output_dir`.
    """
    inputs = list(inputs)
    out = check_output_dir(out_dir, force=force, inputs=inputs)
    tmp = _make_sibling(out, "tmp")
    try:
        yield tmp
        _commit(tmp, out, force=force, inputs=inputs)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---- helpers ----------------------------------------------------------------------------------------
def _is_home_or_above(folder: Path) -> bool:
    homes = {Path(os.path.expanduser("~"))}
    if os.environ.get("HOME"):
        homes.add(Path(os.environ["HOME"]))
    for home in homes:
        home = Path(os.path.realpath(home))
        if home != home.parent and home.is_relative_to(folder):
            return True
    return False


def _non_empty(folder: Path) -> bool:
    try:
        return any(folder.iterdir())
    except OSError as exc:
        raise InputError(folder, f"cannot be listed ({exc.strerror}); choose another output folder") from None


def _sibling_pattern(out: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(out.name)}\.(tmp|old)-(?:(\d+)-)?[0-9a-f]+$")


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _recover_interrupted(out: Path) -> bool:
    """Clean what a killed run left beside ``out``; put an orphaned previous bundle back. True if restored."""
    pattern = _sibling_pattern(out)
    try:
        names = [e.name for e in os.scandir(out.parent) if e.name.startswith(f".{out.name}.")]
    except OSError:
        return False
    restored = False
    for name in sorted(names):
        m = pattern.match(name)
        if m is None:
            continue
        kind, pid = m.group(1), int(m.group(2)) if m.group(2) else None
        if _alive(pid):
            continue  # another run is writing or replacing right now
        path = out.parent / name
        if kind == "old" and not out.exists() and is_bundle(path):
            try:
                path.rename(out)  # the run died between its two renames: the previous bundle goes back
                restored = True
            except OSError:
                pass
            continue
        if kind == "tmp" or out.exists():
            # an unfinished new bundle, or a replaced one (perhaps half deleted when the run died)
            shutil.rmtree(path, ignore_errors=True)
    return restored


def _make_sibling(out: Path, kind: str) -> Path:
    """Create a new hidden folder ``.NAME.<kind>-<pid>-<random>`` beside ``out`` (mode from the umask)."""
    for _ in range(100):
        candidate = out.parent / f".{out.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise InputError(out, f"cannot create a folder in {out.parent} ({exc.strerror}); choose another "
                             "output folder") from None
        return candidate
    raise InputError(out, f"cannot create a temporary folder in {out.parent}")


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where not offered."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False  # the file system has no exchange: fall back to two renames
    raise OSError(err, os.strerror(err), str(b))


def _commit(tmp: Path, out: Path, *, force: bool, inputs: list) -> None:
    # Re-check: another process may have filled the folder while this one was working.
    check_output_dir(out, force=force, inputs=inputs)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        tmp.rename(out)
        return
    old = _make_sibling(out, "old")
    old.rmdir()
    if _exchange(tmp, out):
        tmp.rename(old)  # tmp now holds the previous bundle
    else:
        out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            old.rename(out)  # put the previous bundle back
            raise
    shutil.rmtree(old, ignore_errors=True)
