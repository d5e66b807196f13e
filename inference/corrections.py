"""Label corrections: rename one vertebra, shift every label by one level, delete one, merge two.

Pure functions over id maps, and `apply` over a `Case`. A correction maps the ids of the loaded
vertebrae (their *source* ids, from the label map or the analysis) to the ids shown now, and returns
that new map plus a record of what was done. The app keeps the maps (for undo) and the records (for
the bundle's manifest) and applies them with `apply` when it exports; ``spinenav correct`` applies
them to a bundle on disk (`correct_bundle`). The level rules (order, T13/L6) are the registry's.

An id map is ``{source_id: current_id}`` over every loaded vertebra, in VerSe ids (DESIGN §3);
``current_id == 0`` means deleted; two sources with one current id are merged.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import registry
from .case import Case, Vertebra
from .volume import Volume

IdMap = dict[int, int]

CORRECTED_FLAG = "label_corrected"
"""QA flag of a vertebra whose name the user changed (shown in the table, written to the bundle)."""

UP, DOWN = -1, +1
"""Shift directions: toward the head (L1 → T12) and toward the feet (T12 → L1)."""


class CorrectionError(ValueError):
    """A correction that cannot be made; the message is one line that says why."""


@dataclass(frozen=True)
class Correction:
    """One user correction as recorded in the bundle's manifest.

    ``what`` is ``"rename"``, ``"shift_up"``, ``"shift_down"``, ``"delete"`` or ``"merge"``; ``source``
    and ``target`` are the vertebra names before and after (comma-separated, head first, for a shift
    or a merge; ``target`` is None for a deletion); ``time`` is UTC, ISO 8601.
    """

    what: str
    source: str
    target: str | None
    time: str

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "from": self.source, "to": self.target, "time": self.time}


def identity_map(ids: Sequence[int]) -> IdMap:
    """The id map of freshly loaded vertebrae: every id shown as itself."""
    return {int(v): int(v) for v in ids}


def current_ids(id_map: Mapping[int, int]) -> list[int]:
    """Ids shown now (deleted ones left out, merged ones once), in the order of the map's keys."""
    return list(dict.fromkeys(v for v in id_map.values() if v))


def rename(id_map: Mapping[int, int], current_id: int, new_name: str) -> tuple[IdMap, Correction]:
    """Give the vertebra shown as ``current_id`` the name ``new_name`` (any unused registry name)."""
    source = _source_of(id_map, current_id)
    try:
        new_id = registry.id_of(new_name)
    except KeyError:
        raise CorrectionError(f"{new_name!r} is not a vertebra name (C1…C7, T1…T13, L1…L6, S1)") from None
    if new_id == current_id:
        raise CorrectionError(f"{registry.name_of(current_id)} already has that name")
    if new_id in current_ids(id_map):
        raise CorrectionError(
            f"{registry.name_of(new_id)} is already used by another vertebra; rename or delete that one first"
        )
    out = dict(id_map)
    out[source] = new_id
    return out, _record("rename", registry.name_of(current_id), registry.name_of(new_id))


def delete(id_map: Mapping[int, int], current_id: int) -> tuple[IdMap, Correction]:
    """Remove the vertebra shown as ``current_id`` (a false detection)."""
    source = _source_of(id_map, current_id)
    out = dict(id_map)
    out[source] = 0
    return out, _record("delete", registry.name_of(current_id), None)


def shift(id_map: Mapping[int, int], direction: int) -> tuple[IdMap, Correction]:
    """Move every label one level toward the head (`UP`: L1 → T12) or the feet (`DOWN`: T12 → L1).

    The levels run C1 … S1 as in `inference.registry.LEVEL_ORDER`; T13 and L6 count only when one
    of the vertebrae carries that name already (a shift keeps the number of thoracic and lumbar levels).
    """
    if direction not in (UP, DOWN):
        raise ValueError(f"direction must be UP ({UP}) or DOWN ({DOWN}), got {direction}")
    shown = current_ids(id_map)
    if not shown:
        raise CorrectionError("there is no vertebra to shift")
    position = registry.level_positions(shown)
    sequence = sorted(position, key=position.__getitem__)
    moved = {}
    for vid in shown:
        n = position[vid] + direction
        if not 0 <= n < len(sequence):
            where = "above" if direction == UP else "below"
            raise CorrectionError(f"{registry.name_of(vid)} has no level {where} it; delete or rename it first")
        moved[vid] = sequence[n]
    out = {src: (moved[cur] if cur else 0) for src, cur in id_map.items()}
    before = ", ".join(registry.name_of(v) for v in registry.sort_ids(shown))
    after = ", ".join(registry.name_of(v) for v in registry.sort_ids(moved.values()))
    return out, _record("shift_up" if direction == UP else "shift_down", before, after)


def merge(id_map: Mapping[int, int], keep_id: int, other_id: int) -> tuple[IdMap, Correction]:
    """Join the vertebra shown as ``other_id`` to the one shown as ``keep_id`` (one vertebra found twice,
    or split by its mask): it takes ``keep_id``'s name, and its voxels join that mask."""
    if keep_id == other_id:
        raise CorrectionError(f"{registry.name_of(keep_id)} cannot be merged with itself")
    _source_of(id_map, keep_id)
    out = {src: (keep_id if cur == other_id else cur) for src, cur in id_map.items()}
    if out == dict(id_map):
        raise CorrectionError(f"no vertebra is shown as {registry.name_of(other_id)}")
    return out, _record("merge", f"{registry.name_of(keep_id)}, {registry.name_of(other_id)}",
                        registry.name_of(keep_id))


