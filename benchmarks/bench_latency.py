"""The latencies an annotator feels in the dock widget, measured in a real napari window.

On a project of 3-channel tumour cases generated at ``--size`` voxels (default 128, about
128 x 108 x 100 voxels a case) with a first model trained for a few steps:

- **Next**: click Next -> the next suggestion's text is shown (target < 100 ms);
- **Go**: click Go -> the case's layers are on the canvas and the viewer has jumped
  (target < 300 ms, issue 22); then, separately, Go -> the model's focus (the slice and box where the
  work is, and the prefill in correct mode) arrives from the worker;
- **Submit**: click Submit -> "Saved" is shown, i.e. control is back in the event loop
  with the labels durable (target < 100 ms);
- **Click**: a click in click mode -> the class re-segmented and written into the layer
  (targets < 1.5 s on a 3D case, with the model's prediction as the prior, and < 0.5 s on a
  2D slice of the brain-stack sample, model-free); clicks go where the simulated clicker
  would put them;
- **Retrain stall**: the longest gap a 10 ms QTimer sees beyond its interval while a
  retrain runs in the background (target < 50 ms).

Each is repeated ``--repeats`` times; the median and the worst are printed. Runs under
Xvfb: ``xvfb-run -a python benchmarks/bench_latency.py``. Say what else ran on the CPU.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import statistics
import tempfile
import time
from pathlib import Path

STALL_DUMP: Path | None = None  # --stall-dump FILE
STALL_DUMP_AFTER_S = 0.150
TARGETS_MS = {"Next": 100, "Go (layers shown)": 300, "Go (focus, prefill)": None, "Submit": 100,
              "Click (3D case, model)": 1500, "Click (2D slice)": 500, "Retrain stall": 50}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="voxels along the brain's long axis")
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=20, help="steps of the first model and of the timed retrain")
    parser.add_argument("--stall-dump", type=Path, metavar="FILE",
                        help="where the UI stalls: every thread's stack, written to FILE whenever the "
                             "retrain's timer has not ticked for 150 ms (from a C watchdog, so a stall "
                             "that holds the GIL is caught inside it)")
    args = parser.parse_args()
    global STALL_DUMP
    STALL_DUMP = args.stall_dump
    os.environ["ALSEG_PROJECTS_DIR"] = tempfile.mkdtemp(prefix="alseg-latency-")

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_alseg._qt.demo import WINDOW_SIZE
    from napari_alseg.domain import LABELS_AS_GROUND_TRUTH
    from napari_alseg.samples import generate_sample

    root = Path(os.environ["ALSEG_PROJECTS_DIR"])
    source = generate_sample("tumour-cases", root / "data", n_cases=args.cases, size=args.size)
    viewer = napari.Viewer(title="napari-alseg latency")
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-alseg", "Active-learning annotator")
    controller = widget.controller
    controller.create_project(source, root / "project", labels_as=LABELS_AS_GROUND_TRUTH)  # the clicker's truth
    session = controller.session
    record = session.catalog.case(controller.suggestions[0].item.case)
    shape = record.shape
    print(f"{args.cases} cases of {len(record.channel_names)} channels, {shape} voxels; "
          f"{os.cpu_count()} CPUs", flush=True)
    first_model(controller, args.train_steps)
    times: dict[str, list[float]] = {name: [] for name in TARGETS_MS}
    annotate = widget.annotate_tab
    annotate.go_button.click()
    wait_until(lambda: controller.editor.editing is not None and not controller.running_jobs, timeout=300)
    times["Click (3D case, model)"] = click_latencies(controller, args.repeats)

    for _ in range(args.repeats):
        shown = annotate.suggestion_label.text()
        started = time.perf_counter()
        annotate.next_button.click()
        wait_until(lambda: annotate.suggestion_label.text() != shown, timeout=30)
        times["Next"].append(time.perf_counter() - started)

    for _ in range(args.repeats):
        opened = []
        controller.item_opened.connect(lambda: opened.append(time.perf_counter()))
        started = time.perf_counter()
        annotate.go_button.click()
        wait_until(lambda: bool(opened), timeout=300)
        QApplication.processEvents()  # the canvas painted with the new layers
        times["Go (layers shown)"].append(time.perf_counter() - started)
        wait_until(lambda: not controller.running_jobs, timeout=300)
        times["Go (focus, prefill)"].append(time.perf_counter() - started)
        controller.item_opened.disconnect()
        editing = controller.editor.editing
        layer = editing.layer
        index = int(viewer.dims.current_step[0])
        layer.paint((index, shape[1] // 2, shape[2] // 2), 1)
        saved = []
        controller.info.connect(lambda message: saved.append(time.perf_counter()) if "Saved" in message else None)
        started = time.perf_counter()
        annotate.submit_button.click()
        wait_until(lambda: bool(saved), timeout=30)
        times["Submit"].append(saved[0] - started)
        controller.info.disconnect()
        wait_until(lambda: not controller.running_jobs, timeout=300)

    times["Retrain stall"] = retrain_stalls(controller, args.train_steps)
    controller.open_sample_project("brain-stack")
    controller.editor.go()
    wait_until(lambda: controller.editor.editing is not None and not controller.running_jobs, timeout=300)
    times["Click (2D slice)"] = click_latencies(controller, args.repeats)
    print(f"{'latency':22} {'median ms':>10} {'worst ms':>9} {'target ms':>10} {'n':>3}")
    for name, values in times.items():
        target = TARGETS_MS[name]
        verdict = "" if target is None else ("  met" if max(values) * 1000 < target else "  MISSED")
        print(f"{name:22} {statistics.median(values) * 1000:10.0f} {max(values) * 1000:9.0f} "
              f"{'' if target is None else target:>10} {len(values):3d}{verdict}")
    controller.close_project()
    viewer.close()


def wait_until(condition, timeout: float = 600.0) -> None:
    """Run Qt's own event loop (no sleeping poll, which would add its own stalls) until ``condition()``."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop, poll = QEventLoop(), QTimer()
    deadline = time.monotonic() + timeout

    def check() -> None:
        if condition() or time.monotonic() > deadline:
            loop.quit()

    poll.timeout.connect(check)
    poll.start(5)
    if not condition():
        loop.exec()
    poll.stop()
    if not condition():
        raise TimeoutError(f"not done within {timeout:.0f} s")


