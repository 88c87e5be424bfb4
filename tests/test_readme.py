"""Every Python block and shell command in README.md runs, as a reader runs them.

The README is cut into fenced blocks: ```python blocks run (the blocks of one
section in order, in one namespace, as a reader runs them), each command of a
```bash block runs through `keras_transfer.cli.main` or is one that .ci/run runs
itself, and a block without a language is an output listing, not code. A fence
language we do not know fails, so a new kind of block cannot go unchecked.

What cannot run here as written (downloads, hours of training, names a snippet
assumes from its context) is changed in ONE place, the tables below, each with
the reason. A substitution whose text no longer appears in its block fails the
test: a README edit cannot silently turn a check off.
"""

import configparser
import contextlib
import functools
import pathlib
import re
import shlex

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CI_SCRIPT = REPO / ".ci" / "run"
RUNS = "python"
COMMANDS = "bash"
LISTINGS = ("",)

# Tables are keyed by a piece of text that exactly one block or command of the README
# holds (checked by the last test). In substitutions, `new` is formatted with `a`, the
# run's `Assets`: (block or command, README text, what runs instead).
SUBSTITUTIONS = [
    # No network: EfficientNetB0's ImageNet weights are a download. The local ImageNet
    # MobileNetV2 runs the same workflow, at 96 px so that it takes seconds.
    ('backbone = kt.get_backbone("efficientnet_b0")', 'kt.get_backbone("efficientnet_b0")',
     'kt.get_backbone("mobilenet_v2", weights="{a.weights}", input_shape=(96, 96, 3))'),
    ('backbone = kt.get_backbone("efficientnet_b0")', 'image_size=(224, 224)', 'image_size=(96, 96)'),
    # The reader's photos: a few real ants/bees photos in one class folder each.
    ('backbone = kt.get_backbone("efficientnet_b0")', '"photos/"', '"{a.photos}"'),
    # One epoch a phase shows the workflow runs; the slow tests on the real assets measure accuracy.
    ('backbone = kt.get_backbone("efficientnet_b0")', 'head_epochs=5, fine_tune_epochs=10',
     'head_epochs=1, fine_tune_epochs=1'),
    # strategy="auto" and the suggested strategy take minutes at their default epochs.
    ('"random": random_net', '**s.fine_tune_kwargs)', '**s.fine_tune_kwargs, head_epochs=1, fine_tune_epochs=1)'),
    ('"random": random_net', 'strategy="auto")', 'strategy="auto", head_epochs=1, fine_tune_epochs=2)'),
    # The local ImageNet MobileNetV2, at the size of the demo's images.
    ('"random": random_net', 'kt.get_backbone("mobilenet_v2")',
     'kt.get_backbone("mobilenet_v2", weights="{a.weights}", input_shape=(32, 32, 3))'),
    # No network: the same architecture with random weights has the same blocks.
    ('keras.applications.EfficientNetB0(include_top=False, weights="imagenet"', 'weights="imagenet"', 'weights=None'),
    ('kt.list_backbones()', 'weights="imagenet"', 'weights=None'),
    # A keras-hub preset saved locally (a tiny random ResNet) instead of a download.
    ('kt.list_backbones()', '"hub:resnet_50_imagenet"', '"hub:{a.hub_preset}"'),
    # TFDS data is mocked (see CONTEXTS); tiny images and few examples keep it fast.
    ('kt.list_backbones()', 'image_size=(224, 224)', 'image_size=(32, 32), max_examples=8'),
    # The assets live wherever conftest finds them; a few of their photos at 96 px take seconds.
    ('keras-transfer diagnose', '../shared/assets/weights/', '{a.assets}/weights/'),
    ('keras-transfer diagnose', '../shared/assets/hymenoptera_data', '{a.photo_splits}'),
    ('keras-transfer diagnose', '--image-size 160', '--image-size 96'),
    # CI smoke-runs the benchmarks in quick mode; a full run takes an hour.
    ('python -m benchmarks.strategies', '[--quick]', '--quick'),
    ('python -m benchmarks.performance', '[--quick]', '--quick'),
    ('python -m benchmarks.perf_model_parallel', '[--quick]', '--quick'),
    # CI smoke-runs the choosing benchmark on the near set alone and without the hand sweep, to stay short.
    ('python -m benchmarks.choosing', '[--quick]',
     '--quick --data ../shared/assets/hymenoptera_data --parts auto default suggest lr guards'),
]

