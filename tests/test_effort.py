"""Boundary-length effort: squares, shared edges, corrections, the B matrix and timing fits."""

import json
import math

import numpy as np
import pytest

from napari_alseg.effort.boundary import BoundaryLength, boundary_length, changed_boundary_length, shared_boundary_length
from napari_alseg.effort.matrix import (
    ESTIMATOR_PAPER,
    ESTIMATOR_PRIOR,
    MIN_REMAINING_FRACTION,
    PREDICTION_HALF_WEIGHT,
    PRIOR_PSEUDO_COUNT,
    EffortModel,
)
from napari_alseg.effort.seconds import SecondsModel
from napari_alseg.errors import AlsegError

CORNER_CUT = 4 - 2 * math.sqrt(2)  # what the contour loses at a square's four corners, px


def square(shape, top, left, side):
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_square_effort_is_its_perimeter():
    length = boundary_length(square((14, 14), 2, 2, 10))
    assert length.px == pytest.approx(40 - CORNER_CUT)
    assert length.px == pytest.approx(40, abs=1.2)
    assert length.mm == length.px


def test_square_effort_in_mm_with_anisotropic_spacing():
    length = boundary_length(square((14, 14), 2, 2, 10), spacing=(2.0, 0.5))
    corner = math.hypot(0.5 * 2.0, 0.5 * 0.5)
    assert length.mm == pytest.approx(2 * 9 * 2.0 + 2 * 9 * 0.5 + 4 * corner)
    assert length.mm == pytest.approx(2 * 10 * 2.0 + 2 * 10 * 0.5, abs=1.0)
    assert length.px == pytest.approx(40 - CORNER_CUT)


def test_disk_effort_close_to_circumference():
    rows, cols = np.mgrid[:61, :61]
    disk = (rows - 30) ** 2 + (cols - 30) ** 2 <= 25**2
    equivalent_radius = math.sqrt(disk.sum() / math.pi)
    assert boundary_length(disk).px == pytest.approx(2 * math.pi * equivalent_radius, rel=0.08)


def test_empty_border_components_and_holes():
    assert boundary_length(np.zeros((5, 5), bool)) == BoundaryLength(px=0.0, mm=0.0)
    full = np.ones((5, 5), bool)  # touches every border: padding closes the contour
    assert boundary_length(full).px == pytest.approx(20 - CORNER_CUT)
    two = square((20, 20), 1, 1, 5) | square((20, 20), 10, 10, 5)
    assert boundary_length(two).px == pytest.approx(2 * (20 - CORNER_CUT))
    ring = square((9, 9), 1, 1, 7) & ~square((9, 9), 3, 3, 3)
    hole = 12 - CORNER_CUT  # inner contour around the 3×3 hole
    assert boundary_length(ring).px == pytest.approx(28 - CORNER_CUT + hole)


def test_shared_boundary_of_adjacent_squares_is_their_common_edge():
    left = square((12, 22), 1, 1, 10)
    right = square((12, 22), 1, 11, 10)
    shared = shared_boundary_length(left, right)
    assert shared.px == pytest.approx(10, abs=0.6)
    assert shared_boundary_length(left, square((12, 22), 1, 12, 9)).px == 0.0
    tracing_right_after_left = boundary_length(right).px - shared.px
    assert tracing_right_after_left == pytest.approx(30, abs=1.0)


def test_changed_boundary_of_unchanged_and_from_empty():
    mask = square((14, 14), 2, 2, 10)
    assert changed_boundary_length(mask, mask).px == 0.0
    from_scratch = changed_boundary_length(np.zeros_like(mask), mask)
    assert from_scratch == boundary_length(mask)


def test_changed_boundary_of_moved_edge():
    original = square((14, 14), 2, 2, 10)
    grown = original.copy()
    grown[2:12, 12] = True  # right edge one pixel out: new edge + two 1-px extensions
    assert changed_boundary_length(original, grown).px == pytest.approx(10 + 2, abs=0.5)
    shrunk = original.copy()
    shrunk[2:12, 11] = False  # right edge one pixel in: only the new edge is traced
    assert changed_boundary_length(original, shrunk).px == pytest.approx(10, abs=0.5)
    assert changed_boundary_length(original, grown, spacing=(1.0, 3.0)).mm > 10


def test_changed_boundary_counts_a_flipped_side():
    corner = np.zeros((4, 4), bool)
    corner[0, 0] = True
    complement = np.zeros((4, 4), bool)
    complement[[0, 1, 1], [1, 0, 1]] = True  # same diagonal line, inside on the other side
    assert changed_boundary_length(corner, complement) == boundary_length(complement)


