"""The dock's "class starts / ends on this slice" before a model: the queue follows at once."""

import pytest
import synthetic_cases

from napari_alseg.domain import LABELS_AS_GROUND_TRUTH

pytestmark = pytest.mark.gui


def test_marking_a_range_before_a_model_keeps_the_class_inside_it_in_the_queue(make_napari_viewer_proxy, qtbot,
                                                                                tmp_path):
    from napari_alseg._qt.controller import AlsegController

    source = synthetic_cases.blob_source(tmp_path / "source", granularity="slice", n_cases=1, shape=(12, 32, 32))
    controller = AlsegController(make_napari_viewer_proxy())
    controller.create_project(source, tmp_path / "project", labels_as=LABELS_AS_GROUND_TRUTH)
    try:
        controller.session.use_strategy("dice-per-effort")
        controller.refresh_suggestions()
        assert all("no slice range marked" in s.message for s in controller.suggestions)
        first_core = next(s for s in controller.suggestions if s.item.class_id == 1)
        controller.editor.go(first_core.item)
        qtbot.waitUntil(lambda: controller.editor.editing is not None and not controller.running_jobs,
                        timeout=60_000)
        layer = controller.editor.editing.layer
        layer.selected_label = 1
        held_out = {n for _case, n in controller.session.catalog.validation_items()}
        start, end = [n for n in range(12) if n not in held_out][2:4]
        for step, which in ((start, "first"), (end, "last")):
            controller.viewer.dims.set_current_step(0, step)
            controller.editor.mark_range(which)
        core = [s for s in controller.suggestions if s.item.class_id == 1]
        assert core and all(start <= s.item.slice_index <= end for s in core)  # no rescore, no retrain needed
        assert controller.suggestions[0].item.class_id == 1
        assert f"marked slices {start}–{end}" in controller.suggestions[0].message
    finally:
        qtbot.waitUntil(lambda: not controller.running_jobs, timeout=60_000)
        controller.close_project()
