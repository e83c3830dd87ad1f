"""The npe2 manifest is valid and every command it names can be imported."""

import importlib

import npe2
import pytest

from napari_alseg import __version__


@pytest.fixture(scope="module")
def manifest():
    return npe2.PluginManifest.from_distribution("napari-alseg")


def test_manifest_validates(manifest):
    assert manifest.name == "napari-alseg"
    assert manifest.package_version == __version__
    npe2.PluginManifest.validate(manifest.model_dump() if hasattr(manifest, "model_dump") else manifest.dict())


def test_contributions_are_there(manifest):
    contributions = manifest.contributions
    assert [r.filename_patterns for r in contributions.readers] == [["*.nii", "*.nii.gz"]]
    assert {s.key for s in contributions.sample_data} == {"brain-stack", "tumour-case"}
    assert len(contributions.widgets) == 1


def test_every_command_resolves(manifest):
    for command in manifest.contributions.commands:
        module_name, attribute = command.python_name.split(":")
        assert callable(getattr(importlib.import_module(module_name), attribute)), command.id
