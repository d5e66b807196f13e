"""Naming the column: joint decoding of vertebra labels over the ordered candidates.

A lone vertebra is ambiguous (T12 looks like L1); the column is not. The candidates, ordered head
to foot, are decoded together with a hidden Markov model whose states are the levels C1 … S1:
each candidate emits the localizer's level probabilities, and transitions only go caudally, to the
next level (T12 → T13 and L5 → L6 at their population rates), or skip levels at a small cost (a
missed detection). Viterbi gives the labels (ordered and unique by construction); forward-backward
gives each candidate's probability for its label and for a shift by one level either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import registry

if TYPE_CHECKING:
    from .column.rib_pairs import RibSides

LEVELS: tuple[int, ...] = registry.LEVEL_ORDER
"""States: VerSe ids in cranio-caudal order (C1 … T12, T13, L1 … L5, L6, S1)."""

P_T13 = 0.03
"""Thirteen thoracic vertebrae: a few percent of people."""
P_L6 = 0.04
"""Six lumbar vertebrae (lumbarized S1): about 4 %."""
P_SKIP = 0.02
"""Cost of each level skipped between two consecutive candidates (a missed vertebra)."""
P_FALSE = 0.05
"""Prior probability that a candidate is a false detection (not a vertebra center)."""
EMISSION_FLOOR = 1e-4
"""Smallest emission probability: one confident but wrong voxel vote cannot veto a whole column."""
EMISSION_TEMPERATURE = 2.0
"""The localizer's level probabilities are raised to 1 / this before decoding (see `decode`); chosen with
the rib table below on held-out synthetic CT (docs/labeling_calibration.md)."""

POSTERIOR_TEMPERATURE = 1.5
"""The decoded posterior (label, shift and alternative probabilities; not the labels themselves) is
tempered, each candidate's distribution over levels and "false detection" raised to 1 / this and
renormalized, so that the probabilities shown match how often labels are right (temperature scaling,
Guo et al. 2017); fitted on held-out synthetic CT by `inference.train.calibrate_labeling`
(docs/labeling_calibration.md: 1.5 of 1–6 by out-of-sample likelihood on anchored columns)."""

_T12, _T13, _L1 = registry.id_of("T12"), registry.id_of("T13"), registry.id_of("L1")
_L5, _L6, _S1 = registry.id_of("L5"), registry.id_of("L6"), registry.id_of("S1")


@dataclass
class Decoded:
    """Result of `decode` for n candidates (in the order given).

    Attributes
    ----------
    ids : np.ndarray of int, (n,)
        VerSe id of each candidate (strictly cranio-caudal), 0 for a false detection.
    confidence : np.ndarray, (n,)
        Posterior probability of that id (of being a false detection for id 0).
    p_shift_cranial, p_shift_caudal : np.ndarray, (n,)
        Posterior probability that the candidate is really the level above / below its label.
    posterior : np.ndarray, (n, len(LEVELS))
        Marginals over `LEVELS` (each row sums to 1 minus the probability of a false detection).
    """

    ids: np.ndarray
    confidence: np.ndarray
    p_shift_cranial: np.ndarray
    p_shift_caudal: np.ndarray
    posterior: np.ndarray


def transition_matrix() -> np.ndarray:
    """log P(next candidate's level = b | this one's = a), shape (L, L); -inf where impossible."""
    n = len(LEVELS)
    pos = {vid: k for k, vid in enumerate(LEVELS)}
    logp = np.full((n, n), -np.inf)
    # the normal successor of each level (T13 and L6 are detours)
    successors = {}
    for k, vid in enumerate(LEVELS[:-1]):
        nxt = LEVELS[k + 1]
        if vid == _T12:
            successors[vid] = [(_L1, 1 - P_T13), (_T13, P_T13)]
        elif vid == _L5:
            successors[vid] = [(_S1, 1 - P_L6), (_L6, P_L6)]
        elif nxt in (_T13, _L6):
            successors[vid] = [(LEVELS[k + 2], 1.0)]
        else:
            successors[vid] = [(nxt, 1.0)]
    for vid, options in successors.items():
        a = pos[vid]
        for nxt, p in options:
            logp[a, pos[nxt]] = np.log(p)
        # skips: any later level, each skipped normal level costs P_SKIP
        first = pos[options[0][0]]
        for b in range(first + 1, n):
            skipped = sum(1 for v in LEVELS[first:b] if v not in (_T13, _L6))
            if skipped:
                logp[a, b] = np.logaddexp(logp[a, b], np.log(P_SKIP) * skipped + np.log(options[0][1]))
    return logp


_LOG_T = transition_matrix()


def _start_prior() -> np.ndarray:
    """log P(first candidate's level): uniform over levels, transitional ones at their population rate."""
    p = np.ones(len(LEVELS))
    p[LEVELS.index(_T13)] = P_T13
    p[LEVELS.index(_L6)] = P_L6
    return np.log(p / p.sum())


_LOG_START = _start_prior()


def _neighbours() -> list[tuple[list[int], list[int]]]:
    """State indices one level above / below each state (both T12 → T13 and T12 → L1 count as one)."""
    index = {vid: k for k, vid in enumerate(LEVELS)}
    out = []
    for vid in LEVELS:
        above, below = registry.neighbours(vid)
        out.append(([index[v] for v in above], [index[v] for v in below]))
    return out


_NEIGHBOURS = _neighbours()


def _extended_transitions() -> tuple[np.ndarray, np.ndarray]:
    """Transitions and start over states R_0…R_{L-1} (a level), J_0…J_{L-1} (a false detection after
    level k) and J_start (a false detection before any level): shape (2L+1, 2L+1) and (2L+1,)."""
    n = len(LEVELS)
    m = 2 * n + 1
    keep, junk = np.log(1 - P_FALSE), np.log(P_FALSE)
    t = np.full((m, m), -np.inf)
    t[:n, :n] = _LOG_T + keep  # R_a → R_b
    t[n:2 * n, :n] = _LOG_T + keep  # J_a → R_b
    t[np.arange(n), n + np.arange(n)] = junk  # R_a → J_a
    t[n + np.arange(n), n + np.arange(n)] = junk  # J_a → J_a
    t[2 * n, :n] = _LOG_START + keep  # J_start → R_b
    t[2 * n, 2 * n] = junk
    start = np.full(m, -np.inf)
    start[:n] = _LOG_START + keep
    start[2 * n] = junk
    return t, start


_LOG_TX, _LOG_START_X = _extended_transitions()


def decode(emissions: np.ndarray, scores: np.ndarray | None = None, cues: np.ndarray | None = None,
           temperature: float | None = None, posterior_temperature: float | None = None) -> Decoded:
    """Decode labels for candidates ordered head to foot.

    Parameters
    ----------
    emissions : np.ndarray, (n, len(LEVELS))
        Each candidate's level probabilities (need not sum to 1; rows are normalized).
    scores : np.ndarray, (n,), optional
        Detection confidence in [0, 1] of each candidate (default 1). A candidate may be decoded as
        a false detection (id 0) at prior cost `P_FALSE`, more easily when its score is low.
    temperature, posterior_temperature : float, optional
        Default `EMISSION_TEMPERATURE` and `POSTERIOR_TEMPERATURE`; the second changes the probabilities
        reported, never the labels.
    """
    e = np.asarray(emissions, dtype=float)
    if e.ndim != 2 or e.shape[1] != len(LEVELS):
        raise ValueError(f"emissions must have shape (n, {len(LEVELS)}), got {e.shape}")
    n, m = e.shape
    if n == 0:
        z = np.zeros(0)
        return Decoded(np.zeros(0, int), z, z, z, np.zeros((0, m)))
    s = np.ones(n) if scores is None else np.clip(np.asarray(scores, dtype=float).reshape(n), 0.01, 0.99)
    e = np.clip(e, 0, None)
    e = e / np.maximum(e.sum(axis=1, keepdims=True), 1e-12)
    t = EMISSION_TEMPERATURE if temperature is None else float(temperature)
    e = np.maximum(e, EMISSION_FLOOR) ** (1.0 / t)
    if cues is not None:
        c = np.asarray(cues, dtype=float)
        if c.shape != e.shape:
            raise ValueError(f"cues must have shape {e.shape}, got {c.shape}")
        e = e * c
    e = e / np.maximum(e.sum(axis=1, keepdims=True), 1e-300)
    # emissions over the extended states: a level k: score × p(k); a false detection: (1 − score) / L
    log_e = np.concatenate([
        np.log(np.maximum(e, EMISSION_FLOOR)) + np.log(s)[:, None],
        np.repeat(np.log((1 - s) / m)[:, None], m + 1, axis=1) if scores is not None
        else np.full((n, m + 1), np.log(EMISSION_FLOOR)),
    ], axis=1)
    k = log_e.shape[1]
    # Viterbi
    score = _LOG_START_X + log_e[0]
    back = np.zeros((n, k), int)
    for t in range(1, n):
        cand = score[:, None] + _LOG_TX
        back[t] = np.argmax(cand, axis=0)
        score = cand[back[t], np.arange(k)] + log_e[t]
    path = np.zeros(n, int)
    path[-1] = int(np.argmax(score))
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    # forward-backward marginals (log space)
    fwd = np.zeros((n, k))
    fwd[0] = _LOG_START_X + log_e[0]
    for t in range(1, n):
        fwd[t] = _logsumexp(fwd[t - 1][:, None] + _LOG_TX, axis=0) + log_e[t]
    bwd = np.zeros((n, k))
    for t in range(n - 2, -1, -1):
        bwd[t] = _logsumexp(_LOG_TX + (log_e[t + 1] + bwd[t + 1])[None, :], axis=1)
    post_x = fwd + bwd
    post_x = np.exp(post_x - _logsumexp(post_x, axis=1)[:, None])
    post = post_x[:, :m]  # probability of each level; the rest is "false detection"
    tau = POSTERIOR_TEMPERATURE if posterior_temperature is None else float(posterior_temperature)
    if tau != 1.0:
        full = np.concatenate([post, np.clip(1 - post.sum(axis=1, keepdims=True), 0, 1)], axis=1)
        full = np.maximum(full, 1e-300) ** (1.0 / tau)
        post = (full / full.sum(axis=1, keepdims=True))[:, :m]
    is_level = path < m
    ids = np.array([LEVELS[p] if p < m else 0 for p in path])
    conf = np.where(is_level, post[np.arange(n), np.minimum(path, m - 1)], 1 - post.sum(axis=1))
    up = np.array([post[t, _NEIGHBOURS[path[t]][0]].sum() if is_level[t] else 0.0 for t in range(n)])
    down = np.array([post[t, _NEIGHBOURS[path[t]][1]].sum() if is_level[t] else 0.0 for t in range(n)])
    return Decoded(ids, conf, up, down, post)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    mx = np.max(a, axis=axis, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - mx), axis=axis, keepdims=True)) + mx
    return np.squeeze(out, axis=axis)


