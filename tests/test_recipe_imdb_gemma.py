"""The imdb_gemma recipe end to end, offline: a tiny Gemma saved as a local preset, TFDS' mock imdb_reviews.

The tiny Gemma: 2 decoder blocks, hidden size 16, 2 query heads and 1 key/value
head of size 8, a SentencePiece vocabulary of 16 words (trained here, as
keras-hub's own test protos are). With `hidden_units=8` and rank-4 LoRA the
trainable parameters are, exactly:
    LoRA, per block: query A 2*16*4 + B 4*8 = 160, value A 1*16*4 + B 4*8 = 96
        -> 2 blocks: 512
    head: pooled_dense 16*8 + 8 = 136, logits 8*2 + 2 = 18 -> 154
    total 666.
"""

import dataclasses
import io

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

import keras_transfer as kt
from keras_transfer import cli, recipe, recipes
from keras_transfer.blocks import count_params
from keras_transfer.recipe import DecoderTextRecipeConfig, build_decoder_classifier, configure
from keras_transfer.recipes import imdb_gemma

TINY = dict(sequence_length=16, batch_size=4, hidden_units=8, verbose=0)
LORA_PARAMS, HEAD_PARAMS = 512, 154


@pytest.fixture(scope="module")
def gemma_preset(tmp_path_factory):
    """A tiny Gemma backbone and tokenizer saved as one local preset directory."""
    import keras_hub
    import sentencepiece

    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["the quick brown fox", "the earth is round", "a good movie", "a bad film"]),
        model_writer=proto, vocab_size=16, model_type="WORD", pad_id=0, bos_id=1, eos_id=2, unk_id=3,
        pad_piece="<pad>", bos_piece="<bos>", eos_piece="<eos>", unk_piece="<unk>", minloglevel=2)
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GemmaBackbone(vocabulary_size=16, num_layers=2, num_query_heads=2,
                                              num_key_value_heads=1, hidden_dim=16, intermediate_dim=32, head_dim=8)
    path = tmp_path_factory.mktemp("tiny_gemma")
    backbone.save_to_preset(str(path))
    keras_hub.models.GemmaTokenizer(proto=proto.getvalue()).save_to_preset(str(path))
    return str(path)


def _initial_weights(monkeypatch):
    """Records every weight of the classifier the recipe builds, as built (before any training)."""
    seen = {}

    def recording(*args, **kwargs):
        model = build_decoder_classifier(*args, **kwargs)
        seen.update({v.path: keras.ops.convert_to_numpy(v) for v in model.weights})
        return model

    monkeypatch.setattr(recipe, "build_decoder_classifier", recording)
    return seen


def test_imdb_gemma_trains_only_the_lora_adapters_and_the_head(gemma_preset, tmp_path, monkeypatch):
    import keras_hub

    before = _initial_weights(monkeypatch)
    with tfds.testing.mock_data(num_examples=16):
        result = imdb_gemma.run(weights=gemma_preset, output_dir=str(tmp_path), **TINY)
    assert list(result.history.phase) == ["lora"] and list(result.history.epoch) == [1]
    assert result.config.train_split == "train[:10%]" and result.config.lora_rank == 4
    assert set(result.metrics) == {"accuracy", "loss"} and 0 <= result.metrics["accuracy"] <= 1
    assert result.model.output.shape == (None, 2)
    assert sorted(result.paths) == ["adapters", "block_rates", "history", "lora_best", "lora_last"]

    trainable = {v.path for v in result.model.trainable_weights}
    lora = {p for p in trainable if p.endswith(("lora_a", "lora_b"))}
    assert sorted(lora) == [f"decoder_block_{i}/attention/{w}/lora_{ab}"
                            for i in range(2) for w in ("query", "value") for ab in "ab"]
    assert trainable - lora == {"pooled_dense/kernel", "pooled_dense/bias", "logits/kernel", "logits/bias"}
    assert count_params(result.model.trainable_weights) == LORA_PARAMS + HEAD_PARAMS == 666
    after = {v.path: keras.ops.convert_to_numpy(v) for v in result.model.weights}
    assert set(before) == set(after) - lora
    changed = sorted(p for p in before if not np.array_equal(before[p], after[p]))
    assert changed == sorted(trainable - lora), "a frozen backbone weight moved, or a head weight did not"
    for path in lora:  # B starts at zero; A moves once B has.
        assert np.abs(after[path]).max() > 0, path
    # The backbone is still exactly the preset's.
    preset = {v.path: keras.ops.convert_to_numpy(v) for v in keras_hub.models.Backbone.from_preset(gemma_preset).weights}
    assert all(np.array_equal(preset[p], after[p]) for p in preset)

    # Adapters and head are all it takes to rebuild the trained classifier from the preset.
    fresh = build_decoder_classifier(keras_hub.models.Backbone.from_preset(gemma_preset), 2, hidden_units=8)
    kt.load_adapters(fresh, result.paths["adapters"])
    x = {"token_ids": np.array([[1, 5, 9, 2, 0, 0], [1, 4, 4, 4, 7, 2]]),
         "padding_mask": np.array([[1, 1, 1, 1, 0, 0], [1] * 6])}
    np.testing.assert_allclose(fresh.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-6)


