"""Desktop app (`navapp`): window lifecycle, loading, orientation, window/level, errors, screenshot.

Run under a virtual X server: ``xvfb-run -a .venv/bin/pytest tests/test_gui.py`` (pyvistaqt does not
render with QT_QPA_PLATFORM=offscreen). Every test that opens a window closes it and checks that no
plotter and no worker thread is left behind (STYLE habit 11).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication, QMessageBox

from inference import registry
from inference.errors import InputError
from inference.volume import Volume
from navapp.app import main
from navapp.display import PLANES, DisplayFrame, window_to_uint8
from navapp.state import Session
from navapp.views import main_window as main_window_module
from navapp.views.main_window import MainWindow
from navapp.views.slice_view import SliceView
from navapp.views.view3d import NO_LABELS_TEXT
from navapp.workers import Worker, start_worker

pytestmark = pytest.mark.gui

ROOT = Path(__file__).parents[1]
SAMPLE_CT = ROOT / "assets" / "sample" / "abdomen_ct_3mm.nii.gz"
SAMPLE_LABELS = ROOT / "assets" / "sample" / "abdomen_vertebrae_totalseg.nii.gz"
SAMPLE_LEVELS = ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]
LOAD_TIMEOUT_MS = 60_000


# ---- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def dialogs(monkeypatch):
    """Record QMessageBox warnings/errors instead of blocking on them."""
    shown: list[tuple[str, str, str]] = []

    def record(kind):
        def _show(parent, title, text, *args, **kwargs):
            shown.append((kind, title, text))
            return QMessageBox.StandardButton.Ok

        return _show

    for kind in ("warning", "critical", "information"):
        monkeypatch.setattr(main_window_module.QMessageBox, kind, record(kind))
    return shown


@pytest.fixture
def window(qtbot, dialogs):
    """A shown main window; on teardown: closed, no running thread, no live plotter."""
    from pyvista.plotting.plotter import _ALL_PLOTTERS

    w = MainWindow()
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    qtbot.waitExposed(w)
    yield w
    plotter_id = w.view3d.plotter._id_name
    w.close()
    assert not w.is_busy()
    assert all(not t.isRunning() for t in w.findChildren(QThread)), "a worker thread outlived the window"
    assert w.view3d.plotter._closed
    assert plotter_id not in _ALL_PLOTTERS, "the 3D plotter leaked"


def _load(qtbot, window: MainWindow, ct: Path, labels: Path | None = None) -> None:
    with qtbot.waitSignal(window.load_finished, timeout=LOAD_TIMEOUT_MS):
        assert window.open_case(ct, labels)
    qtbot.waitUntil(lambda: not window.is_busy(), timeout=LOAD_TIMEOUT_MS)


def _oriented_volume() -> tuple[Volume, np.ndarray]:
    """A small CT with permuted, flipped axes and a bright voxel at its Left-Anterior-Superior corner.

    i runs toward Anterior, j toward Inferior, k toward Left; spacing differs per axis. Returns the
    volume and the LPS position (mm) of the bright voxel.
    """
    size = (20, 16, 12)  # (i, j, k)
    direction = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # columns: i→A, j→I, k→L
    array = np.full(size[::-1], -1000, dtype=np.int16)
    vol = Volume(array, spacing=(0.8, 1.5, 2.5), origin=(-10.0, 20.0, 30.0), direction=direction)
    corners = np.array(
        [[i, j, k] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)]
    )
    lps = vol.index_to_lps(corners)
    i, j, k = corners[np.argmax(lps[:, 0] - lps[:, 1] + lps[:, 2])]  # most Left, Anterior, Superior
    array[k, j, i] = 2000
    return vol, vol.index_to_lps(np.array([[i, j, k]]))[0]


def _qimage_to_rgb(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    buf = np.frombuffer(image.constBits(), dtype=np.uint8).reshape(image.height(), image.bytesPerLine())
    return buf[:, : 3 * image.width()].reshape(image.height(), image.width(), 3).copy()


# ---- display math (no window) -----------------------------------------------------------------
def test_window_level_maps_hu_to_grey():
    width, level = 1800.0, 400.0
    grey = window_to_uint8(np.array([-2000, level - width / 2, level, level + width / 2, 5000]), width, level)
    assert grey.dtype == np.uint8
    assert grey.tolist() == [0, 0, 128, 255, 255]
    soft = window_to_uint8(np.array([-160, 40, 240]), 400, 40)
    assert soft.tolist() == [0, 128, 255]


def test_display_frame_round_trips_and_orients():
    vol, bright_lps = _oriented_volume()
    frame = DisplayFrame.from_volume(vol)
    assert frame.volume_axis == (2, 0, 1)  # L is shown along k, P along i, S along j
    assert frame.flip == (False, True, True)
    assert frame.obliquity_deg == pytest.approx(0.0)
    display = frame.to_display(vol.array)
    assert display.shape == (16, 20, 12)  # [s, p, l]
    assert display[-1, 0, -1] == 2000  # most superior, most anterior, most left
    point = np.array([3.0, 5.0, 7.0])
    assert np.allclose(frame.lps_to_display(frame.display_to_lps(point)), point)
    assert np.allclose(frame.display_to_lps(frame.lps_to_display(bright_lps)), bright_lps)
    assert PLANES["axial"].edge_letters() == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert PLANES["coronal"].edge_letters() == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert PLANES["sagittal"].edge_letters() == {"left": "A", "right": "P", "top": "S", "bottom": "I"}


# ---- slice views ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("plane", "quadrant"),
    [("axial", ("top", "right")), ("coronal", ("top", "right")), ("sagittal", ("top", "left"))],
)
def test_slice_view_shows_left_anterior_superior_corner_where_expected(qtbot, plane, quadrant):
    vol, bright_lps = _oriented_volume()
    session = Session()
    view = SliceView(session, plane)
    qtbot.addWidget(view)
    view.resize(400, 400)
    view.show()
    qtbot.waitExposed(view)
    session.set_window(400, 40)
    session.set_ct(vol)
    session.set_crosshair(bright_lps)
    vertical, horizontal = quadrant

    rgb = view.slice_rgb()
    rows, cols = rgb.shape[:2]
    r, c = np.unravel_index(np.argmax(rgb[:, :, 0]), (rows, cols))
    assert rgb[r, c, 0] == 255
    assert (r == 0) == (vertical == "top") and (r == rows - 1) == (vertical == "bottom")
    assert (c == 0) == (horizontal == "left") and (c == cols - 1) == (horizontal == "right")

    # and on screen: aspect ratio from spacing, bright pixels in the expected quadrant of the image
    frame = session.frame
    pixel_h, pixel_w = frame.pixel_size_mm(frame_plane := PLANES[plane])
    rect = view.image_rect()
    assert rect.width() / rect.height() == pytest.approx(
        frame.plane_shape(frame_plane)[1] * pixel_w / (frame.plane_shape(frame_plane)[0] * pixel_h), rel=1e-6
    )
    view.set_annotations_visible(False)
    shot = _qimage_to_rgb(view.grab().toImage())
    ys, xs = np.nonzero(shot.min(axis=2) > 200)
    assert len(ys) > 0
    cy, cx = ys.mean(), xs.mean()
    assert (cy < rect.center().y()) == (vertical == "top")
    assert (cx < rect.center().x()) == (horizontal == "left")
    point = view.widget_point(bright_lps)
    assert rect.contains(point)


def test_slice_view_window_presets_and_scrolling(qtbot):
    vol, bright_lps = _oriented_volume()
    vol.array[...] = 40  # soft-tissue HU everywhere
    session = Session()
    view = SliceView(session, "axial")
    qtbot.addWidget(view)
    session.set_ct(vol)
    session.set_window_preset("Soft tissue")
    assert int(view.slice_rgb()[0, 0, 0]) == 128  # the level maps to mid grey
    session.set_window_preset("Bone")
    assert int(view.slice_rgb()[0, 0, 0]) == 77  # (40 - (400 - 900)) / 1800 * 255 = 76.5, rounded half up

    start = view.slice_index
    view.scroll(+3)
    assert view.slice_index == start + 3
    assert session.frame.lps_to_display(session.crosshair_lps)[2] == pytest.approx(start + 3)
    view.scroll(-1000)
    assert view.slice_index == 0


# ---- worker -----------------------------------------------------------------------------------
class _Receiver(QObject):
    """Receives a worker's signals on the GUI thread and relays the outcome from there.

    Waiting on the worker's own signals would run pytest-qt's waiting code on the worker thread;
    relaying through queued slots is also how the main window listens.
    """

    outcome = Signal(str, object)

    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.on_gui_thread: list[bool] = []
        self.progress: list[float] = []
        worker.progress.connect(self.on_progress)
        worker.finished.connect(self.on_finished)
        worker.failed.connect(self.on_failed)
        worker.cancelled.connect(self.on_cancelled)

    def _record(self) -> None:
        self.on_gui_thread.append(threading.current_thread() is threading.main_thread())

    @Slot(float, str)
    def on_progress(self, fraction: float, message: str) -> None:
        self._record()
        self.progress.append(fraction)

    @Slot(object)
    def on_finished(self, result: object) -> None:
        self._record()
        self.outcome.emit("finished", result)

    @Slot(str)
    def on_failed(self, message: str) -> None:
        self._record()
        self.outcome.emit("failed", message)

    @Slot()
    def on_cancelled(self) -> None:
        self._record()
        self.outcome.emit("cancelled", None)


def _run_worker(qtbot, worker: Worker, before_wait=None) -> tuple[list, _Receiver]:
    receiver = _Receiver(worker)
    with qtbot.waitSignal(receiver.outcome, timeout=10_000) as blocker:
        thread = start_worker(worker)
        if before_wait is not None:
            before_wait()
    assert thread.wait(10_000)
    assert all(receiver.on_gui_thread)
    return blocker.args, receiver


def test_worker_reports_progress_on_gui_thread_and_result(qtbot):
    def job(*, progress, cancel):
        for n in range(3):
            progress(n / 2, f"step {n}")
        return threading.current_thread() is threading.main_thread()

    args, receiver = _run_worker(qtbot, Worker(job))
    assert args == ["finished", False]  # the job ran off the GUI thread
    assert receiver.progress == [0.0, 0.5, 1.0]  # queued before the outcome, handled on the GUI thread


def test_worker_translates_errors_and_cancel(qtbot):
    def bad_input(*, progress, cancel):
        raise InputError("scan.nii", "not a CT")

    worker = Worker(bad_input)
    args, _ = _run_worker(qtbot, worker)
    assert args == ["failed", "scan.nii: not a CT"] and isinstance(worker.error, InputError)

    def broken(*, progress, cancel):
        raise ZeroDivisionError("boom")

    worker = Worker(broken)
    args, _ = _run_worker(qtbot, worker)
    assert args == ["failed", "ZeroDivisionError: boom"] and isinstance(worker.error, ZeroDivisionError)

    started = threading.Event()

    def waits_for_cancel(*, progress, cancel):
        started.set()
        while True:
            cancel.raise_if_cancelled()
            threading.Event().wait(0.005)

    def cancel_when_started() -> None:
        assert started.wait(5)
        worker.cancel()

    worker = Worker(waits_for_cancel)
    args, _ = _run_worker(qtbot, worker, cancel_when_started)
    assert args == ["cancelled", None] and worker.error is None


# ---- main window ------------------------------------------------------------------------------
def test_empty_window_opens_and_closes(window):
    assert window.windowTitle() == "SpineNav"
    assert not window.view3d.vertebra_actors
    assert window.vertebra_table.currentWidget() is window.vertebra_table.message


def test_sample_case_fills_table_and_3d_view(qtbot, window, dialogs):
    _load(qtbot, window, SAMPLE_CT, SAMPLE_LABELS)
    assert not dialogs
    assert window.windowTitle() == f"SpineNav — {SAMPLE_CT.name}"
    assert "122×101×112 voxels" in window.ct_info_label.text()
    model = window.vertebra_table.model
    names = [model.index(r, 0).data() for r in range(model.rowCount())]
    assert names == SAMPLE_LEVELS
    assert window.vertebra_table.currentWidget() is window.vertebra_table.view
    assert sorted(window.view3d.vertebra_actors) == sorted(registry.id_of(n) for n in SAMPLE_LEVELS)
    assert not window.view3d.message.isVisible()
    for vid, actor in window.view3d.vertebra_actors.items():
        assert tuple(actor.prop.color.int_rgb) == registry.by_id(vid).color

    # selecting a row moves the crosshair to that vertebra's centre and highlights its mesh
    row = names.index("L3")
    window.vertebra_table.select_row(row)
    centre = model.vertebra_at(row).center_lps
    assert np.allclose(window.session.crosshair_lps, centre, atol=1e-6)
    assert window.session.selected_id == registry.id_of("L3")
    opacities = {vid: a.prop.opacity for vid, a in window.view3d.vertebra_actors.items()}
    assert opacities.pop(registry.id_of("L3")) == 1.0 and max(opacities.values()) < 1.0
    # the axial slice through that centre shows the L3 overlay
    axial = window.axial_view
    assert axial.slice_index == round(window.session.frame.lps_to_display(centre)[2])
    rgb = axial.slice_rgb()
    l3_colour = np.array(registry.by_id(registry.id_of("L3")).color)
    assert (np.abs(rgb.astype(int) - l3_colour).sum(axis=2) < 120).sum() > 20

    # a click on an L4 voxel in the axial view moves the crosshair there and selects L4
    labels = window.session.labels
    k, j, i = np.argwhere(labels.array == registry.id_of("L4"))[0]
    l4_voxel = labels.index_to_lps(np.array([[i, j, k]]))[0]
    window.session.set_crosshair(l4_voxel)
    qtbot.mouseClick(axial, Qt.MouseButton.LeftButton, pos=axial.widget_point(l4_voxel).toPoint())
    assert window.session.selected_id == registry.id_of("L4")
    assert np.allclose(window.session.crosshair_lps, l4_voxel, atol=max(labels.spacing))
    assert window.vertebra_table.view.selectionModel().selectedRows()[0].row() == names.index("L4")


def test_ct_without_labels_says_how_to_get_them(qtbot, window):
    _load(qtbot, window, SAMPLE_CT)
    assert window.vertebra_table.currentWidget() is window.vertebra_table.message
    assert window.vertebra_table.message.text() == NO_LABELS_TEXT
    assert window.view3d.message.isVisible() and window.view3d.message.text() == NO_LABELS_TEXT
    assert not window.view3d.vertebra_actors


def test_text_file_as_ct_shows_error_dialog(qtbot, window, dialogs, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not a CT\n")
    with qtbot.waitSignal(window.load_failed, timeout=LOAD_TIMEOUT_MS) as blocker:
        window.open_case(bad)
    qtbot.waitUntil(lambda: not window.is_busy())
    assert isinstance(blocker.args[0], InputError)
    assert len(dialogs) == 1 and dialogs[0][0] == "warning"
    assert str(bad) in dialogs[0][2] and "\n" not in dialogs[0][2]
    assert window.session.ct is None
    assert "Error" in window.statusBar().currentMessage()


def test_labels_on_another_grid_are_refused(qtbot, window, dialogs, tmp_path):
    other = sitk.Image(10, 12, 14, sitk.sitkUInt8)
    other[5, 5, 5] = registry.id_of("L1")
    other.SetSpacing((2.0, 2.0, 2.0))
    path = tmp_path / "other_grid_labels.nii.gz"
    sitk.WriteImage(other, str(path))
    with qtbot.waitSignal(window.load_failed, timeout=LOAD_TIMEOUT_MS):
        window.open_case(SAMPLE_CT, path)
    qtbot.waitUntil(lambda: not window.is_busy())
    assert len(dialogs) == 1 and dialogs[0][0] == "warning"
    assert "grid" in dialogs[0][2] and str(path) in dialogs[0][2]


def test_internal_error_gets_its_own_dialog(qtbot, window, dialogs, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something unexpected")

    monkeypatch.setattr(main_window_module, "load_case", broken)
    with qtbot.waitSignal(window.load_failed, timeout=LOAD_TIMEOUT_MS):
        window.open_case(SAMPLE_CT)
    qtbot.waitUntil(lambda: not window.is_busy())
    assert [d[0] for d in dialogs] == ["critical"]
    assert "internal error" in dialogs[0][1].lower() and "something unexpected" in dialogs[0][2]


def test_cancel_stops_loading_and_keeps_the_window(qtbot, window, dialogs, monkeypatch):
    started = threading.Event()

    def slow(*args, progress, cancel, **kwargs):
        started.set()
        while True:
            progress(0.5, "working")
            cancel.raise_if_cancelled()
            threading.Event().wait(0.005)

    monkeypatch.setattr(main_window_module, "load_case", slow)
    window.open_case(SAMPLE_CT)
    assert window.progress_bar.isVisible() and window.cancel_button.isVisible()
    assert started.wait(5)
    window.cancel_button.click()
    qtbot.waitUntil(lambda: not window.is_busy(), timeout=10_000)
    assert not dialogs
    assert not window.progress_bar.isVisible()
    assert window.session.ct is None


# ---- command line -----------------------------------------------------------------------------
def test_main_screenshot_writes_png(qapp, tmp_path):
    png = tmp_path / "shot.png"
    assert main([str(SAMPLE_CT), "--labels", str(SAMPLE_LABELS), "--screenshot", str(png)]) == 0
    image = QImage(str(png))
    assert not image.isNull()
    assert 800 <= image.width() <= 4000 and 500 <= image.height() <= 3000
    rgb = _qimage_to_rgb(image)
    assert rgb.std() > 20  # not a blank window
    # the 3D view drew meshes: some pixels carry the lumbar green of the registry
    lumbar = np.array(registry.by_id(registry.id_of("L3")).color)
    assert (np.abs(rgb.astype(int) - lumbar).sum(axis=2) < 60).sum() > 500


def test_main_bad_path_exits_2_with_one_line(qapp, tmp_path, capsys):
    png = tmp_path / "shot.png"
    assert main([str(tmp_path / "missing.nii.gz"), "--screenshot", str(png)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "missing.nii.gz" in err[0]
    assert not png.exists()
    assert main(["--labels", str(SAMPLE_LABELS), "--screenshot", str(png)]) == 2
    assert QApplication.instance() is qapp
