"""Pool scoring in-process vs on Dask workers: the same ranking, and how long each takes.

Runs ``alseg score PROJECT`` twice, once in-process and once with ``--workers N`` (a local
Dask cluster of N processes), then compares the two ranked CSVs row by row. Any project
with a model will do; the simulation benchmark leaves some under
``<out>/<set>/groups/<group>/projects/``. A sample-data project of each set is what
``benchmarks/RESULTS.md`` reports.

    python benchmarks/compare_scoring.py PROJECT [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def score(project: Path, out: Path, extra: list[str]) -> float:
    """Run ``alseg score`` in a fresh interpreter; seconds it took (imports included)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "napari_alseg.cli", "score", str(project), str(out), *extra], check=True)
    return time.perf_counter() - started


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        local, remote = Path(folder) / "local.csv", Path(folder) / "dask.csv"
        local_s = score(args.project, local, [])
        dask_s = score(args.project, remote, ["--workers", str(args.workers)])
        a, b = read(local), read(remote)
    same_order = [(r["case"], r["slice"]) for r in a] == [(r["case"], r["slice"]) for r in b]
    gaps = [abs(float(x["score"]) - float(y["score"])) for x, y in zip(a, b)]
    print(f"{args.project}: {len(a)} items; in-process {local_s:.1f} s, {args.workers} Dask workers {dask_s:.1f} s")
    print(f"same ranking: {same_order}; largest score difference: {max(gaps, default=0.0):.3g}")
    print("top 5 (in-process | Dask):")
    for x, y in zip(a[:5], b[:5]):
        print(f"  {x['case']} {x['slice']} {float(x['score']):.6g} | {y['case']} {y['slice']} {float(y['score']):.6g}")
    sys.exit(0 if same_order else 1)


if __name__ == "__main__":
    main()
