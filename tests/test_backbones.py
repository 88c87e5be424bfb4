"""The backbone registry: names build the right models, preprocessing matches Keras, weights load, errors help."""

import socket
import threading
import time
import warnings

import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer.backbones import BACKBONES, Preprocessing, load_hub_task

core = pytest.mark.core

# Representative names, one per block-spec family, and the blocks each must yield (pooling=None).
FAMILY_BLOCKS = {
    "efficientnet_b0": ["stem"] + [f"block{i}" for i in range(1, 8)] + ["top"],
    "efficientnetv2_b0": ["stem"] + [f"block{i}" for i in range(1, 7)] + ["top"],
    "resnet50_v2": ["stem", "conv2", "conv3", "conv4", "conv5", "top"],
    "mobilenet_v2": ["stem"] + [f"block_{i}" for i in range(1, 17)] + ["top"],
    "mobilenet_v3_small": ["stem", "expanded_conv"] + [f"expanded_conv_{i}" for i in range(1, 11)] + ["top"],
    "convnext_tiny": ["stem", "stage_0", "stage_1", "stage_2", "stage_3", "top"],
    "densenet121": ["stem", "conv2", "conv3", "conv4", "conv5", "top"],
    "vgg16": [f"block{i}" for i in range(1, 6)],
    "xception": [f"block{i}" for i in range(1, 15)],
    "inception_v3": ["stem"] + [f"mixed{i}" for i in range(11)],
}
SPEC_FAMILY = {
    "efficientnet": "efficientnet", "efficientnet_v2": "efficientnet", "resnet": "resnet", "resnet_v2": "resnet",
    "mobilenet_v2": "mobilenet_v2", "mobilenet_v3": "mobilenet_v3", "convnext": "convnext",
    "densenet": "densenet", "vgg16": "vgg", "vgg19": "vgg", "xception": "xception", "inception_v3": "inception_v3",
}
# Pixels in 0..255 (one image of 2x2 RGB pixels) for the preprocessing checks.
PIXELS = np.array([[[[0, 0, 0], [255, 255, 255]], [[12.5, 100, 200], [255, 0, 128]]]], dtype="float32")


def _small_shape(name):
    side = BACKBONES[name].min_size
    return (side, side, 3)


@pytest.mark.parametrize("name", sorted(FAMILY_BLOCKS))
def test_each_family_builds_and_yields_its_blocks(name):
    backbone = kt.get_backbone(name, weights=None, input_shape=_small_shape(name), pooling=None)
    entry = BACKBONES[name]
    assert backbone.name == name and backbone.family == entry.module and backbone.weights is None
    assert backbone.spec.family == SPEC_FAMILY[entry.module]
    assert backbone.input_size == entry.input_size
    assert [b.name for b in backbone.blocks] == FAMILY_BLOCKS[name]
    assert kt.block_names(backbone.model) == FAMILY_BLOCKS[name]
    assert backbone.model.count_params() == entry.params
    assert len(backbone.model.output.shape) == 4


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_registry_name_builds_with_its_table_entry(name):
    entry = BACKBONES[name]
    backbone = kt.get_backbone(name, weights=None, input_shape=_small_shape(name), pooling="max")
    assert backbone.model.count_params() == entry.params
    assert backbone.spec is not None and backbone.spec.family == SPEC_FAMILY[entry.module]
    assert backbone.blocks[0].layers and len(backbone.model.output.shape) == 2
    keras.utils.clear_session()


def test_default_input_shape_is_the_family_size_and_pooling_gives_vectors():
    b1 = kt.get_backbone("efficientnet_b1", weights=None)
    assert b1.input_size == 240 and tuple(b1.model.input.shape) == (None, 240, 240, 3)
    assert tuple(b1.model.output.shape) == (None, 1280)
    assert [BACKBONES[n].input_size for n in ("efficientnet_b2", "xception", "inception_v3", "efficientnetv2_s")] == [
        260, 299, 299, 384]


def test_keras_spellings_are_aliases():
    backbone = kt.get_backbone("MobileNetV2", weights=None, input_shape=(32, 32, 3), pooling="max")
    assert backbone.name == "mobilenet_v2"
    assert repr(backbone) == (
        "Backbone('mobilenet_v2', family='mobilenet_v2', input_shape=(32, 32, 3), params=2,257,984, "
        "preprocess=Preprocessing('tf'), weights=None)"
    )


def test_flexible_sides_are_allowed():
    backbone = kt.get_backbone("vgg16", weights=None, input_shape=(None, None, 3), pooling="avg")
    assert tuple(backbone.model.input.shape) == (None, None, None, 3)
    assert tuple(backbone.model(np.zeros((1, 40, 48, 3), "float32")).shape) == (1, 512)


