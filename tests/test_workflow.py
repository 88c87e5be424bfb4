"""fine_tune end to end on the demo backbone: exact trainable sets, what moves, resume, export."""

import dataclasses
import warnings

import keras
import numpy as np
import pandas as pd
import pytest

import keras_transfer as kt
from keras_transfer import data, demo
from keras_transfer.config import FineTuneConfig

# demo_convnet (stem, block1..3, top) + head Dense(128 -> 4), counted by hand.
STEM, BLOCK1, BLOCK2, BLOCK3 = 3 * 3 * 3 * 24, 3 * 3 * 24 * 32, 3 * 3 * 32 * 64, 3 * 3 * 64 * 96
TOP = 96 * 128 + 128
HEAD = 128 * 4 + 4
BN = 2 * (24 + 32 + 64 + 96)  # gamma and beta
LORA_RANK_2 = 96 * 2 + 2 * 128  # A and B on top_dense, the Dense next to the head


@pytest.fixture(scope="module")
def shapes():
    x_train, y_train = demo.make_shapes(demo.TARGET_SHAPES, per_class=8, seed=3)
    x_val, y_val = demo.make_shapes(demo.TARGET_SHAPES, per_class=8, seed=4)
    return (data.from_arrays(x_train, y_train, batch_size=16, shuffle=True, seed=0),
            data.from_arrays(x_val, y_val, batch_size=32))


def _backbone():
    keras.utils.set_random_seed(7)
    return demo.build_demo_backbone()


@pytest.mark.core
@pytest.mark.parametrize(
    "strategy,expected",
    [
        ("feature_extraction", HEAD),
        ("fine_tune", HEAD + TOP + BLOCK3),
        ("full", HEAD + TOP + BLOCK3 + BLOCK2 + BLOCK1 + STEM),
        ("scratch", HEAD + TOP + BLOCK3 + BLOCK2 + BLOCK1 + STEM + BN),
        ("lora", HEAD + LORA_RANK_2),
    ],
)
def test_each_strategy_trains_exactly_its_parameters(shapes, strategy, expected):
    train_ds, val_ds = shapes
    backbone = _backbone()
    stem_before = keras.ops.convert_to_numpy(backbone.get_layer("stem_conv").kernel).copy()
    result = kt.fine_tune(backbone, train_ds, val_ds, num_classes=4, head_epochs=1, fine_tune_epochs=1,
                          strategy=strategy, lora_rank=2, verbose=0)
    assert result.trainable_params == expected
    phases = {"feature_extraction": ["feature_extraction"] * 2, "scratch": ["scratch"] * 2}
    assert list(result.history.phase) == phases.get(strategy, ["head", strategy])
    assert list(result.history.epoch) == [1, 2]
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    if strategy in ("feature_extraction", "fine_tune", "lora"):
        np.testing.assert_array_equal(
            stem_before, keras.ops.convert_to_numpy(backbone.get_layer("stem_conv").kernel), err_msg="frozen stem moved"
        )


def test_fine_tune_moves_unfrozen_blocks_only_and_keeps_batchnorm_statistics(shapes):
    train_ds, _ = shapes
    backbone = _backbone()
    watched = {name: backbone.get_layer(name) for name in ("block2_conv", "block3_conv", "block3_bn")}
    before = {
        "block2": keras.ops.convert_to_numpy(watched["block2_conv"].kernel).copy(),
        "block3": keras.ops.convert_to_numpy(watched["block3_conv"].kernel).copy(),
        "bn_mean": keras.ops.convert_to_numpy(watched["block3_bn"].moving_mean).copy(),
    }
    # Without validation data nothing is selected: the weights are phase 2's last epoch, not the
    # head phase's if that scored better.
    kt.fine_tune(backbone, train_ds, num_classes=4, head_epochs=1, fine_tune_epochs=2,
                 top_blocks=2, backbone_lr=1e-3, verbose=0)
    np.testing.assert_array_equal(before["block2"], keras.ops.convert_to_numpy(watched["block2_conv"].kernel))
    np.testing.assert_array_equal(before["bn_mean"], keras.ops.convert_to_numpy(watched["block3_bn"].moving_mean))
    assert np.abs(before["block3"] - keras.ops.convert_to_numpy(watched["block3_conv"].kernel)).max() > 0


