"""Input pipelines: every good image exactly once per epoch, bad files counted, TFDS, feature caching."""

import io
import logging
import shutil
import warnings

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from keras_transfer import backbones, data


def _epoch(ds):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(images), np.concatenate(labels)


def _solid(value, size=(12, 16), mode="RGB"):
    """An image whose every pixel encodes `value`, so it survives JPEG and resizing."""
    return Image.fromarray(np.full(size + (3,), value, np.uint8)).convert(mode)


def _save(image, path, fmt):
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


# Good files: (class, name, pixel value id, mode, format). Grayscale, CMYK, alpha and
# palette images all arrive as RGB.
GOOD = [
    ("ants", "a0.jpg", 20, "RGB", "JPEG"),
    ("ants", "a1 with space.jpeg", 40, "L", "JPEG"),
    ("ants", "a2.JPG", 60, "CMYK", "JPEG"),
    ("ants", "a3.png", 80, "RGBA", "PNG"),
    ("bees", "b0.png", 100, "RGB", "PNG"),
    ("bees", "b1.png", 120, "L", "PNG"),
    ("bees", "b2.gif", 140, "P", "GIF"),
    ("bees", "b3.bmp", 160, "RGB", "BMP"),
    ("bees", "b4.jpg", 180, "RGB", "JPEG"),
]
BAD = {"empty.jpg": "empty", "notes.jpg": "not an image", "cut.jpg": "truncated", "cut.png": "truncated"}


