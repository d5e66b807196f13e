"""Make docs/planning_lumbar.png: screws proposed on SpineNav's own analysis of the sample CT, in 3D.

    xvfb-run -a .venv/bin/python docs/make_planning_figure.py

Runs `spinenav analyze` on the sample abdomen CT into a temporary bundle, `spinenav plan` on it,
reads the STL meshes and trajectories.json back from disk and renders them off-screen (pyvista):
vertebrae see-through, screws coloured by Gertzbein–Robbins grade (green A … red E), from behind
and from above. Everything drawn comes from the bundle files, in LPS mm.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference.cli import main as spinenav  # noqa: E402
from navapp.views.screw_panel import GRADE_COLOURS  # noqa: E402

SAMPLE = ROOT / "assets/sample/abdomen_ct_3mm.nii.gz"
OUT = ROOT / "docs/planning_lumbar.png"


def render(bundle: Path, out: Path) -> None:
    import pyvista as pv

    pv.OFF_SCREEN = True
    vertebrae = json.loads((bundle / "vertebrae.json").read_text())["vertebrae"]
    screws = json.loads((bundle / "trajectories.json").read_text())["screws"]
    plotter = pv.Plotter(off_screen=True, shape=(1, 2), window_size=(1400, 800), border=False)
    focus = "L3"
    views = (((0.0, 1.0, 0.25), (0, 0, 1), None, "all levels, from behind (patient's left on the left)"),
             ((0.0, 0.0, 1.0), (0, -1, 0), focus, f"{focus} alone, from above (anterior up, patient's right on the "
                                                  "right)"))
    for col, (direction, up, only, title) in enumerate(views):
        plotter.subplot(0, col)
        plotter.set_background("white")
        shown = [v for v in vertebrae if only is None or v["name"] == only]
        for v in shown:
            mesh = pv.read(str(bundle / v["stl"]))
            plotter.add_mesh(mesh, color="#d9cdb8", opacity=0.35, smooth_shading=True)
            if only is None:
                plotter.add_point_labels([np.array(v["center_lps"]) + np.array([-45.0, 0, 0])], [v["name"]],
                                         font_size=12, text_color="black", shape=None, show_points=False)
        for s in screws:
            if only is not None and s["level"] != only:
                continue
            a, b = np.array(s["entry_lps"]), np.array(s["target_lps"])
            cyl = pv.Cylinder(center=(a + b) / 2, direction=b - a, radius=s["diameter_mm"] / 2,
                              height=float(np.linalg.norm(b - a)), resolution=24)
            plotter.add_mesh(cyl, color=np.array(GRADE_COLOURS[s["breach_grade"]]) / 255.0, smooth_shading=True)
        centre = np.mean([v["center_lps"] for v in shown], axis=0)
        plotter.camera_position = [tuple(centre + 600 * np.array(direction)), tuple(centre), up]
        plotter.reset_camera()
        plotter.camera.parallel_projection = True
        plotter.reset_camera()
        plotter.add_text(title, font_size=10, color="black")
    grades = [s["breach_grade"] for s in screws]
    plotter.subplot(0, 0)
    plotter.add_text(f"\n{len(screws)} screws planned on SpineNav's own segmentation; grades "
                     + ", ".join(f"{g} {grades.count(g)}" for g in "ABCDE" if grades.count(g)),
                     font_size=9, color="black")
    plotter.screenshot(str(out))
    plotter.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        if spinenav(["analyze", str(SAMPLE), "-o", str(bundle), "--device", "cpu"]) != 0:
            raise SystemExit("analyze failed")
        if spinenav(["plan", str(bundle), "--levels", "T12-L5"]) != 0:
            raise SystemExit("plan failed")
        render(bundle, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
