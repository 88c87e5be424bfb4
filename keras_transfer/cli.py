"""The `keras-transfer` command."""

import argparse
import dataclasses
import os
import pathlib
import sys
import types
import typing


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


def _demo(args):
    from keras_transfer import demo

    if args.real:
        assets = pathlib.Path(args.assets)
        if not assets.exists():
            raise SystemExit(
                f"keras-transfer: --real needs the real assets; none at {assets}. Pass --assets PATH."
            )
        print("Real transfer: ImageNet MobileNetV2 -> ants vs bees photos")
        table = demo.run_real(assets, out_dir=args.out)
    else:
        print("Synthetic transfer: source shapes -> related target shapes, 12 labels per class")
        table = demo.run(out_dir=args.out)
    print()
    print(table.to_string(index=False))
    print()
    print(demo.verdict(table, near_domain=args.real))
    print(f"Plot and CSV written to {pathlib.Path(args.out).resolve()}")
    return 0


def _recipe_module(name):
    import importlib

    from keras_transfer import recipes

    if name not in recipes.RECIPES:
        raise SystemExit(f"keras-transfer: unknown recipe {name!r}. Recipes: {', '.join(recipes.RECIPES)}")
    return importlib.import_module(f"keras_transfer.recipes.{name}")


def recipe_parser(config, prog=None):
    """An `argparse` parser with one option per field of a recipe config, typed by its annotation.

    `int | None` reads an int, `float | Literal["find"]` a number or `find`,
    `bool` is a `--x/--no-x` pair, an `image_size` (an int or a pair) reads
    one int, a tuple field one or more values; `none` stands for None where
    the field allows it. Options not given are left out of the result, so the
    recipe's published defaults stay. `--epochs` is shorthand for
    `--fine-tune-epochs`; `--unfreeze-top-blocks` is the old name of
    `--top-blocks`.

    Example:

    >>> from keras_transfer.cli import recipe_parser
    >>> from keras_transfer.recipes import dog_breeds
    >>> args = recipe_parser(dog_breeds.CONFIG).parse_args(["--max-examples", "16", "--no-cache-features"])
    >>> vars(args)
    {'max_examples': 16, 'cache_features': False}
    """
    hints = typing.get_type_hints(type(config))
    parser = argparse.ArgumentParser(prog=prog, argument_default=argparse.SUPPRESS,
                                     description="Options not given keep the recipe's published defaults.")
    for field in dataclasses.fields(config):
        default = getattr(config, field.name)
        parser.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, help=f"default: {default}",
                            **_option_kind(hints[field.name]))
    parser.add_argument("--epochs", type=_converter(int), metavar="int", help="shorthand for --fine-tune-epochs")
    if "top_blocks" in hints:
        parser.add_argument("--unfreeze-top-blocks", dest="unfreeze_top_blocks", help=argparse.SUPPRESS,
                            **_option_kind(hints["top_blocks"]))
    return parser


def _option_kind(hint):
    """`add_argument` keywords for a field annotated `hint`."""
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    optional = type(None) in members
    members = [m for m in members if m is not type(None)]
    if members == [bool]:
        return dict(action=argparse.BooleanOptionalAction)
    literals = tuple(v for m in members if typing.get_origin(m) is typing.Literal for v in typing.get_args(m))
    scalars = [m for m in members if m in (bool, int, float, str)]
    sequences = [m for m in members if typing.get_origin(m) in (tuple, list)]
    if sequences and not scalars and not literals:
        element = typing.get_args(sequences[0])[0]
        element = next((m for m in typing.get_args(element) if m in (int, float, str)), element)
        return dict(nargs="+", type=_converter(element if element in (int, float, str) else str))
    convert = _converter(*scalars, literals=literals, optional=optional)
    if literals and not scalars:
        return dict(type=convert, metavar="{" + ",".join(map(str, literals + (("none",) if optional else ()))) + "}")
    return dict(type=convert, metavar=convert.__name__.replace(" or ", "|").replace("'", ""))


