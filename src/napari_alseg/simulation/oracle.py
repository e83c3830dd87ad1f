"""The simulated annotator: answers a query item with its ground truth."""

from __future__ import annotations

import numpy as np

from ..domain import CORRECTED, MANUAL, QueryItem
from ..errors import AlsegError
from ..session import Session


class Oracle:
    """Answers a query item with its ground truth, through :meth:`Session.submit`."""

    def __init__(self, session: Session, correction_mode: bool) -> None:
        self.session = session
        self.correction_mode = correction_mode
        self._truth: dict[str, np.ndarray] = {}

    def truth(self, case: str) -> np.ndarray:
        """Ground truth ``(k, j, i)`` of a case, read once."""
        if case not in self._truth:
            truth = self.session.project.ground_truth(case)
            if truth is None:
                raise AlsegError(f"case {case!r} has no ground truth: the simulated oracle needs it")
            self._truth[case] = truth
        return self._truth[case]

    def answer(self, item: QueryItem) -> int:
        """Case → whole volume; slice → that slice; ROI → that class's mask on the slice.

        In correction mode (once a model exists) the prediction is prefilled and sent as
        ``original``, so the recorded effort is the boundary the oracle had to change.
        """
        truth = self.truth(item.case)
        labels = truth if item.slice_index is None else truth[item.slice_index]
        if item.class_id is not None:
            labels = np.where(labels == item.class_id, item.class_id, 0).astype(labels.dtype)
        original = None
        if self.correction_mode and self.session.current_net() is not None:
            original = self.session.predict_labels(item.case, item.slice_index)
        return self.session.submit(item.case, labels, kind=CORRECTED if original is not None else MANUAL,
                                   seconds_active=0.0, slice_index=item.slice_index,
                                   class_id=item.class_id, original=original)


