"""Does the toolkit find the better model? Hand sweep vs `strategy="auto"` vs the default, near and far.

    python -m benchmarks.choosing [--quick]            # offline: real MobileNetV2 -> ants/bees and steel defects
    python -m benchmarks.choosing --parts sweep auto   # only some parts

On each data set (default: the shared near set `hymenoptera_data` and far set
`neu_steel_defects`), each run in a fresh process, on the same splits:

- `sweep`: the hand sweep a careful user would run, each for the same epochs:
  feature extraction, top 2 blocks at 1e-5, top 8 at 1e-4, all blocks at 1e-4
  with layer decay 0.8;
- `auto`: `fine_tune(strategy="auto")` with the same head and phase-2 epochs;
- `default`: `fine_tune` with its defaults (its own epochs);
- `suggest`: `kt.suggest_unfreeze`'s class against the class of the sweep's
  best depth;
- `lr`: a head-rate sweep on cached features against `head_lr="find"`;
- `guards`: L2-SP and WiSE-FT on the all-blocks run.

Prints the tables and writes `benchmarks/out/choosing_*.csv` (and `.md`).
"""

import argparse
import pathlib
import sys
import time

import numpy as np
import pandas as pd

from benchmarks import common
from keras_transfer.diagnostics import depth_class

SWEEP = {
    # name: fine_tune arguments; the class is the depth's class in suggest_unfreeze's words.
    "feature_extraction": dict(strategy="feature_extraction"),
    "top_2@1e-5": dict(strategy="fine_tune", top_blocks=2, backbone_lr=1e-5),
    "top_8@1e-4": dict(strategy="fine_tune", top_blocks=8, backbone_lr=1e-4),
    "all@1e-4_decay0.8": dict(strategy="full", backbone_lr=1e-4, layer_decay=0.8),
}
HEAD_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
L2_SP_WEIGHTS = (0.0, 100.0)
WISE_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
PARTS = ("sweep", "auto", "default", "suggest", "lr", "guards")


