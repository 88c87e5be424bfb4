"""Block discovery against building the model, for each keras-hub family with a spec.

    python -m benchmarks.perf_blocks [--quick]

Finding a model's blocks (`kt.get_blocks`: matching the family's spec against
its layer names) runs whenever a block-aware function is called, so it must be
negligible next to building the model it is called on. Each family's small
config (`benchmarks/hub_configs_vision.py`, `benchmarks/hub_configs_text.py`)
is built once per round and its blocks found on the fresh model; the table
keeps the medians. Target: discovery at most a tenth of the build.
"""

import argparse
import statistics
import sys
import time
import warnings

import pandas as pd

from benchmarks import common

TARGET = 0.1


def _configs():
    from benchmarks.hub_configs_text import TEXT_CONFIGS
    from benchmarks.hub_configs_vision import VISION_CONFIGS

    return {**VISION_CONFIGS, **TEXT_CONFIGS}


def _time_family(build, rounds):
    import keras_transfer as kt

    builds, finds, blocks = [], [], None
    for _ in range(rounds):
        start = time.perf_counter()
        model = build()
        builds.append(time.perf_counter() - start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a family still on the generic fallback is timed all the same
            start = time.perf_counter()
            blocks = kt.get_blocks(model)
            finds.append(time.perf_counter() - start)
    return statistics.median(builds), statistics.median(finds), blocks


def run(quick=False):
    """Times block discovery against the build for every family; returns one row per family."""
    rounds = 1 if quick else 5
    rows = []
    for family, build in _configs().items():
        build_s, find_s, blocks = _time_family(build, rounds)
        ratio = find_s / build_s
        rows.append({"benchmark": "blocks", "measure": f"block discovery, {family} ({len(blocks)} blocks, "
                     f"{blocks[0].family})", "baseline": "building the model", "baseline_value": round(build_s, 6),
                     "value": round(find_s, 6), "unit": "s", "ratio": round(ratio, 4), "target": f"<= {TARGET}",
                     "meets_target": bool(ratio <= TARGET)})
        print(f"  {family:<16} build {build_s * 1e3:8.1f} ms, blocks {find_s * 1e3:6.2f} ms", flush=True)
    return pd.DataFrame(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round per family, for CI smoke tests")
    args = parser.parse_args(argv)
    table = run(quick=args.quick)
    common.report(table, "perf_blocks" + ("_quick" if args.quick else ""),
                  title="Block discovery vs building the model, keras-hub small configs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
