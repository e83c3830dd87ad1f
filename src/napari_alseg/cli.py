"""The ``alseg`` command line: the same core the napari widget drives, without Qt.

User mistakes (:class:`AlsegError`) print one line to stderr and exit with code 2;
napari and torch are imported only by the sub-commands that need them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .domain import (COHORT_BATCH, COHORT_ENGINES, COHORT_MINUTES, COHORT_ROUNDS, COHORT_SEEDS, IMPORTED,
                     LABELLING_KINDS, LABELS_AS, LABELS_AS_ANNOTATIONS, LABELS_AS_GROUND_TRUTH,
                     SIMULATED_ANNOTATORS, TRACE_ANNOTATOR)
from .errors import AlsegError, DamagedLabelsError, disk_cause
from .plan import DEFAULT_LEARNING_RATE

if TYPE_CHECKING:
    from .model import TrainConfig, TrainProgress
    from .run_control import RunProgress
    from .simulation.plans import BenchmarkPlan
    from .store import CheckpointRecord, EventRecord, Project

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
                        help="folder of cases (one subfolder per case, <case>_<channel>.nii.gz files, "
                             "or imagesTr/ + labelsTr/ + dataset.json as in the Medical Segmentation "
                             "Decathlon / BraTS)")
    source.add_argument("--sample", choices=("brain-stack", "tumour-cases"), help="a sample set")
    create.add_argument("--annotator", default=None, help="your name, recorded with every event")
    create.add_argument("--skip-bad-cases", action="store_true",
                        help="leave out cases that cannot be used (each is named, with its reason) "
                             "instead of refusing")
    create.add_argument("--labels-as", choices=LABELS_AS, default=None,
                        help="what labels found beside the cases (labelsTr/, *_seg files) become: annotations "
                             "of kind 'imported', trainable and never suggested (default for --from), or "
                             "ground truth held back for `alseg simulate` (default for --sample)")
    create.add_argument("--init-model", type=Path, metavar="FILE",
                        help="start from a model exported by `alseg model export` (its channels and classes "
                             "must match these cases'): its weights become the first model, its plan the plan")
    create.set_defaults(run=run_create)

    status = commands.add_parser("status", help="what a project holds: cases, channels, classes, labels, "
                                                "events, model")
    status.add_argument("project", type=Path, metavar="PROJECT")
    status.add_argument("--check", action="store_true",
                        help="also check everything: SQLite's full integrity check, every stored record, "
                             "every label file's checksum, every checkpoint (exit 2 on any problem)")
    status.set_defaults(run=run_status)

    retrain = commands.add_parser("retrain", help="fine-tune the project's model on its labels")
    retrain.add_argument("project", type=Path, metavar="PROJECT")
    _add_budget_options(retrain)
    retrain.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    retrain.set_defaults(run=run_retrain)

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

    strategies = commands.add_parser("strategies", help="list the query engines")
    strategies.set_defaults(run=run_strategies)

    suggest = commands.add_parser("suggest", help="the next items to annotate in a project")
    suggest.add_argument("project", type=Path, metavar="PROJECT")
    suggest.add_argument("--strategy", default=None,
                         help="query engine (see `alseg strategies`; default: the project's last, else random)")
    suggest.add_argument("-k", type=int, default=5, help="how many (default: %(default)s)")
    suggest.set_defaults(run=run_suggest)

    export = commands.add_parser("export", help="write current labels (NIfTI) and provenance (CSV/JSON)")
    export.add_argument("project", type=Path, metavar="PROJECT")
    export.add_argument("out", type=Path, metavar="OUT")
    export.set_defaults(run=run_export)

    recover = commands.add_parser(
        "recover", help="list the label files a project kept aside in recovered/ (their commits were lost), "
                        "and with --restore record them again")
    recover.add_argument("project", type=Path, metavar="PROJECT")
    recover.add_argument("--restore", action="store_true",
                         help="record every restorable file again (its region, class, kind, annotator and seconds "
                              "from the record saved beside it), oldest first, as new label versions")
    recover.set_defaults(run=run_recover)

    model = commands.add_parser("model", help="move models between projects")
    model_commands = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    model_export = model_commands.add_parser(
        "export", help="write the project's current model as one file (weights, classes, channels, plan, metrics, "
                       "checksum) that `alseg create --init-model` starts a project from")
    model_export.add_argument("project", type=Path, metavar="PROJECT")
    model_export.add_argument("out", type=Path, metavar="OUT", help="file to write, or a folder to write it in")
    model_export.set_defaults(run=run_model_export)

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
    from .session import create_project

    source = args.source
    if args.sample:
        from .samples import sample_dir

        source = sample_dir(args.sample, progress=_print_progress)
    labels_as = args.labels_as or (LABELS_AS_GROUND_TRUTH if args.sample else LABELS_AS_ANNOTATIONS)
    with create_project(args.project, source, init_model=args.init_model, annotator=args.annotator,
                        skip_bad_cases=args.skip_bad_cases, labels_as=labels_as) as project:
        print(f"project {project.folder}: {len(project.cases)} cases, {project.n_classes} classes "
              f"({', '.join(project.class_names)}), granularity {project.granularity}")
        print(f"channels: {', '.join(project.cases[0].channel_names)}")
        for name, reason in project.skipped_cases:
            print(f"skipped case {name}: {reason}")
        _print_found_labels(project)
        _print_initial_model(project, "initial model: ")
    return 0


def _print_found_labels(project: Project) -> None:
    """What became of the labels found beside the cases (imported, or held back as ground truth)."""
    imported = sum(event.kind == IMPORTED for event in project.events())
    held_back = _held_back(project)
    if imported:
        print(f"labels: imported for {imported} cases (kind '{IMPORTED}': trainable, never suggested)")
    if held_back:
        print(f"labels: held back as ground truth for simulation in {held_back} cases")


def _print_initial_model(project: Project, label: str) -> None:
    from .session.model_transfer import initial_model_lines

    for line in initial_model_lines(project):
        print(f"{label}{line}")


def run_status(args: argparse.Namespace) -> int:
    from .errors import DamagedProjectError
    from .store import DB_NAME, Project
    from .store.project import check_database_file

    try:
        project = Project.open(args.project)
    except DamagedProjectError:
        if args.check and (args.project / DB_NAME).is_file():
            for line in check_database_file(args.project.absolute() / DB_NAME):
                print(f"problem: {DB_NAME}: {line}")
        raise
    with project:
        events = project.events()
        damaged: list[str] = []
        labelled = {c.name for c in project.cases if _has_labels(project, c.name, damaged, tolerate=args.check)}
        annotated = labelled & _annotated_cases(events)
        checkpoints = _checkpoints(project, tolerate=args.check)
        print(f"project:      {project.folder} ({project.dataset_name}, granularity {project.granularity})")
        if project.read_only is not None:
            print(f"access:       read-only ({project.read_only}): status, export and viewing only")
        print(f"cases:        {len(project.cases)} ({len(labelled)} with labels: "
              f"{len(labelled - annotated)} imported, {len(annotated)} annotated; "
              f"{len(project.validation_items())} validation items)")
        held_back = _held_back(project)
        if held_back:
            print(f"ground truth: held back for simulation in {held_back} cases (not training labels)")
        channels = project.cases[0].channel_names if project.cases else ()
        print(f"channels:     {', '.join(channels)}")
        print(f"classes:      {', '.join(f'{c.id} {c.name}' for c in project.classes)}")
        if project.skipped_cases:
            print(f"skipped:      {len(project.skipped_cases)} cases left out at creation: "
                  + "; ".join(f"{name} ({reason})" for name, reason in project.skipped_cases))
        print(f"events:       {len(events)} ({sum(e.seconds_active for e in events):.0f} s active)")
        if checkpoints is None:
            print("model:        unreadable (a damaged checkpoint record; listed below)")
        elif checkpoints:
            latest = checkpoints[-1]
            metrics = ", ".join(f"{k}={v:.3f}" for k, v in latest.metrics.items() if isinstance(v, float))
            print(f"model:        {latest.model_version}" + (f" ({metrics})" if metrics else ""))
        else:
            print("model:        none yet (label some items, then `alseg retrain`)")
        for missing in project.missing_checkpoints():
            print(f"missing:      checkpoint of model {missing.model_version} ({missing.path}), removed outside "
                  "napari-alseg; restore it from a backup, or retrain")
        if not args.check:  # --check lists them as problems
            for line in damaged:
                print(f"damaged:      {line} (`alseg status --check` lists every problem)")
        _print_plan(project)
        _print_initial_model(project, "initial model: ")
        if args.check:
            problems = project.check() + _checkpoint_problems(checkpoints or [])
            for problem in problems:
                print(f"problem:      {problem}")
            if problems:
                raise AlsegError(f"{project.folder}: the full check found {len(problems)} problem(s) "
                                 "(listed above); restore the damaged files from a backup")
            print("check:        ok (database, records, label checksums, checkpoints)")
    return 0


def _has_labels(project: Project, case: str, damaged: list[str], *, tolerate: bool) -> bool:
    """Whether ``case`` has labels. A damaged label version is added to ``damaged`` (status goes
    on: it blocks only what needs that case); another problem raises unless ``tolerate``."""
    try:
        return project.current_labels(case) is not None
    except DamagedLabelsError as exc:
        damaged.append(str(exc))
        return True
    except AlsegError:
        if not tolerate:
            raise
        return True


def _held_back(project: Project) -> int:
    """How many cases keep their source labels as ground truth (for `alseg simulate`'s oracle)."""
    return sum(case.ground_truth_path is not None for case in project.cases)


def _annotated_cases(events: Sequence[EventRecord]) -> set[str]:
    """Cases with a standing label version made in the project (not only imported at creation)."""
    return {e.case for e in events
            if e.kind in LABELLING_KINDS and e.kind != IMPORTED and e.undone_in_version is None}


def _checkpoints(project: Project, *, tolerate: bool) -> list[CheckpointRecord] | None:
    """The recorded checkpoints; None when a record is damaged and ``tolerate`` (--check lists it)."""
    try:
        return project.checkpoints()
    except AlsegError:
        if not tolerate:
            raise
        return None


def _checkpoint_problems(checkpoints: Sequence[CheckpointRecord]) -> list[str]:
    """Load every recorded checkpoint that exists (its checksum is verified on load)."""
    problems: list[str] = []
    present = [c for c in checkpoints if c.path.is_file()]
    if not present:
        return problems
    from .model import load_checkpoint

    for checkpoint in present:
        try:
            load_checkpoint(checkpoint.path)
        except AlsegError as exc:
            problems.append(f"model {checkpoint.model_version}: {exc}")
    return problems


def _add_budget_options(parser: argparse.ArgumentParser) -> None:
    """``--minutes`` / ``--steps``: how long a round trains (default: the project plan's budget)."""
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, metavar="M",
                        help="training time per round (default: the project plan's, see `alseg plan`)")
    budget.add_argument("--steps", type=int, metavar="N", help="a fixed number of optimiser steps (reproducible)")


