"""The ``alseg`` command line: the same core the napari widget drives, without Qt.

User mistakes (:class:`AlsegError`) print one line to stderr and exit with code 2;
napari and torch are imported only by the sub-commands that need them. The commands live
by group: :mod:`.projects`, :mod:`.learning` and :mod:`.benchmarks`; the order they are
listed in is :func:`build_parser`'s.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import AlsegError, disk_cause
from . import benchmarks, learning, projects


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alseg",
        description="Active-learning segmentation of medical images in napari.",
    )
    parser.add_argument("--version", action="version", version=f"napari-alseg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    # the order `alseg --help` lists them in
    for add in (
        projects.add_sample_data, projects.add_create, projects.add_status, learning.add_retrain,
        learning.add_plan, learning.add_strategies, learning.add_suggest, projects.add_export,
        projects.add_recover, learning.add_model_export, projects.add_demo, benchmarks.add_commands,
    ):
        add(commands)
    return parser


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
