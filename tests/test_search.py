"""Choosing depth and rates by trial: the halving schedule on its own, `strategy="auto"`, best across phases."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pandas as pd
import pytest

import keras_transfer as kt
from keras_transfer import data, demo
from keras_transfer.search import Candidate, default_candidates, plot_search, successive_halving

pytestmark = pytest.mark.core
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _counting_trainer(quality):
    """Scores grow with epochs at a per-candidate speed known in advance; spent epochs are counted."""
    spent = {}

    def train(candidate, epochs):
        spent[candidate] = spent.get(candidate, 0) + epochs
        return quality[candidate] * spent[candidate]

    return train, spent


def test_halving_keeps_the_known_best_candidate_and_spends_the_schedule():
    quality = {"a": 0.10, "b": 0.40, "c": 0.30, "d": 0.20, "e": 0.05}
    train, spent = _counting_trainer(quality)
    winner, table = successive_halving(list(quality), train, max_epochs=6)
    # rung 0: all 5 to 1 epoch, keep 3 (b, c, d); rung 1: to 2 epochs, keep 2 (b, c); rung 2: to 4, keep b;
    # then b alone to 6.
    assert winner == "b"
    assert spent == {"a": 1, "b": 6, "c": 4, "d": 2, "e": 1}
    assert table.epochs.sum() == sum(spent.values()) == 14
    assert list(table.rung) == [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3]
    assert table[~table.kept].candidate.tolist() == ["a", "e", "d", "c"]


def test_halving_budget_bounds_the_epochs_spent():
    quality = {"a": 0.10, "b": 0.40, "c": 0.30, "d": 0.20}
    for budget in (1, 3, 5, 7, 100):
        train, spent = _counting_trainer(quality)
        winner, table = successive_halving(list(quality), train, max_epochs=5, budget=budget)
        assert sum(spent.values()) == table.epochs.sum() == min(budget, 4 + 2 + 3)
        # Out of budget, the best candidate scored so far wins.
        assert winner == max(spent, key=lambda c: quality[c] * spent[c])
    train, spent = _counting_trainer(quality)
    assert successive_halving(list(quality), train, max_epochs=5, budget=3)[0] == "b"


def test_halving_with_eta_3_and_verbose(capsys):
    quality = {name: q for name, q in zip("abcdefg", [0.1, 0.2, 0.7, 0.4, 0.5, 0.3, 0.6])}
    train, spent = _counting_trainer(quality)
    winner, _ = successive_halving(list(quality), train, max_epochs=9, eta=3, verbose=1)
    assert winner == "c"
    # rung 0 keeps ceil(7/3) = 3 (c, g, e); rung 1 (3 epochs) keeps c; c runs to 9.
    assert spent == {"a": 1, "b": 1, "c": 9, "d": 1, "e": 3, "f": 1, "g": 3}
    assert "rung 0: c" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(candidates=[]), "`candidates` must be a non-empty list. Received: candidates=[]"),
        (dict(budget=0), "`budget` must be a positive integer (epochs) or None. Received: budget=0"),
        (dict(budget=-2), "Received: budget=-2"),
        (dict(max_epochs=0), "`max_epochs` must be an integer >= 1. Received: max_epochs=0"),
        (dict(min_epochs=3, max_epochs=2), "Received: min_epochs=3, max_epochs=2"),
        (dict(eta=1), "`eta` must be an integer >= 2. Received: eta=1"),
        (dict(candidates=["a", "a"]), "distinct names. Received names: ['a', 'a']"),
    ],
)
def test_halving_rejects_bad_arguments(kwargs, message):
    args = {**dict(candidates=["a", "b"], train=lambda c, e: 0.0, max_epochs=2), **kwargs}
    with pytest.raises(ValueError) as error:
        successive_halving(args.pop("candidates"), args.pop("train"), **args)
    assert message in str(error.value)


def test_default_candidates_span_none_to_all_blocks():
    names = [c.name for c in default_candidates(18)]
    assert names == ["feature_extraction", "top_2@1e-05", "top_9@1e-04", "all_18@1e-04_decay0.8"]
    # With one block, depth cannot spread: the rates still do.
    assert [c.name for c in default_candidates(1)] == ["feature_extraction", "all_1@1e-05", "all_1@1e-04",
                                                       "all_1@1e-04_decay0.8"]
    assert {c.backbone_lr for c in default_candidates(5, backbone_lr="find")[1:]} == {"find"}
    with pytest.raises(ValueError, match="Received: num_backbone_blocks=0"):
        default_candidates(0)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(name="", top_blocks=1), "`name` must be a non-empty string. Received: name=''"),
        (dict(name="x", top_blocks=-2), "Received: top_blocks=-2"),
        (dict(name="x", top_blocks=1, backbone_lr=0.0), "Received: backbone_lr=0.0"),
        (dict(name="x", top_blocks=1, layer_decay=1.5), "Received: layer_decay=1.5"),
    ],
)
def test_a_candidate_checks_its_fields(kwargs, message):
    with pytest.raises(ValueError) as error:
        Candidate(**kwargs)
    assert message in str(error.value)


def test_plot_search_draws_one_line_per_candidate():
    table = pd.DataFrame({"candidate": ["a", "b", "a"], "total_epochs": [1, 1, 2],
                          "score": [(0.5, -1.0), (0.4, -1.2), (0.6, -0.9)]})
    figure = plot_search(table)
    lines = figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["a", "b"]
    np.testing.assert_array_equal(lines[0].get_ydata(), [0.5, 0.6])
    with pytest.raises(ValueError, match="columns"):
        plot_search(pd.DataFrame({"x": [1]}))


# --- fine_tune ----------------------------------------------------------------------------


def _shapes():
    """Fresh, identically seeded datasets (a reused shuffled dataset reshuffles differently).

    Call it after `_backbone()`: tf.data derives its shuffle seed from the global seed too.
    """
    x_train, y_train = demo.make_shapes(demo.TARGET_SHAPES, per_class=8, seed=3)
    x_val, y_val = demo.make_shapes(demo.TARGET_SHAPES, per_class=8, seed=4)
    return (data.from_arrays(x_train, y_train, batch_size=16, shuffle=True, seed=0),
            data.from_arrays(x_val, y_val, batch_size=32))


def _backbone():
    keras.utils.clear_session()  # also resets Keras' global seed generator, so two runs start alike
    keras.utils.set_random_seed(7)
    return demo.build_demo_backbone()


def _weights(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


class _Sabotage(keras.callbacks.Callback):
    """Makes phase 2 worse by construction: negates the head's logits before every phase-2 epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        if self.model.name != "head":  # phase 1 fits the head model on cached features
            kernel = self.model.get_layer("head_logits").kernel
            kernel.assign(-kernel)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="Keras' JAX trainer trains a copy of the weights during fit: a callback's assignment "
                           "does not reach training, so the sabotage needs TensorFlow")
