"""What every benchmark shares: where the real assets are, and how results are reported."""

import os
import pathlib
import platform

import pandas as pd

REPO = pathlib.Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
MOBILENET_NO_TOP = "mobilenet_v2_1.0_224_imagenet_torchvision_no_top.weights.h5"


def assets_dir():
    """`../shared/assets` beside the repo (or `$KERAS_TRANSFER_SHARED/assets`), or None."""
    shared = pathlib.Path(os.environ.get("KERAS_TRANSFER_SHARED", REPO.parent / "shared"))
    assets = shared / "assets"
    return assets if assets.exists() else None


def require_assets():
    assets = assets_dir()
    if assets is None:
        raise SystemExit(
            "This benchmark's offline default needs the real assets in ../shared/assets; "
            "pass --data/--weights to use your own."
        )
    return assets


def in_fresh_process(target, *args, label):
    """Runs `target(*args, queue)` in a fresh (spawned) process and returns what it put on `queue`.

    A fresh process per run keeps peak memory, compiled functions and TensorFlow's global state
    from leaking between the runs a benchmark compares.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"{label} failed (exit code {process.exitcode}); see the log above")
    return result


def machine():
    """One line naming the machine and library versions, for RESULTS.md."""
    import keras

    try:
        import tensorflow as tf

        tf_version = tf.__version__
    except ImportError:
        tf_version = "absent"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; python "
            f"{platform.python_version()}, keras {keras.__version__} ({keras.backend.backend()}), "
            f"tensorflow {tf_version}")


def report(table, name, title, plot=None):
    """Prints the table, writes `<name>.csv` and `<name>.md` (and `<name>.png`) under benchmarks/out/."""
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"\n{title}\n{machine()}\n")
    print(table.to_string(index=False))
    table.to_csv(OUT / f"{name}.csv", index=False)
    (OUT / f"{name}.md").write_text(f"### {title}\n\n{machine()}\n\n{_markdown(table)}\n")
    if plot is not None:
        _bar_plot(table, *plot, OUT / f"{name}.png", title)
    print(f"\nwritten: {OUT / (name + '.csv')}, {OUT / (name + '.md')}")


def _markdown(table):
    columns = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def _bar_plot(table, x, y, label, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(table[x].astype(str), table[y], color="#3b75af")
    for i, value in enumerate(table[y]):
        # A strategy that does not apply (NaN) gets a label instead of a bar.
        text, height = (f"{value:.3g}", value) if value == value else ("n/a", 0)
        ax.text(i, height, text, ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(label)
    ax.set_title(title)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return pd.Series({"plot": str(path)})
