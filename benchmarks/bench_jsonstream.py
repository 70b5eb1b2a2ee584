"""The COCO stream reader on one long string: linear, not quadratic.

    python benchmarks/bench_jsonstream.py [--mb 256]

A COCO file whose one ``file_name`` is ``--mb`` MB long (a hostile file, or a tool that embedded an image as
text). ``container.annotations.jsonstream`` decodes an element cut by its 1 MB read again after the next read;
it read 1 MB at a time, so a 256 MB string was decoded 256 times (88 s). It now reads at least as much as is
pending (the string is decoded log2(256) times). ``json.load`` of the whole file is the baseline. Seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from container.annotations import jsonstream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.json"
        with open(path, "w", encoding="utf-8") as fh:
            fh.write('{"images": [{"id": 1, "file_name": "')
            fh.write("a" * (args.mb << 20))
            fh.write('"}], "annotations": [], "categories": []}')
        start = time.perf_counter()
        found: list = []
        jsonstream.top_level(path, {"images": found.append})
        stream = time.perf_counter() - start
        assert len(found[0]["file_name"]) == args.mb << 20
        found.clear()
        start = time.perf_counter()
        with open(path, encoding="utf-8") as fh:
            json.load(fh)
        whole = time.perf_counter() - start
    print(f"one {args.mb} MB string: jsonstream {stream:.2f} s, json.load {whole:.2f} s")


if __name__ == "__main__":
    main()