def test_a_phase_that_gets_worse_hands_back_the_head_phase_exactly():
    backbone = _backbone()
    train_ds, val_ds = _shapes()
    head_only = kt.fine_tune(backbone, train_ds, val_ds, num_classes=4, head_epochs=3, fine_tune_epochs=0,
                             head_lr=0.03, early_stopping=False, verbose=0)
    backbone = _backbone()
    train_ds, val_ds = _shapes()
    result = kt.fine_tune(backbone, train_ds, val_ds, num_classes=4, head_epochs=3, fine_tune_epochs=2,
                          head_lr=0.03, early_stopping=False, callbacks=[_Sabotage()], verbose=0)
    assert result.best_phase == "head"
    phase2 = result.history[result.history.phase == "fine_tune"]
    assert phase2.val_accuracy.max() < result.history[result.history.phase == "head"].val_accuracy.max()
    for before, after in zip(_weights(head_only.model), _weights(result.model)):
        np.testing.assert_array_equal(before, after)
    assert result.metrics["accuracy"] == pytest.approx(head_only.metrics["accuracy"])


def test_each_phase_ends_at_its_best_epoch_by_monitor():
    train_ds, val_ds = _shapes()
    result = kt.fine_tune(_backbone(), train_ds, val_ds, num_classes=4, head_epochs=4, fine_tune_epochs=0,
                          early_stopping=False, monitor="val_loss", verbose=0)
    best = result.history.val_loss.min()
    assert result.metrics["loss"] == pytest.approx(best, rel=1e-5)


