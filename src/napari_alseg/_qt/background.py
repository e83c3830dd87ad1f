"""Long work (training, scoring, prediction) off the UI thread, with progress and cancel.

The core reports through plain callbacks; here they are forwarded to the main thread
with ``ensure_main_thread`` (a queued call), so the UI only ever touches widgets and
layers on its own thread. Cancel sets an event the core polls once per step.
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

log = logging.getLogger(__name__)


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


def start_job(name: str, function: Callable[..., Any], *, on_progress: Callable[[Any], None] | None = None,
              on_done: Callable[[Any], None], on_error: Callable[[str], None],
              on_cancelled: Callable[[str], None] | None = None) -> BackgroundJob:
    """Run ``function(progress=..., should_stop=...)`` in a napari thread worker.

    ``on_progress`` / ``on_done`` / ``on_error`` / ``on_cancelled`` run on the main thread.
    A :class:`Cancelled` reaches ``on_cancelled``; another user-facing :class:`AlsegError`
    reaches ``on_error`` as its one-line message; anything else as ``"<name> failed:
    <error>"`` (and in the log with its traceback).
    """
    stop = threading.Event()
    forward = ensure_main_thread(on_progress) if on_progress else None

    def run() -> Any:
        return function(progress=forward, should_stop=stop.is_set)

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
