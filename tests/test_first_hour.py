"""A user's first hour, on real photos: the README's workflow, then its Blocks steps on the result.

The README's "whole workflow in one call" block runs on the ants/bees photos with
the local ImageNet MobileNetV2, twice, as a run started again after a kill does
(the second resumes from the checkpoints of the first); then its Blocks block's
freeze, compile, unfreeze and recompile run on the model it returned, which
trains an epoch. This is the correct path, so keras_transfer must not warn
anywhere on it: a warning there teaches users to ignore our warnings.

A warning counts as ours when keras_transfer code raised it, or when a library
raised it while keras_transfer code was running (Keras warning about a
checkpoint our code loads is our noise too). Library warnings that Python hides
from users by default (DeprecationWarning and the like) and warnings raised
from this file's own calls into Keras do not count. So do the `keras_transfer`
logger's records of level WARNING and above; other libraries' log records do
not (TensorFlow's retracing notices come and go with garbage collection).
"""

import contextlib
import logging
import pathlib
import traceback
import warnings

import keras
import numpy as np
import pytest

from test_readme import README, python_block


PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_transfer"
LOGGING = pathlib.Path(logging.__file__).resolve().parent
HIDDEN_BY_DEFAULT = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)

# (README text, what runs instead), formatted with the weights and photos; each must still appear.
WORKFLOW = [
    # No network: the local ImageNet MobileNetV2 instead of EfficientNetB0's download; 160 px keeps it minutes.
    ('kt.get_backbone("efficientnet_b0")',
     'kt.get_backbone("mobilenet_v2", weights="{weights}", input_shape=(160, 160, 3))'),
    ('image_size=(224, 224)', 'image_size=(160, 160)'),
    ('"photos/"', '"{photos}"'),
    # The head's five epochs (on cached features) and one through the backbone reach about 0.88
    # on ants/bees in a minute of CPU; ten would take ten.
    ('fine_tune_epochs=10', 'fine_tune_epochs=1, verbose=0'),
]
# The Blocks block from here on works on any classifier: it runs on the workflow's result.
BLOCKS_FROM = "kt.block_names(model)"
BLOCKS = [
    # The reader trains phase 2 after compiling again: one epoch, which must neither fail nor warn.
    ("kt.trainable_summary(model)", "kt.trainable_summary(model); model.fit(train_ds, epochs=1, verbose=0)"),
]


def _substituted(text, table, **values):
    for old, new in table:
        assert old in text, f"{old!r} no longer appears in the README block: update this test's table"
        text = text.replace(old, new.format(**values))
    return text


