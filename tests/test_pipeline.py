"""Pipeline, candidates, weights and `spinenav analyze` with fake models on tiny volumes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

import inference.pipeline as pipeline_module
from inference import registry
from inference.errors import CancelledError, InputError, WeightsError
from inference.export import write_bundle
from inference.localize import find_candidates, order_head_to_foot, run_localizer
from inference.models.localizer import LocalizerNet
from inference.pipeline import Pipeline
from inference.precision import AUTO_CUDA, autocast, resolve_precision
from inference.progress import CancelToken
from inference.volume import Volume
from tests.fakes import SPINE_LEVELS, FakeSegmenter, fake_pipeline, spine_ct

LEVEL_NAMES = SPINE_LEVELS
_spine_ct = spine_ct
_fake_pipeline = fake_pipeline


@pytest.mark.parametrize("direction", [None, np.diag([-1.0, -1.0, 1.0]), np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0.0]])])
def test_pipeline_finds_names_and_places_vertebrae(direction):
    ct, centers = _spine_ct(direction)
    result = _fake_pipeline(ct, centers).analyze(ct)
    assert [v.name for v in result.vertebrae] == LEVEL_NAMES
    for v in result.vertebrae:
        assert np.linalg.norm(v.center_lps - centers[v.name]) < 4.0, (v.name, v.center_lps, centers[v.name])
        assert 0 < v.confidence <= 1
    assert set(result.timings) == {"localize", "column", "label"}


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
    pipe.precision = "fp16"
    result = pipe.analyze(ct)
    assert calls == ["cuda", "cpu"] and pipe.device.type == "cpu"
    assert [v.name for v in result.vertebrae] == LEVEL_NAMES
    assert result.precision == "fp32"  # the CPU fallback runs in float32


def test_segmenter_out_of_memory_moves_the_whole_pipeline_to_one_device(monkeypatch):
    """A CUDA OOM in the segmentation stage moves every model to the CPU (not the segmenter alone), so
    the next analysis runs on one device for every stage."""
    ct, centers = _spine_ct()
    pipe = fake_pipeline(ct, centers, segmenter=FakeSegmenter())
    seg_devices, loc_devices = [], []
    real_segment, real_localize = pipeline_module.segment_vertebrae, pipeline_module.run_localizer

    def flaky_segment(model, ct_, items, device, **kw):
        seg_devices.append(device.type)
        if device.type != "cpu":
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        assert all(p.device.type == "cpu" for p in model.parameters())
        return real_segment(model, ct_, items, device, **kw)

    def localize(model, ct_, device, **kw):
        loc_devices.append(device.type)
        return real_localize(model, ct_, torch.device("cpu"), **kw)  # the fake model never really left the CPU

    monkeypatch.setattr(pipeline_module, "segment_vertebrae", flaky_segment)
    monkeypatch.setattr(pipeline_module, "run_localizer", localize)
    pipe.device = torch.device("cuda")  # pretend the models were on a GPU
    pipe.precision = "fp16"
    first = pipe.analyze(ct)
    assert seg_devices == ["cuda", "cpu"] and loc_devices == ["cuda"]
    assert pipe.device.type == "cpu" and pipe.precision == "fp32" and first.precision == "fp32"
    for model in (pipe.localizer, pipe.segmenter):
        assert all(p.device.type == "cpu" for p in model.parameters())
    pipe.analyze(ct)
    assert seg_devices[2:] == ["cpu"] and loc_devices[1:] == ["cpu"]


def test_precision_is_resolved_per_device_and_recorded(tmp_path):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("auto", cuda) == AUTO_CUDA
    assert resolve_precision("bf16", cuda) == "bf16"
    for bad, device in [("fp16", cpu), ("bf16", cpu), ("fp8", cuda)]:
        with pytest.raises(InputError) as err:
            resolve_precision(bad, device)
        assert "\n" not in str(err.value) and bad in str(err.value)
    ct, centers = _spine_ct()
    result = _fake_pipeline(ct, centers).analyze(ct)
    assert result.precision == "fp32" and "(fp32)" in result.summary()
    write_bundle(tmp_path / "b", result)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["input"]["analysis"] == {"device": "cpu", "precision": "fp32"}


def test_autocast_is_float32_off_cuda():
    conv = torch.nn.Conv3d(1, 2, 3)
    x = torch.randn(1, 1, 5, 5, 5)
    with autocast(torch.device("cpu"), "fp16"):
        assert conv(x).dtype == torch.float32


def test_qa_flags_gap_and_border():
    # the QA is under test here, not the decoding's calibration: take the fake's votes as they are
    # (tempered, their soft tails make "L2, L3" cheaper than "L1, gap, L3"; see test_ribs.py)
    ct, centers = _spine_ct()
    pipe = _fake_pipeline(ct, centers)
    pipe.config = pipe.config.replace(emission_temperature=1.0)
    # the middle vertebra erased: L1 and L3 remain, with a gap between them
    arr = ct.array.copy()
    kji = np.argwhere(np.ones(arr.shape, bool))
    lps = ct.index_to_lps(kji[:, ::-1].astype(float))
    arr.reshape(-1)[np.linalg.norm(lps - centers["L2"], axis=1) < 13] = -50
    result = pipe.analyze(ct.with_array(arr))
    names = [v.name for v in result.vertebrae]
    assert names == ["L1", "L3"]
    assert any("gap between L1 and L3" in q for q in result.qa)
    assert result.run_config["emission_temperature"] == 1.0  # the settings travel with the case


def test_labels_without_a_landmark_in_view_are_capped_and_flagged():
    from inference.label import UNANCHORED_CAP

    ct, centers = _spine_ct()  # L1-L3: no sacrum, no rib transition, no C2
    result = _fake_pipeline(ct, centers).analyze(ct)
    assert [v.name for v in result.vertebrae] == ["L1", "L2", "L3"]
    assert all(v.confidence <= UNANCHORED_CAP for v in result.vertebrae)
    assert all({"label_unanchored", "label_uncertain"} <= set(v.qa_flags) for v in result.vertebrae)
    assert any(q.startswith("labels not anchored") for q in result.qa)


def test_untrained_network_runs_end_to_end():
    """The real architecture on a tiny volume: shapes line up, whatever it predicts."""
    ct, _ = _spine_ct()
    torch.manual_seed(0)
    pipe = Pipeline(device="cpu", localizer=LocalizerNet(), segment=False)
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
    assert Pipeline(device="cpu", weights_root=tmp_path, segment=False).models[0]["sha256"] == digest
    with pytest.raises(WeightsError, match="segmenter.*manifest not found"):
        Pipeline(device="cpu", weights_root=tmp_path)  # the segmentation stage needs its own weights
    (folder / "manifest.json").write_text(json.dumps({**manifest, "sha256": "0" * 64}))
    with pytest.raises(WeightsError, match="do not match their manifest"):
        Pipeline(device="cpu", weights_root=tmp_path, segment=False)
    (folder / "manifest.json").unlink()
    with pytest.raises(WeightsError, match="manifest not found"):
        Pipeline(device="cpu", weights_root=tmp_path, segment=False)


def test_analysis_bundle_is_atomic_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    ct, centers = _spine_ct()
    result = _fake_pipeline(ct, centers).analyze(ct)
    a, b = tmp_path / "a", tmp_path / "b"
    write_bundle(a, result)
    write_bundle(b, result)
    names = sorted(p.name for p in a.iterdir())
    assert names == ["centers.mrk.json", "manifest.json", "vertebrae.csv", "vertebrae.json"]
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)
    doc = json.loads((a / "vertebrae.json").read_text())
    assert doc["coordinate_system"] == "LPS" and [v["name"] for v in doc["vertebrae"]] == LEVEL_NAMES
    from inference.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        write_bundle(a, result)


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


@pytest.mark.parametrize("direction", [None, np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0.0]])])
def test_resampling_a_small_grid_reads_only_its_part_of_the_ct(direction, monkeypatch):
    from inference import preprocess
    from inference.preprocess import WorkingGrid, needed_box, resample_ct, working_grid

    ct, _ = _spine_ct(direction)
    rng = np.random.default_rng(0)
    ct = ct.with_array((ct.array + rng.normal(0, 80, ct.array.shape)).astype(np.int16))
    full = working_grid(ct, 2.0)
    sub = WorkingGrid(tuple(full.index_to_lps(np.array([6, 5, 9]))), 2.0, (9, 7, 11))
    box = needed_box(ct, sub, margin_mm=5.0)
    assert box is not None and np.prod([b.stop - b.start for b in box]) < 0.5 * ct.array.size
    assert needed_box(ct, full, margin_mm=5.0) is None  # the whole CT: nothing to crop
    cropped = resample_ct(ct, sub)
    monkeypatch.setattr(preprocess, "needed_box", lambda *a, **k: None)
    whole = resample_ct(ct, sub)
    assert cropped.shape == whole.shape == (11, 7, 9)
    assert np.abs(cropped - whole).max() < 0.1  # HU


@pytest.mark.parametrize("spacing", [4.0, 2.0])
def test_gpu_resampling_matches_itk(spacing):
    # the torch path (used on CUDA) run on the CPU, against ITK's, on an oblique CT with texture
    from inference.preprocess import resample_ct, resample_ct_torch, working_grid

    ct, _ = _spine_ct(np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0.0]]))
    rng = np.random.default_rng(1)
    ct = Volume((ct.array + rng.normal(0, 80, ct.array.shape)).astype(np.int16), (0.8, 1.3, 2.5), ct.origin,
                ct.direction)  # anisotropic: each axis gets its own sigma
    grid = working_grid(ct, spacing)
    sigma = [0.5 * np.sqrt(max(spacing**2 - s**2, 0.0)) for s in ct.spacing]
    itk = resample_ct(ct, grid)
    ours = resample_ct_torch(ct, grid, sigma, torch.device("cpu"))
    assert ours.shape == itk.shape and ours.dtype == np.float32
    diff = np.abs(ours - itk)
    assert diff.mean() < 1.0 and np.percentile(diff, 99.9) < 15.0, (diff.mean(), diff.max())


# ---- segmentation stage (fake segmenter: bright voxels near the center channel) ------------------
DIRECTIONS = [None, np.diag([-1.0, -1.0, 1.0]), np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0.0]])]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_segmentation_pastes_each_vertebra_in_the_patient_frame(direction):
    from inference.measure import vertebra_centers, vertebra_volumes_ml

    ct, centers = _spine_ct(direction)
    result = _fake_pipeline(ct, centers, segmenter=FakeSegmenter()).analyze(ct)
    labels = result.segmentation.labels
    assert labels.same_grid(ct) and labels.array.dtype == np.uint8
    found = {registry.name_of(k): c for k, c in vertebra_centers(labels).items()}
    assert sorted(found) == sorted(LEVEL_NAMES)
    sphere_ml = 4 / 3 * np.pi * 12.0**3 / 1000
    for name, c in found.items():
        assert np.linalg.norm(c - centers[name]) < 1.5, (name, c, centers[name])
    for vid, ml in vertebra_volumes_ml(labels).items():
        assert abs(ml - sphere_ml) / sphere_ml < 0.2, (registry.name_of(vid), ml)
    assert set(result.timings) == {"localize", "column", "label", "segment"}


def test_lesion_scores_follow_the_lesion_channels():
    ct, centers = _spine_ct()
    calm = _fake_pipeline(ct, centers, segmenter=FakeSegmenter()).analyze(ct)
    assert all(v.lesion_score < 0.1 and v.lesion_type is None for v in calm.vertebrae)
    assert not any(f.startswith("lesion") for v in calm.vertebrae for f in v.qa_flags)
    hot = _fake_pipeline(ct, centers, segmenter=FakeSegmenter({"blastic": 0.9, "lytic": 0.3})).analyze(ct)
    for v in hot.vertebrae:
        assert v.lesion_type == "blastic" and v.lesion_score == pytest.approx(0.9, abs=1e-3)
        assert "lesion_suspected:blastic" in v.qa_flags
    lesion_map = hot.segmentation.lesions.array
    assert lesion_map.max() == pytest.approx(0.9, abs=1e-3)
    assert not lesion_map[hot.segmentation.labels.array == 0].any()  # only inside vertebra masks


def test_levels_the_classifier_never_saw_a_lesion_in_are_not_assessed(monkeypatch):
    from inference.models.lesion import NOT_SCORED

    assert set(NOT_SCORED) == {"C1", "C2", "S1"}
    monkeypatch.setattr("inference.pipeline.NOT_SCORED", ("L2",))  # the fake spine has no C1, C2 or sacrum
    ct, centers = _spine_ct()
    hot = _fake_pipeline(ct, centers, segmenter=FakeSegmenter({"blastic": 0.9})).analyze(ct)
    by_name = {v.name: v for v in hot.vertebrae}
    assert by_name["L2"].lesion_score is None and by_name["L2"].lesion_type is None
    assert not by_name["L2"].lesion_scores and not any(f.startswith("lesion") for f in by_name["L2"].qa_flags)
    assert by_name["L1"].lesion_type == by_name["L3"].lesion_type == "blastic"
    seg = hot.segmentation
    l2 = seg.labels.array == registry.id_of("L2")
    assert l2.any() and not seg.lesions.array[l2].any()
    assert seg.lesions.array[seg.labels.array == registry.id_of("L1")].max() == pytest.approx(0.9, abs=1e-3)


def test_full_analysis_bundle_has_meshes_labels_and_probabilities(tmp_path):
    from inference.evaluate import evaluate_bundle

    ct, centers = _spine_ct()
    result = _fake_pipeline(ct, centers, segmenter=FakeSegmenter({"lytic": 0.7})).analyze(ct)
    bundle = write_bundle(tmp_path / "b", result)
    names = sorted(p.relative_to(bundle.out_dir).as_posix() for p in bundle.out_dir.rglob("*") if p.is_file())
    for required in ("labels.nii.gz", "lesions.nii.gz", "vertebrae.json", "manifest.json", "meshes/L2.stl"):
        assert required in names
    doc = json.loads((bundle.out_dir / "vertebrae.json").read_text())
    rec = {v["name"]: v for v in doc["vertebrae"]}
    assert set(rec) == set(LEVEL_NAMES)
    for v in rec.values():
        assert 0 < v["confidence"] <= 1 and v["lesion_type"] == "lytic"
        assert {"p_shift_cranial", "p_shift_caudal", "localizer_center_lps", "lesion_scores"} <= set(v)
        assert v["volume_ml"] > 5
    # the bundle, read back, matches the spheres it was made from
    reference = ct.with_array(np.zeros(ct.array.shape, np.uint8))
    lps = ct.index_to_lps(np.argwhere(np.ones(ct.array.shape, bool))[:, ::-1].astype(float))
    flat = reference.array.reshape(-1)
    for name, c in centers.items():
        flat[np.linalg.norm(lps - c, axis=1) < 12] = registry.id_of(name)
    import SimpleITK as sitk

    sitk.WriteImage(reference.to_sitk(), str(tmp_path / "ref.nii.gz"))
    report = evaluate_bundle(bundle.out_dir, tmp_path / "ref.nii.gz", convention="verse")
    assert report["overall"]["mean_dice"] > 0.9 and report["overall"]["id_rate"] == 1.0


def test_cancel_during_segmentation_stops_it():
    ct, centers = _spine_ct()
    seg = FakeSegmenter()
    pipe = _fake_pipeline(ct, centers, segmenter=seg)
    token = CancelToken()

    def progress(fraction, message):
        if "segment" in message:
            token.cancel()

    with pytest.raises(CancelledError):
        pipe.analyze(ct, progress=progress, cancel=token)
    assert seg.calls == 0


def test_segmentation_batches_bound_the_work_per_call():
    from inference.segment import segment_vertebrae

    ct, centers = _spine_ct()
    seg = FakeSegmenter()
    items = [(registry.id_of(n), c) for n, c in centers.items()]
    out = segment_vertebrae(seg, ct, items, torch.device("cpu"), batch_size=1)
    assert seg.calls == 3 and set(out.masks) == {vid for vid, _ in items}
    assert not segment_vertebrae(seg, ct, [], torch.device("cpu")).labels.array.any()


def test_qa_flags_leaking_masks_and_implausible_volumes():
    from inference.qa import contact_areas, mask_flags

    arr = np.zeros((40, 40, 40), np.uint8)
    arr[:20, 5:35, 5:35] = registry.id_of("L2")
    arr[20:, 5:35, 5:35] = registry.id_of("L3")
    labels = Volume(arr, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    l2, l3 = registry.id_of("L2"), registry.id_of("L3")
    assert contact_areas(labels) == {(l2, l3): pytest.approx(30 * 30 * 4.0)}
    flags, notes = mask_flags(labels, partial=set())
    assert "touching_neighbour" in flags[l2] and "touching_neighbour" in flags[l3]
    assert "implausible_volume" in flags[l2]  # 144 ml is far above any real L2
    assert any("leaked" in n for n in notes)
    flags, _ = mask_flags(labels, partial={l2, l3})
    assert "implausible_volume" not in flags.get(l2, [])


def test_implausible_volume_note_names_the_library_range():
    from inference.qa import mask_flags, volume_ranges

    s1, l2 = registry.id_of("S1"), registry.id_of("L2")
    lo, hi = volume_ranges()[s1]
    assert round(lo) == round(hi)  # the library holds one sacrum
    arr = np.zeros((40, 40, 40), np.uint8)
    arr[:10, 5:35, 5:35] = s1  # 72 ml: half a sacrum
    arr[12:, :, :] = l2  # 358 ml: far above any L2 (the largest real one in the library is ~85 ml)
    _, notes = mask_flags(Volume(arr, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0)), partial=set())
    assert any(n.startswith("S1:") and f"(library {lo:.0f} ml, one shape)" in n for n in notes), notes
    lo2, hi2 = volume_ranges()[l2]
    assert any(n.startswith("L2:") and f"(library {lo2:.0f}–{hi2:.0f} ml)" in n for n in notes), notes


def test_lesion_thresholds_from_the_weights_scale_the_scores():
    from inference.segment import segment_vertebrae

    ct, centers = _spine_ct()
    items = [(registry.id_of(n), c) for n, c in centers.items()]
    seg = FakeSegmenter({"blastic": 0.9})
    at = segment_vertebrae(seg, ct, items, torch.device("cpu"), lesion_thresholds={"blastic": 0.9})
    assert all(m.lesion_scores["blastic"] == pytest.approx(0.5, abs=1e-3) and m.lesion_type == "blastic"
               for m in at.masks.values())
    above = segment_vertebrae(seg, ct, items, torch.device("cpu"), lesion_thresholds={"blastic": 0.95})
    assert all(m.lesion_type is None and m.lesion_score < 0.5 for m in above.masks.values())
    assert float(above.lesions.array.max()) < 0.5  # the map is scaled the same way


def test_segmentation_batches_crops_of_each_shape_apart():
    from inference.models.segmenter import PATCH, SACRUM_PATCH
    from inference.segment import segment_vertebrae

    ct, centers = _spine_ct()
    seg = FakeSegmenter()
    items = [(registry.id_of(n), c) for n, c in centers.items()]
    patches = [SACRUM_PATCH if n == 0 else PATCH for n in range(len(items))]
    out = segment_vertebrae(seg, ct, items, torch.device("cpu"), batch_size=4, patches=patches)
    assert seg.calls == 2  # one batch per crop shape
    same = segment_vertebrae(FakeSegmenter(), ct, items, torch.device("cpu"), batch_size=4)
    assert set(out.masks) == set(same.masks)
    # the fake marks bright voxels near the center channel: the taller crop finds the same vertebra
    first = items[0][0]
    assert np.array_equal(out.labels.array == first, same.labels.array == first)


def test_a_vertebra_the_chain_skipped_is_added_between_the_masks_of_its_neighbours():
    """Candidates at L1 and L3 only: the bone between their masks that neither claims is L2, which gets a
    candidate at its centre, its localizer votes and a mask; with all three nothing is added."""
    from inference.localize import candidate_at

    ct, centers = _spine_ct()
    seg_model = FakeSegmenter()
    pipe = _fake_pipeline(ct, centers, segmenter=seg_model)
    out = pipe._run_localizer(ct, None)

    def at(name):
        kji = np.round(out.grid.lps_to_index(centers[name][None])[0][::-1]).astype(int)
        return candidate_at(out, kji)

    two = [at("L1"), at("L3")]
    seg, ribs = pipe.segment_candidates(ct, two)
    cands, seg, ribs = pipe.fill_gaps(ct, out, two, seg, ribs)
    assert len(cands) == 3 and len(ribs) == 3
    assert np.linalg.norm(cands[1].center_lps - centers["L2"]) < 4.0
    assert cands[1].score == pytest.approx(max(at("L2").score, min(c.score for c in two)))
    assert sorted(seg.masks) == [1, 2, 3]
    i, j, k = np.round(ct.lps_to_index(centers["L2"][None])[0]).astype(int)
    assert seg.labels.array[k, j, i] == 2

    three = [at(n) for n in LEVEL_NAMES]
    seg, ribs = pipe.segment_candidates(ct, three)
    calls = seg_model.calls
    kept, _, _ = pipe.fill_gaps(ct, out, three, seg, ribs)
    assert kept == three and seg_model.calls == calls


def test_small_islands_of_a_mask_are_dropped_and_a_cut_vertebra_keeps_both_halves():
    from inference.segment import _drop_islands

    labels = np.zeros((30, 30, 30), np.uint8)
    labels[2:12, 2:12, 2:12] = 20  # 1000 voxels
    labels[20:22, 20:22, 20:22] = 20  # an 8-voxel island
    labels[2:12, 15:25, 2:12] = 21  # a vertebra in two halves of 1000 and 600 voxels
    labels[20:26, 15:25, 2:12] = 21
    everywhere = (slice(0, 30),) * 3
    _drop_islands(labels, {20: everywhere, 21: everywhere})
    assert (labels == 20).sum() == 1000 and not labels[20:22, 20:22, 20:22].any()
    assert (labels == 21).sum() == 1600


def test_a_hollow_body_is_closed_but_the_canal_and_the_neighbour_stay_out():
    from inference.segment import _fill_hollows

    labels = np.zeros((24, 30, 30), np.uint8)  # axis 0 is S–I
    labels[4:16, 4:16, 8:22] = 20  # body: a shell ...
    labels[6:14, 6:14, 10:20] = 0  # ... around a low-density core of 8 × 8 × 10 voxels
    labels[4:16, 18:26, 8:22] = 20  # arch: a ring round the canal, open above and below
    labels[4:16, 20:24, 12:18] = 0
    labels[9:11, 9:11, 14:16] = 21  # a neighbour's stray voxels inside the core stay its own
    labels[16:20, 4:16, 8:22] = 22  # the next vertebra above, touching
    before = labels.copy()
    _fill_hollows(labels, {20: (slice(0, 24),) * 3, 22: (slice(0, 24),) * 3}, superior_axis=0)
    assert (labels[6:14, 6:14, 10:20] == 20).sum() == 8 * 8 * 10 - 8
    assert (labels[9:11, 9:11, 14:16] == 21).all()
    assert not labels[4:16, 20:24, 12:18].any()  # the canal
    changed = labels != before
    assert set(np.unique(labels[changed])) == {20}
    # the same body lying on its side (S–I along axis 2) is closed the same way
    side = np.moveaxis(before, 0, 2).copy()
    _fill_hollows(side, {20: (slice(0, 30),) * 3}, superior_axis=2)
    assert np.array_equal(np.moveaxis(side, 2, 0), labels)


def test_a_windowed_scan_is_called_out():
    from inference.qa import intensity_notes

    ct, _ = spine_ct()
    ct.array[:4] = -1000  # air above the body: a CT in Hounsfield units
    assert intensity_notes(ct) == []
    clipped = ct.with_array(np.where(ct.array < 150, 0, ct.array).astype(np.int16))  # bone window baked in
    notes = intensity_notes(clipped)
    assert len(notes) == 1 and "nothing darker than 0 HU" in notes[0]
    grey = ct.with_array(np.clip(ct.array, 0, 255).astype(np.int16))  # 8-bit image values, not HU
    assert len(intensity_notes(grey)) == 2
    result = fake_pipeline(clipped, spine_ct()[1]).analyze(clipped)
    assert any("display window" in q for q in result.qa)


def test_a_small_scan_is_centred_in_air_the_size_of_the_training_field():
    from inference.localize import input_field
    from inference.models.localizer import CLASSES, TRAINING_FIELD

    size, start = input_field(np.array([10, 20, 70]), 16)
    assert np.all(size >= TRAINING_FIELD) and np.all(size % 16 == 0) and size[2] == 80
    assert np.all(start % 2 == 0) and np.all(np.abs(start + np.array([10, 20, 70]) / 2 - size / 2) <= 2)
    big, at = input_field(np.array([200, 130, 96]), 16)
    assert big.tolist() == [208, 144, 96] and at.tolist() == [4, 6, 0]

    seen = {}

    class Recorder(torch.nn.Module):
        divisor = 16

        def forward(self, x, d):
            seen["x"] = x.clone()
            k = torch.arange(x.shape[2] // 2, dtype=torch.float32)[:, None, None]  # slice index as heatmap
            heat = k.expand(x.shape[2] // 2, x.shape[3] // 2, x.shape[4] // 2)[None, None]
            return torch.cat([heat, torch.zeros(1, len(CLASSES), *heat.shape[2:])], dim=1)

    # a 24 mm slab: 6 x 15 x 20 voxels at 4 mm
    ct = Volume(np.full((6, 30, 40), 100, np.int16), (2.0, 2.0, 4.0), (0.0, 0.0, 0.0))
    out = run_localizer(Recorder(), ct, torch.device("cpu"))
    x = seen["x"][0, 0].numpy()
    assert x.shape == tuple(input_field(np.array(out.heatmap.shape), 16)[0])
    inside = np.argwhere(x > -0.99)
    lo, hi = inside.min(0), inside.max(0) + 1
    assert (hi - lo).tolist() == list(out.heatmap.shape) == [6, 15, 20]
    assert lo.tolist() == input_field(np.array([6, 15, 20]), 16)[1].tolist()
    scan = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    assert x.min() == pytest.approx(-1.0) and np.allclose(x[scan], 0.1)
    # outputs are cut back to the scan: its first 4 mm slice is the field's slice lo[0] (8 mm slice lo[0] / 2)
    assert out.heatmap[0, 0, 0] == pytest.approx(lo[0] / 2 - 0.25, abs=0.3)


def test_nothing_found_in_a_short_slab_says_the_field_of_view_is_too_short():
    from inference.pipeline import _qa

    slab = Volume(np.zeros((20, 8, 8), np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    tall = Volume(np.zeros((40, 8, 8), np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    assert any("40 mm tall" in n for n in _qa([], slab))
    assert any("is this a CT of the spine" in n for n in _qa([], tall))


class _LeftHalfSegmenter(FakeSegmenter):
    """Sure of the vertebra on the first half of the crop along i, doubtful (p 0.38) on the other half."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        half = x.shape[-1] // 2
        mask = out[:, 0]
        mask[..., half:] = torch.where(mask[..., half:] > 0, -0.5, mask[..., half:])
        return out