def test_cached_head_training_equals_training_through_the_backbone(shapes):
    """Phase 1 on cached features gives the same head as phase 1 through the frozen backbone."""
    x, y = demo.make_shapes(demo.TARGET_SHAPES, per_class=8, seed=3)
    heads = []
    for cache in (True, False):
        # A fresh pipeline each time, under the same global seed: a tf.data shuffle
        # keeps its state on the dataset object, and its order depends on both seeds.
        keras.utils.set_random_seed(0)
        train_ds = data.from_arrays(x, y, batch_size=16, shuffle=True, seed=0)
        result = kt.fine_tune(_backbone(), train_ds, num_classes=4, head_epochs=2, fine_tune_epochs=0,
                              strategy="feature_extraction", cache_features=cache, dropout=0.0, verbose=0)
        heads.append(keras.ops.convert_to_numpy(result.model.get_layer("head_logits").kernel))
    np.testing.assert_allclose(heads[0], heads[1], atol=1e-5)


def test_reported_metrics_are_the_returned_models_own(shapes):
    train_ds, val_ds = shapes

    class SpoilLastValidation(keras.callbacks.Callback):
        """Zero logits (accuracy 0.25) while the last epoch validates, so the best epoch is an earlier one."""

        def on_epoch_begin(self, epoch, logs=None):
            self.last = epoch == 3

        def on_test_begin(self, logs=None):
            if self.last:
                layer = self.model.get_layer("head_logits")
                self.kept = [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]
                for w in layer.weights:
                    w.assign(np.zeros(w.shape, "float32"))

        def on_test_end(self, logs=None):
            if self.last:
                for w, kept in zip(self.model.get_layer("head_logits").weights, self.kept):
                    w.assign(kept)

    result = kt.fine_tune(_backbone(), train_ds, val_ds, num_classes=4, head_epochs=4, fine_tune_epochs=0,
                          strategy="feature_extraction", head_lr=0.03, early_stopping=False,
                          callbacks=[SpoilLastValidation()], verbose=0)
    report = kt.evaluate(result.model, val_ds, verbose=0)
    assert result.history.val_accuracy.iloc[-1] == 0.25 < report.accuracy
    # It was the mean of the last validation epoch and the returned model's accuracy.
    assert result.metrics["accuracy"] == pytest.approx(report.accuracy, abs=1e-6)


def test_checkpointed_run_started_again_skips_finished_phases(shapes, tmp_path):
    train_ds, val_ds = shapes
    first = kt.fine_tune(_backbone(), train_ds, val_ds, num_classes=4, head_epochs=1, fine_tune_epochs=1,
                         checkpoint_dir=str(tmp_path), verbose=0)
    assert (tmp_path / "head" / "done.json").exists() and (tmp_path / "fine_tune" / "done.json").exists()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = kt.fine_tune(_backbone(), train_ds, val_ds, num_classes=4, head_epochs=1, fine_tune_epochs=1,
                             checkpoint_dir=str(tmp_path), verbose=0)
    assert [str(w.message) for w in caught if "Skipping variable loading" in str(w.message)] == []
    np.testing.assert_allclose(again.history.loss, first.history.loss)
    np.testing.assert_allclose(again.metrics["accuracy"], first.metrics["accuracy"])
    assert keras.saving.load_model(first.paths["fine_tune_best"]) is not None


