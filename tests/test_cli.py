"""The `keras-transfer` command."""

import keras
import pytest

import keras_transfer as kt
from keras_transfer import cli


def test_inspect_prints_the_block_table(capsys):
    assert cli.main(["inspect", "efficientnet_b0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("efficientnetb0: 9 blocks (efficientnet), 4,049,571 params")
    assert [line.split()[0] for line in out.splitlines()[2:]] == (
        ["stem"] + [f"block{i}" for i in range(1, 8)] + ["top"]
    )


def test_inspect_a_saved_model_keeps_its_frozen_blocks(tmp_path, capsys):
    backbone = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    model = keras.Sequential([backbone, keras.layers.Flatten(), keras.layers.Dense(2)])
    kt.unfreeze(model, top_blocks=1)
    model.save(tmp_path / "m.keras")
    cli.main(["inspect", str(tmp_path / "m.keras")])
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["block4"][-1] == "frozen"
    assert rows["block5"][-2:] == ["7079424", "trainable"]
    assert rows["head"][-2:] == ["1026", "trainable"]


def test_inspect_unknown_name_lists_known_ones():
    with pytest.raises(SystemExit, match="unknown backbone 'resnet5'.*resnet50"):
        cli.main(["inspect", "resnet5"])
