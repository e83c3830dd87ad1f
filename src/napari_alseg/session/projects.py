"""Making and finding projects, for front ends that open them with :meth:`Session.open
<napari_alseg.session.facade.Session.open>` and never import the store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..store import DB_NAME, Project
from .model_transfer import create_from_model


def create_project(folder: str | os.PathLike, source_dir: str | os.PathLike, *,
                   init_model: str | os.PathLike | None = None, **create_options: Any) -> Project:
    """A new project over ``source_dir`` in ``folder`` (:meth:`Project.create
    <napari_alseg.store.Project.create>`'s options), starting from the exported model
    ``init_model`` when given (:func:`~.model_transfer.create_from_model`). The caller closes
    it, or hands it to a :class:`~napari_alseg.session.facade.Session`."""
    if init_model is not None:
        return create_from_model(folder, source_dir, init_model=init_model, **create_options)
    return Project.create(folder, source_dir, **create_options)


def holds_project(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a project's database already (open it rather than create one)."""
    return (Path(folder) / DB_NAME).is_file()
