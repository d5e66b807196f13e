"""Draw the SpineNav app icon with Qt (no external art) into ``assets/icons/``.

Usage: ``.venv/bin/python installer/make_icon.py`` → ``spinenav.png`` (256 px) and ``spinenav.ico``
(Windows, several sizes via Qt's ICO writer). Re-run after changing the drawing; the files are
committed so that builds do not need this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage, QLinearGradient, QPainter, QPainterPath, QPen

ICON_DIR = Path(__file__).resolve().parents[1] / "assets" / "icons"
SIZE = 256


def draw_icon(size: int = SIZE) -> QImage:
    """A rounded dark-blue tile with a stylised column of five vertebrae and a navigation ring."""
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    s = size / 256.0
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)

    tile = QLinearGradient(0, 0, 0, size)
    tile.setColorAt(0.0, QColor(28, 58, 104))
    tile.setColorAt(1.0, QColor(12, 26, 52))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(tile)
    p.drawRoundedRect(QRectF(8 * s, 8 * s, 240 * s, 240 * s), 44 * s, 44 * s)

    # five vertebral bodies along a gentle lordotic curve, bone-coloured, with disc gaps
    bone = QLinearGradient(0, 0, size, 0)
    bone.setColorAt(0.0, QColor(250, 240, 215))
    bone.setColorAt(1.0, QColor(214, 196, 160))
    for n in range(5):
        cy = (50 + n * 38) * s
        cx = (
            128 + 10 * ((n - 2) / 2.0) ** 2 * (-1)
        ) * s  # gentle curve: the middle level sits most posterior (right)
        w, h = (64 + 4 * n) * s, 28 * s
        body = QPainterPath()
        body.addRoundedRect(QRectF(cx - w / 2, cy - h / 2, w, h), 9 * s, 9 * s)
        p.setBrush(bone)
        p.drawPath(body)
        # spinous process to the right (posterior, as in a sagittal view with anterior left)
        p.setBrush(QColor(226, 210, 176))
        p.drawRoundedRect(QRectF(cx + w / 2 - 4 * s, cy - 5 * s, 26 * s, 10 * s), 5 * s, 5 * s)

    # navigation target ring on the middle level
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.setPen(QPen(QColor(80, 220, 140), 7 * s))
    p.drawEllipse(QPointF(128 * s, 126 * s), 30 * s, 30 * s)
    p.setPen(QPen(QColor(80, 220, 140), 5 * s))
    p.drawLine(QPointF(128 * s, 84 * s), QPointF(128 * s, 100 * s))
    p.drawLine(QPointF(128 * s, 152 * s), QPointF(128 * s, 168 * s))
    p.end()
    return image


def main() -> int:
    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    ICON_DIR.mkdir(parents=True, exist_ok=True)
    image = draw_icon()
    ok = image.save(str(ICON_DIR / "spinenav.png"), "PNG")
    ok &= draw_icon(64).save(str(ICON_DIR / "spinenav.ico"), "ICO")
    print(f"{'wrote' if ok else 'FAILED to write'} {ICON_DIR}/spinenav.png and spinenav.ico")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