ANCHORS: tuple[tuple[str, ...], ...] = (("C1",), ("C2",), ("C7", "T1"), ("T12", "L1"), ("T13", "L1"), ("S1",))
"""Landmarks levels are counted from: the skull base (C1, C2 and the dens), the first rib (C7/T1),
the last rib (T12 or T13 above L1) and the sacrum. A set of labels is anchored when all names of
one of these tuples are among them."""
SKULL_BASE: tuple[tuple[str, ...], ...] = (("C1",), ("C2",))
"""The anchors of `ANCHORS` that nothing in the scan confirms yet (`is_anchored`)."""
FIRST_RIB: tuple[str, ...] = ("C7", "T1")
"""The anchor of `ANCHORS` that the ribs read from bone confirm at its upper end (`is_anchored`)."""


def is_anchored(names: list[str] | set[str], ribs: dict[str, float | None] | None = None,
                bone_ribs: dict[str, RibSides | None] | None = None) -> bool:
    """True when the labelled column holds one of `ANCHORS`, so its levels were counted from a
    landmark in view rather than guessed from the shape of a few vertebrae.

    The last-rib anchor (T12 or T13 above L1) is checked against what the scan shows where either cue is
    given: ``bone_ribs`` (name → `inference.column.rib_pairs.RibSides`) counts it when a rib is seen
    beside the vertebra named T12 (or T13) and, with both sides in view, none beside L1; ``ribs`` (name →
    the segmenter's rib cue in ml, `inference.ribs`) when the last thoracic vertebra's cue is above the
    first bin edge and L1's below it. Without either, the names alone decide (the localizer's own guess
    of where the ribs stop).

    Where those cues are given, the first-rib anchor (C7 above T1) counts only when ``bone_ribs`` shows a rib
    beside T1 and, with both sides in view, none beside C7; and C1 and C2 do not anchor: nothing in the scan
    is read for them yet (neither the dens nor the skull base). Named from the localizer's guess alone, such
    columns of held-out synthetic CT were named right for 18 of 42 vertebrae, 14 wrong names shown above p 0.5
    (docs/column_tracker.md, 2026-12-08).
    """
    present = set(names)
    cued = ribs is not None or bone_ribs is not None
    for anchor in ANCHORS:
        if not set(anchor) <= present or (cued and anchor in SKULL_BASE):
            continue
        if anchor[-1] == "L1" and cued:
            if not (_ribs_end_from_bone(anchor[0], "L1", bone_ribs) or _last_rib_from_channel(anchor[0], ribs)):
                continue
        if anchor == FIRST_RIB and cued and not _ribs_end_from_bone("T1", "C7", bone_ribs):
            continue
        return True
    return False


