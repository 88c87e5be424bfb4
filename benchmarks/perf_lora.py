"""LoRA against full fine-tuning on a keras-hub BERT classifier built from config.

    python -m benchmarks.perf_lora [--quick]

Each variant (full fine-tuning, LoRA) trains in a fresh `spawn` process, so its
peak RSS is its own; rounds alternate the variants and the table keeps the
medians. Measured: trainable-parameter fraction, training step time, peak
memory, latency of the merged LoRA model against a plain model of the same
architecture (same process, alternating calls), and adapter file size against
the full `.keras` file.
"""

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time

import pandas as pd

from benchmarks import common

FULL = dict(num_layers=4, hidden_dim=256, num_heads=4, intermediate_dim=1024, vocabulary_size=5000,
            sequence_length=128, batch_size=16, rank=8, warmup=3, steps=10, latency_calls=30, rounds=2)
QUICK = dict(num_layers=2, hidden_dim=64, num_heads=2, intermediate_dim=128, vocabulary_size=1000,
             sequence_length=32, batch_size=8, rank=4, warmup=2, steps=3, latency_calls=10, rounds=1)


def _classifier(settings):
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=settings["vocabulary_size"], num_layers=settings["num_layers"],
        num_heads=settings["num_heads"], hidden_dim=settings["hidden_dim"],
        intermediate_dim=settings["intermediate_dim"], max_sequence_length=settings["sequence_length"],
    )
    return keras_hub.models.BertTextClassifier(backbone=backbone, preprocessor=None, num_classes=2, dropout=0.0)


def _batch(settings):
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (settings["batch_size"], settings["sequence_length"])
    x = {"token_ids": rng.integers(0, settings["vocabulary_size"], shape),
         "padding_mask": np.ones(shape, "int32"), "segment_ids": np.zeros(shape, "int32")}
    return x, rng.integers(0, 2, settings["batch_size"])


def _count(variables):
    import numpy as np

    return int(sum(np.prod(v.shape) for v in variables))


def _median_time(fn, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _variant(name, settings, queue):
    """Trains one variant in this fresh process and reports its measurements."""
    import keras

    import keras_transfer as kt

    keras.utils.set_random_seed(0)
    model = _classifier(settings)
    total = _count(model.weights)
    if name == "lora":
        kt.apply_lora(model, rank=settings["rank"])
    model.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _batch(settings)
    for _ in range(settings["warmup"]):
        model.train_on_batch(x, y)
    row = {"variant": name, "params": total, "trainable_params": _count(model.trainable_weights),
           "step_s": _median_time(lambda: model.train_on_batch(x, y), settings["steps"]),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if name == "lora":
        with tempfile.TemporaryDirectory() as tmp:
            adapters = kt.save_adapters(model, os.path.join(tmp, "adapters"), include_head=True)
            model.save(os.path.join(tmp, "full.keras"))
            row["adapter_bytes"] = os.path.getsize(adapters)
            row["keras_bytes"] = os.path.getsize(os.path.join(tmp, "full.keras"))
        kt.merge_lora(model)
        plain = _classifier(settings)
        plain.set_weights(model.get_weights())
        merged_times, plain_times = [], []
        for m in (model, plain):
            m.predict_on_batch(x)
        for _ in range(settings["latency_calls"]):
            merged_times.append(_median_time(lambda: model.predict_on_batch(x), 1))
            plain_times.append(_median_time(lambda: plain.predict_on_batch(x), 1))
        row["merged_latency_s"] = statistics.median(merged_times)
        row["plain_latency_s"] = statistics.median(plain_times)
    queue.put(row)


def _row(measure, baseline, baseline_value, value, unit, target):
    ratio = value / baseline_value
    bound = float(target.split()[-1])
    return {"benchmark": "lora", "measure": measure, "baseline": baseline, "baseline_value": round(baseline_value, 6),
            "value": round(value, 6), "unit": unit, "ratio": round(ratio, 4), "target": target,
            "meets_target": bool(ratio <= bound)}


def run(quick=False):
    """Measures LoRA against full fine-tuning; returns one row per ratio (see the benchmark contract)."""
    settings = QUICK if quick else FULL
    rows = {"full": [], "lora": []}
    for _ in range(settings["rounds"]):
        for name in ("full", "lora"):
            rows[name].append(common.in_fresh_process(_variant, name, settings, label=f"variant {name!r}"))
            print(f"  {name:<5} step {rows[name][-1]['step_s'] * 1e3:.1f} ms, "
                  f"peak RSS {rows[name][-1]['peak_rss_mb']:.0f} MB", flush=True)

    def median(name, key):
        return statistics.median(r[key] for r in rows[name])

    full_ft = "full fine-tuning"
    table = pd.DataFrame([
        _row("trainable parameters", full_ft, median("full", "trainable_params"),
             median("lora", "trainable_params"), "params", "<= 0.05"),
        _row("training step time", full_ft, median("full", "step_s"), median("lora", "step_s"), "s", "<= 1.0"),
        _row("peak memory (RSS, fresh process)", full_ft, median("full", "peak_rss_mb"),
             median("lora", "peak_rss_mb"), "MB", "<= 1.0"),
        _row("merged inference latency", "plain model", median("lora", "plain_latency_s"),
             median("lora", "merged_latency_s"), "s", "<= 1.02"),
        _row("adapter file size (adapters + head)", "full .keras file", median("lora", "keras_bytes"),
             median("lora", "adapter_bytes"), "bytes", "<= 0.05"),
    ])
    table.attrs["settings"] = settings
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, for CI smoke tests")
    args = parser.parse_args(argv)
    table = run(quick=args.quick)
    settings = table.attrs["settings"]
    common.report(table, "perf_lora" + ("_quick" if args.quick else ""),
                  title=f"LoRA (rank {settings['rank']}) vs full fine-tuning, BERT {settings['num_layers']} layers, "
                        f"hidden {settings['hidden_dim']}, seq {settings['sequence_length']}, "
                        f"batch {settings['batch_size']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
