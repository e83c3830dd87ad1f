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

DEMO_SAMPLES = ("tumour-case", "brain-stack")


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

    demo = commands.add_parser(
        "demo", help="open napari with a sample loaded and the annotator widget docked"
    )
    demo.add_argument("--sample", choices=DEMO_SAMPLES, default="tumour-case",
                      help="which sample to open (default: %(default)s)")
    demo.add_argument("--screenshot", type=Path, metavar="PNG",
                      help="save a screenshot of the window to PNG and exit (works under xvfb-run)")
    demo.set_defaults(run=run_demo)
    return parser


def run_sample_data(args: argparse.Namespace) -> int:
    from .samples import SAMPLE_SETS, generate_sample

    names = [args.only] if args.only else list(SAMPLE_SETS)
    for name in names:
        started = time.perf_counter()
        folder = generate_sample(name, args.directory, progress=_print_progress)
        print(f"{name}: written to {folder} in {time.perf_counter() - started:.1f} s")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo_viewer

    run_demo_viewer(args.sample, screenshot=args.screenshot)
    if args.screenshot:
        print(f"screenshot written to {args.screenshot}")
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
