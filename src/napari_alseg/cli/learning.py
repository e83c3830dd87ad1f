"""``alseg`` commands of the learning loop: ``retrain``, ``plan``, ``strategies``, ``suggest``
and ``model export``; the training budget options ``simulate`` shares."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..model import TrainConfig, TrainProgress
    from ..run_control import RunProgress


def add_retrain(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``retrain``: fine-tune the project's model on its labels."""
    retrain = commands.add_parser("retrain", help="fine-tune the project's model on its labels")
    retrain.add_argument("project", type=Path, metavar="PROJECT")
    add_budget_options(retrain)
    retrain.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    retrain.set_defaults(run=run_retrain)


def run_retrain(args: argparse.Namespace) -> int:
    from ..run_control import RunControl
    from ..session import Session

    def show(update: RunProgress) -> None:
        report: TrainProgress = update.detail
        print(f"\r  step {report.step} of ~{report.total_steps}  loss {report.loss:.4f}  "
              f"{report.eta_seconds:.0f} s left   ", end="", flush=True)

    config = budget_config(args)
    with Session.open(args.project, annotator="cli", train_config=config, device=args.device) as session:
        session.catalog.require_writable("retraining")  # refused before training, not after
        report = session.retrain(control=RunControl(show))
    print()
    metrics = ", ".join(f"{k}={v:.3f}" for k, v in report.metrics.items() if isinstance(v, float))
    print(f"model {report.model_version}: {report.steps_done} steps on {report.n_items} items; {metrics}")
    if report.message:
        print(report.message)
    return 0


def add_plan(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``plan``: show or change the project's training plan."""
    plan = commands.add_parser("plan", help="show or change how a project's model is trained (its plan)")
    plan.add_argument("project", type=Path, metavar="PROJECT")
    plan.add_argument("--reset", action="store_true", help="make the plan anew from the data for this device")
    plan.add_argument("--minutes", type=float, metavar="M", help="training time of a round")
    plan.add_argument("--batch", type=int, metavar="N", help="crops per training step")
    plan.add_argument("--patch", type=int, nargs="+", metavar="VOXELS", help="crop size in native voxels, per axis")
    mirror = plan.add_mutually_exclusive_group()
    mirror.add_argument("--mirror", type=int, nargs="+", metavar="AXIS",
                        help="item axes training flips at random (default: the left-right axis, from the affine)")
    mirror.add_argument("--no-mirror", action="store_true", help="never flip (labels that differ by side)")
    plan.add_argument("--guidance", action=argparse.BooleanOptionalAction, default=None,
                      help="the network reads the annotator's clicks (trained with simulated ones; from the next "
                           "round)")
    plan.add_argument("--device", default=None, help="cpu or cuda: the device to plan for with --reset")
    plan.set_defaults(run=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    from ..session import Session

    overrides = {"seconds": None if args.minutes is None else args.minutes * 60.0,
                 "batch_size": args.batch, "patch_size": None if args.patch is None else tuple(args.patch),
                 "mirror_axes": () if args.no_mirror else None if args.mirror is None else tuple(args.mirror),
                 "guidance": args.guidance}
    with Session.open(args.project, annotator="cli", device=args.device) as session:
        if args.reset:
            plan = session.planning.replan(**overrides)
        elif any(value is not None for value in overrides.values()):
            plan = session.planning.set_plan(**overrides)
        else:
            plan = session.planning.training_plan()
    print("\n".join(plan.describe()))
    return 0


def add_strategies(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``strategies``: list the query engines."""
    strategies = commands.add_parser("strategies", help="list the query engines")
    strategies.set_defaults(run=run_strategies)


def run_strategies(args: argparse.Namespace) -> int:
    from ..strategies import STRATEGIES

    width = max(len(name) for name in STRATEGIES)
    for name, strategy in STRATEGIES.items():
        print(f"{name:<{width}}  {strategy.granularity:<5}  {strategy.description}")
    return 0


def add_suggest(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``suggest``: the next items to annotate."""
    suggest = commands.add_parser("suggest", help="the next items to annotate in a project")
    suggest.add_argument("project", type=Path, metavar="PROJECT")
    suggest.add_argument("--strategy", default=None,
                         help="query engine (see `alseg strategies`; default: the project's last, else random)")
    suggest.add_argument("-k", type=int, default=5, help="how many (default: %(default)s)")
    suggest.set_defaults(run=run_suggest)


def run_suggest(args: argparse.Namespace) -> int:
    from ..session import Session
    from ..strategies import get_strategy

    if args.strategy is not None:
        get_strategy(args.strategy)
    with Session.open(args.project, annotator="cli", strategy=args.strategy) as session:
        print(f"engine: {session.settings.strategy}")
        if session.learner.model_version is not None:
            started = time.monotonic()
            _pool, reason = session.queries.rescore_unless_current()
            print(f"scores: re-scored the pool for model {session.learner.model_version} in "
                  f"{time.monotonic() - started:.1f} s ({reason})" if reason else
                  f"scores: stored ones of model {session.learner.model_version} (nothing they rest on changed since)")
        suggestions = session.suggest(args.k)
        session.queries.record_served(suggestions)
        names = session.catalog.class_names
    if suggestions and suggestions[0].message:
        print(suggestions[0].message)
    for rank, suggestion in enumerate(suggestions, start=1):
        item = suggestion.item
        where = item.case + ("" if item.slice_index is None else f" slice {item.slice_index}")
        what = "" if item.class_id is None else f" {names[item.class_id]}"
        print(f"{rank:>3}. {where}{what}  score {suggestion.score:.4g}")
    return 0


def add_model_export(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``model export``: the current model as one file for another project."""
    model = commands.add_parser("model", help="move models between projects")
    model_commands = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    model_export = model_commands.add_parser(
        "export", help="write the project's current model as one file (weights, classes, channels, plan, metrics, "
                       "checksum) that `alseg create --init-model` starts a project from")
    model_export.add_argument("project", type=Path, metavar="PROJECT")
    model_export.add_argument("out", type=Path, metavar="OUT", help="file to write, or a folder to write it in")
    model_export.set_defaults(run=run_model_export)


def run_model_export(args: argparse.Namespace) -> int:
    from ..session import Session

    with Session.open(args.project, annotator="cli") as session:
        written = session.export_model(args.out)
        version = session.learner.model_version
    print(f"exported model {version} to {written}")
    return 0


def add_budget_options(parser: argparse.ArgumentParser) -> None:
    """``--minutes`` / ``--steps``: how long a round trains (default: the project plan's budget)."""
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, metavar="M",
                        help="training time per round (default: the project plan's, see `alseg plan`)")
    budget.add_argument("--steps", type=int, metavar="N", help="a fixed number of optimiser steps (reproducible)")


def budget_config(args: argparse.Namespace, **options: Any) -> TrainConfig:
    from ..model import TrainConfig

    seconds = None if args.minutes is None else args.minutes * 60.0
    return TrainConfig(steps=args.steps, seconds=seconds, device=args.device, **options)
