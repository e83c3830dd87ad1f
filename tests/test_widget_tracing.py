"""The tools that cut tracing in the dock: fill between slices, the model's outline, undo."""

import numpy as np
import pytest

from napari_alseg.domain import INTERPOLATED, MANUAL, OUTLINE_ACCEPTED, UNDO
from test_widget import idle, no_jobs, tumour_source, widget  # noqa: F401 (fixtures)

pytestmark = pytest.mark.gui


def disc(shape, radius):
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return (rows - shape[0] // 2) ** 2 + (cols - shape[1] // 2) ** 2 <= radius ** 2


def open_first(widget, qtbot):
    widget.annotate_tab.go_button.click()
    qtbot.waitUntil(lambda: idle(widget), timeout=60_000)
    return widget.controller.editor.editing


def test_fill_between_slices_shows_the_fill_and_submits_it_as_interpolated(widget, qtbot):
    session = widget.controller.session
    editing = open_first(widget, qtbot)
    layer = editing.layer
    data = np.zeros_like(layer.data)
    plane = data.shape[1:]
    data[10][disc(plane, 3)] = 1
    data[16][disc(plane, 6)] = 1
    layer.data = data.copy()
    layer.selected_label = 1
    widget.annotate_tab.fill_button.click()
    filled = np.array(layer.data)
    areas = [int((filled[k] == 1).sum()) for k in range(10, 17)]  # radius 3 -> 6: growing discs
    assert areas == sorted(areas) and areas[1] > 0 and areas[-2] < areas[-1]
    assert (filled[:10] == 0).all() and (filled[17:] == 0).all()
    assert [edit.kind for edit in editing.tools] == [INTERPOLATED]
    layer.undo()  # napari's Ctrl+Z takes the fill back as one step, and redo gives it again
    assert (np.asarray(layer.data) == data).all()
    layer.redo()
    assert (np.asarray(layer.data) == filled).all()

    widget.annotate_tab.submit_button.click()
    manual, interpolated = session.catalog.events()
    assert manual.kind == MANUAL and interpolated.kind == INTERPOLATED
    assert interpolated.voxels == int((filled != data).sum())
    traced = session.accounting.boundary_effort(manual.case, data)
    assert manual.boundary_mm == pytest.approx(traced.mm)  # the filled outline is not traced effort
    assert (session.catalog.current_labels(manual.case).data == filled).all()


def test_accept_the_models_outline_on_the_slice_shown(widget, qtbot, monkeypatch):
    from napari_alseg.session.learner import Learner

    session = widget.controller.session
    editing = open_first(widget, qtbot)
    layer = editing.layer
    prediction = np.zeros(layer.data.shape[1:], layer.data.dtype)
    prediction[disc(prediction.shape, 5)] = 2
    monkeypatch.setattr(Learner, "model_version", property(lambda self: "v0001"))
    monkeypatch.setattr(session, "predict_labels", lambda case, slice_index=None, **_: prediction)
    shown = int(widget.viewer.dims.current_step[0])
    layer.selected_label = 2
    widget.annotate_tab.outline_button.click()
    qtbot.waitUntil(lambda: no_jobs(widget) and len(editing.tools) == 1, timeout=60_000)
    assert ((np.asarray(layer.data)[shown] == 2) == (prediction == 2)).all()
    monkeypatch.undo()  # no model again: the next Go does not predict
    widget.annotate_tab.submit_button.click()
    kinds = [(e.kind, e.slice_index, e.class_id, e.voxels) for e in session.catalog.events()]
    assert kinds[-1] == (OUTLINE_ACCEPTED, shown, 2, int((prediction == 2).sum()))


def test_accepting_an_outline_already_in_the_labels_is_an_info_line_not_an_error(widget, qtbot, monkeypatch):
    """Correct mode prefills the model's outline: accepting it again adds nothing, and says so."""
    from napari_alseg.session.learner import Learner

    shown, said = [], []
    monkeypatch.setattr("napari_alseg._widget.show_error", shown.append)
    widget.controller.info.connect(said.append)
    editing = open_first(widget, qtbot)
    layer = editing.layer
    prediction = np.zeros(layer.data.shape[1:], layer.data.dtype)
    prediction[disc(prediction.shape, 5)] = 2
    monkeypatch.setattr(Learner, "model_version", property(lambda self: "v0001"))
    monkeypatch.setattr(widget.controller.session, "predict_labels", lambda case, slice_index=None, **_: prediction)
    shown_slice = int(widget.viewer.dims.current_step[0])
    data = np.asarray(layer.data).copy()
    data[shown_slice][prediction == 2] = 2  # as the prefill left it
    layer.data = data
    layer.selected_label = 2
    widget.annotate_tab.outline_button.click()
    qtbot.waitUntil(lambda: no_jobs(widget) and len(said) == 1, timeout=60_000)
    assert shown == [] and editing.tools == [] and (np.asarray(layer.data) == data).all()
    assert said[-1].endswith(f"on slice {shown_slice} is already in the labels: nothing to add.")
    layer.selected_label = 1  # a class the model does not predict here
    widget.annotate_tab.outline_button.click()
    qtbot.waitUntil(lambda: no_jobs(widget) and len(said) == 2, timeout=60_000)
    assert shown == [] and "predicts no" in said[-1]


def test_hovering_the_labels_shows_the_class_name(widget, qtbot):
    editing = open_first(widget, qtbot)
    layer, names = editing.layer, widget.controller.session.catalog.class_names
    k = int(widget.viewer.dims.current_step[0])
    layer.paint((k, 20, 20), 2, refresh=True)
    assert list(layer.features["class"]) == list(names)
    assert names[2] in str(layer.get_status((k, 20, 20))["coordinates"])
    widget.controller.update_class(2, name="rim")
    assert "rim" in str(editing.layer.get_status((k, 20, 20))["coordinates"])


def test_undo_restores_the_previous_version_then_unlabels_and_an_undo_without_one_is_one_line(
        widget, qtbot, monkeypatch):
    shown, said = [], []
    monkeypatch.setattr("napari_alseg._widget.show_error", shown.append)
    session, controller = widget.controller.session, widget.controller
    controller.info.connect(said.append)
    editing = open_first(widget, qtbot)
    item, layer = editing.item, editing.layer
    first = np.zeros_like(layer.data)
    first[12][disc(first.shape[1:], 4)] = 1
    layer.data = first
    widget.annotate_tab.submit_button.click()
    qtbot.waitUntil(lambda: idle(widget), timeout=60_000)  # on to the next suggestion

    controller.editor.go(item)
    qtbot.waitUntil(lambda: idle(widget) and controller.editor.editing.item == item, timeout=60_000)
    second = np.array(controller.editor.editing.layer.data)
    second[20][disc(second.shape[1:], 6)] = 2
    controller.editor.editing.layer.data = second
    widget.annotate_tab.submit_button.click()
    qtbot.waitUntil(lambda: idle(widget), timeout=60_000)
    assert session.catalog.current_labels(item.case).version == 2

    widget.annotate_tab.undo_button.click()
    restored = session.catalog.current_labels(item.case)
    assert restored.version == 3 and (restored.data == session.catalog.labels_at(item.case, 1).data).all()
    assert session.catalog.events(item.case)[-1].kind == UNDO
    qtbot.waitUntil(lambda: idle(widget) and controller.editor.editing.item == item, timeout=60_000)
    assert (np.asarray(controller.editor.editing.layer.data) == restored.data).all()  # shown again

    controller.tracing.last_submitted = item  # the case's first submit is the one left to take back
    widget.annotate_tab.undo_button.click()
    assert session.catalog.current_labels(item.case) is None  # unlabelled again, history kept
    assert session.catalog.labels_at(item.case, 1) is not None and "unlabelled again" in said[-1]
    assert not np.asarray(controller.editor.editing.layer.data).any()
    assert item.case in {s.item.case for s in session.suggest(50)}  # back in the queue

    widget.annotate_tab.undo_button.click()
    assert shown == [f"case {item.case}: nothing submitted to undo"]


def test_the_effort_tab_adds_up_after_submits(widget, qtbot):
    session = widget.controller.session
    for _ in range(2):
        editing = open_first(widget, qtbot)
        data = np.array(editing.layer.data)
        data[12][disc(data.shape[1:], 5)] = 1
        data[14][disc(data.shape[1:], 7)] = 2
        editing.layer.data = data
        widget.annotate_tab.submit_button.click()
        qtbot.waitUntil(lambda: idle(widget), timeout=60_000)
    table = widget.effort_tab.effort_table
    assert table.rowCount() == 0 and widget.effort_tab.stale  # hidden: not summed after each submit
    widget.show()
    widget.tabs.setCurrentWidget(widget.effort_tab)  # summed when the tab is shown
    qtbot.waitUntil(lambda: table.rowCount() > 0)
    rows = {table.item(r, 0).text(): [table.item(r, c).data(0) for c in range(1, 5)]
            for r in range(table.rowCount())}
    total = rows.pop("all classes")
    for column in range(3):
        assert total[column] == pytest.approx(sum(row[column] for row in rows.values()), abs=0.01)
    assert total[0] == pytest.approx(sum(e.boundary_mm for e in session.catalog.events()), abs=0.01)
    names = session.catalog.class_names
    assert rows[names[1]][0] > 0 and rows[names[2]][0] > 0  # whole-case submits split between classes
    note = widget.effort_tab.timing_label.text()  # the one class never outlined is priced by a guess, and says so
    assert f"Left mm of {names[3]} is a guess" in note and names[1] not in note
    cohort = session.cohort_seconds()  # the cohort line: two cases done, their seconds, no model yet
    assert cohort.items_done == 2 and cohort.left_with_model_s is None
    assert widget.effort_tab.cohort_label.text().startswith(f"Cohort: 2 of {cohort.items_done + cohort.items_left}")
    assert "after the next retrain" in widget.effort_tab.cohort_label.text()


def test_the_queue_fits_a_narrow_dock_with_details_in_a_tooltip(widget, qtbot):
    widget.resize(360, 900)
    widget.show()
    qtbot.waitExposed(widget)
    table = widget.annotate_tab.queue_table
    assert table.rowCount() == len(widget.controller.suggestions) > 0
    assert table.horizontalHeader().length() <= table.viewport().width() + 1  # no horizontal scrolling
    assert widget.controller.suggestions[0].item.case in table.item(0, 1).toolTip()
    assert "score" in table.item(0, 1).toolTip()


def test_the_progress_bar_says_the_time_left(widget):
    from napari_alseg._qt.background import JobProgress

    box = widget.annotate_tab.model_box
    box._show_progress(JobProgress("training", "Training", 3, 10, "step 3 of ~10", 75.0))
    assert box.job_progress.format() == "%v / %m · 1 min 15 s left"
    box._show_progress(JobProgress("training", "Training", 9, 10, "step 9 of ~10", 8.4))
    assert box.job_progress.text() == "9 / 10 · 8 s left"
    box._job_finished("training")
    assert box.job_progress.format() == "%v / %m"


def test_go_on_a_case_goes_where_the_model_doubts_outlines_it_and_selects_the_class(widget, qtbot, monkeypatch):
    from napari_alseg.session.learner import Learner

    session, viewer = widget.controller.session, widget.viewer
    case = widget.controller.suggestions[0].item.case
    record = session.catalog.case(case)
    n_classes = session.catalog.n_classes
    k, j, i = np.ogrid[:record.shape[0], :record.shape[1], :record.shape[2]]
    ball = (k - 8) ** 2 + (j - 12) ** 2 + (i - 10) ** 2 <= 16  # a structure near the top, off-centre
    probabilities = np.zeros((n_classes, *record.shape), np.float32)
    probabilities[0] = np.where(ball, 0.1, 1.0)
    probabilities[2] = 1.0 - probabilities[0]
    probabilities[:, 6][:, ball[8]] = 0.0  # slice 6: background or class 2, undecided
    probabilities[0, 6][ball[8]], probabilities[2, 6][ball[8]] = 0.45, 0.55
    monkeypatch.setattr(Learner, "model_version", property(lambda self: "v0001"))
    monkeypatch.setattr(session.learner, "predict_probabilities", lambda name, slice_index=None, **_: probabilities)

    widget.annotate_tab.go_button.click()
    qtbot.waitUntil(lambda: idle(widget), timeout=60_000)
    editing = widget.controller.editor.editing
    assert editing.item.case == case
    assert viewer.dims.point[0] == pytest.approx(record.origin[0] + 6 * record.spacing[0])
    assert editing.layer.selected_label == 2 and "least certain" in widget.status.text()
    region = viewer.layers[f"{case} · suggested region"]
    (corners,) = region.data
    assert corners[:, 0].tolist() == [6] * 4 and corners[:, 1].min() < 12 < corners[:, 1].max()
    assert viewer.layers.selection.active.name == editing.layer.name  # painting stays on the labels
    assert (np.asarray(editing.layer.data) == probabilities.argmax(axis=0)).all()  # the prefill, same pass


def test_one_region_layer_serves_every_go_outlined_on_top_and_never_removed(widget, qtbot, monkeypatch):
    """napari runs a garbage-collection pass per removed layer (~0.1 s of Go): the outline's
    layer is kept, hidden while a case has none, and moved, renamed and redrawn for the next."""
    from napari_alseg.session.learner import Learner

    session, viewer = widget.controller.session, widget.viewer
    first, second = (s.item.case for s in widget.controller.suggestions[:2])
    shape = session.catalog.case(first).shape
    probabilities = np.zeros((session.catalog.n_classes, *shape), np.float32)
    probabilities[0] = 1.0
    probabilities[0, 6, 8:14, 9:15], probabilities[2, 6, 8:14, 9:15] = 0.45, 0.55  # doubt on slice 6
    monkeypatch.setattr(Learner, "model_version", property(lambda self: "v0001"))
    monkeypatch.setattr(session.learner, "predict_probabilities", lambda name, slice_index=None, **_: probabilities)
    removed = []
    viewer.layers.events.removed.connect(lambda event: removed.append(event.value.metadata.get("alseg_role")))
    widget.controller.editor.go()
    qtbot.waitUntil(lambda: idle(widget), timeout=60_000)
    widget.controller.editor.go(next(s.item for s in widget.controller.suggestions if s.item.case == second))
    assert not viewer.layers[f"{first} · suggested region"].visible  # hidden until the new focus arrives
    qtbot.waitUntil(lambda: idle(widget) and f"{second} · suggested region" in viewer.layers, timeout=60_000)
    regions = [layer for layer in viewer.layers if layer.metadata.get("alseg_role") == "region"]
    assert len(regions) == 1 and "region" not in removed and "labels" not in removed  # both kept, for Go's speed
    (region,) = regions
    assert region.visible and region.metadata["alseg_case"] == second and region.nshapes == 1
    (corners,) = region.data
    assert corners[:, 0].tolist() == [6] * 4 and corners[:, 1].min() == 8 - 4 - 0.5  # the box, 4 px context
    assert region.edge_width[0] == 1.5 and tuple(region.edge_color[0][:3]) == (1.0, 1.0, 0.0)
    labels = widget.controller.editor.editing.layer
    assert viewer.layers.index(region) > viewer.layers.index(labels)  # drawn over the labels
    assert viewer.layers.selection.active.name == labels.name  # painting stays on the labels


def test_the_next_case_reuses_the_labels_layer_with_nothing_of_the_last_case_to_undo(widget, qtbot):
    """Go keeps the one Labels layer (an add and a removal cost a few hundred ms of every Go on a
    CPU) but the next case starts clean: its own labels, its own name and geometry, an empty
    undo history, and strokes on it mark the new item only."""
    controller, viewer = widget.controller, widget.viewer
    session = controller.session
    first, second = (s.item.case for s in controller.suggestions[:2])
    controller.editor.go()
    qtbot.waitUntil(lambda: idle(widget), timeout=60_000)
    layer, opened = controller.editor.editing.layer, controller.editor.editing
    assert opened.item.case == first
    middle = session.catalog.case(first).shape[0] // 2
    layer.paint((middle, 5, 5), 2)  # a stroke on the first case, in napari's undo history
    controller.editor.save_draft()
    removed = []
    viewer.layers.events.removed.connect(lambda event: removed.append(event.value.metadata.get("alseg_role")))
    controller.editor.go(next(s.item for s in controller.suggestions if s.item.case == second))
    qtbot.waitUntil(lambda: idle(widget), timeout=60_000)
    editing = controller.editor.editing
    assert "labels" not in removed and layer.name == f"{second} · labels"  # (the viewer proxy wraps each access anew)
    assert layer.metadata["alseg_case"] == second
    assert np.asarray(layer.data).shape == session.catalog.case(second).shape
    before = np.asarray(layer.data).copy()
    layer.undo()  # Ctrl+Z, then Ctrl+Shift+Z: nothing of the first case comes back
    layer.redo()
    assert (np.asarray(layer.data) == before).all()
    assert not opened.dirty or opened is not editing
    opened.dirty = False
    layer.paint((middle, 6, 6), 1)
    assert editing.dirty and not opened.dirty  # the stroke is the new item's, not the last one's
    assert [l for l in viewer.layers if l.metadata.get("alseg_role") == "labels"] == [layer]


def test_go_shows_the_case_at_once_and_the_late_prediction_never_overwrites_strokes(widget, qtbot, monkeypatch):
    """The images come up before the model has predicted; a stroke made meanwhile stays, and
    the prefill and focus that arrive after it are not applied over it."""
    import threading

    from napari_alseg.session.learner import Learner

    session, viewer = widget.controller.session, widget.viewer
    case = widget.controller.suggestions[0].item.case
    record = session.catalog.case(case)
    probabilities = np.zeros((session.catalog.n_classes, *record.shape), np.float32)
    probabilities[0] = 1.0
    probabilities[0, 3, 5:15, 5:15], probabilities[2, 3, 5:15, 5:15] = 0.4, 0.6  # doubt on slice 3
    release = threading.Event()

    def slow_prediction(name, slice_index=None, **_):
        release.wait(30)
        return probabilities

    monkeypatch.setattr(Learner, "model_version", property(lambda self: "v0001"))
    monkeypatch.setattr(session.learner, "predict_probabilities", slow_prediction)
    widget.annotate_tab.go_button.click()
    editing = widget.controller.editor.editing
    assert editing is not None and editing.item.case == case and "prediction" in widget.controller.running_jobs
    assert f"{case} · labels" in viewer.layers  # shown while the model still predicts
    shown = int(viewer.dims.current_step[0])
    editing.layer.paint((shown, 20, 20), 1)
    release.set()
    qtbot.waitUntil(lambda: no_jobs(widget), timeout=60_000)
    data = np.asarray(editing.layer.data)
    assert data[shown, 20, 20] == 1 and not (data == 2).any()  # no prefill over the stroke
    assert int(viewer.dims.current_step[0]) == shown  # and no jump away from it
    assert editing.prefill is None and "not pre-filled" in widget.status.text()


def test_the_heat_map_reads_at_a_glance_range_legend_and_profile(widget, qtbot, monkeypatch):
    from types import SimpleNamespace

    from napari_alseg.session.learner import Learner

    session, viewer = widget.controller.session, widget.viewer
    editing = open_first(widget, qtbot)
    case = editing.item.case
    record = session.catalog.case(case)
    values = np.zeros(record.shape, np.float32)
    values[25:28, 10:18, 10:18] = np.linspace(0.002, 0.004, 64, dtype=np.float32).reshape(8, 8)
    probabilities = np.zeros((session.catalog.n_classes, *record.shape), np.float32)
    probabilities[0] = 1.0
    probabilities[0, 25:28, 10:18, 10:18], probabilities[1, 25:28, 10:18, 10:18] = 0.4, 0.6
    probabilities[0, 26, 10:18, 10:18], probabilities[1, 26, 10:18, 10:18] = 0.45, 0.55  # doubt peaks on 26
    values[26, 10:18, 10:18] += 1e-5  # and so do the colours
    monkeypatch.setattr(Learner, "model_version", property(lambda self: "v0001"))
    monkeypatch.setattr(session.learner, "uncertainty_map", lambda name, **_: values)
    monkeypatch.setattr(session.learner, "predict_probabilities", lambda name, slice_index=None, **_: probabilities)
    widget.annotate_tab.heat_check.setChecked(True)
    qtbot.waitUntil(lambda: f"{case} · uncertainty" in viewer.layers and no_jobs(widget), timeout=60_000)
    layer = viewer.layers[f"{case} · uncertainty"]
    low, high = layer.contrast_limits
    assert 0.0029 < low < 0.0031 < high <= 0.004 and layer.colorbar.visible  # the lesion's upper half
    profile = widget.annotate_tab.profile
    assert not profile.isHidden() and "probability²" in profile.legend.text()
    assert profile.scale.peak_slice == 26 == profile.scale.focus.slice_index  # the colours and Go agree
    assert "most doubt on slice 26" in profile.legend.text() and "strongest" not in profile.legend.text()
    profile._clicked(SimpleNamespace(xdata=26.2))
    assert viewer.dims.point[0] == pytest.approx(record.origin[0] + 26 * record.spacing[0])
    widget.annotate_tab.heat_check.setChecked(False)
    assert profile.isHidden() and f"{case} · uncertainty" not in viewer.layers


def test_go_and_the_heat_maps_legend_and_profile_name_one_slice_or_say_why_not(widget, qtbot, monkeypatch):
    """Go's slice is the legend's "most doubt" slice and the profile's peak (one rule, from the
    prediction Go made); the colours, brightest elsewhere, are explained in the legend."""
    from napari_alseg.session.learner import Learner

    session, viewer = widget.controller.session, widget.viewer
    case = widget.controller.suggestions[0].item.case
    record = session.catalog.case(case)
    probabilities = np.zeros((session.catalog.n_classes, *record.shape), np.float32)
    probabilities[0] = 1.0
    probabilities[0, 5:12, 8:16, 8:16], probabilities[2, 5:12, 8:16, 8:16] = 0.1, 0.9  # a structure
    probabilities[0, 7, 8:16, 8:16], probabilities[2, 7, 8:16, 8:16] = 0.45, 0.55  # undecided on slice 7
    values = np.zeros(record.shape, np.float32)
    values[30, 20:24, 20:24] = np.linspace(0.005, 0.01, 16).reshape(4, 4)  # MC-dropout doubt brightest on slice 30
    predictions = []

    def predict(name, slice_index=None, **_):
        predictions.append(name)
        return probabilities

    monkeypatch.setattr(Learner, "model_version", property(lambda self: "v0001"))
    monkeypatch.setattr(session.learner, "predict_probabilities", predict)
    monkeypatch.setattr(session.learner, "uncertainty_map", lambda name, **_: values)
    widget.annotate_tab.go_button.click()
    qtbot.waitUntil(lambda: idle(widget), timeout=60_000)
    went_to = int(viewer.dims.current_step[0])
    assert went_to == 7 and "slice 7" in widget.status.text()
    widget.annotate_tab.heat_check.setChecked(True)
    profile = widget.annotate_tab.profile
    qtbot.waitUntil(lambda: profile.scale is not None and no_jobs(widget), timeout=60_000)
    legend = profile.legend.text()
    assert f"most doubt on slice {went_to}" in legend and "strongest on slice 30" in legend
    assert int(np.argmax(profile.scale.shown_profile)) == went_to
    assert predictions == [case]  # the legend used Go's prediction, not a second one


def test_closing_with_the_heat_map_shown_raises_nothing(widget, qtbot, monkeypatch):
    from napari_alseg.session.learner import Learner

    session, viewer = widget.controller.session, widget.viewer
    editing = open_first(widget, qtbot)
    values = np.zeros(session.catalog.case(editing.item.case).shape, np.float32)
    values[5, 5, 5] = 1.0
    monkeypatch.setattr(Learner, "model_version", property(lambda self: "v0001"))
    monkeypatch.setattr(session.learner, "uncertainty_map", lambda name, **_: values)
    monkeypatch.setattr(session, "focus", lambda name, probabilities=None: None)  # no structure predicted
    widget.annotate_tab.heat_check.setChecked(True)
    qtbot.waitUntil(lambda: widget.annotate_tab.profile.scale is not None and no_jobs(widget), timeout=60_000)
    raised = []
    monkeypatch.setattr("napari.utils.events.event._handle_exception", lambda *a, **k: raised.append(a))
    widget.controller.close_project()
    assert raised == [] and widget.annotate_tab.profile.isHidden() and not viewer.layers


def test_go_outlines_the_box_of_the_items_suggestion_unless_given_one(widget, qtbot):
    """Go takes an item: its box comes from its suggestion in the queue, or from the caller."""
    from napari_alseg.domain import QueryItem
    from napari_alseg.strategies import Suggestion

    controller, viewer = widget.controller, widget.viewer
    case = controller.suggestions[0].item.case
    item = QueryItem(case, 6)
    controller.suggestions.insert(0, Suggestion(item, 1.0, "test", {}, ((6, 7), (8, 14), (9, 15))))
    assert controller.suggestion_for(item) is controller.suggestions[0]
    assert controller.suggestion_for(QueryItem(case, 7)) is None
    region = f"{case} · suggested region"
    for box, corner in ((None, (8, 9)), (((6, 7), (2, 4), (3, 5)), (2, 3))):
        controller.editor.go(item, box)
        qtbot.waitUntil(lambda: idle(widget), timeout=60_000)
        assert controller.editor.editing.item == item
        (corners,) = viewer.layers[region].data
        assert corners[:, 0].tolist() == [6] * 4
        assert (corners[:, 1].min(), corners[:, 2].min()) == (corner[0] - 0.5, corner[1] - 0.5)


def test_retrain_saves_the_draft_of_the_item_in_hand_first(widget, qtbot):
    editing = open_first(widget, qtbot)
    editing.layer.paint((10, 20, 20), 1)  # a stroke, not submitted
    assert editing.dirty and widget.controller.session.catalog.load_draft(editing.item.case) is None
    widget.annotate_tab.model_box.retrain_button.click()
    draft = widget.controller.session.catalog.load_draft(editing.item.case)
    assert draft is not None and draft[10, 20, 20] == 1 and not editing.dirty