def test_the_mirror_pass_averages_the_crop_with_its_mirror():
    from inference.segment import segment_vertebrae

    ct, centers = _spine_ct()
    items = [(registry.id_of(n), c) for n, c in centers.items()]
    one = _LeftHalfSegmenter()
    plain = segment_vertebrae(one, ct, items, torch.device("cpu"), batch_size=4)
    two = _LeftHalfSegmenter()
    mirrored = segment_vertebrae(two, ct, items, torch.device("cpu"), batch_size=4, mirror=True)
    assert two.calls == 2 * one.calls
    vid, center = items[1]
    ci = int(round(ct.lps_to_index(center[None])[0][0]))  # the center's column (i) on the CT grid
    cols = lambda out: np.nonzero((out.labels.array == vid).any(axis=(0, 1)))[0]  # noqa: E731
    # one pass keeps only one side of the center; averaged with its mirror, the sure side wins on both
    assert cols(plain).min() >= ci - 1 or cols(plain).max() <= ci + 1
    assert cols(mirrored).min() < ci - 3 and cols(mirrored).max() > ci + 3


def test_metal_beside_a_vertebra_flags_it_and_names_it_in_a_note():
    """A rod of 3000 HU beside the middle sphere: that vertebra (and no other) is flagged metal_nearby."""
    ct, centers = _spine_ct()
    rod = ct.lps_to_index(centers["L2"][None] + np.array([[0.0, 18.0, 0.0]]))[0].round().astype(int)  # 6 mm off
    ct.array[rod[2] - 3 : rod[2] + 4, rod[1] - 1 : rod[1] + 2, rod[0] - 1 : rod[0] + 2] = 3000
    result = _fake_pipeline(ct, centers, segmenter=FakeSegmenter()).analyze(ct)
    flagged = {v.name for v in result.vertebrae if "metal_nearby" in v.qa_flags}
    assert flagged == {"L2"}
    assert any(n.startswith("metal (≥ 2500 HU)") and "L2" in n for n in result.qa)
    # without the rod, no flag and no note
    clean, _ = _spine_ct()
    result = _fake_pipeline(clean, centers, segmenter=FakeSegmenter()).analyze(clean)
    assert not any("metal_nearby" in v.qa_flags for v in result.vertebrae) and not any("metal" in n for n in result.qa)
