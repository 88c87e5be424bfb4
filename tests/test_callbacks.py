"""GradualUnfreezing (which blocks train, epoch by epoch) and checkpoints that survive kills."""

import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer import callbacks as cb

pytestmark = pytest.mark.core

# Hand-counted parameters of `tiny_classifier` (Dense 2->3, three Dense 3->3, head Dense 3->2).
STEM, BLOCK1, BLOCK2, TOP, HEAD = 2 * 3 + 3, 3 * 3 + 3, 3 * 3 + 3, 3 * 3 + 3, 3 * 2 + 2
BACKBONE_ORDER = ("stem", "block1", "block2", "top")


def tiny_classifier():
    inputs = keras.Input((2,))
    x = inputs
    for name in ("stem_dense", "block1_dense", "block2_dense", "top_dense"):
        x = keras.layers.Dense(3, name=name)(x)
    backbone = keras.Model(inputs, x, name="demo_convnet")
    outer = keras.Input((2,))
    return keras.Model(outer, keras.layers.Dense(2, name="head_logits")(backbone(outer)))


def data(n=8):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 2)).astype("float32"), rng.normal(size=(n, 2)).astype("float32")


def block_values(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the one-layer models fall back to generic blocks
        return {b.name: [np.array(w) for w in b.weights] for b in kt.get_blocks(model)}


class Snapshots(keras.callbacks.Callback):
    """Per epoch: trainable parameter count and every block's weights."""

    def __init__(self):
        super().__init__()
        self.trainable, self.values, self.optimizers = [], [], []

    def on_epoch_end(self, epoch, logs=None):
        self.trainable.append(sum(int(np.prod(v.shape)) for v in self.model.trainable_variables))
        self.values.append(block_values(self.model))
        self.optimizers.append(self.model.optimizer)


def moved(before, after):
    return {name for name in before if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name]))}


# --- GradualUnfreezing ---------------------------------------------------------


def test_one_more_block_trains_each_epoch_and_frozen_blocks_do_not_move():
    model = kt.freeze(tiny_classifier())
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x, y = data()
    initial = block_values(model)
    snaps = Snapshots()
    history = model.fit(x, y, epochs=5, batch_size=4, verbose=0,
                        callbacks=[kt.GradualUnfreezing(verbose=0), snaps])
    assert snaps.trainable == [HEAD, HEAD + TOP, HEAD + TOP + BLOCK2, HEAD + TOP + BLOCK2 + BLOCK1,
                               HEAD + TOP + BLOCK2 + BLOCK1 + STEM]
    assert history.history["top_blocks"] == [0, 1, 2, 3, 4]
    previous = initial
    for epoch, values in enumerate(snaps.values):
        trained = {"head", *BACKBONE_ORDER[len(BACKBONE_ORDER) - epoch:]} if epoch else {"head"}
        assert moved(previous, values) == trained, f"epoch {epoch + 1}"
        previous = values


def test_start_step_and_limit_and_rebuilds_only_when_the_set_changes():
    model = kt.freeze(tiny_classifier())
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x, y = data()
    compiled_optimizer = model.optimizer
    snaps = Snapshots()
    unfreezing = kt.GradualUnfreezing(top_blocks=1, blocks_per_epoch=2, max_top_blocks=3, verbose=0)
    model.fit(x, y, epochs=4, batch_size=4, verbose=0, callbacks=[unfreezing, snaps])
    assert snaps.trainable == [HEAD + TOP, HEAD + TOP + BLOCK2 + BLOCK1, HEAD + TOP + BLOCK2 + BLOCK1,
                               HEAD + TOP + BLOCK2 + BLOCK1]
    assert [unfreezing.blocks_for_epoch(e) for e in range(4)] == [1, 3, 3, 3]
    opts = snaps.optimizers
    assert opts[0] is not compiled_optimizer and opts[1] is not opts[0] and opts[3] is opts[2] is opts[1]
    assert "stem" not in moved(snaps.values[0], snaps.values[-1])


def test_optimizer_factory_builds_each_new_optimizer():
    model = kt.freeze(tiny_classifier())
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x, y = data()
    calls = []

    def frozen_rates(m):
        calls.append(sum(int(np.prod(v.shape)) for v in m.trainable_variables))
        return keras.optimizers.SGD(learning_rate=0.0)

    snaps = Snapshots()
    model.fit(x, y, epochs=3, batch_size=4, verbose=0,
              callbacks=[kt.GradualUnfreezing(top_blocks=1, optimizer_factory=frozen_rates, verbose=0), snaps])
    assert calls == [HEAD + TOP, HEAD + TOP + BLOCK2, HEAD + TOP + BLOCK2 + BLOCK1]
    assert moved(snaps.values[0], snaps.values[2]) == set()
    # A checkpoint written now compiles with the optimizer in use, not the first one.
    assert model._compile_config.config["optimizer"] is model.optimizer


