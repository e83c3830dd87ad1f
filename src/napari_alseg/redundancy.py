"""Redundancy restriction on encoder features, and slice-uniform ordering (docs/METHODS.md §4, §2.2).

Features are one vector per item (encoder bottleneck activations averaged over space),
compared by cosine similarity. Every selection is greedy and deterministic: ties go to
the lowest index, which after :func:`top_then_restrict`'s sort is the more uncertain item.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .errors import AlsegError

RESTRICTION_METHODS = ("representative", "non_similar")


def cosine_similarity_matrix(features_a: np.ndarray, features_b: np.ndarray) -> np.ndarray:
    """Cosine similarity ``(N, M)`` of the rows of ``(N, F)`` and ``(M, F)``; zero rows → 0."""
    unit_a = _unit_rows(features_a)
    unit_b = _unit_rows(features_b)
    if unit_a.shape[1] != unit_b.shape[1]:
        raise AlsegError(
            f"feature lengths differ: {unit_a.shape[1]} vs {unit_b.shape[1]}"
        )
    return unit_a @ unit_b.T


def representative_max_cover(similarity: np.ndarray, k: int) -> list[int]:
    """Greedy maximum cover: ``k`` indices maximising ``Σ_x max_{s∈S} ss(x, s)``.

    ``similarity`` is ``(K, K)`` with ``ss(x, s)`` at ``[x, s]``. Each step adds the item with
    the largest marginal gain. Coverage starts at each row's minimum, so the first pick is
    the item with the largest total similarity, exactly as ``f({s})`` ranks it, also when
    similarities are negative. Returns ``min(k, K)`` indices in pick order.
    """
    similarity = _checked_square(similarity)
    coverage = similarity.min(axis=1, initial=np.inf)
    selected: list[int] = []
    for _ in range(_checked_count(k, similarity.shape[0])):
        gain = np.maximum(similarity - coverage[:, None], 0.0).sum(axis=0)
        gain[selected] = -np.inf
        best = _first_best(gain)
        selected.append(best)
        coverage = np.maximum(coverage, similarity[:, best])
    return selected


def non_similar(
    similarity_to_candidates: np.ndarray, similarity_to_annotated: np.ndarray, k: int
) -> list[int]:
    """Greedily add the candidate least similar to everything annotated or already picked.

    ``similarity_to_candidates`` is ``(K, K)``, ``similarity_to_annotated`` is ``(K, A)``
    (A may be 0: the first pick is then index 0). Returns ``min(k, K)`` indices in pick order.
    """
    similarity = _checked_square(similarity_to_candidates)
    to_annotated = np.asarray(similarity_to_annotated, dtype=float)
    if to_annotated.ndim != 2 or to_annotated.shape[0] != similarity.shape[0]:
        raise AlsegError(
            f"similarity to annotated must be ({similarity.shape[0]}, A), "
            f"got {to_annotated.shape}"
        )
    _reject_nan(to_annotated)
    closest = to_annotated.max(axis=1, initial=-np.inf)
    selected: list[int] = []
    for _ in range(_checked_count(k, similarity.shape[0])):
        dissimilarity = -closest
        dissimilarity[selected] = -np.inf
        best = _first_best(dissimilarity)
        selected.append(best)
        closest = np.maximum(closest, similarity[:, best])
    return selected


def top_then_restrict(
    scores: np.ndarray,
    features: np.ndarray,
    k: int,
    method: str,
    annotated_features: np.ndarray | None = None,
) -> list[int]:
    """Kim et al.'s restriction: take the ``2k`` most uncertain items, keep ``k`` by ``method``.

    ``scores`` ``(N,)`` (higher = more uncertain), ``features`` ``(N, F)``,
    ``annotated_features`` ``(A, F)`` used by ``"non_similar"``; ``method`` is one of
    :data:`RESTRICTION_METHODS`. Returns indices into ``scores`` in pick order.
    """
    if method not in RESTRICTION_METHODS:
        raise AlsegError(f"unknown restriction {method!r}; choose from {RESTRICTION_METHODS}")
    scores = np.asarray(scores, dtype=float)
    features = np.asarray(features, dtype=float)
    if scores.ndim != 1 or features.ndim != 2 or features.shape[0] != scores.shape[0]:
        raise AlsegError(
            f"scores (N,) and features (N, F) disagree: {scores.shape} vs {features.shape}"
        )
    _reject_nan(scores)
    pool = np.argsort(-scores, kind="stable")[: 2 * _checked_count(k, scores.size)]
    pool_features = features[pool]
    similarity = cosine_similarity_matrix(pool_features, pool_features)
    if method == "representative":
        kept = representative_max_cover(similarity, k)
    else:
        if annotated_features is None:
            annotated_features = np.empty((0, features.shape[1]))
        kept = non_similar(
            similarity, cosine_similarity_matrix(pool_features, annotated_features), k
        )
    return [int(pool[i]) for i in kept]


def longest_unlabelled_run_order(n_slices: int, labelled: Iterable[int]) -> list[int]:
    """Slice-uniform baseline order (docs/METHODS.md §2.2) of all unlabelled slices ``0..n_slices-1``.

    Each pick is the middle (lower middle for even lengths) of the currently longest run of
    consecutive unlabelled slices, ties → the run starting lowest; so every pick shortens
    the longest gap. Nine empty slices give 4, 1, 6, 2, 7, 0, 3, 5, 8.
    """
    labelled = {int(n) for n in labelled}
    outside = sorted(n for n in labelled if not 0 <= n < n_slices)
    if outside:
        raise AlsegError(f"labelled slices {outside} outside 0..{n_slices - 1}")
    is_labelled = np.zeros(max(n_slices, 0), dtype=bool)
    is_labelled[list(labelled)] = True
    order: list[int] = []
    while not is_labelled.all():
        start, length = _longest_run(~is_labelled)
        pick = start + (length - 1) // 2
        order.append(pick)
        is_labelled[pick] = True
    return order


def _first_best(values: np.ndarray) -> int:
    """Lowest index whose value is the maximum up to rounding (1e-9 relative), for stable ties."""
    best = values.max()
    tolerance = 1e-9 * max(1.0, abs(best)) if np.isfinite(best) else 0.0
    return int(np.flatnonzero(values >= best - tolerance)[0])


def _longest_run(flags: np.ndarray) -> tuple[int, int]:
    """``(start, length)`` of the first longest run of True in a 1D boolean array."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    lengths = np.flatnonzero(edges == -1) - starts
    longest = int(np.argmax(lengths))
    return int(starts[longest]), int(lengths[longest])


def _unit_rows(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=float)
    if features.ndim != 2:
        raise AlsegError(f"features must be (N, F), got shape {features.shape}")
    _reject_nan(features)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return np.divide(features, norms, out=np.zeros_like(features), where=norms > 0)


def _checked_square(similarity: np.ndarray) -> np.ndarray:
    similarity = np.asarray(similarity, dtype=float)
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise AlsegError(f"similarity must be square (K, K), got shape {similarity.shape}")
    _reject_nan(similarity)
    return similarity


def _checked_count(k: int, available: int) -> int:
    """``min(k, available)``; a negative k is a mistake."""
    if k < 0:
        raise AlsegError(f"k must be non-negative, got {k}")
    return min(int(k), available)


def _reject_nan(values: np.ndarray) -> None:
    if np.isnan(values).any():
        raise AlsegError("features or similarities contain NaN")