# Commands run by .ci/run itself rather than here, and why.
CI_RUNS = {
    "keras-transfer demo": "CI's main-job step runs it from an empty folder (two minutes); not twice",
    "python -m pytest": "the test commands run this very file",
    "python -m benchmarks.": "benchmarks take minutes even in quick mode; CI smoke-runs each",
}

# Every block after the first assumes the first one's imports, as a reader who runs them does.
PREAMBLE = "import keras_transfer as kt\nfrom keras_transfer import data\n"

# Blocks that take more than a few seconds (they train, or build large backbones).
SLOW = (
    'backbone = kt.get_backbone("efficientnet_b0")',
    '"random": random_net',
    'kt.list_backbones()',
    'kt.probe_blocks(backbone',
    'keras-transfer diagnose',
    'model = kt.apply_lora(model',
)


# --- names a block assumes, given before it runs ------------------------------------------


def _shapes(a, ns):
    """The names the choosing and diagnostics blocks take from the workflow block, on the demo's task.

    The demo's backbone, pretrained on its source shapes, makes each call seconds where
    MobileNetV2 makes it minutes; the calls are the same. It goes without its Dense layer,
    like the README's convolutional backbones, so `strategy="auto"` has no LoRA candidate,
    as for them.
    """
    import keras

    import keras_transfer as kt
    from keras_transfer import data, demo
    from keras_transfer.backbones import Preprocessing

    pretrained = demo.pretrained_backbone(verbose=0)
    model = keras.Model(pretrained.input, pretrained.get_layer("top_pool").output, name="demo_convnet")
    ns["backbone"] = kt.Backbone("demo_convnet", model, Preprocessing("none"), demo.IMAGE_SIZE, demo.SPEC,
                                 "keras_transfer.demo")
    (x, y), (x_val, y_val) = (demo.make_shapes(demo.TARGET_SHAPES, per_class=10, seed=seed) for seed in (0, 1))
    ns["train_ds"] = ns["raw_train_ds"] = data.from_arrays(x, y, batch_size=16, shuffle=True, seed=0)
    ns["val_ds"] = data.from_arrays(x_val, y_val, batch_size=16)
    ns["n"] = len(demo.TARGET_SHAPES)
    ns["model"] = kt.build_classifier(ns["backbone"].model, ns["n"])
    ns["model"].compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def _choosing(a, ns):
    import keras_transfer as kt

    _shapes(a, ns)
    ns["random_net"] = kt.get_backbone("mobilenet_v2", weights=None, input_shape=(32, 32, 3))


def _diagnostics(a, ns):
    import keras

    import keras_transfer as kt
    from keras_transfer import data, demo

    _shapes(a, ns)
    # The demo's own source task, and classifiers for it (before) and for the target (after).
    x, y = demo.make_shapes(demo.SOURCE_SHAPES, per_class=4, seed=2)
    ns["source_ds"], ns["target_ds"] = data.from_arrays(x, y, batch_size=8), ns["train_ds"]
    ns["source_model"] = kt.build_classifier(ns["backbone"].model, len(demo.SOURCE_SHAPES))
    ns["fine_tuned_model"] = kt.build_classifier(keras.models.clone_model(ns["backbone"].model), ns["n"])


def _my_model(a, ns):
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="stem_conv")(inputs)
    x = keras.layers.Conv2D(4, 3, name="stage1_conv")(x)
    x = keras.layers.Conv2D(4, 3, name="stage2_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="top_pool")(x)
    ns["my_model"] = keras.Model(inputs, keras.layers.Dense(2, name="top_dense")(x), name="my_net")


def _efficientnet_classifier(a, ns):
    """The Blocks block's model (and its `keras` import), small and without downloads."""
    import keras

    ns["keras"] = keras
    backbone = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(32, 32, 3))
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs, training=False))
    ns["model"] = keras.Model(inputs, keras.layers.Dense(120)(x))


def _lora(a, ns):
    """A tiny ViT classifier, the kind the block's default targets (attention) and block names fit."""
    import keras_hub

    import keras_transfer as kt

    def vit():
        backbone = keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=12, num_heads=2,
                                                hidden_dim=16, mlp_dim=32)
        return kt.build_classifier(backbone, 3)

    ns["model"], ns["other_model"] = vit(), vit()


