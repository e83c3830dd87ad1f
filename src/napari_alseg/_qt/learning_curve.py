"""The learning curve: validation Dice against boundary traced, one point per model version.

Drawn only when its points change and it is on screen: a draw costs 0.4-0.5 s of the UI
thread on a CPU, and every Submit and rescore hands it the curve while it sits in a hidden
tab (the draw ran inside the next Retrain's click, stalling the UI there; benchmarks/
bench_latency.py). Fixed margins, not tight_layout, which measured every label per draw.
"""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer
from qtpy.QtGui import QShowEvent

MARGINS = {"left": 0.2, "right": 0.95, "top": 0.93, "bottom": 0.2}  # room for the axis labels


class LearningCurve(FigureCanvasQTAgg):
    def __init__(self) -> None:
        self.figure = Figure(figsize=(3.2, 2.2))
        super().__init__(self.figure)
        self.axes = self.figure.add_subplot()
        self.figure.subplots_adjust(**MARGINS)
        self.wanted: list[tuple[str, float, float]] = []  # the points to show
        self.drawn: list[tuple[str, float, float]] | None = None  # the points drawn (None: nothing yet)

    def show_points(self, curve: list[tuple[str, float, float]]) -> None:
        self.wanted = list(curve)
        if self.isVisible():
            self._draw_points()

    def showEvent(self, event: QShowEvent | None) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        QTimer.singleShot(0, self._draw_points)  # after the tab shown with it has handed over its points

    def _draw_points(self) -> None:
        if self.wanted == self.drawn:
            return
        axes = self.axes
        axes.clear()
        axes.set_xlabel("boundary traced (mm)")
        axes.set_ylabel("validation Dice")
        axes.set_ylim(0, 1)
        axes.grid(alpha=0.3)
        if self.wanted:
            versions, traced, dice = zip(*self.wanted)
            axes.plot(traced, dice, "o-", color="tab:blue")
            axes.annotate(versions[-1], (traced[-1], dice[-1]), textcoords="offset points", xytext=(4, 4))
        else:
            axes.text(0.5, 0.5, "no model yet", ha="center", va="center", transform=axes.transAxes)
        self.drawn = list(self.wanted)
        self.draw_idle()