def test_export_merges_lora_and_keeps_outputs(shapes, tmp_path):
    train_ds, val_ds = shapes
    result = kt.fine_tune(_backbone(), train_ds, val_ds, num_classes=4, head_epochs=1, fine_tune_epochs=1,
                          strategy="lora", lora_rank=2, verbose=0)
    paths = kt.export(result.model, tmp_path / "model")
    loaded = keras.saving.load_model(paths["keras"])
    assert not any("LoRA" in type(layer).__name__ for layer in loaded._flatten_layers())
    x = next(iter(val_ds))[0]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-5)
    still_lora = [layer.name for layer in result.model._flatten_layers() if "LoRA" in type(layer).__name__]
    assert still_lora == ["top_dense"], "export merged the caller's model instead of a copy"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"strategy": "finetune"}, r"Received: strategy='finetune'. Valid strategies: \['scratch'"),
        ({"head_epochs": -1}, r"Received: head_epochs=-1"),
        ({"head_epochs": 0, "fine_tune_epochs": 0}, "nothing to train"),
        ({"lora_rank": 0}, r"Received: lora_rank=0"),
        ({"backbone_lr": -1e-5}, r"Received: backbone_lr=-1e-05"),
    ],
)
def test_argument_errors(shapes, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kt.fine_tune(_backbone(), shapes[0], num_classes=4, **kwargs)


def test_num_classes_that_do_not_match_the_data_and_too_many_top_blocks_are_errors(shapes):
    train_ds, val_ds = shapes  # 4 classes
    with pytest.raises(ValueError, match=r"`num_classes` is 5 but `train_ds` holds 4 classes: \['0', '1', '2', '3'\]"):
        kt.fine_tune(_backbone(), train_ds, val_ds, num_classes=5, verbose=0)
    with pytest.raises(ValueError, match=r"`num_classes` is 3 but `val_ds` holds 4 classes"):
        kt.fine_tune(_backbone(), train_ds.take(1).map(lambda x, y: (x, y % 3)), val_ds, num_classes=3, verbose=0)
    one_hot = train_ds.map(lambda x, y: (x, keras.ops.one_hot(y, 4)))
    with pytest.raises(ValueError, match=r"labels of `train_ds` are one-hot over 4 classes"):
        kt.fine_tune(_backbone(), one_hot, num_classes=6, verbose=0)
    with pytest.raises(ValueError, match=r"at most the number of backbone blocks, 5: \['stem', 'block1', 'block2', "
                                         r"'block3', 'top'\].*Received: top_blocks=50"):
        kt.fine_tune(_backbone(), train_ds, val_ds, num_classes=4, top_blocks=50, verbose=0)
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="Received: top_blocks=50"):
        kt.fine_tune(_backbone(), train_ds, val_ds, num_classes=4, unfreeze_top_blocks=50, verbose=0)


def test_images_of_another_size_than_the_backbone_takes_fail_before_training_naming_the_data():
    backbone = kt.get_backbone("mobilenet_v2", weights=None, pooling=None)  # 224 px
    x, y = np.zeros((4, 96, 96, 3), "float32"), np.array([0, 1, 0, 1])
    small = data.from_arrays(x, y, batch_size=2)
    with pytest.raises(ValueError, match=r"`train_ds` images are 96x96 but the backbone expects 224x224: load the "
                                         r"data with image_size=\(224, 224\) or build the backbone with "
                                         r"input_shape=\(96, 96, 3\)"):
        kt.fine_tune(backbone, small, num_classes=2, verbose=0)
    with pytest.raises(ValueError, match=r"`val_ds` images are 96x96 but model 'demo_convnet' expects"):
        kt.fine_tune(_backbone(), data.from_arrays(np.zeros((4, 32, 32, 3), "float32"), y), small, num_classes=2,
                     verbose=0)


def test_build_classifier_errors():
    with pytest.raises(ValueError, match="Received: num_classes=1"):
        kt.build_classifier(_backbone(), 1)
    with pytest.raises(TypeError, match=r"Received: backbone='resnet50'.*pass kt.get_backbone\('resnet50'\)"):
        kt.build_classifier("resnet50", 3)