def _data_and_backbones(a, ns):
    import keras
    import numpy as np
    import pandas as pd
    from PIL import Image

    from keras_transfer import data

    rng = np.random.default_rng(0)
    rows = []
    for i, label in enumerate(["ants", "bees"] * 2):
        path = a.tmp / f"image{i}.png"
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(path)
        rows.append({"path": str(path), "label": label})
    ns["df"] = pd.DataFrame(rows)
    ns["feature_model"] = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D()])
    ns["train_ds"] = data.from_arrays(rng.uniform(0, 255, (6, 32, 32, 3)).astype("float32"), np.arange(6) % 2,
                                      batch_size=4)


def _saved_my_model(a, ns):
    _my_model(a, ns)
    ns["my_model"].save("my_model.keras")


SETUPS = {
    '"random": random_net': _choosing,
    'kt.register_block_spec(': _my_model,
    'keras-transfer inspect my_model.keras': _saved_my_model,
    'opt = kt.differential_optimizer(model': _efficientnet_classifier,
    'model = kt.apply_lora(model': _lora,
    'kt.list_backbones()': _data_and_backbones,
    'kt.probe_blocks(backbone': _diagnostics,
}


def _mock_tfds(a):
    import tensorflow_datasets as tfds

    return tfds.testing.mock_data(num_examples=16)


@contextlib.contextmanager
def _recipes_recorded(a):
    """Recipes hand their config to a recorder instead of training on a download for an hour."""
    import importlib
    from unittest import mock

    import pandas as pd

    from keras_transfer import recipe, recipes

    def record(name, config):
        a.recipe_configs.append((name, config))
        return recipe.RecipeResult(name, config, pd.DataFrame({"phase": ["head"], "epoch": [1]}),
                                   {"accuracy": 0.5}, None, None, {"export_keras": "model.keras"}, 0.0)

    with contextlib.ExitStack() as stack:
        for name in recipes.RECIPES:
            module = importlib.import_module(f"keras_transfer.recipes.{name}")
            if hasattr(module, "run_image_recipe"):
                stack.enter_context(mock.patch.object(module, "run_image_recipe", record))
        yield


# Context a block or command runs in, and why.
CONTEXTS = {
    # TFDS datasets are downloads: TFDS' own mock serves random examples with the real features.
    'kt.list_backbones()': _mock_tfds,
    # tests/test_recipes.py runs every recipe end to end (TFDS mock data, tiny sizes); here
    # what the README's call and command lines hand the recipe is checked (see RECIPE_CALLS).
    'from keras_transfer.recipes import dog_breeds': _recipes_recorded,
    'keras-transfer run dog_breeds --backbone resnet50': _recipes_recorded,
    'keras-transfer run flowers': _recipes_recorded,
}

# What the README's recipe calls must hand the recipe: (name, config fields).
RECIPE_CALLS = {
    'from keras_transfer.recipes import dog_breeds': (
        "dog_breeds", dict(fine_tune_epochs=10, backbone="efficientnet_b0", strategy="fine_tune")),
    'keras-transfer run dog_breeds --backbone resnet50': (
        "dog_breeds", dict(backbone="resnet50", strategy="fine_tune", fine_tune_epochs=5)),
    'keras-transfer run flowers': (
        "flowers", dict(data_dir="/data/tfds", weights="/weights/efficientnetb0_notop.h5")),
}


# --- what a block or command must have done -------------------------------------------------


def _workflow_ran(ns, out):
    assert list(ns["result"].history.phase) == ["head", "fine_tune"]
    assert {"phase", "epoch", "head_lr", "backbone_lr", "loss", "accuracy", "val_loss", "val_accuracy"} <= set(
        ns["result"].history.columns)
    assert list(ns["report"].confusion.index) == ["ants", "bees"]
    for path in ("history.png", "confusion.png", "runs/photos", "export/photos.keras"):
        assert pathlib.Path(path).exists(), path


