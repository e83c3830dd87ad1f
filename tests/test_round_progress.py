"""One progress counter over a round's stages (issue 22 item 10): it never runs backwards and
its total stays put while the quality folds run, however each stage's own estimate moves."""

import pytest

from napari_alseg.model.training import TrainProgress
from napari_alseg.session.round_progress import RoundProgress, round_progress


def run_stage(callback, totals):
    """A time-budgeted fine-tune: step n reported with that moment's estimate of its total."""
    for n, total in enumerate(totals, start=1):
        callback(TrainProgress(n, total, 0.5, 1.0))


def test_the_counter_never_runs_backwards_and_the_total_is_fixed_during_the_folds():
    shown = []
    stages = RoundProgress(shown.append, [60.0, 15.0, 15.0])  # a 60 s round, two 15 s folds
    run_stage(stages.stage(0), [40, 30, 24, 22, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20])
    round_total = shown[-1].total_steps
    assert round_total == 30 and shown[-1].step == 20  # 20 steps of the round's 60 s, then 2 x 15 s of folds
    in_round = len(shown)
    # the folds train on fewer items, faster: their own step counts (and estimates) are larger
    run_stage(stages.stage(1), [9, 12, 14, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15])
    run_stage(stages.stage(2), [30] * 30)
    steps = [report.step for report in shown]
    assert steps == sorted(steps)  # never backwards
    assert {report.total_steps for report in shown[in_round:]} == {round_total}  # fixed during the folds
    assert shown[-1].step == round_total
    assert all(report.step <= report.total_steps for report in shown)


def test_a_fold_starting_with_a_slow_estimate_does_not_pull_the_counter_back():
    shown = []
    stages = RoundProgress(shown.append, [60.0, 15.0, 15.0])
    stages.stage(0)(TrainProgress(20, 20, 0.5, 0.0))
    stages.stage(1)(TrainProgress(1, 2, 0.5, 5.0))  # half of this fold's own first estimate
    assert [(r.step, r.total_steps) for r in shown] == [(20, 30), (22, 30)]  # half the fold's share of 10


def test_a_single_stage_passes_its_steps_through_and_none_stays_none():
    shown = []
    run_stage(RoundProgress(shown.append, [100.0]).stage(0), [10, 9, 8])
    assert [(r.step, r.total_steps) for r in shown] == [(1, 10), (2, 9), (3, 8)]
    assert round_progress(None, [1.0]) is None
    stages = RoundProgress(shown.append, [1.0, 1.0])
    assert round_progress(stages, [5.0]) is stages  # the folds carry on the round's counter
    with pytest.raises(ValueError):
        RoundProgress(shown.append, [0.0])