@pytest.mark.slow
def test_auto_runs_successive_halving_from_one_head():
    backbone = _backbone()
    train_ds, val_ds = _shapes()
    result = kt.fine_tune(backbone, train_ds, val_ds, num_classes=4, head_epochs=1, fine_tune_epochs=3,
                          strategy="auto", verbose=0)
    search = result.search
    # demo_convnet: stem, block1..3, top = 5 backbone blocks; it has a Dense layer, so LoRA is a candidate.
    # Its random BatchNorm statistics are far from any data (median shift ~1.9, 'most'): no feature extraction.
    names = ["top_2@1e-05", "top_2@1e-04", "all_5@1e-04_decay0.8", "lora"]
    assert list(dict.fromkeys(search.candidate)) == names
    # 4 candidates x 1 epoch; 2 to 2 epochs; 1 runs on to 3: 4 + 2 + 1 = 7 epochs.
    assert list(search.rung) == [0] * 4 + [1] * 2 + [2]
    assert search.epochs.sum() == 7
    winner = search[search.winner]
    assert winner.candidate.nunique() == 1 and winner.total_epochs.max() == 3
    assert result.best_phase in ["head"] + names
    phases = list(dict.fromkeys(result.history.phase))
    assert phases[0] == "head" and all(p.startswith("auto:") for p in phases[1:])
    assert len(result.history) == 1 + 7
    figure = result.plot_search()
    assert len(figure.axes[0].get_lines()) == 4


@pytest.mark.slow
def test_auto_budget_and_named_candidates():
    train_ds, val_ds = _shapes()
    candidates = ["feature_extraction", "full", Candidate("deep_slow", 3, 1e-5)]
    result = kt.fine_tune(_backbone(), train_ds, val_ds, num_classes=4, head_epochs=1, fine_tune_epochs=4,
                          strategy="auto", candidates=candidates, budget=4, early_stopping=False, verbose=0)
    assert result.search.epochs.sum() == 4
    assert list(dict.fromkeys(result.search.candidate)) == ["feature_extraction", "full", "deep_slow"]


@pytest.mark.slow
def test_auto_returns_the_best_model_it_saw():
    train_ds, val_ds = _shapes()
    result = kt.fine_tune(_backbone(), train_ds, val_ds, num_classes=4, head_epochs=1, fine_tune_epochs=2,
                          strategy="auto", candidates=["feature_extraction", "full"], verbose=0)
    scored = result.history.dropna(subset=["val_accuracy"])
    best = scored.sort_values(["val_accuracy", "val_loss"], ascending=[False, True]).iloc[0]
    assert result.metrics["accuracy"] == pytest.approx(best.val_accuracy)
    assert result.metrics["loss"] == pytest.approx(best.val_loss, rel=1e-4)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(strategy="auto", budget=0), "`budget` must be a positive integer (epochs over all candidates). "
                                          "Received: budget=0"),
        (dict(strategy="auto", candidates=[]), "`candidates` must be a non-empty list. Received: candidates=[]"),
        (dict(strategy="auto", candidates=["deepest"]), "Unknown candidate in `candidates`: 'deepest'. Valid names:"),
        (dict(strategy="fine_tune", budget=3), "`budget` is for strategy='auto' only. "
                                               "Received: strategy='fine_tune', budget=3"),
        (dict(strategy="full", candidates=["full"]), "`candidates` is for strategy='auto' only."),
        (dict(monitor=""), "`monitor` must be the name of a log value"),
        (dict(l2_sp=-1.0), "`l2_sp` must be a number >= 0 or None. Received: l2_sp=-1.0"),
        (dict(strategy="feature_extraction", l2_sp=0.1), "Received: strategy='feature_extraction', l2_sp=0.1"),
        (dict(head_lr="fast"), "`head_lr` must be a positive number or 'find'. Received: head_lr='fast'"),
    ],
)
def test_fine_tune_rejects_bad_choice_options(kwargs, message):
    train_ds, val_ds = _shapes()
    with pytest.raises(ValueError) as error:
        kt.fine_tune(_backbone(), train_ds, val_ds, num_classes=4, head_epochs=1, fine_tune_epochs=1, verbose=0,
                     **kwargs)
    assert message in str(error.value)


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute.MirroredStrategy")
def test_auto_and_best_across_phases_under_a_two_replica_mirrored_strategy():
    # A fresh process: logical devices must be set before TensorFlow initialises.
    script = textwrap.dedent(
        """
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, numpy as np
        import keras_transfer as kt
        from keras_transfer import data, demo
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        keras.utils.set_random_seed(7)
        x, y = demo.make_shapes(demo.TARGET_SHAPES, per_class=8, seed=3)
        xv, yv = demo.make_shapes(demo.TARGET_SHAPES, per_class=8, seed=4)
        train_ds = data.from_arrays(x, y, batch_size=16, shuffle=True, seed=0)
        val_ds = data.from_arrays(xv, yv, batch_size=32)
        with strategy.scope():
            backbone = demo.build_demo_backbone()
            result = kt.fine_tune(backbone, train_ds, val_ds, num_classes=4, head_epochs=1, fine_tune_epochs=2,
                                  strategy="auto", candidates=["feature_extraction", "full", "lora"], verbose=0)
        assert result.search.epochs.sum() == 3 + 2, result.search
        scored = result.history.dropna(subset=["val_accuracy"])
        best = scored.sort_values(["val_accuracy", "val_loss"], ascending=[False, True]).iloc[0]
        np.testing.assert_allclose(result.metrics["accuracy"], best.val_accuracy)
        np.testing.assert_allclose(result.metrics["loss"], best.val_loss, rtol=1e-4)
        print("OK", result.best_phase)
        """
    )
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1].startswith("OK")


