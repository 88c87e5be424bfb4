"""Shared test fixtures: quiet logs, seeded Keras, and the real assets in ../shared."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("KERAS_TRANSFER_SHARED", REPO.parent / "shared"))
ASSETS = SHARED / "assets"
MOBILENET_NO_TOP = ASSETS / "weights" / "mobilenet_v2_1.0_224_imagenet_torchvision_no_top.weights.h5"
HYMENOPTERA = ASSETS / "hymenoptera_data"


@pytest.fixture(autouse=True)
def _seed_and_clear():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture
def mobilenet_weights():
    """Path of the real ImageNet MobileNetV2 (no top) weights; skips when ../shared is absent."""
    if not MOBILENET_NO_TOP.exists():
        pytest.skip(f"real assets not found at {ASSETS}")
    return MOBILENET_NO_TOP


@pytest.fixture
def hymenoptera_dir():
    """Path of the real ants/bees photos; skips when ../shared is absent."""
    if not HYMENOPTERA.exists():
        pytest.skip(f"real assets not found at {ASSETS}")
    return HYMENOPTERA
