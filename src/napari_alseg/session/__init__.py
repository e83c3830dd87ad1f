"""The annotator's session: a facade (:class:`Session`) over the labels view, the learner,
the queries and the effort accounting. See :mod:`napari_alseg.session.facade`."""

from .facade import Session, import_model_backend
from .learner import MIN_LABELLED_ITEMS, RetrainReport, TrainedRound
from .queries import RescoreResult

__all__ = ["MIN_LABELLED_ITEMS", "RescoreResult", "RetrainReport", "Session", "TrainedRound",
           "import_model_backend"]
