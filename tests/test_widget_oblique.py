"""The dock places a turned case where its files' affine puts it (issue 23 item 8, display):
the channels, the labels, the heat map, the suggested region and the clicks alike; a case
tilted out of its slice plane is shown on its acquired slices and the canvas says so."""

import nibabel as nib
import numpy as np
import pytest

from napari_alseg._qt.case_layers import jump_to, owned_layers, show_heat_map, show_region, viewer_camera
from napari_alseg.domain import LABELS_AS_GROUND_TRUTH
from test_oblique_display import turned
from test_store import make_source

pytestmark = pytest.mark.gui


def open_project(make_napari_viewer_proxy, qtbot, tmp_path, affine):
    from napari_alseg._qt.controller import AlsegController

    source = make_source(tmp_path / "source", n_cases=2, affine=affine)
    controller = AlsegController(make_napari_viewer_proxy())
    controller.create_project(source, tmp_path / "project", labels_as=LABELS_AS_GROUND_TRUTH)
    controller.editor.go()
    qtbot.waitUntil(lambda: controller.editor.editing is not None and not controller.running_jobs, timeout=60_000)
    return controller


def file_world(affine, kji):
    """The file's world position of napari voxel (k, j, i), in napari's world axes (the
    scanner axes nearest k, j, i); these test files need no flip."""
    nearest = nib.orientations.io_orientation(affine)[:, 0].astype(int)[::-1]
    return (affine @ np.append(np.asarray(kji, float)[::-1], 1.0))[:3][nearest]


def test_every_layer_of_a_case_turned_10_degrees_shows_voxels_at_their_world_position(
        make_napari_viewer_proxy, qtbot, tmp_path):
    affine = turned(10.0, 2)  # axial slices turned 10° in their plane
    controller = open_project(make_napari_viewer_proxy, qtbot, tmp_path, affine)
    try:
        session, viewer = controller.session, controller.viewer
        case = controller.editor.editing.item.case
        record = session.catalog.case(case)
        show_heat_map(viewer, session, case, np.zeros(record.shape, np.float32))
        show_region(viewer, session, case, 1, ((1, 2), (1, 4), (1, 3)))
        controller.clicking.add_click((1, 2, 2), True)
        qtbot.waitUntil(lambda: f"{case} · clicks" in viewer.layers and not controller.running_jobs,
                        timeout=60_000)
        roles = {layer.metadata.get("alseg_role"): layer for layer in owned_layers(viewer)}
        assert {"channel", "labels", "heat map", "region", "clicks"} <= set(roles)
        k, j, i = (n - 1 for n in record.shape)
        for layer in owned_layers(viewer):
            for kji in [(0, 0, 0), (k, j, i), (1, j, 0), (2, 1, i)]:
                assert np.asarray(layer.data_to_world(kji)) == pytest.approx(file_world(affine, kji), abs=1e-4), \
                    layer.name
        centre = np.asarray(controller.editor.editing.layer.data_to_world([0, j / 2, i / 2]))[1:]
        jump_to(viewer, session, case, None, ((0, k + 1), (0, j + 1), (0, i + 1)))  # the whole case
        assert np.asarray(viewer_camera(viewer).center)[-2:] == pytest.approx(centre, abs=1e-4)  # Go looks at it
        assert "tilted" not in viewer.text_overlay.text
    finally:
        qtbot.waitUntil(lambda: not controller.running_jobs, timeout=60_000)
        controller.close_project()


def test_a_case_tilted_out_of_its_slice_plane_is_shown_on_its_slices_and_the_canvas_says_so(
        make_napari_viewer_proxy, qtbot, tmp_path):
    controller = open_project(make_napari_viewer_proxy, qtbot, tmp_path, turned(9.3, 0))  # about x: k leans
    try:
        text = controller.viewer.text_overlay.text
        assert "tilted 9.3°" in text and "acquired slices" in text and "\n" not in text
        labels = controller.editor.editing.layer
        assert np.allclose(labels.rotate, np.eye(3))  # nothing in plane to turn: the slices as acquired
    finally:
        qtbot.waitUntil(lambda: not controller.running_jobs, timeout=60_000)
        controller.close_project()


def test_creating_a_project_of_oblique_files_in_the_dock_says_so_as_a_warning(make_napari_viewer_proxy, qtbot,
                                                                              tmp_path):
    from napari_alseg._qt.controller import AlsegController

    controller = AlsegController(make_napari_viewer_proxy())
    warnings = []
    controller.warning.connect(warnings.append)
    controller.create_project(make_source(tmp_path / "source", n_cases=2, affine=turned(9.3, 0)),
                              tmp_path / "project", labels_as=LABELS_AS_GROUND_TRUTH)
    try:
        (line,) = [w for w in warnings if "oblique" in w]
        assert line.startswith("2 case(s) have an oblique voxel grid (turned up to 9.3°") and "\n" not in line
        assert "tilted out of the slice plane" in line
        assert controller.session is not None  # and the project opened all the same
    finally:
        qtbot.waitUntil(lambda: not controller.running_jobs, timeout=60_000)
        controller.close_project()


def test_creating_a_project_of_axis_aligned_files_in_the_dock_warns_of_nothing(make_napari_viewer_proxy, qtbot,
                                                                               tmp_path):
    from napari_alseg._qt.controller import AlsegController

    controller = AlsegController(make_napari_viewer_proxy())
    warnings = []
    controller.warning.connect(warnings.append)
    controller.create_project(make_source(tmp_path / "source", n_cases=2), tmp_path / "project",
                              labels_as=LABELS_AS_GROUND_TRUTH)
    try:
        assert not [w for w in warnings if "oblique" in w]
    finally:
        qtbot.waitUntil(lambda: not controller.running_jobs, timeout=60_000)
        controller.close_project()