class _Recorder(logging.Handler):
    """Every warning and `keras_transfer` log record that counts as ours, with where it came from and how often."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.found = {}

    def showwarning(self, message, category, filename, lineno, file=None, line=None):
        self._add(f"{category.__name__}: {message}", category, f"{filename}:{lineno}")

    def emit(self, record):
        self._add(f"log record of {record.name!r} ({record.levelname}): {record.getMessage()}", None,
                  f"{record.pathname}:{record.lineno}")

    def _add(self, text, category, reported_at):
        # The stack at the moment of the warning, without the frames of this recorder and of
        # the warnings and logging machinery: its last frame is the code that raised it.
        stack = [f for f in traceback.extract_stack()
                 if not (f.filename == __file__ and f.name in ("showwarning", "emit", "_add"))]
        while stack and (stack[-1].filename.endswith("warnings.py") or _inside(stack[-1].filename, LOGGING)):
            stack.pop()
        if not stack:
            return
        raiser, ours = stack[-1], [f for f in stack if _inside(f.filename, PACKAGE)]
        if _inside(raiser.filename, PACKAGE):
            how = "raised by keras_transfer"
        elif ours and not (category and issubclass(category, HIDDEN_BY_DEFAULT)):
            how = f"raised by a library while keras_transfer ran ({ours[-1].filename}:{ours[-1].lineno})"
        else:
            return
        entry = f"{text}\n    {how}: {raiser.filename}:{raiser.lineno} in {raiser.name}; reported at {reported_at}"
        self.found[entry] = self.found.get(entry, 0) + 1

    def report(self):
        return "\n\n".join(f"[{count}x] {entry}" for entry, count in self.found.items())


def _inside(filename, folder):
    return pathlib.Path(filename).resolve().is_relative_to(folder)


@contextlib.contextmanager
def _recording():
    recorder = _Recorder()
    logger = logging.getLogger("keras_transfer")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = recorder.showwarning
        logger.addHandler(recorder)
        try:
            yield recorder
        finally:
            logger.removeHandler(recorder)


@pytest.mark.slow
@pytest.mark.large
def test_first_hour_on_ants_and_bees_warns_nothing(mobilenet_weights, hymenoptera_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    workflow_line, workflow = python_block('kt.get_backbone("efficientnet_b0")')
    blocks_line, blocks = python_block(BLOCKS_FROM)
    workflow = _substituted(workflow, WORKFLOW, weights=mobilenet_weights, photos=hymenoptera_dir / "train")
    steps = _substituted(blocks[blocks.index(BLOCKS_FROM):], BLOCKS)
    start = blocks_line + blocks[:blocks.index(BLOCKS_FROM)].count("\n")
    # Padded to the README's line numbers, so a traceback points at the README line.
    workflow = compile("\n" * (workflow_line - 1) + workflow, str(README), "exec")
    namespace = {"keras": keras}
    with _recording() as recorder:
        exec(workflow, namespace)
        first = namespace["result"]
        # Started again, the run finds its checkpoints and trains nothing (the README's kill-safe promise).
        exec(workflow, namespace)
        namespace["model"] = namespace["result"].model
        exec(compile("\n" * (start - 1) + steps, str(README), "exec"), namespace)

    kt, val_ds = namespace["kt"], namespace["val_ds"]
    assert namespace["report"].accuracy > 0.8, f"validation accuracy {namespace['report'].accuracy:.3f} on ants/bees"
    assert list(first.history.phase.unique()) == ["head", "fine_tune"]
    assert namespace["result"].metrics == first.metrics
    # The Blocks steps compile and train the model as the README says: they must not undo it.
    after = kt.evaluate(namespace["model"], val_ds, verbose=0).accuracy
    assert after > 0.8, f"validation accuracy {after:.3f} after the Blocks block's training"
    assert not recorder.found, (
        f"{sum(recorder.found.values())} warning(s) from keras_transfer on the README's correct path:\n\n"
        + recorder.report())


def test_the_recorder_counts_our_warnings_and_logs_but_not_keras_own(tmp_path):
    """The check above can fail: what keras_transfer raises or logs, or a library raises inside it, is caught;
    what a library raises outside it, or hides from users, is not."""
    import keras_transfer as kt
    from keras_transfer import data

    (tmp_path / "ants").mkdir()
    keras.utils.save_img(tmp_path / "ants" / "a.png", np.zeros((8, 8, 3)))
    (tmp_path / "ants" / "empty.jpg").write_bytes(b"")
    (tmp_path / "bees").mkdir()
    keras.utils.save_img(tmp_path / "bees" / "b.png", np.zeros((8, 8, 3)))
    unregistered = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="features")], name="someone_else")

    def preprocess(images):
        keras.layers.Dense(2, input_shape=(3,))  # Keras warns, here inside our pipeline's map
        return images

    with _recording() as recorder:
        kt.block_names(unregistered)
        data.from_directory(tmp_path, image_size=8)
        data.from_arrays(np.zeros((2, 8, 8, 3), "float32"), np.array([0, 1]), preprocess=preprocess)
        keras.layers.Dense(2, input_shape=(3,))
        warnings.warn("hidden from users by default", DeprecationWarning)
    found = recorder.report()
    assert len(recorder.found) == 3, found
    assert found.startswith("[1x] UserWarning: keras_transfer has no block spec for model 'someone_else'"), found
    assert "raised by keras_transfer: " + str(PACKAGE / "blocks.py") in found
    assert "[1x] log record of 'keras_transfer' (WARNING): Skipped 1 of 3 image files" in found
    assert "[1x] UserWarning: Do not pass an `input_shape`" in found
    assert "raised by a library while keras_transfer ran (" + str(PACKAGE / "data") in found


def test_the_first_hour_still_finds_its_readme_text():
    """Runs without the assets: a README edit that breaks the slow test above shows up in the default run."""
    _substituted(python_block('kt.get_backbone("efficientnet_b0")')[1], WORKFLOW, weights="w", photos="p")
    _, blocks = python_block(BLOCKS_FROM)
    _substituted(blocks[blocks.index(BLOCKS_FROM):], BLOCKS)