def _converter(*kinds, literals=(), optional=False):
    """Reads a command-line string as the first of `literals`, None (`none`) or `kinds` it fits."""
    names = [k.__name__ for k in kinds] + [repr(v) for v in literals] + (["none"] if optional else [])

    def convert(text):
        if text in literals:
            return text
        if optional and text.lower() == "none":
            return None
        for kind in kinds:
            if kind is bool:
                if text.lower() in ("true", "false"):
                    return text.lower() == "true"
                continue
            try:
                return kind(text)
            except ValueError:
                continue
        raise argparse.ArgumentTypeError(f"expected {' or '.join(names)}; received {text!r}")

    convert.__name__ = " or ".join(names)
    return convert


def _run(args, extra):
    from keras_transfer import recipes

    if args.help and not args.recipe:
        args.parser.print_help()
        return 0
    if args.list or not args.recipe:
        for name in recipes.RECIPES:
            doc = (_recipe_module(name).__doc__ or "").strip().splitlines()[0]
            print(f"{name:<12} {doc}")
        return 0
    module = _recipe_module(args.recipe)
    options = recipe_parser(module.CONFIG, prog=f"keras-transfer run {args.recipe}")
    if args.help:
        options.print_help()
        return 0
    result = module.run(**vars(options.parse_args(extra)))
    print(result.history.to_string(index=False))
    print({k: round(v, 4) for k, v in result.metrics.items()})
    for key, path in result.paths.items():
        print(f"{key}: {path}")
    return 0


