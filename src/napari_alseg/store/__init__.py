"""The annotation project store: the durable core of the active-learning loop.

A project is a folder holding ``project.sqlite`` (cases, annotation events, weak
annotations, rounds, checkpoints, scores, drafts, the fixed validation split) and
append-only label volumes under ``labels/``. See :class:`Project`.
"""

from .discover import CaseSource, discover_cases
from .project import DB_NAME, Project
from .records import (CORRECTED, EVENT_KINDS, MANUAL, PSEUDO_ACCEPTED, PSEUDO_REJECTED,
                      CaseGeometry, CaseRecord, CheckpointRecord, ClassInfo, EventRecord, LabelledItem,
                      LabelSnapshot, RoundRecord, ScoredItem, ToolUse, WeakAnnotation)
from .schema import SCHEMA_VERSION

__all__ = [
    "CORRECTED", "DB_NAME", "EVENT_KINDS", "MANUAL", "PSEUDO_ACCEPTED", "PSEUDO_REJECTED",
    "SCHEMA_VERSION", "CaseGeometry", "CaseRecord", "CaseSource", "CheckpointRecord", "ClassInfo", "EventRecord",
    "LabelSnapshot", "LabelledItem", "Project", "RoundRecord", "ScoredItem", "ToolUse", "WeakAnnotation",
    "discover_cases",
]