@core
def test_preprocessing_modes_by_hand():
    tf_mode = Preprocessing("tf")(PIXELS)
    np.testing.assert_allclose(tf_mode[0, 0], [[-1, -1, -1], [1, 1, 1]])
    caffe = Preprocessing("caffe")(PIXELS)
    # RGB (255, 0, 128) -> BGR (128, 0, 255) minus the BGR mean.
    np.testing.assert_allclose(caffe[0, 1, 1], [128 - 103.939, -116.779, 255 - 123.68], rtol=1e-6)
    torch = Preprocessing("torch")(PIXELS)
    np.testing.assert_allclose(torch[0, 0, 1], [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225],
                               rtol=1e-6)
    assert Preprocessing("none")(PIXELS) is PIXELS
    scaled = Preprocessing("scale_offset", scale=(0.5, 1.0, 2.0), offset=-1.0)(PIXELS)
    np.testing.assert_allclose(scaled[0, 1, 0], [12.5 * 0.5 - 1, 100 - 1, 400 - 1])


@core
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_preprocess_matches_keras_preprocess_input(name):
    entry = BACKBONES[name]
    preprocess_input = getattr(keras.applications, entry.module).preprocess_input
    expected = keras.ops.convert_to_numpy(preprocess_input(PIXELS.copy()))
    before = PIXELS.copy()
    np.testing.assert_allclose(Preprocessing(entry.mode)(PIXELS), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(PIXELS, before)


@core
def test_preprocess_works_on_backend_tensors_and_inside_tf_data():
    import tensorflow as tf

    for mode in ("tf", "torch", "caffe"):
        preprocess = Preprocessing(mode)
        expected = preprocess(PIXELS)
        on_backend = keras.ops.convert_to_numpy(preprocess(keras.ops.convert_to_tensor(PIXELS)))
        np.testing.assert_allclose(on_backend, expected, rtol=1e-6)
        in_pipeline = tf.data.Dataset.from_tensor_slices(PIXELS).map(preprocess).batch(1)
        np.testing.assert_allclose(next(iter(in_pipeline)).numpy(), expected, rtol=1e-6)
    half = Preprocessing("torch")(PIXELS.astype("float16"))
    assert half.dtype == np.float16
    np.testing.assert_allclose(Preprocessing("tf")(np.uint8([[[255, 0, 51]]])), [[[1.0, -1.0, -0.6]]])


@core
def test_preprocess_errors():
    import tensorflow as tf

    with pytest.raises(TypeError, match=r"`images` must be floats in 0..255 .* Received: images.dtype=uint8"):
        Preprocessing("tf")(tf.zeros((2, 2, 3), "uint8"))
    with pytest.raises(ValueError, match=r"3 channels last. Received: images.shape=\(1, 2, 2, 1\)"):
        Preprocessing("caffe")(np.zeros((1, 2, 2, 1), "float32"))
    with pytest.raises(ValueError, match=r"`mode` must be one of .* Received: mode='inception'"):
        Preprocessing("inception")
    with pytest.raises(ValueError, match="apply to mode='scale_offset' only"):
        Preprocessing("tf", scale=2.0)


def test_local_weights_file_loads_like_keras(mobilenet_weights):
    backbone = kt.get_backbone("mobilenet_v2", weights=str(mobilenet_weights), input_shape=(96, 96, 3), pooling=None)
    reference = keras.applications.MobileNetV2(include_top=False, weights=str(mobilenet_weights),
                                               input_shape=(96, 96, 3))
    random = kt.get_backbone("mobilenet_v2", weights=None, input_shape=(96, 96, 3), pooling=None)
    images = backbone.preprocess(np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype("float32"))
    ours = keras.ops.convert_to_numpy(backbone.model(images))
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(reference(images)), rtol=1e-5, atol=1e-5)
    assert not np.allclose(ours, keras.ops.convert_to_numpy(random.model(images)), atol=1e-3)
    assert backbone.weights == str(mobilenet_weights)


def test_weights_file_of_another_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "vgg16_no_top.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(path)
    with warnings.catch_warnings(record=True) as said, pytest.raises(ValueError) as error:
        warnings.simplefilter("always")
        kt.get_backbone("mobilenet_v2", weights=str(path), input_shape=(32, 32, 3))
    assert [str(w.message)[:40] for w in said] == []  # Keras warned once per layer (104 times) before it raised
    message = str(error.value)
    assert message.startswith(f"Could not load the weights file '{path}' into backbone 'mobilenet_v2' "
                              "(keras.applications.MobileNetV2, include_top=False): A total of 104 objects")
    assert "List of objects" not in message and message.endswith("'..._no_top.weights.h5' file).")