def _top_kernel(model):
    backbone = model.get_layer("demo_convnet") if model.name != "demo_convnet" else model
    return keras.ops.convert_to_numpy(backbone.get_layer("top_dense").kernel)


def test_l2_sp_with_a_huge_weight_keeps_fine_tuned_blocks_at_their_pretrained_values():
    pretrained = _top_kernel(_backbone())
    # Without validation data nothing is selected: the model is phase 2's last epoch.
    for l2_sp, moved in ((1e9, False), (None, True)):
        backbone = _backbone()
        train_ds, _ = _shapes()
        result = kt.fine_tune(backbone, train_ds, num_classes=4, head_epochs=1, fine_tune_epochs=2,
                              backbone_lr=1e-2, l2_sp=l2_sp, verbose=0)
        assert result.best_phase is None
        assert (not np.array_equal(_top_kernel(result.model), pretrained)) == moved
    # The anchors are gone once fine_tune returns.
    assert all(v.constraint is None for v in result.model.trainable_variables)


def test_learning_rates_found_by_lr_find_are_used_and_reported():
    backbone = _backbone()
    train_ds, val_ds = _shapes()
    result = kt.fine_tune(backbone, train_ds, val_ds, num_classes=4, head_epochs=1, fine_tune_epochs=1,
                          head_lr="find", backbone_lr="find", verbose=0)
    found = result.learning_rates
    assert set(found) == {"head_lr", "backbone_lr"}
    assert 1e-7 < found["backbone_lr"] < found["head_lr"] <= 10.0
    assert result.history.head_lr.iloc[0] == pytest.approx(found["head_lr"])
    assert result.history.backbone_lr.iloc[1] == pytest.approx(found["backbone_lr"])


def _matched_bn_backbone(x):
    """Identity Dense blocks, each followed by BatchNorm storing exactly the statistics it will see from `x`."""
    inputs = keras.Input((x.shape[1],))
    h = inputs
    for name in ("stem", "block1", "top"):
        h = keras.layers.Dense(x.shape[1], use_bias=False, kernel_initializer="identity", name=f"{name}_dense")(h)
        h = keras.layers.BatchNormalization(name=f"{name}_bn")(h)
    model = keras.Model(inputs, h, name="demo_convnet")
    mean, var = x.astype("float64").mean(0), x.astype("float64").var(0)
    for name in ("stem", "block1", "top"):
        bn = model.get_layer(f"{name}_bn")
        bn.set_weights([np.ones_like(mean), np.zeros_like(mean), mean, var])
        mean, var = np.zeros_like(mean), var / (var + bn.epsilon)
    return model


def test_auto_leaves_out_the_depths_the_batchnorm_shift_argues_against():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32") * [1.0, 2.0, 0.5, 1.5]
    y = (x[:, 0] > 0).astype("int32")
    found = {}
    for name, shift in (("near", 0.0), ("far", 3.0)):
        backbone = _matched_bn_backbone(x)
        train_ds = tf.data.Dataset.from_tensor_slices((x + shift * x.std(0), y)).batch(32)
        result = kt.fine_tune(backbone, train_ds, train_ds, num_classes=2, head_epochs=1, fine_tune_epochs=1,
                              strategy="auto", lora_rank=2, verbose=0)
        found[name] = list(dict.fromkeys(result.search.candidate))
    # 3 blocks: feature extraction, top 2 at 1e-5, top 1 (half) at 1e-4, all 3 with decay; LoRA (Dense layers).
    assert found["near"] == ["feature_extraction", "top_2@1e-05", "top_1@1e-04", "lora"]  # shift ~0: never all
    assert found["far"] == ["top_2@1e-05", "top_1@1e-04", "all_3@1e-04_decay0.8", "lora"]  # ~4.5: never none
