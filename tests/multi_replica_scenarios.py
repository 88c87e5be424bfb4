"""Workflow scenarios under one device or several, one JSON line each: run by tests/test_multi_replica.py.

    python tests/multi_replica_scenarios.py BACKEND DEVICES SCENARIO [SCENARIO ...]

BACKEND is `tensorflow` (DEVICES > 1: a `MirroredStrategy` over that many
logical CPU devices) or `jax` (DEVICES > 1: `kt.auto_distribution()`, a
`keras.distribution.DataParallel` over that many host devices). Both need
setting before the backend initialises, hence a process of their own. Every
scenario builds its model under the distribution's scope, seeds the same way
and uses the same global batch, so one device and several print the same
numbers up to float rounding.
"""

import json
import os
import sys

BACKEND, DEVICES, SCENARIOS = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
os.environ["KERAS_BACKEND"] = BACKEND
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if BACKEND == "jax":
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={DEVICES}"
else:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * DEVICES)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_transfer as kt  # noqa: E402
from keras_transfer import data, demo  # noqa: E402
from keras_transfer.config import STRATEGIES  # noqa: E402

if BACKEND == "jax":
    distribution = kt.auto_distribution(verbose=0)
elif DEVICES > 1:
    distribution = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(DEVICES)])
else:
    distribution = tf.distribute.get_strategy()
assert distribution.num_replicas_in_sync == DEVICES, distribution
# The per-replica batch shrinks as devices grow: the global batch (what the numbers depend on) stays 8.
BATCH = kt.scale_batch_size(8 // DEVICES, distribution)
x, y = demo.make_shapes(demo.TARGET_SHAPES, per_class=8, seed=3)
xv, yv = demo.make_shapes(demo.TARGET_SHAPES, per_class=4, seed=4)
OPTIONS = dict(num_classes=4, head_epochs=1, fine_tune_epochs=1, verbose=0, dropout=0.0)


def datasets(extra=0):
    """32 training examples (and `extra` more, from the validation images), 16 validation examples."""
    keras.utils.set_random_seed(7)  # the shuffle's seeds include TensorFlow's global seed
    train_ds = data.from_arrays(np.concatenate([x, xv[:extra]]), np.concatenate([y, yv[:extra]]),
                                batch_size=BATCH, shuffle=True, seed=0)
    val_ds = data.from_arrays(xv, yv, batch_size=BATCH)
    return train_ds, val_ds


def backbone():
    keras.utils.set_random_seed(7)
    return demo.build_demo_backbone()


def fine_tune(extra=0, **options):
    train_ds, val_ds = datasets(extra)
    with distribution.scope():
        result = kt.fine_tune(backbone(), train_ds, val_ds, **{**OPTIONS, **options})
    return result


def summary(result):
    return {"metrics": result.metrics, "history": result.history.drop(columns="phase").to_dict("list"),
            "phases": list(result.history.phase)}


def strategy(name):
    return summary(fine_tune(strategy=name))


def evaluate():
    """`strategy="fine_tune"` (cached features in its head phase), then `kt.evaluate` of the result."""
    result = fine_tune(strategy="fine_tune")
    _, val_ds = datasets()
    evaluation = kt.evaluate(result.model, val_ds, verbose=0)
    return {**summary(result), "accuracy": evaluation.accuracy, "confusion": evaluation.confusion.to_numpy().tolist()}


def remainder():
    """36 training examples: batches of 8 leave 4 over, which a JAX distribution's loader drops."""
    result = fine_tune(extra=4, strategy="fine_tune")
    return {"metrics": result.metrics, "train_batches": int(datasets(4)[0].cardinality())}


def layer_decay():
    return summary(fine_tune(strategy="full", layer_decay=0.5, warmup_steps=2))


def gradual_unfreezing():
    # Unshuffled: a `fit` of one's own under a tf.distribute strategy moves a shuffle on by an epoch
    # (Keras reads a batch to build the model); fine_tune's own fits do not.
    keras.utils.set_random_seed(7)
    train_ds = data.from_arrays(x, y, batch_size=BATCH)
    with distribution.scope():
        model = kt.build_classifier(backbone(), 4, dropout=0.0)
        kt.freeze(model)
        model.compile(optimizer=kt.differential_optimizer(model, head_lr=1e-3, backbone_lr=1e-3, layer_decay=0.5),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    unfreezing = kt.GradualUnfreezing(verbose=0,
                                      optimizer_factory=lambda m: kt.differential_optimizer(
                                          m, head_lr=1e-3, backbone_lr=1e-3, layer_decay=0.5))
    history = model.fit(train_ds, epochs=3, callbacks=[unfreezing], verbose=0)
    kernel = model.get_layer("demo_convnet").get_layer("top_dense").kernel
    return {"history": history.history, "top_kernel_sum": float(keras.ops.convert_to_numpy(kernel).sum())}


def killed(directory):
    """fine_tune with checkpoints, killed (`os._exit`, no cleanup) in the middle of phase 2's second epoch."""

    class Kill(keras.callbacks.Callback):
        phase = 0

        def on_train_begin(self, logs=None):
            Kill.phase += 1

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if Kill.phase == 2 and self.epoch == 1 and batch == 1:
                os._exit(17)

    train_ds, val_ds = datasets()
    with distribution.scope():
        kt.fine_tune(backbone(), train_ds, val_ds, **{**OPTIONS, "fine_tune_epochs": 3},
                     checkpoint_dir=directory, callbacks=[Kill()])


def resumed(directory):
    return summary(fine_tune(fine_tune_epochs=3, checkpoint_dir=directory, verbose=1))


SCENARIOS_BY_NAME = {
    **{f"strategy:{name}": (lambda name=name: strategy(name)) for name in STRATEGIES if name != "auto"},
    "strategy:auto": lambda: summary(fine_tune(strategy="auto", candidates=["feature_extraction", "full", "lora"])),
    "evaluate": evaluate,
    "layer_decay": layer_decay,
    "remainder": remainder,
    "gradual_unfreezing": gradual_unfreezing,
}

for scenario in SCENARIOS:
    name, _, argument = scenario.partition("=")
    if name == "killed":
        killed(argument)
        raise SystemExit("the run was not killed")
    output = resumed(argument) if name == "resumed" else SCENARIOS_BY_NAME[name]()
    print(json.dumps({"scenario": name, **output}), flush=True)