def _budget_config(args: argparse.Namespace, **options: Any) -> TrainConfig:
    from .model import TrainConfig

    seconds = None if args.minutes is None else args.minutes * 60.0
    return TrainConfig(steps=args.steps, seconds=seconds, device=args.device, **options)


def _print_plan(project: Project) -> None:
    """The training plan kept with the project (made at the first retrain or `alseg plan`)."""
    from .plan import stored_plan

    plan = stored_plan(project)
    if plan is None:
        print("plan:         not made yet (the first retrain makes it; `alseg plan PROJECT` shows it now)")
        return
    for index, line in enumerate(plan.describe()):
        print(f"{'plan:' if index == 0 else '':14}{line}")


def run_retrain(args: argparse.Namespace) -> int:
    from .run_control import RunControl
    from .session import Session

    def show(update: RunProgress) -> None:
        report: TrainProgress = update.detail
        print(f"\r  step {report.step} of ~{report.total_steps}  loss {report.loss:.4f}  "
              f"{report.eta_seconds:.0f} s left   ", end="", flush=True)

    config = _budget_config(args)
    with Session.open(args.project, annotator="cli", train_config=config, device=args.device) as session:
        session.catalog.require_writable("retraining")  # refused before training, not after
        report = session.retrain(control=RunControl(show))
    print()
    metrics = ", ".join(f"{k}={v:.3f}" for k, v in report.metrics.items() if isinstance(v, float))
    print(f"model {report.model_version}: {report.steps_done} steps on {report.n_items} items; {metrics}")
    if report.message:
        print(report.message)
    return 0


