"""The chosen query engine is the project's: kept across openings, named by `alseg suggest`."""

import pytest

import synthetic_cases
from napari_alseg.cli import main
from napari_alseg.session import Session
from napari_alseg.store import Project


@pytest.fixture
def project_folder(tmp_path):
    source = synthetic_cases.blob_source(tmp_path / "source", granularity="case", n_cases=3, shape=(6, 24, 24))
    Project.create(tmp_path / "project", source, annotator="dr").close()
    return tmp_path / "project"


def test_the_engine_chosen_is_the_one_the_next_opening_starts_with(project_folder):
    with Session.open(project_folder, annotator="dr") as session:
        assert session.settings.strategy == "random"  # nothing chosen yet
        session.use_strategy("mc-dropout-top")
    with Session.open(project_folder, annotator="dr") as session:
        assert session.settings.strategy == "mc-dropout-top"
    with Session.open(project_folder, annotator="dr", strategy="entropy") as session:
        assert session.settings.strategy == "entropy"  # asked for by name: used for this session only
    with Session.open(project_folder, annotator="dr") as session:
        assert session.settings.strategy == "mc-dropout-top"


def test_suggest_names_its_engine_the_projects_last_by_default(project_folder, capsys):
    with Session.open(project_folder, annotator="dr") as session:
        session.use_strategy("slice-uniform")
    assert main(["suggest", str(project_folder), "-k", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "engine: slice-uniform"
    assert main(["suggest", str(project_folder), "-k", "2", "--strategy", "random"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "engine: random"
