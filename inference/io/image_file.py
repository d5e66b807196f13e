"""Single-file 3D images (NIfTI .nii/.nii.gz, NRRD .nrrd/.nhdr, MetaImage .mha/.mhd) via SimpleITK.

SimpleITK returns geometry in LPS (it converts the NIfTI RAS affine itself), so no axis flips are
done by hand here.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..volume import Volume
from .checks import check_geometry, check_memory
from .paths import check_input_path, itk_path

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

MAX_VOXELS = 2_000_000_000
"""Refuse grids larger than this before allocating (a 1024×1024×1900 CT is just under)."""


def is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in IMAGE_SUFFIXES)


def read_image_file(path: str | Path, *, what: str = "image") -> Volume:
    """Read a 3D scalar image file into a `Volume` (array [k, j, i], LPS geometry).

    The header is checked before any voxel is read (`inference.io.checks.check_geometry`, the
    memory budget, for NIfTI also the raw header ITK would silently repair). Raises `InputError` for
    unreadable files, 2D or 4D images, vector/colour pixels, damaged geometry, grids larger than
    `MAX_VOXELS` or than the memory budget, truncated files and non-finite (NaN/Inf) voxels.
    """
    path = check_input_path(path, what=what, kind="file")
    if path.stat().st_size == 0:
        raise InputError(path, f"the file is empty (0 bytes); export the {what} again")
    fmt = _format(path)
    if fmt != "nifti":
        _check_text_geometry(path, what)  # before ITK, which makes up numbers for NaN fields
    with itk_path(path) as itk_name:
        reader = sitk.ImageFileReader()
        reader.SetFileName(itk_name)
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
        direction = reader.GetDirection()
        if dim == 4:  # the 3×3 spatial block of the 4×4 matrix
            direction = tuple(direction[r * 4 + c] for r in range(3) for c in range(3))
        check_geometry(path, size=size, spacing=reader.GetSpacing()[:3], origin=reader.GetOrigin()[:3],
                       direction=direction, what=what)
        item = sitk.Image([1] * dim, reader.GetPixelID()).GetSizeOfPixelComponent()
        # the decoded array, plus one converted copy of it at most (int16 or float32 HU)
        check_memory(path, n_vox * (item + 4), f"reading this {what} ({'×'.join(map(str, size))} voxels of "
                     f"{item}-byte values)")
        if fmt == "nifti":
            _check_nifti_header(path, what)
            _check_nifti_payload(path, what)
        else:
            _check_nrrd_gzip(path, what, n_vox * item)
        try:
            image = reader.Execute()
        except RuntimeError:
            raise InputError(path, f"the {what} could not be decoded (truncated or damaged file); "
                             "re-export it") from None
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    try:
        vol = Volume.from_sitk(image, {"source_path": str(path.resolve()), "source_format": fmt})
    except ValueError as exc:
        raise InputError(path, str(exc)) from None
    if np.issubdtype(vol.array.dtype, np.floating) and not np.isfinite(vol.array).all():
        bad = int((~np.isfinite(vol.array)).sum())
        raise InputError(path, f"{bad} voxels are NaN or infinite; the {what} is corrupt, re-export it")
    return vol


def _check_nifti_header(path: Path, what: str) -> None:
    """Refuse what ITK's NIfTI reader repairs without a word: zero or NaN voxel sizes (it makes them 1 mm)
    and NaN orientation quaternions or affine rows (it falls back to another orientation)."""
    header = _raw_nifti_header(path)
    if header is None:
        return
    damaged = f"the geometry of this {what} is damaged; export it again with its geometry"
    pixdim = np.asarray(header["pixdim"], dtype=float)[1:4]
    if not (np.isfinite(pixdim).all() and (pixdim > 0).all()):
        raise InputError(path, f"the NIfTI header declares voxel sizes {pixdim.tolist()} (zero, negative or not a "
                         f"number); {damaged}")
    if int(header["qform_code"]) > 0:
        quat = [float(header[k]) for k in ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y",
                                             "qoffset_z")]
        if not all(np.isfinite(quat)):
            raise InputError(path, "the NIfTI orientation (qform quaternion) holds values that are not numbers; "
                             f"{damaged}")
    if int(header["sform_code"]) > 0:
        rows = np.stack([np.asarray(header[k], dtype=float) for k in ("srow_x", "srow_y", "srow_z")])
        if not np.isfinite(rows).all():
            raise InputError(path, f"the NIfTI affine (sform) holds values that are not numbers; {damaged}")
        if abs(np.linalg.det(rows[:, :3])) < 1e-9:
            # ITK would fall back to another orientation without a word
            raise InputError(path, f"the NIfTI affine (sform) is degenerate (its axes are not independent); {damaged}")


def _check_nifti_payload(path: Path, what: str) -> None:
    """Refuse a truncated NIfTI and one with NaN/Inf voxels by looking at the stored bytes.

    ITK's NIfTI reader pads a truncated file with zeros and turns NaN/Inf into 0 without a word, so
    neither shows in the array it returns. Cost: a stat (or the 4-byte gzip trailer) for integer
    images; one streamed pass over the voxels for floating-point images.
    """
    import gzip
    import zlib

    header = _raw_nifti_header(path)
    if header is None:
        return
    try:
        shape = header.get_data_shape()
        dtype = header.get_data_dtype()
        offset = int(header.get_data_offset())
        if path.name.lower().endswith((".nii", ".nii.gz")):
            # a single-file NIfTI stores its voxels after the header and 4 extension bytes, whatever
            # vox_offset says (ITK writes 0 there; readers then use 352, or 544 for NIfTI-2)
            offset = max(offset, int(header["sizeof_hdr"]) + 4)
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
    if gz:
        _check_gzip_stream(path, 0, need, what)
    if gz and not float_data:
        return  # the stream holds exactly header + voxels: complete
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


_GEOMETRY_KEYS = re.compile(
    rb"^(space directions|space origin|spacings|thicknesses|axis mins|axis maxs|offset|origin|position|"
    rb"elementspacing|elementsize|transformmatrix|rotation|orientation|centerofrotation)\s*[:=](.*)$",
    re.IGNORECASE)


def _text_header(path: Path) -> tuple[bytes, int]:
    """The text header of a NRRD or MetaImage file and, for NRRD, where its attached data start (-1: unknown)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return b"", -1
    if head.startswith(b"NRRD"):
        end = head.find(b"\n\n")
        return (head[:end], end + 2) if end >= 0 else (head, -1)
    return head.split(b"ElementDataFile", 1)[0], -1


