"""`fine_tune` against a hand-written Keras loop of the same model: steady-state throughput and setup cost.

    python -m benchmarks.perf_workflow [--quick] [--backbone efficientnet_b0] [--image-size 224] [--repeats 3]

Both sides train the same classifier (an EfficientNetB0 backbone, MobileNetV2
with `--quick`, and a new head) with the top two blocks unfrozen and
BatchNorm frozen, on the same in-memory data. The hand-written side is what
the Keras transfer-learning guide shows: `build_classifier`, set `trainable`
by layer name, `compile(Adam)`, `fit`. Ours is `kt.fine_tune(...,
strategy="fine_tune", head_epochs=0)`, which adds block discovery, per-block
learning rates and its callbacks.

Setup and training are measured apart, because a short run mixes them: 16
steps of a 224 px EfficientNetB0 take about as long as tracing its train step.
- Setup: process CPU seconds from the call (the hand-written side: from
  `build_classifier`) to the end of the first training step, compiling and
  tracing included. Each is the first thing a fresh process does, so neither
  side inherits the other's warm caches; the sides alternate. CPU time, not
  wall time: under other workers' load the wall time of runs a minute apart
  moved by a third, their CPU time by a tenth. Even on an idle machine one
  fresh process traces up to a fifth faster than the next, so read the
  range. The wall times are printed too.
- Steady state: images per second at the median step of the epochs after
  the first, the same steps on both sides. The sides take turns step by
  step in one process per repeat: after each `fine_tune` step, a callback
  runs one step of the hand-written model's compiled train function (the
  one its `fit` traced) on a repeating iterator over the same data, so each
  pair of steps shares the machine's load of that second. An epoch's first
  step is left out on both sides: `fine_tune`'s carries `fit`'s epoch
  boundary (a new iterator), which the repeating iterator has not.

Each repeat pairs the sides (setup: the two runs side by side; steady
state: one run), so `ratio` is the median of the per-repeat ratios, whose
range is `ratio_range`: a load burst in one repeat moves one pair, where a
ratio of the two sides' medians would pair runs that never shared a load.
`value` and `baseline_value` are each side's median.
"""

import argparse
import statistics
import sys
import time

import keras
import numpy as np
import pandas as pd

from benchmarks import common

# The layer-name prefixes of each backbone's top two blocks, as someone who
# reads `model.summary()` writes them; fine_tune finds the same blocks itself.
TOP_TWO_BLOCKS = {
    "efficientnet_b0": ("block7", "top"),
    "mobilenet_v2": ("block_16", "Conv_1", "out_relu"),
}
SIDES = ("hand_written", "fine_tune")
THROUGHPUT_TARGET = 0.95
SETUP_TARGET = 1.1
BATCH_SIZE = 32
NUM_CLASSES = 10


def _now():
    """(wall, process CPU) seconds."""
    return time.perf_counter(), time.process_time()


class _StepClock(keras.callbacks.Callback):
    """Records `_now()` at the end of every training batch.

    A callback with a batch hook makes Keras convert the batch's logs to
    Python numbers before calling it, so each time is taken after the step
    has finished.
    """

    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(_now())


class _TakeTurns(_StepClock):
    """In `fine_tune`'s `fit`: times each of its steps, then runs and times one step of `model_by_hand`.

    A `fine_tune` step runs from the end of the hand-written step before it
    to its own batch hook. The hand-written steps come from one iterator
    over `dataset` repeated, made before `fine_tune` starts.
    """

    def __init__(self, model_by_hand, dataset):
        super().__init__()
        self.model_by_hand, self._iterator, self._mark = model_by_hand, iter(dataset.repeat()), None
        self.step_seconds = {side: [] for side in SIDES}

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if self._mark is not None:
            self.step_seconds["fine_tune"].append(self.times[-1][0] - self._mark)
        began = time.perf_counter()
        # Waits for the step by reading its logs, as `fit` does before calling a batch hook.
        keras.tree.map_structure(float, self.model_by_hand.train_function(self._iterator))
        self._mark = time.perf_counter()
        self.step_seconds["hand_written"].append(self._mark - began)


