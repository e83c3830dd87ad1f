"""Redundancy restriction and slice-uniform ordering on hand-checked toy inputs."""

import numpy as np
import pytest

from napari_alseg.errors import AlsegError
from napari_alseg.redundancy import (
    cosine_similarity_matrix,
    longest_unlabelled_run_order,
    non_similar,
    representative_max_cover,
    top_then_restrict,
)


def two_cluster_similarity():
    """Items 0-2 form one cluster, 3-4 another: 0.9 within, 0.1 across, 1 on the diagonal."""
    cluster = np.array([0, 0, 0, 1, 1])
    similarity = np.where(cluster[:, None] == cluster[None, :], 0.9, 0.1)
    np.fill_diagonal(similarity, 1.0)
    return similarity


def test_cosine_similarity_known_values_and_zero_vectors():
    a = np.array([[1.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    b = np.array([[2.0, 0.0], [0.0, 5.0]])
    np.testing.assert_allclose(
        cosine_similarity_matrix(a, b), [[1.0, 0.0], [0.0, 0.0], [0.6, 0.8]]
    )
    with pytest.raises(AlsegError):
        cosine_similarity_matrix(a, np.ones((2, 3)))


def test_max_cover_takes_one_from_each_cluster():
    # First pick: largest column sum (3.0 for items 0-2, tie → 0). Second: item 3 gains
    # (1 - 0.1) + (0.9 - 0.1) = 1.7, while item 1 gains only 1 - 0.9 = 0.1.
    assert representative_max_cover(two_cluster_similarity(), 2) == [0, 3]
    assert representative_max_cover(two_cluster_similarity(), 9) == [0, 3, 1, 2, 4]
    assert representative_max_cover(two_cluster_similarity(), 0) == []


def test_non_similar_picks_the_candidate_far_from_annotated_then_far_from_picked():
    to_annotated = np.array([[0.9], [0.5], [0.1]])
    among = np.array([[1.0, 0.2, 0.3], [0.2, 1.0, 0.95], [0.3, 0.95, 1.0]])
    # 2 is farthest from the annotated item; 1 is then close to 2 (0.95), so 0 (0.9) wins.
    assert non_similar(among, to_annotated, 2) == [2, 0]
    assert non_similar(among, np.empty((3, 0)), 1) == [0]  # nothing to compare: first
    with pytest.raises(AlsegError):
        non_similar(among, np.empty((2, 1)), 1)


def test_top_then_restrict_keeps_k_of_the_2k_most_uncertain():
    # Items 0, 1 point one way and 2, 3 the other; 4, 5 are not uncertain enough to compete.
    features = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 1.0], [1.0, 0.0]])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.2])  # pool for k=2: items 0, 1, 2, 3
    # Max cover: all column sums tie at 2 → 0; then 2 covers its cluster (gain 2), 1 adds 0.
    assert top_then_restrict(scores, features, 2, "representative") == [0, 2]
    # Non-similar with the (0, 1) direction annotated: both picks avoid cluster 2-3.
    annotated = np.array([[0.0, 5.0]])
    assert top_then_restrict(scores, features, 2, "non_similar", annotated) == [0, 1]
    assert top_then_restrict(scores, features, 2, "non_similar") == [0, 2]
    with pytest.raises(AlsegError):
        top_then_restrict(scores, features, 2, "random")
    with pytest.raises(AlsegError):
        top_then_restrict(np.full(6, np.nan), features, 2, "representative")


def test_slice_uniform_order_splits_the_longest_run():
    # Run 0-8 → 4; runs 0-3 and 5-8 tie → 1 then 6; runs of 2 at 2-3, 7-8 → 2, 7; rest.
    assert longest_unlabelled_run_order(9, set()) == [4, 1, 6, 2, 7, 0, 3, 5, 8]
    # Run 1-7 → 4; runs 1-3, 5-7 → 2, 6; then singletons.
    assert longest_unlabelled_run_order(9, {0, 8}) == [4, 2, 6, 1, 3, 5, 7]
    assert longest_unlabelled_run_order(3, {0, 1, 2}) == []
    with pytest.raises(AlsegError):
        longest_unlabelled_run_order(3, {3})
