"""The ``alseg`` command line: the same core the napari widget drives, without Qt.

User mistakes (:class:`AlsegError`) print one line to stderr and exit with code 2;
napari and torch are imported only by the sub-commands that need them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import AlsegError

DEMO_SAMPLES = ("tumour-cases", "brain-stack")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alseg",
        description="Active-learning segmentation of medical images in napari.",
    )
    parser.add_argument("--version", action="version", version=f"napari-alseg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    sample = commands.add_parser(
        "sample-data", help="write the sample data sets (brain-stack, tumour-cases) into DIR"
    )
    sample.add_argument("directory", type=Path, metavar="DIR")
    sample.add_argument("--only", choices=("brain-stack", "tumour-cases"),
                        help="write just one set")
    sample.set_defaults(run=run_sample_data)

    create = commands.add_parser("create", help="create an annotation project from NIfTI cases or a sample")
    create.add_argument("project", type=Path, metavar="PROJECT", help="new project folder")
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", type=Path, metavar="DIR",
                        help="folder of cases (one subfolder per case, or <case>_<channel>.nii.gz files)")
    source.add_argument("--sample", choices=("brain-stack", "tumour-cases"), help="a sample set")
    create.add_argument("--annotator", default=None, help="your name, recorded with every event")
    create.set_defaults(run=run_create)

    status = commands.add_parser("status", help="what a project holds: cases, labels, events, model")
    status.add_argument("project", type=Path, metavar="PROJECT")
    status.set_defaults(run=run_status)

    retrain = commands.add_parser("retrain", help="fine-tune the project's model on its labels")
    retrain.add_argument("project", type=Path, metavar="PROJECT")
    retrain.add_argument("--steps", type=int, default=60, help="optimiser steps (default: %(default)s)")
    retrain.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    retrain.set_defaults(run=run_retrain)

    strategies = commands.add_parser("strategies", help="list the query engines")
    strategies.set_defaults(run=run_strategies)

    suggest = commands.add_parser("suggest", help="the next items to annotate in a project")
    suggest.add_argument("project", type=Path, metavar="PROJECT")
    suggest.add_argument("--strategy", default="random", help="query engine (see `alseg strategies`)")
    suggest.add_argument("-k", type=int, default=5, help="how many (default: %(default)s)")
    suggest.set_defaults(run=run_suggest)

    export = commands.add_parser("export", help="write current labels (NIfTI) and provenance (CSV/JSON)")
    export.add_argument("project", type=Path, metavar="PROJECT")
    export.add_argument("out", type=Path, metavar="OUT")
    export.set_defaults(run=run_export)

    demo = commands.add_parser(
        "demo", help="open napari with a sample project and the annotator widget docked"
    )
    demo.add_argument("--sample", choices=DEMO_SAMPLES, default="tumour-cases",
                      help="which sample to open (default: %(default)s)")
    demo.add_argument("--screenshot", type=Path, metavar="PNG",
                      help="save a screenshot of the window to PNG and exit (works under xvfb-run)")
    demo.add_argument("--train-steps", type=int, default=30, metavar="N",
                      help="training steps of the scripted round before a screenshot (default: %(default)s)")
    demo.set_defaults(run=run_demo)
    _add_benchmark_commands(commands)
    return parser


def run_sample_data(args: argparse.Namespace) -> int:
    from .samples import SAMPLE_SETS, generate_sample

    names = [args.only] if args.only else list(SAMPLE_SETS)
    for name in names:
        started = time.perf_counter()
        folder = generate_sample(name, args.directory, progress=_print_progress)
        print(f"{name}: written to {folder} in {time.perf_counter() - started:.1f} s")
    return 0


def run_create(args: argparse.Namespace) -> int:
    from .store import Project

    source = args.source
    if args.sample:
        from .samples import sample_dir

        source = sample_dir(args.sample, progress=_print_progress)
    with Project.create(args.project, source, annotator=args.annotator) as project:
        print(f"project {project.folder}: {len(project.cases)} cases, {project.n_classes} classes "
              f"({', '.join(project.class_names)}), granularity {project.granularity}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from .store import Project

    with Project.open(args.project) as project:
        events = project.events()
        labelled = [c.name for c in project.cases if project.current_labels(c.name) is not None]
        checkpoints = project.checkpoints()
        print(f"project:      {project.folder} ({project.dataset_name}, granularity {project.granularity})")
        print(f"cases:        {len(project.cases)} ({len(labelled)} with labels, "
              f"{len(project.validation_items())} validation items)")
        print(f"classes:      {', '.join(project.class_names)}")
        print(f"events:       {len(events)} ({sum(e.seconds_active for e in events):.0f} s active)")
        if checkpoints:
            latest = checkpoints[-1]
            metrics = ", ".join(f"{k}={v:.3f}" for k, v in latest.metrics.items() if isinstance(v, float))
            print(f"model:        {latest.model_version} ({metrics})")
        else:
            print("model:        none yet (label some items, then `alseg retrain`)")
    return 0


def run_retrain(args: argparse.Namespace) -> int:
    from .model import TrainConfig
    from .session import Session

    def show(report) -> None:
        print(f"\r  step {report.step}/{report.total_steps}  loss {report.loss:.4f}  "
              f"ETA {report.eta_seconds:.0f} s   ", end="", flush=True)

    config = TrainConfig(steps=args.steps, device=args.device)
    with Session.open(args.project, annotator="cli", train_config=config, device=args.device) as session:
        report = session.retrain(progress=show)
    print()
    metrics = ", ".join(f"{k}={v:.3f}" for k, v in report.metrics.items() if isinstance(v, float))
    print(f"model {report.model_version}: {report.steps_done} steps on {report.n_items} items; {metrics}")
    if report.message:
        print(report.message)
    return 0


def run_strategies(args: argparse.Namespace) -> int:
    from .strategies import STRATEGIES

    width = max(len(name) for name in STRATEGIES)
    for name, strategy in STRATEGIES.items():
        print(f"{name:<{width}}  {strategy.granularity:<5}  {strategy.description}")
    return 0


def run_suggest(args: argparse.Namespace) -> int:
    from .session import Session
    from .strategies import get_strategy

    get_strategy(args.strategy)
    with Session.open(args.project, annotator="cli", strategy=args.strategy) as session:
        if session.model_version is not None:
            session.rescore()
        suggestions = session.suggest(args.k)
        names = session.project.class_names
    if suggestions and suggestions[0].message:
        print(suggestions[0].message)
    for rank, suggestion in enumerate(suggestions, start=1):
        item = suggestion.item
        where = item.case + ("" if item.slice_index is None else f" slice {item.slice_index}")
        what = "" if item.class_id is None else f" {names[item.class_id]}"
        print(f"{rank:>3}. {where}{what}  score {suggestion.score:.4g}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .store import Project

    with Project.open(args.project) as project:
        written = project.export(args.out)
    print(f"exported {len(written)} files to {args.out}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo_viewer

    run_demo_viewer(args.sample, screenshot=args.screenshot, train_steps=args.train_steps)
    if args.screenshot:
        print(f"screenshot written to {args.screenshot}")
    return 0


def _add_benchmark_commands(commands) -> None:
    """``simulate`` (the simulation benchmark) and ``score`` (pool scoring, optionally on Dask)."""
    simulate = commands.add_parser(
        "simulate", help="benchmark query strategies against random with a simulated annotator")
    simulate.add_argument("dataset", metavar="DATASET",
                          help="folder of cases with ground truth, or a sample name (brain-stack, tumour-cases)")
    simulate.add_argument("out", type=Path, metavar="OUT", help="output folder (a rerun resumes it)")
    simulate.add_argument("--strategies", default="random", metavar="A,B",
                          help="comma-separated strategy names (default: %(default)s; see `alseg strategies`)")
    simulate.add_argument("--rounds", type=int, default=5, help="rounds per run (default: %(default)s)")
    simulate.add_argument("--seeds", type=int, default=1, metavar="S", help="seeds 0..S-1 (default: %(default)s)")
    simulate.add_argument("--batch", type=int, default=5, metavar="K",
                          help="items labelled per round (default: %(default)s)")
    simulate.add_argument("--initial", type=int, default=None, metavar="N",
                          help="items labelled in round 1, before any model (default: the batch size)")
    simulate.add_argument("--steps", type=int, default=30, metavar="N",
                          help="training steps per round (default: %(default)s)")
    simulate.add_argument("--learning-rate", type=float, default=1e-3, metavar="LR",
                          help="learning rate at the start of each round; it decays to 0 over the round "
                               "(default: %(default)s)")
    simulate.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    simulate.add_argument("--correct", action="store_true",
                          help="the annotator corrects the prediction: effort = boundary changed")
    simulate.add_argument("--full", action="store_true",
                          help="also train on all pool items (rounds x steps steps): the Dice to reach")
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
    from .model import TrainConfig
    from .simulation import TABLE_MD, simulate

    dataset = Path(args.dataset)
    if not dataset.exists() and args.dataset in DEMO_SAMPLES:
        from .samples import sample_dir

        dataset = sample_dir(args.dataset, progress=_print_progress)
    strategies = [name.strip() for name in args.strategies.split(",") if name.strip()]
    path = simulate(dataset, args.out, strategies=strategies, rounds=args.rounds, seeds=range(args.seeds),
                    batch_size=args.batch, initial_items=args.initial or args.batch,
                    train_config=TrainConfig(steps=args.steps, learning_rate=args.learning_rate,
                                             device=args.device),
                    correction_mode=args.correct, full_data=args.full, progress=_print_round)
    print(f"rounds: {path}\ntable:  {path.parent / TABLE_MD}")
    return 0


def _print_round(row: dict[str, str]) -> None:
    print(f"{row['strategy']} seed {row['seed']} round {row['round']}: test Dice {float(row['dice_test']):.3f}, "
          f"boundary {float(row['effort_boundary_mm']):.0f} mm ({float(row['effort_boundary_pct']):.1f} %), "
          f"{row['labelled_items']} items, {float(row['wall_seconds']):.0f} s", flush=True)


def run_score(args: argparse.Namespace) -> int:
    from .distributed_scoring import score_tasks, tasks_for, write_ranked_csv

    started = time.perf_counter()
    tasks = tasks_for(args.target, args.model)
    rows = score_tasks(tasks, workers=args.workers, address=args.dask)
    write_ranked_csv(rows, args.out)
    where = (f"Dask at {args.dask}" if args.dask else f"{args.workers} Dask workers" if args.workers
             else "this process")
    print(f"scored {len(rows)} items of {len(tasks)} cases on {where} in {time.perf_counter() - started:.1f} s: "
          f"{args.out}")
    return 0


def _print_progress(message: str) -> None:
    print(f"  {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except AlsegError as exc:
        print(f"alseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
