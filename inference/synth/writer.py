"""`write_cases`: a reproducible folder of synthetic cases (NIfTI + JSON), byte-identical per seed."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputError, OutputExistsError
from ..progress import CancelToken, ProgressCallback, check_cancel, report
from ..volume import Volume
from .config import SynthConfig
from .generator import generate


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` in a set made with ``seed`` (independent streams per case)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def write_cases(n: int, seed: int, out_dir: str | Path, *, config: SynthConfig | None = None, force: bool = False,
                device: str = "cpu", progress: ProgressCallback | None = None,
                cancel: CancelToken | None = None) -> list[Path]:
    """Write ``n`` synthetic cases to ``out_dir``.

    Per case ``synth_XXXX``: ``_ct.nii.gz`` (int16 HU), ``_labels.nii.gz`` (uint8 VerSe ids),
    ``_lesions.nii.gz`` (uint8: 0 none, 1 lytic, 2 blastic, 3 compression fracture) and
    ``_params.json`` (sampled parameters, LPS). The same ``n``, ``seed`` and ``config`` give
    byte-identical files (gzip with mtime 0, no timestamps in headers).

    Raises `OutputExistsError` if ``out_dir`` exists and is not empty unless ``force``, `InputError` for
    ``n < 1`` or an unusable ``device``, `CancelledError` when ``cancel`` is set (files already written stay).
    Returns the parameter-file paths.
    """
    out = Path(out_dir)
    if n < 1:
        raise InputError(None, f"the number of cases must be at least 1, got {n}")
    _check_device(device)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder; give a folder for the synthetic cases")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputExistsError(out, "the output folder is not empty; choose another folder or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    tell = report(progress)
    written = []
    for i in range(n):
        check_cancel(cancel)
        tell(i / n, f"synthetic case {i + 1}/{n}")
        case = generate(case_seed(seed, i), config, device=device)
        stem = out / f"synth_{i:04d}"
        write_nifti(case.ct, Path(f"{stem}_ct.nii.gz"), np.int16)
        write_nifti(case.labels, Path(f"{stem}_labels.nii.gz"), np.uint8)
        write_nifti(case.lesions, Path(f"{stem}_lesions.nii.gz"), np.uint8)
        params = {**case.params, "set_seed": int(seed), "index": i}
        p = Path(f"{stem}_params.json")
        p.write_text(json.dumps(params, indent=1, sort_keys=True) + "\n")
        written.append(p)
    tell(1.0, f"{n} synthetic cases written")
    return written


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(None, f"unknown device {device!r}: use cpu or cuda") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, f"device {device!r} asked for but CUDA is not available here; use cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(None, f"device {device!r} is not supported: use cpu or cuda")


def write_nifti(vol: Volume, path: Path, dtype: type) -> None:
    """Write a `Volume` as gzipped NIfTI-1 with a deterministic byte stream.

    nibabel builds the affine (LPS → RAS flip, done by the library); gzip runs here with mtime 0 and
    no file name in the header so identical volumes give identical files.
    """
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine = lps_to_ras @ vol.index_to_lps_matrix
    data = np.ascontiguousarray(np.transpose(vol.array, (2, 1, 0))).astype(dtype)  # [k, j, i] → (i, j, k)
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    raw = io.BytesIO()
    fmap = nib.Nifti1Image.make_file_map({"image": raw, "header": raw})
    img.to_file_map(fmap)
    with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