def _load(args, augment=True):
    import keras_transfer as kt
    from keras_transfer import data

    size = (args["image_size"], args["image_size"])
    backbone = kt.get_backbone("mobilenet_v2", weights=args["weights"], input_shape=size + (3,), pooling=None)
    root = pathlib.Path(args["data"])
    loader = dict(image_size=size, batch_size=32, preprocess=backbone.preprocess, cache=True)
    train_ds = data.from_directory(root / "train", shuffle=True, seed=0, augment="default" if augment else None,
                                   **loader)
    val_ds = data.from_directory(root / "val", **loader)
    if args["max_examples"]:
        batches = max(1, args["max_examples"] // 32)
        train_ds, val_ds = train_ds.take(batches), val_ds.take(batches)
    return backbone, train_ds, val_ds


def _worker(kind, params, args, queue):
    """One run in this (fresh) process; puts a list of rows on `queue`."""
    import keras

    import keras_transfer as kt

    keras.utils.set_random_seed(0)
    backbone, train_ds, val_ds = _load(args, augment=kind != "suggest")
    num_classes = sum(p.is_dir() for p in pathlib.Path(args["data"], "train").iterdir())
    epochs = dict(head_epochs=args["head_epochs"], fine_tune_epochs=args["fine_tune_epochs"], early_stopping=False,
                  verbose=0)
    start = time.perf_counter()
    if kind in ("sweep", "auto", "default"):
        chosen = {k: v for k, v in params.items() if k != "name"}
        kwargs = {**epochs, **chosen} if kind != "default" else {"verbose": 0}
        result = kt.fine_tune(backbone, train_ds, val_ds, num_classes=num_classes, **kwargs)
        row = {"run": params.get("name", kind), "accuracy": result.metrics["accuracy"],
               "seconds": time.perf_counter() - start, "best_phase": result.best_phase}
        if kind == "auto":
            row["search"] = " > ".join(f"{c}:{int(n)}" for c, n in result.search.groupby("candidate", sort=False)
                                       .epochs.sum().items())
        queue.put([row])
    elif kind == "suggest":
        suggestion = kt.suggest_unfreeze(backbone, train_ds, val_ds, max_examples=args["probe_examples"], verbose=0)
        queue.put([{"run": "suggest_unfreeze", "top_blocks": suggestion.top_blocks,
                    "class": getattr(suggestion, "depth_class", None), "seconds": time.perf_counter() - start,
                    "reason": str(suggestion)}])
    elif kind == "lr":
        rows = []
        for rate in (*HEAD_RATES, "find"):
            keras.utils.set_random_seed(0)
            t = time.perf_counter()
            result = kt.fine_tune(backbone, train_ds, val_ds, num_classes=num_classes, strategy="feature_extraction",
                                  head_epochs=args["head_epochs"], fine_tune_epochs=0, head_lr=rate,
                                  early_stopping=False, verbose=0)
            rows.append({"run": f"head_lr={rate}", "head_lr": result.learning_rates.get("head_lr", rate),
                         "accuracy": result.metrics["accuracy"], "seconds": time.perf_counter() - t})
        queue.put(rows)
    elif kind == "guards":
        rows = []
        pretrained = kt.get_backbone("mobilenet_v2", weights=args["weights"], pooling=None,
                                     input_shape=(args["image_size"], args["image_size"], 3))
        for weight in L2_SP_WEIGHTS:
            keras.utils.set_random_seed(0)
            t = time.perf_counter()
            result = kt.fine_tune(_fresh(args), train_ds, val_ds, num_classes=num_classes, l2_sp=weight or None,
                                  **{**epochs, **SWEEP["all@1e-4_decay0.8"]})
            rows.append({"run": f"all@1e-4_decay0.8 l2_sp={weight:g}", "accuracy": result.metrics["accuracy"],
                         "seconds": time.perf_counter() - t, "best_phase": result.best_phase})
        # Without validation data nothing is selected: the model is fine-tuning's last epoch,
        # whatever the head phase scored, which is what WiSE-FT interpolates from.
        keras.utils.set_random_seed(0)
        last = kt.fine_tune(_fresh(args), train_ds, num_classes=num_classes, **{**epochs, **SWEEP["all@1e-4_decay0.8"]})
        wise = kt.wise_ft(last.model, pretrained, val_ds, alphas=WISE_ALPHAS)
        for record in wise.table.to_dict("records"):
            rows.append({"run": f"wise_ft alpha={record['alpha']:g}", "accuracy": record["accuracy"]})
        queue.put(rows)


def _fresh(args):
    import keras_transfer as kt

    return kt.get_backbone("mobilenet_v2", weights=args["weights"], pooling=None,
                           input_shape=(args["image_size"], args["image_size"], 3))


def run(quick=False, data=None, weights="assets", image_size=None, head_epochs=None, fine_tune_epochs=None,
        parts=PARTS, max_examples=None, probe_examples=300):
    """Runs the chosen parts on each data set; returns {part: DataFrame}."""
    if data is None:
        assets = common.require_assets()
        data = [str(assets / "hymenoptera_data"), str(assets / "neu_steel_defects")]
    if weights == "assets":
        weights = str(common.require_assets() / "weights" / common.MOBILENET_NO_TOP)
    tables = {}
    for folder in data:
        args = {
            "data": folder, "weights": weights, "image_size": image_size or (96 if quick else 160),
            "head_epochs": head_epochs if head_epochs is not None else (1 if quick else 3),
            "fine_tune_epochs": fine_tune_epochs if fine_tune_epochs is not None else (2 if quick else 5),
            "max_examples": max_examples if max_examples is not None else (64 if quick else None),
            "probe_examples": probe_examples,
        }
        name = pathlib.Path(folder).name
        print(f"\n== {name} ==", flush=True)
        jobs = []
        if "sweep" in parts:
            jobs += [("sweep", {"name": run_name, **kwargs}) for run_name, kwargs in SWEEP.items()]
        if "auto" in parts:
            jobs.append(("auto", {"name": "auto", "strategy": "auto"}))
        if "default" in parts:
            jobs.append(("default", {"name": "default"}))
        for kind in ("suggest", "lr", "guards"):
            if kind in parts:
                jobs.append((kind, {}))
        for kind, params in jobs:
            rows = common.in_fresh_process(_worker, kind, params, args, label=f"{kind} {params}")
            for row in rows:
                print(f"  {kind:<8} {row['run']:<34} " + "  ".join(
                    f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in row.items() if k not in ("run", "reason")), flush=True)
            part = "main" if kind in ("sweep", "auto", "default") else kind
            tables.setdefault(part, []).extend({"data": name, "kind": kind, **row} for row in rows)
    tables = {part: pd.DataFrame(rows) for part, rows in tables.items()}
    if "main" in tables:
        tables["summary"] = summarize(tables["main"], tables.get("suggest"))
    return tables


def summarize(main, suggest=None):
    """Per data set: the sweep's best, auto and the default against it, time ratios, advice's class."""
    rows = []
    for name, runs in main.groupby("data", sort=False):
        sweep = runs[runs.kind == "sweep"]
        row = {"data": name}
        if len(sweep):
            best = sweep.loc[sweep.accuracy.idxmax()]
            row.update(sweep_best=best.run, sweep_best_accuracy=round(best.accuracy, 4),
                       sweep_seconds=round(sweep.seconds.sum(), 1))
            fe = sweep[sweep.run == "feature_extraction"].accuracy
            row["feature_extraction"] = round(fe.iloc[0], 4) if len(fe) else np.nan
            top = {"feature_extraction": 0, "top_2@1e-5": 2, "top_8@1e-4": 8}.get(best.run, 18)
            row["sweep_best_class"] = depth_class(top, 18)
        for kind in ("auto", "default"):
            hit = runs[runs.kind == kind]
            if len(hit):
                row[f"{kind}_accuracy"] = round(hit.accuracy.iloc[0], 4)
                row[f"{kind}_seconds"] = round(hit.seconds.iloc[0], 1)
        if "auto_accuracy" in row and "sweep_best_accuracy" in row:
            row["auto_minus_best"] = round(row["auto_accuracy"] - row["sweep_best_accuracy"], 4)
            row["auto_time_ratio"] = round(row["auto_seconds"] / row["sweep_seconds"], 3)
        if "default_accuracy" in row and "feature_extraction" in row:
            row["default_minus_fe"] = round(row["default_accuracy"] - row["feature_extraction"], 4)
        if suggest is not None and len(suggest[suggest.data == name]):
            row["suggested_class"] = suggest[suggest.data == name]["class"].iloc[0]
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budget (96 px, 64 images), for CI smoke tests")
    parser.add_argument("--data", nargs="+", help="folders with train/ and val/ (one subfolder per class)")
    parser.add_argument("--weights", default="assets",
                        help="a local MobileNetV2 no-top weights file, imagenet, none, or assets (default)")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--head-epochs", type=int)
    parser.add_argument("--fine-tune-epochs", type=int)
    parser.add_argument("--max-examples", type=int, help="use about this many training and validation images")
    parser.add_argument("--probe-examples", type=int, default=300, help="examples suggest_unfreeze reads")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    a = parser.parse_args(argv)
    tables = run(quick=a.quick, data=a.data, weights=None if a.weights == "none" else a.weights,
                 image_size=a.image_size, head_epochs=a.head_epochs, fine_tune_epochs=a.fine_tune_epochs,
                 parts=a.parts, max_examples=a.max_examples, probe_examples=a.probe_examples)
    for part, table in tables.items():
        common.report(table, f"choosing_{part}", title=f"Finding the better model: {part}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
