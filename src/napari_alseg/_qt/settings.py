"""The plain-value settings of the dock, as evented dataclasses bound to magicgui widgets.

The controller owns one instance of each and reacts to their events; a tab only shows
``settings.gui`` (magicgui's ``guiclass``: widget and dataclass stay in step both ways).
No ``from __future__ import annotations`` here: magicgui reads the ``Annotated`` hints.
"""

import getpass
import os
from pathlib import Path
from typing import Annotated

from magicgui.experimental import guiclass
from magicgui.widgets.bases import ContainerWidget
from psygnal import SignalGroup

from ..strategies import STRATEGIES

MODES = ("correct the prediction", "trace from scratch")
CORRECT, TRACE = MODES
STRATEGY_NAMES = list(STRATEGIES)


def user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "annotator"


def projects_root() -> Path:
    """Where sample projects go: ``$ALSEG_PROJECTS_DIR`` or ``~/napari-alseg-projects``."""
    return Path(os.environ.get("ALSEG_PROJECTS_DIR", Path.home() / "napari-alseg-projects"))


@guiclass
class LoopSettings:
    """Who annotates, which query engine ranks the pool, how many items a round asks for, how."""

    annotator: Annotated[str, {"label": "Annotator:"}] = ""
    strategy: Annotated[str, {"widget_type": "ComboBox", "choices": STRATEGY_NAMES,
                              "label": "Query engine:"}] = STRATEGY_NAMES[0]
    batch_size: Annotated[int, {"min": 1, "max": 200, "label": "Batch size:"}] = 5
    mode: Annotated[str, {"widget_type": "ComboBox", "choices": list(MODES), "label": "Mode:"}] = CORRECT


@guiclass
class RoundSettings:
    """The wall-clock budget of one retrain round (minutes; kept in the project's plan)."""

    budget_minutes: Annotated[float, {"min": 0.25, "max": 120.0, "step": 0.5, "label": "Train for",
                                      "tooltip": "Wall-clock training time of one retrain round "
                                                 "(kept in the project's plan)"}] = 5.0


# magicgui's guiclass marks its dataclass for pyright only: mypy sees neither `gui` nor `events`
def settings_gui(settings: LoopSettings | RoundSettings) -> ContainerWidget:
    """The widget of ``settings`` (magicgui's, bound to the dataclass both ways)."""
    widget: ContainerWidget = getattr(settings, "gui")
    return widget


def settings_events(settings: LoopSettings | RoundSettings) -> SignalGroup:
    """The signals of ``settings``, one per field, named as the field."""
    signals: SignalGroup = getattr(settings, "events")
    return signals