def _ribs_end_from_bone(ribbed: str, bare: str, bone_ribs: dict[str, RibSides | None] | None) -> bool:
    """Whether the ribs read from bone end between ``ribbed`` and its neighbour ``bare``: a rib seen beside the
    one, and none on either side of the other, both sides in view (the last rib: T12 and L1; the first: T1 and
    C7)."""
    if bone_ribs is None:
        return False
    with_rib, without = bone_ribs.get(ribbed), bone_ribs.get(bare)
    return with_rib is not None and without is not None and with_rib.seen and without.absent


def _last_rib_from_channel(last: str, ribs: dict[str, float | None] | None) -> bool:
    if ribs is None:
        return False
    above, below = ribs.get(last), ribs.get("L1")
    return above is not None and below is not None and rib_bin(above) != 0 and rib_bin(below) == 0


UNANCHORED_CAP = 0.5
"""Highest label probability given when the column in view holds no landmark (`is_anchored`): on real
small fields of view such columns were named wrong for every vertebra (docs/localization.md)."""


def shown_confidence(ids: np.ndarray, confidence: np.ndarray, ribs: list[float | None] | None = None,
                     bone_ribs: list[RibSides | None] | None = None) -> tuple[np.ndarray, bool]:
    """The label probabilities a user sees: `decode`'s confidence, capped at `UNANCHORED_CAP` for every
    candidate when the named column is not anchored (`is_anchored`, with each candidate's rib cues when
    ``ribs`` or ``bone_ribs`` is given). Returns them (candidates decoded as false detections keep theirs)
    and whether the column is anchored."""
    kept = [n for n, v in enumerate(ids) if v]
    names = [registry.name_of(int(ids[n])) for n in kept]
    anchored = not names or is_anchored(
        names, None if ribs is None else {name: ribs[n] for name, n in zip(names, kept, strict=True)},
        None if bone_ribs is None else {name: bone_ribs[n] for name, n in zip(names, kept, strict=True)})
    conf = np.asarray(confidence, float).copy()
    if not anchored:
        conf[np.asarray(ids) != 0] = np.minimum(conf[np.asarray(ids) != 0], UNANCHORED_CAP)
    return conf, anchored


