"""Annotation effort (docs/METHODS.md §7): what an annotator traces and how long it takes.

``boundary``: traced boundary lengths of masks and slices (marching squares, in px and mm);
``matrix``: the boundary-effort matrix ``B`` and the remaining effort ``R`` of an ROI;
``seconds``: the fitted seconds model (seconds per traced px and per click).
"""

# Kept for the importers that other work in progress held when the package was split (pool.py,
# scoring/request.py, strategies/dice_per_effort.py, simulation/measure.py, three tests) until they
# import from the modules themselves:
from .boundary import boundary_length, roi_trace_length, slice_trace_length
from .matrix import DEFAULT_ESTIMATOR, ESTIMATOR_PAPER, EffortEstimate, EffortModel, Estimator
from .seconds import SecondsModel

__all__ = ["DEFAULT_ESTIMATOR", "ESTIMATOR_PAPER", "EffortEstimate", "EffortModel", "Estimator", "SecondsModel",
           "boundary_length", "roi_trace_length", "slice_trace_length"]