def _blocks_ran(ns, out):
    import keras
    import numpy as np

    import keras_transfer as kt

    model = ns["model"]
    assert kt.block_names(model) == ["stem"] + [f"block{i}" for i in range(1, 8)] + ["top", "head"]
    state = kt.trainable_summary(model).set_index("block").state
    # BatchNorm stays frozen, so the two unfrozen blocks train partly.
    assert state[["block6", "block7", "top", "head"]].tolist() == ["frozen", "partial", "partial", "trainable"]
    # The loss it trains with is the cross-entropy of the head's outputs, which are logits.
    x = np.random.default_rng(0).uniform(0, 255, (2, *model.input.shape[1:])).astype("float32")
    y = np.array([3, 7])
    logits = keras.ops.convert_to_numpy(model(x, training=False)).astype("float64")
    cross_entropy = np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[[0, 1], y])
    loss = keras.ops.convert_to_numpy(keras.losses.get(model.loss)(y, logits.astype("float32")))
    np.testing.assert_allclose(np.mean(loss), cross_entropy, rtol=1e-4)


def _adapters_loaded(ns, out):
    import keras_transfer as kt

    # Loaded where they were saved: rank 8 on the query and value of each of the 12 layers,
    # A of shape (width 16, 2 heads, rank 8) and B of shape (rank 8, head size 8).
    assert kt.lora_summary(ns["other_model"]).lora_params.sum() == 12 * 2 * (16 * 2 * 8 + 8 * 8)
    assert kt.lora_summary(ns["model"]).set_index("block").lora_params.loc["transformer_block_12"] > 0


def _spec_registered(ns, out):
    import keras_transfer as kt

    assert kt.block_names(ns["my_model"]) == ["stem", "stage1", "stage2", "top"]


CHECKS = {
    'backbone = kt.get_backbone("efficientnet_b0")': _workflow_ran,
    'keras.applications.EfficientNetB0(include_top=False, weights="imagenet"': _blocks_ran,
    'kt.register_block_spec(': _spec_registered,
    'model = kt.apply_lora(model': _adapters_loaded,
}

# Warnings a command must give. A shell of its own has not registered my_net's spec (the
# block before registered it in Python), so inspect says it falls back to generic blocks.
WARNINGS = {
    "keras-transfer inspect my_model.keras": "no block spec for model 'my_net'",
}

# Commands: a piece of what each prints.
OUTPUTS = {
    "keras-transfer inspect resnet50": "resnet50: ",
    "keras-transfer inspect my_model.keras": "my_net: ",
    "keras-transfer run --list": "imdb ",
    "keras-transfer run dog_breeds --help": "--top-blocks",
    "keras-transfer run dog_breeds --backbone resnet50": "{'accuracy': 0.5}",
    "keras-transfer run flowers": "export_keras: model.keras",
    "keras-transfer diagnose": "\nSuggestion: ",
}


# --- the README, cut into blocks and commands -------------------------------------------------


