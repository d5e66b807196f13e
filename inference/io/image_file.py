"""Single-file 3D images (NIfTI .nii/.nii.gz, NRRD .nrrd/.nhdr, MetaImage .mha/.mhd) via SimpleITK.

SimpleITK returns geometry in LPS (it converts the NIfTI RAS affine itself), so no axis flips are
done by hand here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..volume import Volume

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

MAX_VOXELS = 2_000_000_000
"""Refuse grids larger than this before allocating (a 1024×1024×1900 CT is just under)."""


def is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in IMAGE_SUFFIXES)


def read_image_file(path: str | Path, *, what: str = "image") -> Volume:
    """Read a 3D scalar image file into a `Volume` (array [k, j, i], LPS geometry).

    Raises `InputError` for unreadable files, 2D or 4D images, vector/colour pixels, grids larger
    than `MAX_VOXELS`, and non-finite (NaN/Inf) voxels.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found; check the path")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(path, f"the file is empty (0 bytes); export the {what} again")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(
            path, f"cannot read this {what}: not a valid NIfTI/NRRD/MHA file or damaged; re-export it"
        ) from None
    size = tuple(int(s) for s in reader.GetSize())
    dim = reader.GetDimension()
    if reader.GetNumberOfComponents() != 1:
        raise InputError(path, f"the {what} has {reader.GetNumberOfComponents()} values per voxel (colour or "
                         "vector image); a scalar 3D image is needed")
    if dim == 4 and size[3] == 1:
        size = size[:3]
    elif dim == 4:
        raise InputError(path, f"4D image ({size[3]} volumes of {size[:3]}); save a single 3D volume "
                         "(one phase or time point) and load that")
    elif dim != 3:
        raise InputError(path, f"{dim}D image of size {size}; a 3D volume is needed (one 2D slice is not enough)")
    if min(size) < 2 and what == "CT":
        raise InputError(path, f"the image has a single slice (size {size}); a 3D CT volume is needed")
    n_vox = int(np.prod(size, dtype=np.int64))
    if n_vox > MAX_VOXELS or n_vox <= 0:
        raise InputError(path, f"the header declares an implausible grid of {size} voxels; the file is damaged "
                         "or not a CT volume")
    if _format(path) == "nifti":
        _check_nifti_payload(path, what)
    try:
        image = reader.Execute()
    except RuntimeError:
        raise InputError(path, f"the {what} could not be decoded (truncated or damaged file); re-export it") from None
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    try:
        vol = Volume.from_sitk(image, {"source_path": str(path.resolve()), "source_format": _format(path)})
    except ValueError as exc:
        raise InputError(path, str(exc)) from None
    if not _orthonormal(vol.direction):
        raise InputError(path, "the image's direction matrix is not orthonormal (sheared geometry); "
                         "resample it onto a regular grid first")
    if np.issubdtype(vol.array.dtype, np.floating) and not np.isfinite(vol.array).all():
        bad = int((~np.isfinite(vol.array)).sum())
        raise InputError(path, f"{bad} voxels are NaN or infinite; the {what} is corrupt, re-export it")
    return vol


def _check_nifti_payload(path: Path, what: str) -> None:
    """Refuse a truncated NIfTI and one with NaN/Inf voxels by looking at the stored bytes.

    ITK's NIfTI reader pads a truncated file with zeros and turns NaN/Inf into 0 without a word, so
    neither shows in the array it returns. Cost: a stat (or the 4-byte gzip trailer) for integer
    images; one streamed pass over the voxels for floating-point images.
    """
    import gzip
    import zlib

    import nibabel as nib

    try:
        header = nib.load(path).header
        shape = header.get_data_shape()
        dtype = header.get_data_dtype()
        offset = int(header.get_data_offset())
    except Exception:  # noqa: BLE001 - ITK read the header; a nibabel quirk must not block the file
        return
    n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    need = offset + n_bytes
    gz = path.name.lower().endswith(".gz")
    truncated = (f"the {what} is truncated (fewer voxels stored than its header declares); re-export or copy "
                 "it again")
    if not gz and path.stat().st_size < need:
        raise InputError(path, truncated)
    float_data = dtype.kind in "fc"
    if gz and not float_data and _gzip_isize(path) == need % 2**32:
        return  # the trailer says the stream holds exactly header + voxels: complete
    if not gz and not float_data:
        return
    opener = gzip.open if gz else open
    bad = 0
    got = 0
    chunk = max(dtype.itemsize, (1 << 24) // dtype.itemsize * dtype.itemsize)
    try:
        with opener(path, "rb") as fh:
            fh.read(offset)
            while got < n_bytes:
                block = fh.read(min(chunk, n_bytes - got))
                if not block:
                    break
                got += len(block)
                if float_data:
                    usable = len(block) // dtype.itemsize * dtype.itemsize
                    bad += int((~np.isfinite(np.frombuffer(block[:usable], dtype=dtype))).sum())
    except (EOFError, OSError, zlib.error):
        raise InputError(path, truncated) from None
    if got < n_bytes:
        raise InputError(path, truncated)
    if bad:
        raise InputError(path, f"{bad} voxels are NaN or infinite; the {what} is corrupt, re-export it")


def _gzip_isize(path: Path) -> int:
    """The gzip trailer's ISIZE: uncompressed length modulo 2**32 (garbage when the file is cut short)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(-4, 2)
            return int.from_bytes(fh.read(4), "little")
    except OSError:
        return -1


def _format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith((".nrrd", ".nhdr")):
        return "nrrd"
    return "metaimage"


def _orthonormal(direction: np.ndarray, tol: float = 1e-3) -> bool:
    return bool(np.allclose(direction.T @ direction, np.eye(3), atol=tol))
