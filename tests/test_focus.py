"""Go goes where the work is (issue 14 item 1): the slice, box and class of a case to show."""

import numpy as np
import pytest

from napari_alseg.errors import AlsegError
from napari_alseg.session.focus import focus_from_probabilities, focus_region, shown_doubt

SHAPE = (40, 48, 48)


def blob_probabilities(centre_k=50 // 2, radius=5, doubt_k=None, class_id=2, n_classes=3):
    """Softmax (C, k, j, i): a ball of class ``class_id`` around (centre_k, 30, 12), sure inside;
    on slice ``doubt_k`` the model hesitates between background and the class."""
    k, j, i = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    ball = (k - centre_k) ** 2 + (j - 30) ** 2 + (i - 12) ** 2 <= radius ** 2
    probabilities = np.zeros((n_classes, *SHAPE))
    probabilities[0] = np.where(ball, 0.02, 0.99)
    probabilities[class_id] = 1.0 - probabilities[0]
    if doubt_k is not None:
        plane = ball[doubt_k] | ball[centre_k]
        probabilities[0, doubt_k][plane] = 0.45  # the class still wins: doubt about the structure
        probabilities[class_id, doubt_k][plane] = 0.55
    spare = [c for c in range(1, n_classes) if c != class_id]
    for c in spare:
        probabilities[c] = 0.0
    return probabilities / probabilities.sum(axis=0, keepdims=True)


def test_focus_region_picks_the_slice_with_most_and_boxes_it():
    values = np.zeros(SHAPE)
    values[31, 10:20, 5:9] = 1.0
    values[3, 0:2, 0:2] = 0.5
    k, bbox = focus_region(values, margin=2)
    assert k == 31 and bbox == ((31, 32), (8, 22), (3, 11))
    assert focus_region(np.zeros(SHAPE)) is None
    with pytest.raises(AlsegError, match=r"\(k, j, i\)"):
        focus_region(np.zeros((4, 4)))


def test_focus_goes_to_the_most_uncertain_slice_of_the_structure_not_the_middle():
    focus = focus_from_probabilities(blob_probabilities(centre_k=30, doubt_k=28))
    assert focus.slice_index == 28 and focus.class_id == 2 and "least certain" in focus.reason
    (k0, k1), (j0, j1), (i0, i1) = focus.bbox
    assert (k0, k1) == (28, 29) and j0 <= 30 < j1 and i0 <= 12 < i1 and j1 - j0 < SHAPE[1] // 2


def test_doubt_over_plain_background_or_an_edge_artefact_is_not_the_work():
    probabilities = blob_probabilities(centre_k=20, doubt_k=21)
    probabilities[0, -1] = 0.4  # the last slice: an unsure smear over the whole plane
    probabilities[1, -1] = probabilities[2, -1] = 0.3
    probabilities[0, 2] = 0.6  # slice 2: doubtful background everywhere
    probabilities[1, 2], probabilities[2, 2] = 0.3, 0.1
    focus = focus_from_probabilities(probabilities)
    assert focus.slice_index == 21 and focus.class_id == 2


def test_a_sure_model_is_taken_where_it_predicts_the_structure():
    probabilities = blob_probabilities(centre_k=9)
    probabilities = np.where(probabilities > 0.5, 1.0, 0.0)  # no doubt anywhere
    focus = focus_from_probabilities(probabilities)
    assert focus.slice_index == 9 and focus.class_id == 2 and "predicts" in focus.reason
    nothing = np.zeros((3, *SHAPE))
    nothing[0] = 1.0
    assert focus_from_probabilities(nothing) is None


def test_the_heat_map_range_comes_from_the_cases_own_doubt():
    from napari_alseg.session.focus import heat_map_scale

    values = np.zeros(SHAPE)
    values[20:23, 10:16, 10:16] = np.linspace(0.01, 0.02, 36).reshape(6, 6)  # 0.1 % of the volume
    values[0, 0, 0] = 0.5  # one wild voxel
    scale = heat_map_scale(values)
    assert 0.013 < scale.low < 0.017 < scale.high < 0.5  # the lesion's upper half, not the wild voxel's range
    assert np.percentile(values, 99.5) < 0.01  # what a whole-volume percentile would have used
    assert scale.profile.shape == (SHAPE[0],) and scale.peak_slice in (20, 21, 22)
    flat = heat_map_scale(np.zeros(SHAPE))
    assert flat.high > flat.low == 0.0


def test_the_heat_maps_legend_slice_and_profile_are_gos_rule_not_the_colours_peak():
    """One focus rule: the legend and profile of a heat map name Go's slice; where the colours
    peak elsewhere the legend says so and why, and where they agree it says nothing more."""
    from napari_alseg._qt.uncertainty_profile import legend_text
    from napari_alseg.session.focus import heat_map_scale

    focus = focus_from_probabilities(blob_probabilities(centre_k=30, doubt_k=28))
    assert int(np.argmax(focus.profile)) == focus.slice_index == 28
    values = np.zeros(SHAPE)
    values[10, 5:9, 5:9] = np.linspace(0.01, 0.02, 16).reshape(4, 4)  # the MC-dropout variance peaks far from the structure's doubt
    scale = heat_map_scale(values, focus)
    assert scale.peak_slice == 10 and scale.doubt_slice == 28
    assert int(np.argmax(scale.shown_profile)) == 28
    text = legend_text(scale)
    assert "most doubt on slice 28" in text and "strongest on slice 10" in text and "Go weighs" in text
    values[28, 28:32, 10:14] = np.linspace(0.1, 0.2, 16).reshape(4, 4)
    agreeing = legend_text(heat_map_scale(values, focus))
    assert "most doubt on slice 28" in agreeing and "strongest" not in agreeing
    unfocused = legend_text(heat_map_scale(values))
    assert "most doubt on slice 28" in unfocused and "no structure" in unfocused


def test_the_body_is_where_some_channel_rises_above_its_floor():
    from napari_alseg.body import background_outside, body_mask

    image = np.zeros((2, 5, 7, 7), np.float32)
    image[0, 1:4, 1:6, 1:6] = 5.0  # something in channel 0, with a voxel reading 0 inside it
    image[0, 2, 3, 3] = 0.0
    image[1] -= 3.0  # channel 1 empty at its own floor (a CT's air, say)
    image[1, 4, 0, 0] = 1.0  # and something there
    body = body_mask(image)
    assert body.sum() == 3 * 5 * 5 + 1 and body[1:4, 1:6, 1:6].all() and body[4, 0, 0]
    probabilities = np.full((3, 5, 7, 7), 1 / 3)
    kept = background_outside(probabilities, body)
    assert (kept[0][~body] == 1.0).all() and (kept[1:][:, ~body] == 0.0).all()
    assert (kept[:, body] == probabilities[:, body]).all() and (probabilities == 1 / 3).all()


def test_a_young_model_predicts_nothing_in_the_air_so_go_prefill_and_accept_never_land_there(tmp_path, monkeypatch):
    import synthetic_cases

    from napari_alseg import model as model_package
    from napari_alseg.session import Session
    from napari_alseg.store import Project

    source = synthetic_cases.make_source(tmp_path / "source", granularity="case", n_cases=1, shape=(6, 32, 32),
                                         classes=synthetic_cases.BLOB_CLASSES)
    with Session(Project.create(tmp_path / "project", source, annotator="dr", validation_fraction=0.0),
                 annotator="dr") as session:
        case = session.catalog.cases[0].name
        image = session.view.case_image(case)
        image[:, :, :, :8] = image.min() - 1.0  # an empty margin at the floor, as around a head

        def everywhere_rim(net, image, **_):  # a young model: the rim everywhere, air included
            probabilities = np.zeros((3, *image.shape[1:]), np.float32)
            probabilities[2] = 1.0
            return probabilities

        monkeypatch.setattr(model_package, "predict_proba", everywhere_rim)
        monkeypatch.setattr(session.learner, "current_net", lambda: object())
        labels = session.predict_labels(case, partial_labels=False)
        focus = session.focus(case, session.learner.predict_probabilities(case, partial_labels=False))
    assert (labels[:, :, :8] == 0).all() and (labels[:, :, 8:] == 2).all()
    assert focus is not None and focus.bbox[2][0] >= 8 - 4  # the box is on the body (4 px of context)


def test_the_shown_doubt_has_no_chequerboard_and_none_in_the_air():
    # issue 22 item 9: a young net's MC variance on its up-sampling grid read as stripes on screen
    j, i = np.mgrid[:64, :64]
    regional = np.exp(-((j - 32) ** 2 + (i - 32) ** 2) / 200.0)
    chequer = regional * (1.0 + 0.8 * ((j // 2 + i // 2) % 2 - 0.5))  # a 4 px pattern on the doubt
    body = np.zeros((1, 64, 64), bool)
    body[:, 8:56, 8:56] = True
    shown = shown_doubt(chequer[None], body)
    inside = (slice(None), slice(20, 44), slice(20, 44))
    ripple = shown - shown_doubt(regional[None], body)
    assert np.abs(ripple[inside]).max() < 0.02 * shown[inside].max()  # the pattern is gone (it was 40 %)
    assert not shown[~body].any()
    assert shown.dtype == np.float32 and abs(shown[0, 32, 32] - 1.0) < 0.1  # the regional doubt is kept
