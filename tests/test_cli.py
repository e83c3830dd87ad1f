"""The ``alseg`` console script: help, sample data, and one-line errors."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from napari_alseg.cli import main
from napari_alseg.nifti import load_volume

ALSEG = shutil.which("alseg") or str(Path(sys.executable).with_name("alseg"))


def test_console_script_help():
    result = subprocess.run([ALSEG, "--help"], capture_output=True, text=True, check=True)
    for command in ("sample-data", "demo"):
        assert command in result.stdout


def test_sample_data_writes_tumour_cases(tmp_path, capsys):
    assert main(["sample-data", str(tmp_path), "--only", "tumour-cases"]) == 0
    cases = sorted((tmp_path / "tumour-cases").glob("case_*"))
    assert len(cases) >= 12
    seg = load_volume(next(cases[0].glob("*_seg.nii.gz")))
    assert seg.is_label and set(map(int, seg.data.ravel().tolist())) <= {0, 1, 2, 3}
    assert "tumour-cases: written to" in capsys.readouterr().out


@pytest.mark.slow
def test_sample_data_writes_both_sets(tmp_path, mricron_dir):
    result = subprocess.run([ALSEG, "sample-data", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "brain-stack" / "stack" / "stack_seg.nii.gz").exists()
    assert (tmp_path / "tumour-cases" / "case_000" / "case_000_flair.nii.gz").exists()


def test_user_mistake_is_one_line_not_a_traceback(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    env = {**os.environ, "ALSEG_MRICRON_DIR": str(tmp_path / "nowhere")}
    result = subprocess.run([ALSEG, "sample-data", str(blocker), "--only", "tumour-cases"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("alseg: error:") and len(result.stderr.strip().splitlines()) == 1


def test_missing_mricron_data_is_explained(tmp_path):
    env = {**os.environ, "ALSEG_MRICRON_DIR": str(tmp_path / "nowhere")}
    result = subprocess.run([ALSEG, "sample-data", str(tmp_path), "--only", "brain-stack"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert "mricron-data" in result.stderr and "Traceback" not in result.stderr


def test_strategies_lists_every_engine_with_granularity(capsys):
    from napari_alseg.strategies import STRATEGIES

    assert main(["strategies"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(STRATEGIES)
    assert all(line.split()[1] in ("case", "slice", "roi") for line in lines)


def test_project_commands_round_trip(tmp_path, capsys):
    source = tmp_path / "data"
    assert main(["sample-data", str(source), "--only", "tumour-cases"]) == 0
    project = tmp_path / "project"
    assert main(["create", str(project), "--from", str(source / "tumour-cases"), "--annotator", "dr-c",
                 "--labels-as", "ground-truth"]) == 0
    assert main(["status", str(project)]) == 0
    out = capsys.readouterr().out
    assert "12 cases" in out and "plan:         not made yet" in out
    assert main(["plan", str(project), "--minutes", "1.5", "--batch", "3"]) == 0
    assert "round budget: 90 s" in capsys.readouterr().out
    assert main(["status", str(project)]) == 0
    out = capsys.readouterr().out
    assert "3D U-Net" in out and "batch 3" in out and "round budget: 90 s" in out
    assert "mirrored along axis 2 (left-right)" in out  # the tumour cases' i axis runs along world x
    assert main(["plan", str(project), "--no-mirror"]) == 0
    assert "augmentation: not mirrored" in capsys.readouterr().out
    assert main(["plan", str(project), "--mirror", "2"]) == 0
    assert "mirrored along axis 2" in capsys.readouterr().out
    assert main(["plan", str(project), "--mirror", "3"]) == 2
    assert "mirror_axes must be axes 0..2" in capsys.readouterr().err
    assert main(["plan", str(project), "--patch", "32", "32"]) == 2  # a 3D plan needs 3 sizes: one line
    assert "patch_size must hold 3 values" in capsys.readouterr().err
    assert main(["retrain", str(project), "--minutes", "0"]) == 2
    assert main(["retrain", str(project)]) == 2  # nothing labelled yet: a one-line error
    assert "no labelled data yet" in capsys.readouterr().err
    assert main(["suggest", str(project), "--strategy", "margins", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "no model yet" in out and out.count("case_") == 2
    assert main(["export", str(project), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "provenance.csv").exists()
    assert main(["create", str(project), "--from", str(source / "tumour-cases")]) == 2
