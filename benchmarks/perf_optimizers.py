"""Step time of per-block learning rates against one plain optimizer.

    python -m benchmarks.perf_optimizers [--quick]

One MobileNetV2 (alpha 0.35, weights=None) classifier, every block unfrozen,
trained with `kt.differential_optimizer(layer_decay=0.8)` (one inner Adam per
block: about 20 groups) and, on an identical copy, with a single Adam. Both
are timed in the same process, in alternating rounds after warm-up; the
ratio of median step times is reported (target <= 1.05).
"""

import argparse
import statistics
import time

import keras
import numpy as np
import pandas as pd

from benchmarks import common

TARGET = 1.05


def _models(image_size, jit_compile):
    import keras_transfer as kt

    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNetV2(
        alpha=0.35, include_top=False, weights=None, input_shape=(image_size, image_size, 3))
    ours = kt.build_classifier(backbone, num_classes=10)
    kt.unfreeze(ours, top_blocks=len([b for b in kt.get_blocks(ours) if not b.is_head]))
    baseline = keras.models.clone_model(ours)
    baseline.set_weights(ours.get_weights())
    optimizer = kt.differential_optimizer(ours, head_lr=1e-3, layer_decay=0.8)
    ours.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 jit_compile=jit_compile)
    baseline.compile(optimizer=keras.optimizers.Adam(1e-3),
                     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit_compile)
    assert len(ours.trainable_weights) == len(baseline.trainable_weights)
    return ours, baseline, len(optimizer.optimizers)


def _time_steps(model, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    float(np.asarray(loss))  # wait for the last step
    return (time.perf_counter() - start) / steps


def measure(image_size, batch_size, jit_compile, rounds, steps, warmup=3):
    """Median step time (s) of ours and of the baseline, alternating rounds."""
    ours, baseline, groups = _models(image_size, jit_compile)
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, image_size, image_size, 3), dtype="float32")
    y = rng.integers(0, 10, batch_size)
    for model in (ours, baseline):
        _time_steps(model, x, y, warmup)
    times = {"ours": [], "baseline": []}
    for r in range(rounds):
        # Alternate who goes first, so drift on a shared machine hits both alike.
        order = (("ours", ours), ("baseline", baseline)) if r % 2 == 0 else (("baseline", baseline), ("ours", ours))
        for name, model in order:
            times[name].append(_time_steps(model, x, y, steps))
    return statistics.median(times["ours"]), statistics.median(times["baseline"]), groups


def run(quick=False):
    """Runs the benchmark; returns the table (one row per measured ratio)."""
    if quick:
        configs = [dict(image_size=64, batch_size=8, jit_compile=False, rounds=5, steps=2)]
    else:
        # jit_compile="auto" means False on a CPU-only machine; True is what XLA users get.
        configs = [dict(image_size=96, batch_size=32, jit_compile=jit, rounds=15, steps=5) for jit in (False, True)]
    rows = []
    for config in configs:
        ours, baseline, groups = measure(**config)
        ratio = ours / baseline
        rows.append({
            "benchmark": "perf_optimizers",
            "measure": (f"train step, MobileNetV2-0.35 {config['image_size']}px batch {config['batch_size']}, "
                        f"layer_decay=0.8 ({groups} Adam groups), jit_compile={config['jit_compile']}"),
            "baseline": "single keras.optimizers.Adam",
            "baseline_value": round(baseline * 1e3, 2),
            "value": round(ours * 1e3, 2),
            "unit": "ms/step",
            "ratio": round(ratio, 3),
            "target": f"<= {TARGET}",
            "meets_target": bool(ratio <= TARGET),
        })
    return pd.DataFrame(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run for CI")
    args = parser.parse_args(argv)
    table = run(quick=args.quick)
    common.report(table, "perf_optimizers", "Per-block learning rates: step time vs one Adam")
    return table


if __name__ == "__main__":
    main()
