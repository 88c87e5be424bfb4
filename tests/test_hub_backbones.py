"""`kt.get_backbone("hub:<preset>")` for keras-hub families: pooling, input size and preprocessing from the preset.

Presets cannot be downloaded here, so each test builds a tiny model of the
family from a config and saves it (with its image converter or text
preprocessor) as a local preset directory, which `get_backbone` loads the way
it loads any preset.
"""

import io

import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer import backbones
from keras_transfer.backbones import HubPreprocessing

keras_hub = pytest.importorskip("keras_hub")
tf = pytest.importorskip("tensorflow")

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0, 255, (2, 32, 32, 3)).astype("float32")


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def save_preset(path, *parts):
    for part in parts:
        part.save_to_preset(str(path))
    return "hub:" + str(path)


def image_through_tf_data(preprocess, image):
    """One raw uint8 image of any size, preprocessed inside a tf.data pipeline."""
    ds = tf.data.Dataset.from_tensors(image).map(preprocess)
    return next(iter(ds)).numpy()


# --- vision ------------------------------------------------------------------


@pytest.fixture
def dinov2(tmp_path):
    """A tiny DINOv2 with 2 register tokens: [CLS, reg, reg, 16 patches] of width 16, 32-px images."""
    model = keras_hub.models.DINOV2Backbone(
        patch_size=8, num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32, num_register_tokens=2,
        image_shape=(32, 32, 3), position_embedding_shape=(32, 32, 3))
    converter = keras_hub.layers.DINOV2ImageConverter(
        image_size=(32, 32), scale=[1 / (255 * s) for s in (0.229, 0.224, 0.225)],
        offset=[-m / s for m, s in ((0.485, 0.229), (0.456, 0.224), (0.406, 0.225))])
    return save_preset(tmp_path / "dinov2", model, converter), model, converter


def test_dinov2_pools_the_class_token_by_default_and_the_patch_tokens_on_request(dinov2):
    name, original, _ = dinov2
    tokens = numpy(original({"images": IMAGES}))
    assert tokens.shape == (2, 19, 16)

    unpooled = kt.get_backbone(name, pooling=None)
    assert tuple(unpooled.model.input.shape) == (None, 32, 32, 3)  # one image tensor, not keras-hub's dict
    assert tuple(unpooled.model.output.shape) == (None, 19, 16)
    np.testing.assert_array_equal(numpy(unpooled.model(IMAGES)), tokens)

    cls = kt.get_backbone(name)
    assert tuple(cls.model.output.shape) == (None, 16)
    np.testing.assert_array_equal(numpy(cls.model(IMAGES)), tokens[:, 0])
    assert cls.family == "keras_hub.dinov2" and cls.input_size == 32 and cls.weights == name[4:]

    mean = kt.get_backbone(name, pooling="mean")  # the 16 patch tokens: class and register tokens left out
    np.testing.assert_allclose(numpy(mean.model(IMAGES)), tokens[:, 3:].mean(axis=1), rtol=1e-6, atol=1e-6)