def test_build_classifier_takes_the_backbone_get_backbone_returns():
    backbone = kt.get_backbone("mobilenet_v2", weights=None, input_shape=(32, 32, 3))
    model = kt.build_classifier(backbone, 3)
    assert model.layers[1] is backbone.model
    assert kt.block_names(model)[-2:] == ["top", "head"] and model.output.shape == (None, 3)


def test_history_records_each_phase_rates(shapes):
    train_ds, val_ds = shapes
    result = kt.fine_tune(_backbone(), train_ds, val_ds, num_classes=4, head_epochs=1, fine_tune_epochs=2,
                          head_lr=1e-3, backbone_lr=1e-5, verbose=0)
    history = result.history
    assert list(history.columns[:4]) == ["phase", "epoch", "head_lr", "backbone_lr"]
    assert list(history.phase) == ["head", "fine_tune", "fine_tune"]
    np.testing.assert_allclose(history.head_lr, [1e-3] * 3)
    assert np.isnan(history.backbone_lr[0])  # nothing of the backbone trains in phase 1
    np.testing.assert_allclose(history.backbone_lr[1:], [1e-5, 1e-5])
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history.columns)


def test_layer_decay_keeps_every_pretrained_block_at_or_under_backbone_lr(shapes, tmp_path):
    train_ds, val_ds = shapes
    result = kt.fine_tune(_backbone(), train_ds, val_ds, num_classes=4, head_epochs=1, fine_tune_epochs=1,
                          strategy="full", head_lr=1e-3, backbone_lr=1e-5, layer_decay=0.6,
                          checkpoint_dir=str(tmp_path), verbose=0)
    rates = result.block_rates
    assert list(rates.columns) == ["phase", "epoch", "stem", "block1", "block2", "block3", "top", "head"]
    assert list(rates.phase) == ["head", "full"] and list(rates.epoch) == [1, 2]
    assert rates.iloc[0, 2:7].isna().all()  # the backbone is frozen while the head trains
    np.testing.assert_allclose(rates.iloc[1, 2:].to_numpy(dtype=float),
                               [1e-5 * 0.6**4, 1e-5 * 0.6**3, 1e-5 * 0.6**2, 1e-5 * 0.6, 1e-5, 1e-3])
    np.testing.assert_allclose(result.history.backbone_lr[1:], [1e-5])  # the top pretrained block's rate
    assert not any(c in result.history.columns for c in ("stem", "rate:stem"))
    saved = pd.read_csv(result.paths["block_rates"])
    np.testing.assert_allclose(saved.iloc[1, 2:].to_numpy(dtype=float), rates.iloc[1, 2:].to_numpy(dtype=float))
    again = kt.fine_tune(_backbone(), train_ds, val_ds, num_classes=4, head_epochs=1, fine_tune_epochs=1,
                         strategy="full", head_lr=1e-3, backbone_lr=1e-5, layer_decay=0.6,
                         checkpoint_dir=str(tmp_path), verbose=0)
    pd.testing.assert_frame_equal(again.block_rates, rates)  # finished phases keep their rates


def test_nan_loss_stops_training_and_restores_the_best_checkpoint(shapes, tmp_path):
    """The head diverges in epoch 2: training stops there and the epoch-1 model comes back."""
    train_ds, _ = shapes

    def diverge(epoch, logs):
        if epoch == 1:
            kernel = model_holder[0].get_layer("head_logits").kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))

    model_holder = []
    grab = keras.callbacks.LambdaCallback(on_train_begin=lambda logs: model_holder.append(grab.model),
                                          on_epoch_begin=diverge)
    with pytest.warns(UserWarning, match="stopped on a NaN or infinite loss; restored the best checkpoint"), \
            pytest.warns(UserWarning, match="Epoch 2: not saving .*, the logs are not finite"):
        result = kt.fine_tune(_backbone(), train_ds, num_classes=4, head_epochs=3, fine_tune_epochs=0,
                              strategy="feature_extraction", cache_features=False, checkpoint_dir=str(tmp_path),
                              callbacks=[grab], verbose=0)
    assert len(result.history) == 2
    assert np.isfinite(result.history.loss[0]) and np.isnan(result.history.loss[1])
    assert list(result.history.columns) == ["phase", "epoch", "head_lr", "backbone_lr", "accuracy", "loss"]
    best = keras.saving.load_model(result.paths["feature_extraction_best"])
    kernel = keras.ops.convert_to_numpy(result.model.get_layer("head_logits").kernel)
    assert np.isfinite(kernel).all()
    np.testing.assert_array_equal(kernel, keras.ops.convert_to_numpy(best.get_layer("head_logits").kernel))


