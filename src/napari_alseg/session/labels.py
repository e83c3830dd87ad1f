"""A read-only view of one project's labels: snapshots, partial-label sets, training items.

Nothing here writes to the project or keeps state beyond the bounded image cache, so every
method is safe to call from a worker thread while the annotator keeps submitting; what a
reader sees is the labels as they were when it read them (docs/DESIGN.md §5.3:
training reads a snapshot).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..domain import CASE, LABELLING_KINDS, PSEUDO_ACCEPTED, QueryItem
from ..image_cache import ImageCache, LazyImages
from ..store import Project

if TYPE_CHECKING:
    from ..model import TrainingItem


class LabelsView:
    """What the project's labels say, computed on demand; images through a bounded LRU cache."""

    def __init__(self, project: Project, images: ImageCache | None = None) -> None:
        self.project = project
        self.images = images if images is not None else ImageCache()  # a BraTS-size cohort does not fit whole

    @property
    def spatial_dims(self) -> int:
        """2D nets on slices for slice/ROI projects (2D stacks), 3D nets on whole cases."""
        return 3 if self.project.granularity == CASE else 2

    def case_image(self, case: str) -> np.ndarray:
        """The case's channels stacked: float32 ``(Cin, k, j, i)``, from a bounded LRU cache
        (``$ALSEG_IMAGE_CACHE_MB``; see :mod:`napari_alseg.image_cache`)."""
        def load() -> np.ndarray:
            volumes = self.project.load_channels(case)
            return np.stack([volume.data for volume in volumes]).astype(np.float32, copy=False)

        return self.images.get(case, load)

    def in_plane_spacing(self, case: str) -> tuple[float, float]:
        spacing = self.project.case(case).spacing
        return float(spacing[1]), float(spacing[2])

    # ------------------------------------------------------------------ partial labels

    def allowed_classes(self, case: str) -> np.ndarray:
        """``C_n`` per slice (docs/METHODS.md §7.1): bool ``(k, C)``, the classes an unlabelled voxel may be.

        A class is excluded from slice n once it was delineated there, and outside its
        weak slice range ``[n1_c, n2_c]``; background is always possible.
        """
        n_slices = self.project.case(case).n_slices
        allowed = np.ones((n_slices, self.project.n_classes), dtype=bool)
        for item in self.project.labelled_items(case):
            if item.class_id is not None and item.slice_index is not None:
                allowed[item.slice_index, item.class_id] = False
        for class_id, weak in self.project.weak_annotations(case).items():
            outside = np.ones(n_slices, dtype=bool)
            outside[weak.first_slice:weak.last_slice + 1] = False
            allowed[outside, class_id] = False
        allowed[:, 0] = True
        return allowed

    def delineated_classes(self, case: str) -> dict[int, set[int]]:
        """Per slice index, the classes 1..C-1 delineated there so far (a whole slice: all)."""
        every_class = set(range(1, self.project.n_classes))
        delineated: dict[int, set[int]] = {}
        for item in self.project.labelled_items(case):
            slices = range(self.project.case(case).n_slices) if item.slice_index is None else [item.slice_index]
            for n in slices:
                delineated.setdefault(n, set()).update(every_class if item.class_id is None else {item.class_id})
        return delineated

    def pseudo_only_regions(self, case: str) -> set[int | None]:
        """Slices (None = whole case) whose labels come only from accepted pseudo-labels."""
        kinds: dict[int | None, set[str]] = {}
        for event in self.project.events(case):
            if event.label_version is not None:
                kinds.setdefault(event.slice_index, set()).add(event.kind)
        return {region for region, seen in kinds.items() if seen == {PSEUDO_ACCEPTED}}

    # ------------------------------------------------------------------ held out

    def held_out(self) -> set[tuple[str, int | None]]:
        """The fixed validation split: ``(case, None)`` or ``(case, slice)``."""
        return set(self.project.validation_items())

    def validation_query_items(self) -> set[QueryItem]:
        return {QueryItem(case, slice_index) for case, slice_index in self.project.validation_items()}

    def reference_labels(self, case: str) -> np.ndarray | None:
        """What a held-out check compares with: full annotations, else the ground truth."""
        snapshot = self.project.current_labels(case)
        if snapshot is not None and snapshot.labelled.all():
            return snapshot.data
        return self.project.ground_truth(case)

    # ------------------------------------------------------------------ snapshots

    def training_items(self) -> list[TrainingItem]:
        """A snapshot of every labelled, non-validation item; edits after this are not seen."""
        return [item for _key, item in self.keyed_training_items()]

    def keyed_training_items(self) -> list[tuple[QueryItem, TrainingItem]]:
        """:meth:`training_items` with the case (3D) or slice (2D) each one is."""
        from ..model import TrainingItem

        held_out = self.held_out()
        items: list[tuple[QueryItem, TrainingItem]] = []
        for record in self.project.cases:
            snapshot = self.project.current_labels(record.name)
            if snapshot is None or not snapshot.labelled.any():
                continue
            pseudo = self.pseudo_only_regions(record.name)
            image = self.case_image(record.name)
            if self.spatial_dims == 3:
                if (record.name, None) not in held_out:
                    items.append((QueryItem(record.name), TrainingItem(image, snapshot.data, snapshot.labelled,
                                                                       pseudo_label=None in pseudo)))
                continue
            allowed = self.allowed_classes(record.name)
            for n in np.flatnonzero(snapshot.labelled.any(axis=(1, 2))):
                if (record.name, int(n)) in held_out:
                    continue
                items.append((QueryItem(record.name, int(n)),
                              TrainingItem(image[:, n], snapshot.data[n], snapshot.labelled[n],
                                           allowed[n], pseudo_label=int(n) in pseudo or None in pseudo)))
        return items

    def all_images(self) -> LazyImages:
        """Every case's image for scoring, loaded through the bounded cache only when read:
        scoring a cohort holds at most the cache's bytes plus one case. Shapes come from the
        project's records, ``(Cin, k, j, i)``."""
        return LazyImages({record.name: (len(record.channel_names), *record.shape) for record in self.project.cases},
                          self.case_image)

    def all_labels(self) -> dict[str, tuple[np.ndarray, np.ndarray] | None]:
        """Per case, (class ids, labelled mask) ``(k, j, i)`` as they are now, or None."""
        labels = {}
        for record in self.project.cases:
            snapshot = self.project.current_labels(record.name)
            labels[record.name] = None if snapshot is None else (snapshot.data, snapshot.labelled)
        return labels

    def all_allowed(self) -> dict[str, np.ndarray]:
        return {record.name: self.allowed_classes(record.name) for record in self.project.cases}

    def all_class_ranges(self) -> dict[tuple[str, int], tuple[int, int]]:
        """``(case, class)`` → the weak slice range marked for it (docs/METHODS.md §7.1), the latest one."""
        return {(record.name, class_id): (weak.first_slice, weak.last_slice)
                for record in self.project.cases
                for class_id, weak in self.project.weak_annotations(record.name).items()}

    def all_spacings(self) -> dict[str, tuple[float, float]]:
        return {record.name: self.in_plane_spacing(record.name) for record in self.project.cases}

    def recent_items(self) -> list[QueryItem]:
        """Items labelled since the model before the current one: gradient-vae's seeds.

        They were labelled while the previous model (none, before the first) was active,
        so the current model is the first to have learnt from them: "the samples added
        last round" (docs/METHODS.md §5.2). Items labelled under the current model count too.
        """
        versions = [checkpoint.model_version for checkpoint in self.project.checkpoints()]
        latest = set(versions[-2:]) | ({None} if len(versions) < 2 else set())
        return [QueryItem(e.case, e.slice_index, e.class_id) for e in self.project.events()
                if e.label_version is not None and e.model_version in latest
                and e.kind in LABELLING_KINDS and e.undone_in_version is None]
