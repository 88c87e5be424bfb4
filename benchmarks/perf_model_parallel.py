"""Model parallelism (`kt.model_parallel`) against one device: a small Gemma with LoRA, JAX.

    python -m benchmarks.perf_model_parallel [--quick] [--devices 8]

Each variant trains in a fresh `spawn` process whose JAX sees `--devices`
simulated host CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count`),
so on a CPU machine this is a sanity figure only: the simulated devices share
the same cores, and splitting the weights adds communication without adding
compute. What it shows is that the split trains the same numbers (the loss
after the timed steps), and how much weight memory one device holds.
Measured per variant: median training step time, its ratio to one device,
weight bytes on the first device, and the loss after the last step.
"""

import argparse
import os
import statistics
import sys
import time

import pandas as pd

from benchmarks import common

FULL = dict(num_layers=2, hidden_dim=128, num_heads=8, head_dim=16, intermediate_dim=512, vocabulary_size=2048,
            sequence_length=64, batch_size=8, rank=8, warmup=2, steps=5)
QUICK = dict(num_layers=2, hidden_dim=32, num_heads=8, head_dim=8, intermediate_dim=64, vocabulary_size=128,
             sequence_length=16, batch_size=8, rank=4, warmup=1, steps=3)


def _variant(model_dim, settings, queue):
    """Trains the LoRA Gemma classifier, split over `model_dim` devices (None: no distribution)."""
    import keras
    import numpy as np
    from keras_hub.models import GemmaBackbone

    import keras_transfer as kt

    if model_dim is not None:
        kt.model_parallel(GemmaBackbone, model_dim=model_dim, verbose=0)
    keras.utils.set_random_seed(0)
    backbone = GemmaBackbone(vocabulary_size=settings["vocabulary_size"], num_layers=settings["num_layers"],
                             num_query_heads=settings["num_heads"], num_key_value_heads=settings["num_heads"],
                             hidden_dim=settings["hidden_dim"], intermediate_dim=settings["intermediate_dim"],
                             head_dim=settings["head_dim"])
    inputs = {"token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
              "padding_mask": keras.Input((None,), dtype="int32", name="padding_mask")}
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(4, name="head_dense")(pooled))
    kt.apply_lora(model, rank=settings["rank"])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    shape = (settings["batch_size"], settings["sequence_length"])
    x = {"token_ids": rng.integers(1, settings["vocabulary_size"], shape).astype("int32"),
         "padding_mask": np.ones(shape, "int32")}
    y = np.arange(settings["batch_size"]) % 4
    for _ in range(settings["warmup"]):
        model.train_on_batch(x, y)
    times, loss = [], None
    for _ in range(settings["steps"]):
        start = time.perf_counter()
        loss = model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    weight_bytes = sum(v.value.addressable_shards[0].data.nbytes for v in model.weights)
    devices = len(keras.distribution.list_devices())
    queue.put({"step_s": statistics.median(times), "weight_bytes_device0": weight_bytes, "loss": float(loss),
               "devices": devices})


def run(quick=False, devices=8):
    """Step time and per-device weight memory with the weights split over `devices`, against one device."""
    settings = QUICK if quick else FULL
    if devices < 2 or settings["num_heads"] % devices or settings["vocabulary_size"] % devices:
        raise ValueError(f"`devices` must be at least 2 and divide the heads ({settings['num_heads']}) and the "
                         f"vocabulary ({settings['vocabulary_size']}). Received: devices={devices}")
    os.environ.update(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    variants = [("1 device", 1, None, "-"),
                (f"model parallel, {devices} devices", devices, devices, f"1 x {devices}"),
                (f"model parallel, {devices} devices", devices, devices // 2, f"2 x {devices // 2}")]
    rows = []
    for name, count, model_dim, mesh in variants:
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"
        row = common.in_fresh_process(_variant, model_dim, settings, label=name)
        assert row["devices"] == count, row
        rows.append({"variant": name, "mesh (batch x model)": mesh, "step_ms": round(row["step_s"] * 1e3, 2),
                     "weight_kb_device0": round(row["weight_bytes_device0"] / 1024, 1),
                     f"loss_after_{settings['warmup'] + settings['steps']}_steps": round(row["loss"], 6)})
        print(f"  {name}, mesh {mesh}: step {rows[-1]['step_ms']:.1f} ms", flush=True)
    table = pd.DataFrame(rows)
    table.insert(3, "step_ratio", (table.step_ms / table.step_ms[0]).round(3))
    table.attrs["settings"] = settings
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, for CI smoke tests")
    parser.add_argument("--devices", type=int, default=8, help="simulated CPU devices to split over (default 8)")
    args = parser.parse_args(argv)
    table = run(quick=args.quick, devices=args.devices)
    s = table.attrs["settings"]
    common.report(table, "perf_model_parallel" + ("_quick" if args.quick else ""),
                  title=f"Model parallel vs 1 device (simulated CPU devices: a sanity figure), Gemma "
                        f"{s['num_layers']} layers, hidden {s['hidden_dim']}, {s['num_heads']} heads, vocab "
                        f"{s['vocabulary_size']}, seq {s['sequence_length']}, batch {s['batch_size']}, LoRA rank "
                        f"{s['rank']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