def _blocks():
    """Fenced blocks: (line of their first line, language, text, section heading)."""
    lines = README.read_text().splitlines()
    blocks, section, i = [], None, 0
    while i < len(lines):
        if lines[i].startswith("#"):
            section = lines[i]
        fence = re.fullmatch(r"```(\S*)\s*", lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            blocks.append((i + 2, fence.group(1), "\n".join(lines[i + 1:end]) + "\n", section))
            i = end
        i += 1
    return blocks


def _commands(line, text):
    """(line, command) for each command of a bash block: continuations joined, comments dropped."""
    out, pending, start = [], "", None
    for number, raw in enumerate(text.splitlines(), line):
        code = raw.split(" #")[0].strip() if not raw.startswith("#") else ""
        if not code:
            continue
        start = start or number
        if code.endswith("\\"):
            pending += code[:-1].strip() + " "
            continue
        for part in (pending + code).split(" && "):
            out.append((start, part.strip()))
        pending, start = "", None
    return out


def python_block(containing):
    """(line, text) of the one python block of the README that holds `containing`."""
    found = [(line, text) for line, language, text, _ in _blocks() if language == RUNS and containing in text]
    assert len(found) == 1, f"{len(found)} python blocks of README.md hold {containing!r}, not one"
    return found[0]


def _key(table, text):
    """The key of `table` that appears in `text`; at most one may."""
    keys = sorted({k for k in table if k in text})
    assert len(keys) <= 1, f"{text[:60]!r} matches several keys: {keys}"
    return keys[0] if keys else None


def _substitute(text, a):
    """`text` with the substitutions of its block or command made; each must find its README text."""
    key = _key({target for target, _, _ in SUBSTITUTIONS}, text)
    for target, old, new in SUBSTITUTIONS:
        if target == key:
            assert old in text, f"substitution {old!r} no longer appears in README block {key!r}: update the table"
            text = text.replace(old, new.format(a=a))
    return text


def _cases():
    cases = []
    for line, language, text, section in _blocks():
        if language == RUNS:
            case = ("python", line, text, section)
        elif language == COMMANDS:
            for number, command in _commands(line, text):
                slow = _key(SLOW, command) is not None
                cases.append(pytest.param("bash", number, command, section,
                                          id=f"README.md:{number} {' '.join(command.split()[:3])}",
                                          marks=[pytest.mark.slow] if slow else []))
            continue
        elif language in LISTINGS:
            continue
        else:
            case = ("unknown", line, language, section)
        slow = language == RUNS and _key(SLOW, text) is not None
        cases.append(pytest.param(*case, id=f"README.md:{line}", marks=[pytest.mark.slow] if slow else []))
    return cases


class Assets:
    """What substitutions and setups point at, made only when a block needs it."""

    def __init__(self, request, tmp_path):
        self._request, self.tmp = request, tmp_path
        self.recipe_configs = []

    @functools.cached_property
    def weights(self):
        return str(self._request.getfixturevalue("mobilenet_weights"))

    @functools.cached_property
    def assets(self):
        return str(pathlib.Path(self.weights).parents[1])

    @functools.cached_property
    def photo_splits(self):
        """train/ and val/ folders of a few real ants/bees photos each (links into the assets)."""
        source = self._request.getfixturevalue("hymenoptera_dir")
        root = self.tmp / "hymenoptera_few"
        for split, count in (("train", 12), ("val", 6)):
            for kind in ("ants", "bees"):
                folder = root / split / kind
                folder.mkdir(parents=True)
                for path in sorted((source / split / kind).glob("*.jpg"))[:count]:
                    (folder / path.name).symlink_to(path)
        return str(root)

    @functools.cached_property
    def photos(self):
        """One folder per class: the few training photos of `photo_splits`."""
        return str(pathlib.Path(self.photo_splits) / "train")

    @functools.cached_property
    def hub_preset(self):
        import keras_hub

        path = self.tmp / "hub_resnet"
        keras_hub.models.ResNetBackbone(
            input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
            stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        ).save_to_preset(str(path))
        keras_hub.layers.ResNetImageConverter(image_size=(32, 32), scale=1 / 255).save_to_preset(str(path))
        return str(path)


@pytest.fixture
def assets(request, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return Assets(request, tmp_path)


@pytest.mark.parametrize("kind,line,text,section", _cases())
def test_readme(kind, line, text, section, assets, capsys):
    if kind == "unknown":
        pytest.fail(f"README.md:{line}: a ```{text} block; only python, bash and listings (no language) are known")
    if kind == "python":
        _run_section(line, section, assets, capsys)
    else:
        _run_command(line, text, assets, capsys)


def _run_section(line, section, a, capsys):
    """Runs the python blocks of `section` up to the one at `line`, in one namespace."""
    import keras_transfer as kt

    first = next(text for _, language, text, _ in _blocks() if language == RUNS)
    assert first.startswith(PREAMBLE), f"the README's first python block no longer starts with {PREAMBLE!r}"
    ns = {}
    exec(PREAMBLE, ns)
    registered = {spec.family for spec in kt.block_specs()}
    try:
        with contextlib.ExitStack() as stack:
            for start, language, text, heading in _blocks():
                if language != RUNS or heading != section or start > line:
                    continue
                key = _key(SETUPS, text)
                if key:
                    SETUPS[key](a, ns)
                key = _key(CONTEXTS, text)
                if key:
                    stack.enter_context(CONTEXTS[key](a))
                code = _substitute(text, a)
                exec(compile("\n" * (start - 1) + code, str(README), "exec"), ns)
                key = _key(CHECKS, text)
                if key:
                    CHECKS[key](ns, capsys.readouterr().out)
                _check_recipe_calls(text, a)
    finally:
        # A spec a block registers would change the blocks of later tests' models.
        for family in {spec.family for spec in kt.block_specs()} - registered:
            kt.unregister_block_spec(family)


def _run_command(line, command, a, capsys):
    from keras_transfer import cli

    if command.startswith("pip install "):
        _check_ci_installs(line, command)
        return
    ci = _key(CI_RUNS, command)
    if ci:
        command = _substitute(command, a)
        assert command in _ci_commands(), (
            f"README.md:{line}: `{command}` is not a command .ci/run runs ({CI_RUNS[ci]})")
        return
    assert command.startswith("keras-transfer "), f"README.md:{line}: no way to check `{command}`"
    expected = OUTPUTS[_key(OUTPUTS, command)]
    key = _key(SETUPS, command)
    if key:
        SETUPS[key](a, {})
    command = _substitute(command, a)
    with contextlib.ExitStack() as stack:
        key = _key(CONTEXTS, command)
        if key:
            stack.enter_context(CONTEXTS[key](a))
        key = _key(WARNINGS, command)
        if key:
            stack.enter_context(pytest.warns(UserWarning, match=re.escape(WARNINGS[key])))
        assert cli.main(shlex.split(command)[1:]) == 0
    out = capsys.readouterr().out
    assert expected in out, f"README.md:{line}: `{command}` printed no {expected!r}:\n{out}"
    _check_recipe_calls(command, a)


def _check_recipe_calls(text, a):
    key = _key(RECIPE_CALLS, text)
    if key:
        name, fields = RECIPE_CALLS[key]
        assert [called for called, _ in a.recipe_configs] == [name]
        config = a.recipe_configs[0][1]
        assert {field: getattr(config, field) for field in fields} == fields


def _ci_commands():
    """Each command .ci/run runs: its lines split at `&&` and `||`, without subshell parentheses."""
    commands = []
    for raw in CI_SCRIPT.read_text().splitlines():
        if raw.strip().startswith("#"):
            continue
        for part in re.split(r"&&|\|\|", raw):
            part = part.strip().removeprefix("( ").removesuffix(" )").strip()
            if part:
                commands.append(part)
    return commands


def _extras(command):
    """The extras a `pip install` of this checkout names: `pip install ".[dev]"` -> {'dev'}."""
    words = shlex.split(command)
    target = next(w for w in words[words.index("install") + 1:] if not w.startswith("-"))
    match = re.fullmatch(r"\.(?:\[([\w,]+)\])?", target)
    assert match, f"`{command}` does not install this checkout"
    return set(filter(None, (match.group(1) or "").split(",")))


def _check_ci_installs(line, command):
    """CI's environment has every extra the README's `pip install` names, and setup.cfg has them."""
    install = [c for c in _ci_commands() if c.startswith("python -m pip install") and " -e " in c]
    assert len(install) == 1, f".ci/run should install this checkout once; found {install}"
    wanted, ci_extras = _extras(command), _extras(install[0])
    assert wanted <= ci_extras, f"README.md:{line}: `{command}` installs extras CI does not: {wanted - ci_extras}"
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    known = set(config["options.extras_require"])
    assert wanted <= known, f"README.md:{line}: `{command}` names extras setup.cfg lacks: {wanted - known}"


def test_every_table_entry_still_matches_the_readme():
    """A README edit that moves a block's first line or a command fails here, not silently."""
    blocks = [text for _, language, text, _ in _blocks() if language == RUNS]
    commands = [c for line, language, text, _ in _blocks() if language == COMMANDS for _, c in _commands(line, text)]
    keys = ({t for t, _, _ in SUBSTITUTIONS} | set(SLOW) | set(SETUPS) | set(CONTEXTS) | set(CHECKS) | set(OUTPUTS)
            | set(RECIPE_CALLS) | set(WARNINGS))
    for key in keys:
        found = [b for b in blocks + commands if key in b]
        assert len(found) == 1, f"{len(found)} README blocks or commands hold {key!r}, not one: update the tables"
    for key in CI_RUNS:
        assert any(key in c for c in commands), f"no README command holds {key!r}: update CI_RUNS"


def test_the_demo_listing_shows_the_strategies_the_demo_runs():
    """The README's copy of the demo's table (a listing, not code) names the strategies `demo.run` compares."""
    import inspect

    from keras_transfer import demo

    listing = next(text for _, language, text, _ in _blocks() if language in LISTINGS and "strategy" in text)
    rows = listing.split("\n\n")[0].splitlines()
    assert rows[0].split() == ["strategy", "accuracy", "trainable_params", "wall_time_s"]
    assert [row.split()[0] for row in rows[1:]] == list(inspect.signature(demo.run).parameters["strategies"].default)
