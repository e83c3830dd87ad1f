"""Gradient-guided sampling in a VAE latent space (docs/METHODS.md §5, Dai et al. 2022).

For every seed ``x`` (an item labelled last round) scoring has moved the image up the
segmentation loss, ``x' = x + η ∇_x L_seg(x, y)``, and encoded both: ``z = Enc(x)``,
``z' = Enc(x')`` (:mod:`napari_alseg.model.vae`). The direction ``z' - z`` points to where
the model would learn most; the suggestion is the unlabelled real sample nearest to ``z'``
among those lying ahead in that direction, ``cos(z_cand - z, z' - z) >= cos θ``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..domain import NEED_MODEL, NEED_VAE, SLICE
from .base import QueryItem, Strategy, Suggestion, from_scores, item_key, rank, suggestion
from .baseline import select_random

if TYPE_CHECKING:
    from ..pool import PoolScores

ANGLE_DEGREES = 45.0


def select_gradient_vae(
    pool: PoolScores, k: int, seed: int, angle_degrees: float = ANGLE_DEGREES
) -> list[Suggestion]:
    """One suggestion per seed (seeds in a seeded order), then the nearest unused to any ``z'``.

    Score = ``-‖z_cand - z'‖``; terms ``latent_distance`` and ``direction_cosine`` (NaN
    when ``z' = z``). Without seeds (nothing labelled yet) it falls back to random.
    """
    moved = pool.gradient_latents or {}
    latents = pool.vae_latents or {}
    seeds = [item for item in rank({item: 0.0 for item in moved}, seed) if item in latents]
    candidates = sorted((item for item in pool.candidates if item in latents), key=item_key)
    if not seeds or not candidates:
        return [replace(s, message="gradient-vae: no labelled seed samples yet: random suggestions")
                for s in select_random(pool, k, seed)]
    points = np.stack([np.asarray(latents[item], dtype=float) for item in candidates])
    tie_break = np.random.default_rng(seed).permutation(len(candidates))
    used = np.zeros(len(candidates), dtype=bool)
    picks: list[tuple[int, QueryItem]] = []
    for seed_item in seeds[:k]:
        if used.all():
            break
        z, moved_z = np.asarray(latents[seed_item], float), np.asarray(moved[seed_item], float)
        index = _nearest_ahead(points, z, moved_z, used, tie_break, math.cos(math.radians(angle_degrees)))
        used[index] = True
        picks.append((index, seed_item))
    picks += _nearest_unused(points, moved, seeds, used, tie_break, k - len(picks))
    return [_suggestion(pool, candidates[index], points[index], latents, moved, seed_item)
            for index, seed_item in picks]


def direction_cosine(points: np.ndarray, z: np.ndarray, moved_z: np.ndarray) -> np.ndarray:
    """``cos(points - z, z' - z)`` per row of ``(N, D)`` ``points``; NaN for zero vectors."""
    offsets = points - z
    step = moved_z - z
    norms = np.linalg.norm(offsets, axis=1) * np.linalg.norm(step)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, offsets @ step / norms, np.nan)


def _nearest_ahead(points: np.ndarray, z: np.ndarray, moved_z: np.ndarray, used: np.ndarray,
                   tie_break: np.ndarray, min_cosine: float) -> int:
    """Index of the nearest unused point to ``z'`` inside the cone; the nearest if none is."""
    distance = np.linalg.norm(points - moved_z, axis=1)
    order = [i for i in np.lexsort((tie_break, distance)) if not used[i]]
    ahead = direction_cosine(points[order], z, moved_z) >= min_cosine
    return int(order[int(np.argmax(ahead))] if ahead.any() else order[0])


def _nearest_unused(points: np.ndarray, moved: Mapping[QueryItem, np.ndarray], seeds: list[QueryItem],
                    used: np.ndarray, tie_break: np.ndarray, count: int) -> list[tuple[int, QueryItem]]:
    """Fill: unused points by distance to their nearest ``z'``, tagged with that seed."""
    if count <= 0:
        return []
    targets = np.stack([np.asarray(moved[item], float) for item in seeds])
    distance = np.linalg.norm(points[:, None, :] - targets[None], axis=2)
    nearest_seed = distance.argmin(axis=1)
    order = [i for i in np.lexsort((tie_break, distance.min(axis=1))) if not used[i]]
    return [(int(i), seeds[nearest_seed[i]]) for i in order[:count]]


def _suggestion(pool: PoolScores, item: QueryItem, point: np.ndarray, latents: Mapping[QueryItem, np.ndarray],
                moved: Mapping[QueryItem, np.ndarray], seed_item: QueryItem) -> Suggestion:
    z, moved_z = np.asarray(latents[seed_item], float), np.asarray(moved[seed_item], float)
    distance = float(np.linalg.norm(point - moved_z))
    cosine = float(direction_cosine(point[None], z, moved_z)[0])
    return suggestion(pool, item, -distance, "gradient-vae",
                      {"latent_distance": distance, "direction_cosine": cosine})


GRADIENT_VAE = Strategy(
    name="gradient-vae",
    granularity=SLICE,
    description=("Nearest unlabelled sample ahead of each seed's loss-gradient step in a VAE latent space "
                 "(docs/METHODS.md §5)."),
    needs=frozenset({NEED_MODEL, NEED_VAE}),
    select=from_scores(select_gradient_vae),
)
