"""Fine-tuning rounds: learning, cancel, NaN, validation, partial labels, user errors."""

import time

import numpy as np
import pytest
import torch

from napari_alseg.errors import AlsegError, Cancelled
from napari_alseg.model import batches, training
from napari_alseg.model.networks import ModelSpec
from napari_alseg.model.training import (TrainConfig, TrainingAborted, TrainingCancelled, TrainingItem, TrainProgress,
                                         fine_tune)
from napari_alseg.run_control import RunControl

TINY = (4, 8, 8, 8, 16, 4)


@pytest.fixture(autouse=True)
def single_thread(monkeypatch):
    """Tiny tensors run best on one thread, and do not stall when other jobs share the CPU."""
    previous = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(previous)


def tiny_net(spatial_dims=2, in_channels=1, n_classes=2):
    torch.manual_seed(0)
    return ModelSpec(spatial_dims, in_channels, n_classes, TINY, dropout=0.1).build()


def square_item(seed, shape=(32, 32), in_channels=1, background_only=False):
    """A bright square (3D: cube) of class 1 at a random place on noise."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 0.2, (in_channels, *shape)).astype(np.float32)
    labels = np.zeros(shape, np.int64)
    if not background_only:
        start = rng.integers(2, [size // 2 for size in shape])
        window = tuple(slice(s, s + size // 3) for s, size in zip(start, shape))
        labels[window] = 1
        image[(slice(None), *window)] += 2.0
    return TrainingItem(image, labels, np.ones(shape, bool))


def weights_of(net):
    return {name: tensor.clone() for name, tensor in net.state_dict().items()}


def same_weights(net, weights):
    return all(torch.equal(tensor, weights[name]) for name, tensor in net.state_dict().items())


def quick(**overrides):
    return TrainConfig(**{"steps": 3, "batch_size": 2, "augment": False, "learning_rate": 1e-2} | overrides)


def test_loss_decreases_and_original_net_is_untouched():
    net = tiny_net().eval()
    before = weights_of(net)
    reports = []
    result = fine_tune(net, [square_item(seed) for seed in range(3)], quick(steps=25),
                       control=RunControl(reports.append))
    assert result.steps_done == 25
    assert result.metrics["final_loss"] < result.metrics["initial_loss"]
    assert same_weights(net, before) and not net.training
    assert [report.done for report in reports] == list(range(1, 26))
    assert all(isinstance(report.detail, TrainProgress) and report.detail.step == report.done
               and report.detail.eta_seconds >= 0 for report in reports)
    trained = tiny_net()
    trained.load_state_dict(result.state_dict)
    assert not same_weights(trained, before)


def test_3d_multichannel_round_with_augmentation():
    net = tiny_net(spatial_dims=3, in_channels=2)
    items = [square_item(seed, shape=(16, 16, 16), in_channels=2) for seed in range(2)]
    result = fine_tune(net, items, quick(steps=2, augment=True, flip_axes=(0, 2)))
    assert result.steps_done == 2 and np.isfinite(result.metrics["final_loss"])


def test_partial_labels_train_with_the_mixed_loss():
    item = square_item(0)
    mask = np.zeros_like(item.labelled_mask)
    mask[8:20, 8:20] = True
    partial = TrainingItem(item.image, item.labels, mask, allowed_classes=np.array([True, False]))
    result = fine_tune(tiny_net(), [partial, square_item(1)], quick(augment=True))
    assert np.isfinite(result.metrics["final_loss"])


def test_cancel_stops_within_one_step_and_keeps_the_previous_weights():
    net = tiny_net()
    before = weights_of(net)
    polls = []

    def should_stop():
        polls.append(True)
        return len(polls) > 2

    with pytest.raises(TrainingCancelled) as stopped:
        fine_tune(net, [square_item(0), square_item(1)], quick(steps=20),
                  control=RunControl(stop_requested=should_stop))
    assert stopped.value.steps_done == 2 and isinstance(stopped.value, Cancelled)  # no weights come back
    assert same_weights(net, before)


def test_nan_image_aborts_before_training():
    net = tiny_net()
    before = weights_of(net)
    bad = square_item(0)
    bad.image[0, 3, 3] = np.nan
    with pytest.raises(TrainingAborted, match="item 1.*NaN"):
        fine_tune(net, [square_item(1), bad], quick())
    assert same_weights(net, before)


def test_nan_loss_aborts_and_keeps_the_previous_weights(monkeypatch):
    net = tiny_net()
    before = weights_of(net)
    monkeypatch.setattr(training, "batch_dice_ce_loss", lambda logits, labels, weights: logits.sum() * float("nan"))
    with pytest.raises(TrainingAborted, match="step 1.*nan"):
        fine_tune(net, [square_item(0)], quick())
    assert same_weights(net, before)


def test_validation_split_and_best_weights():
    items = [square_item(seed) for seed in range(5)]
    result = fine_tune(tiny_net(), items, quick(steps=4, validate_every=2, validation_fraction=0.2))
    assert result.metrics["val_items"] == 1 and result.metrics["train_items"] == 4
    assert result.metrics["best_val_loss"] is not None


def test_early_stopping_never_keeps_the_weights_from_before_the_round():
    net = tiny_net()
    before = weights_of(net)
    # a learning rate this high makes the round worse than its start; its weights still win
    result = fine_tune(net, [square_item(seed) for seed in range(5)],
                       quick(steps=2, validate_every=2, learning_rate=100.0, validation_fraction=0.2))
    assert result.metrics["best_step"] == 2
    trained = tiny_net()
    trained.load_state_dict(result.state_dict)
    assert not same_weights(trained, before)


def test_no_labelled_item_is_a_user_error():
    empty = square_item(0)
    empty = TrainingItem(empty.image, empty.labels, np.zeros_like(empty.labelled_mask))
    with pytest.raises(AlsegError, match="at least 1 labelled item"):
        fine_tune(tiny_net(), [empty], quick())
    with pytest.raises(AlsegError, match="at least 1 labelled item"):
        fine_tune(tiny_net(), [], quick())


def test_background_only_items_train_but_warn():
    items = [square_item(seed, background_only=True) for seed in range(2)]
    result = fine_tune(tiny_net(), items, quick(steps=1))
    assert any("background only" in warning for warning in result.metrics["warnings"])


def test_labels_outside_the_model_classes_are_a_user_error():
    item = square_item(0)
    item.labels[0, 0] = 5
    with pytest.raises(AlsegError, match="2 classes"):
        fine_tune(tiny_net(), [item], quick())


def test_gpu_out_of_memory_retries_with_half_batch_then_gives_up(monkeypatch):
    real_train = training._train
    configs = []

    def out_of_memory_once(net, prepared, config, *args):
        configs.append(config)
        if len(configs) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real_train(net, prepared, config, *args)

    monkeypatch.setattr(training, "_train", out_of_memory_once)
    result = fine_tune(tiny_net(), [square_item(0)], quick(steps=1, batch_size=4, patch_size=(96, 96)))
    assert result.steps_done == 1
    assert (configs[1].batch_size, configs[1].patch_size) == (2, (48, 48))

    def always_out_of_memory(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(training, "_train", always_out_of_memory)
    with pytest.raises(AlsegError, match="out of GPU memory"):
        fine_tune(tiny_net(), [square_item(0)], quick(steps=1))


@pytest.mark.parametrize("settings", [{"steps": 0}, {"learning_rate": -1.0}, {"learning_rate": float("nan")},
                                      {"validation_fraction": 1.0}, {"batch_size": 0}])
def test_impossible_settings_are_refused_when_made(settings):
    with pytest.raises(AlsegError):
        TrainConfig(**settings)


def multiclass_item(seed, shape=(48, 48)):
    """Class 1 fills most of the image; classes 2 and 3 are a few voxels each."""
    rng = np.random.default_rng(seed)
    labels = np.ones(shape, np.int64)
    labels[:4] = 0
    labels[10:12, 10:12] = 2
    labels[30:32, 30:33] = 3
    image = (labels[None] + rng.normal(0, 0.1, (1, *shape))).astype(np.float32)
    return TrainingItem(image, labels, np.ones(shape, bool))


def test_class_aware_crops_centre_every_labelled_class_equally_often():
    items = [multiclass_item(seed) for seed in range(2)]
    prepared, _ = training._prepare_items(items, tiny_net(n_classes=4), training._resolved(quick(), 2))
    config = quick(batch_size=1, patch_size=(8, 8), random_crop_fraction=0.0)
    sampler = batches.CropSampler(prepared, training._resolved(config, 2), np.random.default_rng(0))
    centres = [int(crop["labels"][0][4, 4]) for crop in (sampler.batch()[0] for _ in range(300))]
    counts = np.bincount(centres, minlength=4)
    assert counts[0] == 0 and all(80 <= count <= 120 for count in counts[1:])  # 1/3 each, whatever its size


def test_class_aware_crops_use_only_the_delineated_classes_of_partial_labels():
    item = multiclass_item(0)
    mask = item.labels == 2
    partial = TrainingItem(item.image, item.labels, mask, allowed_classes=np.array([True, True, False, True]))
    prepared, _ = training._prepare_items([partial], tiny_net(n_classes=4), training._resolved(quick(), 2))
    assert set(prepared[0].class_voxels) == {2}


def test_time_budgeted_round_stops_within_a_few_percent_of_its_budget():
    items = [square_item(seed) for seed in range(3)]
    fine_tune(tiny_net(), items, quick(steps=1))  # first-call set-up is not the budget's business
    reports, times = [], []

    def record(report):
        reports.append(report)
        times.append(time.perf_counter())

    result = fine_tune(tiny_net(), items, TrainConfig(seconds=4.0, batch_size=2, augment=False),
                       control=RunControl(record))
    # it stops at the first step boundary past the budget: at most one step late (well under
    # 0.2 s for this net, i.e. 5 %, unless a loaded machine stretches that step)
    longest_step = float(np.max(np.diff(times))) if len(times) > 1 else 0.0
    assert 4.0 <= result.metrics["seconds"] <= 4.0 + 1.1 * max(0.2, longest_step)
    assert result.steps_done == len(reports) > 5
    assert reports[-1].detail.eta_seconds == pytest.approx(0.0, abs=0.2)
    assert reports[-1].total == reports[-1].detail.total_steps == result.steps_done


def test_learning_rate_warms_up_then_decays_to_zero():
    clock = training._RoundClock(TrainConfig(steps=100, warmup_fraction=0.1))
    factors = [clock.learning_rate_factor(step) for step in range(101)]
    assert factors[0] < 0.05 and max(factors) == pytest.approx(1.0, abs=0.01)
    assert int(np.argmax(factors)) in (10, 11) and factors[-1] == pytest.approx(0.0, abs=1e-6)


def test_prefetched_batches_equal_the_batches_made_in_line():
    items = [multiclass_item(seed) for seed in range(2)]
    prepared, _ = training._prepare_items(items, tiny_net(n_classes=4), training._resolved(quick(), 2))

    def first_batches(prefetch):
        config = training._resolved(quick(augment=True, prefetch=prefetch, patch_size=(16, 16)), 2)
        with batches.BatchProducer(prepared, config, np.random.default_rng(3)) as produced:
            return [next(produced) for _ in range(3)]

    for threaded, in_line in zip(first_batches(True), first_batches(False)):
        assert torch.equal(threaded.images, in_line.images) and torch.equal(threaded.labels, in_line.labels)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mixed_precision_round_on_cuda_learns_and_returns_cpu_weights():
    result = fine_tune(tiny_net(), [square_item(seed) for seed in range(3)], quick(steps=25, device="cuda"))
    assert result.metrics["final_loss"] < result.metrics["initial_loss"] and result.metrics["device"].startswith("cuda")
    assert all(tensor.device.type == "cpu" for tensor in result.state_dict.values())


def test_a_zoomed_net_trains_on_its_working_grid_and_predicts_on_the_native_one():
    torch.manual_seed(0)
    net = ModelSpec(2, 1, 2, TINY, zoom=(0.5, 0.5)).build()
    items = [square_item(seed, shape=(64, 64)) for seed in range(3)]
    prepared, _ = training._prepare_items(items, net, training._resolved(quick(), 2))
    assert prepared[0].labels.shape == (32, 32) and prepared[0].image.shape == (1, 32, 32)
    assert prepared[0].labels.sum() == pytest.approx(items[0].labels.sum() / 4, rel=0.2)
    result = fine_tune(net, items, quick(steps=20, patch_size=(64, 64)))
    assert result.metrics["patch_size"] == [32, 32]
    trained = ModelSpec(2, 1, 2, TINY, zoom=(0.5, 0.5)).build()
    trained.load_state_dict(result.state_dict)
    with torch.no_grad():
        assert trained.eval()(torch.from_numpy(items[0].image)[None]).shape == (1, 2, 64, 64)
