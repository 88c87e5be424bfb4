"""RandomAffine: Keras' flip, rotation, zoom and translation, resampled once."""

import keras
import numpy as np
import pytest

from keras_transfer import RandomAffine

pytestmark = pytest.mark.core

IMAGES = np.random.RandomState(0).uniform(0, 255, (4, 9, 11, 3)).astype("float32")


@pytest.mark.parametrize("ours,keras_layer", [
    (dict(rotation=(0.07, 0.07)), lambda: keras.layers.RandomRotation((0.07, 0.07))),
    (dict(rotation=(-0.25, -0.25), interpolation="nearest"),
     lambda: keras.layers.RandomRotation((-0.25, -0.25), interpolation="nearest")),
    (dict(zoom=(-0.3, -0.3)), lambda: keras.layers.RandomZoom((-0.3, -0.3))),
    (dict(zoom=(0.2, 0.2), fill_mode="constant", fill_value=7.0),
     lambda: keras.layers.RandomZoom((0.2, 0.2), fill_mode="constant", fill_value=7.0)),
    (dict(translation=(0.2, 0.2)), lambda: keras.layers.RandomTranslation((0.2, 0.2), (0.2, 0.2))),
])
def test_each_transform_matches_its_keras_layer(ours, keras_layer):
    expected = keras.ops.convert_to_numpy(keras_layer()(IMAGES, training=True))
    got = keras.ops.convert_to_numpy(RandomAffine(**ours)(IMAGES, training=True))
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_a_quarter_turn_moves_every_pixel_where_it_should():
    image = np.arange(9, dtype="float32").reshape(1, 3, 3, 1)
    turned = RandomAffine(rotation=(0.25, 0.25), interpolation="nearest")(image, training=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(turned)[0, ..., 0], [[2, 5, 8], [1, 4, 7], [0, 3, 6]])


@pytest.mark.parametrize("flip,mirror", [("horizontal", lambda x: x[:, ::-1]), ("vertical", lambda x: x[::-1])])
def test_flip_mirrors_about_half_the_images_and_leaves_the_rest(flip, mirror):
    batch = np.repeat(IMAGES[:1], 64, axis=0)
    out = keras.ops.convert_to_numpy(RandomAffine(flip=flip, seed=3)(batch, training=True))
    same = np.array([np.allclose(o, batch[0], atol=1e-4) for o in out])
    mirrored = np.array([np.allclose(o, mirror(batch[0]), atol=1e-4) for o in out])
    assert np.all(same ^ mirrored), "every image is itself or its mirror"
    assert 16 < mirrored.sum() < 48


def test_combined_draws_stay_in_range_and_inference_is_the_identity():
    layer = RandomAffine(flip="horizontal_and_vertical", rotation=0.1, zoom=0.1, translation=0.1, seed=0)
    out = keras.ops.convert_to_numpy(layer(IMAGES, training=True))
    assert out.shape == IMAGES.shape and out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, IMAGES)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(IMAGES, training=False)), IMAGES)
    labels = np.array([0, 1, 2, 3])
    mixed = layer({"images": IMAGES, "labels": labels}, training=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mixed["labels"]), labels)


def test_saved_and_loaded_in_a_model_gives_the_same_outputs(tmp_path):
    inputs = keras.Input((9, 11, 3))
    model = keras.Model(inputs, RandomAffine(flip="horizontal", rotation=(0.05, 0.05), zoom=(0.1, 0.1),
                                             seed=1, name="affine")(inputs, training=True))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    layer = loaded.get_layer("affine")
    assert isinstance(layer, RandomAffine) and layer.get_config() == model.get_layer("affine").get_config()
    fixed = RandomAffine(rotation=(0.05, 0.05), zoom=(0.1, 0.1))
    again = RandomAffine.from_config(fixed.get_config())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(IMAGES, training=True)),
                               keras.ops.convert_to_numpy(fixed(IMAGES, training=True)), atol=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    (dict(flip="diagonal"), r"`flip` must be None or one of \['horizontal', 'vertical', 'horizontal_and_vertical'\]. "
                            r"Received: flip='diagonal'"),
    (dict(rotation=-0.1), r"`rotation` must be a non-negative number or a \(lower, upper\) pair. Received: rotation=-0.1"),
    (dict(zoom=1.0), r"`zoom` must lie in \(-1.0, 1.0\) with lower <= upper. Received: zoom=1.0"),
    (dict(translation=(0.2, 0.1)), r"`translation` must lie in \[-1.0, 1.0\] with lower <= upper"),
    (dict(fill_mode="mirror"), r"`fill_mode` must be one of .* Received: fill_mode='mirror'"),
    (dict(interpolation="cubic"), r"`interpolation` must be one of \['nearest', 'bilinear'\]. Received"),
])
def test_bad_arguments_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomAffine(**kwargs)
