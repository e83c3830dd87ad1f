"""Scores kept from the last scoring, reused while nothing they rest on has changed.

Scoring a pool is long (a prediction and an MC-dropout pass per case or slice: 30-48 s for
nine small cases on a CPU), and ``alseg suggest`` ran it on every call. A scoring records
what it rested on (:func:`scoring_state`: the model version, the engine and what it needs,
the last annotation event and weak annotation, the cases) in the project's settings; a
later opening with the same state ranks the stored scores instead
(:func:`pool_from_stored`), and otherwise says why it scores again (:func:`stale_reason`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ..domain import NEED_FEATURES, NEED_VAE, Granularity, Need, QueryItem
from ..pool import PoolScores
from ..store import Project, ScoredItem

SCORING_STATE_SETTING = "last_scoring"  # the state the stored scores were computed from (JSON)
UNSTORED_NEEDS = frozenset({NEED_FEATURES, NEED_VAE})  # pool arrays the scores' terms do not keep


def scoring_state(project: Project, *, model_version: str | None, strategy: str, granularity: Granularity | None,
                  needs: Iterable[Need]) -> dict[str, Any]:
    """What a scoring rests on, as plain JSON values: two scorings with equal states score alike."""
    events = project.events()
    weak = [w.id for case in project.cases for w in project.weak_annotations(case.name).values()]
    return {"model_version": model_version, "strategy": strategy, "granularity": granularity,
            "needs": sorted(needs), "last_event": max((e.id for e in events), default=0),
            "events": len(events), "last_weak": max(weak, default=0), "cases": len(project.cases)}


def stored_state(project: Project) -> dict[str, Any] | None:
    """The state of the last stored scoring, None when none was recorded."""
    text = project.setting(SCORING_STATE_SETTING)
    try:
        state = json.loads(text) if text else None
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


def keep_state(project: Project, state: dict[str, Any]) -> None:
    """Record what the stored scores rest on; a read-only project keeps no scores, nor this."""
    if project.read_only is None:
        project.store_setting(SCORING_STATE_SETTING, json.dumps(state, sort_keys=True))


def stale_reason(stored: dict[str, Any] | None, current: dict[str, Any]) -> str:
    """Why the stored scores cannot serve ``current`` ("" when they can), in the user's words."""
    if stored is None:
        return "no scores stored for this project yet"
    if stored.get("model_version") != current["model_version"]:
        return f"the model changed ({stored.get('model_version')} was scored, {current['model_version']} is current)"
    if stored.get("granularity") != current["granularity"]:
        return f"the pool's items changed ({stored.get('granularity')}s → {current['granularity']}s)"
    if (stored.get("last_event"), stored.get("events")) != (current["last_event"], current["events"]):
        new = current["events"] - int(stored.get("events") or 0)
        return (f"labels changed since ({new} annotation event{'' if new == 1 else 's'} since the last scoring)"
                if new > 0 else "labels changed since the last scoring")
    if stored.get("last_weak") != current["last_weak"]:
        return "a class's slice range was marked since the last scoring"
    if stored.get("cases") != current["cases"]:
        return "cases were added since the last scoring"
    if not set(current["needs"]) <= set(stored.get("needs") or ()):
        return (f"{current['strategy']} ranks by numbers the last scoring "
                f"(for {stored.get('strategy')}) did not compute")
    return ""


def pool_from_stored(base: PoolScores, stored: Iterable[ScoredItem], model_version: str) -> PoolScores | None:
    """The model's pool rebuilt from its stored scores over ``base`` (the model-free pool of
    the same labels: candidates, labelled items, effort, allowed classes). None when a
    candidate has no stored score (the scores are not this pool's). Its terms serve every
    need but :data:`UNSTORED_NEEDS` (features, VAE latents), which it does not have."""
    terms: dict[QueryItem, dict[str, float]] = {
        QueryItem(s.case, s.slice_index, s.class_id): dict(s.terms) for s in stored}
    if any(item not in terms for item in base.candidates):
        return None
    return replace(base, has_model=True, model_version=model_version,
                   terms={item: terms[item] for item in base.candidates})