def test_dinov2_preprocessing_is_the_presets_converter_inside_tf_data(dinov2):
    name, original, converter = dinov2
    backbone = kt.get_backbone(name)
    assert isinstance(backbone.preprocess, HubPreprocessing)
    assert repr(backbone.preprocess).startswith("HubPreprocessing(DINOV2ImageConverter, image_size=(32, 32)")
    raw = RNG.integers(0, 256, (48, 40, 3), dtype="uint8")
    x = image_through_tf_data(backbone.preprocess, raw)
    assert x.shape == (32, 32, 3) and x.dtype == np.float32
    # keras-hub's converter called eagerly on uint8 rounds the resized image; in tf.data it does not.
    np.testing.assert_allclose(x, numpy(converter(raw.astype("float32"))), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(numpy(backbone.preprocess(raw)), x, rtol=1e-6, atol=1e-6)
    # The same as converting by hand: ImageNet mean and standard deviation.
    ready = image_through_tf_data(backbone.preprocess, IMAGES[0].astype("uint8"))
    expected = (IMAGES[0].astype("uint8") / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(ready, expected, rtol=1e-5, atol=1e-5)


def test_vit_input_size_comes_from_the_preset_whose_image_size_is_fixed(tmp_path):
    model = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32)
    converter = keras_hub.layers.ViTImageConverter(image_size=(32, 32), scale=1 / 127.5, offset=-1.0)
    name = save_preset(tmp_path, model, converter)
    vit = kt.get_backbone(name)
    assert vit.family == "keras_hub.vit" and vit.input_size == 32
    assert tuple(vit.model.input.shape) == (None, 32, 32, 3) and tuple(vit.model.output.shape) == (None, 16)
    tokens = numpy(model(IMAGES))
    assert tokens.shape == (2, 17, 16)
    np.testing.assert_array_equal(numpy(vit.model(IMAGES)), tokens[:, 0])
    mean = kt.get_backbone(name, pooling="mean")
    np.testing.assert_allclose(numpy(mean.model(IMAGES)), tokens[:, 1:].mean(axis=1), rtol=1e-6, atol=1e-6)
    # keras-hub's ViT keeps its position embeddings' size: another image size cannot load the weights.
    with pytest.raises(ValueError, match=r"cannot take input_shape=\(48, 48, 3\): its weights do not fit that image "
                                         r"size \(A total of 1 objects could not be loaded\)"):
        kt.get_backbone(name, input_shape=(48, 48, 3))


def test_input_shape_resizes_the_model_and_its_preprocessing(dinov2):
    name, _, _ = dinov2
    bigger = kt.get_backbone(name, input_shape=(48, 48, 3))  # DINOv2 interpolates its position embeddings
    assert bigger.input_size == 32  # the preset's: the side its weights were trained on
    assert tuple(bigger.model.input.shape) == (None, 48, 48, 3)
    x = image_through_tf_data(bigger.preprocess, RNG.integers(0, 256, (60, 50, 3), dtype="uint8"))
    assert x.shape == (48, 48, 3)
    assert tuple(bigger.model(x[None]).shape) == (1, 16)


@pytest.fixture
def siglip(tmp_path):
    vision = keras_hub.models.SigLIPVisionEncoder(
        patch_size=8, hidden_dim=16, num_layers=1, num_heads=2, intermediate_dim=32, image_shape=(32, 32, 3))
    text = keras_hub.models.SigLIPTextEncoder(
        vocabulary_size=16, embedding_dim=16, hidden_dim=16, num_layers=1, num_heads=2, intermediate_dim=32,
        max_sequence_length=8)
    model = keras_hub.models.SigLIPBackbone(vision, text)
    converter = keras_hub.layers.SigLIPImageConverter(image_size=(32, 32), scale=1 / 127.5, offset=-1.0)
    return save_preset(tmp_path / "siglip", model, converter), model, converter


def test_siglip_is_its_vision_tower_pooled_by_its_own_attention_head(siglip):
    name, original, converter = siglip
    pooled = kt.get_backbone(name)
    assert pooled.family == "keras_hub.siglip" and pooled.input_size == 32
    assert tuple(pooled.model.input.shape) == (None, 32, 32, 3) and tuple(pooled.model.output.shape) == (None, 16)
    np.testing.assert_array_equal(numpy(pooled.model(IMAGES)), numpy(original.vision_encoder({"images": IMAGES})))
    # No text tower weights: the vision encoder alone.
    assert pooled.model.count_params() == original.vision_encoder.count_params()

    tokens = kt.get_backbone(name, pooling=None)  # the 16 patch tokens before the attention-pooling head
    sequence = numpy(tokens.model(IMAGES))
    # (keras-hub's SigLIPVisionEmbedding declares one token more than it gives: (None, 17, 16).)
    assert sequence.shape == (2, 16, 16)
    mean = kt.get_backbone(name, pooling="mean")
    np.testing.assert_allclose(numpy(mean.model(IMAGES)), sequence.mean(axis=1), rtol=1e-6, atol=1e-6)
    raw = RNG.integers(0, 256, (40, 40, 3), dtype="uint8")
    np.testing.assert_allclose(image_through_tf_data(pooled.preprocess, raw), numpy(converter(raw * 1.0)), atol=1e-6)


@pytest.mark.slow
def test_siglip_keeps_the_image_size_of_its_preset(siglip):
    name, _, _ = siglip
    assert tuple(kt.get_backbone(name, input_shape=(32, 32, 3)).model.output.shape) == (None, 16)
    with pytest.raises(ValueError, match=r"SigLIPBackbone from .* takes the image size of its preset, \(32, 32, 3\): "
                                         r"pass that or input_shape=None. Received: input_shape=\(48, 48, 3\)"):
        kt.get_backbone(name, input_shape=(48, 48, 3))
    with pytest.raises(ValueError, match=r"reads images: `input_shape` must be \(height, width, 3\)"):
        kt.get_backbone(name, input_shape=(16,))


@pytest.mark.slow
def test_conv_backbone_pools_the_last_stage(tmp_path):
    # HGNetV2 outputs every stage: the features are its last one.
    model = keras_hub.models.HGNetV2Backbone(
        depths=[1, 1], embedding_size=16, hidden_sizes=[16, 32], stem_channels=[3, 8, 16], hidden_act="relu",
        use_learnable_affine_block=False, stackwise_stage_filters=[[16, 8, 16, 1, 1, 3], [16, 8, 32, 1, 1, 3]],
        apply_downsample=[False, True], use_lightweight_conv_block=[False, True], image_shape=(32, 32, 3))
    converter = keras_hub.layers.HGNetV2ImageConverter(image_size=(32, 32), scale=1 / 255)
    name = save_preset(tmp_path, model, converter)
    stage = numpy(model(IMAGES)["stage2"])
    assert stage.shape == (2, 4, 4, 32)
    unpooled = kt.get_backbone(name, pooling=None)
    np.testing.assert_array_equal(numpy(unpooled.model(IMAGES)), stage)
    avg, top = kt.get_backbone(name), kt.get_backbone(name, pooling="max")
    np.testing.assert_allclose(numpy(avg.model(IMAGES)), stage.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(numpy(top.model(IMAGES)), stage.max(axis=(1, 2)))
    assert tuple(kt.build_classifier(avg, num_classes=3).output.shape) == (None, 3)
    # Loaded from a preset, keras-hub prefixes HGNetV2's layer names with the model's; its spec still applies.
    assert kt.block_names(avg.model) == ["stem", "stage_0", "stage_1"]


@pytest.mark.slow
def test_vision_backbones_build_classifiers(dinov2, siglip):
    for name, _, _ in (dinov2, siglip):
        backbone = kt.get_backbone(name)
        classifier = kt.build_classifier(backbone, num_classes=4)
        assert tuple(classifier(IMAGES).shape) == (2, 4)
        blocks = kt.get_blocks(classifier)
        assert blocks[-1].name == "head"
        assert sum(b.num_params for b in blocks) == classifier.count_params()


# --- text --------------------------------------------------------------------


VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "jumps"]
TEXTS = ["the quick brown fox", "fox jumps"]


@pytest.fixture
def bert(tmp_path):
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)
    model = keras_hub.models.BertBackbone(vocabulary_size=len(VOCABULARY), num_layers=1, num_heads=2,
                                          hidden_dim=16, intermediate_dim=32, max_sequence_length=16)
    return save_preset(tmp_path / "bert", model, preprocessor), model, preprocessor


