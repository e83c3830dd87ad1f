"""dice-per-effort before a model (issue 22 item 8): a structure's ROIs are asked where the
annotator said it is (its marked slice range, or between slices where it is traced) before
slices where nothing says it is there, and those say so in their message."""

import numpy as np
import pytest
import synthetic_cases

from napari_alseg.effort.matrix import EffortModel
from napari_alseg.scoring import PoolScores
from napari_alseg.session import Session
from napari_alseg.store import Project
from napari_alseg.strategies import QueryItem, SelectionContext, select, traced_spans

from synthetic_cases import tiny_config


def free_pool(candidates, *, ranges=None, traced=None, has_model=False, effort=None, history=()):
    """An ROI pool of case "c" (20 slices, 3 classes), without a model unless ``has_model``, and
    the selection context dice-per-effort ranks it in."""
    pool = PoolScores("roi", 3, has_model, None, [QueryItem("c", n, cls) for n, cls in candidates], [],
                      n_slices={"c": 20})
    context = SelectionContext(effort if effort is not None else EffortModel(3),
                               class_dice_history=[np.asarray(h, float) for h in history],
                               class_ranges=dict(ranges or {}), traced_spans=dict(traced or {}))
    return pool, context


def test_before_a_model_rois_inside_a_marked_range_or_a_traced_span_come_first():
    # class 1: marked on slices 4..8 (its candidates are only there); class 2: no range, traced on 10 and 14
    inside = [(5, 1), (6, 1), (12, 2)]
    unknown = [(2, 2), (17, 2)]
    pool, context = free_pool(inside + unknown, ranges={("c", 1): (4, 8)}, traced={("c", 2): (10, 14)})
    for seed in range(5):
        picks = select("dice-per-effort", pool, 5, seed=seed, context=context)
        first = {(s.item.slice_index, s.item.class_id) for s in picks[:3]}
        assert first == set(inside)
        assert {(s.item.slice_index, s.item.class_id) for s in picks[3:]} == set(unknown)
    by_item = {(s.item.slice_index, s.item.class_id): s.message
               for s in select("dice-per-effort", pool, 5, seed=0, context=context)}
    assert "marked slices 4–8" in by_item[(5, 1)]
    assert "between slices 10 and 14" in by_item[(12, 2)]
    for key in unknown:
        assert "no slice range marked" in by_item[key] and "may be absent" in by_item[key]
        assert "effort unknown" in by_item[key]  # the effort's own word is kept beside it


def test_before_a_model_a_small_batch_never_reaches_the_slices_nothing_vouches_for():
    pool, context = free_pool([(n, 2) for n in range(20)], traced={("c", 2): (7, 9)})
    picks = select("dice-per-effort", pool, 1, seed=3, context=context)
    assert picks[0].item.slice_index == 8


def test_with_no_range_and_nothing_traced_every_roi_is_asked_and_says_why():
    pool, context = free_pool([(3, 1), (3, 2), (9, 2)])
    picks = select("dice-per-effort", pool, 3, seed=0, context=context)
    assert len(picks) == 3 and all("no slice range marked" in s.message for s in picks)


def test_after_a_model_the_marked_ranges_do_not_reorder_the_ranking():
    # with a model, the prediction (not the range) says where a class is: ranking as before
    pool, context = free_pool([(5, 1), (2, 2)], ranges={("c", 1): (4, 8)}, has_model=True,
                              history=[[0.9, 0.1]])  # class 2 has far more Dice to gain
    picks = select("dice-per-effort", pool, 2, seed=0, context=context)
    assert picks[0].item.class_id == 2 and "no slice range" not in picks[0].message


def test_the_traced_spans_run_from_the_first_to_the_last_slice_holding_the_class():
    labels = np.zeros((6, 8, 8), np.uint8)
    mask = np.zeros((6, 8, 8), bool)
    labels[1, 2:4, 2:4] = 2
    labels[4, 2:4, 2:4] = 2
    mask[[1, 4]] = True
    assert traced_spans({"c": (labels, mask), "d": None}, 3) == {("c", 2): (1, 4)}  # class 1: nothing labelled


# ----------------------------------------------------------------- through the session

pytestmark = pytest.mark.usefixtures("model_backend")


@pytest.fixture
def stack(tmp_path):
    source = synthetic_cases.blob_source(tmp_path / "source", granularity="slice", n_cases=1, shape=(12, 32, 32))
    project = Project.create(tmp_path / "project", source, annotator="dr-a", seed=1)
    with Session(project, annotator="dr-a", strategy="dice-per-effort", train_config=tiny_config()) as session:
        yield session