@pytest.mark.parametrize("verbose", [1, 2])
def test_progress_numbers_epochs_across_phases_as_the_history_does(shapes, capsys, verbose):
    train_ds, val_ds = shapes
    result = kt.fine_tune(_backbone(), train_ds, val_ds, num_classes=4, head_epochs=1, fine_tune_epochs=2,
                          early_stopping=False, verbose=verbose)
    printed = [line.strip() for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch ")]
    assert printed == ["Epoch 1/1", "Epoch 2/3", "Epoch 3/3"]
    assert list(result.history.epoch) == [1, 2, 3]


def test_extra_callbacks_run_in_every_phase(shapes):
    train_ds, _ = shapes
    seen = []
    counter = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
    kt.fine_tune(_backbone(), train_ds, num_classes=4, head_epochs=2, fine_tune_epochs=1, callbacks=[counter],
                 verbose=0)
    assert seen == [0, 1, 0]
    with pytest.raises(TypeError, match="`callbacks` must hold keras.callbacks.Callback instances"):
        kt.fine_tune(_backbone(), train_ds, num_classes=4, callbacks=[print])


_KILLABLE_RUN = """
import json, os, sys, time
import keras, numpy as np
import keras_transfer as kt
from keras_transfer import data, demo

out, slow = sys.argv[1], sys.argv[2] == "slow"
with open(os.path.join(out, "marker"), "a") as f:
    f.write("start\\n")
x, y = demo.make_shapes(demo.TARGET_SHAPES, per_class=16, seed=3)
train_ds = data.from_arrays(x, y, batch_size=8, shuffle=True, seed=0)
keras.utils.set_random_seed(7)
backbone = demo.build_demo_backbone()

class Marker(keras.callbacks.Callback):
    phase = 0
    def on_train_begin(self, logs=None):
        Marker.phase += 1
    def on_epoch_begin(self, epoch, logs=None):
        with open(os.path.join(out, "marker"), "a") as f:
            f.write(f"{Marker.phase} {epoch}\\n")
    def on_train_batch_end(self, batch, logs=None):
        if slow:
            time.sleep(0.25)

result = kt.fine_tune(backbone, train_ds, num_classes=4, head_epochs=2, fine_tune_epochs=3,
                      cache_features=False, early_stopping=False, checkpoint_dir=os.path.join(out, "ckpt"),
                      callbacks=[Marker()], verbose=0 if slow else 2)
result.history.to_csv(os.path.join(out, "history.csv"), index=False)
"""


@pytest.mark.slow
def test_run_killed_mid_epoch_resumes_and_finishes_every_epoch(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import pandas as pd

    script = tmp_path / "run.py"
    script.write_text(_KILLABLE_RUN)
    marker = tmp_path / "marker"
    child = subprocess.Popen([sys.executable, str(script), str(tmp_path), "slow"])
    deadline = time.time() + 240
    # Phase 2 ("2"), its second epoch ("1") has begun: kill it in the middle of that epoch.
    while time.time() < deadline and child.poll() is None:
        if marker.exists() and "2 1" in marker.read_text().split("\n"):
            time.sleep(0.6)
            break
        time.sleep(0.05)
    assert child.poll() is None, "the run ended before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not (tmp_path / "history.csv").exists()
    ckpt = tmp_path / "ckpt" / "fine_tune"
    assert keras.saving.load_model(ckpt / "last.keras") is not None  # epoch 1 of phase 2, intact

    rerun = subprocess.run([sys.executable, str(script), str(tmp_path), "fast"], check=True, timeout=300,
                           capture_output=True, text=True)
    assert f"Phase 'head' finished in an earlier run: skipped, its weights loaded from {tmp_path / 'ckpt' / 'head'}" \
        in rerun.stdout
    assert f"Resuming phase 'fine_tune' after epoch 1 of 3, from the backup in {ckpt}" in rerun.stdout
    assert "Skipping variable loading" not in rerun.stderr
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history.phase) == ["head", "head", "fine_tune", "fine_tune", "fine_tune"]
    assert list(history.epoch) == [1, 2, 3, 4, 5]
    first_run, second_run = marker.read_text().split("start\n")[1:]
    assert first_run == "1 0\n1 1\n2 0\n2 1\n"
    # The rerun skipped the finished head phase (its `fit` never started) and
    # resumed phase 2 at its second epoch.
    assert second_run == "1 1\n1 2\n"
    for name in ("best.keras", "last.keras"):
        assert keras.saving.load_model(ckpt / name) is not None
    assert not [p for p in ckpt.rglob("*") if ".tmp" in p.name]


# A plain Keras linear probe on pooled MobileNetV2 features (20 epochs of Adam, no
# augmentation) reaches 0.928 validation accuracy on ants/bees at 224 px.
PLAIN_PROBE_224 = 0.928


def _real_datasets(mobilenet_weights, hymenoptera_dir, size=224):
    backbone = kt.get_backbone("mobilenet_v2", weights=str(mobilenet_weights), input_shape=(size, size, 3),
                               pooling=None)
    loader = dict(image_size=(size, size), preprocess=backbone.preprocess)
    train_ds = data.from_directory(hymenoptera_dir / "train", batch_size=32, shuffle=True, seed=0, **loader)
    val_ds = data.from_directory(hymenoptera_dir / "val", batch_size=64, **loader)
    return backbone, train_ds, val_ds


@pytest.mark.slow
@pytest.mark.large
def test_real_feature_extraction_reaches_the_plain_probe(mobilenet_weights, hymenoptera_dir):
    backbone, train_ds, val_ds = _real_datasets(mobilenet_weights, hymenoptera_dir)
    result = kt.fine_tune(backbone, train_ds, val_ds, num_classes=2, strategy="feature_extraction",
                          head_epochs=20, fine_tune_epochs=0, verbose=0)
    assert result.metrics["accuracy"] >= PLAIN_PROBE_224
    assert result.trainable_params == 1280 * 2 + 2


@pytest.mark.slow
@pytest.mark.large
def test_real_fine_tuning_beats_the_plain_probe(mobilenet_weights, hymenoptera_dir):
    backbone, train_ds, val_ds = _real_datasets(mobilenet_weights, hymenoptera_dir)
    result = kt.fine_tune(backbone, train_ds, val_ds, num_classes=2, strategy="fine_tune",
                          head_epochs=10, fine_tune_epochs=5, top_blocks=2, backbone_lr=1e-5, verbose=0)
    assert result.metrics["accuracy"] > PLAIN_PROBE_224


def test_fine_tune_takes_a_config_and_keywords_override_it(shapes):
    """One run: a config, a keyword over it, and a callback that logs Keras' `learning_rate`."""
    train_ds, val_ds = shapes
    config = FineTuneConfig(num_classes=4, head_epochs=3, fine_tune_epochs=1, head_lr=1e-3, verbose=0)
    logs_rate = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update(learning_rate=1e-3))
    result = kt.fine_tune(_backbone(), train_ds, val_ds, config, head_epochs=1, callbacks=[logs_rate])
    assert list(result.history.phase) == ["head", "fine_tune"]
    assert result.config == dataclasses.replace(config, head_epochs=1)
    # Rates are columns named after fine_tune's arguments; no `learning_rate` twin of `head_lr`.
    assert "learning_rate" not in result.history.columns
    np.testing.assert_allclose(result.history.head_lr, [1e-3, 1e-3])


