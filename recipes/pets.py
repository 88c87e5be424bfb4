"""ImageNet -> Oxford-IIIT Pet (37 breeds of cats and dogs), EfficientNetB0 by default.

Expected: about 0.90 accuracy on the test split after fine-tuning on a Colab GPU
(our target, not yet measured: no GPU or network here).

Example:

>>> from keras_transfer.recipes import pets
>>> result = pets.run(fine_tune_epochs=5)  # doctest: +SKIP
"""

from keras_transfer.recipe import ImageRecipeConfig, configure, run_image_recipe

CONFIG = ImageRecipeConfig(
    dataset="oxford_iiit_pet",
    num_classes=37,
    train_split="train",
    val_split="test",
    backbone="efficientnet_b0",
    image_size=224,
    batch_size=64,
    head_epochs=5,
    fine_tune_epochs=10,
    top_blocks=3,
    layer_decay=0.6,
)


def run(**overrides):
    """Runs the recipe; any `ImageRecipeConfig` field can be overridden."""
    return run_image_recipe("pets", configure(CONFIG, overrides))