def test_bert_preprocessing_maps_raw_strings_to_its_inputs_in_tf_data(bert):
    name, _, preprocessor = bert
    backbone = kt.get_backbone(name)
    assert backbone.input_size == 8 and backbone.preprocess.sequence_length == 8
    labels = tf.data.Dataset.from_tensor_slices(([*TEXTS], [0, 1])).batch(2).map(backbone.preprocess)
    x, y = next(iter(labels))
    expected = preprocessor(tf.constant(TEXTS))
    assert sorted(x) == ["padding_mask", "segment_ids", "token_ids"] and y.numpy().tolist() == [0, 1]
    for key in x:
        np.testing.assert_array_equal(x[key].numpy(), expected[key].numpy())
    assert x["token_ids"].numpy().tolist() == [[2, 5, 6, 7, 8, 3, 0, 0], [2, 8, 9, 3, 0, 0, 0, 0]]

    shorter = kt.get_backbone(name, input_shape=(5,))
    assert shorter.input_size == 8 and shorter.preprocess.sequence_length == 5
    assert shorter.preprocess(tf.constant(TEXTS))["token_ids"].numpy().tolist() == [[2, 5, 6, 7, 3], [2, 8, 9, 3, 0]]


def test_text_backbones_build_classifiers_that_train_on_raw_strings(bert, gemma):
    """build_classifier made one image input, so a text backbone's dict of inputs failed (AttributeError)."""
    for name, _, _ in (bert, gemma):
        backbone = kt.get_backbone(name)
        classifier = kt.build_classifier(backbone, num_classes=3, dropout=0.0)
        x = backbone.preprocess(tf.constant(TEXTS))
        assert sorted(classifier.input) == sorted(backbone.model.input)
        features = numpy(backbone.model(x))
        head = classifier.get_layer("head_logits")
        expected = features @ numpy(head.kernel) + numpy(head.bias)
        np.testing.assert_allclose(numpy(classifier(x)), expected, rtol=1e-5, atol=1e-6)
        assert [b.name for b in kt.get_blocks(classifier)][-1] == "head"
        classifier.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        ds = tf.data.Dataset.from_tensor_slices(([*TEXTS], [0, 2])).batch(2).map(backbone.preprocess)
        assert np.isfinite(classifier.fit(ds, epochs=1, verbose=0, shuffle=False).history["loss"][0])


