"""Label corrections by the user: rename one vertebra, shift every label by one level, delete one.

Qt-free and pure: a correction maps the ids of the loaded vertebrae (their *source* ids, from the
label map or the analysis) to the ids shown now, and returns that new map plus a record of what
was done. The session keeps the maps (for undo) and the records (for the bundle's manifest); the
label map and the analysis result themselves are never modified — the export applies the map.

An id map is ``{source_id: current_id}`` over every loaded vertebra, in VerSe ids (DESIGN §3);
``current_id == 0`` means deleted.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inference import registry
from inference.label import LEVELS

IdMap = dict[int, int]
TRANSITIONAL: frozenset[int] = frozenset({registry.id_of("T13"), registry.id_of("L6")})
"""T13 and L6 exist in a few percent of people only; shifts pass over them unless one is in use."""

CORRECTED_FLAG = "label_corrected"
"""QA flag of a vertebra whose name the user changed (shown in the table, written to the bundle)."""

UP, DOWN = -1, +1
"""Shift directions: toward the head (L1 → T12) and toward the feet (T12 → L1)."""


class CorrectionError(ValueError):
    """A correction that cannot be made; the message is one line that says why."""


@dataclass(frozen=True)
class Correction:
    """One user correction as recorded in the bundle's manifest.

    ``what`` is ``"rename"``, ``"shift_up"``, ``"shift_down"`` or ``"delete"``; ``source`` and
    ``target`` are the vertebra names before and after (comma-separated, head first, for a shift;
    ``target`` is None for a deletion); ``time`` is UTC, ISO 8601.
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
    """Ids shown now (deleted ones left out), in the order of the map's keys."""
    return [v for v in id_map.values() if v]


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

    The levels run C1 … S1 as in `inference.label.LEVELS`; T13 and L6 count only when one of the
    vertebrae carries that name already (a shift keeps the number of thoracic and lumbar levels).
    """
    if direction not in (UP, DOWN):
        raise ValueError(f"direction must be UP ({UP}) or DOWN ({DOWN}), got {direction}")
    shown = current_ids(id_map)
    if not shown:
        raise CorrectionError("there is no vertebra to shift")
    sequence = [v for v in LEVELS if v not in TRANSITIONAL or v in shown]
    position = {v: n for n, v in enumerate(sequence)}
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