@pytest.mark.parametrize("keep, iterations", [(True, 6), (False, 2)])
def test_optimizer_state_carries_over(keep, iterations):
    model = kt.freeze(tiny_classifier())
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    x, y = data()
    moments = {}

    class HeadMomentum(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            path = "adam/head_logits_kernel_momentum"
            moments[epoch] = [np.array(v) for v in self.model.optimizer.variables if v.path == path]

        def on_epoch_end(self, epoch, logs=None):
            moments[f"end{epoch}"] = [np.array(v) for v in self.model.optimizer.variables
                                      if v.path == "adam/head_logits_kernel_momentum"]

    model.fit(x, y, epochs=3, batch_size=4, verbose=0,
              callbacks=[kt.GradualUnfreezing(keep_optimizer_state=keep, verbose=0), HeadMomentum()])
    assert int(model.optimizer.iterations) == iterations
    expected = moments["end0"][0] if keep else np.zeros((3, 2), "float32")
    np.testing.assert_array_equal(moments[1][0], expected)


def test_gradual_unfreezing_verbose_says_which_blocks_train(capsys):
    model = kt.freeze(tiny_classifier())
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(*data(), epochs=2, batch_size=4, verbose=0, callbacks=[kt.GradualUnfreezing(verbose=1)])
    out = capsys.readouterr().out
    assert "Epoch 2: GradualUnfreezing trains 1 backbone block(s) ['top'] + head" in out
    assert f"({kt.trainable_summary(model).trainable_params.sum():,} trainable parameters)" in out


def test_gradual_unfreezing_validates_arguments():
    with pytest.raises(ValueError, match=r"`top_blocks` must be a non-negative integer. Received: top_blocks=-1"):
        kt.GradualUnfreezing(top_blocks=-1)
    with pytest.raises(ValueError, match=r"`blocks_per_epoch` must be a positive integer. Received: blocks_per_epoch=0"):
        kt.GradualUnfreezing(blocks_per_epoch=0)
    with pytest.raises(ValueError, match=r"`max_top_blocks` must be None or an integer >= `top_blocks` \(2\)"):
        kt.GradualUnfreezing(top_blocks=2, max_top_blocks=1)
    with pytest.raises(TypeError, match="`optimizer_factory` must be a callable"):
        kt.GradualUnfreezing(optimizer_factory="adam")
    model = kt.freeze(tiny_classifier())
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"at most the number of backbone blocks \(4: \['stem', 'block1', 'block2', 'top'\]\)"):
        model.fit(*data(), epochs=1, verbose=0, callbacks=[kt.GradualUnfreezing(max_top_blocks=5, verbose=0)])


def test_gradual_unfreezing_config():
    config = kt.GradualUnfreezing(top_blocks=1, blocks_per_epoch=2, max_top_blocks=3, verbose=0).get_config()
    assert config == {"top_blocks": 1, "blocks_per_epoch": 2, "max_top_blocks": 3,
                      "keep_optimizer_state": True, "train_bn": False, "verbose": 0}
    assert kt.GradualUnfreezing(**config).get_config() == config


def test_gradual_unfreezing_old_argument_names_still_work_and_warn():
    with pytest.warns(FutureWarning, match=r"`GradualUnfreezing\(start_blocks=...\)` is now `top_blocks=`"):
        with pytest.warns(FutureWarning, match=r"`GradualUnfreezing\(max_blocks=...\)` is now `max_top_blocks=`"):
            callback = kt.GradualUnfreezing(start_blocks=1, max_blocks=2)
    assert (callback.top_blocks, callback.max_top_blocks) == (1, 2)
    with pytest.raises(ValueError, match="Received: start_blocks=1, top_blocks=2"), pytest.warns(FutureWarning):
        kt.GradualUnfreezing(start_blocks=1, top_blocks=2)
    with pytest.raises(TypeError, match=r"GradualUnfreezing\(\) got unexpected keyword arguments: epochs"):
        kt.GradualUnfreezing(epochs=3)


# --- checkpoint_callbacks --------------------------------------------------------


class Scripted(keras.callbacks.Callback):
    """Writes a scripted `val_score` into the logs, so the best epoch is known."""

    def __init__(self, scores):
        super().__init__()
        self.scores = scores

    def on_epoch_end(self, epoch, logs=None):
        logs["val_score"] = self.scores[epoch]


class StopAfter(keras.callbacks.Callback):
    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt("simulated kill")


