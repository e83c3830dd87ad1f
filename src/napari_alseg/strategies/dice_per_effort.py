"""Suggestive ROI annotation: most Dice to gain per boundary to trace (docs/METHODS.md §7.5, Atzeni et al.).

Query ``argmax_{n,c} (1 - D̃_c) / R_nc`` over ROI items (case, slice n, class c):
``D̃_c = α D_c(T-1) + (1-α) D_c(T-2)`` (α = 0.5) from the per-round Dice on the manual labels of
class c, and ``R_nc`` the remaining boundary (mm) of c on slice n from the running
:class:`~napari_alseg.effort.matrix.EffortModel`: boundaries shared with classes already
delineated on n are free, so a small ROI beside labelled neighbours is cheap.

``dice-per-effort`` prices an ROI with the model's ``predicted`` estimator (a prior for
classes not yet delineated, empty delineations not counted as outlines, and the current
prediction's own outline blended in as the model matures); ``dice-per-effort-paper`` with
the paper's ``B`` as published, so the benchmark can compare the two. Neither shows an
effort the data cannot support: where there is none, the suggestion carries no effort
terms and its message says "effort unknown" (the ranking then uses the Dice gap alone,
or for the paper's estimator its 0.001 mm floor, as published).

Before a model nothing predicts where a structure is, so an ROI's class may be absent from
its slice (issue 22: pallidum asked on a slice without any). Outside a class's marked slice
range (the weak annotation of docs/METHODS.md §7.1) it is never a candidate; an ROI inside
that range, or between two slices where the class is traced, is asked first; an ROI of a
class with no range marked in its case and nothing traced around it is asked only after
those, and its message says why and how to avoid it (mark the slices the structure spans).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..domain import (
    NEED_EFFORT, ROI, TERM_DICE_GAP, TERM_EFFORT_MM, TERM_EFFORT_PREDICTED_MM, TERM_EFFORT_PX,
    TERM_EFFORT_S, TERM_FOREGROUND,
)
from ..effort.matrix import DEFAULT_ESTIMATOR, ESTIMATOR_PAPER, EffortEstimate, Estimator
from ..errors import AlsegError
from ..uncertainty import dice_gap
from .base import QueryItem, Strategy, Suggestion, rank, suggestion
from .context import SelectionContext

if TYPE_CHECKING:
    from ..pool import PoolScores

ALPHA = 0.5
KNOWN_DICE = 0.5  # a class the model segments this well (latest round's Dice) ...
ABSENT_PIXELS = 1.0  # ... and expects on fewer pixels of a slice than this is taken as absent there
UNLIKELY_SHARE = 0.05  # any class expected on under this share of its median slice's pixels: asked last


def select_dice_per_effort(pool: PoolScores, k: int, seed: int, context: SelectionContext, alpha: float = ALPHA,
                           estimator: Estimator = DEFAULT_ESTIMATOR) -> list[Suggestion]:
    """The k ROIs with the largest ``(1 - D̃_c) / R_nc``, ``R_nc`` by ``estimator``
    (:data:`~napari_alseg.effort.matrix.ESTIMATORS`).

    The effort model, the seconds model, the Dice history and the marked ranges come from the
    session's ``context``. Terms: ``dice_gap`` (1 - D̃_c), ``effort_mm`` (R_nc), ``effort_px``
    (R_nc over the geometric-mean pixel size, exact for square pixels) and ``effort_s`` when the
    context has a fitted :class:`~napari_alseg.effort.seconds.SecondsModel`; the effort terms only where
    the estimate is supported (else the message says "effort unknown" and why). An item
    whose class is not in ``C_n`` (R_nc = 0) is not queryable and gets NaN, ranked last; so is
    one whose class the model knows (:func:`known_classes`) and expects on fewer than
    :data:`ABSENT_PIXELS` pixels of the slice (``foreground``, once a model exists).
    With no supported estimate the score is the Dice gap alone (every ROI is then unknown
    alike: nothing has been delineated).

    With a model, equal scores go first where the model expects most of the class
    (``foreground``, Σ p_c over the slice), and ROIs where it expects almost none of it
    (:func:`_unlikely_here`) come after the others with a score. Before a model (``pool.has_model`` False), ROIs
    whose class is vouched for on their slice (:func:`presence_note`) come first, each group
    by its score, then the others.
    """
    if context.effort is None:
        raise AlsegError(f"{NAME} prices ROIs with the session's effort model, and this ranking has none")
    effort = context.effort
    gaps = class_dice_gaps(context.class_dice_history, pool.n_classes, alpha)
    known = known_classes(context.class_dice_history, pool.n_classes)
    delineated = _delineated_classes(pool)
    scores: dict[QueryItem, float] = {}
    terms: dict[QueryItem, dict[str, float]] = {}
    messages: dict[QueryItem, str] = {}
    estimates: dict[QueryItem, EffortEstimate] = {}
    expected = {item: pool.terms.get(item, {}).get(TERM_FOREGROUND, math.nan) for item in pool.candidates}
    for item in pool.candidates:
        slice_index, class_id = _slice_and_class(item)
        region = (item.case, slice_index)
        allowed = pool.allowed.get(region, set(range(pool.n_classes)))
        on_slice = delineated.get(region, set())
        predicted = pool.terms.get(item, {}).get(TERM_EFFORT_PREDICTED_MM)
        estimate = effort.estimate(class_id, on_slice, allowed, predicted, estimator)
        gap = float(gaps[class_id])
        ranking_mm = estimate.mm
        if ranking_mm is None and estimator == ESTIMATOR_PAPER:
            ranking_mm = float(effort.remaining_effort(on_slice, allowed, ESTIMATOR_PAPER)[class_id])
        if ranking_mm is None:
            scores[item] = gap
        else:
            scores[item] = gap / ranking_mm if ranking_mm > 0 else math.nan
        terms[item] = _effort_terms(context, item, gap, estimate)
        estimates[item] = estimate
        messages[item] = "" if estimate.mm is not None else f"effort {estimate.source}"
        if item.class_id in known and expected[item] < ABSENT_PIXELS:
            scores[item] = math.nan  # asked last: the model knows the class and sees none of it here
            messages[item] = "the model, which knows this class, sees none of it on this slice"
    order = rank(scores, seed, then=expected if pool.has_model else None)
    if pool.has_model:
        _note_ties(scores, expected, messages)
        unlikely = _unlikely_here(pool.candidates, expected, messages)
        order = _first_then_rest(order, scores, {item for item in pool.candidates if item not in unlikely})
    else:
        vouched = set()
        for item in pool.candidates:
            is_vouched, note = presence_note(context, item)
            messages[item] = "; ".join(part for part in (note, messages[item]) if part)
            if is_vouched:
                vouched.add(item)
        order = _first_then_rest(order, scores, vouched)
    name = PAPER_NAME if estimator == ESTIMATOR_PAPER else NAME
    return [suggestion(pool, item, scores[item], name, terms[item], messages[item],
                       effort_guess=estimates[item].mm is not None and estimates[item].guess) for item in order[:k]]


def _first_then_rest(order: list[QueryItem], scores: dict[QueryItem, float],
                     first: set[QueryItem]) -> list[QueryItem]:
    """``order`` regrouped, each group in its order: the scored items in ``first``, the other
    scored items, then those with a NaN score (not queryable), last whatever the group."""
    scored = [item for item in order if math.isfinite(scores[item])]
    return ([item for item in scored if item in first] + [item for item in scored if item not in first]
            + [item for item in order if not math.isfinite(scores[item])])


def _unlikely_here(candidates: list[QueryItem], expected: dict[QueryItem, float],
                   messages: dict[QueryItem, str]) -> set[QueryItem]:
    """ROIs where the model expects under :data:`UNLIKELY_SHARE` of the class's median expected
    pixels (``Σ p_c`` over the candidates' slices), and the message saying so.

    A class the model has not learnt is priced at the prior's effort where it predicts none of
    it, so the highest scores went to the stack's end slices, with 2 px of pallidum expected
    (issue 22 item 8). Even a young model's soft mass tracks roughly where a structure is: such
    ROIs are asked after the others, not dropped."""
    by_class: dict[int | None, list[float]] = {}
    for item in candidates:
        if math.isfinite(expected[item]):
            by_class.setdefault(item.class_id, []).append(expected[item])
    typical = {class_id: float(np.median(values)) for class_id, values in by_class.items()}
    unlikely = set()
    for item in candidates:
        median = typical.get(item.class_id, 0.0)
        if median > 0 and expected[item] < UNLIKELY_SHARE * median:
            unlikely.add(item)
            _add_note(messages, item, f"the model expects almost none of the class here ({expected[item]:.0f} px "
                                      f"against {median:.0f} on its median slice): asked after the others")
    return unlikely


def _note_ties(scores: dict[QueryItem, float], expected: dict[QueryItem, float],
               messages: dict[QueryItem, str]) -> None:
    """Say why tied ROIs come in the order they do. A class never outlined is priced at the
    prior's effort on every slice, so its ROIs tie (issue 22: a queue of one score); the
    model's expected pixels of the class (``Σ p_c``) then put the likeliest slices first."""
    counts: dict[float, int] = {}
    for score in scores.values():
        if math.isfinite(score):
            counts[score] = counts.get(score, 0) + 1
    for item, score in scores.items():
        if counts.get(score, 0) > 1 and math.isfinite(expected[item]):
            _add_note(messages, item, "ties on score: first where the model expects most of the class "
                                      f"({_pixels(expected[item])} px here)")


def _add_note(messages: dict[QueryItem, str], item: QueryItem, note: str) -> None:
    messages[item] = "; ".join(part for part in (messages[item], note) if part)


def _pixels(count: float) -> str:
    """Expected pixels as read: tenths below 10 (a young model's 0.3 px is not "0")."""
    return f"{count:.1f}" if count < 10 else f"{count:.0f}"


def presence_note(context: SelectionContext, item: QueryItem) -> tuple[bool, str]:
    """Before a model: is the ROI's class known to be on its slice, and the message saying why.

    Known: the slice lies in the range the annotator marked for the class in this case, or
    between the first and last slice where the class is traced (structures are contiguous
    along the stack). Otherwise the class may be absent there, and the message says so.
    """
    slice_index, class_id = _slice_and_class(item)
    key = (item.case, class_id)
    marked = context.class_ranges.get(key)
    if marked is not None and marked[0] <= slice_index <= marked[1]:
        return True, f"before a model: inside the class's marked slices {marked[0]}–{marked[1]}"
    if marked is not None:
        return False, f"outside the class's marked slices {marked[0]}–{marked[1]}"
    traced = context.traced_spans.get(key)
    if traced is not None and traced[0] < slice_index < traced[1]:
        return True, f"before a model: between slices {traced[0]} and {traced[1]}, where the class is traced"
    return False, ("before a model: no slice range marked for this class in this case, so it may be absent "
                   "here; asked after the ROIs inside a marked range (mark the slices it starts and ends on)")


def select_dice_per_effort_paper(pool: PoolScores, k: int, seed: int, context: SelectionContext) -> list[Suggestion]:
    """:func:`select_dice_per_effort` with the paper's ``B`` (docs/METHODS.md §7.4 as published)."""
    return select_dice_per_effort(pool, k, seed, context, estimator=ESTIMATOR_PAPER)


def class_dice_gaps(history: Sequence[np.ndarray], n_classes: int, alpha: float = ALPHA) -> np.ndarray:
    """``1 - D̃_c`` per class id ``(C,)`` (index 0, background, is 1 and never queried).

    ``history`` holds one ``(C-1,)`` array per round, classes 1..C-1 as
    :func:`napari_alseg.metrics.dice_per_class` returns them; NaN (class absent that
    round) is skipped, so a class keeps its last two measured rounds.
    """
    gaps = np.ones(n_classes)
    for round_dice in history:
        if np.shape(round_dice) != (n_classes - 1,):
            raise AlsegError(
                f"class Dice history entries must have {n_classes - 1} values (classes 1..{n_classes - 1}), "
                f"got shape {np.shape(round_dice)}"
            )
    for class_id in range(1, n_classes):
        measured = [float(d[class_id - 1]) for d in history if np.isfinite(d[class_id - 1])]
        gaps[class_id] = dice_gap(measured, alpha)
    return gaps


def known_classes(history: Sequence[np.ndarray], n_classes: int) -> set[int]:
    """Classes whose latest measured Dice is at least :data:`KNOWN_DICE`: where such a model
    expects none of the class on a slice, an ROI there would most likely be empty (issue 22:
    "slice 35 · CSF" with no CSF on it). A class the model has not learnt keeps its place,
    whatever it predicts: that is where labels teach it most."""
    known = set()
    for class_id in range(1, n_classes):
        measured = [float(d[class_id - 1]) for d in history if np.isfinite(d[class_id - 1])]
        if measured and measured[-1] >= KNOWN_DICE:
            known.add(class_id)
    return known


def _slice_and_class(item: QueryItem) -> tuple[int, int]:
    """An ROI's slice and class (this engine ranks ROIs only)."""
    if item.slice_index is None or item.class_id is None:
        raise AlsegError(f"{NAME} ranks ROIs, not {item}")
    return item.slice_index, item.class_id


def _delineated_classes(pool: PoolScores) -> dict[tuple[str, int], set[int]]:
    """``A_n``: classes already delineated per (case, slice), from the labelled ROI items."""
    delineated: dict[tuple[str, int], set[int]] = {}
    for item in pool.labelled:
        if item.slice_index is not None and item.class_id is not None:
            delineated.setdefault((item.case, item.slice_index), set()).add(item.class_id)
    return delineated


def _effort_terms(context: SelectionContext, item: QueryItem, gap: float,
                  estimate: EffortEstimate) -> dict[str, float]:
    terms = {TERM_DICE_GAP: float(gap)}
    if estimate.mm is None:
        return terms
    row_mm, col_mm = context.spacing.get(item.case, (1.0, 1.0))
    effort_px = estimate.mm / math.sqrt(row_mm * col_mm)
    terms.update({TERM_EFFORT_MM: estimate.mm, TERM_EFFORT_PX: effort_px})
    _, class_id = _slice_and_class(item)
    seconds = None if context.seconds_model is None else context.seconds_model.predict(class_id, effort_px)
    if seconds is not None:
        terms[TERM_EFFORT_S] = seconds
    return terms


NAME = "dice-per-effort"
PAPER_NAME = "dice-per-effort-paper"
DICE_PER_EFFORT = Strategy(
    name=NAME,
    granularity=ROI,
    description=("ROI with the most Dice to gain per boundary to trace, (1 - D̃_c) / R_nc (docs/METHODS.md §7.5); "
                 "effort from B with a prior for unseen classes, blended with the prediction's own outline."),
    needs=frozenset({NEED_EFFORT}),
    select=select_dice_per_effort,
    granularities=frozenset({ROI}),
)

DICE_PER_EFFORT_PAPER = Strategy(
    name=PAPER_NAME,
    granularity=ROI,
    description="dice-per-effort with the paper's B as published (ε-prior towards 0, 0.001 mm floor): to compare.",
    needs=frozenset({NEED_EFFORT}),
    select=select_dice_per_effort_paper,
    granularities=frozenset({ROI}),
)
