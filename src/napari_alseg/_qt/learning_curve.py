"""The learning curve: validation Dice against boundary traced, one point per model version."""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure


class LearningCurve(FigureCanvasQTAgg):
    def __init__(self) -> None:
        self.figure = Figure(figsize=(3.2, 2.2), tight_layout=True)
        super().__init__(self.figure)
        self.axes = self.figure.add_subplot()
        self.show_points([])

    def show_points(self, curve: list[tuple[str, float, float]]) -> None:
        axes = self.axes
        axes.clear()
        axes.set_xlabel("boundary traced (mm)")
        axes.set_ylabel("validation Dice")
        axes.set_ylim(0, 1)
        axes.grid(alpha=0.3)
        if curve:
            versions, traced, dice = zip(*curve)
            axes.plot(traced, dice, "o-", color="tab:blue")
            axes.annotate(versions[-1], (traced[-1], dice[-1]), textcoords="offset points", xytext=(4, 4))
        else:
            axes.text(0.5, 0.5, "no model yet", ha="center", va="center", transform=axes.transAxes)
        self.draw_idle()
