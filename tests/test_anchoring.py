"""L2-SP and WiSE-FT on tiny hand-built models whose right answers are known by construction.

The backbones are chains of Dense blocks named like the demo family (`stem`,
`block1`, `top` in a model called `demo_convnet`), so `kt.get_blocks` splits
them without warnings, under a `kt.build_classifier` head.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_transfer as kt
from keras_transfer.anchoring import PullToPretrained

pytestmark = pytest.mark.core

HEAD_LR, BACKBONE_LR = 0.1, 0.01
X = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
Y = np.arange(16) % 2


def demo_backbone(batch_norm=False, kernel_constraint=None):
    inputs = keras.Input((4,))
    x = keras.layers.Dense(4, name="stem_dense")(inputs)
    x = keras.layers.Dense(4, name="block1_dense", kernel_constraint=kernel_constraint)(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(name="block1_bn")(x)
    x = keras.layers.Dense(4, activation="relu", name="top_dense")(x)
    return keras.Model(inputs, x, name="demo_convnet")


def classifier(seed=0, jit_compile="auto", **backbone_kwargs):
    """stem frozen; block1, top and head trainable; SGD at 0.01 (backbone) and 0.1 (head)."""
    keras.utils.set_random_seed(seed)
    model = kt.unfreeze(kt.build_classifier(demo_backbone(**backbone_kwargs), 2, dropout=0.0), top_blocks=2)
    optimizer = kt.differential_optimizer(model, head_lr=HEAD_LR, backbone_lr=BACKBONE_LR, optimizer="sgd")
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit_compile)
    return model


def numpy_weights(variables):
    return [np.array(ops.convert_to_numpy(v)) for v in variables]


def backbone_variables(model):
    return [v for b in kt.get_blocks(model) if b.name in ("block1", "top") for v in b.trainable_weights]


def head_variables(model):
    return kt.get_block(model, "head").weights


def fit(model, steps):
    """`steps` SGD steps on the same batch of 16, in one epoch."""
    model.fit(np.tile(X, (steps, 1)), np.tile(Y, steps), batch_size=16, shuffle=False, verbose=0)


# --- L2-SP ---------------------------------------------------------------------------


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_pull_of_one_keeps_the_backbone_exactly_at_its_anchor_while_the_head_trains(jit_compile):
    model = classifier(jit_compile=jit_compile)
    # block1 and top: kernel and bias each; stem is frozen and the head is new.
    assert kt.apply_l2_sp(model, weight=1e6) == 4
    anchors = numpy_weights(backbone_variables(model))
    stem, head = numpy_weights(kt.get_block(model, "stem").weights), numpy_weights(head_variables(model))
    fit(model, steps=3)
    for now, anchor in zip(numpy_weights(backbone_variables(model)), anchors):
        assert np.array_equal(now, anchor)
    for now, before in zip(numpy_weights(kt.get_block(model, "stem").weights), stem):
        assert np.array_equal(now, before)
    assert not np.array_equal(numpy_weights(head_variables(model))[0], head[0])


def test_only_trainable_float_backbone_variables_are_anchored_at_their_blocks_rate():
    model = classifier()
    kt.apply_l2_sp(model, weight=20.0)
    anchored = {v.path: v.constraint.strength for v in model.weights if v.constraint is not None}
    assert anchored == {
        "block1_dense/kernel": 0.2, "block1_dense/bias": 0.2, "top_dense/kernel": 0.2, "top_dense/bias": 0.2
    }
    kt.remove_l2_sp(model)

    layer_decay = kt.differential_optimizer(model, head_lr=0.1, layer_decay=0.5, optimizer="sgd")
    kt.apply_l2_sp(model, weight=20.0, optimizer=layer_decay)
    strengths = {v.path: v.constraint.strength for v in model.weights if v.constraint is not None}
    # top is one block below the head (0.1 * 0.5), block1 two (0.1 * 0.25); 20x that, capped at 1.
    assert strengths == {
        "block1_dense/kernel": 0.5, "block1_dense/bias": 0.5, "top_dense/kernel": 1.0, "top_dense/bias": 1.0
    }


def test_one_sgd_step_is_the_plain_step_pulled_back_by_lr_times_weight_and_weight_zero_is_plain():
    plain, zero, anchored = classifier(), classifier(), classifier()
    w0 = numpy_weights(backbone_variables(anchored))
    assert kt.apply_l2_sp(zero, weight=0) == 0
    assert all(v.constraint is None for v in zero.weights)
    kt.apply_l2_sp(anchored, weight=30.0)  # strength 0.01 * 30 = 0.3
    for model in (plain, zero, anchored):
        fit(model, steps=1)
    for a, b in zip(numpy_weights(plain.weights), numpy_weights(zero.weights)):
        assert np.array_equal(a, b)
    for stepped, pulled, start in zip(numpy_weights(backbone_variables(plain)),
                                      numpy_weights(backbone_variables(anchored)), w0):
        assert not np.allclose(stepped, start)
        np.testing.assert_allclose(pulled, stepped - 0.3 * (stepped - start), rtol=1e-6, atol=1e-7)
    # The head is not anchored: its step is the plain one.
    for a, b in zip(numpy_weights(head_variables(plain)), numpy_weights(head_variables(anchored))):
        assert np.array_equal(a, b)


def test_a_moderate_weight_keeps_the_backbone_closer_to_its_start_over_several_steps():
    plain, anchored = classifier(), classifier()
    w0 = numpy_weights(backbone_variables(plain))
    kt.apply_l2_sp(anchored, weight=20.0)

    def distance(model):
        return np.sqrt(sum(np.sum((w - s) ** 2) for w, s in zip(numpy_weights(backbone_variables(model)), w0)))

    fit(plain, steps=10)
    fit(anchored, steps=10)
    assert 0 < distance(anchored) < 0.7 * distance(plain)


def test_anchoring_after_a_first_fit_takes_effect_without_a_recompile():
    model = classifier()
    fit(model, steps=1)  # traces and caches the train step
    kt.apply_l2_sp(model, weight=1e6)
    anchors = numpy_weights(backbone_variables(model))
    fit(model, steps=2)
    for now, anchor in zip(numpy_weights(backbone_variables(model)), anchors):
        assert np.array_equal(now, anchor)


def test_a_users_own_constraint_is_applied_after_the_pull_and_restored_on_removal():
    non_neg = keras.constraints.NonNeg()
    model = classifier(kernel_constraint=non_neg)
    kernel = kt.get_block(model, "block1").layers[0].kernel
    assert kernel.constraint is non_neg
    kernel.assign(-np.ones((4, 4)))  # the anchor is negative everywhere
    kt.apply_l2_sp(model, weight=1e6)
    assert isinstance(kernel.constraint, PullToPretrained) and kernel.constraint.constraint is non_neg
    fit(model, steps=1)
    # Pulled exactly back to -1, then clipped at 0 by the user's constraint.
    assert np.array_equal(ops.convert_to_numpy(kernel), np.zeros((4, 4)))
    assert kt.remove_l2_sp(model) == 4
    assert kernel.constraint is non_neg
    assert kt.remove_l2_sp(model) == 0


def test_anchors_do_not_stack():
    model = classifier()
    kt.apply_l2_sp(model, weight=1.0)
    with pytest.raises(ValueError, match="already anchored.*remove_l2_sp"):
        kt.apply_l2_sp(model, weight=2.0)
    assert {v.constraint.strength for v in backbone_variables(model)} == {0.01}


def test_saving_a_keras_file_of_an_anchored_model_works_and_does_not_keep_the_anchors(tmp_path):
    model = classifier()
    kt.apply_l2_sp(model, weight=30.0)
    fit(model, steps=2)
    path = tmp_path / "anchored.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert np.array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))
    assert all(v.constraint is None for v in loaded.weights)
    assert all(isinstance(v.constraint, PullToPretrained) for v in backbone_variables(model))


def test_pull_to_pretrained_round_trips_its_config_with_the_inner_constraint():
    anchor = np.array([[1.0, -2.0], [0.5, 4.0]], "float32")
    pull = PullToPretrained(anchor, 0.25, constraint=keras.constraints.NonNeg())
    w = np.array([[5.0, 2.0], [-3.5, 0.0]], "float32")
    expected = np.array([[4.0, 1.0], [0.0, 1.0]], "float32")  # w - 0.25 * (w - anchor), then >= 0
    assert np.array_equal(ops.convert_to_numpy(pull(w)), expected)
    for twin in (PullToPretrained.from_config(pull.get_config()),
                 keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pull))):
        assert isinstance(twin, PullToPretrained) and twin.strength == 0.25
        assert twin.anchor.dtype == np.float32
        assert np.array_equal(ops.convert_to_numpy(twin(w)), expected)
    assert np.array_equal(ops.convert_to_numpy(PullToPretrained(anchor, 1.0)(w)), anchor)


def test_l2_sp_arguments_are_validated():
    model = classifier()
    for weight in (-1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match=r"`weight` must be a finite number >= 0. Received: weight="):
            kt.apply_l2_sp(model, weight)
    with pytest.raises(TypeError, match="`model` must be a keras.Model"):
        kt.apply_l2_sp("model", 1.0)
    uncompiled = kt.build_classifier(demo_backbone(), 2)
    with pytest.raises(ValueError, match="`optimizer` is needed"):
        kt.apply_l2_sp(uncompiled, 1.0)
    with pytest.raises(ValueError, match="`optimizer` must be a Keras optimizer"):
        kt.apply_l2_sp(model, 1.0, optimizer="sgd")
    with pytest.raises(ValueError, match=r"`strength` must be a number in \[0, 1\]. Received: strength=2"):
        PullToPretrained(np.zeros(2), 2)


# --- WiSE-FT ---------------------------------------------------------------------------


def pair(batch_norm=True):
    """(pretrained backbone, fine-tuned classifier): every fine-tuned weight differs from its start."""
    keras.utils.set_random_seed(0)
    pretrained = demo_backbone(batch_norm=batch_norm)
    tuned_backbone = keras.models.clone_model(pretrained)
    rng = np.random.default_rng(1)
    tuned_backbone.set_weights([rng.normal(size=w.shape).astype("float32") for w in pretrained.get_weights()])
    if batch_norm:
        variance = tuned_backbone.get_layer("block1_bn").moving_variance
        variance.assign(np.abs(ops.convert_to_numpy(variance)) + 0.5)
    return pretrained, kt.build_classifier(tuned_backbone, 2, dropout=0.0)


def backbone_of(model):
    return model.get_layer("demo_convnet")


def test_alpha_zero_is_the_pretrained_backbone_under_the_fine_tuned_head_exactly():
    pretrained, tuned = pair()
    mixed = kt.interpolate_weights(tuned, pretrained, 0.0)
    for a, b in zip(backbone_of(mixed).get_weights(), pretrained.get_weights()):
        assert np.array_equal(a, b)
    for a, b in zip(mixed.get_layer("head_logits").get_weights(), tuned.get_layer("head_logits").get_weights()):
        assert np.array_equal(a, b)
    expected = tuned.get_layer("head_logits")(pretrained(X))
    np.testing.assert_allclose(mixed.predict(X, verbose=0), ops.convert_to_numpy(expected), rtol=1e-6, atol=1e-6)


def test_alpha_one_is_the_fine_tuned_model_exactly_and_the_inputs_are_untouched():
    pretrained, tuned = pair()
    before_tuned, before_pretrained = tuned.get_weights(), pretrained.get_weights()
    mixed = kt.interpolate_weights(tuned, pretrained, 1.0)
    assert mixed is not tuned
    assert np.array_equal(mixed.predict(X, verbose=0), tuned.predict(X, verbose=0))
    kt.interpolate_weights(tuned, pretrained, 0.5)
    for a, b in zip(tuned.get_weights() + pretrained.get_weights(), before_tuned + before_pretrained):
        assert np.array_equal(a, b)


def test_every_shared_weight_is_interpolated_batch_norm_statistics_included():
    pretrained, tuned = pair()
    mixed = kt.interpolate_weights(tuned, pretrained, 0.25)
    names = [w.path for w in backbone_of(mixed).weights]
    assert "block1_bn/moving_mean" in names and "block1_bn/moving_variance" in names
    for name, m, p, f in zip(names, backbone_of(mixed).get_weights(), pretrained.get_weights(),
                             backbone_of(tuned).get_weights()):
        assert not np.allclose(p, f), name
        np.testing.assert_allclose(m, 0.75 * p + 0.25 * f, rtol=1e-6, atol=1e-7, err_msg=name)


def test_pretrained_may_be_a_backbone_a_kt_backbone_or_a_classifier_snapshot():
    pretrained, tuned = pair()
    snapshot = kt.build_classifier(pretrained, 2, dropout=0.0)  # its own (other) head is ignored
    wrapped = kt.Backbone("demo", pretrained, preprocess=None, input_size=4, spec=None, family="demo")
    reference = kt.interpolate_weights(tuned, pretrained, 0.5).get_weights()
    for other in (snapshot, wrapped):
        for a, b in zip(kt.interpolate_weights(tuned, other, 0.5).get_weights(), reference):
            assert np.array_equal(a, b)


def test_weights_equal_in_both_models_stay_exact():
    pretrained, tuned = pair(batch_norm=False)
    backbone_of(tuned).get_layer("stem_dense").set_weights(pretrained.get_layer("stem_dense").get_weights())
    mixed = kt.interpolate_weights(tuned, pretrained, 0.3)
    for a, b in zip(backbone_of(mixed).get_layer("stem_dense").get_weights(),
                    pretrained.get_layer("stem_dense").get_weights()):
        assert np.array_equal(a, b)


def test_a_lora_layer_is_a_shape_mismatch_that_names_merge_lora():
    pretrained, tuned = pair(batch_norm=False)
    kt.apply_lora(tuned, rank=2, targets=["top"])
    with pytest.raises(ValueError, match=r"'top_dense' of `pretrained`.*block 'top'.*kt.merge_lora"):
        kt.interpolate_weights(tuned, pretrained, 0.5)


def test_interpolation_arguments_are_validated():
    pretrained, tuned = pair(batch_norm=False)
    for alpha in (-0.1, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match=r"`alpha` must be a number in \[0, 1\]. Received: alpha="):
            kt.interpolate_weights(tuned, pretrained, alpha)
    with pytest.raises(TypeError, match="`pretrained` must be a keras.Model or a kt.Backbone"):
        kt.interpolate_weights(tuned, "imagenet", 0.5)
    with pytest.raises(TypeError, match="`fine_tuned` must be a keras.Model"):
        kt.interpolate_weights(None, pretrained, 0.5)
    stranger = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="block7_dense")], name="demo_convnet")
    with pytest.raises(ValueError, match="share no backbone weights"), pytest.warns(UserWarning):
        kt.interpolate_weights(tuned, stranger, 0.5)


def sign_flip_models():
    """Pretrained stem = I, fine-tuned stem = -I, head reads feature 0: accuracy 1, then 0 past alpha 0.5."""
    inputs = keras.Input((2,))
    x = keras.layers.Dense(2, name="stem_dense", use_bias=False, kernel_initializer="identity")(inputs)
    pretrained = keras.Model(inputs, x, name="demo_convnet")
    source = kt.build_classifier(pretrained, 2, dropout=0.0)
    source.get_layer("head_logits").set_weights([np.array([[-1.0, 1.0], [0.0, 0.0]]), np.zeros(2)])
    tuned_backbone = keras.models.clone_model(pretrained)
    tuned_backbone.get_layer("stem_dense").set_weights([-np.eye(2)])
    tuned = kt.build_classifier(tuned_backbone, 2, dropout=0.0)
    tuned.get_layer("head_logits").set_weights(source.get_layer("head_logits").get_weights())
    x = np.array([[1.0, 0.3], [-1.0, 0.2], [2.0, -0.5], [-0.5, -1.0]] * 3, "float32")
    return pretrained, source, tuned, (x, (x[:, 0] > 0).astype("int64"))


def test_wise_ft_scores_each_alpha_and_breaks_ties_toward_the_pretrained_side(capsys):
    pretrained, _, tuned, data = sign_flip_models()
    result = kt.wise_ft(tuned, pretrained, data, verbose=1)
    assert "WiSE-FT alpha 0.5, accuracy 0.5" in capsys.readouterr().out
    # Stem (1 - 2 alpha) I: right for alpha < 0.5, all-zero logits (argmax 0, half right) at 0.5, wrong after.
    assert result.table.columns.tolist() == ["alpha", "accuracy"]
    assert result.table.alpha.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert result.table.accuracy.tolist() == [1.0, 1.0, 0.5, 0.0, 0.0]
    assert result.best_alpha == 0.0
    stem = result.model.get_layer("demo_convnet").get_layer("stem_dense").get_weights()[0]
    assert np.array_equal(stem, np.eye(2))


class Batches:
    """A re-iterable dataset of (x, one-hot y) batches, as a tf.data.Dataset is."""

    def __init__(self, x, y, size):
        self.batches = [(x[i:i + size], np.eye(2)[y[i:i + size]]) for i in range(0, len(x), size)]

    def __iter__(self):
        return iter(self.batches)


def test_wise_ft_with_source_data_reports_source_accuracy_and_retention_and_plots_both():
    from matplotlib.figure import Figure

    pretrained, source, tuned, (x, y) = sign_flip_models()
    result = kt.wise_ft(tuned, pretrained, Batches(x, y, 4), alphas=(1.0, 0.25, 0.5), source_model=source,
                        source_ds=(x, y))
    table = result.table
    assert table.columns.tolist() == ["alpha", "accuracy", "source_accuracy", "retained"]
    assert table.accuracy.tolist() == [0.0, 1.0, 0.5]
    assert table.source_accuracy.tolist() == [0.0, 1.0, 0.5]
    assert table.retained.tolist() == [0.0, 1.0, 0.5]
    assert result.best_alpha == 0.25
    figure = result.plot()
    assert isinstance(figure, Figure)
    (axes,) = figure.axes
    assert len(axes.lines) == 3  # target, source, best alpha
    assert axes.lines[1].get_ydata().tolist() == [0.0, 1.0, 0.5]


def test_wise_ft_arguments_are_validated():
    pretrained, source, tuned, data = sign_flip_models()
    for alphas in ((), (0.5, 0.5), (0, 2), 0.5, "0.5"):
        with pytest.raises(ValueError, match=r"`alphas` must .* Received: alphas="):
            kt.wise_ft(tuned, pretrained, data, alphas=alphas)
    with pytest.raises(ValueError, match="`source_model` and `source_ds` together"):
        kt.wise_ft(tuned, pretrained, data, source_model=source)
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer. Received: batch_size=0"):
        kt.wise_ft(tuned, pretrained, data, batch_size=0)
    with pytest.raises(TypeError, match="`val_ds` must be"):
        kt.wise_ft(tuned, pretrained, 5)
    with pytest.raises(ValueError, match="`val_ds` is read once per alpha"):
        kt.wise_ft(tuned, pretrained, iter(Batches(*data, 4)))
