"""Long work (training, scoring, prediction) off the UI thread, with progress and cancel.

A job's function gets one :class:`~napari_alseg.run_control.RunControl`: its reports are
forwarded to the main thread with ``ensure_main_thread`` (a queued call), so the UI only ever
touches widgets and layers on its own thread, and its stop is the job's Cancel, an event the
core asks about once per step.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from napari.qt.threading import create_worker
from superqt.utils import ensure_main_thread

from ..errors import AlsegError, Cancelled
from ..run_control import RunControl, RunProgress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobProgress:
    """How far a long job is: ``done`` of ``total`` steps, with a line for the annotator and
    the estimated ``seconds_left`` (None: no estimate yet)."""

    name: str
    description: str
    done: int
    total: int
    text: str = ""
    seconds_left: float | None = None


def time_left_text(seconds: float | None) -> str:
    """``"1 min 20 s left"`` / ``"45 s left"``; empty without an estimate."""
    if seconds is None or not seconds == seconds or seconds < 0:  # None or NaN
        return ""
    return f"{duration_text(seconds)} left"


def duration_text(seconds: float, *, to_the_minute: bool = False) -> str:
    """``"45 s"``, ``"1 min 20 s"``; ``to_the_minute`` (estimates of hours of work): ``"12 min"``,
    ``"3 h 05 min"``. Negative durations read as 0."""
    seconds = max(float(seconds), 0.0)
    if to_the_minute and seconds >= 60:
        minutes = int(round(seconds / 60))
        return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


@dataclass
class BackgroundJob:
    """A running job: ``cancel()`` asks the core to stop at its next step."""

    name: str
    worker: Any
    stop_requested: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.stop_requested.set()

    @property
    def running(self) -> bool:
        return bool(self.worker.is_running)


def start_job(name: str, function: Callable[..., Any], *,
              on_progress: Callable[[RunProgress], None] | None = None,
              on_done: Callable[[Any], None], on_error: Callable[[str], None],
              on_cancelled: Callable[[str], None] | None = None) -> BackgroundJob:
    """Run ``function(control=RunControl)`` in a napari thread worker: the control's reports
    reach ``on_progress``, its stop is :meth:`BackgroundJob.cancel`.

    ``on_progress`` / ``on_done`` / ``on_error`` / ``on_cancelled`` run on the main thread.
    A :class:`Cancelled` reaches ``on_cancelled``; another user-facing :class:`AlsegError`
    reaches ``on_error`` as its one-line message; anything else as ``"<name> failed:
    <error>"`` (and in the log with its traceback).
    """
    stop = threading.Event()
    control = RunControl(ensure_main_thread(on_progress) if on_progress else None, stop.is_set)

    def run() -> Any:
        return function(control=control)

    def failed(error: BaseException) -> None:
        if isinstance(error, Cancelled) and on_cancelled is not None:
            on_cancelled(str(error))
            return
        if isinstance(error, AlsegError):
            on_error(str(error))
            return
        log.error("%s failed", name, exc_info=error)
        on_error(f"{name} failed: {error!r}")

    worker = create_worker(run, _start_thread=False, _ignore_errors=True)
    worker.returned.connect(on_done)
    worker.errored.connect(failed)
    job = BackgroundJob(name, worker, stop)
    worker.start()
    return job


class JobRunner:
    """The dock's running jobs: started, cancelled together, awaited when the dock closes.

    ``on_change(name, running)`` is called on the main thread when a job starts or ends.
    A job's result arrives only while it is tracked: after :meth:`shutdown` (project
    closed) late results are dropped, never applied to a closed session.
    """

    def __init__(self, on_change: Callable[[str, bool], None]) -> None:
        self.jobs: list[BackgroundJob] = []
        self._on_change = on_change

    @property
    def names(self) -> set[str]:
        return {job.name for job in self.jobs}

    def start(self, name: str, function: Callable[..., Any], *, on_done: Callable[[Any], None],
              on_error: Callable[[str], None], on_cancelled: Callable[[str], None],
              on_progress: Callable[[RunProgress], None] | None = None) -> BackgroundJob:
        def ending(handler: Callable[[Any], None]) -> Callable[[Any], None]:
            def end(result: Any) -> None:
                if job not in self.jobs:
                    return
                self.jobs.remove(job)
                self._on_change(name, False)
                handler(result)
            return end

        job = start_job(name, function, on_progress=on_progress, on_done=ending(on_done),
                        on_error=ending(on_error), on_cancelled=ending(on_cancelled))
        self.jobs.append(job)
        self._on_change(name, True)
        return job

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancel()

    def shutdown(self) -> None:
        """Cancel every job and wait for it (a training round stops within one step)."""
        from napari.qt.threading import WorkerBase

        self.cancel()
        if self.jobs:
            WorkerBase.await_workers(msecs=120_000)
        self.jobs.clear()
