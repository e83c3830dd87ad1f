"""The NIfTI writer: read → save through napari → read gives back data, dtype and geometry."""

import warnings

import napari
import nibabel as nib
import npe2
import numpy as np
import pytest
from napari.layers import Image, Labels, Shapes

from napari_alseg._reader import read_nifti
from napari_alseg.errors import AlsegError

FLIPPED_AFFINE = np.array([[-0.9, 0, 0, 40.0], [0, 1.1, 0, -60.0], [0, 0, 2.5, 10.0], [0, 0, 0, 1]])


def oblique_affine():
    """20 degrees about z with the voxel axes i and j swapped: nothing axis-aligned survives by luck."""
    angle = np.radians(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]]) @ np.diag([0.7, 1.3, 3.0])
    affine[:3, 3] = (-40.0, 25.0, 12.5)
    return affine


@pytest.fixture(scope="module", autouse=True)
def plugins_discovered():
    """What napari does at start-up, so ``napari.save_layers`` sees this plugin's writers."""
    npe2.PluginManager.instance().discover()


def as_layer(layer_data):
    data, kwargs, kind = layer_data
    return (Labels if kind == "labels" else Image)(data, **kwargs)


def read_one(path):
    (layer_data,) = read_nifti(str(path))
    return layer_data


GEOMETRY_TOLERANCE_MM = 1e-5  # NIfTI-1 keeps the affine in float32: ~1e-7 relative


def assert_same_geometry(first, second, atol=GEOMETRY_TOLERANCE_MM):
    _, first_meta, _ = first
    _, second_meta, _ = second
    for key in ("scale", "translate"):
        np.testing.assert_allclose(second_meta[key], first_meta[key], rtol=0, atol=atol, err_msg=key)
    np.testing.assert_allclose(second_meta["metadata"]["affine"], first_meta["metadata"]["affine"],
                               rtol=0, atol=atol)


@pytest.mark.parametrize("affine", [FLIPPED_AFFINE, oblique_affine()], ids=["flipped", "oblique"])
@pytest.mark.parametrize("top_label", [3, 300], ids=["uint8", "uint16"])
def test_labels_round_trip_through_save_layers(tmp_path, affine, top_label):
    labels = np.random.default_rng(0).integers(0, top_label + 1, (6, 7, 5)).astype(np.int16)
    source = tmp_path / "sub01_seg.nii.gz"
    nib.save(nib.Nifti1Image(labels, affine), str(source))
    first = read_one(source)
    written = napari.save_layers(str(tmp_path / "saved.nii.gz"), [as_layer(first)])
    assert written == [str(tmp_path / "saved.nii.gz")]
    second = read_one(written[0])  # no label word in the name: the label intent says so
    assert second[2] == "labels"
    assert second[0].dtype == first[0].dtype == (np.uint8 if top_label < 256 else np.uint16)
    np.testing.assert_array_equal(second[0], first[0])
    assert_same_geometry(first, second)
    assert first[1]["scale"] == pytest.approx((2.5, 1.1, 0.9) if affine is FLIPPED_AFFINE else (3.0, 1.3, 0.7))
    # once on NIfTI-1's float32 grid, another save and read changes nothing at all
    third = read_one(napari.save_layers(str(tmp_path / "again.nii.gz"), [as_layer(second)])[0])
    np.testing.assert_array_equal(third[0], second[0])
    assert_same_geometry(second, third, atol=0.0)


def test_image_round_trip_through_save_layers(tmp_path):
    image = np.random.default_rng(1).normal(100.0, 20.0, (8, 6, 5)).astype(np.float32)
    source = tmp_path / "sub01_t1.nii"
    nib.save(nib.Nifti1Image(image, FLIPPED_AFFINE), str(source))
    first = read_one(source)
    assert first[1]["translate"] == pytest.approx((10.0, -60.0, 40.0 - 0.9 * 7))  # origin ≠ 0
    written = napari.save_layers(str(tmp_path / "t1_copy.nii"), [as_layer(first)])
    second = read_one(written[0])
    assert second[2] == "image" and second[0].dtype == np.float32
    np.testing.assert_array_equal(second[0], first[0])
    assert_same_geometry(first, second)


def test_layer_made_in_the_viewer_gets_its_scale_and_translate(tmp_path):
    painted = np.zeros((4, 9, 8), np.int32)  # napari's default Labels dtype for a new layer
    painted[1:3, 2:6, 3:7] = 2
    layer = Labels(painted, scale=(3.0, 0.7, 0.75), translate=(5.0, -20.0, 30.0))
    written = napari.save_layers(str(tmp_path / "painted.nii.gz"), [layer])
    data, meta, kind = read_one(written[0])
    assert kind == "labels" and data.dtype == np.uint8
    np.testing.assert_array_equal(data, painted)
    assert meta["scale"] == pytest.approx((3.0, 0.7, 0.75), rel=1e-6)  # NIfTI-1 stores float32
    assert meta["translate"] == pytest.approx((5.0, -20.0, 30.0), rel=1e-6)