def test_offline_imagenet_download_says_so_and_how_to_pass_a_file(monkeypatch, tmp_path, keras_downloads_fail):
    from keras_transfer import backbones
    from keras_transfer.backbones import OfflineError

    checked = []
    monkeypatch.setattr(backbones, "_network_problem", lambda url: checked.append(url) or "could not reach it")
    with pytest.raises(OfflineError) as error:
        kt.get_backbone("mobilenet_v2", input_shape=(96, 96, 3))
    file_name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    assert checked == [f"https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/{file_name}"]
    assert str(error.value) == (
        "Could not download the ImageNet weights of 'mobilenet_v2': no network (could not reach it). Offline, "
        f"pass a local copy of the no-top weights file, weights='/path/to/{file_name}', or copy it to "
        f"{tmp_path}/models/{file_name}, where Keras caches its downloads."
    )
    # The command line names its own flag; Keras' error is in the message, not in a second traceback.
    assert f"file, --weights /path/to/{file_name}, or" in error.value.spelled(lambda arg, value: f"--{arg} {value}")
    assert isinstance(error.value, ConnectionError) and error.value.__suppress_context__
    # Where the host answers, the failure is something else: Keras' words say what.
    monkeypatch.setattr(backbones, "_network_problem", lambda url: None)
    with pytest.raises(OfflineError, match=r"of 'mobilenet_v2': Keras said: URL fetch failure on https://\S+: "
                                           r"None -- \[Errno -3\] Temporary failure in name resolution. Offline"):
        kt.get_backbone("mobilenet_v2", input_shape=(96, 96, 3))


def test_the_network_check_is_one_short_connection_attempt(monkeypatch):
    from keras_transfer.backbones import _network_problem

    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert _network_problem(f"http://127.0.0.1:{port}/file.h5") is None
        # Behind a proxy, the proxy is what has to answer.
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        assert _network_problem("https://storage.googleapis.com/file.h5") is None
    assert _network_problem("https://storage.googleapis.com/file.h5") == (
        f"could not reach the proxy 127.0.0.1:{port} ([Errno 111] Connection refused)"
    )
    monkeypatch.delenv("HTTPS_PROXY")

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    assert _network_problem("https://storage.googleapis.com/file.h5") == (
        "could not reach storage.googleapis.com:443 ([Errno -2] Name or service not known)"
    )
    # A resolver that never answers costs the timeout, not its own (often 10 s or more).
    release = threading.Event()

    def silent_resolver(*args, **kwargs):
        release.wait(30)
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", silent_resolver)
    start = time.perf_counter()
    assert _network_problem("http://vision.stanford.edu/images.tar", timeout=0.2) == (
        "could not reach vision.stanford.edu:80 (no answer within 0.2 s)"
    )
    assert time.perf_counter() - start < 1
    release.set()


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match=r"Did you mean 'efficientnet_b0' or 'efficientnetv2_b0'\? Received: name='efficentnet_b0'. "
                                         r"Valid names: \['convnext_base'"):
        kt.get_backbone("efficentnet_b0", weights=None)
    with pytest.raises(ValueError, match="Received: name=''"):
        kt.get_backbone("", weights=None)
    with pytest.raises(ValueError, match=r"too small for 'efficientnet_b0', whose sides must be at least 32. "
                                         r"Received: input_shape=\(16, 16, 3\)"):
        kt.get_backbone("efficientnet_b0", weights=None, input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match="at least 71"):
        kt.get_backbone("xception", weights=None, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match=r"3 \(RGB\) channels.*Received: input_shape=\(64, 64, 1\)"):
        kt.get_backbone("vgg16", weights=None, input_shape=(64, 64, 1))
    for bad in ((64, 64), (64, "64", 3), (0, 64, 3), 64):
        with pytest.raises(ValueError, match="`input_shape` must be \\(height, width, channels\\)"):
            kt.get_backbone("vgg16", weights=None, input_shape=bad)
    with pytest.raises(ValueError, match=r"`pooling` must be one of \[None, 'avg', 'max'\]. Received: pooling='mean'"):
        kt.get_backbone("vgg16", weights=None, pooling="mean")
    with pytest.raises(FileNotFoundError, match="Received: weights='/nowhere/vgg16_notop.h5'"):
        kt.get_backbone("vgg16", weights="/nowhere/vgg16_notop.h5")
    with pytest.raises(ValueError, match=r"`.h5` / `.weights.h5` file. Received: weights='imagenet21k'"):
        kt.get_backbone("vgg16", weights="imagenet21k")
    with pytest.raises(ValueError, match="Received: weights=3"):
        kt.get_backbone("vgg16", weights=3)