def _data(n, size):
    from keras_transfer import data

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, size, size, 3), dtype="uint8")
    y = (np.arange(n) % NUM_CLASSES).astype("int32")
    return data.from_arrays(x, y, batch_size=BATCH_SIZE)


def _backbone(name, size):
    from keras_transfer.backbones import get_backbone

    keras.utils.set_random_seed(0)
    return get_backbone(name, weights=None, input_shape=(size, size, 3), pooling=None).model


def _hand_written(name, backbone, ds, clock):
    """The Keras guide's way, up to the end of its first training step (timed by `clock`). Returns (model, start)."""
    from keras_transfer.workflow import build_classifier

    start = _now()
    model = build_classifier(backbone, NUM_CLASSES)
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = layer.name.startswith(TOP_TWO_BLOCKS[name]) and not isinstance(
            layer, keras.layers.BatchNormalization)
    model.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(ds.take(1), epochs=1, verbose=0, shuffle=False, callbacks=[clock])
    return model, start


def _fine_tune(backbone, ds, epochs, clock):
    """Ours, timed by `clock` (its first time ends the setup). Returns (result, start)."""
    from keras_transfer.workflow import fine_tune

    start = _now()
    result = fine_tune(backbone, ds, num_classes=NUM_CLASSES, head_epochs=0, fine_tune_epochs=epochs,
                       strategy="fine_tune", top_blocks=2, early_stopping=False, mixed_precision=None, verbose=0,
                       callbacks=[clock])
    return result, start