def test_bad_inputs_raise_alseg_error():
    with pytest.raises(AlsegError):
        boundary_length(np.zeros((2, 2, 2), bool))
    with pytest.raises(AlsegError):
        boundary_length(np.zeros((2, 2), bool), spacing=(1.0, 0.0))
    with pytest.raises(AlsegError):
        shared_boundary_length(np.zeros((2, 2), bool), np.zeros((3, 3), bool))


def two_class_stack():
    """Slice 0: classes 1 and 2 as touching 10×10 squares; slice 1: class 1 as a 6×6 square."""
    first = np.zeros((12, 22), int)
    first[1:11, 1:11] = 1
    first[1:11, 11:21] = 2
    second = np.zeros((12, 22), int)
    second[3:9, 3:9] = 1
    return first, second


def test_effort_model_matches_hand_computation():
    first, second = two_class_stack()
    prior = 1e-3
    model = EffortModel(n_classes=3, prior_count=prior)
    model.observe(first, {1, 2})
    model.observe(second, {1})
    square10, square6 = 40 - CORNER_CUT, 24 - CORNER_CUT
    rectangle = 60 - CORNER_CUT  # 10×20 union of the two squares
    shared = (2 * square10 - rectangle) / 2
    expected = np.zeros((3, 3))
    expected[1, 1] = (square10 + square6) / (2 + prior)
    expected[2, 2] = square10 / (1 + prior)
    expected[1, 2] = expected[2, 1] = shared / (1 + prior)
    np.testing.assert_allclose(model.boundary_matrix_of(ESTIMATOR_PAPER), expected)

    paper = {"estimator": ESTIMATOR_PAPER}
    np.testing.assert_allclose(
        model.remaining_effort(set(), {1, 2}, **paper), [0, expected[1, 1], expected[2, 2]]
    )
    np.testing.assert_allclose(
        model.remaining_effort({1}, {1, 2}, **paper), [0, 0, expected[2, 2] - expected[1, 2]]
    )
    unseen = model.remaining_effort(set(), {0}, **paper)
    np.testing.assert_allclose(unseen, [model.effort_floor, 0, 0])

    # the prior estimator: each diagonal mean shrinks towards the mean outline μ of the classes
    mu = ((square10 + square6) / 2 + square10) / 2
    boundary = model.boundary_matrix
    assert boundary[1, 1] == pytest.approx((square10 + square6 + PRIOR_PSEUDO_COUNT * mu) / (2 + PRIOR_PSEUDO_COUNT))
    assert boundary[2, 2] == pytest.approx((square10 + PRIOR_PSEUDO_COUNT * mu) / (1 + PRIOR_PSEUDO_COUNT))
    assert boundary[1, 2] == pytest.approx(expected[1, 2])
    # background (class 0) was never delineated: it costs μ, not the 0.001 mm floor
    assert model.remaining_effort(set(), {0})[0] == pytest.approx(mu)


def test_an_unseen_class_is_priced_at_a_typical_outline_not_near_zero():
    first, second = two_class_stack()
    model = EffortModel(n_classes=4)
    model.observe(first, {1, 2})
    model.observe(second, {1})
    square10, square6 = 40 - CORNER_CUT, 24 - CORNER_CUT
    mu = ((square10 + square6) / 2 + square10) / 2
    remaining = model.remaining_effort(set(), {1, 2, 3})
    assert remaining[3] == pytest.approx(mu) and remaining[3] > 20  # class 3: never delineated
    estimate = model.estimate(3, set(), {3})
    assert estimate.mm == pytest.approx(mu) and "prior" in estimate.source
    # the paper's B prices it at the 0.001 mm floor, and says nothing it can support
    assert model.remaining_effort(set(), {3}, ESTIMATOR_PAPER)[3] == pytest.approx(1e-3)
    assert model.estimate(3, set(), {3}, estimator=ESTIMATOR_PAPER).mm is None
    # the prior fades as the class is delineated: after many outlines B_33 is their mean
    third = np.zeros((12, 22), int)
    third[2:6, 2:6] = 3
    for _ in range(200):
        model.observe(third, {3})
    assert model.boundary_matrix[3, 3] == pytest.approx(16 - CORNER_CUT, rel=0.02)