def test_list_backbones_is_a_cheap_sorted_table():
    names = kt.list_backbones(hub=False)
    assert names == sorted(BACKBONES) and len(names) == 36
    everything = kt.list_backbones()
    assert "hub:resnet_50_imagenet" in everything and set(names) < set(everything)
    table = kt.list_backbones(details=True)
    assert list(table.columns) == ["name", "source", "family", "constructor", "input_size", "preprocessing", "params"]
    row = table.set_index("name").loc["densenet121"]
    assert (row.source, row.constructor, row.input_size, row.preprocessing, row.params) == (
        "keras.applications", "DenseNet121", 224, "torch", 7037504)
    hub_row = table.set_index("name").loc["hub:resnet_50_imagenet"]
    assert hub_row.source == "keras_hub" and hub_row.constructor.startswith("kaggle://")
    with pytest.raises(TypeError, match="Received: details='yes'"):
        kt.list_backbones(details="yes")


# --- keras-hub ---------------------------------------------------------------


@pytest.fixture
def hub_preset(tmp_path):
    """A tiny keras-hub ResNet saved as a local preset, with torch-style ImageNet rescaling."""
    import keras_hub

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
    )
    converter = keras_hub.layers.ResNetImageConverter(
        image_size=(32, 32), scale=[1 / (255 * s) for s in (0.229, 0.224, 0.225)],
        offset=[-m / s for m, s in ((0.485, 0.229), (0.456, 0.224), (0.406, 0.225))],
    )
    backbone.save_to_preset(str(tmp_path))
    converter.save_to_preset(str(tmp_path))
    return tmp_path, backbone, converter


def test_hub_preset_from_a_local_directory(hub_preset):
    path, original, converter = hub_preset
    backbone = kt.get_backbone(f"hub:{path}", input_shape=(32, 32, 3), pooling=None)
    assert backbone.family == "keras_hub.resnet" and backbone.spec.family == "keras_hub.resnet"
    assert backbone.input_size == 32 and backbone.weights == str(path)
    assert [b.name for b in backbone.blocks] == ["stem", "stack0", "stack1"]
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    # Same rescaling as the preset's own converter (which would also resize; here sizes match).
    x = backbone.preprocess(images)
    np.testing.assert_allclose(x, keras.ops.convert_to_numpy(converter(images)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x, Preprocessing("torch")(images), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(backbone.model(x)),
                               keras.ops.convert_to_numpy(original(x)), rtol=1e-5, atol=1e-5)


def test_hub_preset_pooled_keeps_its_blocks(hub_preset):
    path, original, _ = hub_preset
    pooled = kt.get_backbone(f"hub:{path}", input_shape=(32, 32, 3), pooling="avg")
    assert tuple(pooled.model.output.shape) == (None, 16)
    assert kt.block_names(pooled.model) == ["stem", "stack0", "stack1"]
    assert pooled.model.count_params() == original.count_params()
    random = kt.get_backbone(f"hub:{path}", weights=None, input_shape=(32, 32, 3), pooling="avg")
    assert random.weights is None
    x = np.random.default_rng(1).normal(size=(1, 32, 32, 3)).astype("float32")
    assert not np.allclose(keras.ops.convert_to_numpy(random.model(x)), keras.ops.convert_to_numpy(pooled.model(x)))


def test_hub_errors(monkeypatch, tmp_path):
    import keras_hub
    import requests

    with pytest.raises(ValueError, match=r"Did you mean 'resnet_50_imagenet'.*Received: preset='resnet_50_imagenett'"):
        kt.get_backbone("hub:resnet_50_imagenett")
    with pytest.raises(FileNotFoundError, match="No keras-hub preset directory"):
        kt.get_backbone(f"hub:{tmp_path}/missing")
    with pytest.raises(ValueError, match="brings its own weights"):
        kt.get_backbone("hub:resnet_50_imagenet", weights=str(hub_weights_file(tmp_path)))

    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Max retries exceeded with url: api.kaggle.com")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", offline)
    with pytest.raises(ConnectionError, match=r"Could not download keras-hub preset 'resnet_50_imagenet' "
                                              r"\(no network\?\).*save_to_preset") as error:
        kt.get_backbone("hub:resnet_50_imagenet")
    assert str(error.value).endswith("and pass that directory: name='hub:/path/to/preset'.")


def hub_weights_file(tmp_path):
    path = tmp_path / "some.weights.h5"
    path.write_bytes(b"")
    return path


