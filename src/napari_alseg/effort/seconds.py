"""Annotation time from traced length and clicks: a line per class fitted to the
annotator's own timed submits, with the cost of a click fitted once enough are timed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import AlsegError

# s per click of segment with clicks: an assumption (not measured), replaced by the cost fitted
# from the annotator's own timing once MIN_CLICK_SUBMITS submits with clicks are timed
CLICK_SECONDS_PRIOR = 3.0
MIN_CLICK_SUBMITS = 3  # timed submits with clicks before the cost of a click is fitted


@dataclass(frozen=True)
class SecondsModel:
    """Annotation time ``seconds ≈ a + b · length_px + c · clicks``, fitted from timing events.

    ``per_class`` holds ``(a, b)`` for classes with at least 3 events; the others use the
    ``pooled`` fit over all events, which is ``None`` with fewer than 2 events.
    ``click_seconds`` is ``c``, the seconds a click of segment with clicks costs: the prior
    :data:`CLICK_SECONDS_PRIOR` until :data:`MIN_CLICK_SUBMITS` timed submits with clicks
    exist, then fitted (``click_seconds_fitted``).
    """

    per_class: dict[int, tuple[float, float]]
    pooled: tuple[float, float] | None
    click_seconds: float = CLICK_SECONDS_PRIOR
    click_seconds_fitted: bool = False

    @classmethod
    def fit(
        cls, class_ids: Iterable[int], lengths_px: Iterable[float], seconds: Iterable[float],
        clicks: Iterable[int] | None = None,
    ) -> SecondsModel:
        """Least-squares fits from parallel sequences, one entry per timed delineation (a
        submit); ``clicks``: the clicks of each (None: none). The lines are fitted on the
        seconds less ``c`` per click."""
        class_ids = np.asarray(list(class_ids), dtype=int)
        lengths_px = np.asarray(list(lengths_px), dtype=float)
        seconds = np.asarray(list(seconds), dtype=float)
        clicks = np.zeros_like(seconds) if clicks is None else np.asarray(list(clicks), dtype=float)
        if not class_ids.shape == lengths_px.shape == seconds.shape == clicks.shape:
            raise AlsegError("class_ids, lengths_px, seconds and clicks differ in length")
        if not (np.isfinite(lengths_px).all() and np.isfinite(seconds).all() and np.isfinite(clicks).all()):
            raise AlsegError("timing events contain NaN or infinite values")
        fitted = _click_seconds(lengths_px, seconds, clicks)
        per_click = CLICK_SECONDS_PRIOR if fitted is None else fitted
        seconds = seconds - per_click * clicks
        pooled = _line_fit(lengths_px, seconds) if len(seconds) >= 2 else None
        per_class = {
            int(c): _line_fit(lengths_px[class_ids == c], seconds[class_ids == c])
            for c in np.unique(class_ids)
            if np.count_nonzero(class_ids == c) >= 3
        }
        return cls(per_class=per_class, pooled=pooled, click_seconds=per_click,
                   click_seconds_fitted=fitted is not None)

    def predict(self, class_id: int, length_px: float, clicks: int = 0) -> float | None:
        """Seconds (≥ 0) to trace ``length_px`` of class ``class_id`` and make ``clicks``
        clicks; None when unfitted."""
        line = self.per_class.get(int(class_id), self.pooled)
        if line is None:
            return None
        intercept, slope = line
        return max(0.0, intercept + slope * float(length_px) + self.click_seconds * float(clicks))


def _click_seconds(lengths_px: np.ndarray, seconds: np.ndarray, clicks: np.ndarray) -> float | None:
    """Seconds per click, clipped at 0: least squares of the residual ``seconds - (a + b·px)`` on
    the clicks' own residual from a line in px (Frisch-Waugh: ``c`` of the joint fit ``a + b·px +
    c·clicks``, so clicks that come with long outlines are not charged their tracing). None with
    fewer than :data:`MIN_CLICK_SUBMITS` submits with clicks, or clicks a line in px explains."""
    if np.count_nonzero(clicks) < MIN_CLICK_SUBMITS:
        return None
    line = np.column_stack([np.ones_like(lengths_px), lengths_px])
    residual_clicks = clicks - line @ np.linalg.lstsq(line, clicks, rcond=None)[0]
    spread = float(residual_clicks @ residual_clicks)
    if spread <= 1e-9 * float(clicks @ clicks):
        return None
    residual_seconds = seconds - line @ np.linalg.lstsq(line, seconds, rcond=None)[0]
    return max(0.0, float(residual_seconds @ residual_clicks) / spread)


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of ``y ≈ a + b x`` with ``a, b >= 0``: a longer outline never takes less time.
    With one distinct x the slope is 0 and a = mean(y). A negative least-squares slope (two
    timings, the longer outline traced faster) gives way to the line through the origin
    (b = Σxy / Σx²); a negative intercept to the same (the slope alone carries the time)."""
    if np.ptp(x) == 0:
        return max(float(y.mean()), 0.0), 0.0
    slope, intercept = np.polyfit(x, y, 1)
    if slope < 0 or intercept < 0:
        return 0.0, max(float((x * y).sum() / max((x * x).sum(), 1e-12)), 0.0)
    return float(intercept), float(slope)
