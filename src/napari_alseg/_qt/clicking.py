"""Click mode: positive / negative clicks on the canvas segment the selected class.

Each click re-segments its class in a background job (:meth:`Session.click_segment`, from
the labels as they were at the class's first click, with every click of the class so far);
one job per class at a time, clicks made meanwhile wait for the next. The result is written
into the layer only where it differs from the class's previous result, as one napari undo
step (Ctrl+Z takes the click back), so strokes made between clicks stay. The class's latest
edit goes with Submit like the other tools' (``editing.tools``).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..clicks import Click, check_clicks
from ..domain import CLICKED
from ..errors import AlsegError
from .case_layers import case_geometry, layer_name, viewer_camera, write_undoably
from .describe import class_name

if TYPE_CHECKING:
    from napari.layers import Labels
    from napari.utils.events import Event

    from ..run_control import RunControl
    from ..session.tools import ToolResult
    from .controller import AlsegController
    from .editing import Editing

POSITIVE_KEY, NEGATIVE_KEY = "Shift-A", "Shift-D"  # free for Labels layers in napari
CLICKS_ROLE = "clicks"  # the Points layer "<case> · clicks" showing the item's clicks
CLICK_COLORS = {True: "lime", False: "red"}
CLICK_SYMBOLS = {True: "cross", False: "hbar"}
CLICK_BORDER = "black"  # a dark rim keeps the markers readable over bright labels
CLICK_MARKER_PX = 18.0  # the markers' size on screen, kept at every zoom (sized in the data for it:
# napari's canvas_size_limits drew markers it had to enlarge as their border alone, black)
NO_SIZE_LIMITS = (0.0, 1e6)
CLICK_SLOP_PX = 4.0  # a press that moves further than this is a pan, not a click
LEFT_BUTTON = 1
JOB_NAME = "clicks"
LABELS_MODE_WHILE_CLICKING = "pan_zoom"  # no brush under the clicks; a drag still pans


@dataclass
class ClassClicks:
    """One class's clicks on the item. ``base`` ``(k, j, i)``: the labels at its first click
    (every job starts from them); ``shown``: the last result written into the layer;
    ``applied``: how many clicks that result used (the sequence number of results);
    ``running``: a job of the class is out (the clicks after it wait for the next)."""

    class_id: int
    base: np.ndarray
    shown: np.ndarray
    clicks: list[Click] = field(default_factory=list)
    applied: int = 0
    running: bool = False


class ClickTools:
    """Click mode on the controller's :attr:`editor` item (a part of the controller)."""

    def __init__(self, controller: AlsegController) -> None:
        self.controller = controller
        self.positive: bool | None = None  # Click + (True), Click − (False), off (None)
        self._layer: Labels | None = None  # the Labels layer the mode is attached to
        self._layer_mode: str | None = None  # its napari mode before, given back when the mode is off
        self._classes: dict[int, ClassClicks] = {}  # of the item open
        controller.item_opened.connect(self._item_opened)
        controller.item_closing.connect(lambda: self._detach(restore=False))  # its layer is reused: no stale hooks
        controller.project_closed.connect(self._project_closed)
        controller.viewer.bind_key(POSITIVE_KEY, lambda _viewer: self.toggle(True), overwrite=True)
        controller.viewer.bind_key(NEGATIVE_KEY, lambda _viewer: self.toggle(False), overwrite=True)
        viewer_camera(controller.viewer).events.zoom.connect(self._resize_markers)

    # ------------------------------------------------------------------ the mode

    def set_mode(self, positive: bool | None) -> None:
        """Click + (True), Click − (False), or off (None: the layer's own napari mode back)."""
        editing = self.controller.editor.editing
        if positive is not None and editing is None:
            self.controller.warning.emit("Open a case first (Go), then click.")
            positive = None
        self.positive = positive
        if positive is None:
            self._detach(restore=True)
        else:
            self._attach(editing.layer)
        self.controller.click_mode_changed.emit(positive)

    def toggle(self, positive: bool) -> None:
        """The key's mode on, or off when it is on already."""
        self.set_mode(None if self.positive is positive else positive)

    def _attach(self, layer: Labels) -> None:
        if layer is self._layer:
            return
        self._detach(restore=True)
        self._layer, self._layer_mode = layer, layer.mode
        layer.mode = LABELS_MODE_WHILE_CLICKING
        layer.mouse_drag_callbacks.append(self._pressed)
        layer.events.mode.connect(self._layer_mode_changed)

    def _detach(self, *, restore: bool) -> None:
        layer, self._layer = self._layer, None
        if layer is None:
            return
        layer.events.mode.disconnect(self._layer_mode_changed)
        if self._pressed in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.remove(self._pressed)
        if restore:
            layer.mode = self._layer_mode

    def _layer_mode_changed(self, _event: Event | None = None) -> None:
        """The annotator picked a napari tool (brush, eraser...): click mode ends."""
        if self._layer is not None and self._layer.mode != LABELS_MODE_WHILE_CLICKING:
            self.positive = None
            self._detach(restore=False)
            self.controller.click_mode_changed.emit(None)

    def _item_opened(self) -> None:
        """A new item: no clicks yet (the old clicks layer went with the old layers); the mode stays on,
        on the item's layer (the same Labels layer as before, reused, or a new one)."""
        self._classes = {}
        self._detach(restore=False)
        if self.positive is not None:
            self._attach(self.controller.editor.editing.layer)

    def _project_closed(self) -> None:
        self._classes = {}
        self._detach(restore=False)
        self.positive = None
        self.controller.click_mode_changed.emit(None)

    def _pressed(self, layer: Labels, event: Any) -> Generator[None, None, None]:
        """A left press released where it began is a click at the voxel under it; a drag pans
        (``event``: napari's mouse event, ``pos`` on the canvas in px, ``position`` in the world)."""
        if event.button != LEFT_BUTTON or self.positive is None:
            return
        start, planar = np.array(event.pos, dtype=float), len(event.dims_displayed) == 2
        k, j, i = (int(v) for v in np.round(layer.world_to_data(event.position)))
        yield
        while event.type == "mouse_move":
            yield
        if np.hypot(*(np.asarray(event.pos, dtype=float) - start)) > CLICK_SLOP_PX:
            return
        if planar:
            self.add_click((k, j, i), self.positive)
        else:
            self.controller.warning.emit("Clicks go on a 2D slice: switch the viewer to 2D to click.")

    # ------------------------------------------------------------------ clicks

    def add_click(self, position: tuple[int, int, int], positive: bool) -> None:
        """A click at voxel ``position`` ``(k, j, i)`` for the layer's selected class: shown at
        once, segmented in the background. A click off the item's slice, outside the case or on
        background as the class is refused with one line."""
        controller, editing = self.controller, self.controller.editor.editing
        if editing is None:
            controller.warning.emit("Open a case first (Go), then click.")
            return
        class_id = int(editing.layer.selected_label)
        if class_id <= 0:
            controller.warning.emit("Select a class to click (background cannot be clicked).")
            return
        k, j, i = (int(p) for p in position)
        click = Click((k, j, i), bool(positive))
        state = self._classes.get(class_id)
        try:
            check_clicks([*(state.clicks if state else []), click], editing.layer.data.shape,
                         editing.item.slice_index)
        except AlsegError as error:
            controller.warning.emit(str(error))
            return
        if state is None:
            base = np.array(editing.layer.data)
            state = self._classes[class_id] = ClassClicks(class_id, base, base)
        state.clicks.append(click)
        self._show_clicks(editing)
        if not state.running:
            self._segment(editing, state)

    def _segment(self, editing: Editing, state: ClassClicks) -> None:
        """Re-segment the class from its base with all its clicks so far, in a worker."""
        session, item = self.controller.session, editing.item
        clicks = tuple(state.clicks)
        state.running = True

        def segment(control: RunControl | None = None) -> ToolResult:
            return session.click_segment(item.case, state.base, state.class_id, clicks,
                                         slice_index=item.slice_index)

        def failed(message: str) -> None:
            state.running = False
            self.controller.error.emit(message)

        self.controller.start_job(JOB_NAME, segment, on_error=failed,
                                  on_done=lambda result: self._arrived(editing, state, len(clicks), result))

    def _arrived(self, editing: Editing, state: ClassClicks, used: int, result: ToolResult) -> None:
        """A result on the main thread: written if its item is still open and no newer result
        of the class was; then the clicks that came meanwhile go out together."""
        state.running = False
        if editing is not self.controller.editor.editing:
            return  # another item opened (or this one was submitted) meanwhile
        if used > state.applied:
            self._write(editing, state, result)
            state.applied = used
        if len(state.clicks) > state.applied:
            self._segment(editing, state)

    def _write(self, editing: Editing, state: ClassClicks, result: ToolResult) -> None:
        """Into the layer, as one undo step: the voxels where the result differs from the class's
        previous one, and only where the layer still holds that previous result (a stroke made
        since is the annotator's and stays)."""
        layer, class_id = editing.layer, state.class_id
        current = np.asarray(layer.data)
        write_undoably(layer, np.where(current == state.shown, result.labels, current))
        state.shown = result.labels
        editing.tools[:] = [edit for edit in editing.tools
                            if not (edit.kind == CLICKED and edit.class_id == class_id)] + [result.edit]
        positive = sum(click.positive for click in state.clicks[:result.edit.clicks])
        name = class_name(self.controller.session.catalog.class_names, class_id)
        self.controller.status.emit(
            f"{name}: {result.edit.clicks} click(s) ({positive} +, {result.edit.clicks - positive} −), "
            f"{int((result.labels == class_id).sum())} voxels; Ctrl+Z takes the last click back, "
            "Submit keeps it.")

    def _show_clicks(self, editing: Editing) -> None:
        """The item's clicks as a Points layer: green + positive, red − negative, on their slice."""
        viewer, session, case = self.controller.viewer, self.controller.session, editing.item.case
        clicks = [click for state in self._classes.values() for click in state.clicks]
        data = np.array([click.position for click in clicks], dtype=float)
        colors = [CLICK_COLORS[click.positive] for click in clicks]
        symbols = [CLICK_SYMBOLS[click.positive] for click in clicks]
        name = layer_name(case, CLICKS_ROLE)
        if name in viewer.layers:
            points = viewer.layers[name]
            points.data = data
        else:
            record = session.catalog.case(case)
            points = viewer.add_points(data, name=name, canvas_size_limits=NO_SIZE_LIMITS,
                                       metadata={"alseg_case": case, "alseg_role": CLICKS_ROLE},
                                       **case_geometry(record))
            viewer.layers.selection.active = editing.layer  # clicks and keys stay on the labels
        points.symbol = symbols
        points.face_color = colors
        points.border_color = CLICK_BORDER
        self._resize_markers()

    def _resize_markers(self, _event: Event | None = None) -> None:
        """The click markers at :data:`CLICK_MARKER_PX` on screen for the camera's zoom (canvas
        px per mm): their size is in data voxels, so it follows the zoom and the pixel size."""
        editing = self.controller.editor.editing
        name = None if editing is None else layer_name(editing.item.case, CLICKS_ROLE)
        if name is None or name not in self.controller.viewer.layers:
            return
        points = self.controller.viewer.layers[name]
        zoom = float(viewer_camera(self.controller.viewer).zoom)
        voxel_mm = float(min(points.scale[1:]))
        points.size = CLICK_MARKER_PX / max(zoom * voxel_mm, 1e-6)
