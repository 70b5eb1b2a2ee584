"""What sharding the images of a Processing conversion costs, per step, at N image keys (default 100k).

    python benchmarks/bench_processing_shards.py [--keys 1000000] [--machines 4]

The SDK side (``sdk/data/convert_inputs.py``): classifying N listed keys (images by suffix) and writing the two
manifest files' bodies; ListObjectsV2 itself is N/1000 requests (printed, not run: no AWS here). The
machine side (``container/processing.py``): reading the image list, then the dataset tree (a link to each
of its 1/machines of the images, the other keys written to ``.images-elsewhere``) and its index
(``ImageIndex``), which the readers build anyway. Baseline: a machine of the FullyReplicated job, with
the downloads' bytes left out: N empty files created (each download creates one) and indexed. Bytes per
machine: 1/machines of the images against all of them (arithmetic, printed). Symbolic links are timed
too: where the inputs are separate mounts (likely on SageMaker) hard links fail over to them. CPU seconds
(``time.process_time``) beside wall seconds: the machine this ran on may be shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from container.annotations.paths import ImageIndex, is_image
from container.processing import link_tree, manifest_body, manifest_keys


def timed(label: str, fn, *args):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"  {label:<48} {wall:7.2f} s wall {cpu:7.2f} s CPU")
    return result, wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--machines", type=int, default=4)
    args = parser.parse_args()
    n, m = args.keys, args.machines
    keys = [f"cam{i % 50:02d}/{i // 50:07d}.jpg" for i in range(n)] + [f"ann/{i:05d}.json" for i in range(100)]
    print(f"{n:,} image keys, {m} machines; ListObjectsV2: {len(keys) // 1000 + 1:,} requests of 1,000 keys")
    print("SDK side:")
    images, _, _ = timed("classify the listing", lambda: [k for k in keys if is_image(k)])
    body, _, _ = timed("images.manifest body", manifest_body, "s3://bucket/raw/", images)
    print(f"  images.manifest: {len(body) / 1e6:.1f} MB (copied whole to every machine)")
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        root = Path(tmp)
        (root / "images.manifest").write_bytes(body)
        (root / "ann").mkdir()
        (root / "ann" / "instances.json").write_text("{}")
        mine = root / "mine"
        for key in images[: n // m]:  # this machine's share (which ones does not change the cost)
            (mine / key).parent.mkdir(parents=True, exist_ok=True)
            (mine / key).touch()
        print("machine side (ours):")
        listed, w1, c1 = timed("read the image list", manifest_keys, root / "images.manifest")
        held, w2, c2 = timed("link the tree (hard links: one file system)", link_tree, root / "ann", mine, listed,
                             root / "tree")
        index, w3, c3 = timed("index it (ImageIndex)", ImageIndex, root / "tree")
        assert held == n // m and len(index) == n
        _, ws, cs = timed("link the tree (symbolic: inputs on their own mounts)",
                          lambda: link_tree(root / "ann", mine, listed, root / "tree-s", hard_links=False))
        print("baseline (FullyReplicated: every image downloaded, the bytes left out):")
        full = root / "full"

        def create() -> None:
            made = set()
            for key in images:
                folder = f"{full}/{key.rpartition('/')[0]}"
                if folder not in made:
                    os.makedirs(folder, exist_ok=True)
                    made.add(folder)
                os.close(os.open(f"{full}/{key}", os.O_CREAT | os.O_WRONLY, 0o644))

        _, bw1, bc1 = timed(f"create {n:,} empty files", create)
        base, bw2, bc2 = timed("index the whole tree (ImageIndex)", ImageIndex, full)
        assert len(base) == n
    base_w, base_c = bw1 + bw2, bc1 + bc2
    for how, link_w, link_c in (("hard", w2, c2), ("symbolic", ws, cs)):
        ours_w, ours_c = w1 + link_w + w3, c1 + link_c + c3
        print(f"ours ({how} links) / baseline: {ours_w / base_w:.2f}x wall, {ours_c / base_c:.2f}x CPU")
    print(f"image bytes downloaded per machine: 1/{m} of the baseline's")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
