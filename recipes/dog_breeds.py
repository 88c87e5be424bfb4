"""ImageNet -> Stanford Dogs (120 breeds, 224x224), EfficientNetB0 by default.

The keras.io example ("Image classification via fine-tuning with EfficientNet")
reports 0.7701 top-1 after fine-tuning, 0.7456 with a frozen backbone and 0.2151
from scratch. These defaults aim clearly higher: whole blocks unfrozen
(`block6`, `block7`, `top`) instead of the last 20 layers, per-block rates
decaying from the head down, AdamW, label smoothing 0.1, and BatchNorm kept in
inference mode.

Expected: about 0.80 top-1 on the test split with EfficientNetB0 on a Colab T4
GPU (about 30 minutes) or a Colab TPU through `auto_distribution()`. This figure is
our target, not yet a measurement: our CI machines have no GPU and no network.
Report what you get with `keras-transfer run dog_breeds`.

Example:

>>> from keras_transfer.recipes import dog_breeds
>>> result = dog_breeds.run(head_epochs=1, fine_tune_epochs=1)  # doctest: +SKIP
>>> result.metrics["accuracy"]  # doctest: +SKIP
"""

from keras_transfer.recipe import ImageRecipeConfig, configure, run_image_recipe

CONFIG = ImageRecipeConfig(
    dataset="stanford_dogs",
    num_classes=120,
    train_split="train",
    val_split="test",
    backbone="efficientnet_b0",
    image_size=224,
    batch_size=64,
    head_epochs=5,
    fine_tune_epochs=10,
    top_blocks=3,
    head_lr=1e-3,
    backbone_lr=1e-5,
    layer_decay=0.6,
    label_smoothing=0.1,
)


def run(**overrides):
    """Runs the recipe; any `ImageRecipeConfig` field can be overridden."""
    return run_image_recipe("dog_breeds", configure(CONFIG, overrides))
