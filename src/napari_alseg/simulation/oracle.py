"""The simulated annotator: answers a query item with its ground truth, tracing or clicking."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..clicks import Click
from ..domain import CLICK_ANNOTATOR, CORRECTED, MANUAL, TRACE_ANNOTATOR, QueryItem, SimulatedAnnotator
from ..errors import AlsegError
from ..session import Session
from ..session.tools import ToolEdit, ToolResult
from .clicker import click_until_good, item_region
from .files import check_annotator


class Oracle:
    """Answers a query item with its ground truth, through :meth:`Session.submit`."""

    def __init__(self, session: Session, correction_mode: bool,
                 annotator: SimulatedAnnotator = TRACE_ANNOTATOR) -> None:
        self.session = session
        self.correction_mode = correction_mode
        self.annotator = check_annotator(annotator)
        self._truth: dict[str, np.ndarray] = {}

    def truth(self, case: str) -> np.ndarray:
        """Ground truth ``(k, j, i)`` of a case, read once."""
        if case not in self._truth:
            truth = self.session.catalog.ground_truth(case)
            if truth is None:
                raise AlsegError(f"case {case!r} has no ground truth: the simulated oracle needs it")
            self._truth[case] = truth
        return self._truth[case]

    def answer(self, item: QueryItem) -> int:
        """Case → whole volume; slice → that slice; ROI → that class's mask on the slice.

        In correction mode (once a model exists) the prediction is prefilled and sent as
        ``original``, so the recorded effort is the boundary the oracle had to change. The
        clicking annotator clicks each structure of the item first; what the clicks set is
        recorded as ``clicked`` tool uses, so only the outline painted after them is charged.
        """
        truth = self.truth(item.case)
        labels = truth if item.slice_index is None else truth[item.slice_index]
        if item.class_id is not None:
            labels = np.where(labels == item.class_id, item.class_id, 0).astype(labels.dtype)
        original = None
        if self.correction_mode and self.session.learner.current_net() is not None:
            original = self.session.predict_labels(item.case, item.slice_index)
        tools = click_item(self.session, truth, item, original).edits if self.annotator == CLICK_ANNOTATOR else []
        return self.session.submit(item.case, labels, kind=CORRECTED if original is not None else MANUAL,
                                   seconds_active=0.0, slice_index=item.slice_index,
                                   class_id=item.class_id, original=original, tools=tools)


@dataclass(frozen=True)
class ClickedItem:
    """An item after the click oracle: the case's labels ``(k, j, i)`` the kept clicks made,
    the tool uses to record, and the clicks made (taken-back ones included: they cost)."""

    labels: np.ndarray
    edits: list[ToolEdit]
    clicks: int


def click_item(session: Session, truth: np.ndarray, item: QueryItem, prefill: np.ndarray | None) -> ClickedItem:
    """Click every structure of the item, smallest first (a nested lesion's core before the
    oedema around it, so each stays out of the next), from the prefill (the item's region) or
    nothing, with the widget's tool (:meth:`Session.click_segment`: the model's prior, read
    once per item)."""
    spacing = session.catalog.case(item.case).spacing
    on_item = item_region(truth.shape, item.slice_index)
    labels = np.zeros(truth.shape, session.catalog.label_dtype)
    if prefill is not None:
        labels[on_item] = np.asarray(prefill).ravel()
    classes = [item.class_id] if item.class_id is not None else [int(c) for c in np.unique(truth[on_item]) if c]
    edits: list[ToolEdit] = []
    total = 0
    for class_id in sorted(classes, key=lambda c: int(((truth == c) & on_item).sum())):
        results: dict[int, ToolResult] = {}  # by the number of clicks it took

        def segment(clicks: list[Click], class_id: int = class_id, base: np.ndarray = labels,
                    results: dict[int, ToolResult] = results) -> np.ndarray:
            results[len(clicks)] = session.click_segment(item.case, base, class_id, clicks,
                                                         slice_index=item.slice_index)
            return (results[len(clicks)].labels == class_id) & on_item

        run = click_until_good((truth == class_id) & on_item, segment, spacing,
                               start=(labels == class_id) & on_item)
        total += len(run.clicks)  # every click cost the annotator, a taken-back one too
        if run.kept:
            labels = results[run.kept].labels
            edits.append(replace(results[run.kept].edit, clicks=len(run.clicks)))
    return ClickedItem(labels, edits, total)