def shift_of(decoded_id: int, true_id: int) -> str:
    """How a decoded level relates to the true one: "right", "cranial" (the truth is one level above the
    label, as `Decoded.p_shift_cranial` counts it, T13 and L6 included), "caudal", "off" (further) or
    "dropped" (decoded as a false detection)."""
    if decoded_id == 0:
        return "dropped"
    if decoded_id == true_id:
        return "right"
    above, below = _NEIGHBOURS[LEVELS.index(decoded_id)]
    k = LEVELS.index(true_id)
    return "cranial" if k in above else "caudal" if k in below else "off"


# ---- the rib cue ------------------------------------------------------------------------------
RIB_BINS_ML = (0.25, 1.0)
"""Edges of the rib-cue bins (rib volume in ml beside the vertebra, `inference.ribs`)."""
RIB_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("C1-C6", ("C1", "C2", "C3", "C4", "C5", "C6")),
    ("C7", ("C7",)),
    ("T1-T10", ("T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10")),
    ("T11-T13", ("T11", "T12", "T13")),
    ("L1", ("L1",)),
    ("L2-L4", ("L2", "L3", "L4")),
    ("L5-S1", ("L5", "L6", "S1")),
)
"""Levels that share one row of `RIB_LIKELIHOOD`."""
RIB_GROUP_OF: dict[int, str] = {registry.id_of(name): g for g, names in RIB_GROUPS for name in names}
"""VerSe id → its `RIB_GROUPS` name."""
RIB_LIKELIHOOD: dict[str, tuple[float, float, float]] = {
    "C1-C6": (0.9881, 0.006, 0.006),
    "C7": (0.8571, 0.0714, 0.0714),
    "T1-T10": (0.0929, 0.0907, 0.8164),
    "T11-T13": (0.2717, 0.2023, 0.526),
    "L1": (0.5909, 0.2273, 0.1818),
    "L2-L4": (0.9765, 0.0196, 0.0039),
    "L5-S1": (0.9674, 0.0217, 0.0109),
}
"""P(rib-cue bin | level group), measured on held-out synthetic CT with localizer 1.1-step15378 (run as
`inference.localize` runs it: mirror test-time augmentation, small scans in the training field) and
segmenter 1.2-ft726 (with its mirror pass, `RunConfig.segmenter_mirror`) by
`python -m inference.train.calibrate_labeling` (docs/labeling_calibration.md): re-measure it whenever
either model or the way it is run changes."""


