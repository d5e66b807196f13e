"""Architecture rules (DESIGN §1, STYLE 1): the computing core never imports GUI code."""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_inference_imports_no_gui():
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import inference
        for mod in pkgutil.walk_packages(inference.__path__, "inference."):
            importlib.import_module(mod.name)
        gui = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "pyvista", "pyvistaqt", "shiboken6"))
        print(",".join(gui))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"inference imported GUI modules: {out.stdout.strip()}"


def test_no_print_or_exit_in_library_code():
    offenders = []
    for path in (ROOT / "inference").rglob("*.py"):
        if path.name == "cli.py":
            continue  # the command line is where messages are printed
        text = path.read_text()
        for needle in (r"\bsys\.exit\(", r"(?<![\w.])print\(", r"\bbreakpoint\("):
            if re.search(needle, text):
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not offenders


def test_print_detector_is_not_fooled_by_names():
    assert re.search(r"(?<![\w.])print\(", "    print(x)")
    assert not re.search(r"(?<![\w.])print\(", "shape.footprint(-1)")