def small_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="dense")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def kernel(path_or_model):
    model = path_or_model if isinstance(path_or_model, keras.Model) else keras.saving.load_model(path_or_model)
    return np.array(model.get_layer("dense").kernel)


def test_best_and_last_checkpoints_and_no_temporary_files(tmp_path):
    model, (x, y) = small_model(), data()
    snaps = Snapshots()
    callbacks = [Scripted([3.0, 1.0, 2.0])] + cb.checkpoint_callbacks(tmp_path, monitor="val_score", mode="min")
    model.fit(x, y, epochs=3, batch_size=4, verbose=0, callbacks=callbacks + [snaps])
    assert sorted(os.listdir(tmp_path)) == ["best.keras", "last.keras"]  # backup removed once finished
    np.testing.assert_array_equal(kernel(tmp_path / "best.keras"), snaps.values[1]["dense"][0])
    np.testing.assert_array_equal(kernel(tmp_path / "last.keras"), snaps.values[2]["dense"][0])
    loaded = keras.saving.load_model(tmp_path / "last.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_killed_run_resumes_after_its_last_epoch_and_keeps_the_best(tmp_path):
    x, y = data()
    scores = [0.0, 5.0, 4.0, 3.0, 2.0]  # epoch 1 stays best, also after the resume
    first, snaps = small_model(), Snapshots()
    with pytest.raises(KeyboardInterrupt):
        first.fit(x, y, epochs=5, batch_size=4, verbose=0,
                  callbacks=[Scripted(scores), *cb.checkpoint_callbacks(tmp_path, monitor="val_score", mode="min"),
                             snaps, StopAfter(2)])
    backup = sorted(p.name for p in (tmp_path / "backup").iterdir())
    assert backup[-1] == "training_metadata.json" and len(backup) == 2 and backup[0].startswith("state-")
    assert json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"] == 2

    # A new process: a fresh model, fresh callbacks, the same directory.
    second, resumed = small_model(), Snapshots()

    class FirstWeights(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.kernel = epoch, kernel(self.model)
            self.model.stop_training = False

    seen = FirstWeights()
    history = second.fit(x, y, epochs=5, batch_size=4, verbose=0,
                         callbacks=[Scripted(scores), *cb.checkpoint_callbacks(tmp_path, monitor="val_score",
                                                                               mode="min"), resumed, seen])
    assert len(history.history["loss"]) == 3 and seen.epoch == 4
    assert int(second.optimizer.iterations) == 5 * 2
    np.testing.assert_array_equal(kernel(tmp_path / "best.keras"), snaps.values[0]["dense"][0])
    np.testing.assert_array_equal(kernel(tmp_path / "last.keras"), resumed.values[-1]["dense"][0])
    assert sorted(os.listdir(tmp_path)) == ["best.keras", "last.keras"]


def test_resumed_run_starts_from_the_backed_up_weights(tmp_path):
    x, y = data()
    first, snaps = small_model(), Snapshots()
    with pytest.raises(KeyboardInterrupt):
        first.fit(x, y, epochs=4, batch_size=4, verbose=0,
                  callbacks=[*cb.checkpoint_callbacks(tmp_path, monitor="loss"), snaps, StopAfter(2)])
    second = small_model()
    starts = []

    class Start(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            starts.append((epoch, kernel(self.model)))

    second.fit(x, y, epochs=4, batch_size=4, verbose=0,
               callbacks=[*cb.checkpoint_callbacks(tmp_path, monitor="loss"), Start()])
    assert starts[0][0] == 2
    np.testing.assert_array_equal(starts[0][1], snaps.values[1]["dense"][0])


def test_nan_loss_stops_training_and_keeps_the_finite_checkpoints(tmp_path):
    model, (x, y) = small_model(), data()

    class Diverge(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                layer = self.model.get_layer("dense")
                layer.kernel.assign(np.full((2, 2), np.nan, "float32"))

    snaps = Snapshots()
    with pytest.warns(UserWarning, match="not finite"):
        history = model.fit(x, y, epochs=5, batch_size=4, verbose=0,
                            callbacks=[Diverge(), *cb.checkpoint_callbacks(tmp_path, monitor="loss"), snaps])
    assert len(history.history["loss"]) == 2 and np.isnan(history.history["loss"][1])
    for name in ("best.keras", "last.keras"):
        weights = kernel(tmp_path / name)
        assert np.isfinite(weights).all()
        np.testing.assert_array_equal(weights, snaps.values[0]["dense"][0])


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, (x, y) = small_model(), data()
    model.fit(x, y, epochs=1, verbose=0, callbacks=cb.checkpoint_callbacks(tmp_path, monitor="loss", backup=False))
    good = kernel(tmp_path / "last.keras")

    def crash_mid_write(filepath, *args, **kwargs):
        pathlib.Path(filepath).write_bytes(b"half a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(model, "save", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=cb.checkpoint_callbacks(tmp_path, monitor="loss", save_best=False, backup=False))
    assert sorted(os.listdir(tmp_path)) == ["best.keras", "last.keras"]
    np.testing.assert_array_equal(kernel(tmp_path / "last.keras"), good)


def test_a_backup_interrupted_before_its_commit_resumes_from_the_previous_one(tmp_path, monkeypatch):
    x, y = data()
    first, snaps = small_model(), Snapshots()
    backup = cb.AtomicBackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(KeyboardInterrupt):
        first.fit(x, y, epochs=4, batch_size=4, verbose=0, callbacks=[backup, snaps, StopAfter(1)])
    monkeypatch.setattr(cb, "_atomic_write", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt("kill")))
    with pytest.raises(KeyboardInterrupt):
        first.fit(x, y, epochs=4, batch_size=4, verbose=0, callbacks=[backup])
    monkeypatch.undo()
    second, starts = small_model(), []

    class Start(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            starts.append((epoch, kernel(self.model)))

    second.fit(x, y, epochs=4, batch_size=4, verbose=0, callbacks=[cb.AtomicBackupAndRestore(str(tmp_path / "backup")), Start()])
    assert starts[0][0] == 1
    np.testing.assert_array_equal(starts[0][1], snaps.values[0]["dense"][0])


def test_tensorboard_logs_are_optional(tmp_path):
    model, (x, y) = small_model(), data()
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ImportError, match="`tensorboard=True` needs the `tensorboard` package"):
            cb.checkpoint_callbacks(tmp_path, tensorboard=True)
        return
    model.fit(x, y, epochs=1, verbose=0, callbacks=cb.checkpoint_callbacks(tmp_path, monitor="loss", tensorboard=True))
    assert sorted(os.listdir(tmp_path)) == ["best.keras", "last.keras", "logs"]
    names = [type(c).__name__ for c in cb.checkpoint_callbacks(tmp_path)]
    assert names == ["AtomicBackupAndRestore", "AtomicModelCheckpoint", "AtomicModelCheckpoint", "TerminateOnNaN"]


def test_checkpoint_callbacks_validate_arguments(tmp_path):
    with pytest.raises(TypeError, match=r"`directory` must be a path. Received: directory=3"):
        cb.checkpoint_callbacks(3)
    with pytest.raises(ValueError, match=r"`mode` must be one of 'auto', 'min', 'max'. Received: mode='up'"):
        cb.checkpoint_callbacks(tmp_path, mode="up")
    with pytest.raises(ValueError, match="Nothing to write"):
        cb.checkpoint_callbacks(tmp_path, save_best=False, save_last=False, backup=False)
    with pytest.raises(TypeError, match="`checkpoints` must hold keras.callbacks.ModelCheckpoint"):
        cb.AtomicBackupAndRestore(str(tmp_path), checkpoints=[keras.callbacks.TerminateOnNaN()])


# --- a real SIGKILL ---------------------------------------------------------------

TRAIN_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import keras, numpy as np
    from keras_transfer.callbacks import checkpoint_callbacks

    directory, marker = sys.argv[1], sys.argv[2]

    class Slow(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            with open(marker, "a") as f:
                f.write(f"{epoch}\\n")

        def on_train_batch_end(self, batch, logs=None):
            time.sleep(0.05)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="dense")])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")
    history = model.fit(x, x, epochs=4, batch_size=4, verbose=0,
                        callbacks=checkpoint_callbacks(directory, monitor="loss") + [Slow()])
    print("EPOCHS", len(history.history["loss"]))
    """
)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_rerun_resumes(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    marker, directory = tmp_path / "epochs.txt", tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, str(script), str(directory), str(marker)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline and "1" not in (marker.read_text().split() if marker.exists() else []):
        assert process.poll() is None, process.stdout.read().decode()
        time.sleep(0.05)
    time.sleep(0.2)  # well inside epoch 2 (16 batches of 50 ms)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert json.loads((directory / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    rerun = subprocess.run([sys.executable, str(script), str(directory), str(marker)], env=env,
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "EPOCHS 3" in rerun.stdout  # epochs 2, 3, 4: four in total
    assert marker.read_text().split() == ["0", "1", "1", "2", "3"]
    for name in ("best.keras", "last.keras"):
        assert np.isfinite(kernel(directory / name)).all()
    assert sorted(os.listdir(directory)) == ["best.keras", "last.keras"]
