"""Every recipe end to end, offline: tfds mock data, weights=None, tiny sizes."""

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
