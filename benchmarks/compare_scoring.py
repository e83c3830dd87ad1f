"""Pool scoring in-process vs on Dask workers: the same ranking, and how long each takes.

Runs ``alseg score TARGET`` twice, once in-process and once with ``--workers N`` (a local
Dask cluster of N processes), then compares the two ranked CSVs row by row. TARGET is a
project with a model (its pool is scored) or a folder of cases scored with the model of
``--model PROJECT``; the simulation benchmark leaves projects under
``<out>/<set>/groups/<group>/projects/`` and its sample data under ``<out>/data/``.

    python benchmarks/compare_scoring.py TARGET [--model PROJECT] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def score(target: Path, out: Path, extra: list[str]) -> float:
    """Run ``alseg score`` in a fresh interpreter; seconds it took (imports included)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "napari_alseg.cli", "score", str(target), str(out), *extra], check=True)
    return time.perf_counter() - started


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, metavar="TARGET")
    parser.add_argument("--model", type=Path, metavar="PROJECT", help="whose model scores a folder of cases")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    model = [] if args.model is None else ["--model", str(args.model)]
    with tempfile.TemporaryDirectory() as folder:
        local, remote = Path(folder) / "local.csv", Path(folder) / "dask.csv"
        local_s = score(args.target, local, model)
        dask_s = score(args.target, remote, [*model, "--workers", str(args.workers)])
        a, b = read(local), read(remote)
    same_order = [(r["case"], r["slice"]) for r in a] == [(r["case"], r["slice"]) for r in b]
    gaps = [abs(float(x["score"]) - float(y["score"])) for x, y in zip(a, b)]
    print(f"{args.target}: {len(a)} items; in-process {local_s:.1f} s, {args.workers} Dask workers {dask_s:.1f} s")
    print(f"same ranking: {same_order}; largest score difference: {max(gaps, default=0.0):.3g}")
    print("top 5 (in-process | Dask):")
    for x, y in zip(a[:5], b[:5]):
        print(f"  {x['case']} {x['slice']} {float(x['score']):.6g} | {y['case']} {y['slice']} {float(y['score']):.6g}")
    sys.exit(0 if same_order else 1)


if __name__ == "__main__":
    main()
