"""The real-CT report's bookkeeping (inference.train.validate_real), on hand-made results."""

from __future__ import annotations

from inference.train.validate_real import _anchored_table, totals, unflagged_poor_masks


def _row(name, dice, flags, predicted=True, in_reference=True):
    return {"name": name, "in_reference": in_reference, "in_prediction": predicted, "dice": dice, "qa_flags": flags}


def test_a_poor_mask_counts_unless_a_flag_speaks_of_the_mask():
    results = {"cases": {"scan": {"perturbations": {
        "none": {"per_vertebra": [
            _row("L1", 0.95, []),  # good
            _row("L2", 0.62, ["touches_image_border"]),  # poor, warned of
            _row("L3", 0.41, ["label_unanchored", "lesion_suspected:lytic"]),  # poor, only name/lesion flags
            _row("L4", None, [], predicted=False),  # missed: no mask to warn of
            _row("L5", 0.0, [], in_reference=False),  # not in the reference
        ]},
        "5 mm slices": {"per_vertebra": [_row("L2", 0.79, [])]},
    }}}}
    poor = unflagged_poor_masks(results)
    assert [(p["condition"], p["name"]) for p in poor] == [("none", "L3"), ("5 mm slices", "L2")]
    assert poor[0]["qa_flags"] == ["label_unanchored", "lesion_suspected:lytic"]


def test_the_anchored_table_lists_each_anchored_analysis_with_what_it_missed():
    def run(anchored, identified):
        return {"anchored": anchored, "mean_dice": 0.8, "mean_hd95_mm": 3.5,
                "per_vertebra": [{"name": "T11", "in_reference": True, "identified": identified},
                                 {"name": "T12", "in_reference": True, "identified": True},
                                 {"name": "L4", "in_reference": False, "identified": False}]}

    oracle = {"per_vertebra": [{"name": "T11", "reference_ml": 2.24}, {"name": "T12", "reference_ml": 50.0}]}
    results = {"cases": {"a": {"perturbations": {"none": run(True, False), "noise": run(False, False)},
                               "oracle_segmentation": oracle},
                         "b": {"perturbations": {"none": run(True, True)}, "oracle_segmentation": oracle}}}
    rows = [line for line in _anchored_table(results) if line.startswith("| a") or line.startswith("| b")]
    assert rows == ["| a | none | 0.8 | 3.5 | T11 (2.24 ml) |", "| b | none | 0.8 | 3.5 | - |"]


def test_totals_count_anchored_names_with_and_without_the_slivers_the_edge_cuts():
    def run(anchored, t11_identified):
        rows = [{"name": "T11", "in_reference": True, "identified": t11_identified},
                {"name": "T12", "in_reference": True, "identified": True},
                {"name": "L1", "in_reference": True, "identified": False}]
        return {"anchored": anchored, "n_identified": 1 + t11_identified, "n_reference": 3, "per_vertebra": rows}

    oracle = {"per_vertebra": [{"name": "T11", "reference_ml": 2.24}, {"name": "T12", "reference_ml": 50.0},
                               {"name": "L1", "reference_ml": 55.0}]}
    results = {"cases": {"a": {"perturbations": {"none": run(True, False), "noise": run(False, True),
                                                 "5 mm": run(True, True)}, "oracle_segmentation": oracle}}}
    assert totals(results) == {"identified": 5, "reference": 9, "anchored_identified": 3, "anchored_reference": 6,
                               "anchored_identified_whole": 2, "anchored_reference_whole": 4}
