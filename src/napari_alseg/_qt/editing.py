"""The item on screen: open it as layers, note the annotator's strokes, submit, drafts, heat map.

:class:`ItemEditor` is the controller's part that owns the item being edited; it emits
through the controller's signals and changes layers only on the main thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AlsegError
from ..domain import CORRECTED, MANUAL, BBox, QueryItem
from ..timing import ActivityClock
from ..session.focus import Focus, heat_map_scale
from .case_layers import apply_classes, jump_to, remove_heat_maps, show_case, show_heat_map, show_region
from .describe import item_text
from .settings import CORRECT

if TYPE_CHECKING:
    from napari.layers import Labels
    from napari.utils.events import Event
    from napari.viewer import Viewer

    from ..run_control import RunControl
    from ..session import Session
    from ..session.tools import ToolEdit
    from .controller import AlsegController


@dataclass
class Editing:
    """What is being annotated, the layer it is painted on, and what the layer started from."""

    item: QueryItem
    layer: Labels
    prefill: np.ndarray | None
    clock: ActivityClock
    has_draft: bool = False  # the layer holds the annotator's saved strokes: no prefill over them
    dirty: bool = False
    tools: list[ToolEdit] = field(default_factory=list)  # fill between, the model's outline, clicks: to submit
    opened_at_slice: int | None = None  # the slice shown on opening: moved since, the focus does not jump
    _loading: bool = False

    def touch(self, _event: Event | None = None) -> None:
        """A stroke (or any change of the layer's data): unsaved work, and the annotator is active."""
        if self._loading:
            return
        self.dirty = True
        self.clock.touch()

    def detach(self) -> None:
        """Stop listening to the layer, which the next item reuses (:func:`show_case`)."""
        self.layer.events.paint.disconnect(self.touch)
        self.layer.events.data.disconnect(self.touch)

    def prefill_with(self, prediction: np.ndarray) -> None:
        """The model's prediction arrived after the case was shown: fill it in where the item
        lies (the annotator has not painted yet; this is not their work)."""
        current = np.asarray(self.layer.data)
        self.prefill = prefill_labels(current, prediction, self.item)
        self._loading = True
        try:
            self.layer.data = self.prefill.copy()
        finally:
            self._loading = False

    def submission(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`Session.submit` for what the layer holds now."""
        item = self.item
        data = np.asarray(self.layer.data)
        region = data if item.slice_index is None else data[item.slice_index]
        original = None
        if self.prefill is not None:
            original = self.prefill if item.slice_index is None else self.prefill[item.slice_index]
        return dict(labels=region, kind=CORRECTED if original is not None else MANUAL,
                    seconds_active=self.clock.active_seconds(), slice_index=item.slice_index,
                    class_id=item.class_id, original=original, started_at=self.clock.started_at,
                    tools=list(self.tools))


def open_item(viewer: Viewer, session: Session, item: QueryItem, box: BBox | None) -> Editing:
    """Show the case and jump to the item (zoomed to ``box``, half-open voxel bounds, when
    given); main thread only.

    The layer holds the case's draft (the annotator's unsaved strokes) if there is one, else
    its labels; the model's prefill comes later (:meth:`Editing.prefill_with`). The region
    to look at is outlined on the canvas.
    """
    draft = session.catalog.load_draft(item.case)
    shown = draft
    if shown is None:
        shown = session.catalog.editable_labels(item.case)
    layer = show_case(viewer, session, item.case, shown)
    viewer.layers.selection.active = layer
    layer.mode = "paint"
    layer.selected_label = item.class_id or 1
    clock = ActivityClock()
    clock.start()
    editing = Editing(item, layer, None, clock, has_draft=draft is not None)
    show_place(viewer, session, editing, item.slice_index, box)
    layer.events.paint.connect(editing.touch)
    layer.events.data.connect(editing.touch)
    return editing


def show_place(viewer: Viewer, session: Session, editing: Editing, slice_index: int | None,
               bbox: BBox | None) -> None:
    """Jump to the slice and box (None: the volume's middle) and outline the box on the canvas."""
    case = editing.item.case
    jump_to(viewer, session, case, slice_index, bbox)
    if slice_index is not None and bbox is not None:
        show_region(viewer, session, case, slice_index, bbox)
        viewer.layers.selection.active = editing.layer  # painting stays on the labels
    editing.opened_at_slice = int(viewer.dims.current_step[0])


def prefill_labels(labels: np.ndarray, prediction: np.ndarray, item: QueryItem) -> np.ndarray:
    """Labels with the prediction filled in where the item lies (keeping what is labelled)."""
    filled = labels.copy()
    if item.slice_index is None:
        filled[...] = prediction
    elif item.class_id is None:
        filled[item.slice_index] = prediction
    else:
        plane = filled[item.slice_index]
        plane[(prediction == item.class_id) & (plane == 0)] = item.class_id
    return filled


class ItemEditor:
    """Go, trace, submit: the item being edited and the verbs on it (a part of the controller)."""

    def __init__(self, controller: AlsegController) -> None:
        self.controller = controller
        self.editing: Editing | None = None
        self.heat_map_shown = False
        # (model version, case) -> the case's Focus (or None): Go's, reused by the heat map's
        # legend and profile so both name the slice Go went to (one rule, one prediction)
        self.focuses: dict[tuple[str | None, str], Focus | None] = {}
        controller.classes_changed.connect(self._show_classes)
        controller.round_starting.connect(self.save_draft)
        controller.scores_changed.connect(lambda _pool: self.refresh_heat_map())

    @property
    def session(self) -> Session | None:
        return self.controller.session

    @property
    def viewer(self) -> Viewer:
        return self.controller.viewer

    def go(self, item: QueryItem | None = None, box: BBox | None = None) -> None:
        """Show ``item`` (None: the first suggestion) and jump to it at once, zoomed to ``box``
        (half-open voxel bounds; None: the box of the item's suggestion in the queue, if any);
        the model's part (the prefill in correct mode, and for a case item the slice and box
        where the work is) follows from a worker, so the annotator sees the images while the
        model predicts."""
        controller = self.controller
        if item is None and controller.suggestions:
            item = controller.suggestions[0].item
        if self.session is None or item is None:
            return
        if box is None:
            suggestion = controller.suggestion_for(item)
            box = None if suggestion is None else suggestion.bbox
        self.save_draft()
        session = self.session
        correcting = controller.loop.mode == CORRECT and session.learner.model_version is not None
        locating = item.slice_index is None and session.learner.model_version is not None
        dtype = session.catalog.label_dtype
        self._let_go()
        editing = self.editing = open_item(self.viewer, session, item, box)
        controller.item_opened.emit()
        controller.heat_map_changed.emit(None)  # the previous case's legend and profile go
        if self.heat_map_shown:
            self._show_heat_map()
        names = session.catalog.class_names
        if not (correcting or locating):
            controller.status.emit(f"Annotating {item_text(item, names)}. Submit with Shift+S.")
            return

        def prepare(control: RunControl | None = None) -> tuple[np.ndarray | None, Focus | None]:
            if locating:  # one prediction for both: where the work is, and the prefill
                probabilities = session.learner.predict_probabilities(item.case)
                prediction = probabilities.argmax(axis=0).astype(dtype) if correcting else None
                focus = session.focus(item.case, probabilities)
                self.focuses[(session.learner.model_version, item.case)] = focus
                return prediction, focus
            return session.predict_labels(item.case, item.slice_index), None

        controller.status.emit(f"Annotating {item_text(item, names)}; the model is predicting where the work is…")
        controller.start_job("prediction", prepare,
                             on_done=lambda prepared: self._model_arrived(editing, *prepared))

    def _model_arrived(self, editing: Editing, prediction: np.ndarray | None, focus: Focus | None) -> None:
        """Apply the prefill and the focus to the item still on screen, never over the annotator's
        strokes or a slice they moved to."""
        controller, session = self.controller, self.session
        if session is None or editing is not self.editing:
            return  # another item opened (or this one submitted) meanwhile
        names = session.catalog.class_names
        note = ""
        if prediction is not None:
            if editing.dirty or editing.has_draft:
                note = " (not pre-filled: you had started tracing)"
            else:
                editing.prefill_with(prediction)
        where = ""
        if focus is not None:
            if not editing.dirty and int(self.viewer.dims.current_step[0]) == editing.opened_at_slice:
                show_place(self.viewer, session, editing, focus.slice_index, focus.bbox)
                if focus.class_id is not None and not editing.item.class_id:
                    editing.layer.selected_label = focus.class_id
            chosen = editing.layer.selected_label
            chosen_name = names[chosen] if chosen < len(names) else ""
            where = f" — slice {focus.slice_index}, {focus.reason} ({chosen_name} selected)"
        controller.status.emit(f"Annotating {item_text(editing.item, names)}{where}{note}. Submit with Shift+S.")

    def close(self) -> None:
        self._let_go()
        self.focuses.clear()

    def _let_go(self) -> None:
        """No item in hand; its layer, which the next item reuses, no longer touches it."""
        if self.editing is not None:
            self.controller.item_closing.emit()
            self.editing.detach()
        self.editing = None

    def submit(self) -> None:
        """Save the item through the session (durable before this returns), then go on."""
        editing, controller = self.editing, self.controller
        if self.session is None or editing is None:
            controller.warning.emit("Nothing to submit: press Go on a suggestion first.")
            return
        try:
            self.session.submit(editing.item.case, **editing.submission())
        except AlsegError as error:
            controller.error.emit(str(error))
            return
        editing.dirty = False
        self.focuses = {key: focus for key, focus in self.focuses.items() if key[1] != editing.item.case}
        controller.item_submitted.emit(editing.item)
        controller.info.emit(f"Saved {item_text(editing.item, self.session.catalog.class_names)}")
        self._let_go()
        controller.refresh_suggestions()
        self.go()

    def save_draft(self) -> None:
        editing = self.editing
        if self.session is None or editing is None or not editing.dirty:
            return
        try:
            self.session.save_draft(editing.item.case, np.asarray(editing.layer.data))
        except AlsegError as error:
            self.controller.error.emit(str(error))
            return
        editing.dirty = False

    def _show_classes(self) -> None:
        """A class renamed or recoloured: the layer being edited shows it."""
        if self.session is not None and self.editing is not None:
            apply_classes(self.editing.layer, self.session.catalog.classes)

    def mark_range(self, end: str) -> None:
        """Weak annotation (docs/METHODS.md §7.1): the selected class starts (``"first"``) / ends
        (``"last"``) on the slice on screen."""
        if self.session is None or self.editing is None:
            self.controller.warning.emit("Open a case first (Go).")
            return
        layer, case = self.editing.layer, self.editing.item.case
        class_id = int(layer.selected_label)
        current = int(self.viewer.dims.current_step[0])
        weak = self.session.catalog.weak_annotations(case).get(class_id)
        first, last = (weak.first_slice, weak.last_slice) if weak else (0, layer.data.shape[0] - 1)
        first, last = (current, max(current, last)) if end == "first" else (min(first, current), current)
        try:
            self.session.mark_class_range(case, class_id, first, last)
        except AlsegError as error:
            self.controller.error.emit(str(error))
            return
        name = self.session.catalog.class_names[class_id]
        self.controller.info.emit(f"{name} appears only on slices {first}–{last} of {case}")
        if self.session.learner.model_version is None:
            self.controller.refresh_suggestions()  # before a model the queue follows the range at once

    def set_heat_map(self, shown: bool) -> None:
        """Show (computed in a worker) or hide the uncertainty of the case on screen."""
        if shown != self.heat_map_shown:
            self.heat_map_shown = shown
            self.controller.heat_map_toggled.emit(shown)
        if self.session is None or self.editing is None:
            return
        if shown:
            self._show_heat_map()
        else:
            remove_heat_maps(self.viewer)
            self.controller.heat_map_changed.emit(None)

    def refresh_heat_map(self) -> None:
        """Recompute the heat map if it is shown (a new model or new scores)."""
        if self.heat_map_shown:
            self.set_heat_map(True)

    def _show_heat_map(self) -> None:
        session, editing = self.session, self.editing
        if session is None or editing is None:
            return
        case = editing.item.case
        if session.learner.model_version is None:
            self.controller.warning.emit("No model yet: the heat map needs a trained model.")
            self.set_heat_map(False)
            return

        def compute(control: RunControl | None = None) -> tuple[np.ndarray, Focus | None]:
            values = session.learner.uncertainty_map(case)
            key = (session.learner.model_version, case)  # Go's focus has usually arrived by now
            focus = self.focuses[key] if key in self.focuses else session.focus(case)
            self.focuses[key] = focus
            return values, focus

        def show(computed: tuple[np.ndarray, Focus | None]) -> None:
            if not self.heat_map_shown or self.editing is None or self.editing.item.case != case:
                return  # hidden, or another case opened, while it was computed
            values, focus = computed
            scale = heat_map_scale(values, focus)
            show_heat_map(self.viewer, session, case, values, scale)
            self.viewer.layers.selection.active = self.editing.layer
            self.controller.heat_map_changed.emit(scale)

        self.controller.start_job("uncertainty map", compute, on_done=show)
