"""Annotation effort (docs/METHODS.md §7): what an annotator traces and how long it takes.

``boundary``: traced boundary lengths of masks and slices (marching squares, in px and mm);
``matrix``: the boundary-effort matrix ``B`` and the remaining effort ``R`` of an ROI;
``seconds``: the fitted seconds model (seconds per traced px and per click).
"""

