"""``alseg demo``: napari with a sample open and the annotator docked.

With a screenshot path it renders the window once and exits, which is how the
docs' pictures are made headless (under ``xvfb-run``).
"""

from __future__ import annotations

from pathlib import Path

WINDOW_SIZE = (1400, 900)


def run_demo_viewer(sample: str, *, screenshot: Path | None = None) -> None:
    import napari

    viewer = napari.Viewer(title="napari-alseg demo")
    viewer.window.add_plugin_dock_widget("napari-alseg", "Active-learning annotator")
    viewer.open_sample("napari-alseg", sample)
    show_like_a_radiologist(viewer)
    if screenshot is None:
        napari.run()
        return
    save_window_screenshot(viewer, screenshot)
    viewer.close()


def show_like_a_radiologist(viewer) -> None:
    """Mid-slice, anatomy upright: rows grow upwards (superior / anterior at the top)."""
    viewer.camera.orientation2d = ("up", "right")
    for axis in range(viewer.dims.ndim - 2):
        low, high, _step = viewer.dims.range[axis]
        viewer.dims.set_point(axis, (low + high) / 2)
    viewer.reset_view()


def save_window_screenshot(viewer, path: Path) -> None:
    """Resize first, let Qt paint, then grab the whole window (canvas + dock)."""
    from qtpy.QtWidgets import QApplication

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    for _ in range(5):
        QApplication.processEvents()
    viewer.reset_view()
    viewer.screenshot(str(path), canvas_only=False)
