"""Click mode in the dock: clicks segment the selected class off the main thread, Ctrl+Z takes
one back, Submit records the clicks."""

import threading

import numpy as np
import pytest
from scipy import ndimage

from napari_alseg.domain import CLICKED, LABELS_AS_GROUND_TRUTH
from napari_alseg._qt.case_layers import viewer_camera
from napari_alseg._qt.clicking import CLICK_MARKER_PX
from test_widget import idle, no_jobs, tumour_source, widget  # noqa: F401 (fixtures)

pytestmark = pytest.mark.gui


def open_first(widget, qtbot):
    widget.annotate_tab.go_button.click()
    qtbot.waitUntil(lambda: idle(widget), timeout=60_000)
    return widget.controller.editor.editing


def inside(session, case, class_id):
    """A voxel deep inside the class in the case's ground truth (k, j, i)."""
    depth = ndimage.distance_transform_edt(session.catalog.ground_truth(case) == class_id)
    return tuple(int(v) for v in np.unravel_index(int(depth.argmax()), depth.shape))


def record_threads(session, monkeypatch):
    """Wrap session.click_segment to note the thread each call ran on."""
    threads, real = [], session.click_segment

    def click_segment(*args, **kwargs):
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(session, "click_segment", click_segment)
    return threads


def test_a_click_segments_the_selected_class_off_the_main_thread_undo_takes_it_back(widget, qtbot, monkeypatch):
    session, clicking = widget.controller.session, widget.controller.clicking
    threads = record_threads(session, monkeypatch)
    editing = open_first(widget, qtbot)
    layer, case = editing.layer, editing.item.case
    other = np.zeros_like(layer.data)
    other[:, :3, :3] = 3  # another class's strokes: never changed by a click
    layer.data = other
    before = np.array(layer.data)
    layer.selected_label = 1
    where = inside(session, case, 1)

    clicking.add_click(where, True)
    qtbot.waitUntil(lambda: no_jobs(widget) and bool(editing.tools), timeout=60_000)
    after = np.asarray(layer.data)
    assert threads and all(thread is not threading.main_thread() for thread in threads)
    assert after[where] == 1 and ((after == before) | (after == 1) & (before == 0)).all()
    name = f"{case} · clicks"
    assert name in widget.viewer.layers and len(widget.viewer.layers[name].data) == 1
    assert widget.viewer.layers.selection.active.name == layer.name  # clicks stay on the labels
    camera, markers = viewer_camera(widget.viewer), widget.viewer.layers[name]
    for zoom in (camera.zoom, camera.zoom * 4):  # the markers keep their size on screen at any zoom
        camera.zoom = zoom
        on_screen = float(np.ravel(markers.size)[0]) * zoom * min(markers.scale[1:])
        assert on_screen == pytest.approx(CLICK_MARKER_PX)

    layer.undo()
    assert (np.asarray(layer.data) == before).all()


def test_clicks_are_submitted_as_one_clicked_event_with_their_count(widget, qtbot):
    session, clicking = widget.controller.session, widget.controller.clicking
    editing = open_first(widget, qtbot)
    layer, case = editing.layer, editing.item.case
    layer.selected_label = 1
    where = inside(session, case, 1)
    clicking.add_click(where, True)
    clicking.add_click((where[0], where[1] + 1, where[2]), True)  # queued behind the first job
    qtbot.waitUntil(lambda: no_jobs(widget) and bool(editing.tools) and editing.tools[-1].clicks == 2, timeout=60_000)
    assert [(edit.kind, edit.class_id) for edit in editing.tools] == [(CLICKED, 1)]  # the latest replaces

    widget.annotate_tab.submit_button.click()
    clicked = [event for event in session.catalog.events(case) if event.kind == CLICKED]
    assert len(clicked) == 1 and clicked[0].clicks == 2 and clicked[0].voxels > 0


def test_refused_clicks_say_one_line_and_the_buttons_follow_the_mode(widget, qtbot, monkeypatch):
    warned = []
    monkeypatch.setattr("napari_alseg._widget.show_warning", warned.append)
    clicking, tab = widget.controller.clicking, widget.annotate_tab
    editing = open_first(widget, qtbot)
    editing.layer.selected_label = 0
    clicking.add_click((2, 2, 2), True)  # background is no class to click
    editing.layer.selected_label = 1
    clicking.add_click((99, 2, 2), True)  # outside the case
    assert len(warned) == 2 and all("\n" not in line for line in warned) and not editing.tools

    painting = editing.layer.mode
    tab.click_buttons[True].click()
    assert clicking.positive is True and editing.layer.mode == "pan_zoom"
    clicking.toggle(False)  # Shift+D
    assert not tab.click_buttons[True].isChecked() and tab.click_buttons[False].isChecked()
    tab.click_buttons[False].click()  # unchecked: napari's own mode again
    assert clicking.positive is None and editing.layer.mode == painting


