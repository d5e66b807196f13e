"""The analysis pipeline object (DESIGN §1): loads the models once, runs the stages in order.

The CLI (``spinenav analyze``), the GUI's worker thread and the tests all use `Pipeline`. Stages so
far: working grid → localizer network (centers + level votes) → joint label decoding → QA flags.
Segmentation and lesions arrive with their own models (later issues); until then the result holds
centers and labels only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import registry
from .errors import InputError, WeightsError
from .label import LEVELS, decode
from .localize import LocalizerOutput, drop_off_column, find_candidates, order_head_to_foot, run_localizer
from .models.localizer import LocalizerNet
from .models.weights import load_state
from .progress import CancelToken, ProgressCallback, check_cancel, report
from .volume import Volume

LOCALIZER = "localizer"
UNCERTAIN_BELOW = 0.7
"""A label whose posterior probability is below this is flagged ``label_uncertain``."""
BORDER_MM = 8.0
"""A center closer than this to the scan's edge is flagged ``partial_at_border``."""
MAX_CANDIDATES = 60
"""Strongest heatmap peaks kept for decoding (a whole spine has 26 levels)."""


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA, then Apple MPS, then CPU; otherwise the named device (must be available)."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "--device cuda: no CUDA GPU is available here; use --device cpu or auto")
    if device not in ("cpu", "cuda", "mps"):
        raise InputError(None, f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


@dataclass
class VertebraResult:
    """One detected vertebra (coordinates LPS mm)."""

    id: int
    name: str
    center_lps: np.ndarray
    confidence: float
    p_shift_cranial: float
    p_shift_caudal: float
    detection_score: float
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    qa_flags: list[str] = field(default_factory=list)


@dataclass
class AnalysisResult:
    vertebrae: list[VertebraResult]
    qa: list[str]
    timings: dict[str, float]
    models: list[dict[str, Any]]
    device: str
    localizer: LocalizerOutput | None = None

    def summary(self) -> str:
        names = ", ".join(v.name for v in self.vertebrae) or "none"
        lines = [f"{len(self.vertebrae)} vertebrae found: {names}"]
        for v in self.vertebrae:
            c = ", ".join(f"{x:7.1f}" for x in v.center_lps)
            flags = f"  [{', '.join(v.qa_flags)}]" if v.qa_flags else ""
            lines.append(f"  {v.name:<4} p={v.confidence:.2f}  center LPS ({c}) mm{flags}")
        lines += [f"  check: {q}" for q in self.qa]
        t = ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items())
        lines.append(f"  timings on {self.device}: {t}")
        return "\n".join(lines)


class Pipeline:
    """Loads the models once; `analyze` runs every stage on one CT.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "mps"}
    weights_root : path, optional
        Folder holding ``<model>/manifest.json`` (default: the installed ``assets/weights``).
    localizer : LocalizerNet, optional
        A ready model (tests pass a small untrained one); skips loading from disk.
    """

    def __init__(
        self, device: str = "auto", weights_root: Path | None = None, localizer: LocalizerNet | None = None
    ) -> None:
        self.device = pick_device(device)
        if localizer is None:
            state, manifest = load_state(LOCALIZER, weights_root)
            arch = manifest["architecture"]
            try:
                localizer = LocalizerNet(widths=tuple(arch["widths"]), use_descriptor=bool(arch["use_descriptor"]))
                localizer.load_state_dict(state)
            except (KeyError, RuntimeError, TypeError) as exc:
                raise WeightsError(
                    manifest.get("file"), f"weights do not fit the architecture ({exc}); reinstall SpineNav"
                ) from None
            self.models = [{"name": LOCALIZER, "version": manifest.get("version"), "sha256": manifest["sha256"]}]
        else:
            self.models = [{"name": LOCALIZER, "version": "in-memory", "sha256": None}]
        self.localizer = localizer.eval().to(self.device)

    def analyze(
        self, ct: Volume, *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
    ) -> AnalysisResult:
        """Find and name every vertebra of ``ct``.

        Raises `CancelledError` between stages when ``cancel`` is set.
        """
        tell = report(progress)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        tell(0.05, "localizing vertebrae")
        check_cancel(cancel)
        out = self._run_localizer(ct, cancel)
        timings["localize"] = time.perf_counter() - t0
        check_cancel(cancel)
        t1 = time.perf_counter()
        tell(0.8, "labeling the column")
        cands = find_candidates(out)
        cands = order_head_to_foot(drop_off_column(sorted(cands, key=lambda c: -c.score)[:MAX_CANDIDATES]))
        dec = decode(np.array([c.level_probs for c in cands]).reshape(len(cands), len(LEVELS)),
                     scores=np.array([min(1.0, c.score) for c in cands]))
        vertebrae = []
        for n, c in enumerate(cands):
            vid = int(dec.ids[n])
            if vid == 0:
                continue  # decoded as a false detection
            top = np.argsort(-dec.posterior[n])[:3]
            alts = [{"name": registry.name_of(LEVELS[k]), "p": round(float(dec.posterior[n, k]), 4)} for k in top]
            vertebrae.append(
                VertebraResult(
                    vid,
                    registry.name_of(vid),
                    c.center_lps,
                    float(dec.confidence[n]),
                    float(dec.p_shift_cranial[n]),
                    float(dec.p_shift_caudal[n]),
                    c.score,
                    alts,
                )
            )
        qa = _qa(vertebrae, ct)
        timings["label"] = time.perf_counter() - t1
        tell(1.0, f"{len(vertebrae)} vertebrae")
        return AnalysisResult(vertebrae, qa, timings, list(self.models), str(self.device), out)

    def _run_localizer(self, ct: Volume, cancel: CancelToken | None) -> LocalizerOutput:
        try:
            return run_localizer(self.localizer, ct, self.device, cancel=cancel)
        except torch.OutOfMemoryError:
            if self.device.type == "cpu":
                raise
            # GPU out of memory: the whole-volume pass falls back to the CPU (slower, same result)
            torch.cuda.empty_cache()
            self.device = torch.device("cpu")
            self.localizer = self.localizer.to(self.device)
            return run_localizer(self.localizer, ct, self.device, cancel=cancel)


def _qa(vertebrae: list[VertebraResult], ct: Volume) -> list[str]:
    """Per-vertebra flags (in place) and case-level notes: gaps, doubtful labels, border cuts."""
    notes = []
    if not vertebrae:
        notes.append("no vertebra found: is this a CT of the spine?")
    k, j, i = ct.array.shape
    for v in vertebrae:
        if v.confidence < UNCERTAIN_BELOW:
            v.qa_flags.append("label_uncertain")
        idx = ct.lps_to_index(v.center_lps[None])[0]
        dist_vox = np.minimum(idx, np.array([i, j, k]) - 1 - idx)
        if np.any(dist_vox * np.array(ct.spacing) < BORDER_MM):
            v.qa_flags.append("partial_at_border")
    pos = {vid: n for n, vid in enumerate(LEVELS)}
    transitional = {registry.id_of("T13"), registry.id_of("L6")}
    for a, b in zip(vertebrae, vertebrae[1:], strict=False):
        between = [vid for vid in LEVELS[pos[a.id] + 1 : pos[b.id]] if vid not in transitional]
        if between:
            names = ", ".join(registry.name_of(x) for x in between)
            notes.append(f"gap between {a.name} and {b.name}: {names} not found")
            a.qa_flags.append("gap_below")
            b.qa_flags.append("gap_above")
    return notes
