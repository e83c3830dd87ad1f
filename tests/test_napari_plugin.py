"""The plugin inside a real napari viewer (headless under Xvfb): reader, samples, widget."""

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture(scope="session", autouse=True)
def sample_cache(tmp_path_factory):
    """Generate the samples into a throw-away cache, not the user's home."""
    cache = tmp_path_factory.mktemp("alseg-cache")
    previous = os.environ.get("ALSEG_DATA_DIR")
    os.environ["ALSEG_DATA_DIR"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("ALSEG_DATA_DIR", None)
    else:
        os.environ["ALSEG_DATA_DIR"] = previous


def test_reader_opens_images_and_labels_with_geometry(make_napari_viewer, tmp_path):
    affine = np.array([[0.9, 0, 0, -40.0], [0, 1.1, 0, -60.0], [0, 0, 2.5, 10.0], [0, 0, 0, 1]])
    image = np.random.default_rng(0).random((30, 40, 12)).astype(np.float32)
    labels = (image > 0.7).astype(np.uint8) * 3
    nib.save(nib.Nifti1Image(image, affine), str(tmp_path / "sub01_t1.nii.gz"))
    nib.save(nib.Nifti1Image(labels, affine), str(tmp_path / "sub01_seg.nii.gz"))
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "sub01_t1.nii.gz"), plugin="napari-alseg")
    viewer.open(str(tmp_path / "sub01_seg.nii.gz"), plugin="napari-alseg")
    t1, seg = viewer.layers["sub01_t1"], viewer.layers["sub01_seg"]
    assert type(t1).__name__ == "Image" and type(seg).__name__ == "Labels"
    assert t1.data.shape == seg.data.shape == (12, 40, 30)
    np.testing.assert_allclose(t1.scale, (2.5, 1.1, 0.9))
    np.testing.assert_allclose(seg.translate, (10.0, -60.0, -40.0))
    assert seg.data.dtype == np.uint8 and int(seg.data.max()) == 3


def test_tumour_sample_opens_channels_and_labels(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-alseg", "tumour-case")
    kinds = [type(layer).__name__ for layer in viewer.layers]
    assert kinds == ["Image", "Image", "Image", "Labels"]
    shapes = {layer.data.shape for layer in viewer.layers}
    assert len(shapes) == 1 and len(next(iter(shapes))) == 3
    labels = viewer.layers[-1]
    assert set(np.unique(labels.data)) == {0, 1, 2, 3}
    for layer in viewer.layers:
        np.testing.assert_allclose(layer.scale, viewer.layers[0].scale)


def test_brain_stack_sample_opens_as_slices(make_napari_viewer, mricron_dir):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-alseg", "brain-stack")
    image, labels = viewer.layers
    assert type(image).__name__ == "Image" and type(labels).__name__ == "Labels"
    assert image.data.shape == labels.data.shape and 30 <= image.data.shape[0] <= 45
    np.testing.assert_allclose(image.scale, (5.0, 1.0, 1.0))
    assert set(np.unique(labels.data)) == set(range(11))
    import npe2

    samples = npe2.PluginManifest.from_distribution("napari-alseg").contributions.sample_data
    menu_name = next(sample.display_name for sample in samples if sample.key == "brain-stack")
    assert f" {image.data.shape[0]} coronal slices" in menu_name  # the menu counts what opens


def test_widget_docks_and_opens_a_sample_project(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("ALSEG_PROJECTS_DIR", str(tmp_path))
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-alseg", "Active-learning annotator")
    controller = widget.controller
    assert controller.session is None and not widget.annotate_tab.go_button.isEnabled()
    controller.open_sample_project("tumour-cases")
    assert controller.session is not None and len(controller.session.catalog.cases) == 12
    assert controller.suggestions and widget.annotate_tab.go_button.isEnabled()
    controller.close_project()


@pytest.mark.slow
def test_demo_screenshot_shows_the_data(tmp_path, sample_cache):
    out = tmp_path / "demo.png"
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    alseg = str(Path(sys.executable).with_name("alseg"))
    result = subprocess.run([alseg, "demo", "--screenshot", str(out), "--train-steps", "2"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    from skimage.io import imread

    pixels = imread(out)
    assert pixels.shape[0] >= 600 and pixels.shape[1] >= 900
    canvas = pixels[100:-100, 350:-550, :3].astype(float)
    assert canvas.std() > 10, "the canvas looks blank"
    for suffix in ("-review", "-effort"):
        assert (tmp_path / f"demo{suffix}.png").exists()
