"""The domain's names: the leaf every layer imports and that imports nothing of ours.

A name that crosses layers (query items, granularities, scoring needs, score terms, event
kinds, quality classes) is a constant here, never a string repeated in the store, the
scoring, the strategies, the session and the widget: a typo fails at import, not as a
missing column. The closed vocabularies are :class:`Kind` enums, so the type checker
catches a wrong kind passed to a function; their members are the old strings (equal to them,
and written as them to SQLite, JSON and CSV). Pure Python; importing it costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    """A closed vocabulary of strings: each member is a ``str`` equal to its value.

    ``str()``, f-strings and ``repr()`` give what the plain string gave (a bare ``(str, Enum)``
    gives ``Granularity.CASE`` in f-strings from Python 3.12), so a member is written, and
    listed in messages, exactly as the string it replaced. ``enum.StrEnum`` needs Python 3.11.
    """

    def __str__(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return str.__repr__(self)

    def __format__(self, format_spec: str) -> str:
        return str.__format__(self, format_spec)


# ---------------------------------------------------------------------------- query items


class Granularity(Kind):
    """What one query item is: a whole case, one slice of it, or one class on a slice (an ROI)."""

    CASE = "case"
    SLICE = "slice"
    ROI = "roi"


CASE = Granularity.CASE
SLICE = Granularity.SLICE
ROI = Granularity.ROI
GRANULARITIES = (CASE, SLICE, ROI)  # what a strategy ranks
PROJECT_GRANULARITIES = (CASE, SLICE)  # what a project is annotated at (ROIs live on slices)

BBox = tuple[tuple[int, int], ...]  # half-open voxel bounds ((k0, k1), (j0, j1), (i0, i1))


@dataclass(frozen=True, order=True)
class QueryItem:
    """A case, a slice ``(case, slice_index)`` or an ROI ``(case, slice_index, class_id)``."""

    case: str
    slice_index: int | None = None
    class_id: int | None = None

    @property
    def region(self) -> QueryItem:
        """The case or slice this item lies in (an ROI's slice; a case or slice itself)."""
        return QueryItem(self.case, self.slice_index)


def item_key(item: QueryItem) -> tuple[str, int, int]:
    """A total order on items of mixed kinds (None sorts before every index)."""
    return (
        item.case,
        -1 if item.slice_index is None else item.slice_index,
        -1 if item.class_id is None else item.class_id,
    )


# ---------------------------------------------------------------------------- scoring needs



class Need(Kind):
    """What a round's scoring must compute before a strategy can rank (its ``needs``)."""

    MODEL = "model"
    MC = "mc"
    FEATURES = "features"
    BOOTSTRAP = "bootstrap"
    VAE = "vae"
    QUALITY = "quality"
    EFFORT = "effort"
    SECONDS = "seconds"  # each case or slice priced in expected seconds of correction


NEED_MODEL = Need.MODEL
NEED_MC = Need.MC
NEED_FEATURES = Need.FEATURES
NEED_BOOTSTRAP = Need.BOOTSTRAP
NEED_VAE = Need.VAE
NEED_QUALITY = Need.QUALITY
NEED_EFFORT = Need.EFFORT
NEED_SECONDS = Need.SECONDS
NEEDS = frozenset(Need)

# ---------------------------------------------------------------------------- score terms

TERM_ENTROPY = "entropy"  # mean voxel entropy of the prediction (nats)
TERM_ENTROPY_MC = "entropy_mc"  # the same of the MC-dropout mean
TERM_MARGIN = "margin"  # minus the mean top-two margin
TERM_MC_TOP = "mc_top"  # mean of the top 0.1 % MC-dropout variances (probability²)
TERM_MC_SUM = "mc_sum"  # their sum over the region
TERM_BOOTSTRAP = "bootstrap"  # variance across bootstrap models
TERM_UNCERTAINTY = "uncertainty"  # a strategy's own score, kept beside the others
TERM_DICE_GAP = "dice_gap"  # dice-per-effort's room for improvement of the class
TERM_EFFORT_PX = "effort_px"  # estimated boundary to trace (px)
TERM_EFFORT_MM = "effort_mm"  # the same in mm
TERM_EFFORT_S = "effort_s"  # the same in seconds (a fitted seconds model)
TERM_EFFORT_PREDICTED_MM = "effort_pred_mm"  # the prediction's outline of an ROI's class minus delineated contact (mm)
TERM_QUALITY_P_POOR = "quality_p_poor"
TERM_QUALITY_P_ADJUST = "quality_p_adjust"
TERM_QUALITY_P_ACCEPTABLE = "quality_p_acceptable"
TERM_QUALITY_CLASS = "quality_class"  # the predicted quality class 0/1/2 (a float: terms are numbers)
TERM_QUALITY_PROB = "quality_prob"  # its probability
TERM_QUALITY_DICE = "quality_dice"  # the predicted Dice the class is the band of
TERM_QUALITY_DICE_LOW = "quality_dice_low"  # the low end of its 80 % interval
TERM_QUALITY_DICE_HIGH = "quality_dice_high"  # the high end
TERM_QUALITY_EXAMPLES = "quality_examples"  # how many predictions of known Dice the rating rests on
TERM_EXPECTED_S = "expected_s"  # expected seconds to review and correct the prediction (pricing.expected_seconds)
TERM_FOREGROUND = "foreground"  # predicted foreground: expected voxels (an ROI: pixels of its class)

UNCERTAINTY_TERMS = (TERM_MC_TOP, TERM_ENTROPY_MC, TERM_ENTROPY, TERM_MARGIN)  # a stored score: the first present

# ---------------------------------------------------------------------------- quality classes

QUALITY_CLASS_NAMES = ("Poor", "Acceptable with adjustments", "Acceptable")  # by class: quality.POOR, ADJUST, ACCEPTABLE
QUALITY_PROBABILITY_TERMS = (TERM_QUALITY_P_POOR, TERM_QUALITY_P_ADJUST, TERM_QUALITY_P_ACCEPTABLE)  # by class

# ---------------------------------------------------------------------------- annotation events



class EventKind(Kind):
    """What an annotation event records (the ``kind`` column of the events table)."""

    MANUAL = "manual"
    CORRECTED = "corrected"
    PSEUDO_ACCEPTED = "pseudo-accepted"
    PSEUDO_REJECTED = "pseudo-rejected"
    # the tools that cut tracing: recorded beside the submit whose label version they went into,
    # with the voxels they set that the annotator kept (their outline is not traced effort)
    INTERPOLATED = "interpolated"  # fill between slices: a class interpolated across slices
    OUTLINE_ACCEPTED = "outline-accepted"  # the model's outline of one class on one slice, one click
    CLICKED = "clicked"  # segment with clicks: one class grown from positive / negative clicks
    UNDO = "undo"  # a submit taken back: its label version's predecessor written again
    IMPORTED = "imported"  # labels found beside a case at creation: who drew them, and when, is unknown


MANUAL = EventKind.MANUAL
CORRECTED = EventKind.CORRECTED
PSEUDO_ACCEPTED = EventKind.PSEUDO_ACCEPTED
PSEUDO_REJECTED = EventKind.PSEUDO_REJECTED
INTERPOLATED = EventKind.INTERPOLATED
OUTLINE_ACCEPTED = EventKind.OUTLINE_ACCEPTED
CLICKED = EventKind.CLICKED
TOOL_KINDS = (INTERPOLATED, OUTLINE_ACCEPTED, CLICKED)
UNDO = EventKind.UNDO
IMPORTED = EventKind.IMPORTED
IMPORTED_ANNOTATOR = "unknown"  # the annotator an imported label version is recorded with
EVENT_KINDS = (MANUAL, CORRECTED, PSEUDO_ACCEPTED, PSEUDO_REJECTED, INTERPOLATED, OUTLINE_ACCEPTED, CLICKED, UNDO,
               IMPORTED)
LABELLING_KINDS = (MANUAL, CORRECTED, PSEUDO_ACCEPTED, IMPORTED)  # the kinds that write a label version
TRACED_KINDS = (MANUAL, CORRECTED)  # the kinds whose seconds time a traced boundary

# ---------------------------------------------------------------------------- labels found at creation



class LabelsAs(Kind):
    """What labels found beside the cases at creation become."""

    ANNOTATIONS = "annotations"  # imported label versions: trainable, counted, never suggested
    GROUND_TRUTH = "ground-truth"  # held back for the simulation's oracle only


LABELS_AS_ANNOTATIONS = LabelsAs.ANNOTATIONS
LABELS_AS_GROUND_TRUTH = LabelsAs.GROUND_TRUTH
LABELS_AS = (LABELS_AS_ANNOTATIONS, LABELS_AS_GROUND_TRUTH)

# ---------------------------------------------------------------------------- simulated annotators



class SimulatedAnnotator(Kind):
    """How the simulation's oracle annotates; also the annotator name its events record."""

    TRACE = "trace"  # paints every outline (or corrects the prefill with the brush)
    CLICKS = "clicks"  # clicks each structure first (simulation.clicker), then paints the rest


TRACE_ANNOTATOR = SimulatedAnnotator.TRACE
CLICK_ANNOTATOR = SimulatedAnnotator.CLICKS
SIMULATED_ANNOTATORS = (TRACE_ANNOTATOR, CLICK_ANNOTATOR)

# `alseg simulate --cohort` without options: both random baselines and one uncertainty engine,
# 3 seeds of 4 rounds of 2 items (1 minute of training each), then the rest finished with the
# last model. Meant for about an hour on a 2-core CPU for a 60-case pool; measured 80 min with
# another benchmark alongside (benchmarks/RESULTS.md).
COHORT_ENGINES = ("random", "random-foreground", "entropy")
COHORT_SEEDS = 3
COHORT_ROUNDS = 4
COHORT_BATCH = 2
COHORT_MINUTES = 1.0