def test_an_empty_roi_does_not_shrink_its_class_outline():
    first, _ = two_class_stack()
    model = EffortModel(n_classes=3)
    model.observe(first, {1, 2})
    before = model.boundary_matrix.copy()
    paper_before = model.boundary_matrix_of(ESTIMATOR_PAPER).copy()
    empty = np.zeros_like(first)
    empty[1:11, 1:11] = 1  # class 2 delineated but absent on this slice (an empty ROI)
    for _ in range(5):
        model.observe(empty, {2})
    assert model.boundary_matrix[2, 2] == pytest.approx(before[2, 2])
    assert model.delineations(2) == 1
    # the paper's B counted each as a zero-length outline: a fifth of the length left
    assert model.boundary_matrix_of(ESTIMATOR_PAPER)[2, 2] == pytest.approx(paper_before[2, 2] / 6, rel=1e-3)
    # an absent class's contact is not a zero-length shared boundary either
    model.observe(empty, {1, 2})
    assert model.boundary_matrix[1, 2] == pytest.approx(before[1, 2])


def test_nothing_delineated_gives_an_unknown_effort_not_a_number():
    model = EffortModel(n_classes=3)
    assert np.isnan(model.remaining_effort(set(), {1, 2})[1:]).all()
    estimate = model.estimate(1, set(), {1, 2}, predicted_mm=50.0)
    assert estimate.mm is None and "unknown" in estimate.source
    only_empty = EffortModel(n_classes=3)
    only_empty.observe(np.zeros((8, 8), int), {1, 2})
    assert only_empty.estimate(1, set(), {1, 2}).mm is None


def test_the_prediction_outline_is_blended_in_as_the_class_is_delineated():
    first, _ = two_class_stack()
    model = EffortModel(n_classes=3)
    model.observe(first, {1, 2})
    prior_only = model.estimate(1, set(), {1, 2}, estimator=ESTIMATOR_PRIOR).mm
    predicted = 3.0 * prior_only
    estimates = []
    for n_seen in range(1, 40):
        blended = model.estimate(1, set(), {1, 2}, predicted_mm=predicted)
        weight = n_seen / (n_seen + PREDICTION_HALF_WEIGHT)
        b_only = model.estimate(1, set(), {1, 2}, estimator=ESTIMATOR_PRIOR).mm
        assert blended.mm == pytest.approx(weight * predicted + (1 - weight) * b_only)
        assert "prediction" in blended.source
        estimates.append(blended.mm)
        model.observe(first, {1})
    assert estimates == sorted(estimates)  # the prediction's weight grows with the delineations
    assert estimates[-1] == pytest.approx(predicted, rel=0.15)
    # no prediction of the class on the slice (NaN), or a class never delineated: B alone
    assert model.estimate(1, set(), {1, 2}, predicted_mm=math.nan).mm == pytest.approx(
        model.estimate(1, set(), {1, 2}, estimator=ESTIMATOR_PRIOR).mm)
    fresh = EffortModel(n_classes=4)
    fresh.observe(first, {1, 2})
    assert fresh.estimate(3, set(), {3}, predicted_mm=1e-4).mm == pytest.approx(fresh.boundary_matrix[3, 3])
    # a prediction that claims the ROI is free is floored at a share of the class's outline
    assert model.estimate(1, set(), {1, 2}, predicted_mm=0.0).mm == pytest.approx(
        MIN_REMAINING_FRACTION * model.boundary_matrix[1, 1], rel=0.2)
    with pytest.raises(AlsegError, match="estimator"):
        model.estimate(1, set(), {1}, estimator="guess")


def test_remaining_effort_table_and_round_trip():
    first, _ = two_class_stack()
    model = EffortModel(n_classes=3)
    model.observe(first, {1, 2}, spacing=(0.5, 0.5))
    table = model.remaining_effort_table({0: {1}}, {0: {1, 2}, 1: {2}})
    assert table.shape == (2, 3)
    np.testing.assert_allclose(table[0], model.remaining_effort({1}, {1, 2}))
    np.testing.assert_allclose(table[1], model.remaining_effort(set(), {2}))

    restored = EffortModel.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_allclose(restored.boundary_matrix, model.boundary_matrix)
    np.testing.assert_allclose(restored.boundary_matrix_of(ESTIMATOR_PAPER), model.boundary_matrix_of(ESTIMATOR_PAPER))
    with pytest.raises(AlsegError):
        EffortModel.from_dict({"n_classes": 3})
    with pytest.raises(AlsegError):
        model.remaining_effort_table({}, {1: {2}})
    with pytest.raises(AlsegError):
        model.observe(first, {5})