def test_imdb_gemma_keeps_the_guides_defaults():
    guide = dict(weights="gemma2_instruct_2b_en", train_split="train[:10%]", val_split="test[:10%]",
                 sequence_length=256, batch_size=2, strategy="lora", lora_rank=4, head_epochs=0, fine_tune_epochs=1,
                 head_lr=5e-5, optimizer="adam", weight_decay=None, hidden_units=2048, dropout=0.1, dtype=None,
                 export_model=False, num_classes=2, dataset="imdb_reviews", cache_features=False)
    assert {k: getattr(imdb_gemma.CONFIG, k) for k in guide} == guide
    assert recipes.RECIPES[-1] == "imdb_gemma"


def test_imdb_gemma_options_are_validated():
    with pytest.raises(ValueError, match=r"`hidden_units` must be a positive integer. Received: hidden_units=0"):
        configure(imdb_gemma.CONFIG, {"hidden_units": 0})
    with pytest.raises(ValueError, match=r"`dtype` must be None or a Keras dtype .* Received: dtype='float42'"):
        configure(imdb_gemma.CONFIG, {"dtype": "float42"})
    with pytest.raises(ValueError, match=r"`export_model` must be True or False. Received: export_model='yes'"):
        configure(imdb_gemma.CONFIG, {"export_model": "yes"})
    with pytest.raises(ValueError, match=r"`weights` must be a keras-hub preset name .* Received: weights=''"):
        configure(imdb_gemma.CONFIG, {"weights": ""})
    with pytest.raises(ValueError, match=r"Unknown recipe options \['task'\]"):
        configure(imdb_gemma.CONFIG, {"task": "GemmaTextClassifier"})
    assert isinstance(imdb_gemma.CONFIG, DecoderTextRecipeConfig)
    with pytest.raises(ValueError, match=r"`backbone` must be a keras-hub backbone with `token_ids` and "
                                         r"`padding_mask` inputs"):
        build_decoder_classifier(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), 2)


def _offline(monkeypatch):
    import keras_hub
    import requests

    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Max retries exceeded with url: api.kaggle.com")

    for cls in (keras_hub.tokenizers.Tokenizer, keras_hub.models.Backbone):
        monkeypatch.setattr(cls, "from_preset", offline)


def test_offline_the_preset_name_fails_naming_the_local_directory_option(monkeypatch, tmp_path):
    _offline(monkeypatch)
    with pytest.raises(kt.OfflineError) as error:
        imdb_gemma.run(output_dir=str(tmp_path))
    assert str(error.value).startswith("Could not download keras-hub preset 'gemma2_instruct_2b_en' (no network?)")
    assert str(error.value).endswith("and pass that directory: weights='/path/to/preset'.")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "imdb_gemma", "--output-dir", str(tmp_path)])
    assert exit_.value.code.startswith("keras-transfer: error: Could not download keras-hub preset "
                                       "'gemma2_instruct_2b_en' (no network?)")
    assert exit_.value.code.endswith("and pass that directory: --weights /path/to/preset.")