def test_bert_poolings(bert):
    name, original, _ = bert
    x = kt.get_backbone(name).preprocess(tf.constant(TEXTS))
    outputs = {k: numpy(v) for k, v in original(x).items()}
    sequence, mask = outputs["sequence_output"], x["padding_mask"].numpy()

    cls = kt.get_backbone(name)
    assert tuple(cls.model.output.shape) == (None, 16)
    np.testing.assert_array_equal(numpy(cls.model(x)), sequence[:, 0])
    np.testing.assert_array_equal(numpy(kt.get_backbone(name, pooling="pooled").model(x)), outputs["pooled_output"])
    mean = (sequence * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)  # non-padding tokens only
    np.testing.assert_allclose(numpy(kt.get_backbone(name, pooling="mean").model(x)), mean, rtol=1e-6, atol=1e-6)
    unpooled = kt.get_backbone(name, pooling=None)
    assert tuple(unpooled.model.output.shape) == (None, None, 16)
    np.testing.assert_array_equal(numpy(unpooled.model(x)), sequence)
    assert cls.family == "keras_hub.bert" and "Backbone('hub:" in repr(cls) and "'token_ids': (None,)" in repr(cls)
    assert sum(block.num_params for block in kt.get_blocks(cls.model)) == cls.model.count_params()


def gemma_tokenizer():
    """A 12-piece SentencePiece model with Gemma's special tokens (pad 0, eos 1, bos 2)."""
    sentencepiece = pytest.importorskip("sentencepiece")
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["the quick brown fox", "the lazy dog jumps"]), model_writer=proto,
        vocab_size=11, model_type="WORD", pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>",
        eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>", minloglevel=3)
    return keras_hub.models.GemmaTokenizer(proto=proto.getvalue())


@pytest.fixture
def gemma(tmp_path):
    preprocessor = keras_hub.models.GemmaCausalLMPreprocessor(gemma_tokenizer(), sequence_length=6)
    model = keras_hub.models.GemmaBackbone(vocabulary_size=11, num_layers=1, num_query_heads=2,
                                           num_key_value_heads=1, hidden_dim=16, intermediate_dim=32, head_dim=8)
    return save_preset(tmp_path / "gemma", model, preprocessor), model, preprocessor


def test_gemma_pools_the_last_real_token(gemma):
    name, original, preprocessor = gemma
    backbone = kt.get_backbone(name)
    assert backbone.family == "keras_hub.gemma" and backbone.input_size == 6
    x = next(iter(tf.data.Dataset.from_tensor_slices(TEXTS).batch(2).map(backbone.preprocess)))
    expected = preprocessor.generate_preprocess(tf.constant(TEXTS))
    assert sorted(x) == ["padding_mask", "token_ids"]
    for key in x:
        np.testing.assert_array_equal(x[key].numpy(), expected[key].numpy())
    mask = x["padding_mask"].numpy()
    # The start token and no end token, as for generation; right-padded.
    assert x["token_ids"].numpy()[:, 0].tolist() == [2, 2] and mask.sum(axis=1).tolist() == [5, 3]

    hidden = numpy(original(x))
    assert tuple(backbone.model.output.shape) == (None, 16)
    np.testing.assert_array_equal(numpy(backbone.model(x)), hidden[[0, 1], [4, 2]])
    mean = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(numpy(kt.get_backbone(name, pooling="mean").model(x)), mean, rtol=1e-6, atol=1e-6)


def test_last_token_pooling_reads_left_padding_too():
    tokens = np.arange(24, dtype="float32").reshape(2, 4, 3)
    mask = np.array([[False, True, True, True], [True, True, False, False]])
    np.testing.assert_array_equal(numpy(backbones.TokenPooling("last")(tokens, mask)), [tokens[0, 3], tokens[1, 1]])
    layer = backbones.TokenPooling("mean", skip=2)
    assert keras.layers.deserialize(keras.layers.serialize(layer)).get_config() == layer.get_config()