@pytest.fixture
def bert_preset(tmp_path):
    """A tiny BERT classifier (vocabulary of 9 words) saved as a local preset."""
    import keras_hub

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox"]
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        keras_hub.models.BertTokenizer(vocabulary=vocabulary), sequence_length=16)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(vocabulary), num_layers=1, num_heads=2,
                                             hidden_dim=4, intermediate_dim=8, max_sequence_length=16)
    task = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=preprocessor)
    task.save_to_preset(str(tmp_path))
    return tmp_path, task


def test_load_hub_task_from_a_local_preset(bert_preset):
    path, original = bert_preset
    model = load_hub_task("BertTextClassifier", str(path), num_classes=3, sequence_length=8)
    assert type(model).__name__ == "BertTextClassifier"
    assert model.preprocessor.sequence_length == 8
    # The pretrained backbone comes back; the head is new, sized for 3 classes.
    for ours, theirs in zip(model.backbone.weights, original.backbone.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs))
    assert model.predict(["the quick fox", "brown"], verbose=0).shape == (2, 3)
    tokens = model.preprocessor(["the quick fox"])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(tokens["token_ids"]), [[2, 5, 6, 8, 3, 0, 0, 0]])


def test_load_hub_task_errors(bert_preset, monkeypatch):
    import keras_hub
    import requests

    path, _ = bert_preset
    with pytest.raises(ValueError, match=r"Did you mean 'BertTextClassifier'.*Received: task='BertTextClasifier'"):
        load_hub_task("BertTextClasifier", str(path), num_classes=2)
    with pytest.raises(ValueError, match="Received: num_classes=0"):
        load_hub_task("BertTextClassifier", str(path), num_classes=0)
    with pytest.raises(ValueError, match="Received: sequence_length=-1"):
        load_hub_task("BertTextClassifier", str(path), num_classes=2, sequence_length=-1)
    with pytest.raises(ValueError, match="Received: weights=None"):
        load_hub_task("BertTextClassifier", None, num_classes=2)
    with pytest.raises(FileNotFoundError, match="No keras-hub preset directory"):
        load_hub_task("BertTextClassifier", str(path / "missing"), num_classes=2)

    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Max retries exceeded with url: api.kaggle.com")

    monkeypatch.setattr(keras_hub.models.BertTextClassifier, "from_preset", offline)
    with pytest.raises(ConnectionError, match="Could not download keras-hub preset 'bert_tiny_en_uncased'") as error:
        load_hub_task("BertTextClassifier", "bert_tiny_en_uncased", num_classes=2)
    assert str(error.value).endswith("and pass that directory: weights='/path/to/preset'.")


def test_check_image_size_names_the_data_and_both_ways_to_fit():
    import tensorflow as tf

    from keras_transfer.backbones import check_image_size

    backbone = kt.get_backbone("mobilenet_v2", weights=None)
    small = tf.data.Dataset.from_tensor_slices((np.zeros((4, 96, 96, 3), "float32"), np.zeros(4, "int32"))).batch(2)
    with pytest.raises(ValueError) as error:
        check_image_size(backbone, small, "train_ds")
    assert str(error.value) == (
        "`train_ds` images are 96x96 but the backbone expects 224x224: load the data with image_size=(224, 224) "
        "or build the backbone with input_shape=(96, 96, 3). Received: train_ds images of shape (None, 96, 96, 3)"
    )
    classifier = kt.build_classifier(backbone.model, num_classes=2, name="classifier")
    with pytest.raises(ValueError, match=r"^`val_ds` images are 64x80 but model 'classifier' expects 224x224: load "
                                         r"the data with image_size=\(224, 224\) or build the model with "
                                         r"input_shape=\(64, 80, 3\). Received: val_ds images of shape "
                                         r"\(8, 64, 80, 3\)$"):
        check_image_size(classifier, (np.zeros((8, 64, 80, 3)), np.zeros(8)), "val_ds")
    # What fits, flexible sides and data whose shape is unknown without reading it all pass.
    assert check_image_size(backbone, np.zeros((2, 224, 224, 3)), "x") is None
    flexible = kt.get_backbone("mobilenet_v2", weights=None, input_shape=(None, None, 3))
    assert check_image_size(flexible, small, "train_ds") is None
    assert check_image_size(backbone, iter([]), "batches") is None
    with pytest.raises(TypeError, match=r"`backbone_or_model` must be a Backbone or a keras.Model. "
                                        r"Received: backbone_or_model=str"):
        check_image_size("mobilenet_v2", small, "train_ds")
    with pytest.raises(ValueError, match=r"`name` must be the name of the data argument. Received: name=3"):
        check_image_size(backbone, small, 3)
