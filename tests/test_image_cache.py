"""The session's bounded image cache: least recently used out, sized in bytes."""

import numpy as np

from napari_alseg.image_cache import BUDGET_ENV, ImageCache, default_budget
from napari_alseg.session import Session
from napari_alseg.store import Project
from test_store import make_source


def array_of(n_bytes, value=0):
    return np.full(n_bytes // 4, value, np.float32)


def test_least_recently_used_images_go_first_once_over_budget():
    cache = ImageCache(budget_bytes=3000)
    for key in "abc":
        cache.get(key, lambda: array_of(1000))
    assert cache.nbytes == 3000 and len(cache) == 3
    cache.get("a", lambda: array_of(1000))  # a hit: "a" is now the most recent
    cache.get("d", lambda: array_of(1000))
    assert "b" not in cache and all(key in cache for key in "acd")
    assert cache.loads == 4 and cache.nbytes == 3000


def test_one_image_above_the_budget_is_still_kept_alone():
    cache = ImageCache(budget_bytes=100)
    big = cache.get("big", lambda: array_of(4000, 7))
    assert len(cache) == 1 and cache.get("big", lambda: array_of(4)) is big
    cache.get("next", lambda: array_of(4000))
    assert "big" not in cache and len(cache) == 1


def test_the_budget_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, "3")
    assert default_budget() == 3 << 20
    monkeypatch.setenv(BUDGET_ENV, "not a number")
    assert 0 < default_budget() <= 2 << 30


def test_session_images_stay_within_the_budget_and_reload_when_evicted(tmp_path, monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, "0.0003")  # ~300 B: room for one case of 2 x 4 x 6 x 5 float32
    with Session(Project.create(tmp_path / "project", make_source(tmp_path / "source")),
                 annotator="a") as session:
        first = session.view.case_image("case_000").copy()
        session.view.case_image("case_001")
        assert len(session.view.images) == 1 and "case_000" not in session.view.images
        np.testing.assert_array_equal(session.view.case_image("case_000"), first)
        assert session.view.images.loads == 3


def test_scoring_a_cohort_holds_at_most_the_cache_plus_one_case(tmp_path, monkeypatch):
    import weakref

    import torch

    from napari_alseg.image_cache import LazyImages, image_shapes
    from napari_alseg.model import save_checkpoint

    one_case = 2 * 4 * 6 * 5 * 4  # bytes: 2 channels x (4, 6, 5) float32
    monkeypatch.setenv(BUDGET_ENV, str(2 * one_case / (1 << 20)))  # room for two cases
    with Session(Project.create(tmp_path / "project", make_source(tmp_path / "source", n_cases=8)),
                 annotator="a", strategy="mc-dropout-top") as session:
        torch.manual_seed(0)
        net = session.learner.model_spec().build()
        session._project.record_checkpoint("v0001", save_checkpoint(session._project.models_dir / "v0001.pt",
                                                                   net, net.spec))
        images = session.view.all_images()
        assert isinstance(images, LazyImages) and len(images) == 8 and session.view.images.loads == 0
        assert image_shapes(images)["case_003"] == (2, 4, 6, 5)  # from the records: nothing loaded

        alive, peak, peak_bytes = [], [0], [0]
        load = session.view.case_image

        def watched(case):
            image = load(case)
            if not any(ref() is image for ref in alive):
                alive.append(weakref.ref(image))
            peak[0] = max(peak[0], sum(ref() is not None for ref in alive))
            peak_bytes[0] = max(peak_bytes[0], session.view.images.nbytes)
            return image

        monkeypatch.setattr(session.view, "case_image", watched)
        pool = session.rescore(for_display=False)
        assert {item.case for item in pool.candidates} and pool.terms
        assert session.view.images.loads == len(pool.candidates) == 6  # each pool case read once, in turn
        assert peak_bytes[0] <= 2 * one_case and peak[0] <= 3