def order_problem(id_map: Mapping[int, int]) -> str | None:
    """A one-line warning when the names no longer run head to foot in the map's (spatial) order."""
    shown = current_ids(id_map)
    for a, b in zip(shown, shown[1:], strict=False):
        if registry.by_id(a).order > registry.by_id(b).order:
            return f"{registry.name_of(a)} lies above {registry.name_of(b)}: check the names"
    return None


def _source_of(id_map: Mapping[int, int], current_id: int) -> int:
    for src, cur in id_map.items():
        if cur and cur == current_id:
            return src
    name = registry.name_of(current_id) if current_id in registry.BY_ID else str(current_id)
    raise CorrectionError(f"no vertebra is shown as {name}")


def _record(what: str, source: str, target: str | None) -> Correction:
    now = _dt.datetime.now(tz=_dt.UTC).replace(microsecond=0)
    return Correction(what, source, target, now.strftime("%Y-%m-%dT%H:%M:%SZ"))


# ---- applying corrections to a case ---------------------------------------------------------------------------
def apply(case: Case, id_map: Mapping[int, int], records: Sequence[Correction | dict[str, Any]] = ()) -> Case:
    """A copy of ``case`` with the corrections of ``id_map`` (source id → id; 0 = deleted) applied.

    A renamed vertebra gets its new id, the ``label_corrected`` flag and, when the analysis named
    it, the probabilities its decoder gave the new name (its top alternatives; 0 where unknown).
    Deleted vertebrae leave the case and the label map; merged ones become one vertebra, centred on
    the joined mask. ``records`` are added to ``case.corrections``. The case itself is not changed.
    """
    from .measure import vertebra_centers

    id_map = {int(k): int(v) for k, v in id_map.items()}
    merged = {cur for cur in id_map.values() if cur and list(id_map.values()).count(cur) > 1}
    vertebrae: list[Vertebra] = []
    for v in case.vertebrae:
        new_id = id_map.get(v.id, v.id)
        if new_id == 0 or any(new_id == w.id for w in vertebrae):
            continue  # deleted, or merged into one already kept
        vertebrae.append(v if new_id == v.id and v.id not in merged else _renamed(v, new_id))
    labels = None if case.labels is None else relabel(case.labels, id_map)
    if labels is not None and merged:
        centers = vertebra_centers(labels)
        vertebrae = [v.replace(center_lps=np.asarray(centers[v.id], dtype=float)) if v.id in merged and v.id in centers
                     else v for v in vertebrae]
    lesions = case.lesions
    if lesions is not None and labels is not None:  # no suspicion where a vertebra was deleted
        lesions = lesions.with_array(np.where(labels.array > 0, lesions.array, 0).astype(lesions.array.dtype))
    done = [r.to_json() if isinstance(r, Correction) else dict(r) for r in records]
    return case.replace(vertebrae=vertebrae, labels=labels, lesions=lesions, corrections=[*case.corrections, *done])


def relabel(labels: Volume, id_map: Mapping[int, int]) -> Volume:
    """The label map with each source id replaced by its corrected id (0 erases a vertebra)."""
    lut = np.arange(256, dtype=np.uint8)
    for src, cur in id_map.items():
        lut[int(src)] = int(cur)
    array = labels.array
    return labels.with_array(lut[array] if array.dtype == np.uint8 else lut[array.astype(np.intp)])


def _renamed(v: Vertebra, new_id: int) -> Vertebra:
    flags = list(v.qa_flags) + ([CORRECTED_FLAG] if CORRECTED_FLAG not in v.qa_flags else [])
    if not v.from_analysis:
        return v.replace(id=new_id, qa_flags=flags)
    posterior = {a["name"]: float(a["p"]) for a in v.alternatives}
    posterior.setdefault(v.name, float(v.confidence or 0.0))
    above, below = registry.neighbours(new_id)
    name = registry.name_of(new_id)
    return v.replace(
        id=new_id,
        confidence=posterior.get(name, 0.0),
        p_shift_cranial=sum(posterior.get(registry.name_of(n), 0.0) for n in above),
        p_shift_caudal=sum(posterior.get(registry.name_of(n), 0.0) for n in below),
        qa_flags=flags,
        alternatives=[dict(a) for a in v.alternatives],
    )


def parse_edits(id_map: Mapping[int, int], *, renames: Sequence[str] = (), shifts: Sequence[str] = (),
                deletes: Sequence[str] = (), merges: Sequence[str] = ()) -> tuple[IdMap, list[Correction]]:
    """Command-line edits (``T12=L1``, ``up``/``down``, ``T13``, ``L1+L2``) applied in that order."""
    records: list[Correction] = []
    out = dict(id_map)

    def named(text: str) -> int:
        try:
            return registry.id_of(text)
        except KeyError:
            raise CorrectionError(f"{text!r} is not a vertebra name (C1…C7, T1…T13, L1…L6, S1)") from None

    for text in renames:
        old, sep, new = text.partition("=")
        if not sep:
            raise CorrectionError(f"--rename {text!r}: write OLD=NEW, e.g. T12=L1")
        out, rec = rename(out, named(old), new.strip())
        records.append(rec)
    for text in shifts:
        direction = {"up": UP, "down": DOWN}.get(text.strip().lower())
        if direction is None:
            raise CorrectionError(f"--shift {text!r}: write up (L1 → T12) or down (T12 → L1)")
        out, rec = shift(out, direction)
        records.append(rec)
    for text in deletes:
        out, rec = delete(out, named(text))
        records.append(rec)
    for text in merges:
        keep, sep, other = text.partition("+")
        if not sep:
            raise CorrectionError(f"--merge {text!r}: write KEEP+OTHER, e.g. L1+L2")
        out, rec = merge(out, named(keep), named(other))
        records.append(rec)
    return out, records