def test_seconds_model_per_class_pooled_and_none():
    model = SecondsModel.fit(
        class_ids=[1, 1, 1, 2],
        lengths_px=[10, 20, 40, 30],
        seconds=[7, 12, 22, 10],  # class 1: 2 + 0.5 L exactly
    )
    assert model.predict(1, 100) == pytest.approx(52)
    a, b = np.polyfit([10, 20, 40, 30], [7, 12, 22, 10], 1)[::-1]
    assert model.predict(2, 50) == pytest.approx(a + b * 50)  # < 3 events: pooled
    assert SecondsModel.fit([1], [10], [5]).predict(1, 10) is None
    assert SecondsModel.fit([1, 2], [10, 10], [4, 6]).predict(1, 99) == pytest.approx(5)


def _polyline_segments(mask):
    """The estimator as first built: skimage's assembled iso-0.5 contours, as oriented segments."""
    from skimage.measure import find_contours

    padded = np.pad(mask, 1).astype(float)
    contours = find_contours(padded, 0.5) if padded.any() else []
    parts = [np.stack([c[:-1], c[1:]], axis=1) for c in contours if len(c) > 1]
    return np.concatenate(parts) if parts else np.empty((0, 2, 2))


def _polyline_length(segments, spacing):
    return float(np.linalg.norm((segments[:, 1] - segments[:, 0]) * spacing, axis=1).sum())


def test_the_cell_table_measures_what_the_assembled_contours_measure():
    """Random masks (speckle, blobs, saddles, holes, the border): lengths and changed outlines
    equal those of skimage's polylines, which the table replaces for speed."""
    rng = np.random.default_rng(7)
    spacing = np.array([0.8, 1.7])
    for _ in range(150):
        shape = tuple(rng.integers(1, 25, size=2))
        mask = rng.random(shape) < rng.random()
        other = mask ^ (rng.random(shape) < 0.2)
        assert boundary_length(mask, spacing).mm == pytest.approx(_polyline_length(_polyline_segments(mask), spacing))
        original = {tuple(np.round(s, 3).ravel()) for s in _polyline_segments(other)}
        new = np.array([tuple(np.round(s, 3).ravel()) not in original for s in _polyline_segments(mask)], bool)
        expected = _polyline_length(_polyline_segments(mask)[new], spacing) if new.size else 0.0
        assert changed_boundary_length(other, mask, spacing).mm == pytest.approx(expected)


def test_a_volume_is_measured_as_the_sum_of_its_slices():
    from napari_alseg.effort.boundary import slice_trace_length, traced_boundary

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=(5, 12, 10))
    original = rng.integers(0, 4, size=labels.shape)
    spacing = (1.2, 0.6)
    per_slice = sum(slice_trace_length(plane, [1, 2, 3], spacing).mm for plane in labels)
    assert traced_boundary(labels, [1, 2, 3], spacing).mm == pytest.approx(per_slice)
    changed = sum(changed_boundary_length(o == c, p == c, spacing).mm
                  for o, p in zip(original, labels) for c in (1, 2, 3))
    assert traced_boundary(labels, [1, 2, 3], spacing, original=original).mm == pytest.approx(changed)


def test_a_small_structure_in_a_large_volume_measures_as_on_the_whole_planes():
    """traced_boundary cuts the volume to the labels' box; lengths at the border and of a
    correction (where the original lies elsewhere) are those of the whole planes."""
    from napari_alseg.effort.boundary import traced_boundary

    labels = np.zeros((9, 40, 30), np.uint8)
    labels[2:5, 0:6, 3:9] = 1  # touches the image border
    labels[6, 30:36, 20:29] = 1
    original = np.zeros_like(labels)
    original[3, 10:20, 10:20] = 1  # a prediction the annotator erased, elsewhere
    spacing = (0.9, 1.3)
    whole = sum(boundary_length(plane == 1, spacing).mm for plane in labels)
    assert traced_boundary(labels, [1], spacing).mm == pytest.approx(whole)
    changed = sum(changed_boundary_length(o == 1, p == 1, spacing).mm for o, p in zip(original, labels))
    assert traced_boundary(labels, [1], spacing, original=original).mm == pytest.approx(changed)
    assert traced_boundary(np.zeros_like(labels), [1], spacing).mm == 0.0


def test_two_timings_with_the_longer_outline_faster_never_give_a_falling_time_model():
    from napari_alseg.effort.seconds import SecondsModel

    model = SecondsModel.fit([1, 1], [200.0, 2000.0], [600.0, 120.0])  # issue 22: (730, -0.061) before
    intercept, slope = model.pooled
    assert intercept >= 0 and slope > 0
    assert model.predict(1, 4000.0) > model.predict(1, 200.0) > 0
