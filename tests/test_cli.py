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
