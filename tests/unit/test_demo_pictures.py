"""examples/train_local.py's prediction pictures: large enough to read, each label whole inside the picture."""

from __future__ import annotations

import importlib.util

from PIL import Image

from tests.conftest import ROOT


def _demo():
    spec = importlib.util.spec_from_file_location("train_local_demo", ROOT / "examples" / "train_local.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_labels_are_drawn_whole_on_an_enlarged_picture(tmp_path):
    demo = _demo()
    source = tmp_path / "a.jpg"
    Image.new("RGB", (96, 96), (20, 20, 20)).save(source)
    boxes = [((80.0, 0.0, 96.0, 12.0), "rectangle", 0.987),  # the top right corner: no room above, none right
             ((0.0, 84.0, 30.0, 96.0), "ellipse", 0.5),  # the bottom left
             ((30.0, 40.0, 60.0, 70.0), "ellipse", 0.25)]
    labels = demo.draw(source, boxes, tmp_path / "out.jpg")
    with Image.open(tmp_path / "out.jpg") as drawn:
        size = drawn.size
    assert size == (demo.SHOWN_PX, demo.SHOWN_PX) and demo.SHOWN_PX >= 384
    assert len(labels) == 3
    for x0, y0, x1, y1 in labels:
        assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]
        assert y1 - y0 >= 12  # a readable font, not ultralytics' few pixels at 96 px
