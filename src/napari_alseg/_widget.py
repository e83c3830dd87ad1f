"""The dock widget (Qt layer). For now: open the sample sets and see what is loaded.

The annotator's loop (suggest → go → annotate → submit → retrain) lands here once
the project store, the model and the query engines exist; all logic stays in the
pure core, this module only turns it into controls and layers.
"""

import napari
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from .errors import AlsegError

PLUGIN = "napari-alseg"
SAMPLES = {"brain-stack": "Open brain stack (2D slices)", "tumour-case": "Open tumour case (3D)"}


class AlsegWidget(QWidget):
    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        layout = QVBoxLayout(self)
        title = QLabel("<b>Active-learning segmentation</b>")
        layout.addWidget(title)
        intro = QLabel(
            "Open a sample or a NIfTI file (File › Open). The annotation loop "
            "(suggest, annotate, retrain) appears here once a project is open."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.sample_buttons: dict[str, QPushButton] = {}
        for key, text in SAMPLES.items():
            button = QPushButton(text)
            button.clicked.connect(lambda _=False, k=key: self.open_sample(k))
            layout.addWidget(button)
            self.sample_buttons[key] = button
        self.status = QLabel()
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.viewer.layers.events.inserted.connect(self._refresh_status)
        self.viewer.layers.events.removed.connect(self._refresh_status)
        self._refresh_status()

    def open_sample(self, key: str) -> None:
        try:
            self.viewer.open_sample(PLUGIN, key)
        except AlsegError as exc:
            show_error(str(exc))
            return
        show_info(f"Opened sample {key}")

    def _refresh_status(self, event=None) -> None:
        lines = [
            f"{layer.name}: {type(layer).__name__} {tuple(layer.data.shape)}, "
            f"voxel {tuple(round(float(s), 2) for s in layer.scale)} mm"
            for layer in self.viewer.layers
            if hasattr(layer.data, "shape")
        ]
        self.status.setText("\n".join(lines) if lines else "No layers loaded.")
