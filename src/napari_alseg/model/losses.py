"""Training losses: Dice+CE for full labels, partial-label mixed CE for ROIs (docs/METHODS.md §7.2).

Shapes: ``logits``/``probs`` ``(B, C, *S)``; ``labels`` ``(B, *S)`` integer;
``labelled_mask`` ``(B, *S)`` bool; ``allowed_classes`` ``(B, C)`` (one set per item,
i.e. per slice) or anything broadcastable to ``(B, C, *S)`` (one set per voxel).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

DICE_SMOOTH = 1e-5


def batch_dice_ce_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy + batch soft Dice for fully labelled crops (scalar).

    The Dice of each foreground class is taken over the whole batch (nnU-Net's batch
    Dice), over the classes present in it: a crop that happens to miss a small
    structure does not score it 0, and every present class weighs the same however
    few voxels it has. ``weights`` ``(B,)`` scale each crop's voxels in both terms.
    """
    n_items, n_classes = logits.shape[:2]
    item_weights = logits.new_ones(n_items) if weights is None else weights.to(logits)
    voxel_ce = F.cross_entropy(logits, labels.long(), reduction="none")
    cross_entropy = (voxel_ce.flatten(1).mean(dim=1) * item_weights).mean()
    probs = F.softmax(logits, dim=1)
    target = F.one_hot(labels.long(), n_classes).movedim(-1, 1).to(probs.dtype)
    shape = (n_items, 1, *([1] * (logits.dim() - 2)))
    weight_map = item_weights.reshape(shape)
    reduce = (0, *range(2, logits.dim()))
    overlap = (probs * target * weight_map).sum(dim=reduce)[1:]
    total = ((probs + target) * weight_map).sum(dim=reduce)[1:]
    present = (target * weight_map).sum(dim=reduce)[1:] > 0
    if not present.any():
        return cross_entropy
    dice = (2 * overlap + DICE_SMOOTH) / (total + DICE_SMOOTH)
    return cross_entropy + (1 - dice[present]).mean()


