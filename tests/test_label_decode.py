"""Joint label decoding (inference.label): ordering, transitional levels, gaps, shift probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inference import registry
from inference.label import LEVELS, decode, transition_matrix


@pytest.fixture(autouse=True)
def _untempered(monkeypatch):
    """These tests check the decoding itself on the emissions as written; the calibrated temperature
    (which flattens them) has its own test in test_ribs.py."""
    monkeypatch.setattr("inference.label.EMISSION_TEMPERATURE", 1.0)


def _emission(name: str, p_true: float = 0.6, p_neighbour: float = 0.18) -> np.ndarray:
    e = np.full(len(LEVELS), 1e-3)
    k = LEVELS.index(registry.id_of(name))
    e[k] = p_true
    for n in (k - 1, k + 1):
        if 0 <= n < len(LEVELS):
            e[n] = p_neighbour
    return e


def _names(ids) -> list[str]:
    return [registry.name_of(int(i)) for i in ids]


def test_clean_column_is_decoded_in_order_with_high_confidence():
    seq = ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    d = decode(np.array([_emission(n) for n in seq]))
    assert _names(d.ids) == seq
    assert (d.confidence > 0.9).all()
    # the rest of each row is "false detection", rare without detection scores (tempering lifts it a little)
    assert np.allclose(d.posterior.sum(axis=1), 1.0, atol=1e-3)


def test_labels_are_unique_and_ordered_even_when_votes_repeat():
    """Three candidates all voting L3 most: decoding must still give three consecutive levels."""
    e = np.array([_emission("L3", 0.5, 0.25)] * 3)
    d = decode(e)
    pos = [LEVELS.index(int(i)) for i in d.ids]
    assert pos == sorted(pos) and len(set(pos)) == 3
    assert "L3" in _names(d.ids)
    # the middle one is L3, the others its neighbours, and doubt is reported as shift probability
    assert _names(d.ids)[1] == "L3"


def test_context_fixes_a_wrong_vote():
    seq = ["L1", "L2", "L3", "L4", "L5"]
    e = np.array([_emission(n) for n in seq])
    e[2] = _emission("L1")  # L3 votes L1: the column overrules it
    d = decode(e)
    assert _names(d.ids) == seq
    clean = decode(np.array([_emission(n) for n in seq]))
    assert d.confidence[2] < clean.confidence[2]


def test_t13_and_l6_are_decoded_when_the_column_demands_it():
    seq = ["T11", "T12", "T13", "L1", "L2", "L3", "L4", "L5", "S1"]
    e = np.array([_emission(n, 0.9, 0.04) for n in seq])
    assert _names(decode(e).ids) == seq
    seq = ["L2", "L3", "L4", "L5", "L6", "S1"]
    e = np.array([_emission(n, 0.9, 0.04) for n in seq])
    assert _names(decode(e).ids) == seq


def test_weak_evidence_prefers_the_common_anatomy_over_t13():
    """Ambiguous votes between T12+T13+L1 and T12+L1+L2: the rare T13 needs strong evidence."""
    e = np.array([_emission("T12"), _emission("L1", 0.4, 0.3), _emission("L1", 0.35, 0.3), _emission("L3")])
    names = _names(decode(e).ids)
    assert "T13" not in names


def test_missing_level_gives_a_gap():
    seq = ["L1", "L2", "L4", "L5"]  # L3 not detected
    e = np.array([_emission(n, 0.9, 0.04) for n in seq])
    d = decode(e)
    assert _names(d.ids) == seq


def test_shift_probabilities_when_the_whole_column_is_ambiguous():
    """Every candidate split evenly between its level and the next: shift probability is large."""
    seq = ["L1", "L2", "L3"]
    e = np.array([0.5 * _emission(n, 1, 0) + 0.5 * _emission(registry.name_of(registry.id_of(n) + 1), 1, 0)
                  for n in seq])
    d = decode(e)
    assert (d.confidence < 0.75).all()
    assert (np.maximum(d.p_shift_cranial, d.p_shift_caudal) > 0.25).all()


def test_transitions_only_go_caudally():
    t = transition_matrix()
    n = len(LEVELS)
    assert np.all(np.isneginf(t[np.tril_indices(n)]))
    t12, t13, l1 = (LEVELS.index(registry.id_of(x)) for x in ("T12", "T13", "L1"))
    assert np.exp(t[t12, l1]) > 0.9 and 0.01 < np.exp(t[t12, t13]) < 0.1


def test_empty_and_bad_input():
    d = decode(np.zeros((0, len(LEVELS))))
    assert d.ids.shape == (0,)
    with pytest.raises(ValueError, match="shape"):
        decode(np.zeros((3, 5)))


def test_more_candidates_than_levels_decode_without_nan():
    """An untrained or confused detector can give dozens of peaks: surplus ones become false detections."""
    rng = np.random.default_rng(0)
    e = rng.random((60, len(LEVELS)))
    d = decode(e, scores=rng.uniform(0.3, 1.0, 60))
    assert np.isfinite(d.confidence).all() and np.isfinite(d.posterior).all()
    real = d.ids[d.ids > 0]
    pos = [LEVELS.index(int(i)) for i in real]
    assert pos == sorted(pos) and len(set(pos)) == len(pos) <= len(LEVELS)


def test_a_weak_spurious_peak_is_dropped():
    seq = ["L1", "L2", "L3", "L4"]
    e = [_emission(n, 0.9, 0.04) for n in seq]
    e.insert(2, _emission("L2", 0.9, 0.04))  # a second "L2" between L2 and L3 with a weak peak
    scores = np.array([0.9, 0.9, 0.4, 0.9, 0.9])
    d = decode(np.array(e), scores=scores)
    assert _names(d.ids[d.ids > 0]) == seq
    assert d.ids[2] == 0 and d.confidence[2] > 0.5


def test_a_column_is_anchored_only_by_a_landmark_in_view():
    from inference.label import is_anchored

    assert is_anchored(["T12", "L1", "L2"])  # the last rib
    assert is_anchored(["L4", "L5", "S1"]) and is_anchored(["C2", "C3"]) and is_anchored(["C6", "C7", "T1"])
    assert is_anchored(["T13", "L1"])
    assert not is_anchored(["L2", "L3", "L4"]) and not is_anchored(["T11", "T12"]) and not is_anchored([])
    assert not is_anchored(["T12", "L2"])  # both sides of the transition must be in view


def test_c1_and_c2_anchor_only_a_column_named_without_what_the_scan_shows():
    """Where the rib cues read from the scan are given, C1 and C2 no longer anchor: nothing is read for them."""
    from inference.column import RibSides
    from inference.label import is_anchored

    none = RibSides(False, False)
    assert is_anchored(["C1", "C2", "C3"]) and is_anchored(["C2", "C3"])  # names alone (no cues)
    assert not is_anchored(["C1", "C2", "C3"], bone_ribs={"C1": none, "C2": none, "C3": none})
    assert not is_anchored(["C2", "C3"], {"C2": 0.0, "C3": 0.0})
    assert is_anchored(["C2", "C3", "L5", "S1"], bone_ribs={})  # another anchor in view still counts


def test_the_first_rib_anchors_only_when_the_scan_shows_a_rib_at_t1_and_none_at_c7():
    from inference.column import RibSides
    from inference.label import is_anchored

    none, rib, unknown = RibSides(False, False), RibSides(True, False), RibSides(None, None)
    names = ["C6", "C7", "T1", "T2"]
    assert is_anchored(names)  # names alone (no cues)
    assert is_anchored(names, bone_ribs={"C6": none, "C7": none, "T1": rib, "T2": rib})
    assert not is_anchored(names, bone_ribs={"C6": none, "C7": none, "T1": none, "T2": rib})  # T1's rib unseen
    assert not is_anchored(names, bone_ribs={"C6": none, "C7": rib, "T1": rib, "T2": rib})  # a rib at C7
    assert not is_anchored(names, bone_ribs={"C6": none, "C7": unknown, "T1": rib, "T2": rib})
    assert not is_anchored(names, {"C7": 0.0, "T1": 2.0})  # the segmenter's rib channel alone does not


def test_labeling_calibration_fits_the_rib_table_and_scores_out_of_sample(tmp_path):
    import json

    from inference.train.calibrate_labeling import fit, markdown

    probs = np.eye(len(LEVELS))
    rows = []
    for case in range(4):
        for n, name in enumerate(("L1", "L2", "L3")):
            vid = registry.id_of(name)
            rows.append({"case": case, "view": "whole", "order": n, "true_id": vid, "score": 0.8,
                         "rib_ml": 0.0, "probs": probs[LEVELS.index(vid)].tolist()})
    records = tmp_path / "calib.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = fit(records)
    assert report["candidates"] == 12 and report["cases"] == 4
    assert all(a == b for a, b in report["out_of_sample"].values())  # one-hot votes: every vertebra named right
    assert report["table"]["L1"][0] > report["table"]["L1"][2]  # no rib beside these lumbar vertebrae
    assert "| L1 |" in markdown(report)
    # L1-L3 without rib or sacrum in view: unanchored, shown at the cap, and all right
    rel = report["reliability"]
    assert rel["vertebrae"] == 12 and rel["wrong"] == 0 and rel["by_anchoring"].keys() == {"unanchored"}
    assert rel["bins"] == [{"range": [0.0, 0.5], "vertebrae": 12, "mean_shown": 0.5, "named_right": 1.0}]
    assert rel["ece"] == 0.5 and "Expected calibration error: **0.5**" in markdown(report)
    assert report["posterior_temperature"] == 1.0  # nothing anchored: no likelihood to fit, the first is kept


def test_posterior_temperature_softens_the_probabilities_and_never_changes_the_labels():
    from inference.label import decode

    rng = np.random.default_rng(3)
    e = rng.dirichlet(np.full(len(LEVELS), 0.3), size=6)
    for k, name in enumerate(("T11", "T12", "L1", "L2", "L3", "L4")):
        e[k, LEVELS.index(registry.id_of(name))] += 2.0
    sharp = decode(e, posterior_temperature=1.0)
    soft = decode(e, posterior_temperature=2.0)
    assert (sharp.ids == soft.ids).all()
    assert (soft.confidence <= sharp.confidence + 1e-12).all() and soft.confidence.min() < sharp.confidence.min()
    assert (soft.posterior.sum(axis=1) <= 1 + 1e-9).all()  # levels plus "false detection" still sum to 1
    assert (soft.p_shift_cranial + soft.p_shift_caudal >= sharp.p_shift_cranial + sharp.p_shift_caudal - 1e-12).all()


def test_shown_confidence_caps_unanchored_columns_and_leaves_false_detections_alone():
    from inference.label import UNANCHORED_CAP, shown_confidence

    ids = np.array([registry.id_of("L2"), 0, registry.id_of("L3")])
    shown, anchored = shown_confidence(ids, np.array([0.9, 0.8, 0.95]))
    assert not anchored and shown.tolist() == [UNANCHORED_CAP, 0.8, UNANCHORED_CAP]
    ids = np.array([registry.id_of(n) for n in ("T12", "L1", "L2")])
    assert shown_confidence(ids, np.array([0.9, 0.9, 0.9]))[1]  # the last rib, by the names alone
    shown, anchored = shown_confidence(ids, np.array([0.9, 0.9, 0.9]), ribs=[0.0, 0.0, 0.0])
    assert not anchored and shown.max() == UNANCHORED_CAP  # no rib seen beside "T12"
    assert shown_confidence(np.zeros(2, int), np.array([0.7, 0.6]))[0].tolist() == [0.7, 0.6]


def test_shift_of_counts_transitional_levels_as_one_step():
    from inference.label import shift_of

    vid = registry.id_of
    assert shift_of(vid("L2"), vid("L2")) == "right"
    assert shift_of(vid("L2"), vid("L1")) == "cranial" and shift_of(vid("L2"), vid("L3")) == "caudal"
    assert shift_of(vid("L1"), vid("T12")) == "cranial" and shift_of(vid("T12"), vid("T13")) == "caudal"
    assert shift_of(vid("L2"), vid("L4")) == "off" and shift_of(0, vid("L4")) == "dropped"


@pytest.mark.slow
def test_calibration_records_are_the_same_with_case_making_workers(tmp_path):
    """`calibrate_labeling.collect` makes cases in spawned processes when asked: same records as serial."""
    from inference.train.calibrate_labeling import collect

    serial, parallel = tmp_path / "serial.jsonl", tmp_path / "parallel.jsonl"
    collect(2, serial)
    collect(2, parallel, workers=2)
    rows = serial.read_text().splitlines()
    assert rows and rows == parallel.read_text().splitlines()
    assert {json.loads(r)["case"] for r in rows} == {0, 1}


def test_calibration_on_a_device_this_machine_lacks_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import sys

    from inference.train import calibrate_labeling

    records = tmp_path / "calib.jsonl"
    monkeypatch.setattr(sys, "argv", ["calibrate_labeling", "--n", "1", "--records", str(records),
                                      "--docs", str(tmp_path / "cal.md"), "--device", "tpu", "--workers", "2"])
    with pytest.raises(SystemExit) as exc:
        calibrate_labeling.main()
    assert exc.value.code == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err
    assert not records.exists()