@pytest.fixture
def folder(tmp_path):
    """Two class folders of solid-colour images (id in the pixel value) plus one bad file of each kind."""
    for cls, name, value, mode, fmt in GOOD:
        (tmp_path / cls).mkdir(exist_ok=True)
        image = _solid(value)
        image = image.convert("P", palette=Image.Palette.ADAPTIVE) if mode == "P" else image.convert(mode)
        _save(image, tmp_path / cls / name, fmt)
    (tmp_path / "ants" / "empty.jpg").write_bytes(b"")
    (tmp_path / "ants" / "notes.jpg").write_bytes(b"these are not the pixels you are looking for")
    jpeg = _save(_solid(7, size=(64, 64)), tmp_path / "bees" / "cut.jpg", "JPEG")
    (tmp_path / "bees" / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    png = _save(Image.fromarray(np.random.RandomState(0).randint(0, 255, (64, 64, 3), np.uint8)),
                tmp_path / "bees" / "cut.png", "PNG")
    (tmp_path / "bees" / "cut.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "bees" / "readme.txt").write_text("not listed: not an image extension")
    return tmp_path


def _ids(images):
    """The id of each solid image: its mean pixel value, rounded to the id grid of 20."""
    return (np.round(images.mean(axis=(1, 2, 3)) / 20) * 20).astype(int)


# --- directories and DataFrames ---------------------------------------------------


def test_directory_counts_bad_files_and_yields_every_good_image_once_per_epoch(folder, caplog):
    with caplog.at_level(logging.WARNING, logger="keras_transfer"):
        ds = data.from_directory(folder, image_size=(8, 8), batch_size=4, shuffle=True, seed=1)
    assert ds.class_names == ["ants", "bees"]
    assert ds.skipped == 4
    assert dict(zip(ds.report.path.map(lambda p: p.rsplit("/", 1)[1]), ds.report.problem)) == BAD
    assert "Skipped 4 of 13 image files" in caplog.text and "2 truncated" in caplog.text
    expected = sorted(value for _, _, value, _, _ in GOOD)
    orders = []
    for _ in range(3):
        images, labels = _epoch(ds)
        assert images.shape == (9, 8, 8, 3) and images.dtype == np.float32
        ids = _ids(images)
        assert sorted(ids) == expected
        np.testing.assert_array_equal(labels, (ids >= 100).astype(int))  # bees have ids >= 100
        orders.append(list(ids))
    assert orders[0] != orders[1] or orders[1] != orders[2], "shuffle=True must reshuffle every epoch"
    again = data.from_directory(folder, image_size=(8, 8), batch_size=4, shuffle=True, seed=1)
    assert list(_ids(_epoch(again)[0])) == orders[0], "the same seed gives the same order"


def _damage_middle(path):
    """Zeroes a JPEG between its header and its end marker: it passes the byte check, fails to decode."""
    contents = path.read_bytes()
    path.write_bytes(contents[:20] + bytes(len(contents) - 22) + contents[-2:])


def test_a_file_damaged_in_the_middle_is_counted_at_run_time_and_named_by_a_decode_check(folder, caplog):
    _damage_middle(folder / "bees" / "b4.jpg")  # id 180
    ds = data.from_directory(folder, image_size=(8, 8), batch_size=4, shuffle=True, seed=1)
    assert ds.skipped == 4 and int(ds.decode_failures) == 0, "the byte check cannot see it"
    survivors = sorted(v for _, _, v, _, _ in GOOD if v != 180)
    with caplog.at_level(logging.WARNING, logger="keras_transfer"):
        for epoch in (1, 2):
            images, labels = _epoch(ds)
            # Keras' count of 9 holds: the bad file's place goes to an image of the next pass.
            assert images.shape[0] == 9 and set(_ids(images)) == set(survivors)
            np.testing.assert_array_equal(labels, (_ids(images) >= 100).astype(int))
            assert int(ds.decode_failures) == epoch
    assert "1 image file(s) in" in caplog.text and "failed to decode" in caplog.text
    assert "check='decode'" in caplog.text
    checked = data.from_directory(folder, image_size=(8, 8), batch_size=4, check="decode")
    assert checked.skipped == 5
    assert dict(zip(checked.report.path.map(lambda p: p.rsplit("/", 1)[1]), checked.report.problem)) == {
        **BAD, "b4.jpg": "corrupt"}
    images, _ = _epoch(checked)
    assert sorted(_ids(images)) == survivors and int(checked.decode_failures) == 0
    with pytest.raises(ValueError, match=r"`check` must be one of \['header', 'decode'\]. Received: check='full'"):
        data.from_directory(folder, check="full")


def test_a_cached_dataset_reads_a_damaged_file_only_in_its_first_epoch(folder):
    _damage_middle(folder / "bees" / "b4.jpg")  # the last file: the next pass's first image takes its place
    ds = data.from_directory(folder, image_size=(8, 8), batch_size=4, cache=True)
    for _ in range(3):
        assert _epoch(ds)[0].shape[0] == 9
    assert int(ds.decode_failures) == 1


def test_grayscale_cmyk_alpha_and_palette_images_arrive_as_rgb(folder):
    images, _ = _epoch(data.from_directory(folder, image_size=(12, 16), batch_size=16))
    ids = _ids(images)
    for _, _, value, _, _ in GOOD:
        image = images[list(ids).index(value)]
        assert image.shape == (12, 16, 3)
        # JPEG keeps a solid colour within a few levels; the lossless formats exactly.
        np.testing.assert_allclose(image, value, atol=3)


def test_unshuffled_order_is_class_then_file_name(folder):
    images, labels = _epoch(data.from_directory(folder, image_size=(8, 8), batch_size=3))
    assert list(_ids(images)) == [20, 40, 60, 80, 100, 120, 140, 160, 180]
    assert list(labels) == [0, 0, 0, 0, 1, 1, 1, 1, 1]


def test_validation_split_is_per_class_disjoint_and_fixed_by_seed(folder):
    train, val = data.from_directory(folder, image_size=(8, 8), batch_size=8, validation_split=0.25, seed=3)
    train_ids, val_ids = set(_ids(_epoch(train)[0])), set(_ids(_epoch(val)[0]))
    assert len(val_ids) == 2 and len(train_ids) == 7  # round(4 * .25) ants, round(5 * .25) bees
    assert train_ids.isdisjoint(val_ids) and train_ids | val_ids == {v for _, _, v, _, _ in GOOD}
    assert {v >= 100 for v in val_ids} == {True, False}
    _, val_again = data.from_directory(folder, image_size=(8, 8), batch_size=8, validation_split=0.25, seed=3)
    assert set(_ids(_epoch(val_again)[0])) == val_ids
    assert val.class_names == ["ants", "bees"] and val.skipped == 4


def test_dataframe_with_string_and_integer_labels(folder):
    rows = [(f"{cls}/{name}", cls) for cls, name, *_ in GOOD] + [("ants/cut.jpg", "ants")]
    df = pd.DataFrame(rows, columns=["file", "kind"])
    ds = data.from_dataframe(df, "file", "kind", root=folder, image_size=(8, 8), batch_size=4)
    images, labels = _epoch(ds)
    assert ds.class_names == ["ants", "bees"] and ds.skipped == 1
    assert list(_ids(images)) == [v for _, _, v, _, _ in GOOD]
    assert list(labels) == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    df["index"] = (df.kind == "ants").astype(int)
    by_int = data.from_dataframe(df, "file", "index", root=folder, image_size=(8, 8), batch_size=4)
    assert by_int.class_names == ["0", "1"]
    assert list(_epoch(by_int)[1]) == [1, 1, 1, 1, 0, 0, 0, 0, 0]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"path_col": "nope"}, r"`path_col` must name a column of `df`. Received: path_col='nope'"),
        ({"class_names": ["bees"]}, r"Labels \['ants'\] in `kind` are not among class_names=\['bees'\]"),
        ({"image_size": (8, 0)}, r"Received: image_size=\(8, 0\)"),
        ({"batch_size": 0}, r"`batch_size` must be a positive integer. Received: batch_size=0"),
        ({"validation_split": 1.5}, r"Received: validation_split=1.5"),
        ({"augment": "fancy"}, r"Received: augment='fancy'. Valid names: \['default', 'randaugment', 'mixup', 'cutmix'\]"),
    ],
)
def test_dataframe_argument_errors(folder, kwargs, match):
    df = pd.DataFrame({"file": ["ants/a0.jpg"], "kind": ["ants"]})
    kwargs = {"path_col": "file", "label_col": "kind", "root": folder, **kwargs}
    with pytest.raises(ValueError, match=match):
        data.from_dataframe(df, **kwargs)


