"""``alseg demo``: napari with a sample project open and the annotator docked.

With a screenshot path it plays a short scripted session first (two rounds: a stand-in
annotator submits the ground truth of the top suggestions, the model retrains, the pool
is re-scored; then the first suggestion is opened), clicks the open item's largest structure
a few times (Click + / Click −, where the simulated clicker would) and saves that picture
(``-clicks``), then shows the heat map and saves one picture per tab of the widget, and
exits. That is how the docs' pictures are made headless (``xvfb-run``).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..domain import CASE, SLICE
from ..errors import AlsegError

if TYPE_CHECKING:
    from napari.viewer import Viewer
    from qtpy.QtWidgets import QTabWidget

    from .controller import AlsegController

WINDOW_SIZE = (1500, 950)
DEMO_LABELLED_ITEMS = 4  # per round
DEMO_ROUNDS = 2
DEMO_TRAIN_STEPS = 30
DEMO_STRATEGY = {CASE: "mc-dropout-top", SLICE: "dice-per-effort"}
TAB_PICTURES = {1: "", 2: "-review", 3: "-effort"}
CLICKS_PICTURE = "-clicks"  # the Annotate tab after a scripted click session
DEMO_CLICKS = 3  # per structure clicked


class Dock(Protocol):
    """What the demo drives of the dock widget (``napari_alseg._widget.AlsegWidget``, a layer above)."""

    controller: AlsegController
    tabs: QTabWidget


def run_demo_viewer(sample: str, *, screenshot: Path | None = None,
                    train_steps: int = DEMO_TRAIN_STEPS) -> None:
    import napari

    if screenshot is not None:  # never touch the user's own sample project
        os.environ["ALSEG_PROJECTS_DIR"] = tempfile.mkdtemp(prefix="alseg-demo-")
    viewer = napari.Viewer(title="napari-alseg demo")
    if screenshot is not None:  # the pictures' window size from the start, so Go fits the case to it
        viewer.window._qt_window.resize(*WINDOW_SIZE)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-alseg", "Active-learning annotator")
    widget.controller.open_sample_project(sample)
    if screenshot is None:
        napari.run()
        return
    try:
        play_scripted_round(widget, train_steps)
        play_scripted_clicks(widget)  # with the heat map off: the labels under the clicks are the picture
        save_window(viewer, widget, Path(screenshot), CLICKS_PICTURE)
        widget.controller.editor.set_heat_map(True)
        wait_until(lambda: not widget.controller.running_jobs)
        save_tab_screenshots(viewer, widget, Path(screenshot))
    finally:
        widget.controller.close_project()  # cancels and waits for any background job before Qt goes away
        viewer.close()


def play_scripted_round(widget: Dock, train_steps: int, rounds: int = DEMO_ROUNDS) -> None:
    """``rounds`` times: label the top suggestions with the ground truth (ROIs: their class on
    their slice), retrain briefly, re-score; then open the top suggestion with its heat map."""
    from dataclasses import replace

    from ..model import TrainConfig
    from ..simulation.oracle import Oracle

    controller = widget.controller
    session = controller.session
    if session is None:
        raise AlsegError("the demo's sample project did not open: see the message above")
    oracle = Oracle(session, correction_mode=False)
    controller.loop.strategy = DEMO_STRATEGY[session.catalog.granularity]
    session.settings.train_config = replace(session.settings.train_config or TrainConfig(), steps=train_steps)
    controller.editor.set_heat_map(True)
    held_out = set(session.catalog.validation_items())
    for _ in range(rounds):
        for suggestion in controller.suggestions[:DEMO_LABELLED_ITEMS]:
            item = suggestion.item
            if (item.case, item.slice_index) not in held_out:
                oracle.answer(item)
        version = session.learner.model_version
        controller.learning.retrain()
        wait_until(lambda: session.learner.model_version != version and not controller.running_jobs)
    controller.editor.go()
    wait_until(lambda: controller.editor.editing is not None and not controller.running_jobs)


def play_scripted_clicks(widget: Dock, clicks: int = DEMO_CLICKS) -> None:
    """On the item open: Click + mode, then up to ``clicks`` clicks on its structure (the
    item's class where the truth has it there, else its largest) where the simulated clicker
    would place them (the centre of the largest error against the
    ground truth), each waited for, as an annotator correcting the prefill would."""
    from ..simulation.clicker import item_region, largest_structure, next_click

    controller = widget.controller
    editing = controller.editor.editing
    item, layer = editing.item, editing.layer
    truth = controller.session.catalog.ground_truth(item.case)
    if truth is None:  # a sample always has its ground truth; nothing to click towards without
        return
    on_item = item_region(truth.shape, item.slice_index)
    class_id = largest_structure(truth, on_item, item.class_id)
    if class_id is None:
        return
    controller.editor.set_heat_map(False)
    layer.selected_label = class_id
    record = controller.session.catalog.case(item.case)
    for _ in range(clicks):
        click = next_click((np.asarray(layer.data) == class_id) & on_item, (truth == class_id) & on_item,
                           record.spacing)
        if click is None:
            break
        controller.clicking.set_mode(click.positive)
        controller.clicking.add_click(click.position, click.positive)
        wait_until(lambda: not controller.running_jobs)
        # the slice of the click, to see it
        controller.viewer.dims.set_point(0, record.origin[0] + click.position[0] * record.spacing[0])


def wait_until(condition: Callable[[], object], timeout: float = 1800.0) -> None:
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AlsegError(f"the scripted demo round did not finish within {timeout:.0f} s "
                             "(a busy CPU?): try --train-steps 5")
        QApplication.processEvents()
        time.sleep(0.02)


def save_window(viewer: Viewer, widget: Dock, path: Path, suffix: str, tab: int = 1) -> Path:
    """The window with ``tab`` shown, as ``<path stem><suffix>.png``."""
    from qtpy.QtWidgets import QApplication

    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    widget.tabs.setCurrentIndex(tab)
    for _ in range(10):
        QApplication.processEvents()
    target = path.with_name(f"{path.stem}{suffix}{path.suffix}")
    viewer.screenshot(str(target), canvas_only=False)
    return target


def save_tab_screenshots(viewer: Viewer, widget: Dock, path: Path) -> list[Path]:
    """One window picture per widget tab: ``out.png``, ``out-review.png``, ``out-effort.png``."""
    written = [save_window(viewer, widget, path, suffix, tab) for tab, suffix in TAB_PICTURES.items()]
    widget.tabs.setCurrentIndex(1)
    return written