def test_a_late_result_for_another_item_is_not_written(widget, qtbot, monkeypatch):
    session, clicking = widget.controller.session, widget.controller.clicking
    release, real = threading.Event(), session.click_segment

    def slow(*args, **kwargs):
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(session, "click_segment", slow)
    editing = open_first(widget, qtbot)
    editing.layer.selected_label = 1
    clicking.add_click(inside(session, editing.item.case, 1), True)
    widget.annotate_tab.next_button.click()
    widget.annotate_tab.go_button.click()  # another item opens while the click is segmented
    release.set()
    qtbot.waitUntil(lambda: idle(widget), timeout=60_000)
    assert widget.controller.editor.editing is not editing and not widget.controller.editor.editing.tools


def click_on_canvas(layer, world, **event):
    """A left press and release at ``world`` through napari's mouse-callback dispatch."""
    from napari.utils._test_utils import read_only_mouse_event
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    real = getattr(layer, "__wrapped__", layer)  # napari calls the callbacks with the layer itself
    for kind, callbacks in (("mouse_press", mouse_press_callbacks), ("mouse_release", mouse_release_callbacks)):
        callbacks(real, read_only_mouse_event(type=kind, button=1, position=world, pos=np.array([50.0, 60.0]),
                                              **event))


def test_a_left_click_on_the_canvas_in_click_mode_adds_a_click_at_the_voxel_under_it(widget, qtbot, monkeypatch):
    warned = []
    monkeypatch.setattr("napari_alseg._widget.show_warning", warned.append)
    session = widget.controller.session
    editing = open_first(widget, qtbot)
    layer, case = editing.layer, editing.item.case
    record = session.catalog.case(case)
    layer.selected_label = 1
    where = inside(session, case, 1)
    world = tuple(np.asarray(record.origin) + np.asarray(where) * np.asarray(record.spacing))
    widget.annotate_tab.click_buttons[True].click()
    click_on_canvas(layer, world)
    points = widget.viewer.layers[f"{case} · clicks"]
    assert points.data.tolist() == [list(map(float, where))]
    click_on_canvas(layer, world, dims_displayed=[0, 1, 2])  # in 3D: one line, no click
    assert len(points.data) == 1 and len(warned) == 1 and "2D" in warned[0]
    qtbot.waitUntil(lambda: no_jobs(widget) and bool(editing.tools), timeout=60_000)
    assert np.asarray(layer.data)[where] == 1 and editing.tools[-1].clicks == 1


@pytest.fixture
def stack_source(mricron_dir, tmp_path):
    from napari_alseg.samples import generate_sample

    return generate_sample("brain-stack", tmp_path / "data", mricron_dir=mricron_dir)


def test_in_a_slice_project_clicks_stay_on_the_items_slice(make_napari_viewer_proxy, qtbot, tmp_path,
                                                           stack_source, monkeypatch):
    from napari_alseg._widget import AlsegWidget

    warned = []
    monkeypatch.setattr("napari_alseg._widget.show_warning", warned.append)
    monkeypatch.setenv("ALSEG_PROJECTS_DIR", str(tmp_path / "projects"))
    dock = AlsegWidget(make_napari_viewer_proxy())
    qtbot.addWidget(dock)
    dock.controller.create_project(stack_source, tmp_path / "project", labels_as=LABELS_AS_GROUND_TRUTH)
    try:
        editing = open_first(dock, qtbot)
        session, layer, k = dock.controller.session, editing.layer, editing.item.slice_index
        before = np.array(layer.data)
        plane = session.catalog.ground_truth(editing.item.case)[k]
        layer.selected_label = class_id = int(np.bincount(plane[plane > 0]).argmax())
        depth = ndimage.distance_transform_edt(plane == class_id)
        j, i = np.unravel_index(int(depth.argmax()), depth.shape)
        dock.controller.clicking.add_click((k + 1, j, i), True)
        assert warned == [f"click on slice {k + 1}: this item is slice {k}"]
        dock.controller.clicking.add_click((k, j, i), True)
        qtbot.waitUntil(lambda: no_jobs(dock) and bool(editing.tools), timeout=60_000)
        after = np.asarray(layer.data)
        changed = np.flatnonzero((after != before).any(axis=(1, 2)))
        assert changed.tolist() == [k] and after[k, j, i] == class_id
    finally:
        dock.controller.close_project()
