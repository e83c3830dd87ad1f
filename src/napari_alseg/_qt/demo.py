"""``alseg demo``: napari with a sample project open and the annotator docked.

With a screenshot path it plays a short scripted session first (two rounds: a stand-in
annotator submits the ground truth of the top suggestions, the model retrains, the pool
is re-scored; then the first suggestion is opened with its heat map), then saves one
picture per tab of the widget and exits. That is how the docs' pictures are made headless (``xvfb-run``).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from ..domain import CASE, SLICE
from ..errors import AlsegError

WINDOW_SIZE = (1500, 950)
DEMO_LABELLED_ITEMS = 4  # per round
DEMO_ROUNDS = 2
DEMO_TRAIN_STEPS = 30
DEMO_STRATEGY = {CASE: "mc-dropout-top", SLICE: "dice-per-effort"}
TAB_PICTURES = {1: "", 2: "-review", 3: "-effort"}


def run_demo_viewer(sample: str, *, screenshot: Path | None = None,
                    train_steps: int = DEMO_TRAIN_STEPS) -> None:
    import napari

    if screenshot is not None:  # never touch the user's own sample project
        os.environ["ALSEG_PROJECTS_DIR"] = tempfile.mkdtemp(prefix="alseg-demo-")
    viewer = napari.Viewer(title="napari-alseg demo")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-alseg", "Active-learning annotator")
    widget.controller.open_sample_project(sample)
    if screenshot is None:
        napari.run()
        return
    try:
        play_scripted_round(widget, train_steps)
        save_tab_screenshots(viewer, widget, Path(screenshot))
    finally:
        widget.controller.close_project()  # cancels and waits for any background job before Qt goes away
        viewer.close()


def play_scripted_round(widget, train_steps: int, rounds: int = DEMO_ROUNDS) -> None:
    """``rounds`` times: label the top suggestions with the ground truth (ROIs: their class on
    their slice), retrain briefly, re-score; then open the top suggestion with its heat map."""
    from dataclasses import replace

    from ..model import TrainConfig
    from ..simulation.oracle import Oracle

    controller = widget.controller
    session = controller.session
    oracle = Oracle(session, correction_mode=False)
    controller.loop.strategy = DEMO_STRATEGY[session.project.granularity]
    session.train_config = replace(session.train_config or TrainConfig(), steps=train_steps)
    controller.editor.set_heat_map(True)
    held_out = set(session.project.validation_items())
    for _ in range(rounds):
        for suggestion in controller.suggestions[:DEMO_LABELLED_ITEMS]:
            item = suggestion.item
            if (item.case, item.slice_index) not in held_out:
                oracle.answer(item)
        version = session.model_version
        controller.learning.retrain()
        wait_until(lambda: session.model_version != version and not controller.running_jobs)
    controller.editor.go(controller.suggestions[0])
    wait_until(lambda: controller.editor.editing is not None and not controller.running_jobs)


def wait_until(condition, timeout: float = 1800.0) -> None:
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AlsegError(f"the scripted demo round did not finish within {timeout:.0f} s "
                             "(a busy CPU?): try --train-steps 5")
        QApplication.processEvents()
        time.sleep(0.02)


def save_tab_screenshots(viewer, widget, path: Path) -> list[Path]:
    """One window picture per widget tab: ``out.png``, ``out-review.png``, ``out-effort.png``."""
    from qtpy.QtWidgets import QApplication

    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    written = []
    for index, suffix in TAB_PICTURES.items():
        widget.tabs.setCurrentIndex(index)
        for _ in range(10):
            QApplication.processEvents()
        target = path.with_name(f"{path.stem}{suffix}{path.suffix}")
        viewer.screenshot(str(target), canvas_only=False)
        written.append(target)
    widget.tabs.setCurrentIndex(1)
    return written