def run_plan(args: argparse.Namespace) -> int:
    from .session import Session

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


def run_strategies(args: argparse.Namespace) -> int:
    from .strategies import STRATEGIES

    width = max(len(name) for name in STRATEGIES)
    for name, strategy in STRATEGIES.items():
        print(f"{name:<{width}}  {strategy.granularity:<5}  {strategy.description}")
    return 0


def run_suggest(args: argparse.Namespace) -> int:
    from .session import Session
    from .strategies import get_strategy

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


def run_export(args: argparse.Namespace) -> int:
    from .store import Project

    with Project.open(args.project) as project:
        written = project.export(args.out)
    print(f"exported {len(written)} files to {args.out}")
    return 0


def run_recover(args: argparse.Namespace) -> int:
    from .store import Project

    with Project.open(args.project) as project:
        found = project.recovered()
        if not found:
            print(f"nothing kept aside in {project.folder / 'recovered'}")
            return 0
        if args.restore:
            done = project.restore_recovered()
            for restored in done:
                how = "identical to the file" if restored.same else "merged onto the case's newer labels"
                print(f"restored {restored.source.path.relative_to(project.folder).as_posix()} as case "
                      f"{restored.source.case} label version {restored.version} (event {restored.event_id}; {how})")
            found = project.recovered()
            print(f"restored {len(done)} label version(s)"
                  + (f"; {len(found)} file(s) stay in recovered/ (listed below)" if found else ""))
        for item in found:
            state = ("can be restored (`alseg recover --restore`)" if item.restorable
                     else f"not restorable: {item.problem}" if item.problem else "kept for reference")
            print(f"{item.path.relative_to(project.folder).as_posix()}: case {item.case}, {item.what}; {state}")
    return 0


