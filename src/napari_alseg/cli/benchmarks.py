"""``alseg`` benchmark commands: ``simulate`` (active learning with a simulated annotator, or
``--cohort``) and ``score`` (pool scoring, optionally on Dask)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..domain import (COHORT_BATCH, COHORT_ENGINES, COHORT_MINUTES, COHORT_ROUNDS, COHORT_SEEDS, SIMULATED_ANNOTATORS,
                      TRACE_ANNOTATOR)
from ..errors import AlsegError
from ..plan import DEFAULT_LEARNING_RATE
from .learning import add_budget_options, budget_config

if TYPE_CHECKING:
    from ..simulation.plans import BenchmarkPlan


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``simulate`` (the simulation benchmark) and ``score`` (pool scoring, optionally on Dask)."""
    simulate = commands.add_parser(
        "simulate", help="benchmark query strategies against random with a simulated annotator",
        description="Run active learning with a simulated annotator (answers from ground truth) and report "
                    "test Dice against effort. Everything the standard benchmark uses is an option, or give "
                    "its plan: `alseg simulate MYDATA OUT --plan benchmarks/plans/standard-brain-stack.json` "
                    "runs benchmarks/run_simulation.py's plan on your data; options given with --plan replace "
                    "the plan's values.")
    simulate.add_argument("dataset", metavar="DATASET",
                          help="folder of cases with ground truth, or a sample name (brain-stack, tumour-cases, "
                               "or the benchmark pools brain-stack-72, tumour-cases-60)")
    simulate.add_argument("out", type=Path, metavar="OUT", help="output folder (a rerun resumes it)")
    simulate.add_argument("--plan", type=Path, metavar="FILE",
                          help="a benchmark plan (JSON: groups of strategies, rounds, seeds, training, data)")
    simulate.add_argument("--write-plan", type=Path, metavar="FILE",
                          help="write the plan these options make (with --plan: the merged one) and exit")
    simulate.add_argument("--strategies", default=None, metavar="A,B",
                          help="comma-separated strategy names (default: random; the two random baselines "
                               "are random and random-foreground, for ROIs random-roi and random-foreground-roi; "
                               "see `alseg strategies`)")
    simulate.add_argument("--rounds", type=int, default=None, help="rounds per run (default: 5)")
    simulate.add_argument("--seeds", type=int, default=None, metavar="S", help="seeds 0..S-1 (default: 1)")
    simulate.add_argument("--first-seed", type=int, default=None, metavar="N",
                          help="with --seeds: seeds N..N+S-1 (default: 0)")
    simulate.add_argument("--batch", type=int, default=None, metavar="K",
                          help="items labelled per round (default: 5)")
    simulate.add_argument("--initial", type=int, default=None, metavar="N",
                          help="items labelled in round 1, before any model (default: the batch size)")
    add_budget_options(simulate)
    simulate.add_argument("--train-batch", type=int, default=None, metavar="N",
                          help="crops per training step (default: the project plan's, see `alseg plan`)")
    simulate.add_argument("--patch", type=int, nargs="+", default=None, metavar="VOXELS",
                          help="training crop size in native voxels, per axis (default: the project plan's)")
    simulate.add_argument("--learning-rate", type=float, default=None, metavar="LR",
                          help="peak learning rate of each round, after a short warm-up; it decays to 0 "
                               f"over the round (default: {DEFAULT_LEARNING_RATE:g})")
    simulate.add_argument("--early-stopping", action="store_true",
                          help="hold out a fifth of the labelled items and stop a round when they stop improving")
    simulate.add_argument("--downsample", type=int, default=None, metavar="F",
                          help="shrink every volume F times first (2D stacks in-plane; a copy in OUT/data)")
    simulate.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    simulate.add_argument("--correct", action="store_true",
                          help="the annotator corrects the prediction: effort = boundary changed")
    simulate.add_argument("--annotator", choices=SIMULATED_ANNOTATORS, default=None,
                          help="the simulated annotator: trace (default) or clicks (clicks each structure "
                               "until Dice 0.9 or 10 clicks, then paints the rest)")
    simulate.add_argument("--full", action="store_true",
                          help="also train on all pool items (at least all rounds' budget, until its test Dice "
                               "is flat): the Dice to reach")
    simulate.add_argument("--cohort", action="store_true",
                          help="finish every pool item and report the annotator's seconds per workflow (trace, "
                               "correct, clicks, review/accept) and engine, as %% of tracing every item "
                               f"(defaults: engines {','.join(COHORT_ENGINES)}, {COHORT_ROUNDS} rounds of "
                               f"{COHORT_BATCH} items, {COHORT_MINUTES:g} min training a round, {COHORT_SEEDS} seeds)")
    simulate.add_argument("--costs", type=Path, metavar="FILE.json",
                          help="with --cohort: the seconds model (keys of SecondsCosts; default: the stated one, "
                               "see README)")
    simulate.set_defaults(run=run_simulate)

    score = commands.add_parser("score", help="rank a project's pool (or a folder of cases) by uncertainty")
    score.add_argument("target", type=Path, metavar="PROJECT_OR_FOLDER")
    score.add_argument("out", type=Path, metavar="OUT.csv")
    score.add_argument("--model", type=Path, metavar="PROJECT",
                       help="project whose current model scores a folder of cases")
    where = score.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="score on a local Dask cluster of N processes")
    where.add_argument("--dask", metavar="ADDRESS", help="score on the Dask scheduler at ADDRESS")
    score.set_defaults(run=run_score)


