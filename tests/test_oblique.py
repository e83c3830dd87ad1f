"""Issue 23 item 8: an oblique voxel grid's rotation is never dropped silently.

The project keeps each file's own affine (training works on the voxel grid; exported labels are
written with the file's affine, rotation included); creating a project from oblique files says
so in one line, with the rotation and where the dock shows them (tests/test_oblique_display.py:
turned at their world position, or, tilted out of the slice plane, on their acquired slices).
"""

import logging

import nibabel as nib
import numpy as np
import pytest

from napari_alseg.geometry import oblique_line, obliquity
from napari_alseg.store import Project
from test_store import AFFINE, make_source, submit_slice


def rotated_affine(degrees, spacing=(0.9, 1.1, 3.0), origin=(-10.0, 5.0, 2.0)):
    """An affine whose voxel grid is turned ``degrees`` about the scanner's z axis."""
    t = np.radians(degrees)
    rotation = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def test_an_axis_aligned_grid_is_not_oblique():
    flipped = np.diag([-1.0, 1.0, 2.0, 1.0])  # a flip is no rotation: the reader flips it back
    permuted = np.array([[-1.0, 0, 0, 5], [0, 0, 3.0, 0], [0, 1.0, 0, -7], [0, 0, 0, 1]])  # a coronal stack
    for affine in (AFFINE, flipped, permuted, np.eye(4)):
        degrees, offset = obliquity(affine, (40, 40, 10))
        assert degrees == pytest.approx(0, abs=1e-6) and offset == pytest.approx(0, abs=1e-6)
        assert oblique_line("x.nii.gz", affine, (40, 40, 10)) is None


def test_the_rotation_and_the_largest_offset_are_measured():
    shape = (100, 100, 10)  # (i, j, k), 1 mm voxels in plane
    degrees, offset = obliquity(rotated_affine(9.3, spacing=(1.0, 1.0, 1.0)), shape)
    assert degrees == pytest.approx(9.3, abs=1e-6)
    # the far corner of the turned plane, 99 x 99 mm from voxel 0, moves by 2 sin(θ/2) of its distance
    assert offset == pytest.approx(2 * np.sin(np.radians(9.3) / 2) * np.hypot(99, 99), rel=1e-6)
    line = oblique_line("scan.nii.gz", rotated_affine(9.3, spacing=(1.0, 1.0, 1.0)), shape)
    assert "\n" not in line and line.startswith("scan.nii.gz: oblique voxel grid (turned 9.3° from the "
                                                "scanner axes)")
    assert "up to 22.7 mm" in line


def test_a_turn_smaller_than_half_a_voxel_is_not_reported():
    degrees, offset = obliquity(rotated_affine(0.05), (40, 40, 10))
    assert 0 < offset < 0.45
    assert oblique_line("x.nii.gz", rotated_affine(0.05), (40, 40, 10)) is None


def test_creating_a_project_from_oblique_files_says_so_in_one_line_and_keeps_the_rotation(tmp_path, caplog):
    affine = rotated_affine(9.3)
    source = make_source(tmp_path / "source", n_cases=3, affine=affine)
    with caplog.at_level(logging.WARNING), Project.create(tmp_path / "project", source) as project:
        submit_slice(project)
        project.export(tmp_path / "out")
    lines = [r.getMessage() for r in caplog.records if "oblique" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert lines[0].startswith("3 case(s) have an oblique voxel grid (turned up to 9.3° from the scanner axes")
    assert "case_000, case_001, case_002" in lines[0] and "the dock shows them turned, at their world position" in lines[0]
    assert "tilted" not in lines[0]  # turned about z: every slice stays on its scanner plane
    exported = nib.load(tmp_path / "out" / "case_000_seg.nii.gz").affine
    assert np.allclose(exported, affine, atol=1e-4)  # the labels keep the file's rotation


def test_a_project_from_files_tilted_out_of_the_slice_plane_says_where_the_dock_shows_them(tmp_path, caplog):
    tilt = np.eye(4)
    t = np.radians(9.3)
    tilt[1:3, 1:3] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]  # about x: the slice axis k leans
    affine = tilt @ rotated_affine(0.0)
    source = make_source(tmp_path / "source", n_cases=2, affine=affine)
    with caplog.at_level(logging.WARNING), Project.create(tmp_path / "project", source):
        pass
    (line,) = [r.getMessage() for r in caplog.records if "oblique" in r.getMessage()]
    assert "save 2 tilted out of the slice plane (up to 9.3°), shown on their acquired slices" in line
    assert "\n" not in line


def test_creating_a_project_from_axis_aligned_files_says_nothing_about_obliquity(tmp_path, caplog):
    source = make_source(tmp_path / "source", n_cases=2)
    with caplog.at_level(logging.WARNING), Project.create(tmp_path / "project", source):
        pass
    assert not [r for r in caplog.records if "oblique" in r.getMessage()]