def partial_label_ce(
    logits: torch.Tensor,
    labels: torch.Tensor,
    labelled_mask: torch.Tensor,
    allowed_classes: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The mixed cross-entropy of docs/METHODS.md §7.2, averaged over voxels (scalar).

    Labelled voxels contribute ``-log f_l(x)``; unlabelled voxels ``-log sum_{c in C_n}
    f_c(x)``: the model is only told the voxel is *not* one of the excluded classes.
    Computed as a log-sum-exp of log-softmax for stability. ``allowed_classes=None``
    (or an empty set) means nothing is known and the voxel contributes 0.
    ``weights`` ``(B,)`` scale each item's mean (e.g. 0.5 for accepted pseudo-labels);
    with all weights 1 and every voxel labelled this is ``F.cross_entropy``.
    """
    voxel_loss = partial_label_ce_map(logits, labels, labelled_mask, allowed_classes)
    item_loss = voxel_loss.flatten(1).mean(dim=1)
    if weights is not None:
        item_loss = item_loss * weights.to(item_loss)
    return item_loss.mean()


def delineated_dice_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    labelled_mask: torch.Tensor,
    allowed_classes: torch.Tensor,
) -> torch.Tensor:
    """Soft Dice loss of the classes delineated on each item, averaged over (item, class) (scalar).

    A delineated ROI tells everything about its class on that slice: inside it is c,
    everywhere else is not. So class c's Dice is exact there, as on a full label, and
    (unlike the voxel-averaged mixed CE, where a 20-pixel structure weighs 20 pixels)
    a small structure counts as much as a large one. Delineated: not in ``C_n``
    (``allowed_classes`` ``(B, C)`` False), not background, and labelled somewhere on the
    item. 0 when no item has such a class.
    """
    probs = F.softmax(logits, dim=1)
    labelled = labelled_mask.bool().unsqueeze(1)
    classes = torch.arange(probs.shape[1], device=probs.device).reshape(1, -1, *([1] * (probs.dim() - 2)))
    target = (labels.long().unsqueeze(1) == classes) & labelled
    spatial = tuple(range(2, probs.dim()))
    delineated = ~allowed_classes.to(device=probs.device, dtype=torch.bool) & target.any(dim=spatial)
    delineated[:, 0] = False
    if not delineated.any():
        return probs.new_zeros(())
    target = target.to(probs.dtype)
    overlap = (probs * target).sum(dim=spatial)
    dice = (2 * overlap + 1) / (probs.sum(dim=spatial) + target.sum(dim=spatial) + 1)
    return (1 - dice)[delineated].mean()


def partial_label_ce_map(
    logits: torch.Tensor,
    labels: torch.Tensor,
    labelled_mask: torch.Tensor,
    allowed_classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-voxel mixed cross-entropy ``(B, *S)``; see :func:`partial_label_ce`."""
    log_probs = F.log_softmax(logits, dim=1)
    labelled = labelled_mask.bool()
    safe_labels = torch.where(labelled, labels.long(), torch.zeros_like(labels, dtype=torch.long))
    labelled_loss = -log_probs.gather(1, safe_labels.unsqueeze(1)).squeeze(1)
    if allowed_classes is None:
        return torch.where(labelled, labelled_loss, torch.zeros_like(labelled_loss))
    allowed = _possible_classes(allowed_classes, log_probs)
    unlabelled_loss = -torch.logsumexp(log_probs.masked_fill(~allowed, float("-inf")), dim=1)
    return torch.where(labelled, labelled_loss, unlabelled_loss)


def renormalise_prediction(
    probs: torch.Tensor,
    labels: torch.Tensor,
    labelled_mask: torch.Tensor,
    allowed_classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Prediction given partial labels (docs/METHODS.md §7.2), ``(B, C, *S)`` summing to 1 per voxel.

    Labelled voxels become the one-hot of their label; unlabelled voxels get the
    network's probabilities restricted to ``C_n`` and renormalised (Bayes' rule with
    "the voxel is in C_n" as evidence). If the network gives ``C_n`` no mass at all,
    the voxel gets a uniform distribution over ``C_n``.
    """
    n_classes = probs.shape[1]
    allowed = _possible_classes(allowed_classes, probs)
    restricted = torch.where(allowed, probs, torch.zeros_like(probs))
    mass = restricted.sum(dim=1, keepdim=True)
    uniform = allowed.to(probs.dtype) / allowed.sum(dim=1, keepdim=True).to(probs.dtype)
    renormalised = torch.where(mass > 0, restricted / mass.clamp_min(torch.finfo(probs.dtype).tiny), uniform)
    labelled = labelled_mask.bool().unsqueeze(1)
    safe_labels = torch.where(labelled_mask.bool(), labels.long(), torch.zeros_like(labels, dtype=torch.long))
    one_hot = F.one_hot(safe_labels, n_classes).movedim(-1, 1).to(probs.dtype)
    return torch.where(labelled, one_hot, renormalised)


def renormalise_prediction_array(
    probs: np.ndarray,
    labels: np.ndarray | None,
    labelled_mask: np.ndarray | None,
    allowed_classes: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`renormalise_prediction` of one region held in numpy: the one partial-label
    posterior, shared by scoring and prediction (no second formula to drift).

    ``probs`` ``(C, *S)``; ``labels``, ``labelled_mask`` ``(*S)`` or None (nothing
    labelled); ``allowed_classes`` broadcastable to ``(C, *S)`` or None (every class).
    Returns ``(C, *S)`` in ``probs``' dtype.
    """
    probs_t = _tensor(probs)[None]
    if labelled_mask is None:
        mask_t = torch.zeros(probs.shape[1:], dtype=torch.bool)[None]
        labels_t = torch.zeros(probs.shape[1:], dtype=torch.long)[None]
    else:
        mask_t = _tensor(np.asarray(labelled_mask, dtype=bool))[None]
        labels_t = _tensor(np.asarray(labels).astype(np.int64, copy=False))[None]
    allowed_t = None if allowed_classes is None else _tensor(np.asarray(allowed_classes, dtype=bool))[None]
    return renormalise_prediction(probs_t, labels_t, mask_t, allowed_t)[0].numpy()


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing ``array``'s memory; a read-only array (a label snapshot) is copied."""
    array = np.ascontiguousarray(array)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def _possible_classes(allowed_classes: torch.Tensor | None, reference: torch.Tensor) -> torch.Tensor:
    """``C_n`` as bool ``(B, C, *S)``: an empty set (or None) means nothing is excluded."""
    if allowed_classes is None:
        return torch.ones_like(reference, dtype=torch.bool)
    allowed = _broadcast_allowed(allowed_classes, reference)
    return allowed | ~allowed.any(dim=1, keepdim=True)


def _broadcast_allowed(allowed_classes: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` or broadcastable ``(B, C, *S)`` -> bool ``(B, C, *S)`` on ``reference``'s device."""
    allowed = allowed_classes.to(device=reference.device, dtype=torch.bool)
    if allowed.dim() == 2:
        allowed = allowed.reshape(*allowed.shape, *([1] * (reference.dim() - 2)))
    return allowed.expand_as(reference)