def run_simulate(args: argparse.Namespace) -> int:
    from ..simulation import TABLE_MD
    from ..simulation.plans import run_plan, save_plan

    if args.cohort:
        return _run_cohort(args)
    if args.costs is not None:
        raise AlsegError("--costs prices a cohort: give it with --cohort")
    plan = _simulation_plan(args)
    if args.write_plan is not None:
        print(f"plan: {save_plan(plan, args.write_plan)}")
        return 0
    started = time.perf_counter()
    out = run_plan(plan, args.out, dataset=args.dataset, show=_print_line)
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min\nrounds: {out / 'rounds.csv'}\n"
          f"table:  {out / TABLE_MD}")
    return 0


def _run_cohort(args: argparse.Namespace) -> int:
    """``simulate --cohort``: the cohort benchmark with its own defaults (sized for an hour on a
    2-core CPU for a 60-case pool)."""
    from dataclasses import replace

    from ..simulation.cohort import run_cohort
    from ..simulation.cohort_report import REPORT_MD
    from ..simulation.datasets import resolve_dataset
    from ..pricing import load_costs

    if args.plan is not None or args.write_plan is not None or args.full or args.correct or args.annotator:
        raise AlsegError("--cohort runs every workflow itself: --plan, --write-plan, --full, --correct and "
                         "--annotator do not apply")
    engines = [name.strip() for name in (args.strategies or ",".join(COHORT_ENGINES)).split(",") if name.strip()]
    first = args.first_seed or 0
    seeds = range(first, first + (args.seeds or COHORT_SEEDS))
    config = budget_config(args, batch_size=args.train_batch, learning_rate=args.learning_rate or DEFAULT_LEARNING_RATE,
                            patch_size=None if args.patch is None else tuple(args.patch))
    if args.minutes is None and args.steps is None:
        config = replace(config, seconds=60.0 * COHORT_MINUTES)
    out = Path(args.out)
    folder = resolve_dataset(args.dataset, out / "data", downsample=args.downsample or 1, progress=_print_line)
    started = time.perf_counter()
    run_cohort(folder, out, engines=engines, seeds=list(seeds), rounds=args.rounds or COHORT_ROUNDS,
               batch_size=args.batch or COHORT_BATCH, initial_items=args.initial or args.batch or COHORT_BATCH,
               train_config=config, costs=load_costs(args.costs), show=_print_line)
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min\nreport: {out / REPORT_MD}")
    return 0


def _simulation_plan(args: argparse.Namespace) -> BenchmarkPlan:
    """The plan of ``--plan`` with the options given on top, or one group from the options."""
    from ..simulation.plans import BenchmarkPlan, Group, load_plan, with_overrides

    seeds = None
    if args.seeds is not None or args.first_seed is not None:
        seeds = tuple(range(args.first_seed or 0, (args.first_seed or 0) + (args.seeds or 1)))
    overrides = {
        "rounds": args.rounds, "seeds": seeds, "steps": args.steps, "minutes": args.minutes,
        "train_batch": args.train_batch, "patch_size": None if args.patch is None else tuple(args.patch),
        "learning_rate": args.learning_rate, "downsample": args.downsample, "device": args.device,
        "early_stopping": True if args.early_stopping else None, "full_data": True if args.full else None,
    }
    if args.steps is not None or args.minutes is not None:  # one budget replaces the other
        overrides.update(steps=args.steps or 0, minutes=args.minutes or 0)
    if args.plan is not None:
        if (args.strategies is not None or args.batch is not None or args.initial is not None or args.correct
                or args.annotator is not None):
            raise AlsegError("with --plan, strategies, batch sizes, --correct and --annotator come from the "
                             "plan's groups")
        plan = with_overrides(load_plan(args.plan), **overrides)
    else:
        strategies = [name.strip() for name in (args.strategies or "random").split(",") if name.strip()]
        batch = args.batch or 5
        group = Group("strategies", tuple(strategies), batch, args.initial or batch, args.correct,
                      args.annotator or TRACE_ANNOTATOR)
        plan = with_overrides(BenchmarkPlan((group,), rounds=5, full_data=False), **overrides)
    return _budget_fixed(plan)


def _budget_fixed(plan: BenchmarkPlan) -> BenchmarkPlan:
    from dataclasses import replace

    return replace(plan, steps=plan.steps or None, minutes=plan.minutes or None)


def _print_line(message: str) -> None:
    print(message, flush=True)


def run_score(args: argparse.Namespace) -> int:
    from ..scoring.distributed import score_tasks, tasks_for, write_ranked_csv

    started = time.perf_counter()
    tasks = tasks_for(args.target, args.model)
    rows = score_tasks(tasks, workers=args.workers, address=args.dask)
    write_ranked_csv(rows, args.out)
    where = (f"Dask at {args.dask}" if args.dask else f"{args.workers} Dask workers" if args.workers
             else "this process")
    print(f"scored {len(rows)} items of {len(tasks)} cases on {where} in {time.perf_counter() - started:.1f} s: "
          f"{args.out}")
    return 0
