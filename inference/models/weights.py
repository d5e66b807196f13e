"""Model weights on disk: ``assets/weights/<model>/manifest.json`` + the weights file it names.

Loading checks the file's sha256 against the manifest (a corrupt or swapped file is refused, never
used), builds the architecture the manifest describes and loads the state dict. Nothing is ever
downloaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ..assets import assets_dir
from ..errors import WeightsError

WEIGHTS_ROOT = assets_dir() / "weights"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(name: str, root: Path | None = None) -> tuple[dict[str, Any], Path]:
    """The manifest of model ``name`` and its folder; `WeightsError` if missing or malformed."""
    folder = (root or WEIGHTS_ROOT) / name
    path = folder / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise WeightsError(path, "model manifest not found; reinstall SpineNav (weights ship with it)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(path, f"unreadable model manifest ({exc}); reinstall SpineNav") from None
    for key in ("file", "sha256", "architecture"):
        if key not in manifest:
            raise WeightsError(path, f"model manifest lacks '{key}'; reinstall SpineNav")
    return manifest, folder


def load_state(name: str, root: Path | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict and manifest of model ``name``, after checking the weights' sha256."""
    manifest, folder = read_manifest(name, root)
    path = folder / manifest["file"]
    if not path.is_file():
        raise WeightsError(path, "model weights file missing; reinstall SpineNav")
    digest = sha256_of(path)
    if digest != manifest["sha256"]:
        raise WeightsError(
            path,
            f"weights do not match their manifest (sha256 {digest[:12]}… instead of "
            f"{manifest['sha256'][:12]}…); the file is corrupt or was replaced: reinstall SpineNav",
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state, manifest
