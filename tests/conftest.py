"""Shared test fixtures: quiet logs, seeded Keras, and the real assets in ../shared.

Without TensorFlow installed (CI's JAX-only environment), a test or test file
that needs it, through tf.data or `keras_transfer.data`, is reported as
skipped instead of failed: its ImportError names TensorFlow.
"""

import importlib.util
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402

# Many tests build small `demo_convnet`-named models; the demo module registers
# that block spec, as a user registers their own architecture's.
import keras_transfer.demo  # noqa: E402,F401

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("KERAS_TRANSFER_SHARED", REPO.parent / "shared"))
ASSETS = SHARED / "assets"
MOBILENET_NO_TOP = ASSETS / "weights" / "mobilenet_v2_1.0_224_imagenet_torchvision_no_top.weights.h5"
HYMENOPTERA = ASSETS / "hymenoptera_data"
HAVE_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None


def _needs_missing_tensorflow(excinfo):
    return (not HAVE_TENSORFLOW and excinfo is not None and excinfo.errisinstance(ImportError)
            and "tensorflow" in str(excinfo.value))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.failed and _needs_missing_tensorflow(call.excinfo):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1], "Skipped: needs TensorFlow, which is not installed")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    report = (yield).get_result()
    text = str(report.longrepr)
    if report.failed and not HAVE_TENSORFLOW and "tensorflow" in text and "Error" in text:
        report.outcome = "skipped"
        report.longrepr = (str(collector.path), None, "Skipped: needs TensorFlow, which is not installed")


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


@pytest.fixture
def keras_downloads_fail(monkeypatch, tmp_path):
    """An empty Keras cache whose downloads fail as they do without a network (name resolution)."""
    import socket
    import urllib.error

    from keras.src.backend import config
    from keras.src.utils import file_utils

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(config, "keras_home", lambda: str(tmp_path))
    monkeypatch.setattr(file_utils, "urlretrieve", no_network)


def run_on_jax_devices(script, devices, timeout=300):
    """Runs a Python script on the JAX backend with `devices` simulated host CPU devices; returns its stdout.

    The device count must be set before JAX initialises, hence a fresh process.
    """
    import subprocess
    import sys

    env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
