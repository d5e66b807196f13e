# SpineNav developer commands. The README names two: `make demo` and `make test`.
# Both create/reuse .venv and install what they need (quick when nothing changed).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.spinenav-installed

# Debian/Ubuntu packages for Qt + VTK under a virtual X server (installed by `make test` when run
# as root and missing).
APT_PACKAGES := xvfb xauth libgl1 libegl1 libglx-mesa0 libgl1-mesa-dri libglu1-mesa \
	libxkbcommon-x11-0 libxkbcommon0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
	libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxcb-xfixes0 \
	libxrender1 libxi6 libxext6 libsm6 libice6 libdbus-1-3 libfontconfig1 libfreetype6 libglib2.0-0 \
	libxt6

DEMO_OUT ?= demo_out

.PHONY: demo test lint venv system-deps benchmark installer docs clean

venv: $(STAMP)

# torch is installed first and alone: on the dev/CI machines its pinned version comes from the
# local CPU wheel, so no other package can pull a newer (CUDA) build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "installing system packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "warning: missing system packages (install as root):$$missing" >&2; \
	fi

demo: venv
	$(BIN)/spinenav info assets/sample/abdomen_ct_3mm.nii.gz
	mkdir -p $(DEMO_OUT)
	$(BIN)/spinenav analyze assets/sample/abdomen_ct_3mm.nii.gz -o $(DEMO_OUT)/analysis --force
	$(BIN)/spinenav evaluate $(DEMO_OUT)/analysis --truth assets/sample/abdomen_vertebrae_totalseg.nii.gz
	$(BIN)/spinenav plan $(DEMO_OUT)/analysis --force

lint: venv
	$(BIN)/ruff check inference navapp tests benchmarks installer docs

test: venv system-deps lint
	$(BIN)/python -c "import inference, inference.io, inference.export, inference.evaluate, sys; \
		assert 'PySide6' not in sys.modules and 'pyvista' not in sys.modules, 'inference imports GUI code'"
	xvfb-run -a -s "-screen 0 1600x1000x24" $(BIN)/python -m pytest -q -p no:cacheprovider

# The desktop bundle: dist/SpineNav/ (one folder) and dist/SpineNav-<os>-<arch>.tar.gz, then its self-test.
installer: venv
	$(BIN)/python -m pip install --quiet -e ".[installer]"
	$(BIN)/pyinstaller installer/spinenav.spec --noconfirm --log-level WARN
	tar -C dist -czf dist/SpineNav-$$(uname -s)-$$(uname -m).tar.gz SpineNav
	du -sh dist/SpineNav dist/SpineNav-*.tar.gz
	xvfb-run -a -s "-screen 0 1600x1000x24" dist/SpineNav/spinenav-gui --self-test

benchmark: venv
	if command -v xvfb-run >/dev/null; then xvfb-run -a -s "-screen 0 1600x1000x24" $(BIN)/python benchmarks/run_all.py; else $(BIN)/python benchmarks/run_all.py; fi

# Every figure and table in docs/ from the current code and shipped models (about an hour on 2 CPU cores;
# the figures of shared/data/real cases are skipped where ../shared is absent). docs/figures.md lists them.
XVFB = xvfb-run -a -s "-screen 0 1600x1000x24"
docs: venv
	$(BIN)/python -m inference.train.validate_real
	$(BIN)/python -m inference.planning.report
	$(BIN)/python -m inference.synth.layout_report
	for f in column_figure straightened_figure localization_figures rib_figure lesion_figure \
	         planning_slices synth_gallery domain_gallery; do $(BIN)/python docs/make_$$f.py || exit 1; done
	for f in bundle_figure segmentation_figures planning_figure gui_screenshots; do \
	    $(XVFB) $(BIN)/python docs/make_$$f.py || exit 1; done
	$(XVFB) $(BIN)/spinenav-gui assets/sample/abdomen_ct_3mm.nii.gz --screenshot docs/gui_analysis.png

clean:
	rm -rf $(VENV) $(DEMO_OUT) build dist
