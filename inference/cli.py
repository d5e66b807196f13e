"""`spinenav` command line: parses arguments and calls the Python API, nothing more.

Errors are translated here, once: bad input → one line on stderr, exit 2; internal errors → one
line plus a traceback file, exit 1. No traceback reaches the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import CancelledError, InputError, SpineNavError

PLAIN_STEP = 0.1
"""Without a terminal, a progress line is printed at each new stage and every this share of the work."""
PLAIN_AFTER_S = 2.0
"""… once the command has run this long: a quick one (or a quick refusal, one error line) prints none."""


def _plain_progress(after_s: float = PLAIN_AFTER_S):
    """Progress as plain lines on stderr (a log file, `make demo`, a hospital batch): one per new stage and
    per `PLAIN_STEP` of the work, with the percentage and the elapsed seconds, from ``after_s`` on."""
    import time

    t0 = time.monotonic()
    last = {"message": None, "fraction": -1.0}

    def progress(fraction: float, message: str) -> None:
        if time.monotonic() - t0 < after_s:
            return
        stage = message.split(" ")[0] if message.startswith("segmented") else message
        if stage == last["message"] and fraction < last["fraction"] + PLAIN_STEP and fraction < 1.0:
            return
        last["message"], last["fraction"] = stage, fraction
        print(f"[{100 * min(max(fraction, 0.0), 1.0):3.0f}% {time.monotonic() - t0:5.1f} s] {message}",
              file=sys.stderr, flush=True)

    return progress, lambda: None


def _progress_bar(plain: bool = False):
    """A tqdm bar on an interactive stderr. Otherwise (a log, a pipe) nothing, or with ``plain`` (the long
    commands, analyze and plan) progress as plain lines (`_plain_progress`)."""
    if not sys.stderr.isatty():
        return _plain_progress() if plain else (None, lambda: None)
    from tqdm import tqdm

    bar = tqdm(total=1000, file=sys.stderr, bar_format="{l_bar}{bar}| {elapsed}", leave=False)

    def progress(fraction: float, message: str) -> None:
        bar.set_description_str(message[:40])
        bar.n = int(round(1000 * min(max(fraction, 0.0), 1.0)))
        bar.refresh()

    return progress, bar.close


# ---- commands ---------------------------------------------------------------------------------
def _cmd_info(args: argparse.Namespace) -> int:
    from .io import ct_info, format_ct_info, read_ct

    progress, close = _progress_bar()
    try:
        volume = read_ct(args.path, progress=progress)
    finally:
        close()
    info = ct_info(volume)
    print(json.dumps(info, indent=2) if args.json else format_ct_info(info))
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from .config import SHIPPED
    from .export import write_bundle
    from .export.atomic import check_output_dir
    from .io import read_ct
    from .pipeline import Pipeline, check_analyzable
    from .progress import sub_progress

    check_output_dir(args.output, force=args.force, inputs=[args.path])  # fail before minutes of work
    progress, close = _progress_bar(plain=True)
    try:
        ct = read_ct(args.path, progress=sub_progress(progress, 0.0, 0.15) if progress else None)
        check_analyzable(ct)  # before the models load
        config = SHIPPED.replace(adapt_intensity=args.adapt_intensity)
        pipeline = Pipeline(device=args.device, segment=not args.centers_only, config=config, precision=args.precision)
        case = pipeline.analyze(ct, progress=sub_progress(progress, 0.15, 0.8) if progress else None)
        bundle = write_bundle(args.output, case, force=args.force,
                              progress=sub_progress(progress, 0.8, 1.0) if progress else None)
    finally:
        close()
    print(case.summary())
    print(bundle.summary())
    if any(v.lesion_score is not None for v in case.vertebrae):
        print("  lesion scores flag regions for a radiologist to review; they are not a diagnosis")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from .planning.bundle import parse_levels, plan_bundle, read_catalogue, summary
    from .planning.screws import CATALOGUE

    levels = parse_levels(args.levels)
    catalogue = CATALOGUE if args.catalogue is None else read_catalogue(args.catalogue)
    progress, close = _progress_bar(plain=True)
    try:
        result = plan_bundle(args.bundle, levels, ct_path=args.ct, force=args.force, progress=progress,
                             trajectory=args.trajectory, catalogue=catalogue)
    finally:
        close()
    screws = result.screws
    for s in screws:
        flags = ", ".join(f for f, on in (("enters canal", s.enters_canal), ("collides", s.collides)) if on)
        ct_grade = "" if s.cortex_grade is None else f" (by HU {s.cortex_breach_mm:.1f} mm, {s.cortex_grade})"
        print(f"  {s.level:<4} {s.side:<5} {s.diameter_mm:.1f} x {s.length_mm:.0f} mm  medial {s.medial_deg:5.1f}°  "
              f"caudal {round(s.caudal_deg, 1) + 0.0:5.1f}°  breach {s.breach_mm:.1f} mm  grade {s.grade}{ct_grade}"
              + (f"  [{flags}]" if flags else "") + ("  " + "; ".join(s.notes) if s.notes else ""))
    print(f"  breach by HU: {result.ct_note}")
    for what, why in result.not_planned.items():
        print(f"  {what:<10} {why}")
    sm = summary(screws)
    print(f"{len(screws)} screws planned in {args.bundle} (trajectories.json, trajectories.mrk.json; LPS mm): "
          f"grades {sm['per_grade']}; proposals to check and edit, not a validated plan")
    return 0


def _cmd_export_labels(args: argparse.Namespace) -> int:
    from .export import export_labels

    progress, close = _progress_bar()
    try:
        result = export_labels(
            args.labels, args.output, ct_path=args.ct, convention=args.convention, force=args.force,
            progress=progress,
        )
    finally:
        close()
    print(result.summary())
    return 0


def _cmd_correct(args: argparse.Namespace) -> int:
    from . import corrections
    from .errors import InputError
    from .export import write_bundle
    from .export.bundle import read_bundle_case

    if not (args.rename or args.shift or args.delete or args.merge):
        raise InputError(args.bundle, "no correction given; use --rename OLD=NEW, --shift up|down, --delete NAME or "
                         "--merge KEEP+OTHER")
    if (args.bundle / "trajectories.json").exists():
        raise InputError(args.bundle, "holds planned screws, which are named by level; correct the names first, then "
                         "plan (spinenav plan --force)")
    case = read_bundle_case(args.bundle, ct_path=args.ct)
    start = corrections.identity_map([v.id for v in case.vertebrae])
    try:
        id_map, records = corrections.parse_edits(start, renames=args.rename or [], shifts=args.shift or [],
                                                  deletes=args.delete or [], merges=args.merge or [])
    except corrections.CorrectionError as exc:
        raise InputError(args.bundle, str(exc)) from None
    fixed = corrections.apply(case, id_map, records)
    bundle = write_bundle(args.bundle, fixed, force=True)
    for r in records:
        print(f"  {r.what}: {r.source} → {r.target or 'deleted'}")
    if problem := corrections.order_problem(id_map):
        print(f"  warning: {problem}")
    print(bundle.summary())
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_bundle, format_report

    report = evaluate_bundle(args.bundle, args.truth, convention=args.convention)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    import time

    from .synth import SynthConfig, small_config, write_cases

    config = small_config() if args.small else SynthConfig()
    progress, close = _progress_bar()
    t0 = time.perf_counter()
    try:
        written = write_cases(args.n, args.seed, args.output, config=config, force=args.force, device=args.device,
                              progress=progress)
    finally:
        close()
    seconds = time.perf_counter() - t0
    for path in written:
        p = json.loads(path.read_text())
        size = "x".join(str(v) for v in p["grid"]["size"])
        spacing = "x".join(f"{v:.2f}" for v in p["grid"]["spacing"])
        levels = _level_names(p["labels_present"])
        span = f"{levels[0]}-{levels[-1]}" if levels else "no vertebra"
        print(f"{path.name.removesuffix('_params.json')}: {p['fov_mode']} {span}, {size} voxels, {spacing} mm")
    print(f"{len(written)} synthetic cases written to {args.output} in {seconds:.1f} s "
          f"({60.0 * len(written) / max(seconds, 1e-9):.1f} volumes/minute, {args.device})")
    return 0


def _level_names(ids: list[int]) -> list[str]:
    from .registry import BY_ID, sort_ids

    return [BY_ID[i].name for i in sort_ids(ids)]


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (exit 2), like every other refusal of the command line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {' '.join(message.split())}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="spinenav",
        description="SpineNav: spine CT analysis and robot bundle export (all coordinates LPS mm).",
    )
    parser.add_argument("--version", action="version", version=f"spinenav {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("info", help="geometry, series and scanner metadata of a CT")
    p.add_argument("path", type=Path, help="DICOM folder or file, NIfTI, NRRD or MHA")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("analyze", help="find, name and segment every vertebra of a CT → robot bundle")
    p.add_argument("path", type=Path, help="DICOM folder or file, NIfTI, NRRD or MHA")
    p.add_argument("-o", "--output", type=Path, required=True, help="bundle folder to create")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                   help="where the models run (auto: CUDA, then MPS, then CPU)")
    p.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], default="auto",
                   help="of the network passes (auto: float16 autocast on CUDA, float32 elsewhere)")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty output folder")
    p.add_argument("--centers-only", action="store_true", help="skip segmentation: centers and labels, no meshes")
    p.add_argument("--adapt-intensity", action="store_true",
                   help="shift HU so the scan's soft-tissue median matches the training data (unusual scanners)")
    p.set_defaults(func=_cmd_analyze)

    conv = dict(choices=["auto", "verse", "totalseg"], default="auto",
                help="label numbering (auto: VerSe unless ids > 28 or 27 appear, then TotalSegmentator)")
    p = sub.add_parser("export-labels", help="robot bundle from an existing vertebra label map (no inference)")
    p.add_argument("labels", type=Path,
                   help="VerSe map, TotalSegmentator multilabel file, or folder of vertebrae_*.nii.gz")
    p.add_argument("--ct", type=Path, help="the CT the labels belong to (adds its identity and DICOM-SEG)")
    p.add_argument("-o", "--output", type=Path, required=True, help="bundle folder to create")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty output folder")
    p.add_argument("--convention", **conv)
    p.set_defaults(func=_cmd_export_labels)

    p = sub.add_parser("plan", help="propose pedicle screws on a bundle's labels → trajectories.json")
    p.add_argument("bundle", type=Path, help="bundle folder with labels.nii.gz (from analyze or export-labels)")
    p.add_argument("--levels", help="levels to plan, e.g. T10-L5 or L4,L5 (default: every thoracic and lumbar)")
    p.add_argument("--force", action="store_true", help="replace planned screws already in the bundle")
    p.add_argument("--ct", type=Path, help="the bundle's CT, for the breach against bone by HU (default: the CT "
                   "named in the manifest, when it is still there)")
    p.add_argument("--trajectory", choices=["straight-forward", "anatomical"], default="straight-forward",
                   help="straight-forward: parallel to the superior endplate (default); anatomical: tilted "
                   "caudally along the pedicles")
    p.add_argument("--catalogue", type=Path, help='screw sizes stocked, a JSON file {"diameters_mm": [...], '
                   '"lengths_mm": [...]} (default: 4.0-7.5 and 8.5 mm; 25-55 mm in 5 mm steps)')
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("correct", help="correct a bundle's vertebra names (rename, shift, delete, merge)")
    p.add_argument("bundle", type=Path, help="bundle folder (from analyze or export-labels)")
    p.add_argument("--rename", action="append", metavar="OLD=NEW", help="e.g. T12=L1 (repeatable)")
    p.add_argument("--shift", action="append", metavar="up|down", help="every name one level up (L1 → T12) or down")
    p.add_argument("--delete", action="append", metavar="NAME", help="remove a false vertebra (repeatable)")
    p.add_argument("--merge", action="append", metavar="KEEP+OTHER", help="join OTHER's mask to KEEP, e.g. L1+L2")
    p.add_argument("--ct", type=Path, help="the bundle's CT, when its DICOM-SEG must be rewritten and the CT "
                   "moved")
    p.set_defaults(func=_cmd_correct)

    p = sub.add_parser("evaluate", help="accuracy of a bundle against reference labels (per vertebra: Dice, "
                       "HD95, center error, identified)")
    p.add_argument("bundle", type=Path, help="bundle folder (from analyze or export-labels)")
    p.add_argument("--truth", type=Path, required=True, help="reference vertebra label map or folder")
    p.add_argument("--convention", **conv)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("synth", help="write domain-randomized synthetic training CTs with labels "
                       "(docs/synthetic_layouts.md)")
    p.add_argument("-n", type=int, required=True, help="number of cases")
    p.add_argument("--seed", type=int, default=0, help="seed of the set (same n and seed → identical files)")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder to write synth_XXXX_*.nii.gz + .json")
    p.add_argument("--force", action="store_true", help="write into an existing non-empty output folder")
    p.add_argument("--device", default="cpu", help="torch device to paint on (cpu, cuda); files are made on cpu "
                   "by default so that they are byte-identical across machines")
    p.add_argument("--small", action="store_true", help=argparse.SUPPRESS)  # tests: short, coarse volumes
    p.set_defaults(func=_cmd_synth)
    return parser


@contextlib.contextmanager
def _native_stderr_to_log():
    """Send what C libraries (ITK, libjpeg, GDCM) print on file descriptor 2 to a log file.

    Their warnings ("Corrupt JPEG data ...") would otherwise precede our one-line error; Python's
    own ``sys.stderr`` keeps writing to the terminal. ``SPINENAV_DEBUG=1`` leaves fd 2 alone.
    """
    if os.environ.get("SPINENAV_DEBUG") or not hasattr(sys.stderr, "fileno"):
        yield
        return
    try:
        fd = sys.stderr.fileno()
    except (OSError, ValueError):  # pytest's capture or an embedded interpreter
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    log_path = Path(tempfile.gettempdir()) / "spinenav-native.log"
    try:
        log = open(log_path, "ab")
    except OSError:
        os.close(saved)
        yield
        return
    python_stderr = sys.stderr
    sys.stderr = open(saved, "w", buffering=1, closefd=False)
    os.dup2(log.fileno(), fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)
        sys.stderr.close()
        sys.stderr = python_stderr
        os.close(saved)
        log.close()


def main(argv: Sequence[str] | None = None) -> int:
    # A file name that is not UTF-8 must print (as \xNN escapes), not end the program.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    with _native_stderr_to_log():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CancelledError:
        print("cancelled: nothing was written", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (`spinenav info X --json | head`): a normal end
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SpineNavError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the one place internal errors become a message
        log = Path(tempfile.gettempdir()) / "spinenav-error.log"
        try:
            log.write_text(traceback.format_exc())
            where = f" (details in {log})"
        except OSError:
            where = ""
        print(f"internal error: {type(exc).__name__}: {exc}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