def test_empty_class_folder_and_no_usable_images_name_the_path(folder, tmp_path_factory):
    (folder / "wasps").mkdir()
    with pytest.raises(ValueError, match=r"The class folder '.*wasps' holds no image files"):
        data.from_directory(folder)
    broken = tmp_path_factory.mktemp("broken")
    (broken / "ants").mkdir()
    (broken / "ants" / "x.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=rf"No usable images in {broken}: all 1 files were skipped \(empty\)"):
        data.from_directory(broken)
    with pytest.raises(ValueError, match=r"`path` must be an existing folder. Received: path='/no/such'"):
        data.from_directory("/no/such")


def test_a_dataset_root_is_named_with_the_folders_to_pass(folder, tmp_path_factory):
    """A dataset root said "The class folder '.../train' holds no image files"."""
    root = tmp_path_factory.mktemp("dataset")
    shutil.copytree(folder, root / "train")
    shutil.copytree(folder, root / "val")
    (root / "notes").mkdir()
    with pytest.raises(ValueError) as error:
        data.from_directory(root)
    assert str(error.value) == (
        f"`path` must hold one folder of images per class, but '{root}' looks like a dataset root: its "
        f"subfolders train, val hold class folders. Pass path='{root}/train' (and '{root}/val' for "
        f"validation). Received: path='{root}'"
    )


def test_a_single_class_folder_warns_that_classification_needs_two(folder):
    """One class loaded without a word; training failed later on num_classes=1, saying nothing of the data."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.from_directory(folder, image_size=(8, 8))
    shutil.rmtree(folder / "bees")
    with pytest.warns(UserWarning) as warned:
        ds = data.from_directory(folder, image_size=(8, 8))
    assert [str(w.message) for w in warned] == [
        f"'{folder}' holds one class folder, 'ants', so every label is 0. Classification needs at least 2 "
        "classes, one folder each: pass the folder that holds all of them. One class suits only label-free uses, "
        "such as the source images of kt.domain_shift."
    ]
    assert ds.class_names == ["ants"]


# --- decoding and resizing -----------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*holds one class folder:UserWarning")  # one class is enough to test decoding
def test_reduced_scale_decode_matches_full_decode(tmp_path):
    (tmp_path / "c").mkdir()
    # A smooth gradient, 960x720: 1/8-scale decoding still leaves more than 64x64 pixels.
    y, x = np.mgrid[0:720, 0:960]
    rgb = np.stack([x * 255 / 960, y * 255 / 720, (x + y) * 255 / 1680], -1).astype(np.uint8)
    _save(Image.fromarray(rgb), tmp_path / "c" / "big.jpg", "JPEG")
    fast = _epoch(data.from_directory(tmp_path, image_size=(64, 64), fast_decode=True))[0]
    full = _epoch(data.from_directory(tmp_path, image_size=(64, 64), fast_decode=False))[0]
    assert np.abs(fast - full).mean() < 1.5
    np.testing.assert_allclose(fast[0, 0, 63], [252, 2, 145], atol=6)  # top-right corner of the gradient


def _with_comment(jpeg, size):
    """The same JPEG with a comment segment of `size` bytes before its frame header."""
    return jpeg[:2] + b"\xff\xfe" + (size + 2).to_bytes(2, "big") + b"x" * size + jpeg[2:]


@pytest.mark.filterwarnings("ignore:.*holds one class folder:UserWarning")  # one class is enough to test decoding
def test_jpeg_sizes_from_the_header_choose_the_decode_scale_up_front(tmp_path):
    (tmp_path / "c").mkdir()
    y, x = np.mgrid[0:720, 0:960]
    rgb = np.stack([x * 255 / 960, y * 255 / 720, (x + y) * 255 / 1680], -1).astype(np.uint8)
    jpeg = _save(Image.fromarray(rgb), tmp_path / "c" / "a_plain.jpg", "JPEG")
    (tmp_path / "c" / "b_comment.jpg").write_bytes(_with_comment(jpeg, 1000))
    # A comment longer than the 16 KB header read hides the size: that file is probed in the graph.
    (tmp_path / "c" / "c_hidden.jpg").write_bytes(_with_comment(jpeg, 20000))
    _save(Image.fromarray(rgb), tmp_path / "c" / "d.png", "PNG")
    checked = data.inspect_files(sorted(str(p) for p in (tmp_path / "c").iterdir()))
    assert checked[["height", "width"]].values.tolist() == [[720, 960], [720, 960], [-1, -1], [0, 0]]
    fast = _epoch(data.from_directory(tmp_path, image_size=(64, 64)))[0]
    full = _epoch(data.from_directory(tmp_path, image_size=(64, 64), fast_decode=False))[0]
    # The three JPEGs decode at 1/8 scale, whether their size was read up front or probed; the PNG in full.
    np.testing.assert_array_equal(fast[0], fast[1])
    np.testing.assert_array_equal(fast[0], fast[2])
    assert np.abs(fast[0] - full[0]).max() > 0, "the reduced decode is a different resampling"
    np.testing.assert_array_equal(fast[3], full[3])
    small = _epoch(data.from_directory(tmp_path, image_size=(600, 800)))[0]
    np.testing.assert_array_equal(small, _epoch(data.from_directory(tmp_path, image_size=(600, 800),
                                                                    fast_decode=False))[0])


@pytest.mark.filterwarnings("ignore:.*holds one class folder:UserWarning")  # one class is enough to test decoding
def test_crop_and_pad_keep_the_aspect_ratio(tmp_path):
    (tmp_path / "c").mkdir()
    image = np.zeros((10, 30, 3), np.uint8)
    image[:, 10:20] = 200  # a bright centre third
    _save(Image.fromarray(image), tmp_path / "c" / "wide.png", "PNG")
    crop = _epoch(data.from_directory(tmp_path, image_size=(10, 10), crop_to_aspect_ratio=True))[0][0]
    np.testing.assert_array_equal(crop, np.full((10, 10, 3), 200))
    pad = _epoch(data.from_directory(tmp_path, image_size=(30, 30), pad_to_aspect_ratio=True))[0][0]
    np.testing.assert_array_equal(pad[:10], 0)
    np.testing.assert_array_equal(pad[20:], 0)
    np.testing.assert_array_equal(pad[10:20, 10:20], 200)
    with pytest.raises(ValueError, match="cannot both be True"):
        data.from_directory(tmp_path, crop_to_aspect_ratio=True, pad_to_aspect_ratio=True)


def test_cache_in_memory_and_on_disk_keeps_reshuffling(folder, tmp_path_factory):
    cache_file = tmp_path_factory.mktemp("cache") / "decoded"
    for cache in (True, str(cache_file)):
        ds = data.from_directory(folder, image_size=(8, 8), batch_size=4, shuffle=True, seed=2, cache=cache)
        epochs = [list(_ids(_epoch(ds)[0])) for _ in range(3)]
        assert all(sorted(e) == sorted(v for *_, v, _, _ in GOOD) for e in epochs)
        assert epochs[0] != epochs[1] or epochs[1] != epochs[2]
    assert cache_file.with_name("decoded.index").exists()
    # Later epochs come from the cache, not from the files.
    shutil.rmtree(folder / "ants")
    assert sorted(_ids(_epoch(ds)[0])) == sorted(v for *_, v, _, _ in GOOD)


def test_static_batches_on_tpu(monkeypatch, folder):
    from keras_transfer.data import pipeline

    monkeypatch.setattr(pipeline, "accelerator_kind", lambda: "tpu")
    ds = data.from_directory(folder, image_size=(8, 8), batch_size=4)
    assert ds.element_spec[0].shape.as_list() == [4, 8, 8, 3]
    assert [int(y.shape[0]) for _, y in ds] == [4, 4]


# --- arrays, augmentation and preprocessing (any backend) -----------------------------


@pytest.mark.core
def test_arrays_shuffle_with_a_seed_and_keep_every_example():
    x = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    ds = data.from_arrays(x, np.arange(10) % 3, batch_size=4, shuffle=True, seed=5)
    assert [int(b[1].shape[0]) for b in ds] == [4, 4, 2]
    for _ in range(2):
        images, labels = _epoch(ds)
        ids = images[:, 0, 0, 0].astype(int)
        assert sorted(ids) == list(range(10))
        np.testing.assert_array_equal(labels, ids % 3)
    assert ds.class_names == ["0", "1", "2"] and ds.skipped == 0
    with pytest.raises(ValueError, match=r"`labels` must be 10 integers, one per image"):
        data.from_arrays(x, np.zeros(9, int))


@pytest.mark.core
def test_augmentation_runs_on_pixels_before_preprocessing():
    x = np.zeros((64, 1, 2, 3), np.uint8)
    x[:, :, 1] = 255  # left pixel dark, right pixel bright
    ds = data.from_arrays(x, np.zeros(64, int), batch_size=64, seed=0,
                          augment=[keras.layers.RandomFlip("horizontal", seed=0)], preprocess=lambda t: t / 255.0)
    images = next(iter(ds))[0].numpy()
    flipped = images[:, 0, 0, 0] == 1.0
    np.testing.assert_array_equal(images[:, 0, 1, 0], 1.0 - flipped)  # each image is itself or its mirror
    assert 10 < flipped.sum() < 54, "about half the batch flips"
    default = data.from_arrays(np.random.RandomState(0).randint(0, 255, (4, 16, 16, 3)).astype(np.uint8),
                               np.zeros(4, int), batch_size=4, augment="default", seed=0)
    assert next(iter(default))[0].shape == (4, 16, 16, 3)


@pytest.mark.core
@pytest.mark.parametrize("augment", ["mixup", ["default", "cutmix"]], ids=["mixup", "default+cutmix"])
def test_mixing_blends_images_and_turns_labels_into_class_probabilities(augment):
    # Class c's images are all c * 50, so every output pixel says how much of each class it holds.
    x = np.repeat(np.arange(4, dtype=np.uint8) * 50, 8)[:, None, None, None] * np.ones((1, 8, 8, 3), np.uint8)
    y = np.repeat(np.arange(4), 8)
    ds = data.from_arrays(x, y, batch_size=32, shuffle=True, seed=1, augment=augment)
    assert ds.element_spec[1].shape.as_list() == [None, 4] and ds.element_spec[1].dtype == tf.float32
    images, labels = next(iter(ds))
    images, labels = images.numpy(), labels.numpy()
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-6)
    assert (labels.max(axis=1) < 0.999).sum() >= 16, "most examples are blends of two classes"
    if augment == "mixup":
        # A MixUp pixel is the label-weighted mean of the class values.
        np.testing.assert_allclose(images[:, 0, 0, 0], labels @ (np.arange(4) * 50.0), atol=1e-3)
    else:
        # CutMix pastes a patch: each pixel is one class's value, in the label's proportions.
        patch = np.isin(images[:, 4, 4, 0].round(), np.arange(4) * 50.0)
        assert patch.mean() > 0.9


def test_mixed_training_labels_train_with_integer_validation_labels():
    import keras_transfer as kt
    from keras_transfer import demo

    x, y = demo.make_shapes(demo.TARGET_SHAPES, per_class=8, seed=3)
    train = data.from_arrays(x, y, batch_size=16, shuffle=True, seed=0, augment=["default", "mixup"])
    val = data.from_arrays(*demo.make_shapes(demo.TARGET_SHAPES, per_class=4, seed=4), batch_size=16)
    keras.utils.set_random_seed(0)
    result = kt.fine_tune(demo.build_demo_backbone(), train, val, num_classes=4, head_epochs=1, fine_tune_epochs=1,
                          cache_features=False, verbose=0)
    assert list(result.history.columns[:2]) == ["phase", "epoch"] and len(result.history) == 2
    assert {"accuracy", "val_accuracy"} <= set(result.history.columns)
    assert np.isfinite(result.history.loss).all()
    # Validation accuracy is read from integer labels: a multiple of 1/16 on 16 examples.
    assert (result.history.val_accuracy * 16).round(4).apply(float.is_integer).all()


# --- TFDS ------------------------------------------------------------------------------


@pytest.mark.parametrize("name,classes", [("stanford_dogs", 120), ("oxford_iiit_pet", 37), ("tf_flowers", 5),
                                          ("cats_vs_dogs", 2)])
def test_tfds_image_datasets(name, classes):
    with tfds.testing.mock_data(num_examples=7):
        ds = data.from_tfds(name, "train", image_size=(24, 24), batch_size=3, shuffle=True, seed=0,
                            max_examples=5, preprocess=lambda t: t / 127.5 - 1)
        images, labels = _epoch(ds)
    assert len(ds.class_names) == classes
    assert images.shape == (5, 24, 24, 3) and images.min() >= -1 and images.max() <= 1
    assert labels.dtype == np.int32 and 0 <= labels.min() and labels.max() < classes


def test_tfds_offline_fails_at_once_without_trying_to_download(monkeypatch, tmp_path):
    """Offline, TFDS retried the download for 3.5 minutes before failing."""
    calls = []
    monkeypatch.setattr(backbones, "_network_problem", lambda url=None: calls.append("check") or "no answer")
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", lambda *a, **k: calls.append("download"))
    with pytest.raises(backbones.OfflineError) as error:
        data.from_tfds("tf_flowers", "train", data_dir=str(tmp_path))
    assert calls == ["check"]
    assert str(error.value) == (
        f"The TFDS dataset 'tf_flowers' is not in {tmp_path} and cannot be downloaded: no network (no answer). "
        "Prepare it where there is network access (`tfds build tf_flowers --data_dir /path/to/tfds`), copy that "
        "folder here and pass data_dir='/path/to/tfds'."
    )
    assert error.value.spelled(lambda arg, value: f"--{arg.replace('_', '-')} {value}").endswith(
        "copy that folder here and pass --data-dir /path/to/tfds.")
    # Prepared data (here TFDS' mock) reads offline, without asking the network.
    with tfds.testing.mock_data(num_examples=3):
        assert len(data.from_tfds("tf_flowers", "train", image_size=(8, 8)).class_names) == 5
    assert calls == ["check"]


def test_tfds_download_failure_online_says_how_to_pass_data_dir(monkeypatch, tmp_path):
    def failing(self, *args, **kwargs):
        raise ConnectionError("Failed to resolve 'vision.stanford.edu'")

    monkeypatch.setattr(backbones, "_network_problem", lambda url=None: None)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", failing)
    with pytest.raises(RuntimeError, match=r"'tf_flowers' could not be downloaded.*pass `data_dir=DIR`"):
        data.from_tfds("tf_flowers", "train", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"`label_key` must name a ClassLabel feature of 'tf_flowers'"):
        with tfds.testing.mock_data(num_examples=2):
            data.from_tfds("tf_flowers", "train", label_key="image")


def test_text_from_tfds():
    with tfds.testing.mock_data(num_examples=5):
        ds = data.text_from_tfds("imdb_reviews", "train", batch_size=2, shuffle=True, seed=0, max_examples=4)
        texts, labels = _epoch(ds)
    assert ds.class_names == ["neg", "pos"] and texts.dtype == object and labels.tolist() != []
    assert len(texts) == 4


# --- feature caching --------------------------------------------------------------------


def _pooling_model():
    inputs = keras.Input((4, 4, 3))
    return keras.Model(inputs, keras.layers.Dense(2, use_bias=False)(keras.layers.GlobalAveragePooling2D()(inputs)))


@pytest.mark.core
def test_cached_features_replay_the_epochs_of_a_fresh_input_pipeline():
    model = _pooling_model()
    x = np.random.RandomState(0).rand(11, 4, 4, 3).astype("float32")
    make = lambda: data.from_arrays(x, np.arange(11) % 2, batch_size=4, shuffle=True, seed=9)  # noqa: E731
    keras.utils.set_random_seed(123)  # a different global seed by caching time changes nothing
    cached, reference = data.cache_features(model, make(), verbose=0), make()
    for _ in range(2):
        for (features, labels), (images, ref_labels) in zip(cached, reference):
            np.testing.assert_array_equal(labels, ref_labels)
            np.testing.assert_allclose(features, model.predict_on_batch(images.numpy()), atol=1e-6)
    assert [int(y.shape[0]) for _, y in cached] == [4, 4, 3]


@pytest.mark.core
def test_cached_features_file_is_reused_and_checked(tmp_path, monkeypatch):
    model = _pooling_model()
    x = np.random.RandomState(1).rand(5, 4, 4, 3).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(5))).batch(2)
    first = _epoch(data.cache_features(model, ds, path=tmp_path / "f", verbose=0))
    monkeypatch.setattr(model, "predict_on_batch", lambda *a: pytest.fail("the cached file was not reused"))
    second = _epoch(data.cache_features(model, ds, path=tmp_path / "f.npz", verbose=0))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[0], keras.ops.convert_to_numpy(model(x)))
    other = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.GlobalAveragePooling2D()], name="other")
    with pytest.raises(ValueError, match="come from another model"):
        data.cache_features(other, ds, path=tmp_path / "f", verbose=0)
    with pytest.raises(TypeError, match=r"`dataset` must be a tf.data.Dataset"):
        data.cache_features(model, x)



@pytest.mark.core
def test_cached_features_come_from_the_images_before_augmentation():
    model = _pooling_model()
    x = np.random.RandomState(2).rand(6, 4, 4, 3).astype("float32")
    ds = data.from_arrays(x, np.arange(6) % 2, batch_size=4, shuffle=True, seed=3, augment=[lambda t: t + 100.0])
    assert ds.pipeline.batch_size == 4 and ds.pipeline.shuffle_buffer == 6
    features, labels = _epoch(data.cache_features(model, ds, verbose=0))
    expected = keras.ops.convert_to_numpy(model(x))
    order = [int(np.abs(expected - f).sum(axis=1).argmin()) for f in features]
    assert sorted(order) == list(range(6))
    np.testing.assert_allclose(features, expected[order], atol=1e-5)  # from x, not x + 100
    np.testing.assert_array_equal(labels, np.arange(6)[order] % 2)


def test_a_loader_dataset_after_map_trains_through_the_backbone_not_on_one_frozen_pass(caplog):
    """`map` drops the loader's `pipeline`; caching one pass would replay its order every epoch.

    fine_tune says so and trains through the frozen backbone, so the head is
    the one an uncached run gives; `cache_features` itself warns.
    """
    import keras_transfer as kt
    from keras_transfer import demo

    x, y = demo.make_shapes(demo.TARGET_SHAPES, per_class=8, seed=3)
    heads = []
    for cache in (True, False):
        keras.utils.set_random_seed(0)
        train_ds = data.from_arrays(x, y, batch_size=16, shuffle=True, seed=0).map(lambda images, labels: (images, labels))
        assert not hasattr(train_ds, "pipeline") and not data.cacheable(train_ds)
        keras.utils.set_random_seed(7)
        backbone = demo.build_demo_backbone()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = kt.fine_tune(backbone, train_ds, num_classes=4, head_epochs=2, fine_tune_epochs=0,
                                  strategy="feature_extraction", cache_features=cache, dropout=0.0, verbose=0)
        said = any("runs the frozen backbone every epoch" in str(w.message) for w in caught)
        assert said == cache
        heads.append(keras.ops.convert_to_numpy(result.model.get_layer("head_logits").kernel))
    np.testing.assert_allclose(heads[0], heads[1], atol=1e-5)
    mapped = data.from_arrays(x, y, batch_size=16, shuffle=True, seed=0).map(lambda images, labels: (images, labels))
    with caplog.at_level(logging.WARNING, logger="keras_transfer"):
        data.cache_features(_pooling_model(), mapped.map(lambda i, l: (i[:, :4, :4], l)), verbose=0)
    assert "replay that pass's order and augmentation every epoch" in caplog.text
    assert data.cacheable(tf.data.Dataset.from_tensor_slices((x, y)).batch(8).map(lambda i, l: (i, l)))


# --- the real photos and weights in ../shared ----------------------------------------------


def test_real_photos_pass_through_every_file_loader(hymenoptera_dir):
    train = hymenoptera_dir / "train"
    ds = data.from_directory(train, image_size=(32, 32), batch_size=64)
    images, labels = _epoch(ds)
    assert ds.class_names == ["ants", "bees"] and ds.skipped == 0
    assert images.shape == (244, 32, 32, 3) and np.bincount(labels).tolist() == [123, 121]
    odd = ["ants/formica.jpeg", "ants/ant photos.jpg"]
    frame = data.from_dataframe(pd.DataFrame({"path": odd, "label": ["ants", "ants"]}), "path", "label",
                                root=train, image_size=(32, 32), crop_to_aspect_ratio=True)
    assert _epoch(frame)[0].shape == (2, 32, 32, 3) and frame.skipped == 0
    # Without fast decoding: the full decode, resized, up to rounding to uint8. With it, the
    # 1/4-scale decode already averages pixels, so it sits nearer an antialiased resize.
    full = {aa: np.stack([tf.image.resize(tf.io.decode_jpeg(tf.io.read_file(str(train / p)), channels=3), (32, 32),
                                          antialias=aa) for p in odd]) for aa in (False, True)}
    table = pd.DataFrame({"path": odd, "label": [0, 0]})
    for fast, reference, tolerance in ((False, full[False], 0.5), (True, full[True], 12)):
        images = _epoch(data.from_dataframe(table, "path", "label", root=train, image_size=(32, 32),
                                            fast_decode=fast))[0]
        assert np.abs(images - reference).mean() < tolerance


def test_real_mobilenet_features_are_cached(hymenoptera_dir, mobilenet_weights):
    backbone = keras.applications.MobileNetV2(include_top=False, weights=str(mobilenet_weights),
                                              input_shape=(96, 96, 3), pooling="avg")
    df = pd.DataFrame({"path": [f"val/{c}/{p.name}" for c in ("ants", "bees")
                                for p in sorted((hymenoptera_dir / "val" / c).iterdir())[:6]]})
    df["label"] = df.path.str.split("/").str[1]
    ds = data.from_dataframe(df, "path", "label", root=hymenoptera_dir, image_size=(96, 96), batch_size=8,
                             preprocess=keras.applications.mobilenet_v2.preprocess_input, shuffle=True, seed=0)
    features = data.cache_features(backbone, ds, verbose=0)
    cached, labels = _epoch(features)
    assert cached.shape == (12, 1280) and sorted(labels) == [0] * 6 + [1] * 6
    images, image_labels = _epoch(ds)
    np.testing.assert_array_equal(labels, image_labels)
    np.testing.assert_allclose(cached, backbone.predict(images, verbose=0), atol=1e-4)
    assert features.class_names == ["ants", "bees"]
