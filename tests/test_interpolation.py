"""Fill between slices: known shapes interpolate as expected; other classes are never touched."""

import numpy as np
import pytest

from napari_alseg.errors import AlsegError
from napari_alseg.interpolation import fill_between_slices, interpolate_masks, signed_distance

SHAPE = (64, 64)


def disc(radius, centre=(32, 32), shape=SHAPE):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def two_discs(class_id=1, dtype=np.uint8):
    labels = np.zeros((11, *SHAPE), dtype)
    labels[0][disc(5)] = class_id
    labels[10][disc(15)] = class_id
    return labels


def test_discs_grow_linearly_from_radius_5_to_15():
    filled = fill_between_slices(two_discs(), 1, 0, 10)
    middle_area = int((filled[5] == 1).sum())
    # measured 317 px against pi * 10^2 = 314.2 px (0.9 %)
    assert middle_area == pytest.approx(np.pi * 10**2, rel=0.03)
    for index in range(1, 10):
        equivalent_radius = np.sqrt((filled[index] == 1).sum() / np.pi)
        assert equivalent_radius == pytest.approx(5 + index, abs=0.5)  # measured ≤ 0.41 px off
    rows, cols = np.nonzero(filled[5] == 1)
    assert rows.mean() == pytest.approx(32, abs=0.01) and cols.mean() == pytest.approx(32, abs=0.01)


def test_offset_squares_meet_in_the_middle():
    labels = np.zeros((11, *SHAPE), np.uint8)
    labels[0, 10:30, 10:30] = 2
    labels[10, 20:40, 20:40] = 2
    middle = fill_between_slices(labels, 2, 10, 0)[5] == 2  # either order
    rows, cols = np.nonzero(middle)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (15, 34, 15, 34)  # the square halfway
    assert rows.mean() == pytest.approx(24.5, abs=0.01) and cols.mean() == pytest.approx(24.5, abs=0.01)
    assert middle[20:30, 20:30].all()  # the two squares' overlap stays covered
    assert 0.6 * 400 < middle.sum() <= 400  # corners round off; never more than a square


def test_only_background_is_written_and_the_input_is_kept():
    labels = two_discs(class_id=1)
    labels[5, 25:40, 25:40] = 3  # another structure, traced across the disc's path
    labels[3, 0:4, 0:4] = 1  # earlier class-1 strokes between the slices stay
    before = labels.copy()
    filled = fill_between_slices(labels, 1, 0, 10)
    np.testing.assert_array_equal(labels, before)  # not changed in place
    changed = filled != before
    assert np.all(before[changed] == 0) and np.all(filled[changed] == 1)
    np.testing.assert_array_equal(filled == 3, before == 3)
    assert np.all(filled[3, 0:4, 0:4] == 1)
    np.testing.assert_array_equal(filled[[0, 10]], before[[0, 10]])
    assert changed[1:10].any() and not changed[[0, 10]].any()


def test_other_axes_and_wide_dtypes():
    labels = two_discs(class_id=300, dtype=np.uint16)
    along_axis_0 = fill_between_slices(labels, 300, 0, 10)
    along_axis_2 = fill_between_slices(np.moveaxis(labels, 0, 2), 300, 0, 10, axis=2)
    np.testing.assert_array_equal(np.moveaxis(along_axis_2, 2, 0), along_axis_0)
    assert along_axis_0.dtype == np.uint16


def test_between_slices_outside_the_range_are_untouched():
    labels = np.zeros((20, *SHAPE), np.uint8)
    labels[4][disc(6)] = 1
    labels[8][disc(6)] = 1
    labels[15][disc(6)] = 1
    filled = fill_between_slices(labels, 1, 4, 8)
    assert all((filled[index] == 1).sum() == disc(6).sum() for index in range(4, 9))
    np.testing.assert_array_equal(filled[9:], labels[9:])


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((1, 0, 0), {}, "the same slice"),
    ((1, 4, 5), {}, "adjacent"),
    ((1, 0, 11), {}, "last slice 11 is out of range"),
    ((1, -1, 10), {}, "first slice -1 is out of range"),
    ((1, 0, 10), {"axis": 3}, "axis 3"),
    ((2, 0, 10), {}, "class 2 is not traced on slice 0"),
    ((0, 0, 10), {}, "background is 0"),
    ((256, 0, 10), {}, "at most 255"),
])
def test_bad_input_gets_one_line_errors(args, kwargs, message):
    labels = two_discs()
    labels[10, 0:3, 0:3] = 2  # class 2 only on the last slice
    with pytest.raises(AlsegError, match=message) as caught:
        fill_between_slices(labels, *args, **kwargs)
    assert "\n" not in str(caught.value)


def test_not_a_3d_integer_volume():
    with pytest.raises(AlsegError, match="3D"):
        fill_between_slices(np.zeros(SHAPE, np.uint8), 1, 0, 10)
    with pytest.raises(AlsegError, match="integer"):
        fill_between_slices(two_discs().astype(np.float32), 1, 0, 10)


def test_signed_distance_and_interpolated_masks():
    square = np.zeros((9, 9), bool)
    square[3:6, 3:6] = True
    distance = signed_distance(square)
    assert distance[4, 4] == 1.5 and distance[3, 3] == 0.5 and distance[2, 4] == -0.5
    assert np.all(signed_distance(np.ones((4, 4), bool)) > 0)
    assert np.all(signed_distance(np.zeros((4, 4), bool)) < 0)
    same = interpolate_masks(square, square, 3)
    assert same.shape == (3, 9, 9) and all(np.array_equal(mask, square) for mask in same)
    assert interpolate_masks(square, square, 0).shape == (0, 9, 9)