# Every option of `keras-transfer run imdb_gemma`: the text given, and the value it must become.
EVERY_OPTION = {
    "--dataset": ("imdb_reviews", "imdb_reviews"), "--num-classes": ("2", 2), "--head-epochs": ("1", 1),
    "--fine-tune-epochs": ("2", 2), "--strategy": ("auto", "auto"), "--top-blocks": ("none", None),
    "--head-lr": ("find", "find"), "--backbone-lr": ("1e-05", 1e-5), "--layer-decay": ("0.8", 0.8),
    "--lora-rank": ("2", 2), "--lora-alpha": ("4", 4.0), "--cache-features": (None, True),
    "--no-early-stopping": (None, False), "--mixed-precision": ("none", None), "--jit-compile": ("false", False),
    "--checkpoint-dir": ("ckpt", "ckpt"), "--label-smoothing": ("0.1", 0.1), "--dropout": ("0.2", 0.2),
    "--optimizer": ("adamw", "adamw"), "--weight-decay": ("0.01", 0.01), "--warmup-steps": ("3", 3),
    "--decay-steps": ("10", 10), "--patience": ("2", 2), "--verbose": ("auto", "auto"),
    "--monitor": ("val_loss", "val_loss"), "--l2-sp": ("0.001", 0.001), "--candidates": (["lora", "full"],
                                                                                         ("lora", "full")),
    "--budget": ("4", 4), "--weights": ("/presets/gemma", "/presets/gemma"), "--train-split": ("train", "train"),
    "--val-split": ("test[:5%]", "test[:5%]"), "--sequence-length": ("128", 128), "--batch-size": ("8", 8),
    "--data-dir": ("none", None), "--max-examples": ("100", 100), "--output-dir": ("runs", "runs"),
    "--hidden-units": ("none", None), "--dtype": ("bfloat16", "bfloat16"), "--export-model": (None, True),
}


def test_every_command_line_option_reads_as_its_type():
    parser = cli.recipe_parser(imdb_gemma.CONFIG)
    options = {s for a in parser._actions for s in a.option_strings} - {"-h", "--help"}
    negated = {f"--no-{o[2:]}" for o in EVERY_OPTION} | {f"--{o[5:]}" for o in EVERY_OPTION if o.startswith("--no-")}
    aliases = {"--epochs", "--unfreeze-top-blocks"}
    assert options - negated - aliases == set(EVERY_OPTION)
    argv = []
    for option, (text, _) in EVERY_OPTION.items():
        argv += [option] + ([] if text is None else text if isinstance(text, list) else [text])
    parsed = vars(parser.parse_args(argv))
    expected = {f.name: value for f in dataclasses.fields(imdb_gemma.CONFIG)
                for option, (_, value) in EVERY_OPTION.items()
                if option.removeprefix("--").removeprefix("no-").replace("-", "_") == f.name}
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in parsed.items()} == expected
    config = configure(imdb_gemma.CONFIG, parsed)  # `auto` takes every option at once
    assert (config.candidates, config.l2_sp, config.hidden_units, config.verbose) == (("lora", "full"), 0.001, None, 1)
    assert vars(parser.parse_args(["--epochs", "3"])) == {"epochs": 3}
    assert configure(imdb_gemma.CONFIG, vars(parser.parse_args(["--epochs", "3"]))).fine_tune_epochs == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--hidden-units", "wide"])


@pytest.mark.slow
def test_cli_runs_imdb_gemma_on_a_local_preset(gemma_preset, tmp_path, capsys):
    argv = ["run", "imdb_gemma", "--weights", gemma_preset, "--output-dir", str(tmp_path), "--dataset", "imdb_reviews",
            "--num-classes", "2", "--train-split", "train", "--val-split", "test", "--sequence-length", "16",
            "--batch-size", "4", "--max-examples", "8", "--hidden-units", "none", "--dtype", "float32",
            "--lora-rank", "2", "--lora-alpha", "4", "--head-epochs", "1", "--epochs", "1", "--head-lr", "0.001",
            "--dropout", "0.0", "--optimizer", "adamw", "--weight-decay", "0.01", "--warmup-steps", "1",
            "--no-early-stopping", "--no-cache-features", "--jit-compile", "false", "--mixed-precision", "none",
            "--monitor", "val_loss", "--verbose", "0", "--export-model"]
    with tfds.testing.mock_data(num_examples=8):
        assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["phase", "epoch", "head_lr"]
    assert [line.split()[0] for line in lines[1:3]] == ["head", "lora"]
    assert lines[3].startswith("{'accuracy': ") and "'loss': " in lines[3]
    printed = dict(line.split(": ", 1) for line in lines[4:])
    runs = tmp_path / "imdb_gemma"
    assert printed["adapters"] == str(runs / "adapters.npz")
    assert printed["export_keras"] == str(runs / "model.keras")
    exported = keras.saving.load_model(printed["export_keras"])
    # No hidden layer (`--hidden-units none`): the head is `logits` on the 16 pooled features.
    assert [layer.name for layer in exported.layers[-3:]] == ["last_token", "head_dropout", "logits"]
    assert exported.get_layer("logits").kernel.shape == (16, 2)
