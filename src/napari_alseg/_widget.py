"""The annotator's dock widget: suggest → go → trace/correct → submit → one-click retrain.

All logic lives in :class:`~napari_alseg.session.Session`, driven by one controller
(:mod:`._qt.controller`) that owns the session, the background jobs and the item being
edited; this module only assembles one widget per tab around it and turns the controller's
messages into napari notifications.

Messages carry names from files (cases, classes, paths); napari's notifications and Qt's
message boxes guess whether a text is markup, so every message passes :func:`as_written`
and the status line is plain text: a class called ``<img src=x>`` reads as written.
"""

import napari
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QTabWidget, QVBoxLayout, QWidget

from ._qt.annotate_tab import AnnotateTab
from ._qt.controller import AlsegController
from ._qt.effort_tab import EffortTab
from ._qt.project_tab import ProjectTab
from ._qt.review_tab import ReviewTab

WORD_JOINER = "\u2060"  # no width, no break: the text on screen is unchanged


def as_written(message: str) -> str:
    """``message`` as a label that guesses between plain and rich text shows it: a word joiner
    after each ``<`` and ``&`` stops Qt taking ``<b>`` for a tag or ``&lt;`` for an entity, and
    shows nothing itself."""
    return message.replace("&", "&" + WORD_JOINER).replace("<", "<" + WORD_JOINER)


class AlsegWidget(QWidget):
    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.controller = controller = AlsegController(napari_viewer, parent=self)
        controller.ask = lambda question: self.confirm(question)
        self.project_tab = ProjectTab(controller)
        self.annotate_tab = AnnotateTab(controller)
        self.review_tab = ReviewTab(controller)
        self.effort_tab = EffortTab(controller)
        self.tabs = QTabWidget()
        for tab, title in ((self.project_tab, "Project"), (self.annotate_tab, "Annotate"),
                           (self.review_tab, "Review"), (self.effort_tab, "Effort")):
            self.tabs.addTab(tab, title)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        self.status = QLabel("Open or create a project to start.")
        self.status.setTextFormat(Qt.TextFormat.PlainText)  # it names cases and classes
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        controller.status.connect(self.status.setText)
        # looked up when shown, so that tests can replace the module's show_* functions
        controller.error.connect(lambda message: show_error(as_written(message)))
        controller.warning.connect(lambda message: show_warning(as_written(message)))
        controller.info.connect(lambda message: show_info(as_written(message)))
        controller.project_opened.connect(lambda: self.tabs.setCurrentWidget(self.annotate_tab))
        controller.annotate_requested.connect(lambda: self.tabs.setCurrentWidget(self.annotate_tab))
        napari_viewer.bind_key("Shift-S", lambda _viewer: controller.editor.submit(), overwrite=True)
        self.destroyed.connect(controller.runtime.shutdown)

    def confirm(self, question: str) -> bool:
        """Ask yes/no in a dialog (a seam tests replace)."""
        from qtpy.QtWidgets import QMessageBox

        answer = QMessageBox.question(self, "napari-alseg", as_written(question))
        return answer == QMessageBox.StandardButton.Yes
