"""Callbacks of the workflow: gradual unfreezing and checkpoints that survive a kill.

`GradualUnfreezing` trains one more backbone block each epoch, from the top
down (ULMFiT), inside a single `fit`. `checkpoint_callbacks(directory)` gives
the callbacks a long run needs: `best.keras` and `last.keras` written
atomically, a backup a killed run resumes from, and a stop on NaN loss.
"""

import importlib.util
import json
import math
import os
import pathlib
import shutil
import tempfile
import warnings

import keras

from keras_transfer import _checks
from keras_transfer import _keras_compat as compat
from keras_transfer.blocks import count_params, get_blocks
from keras_transfer.freezing import unfreeze


# How a monitored value improves, as in Keras' ModelCheckpoint.
MODES = ("auto", "min", "max")


class GradualUnfreezing(keras.callbacks.Callback):
    """Unfreezes the backbone block by block, from the top down, while `fit` runs.

    At the start of epoch `e` the top
    `min(top_blocks + e * blocks_per_epoch, max_top_blocks)` backbone blocks
    train (the `head` always does), as in ULMFiT's gradual unfreezing. When
    the trainable set changes, the callback does what a `compile` would:
    it builds a fresh optimizer for the new trainable variables, carries over
    the state of every optimizer variable that still exists (moments of
    blocks that were already training, step counters, so schedules go on),
    and retraces the train step. This works on every backend, including the
    cached training state of the JAX trainer.

    The number of training backbone blocks is added to the epoch logs as
    `top_blocks` (the name `kt.unfreeze` and `fine_tune` use), so it shows in
    the progress bar and in `History`.

    Callbacks are not part of a `.keras` file, so this one is not registered
    as serializable; `get_config` describes it for logs and reports.

    Args:
        top_blocks: backbone blocks trainable in the first epoch, from the
            top (0: only the head trains at first). Was `start_blocks`.
        blocks_per_epoch: blocks added at each epoch, a positive integer.
        max_top_blocks: most backbone blocks to unfreeze; default all of
            them. Was `max_blocks`.
        optimizer_factory: callable `model -> optimizer` building the
            optimizer for the new trainable set, such as
            `lambda m: kt.differential_optimizer(m, head_lr=1e-3, layer_decay=0.8)`.
            By default, a fresh copy of the compiled optimizer (same class
            and config).
        keep_optimizer_state: carry optimizer variables over by path from
            the old optimizer to the new one (variables of blocks that keep
            training keep their moments; iteration counters continue).
        train_bn: passed to `kt.unfreeze`: keep BatchNormalization layers of
            the backbone trainable.
        verbose: 1 prints a line whenever blocks are unfrozen.

    Example:

    >>> import keras, numpy as np, keras_transfer as kt
    >>> import keras_transfer.demo  # registers the block spec of models named demo_convnet
    >>> backbone = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="stem_dense"),
    ...     keras.layers.Dense(4, name="block1_dense"), keras.layers.Dense(4, name="top_dense")],
    ...     name="demo_convnet")
    >>> model = keras.Sequential([keras.Input((4,)), backbone, keras.layers.Dense(2, name="logits")])
    >>> model = kt.freeze(model)
    >>> model.compile(optimizer="adam", loss="mse")
    >>> unfreezing = kt.GradualUnfreezing(verbose=0)
    >>> history = model.fit(np.ones((8, 4)), np.ones((8, 2)), epochs=3, verbose=0,
    ...                     callbacks=[unfreezing])
    >>> history.history["top_blocks"]
    [0, 1, 2]
    """

    def __init__(
        self,
        top_blocks=0,
        blocks_per_epoch=1,
        max_top_blocks=None,
        optimizer_factory=None,
        keep_optimizer_state=True,
        train_bn=False,
        verbose=1,
        **deprecated,
    ):
        super().__init__()
        for old, new in (("start_blocks", "top_blocks"), ("max_blocks", "max_top_blocks")):
            value = _checks.renamed(deprecated, old, new, "GradualUnfreezing")
            if value is not None:
                given = locals()[new]
                if given != (0 if new == "top_blocks" else None):
                    raise ValueError(f"`{old}` is the old name of `{new}`; pass `{new}` only. "
                                     f"Received: {old}={value!r}, {new}={given!r}")
                if new == "top_blocks":
                    top_blocks = value
                else:
                    max_top_blocks = value
        _checks.no_unknown(deprecated, "GradualUnfreezing")
        if isinstance(top_blocks, bool) or not isinstance(top_blocks, int) or top_blocks < 0:
            raise ValueError(
                f"`top_blocks` must be a non-negative integer. Received: top_blocks={top_blocks!r}"
            )
        if isinstance(blocks_per_epoch, bool) or not isinstance(blocks_per_epoch, int) or blocks_per_epoch < 1:
            raise ValueError(
                "`blocks_per_epoch` must be a positive integer. "
                f"Received: blocks_per_epoch={blocks_per_epoch!r}"
            )
        if max_top_blocks is not None and (
            isinstance(max_top_blocks, bool) or not isinstance(max_top_blocks, int) or max_top_blocks < top_blocks
        ):
            raise ValueError(
                f"`max_top_blocks` must be None or an integer >= `top_blocks` ({top_blocks}). "
                f"Received: max_top_blocks={max_top_blocks!r}"
            )
        if optimizer_factory is not None and not callable(optimizer_factory):
            raise TypeError(
                "`optimizer_factory` must be a callable `model -> optimizer`. "
                f"Received: optimizer_factory={optimizer_factory!r}"
            )
        self.top_blocks = top_blocks
        self.blocks_per_epoch = blocks_per_epoch
        self.max_top_blocks = max_top_blocks
        self.optimizer_factory = optimizer_factory
        self.keep_optimizer_state = bool(keep_optimizer_state)
        self.train_bn = bool(train_bn)
        self.verbose = verbose
        self._blocks = None
        self._unfrozen = None

    def blocks_for_epoch(self, epoch):
        """How many backbone blocks train in (0-based) epoch `epoch`."""
        wanted = self.top_blocks + epoch * self.blocks_per_epoch
        limit = self._num_backbone_blocks() if self.max_top_blocks is None else self.max_top_blocks
        return min(wanted, limit)

    def on_train_begin(self, logs=None):
        self._blocks = get_blocks(self.model)
        names = [b.name for b in self._blocks if not b.is_head]
        if self.max_top_blocks is not None and self.max_top_blocks > len(names):
            raise ValueError(
                f"`max_top_blocks` must be at most the number of backbone blocks ({len(names)}: {names}). "
                f"Received: max_top_blocks={self.max_top_blocks}"
            )
        if self.top_blocks > len(names):
            raise ValueError(
                f"`top_blocks` must be at most the number of backbone blocks ({len(names)}: {names}). "
                f"Received: top_blocks={self.top_blocks}"
            )
        self._unfrozen = None

    def on_epoch_begin(self, epoch, logs=None):
        count = self.blocks_for_epoch(epoch)
        if count == self._unfrozen:
            return
        before = [id(v) for v in self.model.trainable_variables]
        # `unfreeze` marks the model as needing a compile; rebuilding the
        # optimizer and the train step below is exactly that.
        unfreeze(self.model, top_blocks=count, train_bn=self.train_bn)
        self._unfrozen = count
        if [id(v) for v in self.model.trainable_variables] == before:
            return
        self._recompile_in_place()
        if self.verbose:
            backbone = [b.name for b in self._blocks if not b.is_head]
            trained = backbone[len(backbone) - count :]
            params = count_params(self.model.trainable_variables)
            print(
                f"\nEpoch {epoch + 1}: GradualUnfreezing trains {count} backbone block(s) "
                f"{trained} + head ({params:,} trainable parameters)"
            )

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._unfrozen is not None:
            logs["top_blocks"] = self._unfrozen

    def get_config(self):
        return {
            "top_blocks": self.top_blocks,
            "blocks_per_epoch": self.blocks_per_epoch,
            "max_top_blocks": self.max_top_blocks,
            "keep_optimizer_state": self.keep_optimizer_state,
            "train_bn": self.train_bn,
            "verbose": self.verbose,
        }

    def _num_backbone_blocks(self):
        blocks = self._blocks if self._blocks is not None else get_blocks(self.model)
        return sum(1 for b in blocks if not b.is_head)

    def _recompile_in_place(self):
        model = self.model
        old = model.optimizer
        strategy = getattr(model, "distribute_strategy", None)
        scope = strategy.scope() if strategy is not None else _NullScope()
        with scope:
            if self.optimizer_factory is not None:
                new = keras.optimizers.get(self.optimizer_factory(model))
            else:
                new = old.__class__.from_config(old.get_config())
            if (
                model.dtype_policy.name == "mixed_float16"
                and not isinstance(new, keras.optimizers.LossScaleOptimizer)
            ):
                new = keras.optimizers.LossScaleOptimizer(new, name="loss_scale_optimizer")
            new.build(model.trainable_variables)
        if self.keep_optimizer_state and old is not None:
            previous = {v.path: v for v in old.variables}
            for variable in new.variables:
                match = previous.get(variable.path)
                if match is not None and tuple(match.shape) == tuple(variable.shape):
                    variable.assign(match.value)
        compat.replace_optimizer(model, new)


