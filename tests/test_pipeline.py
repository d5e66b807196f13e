"""Pipeline, candidates, weights and `spinenav analyze` with fake models on tiny volumes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from torch import nn

from inference import registry
from inference.errors import CancelledError, WeightsError
from inference.export.analysis import write_analysis_bundle
from inference.localize import find_candidates, order_head_to_foot, run_localizer
from inference.models.localizer import CLASSES, LocalizerNet
from inference.pipeline import Pipeline
from inference.progress import CancelToken
from inference.volume import Volume

LEVEL_NAMES = ["L1", "L2", "L3"]


def _spine_ct(direction=None) -> tuple[Volume, dict[str, np.ndarray]]:
    """Three bright 'vertebrae' (spheres) along S at 36 mm pitch on a 2 mm grid; their LPS centers."""
    shape = (64, 64, 64)  # k, j, i at 2 mm: 128 mm along every axis, whichever is S
    spacing = (2.0, 2.0, 2.0)
    direction = np.eye(3) if direction is None else np.asarray(direction, float)
    vol = Volume(np.full(shape, -50, np.int16), spacing, (0.0, 0.0, 0.0), direction)
    kji = np.argwhere(np.ones(shape, bool))
    lps = vol.index_to_lps(kji[:, ::-1].astype(float))
    centre = lps.mean(axis=0)
    centers = {}
    arr = vol.array.reshape(-1)
    for n, name in enumerate(LEVEL_NAMES):
        c = centre + np.array([0.0, 0.0, 36.0 * (1 - n)])  # L1 superior
        inside = np.linalg.norm(lps - c, axis=1) < 12
        arr[inside] = 700
        centers[name] = c
    return vol, centers


class FakeLocalizer(nn.Module):
    """Heatmap = local brightness; level logits from the position along S (L1 top … L3 bottom)."""

    divisor = 16
    use_descriptor = True

    def __init__(self, centers_z: list[float], grid_origin_z: float):
        super().__init__()
        self.centers_z = centers_z
        self.origin_z = grid_origin_z
        self.calls = 0

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        bright = (x > 0.3).float()
        pooled = nn.functional.avg_pool3d(bright, 2)
        heat = nn.functional.avg_pool3d(pooled, 3, stride=1, padding=1)
        heat = heat / heat.max().clamp(min=1e-6)
        k = torch.arange(pooled.shape[2], dtype=torch.float32)
        z = self.origin_z + 8.0 * k + 2.0  # 8 mm output voxels (4 mm working grid origin + half voxel)
        logits = torch.full((1, len(CLASSES), *pooled.shape[2:]), -5.0)
        for name, cz in zip(LEVEL_NAMES, self.centers_z, strict=True):
            cls = CLASSES.index(registry.id_of(name))
            logits[0, cls] = (-((z - cz) / 12.0) ** 2)[:, None, None]
        logits[0, 0] = 2.0 * (1 - pooled[0, 0]) - 1.0
        return torch.cat([heat, logits], dim=1)


def _fake_pipeline(ct: Volume, centers: dict[str, np.ndarray]) -> Pipeline:
    from inference.preprocess import working_grid

    grid = working_grid(ct, 4.0)
    fake = FakeLocalizer([centers[n][2] for n in LEVEL_NAMES], grid.origin[2])
    return Pipeline(device="cpu", localizer=fake)


@pytest.mark.parametrize("direction", [None, np.diag([-1.0, -1.0, 1.0]), np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0.0]])])
def test_pipeline_finds_names_and_places_vertebrae(direction):
    ct, centers = _spine_ct(direction)
    result = _fake_pipeline(ct, centers).analyze(ct)
    assert [v.name for v in result.vertebrae] == LEVEL_NAMES
    for v in result.vertebrae:
        assert np.linalg.norm(v.center_lps - centers[v.name]) < 4.0, (v.name, v.center_lps, centers[v.name])
        assert 0 < v.confidence <= 1
    assert set(result.timings) == {"localize", "label"}


def test_progress_is_reported_in_order():
    ct, centers = _spine_ct()
    seen = []
    _fake_pipeline(ct, centers).analyze(ct, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("localiz" in m for _, m in seen) and any("label" in m for _, m in seen)


def test_cancel_stops_before_the_network_runs():
    ct, centers = _spine_ct()
    pipe = _fake_pipeline(ct, centers)
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        pipe.analyze(ct, cancel=token)
    assert pipe.localizer.calls == 0


def test_gpu_out_of_memory_falls_back_to_cpu(monkeypatch):
    ct, centers = _spine_ct()
    pipe = _fake_pipeline(ct, centers)
    calls = []

    def flaky(model, ct_, device, **kw):
        calls.append(device.type)
        if device.type != "cpu":
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return run_localizer(model, ct_, device, **kw)

    monkeypatch.setattr("inference.pipeline.run_localizer", flaky)
    pipe.device = torch.device("cuda")  # pretend: the model itself stays on the CPU
    result = pipe.analyze(ct)
    assert calls == ["cuda", "cpu"] and pipe.device.type == "cpu"
    assert [v.name for v in result.vertebrae] == LEVEL_NAMES


def test_qa_flags_gap_and_border():
    ct, centers = _spine_ct()
    pipe = _fake_pipeline(ct, centers)
    # the middle vertebra erased: L1 and L3 remain, with a gap between them
    arr = ct.array.copy()
    kji = np.argwhere(np.ones(arr.shape, bool))
    lps = ct.index_to_lps(kji[:, ::-1].astype(float))
    arr.reshape(-1)[np.linalg.norm(lps - centers["L2"], axis=1) < 13] = -50
    result = pipe.analyze(ct.with_array(arr))
    names = [v.name for v in result.vertebrae]
    assert names == ["L1", "L3"]
    assert any("gap between L1 and L3" in q for q in result.qa)


def test_untrained_network_runs_end_to_end():
    """The real architecture on a tiny volume: shapes line up, whatever it predicts."""
    ct, _ = _spine_ct()
    torch.manual_seed(0)
    pipe = Pipeline(device="cpu", localizer=LocalizerNet())
    result = pipe.analyze(ct)
    out = result.localizer
    assert out.heatmap.shape == out.probs.shape[1:] == tuple(reversed(out.grid.size))
    assert np.allclose(out.probs.sum(axis=0), 1.0, atol=1e-4)
    assert order_head_to_foot(find_candidates(out, threshold=-1e9)) is not None


def test_weights_are_checked_against_their_manifest(tmp_path):
    folder = tmp_path / "localizer"
    folder.mkdir()
    net = LocalizerNet()
    torch.save(net.state_dict(), folder / "localizer.pt")
    digest = hashlib.sha256((folder / "localizer.pt").read_bytes()).hexdigest()
    manifest = {"file": "localizer.pt", "sha256": digest, "version": "test",
                "architecture": {"widths": [16, 32, 48, 64], "use_descriptor": True}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert Pipeline(device="cpu", weights_root=tmp_path).models[0]["sha256"] == digest
    (folder / "manifest.json").write_text(json.dumps({**manifest, "sha256": "0" * 64}))
    with pytest.raises(WeightsError, match="do not match their manifest"):
        Pipeline(device="cpu", weights_root=tmp_path)
    (folder / "manifest.json").unlink()
    with pytest.raises(WeightsError, match="manifest not found"):
        Pipeline(device="cpu", weights_root=tmp_path)


def test_analysis_bundle_is_atomic_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    ct, centers = _spine_ct()
    result = _fake_pipeline(ct, centers).analyze(ct)
    a, b = tmp_path / "a", tmp_path / "b"
    write_analysis_bundle(a, result, ct)
    write_analysis_bundle(b, result, ct)
    names = sorted(p.name for p in a.iterdir())
    assert names == ["centers.mrk.json", "manifest.json", "vertebrae.csv", "vertebrae.json"]
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)
    doc = json.loads((a / "vertebrae.json").read_text())
    assert doc["coordinate_system"] == "LPS" and [v["name"] for v in doc["vertebrae"]] == LEVEL_NAMES
    from inference.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        write_analysis_bundle(a, result, ct)


def test_cancel_interrupts_the_network_pass_between_layers():
    """The user cancels while the (single-call) network pass runs: it stops at the next layer."""
    ct, _ = _spine_ct()
    net = LocalizerNet()
    token = CancelToken()
    reached = []
    net.stem.register_forward_hook(lambda *_: token.cancel())  # cancel arrives during the pass
    net.unet.head.register_forward_hook(lambda *_: reached.append("head"))
    with pytest.raises(CancelledError):
        run_localizer(net, ct, torch.device("cpu"), cancel=token)
    assert reached == []


def test_cancel_aborts_resampling():
    from inference.preprocess import resample_ct, working_grid

    ct, _ = _spine_ct()
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        resample_ct(ct, working_grid(ct, 4.0), cancel=token)
