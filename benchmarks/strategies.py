"""Transfer strategies against their baselines, on the same splits and epoch budget.

    python -m benchmarks.strategies [--quick]                       # offline: real MobileNetV2 -> ants/bees
    python -m benchmarks.strategies --data tfds:tf_flowers --backbone efficientnet_b0 --weights imagenet

For each strategy: top-1 accuracy, trainable parameters, wall time, peak
memory (RSS high-water mark of a fresh process per strategy, so strategies do
not inherit each other's peak) and training images per second. Writes a CSV,
a markdown table and a bar plot to `benchmarks/out/`.
"""

import argparse
import pathlib
import resource
import sys
import time

import pandas as pd

from benchmarks import common

STRATEGIES = {
    # name: fine_tune keyword arguments on top of the shared budget
    "scratch": {"strategy": "scratch"},
    "feature_extraction": {"strategy": "feature_extraction"},
    "fine_tune_top": {"strategy": "fine_tune"},
    "full_fine_tune": {"strategy": "full"},
    "layer_decay": {"strategy": "full", "layer_decay": 0.7},
    "lora": {"strategy": "lora"},
}


def _one(strategy, args, queue):
    """Runs one strategy in this (fresh) process and reports its row."""
    import keras

    import keras_transfer as kt
    from keras_transfer import data

    keras.utils.set_random_seed(0)
    size = (args["image_size"], args["image_size"])
    backbone = kt.get_backbone(args["backbone"], weights=args["weights"], input_shape=size + (3,), pooling=None)
    loader = dict(image_size=size, batch_size=args["batch_size"], preprocess=backbone.preprocess)
    if args["data"].startswith("tfds:"):
        name = args["data"][len("tfds:"):]
        train_ds = data.from_tfds(name, split=args["train_split"], shuffle=True, seed=0, **loader)
        val_ds = data.from_tfds(name, split=args["val_split"], **loader)
    else:
        root = pathlib.Path(args["data"])
        train_ds = data.from_directory(root / "train", shuffle=True, seed=0, **loader)
        val_ds = data.from_directory(root / "val", **loader)
    num_classes = len(train_ds.class_names)
    n_train = sum(int(x.shape[0]) for x, _ in train_ds)
    budget = dict(head_epochs=args["head_epochs"], fine_tune_epochs=args["fine_tune_epochs"],
                  head_lr=1e-3, backbone_lr=1e-5, top_blocks=args["top_blocks"],
                  lora_rank=4, early_stopping=False, verbose=0)
    start = time.perf_counter()
    try:
        result = kt.fine_tune(backbone, train_ds, val_ds, num_classes=num_classes,
                              **{**budget, **STRATEGIES[strategy]})
    except ValueError as e:
        if strategy != "lora" or "no Dense or EinsumDense layer" not in str(e):
            raise
        # A convolutional backbone (MobileNetV2, EfficientNet) has no Dense layer
        # for LoRA to adapt: the row says so instead of ending the comparison.
        queue.put({"strategy": strategy, "top1": float("nan"), "trainable_params": 0, "wall_time_s": 0.0,
                   "peak_rss_mb": float("nan"), "train_images_per_s": float("nan"),
                   "note": "n/a: no Dense layer outside the head (kt.apply_lora adapts Dense/EinsumDense)"})
        return
    wall = time.perf_counter() - start
    epochs = args["head_epochs"] + args["fine_tune_epochs"]
    queue.put({
        "strategy": strategy,
        "top1": round(result.metrics["accuracy"], 4),
        "trainable_params": result.trainable_params,
        "wall_time_s": round(wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "train_images_per_s": round(n_train * epochs / wall, 1),
        "note": "",
    })


def run(quick=False, data=None, backbone="mobilenet_v2", weights="assets", image_size=None, strategies=None,
        head_epochs=None, fine_tune_epochs=None, top_blocks=3, batch_size=32,
        train_split="train", val_split="test"):
    """Runs every strategy, each in a fresh process, and returns the table.

    `weights="assets"` means the real ImageNet MobileNetV2 weights in ../shared/assets.
    """
    data = data or str(common.require_assets() / "hymenoptera_data")
    if weights == "assets":
        weights = str(common.require_assets() / "weights" / common.MOBILENET_NO_TOP)
    args = {
        "data": data, "backbone": backbone, "weights": weights, "batch_size": batch_size,
        "image_size": image_size or (96 if quick else 160),
        "head_epochs": head_epochs if head_epochs is not None else (1 if quick else 5),
        "fine_tune_epochs": fine_tune_epochs if fine_tune_epochs is not None else (1 if quick else 5),
        "top_blocks": top_blocks, "train_split": train_split, "val_split": val_split,
    }
    rows = []
    for strategy in strategies or list(STRATEGIES):
        rows.append(common.in_fresh_process(_one, strategy, args, label=f"strategy {strategy!r}"))
        print(f"  {strategy:<20} top-1 {rows[-1]['top1']:.3f}  {rows[-1]['wall_time_s']} s  {rows[-1]['note']}",
              flush=True)
    table = pd.DataFrame(rows)
    table.attrs["settings"] = args
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budget, for CI smoke tests")
    parser.add_argument("--data", help="folder with train/ and val/ (one subfolder per class), or tfds:NAME")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--weights", default="assets",
                        help="imagenet, a local weights file, none, or assets (the real MobileNetV2; default)")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--head-epochs", type=int)
    parser.add_argument("--fine-tune-epochs", type=int)
    parser.add_argument("--top-blocks", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--val-split", default="test")
    parser.add_argument("--strategies", nargs="+", choices=list(STRATEGIES))
    a = parser.parse_args(argv)
    table = run(quick=a.quick, data=a.data, backbone=a.backbone, weights=None if a.weights == "none" else a.weights,
                image_size=a.image_size, strategies=a.strategies, head_epochs=a.head_epochs,
                fine_tune_epochs=a.fine_tune_epochs, top_blocks=a.top_blocks, batch_size=a.batch_size,
                train_split=a.train_split, val_split=a.val_split)
    common.report(table, "strategies", title="Transfer strategies, same splits and epoch budget",
                  plot=("strategy", "top1", "top-1 accuracy"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
