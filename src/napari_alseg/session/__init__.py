"""The annotator's session: a facade (:class:`Session`) over the labels view, the learner,
the queries and the effort accounting. See :mod:`napari_alseg.session.facade`."""

from .catalog import Catalog
from .facade import Session, import_model_backend
from .learner import MIN_LABELLED_ITEMS, RetrainReport, TrainedRound
from .projects import create_project, holds_project
from .queries import RescoreResult

__all__ = ["MIN_LABELLED_ITEMS", "Catalog", "RescoreResult", "RetrainReport", "Session", "TrainedRound",
           "create_project", "holds_project", "import_model_backend"]