def test_a_changed_scale_is_written_with_the_stored_orientation(tmp_path):
    source = tmp_path / "sub01_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6), np.uint8), oblique_affine()), str(source))
    layer = as_layer(read_one(source))
    layer.scale = (1.5, 1.0, 2.0)
    _, meta, _ = read_one(napari.save_layers(str(tmp_path / "rescaled.nii.gz"), [layer])[0])
    assert meta["scale"] == pytest.approx((1.5, 1.0, 2.0), rel=1e-6)
    np.testing.assert_allclose(nib.load(str(tmp_path / "rescaled.nii.gz")).affine[:3, 3],
                               oblique_affine()[:3, 3], atol=1e-4)
    stored_direction = oblique_affine()[:3, :3] / np.linalg.norm(oblique_affine()[:3, :3], axis=0)
    written_direction = meta["metadata"]["affine"][:3, :3] / meta["scale"][::-1]
    np.testing.assert_allclose(written_direction, stored_direction, atol=1e-6)


def test_a_2d_layer_is_written_as_one_slice(tmp_path):
    layer = Image(np.arange(20, dtype=np.float32).reshape(4, 5), scale=(0.5, 0.25), translate=(2.0, 3.0))
    data, meta, _ = read_one(napari.save_layers(str(tmp_path / "slice.nii.gz"), [layer])[0])
    assert data.shape == (1, 4, 5)
    assert meta["scale"] == pytest.approx((1.0, 0.5, 0.25))
    assert meta["translate"] == pytest.approx((0.0, 2.0, 3.0))


@pytest.mark.parametrize(("layer", "message"), [
    (Image(np.zeros((4, 5, 3), np.uint8), rgb=True), "RGB"),
    (Image(np.zeros((2, 3, 4, 5), np.float32)), "4D layer"),
    (Labels(np.zeros((3, 4, 5), np.uint8), rotate=30), "rotated, sheared or has an affine"),
    (Labels(np.full((3, 4, 5), -1, np.int32)), "negative values"),
    (Labels(np.full((3, 4, 5), 70000, np.int32)), "out of range"),
])
def test_unsupported_layers_get_one_line_errors(tmp_path, layer, message):
    with pytest.raises(AlsegError, match=message) as caught:
        napari.save_layers(str(tmp_path / "out.nii.gz"), [layer])
    assert "\n" not in str(caught.value)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_the_writer_commands_check_what_they_are_given(tmp_path):
    from napari_alseg._writer import write_image, write_labels

    with pytest.raises(AlsegError, match="empty"):
        write_image(str(tmp_path / "empty.nii.gz"), np.zeros((0, 4, 5), np.float32), {})
    with pytest.raises(AlsegError, match="end in .nii or .nii.gz"):
        write_labels(str(tmp_path / "labels.tif"), np.zeros((3, 4, 5), np.uint8), {})
    assert write_labels(str(tmp_path / "bare.nii"), np.ones((3, 4, 5), np.uint8), {}) == [
        str(tmp_path / "bare.nii")]


def test_layer_types_without_a_nifti_writer_write_nothing(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = napari.save_layers(str(tmp_path / "outline.nii.gz"), [Shapes([[[0, 0], [3, 3]]])])
    assert written == [] and not list(tmp_path.iterdir())
    assert any("No data written" in str(warning.message) for warning in caught)


def test_manifest_declares_writers_categories_and_a_menu():
    from napari._app_model.constants import MenuId

    manifest = npe2.PluginManifest.from_distribution("napari-alseg")
    npe2.PluginManifest.validate(manifest.model_dump())
    assert set(manifest.categories) == {"Annotation", "Segmentation"}
    writers = {tuple(w.layer_types): w.filename_extensions for w in manifest.contributions.writers}
    assert writers == {("labels",): [".nii.gz", ".nii"], ("image",): [".nii.gz", ".nii"]}
    menus = manifest.contributions.menus
    assert [item.command for item in menus["napari/layers/segment"]] == ["napari-alseg.make_widget"]
    assert MenuId("napari/layers/segment") in MenuId.contributables()


@pytest.mark.gui
def test_viewer_layers_save_round_trips(make_napari_viewer, tmp_path):
    source = tmp_path / "sub01_seg.nii.gz"
    labels = np.zeros((6, 7, 5), np.uint8)
    labels[2:4, 1:5, 1:4] = 4
    nib.save(nib.Nifti1Image(labels, FLIPPED_AFFINE), str(source))
    viewer = make_napari_viewer()
    viewer.open(str(source), plugin="napari-alseg")
    viewer.layers.save(str(tmp_path / "saved.nii.gz"), selected=True, plugin="napari-alseg")
    viewer.open(str(tmp_path / "saved.nii.gz"), plugin="napari-alseg")
    first, second = viewer.layers
    assert type(second).__name__ == "Labels"
    np.testing.assert_array_equal(second.data, first.data)
    np.testing.assert_allclose(second.scale, first.scale, rtol=0, atol=GEOMETRY_TOLERANCE_MM)
    np.testing.assert_allclose(second.translate, first.translate, rtol=0, atol=GEOMETRY_TOLERANCE_MM)
    np.testing.assert_allclose(second.metadata["affine"], first.metadata["affine"], rtol=0,
                               atol=GEOMETRY_TOLERANCE_MM)


@pytest.mark.gui
def test_widget_is_in_the_layers_segment_menu(make_napari_viewer):
    from napari._app_model import get_app_model

    make_napari_viewer()
    items = get_app_model().menus.get_menu("napari/layers/segment")
    assert "napari-alseg.make_widget" in [item.command.id for item in items if hasattr(item, "command")]
