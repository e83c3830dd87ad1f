"""Segment with clicks (model-free and with a prior), the simulated clicker and the click oracle."""

import os

import numpy as np
import pytest

import synthetic_cases
from napari_alseg.clicks import Click, click_box, segment_with_clicks
from napari_alseg.errors import AlsegError
from napari_alseg.simulation.clicker import MAX_CLICKS, TARGET_DICE, click_until_good, dice, next_click

SPACING = (2.0, 1.0, 1.0)


def two_discs(shape=(5, 48, 48)):
    """A bright disc (class 1, r 8 at (16, 16)) and a dimmer one (r 6 at (34, 34)) on a dark
    slab, one channel with mild noise: ``(image (1, k, j, i), truth (k, j, i))``."""
    k, j, i = shape
    yy, xx = np.mgrid[:j, :i]
    truth = np.zeros(shape, np.uint8)
    truth[:, (yy - 16) ** 2 + (xx - 16) ** 2 <= 64] = 1
    truth[:, (yy - 34) ** 2 + (xx - 34) ** 2 <= 36] = 2
    rng = np.random.default_rng(0)
    image = np.where(truth == 1, 3.0, np.where(truth == 2, 2.0, 1.0)) + rng.normal(0, 0.05, shape)
    return image[None].astype(np.float32), truth


def test_one_positive_click_grows_the_structure_it_lands_in():
    image, truth = two_discs()
    result = segment_with_clicks(image, np.zeros_like(truth), 1, [Click((2, 16, 16), True)], spacing=SPACING)
    assert dice(result.labels == 1, truth == 1) > 0.95
    assert not result.labels[truth == 2].any()
    assert result.added.sum() == (result.labels == 1).sum() and not result.removed.any()


def test_a_slice_item_changes_only_its_slice():
    image, truth = two_discs()
    result = segment_with_clicks(image, np.zeros_like(truth), 1, [Click((2, 16, 16), True)], spacing=SPACING,
                                 slice_index=2)
    assert dice(result.labels[2] == 1, truth[2] == 1) > 0.95
    assert not np.delete(result.labels, 2, axis=0).any()


def test_other_classes_change_only_where_a_positive_click_reaches():
    image, truth = two_discs()
    labels = np.zeros_like(truth)
    labels[truth == 1] = 2  # a prefill that gave the bright disc to class 2
    labels[:, 40:44, 4:8] = 2  # and something else, elsewhere
    prior = np.where(truth == 2, 0.9, 0.1).astype(np.float32)  # the model: class 1 is the dim disc
    result = segment_with_clicks(image, labels, 1, [Click((2, 16, 16), True)], spacing=SPACING, prior=prior)
    assert dice(result.labels == 1, truth >= 1) > 0.95  # the clicked disc claimed, the prior's disc kept
    assert (result.labels[:, 40:44, 4:8] == 2).all()


def test_a_negative_click_takes_a_false_blob_out_whole():
    image, truth = two_discs()
    labels = np.zeros_like(truth)
    labels[truth == 1] = 1
    labels[truth == 2] = 1  # the dim disc wrongly given class 1
    result = segment_with_clicks(image, labels, 1, [Click((2, 34, 34), False)], spacing=SPACING)
    assert dice(result.labels == 1, truth == 1) == 1.0
    assert result.removed.sum() == (truth == 2).sum()


def test_a_negative_click_cuts_a_leak_off_near_it_and_keeps_the_rest():
    image, truth = two_discs()
    labels = np.zeros_like(truth)
    labels[truth == 1] = 1
    labels[:, 14:18, 24:44] = 1  # a strip leaking out of the disc to the right
    result = segment_with_clicks(image, labels, 1, [Click((2, 16, 40), False)], spacing=SPACING)
    kept = result.labels == 1
    assert kept[truth == 1].mean() > 0.97
    assert not kept[:, 14:18, 34:44].any()


def test_the_prior_is_kept_away_from_the_clicks():
    image, truth = two_discs()
    prior = np.where(truth > 0, 0.95, 0.02).astype(np.float32)  # a model sure of both discs
    result = segment_with_clicks(image, np.zeros_like(truth), 1, [Click((2, 16, 16), True)], spacing=SPACING,
                                 prior=prior)
    assert (result.labels[truth > 0] == 1).all()


def test_the_box_holds_the_clicks_and_the_class_with_a_margin_in_mm():
    extent = np.zeros((20, 100, 100), bool)
    extent[5:7, 50:60, 50:60] = True
    box = click_box(extent.shape, [Click((10, 20, 20), True)], (5.0, 1.0, 1.0), extent=extent, margin_mm=10.0)
    assert box == ((3, 13), (10, 70), (10, 70))
    assert click_box(extent.shape, [Click((10, 20, 20), True)], (5.0, 1.0, 1.0), slice_index=10,
                     margin_mm=10.0)[0] == (10, 11)