def test_token_pooling_round_trips_through_a_keras_file(tmp_path):
    tokens_in, mask_in = keras.Input((4, 3)), keras.Input((4,), dtype="bool")
    outputs = [backbones.TokenPooling(mode, name=mode)(tokens_in, mask_in) for mode in ("first", "mean", "last")]
    outputs.append(backbones.TokenPooling("mean", skip=1, name="mean_skip")(tokens_in))
    model = keras.Model([tokens_in, mask_in], outputs)
    tokens = np.arange(24, dtype="float32").reshape(2, 4, 3)
    mask = np.array([[True, True, True, False], [False, True, True, True]])
    model.save(tmp_path / "pooling.keras")
    loaded = keras.saving.load_model(tmp_path / "pooling.keras")
    assert [type(layer).__name__ for layer in loaded.layers[2:]] == ["TokenPooling"] * 4
    assert loaded.get_layer("mean_skip").skip == 1
    for before, after in zip(model([tokens, mask]), loaded([tokens, mask])):
        np.testing.assert_array_equal(numpy(after), numpy(before))
    np.testing.assert_array_equal(numpy(loaded([tokens, mask])[2]), [tokens[0, 2], tokens[1, 3]])


# --- errors ------------------------------------------------------------------


def test_pooling_must_be_one_of_the_familys(dinov2, bert, gemma):
    with pytest.raises(ValueError, match=r"`pooling` must be one of 'auto' \(= 'cls'\), 'cls', 'mean', None for "
                                         r"keras-hub DINOV2Backbone. Received: pooling='avg'"):
        kt.get_backbone(dinov2[0], pooling="avg")
    with pytest.raises(ValueError, match=r"one of 'auto' \(= 'cls'\), 'cls', 'mean', 'pooled', None for keras-hub "
                                         r"BertBackbone. Received: pooling='last'"):
        kt.get_backbone(bert[0], pooling="last")
    with pytest.raises(ValueError, match=r"one of 'auto' \(= 'last'\), 'last', 'mean', None for keras-hub "
                                         r"GemmaBackbone. Received: pooling='cls'"):
        kt.get_backbone(gemma[0], pooling="cls")
    with pytest.raises(ValueError, match=r"reads text: `input_shape` must be \(sequence_length,\). "
                                         r"Received: input_shape=\(32, 32, 3\)"):
        kt.get_backbone(bert[0], input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"\(sequence_length,\) with a positive integer. Received: input_shape=\(0,\)"):
        kt.get_backbone(bert[0], input_shape=(0,))
    # keras.applications names keep their own choices.
    with pytest.raises(ValueError, match=r"`pooling` must be one of \[None, 'avg', 'max'\]. Received: pooling='cls'"):
        kt.get_backbone("mobilenet_v2", weights=None, pooling="cls")


def test_offline_preset_names_say_how_to_pass_a_local_directory(monkeypatch):
    import requests

    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Max retries exceeded with url: api.kaggle.com")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", offline)
    with pytest.raises(kt.OfflineError, match=r"Could not download keras-hub preset 'dinov2_small' \(no network\?\)"
                       ) as error:
        kt.get_backbone("hub:dinov2_small")
    assert str(error.value).endswith("and pass that directory: name='hub:/path/to/preset'.")


def test_offline_hugging_face_handles_say_so_too(monkeypatch):
    checked = []

    def missing(*args, **kwargs):  # what keras-hub says once huggingface_hub has given up retrying
        raise ValueError("Preset hf://google/siglip2-base has no config.json. Make sure the URI ...")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", missing)
    monkeypatch.setattr(backbones, "_network_problem", lambda url: checked.append(url) or "could not reach it")
    with pytest.raises(kt.OfflineError, match=r"'hf://google/siglip2-base' \(no network: could not reach it\)"
                       ) as error:
        kt.get_backbone("hub:hf://google/siglip2-base")
    assert checked == ["https://huggingface.co"]
    assert str(error.value).endswith("name='hub:/path/to/preset'.")
    monkeypatch.setattr(backbones, "_network_problem", lambda url: None)
    with pytest.raises(ValueError, match="has no config.json"):  # online: keras-hub's own words
        kt.get_backbone("hub:hf://google/siglip2-base")