def test_fine_tune_config_round_trips_through_a_dict():
    config = FineTuneConfig(num_classes=3, strategy="auto", top_blocks=2, head_lr="find", layer_decay=0.8,
                            lora_rank=4, lora_alpha=8, mixed_precision=None, l2_sp=0.01, verbose="auto",
                            candidates=["lora", kt.Candidate("top_1@1e-05", 1, 1e-5)], budget=6)
    assert FineTuneConfig(**dataclasses.asdict(config)) == config
    assert config.verbose == 1 and config.candidates == ("lora", kt.Candidate("top_1@1e-05", 1, 1e-5))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"budget": 4}, r"`budget` is for strategy='auto' only. Received: strategy='fine_tune', budget=4"),
        ({"candidates": ["lora"], "strategy": "full"}, r"Received: strategy='full', candidates=\('lora',\)"),
        ({"l2_sp": 0.1, "strategy": "feature_extraction"},
         r"Received: strategy='feature_extraction', l2_sp=0.1"),
        ({"strategy": "auto", "fine_tune_epochs": 0, "budget": 4}, r"Received: fine_tune_epochs=0, budget=4"),
        ({"strategy": "fine_tune", "top_blocks": 0}, r"Received: strategy='fine_tune', top_blocks=0"),
    ],
)
def test_options_that_do_not_fit_together_name_both(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FineTuneConfig(num_classes=4, **kwargs)
    with pytest.raises(ValueError, match=match):
        kt.fine_tune(_backbone(), None, num_classes=4, **kwargs)


def test_options_a_strategy_does_not_use_are_ignored_not_rejected():
    """One dict of settings compares strategies (as `demo.run` does)."""
    settings = dict(num_classes=4, top_blocks=2, layer_decay=0.5, lora_rank=4)
    assert [FineTuneConfig(strategy=s, **settings).strategy for s in ("scratch", "full", "lora")] == [
        "scratch", "full", "lora"]


def test_fine_tune_old_unfreeze_top_blocks_still_works_and_warns(shapes):
    train_ds, _ = shapes
    with pytest.warns(FutureWarning, match=r"`fine_tune\(unfreeze_top_blocks=...\)` is now `top_blocks=`"):
        result = kt.fine_tune(_backbone(), train_ds, num_classes=4, head_epochs=0, fine_tune_epochs=1,
                              unfreeze_top_blocks=1, verbose=0)
    assert result.trainable_params == HEAD + TOP
    assert result.config.top_blocks == 1
    with pytest.raises(ValueError, match="Received: unfreeze_top_blocks=1, top_blocks=2"):
        kt.fine_tune(_backbone(), train_ds, num_classes=4, unfreeze_top_blocks=1, top_blocks=2)
    with pytest.raises(TypeError, match="fine_tune\\(\\) got unexpected keyword arguments: top_block"):
        kt.fine_tune(_backbone(), train_ds, num_classes=4, top_block=1)


def test_lora_alpha_reaches_the_adapters(shapes):
    train_ds, _ = shapes
    result = kt.fine_tune(_backbone(), train_ds, num_classes=4, head_epochs=0, fine_tune_epochs=1, strategy="lora",
                          lora_rank=2, lora_alpha=8, verbose=0)
    adapted = [layer for layer in result.model._flatten_layers() if "LoRA" in type(layer).__name__]
    assert [(layer.rank, layer.alpha) for layer in adapted] == [(2, 8.0)]
    assert result.trainable_params == HEAD + LORA_RANK_2
