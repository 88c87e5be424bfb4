"""The workflow under real multi-replica distributions, against one device: the same numbers.

A `MirroredStrategy` over 2 logical CPU devices (TensorFlow) and a
`keras.distribution.DataParallel` over 4 host devices (JAX) are set before
their backend initialises, so each configuration runs in a process of its own
(`multi_replica_scenarios.py`), several scenarios to a process, and prints one
JSON line per scenario. The global batch (8) and the seeds are the same on one
device and on several, so every number must agree up to float rounding.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import HAVE_TENSORFLOW, REPO

SCRIPT = REPO / "tests" / "multi_replica_scenarios.py"
needs_tensorflow = pytest.mark.skipif(not HAVE_TENSORFLOW, reason="the loaders and MirroredStrategy need TensorFlow")


def run(backend, devices, *scenarios):
    """The scenarios' JSON results by name, from a fresh process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, str(SCRIPT), backend, str(devices), *scenarios], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {r.pop("scenario"): r for r in results}


def assert_same_run(one, many):
    """Same metrics and the same history, epoch by epoch, up to float rounding."""
    assert many.keys() == one.keys()
    for key in one:
        np.testing.assert_allclose(np.asarray(many[key], dtype=float), np.asarray(one[key], dtype=float),
                                   rtol=2e-4, atol=2e-5, err_msg=key)


# The default run keeps MirroredStrategy (the reported crash) on the default strategy; the rest is slow.
FAST = ("evaluate",)
SLOW = ("strategy:lora", "remainder", "strategy:scratch", "strategy:feature_extraction", "strategy:full",
        "strategy:auto", "layer_decay", "gradual_unfreezing")
CONFIGS = [("tensorflow", 2), ("jax", 4)]
IDS = ["mirrored-2", "jax-data-parallel-4"]
_DONE = {}


def one_and_many(backend, devices, scenarios):
    """The scenarios on one device and on `devices`, each side in one process, run once per test session."""
    key = (backend, devices, scenarios)
    if key not in _DONE:
        _DONE[key] = backend, run(backend, 1, *scenarios), run(backend, devices, *scenarios)
    return _DONE[key]


@pytest.fixture(scope="module", params=[CONFIGS[0], pytest.param(CONFIGS[1], marks=pytest.mark.slow)], ids=IDS)
def fast_runs(request):
    backend, devices = request.param
    # The slow configuration runs every scenario in the processes the slow tests share.
    return one_and_many(backend, devices, FAST if backend == "tensorflow" else FAST + SLOW)


@pytest.fixture(scope="module", params=CONFIGS, ids=IDS)
def all_runs(request):
    return one_and_many(*request.param, FAST + SLOW)


@needs_tensorflow
def test_fine_tune_with_cached_features_matches_one_device(fast_runs):
    _, one, many = fast_runs
    name = "evaluate"  # strategy="fine_tune", then kt.evaluate
    assert many[name]["phases"] == one[name]["phases"] == ["head", "fine_tune"]
    assert_same_run(one[name]["metrics"], many[name]["metrics"])
    assert_same_run(one[name]["history"], many[name]["history"])


@needs_tensorflow
@pytest.mark.slow
def test_lora_with_cached_features_matches_one_device(all_runs):
    _, one, many = all_runs
    assert many["strategy:lora"]["phases"] == one["strategy:lora"]["phases"] == ["head", "lora"]
    assert_same_run(one["strategy:lora"]["metrics"], many["strategy:lora"]["metrics"])
    assert_same_run(one["strategy:lora"]["history"], many["strategy:lora"]["history"])


@needs_tensorflow
def test_evaluate_reads_each_example_once(fast_runs):
    # Under a MirroredStrategy `predict_on_batch` returned every batch once per replica: 32 rows for 16 labels.
    _, one, many = fast_runs
    assert np.sum(many["evaluate"]["confusion"]) == np.sum(one["evaluate"]["confusion"]) == 16
    assert many["evaluate"]["confusion"] == one["evaluate"]["confusion"]
    np.testing.assert_allclose(many["evaluate"]["accuracy"], many["evaluate"]["metrics"]["accuracy"])


@needs_tensorflow
@pytest.mark.slow
def test_a_last_partial_batch_trains(all_runs):
    # 36 examples in batches of 8: a MirroredStrategy splits the last 4 over its replicas; a JAX
    # distribution cannot split a batch its devices do not divide, so its loaders drop the remainder.
    backend, one, many = all_runs
    assert one["remainder"]["train_batches"] == 5
    assert many["remainder"]["train_batches"] == (5 if backend == "tensorflow" else 4)
    if backend == "tensorflow":
        assert_same_run(one["remainder"]["metrics"], many["remainder"]["metrics"])


@needs_tensorflow
@pytest.mark.slow
def test_every_strategy_and_gradual_unfreezing_match_one_device(all_runs):
    _, one, many = all_runs
    for name in (n for n in SLOW if n != "remainder"):  # a JAX distribution drops the remainder's last batch
        for key in ("metrics", "history"):
            if key in one[name]:
                assert_same_run(one[name][key], many[name][key])
    np.testing.assert_allclose(many["gradual_unfreezing"]["top_kernel_sum"],
                               one["gradual_unfreezing"]["top_kernel_sum"], rtol=1e-4)


@needs_tensorflow
@pytest.mark.slow
@pytest.mark.parametrize("backend, devices", CONFIGS, ids=IDS)
def test_run_killed_mid_epoch_resumes_under_the_distribution(tmp_path, backend, devices):
    directory = str(tmp_path / "ckpt")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    killed = subprocess.run([sys.executable, str(SCRIPT), backend, str(devices), f"killed={directory}"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == 17, killed.stderr[-3000:]
    assert keras.saving.load_model(tmp_path / "ckpt" / "fine_tune" / "last.keras") is not None
    done = subprocess.run([sys.executable, str(SCRIPT), backend, str(devices), f"resumed={directory}"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Phase 'head' finished in an earlier run: skipped, its weights loaded from {tmp_path / 'ckpt' / 'head'}" \
        in done.stdout
    assert f"Resuming phase 'fine_tune' after epoch 1 of 3, from the backup in {tmp_path / 'ckpt' / 'fine_tune'}" \
        in done.stdout
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert result["phases"] == ["head", "fine_tune", "fine_tune", "fine_tune"]
    assert result["history"]["epoch"] == [1, 2, 3, 4]
    assert all(np.isfinite(result["history"]["val_loss"]))