class _NullScope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """Saves the model after each epoch and never leaves a half-written file.

    The model is written to a temporary file in the checkpoint's directory,
    flushed to disk, then moved over the old checkpoint with `os.replace`,
    which is atomic: a run killed mid-write leaves the previous checkpoint
    intact and no temporary file is ever seen under the checkpoint's name.
    An epoch whose loss (or monitored value) is NaN or infinite is never
    saved, so a diverged run keeps its last good checkpoint.

    It takes the arguments of `keras.callbacks.ModelCheckpoint` that make
    sense once per epoch, and is built on the public callback hooks only.
    Paths with a scheme (`gs://...`) are written by Keras directly, since
    object stores have no atomic rename. Like every callback it is not part
    of a `.keras` file, so it is not registered as serializable.

    Args:
        filepath: `.keras` (or `.weights.h5` with `save_weights_only=True`)
            path; may hold `{epoch}` and log fields, as in Keras
            (`"model-{epoch:02d}-{val_loss:.2f}.keras"`).
        monitor: the log value `save_best_only` compares.
        verbose: 0, or 1 to print a line when a checkpoint is written or skipped.
        save_best_only: write only when `monitor` improves on the best so far
            (kept in the attribute `best`).
        save_weights_only: write `model.save_weights` instead of `model.save`.
        mode: `"min"`, `"max"`, or `"auto"` (min for values named like a
            loss or error, max otherwise).
        initial_value_threshold: the value to beat before the first save.

    Example:

    >>> import keras, numpy as np, tempfile, os
    >>> from keras_transfer.callbacks import AtomicModelCheckpoint
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> path = os.path.join(tempfile.mkdtemp(), "last.keras")
    >>> _ = model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=2, verbose=0,
    ...               callbacks=[AtomicModelCheckpoint(path)])
    >>> os.listdir(os.path.dirname(path))
    ['last.keras']
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", initial_value_threshold=None):
        super().__init__()
        filepath = os.fspath(filepath) if isinstance(filepath, os.PathLike) else filepath
        if not isinstance(filepath, str):
            raise TypeError(f"`filepath` must be a path. Received: filepath={filepath!r}")
        suffixes = (".weights.h5",) if save_weights_only else (".keras", ".h5")
        if not filepath.endswith(suffixes):
            raise ValueError(
                f"`filepath` must end in {' or '.join(suffixes)} (save_weights_only={save_weights_only}). "
                f"Received: filepath={filepath!r}"
            )
        _checks.choice("mode", mode, MODES)
        self.filepath = filepath
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.mode = mode
        self.best = initial_value_threshold

    @property
    def greater_is_better(self):
        """Whether a higher `monitor` value is an improvement."""
        if self.mode != "auto":
            return self.mode == "max"
        return not any(word in self.monitor for word in ("loss", "error"))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        filepath = self.filepath.format(epoch=epoch + 1, **logs)
        bad = {k: logs[k] for k in ("loss", self.monitor) if k in logs and not _is_finite(logs[k])}
        if bad:
            warnings.warn(
                f"Epoch {epoch + 1}: not saving {filepath}, the logs are not finite ({bad}); "
                "the previous checkpoint stays.",
                stacklevel=2,
            )
            return
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(
                    f"Can save the best model only with `{self.monitor}` in the logs; it is not there. "
                    f"Available: {sorted(logs)}",
                    stacklevel=2,
                )
                return
            current = float(current)
            if self.best is not None and not (current > self.best if self.greater_is_better else current < self.best):
                if self.verbose:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose:
                before = "none" if self.best is None else f"{self.best:.5f}"
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {before} to {current:.5f}, "
                      f"saving model to {filepath}")
            self.best = current
        elif self.verbose:
            print(f"\nEpoch {epoch + 1}: saving model to {filepath}")
        if self.save_weights_only:
            _atomic_write(filepath, lambda tmp: self.model.save_weights(tmp, overwrite=True))
        else:
            _atomic_write(filepath, lambda tmp: self.model.save(tmp, overwrite=True))


class AtomicBackupAndRestore(keras.callbacks.Callback):
    """Backs up training every epoch, so a killed run resumes; backups survive a kill at any moment.

    Keras' `BackupAndRestore` overwrites `latest.weights.h5` in place and then
    the epoch counter in a second file: a kill during the first write
    corrupts the only backup, and a kill between the two pairs new weights
    with an old epoch. Here every backup goes to a new weights file, and the
    metadata (epoch, weights file name, and the `best` values of the
    companion `checkpoints`) is committed last with one atomic `os.replace`;
    older weights files are removed only after that. A resumed run so
    restores weights, optimizer state, the epoch and what counts as "best".

    Args:
        backup_dir: directory of the backup, used by nothing else.
        save_freq: `"epoch"`, or a number of batches (a run resumed from a
            mid-epoch backup repeats that epoch from its start).
        checkpoints: `AtomicModelCheckpoint`s or `keras.callbacks.ModelCheckpoint`s
            (with `save_best_only=True`) whose best value is saved with each
            backup and restored on resume, so a resumed run does not
            overwrite `best.keras` with a worse model.
        delete_checkpoint: delete the backup when `fit` completes.

    Example:

    >>> import keras, numpy as np, tempfile
    >>> from keras_transfer.callbacks import AtomicBackupAndRestore
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> backup = AtomicBackupAndRestore(tempfile.mkdtemp())
    >>> len(model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=2, verbose=0,
    ...               callbacks=[backup]).history["loss"])
    2
    >>> kept = AtomicBackupAndRestore(tempfile.mkdtemp(), delete_checkpoint=False)
    >>> _ = model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=3, verbose=0, callbacks=[kept])
    >>> kept.backed_up_epoch()  # a `fit` with this callback would resume after epoch 3
    3
    """

    def __init__(self, backup_dir, save_freq="epoch", checkpoints=(), delete_checkpoint=True):
        super().__init__()
        if not isinstance(backup_dir, (str, os.PathLike)) or not str(backup_dir):
            raise TypeError(f"`backup_dir` must be a path. Received: backup_dir={backup_dir!r}")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq <= 0):
            raise ValueError(f"`save_freq` must be 'epoch' or a positive number of batches. "
                             f"Received: save_freq={save_freq!r}")
        self.backup_dir = str(backup_dir)
        self.save_freq = save_freq
        self.delete_checkpoint = bool(delete_checkpoint)
        self.checkpoints = list(checkpoints)
        for checkpoint in self.checkpoints:
            if not isinstance(checkpoint, (keras.callbacks.ModelCheckpoint, AtomicModelCheckpoint)):
                raise TypeError(
                    "`checkpoints` must hold keras.callbacks.ModelCheckpoint or AtomicModelCheckpoint instances. "
                    f"Received: {checkpoint!r}"
                )
        self._epoch = 0
        self._batches = 0

    @property
    def metadata_path(self):
        """The file whose atomic replacement commits a backup."""
        return pathlib.Path(self.backup_dir) / "training_metadata.json"

    def backed_up_epoch(self):
        """Epochs finished in the committed backup (what `fit` resumes after), or None without one."""
        if not self.metadata_path.exists():
            return None
        metadata = json.loads(self.metadata_path.read_text())
        return metadata["epoch"] if "weights" in metadata else None

    def on_train_begin(self, logs=None):
        self._epoch, self._batches = 0, 0
        metadata = json.loads(self.metadata_path.read_text()) if self.metadata_path.exists() else None
        if metadata is None or "weights" not in metadata:
            return
        if not self.model.built:
            raise ValueError(
                "`AtomicBackupAndRestore` needs a built model to restore into. "
                f"Received: model={self.model.name!r}, unbuilt. Call it on a batch first."
            )
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.metadata_path.parent / metadata["weights"])
        compat.set_initial_epoch(self.model, metadata["epoch"])
        for checkpoint in self.checkpoints:
            best = metadata.get("best", {}).get(checkpoint.filepath)
            if best is not None:
                checkpoint.best = best

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches += 1
        if self._batches % self.save_freq == 0:
            self._backup(epoch=self._epoch, batch=batch)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._backup(epoch=epoch + 1, batch=None)

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and os.path.isdir(self.backup_dir):
            shutil.rmtree(self.backup_dir)

    def _backup(self, epoch, batch):
        directory = pathlib.Path(self.backup_dir)
        directory.mkdir(parents=True, exist_ok=True)
        fd, weights = tempfile.mkstemp(dir=directory, prefix="state-", suffix=".weights.h5")
        os.close(fd)
        try:
            self.model.save_weights(weights, overwrite=True)
            _fsync(weights)
        except BaseException:
            os.remove(weights)
            raise
        metadata = {
            "epoch": epoch,
            "batch": batch,
            "weights": os.path.basename(weights),
            "best": {c.filepath: _to_float(c.best) for c in self.checkpoints},
        }
        _atomic_write(self.metadata_path, lambda tmp: pathlib.Path(tmp).write_text(json.dumps(metadata)))
        for stale in directory.glob("state-*.weights.h5"):
            if stale.name != metadata["weights"]:
                stale.unlink(missing_ok=True)


def checkpoint_callbacks(
    directory,
    monitor="val_loss",
    *,
    mode="auto",
    save_best=True,
    save_last=True,
    backup=True,
    tensorboard=False,
    verbose=0,
):
    """The callbacks a long or preemptible run needs, writing into one directory.

    - `best.keras`: the model at its best `monitor` value so far;
    - `last.keras`: the model after the latest (finite) epoch;
    - `backup/`: an `AtomicBackupAndRestore` backup. Calling `fit` again
      with these callbacks after a crash, a kill or a Colab disconnect
      resumes after the last completed epoch, with the optimizer state, and
      still only overwrites `best.keras` with a better model;
    - `keras.callbacks.TerminateOnNaN`: a NaN or infinite loss stops
      training; neither checkpoint is ever overwritten by a non-finite epoch;
    - optionally `keras.callbacks.TensorBoard` logs in `logs/`.

    Every file is written atomically (temporary file, then `os.replace`), so
    a kill at any moment leaves loadable checkpoints.

    Args:
        directory: local directory for the files (created if needed).
        monitor: the log value `best.keras` tracks, e.g. `"val_loss"`,
            `"val_accuracy"` (use `"loss"` without validation data).
        mode: `"auto"`, `"min"` or `"max"`, as in `ModelCheckpoint`.
        save_best: write `best.keras`.
        save_last: write `last.keras`.
        backup: back up every epoch for resuming.
        tensorboard: also write TensorBoard logs (needs the `tensorboard`
            package).
        verbose: verbosity of the checkpoint callbacks.

    Returns:
        A list of `keras.callbacks.Callback`, in the order `fit` needs them
        (the backup first, so it restores before the checkpoints compare).

    Example:

    >>> import keras, numpy as np, tempfile, os, keras_transfer as kt
    >>> from keras_transfer.callbacks import checkpoint_callbacks
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> directory = tempfile.mkdtemp()
    >>> _ = model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=2, verbose=0,
    ...               callbacks=checkpoint_callbacks(directory, monitor="loss"))
    >>> sorted(os.listdir(directory))
    ['best.keras', 'last.keras']
    """
    if not isinstance(directory, (str, os.PathLike)) or not str(directory):
        raise TypeError(f"`directory` must be a path. Received: directory={directory!r}")
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"`monitor` must be the name of a log value. Received: monitor={monitor!r}")
    _checks.choice("mode", mode, MODES)
    if not (save_best or save_last or backup or tensorboard):
        raise ValueError(
            "Nothing to write: `save_best`, `save_last`, `backup` and `tensorboard` are all False."
        )
    if tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ImportError(
            "`tensorboard=True` needs the `tensorboard` package (`pip install tensorboard`). "
            "Received: tensorboard=True"
        )
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    checkpoints = []
    if save_best:
        checkpoints.append(
            AtomicModelCheckpoint(
                str(directory / "best.keras"), monitor=monitor, mode=mode, save_best_only=True, verbose=verbose
            )
        )
    if save_last:
        checkpoints.append(AtomicModelCheckpoint(str(directory / "last.keras"), verbose=verbose))
    callbacks = []
    if backup:
        best = [c for c in checkpoints if c.save_best_only]
        callbacks.append(AtomicBackupAndRestore(str(directory / "backup"), checkpoints=best))
    callbacks.extend(checkpoints)
    callbacks.append(keras.callbacks.TerminateOnNaN())
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(directory / "logs")))
    return callbacks


# --- internals ---------------------------------------------------------------


def _atomic_write(filepath, write):
    """Calls `write(tmp)` on a temporary file beside `filepath`, then moves it into place."""
    filepath = str(filepath)
    if "://" in filepath:
        write(filepath)
        return
    directory, name = os.path.split(os.path.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    # Keras picks the format from the extension, so the temporary name keeps it.
    suffix = ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=f".tmp{suffix}")
    os.close(fd)
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _fsync(path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _is_finite(value):
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


def _to_float(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