def first_model(controller, steps: int) -> None:
    """Two cases labelled from the ground truth and a short retrain: Go then predicts."""
    from dataclasses import replace

    from napari_alseg.model import TrainConfig

    session = controller.session
    for suggestion in controller.suggestions[:2]:
        case = suggestion.item.case
        session.submit(case, session.catalog.ground_truth(case), seconds_active=0)
    session.settings.train_config = replace(session.settings.train_config or TrainConfig(), steps=steps)
    controller.learning.retrain()
    wait_until(lambda: session.learner.model_version is not None and not controller.running_jobs)


def click_latencies(controller, repeats: int) -> list[float]:
    """Seconds from each click to its result in the layer, on the item open: ``repeats`` clicks
    on its largest structure, each where the simulated clicker puts it (the centre of the
    largest error against the ground truth)."""
    import numpy as np

    from napari_alseg.simulation.clicker import item_region, largest_structure, next_click

    editing = controller.editor.editing
    item, layer = editing.item, editing.layer
    truth = controller.session.catalog.ground_truth(item.case)
    on_item = item_region(truth.shape, item.slice_index)
    class_id = largest_structure(truth, on_item)
    layer.selected_label = class_id
    spacing = controller.session.catalog.case(item.case).spacing
    seconds = []
    for _ in range(repeats):
        click = next_click((np.asarray(layer.data) == class_id) & on_item, (truth == class_id) & on_item, spacing)
        if click is None:
            break
        done = sum(edit.clicks for edit in editing.tools)
        started = time.perf_counter()
        controller.clicking.add_click(click.position, click.positive)
        wait_until(lambda: not controller.running_jobs and sum(edit.clicks for edit in editing.tools) > done,
                   timeout=120)
        seconds.append(time.perf_counter() - started)
    return seconds


def retrain_stalls(controller, steps: int) -> list[float]:
    """The extra delays (s) of a 10 ms QTimer's ticks while one retrain (and its rescore) runs."""
    from qtpy.QtCore import QTimer

    interval = 0.010
    gaps, when, last = [], [], [time.perf_counter()]

    dump = open(STALL_DUMP, "w") if STALL_DUMP is not None else None  # noqa: SIM115 (closed below)

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0] - interval)
        when.append(now)
        last[0] = now
        if dump is not None:  # re-armed each tick: it fires only when the main thread stops ticking
            if gaps[-1] + interval > STALL_DUMP_AFTER_S:
                dump.write(f"--- the stall above ended at {now - started:.2f} s, {gaps[-1] * 1000:.0f} ms late\n")
                dump.flush()
            faulthandler.dump_traceback_later(STALL_DUMP_AFTER_S, file=dump)

    timer = QTimer()
    timer.setInterval(int(interval * 1000))
    timer.timeout.connect(tick)
    version = controller.session.learner.model_version
    started = time.perf_counter()
    timer.start()
    if dump is not None:  # the click itself may stall before the first tick
        faulthandler.dump_traceback_later(STALL_DUMP_AFTER_S, file=dump)
    controller.learning.retrain()
    wait_until(lambda: controller.session.learner.model_version != version and not controller.running_jobs)
    timer.stop()
    if dump is not None:
        faulthandler.cancel_dump_traceback_later()
        dump.close()
    took = time.perf_counter() - started
    long = [(gap, at - started) for gap, at in zip(gaps, when) if gap > TARGETS_MS["Retrain stall"] / 1000]
    print(f"retrain and rescore: {took:.1f} s, {len(gaps)} timer ticks, {len(long)} late by over "
          f"{TARGETS_MS['Retrain stall']} ms, at " + ", ".join(f"{at:.1f} s ({gap * 1000:.0f} ms)" for gap, at in long),
          flush=True)
    return gaps


if __name__ == "__main__":
    main()
