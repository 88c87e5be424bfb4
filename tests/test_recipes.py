"""Every recipe end to end, offline: tfds mock data, weights=None, tiny sizes."""

import os

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_transfer import cli, recipes
from keras_transfer.recipe import ImageRecipeConfig, configure

TINY = dict(backbone="mobilenet_v2", weights=None, image_size=32, batch_size=8, head_epochs=1,
            fine_tune_epochs=1, max_examples=16, verbose=0)


def _run_image(name, tmp_path, **overrides):
    import importlib

    module = importlib.import_module(f"keras_transfer.recipes.{name}")
    with tfds.testing.mock_data(num_examples=16):
        return module.run(output_dir=str(tmp_path), **{**TINY, **overrides})


def _check_image_result(result, num_classes, tmp_path):
    assert list(result.history.phase) == ["head", "fine_tune"]
    assert result.model.output.shape[-1] == num_classes
    assert result.evaluation.confusion.shape == (num_classes, num_classes)
    assert int(result.evaluation.confusion.values.sum()) == 16
    for key in ("history_plot", "confusion_plot", "export_keras", "fine_tune_best"):
        assert key in result.paths, key
    for key in ("history_plot", "confusion_plot"):
        assert result.paths[key].endswith(".png") and os.path.getsize(result.paths[key]) > 1000, key
    exported = keras.saving.load_model(result.paths["export_keras"])
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(exported.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-5)


def test_dog_breeds_runs_end_to_end_on_mock_stanford_dogs(tmp_path):
    result = _run_image("dog_breeds", tmp_path)
    assert result.config.num_classes == 120
    _check_image_result(result, 120, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name,num_classes", [("flowers", 5), ("pets", 37)])
def test_other_image_recipes_run_end_to_end(tmp_path, name, num_classes):
    _check_image_result(_run_image(name, tmp_path), num_classes, tmp_path)


@pytest.mark.slow
def test_imdb_runs_end_to_end_with_lora_on_a_local_preset(tmp_path):
    import keras_hub

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(40)] + ["the", "movie"]
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(vocab), num_layers=2, num_heads=2,
                                             hidden_dim=16, intermediate_dim=32, max_sequence_length=32)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=16)
    task = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=preprocessor)
    preset = tmp_path / "tiny_bert"
    task.save_to_preset(str(preset))
    from keras_transfer.recipes import imdb

    with tfds.testing.mock_data(num_examples=16):
        result = imdb.run(weights=str(preset), sequence_length=16, batch_size=8, head_epochs=1,
                          fine_tune_epochs=1, max_examples=16, output_dir=str(tmp_path / "runs"), verbose=0)
    assert list(result.history.phase) == ["head", "lora"]
    lora_layers = [layer for layer in result.model._flatten_layers() if getattr(layer, "lora_enabled", False)
                   or "LoRA" in type(layer).__name__]
    assert lora_layers, "the lora strategy left no LoRA layer"
    assert "export_keras" in result.paths


def test_recipe_options_are_validated():
    with pytest.raises(ValueError, match=r"Unknown recipe options \['epochz'\]"):
        configure(ImageRecipeConfig("tf_flowers", 5), {"epochz": 3})


def test_run_list_names_every_recipe(capsys):
    assert cli.main(["run", "--list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.strip().splitlines()] == list(recipes.RECIPES)


def test_run_unknown_recipe_lists_the_recipes():
    with pytest.raises(SystemExit, match="unknown recipe 'dogs'. Recipes: dog_breeds, flowers, pets, imdb"):
        cli.main(["run", "dogs"])


def test_recipes_keep_their_published_defaults():
    from keras_transfer.recipes import dog_breeds, flowers, imdb, pets

    image = dict(strategy="fine_tune", head_epochs=5, top_blocks=3, head_lr=1e-3, backbone_lr=1e-5, layer_decay=0.6,
                 label_smoothing=0.1, dropout=0.3, optimizer="adamw", weight_decay=1e-4, warmup_steps=0,
                 backbone="efficientnet_b0", image_size=(224, 224), verbose=1, cache_features=True)
    for module, extra in [(dog_breeds, dict(num_classes=120, fine_tune_epochs=10, batch_size=64)),
                          (flowers, dict(num_classes=5, fine_tune_epochs=8, batch_size=32)),
                          (pets, dict(num_classes=37, fine_tune_epochs=10, batch_size=64))]:
        assert {k: getattr(module.CONFIG, k) for k in {**image, **extra}} == {**image, **extra}, module.__name__
    text = dict(strategy="lora", lora_rank=8, head_epochs=1, fine_tune_epochs=3, head_lr=1e-3, backbone_lr=5e-5,
                optimizer="adamw", weight_decay=1e-2, cache_features=False, batch_size=32, sequence_length=256)
    assert {k: getattr(imdb.CONFIG, k) for k in text} == text


def test_recipe_configs_are_fine_tune_configs_checked_the_same_way():
    from keras_transfer.config import FineTuneConfig
    from keras_transfer.recipes import dog_breeds, imdb

    assert isinstance(dog_breeds.CONFIG, FineTuneConfig) and isinstance(imdb.CONFIG, FineTuneConfig)
    with pytest.raises(ValueError, match=r"Received: strategy='fine_tune', budget=4"):
        configure(dog_breeds.CONFIG, {"budget": 4})
    with pytest.raises(ValueError, match=r"Received: head_epochs=-1"):
        configure(dog_breeds.CONFIG, {"head_epochs": -1})
    with pytest.raises(ValueError, match=r"Received: max_examples=0"):
        configure(imdb.CONFIG, {"max_examples": 0})
    # A published setting the new strategy does not use is no error: `top_blocks=3` under "full".
    assert configure(dog_breeds.CONFIG, {"strategy": "full"}).top_blocks == 3


def test_recipe_image_size_is_a_side_or_a_pair():
    assert ImageRecipeConfig("tf_flowers", 5, image_size=96).image_size == (96, 96)
    assert configure(ImageRecipeConfig("tf_flowers", 5), {"image_size": (64, 96)}).image_size == (64, 96)
    with pytest.raises(ValueError, match=r"Received: image_size=\(64, 0\)"):
        ImageRecipeConfig("tf_flowers", 5, image_size=(64, 0))


def test_recipe_verbose_takes_keras_values():
    config = ImageRecipeConfig("tf_flowers", 5)
    assert [configure(config, {"verbose": v}).verbose for v in ("auto", 0, 2, True, False)] == [1, 0, 2, 1, 0]
    with pytest.raises(ValueError, match=r"`verbose` must be 0, 1, 2 or 'auto'. Received: verbose='loud'"):
        configure(config, {"verbose": "loud"})


def test_recipe_old_unfreeze_top_blocks_still_works_and_warns():
    config = ImageRecipeConfig("tf_flowers", 5)
    with pytest.warns(FutureWarning, match=r"`run\(unfreeze_top_blocks=...\)` is now `top_blocks=`"):
        assert configure(config, {"unfreeze_top_blocks": 2}).top_blocks == 2
    with pytest.warns(FutureWarning, match="is now `top_blocks=`"):
        assert config.unfreeze_top_blocks == 3
    with pytest.raises(ValueError, match=r"`unfreeze_top_blocks` is the old name of `top_blocks`; pass `top_blocks` "
                                         r"only. Received: unfreeze_top_blocks=2, top_blocks=1"):
        configure(config, {"unfreeze_top_blocks": 2, "top_blocks": 1})
