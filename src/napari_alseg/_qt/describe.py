"""Words for what the dock shows: a query item, a predicted quality, a suggestion's numbers.

:func:`describe` and :func:`model_text` return Qt rich text: every name in them that comes
from files (case, class, engine, model version, messages) is escaped (:func:`rich`), so a
case called ``<img src=…>`` is shown as written, never interpreted.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import domain
from ..domain import QueryItem
from ..metrics import VAL_DICE_PER_CLASS, per_class
from ..quality import QualityEstimate
from ..strategies import Suggestion

SHOWN_TERMS = {domain.TERM_MC_TOP: "uncertainty (MC top 0.1 %)", domain.TERM_ENTROPY: "entropy",
               domain.TERM_MARGIN: "top-two margin (small: unsure)", domain.TERM_DICE_GAP: "Dice gap 1−D̃",
               domain.TERM_EFFORT_PX: "effort px", domain.TERM_EFFORT_MM: "effort mm",
               domain.TERM_EFFORT_S: "est. seconds"}  # quality: its class, probability and basis together

SHOWN_NEGATED = {domain.TERM_MARGIN}  # stored negated so that larger ranks first; shown as the margin itself
EFFORT_TERMS = (domain.TERM_EFFORT_PX, domain.TERM_EFFORT_MM, domain.TERM_EFFORT_S)
EFFORT_GUESS_NOTE = " <i>(a guess: no outline of this class traced yet; the typical outline so far)</i>"
# a case's or slice's remaining effort: R_nc (docs/METHODS.md §7.4) summed over its open (slice, class) pairs
EFFORT_REGION_NOTE = " <i>(typical outlines of this data, per slice and class still open; not read from this item)</i>"


def rich(text: object) -> str:
    """Plain text made safe inside Qt rich text: ``<``, ``>``, ``&`` and quotes escaped."""
    return html.escape(str(text), quote=True)


def number_text(value: float) -> str:
    """A number as a person reads it: whole with thousands separators from 100 up (36,058, not
    3.61e+04), else three significant figures (0.434, 0.00245)."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def count_text(count: int, noun: str) -> str:
    """``1 case``, ``12 cases``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def item_text(item: QueryItem, class_names: Sequence[str]) -> str:
    parts = [item.case]
    if item.slice_index is not None:
        parts.append(f"slice {item.slice_index}")
    if item.class_id is not None:
        parts.append(class_names[item.class_id])
    return " · ".join(parts)


def class_name(class_names: Sequence[str], class_id: int) -> str:
    """The class's name, or ``class N`` for an id the project does not name."""
    return class_names[class_id] if 0 <= class_id < len(class_names) else f"class {class_id}"


def short_item_text(item: QueryItem, class_names: Sequence[str]) -> str:
    """The item in a narrow column: ``case · s12 · core`` (the full words are in the tooltip)."""
    parts = [item.case]
    if item.slice_index is not None:
        parts.append(f"s{item.slice_index}")
    if item.class_id is not None:
        parts.append(class_names[item.class_id])
    return " · ".join(parts)


def quality_text(quality: QualityEstimate | None) -> str:
    """The rating's class in words ("" when not rated)."""
    return "" if quality is None else quality.class_name


def quality_detail(quality: QualityEstimate) -> str:
    """`` (Dice 0.72, 80 % 0.55–0.88, from 9 rated predictions)``: the predicted Dice, its 80 %
    interval and what it rests on."""
    parts = [f"Dice {quality.dice:.2f}, 80 % {quality.low:.2f}–{quality.high:.2f}"]
    if quality.examples is not None:
        parts.append(f"from {quality.examples} rated prediction{'s' if quality.examples != 1 else ''}")
    return f" ({', '.join(parts)})"


def describe(suggestion: Suggestion, class_names: Sequence[str]) -> str:
    """The suggestion and the numbers behind it, for the annotator to judge (rich text)."""
    terms = suggestion.terms
    lines = [f"<b>{rich(item_text(suggestion.item, class_names))}</b> — {rich(suggestion.strategy)}, "
             f"score {suggestion.score:.4g}"]
    effort_note = (EFFORT_GUESS_NOTE if suggestion.effort_guess else
                   EFFORT_REGION_NOTE if suggestion.item.class_id is None else "")
    for key, label in SHOWN_TERMS.items():
        value = terms.get(key)
        if value is not None and np.isfinite(value):
            note = effort_note if key in EFFORT_TERMS else ""
            effort_note = "" if note else effort_note  # said once, on the first effort line
            lines.append(f"{label}: {number_text(-value if key in SHOWN_NEGATED else value)}{note}")
    if suggestion.quality is not None:
        lines.append(f"predicted quality: {quality_text(suggestion.quality)}{quality_detail(suggestion.quality)}")
    if suggestion.message:
        lines.append(f"<i>{rich(suggestion.message)}</i>")
    return "<br>".join(lines)


def model_text(version: str | None, metrics: Mapping[str, Any], class_names: Sequence[str]) -> str:
    """The active model and its validation Dice (overall, then per class by the classes' names now)."""
    if version is None:
        return "No model yet."
    if "val_dice" not in metrics:  # e.g. an initial model from another project
        return f"Active model <b>{rich(version)}</b> · no validation Dice on this project yet"
    dice = per_class(metrics, VAL_DICE_PER_CLASS, len(class_names))
    shown = [f"{rich(class_name(class_names, class_id))} {value:.2f}"
             for class_id, value in enumerate(dice, start=1) if np.isfinite(value)]
    return (f"Active model <b>{rich(version)}</b> · validation Dice "
            f"{metrics.get('val_dice', float('nan')):.3f}<br>{', '.join(shown)}")
