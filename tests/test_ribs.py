"""The rib cue (inference.ribs), its use in decoding (inference.label) and relabelling masks (inference.segment)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference import label, registry
from inference.label import LEVELS, decode, is_anchored, rib_bin, rib_likelihoods
from inference.models.segmenter import N_OUTPUTS, RIB_CHANNEL, SegmenterNet, widen_head
from inference.ribs import rib_zone_ml
from inference.segment import SegmentationOutput, VertebraMask, relabel
from inference.volume import Volume

SP = 2.0


def _crop(rib: bool, rib_above: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A 2 mm crop [48, 64, 64] with a vertebra center in the middle and, optionally, rib bars beside it."""
    p = np.zeros((48, 64, 64), np.float32)
    c = np.array([24.0, 32.0, 32.0])
    if rib:  # from 20 to 76 mm to each side, 20 mm behind the center, 6 mm high
        p[23:26, 41:44, 42:60] = 1.0
        p[23:26, 41:44, 4:22] = 1.0
    if rib_above:  # the rib of the level above, 20-26 mm higher (it descends only farther out)
        p[34:37, 41:44, 42:60] = 1.0
    return p, c


def test_rib_beside_the_vertebra_counts_and_the_rib_of_the_level_above_does_not():
    p, c = _crop(rib=True)
    with_rib = rib_zone_ml(p, c, SP)
    p, c = _crop(rib=False, rib_above=True)
    without = rib_zone_ml(p, c, SP)
    assert with_rib > 1.5 and without == pytest.approx(0.0)
    assert rib_bin(with_rib) == 2 and rib_bin(without) == 0


def test_the_vertebra_own_mask_is_not_counted_as_rib():
    p, c = _crop(rib=True)
    own = p > 0.5
    assert rib_zone_ml(p, c, SP, own=own) == pytest.approx(0.0)


def test_zone_outside_the_scan_is_unknown_not_no_rib():
    p, c = _crop(rib=True)
    # the scan ends 6 mm above the center: most of the zone (±8 mm) is in view; 4 mm below: most is not
    assert rib_zone_ml(p, c, SP, (np.array([0, 0, 0]), np.array([27, 64, 64]))) is not None
    assert rib_zone_ml(p, c, SP, (np.array([26, 0, 0]), np.array([48, 64, 64]))) is None
    assert rib_likelihoods([None]).tolist() == [[1.0] * len(LEVELS)]


def test_older_segmenter_weights_get_a_rib_channel_that_starts_near_zero():
    model = SegmenterNet(widths=(4, 8))
    state = model.state_dict()
    old = {k: (v[:RIB_CHANNEL] if k.startswith("unet.head") else v) for k, v in state.items()}
    model.load_state_dict(widen_head(old, model))
    assert model.unet.head.weight.shape[0] == N_OUTPUTS
    assert torch.equal(model.unet.head.weight[:RIB_CHANNEL], state["unet.head.weight"][:RIB_CHANNEL])
    with torch.no_grad():
        out = torch.sigmoid(model(torch.zeros(1, 3, 16, 16, 16))[:, RIB_CHANNEL])
    assert float(out.max()) < 0.05


def _votes(p: dict[str, float]) -> np.ndarray:
    e = np.full(len(LEVELS), 1e-3)
    for name, v in p.items():
        e[LEVELS.index(registry.id_of(name))] = v
    return e


def test_rib_cue_moves_a_column_shifted_at_the_thoracolumbar_junction(monkeypatch):
    """Votes say T12, L1, L2, L3 but the second vertebra bears ribs and the third does not: with a
    decisive rib table the column is read T11, T12, L1, L2."""
    table = {g: (0.97, 0.025, 0.005) for g, _ in label.RIB_GROUPS}
    table["T1-T10"] = table["T11-T13"] = (0.01, 0.09, 0.9)
    monkeypatch.setattr(label, "RIB_LIKELIHOOD", table)
    e = np.array([_votes({"T12": 0.6, "T11": 0.2}), _votes({"L1": 0.6, "T12": 0.2}),
                  _votes({"L2": 0.6, "L1": 0.2}), _votes({"L3": 0.6, "L2": 0.2})])
    plain = decode(e)
    assert [registry.name_of(int(i)) for i in plain.ids] == ["T12", "L1", "L2", "L3"]
    cued = decode(e, cues=rib_likelihoods([2.0, 2.0, 0.0, 0.0]))
    assert [registry.name_of(int(i)) for i in cued.ids] == ["T11", "T12", "L1", "L2"]
    with pytest.raises(ValueError, match="cues"):
        decode(e, cues=np.ones((2, len(LEVELS))))


