"""The napari reader's memory (issue 23 item 5): bounded by the headers' declared sizes and a
stated budget (``NAPARI_ALSEG_READER_BUDGET_GB``), refused in one line before any voxel is
read; within the budget no full-size copies beyond the one float32 volume handed to napari."""

from __future__ import annotations

import gzip
import tracemalloc

import nibabel as nib
import numpy as np
import pytest

from napari_alseg import _reader
from napari_alseg._reader import display_range, read_nifti
from napari_alseg.errors import AlsegError
from napari_alseg.nifti import READER_BUDGET_ENV, load_volume, reader_budget


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert isinstance(excinfo.value, AlsegError)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def declared_but_unread(path, shape, dtype=np.int16, padding=None):
    """A .nii.gz whose honest-looking header declares ``shape`` while the gzip stream holds the
    header and ``padding`` random bytes (enough that the declared size passes the gzip-ratio
    check): a reader that read the voxels would fail on the short data, not on the budget."""
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header.set_sform(np.eye(4), code=1)
    header.set_qform(np.eye(4), code=1)
    stored = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if padding is None:
        padding = stored // 1000  # gzip cannot expand more than ~1032x
    header["vox_offset"] = 352
    head = header.binaryblock + b"\x00" * 4  # no extensions
    rng = np.random.default_rng(0)
    path.write_bytes(gzip.compress(head + rng.bytes(padding), compresslevel=1))
    return path


def test_a_small_gz_declaring_more_than_the_default_budget_is_one_line_before_reading(tmp_path, monkeypatch):
    monkeypatch.delenv(READER_BUDGET_ENV, raising=False)
    # 2048 x 2048 x 180 int16: 1.4 GiB declared by a ~1.5 MB file; int16 + float32 = 4.2 GiB
    path = declared_but_unread(tmp_path / "tiny.nii.gz", (2048, 2048, 180))
    assert path.stat().st_size < 2 << 20
    with pytest.raises(AlsegError) as excinfo:
        read_nifti(str(path))
    message = one_line(excinfo)
    assert message.startswith("tiny.nii.gz: header declares 2048x2048x180 voxels of int16 (1.4 GiB)")
    assert "needs about 4.2 GiB of memory, more than the reader's budget of 4.0 GiB" in message
    assert f"set {READER_BUDGET_ENV} (gigabytes, default 4) to raise it" in message


def test_the_budget_is_read_from_the_environment(tmp_path, monkeypatch):
    path = declared_but_unread(tmp_path / "mid.nii.gz", (512, 512, 128))  # 64 MiB int16, 192 MiB needed
    monkeypatch.setenv(READER_BUDGET_ENV, "0.125")
    with pytest.raises(AlsegError) as excinfo:
        read_nifti(str(path))
    assert "needs about 192.0 MiB of memory, more than the reader's budget of 128.0 MiB" in one_line(excinfo)
    monkeypatch.setenv(READER_BUDGET_ENV, "1")  # now within budget: the reader reads, and finds the short data
    with pytest.raises(AlsegError) as excinfo:
        read_nifti(str(path))
    assert "budget" not in one_line(excinfo)


@pytest.mark.parametrize("value", ["lots", "0", "-2", "nan"])
def test_a_budget_that_is_not_a_positive_number_is_one_line(monkeypatch, value):
    monkeypatch.setenv(READER_BUDGET_ENV, value)
    with pytest.raises(AlsegError) as excinfo:
        reader_budget()
    assert f"{READER_BUDGET_ENV}={value!r} is not a positive number of gigabytes" in one_line(excinfo)


def _honest_file(path, shape=(64, 64, 48), dtype=np.int16):
    data = np.zeros(shape, dtype)
    data[16:48, 16:48, 10:38] = np.arange(32 * 32 * 28).reshape(32, 32, 28) % 900 + 100
    nib.save(nib.Nifti1Image(data, np.diag([0.9, 0.9, 1.2, 1.0])), str(path))
    return path


def test_an_honest_file_over_a_lowered_budget_is_refused_and_opens_under_the_default(tmp_path, monkeypatch):
    path = _honest_file(tmp_path / "brain.nii.gz")  # 196 608 voxels x (2 + 4) bytes = 1.1 MiB
    monkeypatch.setenv(READER_BUDGET_ENV, "0.001")  # ~1 MiB
    with pytest.raises(AlsegError) as excinfo:
        read_nifti(str(path))
    assert "brain.nii.gz: header declares 64x64x48 voxels of int16 (384.0 KiB)" in one_line(excinfo)
    monkeypatch.delenv(READER_BUDGET_ENV)
    [(data, kwargs, kind)] = read_nifti(str(path))
    assert kind == "image" and data.shape == (48, 64, 64) and data.dtype == np.float32
    assert data.flags.c_contiguous
    low, high = kwargs["contrast_limits"]
    assert 100 <= low < high <= 999


