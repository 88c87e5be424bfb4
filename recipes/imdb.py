"""IMDB sentiment (tfds `imdb_reviews`, 25k/25k reviews) with a keras-hub BERT and LoRA.

Phase 1 trains the new classification head on the frozen BERT; phase 2 adds
rank-8 LoRA adapters to the attention query/value projections and trains only
them and the head (well under 5% of the parameters).

Expected: about 0.86-0.88 accuracy with `bert_tiny_en_uncased` and about 0.92
with `bert_base_en_uncased` on a Colab GPU (our targets, not yet measured: no GPU
or network here). Offline, pass a local preset directory as `weights`.

Example:

>>> from keras_transfer.recipes import imdb
>>> result = imdb.run(weights="bert_small_en_uncased")  # doctest: +SKIP
"""

from keras_transfer.recipe import TextRecipeConfig, configure, run_text_recipe

CONFIG = TextRecipeConfig(
    dataset="imdb_reviews",
    num_classes=2,
    weights="bert_tiny_en_uncased",
    task="BertTextClassifier",
    sequence_length=256,
    batch_size=32,
    strategy="lora",
    lora_rank=8,
    head_epochs=1,
    fine_tune_epochs=3,
)


def run(**overrides):
    """Runs the recipe; any `TextRecipeConfig` field can be overridden."""
    return run_text_recipe("imdb", configure(CONFIG, overrides))
