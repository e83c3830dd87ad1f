"""The tools that cut tracing, on the item being edited: fill between slices, the model's
outline of one class on one slice, undo of a submit (the controller's part for them).

Each tool runs a session verb on the layer's labels and puts the result back in the layer,
so the annotator sees it and can fix it before Submit; the edit is kept with the item and
goes with the submit, which records it as an event of its own kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..domain import QueryItem
from ..errors import AlsegError
from .case_layers import write_undoably
from .describe import class_name

if TYPE_CHECKING:
    from ..run_control import RunControl
    from ..session import Session
    from .controller import AlsegController
    from .editing import Editing


class TracingTools:
    """Fill between, accept outline, undo: verbs on the controller's :attr:`editor` item."""

    def __init__(self, controller: AlsegController) -> None:
        self.controller = controller
        self.last_submitted: QueryItem | None = None  # what Undo takes back
        controller.item_submitted.connect(self._submitted)

    @property
    def session(self) -> Session | None:
        return self.controller.session

    def _submitted(self, item: QueryItem) -> None:
        self.last_submitted = item

    def _editing(self) -> Editing | None:
        editing = self.controller.editor.editing
        if self.session is None or editing is None:
            self.controller.warning.emit("Open a case first (Go).")
        return editing

    def _class_name(self, class_id: int) -> str:
        return class_name(self.session.catalog.class_names, class_id)

    def fill_between(self) -> None:
        """The selected class interpolated across the gaps between the slices it is traced on."""
        editing = self._editing()
        if editing is None:
            return
        layer, case = editing.layer, editing.item.case
        class_id = int(layer.selected_label)
        labels = np.asarray(layer.data)
        traced = [int(k) for k in np.flatnonzero((labels == class_id).any(axis=(1, 2)))]
        gaps = [(a, b) for a, b in zip(traced, traced[1:]) if b - a >= 2]
        name = self._class_name(class_id)
        if not gaps:
            self.controller.warning.emit(f"Trace {name} on two slices with untraced slices between "
                                         "them, then fill between.")
            return
        edits, filled = [], []
        for first, last in gaps:
            try:
                result = self.session.fill_between(case, labels, class_id, first, last)
            except AlsegError as error:
                self.controller.error.emit(str(error))
                return
            labels = result.labels
            edits.append(result.edit)
            filled.append(f"{first + 1}–{last - 1}")
        write_undoably(layer, labels)
        editing.tools.extend(edits)
        voxels = sum(edit.voxels for edit in edits)
        self.controller.info.emit(f"Filled {name} on slices {', '.join(filled)} ({voxels} voxels, "
                                  "recorded as interpolated): check them, fix, then Submit.")

    def accept_outline(self) -> None:
        """The model's outline of the selected class on the slice shown, where background."""
        editing = self._editing()
        if editing is None:
            return
        session, controller = self.session, self.controller
        if session.learner.model_version is None:
            controller.warning.emit("No model yet: train one before accepting its outline.")
            return
        case, class_id = editing.item.case, int(editing.layer.selected_label)
        slice_index = int(controller.viewer.dims.current_step[0])
        if editing.item.slice_index is not None and slice_index != editing.item.slice_index:
            controller.warning.emit(f"Only slice {editing.item.slice_index} is submitted for this item: "
                                    "accept the outline there.")
            return

        def predict(control: RunControl | None = None) -> np.ndarray:
            return session.predict_labels(case, slice_index)

        def accept(prediction: np.ndarray) -> None:
            current = self.controller.editor.editing
            if current is not editing:  # another item opened meanwhile
                return
            name = self._class_name(class_id)
            predicted = np.asarray(prediction) == class_id
            plane = np.asarray(editing.layer.data)[slice_index]
            if not predicted.any():
                controller.info.emit(f"The model predicts no {name} on slice {slice_index}: nothing to accept.")
                return
            if not (predicted & (plane == 0)).any():  # e.g. correct mode: the prefill put it there
                where = ("already in the labels" if (plane[predicted] == class_id).all()
                         else "already labelled (with this or another class)")
                controller.info.emit(f"The model's {name} on slice {slice_index} is {where}: nothing to add.")
                return
            try:
                result = session.accept_outline(case, np.asarray(editing.layer.data), slice_index,
                                                class_id, prediction)
            except AlsegError as error:
                controller.error.emit(str(error))
                return
            write_undoably(editing.layer, result.labels)
            editing.tools.append(result.edit)
            controller.info.emit(f"Accepted the model's {self._class_name(class_id)} on slice {slice_index} "
                                 f"({result.edit.voxels} voxels, recorded as outline-accepted).")

        controller.start_job("prediction", predict, on_done=accept)

    def undo_submit(self) -> None:
        """Take back the last submit (of this session, else of the case open) and show the case."""
        controller, session = self.controller, self.session
        if session is None:
            return
        editing = controller.editor.editing
        item = self.last_submitted or (editing.item if editing is not None else None)
        if item is None:
            controller.warning.emit("Nothing submitted to undo.")
            return
        try:
            session.undo_submit(item.case)
        except AlsegError as error:
            controller.error.emit(str(error))
            return
        self.last_submitted = None
        current = session.catalog.current_labels(item.case)
        if current is None:
            controller.info.emit(f"Undid the first submit of {item.case}: it is unlabelled again and back "
                                 "in the queue (its history is kept).")
        else:
            controller.info.emit(f"Undid the last submit of {item.case}: its labels are back as they were "
                                 f"(saved as version {current.version}).")
        labels = session.catalog.editable_labels(item.case)
        controller.refresh_suggestions()
        if editing is not None and editing.item.case == item.case:
            editing.layer.data = labels
            editing.tools.clear()
            editing.dirty = False
        else:
            controller.editor.go(item)