def test_a_multichannel_file_counts_every_channel_against_the_budget(tmp_path, monkeypatch):
    data = np.ones((32, 32, 16, 4), np.float32)  # 4 channels x 16 384 voxels x (4 + 4) bytes = 512 KiB
    path = tmp_path / "case_0000.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    monkeypatch.setenv(READER_BUDGET_ENV, str(300 / (1 << 20)))  # 300 KiB: one channel fits, four do not
    with pytest.raises(AlsegError) as excinfo:
        read_nifti(str(path))
    assert "needs about 512.0 KiB of memory" in one_line(excinfo)
    monkeypatch.setenv(READER_BUDGET_ENV, str(600 / (1 << 20)))
    assert len(read_nifti(str(path))) == 4


def test_memory_running_out_within_the_budget_is_one_line(tmp_path, monkeypatch):
    path = _honest_file(tmp_path / "brain.nii.gz")

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(_reader, "load_volume", no_memory)
    with pytest.raises(AlsegError) as excinfo:
        read_nifti(str(path))
    message = one_line(excinfo)
    assert message.startswith("brain.nii.gz: ran out of memory while reading")
    assert f"lower {READER_BUDGET_ENV}" in message


def _traced_peak(function, *args):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = function(*args)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_display_range_makes_no_full_size_copies():
    rng = np.random.default_rng(1)
    image = np.zeros((256, 256, 128), np.float32)  # 32 MiB, mostly air
    image[64:192, 64:192, 32:96] = rng.normal(500, 80, size=(128, 128, 64)).astype(np.float32)
    (low, high), peak = _traced_peak(display_range, image)
    assert peak < image.nbytes / 4, f"display_range peaked at {peak / 2**20:.1f} MiB"
    exact_low, exact_high = np.percentile(image[image != 0], [0.5, 99.5])
    assert abs(low - exact_low) < 10 and abs(high - exact_high) < 10  # sigma 80: the sample is close


def test_display_range_of_a_small_image_is_exact():
    image = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    exact = np.percentile(image[image != 0], [0.5, 99.5])
    assert display_range(image) == pytest.approx(tuple(exact))


def test_checking_a_float_volume_makes_no_full_size_temporaries(tmp_path):
    data = np.random.default_rng(2).normal(size=(128, 128, 192)).astype(np.float32)  # 12 MiB
    path = tmp_path / "float.nii"  # uncompressed: nibabel maps it, so only what loading adds is traced
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    volume, peak = _traced_peak(load_volume, path)
    # the NaN / range checks run slab by slab (no volume-size masks or |x| copy), and a float32
    # file in the usual order needs no conversion copy
    assert peak < 0.4 * data.nbytes, f"load_volume peaked at {peak / 2**20:.1f} MiB"
    np.testing.assert_array_equal(volume.data, data.transpose(2, 1, 0))
    assert volume.data.flags.c_contiguous and volume.data.dtype == np.float32


def test_a_gz_float_volume_peaks_at_the_gzip_read(tmp_path):
    data = np.random.default_rng(2).normal(size=(128, 128, 96)).astype(np.float32)  # 6 MiB
    path = tmp_path / "float.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    volume, peak = _traced_peak(load_volume, path)
    # Python's gzip reads into a buffer and copies it (2x the stored size for a moment)
    assert peak < 2.2 * data.nbytes, f"load_volume peaked at {peak / 2**20:.1f} MiB"
    np.testing.assert_array_equal(volume.data, data.transpose(2, 1, 0))


@pytest.mark.parametrize("dtype", [np.int16, np.float64])
def test_a_flipped_file_still_loads_c_ordered_and_flipped_back(tmp_path, dtype):
    data = np.arange(4 * 5 * 6, dtype=dtype).reshape(4, 5, 6)
    path = tmp_path / "las.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([-1.0, 1.0, 1.0, 1.0])), str(path))  # LAS: axis i flipped
    volume = load_volume(path)
    np.testing.assert_array_equal(volume.data, data[::-1].transpose(2, 1, 0).astype(np.float32))
    assert volume.data.flags.c_contiguous and volume.data.dtype == np.float32
