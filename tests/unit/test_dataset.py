import shutil
from pathlib import Path

import pytest
import yaml

from container.contract import Environment
from container.failure import UserError
from container.schema import Schema
from container.synthetic import make_shapes
from container.yolo import dataset as ds


def _env(base: Path, channels: dict[str, Path], modes: dict[str, str] | None = None) -> Environment:
    for name, src in channels.items():
        shutil.copytree(src, base / "input" / "data" / name)
    config = {n: {"TrainingInputMode": (modes or {}).get(n, "File")} for n in channels}
    return Environment(base_dir=base, input_data_config=config)


def _resolve(env, tmp_path, **hps):
    typed = Schema.load("yolo").resolve([("hyperparameters", hps)])  # every key, typed, as the trainer has them
    return ds.resolve(env, typed, tmp_path / "work", seed=0, log=lambda *_: None)


@pytest.fixture
def pool(tmp_path):
    return make_shapes(tmp_path / "pool", train=10, val=0, splits=False)


def test_split_layout_and_data_yaml(tmp_path, shapes):
    d = _resolve(_env(tmp_path / "ml", {"train": shapes}), tmp_path)
    assert (len(d.train), len(d.val)) == (16, 4) and d.val_source == "val split of the train data"
    assert d.names == ["rectangle", "ellipse"] and sum(d.boxes_per_class.values()) > 0
    data = yaml.safe_load(d.data_yaml.read_text())
    assert data["nc"] == 2 and data["names"] == {0: "rectangle", 1: "ellipse"}
    listed = (d.data_yaml.parent / data["train"]).read_text().split()
    assert len(listed) == 16 and all(Path(p).is_file() for p in listed)


def test_fixed_seed_split_of_a_pool(tmp_path, pool):
    env = _env(tmp_path / "ml", {"train": pool})
    a, b = _resolve(env, tmp_path), _resolve(env, tmp_path / "again")
    assert (len(a.train), len(a.val)) == (8, 2) and a.val == b.val
    assert not set(a.train) & set(a.val)


def test_val_channel(tmp_path, pool, shapes):
    d = _resolve(_env(tmp_path / "ml", {"train": pool, "val": shapes}), tmp_path)
    assert len(d.train) == 10 and len(d.val) == 20 and d.val_source == "val channel"


def test_images_and_labels_channels(tmp_path, shapes):
    (tmp_path / "cfg").mkdir()
    shutil.copy(shapes / "data.yaml", tmp_path / "cfg" / "data.yaml")
    env = _env(tmp_path / "ml", {"images": shapes / "images", "labels": shapes / "labels", "cfg": tmp_path / "cfg"})
    d = _resolve(env, tmp_path)
    assert (len(d.train), len(d.val)) == (16, 4) and d.layout == "images+labels channels"


def test_roboflow_layout_and_classes_txt(tmp_path, shapes):
    root = tmp_path / "rf"
    for split, dest in (("train", "train"), ("val", "valid")):
        for kind in ("images", "labels"):
            shutil.copytree(shapes / kind / split, root / dest / kind)
    (root / "classes.txt").write_text("rectangle\nellipse\n")
    d = _resolve(_env(tmp_path / "ml", {"train": root}), tmp_path)
    assert (len(d.train), len(d.val)) == (16, 4) and d.names == ["rectangle", "ellipse"]


def test_names_hyperparameter_wins(tmp_path, shapes):
    d = _resolve(_env(tmp_path / "ml", {"train": shapes}), tmp_path, names="a, b")
    assert d.names == ["a", "b"]


