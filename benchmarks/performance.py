"""Every performance ratio the issues name, each against its baseline in the same run.

    python -m benchmarks.performance [--quick] [--only optimizers lora data workflow blocks]

One table, one row per ratio: the differential-optimizer step overhead; LoRA
step time, memory, merged latency and adapter size; pipeline throughput vs the
Keras utility and a naive map; cached vs uncached feature extraction; and
`fine_tune` vs a hand-written Keras `compile` + `fit` of the same model, in
steady-state throughput and in setup time, apart; and block discovery against
building the model, for each keras-hub family with a block spec. Columns only some suites
report (the workflow's `repeats` and `ratio_range`) are blank elsewhere.
Writes `benchmarks/out/performance.{csv,md}`.
"""

import argparse
import importlib
import sys

import pandas as pd

from benchmarks import common

SUITES = ("optimizers", "lora", "data", "workflow", "blocks")


def run(quick=False, only=None):
    """Runs the chosen suites (all by default) and returns one concatenated table."""
    tables = []
    for suite in only or SUITES:
        print(f"== {suite} ==", flush=True)
        module = importlib.import_module(f"benchmarks.perf_{suite}")
        tables.append(module.run(quick=quick))
    columns = list(dict.fromkeys(c for t in tables for c in t.columns))
    return pd.concat([t.reindex(columns=columns, fill_value="") for t in tables], ignore_index=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI smoke tests")
    parser.add_argument("--only", nargs="+", choices=SUITES, help="run only these suites")
    args = parser.parse_args(argv)
    table = run(quick=args.quick, only=args.only)
    common.report(table, "performance" + ("_quick" if args.quick else ""),
                  title="Performance ratios, each against its baseline in the same run")
    missed = table[~table.meets_target.astype(bool)]
    if len(missed):
        print(f"\n{len(missed)} of {len(table)} ratios miss their target:")
        print(missed[["benchmark", "measure", "ratio", "target"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