@pytest.mark.parametrize("clicks, slice_index, message", [
    ([], None, "no clicks"),
    ([Click((9, 0, 0), True)], None, "outside the case"),
    ([Click((1, 5, 5), True)], 2, "this item is slice 2"),
])
def test_bad_clicks_are_one_line_errors(clicks, slice_index, message):
    image, truth = two_discs()
    with pytest.raises(AlsegError, match=message):
        segment_with_clicks(image, np.zeros_like(truth), 1, clicks, spacing=SPACING, slice_index=slice_index)


def test_background_cannot_be_clicked():
    image, truth = two_discs()
    with pytest.raises(AlsegError, match="background"):
        segment_with_clicks(image, np.zeros_like(truth), 0, [Click((1, 5, 5), True)], spacing=SPACING)


def test_the_clicker_clicks_the_centre_of_the_largest_error():
    truth = np.zeros((1, 40, 40), bool)
    truth[0, 5:15, 5:15] = True  # missed: 100 voxels
    mask = np.zeros_like(truth)
    mask[0, 30:34, 30:34] = True  # extra: 16 voxels
    click = next_click(mask, truth, (1.0, 1.0, 1.0))
    assert click.positive and click.position[1] in (9, 10) and click.position[2] in (9, 10)
    assert next_click(truth, truth, (1.0, 1.0, 1.0)) is None  # no error, no click
    only_extra = next_click(truth | mask, truth, (1.0, 1.0, 1.0))
    assert not only_extra.positive and only_extra.position[1:] in {(31, 31), (31, 32), (32, 31), (32, 32)}


def test_the_clicker_stops_at_the_target_or_the_click_limit():
    truth = np.zeros((1, 20, 20), bool)
    truth[0, 5:15, 5:15] = True
    exact = click_until_good(truth, lambda clicks: truth.copy(), (1.0, 1.0, 1.0))
    assert exact.dice == (0.0, 1.0) and exact.clicks_to_target == 1
    quarter = np.zeros_like(truth)
    quarter[0, 5:10, 5:10] = True
    stuck = click_until_good(truth, lambda clicks: quarter.copy(), (1.0, 1.0, 1.0))
    assert len(stuck.clicks) == MAX_CLICKS and stuck.clicks_to_target is None
    assert max(stuck.dice) < TARGET_DICE and stuck.kept == MAX_CLICKS


def test_a_click_that_makes_it_worse_is_taken_back_and_ends_the_clicking():
    truth = np.zeros((1, 20, 20), bool)
    truth[0, 5:15, 5:15] = True
    half = np.zeros_like(truth)
    half[0, 5:15, 5:10] = True
    answers = [half, np.ones_like(truth)]  # the second click leaks everywhere
    run = click_until_good(truth, lambda clicks: answers[len(clicks) - 1].copy(), (1.0, 1.0, 1.0))
    assert len(run.clicks) == 2 and run.kept == 1
    assert run.dice[2] == run.dice[1] and (run.mask == half).all()


def test_the_click_oracle_records_clicked_events_and_paints_the_rest(tmp_path):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from napari_alseg.domain import CLICK_ANNOTATOR, CLICKED
    from napari_alseg.session import Session
    from napari_alseg.simulation import simulate

    source = synthetic_cases.make_source(tmp_path / "source", granularity="slice", n_cases=1, shape=(6, 32, 32),
                                         classes=synthetic_cases.BLOB_CLASSES, drift=True)
    simulate(source, tmp_path / "out", strategies=("random",), rounds=1, seeds=[0], batch_size=2, initial_items=2,
             train_config=synthetic_cases.tiny_config(), full_data=False, annotator=CLICK_ANNOTATOR)
    with Session.open(tmp_path / "out" / "projects" / "random-seed0", annotator="oracle") as session:
        events = session.catalog.events()
        clicked = [event for event in events if event.kind == CLICKED]
        submits = [event for event in events if event.kind == "manual"]
        truth = session.catalog.ground_truth(submits[0].case)
        labels = session.catalog.current_labels(submits[0].case).data
    assert len(submits) == 2 and len(clicked) >= 2
    assert all(event.clicks >= 1 for event in clicked)
    assert all((labels[event.slice_index] == truth[event.slice_index]).all() for event in submits)


def test_an_unknown_simulated_annotator_is_refused(tmp_path):
    from napari_alseg.simulation import simulate

    with pytest.raises(AlsegError, match="simulated annotator"):
        simulate(tmp_path, tmp_path / "out", strategies=("random",), rounds=1, seeds=[0], batch_size=1,
                 initial_items=1, train_config=synthetic_cases.tiny_config(), annotator="robot")