def test_the_session_asks_inside_a_range_marked_before_a_model_without_a_rescore(stack):
    held_out = {n for _case, n in stack.catalog.validation_items()}
    open_slices = [n for n in range(12) if n not in held_out]
    before = stack.suggest(100)
    assert before and all("no slice range marked" in s.message for s in before)  # not a random fallback
    assert all("random suggestions" not in s.message for s in before)
    first, last = open_slices[1], open_slices[3]
    stack.mark_class_range("case_000", 1, first, last)
    after = stack.suggest(100)
    core = [s for s in after if s.item.class_id == 1]
    assert core and all(first <= s.item.slice_index <= last for s in core)  # never outside the range
    assert [s.item.class_id for s in after[:len(core)]] == [1] * len(core)  # and asked first
    assert all(f"marked slices {first}–{last}" in s.message for s in core)


def test_the_session_asks_between_slices_where_the_annotator_traced_the_class(stack):
    held_out = {n for _case, n in stack.catalog.validation_items()}
    open_slices = [n for n in range(12) if n not in held_out]
    a, b = open_slices[0], open_slices[-1]
    truth = stack.catalog.ground_truth("case_000")
    for n in (a, b):
        stack.submit("case_000", truth[n], slice_index=n, class_id=2, seconds_active=5)
    picks = stack.suggest(100)
    rim = [s for s in picks if s.item.class_id == 2]
    assert rim and all(a < s.item.slice_index < b for s in rim)
    assert all(f"between slices {a} and {b}" in s.message for s in rim)
    assert [s.item.class_id for s in picks[:len(rim)]] == [2] * len(rim)


def test_after_a_model_equal_scores_go_first_where_the_model_expects_most_of_the_class():
    # issue 22 item 8: a class never outlined has the prior's effort on every slice, so its ROIs tie;
    # the queue then starts where the model expects most of the class, not in a seeded shuffle
    expected = {3: 0.5, 8: 40.0, 12: 9.0, 16: 0.0}
    pool, context = free_pool([(n, 1) for n in expected], has_model=True, history=[[0.0, 0.0]])
    pool.terms = {QueryItem("c", n, 1): {"foreground": pixels} for n, pixels in expected.items()}
    for seed in range(4):
        picks = select("dice-per-effort", pool, 4, seed=seed, context=context)
        assert len({s.score for s in picks}) == 1
        assert [s.item.slice_index for s in picks] == [8, 12, 3, 16]
    assert "ties" in picks[0].message and "expects" in picks[0].message


def test_after_a_model_rois_where_it_expects_almost_none_of_the_class_come_last():
    # issue 22 item 8: a class not learnt is priced at the prior's effort where nothing of it is
    # predicted, so the stack's end slices (2 px of pallidum expected) topped the queue
    expected = {0: 2.0, 8: 300.0, 10: 280.0, 12: 260.0, 19: 1.0}
    effort = EffortModel(3)
    square = np.zeros((20, 20), np.uint8)
    square[5:15, 5:15] = 1
    effort.observe(square, {1})  # one outline seen: the prediction's own outline now weighs in
    pool, context = free_pool([(n, 1) for n in expected], has_model=True, effort=effort, history=[[0.1, 0.0]])
    pool.terms = {QueryItem("c", n, 1): {"foreground": pixels, "effort_pred_mm": 0.0 if pixels < 5 else 80.0}
                  for n, pixels in expected.items()}
    picks = select("dice-per-effort", pool, 5, seed=0, context=context)
    assert {s.item.slice_index for s in picks[:3]} == {8, 10, 12}
    assert {s.item.slice_index for s in picks[3:]} == {0, 19}
    assert all("expects almost none" in s.message for s in picks[3:])
    assert not any("expects almost none" in s.message for s in picks[:3])
    # an ROI that cannot be asked at all (its class ruled out on the slice) stays after them
    pool.candidates.append(QueryItem("c", 15, 1))
    pool.terms[QueryItem("c", 15, 1)] = {"foreground": 300.0, "effort_pred_mm": 80.0}
    pool.allowed = {("c", 15): {0, 2}}
    picks = select("dice-per-effort", pool, 6, seed=0, context=context)
    assert [s.item.slice_index for s in picks][-1] == 15 and {s.item.slice_index for s in picks[3:5]} == {0, 19}
