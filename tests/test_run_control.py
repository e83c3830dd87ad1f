"""The one object a long run is handed: its reports, its stop, and the no-op default."""

import pytest

from napari_alseg.errors import AlsegError, Cancelled
from napari_alseg.run_control import RunControl, RunProgress


def test_the_default_reports_nowhere_and_never_stops():
    control = RunControl.none()
    control.report(1, 2, detail="anything")
    control.check()
    assert not control.stopped and RunControl.none() is control


def test_reports_arrive_as_records_and_a_stop_raises_cancelled_with_the_run_s_words():
    seen, stop = [], []
    control = RunControl(seen.append, lambda: bool(stop))
    control.report(3, 10)
    control.report(4, 10, detail={"loss": 0.5})
    assert seen == [RunProgress(3, 10), RunProgress(4, 10, {"loss": 0.5})]
    control.check("scoring cancelled")  # not asked to stop: nothing happens
    stop.append(True)
    assert control.stopped
    with pytest.raises(Cancelled, match="^scoring cancelled$") as raised:
        control.check("scoring cancelled")
    assert isinstance(raised.value, AlsegError)  # one line for the user, never a traceback


def test_a_stage_keeps_the_run_s_stop_and_sends_its_reports_elsewhere_or_nowhere():
    seen, staged, stop = [], [], []
    control = RunControl(seen.append, lambda: bool(stop))
    stage, silent = control.reporting_to(staged.append), control.reporting_to(None)
    stage.report(1, 5)
    silent.report(2, 5)
    assert staged == [RunProgress(1, 5)] and seen == []
    stop.append(True)
    assert stage.stopped and silent.stopped
