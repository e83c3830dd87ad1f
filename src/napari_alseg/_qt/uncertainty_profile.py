"""The heat map's legend and per-slice profile: where the doubt is along the case.

The legend's slice and the profile follow the one rule Go follows
(:func:`~napari_alseg.session.focus.focus_from_probabilities`, inside the body); where the
colours peak elsewhere, the legend says so and why.

Holds no state of its own beyond what it draws: the editor emits the shown case's
:class:`~napari_alseg.session.focus.HeatMapScale`; a click on the profile moves the viewer to
that slice, and the viewer's slice moves the marker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backend_bases import MouseEvent
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..session.focus import HeatMapScale

if TYPE_CHECKING:
    from napari.utils.events import Event

    from .controller import AlsegController

HEAT_MAP_UNITS = "MC-dropout variance, probability²"
PROFILE_MIN_HEIGHT_PX = 72  # a long legend squeezed the plot to a line in a full dock
PROFILE_MARGINS = {"left": 0.1, "right": 0.98, "top": 0.95, "bottom": 0.42}  # room for the slice axis


def legend_text(scale: HeatMapScale) -> str:
    """The colour range, then the slice with the most doubt by Go's rule (the one Go goes to and
    the profile peaks on); where the colours are strongest elsewhere, why."""
    low = 0.0 if abs(scale.low) < 1e-3 * abs(scale.high) else scale.low  # 2.9e-34 reads as noise: it is 0
    text = (f"Heat map: {HEAT_MAP_UNITS}. Colours run {low:.3g} (clear) → {scale.high:.3g} "
            f"(yellow), this case's own range; ")
    focus = scale.focus
    if focus is None:
        return text + (f"most doubt on slice {scale.peak_slice} (the model predicts no structure here, "
                       "so Go has no slice of its own).")
    text += f"most doubt on slice {focus.slice_index}, {focus.reason}: Go's slice, the profile's peak."
    if scale.peak_slice != focus.slice_index:
        text += (f" The colours are strongest on slice {scale.peak_slice}: they show MC-dropout variance "
                 "anywhere in the body, while Go weighs the prediction over the structure it predicts.")
    return text


class UncertaintyProfile(QWidget):
    """A legend line and a small plot of the mean uncertainty per slice, the slice shown marked."""

    def __init__(self, controller: AlsegController) -> None:
        super().__init__()
        self.controller = controller
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        layout.addWidget(self.legend)
        self.figure = Figure(figsize=(3.2, 1.1))  # fixed margins: tight_layout warned on every draw at this height
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(PROFILE_MIN_HEIGHT_PX)
        self.canvas.setToolTip("Doubt per slice as Go weighs it (the legend says which); click to go to a slice")
        self.axes = self.figure.add_subplot()
        self.figure.subplots_adjust(**PROFILE_MARGINS)
        layout.addWidget(self.canvas)
        self.scale: HeatMapScale | None = None
        self._marker: Line2D | None = None
        self.canvas.mpl_connect("button_press_event", self._clicked)
        controller.heat_map_changed.connect(self.show_scale)
        controller.project_closed.connect(lambda: self.show_scale(None))
        controller.viewer.dims.events.current_step.connect(self._slice_moved)
        self.show_scale(None)

    def show_scale(self, scale: HeatMapScale | None) -> None:
        self.scale = scale
        self.setVisible(scale is not None)
        axes = self.axes
        axes.clear()
        self._marker = None
        if scale is None:  # hidden: nothing to draw (a redraw costs ~0.1-0.3 s of Go on a CPU)
            self.legend.setText("")
            return
        self.legend.setText(legend_text(scale))
        profile = scale.shown_profile  # Go's rule per slice where the model predicts structure
        slices = np.arange(len(profile))
        axes.fill_between(slices, profile, color="tab:orange", alpha=0.6, step="mid")
        axes.set_xlim(-0.5, len(slices) - 0.5)
        axes.set_xlabel("slice", fontsize=7)
        axes.set_ylabel("doubt", fontsize=7)
        axes.set_yticks([])  # the legend says the units and range; the shape is what matters
        axes.tick_params(labelsize=6)
        self._marker = axes.axvline(self._current_slice(), color="tab:blue", lw=1.2)
        self.canvas.draw_idle()

    def _current_slice(self) -> int:
        editing = self.controller.editor.editing
        if editing is None or self.controller.session is None:
            return 0
        record = self.controller.session.catalog.case(editing.item.case)
        world = float(self.controller.viewer.dims.point[0])
        return int(round((world - record.origin[0]) / record.spacing[0]))

    def _slice_moved(self, _event: Event | None = None) -> None:
        if self.controller.session is None:  # closing: the layers go after the session
            return
        if self._marker is not None and self.controller.editor.editing is not None:
            self._marker.set_xdata([self._current_slice()] * 2)
            self.canvas.draw_idle()

    def _clicked(self, event: MouseEvent) -> None:
        editing = self.controller.editor.editing
        if event.xdata is None or self.scale is None or editing is None or self.controller.session is None:
            return
        k = int(np.clip(round(event.xdata), 0, len(self.scale.shown_profile) - 1))
        record = self.controller.session.catalog.case(editing.item.case)
        self.controller.viewer.dims.set_point(0, record.origin[0] + k * record.spacing[0])
