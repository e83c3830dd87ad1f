"""Partial-label mixed CE (docs/METHODS.md §7.2), its prediction-time renormalisation, batch Dice + CE."""

import math

import pytest
import torch
import torch.nn.functional as F

from napari_alseg.model.losses import (batch_dice_ce_loss, delineated_dice_loss, partial_label_ce, partial_label_ce_map,
                                       renormalise_prediction)


def random_problem(seed=0, batch=2, classes=4, shape=(8, 8)):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, *shape, generator=generator)
    labels = torch.randint(0, classes, (batch, *shape), generator=generator)
    return logits, labels


def test_partial_ce_equals_cross_entropy_when_fully_labelled():
    logits, labels = random_problem()
    mask = torch.ones_like(labels, dtype=torch.bool)
    allowed = torch.tensor([[True, False, True, True], [False, True, True, False]])
    expected = F.cross_entropy(logits, labels)
    assert torch.allclose(partial_label_ce(logits, labels, mask), expected, atol=1e-6)
    assert torch.allclose(partial_label_ce(logits, labels, mask, allowed), expected, atol=1e-6)


def test_unlabelled_voxels_pay_minus_log_of_allowed_mass():
    logits, labels = random_problem(seed=1)
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :4] = True
    allowed = torch.tensor([[True, False, True, False], [False, True, True, True]])
    voxel_loss = partial_label_ce_map(logits, labels, mask, allowed)
    probs = logits.softmax(dim=1)
    allowed_mass = (probs * allowed[:, :, None, None]).sum(dim=1)
    expected = torch.where(mask, -probs.gather(1, labels[:, None]).squeeze(1).log(), -allowed_mass.log())
    assert torch.allclose(voxel_loss, expected, atol=1e-5)


def test_per_voxel_allowed_sets_and_unknown_voxels():
    logits, labels = random_problem(seed=2, batch=1, classes=3, shape=(2, 2))
    mask = torch.zeros_like(labels, dtype=torch.bool)
    allowed = torch.zeros(1, 3, 2, 2, dtype=torch.bool)
    allowed[0, 0, 0, 0] = True
    allowed[0, :, 0, 1] = True
    voxel_loss = partial_label_ce_map(logits, labels, mask, allowed)
    assert torch.allclose(voxel_loss[0, 0, 0], -logits.log_softmax(1)[0, 0, 0, 0], atol=1e-6)
    assert torch.allclose(voxel_loss[0, 0, 1], torch.tensor(0.0), atol=1e-6)
    assert torch.allclose(voxel_loss[0, 1], torch.zeros(2), atol=1e-6)
    assert torch.equal(partial_label_ce_map(logits, labels, mask), torch.zeros(1, 2, 2))


def test_partial_ce_gradient_is_finite_and_weights_scale_items():
    logits, labels = random_problem(seed=3)
    logits.requires_grad_(True)
    mask = torch.rand(labels.shape, generator=torch.Generator().manual_seed(0)) > 0.5
    allowed = torch.tensor([[True, False, False, False], [False, False, False, False]])
    loss = partial_label_ce(logits, labels, mask, allowed)
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(logits.grad).all()
    weighted = partial_label_ce(logits, labels, mask, allowed, weights=torch.tensor([1.0, 0.0]))
    first_only = partial_label_ce(logits[:1], labels[:1], mask[:1], allowed[:1])
    assert torch.allclose(weighted, first_only / 2, atol=1e-6)


def test_renormalised_prediction_keeps_labels_and_excludes_classes():
    logits, labels = random_problem(seed=4, classes=5)
    probs = logits.softmax(dim=1)
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, 2:5, 1:6] = True
    allowed = torch.tensor([[True, True, False, True, False], [False, True, True, True, True]])
    result = renormalise_prediction(probs, labels, mask, allowed)
    assert torch.allclose(result.sum(dim=1), torch.ones_like(labels, dtype=probs.dtype), atol=1e-6)
    assert torch.equal(result.argmax(dim=1)[mask], labels[mask])
    assert torch.equal(result.amax(dim=1)[mask], torch.ones(int(mask.sum())))
    excluded = (~allowed)[:, :, None, None].expand_as(probs) & ~mask[:, None]
    assert torch.all(result[excluded] == 0)
    ratio = result[0, 1] / result[0, 0]
    assert torch.allclose(ratio[~mask[0]], (probs[0, 1] / probs[0, 0])[~mask[0]], rtol=1e-4)


def test_renormalisation_without_mass_on_allowed_classes_is_uniform():
    probs = torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    allowed = torch.tensor([[False, True, True]])
    unlabelled = torch.zeros(1, 1, 1, dtype=torch.bool)
    result = renormalise_prediction(probs, torch.zeros(1, 1, 1, dtype=torch.long), unlabelled, allowed)
    assert torch.allclose(result.flatten(), torch.tensor([0.0, 0.5, 0.5]))


def test_batch_dice_ce_weights_of_one_match_no_weights_and_zero_weight_crops_do_not_count():
    logits, labels = random_problem(seed=5)
    plain = batch_dice_ce_loss(logits, labels)
    assert torch.allclose(batch_dice_ce_loss(logits, labels, torch.ones(2)), plain, atol=1e-6)
    first_only = batch_dice_ce_loss(logits[:1], labels[:1])
    masked = batch_dice_ce_loss(logits, labels, torch.tensor([1.0, 0.0]))
    # the zeroed crop adds nothing to the Dice; its cross-entropy term is zero, halving the CE mean
    dice_part = first_only - F.cross_entropy(logits[:1], labels[:1])
    assert torch.allclose(masked, dice_part + F.cross_entropy(logits[:1], labels[:1]) / 2, atol=1e-5)


def test_batch_dice_is_over_the_batch_so_a_crop_missing_a_class_does_not_score_it_zero():
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[0, 2:4, 2:4] = 1  # class 1 only in the first crop
    perfect = F.one_hot(labels, 2).movedim(-1, 1).float() * 20.0
    assert batch_dice_ce_loss(perfect, labels).item() < 0.01
    assert batch_dice_ce_loss(torch.zeros(1, 2, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long)).item() == \
        pytest.approx(math.log(2), abs=1e-6)  # no foreground anywhere: cross-entropy alone


def roi_item(shape=(8, 8)):
    """Class 1 delineated on a 2x2 square; class 2 still possible elsewhere."""
    labels = torch.zeros(1, *shape, dtype=torch.long)
    labels[0, 2:4, 2:4] = 1
    labelled = labels > 0
    allowed = torch.tensor([[True, False, True]])
    return labels, labelled, allowed


def test_delineated_dice_is_zero_for_a_perfect_roi_and_near_one_for_a_missed_one():
    labels, labelled, allowed = roi_item()
    perfect = F.one_hot(labels, 3).movedim(-1, 1).float() * 50.0
    assert delineated_dice_loss(perfect, labels, labelled, allowed).item() < 0.05
    missed = torch.zeros(1, 3, 8, 8)
    missed[:, 0] = 50.0
    assert delineated_dice_loss(missed, labels, labelled, allowed).item() > 0.7


def test_delineated_dice_ignores_classes_still_possible_or_absent():
    labels, labelled, _allowed = roi_item()
    logits = torch.randn(1, 3, 8, 8)
    nothing_delineated = torch.tensor([[True, True, True]])
    assert delineated_dice_loss(logits, labels, labelled, nothing_delineated).item() == 0.0
    excluded_but_absent = torch.tensor([[True, True, False]])  # class 2 ruled out by range: no mask
    assert delineated_dice_loss(logits, labels, labelled, excluded_but_absent).item() == 0.0
