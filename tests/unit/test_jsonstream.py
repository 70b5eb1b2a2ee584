"""The streaming JSON reader behind COCO files: every element exactly once, whatever the chunk boundaries."""

from __future__ import annotations

import json
import random

import pytest

from container.annotations import jsonstream


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_elements_survive_any_chunk_boundary(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(jsonstream, "CHUNK", chunk)
    rng = random.Random(chunk)
    path = tmp_path / "f.json"
    for trial in range(40):
        images = [{"id": i, "file_name": f'a b/{i}\u00e9\\".jpg', "w": rng.random() * 1e6}
                  for i in range(rng.randrange(0, 20))]
        annotations = [rng.choice([1, 2.5e10, -3, "s" * rng.randrange(40), {"k": [0.5] * rng.randrange(4)}, [], None,
                                   True]) for _ in range(rng.randrange(0, 30))]
        data = {"info": {"a": [1, 2]}, "images": images, "annotations": annotations, "z": 3}
        indent = [None, 0, 1, 2][trial % 4]
        path.write_text(json.dumps(data, indent=indent) if indent is not None else
                        json.dumps(data, separators=(",", ":")), encoding="utf-8")
        got: dict[str, list] = {"images": [], "annotations": []}
        rest = jsonstream.top_level(path, {k: got[k].append for k in got})
        assert got == {"images": images, "annotations": annotations}, (trial, indent)
        assert rest == {"info": {"a": [1, 2]}, "z": 3}


@pytest.mark.parametrize("broken", ['{"id": 2,, }', '{"id": 2} {"id": 3}'])
def test_an_error_early_in_a_big_file_is_reported_with_its_place(tmp_path, broken):
    body = ",".join(json.dumps({"id": i, "name": "x" * 30}) for i in range(100_000))  # several chunks
    path = tmp_path / "bad.json"
    path.write_text('{"images": [{"id": 1}, ' + broken + ", " + body + "]}", encoding="utf-8")
    seen: list = []
    with pytest.raises(ValueError, match=r"at character \d+ of the file"):
        jsonstream.top_level(path, {"images": seen.append})
    assert len(seen) <= 2  # it stopped where the file is wrong, not at its end


def test_a_truncated_file_is_an_error(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('{"images": [{"id": 1}, {"id": 2', encoding="utf-8")
    with pytest.raises(ValueError):
        jsonstream.top_level(path, {"images": lambda _: None})
