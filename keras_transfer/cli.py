"""The `keras-transfer` command."""

import argparse
import os
import pathlib
import sys


def _load_model(name_or_path):
    """A `.keras` file, or a keras.applications backbone built offline (`weights=None`)."""
    import keras

    path = pathlib.Path(name_or_path)
    if path.suffix == ".keras":
        if not path.exists():
            raise SystemExit(f"keras-transfer: no such model file: {name_or_path}")
        return keras.saving.load_model(path)
    wanted = name_or_path.lower().replace("_", "").replace("-", "")
    constructors = {
        n.lower(): getattr(keras.applications, n)
        for n in dir(keras.applications)
        if n[0].isupper() and callable(getattr(keras.applications, n))
    }
    if wanted not in constructors:
        raise SystemExit(
            f"keras-transfer: unknown backbone {name_or_path!r}. Known: "
            + ", ".join(sorted(constructors))
        )
    return constructors[wanted](include_top=False, weights=None)


def _inspect(args):
    import keras_transfer as kt

    model = _load_model(args.model)
    table = kt.trainable_summary(model)
    spec = kt.find_spec(model)
    family = spec.family if spec else "generic fallback"
    print(f"{model.name}: {len(table)} blocks ({family}), {int(table.params.sum()):,} params")
    print(table.to_string(index=False))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-transfer",
        description="Transfer learning for Keras 3, spoken in blocks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    inspect = sub.add_parser(
        "inspect",
        help="print the block table of a backbone or a saved .keras model",
        description="Prints one row per block: layers, parameters, trainable parameters, state.",
    )
    inspect.add_argument("model", help="a keras.applications name (efficientnet_b0, resnet50, ...) or a .keras file")
    inspect.set_defaults(func=_inspect)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
