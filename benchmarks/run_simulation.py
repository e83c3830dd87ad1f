"""The standard simulation benchmark: every query engine against both random baselines.

A simulated annotator answers from ground truth (:mod:`napari_alseg.simulation`); the
result is compared with the papers' figures in ``benchmarks/RESULTS.md``. Each plan is a
:class:`~napari_alseg.simulation.plans.BenchmarkPlan`, also written as JSON under
``benchmarks/plans/`` (``--write-plans``), so that one command reproduces it on any data:
``alseg simulate MYDATA OUT --plan benchmarks/plans/standard-brain-stack.json``.

Standard (default): the comparisons the studies of docs/METHODS.md §10 make their claims on,
on the benchmark pools (``samples.BENCHMARK_SETS``), 3 seeds, every strategy group with plain random and the
foreground-aware random (nnActive) beside it.

- brain-stack-72 (72 coronal slices every 2.5 mm, downsampled 2x in-plane to 92 x 88 px of
  2 x 2 mm): random-roi, random-foreground-roi (the foreground-aware draw over ROIs; plain
  random-foreground ranks whole slices), dice-per-effort and dice-per-effort-paper (the
  paper's B, to measure the effort estimator against), 10 ROIs a round, 10 rounds of 40 steps.
- tumour-cases-60 (60 graded cases generated at 40 voxels along the brain's long axis; 48
  in the pool, 12 held out): random, random-foreground, mc-dropout-top, 4 cases a round
  (round 1 too), 5 rounds of 40 steps.

Training uses the project plan's crop, batch and learning rate (the learner as
``bench_learner.py`` measures it); steps, not seconds, so reruns repeat.

Sizing (<= 90 min on this 2-core CPU, the two sets in parallel, one process and one
thread each, ``--parallel``), measured on 2026-12-02 with 3 seeds: brain-stack 66.2 min,
tumour-cases 57.6 min (widget tests ran beside them for about a third of that time). A
brain-stack round took 12-36 s (40 steps, scoring 58 pool slices, ~600 ROI outlines priced,
the test Dice), its full-data reference 10-20 chunks of 40 steps (it trains on while its
Dice is not flat); a tumour-cases round 21-85 s (MC dropout over 48 pool cases the
slowest), its reference 5 chunks. One after the other (no ``--parallel``) the sum is
~125 min: use ``--parallel`` (or ``--only``). The progress line shows the rounds done and
the time left at the pace measured so far.

Smoke run (proves the plan runs, not its numbers): ``--seeds 0 --rounds 2 --steps 5``:
brain-stack 3.6 min, tumour-cases 11 min (40 s of it generating the pool), one thread each.

``--all`` adds every other engine to the same runs (resumes them): slice-uniform,
entropy, entropy-mc and a whole-slice group (random, random-foreground, gradient-vae, 2
slices a round) on brain-stack; mc-dropout-sum, margins, entropy, representative,
non-similar, quality-threshold and bootstrap on tumour-cases, and random,
random-foreground vs quality-threshold correcting the prediction (docs/METHODS.md §6.4).
``--full``: the pools at full resolution, 3 seeds, more rounds and steps, every engine
(meant for a GPU; CUDA is used when present).

    OMP_NUM_THREADS=1 python benchmarks/run_simulation.py [--all | --full] [--only brain-stack] [--parallel]
        [--seeds 0 1 2] [--rounds R] [--steps N] [--out DIR] [--write-plans]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from napari_alseg.simulation import TABLE_MD
from napari_alseg.simulation.plans import BenchmarkPlan, Group, run_plan, save_plan, with_overrides

PLANS_DIR = Path(__file__).resolve().parent / "plans"

STANDARD = {
    "brain-stack": BenchmarkPlan(
        (Group("rois", ("random-roi", "random-foreground-roi", "dice-per-effort", "dice-per-effort-paper"), 10),),
        rounds=10, seeds=(0, 1, 2), dataset="brain-stack-72", downsample=2, steps=40),
    "tumour-cases": BenchmarkPlan(
        (Group("cases", ("random", "random-foreground", "mc-dropout-top"), 4),),
        rounds=5, seeds=(0, 1, 2), dataset="tumour-cases-60", dataset_options={"size": 40}, steps=40),
}
# Every other engine, on the same data and schedule as STANDARD (so its runs are reused).
OTHERS = {
    "brain-stack": (Group("rois", ("slice-uniform", "entropy", "entropy-mc"), 10),
                    Group("slices", ("random", "random-foreground", "gradient-vae"), 2)),
    "tumour-cases": (Group("cases", ("mc-dropout-sum", "margins", "entropy", "representative", "non-similar",
                                     "quality-threshold", "bootstrap"), 4),
                     Group("corrections", ("random", "random-foreground", "quality-threshold"), 4,
                           correction_mode=True)),
}
FULL = {
    "brain-stack": BenchmarkPlan(
        (Group("rois", ("random-roi", "random-foreground-roi", "dice-per-effort", "dice-per-effort-paper",
                        "slice-uniform", "entropy", "entropy-mc"), 10),
         Group("slices", ("random", "random-foreground", "gradient-vae"), 2)),
        rounds=12, seeds=(0, 1, 2), dataset="brain-stack-72", steps=300),
    "tumour-cases": BenchmarkPlan(
        (Group("cases", ("random", "random-foreground", "mc-dropout-top", "mc-dropout-sum", "margins", "entropy",
                         "bootstrap", "representative", "non-similar", "quality-threshold"), 5),),
        rounds=10, seeds=(0, 1, 2), dataset="tumour-cases-60", steps=100),
}


def with_others(sample: str, plan: BenchmarkPlan) -> BenchmarkPlan:
    """``plan`` plus :data:`OTHERS`: extra strategies join a group of the same name."""
    groups = {group.name: group for group in plan.groups}
    for extra in OTHERS[sample]:
        known = groups.get(extra.name)
        groups[extra.name] = extra if known is None else replace(known, strategies=known.strategies + extra.strategies)
    return replace(plan, groups=tuple(groups.values()))


def write_plans() -> list[Path]:
    """``benchmarks/plans/{standard,all,full}-<set>.json``: the plans as ``alseg simulate --plan`` reads them."""
    PLANS_DIR.mkdir(exist_ok=True)
    written = []
    for sample in STANDARD:
        for kind, plan in (("standard", STANDARD[sample]), ("all", with_others(sample, STANDARD[sample])),
                           ("full", FULL[sample])):
            written.append(save_plan(plan, PLANS_DIR / f"{kind}-{sample}.json"))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true",
                        help="also every other engine against random, on the standard data and schedule")
    parser.add_argument("--full", action="store_true", help="the bigger runs, every engine (GPU when present)")
    parser.add_argument("--only", choices=tuple(STANDARD), help="run one set")
    parser.add_argument("--parallel", action="store_true", help="run the sets at once, one process each")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                        help="seeds to run instead of the plan's (a rerun with more seeds adds them)")
    parser.add_argument("--rounds", type=int, metavar="R",
                        help="rounds per run instead of the plan's (a rerun with more rounds extends the runs "
                             "and adds a full-data reference with the longer budget)")
    parser.add_argument("--steps", type=int, metavar="N", help="training steps per round instead of the plan's")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "alseg-simulation",
                        help="output folder; a rerun resumes it (default: %(default)s)")
    parser.add_argument("--write-plans", action="store_true", help=f"write the plans as JSON into {PLANS_DIR}")
    args = parser.parse_args()
    if args.write_plans:
        for path in write_plans():
            print(path)
        return
    kind = "full" if args.full else "all" if args.all else "standard"
    samples = [sample for sample in STANDARD if args.only in (None, sample)]
    if args.parallel and len(samples) > 1:
        children = [subprocess.Popen([sys.executable, __file__, *_passed_on(args), "--only", sample],
                                     env={**os.environ, "OMP_NUM_THREADS": "1"}) for sample in samples]
        sys.exit(max(child.wait() for child in children))
    for sample in samples:
        plan = FULL[sample] if args.full else with_others(sample, STANDARD[sample]) if args.all else STANDARD[sample]
        plan = with_overrides(plan, seeds=None if args.seeds is None else tuple(args.seeds), rounds=args.rounds,
                              steps=args.steps)
        started = time.perf_counter()
        out = run_plan(plan, args.out / kind / sample, data_dir=args.out / "data",
                       show=lambda line, s=sample: print(f"{time.strftime('%H:%M:%S')} {s} {line}", flush=True))
        print(f"{sample}: {(time.perf_counter() - started) / 60:.1f} min; table {out / TABLE_MD}", flush=True)


def _passed_on(args: argparse.Namespace) -> list[str]:
    passed = ["--out", str(args.out)]
    passed += ["--all"] if args.all else []
    passed += ["--full"] if args.full else []
    passed += ["--seeds", *map(str, args.seeds)] if args.seeds else []
    passed += ["--rounds", str(args.rounds)] if args.rounds else []
    passed += ["--steps", str(args.steps)] if args.steps else []
    return passed


if __name__ == "__main__":
    main()