def _check_text_geometry(path: Path, what: str) -> None:
    """NRRD and MetaImage: refuse NaN or infinite geometry fields, which ITK reads as 0 or refuses vaguely."""
    text, _ = _text_header(path)
    for line in text.splitlines():
        m = _GEOMETRY_KEYS.match(line.strip())
        if m and re.search(rb"nan|inf", m.group(2), re.IGNORECASE):
            raise InputError(path, f"the header's {m.group(1).decode(errors='replace')} holds values that are not "
                             f"numbers; the geometry of this {what} is damaged, export it again with its geometry")


def _check_nrrd_gzip(path: Path, what: str, n_bytes: int) -> None:
    """A gzip-encoded NRRD whose stream lost its last bytes: ITK reads it as if it were whole."""
    text, start = _text_header(path)
    if start < 0 or not re.search(rb"^encoding:\s*(gzip|gz)\s*$", text, re.IGNORECASE | re.MULTILINE):
        return
    if re.search(rb"^data ?file:", text, re.IGNORECASE | re.MULTILINE):
        return  # detached data: ITK reads and checks that file itself
    _check_gzip_stream(path, start, n_bytes, what)


def _check_gzip_stream(path: Path, offset: int, n_bytes: int, what: str) -> None:
    """Refuse a gzip stream (from ``offset`` to the end of the file) that is cut short.

    Cheap for a whole file: the stream's last 4 bytes hold its uncompressed length modulo 2**32; only
    when they disagree with ``n_bytes`` is the stream decompressed to its end to be sure.
    """
    import gzip
    import zlib

    truncated = (f"the {what} is truncated (its compressed data stream ends early); re-export or copy it "
                 "again")
    if _gzip_isize(path) == n_bytes % 2**32:
        return
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            with gzip.GzipFile(fileobj=fh) as gz:
                while gz.read(1 << 24):
                    pass
    except (EOFError, OSError, zlib.error):
        raise InputError(path, truncated) from None


def _raw_nifti_header(path: Path):
    """The NIfTI-1 or -2 header as stored (nibabel's loader repairs zero voxel sizes on the way); None if unreadable."""
    import gzip

    import nibabel as nib

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    for kind in (nib.Nifti1Header, nib.Nifti2Header):
        try:
            with opener(path, "rb") as fh:
                return kind.from_fileobj(fh, check=False)
        except Exception:  # noqa: BLE001 - ITK read the header; a nibabel quirk must not block the file
            continue
    return None


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
