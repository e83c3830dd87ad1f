"""``alseg`` commands on a project as a whole: the sample sets, ``create``, ``status``, ``export``,
``recover`` and the napari ``demo``."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..domain import IMPORTED, LABELLING_KINDS, LABELS_AS, LABELS_AS_ANNOTATIONS, LABELS_AS_GROUND_TRUTH
from ..errors import AlsegError, DamagedLabelsError

if TYPE_CHECKING:
    from ..store import CheckpointRecord, EventRecord, Project


DEMO_SAMPLES = ("tumour-cases", "brain-stack")


def add_sample_data(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``sample-data``: write the sample sets."""
    sample = commands.add_parser(
        "sample-data", help="write the sample data sets (brain-stack, tumour-cases) into DIR"
    )
    sample.add_argument("directory", type=Path, metavar="DIR")
    sample.add_argument("--only", choices=("brain-stack", "tumour-cases"),
                        help="write just one set")
    sample.set_defaults(run=run_sample_data)


def run_sample_data(args: argparse.Namespace) -> int:
    from ..samples import SAMPLE_SETS, generate_sample

    names = [args.only] if args.only else list(SAMPLE_SETS)
    for name in names:
        started = time.perf_counter()
        folder = generate_sample(name, args.directory, progress=_print_progress)
        print(f"{name}: written to {folder} in {time.perf_counter() - started:.1f} s")
    return 0


def add_create(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``create``: a project from NIfTI cases or a sample."""
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


def run_create(args: argparse.Namespace) -> int:
    from ..session import create_project

    source = args.source
    if args.sample:
        from ..samples import sample_dir

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
    from ..session.model_transfer import initial_model_lines

    for line in initial_model_lines(project):
        print(f"{label}{line}")


def add_status(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``status``: what a project holds, and with ``--check`` whether it is whole."""
    status = commands.add_parser("status", help="what a project holds: cases, channels, classes, labels, "
                                                "events, model")
    status.add_argument("project", type=Path, metavar="PROJECT")
    status.add_argument("--check", action="store_true",
                        help="also check everything: SQLite's full integrity check, every stored record, "
                             "every label file's checksum, every checkpoint (exit 2 on any problem)")
    status.set_defaults(run=run_status)


def run_status(args: argparse.Namespace) -> int:
    from ..errors import DamagedProjectError
    from ..store import DB_NAME, Project
    from ..store.project import check_database_file

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
    from ..model import load_checkpoint

    for checkpoint in present:
        try:
            load_checkpoint(checkpoint.path)
        except AlsegError as exc:
            problems.append(f"model {checkpoint.model_version}: {exc}")
    return problems


def _print_plan(project: Project) -> None:
    """The training plan kept with the project (made at the first retrain or `alseg plan`)."""
    from ..plan import stored_plan

    plan = stored_plan(project)
    if plan is None:
        print("plan:         not made yet (the first retrain makes it; `alseg plan PROJECT` shows it now)")
        return
    for index, line in enumerate(plan.describe()):
        print(f"{'plan:' if index == 0 else '':14}{line}")


def add_export(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``export``: current labels as NIfTI, with provenance."""
    export = commands.add_parser("export", help="write current labels (NIfTI) and provenance (CSV/JSON)")
    export.add_argument("project", type=Path, metavar="PROJECT")
    export.add_argument("out", type=Path, metavar="OUT")
    export.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from ..store import Project

    with Project.open(args.project) as project:
        written = project.export(args.out)
    print(f"exported {len(written)} files to {args.out}")
    return 0


def add_recover(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recover``: label files kept aside in recovered/, restored with ``--restore``."""
    recover = commands.add_parser(
        "recover", help="list the label files a project kept aside in recovered/ (their commits were lost), "
                        "and with --restore record them again")
    recover.add_argument("project", type=Path, metavar="PROJECT")
    recover.add_argument("--restore", action="store_true",
                         help="record every restorable file again (its region, class, kind, annotator and seconds "
                              "from the record saved beside it), oldest first, as new label versions")
    recover.set_defaults(run=run_recover)


def run_recover(args: argparse.Namespace) -> int:
    from ..store import Project

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


def add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``demo``: napari with a sample project and the dock."""
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


def run_demo(args: argparse.Namespace) -> int:
    from .._qt.demo import run_demo_viewer

    run_demo_viewer(args.sample, screenshot=args.screenshot, train_steps=args.train_steps)
    if args.screenshot:
        print(f"screenshot written to {args.screenshot}")
    return 0


def _print_progress(message: str) -> None:
    print(f"  {message}", flush=True)
