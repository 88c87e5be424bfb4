"""The `keras-transfer` command."""

import dataclasses

import keras
import pytest

import keras_transfer as kt
from keras_transfer import cli


def test_inspect_prints_the_block_table(capsys):
    assert cli.main(["inspect", "efficientnet_b0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("efficientnetb0: 9 blocks (efficientnet), 4,049,571 params")
    assert [line.split()[0] for line in out.splitlines()[2:]] == (
        ["stem"] + [f"block{i}" for i in range(1, 8)] + ["top"]
    )


def test_inspect_a_saved_model_keeps_its_frozen_blocks(tmp_path, capsys):
    backbone = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    model = keras.Sequential([backbone, keras.layers.Flatten(), keras.layers.Dense(2)])
    kt.unfreeze(model, top_blocks=1)
    model.save(tmp_path / "m.keras")
    cli.main(["inspect", str(tmp_path / "m.keras")])
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["block4"][-1] == "frozen"
    assert rows["block5"][-2:] == ["7079424", "trainable"]
    assert rows["head"][-2:] == ["1026", "trainable"]


def test_inspect_unknown_name_lists_known_ones():
    with pytest.raises(SystemExit, match="unknown backbone 'resnet5'.*resnet50"):
        cli.main(["inspect", "resnet5"])


# Every option a recipe takes on the command line, what one types, and the value the recipe gets.
# A new config field must be added here: the test below checks the table covers them all.
OPTION_VALUES = {
    "dataset": (["stanford_dogs"], "stanford_dogs"),
    "num_classes": (["7"], 7),
    "head_epochs": (["2"], 2),
    "fine_tune_epochs": (["3"], 3),
    "strategy": (["full"], "full"),
    "top_blocks": (["2"], 2),
    "head_lr": (["find"], "find"),
    "backbone_lr": (["3e-5"], 3e-5),
    "layer_decay": (["none"], None),
    "lora_rank": (["4"], 4),
    "lora_alpha": (["16"], 16.0),
    "cache_features": ([], False),  # --no-cache-features
    "early_stopping": ([], True),  # --early-stopping
    "mixed_precision": (["mixed_bfloat16"], "mixed_bfloat16"),
    "jit_compile": (["false"], False),
    "checkpoint_dir": (["/tmp/ckpt"], "/tmp/ckpt"),
    "label_smoothing": (["0.2"], 0.2),
    "dropout": (["0.5"], 0.5),
    "optimizer": (["sgd"], "sgd"),
    "weight_decay": (["0.01"], 0.01),
    "warmup_steps": (["100"], 100),
    "decay_steps": (["1000"], 1000),
    "patience": (["5"], 5),
    "verbose": (["2"], 2),
    "monitor": (["val_loss"], "val_loss"),
    "l2_sp": (["0.01"], 0.01),
    "candidates": (["fine_tune", "lora"], ["fine_tune", "lora"]),
    "budget": (["6"], 6),
    "train_split": (["train[:80%]"], "train[:80%]"),
    "val_split": (["train[80%:]"], "train[80%:]"),
    "backbone": (["resnet50"], "resnet50"),
    "weights": (["/weights/b0.h5"], "/weights/b0.h5"),
    "image_size": (["160"], 160),
    "batch_size": (["16"], 16),
    "augment": (["none"], "none"),
    "data_dir": (["/data/tfds"], "/data/tfds"),
    "max_examples": (["16"], 16),
    "output_dir": (["runs"], "runs"),
    "task": (["BertTextClassifier"], "BertTextClassifier"),
    "sequence_length": (["128"], 128),
}
FLAGS = {"cache_features": "--no-cache-features", "early_stopping": "--early-stopping"}


def _recipe(name):
    import importlib

    return importlib.import_module(f"keras_transfer.recipes.{name}")


@pytest.mark.parametrize("name", ["dog_breeds", "flowers", "pets", "imdb"])
def test_every_recipe_option_reads_its_type(name):
    config = _recipe(name).CONFIG
    fields = [f.name for f in dataclasses.fields(config)]
    assert set(fields) <= set(OPTION_VALUES), f"add {sorted(set(fields) - set(OPTION_VALUES))} to OPTION_VALUES"
    parser = cli.recipe_parser(config)
    for field in fields:
        typed, expected = OPTION_VALUES[field]
        flag = FLAGS.get(field, f"--{field.replace('_', '-')}")
        parsed = vars(parser.parse_args([flag, *typed]))
        assert parsed == {field: expected}, field
        assert type(parsed[field]) is type(expected), field


def test_run_passes_typed_options_to_the_recipe(monkeypatch):
    """`--max-examples 16` reached the recipe as the string '16' when types were guessed from defaults."""
    module = _recipe("dog_breeds")
    received = {}

    def run(**overrides):
        received.update(overrides)
        raise SystemExit(0)

    monkeypatch.setattr(module, "run", run)
    with pytest.raises(SystemExit):
        cli.main(["run", "dog_breeds", "--max-examples", "16", "--image-size", "64", "--head-lr", "1e-3",
                  "--no-early-stopping", "--verbose", "auto", "--epochs", "2"])
    assert received == {"max_examples": 16, "image_size": 64, "head_lr": 1e-3, "early_stopping": False,
                        "verbose": "auto", "epochs": 2}


def test_run_options_check_their_values(capsys):
    parser = cli.recipe_parser(_recipe("dog_breeds").CONFIG)
    for argv, error in [
        (["--max-examples", "many"], "argument --max-examples: expected int or none; received 'many'"),
        (["--head-lr", "fast"], "argument --head-lr: expected float or 'find'; received 'fast'"),
        (["--strategy", "finetune"], "argument --strategy: expected 'scratch' or 'feature_extraction'"),
        (["--jit-compile", "maybe"], "argument --jit-compile: expected bool or 'auto'; received 'maybe'"),
    ]:
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        assert error in capsys.readouterr().err


def test_run_recipe_help_lists_the_recipe_options(capsys):
    assert cli.main(["run", "dog_breeds", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: keras-transfer run dog_breeds")
    for option in ("--top-blocks int|none", "--max-examples int|none", "--head-lr float|find",
                   "--cache-features, --no-cache-features", "--epochs int"):
        assert option in out, option
    assert "--unfreeze-top-blocks" not in out
    assert cli.main(["run", "--help"]) == 0
    assert "--list" in capsys.readouterr().out


def test_run_old_unfreeze_top_blocks_flag_still_works_and_warns(monkeypatch):
    module = _recipe("dog_breeds")
    configured = []

    def run_image_recipe(name, config):
        configured.append(config)
        raise SystemExit(0)

    monkeypatch.setattr(module, "run_image_recipe", run_image_recipe)
    with pytest.warns(FutureWarning, match=r"`run\(unfreeze_top_blocks=...\)` is now `top_blocks=`"):
        with pytest.raises(SystemExit):
            cli.main(["run", "dog_breeds", "--unfreeze-top-blocks", "2"])
    assert configured[0].top_blocks == 2
    with pytest.raises(ValueError, match="Received: unfreeze_top_blocks=2, top_blocks=1"):
        cli.main(["run", "dog_breeds", "--unfreeze-top-blocks", "2", "--top-blocks", "1"])


def _class_sorted_folders(root, classes=("a", "b", "c"), train=8, val=4):
    """train/ and val/ class folders of tiny PNGs, one colour per class; files list class by class."""
    import numpy as np
    import tensorflow as tf

    for split, count in (("train", train), ("val", val)):
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.full((32, 32, 3), 60 * index + 3 * i, "uint8")
                (folder / f"{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    return root


def test_diagnose_probes_every_class_of_a_class_sorted_folder_and_refuses_advice_at_chance(tmp_path, capsys):
    """The first --max-examples files of a class-sorted folder were one class: "at least 2 classes"."""
    root = _class_sorted_folders(tmp_path / "data")
    code = cli.main(["diagnose", "--backbone", "vgg16", "--weights", "none", "--data", str(root),
                     "--image-size", "32", "--max-examples", "3", "--batch-size", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Examples per class (train/val): a 1/1, b 1/1, c 1/1" in out
    # 3 validation examples cannot show a probe above a chance of 1/3 (3 right: p = 1/27): no depth is advised.
    assert "Suggestion: none: the probe is at chance, so it shows no depth to unfreeze" in out
    assert "strategy='auto'" in out and "Suggestion: unfreeze" not in out


def test_run_offline_fails_at_once_in_the_command_line_words(monkeypatch, tmp_path):
    """Offline, `run` retried the TFDS download for 3.5 minutes, then said `data_dir=DIR` after a traceback."""
    import tensorflow_datasets as tfds

    from keras_transfer import backbones

    monkeypatch.setattr(backbones, "_network_problem", lambda url=None: "no answer")
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "dog_breeds", "--backbone", "mobilenet_v2", "--weights", "none", "--image-size", "32",
                  "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "runs")])
    assert exit_.value.code == (
        f"keras-transfer: error: The TFDS dataset 'stanford_dogs' is not in {tmp_path} and cannot be downloaded: "
        "no network (no answer). Prepare it where there is network access (`tfds build stanford_dogs --data_dir "
        "/path/to/tfds`), copy that folder here and pass --data-dir /path/to/tfds."
    )


def test_run_offline_imagenet_weights_name_the_weights_flag(monkeypatch, tmp_path, keras_downloads_fail):
    """The offline weights error said `get_backbone(..., weights=...)` to a command-line user."""
    from keras_transfer import backbones

    monkeypatch.setattr(backbones, "_network_problem", lambda url=None: "no answer")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "dog_breeds", "--backbone", "mobilenet_v2", "--image-size", "96"])
    file_name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    assert exit_.value.code == (
        "keras-transfer: error: Could not download the ImageNet weights of 'mobilenet_v2': no network (no answer). "
        f"Offline, pass a local copy of the no-top weights file, --weights /path/to/{file_name}, or copy it to "
        f"{tmp_path}/models/{file_name}, where Keras caches its downloads."
    )


def test_inspect_a_classifier_saved_by_export_names_its_backbone_family(tmp_path, capsys):
    backbone = keras.applications.MobileNetV2(alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3))
    paths = kt.export(kt.build_classifier(backbone, 2), tmp_path / "model")
    assert cli.main(["inspect", paths["keras"]]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "(mobilenet_v2)" in first and "generic fallback" not in first


@pytest.mark.parametrize("real", [False, True])
def test_demo_prints_the_verdict_of_its_measured_table(tmp_path, capsys, monkeypatch, real):
    import pandas as pd

    from keras_transfer import demo

    table = pd.DataFrame({"strategy": ["scratch", "feature_extraction", "fine_tune"],
                          "accuracy": [0.5, 0.908, 0.889], "wall_time_s": [109.0, 20.0, 21.0]})
    calls = []
    monkeypatch.setattr(demo, "run", lambda out_dir: calls.append(("run", out_dir)) or table)
    monkeypatch.setattr(demo, "run_real", lambda assets, out_dir: calls.append(("run_real", out_dir)) or table)
    args = ["demo", "--out", str(tmp_path)] + (["--real", "--assets", str(tmp_path)] if real else [])
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert calls == [("run_real" if real else "run", str(tmp_path))]
    assert demo.verdict(table, near_domain=real) in out
