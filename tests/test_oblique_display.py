"""Issue 23 item 8, display: napari shows a turned voxel grid where the file's affine puts it.

A turn about the slice axis (the slices stay on their scanner plane) goes to every layer as
napari's ``rotate``: the world position napari gives a voxel is the file's. A grid tilted out
of its slice plane cannot be sliced by napari in place (it shows the slice without the tilt
and its slider then picks other slices for a world position), so the reader refuses such a
file in one line; the dock shows a project's tilted case on its acquired slices and says so.
"""

import os

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from napari_alseg._reader import read_nifti
from napari_alseg.errors import AlsegError
from napari_alseg.geometry import display_placement
from napari_alseg.nifti import load_volume


def turned(degrees, about, spacing=(0.9, 1.1, 3.0), origin=(-10.0, 5.0, 2.0), base=None):
    """An affine whose voxel grid (``base``: axis-aligned columns) is turned about world axis ``about``."""
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    a, b = [axis for axis in range(3) if axis != about]
    rotation = np.eye(3)
    rotation[[a, a, b, b], [a, b, a, b]] = [c, -s, s, c]
    affine = np.eye(4)
    affine[:3, :3] = rotation @ (np.eye(3) if base is None else np.asarray(base, float)) @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


AXIAL = None  # voxel axes i, j, k along x, y, z: slices on z
CORONAL = [[1, 0, 0], [0, 0, 1], [0, 1, 0]]  # k along y (A): coronal slices
LEFTWARD = [[-1, 0, 0], [0, 1, 0], [0, 0, 1]]  # i towards the left (LAS): the reader flips it


def napari_world(layer, kji):
    return np.asarray(layer.data_to_world(kji), float)


def file_world(affine, shape_ijk, kji, flipped_axes):
    """The file's world position (RAS) of napari voxel ``(k, j, i)``, undoing the reader's flips."""
    ijk = np.asarray(kji, float)[::-1].copy()
    for axis in flipped_axes:
        ijk[axis] = shape_ijk[axis] - 1 - ijk[axis]
    return (affine @ np.append(ijk, 1.0))[:3]


@pytest.mark.parametrize("base, about, flipped", [(AXIAL, 2, ()), (CORONAL, 1, ()), (LEFTWARD, 2, (0,))])
def test_a_grid_turned_10_degrees_about_its_slice_axis_is_shown_at_the_files_world_positions(
        tmp_path, base, about, flipped):
    from napari.layers import Image, Labels

    shape = (20, 16, 6)  # (i, j, k)
    affine = turned(10.0, about, base=base)
    path = tmp_path / "scan.nii.gz"  # written by nibabel itself: (i, j, k) arrays, the file's own affine
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random(shape).astype(np.float32), affine), path)
    seg = tmp_path / "scan_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(shape, np.uint8), affine), seg)
    (image_data, image_kwargs, kind), = read_nifti(str(path))
    (labels_data, labels_kwargs, labels_kind), = read_nifti(str(seg))
    assert (kind, labels_kind) == ("image", "labels")
    image, labels = Image(image_data, **image_kwargs), Labels(labels_data, **labels_kwargs)
    volume = load_volume(path)
    nearest = nib.orientations.io_orientation(affine)[:, 0].astype(int)[::-1]  # napari's world axes
    for kji in [(0, 0, 0), (5, 15, 19), (5, 0, 19), (2, 7, 3)]:
        expected = file_world(affine, shape, kji, flipped)[nearest]
        assert napari_world(image, kji) == pytest.approx(expected, abs=1e-4)
        assert napari_world(labels, kji) == pytest.approx(expected, abs=1e-4)
    placement = display_placement(volume.affine, volume.data.shape)
    assert placement.turn_degrees == pytest.approx(10.0, abs=1e-6)
    assert placement.tilt_degrees == pytest.approx(0.0, abs=1e-6) and placement.offset_mm == pytest.approx(0, abs=1e-6)


def test_an_axis_aligned_grid_gets_no_rotation():
    for affine in (np.diag([0.9, 1.1, 3.0, 1.0]), np.diag([-1.0, 1.0, 2.0, 1.0]),
                   np.array([[-1.0, 0, 0, 5], [0, 0, 3.0, 0], [0, 1.0, 0, -7], [0, 0, 0, 1]])):
        volume_affine = affine @ nib.orientations.inv_ornt_aff(
            np.column_stack([np.arange(3), nib.orientations.io_orientation(affine)[:, 1]]), (8, 8, 8))
        placement = display_placement(volume_affine, (8, 8, 8))
        assert np.allclose(placement.rotate, np.eye(3)) and placement.offset_mm == 0


@pytest.mark.parametrize("name", ["example4d.nii.gz", "example_nifti2.nii.gz"])
def test_the_reader_refuses_nibabels_tilted_example_files_in_one_line(name):
    with pytest.raises(AlsegError) as error:
        read_nifti(os.path.join(data_path, name))
    line = str(error.value)
    assert "\n" not in line and line.startswith(f"{name}: ") and "tilted 9.3°" in line
    assert "out of its slice plane" in line and "reslice" in line


def test_a_tilt_under_half_a_voxel_is_not_refused(tmp_path):
    path = tmp_path / "almost.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 4), np.float32), turned(0.05, 0)), path)  # tilted about x
    (data, kwargs, kind), = read_nifti(str(path))
    assert kind == "image" and data.shape == (4, 10, 10)


def test_a_turned_layer_saves_back_with_the_files_affine_and_a_further_turn_is_refused(tmp_path):
    from napari.layers import Labels

    from napari_alseg._writer import write_layer

    affine = turned(10.0, 2)
    source = tmp_path / "scan_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((20, 16, 6), np.uint8), affine), source)
    (data, kwargs, _kind), = read_nifti(str(source))
    layer = Labels(data, **kwargs)
    written = write_layer(tmp_path / "out.nii.gz", layer.data, layer.as_layer_data_tuple()[1], is_label=True)
    assert np.allclose(nib.load(written).affine, affine, atol=1e-5)
    layer.rotate = 25.0  # turned by hand in napari: no NIfTI affine says that
    with pytest.raises(AlsegError, match="rotated, sheared"):
        write_layer(tmp_path / "turned.nii.gz", layer.data, layer.as_layer_data_tuple()[1], is_label=True)