def run_model_export(args: argparse.Namespace) -> int:
    from .session import Session

    with Session.open(args.project, annotator="cli") as session:
        written = session.export_model(args.out)
        version = session.learner.model_version
    print(f"exported model {version} to {written}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from ._qt.demo import run_demo_viewer

    run_demo_viewer(args.sample, screenshot=args.screenshot, train_steps=args.train_steps)
    if args.screenshot:
        print(f"screenshot written to {args.screenshot}")
    return 0


def _add_benchmark_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    _add_budget_options(simulate)
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
    from .simulation import TABLE_MD
    from .simulation.plans import run_plan, save_plan

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

    from .simulation.cohort import run_cohort
    from .simulation.cohort_report import REPORT_MD
    from .simulation.datasets import resolve_dataset
    from .pricing import load_costs

    if args.plan is not None or args.write_plan is not None or args.full or args.correct or args.annotator:
        raise AlsegError("--cohort runs every workflow itself: --plan, --write-plan, --full, --correct and "
                         "--annotator do not apply")
    engines = [name.strip() for name in (args.strategies or ",".join(COHORT_ENGINES)).split(",") if name.strip()]
    first = args.first_seed or 0
    seeds = range(first, first + (args.seeds or COHORT_SEEDS))
    config = _budget_config(args, batch_size=args.train_batch, learning_rate=args.learning_rate or DEFAULT_LEARNING_RATE,
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
    from .simulation.plans import BenchmarkPlan, Group, load_plan, with_overrides

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
    from .scoring.distributed import score_tasks, tasks_for, write_ranked_csv

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


_EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process ended by SIGPIPE


def _reader_went_away() -> int:
    """``alseg status P | head -3``: the reader closed the pipe; stop quietly, as Unix tools do.

    stdout is pointed at /dev/null so the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return _EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        code = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return code
    except BrokenPipeError:
        return _reader_went_away()
    except AlsegError as exc:
        print(f"alseg: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a disk error no layer below put in words: still one line, never a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"alseg: error: {where}{disk_cause(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
