"""NIfTI I/O: geometry is kept, labels are recognised, bad files get one-line errors."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from napari_alseg.errors import AlsegError
from napari_alseg.geometry import affine_direction, affine_from_geometry
from napari_alseg.nifti import load_volume, looks_like_label_name, save_volume


def write_nifti(path, array, affine=None, intent=None):
    image = nib.Nifti1Image(array, np.diag([1.0, 1.0, 1.0, 1.0]) if affine is None else affine)
    if intent:
        image.header.set_intent(intent)
    nib.save(image, str(path))
    return path


def test_spacing_and_origin_follow_the_affine(tmp_path):
    affine = np.array([[0.5, 0, 0, -10.0], [0, 0.8, 0, 20.0], [0, 0, 3.0, 5.0], [0, 0, 0, 1]])
    array = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    volume = load_volume(write_nifti(tmp_path / "t1.nii.gz", array, affine))
    assert volume.shape == (6, 5, 4)  # (k, j, i): the slice axis first
    assert volume.spacing == pytest.approx((3.0, 0.8, 0.5))
    assert volume.origin == pytest.approx((5.0, 20.0, -10.0))
    np.testing.assert_allclose(volume.data, array.transpose(2, 1, 0))
    assert not volume.is_label


def test_negative_axes_are_flipped_to_positive_spacing(tmp_path):
    affine = np.array([[-2.0, 0, 0, 30.0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    array = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    volume = load_volume(write_nifti(tmp_path / "las.nii", array, affine))
    assert volume.spacing == pytest.approx((1.0, 1.0, 2.0))
    # voxel i=3 sat at x = 30 - 6 = 24 mm: after the flip it is the first voxel
    assert volume.origin[2] == pytest.approx(24.0)
    np.testing.assert_allclose(volume.data[:, :, 0], array[3].T)


def test_label_volume_by_intent_or_name(tmp_path):
    labels = np.zeros((4, 4, 4), np.int16)
    labels[1:3, 1:3, 1:3] = 2
    by_intent = load_volume(write_nifti(tmp_path / "case.nii.gz", labels, intent="label"))
    by_name = load_volume(write_nifti(tmp_path / "case_seg.nii.gz", labels))
    for volume in (by_intent, by_name):
        assert volume.is_label and volume.data.dtype == np.uint8
        assert set(np.unique(volume.data)) == {0, 2}
    assert load_volume(write_nifti(tmp_path / "big_seg.nii", labels * 200)).data.dtype == np.uint16


def test_save_then_load_round_trips_and_leaves_no_temp_files(tmp_path):
    affine = np.diag([1.0, 2.0, 3.0, 1.0])
    data = np.random.default_rng(1).integers(0, 4, (5, 6, 7)).astype(np.uint8)
    path = save_volume(tmp_path / "labels.nii.gz", data, affine, is_label=True)
    volume = load_volume(path)
    assert volume.is_label
    np.testing.assert_array_equal(volume.data, data)
    np.testing.assert_allclose(nib.load(str(path)).affine, affine)
    assert [p.name for p in tmp_path.iterdir()] == ["labels.nii.gz"]


@pytest.mark.parametrize("name", ["case_seg.nii.gz", "labels.nii", "sub-01_mask.nii.gz", "aal.nii.gz"])
def test_label_names(name):
    assert looks_like_label_name(name)


@pytest.mark.parametrize("name", ["case_t1c.nii.gz", "segmentation_tool_output_t2.nii", "flair.nii.gz"])
def test_image_names(name):
    assert not looks_like_label_name(name)


def test_not_a_nifti(tmp_path):
    path = tmp_path / "notes.nii.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"this is not an image" * 50)
    with pytest.raises(AlsegError, match="notes.nii.gz"):
        load_volume(path)
    (tmp_path / "scan.png").write_bytes(b"x")
    with pytest.raises(AlsegError, match="not a NIfTI"):
        load_volume(tmp_path / "scan.png")


def test_truncated_gzip(tmp_path):
    good = write_nifti(tmp_path / "full.nii.gz", np.random.default_rng(0).random((20, 20, 20)))
    truncated = tmp_path / "cut.nii.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(AlsegError, match=r"cut\.nii\.gz: .*(truncated|corrupt|cannot read)"):
        load_volume(truncated)


def test_4d_is_refused_but_singleton_time_is_fine(tmp_path):
    with pytest.raises(AlsegError, match="4D"):
        load_volume(write_nifti(tmp_path / "bold.nii.gz", np.zeros((3, 3, 3, 5), np.float32)))
    assert load_volume(write_nifti(tmp_path / "one.nii.gz", np.ones((3, 3, 3, 1), np.float32))).shape == (3, 3, 3)


def test_2d_image_becomes_one_slice(tmp_path):
    assert load_volume(write_nifti(tmp_path / "slice.nii", np.ones((8, 9), np.float32))).shape == (1, 9, 8)


def test_nans_are_refused(tmp_path):
    array = np.ones((3, 3, 3), np.float32)
    array[0, 0, 0] = np.nan
    with pytest.raises(AlsegError, match="1 voxels are NaN"):
        load_volume(write_nifti(tmp_path / "nan.nii.gz", array))


def test_zero_size_and_empty_files(tmp_path):
    with pytest.raises(AlsegError, match="zero size"):
        load_volume(write_nifti(tmp_path / "zero.nii", np.zeros((0, 3, 3), np.float32)))
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(AlsegError, match="empty"):
        load_volume(tmp_path / "empty.nii.gz")
    with pytest.raises(AlsegError, match="not found"):
        load_volume(tmp_path / "missing.nii.gz")


def test_bad_labels(tmp_path):
    with pytest.raises(AlsegError, match="non-integer"):
        load_volume(write_nifti(tmp_path / "a_seg.nii", np.full((2, 2, 2), 0.5, np.float32)))
    with pytest.raises(AlsegError, match="negative"):
        load_volume(write_nifti(tmp_path / "b_seg.nii", np.full((2, 2, 2), -1, np.int16)))


def _oblique_affine():
    """20 degrees about z, the voxel axes permuted (i along y), anisotropic, off-centre."""
    angle = np.radians(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    permutation = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ permutation @ np.diag([0.9, 1.1, 2.5])
    affine[:3, 3] = (-40.0, 25.0, 12.5)
    return affine


@pytest.mark.parametrize("affine", [
    np.diag([1.0, 1.0, 1.0, 1.0]),
    np.array([[0.5, 0, 0, -10.0], [0, 0.8, 0, 20.0], [0, 0, 3.0, 5.0], [0, 0, 0, 1]]),
    np.array([[-2.0, 0, 0, 30.0], [0, 1, 0, -7.0], [0, 0, 4.0, 2.0], [0, 0, 0, 1]]),  # LAS: flipped
    _oblique_affine(),
])
def test_affine_from_geometry_inverts_the_readers_geometry(tmp_path, affine):
    array = np.random.default_rng(2).random((4, 5, 6)).astype(np.float32)
    volume = load_volume(write_nifti(tmp_path / "t1.nii.gz", array, affine))
    rebuilt = affine_from_geometry(volume.spacing, volume.origin, affine_direction(volume.affine))
    np.testing.assert_allclose(rebuilt, volume.affine, atol=1e-9)


def test_affine_from_geometry_without_direction_is_axis_aligned():
    affine = affine_from_geometry((2.5, 1.1, 0.9), (10.0, -60.0, -40.0))
    np.testing.assert_allclose(affine, [[0.9, 0, 0, -40.0], [0, 1.1, 0, -60.0], [0, 0, 2.5, 10.0], [0, 0, 0, 1]])


def test_affine_from_geometry_refuses_bad_geometry():
    with pytest.raises(AlsegError, match="zero-length"):
        affine_from_geometry((0.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    with pytest.raises(AlsegError, match="3 spacings"):
        affine_from_geometry((1.0, 1.0), (0.0, 0.0))
    with pytest.raises(AlsegError, match="parallel"):
        affine_from_geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.array([[1, 1, 0], [0, 0, 0], [0, 0, 1.0]]))


@pytest.mark.parametrize("codes, expected", [
    # brain-stack: columns to the right, rows to superior, slices to anterior (a coronal stack)
    (("R", "S", "A"), ("up", "left", "S", "I", "R", "L")),
    # an axial volume in RAS: anterior up, the patient's right on the screen's left
    (("R", "A", "S"), ("up", "left", "A", "P", "R", "L")),
    # LPS (DICOM's order): rows grow posterior, columns to the left: flipped both ways
    (("L", "P", "S"), ("down", "right", "A", "P", "R", "L")),
    # a sagittal stack: columns to anterior (face on the left), rows to superior
    (("A", "S", "R"), ("up", "left", "S", "I", "A", "P")),
])
def test_display_orientation_is_radiological(codes, expected):
    from napari_alseg.geometry import display_orientation

    towards = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
    affine = np.eye(4)
    affine[:3, :3] = 0
    for voxel_axis, code in enumerate(codes):  # voxel axes (i, j, k) pointing as the codes say
        world_axis, sign = towards[code]
        affine[world_axis, voxel_axis] = 2.0 * sign
    shown = display_orientation(affine)
    assert (shown.vertical, shown.horizontal, shown.top, shown.bottom, shown.left, shown.right) == expected