def _broken(tmp_path, shapes, how):
    root = tmp_path / "data"
    shutil.copytree(shapes, root)
    label = root / "labels" / "train" / "train_0003.txt"
    if how == "corrupt image":
        (root / "images" / "train" / "train_0002.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    elif how == "class id out of range":
        label.write_text("7 0.5 0.5 0.2 0.2\n")
    elif how == "box outside the image":
        label.write_text("0 0.95 0.5 0.4 0.2\n")
    elif how == "box with zero area":
        label.write_text("0 0.5 0.5 0 0.2\n")
    elif how == "label line not numeric":
        label.write_text("cat 0.5 0.5 0.2 0.2\n")
    elif how == "label line with wrong field count":
        label.write_text("0 0.5 0.5 0.2\n")
    elif how == "label file starts with a byte-order mark":  # Notepad's, PowerShell's "UTF-8"
        label.write_text("0 0.5 0.5 0.2 0.2\n", encoding="utf-8-sig")
    return root


PROBLEMS = ["corrupt image", "class id out of range", "box outside the image", "box with zero area",
            "label line not numeric", "label line with wrong field count", "label file starts with a byte-order mark"]


@pytest.mark.parametrize("how", PROBLEMS)
def test_problems_are_fatal_and_named(tmp_path, shapes, how):
    env = _env(tmp_path / "ml", {"train": _broken(tmp_path, shapes, how)})
    with pytest.raises(UserError) as info:
        _resolve(env, tmp_path)
    text = str(info.value)
    kind = "unreadable image" if how == "corrupt image" else how
    assert kind in text and "strict_data=false" in text
    assert ("train_0002.jpg" if how == "corrupt image" else "train_0003.txt") in text


@pytest.mark.parametrize("how", PROBLEMS)
def test_problems_skipped_when_not_strict(tmp_path, shapes, how):
    env = _env(tmp_path / "ml", {"train": _broken(tmp_path, shapes, how)})
    d = _resolve(env, tmp_path, strict_data=False)
    assert len(d.train) == 15 and sum(d.skipped.values()) == 1


@pytest.mark.parametrize("channels, words", [
    ({}, "no training data"),
    ({"images": "images"}, "no training data"),
])
def test_missing_channels(tmp_path, shapes, channels, words):
    env = _env(tmp_path / "ml", {k: shapes / v for k, v in channels.items()})
    with pytest.raises(UserError, match=words):
        _resolve(env, tmp_path)


def test_empty_and_unlabelled_data(tmp_path, shapes):
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "data.yaml").write_text("names: [a]\n")
    with pytest.raises(UserError, match="no training images"):
        _resolve(_env(tmp_path / "ml", {"train": empty}), tmp_path)
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(shapes / "images" / "train" / "train_0000.jpg", flat)
    with pytest.raises(UserError, match="no images/ folder"):
        _resolve(_env(tmp_path / "ml2", {"train": flat}), tmp_path)
    nolabels = tmp_path / "nolabels"
    shutil.copytree(shapes, nolabels)
    shutil.rmtree(nolabels / "labels")
    with pytest.raises(UserError, match="no labels found.*labels/train/train_0000.txt"):
        _resolve(_env(tmp_path / "ml3", {"train": nolabels}), tmp_path)


def test_no_names_anywhere(tmp_path, shapes):
    root = tmp_path / "data"
    shutil.copytree(shapes, root)
    (root / "data.yaml").unlink()
    with pytest.raises(UserError, match="no class names"):
        _resolve(_env(tmp_path / "ml", {"train": root}), tmp_path)


def test_ambiguous_data_yamls(tmp_path, shapes):
    root = tmp_path / "data"
    shutil.copytree(shapes, root)
    shutil.copy(root / "data.yaml", root / "other.yaml")
    with pytest.raises(UserError, match="several data YAMLs"):
        _resolve(_env(tmp_path / "ml", {"train": root}), tmp_path)
    assert _resolve(_env(tmp_path / "ml2", {"train": root}), tmp_path, data="other.yaml").names


def test_pipe_mode_refused(tmp_path, shapes):
    env = _env(tmp_path / "ml", {"train": shapes}, modes={"train": "Pipe"})
    with pytest.raises(UserError, match="Pipe mode"):
        _resolve(env, tmp_path)
