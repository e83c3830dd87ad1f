"""The plan keeper: the one part that reads and writes a project's training plan.

:mod:`napari_alseg.plan` holds the pure maths (fingerprint -> plan); :class:`PlanKeeper`
applies it to one project: it makes the plan once from the project's items for this
device, keeps it in the project's ``meta`` table, brings a plan kept by an older version up
to date, and changes fields on request. The learner sizes its network and rounds from it;
model transfer writes an imported model's plan through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..domain import CASE
from ..plan import (MIRROR_PLAN_VERSION, PLAN_SETTING, PLAN_VERSION, Fingerprint, TrainingPlan, fingerprint,
                    inference_patch, item_left_right_axis, make_plan, stored_plan)
from ..store import Project


class PlanKeeper:
    """One project's training plan. ``device``: asked at each (re)plan for the device setting
    (None: CUDA when available), so a session's later change of device applies."""

    def __init__(self, project: Project, device: Callable[[], str | None] = lambda: None) -> None:
        self.project = project
        self._device = device

    @property
    def spatial_dims(self) -> int:
        """3 for whole-case (3D) projects, 2 for slice / ROI projects."""
        return 3 if self.project.granularity == CASE else 2

    def fingerprint(self) -> Fingerprint:
        """What the plan is made from: the items' shapes and voxel sizes (slices for 2D nets),
        the first case's left-right axis and the class names."""
        cases = self.project.cases
        dims = self.spatial_dims
        axes = slice(None) if dims == 3 else slice(1, None)
        return fingerprint([record.shape[axes] for record in cases], [record.spacing[axes] for record in cases],
                           n_channels=len(cases[0].channel_names), n_classes=self.project.n_classes,
                           left_right_axis=item_left_right_axis(cases[0].affine, dims),
                           class_names=self.project.class_names[1:])

    def training_plan(self) -> TrainingPlan:
        """The project's plan: made from its fingerprint for this device once, then kept with it.

        A plan kept by an older version keeps every field it has (and so any override): one
        kept before mirroring existed (version 1) gets the mirror axes its data call for, one
        kept before guidance (version < 3) no guidance, what its models were.
        """
        plan = stored_plan(self.project)
        if plan is None:
            return self.replan()
        if plan.version < PLAN_VERSION:
            mirror_axes = (make_plan(self.fingerprint(), plan.device).mirror_axes
                           if plan.version < MIRROR_PLAN_VERSION else plan.mirror_axes)
            plan = self._keep(replace(plan, mirror_axes=mirror_axes, version=PLAN_VERSION))
        return plan

    def replan(self, **overrides: Any) -> TrainingPlan:
        """Make the plan anew for this device (``overrides``: fields to set by hand) and keep it."""
        from ..model import pick_device

        device_kind = "cuda" if pick_device(self._device()).type == "cuda" else "cpu"
        return self._keep(make_plan(self.fingerprint(), device_kind).with_overrides(**overrides))

    def set_plan(self, **overrides: Any) -> TrainingPlan:
        """Change some fields of the kept plan (e.g. ``seconds=60``, ``batch_size=4``)."""
        return self._keep(self.training_plan().with_overrides(**overrides))

    def inference_patch(self) -> tuple[int, ...] | None:
        """Sliding-window size for prediction and scoring (native voxels), see :func:`plan.inference_patch`."""
        return inference_patch(self.training_plan())

    def _keep(self, plan: TrainingPlan) -> TrainingPlan:
        self.project.store_setting(PLAN_SETTING, plan.to_json())
        return plan