def _trainable_params(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _setup_run(side, name, size, queue):
    """In a fresh process: one side's setup (wall and CPU seconds) and its trainable parameters."""
    ds, backbone, clock = _data(BATCH_SIZE, size), _backbone(name, size), _StepClock()
    if side == "hand_written":
        model, start = _hand_written(name, backbone, ds, clock)
        params = _trainable_params(model)
    else:
        result, start = _fine_tune(backbone, ds, 1, clock)
        params = result.trainable_params
    (wall, cpu), (wall_start, cpu_start) = clock.times[0], start
    queue.put({"wall": wall - wall_start, "cpu": cpu - cpu_start, "params": params})


def _steady_run(name, size, n, epochs, queue):
    """In a fresh process: both sides' step seconds, taking turns (see the module docstring)."""
    ds = _data(n, size)
    # Both backbones before anything is traced: seeding for the second would make TensorFlow trace the
    # first one's train step again.
    backbones = {side: _backbone(name, size) for side in SIDES}
    model_by_hand, _ = _hand_written(name, backbones["hand_written"], ds, _StepClock())
    turns = _TakeTurns(model_by_hand, ds)
    result, _ = _fine_tune(backbones["fine_tune"], ds, epochs, turns)
    queue.put({"step_seconds": turns.step_seconds, "steps": len(turns.times),
               "params": {"hand_written": _trainable_params(model_by_hand), "fine_tune": result.trainable_params}})


def _row(measure, baseline, ours, theirs, unit, target, higher_is_better):
    per_repeat = [a / b for a, b in zip(ours, theirs)]
    ratio = statistics.median(per_repeat)
    return {
        "benchmark": "workflow",
        "measure": measure,
        "baseline": baseline,
        "baseline_value": round(statistics.median(theirs), 2),
        "value": round(statistics.median(ours), 2),
        "unit": unit,
        "ratio": round(ratio, 3),
        "target": f">= {target}" if higher_is_better else f"<= {target}",
        "meets_target": bool(ratio >= target if higher_is_better else ratio <= target),
        "repeats": len(ours),
        "ratio_range": f"{min(per_repeat):.3f}-{max(per_repeat):.3f}",
    }


def run(quick=False, backbone=None, image_size=None, repeats=None):
    """Returns the benchmark table: a steady-state throughput row and a setup row (see the module docstring)."""
    from keras_transfer import _checks

    backbone = _checks.choice("backbone", backbone or ("mobilenet_v2" if quick else "efficientnet_b0"),
                              sorted(TOP_TWO_BLOCKS))
    repeats = _checks.positive_int("repeats", repeats, optional=True) or (1 if quick else 3)
    size = _checks.positive_int("image_size", image_size, optional=True) or (64 if quick else 224)
    n, epochs = (128, 3) if quick else (256, 3)
    steps_per_epoch = n // BATCH_SIZE
    # Steps (from 1) after the first epoch that do not start an epoch.
    timed_steps = [k for k in range(steps_per_epoch + 1, steps_per_epoch * epochs + 1) if (k - 1) % steps_per_epoch]
    setup = {side: [] for side in SIDES}
    throughput = {side: [] for side in SIDES}
    for r in range(repeats):
        params, wall = {}, {}
        # Alternate who goes first, so drift on a shared machine hits both sides alike.
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            record = common.in_fresh_process(_setup_run, side, backbone, size, label=f"{side} setup")
            setup[side].append(record["cpu"])
            wall[side], params[side] = record["wall"], record["params"]
        record = common.in_fresh_process(_steady_run, backbone, size, n, epochs, label="steady-state run")
        for p in (params, record["params"]):
            if p["hand_written"] != p["fine_tune"]:
                raise RuntimeError(f"the two sides train different parameter sets: {p}")
        if record["steps"] != steps_per_epoch * epochs:
            raise RuntimeError(f"fine_tune trained {record['steps']} steps, not {steps_per_epoch * epochs}")
        seconds = record["step_seconds"]
        # fine_tune's list starts at its step 2; the hand-written step after fine_tune's step k is at k - 1.
        timed = {"fine_tune": [seconds["fine_tune"][k - 2] for k in timed_steps],
                 "hand_written": [seconds["hand_written"][k - 1] for k in timed_steps]}
        for side in SIDES:
            throughput[side].append(BATCH_SIZE / statistics.median(timed[side]))
        print(f"  setup CPU (wall) s: hand-written {setup['hand_written'][-1]:.2f} ({wall['hand_written']:.2f}), "
              f"fine_tune {setup['fine_tune'][-1]:.2f} ({wall['fine_tune']:.2f}); steady state images/s: "
              f"hand-written {throughput['hand_written'][-1]:.1f}, fine_tune {throughput['fine_tune'][-1]:.1f}",
              flush=True)
    setting = f"{backbone} {size}px, top 2 blocks"
    return pd.DataFrame([
        _row(f"fine_tune steady-state training throughput at the median step, {setting}, {len(timed_steps)} steps "
             f"of epochs 2-{epochs} (not their first), sides taking turns step by step",
             "hand-written Keras compile+fit's train step, same steps", throughput["fine_tune"],
             throughput["hand_written"], "images/s", THROUGHPUT_TARGET, True),
        _row(f"fine_tune setup, call to end of first step (discovery, optimizer, compile, tracing), {setting}",
             "hand-written build_classifier+trainable+compile+first step", setup["fine_tune"],
             setup["hand_written"], "CPU s", SETUP_TARGET, False),
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="MobileNetV2, tiny sizes, one repeat, for CI")
    parser.add_argument("--backbone", choices=sorted(TOP_TWO_BLOCKS),
                        help="default: efficientnet_b0, or mobilenet_v2 with --quick")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--repeats", type=int, help="default: 3, or 1 with --quick")
    args = parser.parse_args(argv)
    table = run(quick=args.quick, backbone=args.backbone, image_size=args.image_size, repeats=args.repeats)
    common.report(table, "perf_workflow" + ("_quick" if args.quick else ""),
                  title="fine_tune vs a hand-written Keras loop: steady state and setup")
    return 0


if __name__ == "__main__":
    sys.exit(main())
