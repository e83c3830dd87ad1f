"""One progress counter over a round's stages (issue 22 item 10): it never runs backwards and
its total stays put while the quality folds run, however each stage's own estimate moves."""

import pytest

from napari_alseg.errors import Cancelled
from napari_alseg.model.training import TrainProgress
from napari_alseg.run_control import RunControl
from napari_alseg.session.round_progress import RoundProgress


def run_stage(control, totals):
    """A time-budgeted fine-tune: step n reported with that moment's estimate of its total."""
    for n, total in enumerate(totals, start=1):
        control.report(n, total, TrainProgress(n, total, 0.5, 1.0))


def watching(shown):
    """A round's control whose reports are the TrainProgress records a UI would show."""
    return RunControl(lambda update: shown.append(update.detail))


def test_the_counter_never_runs_backwards_and_the_total_is_fixed_during_the_folds():
    shown = []
    stages = RoundProgress(watching(shown), [60.0, 15.0, 15.0])  # a 60 s round, two 15 s folds
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
    stages = RoundProgress(watching(shown), [60.0, 15.0, 15.0])
    stages.stage(0).report(20, 20, TrainProgress(20, 20, 0.5, 0.0))
    stages.stage(1).report(1, 2, TrainProgress(1, 2, 0.5, 5.0))  # half of this fold's own first estimate
    assert [(r.step, r.total_steps) for r in shown] == [(20, 30), (22, 30)]  # half the fold's share of 10


def test_a_single_stage_passes_its_steps_through_and_each_stage_has_the_round_s_stop():
    shown, stop = [], []
    round_control = RunControl(lambda update: shown.append((update.done, update.total, update.detail)),
                               lambda: bool(stop))
    stages = RoundProgress(round_control, [100.0])
    run_stage(stages.stage(0), [10, 9, 8])
    assert [(done, total) for done, total, _detail in shown] == [(1, 10), (2, 9), (3, 8)]
    assert all((detail.step, detail.total_steps) == (done, total) for done, total, detail in shown)
    stage = stages.stage(0)
    assert not stage.stopped
    stop.append(True)  # Cancel pressed: every stage of the round stops
    with pytest.raises(Cancelled):
        stage.check()
    with pytest.raises(ValueError):
        RoundProgress(round_control, [0.0])
