"""Gradient-guided sampling's inputs (docs/METHODS.md §5): VAE latents of every item and the
gradient steps of the seeds."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

import numpy as np

from ..domain import CASE, Granularity, QueryItem, item_key
from ..pool import PoolScores
from ..run_control import RunControl
from .predict import RoundInputs, normalised_image
from .request import SCORING_CANCELLED

if TYPE_CHECKING:
    from ..model.vae import ConvVAE

def add_vae_latents(
    scoring: RoundInputs,
    pool: PoolScores,
    recent: Collection[QueryItem] | None,
    vae: ConvVAE | None,
    steps: int,
    control: RunControl,
    done: int,
    total: int,
) -> None:
    """docs/METHODS.md §5: a VAE on every slice (case), latents of all items, gradient steps of seeds."""
    from ..model.vae import encode_latents, fit_vae, gradient_step_latents

    regions = all_regions(scoring, pool.granularity)
    normalised = {region: normalised_image(scoring, region) for region in regions}
    control.check(SCORING_CANCELLED)
    pool.vae = vae or fit_vae(list(normalised.values()), scoring.spatial_dims, steps=steps, seed=scoring.seed,
                              control=control)
    latents = dict(zip(regions, encode_latents(pool.vae, list(normalised.values()))))
    control.report(done + 1, total)
    control.check(SCORING_CANCELLED)  # a stop ends the VAE's fit early: nothing of it is kept
    pool.vae_latents = {item: latents[item.region] for item in pool.candidates + pool.labelled}
    pool.gradient_latents = {}
    for seed_region in _seed_regions(scoring, pool, recent):
        given = scoring.region_labels(seed_region)
        if given is None:  # not reached: seed regions are labelled ones
            continue
        labels, mask = given
        z, moved = gradient_step_latents(scoring.net, pool.vae, normalised[seed_region], labels, mask)
        pool.vae_latents[seed_region] = z
        pool.gradient_latents[seed_region] = moved
    control.report(total, total)


def all_regions(scoring: RoundInputs, granularity: Granularity) -> list[QueryItem]:
    if granularity == CASE:
        return [QueryItem(case) for case in sorted(scoring.shapes)]
    return [QueryItem(case, n) for case in sorted(scoring.shapes) for n in range(scoring.shapes[case][1])]


def _seed_regions(scoring: RoundInputs, pool: PoolScores, recent: Collection[QueryItem] | None) -> list[QueryItem]:
    """Regions of the items labelled last round (all labelled when unknown) with labels."""
    seeds = pool.labelled if recent is None else list(recent)
    regions = sorted({item.region for item in seeds}, key=item_key)
    return [region for region in regions
            if (given := scoring.region_labels(region)) is not None and np.asarray(given[1]).any()]