def _diagnose(args):
    import time

    import pandas as pd

    from keras_transfer import data, diagnostics
    from keras_transfer.backbones import get_backbone

    def image_folders(path, flag):
        """(train, val) folders of a dataset directory: its train/ and val/ subfolders, or itself."""
        path = pathlib.Path(path)
        if not path.is_dir():
            raise SystemExit(f"keras-transfer: {flag} must be a folder of images. Received: {flag} {path}")
        val = next((path / n for n in ("val", "validation", "test") if (path / n).is_dir()), None)
        return (path / "train", val) if (path / "train").is_dir() else (path, None)

    train_dir, val_dir = image_folders(args.data, "--data")
    source_dir = image_folders(args.source_data, "--source-data")[0] if args.source_data else None
    size = args.image_size
    backbone = get_backbone(args.backbone, weights=args.weights,
                            input_shape=(size, size, 3) if size else None, pooling=None)
    image_size = tuple(backbone.model.input.shape[1:3])
    load = dict(image_size=image_size, batch_size=args.batch_size, preprocess=backbone.preprocess)
    if val_dir is None:
        train, val = data.from_directory(train_dir, validation_split=0.2, seed=0, **load)
    else:
        train, val = data.from_directory(train_dir, **load), data.from_directory(val_dir, **load)
    weights = "random weights" if args.weights is None else args.weights
    print(f"Diagnosing {backbone.name} ({weights}) on {args.data} at {image_size[0]}x{image_size[1]}")
    start = time.perf_counter()
    table = diagnostics.probe_blocks(backbone, train, val, max_examples=args.max_examples, verbose=1)
    print(f"\nLinear probe per block ({time.perf_counter() - start:.0f} s)")
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 120):
        print(table.to_string(index=False))
    counts = zip(train.class_names, table.attrs["train_class_counts"], table.attrs["val_class_counts"])
    print("Examples per class (train/val): " + ", ".join(f"{name} {t}/{v}" for name, t, v in counts))
    suggestion = diagnostics.suggest_unfreeze(table, tolerance=args.tolerance)
    if suggestion.depth_class == "unknown":
        print("\nSuggestion: none: the probe is at chance, so it shows no depth to unfreeze; check the data, or "
              "let fine_tune choose by trial (strategy='auto')")
    else:
        print(f"\nSuggestion: unfreeze top_blocks={suggestion.top_blocks}"
              + (f" (from {suggestion.from_block})" if suggestion.from_block else "")
              + f", depth class {suggestion.depth_class!r}, strategy={suggestion.strategy!r}")
    print(suggestion.reason)
    if source_dir is not None:
        source = data.from_directory(source_dir, **load)
        start = time.perf_counter()
        shift = diagnostics.domain_shift(backbone, source, train, max_examples=args.max_examples,
                                         plot_path=args.plot, verbose=1)
        print(f"\nDomain shift, source {source_dir} -> target {train_dir} "
              f"(MMD², null = source half vs half; {time.perf_counter() - start:.0f} s)")
        with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 120):
            print(shift.to_string(index=False))
        if args.plot:
            print(f"Plot written to {args.plot}")
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

    demo = sub.add_parser(
        "demo",
        help="offline demo: transfer vs scratch on generated data (or --real photos)",
        description="Pretrains a small backbone on a generated source task (cached after the first run), "
        "fine-tunes it on a related target task under each strategy and prints one table.",
    )
    demo.add_argument("--real", action="store_true", help="use ImageNet MobileNetV2 and ants/bees photos")
    demo.add_argument("--assets", default=str(pathlib.Path.cwd().parent / "shared" / "assets"),
                      help="folder with weights/ and hymenoptera_data/ (default: ../shared/assets)")
    demo.add_argument("--out", default=".", help="where the plot and CSV go (default: .)")
    demo.set_defaults(func=_demo)

    run = sub.add_parser(
        "run",
        help="run a recipe (dog_breeds, flowers, pets, imdb, imdb_gemma); --list lists them",
        description="Runs a recipe. Every field of its config is an option "
        "(keras-transfer run RECIPE --help lists them): "
        "keras-transfer run dog_breeds --backbone resnet50 --strategy fine_tune --fine-tune-epochs 5",
        add_help=False,
    )
    run.add_argument("recipe", nargs="?", help="recipe name")
    run.add_argument("--list", action="store_true", help="list the recipes")
    # Ours, not argparse's: with a recipe named, --help lists that recipe's options.
    run.add_argument("-h", "--help", action="store_true", help="this help, or a recipe's options")
    run.set_defaults(func=_run, takes_extra=True, parser=run)

    diagnose = sub.add_parser(
        "diagnose",
        help="probe a backbone block by block on your images: how far to unfreeze, and domain shift",
        description="Fits a linear probe on the pooled features after each block, suggests how many top "
        "blocks to unfreeze, and with --source-data measures the source -> target domain shift per block. "
        "--data is a folder with train/ and val/ (or test/) class folders, or one class folder tree "
        "(20%% is held out).",
    )
    diagnose.add_argument("--backbone", required=True, help="a backbone name (mobilenet_v2, efficientnet_b0, ...)")
    diagnose.add_argument("--weights", default="imagenet",
                          type=lambda text: None if text.lower() == "none" else text,
                          help="'imagenet' (download), a local no-top weights file, or 'none' (random weights: "
                          "checks the command and the data, measures nothing) (default: imagenet)")
    diagnose.add_argument("--data", required=True, help="target images: train/ and val/ class folders")
    diagnose.add_argument("--source-data", help="source-domain images (class folders) for the domain-shift table")
    diagnose.add_argument("--image-size", type=int, help="square input side (default: the backbone's own)")
    diagnose.add_argument("--batch-size", type=int, default=32, help="default: 32")
    diagnose.add_argument("--max-examples", type=int, default=500,
                          help="examples used from each dataset: a class-stratified sample, the same on every run "
                          "(default: 500)")
    diagnose.add_argument("--tolerance", type=float, default=0.02,
                          help="probe accuracy differences treated as equal (default: 0.02)")
    diagnose.add_argument("--plot", help="write the domain-shift plot (PNG) here")
    diagnose.set_defaults(func=_diagnose)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args, extra = build_parser().parse_known_args(argv)
    takes_extra = getattr(args, "takes_extra", False)
    if extra and not takes_extra:
        build_parser().error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args, extra) if takes_extra else args.func(args)
    except ConnectionError as error:
        from keras_transfer.backbones import OfflineError

        if not isinstance(error, OfflineError):
            raise
        # No network is no fault of the program: one line in the command's words, without a traceback.
        raise SystemExit(f"keras-transfer: error: {error.spelled(_flag)}") from None


def _flag(argument, value):
    """How the command line spells a Python argument and its value: `--data-dir /path`."""
    flag = {"name": "--backbone"}.get(argument, f"--{argument.replace('_', '-')}")
    return f"{flag} {value}"


if __name__ == "__main__":
    sys.exit(main())
