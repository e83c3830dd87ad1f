"""napari sample-data contribution: the generated sample sets as layers.

Sets are generated on first use into the user's cache (see :mod:`napari_alseg.samples`),
so the first open takes a few seconds and later ones are instant.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._reader import LayerData, layer_name, volume_layer_data
from .nifti import load_volume, looks_like_label_name


def brain_stack() -> list[LayerData]:
    from .samples import sample_dir

    return case_layers(sample_dir("brain-stack") / "stack")


def tumour_case() -> list[LayerData]:
    from .samples import sample_dir

    return case_layers(sample_dir("tumour-cases") / "case_000")


def case_layers(case_dir: Path) -> list[LayerData]:
    """All channels of one case as Image layers (first one visible), then its labels."""
    files = sorted(p for p in case_dir.iterdir() if p.name.endswith((".nii", ".nii.gz")))
    channels = [p for p in files if not looks_like_label_name(p)]
    labels = [p for p in files if looks_like_label_name(p)]
    colors = class_colors(case_dir.parent / "classes.json")
    layers = [
        volume_layer_data(load_volume(p, as_label=False), layer_name(p), source=str(p), visible=i == 0)
        for i, p in enumerate(channels)
    ]
    layers += [
        volume_layer_data(load_volume(p, as_label=True), layer_name(p), source=str(p), colors=colors)
        for p in labels
    ]
    return layers


def class_colors(classes_json: Path) -> dict[int, tuple[float, ...]]:
    """Class id → RGBA in 0–1 from a set's ``classes.json`` (empty when absent)."""
    if not classes_json.exists():
        return {}
    classes = json.loads(classes_json.read_text())
    return {
        int(key): tuple(c / 255 for c in entry["color"]) + (1.0,)
        for key, entry in classes.items()
        if int(key) != 0 and "color" in entry
    }
