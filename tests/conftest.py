"""Shared test fixtures: paths to the real test data (in the repo) and to the shared real data (optional)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# the app keeps recent files in the user's settings (QSettings → $XDG_CONFIG_HOME): never the real ones
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="spinenav-test-config-")

ROOT = Path(__file__).parents[1]
DATA = ROOT / "tests" / "data"
SHARED_REAL = ROOT.parent / "shared" / "data" / "real"  # outside the repo: licence unknown, never copied in


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``tests/data``: real CT and label files small enough to live in the repository."""
    return DATA


@pytest.fixture(scope="session")
def real_dicom_dir() -> Path:
    """The 20-slice thoracolumbar DICOM series (512×512, 0.977 mm, 2 mm, JPEG 2000 lossless)."""
    return DATA / "ts_dicom_thoracolumbar" / "dicom"


@pytest.fixture(scope="session")
def chest_dicom_dir() -> Path:
    """The 141-slice chest DICOM series beside the repository; the test is skipped where it is absent."""
    path = SHARED_REAL / "chest_ct_dicom_1mm" / "dicom"
    if not path.is_dir():
        pytest.skip(f"{path} is not here (it is never copied into the repository)")
    return path
