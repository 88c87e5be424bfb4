"""The demo's conclusion follows its measured table; the real demo reads each photo once."""

import pandas as pd
import pytest

from keras_transfer import demo

pytestmark = pytest.mark.core


def table(**accuracy):
    """A demo table with these accuracies; scratch is the slowest, as it is when measured."""
    times = {"scratch": 109.0, "feature_extraction": 9.6, "fine_tune": 31.2, "lora": 10.3}
    return pd.DataFrame({
        "strategy": list(accuracy),
        "accuracy": list(accuracy.values()),
        "trainable_params": [1000] * len(accuracy),
        "wall_time_s": [times[s] for s in accuracy],
    })


SCRATCH_COST = ("Scratch is the slowest (109.0 s) at the same epochs: it trains every weight through every image "
                "each epoch, where feature extraction trains a head on features computed once.")


def test_verdict_says_feature_extraction_won_on_a_near_domain_as_expected():
    # What `keras-transfer demo --real` measured on ants/bees for issue 18.
    lines = demo.verdict(table(scratch=0.5425, feature_extraction=0.9085, fine_tune=0.8889),
                         near_domain=True).splitlines()
    assert lines == [
        "Best: feature_extraction, 0.908 accuracy, +0.366 over scratch (0.542).",
        "Fine-tuning does not beat feature extraction (0.889 vs 0.908, -0.020): the expected lesson on a near "
        "domain. The target looks like the source's images, so the frozen features already fit it and "
        "fine-tuning has little to add (on few images it can lose a little); fine-tuning pays off on targets "
        "far from the source.",
        SCRATCH_COST,
    ]


def test_verdict_says_fine_tuning_won_and_by_how_much():
    lines = demo.verdict(table(scratch=0.3267, feature_extraction=0.745, fine_tune=0.915, lora=0.9333)).splitlines()
    assert lines == [
        "Best: lora, 0.933 accuracy, +0.607 over scratch (0.327).",
        "Fine-tuning beats feature extraction by +0.170 (0.915 vs 0.745).",
        SCRATCH_COST,
    ]


def test_verdict_calls_a_near_domain_win_by_a_hair_a_tie():
    # What `keras-transfer demo --real` measured after issue 18's change.
    lines = demo.verdict(table(scratch=0.4575, feature_extraction=0.9183, fine_tune=0.9216),
                         near_domain=True).splitlines()
    assert lines[1] == (
        "Fine-tuning beats feature extraction by +0.003 (0.922 vs 0.918), under the 0.02 that counts as a tie: "
        "on a near domain the frozen features already fit the target, so fine-tuning has little to add.")
    wide = demo.verdict(table(feature_extraction=0.9183, fine_tune=0.9216), near_domain=True, tolerance=0.002)
    assert wide.splitlines()[1] == "Fine-tuning beats feature extraction by +0.003 (0.922 vs 0.918)."
    with pytest.raises(ValueError, match=r"`tolerance` must be a number in \[0, 1\). Received: tolerance=2"):
        demo.verdict(table(scratch=0.5), tolerance=2)


def test_verdict_when_fine_tuning_loses_on_a_far_domain_or_scratch_wins():
    far = demo.verdict(table(feature_extraction=0.8, fine_tune=0.8)).splitlines()
    assert far == [
        "Best: feature_extraction and fine_tune, 0.800 accuracy.",
        "Fine-tuning does not beat feature extraction (0.800 vs 0.800, +0.000) on this target and budget.",
    ]
    negative = demo.verdict(table(scratch=0.7, feature_extraction=0.6)).splitlines()
    assert negative[0] == ("Best: scratch, 0.700 accuracy: no transfer strategy beat training from scratch, so "
                           "the pretrained features did not help this target.")


def test_verdict_rejects_a_table_without_the_demo_columns():
    with pytest.raises(ValueError, match=r"`table` must have the columns \['strategy', 'accuracy', 'wall_time_s'\]"
                                         r" of demo.run's table. Received columns: \['accuracy'\]"):
        demo.verdict(pd.DataFrame({"accuracy": [0.5]}))
    with pytest.raises(ValueError, match=r"`near_domain` must be a bool. Received: near_domain='yes'"):
        demo.verdict(table(scratch=0.5), near_domain="yes")


def test_run_real_decodes_each_photo_once(monkeypatch, mobilenet_weights, hymenoptera_dir):
    import tensorflow as tf

    seen = {}

    def record(backbone, train_ds, val_ds, strategies, settings, out_dir, stem):
        seen.update(train=train_ds, val=val_ds)

    monkeypatch.setattr(demo, "_compare", record)
    demo.run_real(mobilenet_weights.parents[1], image_size=32)

    def ops(dataset):
        graph = tf.raw_ops.DatasetToGraphV2(input_dataset=tf.data.experimental.to_variant(dataset),
                                            external_state_policy=1)
        return {node.op for node in tf.compat.v1.GraphDef.FromString(graph.numpy()).node}

    # Scratch passes over the photos every epoch, through the whole model; decoding
    # them once (up to 2592x1944 JPEGs) is the saving that changes no result.
    assert "CacheDatasetV2" in ops(seen["train"]) and "CacheDatasetV2" in ops(seen["val"])
