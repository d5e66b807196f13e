"""The real-CT report's bookkeeping (inference.train.validate_real), on hand-made results."""

from __future__ import annotations

from inference.train.validate_real import unflagged_poor_masks


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