def rib_bin(ml: float | None) -> int | None:
    """Bin index of a rib-cue value (None stays None: unknown)."""
    if ml is None:
        return None
    return int(np.searchsorted(RIB_BINS_ML, ml, side="right"))


def rib_likelihoods(ribs: list[float | None], table: dict[str, tuple[float, float, float]] | None = None
                    ) -> np.ndarray:
    """(n, len(LEVELS)) likelihood of each candidate's rib cue under each level (1 where unknown), from
    ``table`` (default `RIB_LIKELIHOOD`; the calibration passes the table it is testing)."""
    table = RIB_LIKELIHOOD if table is None else table
    out = np.ones((len(ribs), len(LEVELS)))
    for n, ml in enumerate(ribs):
        b = rib_bin(ml)
        if b is None:
            continue
        out[n] = [table[RIB_GROUP_OF[vid]][b] for vid in LEVELS]
    return out


# ---- ribs seen from bone ----------------------------------------------------------------------
BONE_RIB_SEEN: dict[str, float] = {
    "C1-C6": 0.02,
    "C7": 0.05,
    "T1-T10": 1.0,
    "T11-T13": 1.0,
    "L1": 0.05,
    "L2-L4": 0.02,
    "L5-S1": 0.02,
}
"""Likelihood, per `RIB_GROUPS` row, that a rib is seen from bone beside a vertebra of that level
(`inference.column.rib_pairs`), relative to a thoracic one. Set by hand from anatomy and the detector's
record, not fitted: ribs articulate with T1-T12 (T13 where there is one); cervical ribs at C7 and lumbar
ribs at L1 occur in about 1 % of people; on the real cases of docs/localization.md the detector saw no rib
beside any lumbar vertebra or sacrum (synthetic CT cannot fit it: its ribs are dimmed toward soft tissue).
A rib not seen weighs nothing (a short 12th rib, a field of view cut behind the bodies)."""


def bone_rib_likelihoods(bone_ribs: list[RibSides | None]) -> np.ndarray:
    """(n, len(LEVELS)) likelihood of what `inference.column.rib_pairs` saw beside each candidate:
    `BONE_RIB_SEEN` where a rib was seen, 1 elsewhere."""
    out = np.ones((len(bone_ribs), len(LEVELS)))
    row = [BONE_RIB_SEEN[RIB_GROUP_OF[vid]] for vid in LEVELS]
    for n, sides in enumerate(bone_ribs):
        if sides is not None and sides.seen:
            out[n] = row
    return out