def test_temperature_softens_confidence_without_changing_a_clear_column(monkeypatch):
    e = np.array([_votes({n: 0.9}) for n in ("L3", "L4", "L5", "S1")])
    monkeypatch.setattr(label, "EMISSION_TEMPERATURE", 1.0)
    sharp = decode(e)
    monkeypatch.setattr(label, "EMISSION_TEMPERATURE", 3.0)
    soft = decode(e)
    assert (soft.ids == sharp.ids).all()
    assert soft.confidence.mean() < sharp.confidence.mean()


def test_last_rib_anchor_needs_the_rib_cue_when_it_is_measured():
    names = ["T12", "L1", "L2"]
    assert is_anchored(names)  # names alone
    assert is_anchored(names, {"T12": 2.0, "L1": 0.0, "L2": 0.0})
    assert not is_anchored(names, {"T12": 0.0, "L1": 0.0, "L2": 0.0})  # no rib seen on "T12"
    assert not is_anchored(names, {"T12": 2.0, "L1": 2.0, "L2": 0.0})  # ribs on "L1" too
    assert not is_anchored(names, {"T12": None, "L1": 0.0, "L2": 0.0})  # zone out of view
    assert is_anchored(["L5", "S1"], {"L5": 3.0, "S1": 4.0})  # the sacrum needs no rib cue


def test_relabel_renames_masks_and_drops_false_detections():
    lab = np.zeros((4, 5, 6), np.uint8)
    lab[0] = 1
    lab[1] = 2
    lab[2] = 3
    les = np.full(lab.shape, 0.25, np.float16)
    vol = Volume(lab, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    masks = {k: VertebraMask(k, 10 * k, {"lytic": 0.1 * k}, rib_ml=float(k)) for k in (1, 2, 3)}
    out = relabel(SegmentationOutput(vol, vol.with_array(les), masks), {1: 22, 2: 0, 3: 23})
    assert sorted(np.unique(out.labels.array).tolist()) == [0, 22, 23]
    assert (out.labels.array[0] == 22).all() and (out.labels.array[1] == 0).all()
    assert (out.lesions.array[1] == 0).all() and (out.lesions.array[0] == 0.25).all()
    assert sorted(out.masks) == [22, 23] and out.masks[23].voxels_2mm == 30 and out.masks[22].id == 22
    assert out.masks[23].rib_ml == 3.0


def test_the_shipped_labeling_constants_are_the_ones_the_committed_calibration_chose():
    import json
    from pathlib import Path

    from inference import label

    report = json.loads((Path(__file__).parents[1] / "docs" / "labeling_calibration.json").read_text())
    assert label.EMISSION_TEMPERATURE == report["temperature"]
    assert label.POSTERIOR_TEMPERATURE == report["posterior_temperature"]
    assert report["use_rib_cue"]
    for group, row in report["table"].items():
        assert label.RIB_LIKELIHOOD[group] == tuple(row)
    # the calibration travels with the localizer's weights, which the pipeline reads it from
    weights = Path(__file__).parents[1] / "assets" / "weights" / "localizer" / "manifest.json"
    manifest = json.loads(weights.read_text())
    decoding = manifest["decoding"]
    assert decoding["emission_temperature"] == report["temperature"]
    assert decoding["posterior_temperature"] == report["posterior_temperature"]
    assert decoding["rib_likelihood"] == report["table"]
    assert decoding["calibrated_with"]["localizer"] == manifest["version"]
