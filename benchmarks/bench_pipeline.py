"""The YOLO input pipeline: our image cache against plain ultralytics, same data, same arguments.

    python benchmarks/bench_pipeline.py [--large 48] [--small 192] [--imgsz 640] [--batch 16] [--workers N]
        [--passes 2] [--repeats 2] [--train | --map] [--memory] [--shm] [--work DIR]

Baseline: ultralytics' own training data loader (``build_yolo_dataset`` + ``build_dataloader``, mode
"train": default augmentations, mosaic included) over the original images, as ``YOLO().train()``
builds it. Ours: the same loader over the data YAML after ``container.yolo.image_cache.apply``.
Same workers (default: this machine's CPUs), batch, imgsz and seed for both, A/B alternated.

Sections:
* loader (always): images/s out of the loader for large photos (generated 4000x3000 JPEGs, about
  3 MB each, like a 12 MP phone photo) and small ones (640x480: nothing to cache, the check costs
  only the header reads); the ratio; the one-time cache build time.
* ``--train``: full training from ``yolo11n.yaml`` on the large photos, plain ``YOLO().train()`` vs
  ours (``image_cache.apply`` and ``FedTrainer``, as container/yolo/trainer.py runs them; the cache's
  build is timed apart), each in a fresh process: images/s from results.csv, CPU seconds, and
  mAP50/mAP50-95 of each run's last.pt on the same val set (the original images), per seed.
* ``--map``: the same comparison as ``--train``, sized to learn (issue 17: "a short training on large
  photos reaches the same mAP as plain ultralytics within noise"): 128 + 32 generated photos of
  3000x2000 (``--map-size``), imgsz 128, 15 epochs, seeds 0 and 1 (about 15 minutes on 2 shared CPU
  cores; ``--seeds 0,1,2,3``, about 20, for a verdict: 2 seeds misjudge the noise), deterministic,
  an optimizer step every batch and no warmup (for both); prints the difference ours - plain next to
  the seed-to-seed noise (pooled run-to-run standard deviation).
* ``--control`` (with ``--train``/``--map``): a third arm, our pipeline with copies resized exactly as
  ultralytics resizes (full decode, ``INTER_LINEAR``): same pixels, so its last.pt should equal plain's
  bit for bit, and any gap between ours and plain is the resampling alone.
* ``--memory``: peak RSS of the cache build and of the loader for 1,000 and 10,000 images
  (small generated JPEGs, 256x192 at imgsz 64: the per-image bookkeeping is what grows).
* ``--shm``: the loader with a 1 MiB /dev/shm (a private mount namespace, ``unshare``): plain
  ultralytics with workers vs ours (workers fitted to /dev/shm).
Goals (issue 17): >= 2x plain ultralytics' loader throughput on large photos, no loss on small ones.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_VERBOSE", "false")

from container.synthetic import NAMES, make_photos

METRICS = ("mAP50", "mAP50-95")  # ultralytics' results.csv columns metrics/<name>(B)


# -- data ----------------------------------------------------------------------------------------
def dataset(root: Path, *, count: int, size: tuple[int, int], val: int = 4) -> Path:
    """A generated photo dataset (kept between runs under --work) with plain.yaml listing it as our trainer does."""
    marker = root / "done.json"
    spec = {"count": count, "size": list(size), "val": val}
    if not marker.is_file() or json.loads(marker.read_text()) != spec:
        shutil.rmtree(root, ignore_errors=True)
        _generate(root, count=count, val=val, size=size)
        marker.write_text(json.dumps(spec))
    for split in ("train", "val"):
        images = sorted((root / "images" / split).glob("*.jpg"))
        (root / f"{split}.txt").write_text("".join(f"{p}\n" for p in images))
    (root / "plain.yaml").write_text(json.dumps({"path": str(root), "train": "train.txt", "val": "val.txt",
                                                 "names": dict(enumerate(NAMES))}))
    return root / "plain.yaml"


def _generate(root: Path, *, count: int, val: int, size: tuple[int, int]) -> None:
    """make_photos in one process per CPU (chunks with their own seeds), merged into one tree."""
    from concurrent.futures import ProcessPoolExecutor

    cpus = os.cpu_count() or 1
    chunks = [(root / f"part{k}", len(range(k, count, cpus)), len(range(k, val, cpus)), k) for k in range(cpus)]
    chunks = [c for c in chunks if c[1] or c[2]]
    with ProcessPoolExecutor(max_workers=len(chunks)) as pool:
        list(pool.map(_chunk, chunks, [size] * len(chunks)))
    for part, *_ in chunks:
        for image in sorted(part.glob("images/*/*.jpg")):
            split = image.parent.name
            stem = f"{part.name}_{image.stem}"
            for src, dst in ((image, root / "images" / split / f"{stem}.jpg"),
                             (part / "labels" / split / f"{image.stem}.txt", root / "labels" / split / f"{stem}.txt")):
                dst.parent.mkdir(parents=True, exist_ok=True)
                src.rename(dst)
        shutil.rmtree(part)


def _chunk(chunk: tuple[Path, int, int, int], size: tuple[int, int]) -> None:
    part, train, val, seed = chunk
    make_photos(part, train=train, val=val, size=size, seed=seed)


def cached_yaml(plain: Path, imgsz: int, cache_dir: Path, threads: int) -> tuple[Path, float, object]:
    """Our data YAML (a copy of plain.yaml run through the image cache, built afresh) and the build seconds."""
    from container.yolo import image_cache

    ours = plain.with_name(f"ours-{imgsz}.yaml")
    shutil.copyfile(plain, ours)
    shutil.rmtree(cache_dir, ignore_errors=True)
    start = time.perf_counter()
    summary = image_cache.apply(ours, imgsz=imgsz, cache_dir=cache_dir, threads=threads, log=lambda s: None)
    return ours, time.perf_counter() - start, summary


# -- the loader ------------------------------------------------------------------------------------
def loader_rate(data_yaml: Path, *, imgsz: int, batch: int, workers: int, passes: int, seed: int = 0) -> float:
    """Images per second out of ultralytics' training loader (default augmentations), after its first batch."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import DEFAULT_CFG
    from ultralytics.utils.torch_utils import init_seeds

    init_seeds(seed)
    cfg = get_cfg(DEFAULT_CFG, {"imgsz": imgsz, "seed": seed})
    data = check_det_dataset(str(data_yaml))
    ds = build_yolo_dataset(cfg, data["train"], batch, data, mode="train")
    loader = build_dataloader(ds, batch, workers, shuffle=True, rank=-1)
    count, start = 0, None
    try:
        for _ in range(passes):
            for b in loader:
                if start is None:  # workers started and the first batch made: steady state from here
                    start = time.perf_counter()
                    continue
                count += int(b["img"].shape[0])
    finally:
        loader.close()
    return count / (time.perf_counter() - start)


def compare_loaders(name: str, plain: Path, args, work: Path) -> dict:
    ours, build_s, summary = cached_yaml(plain, args.imgsz, work / f"cache-{name}", args.workers)
    rates: dict[str, list[float]] = {"plain": [], "ours": []}
    for _ in range(args.repeats):
        for who, y in (("plain", plain), ("ours", ours)):
            rates[who].append(loader_rate(y, imgsz=args.imgsz, batch=args.batch, workers=args.workers,
                                          passes=args.passes))
    p, o = statistics.median(rates["plain"]), statistics.median(rates["ours"])
    n = len(plain.with_name("train.txt").read_text().splitlines())
    return {"dataset": name, "images": n, "plain_img_s": p, "ours_img_s": o, "ratio": o / p,
            "cache_build_s": build_s, "cached": summary.cached, "cache_mib": summary.bytes / 2**20,
            "runs_plain": rates["plain"], "runs_ours": rates["ours"],
            "break_even_epochs": build_s / max(n / p - n / o, 1e-9) if o > p and summary.cached else None}


# -- full training ---------------------------------------------------------------------------------
TRAIN_SNIPPET = """
import json, sys
from pathlib import Path
from container.yolo.prepare import configure_offline
configure_offline()
from ultralytics import YOLO
a = json.loads(sys.argv[1])
cache, evaluate = a.pop("cache"), a.pop("evaluate")
model = YOLO(a.pop("model"))
if cache:  # ours, as container/yolo/trainer.py runs it: the image cache (reused: built before), our trainer class
    import cv2
    from container.yolo import image_cache
    from container.yolo.fed_trainer import FedTrainer
    from ultralytics.utils.patches import imread

    def like_ultralytics(path, size, target):  # load_image's own resize: full decode, INTER_LINEAR
        image = imread(str(path))
        return cv2.resize(image, image_cache.target_size(image.shape[1], image.shape[0], max(target)),
                          interpolation=cv2.INTER_LINEAR)

    if cache["control"]:  # the control arm: copies made exactly as ultralytics resizes each epoch
        image_cache.decode_resized = like_ultralytics
    image_cache.apply(Path(a["data"]), imgsz=image_cache.training_imgsz(model, a), threads=cache["threads"],
                      cache_dir=Path(cache["dir"]))
    model.train(trainer=FedTrainer, **a)
else:  # plain ultralytics
    model.train(**a)
# the final weights on the original val images, the same set for both
m = YOLO(str(Path(a["project"]) / a["name"] / "weights" / "last.pt")).val(
    data=evaluate, imgsz=a["imgsz"], batch=a["batch"], device=a["device"], plots=False, verbose=False,
    project=a["project"], name=a["name"] + "-val", exist_ok=True)
print("EVAL " + json.dumps({"mAP50": float(m.box.map50), "mAP50-95": float(m.box.map)}))
"""


@dataclass
class Training:
    """One training comparison: the same model, data, seeds and arguments for plain ultralytics and ours."""

    epochs: int
    imgsz: int
    batch: int
    workers: int
    device: str
    seeds: list[int]
    extra: dict = field(default_factory=dict)  # further ultralytics arguments, for both
    gpu_sample: bool = False


def train_once(data_yaml: Path, out: Path, t: Training, seed: int, *, evaluate: Path, cache: Path | None,
               control: bool = False) -> dict:
    """One fresh-process training (ours when ``cache`` is given) and its numbers.

    images/s from results.csv, CPU and wall seconds of the process, each trainer's own last validation
    (ours validates on its cached copies), mAP of last.pt on ``evaluate``'s (the originals') val set, and
    the GPU busy share when sampled.
    """
    shutil.rmtree(out, ignore_errors=True)
    a = {"model": "yolo11n.yaml", "data": str(data_yaml), "epochs": t.epochs, "imgsz": t.imgsz, "batch": t.batch,
         "workers": t.workers, "seed": seed, "deterministic": True, "plots": False, "project": str(out.parent),
         "name": out.name, "exist_ok": True, "device": t.device or "cpu", "verbose": False, **t.extra,
         "evaluate": str(evaluate),
         "cache": {"dir": str(cache), "threads": os.cpu_count() or 1, "control": control} if cache else None}
    sampler = None
    if t.gpu_sample:  # GPU busy share: nvidia-smi every 0.5 s while this training runs
        sampler = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                    "-lms", "500"], stdout=(out.parent / f"{out.name}-gpu.csv").open("w"))
    log = out.parent / f"{out.name}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    cpu0, wall0 = _children_cpu(), time.perf_counter()
    try:
        with log.open("w") as fh:
            done = subprocess.run([sys.executable, "-c", TRAIN_SNIPPET, json.dumps(a)], stdout=fh,
                                  stderr=subprocess.STDOUT, check=False, env=env)
    finally:
        if sampler is not None:
            sampler.terminate()
            sampler.wait()
    cpu, wall = _children_cpu() - cpu0, time.perf_counter() - wall0
    if done.returncode:
        sys.exit(f"training failed (exit {done.returncode}), its log: {log}\n" + log.read_text()[-3000:])
    rows = list(csv.DictReader((out / "results.csv").open()))
    import yaml

    data = yaml.safe_load(data_yaml.read_text())
    listed = Path(data["train"]) if Path(data["train"]).is_absolute() else Path(data["path"]) / data["train"]
    n_train = len(listed.read_text().splitlines())
    busy = None
    if t.gpu_sample:
        samples = [float(x) for x in (out.parent / f"{out.name}-gpu.csv").read_text().split() if x.strip()]
        busy = statistics.mean([x for x in samples if x > 0] or [0.0])
    evaluated = [ln for ln in log.read_text().splitlines() if ln.startswith("EVAL ")]
    return {"seed": seed, "img_s": n_train * len(rows) / float(rows[-1]["time"]), "cpu_s": cpu, "wall_s": wall,
            "own": {m: float(rows[-1][f"metrics/{m}(B)"]) for m in METRICS},
            "loss": sum(float(rows[-1][f"train/{k}_loss"]) for k in ("box", "cls", "dfl")),
            "eval": json.loads(evaluated[-1][5:]), "gpu_busy": busy, "last": out / "weights" / "last.pt"}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def compare_training(plain: Path, t: Training, work: Path, name: str, *, control: bool = False) -> dict:
    """Plain and ours for each seed, alternated; ours' cache built (and timed) once before, as a job would.

    ``control``: a third arm, our pipeline with copies resized as ultralytics resizes (full decode,
    ``INTER_LINEAR``; built in its first run): the same pixels as plain, so any difference from plain
    is the cache's mechanics (copies, lists, label links, FedTrainer), not the resampling.
    """
    ours, build_s, _ = cached_yaml(plain, t.imgsz, work / f"cache-{name}", os.cpu_count() or 1)
    arms = [("plain", plain, None), ("ours", ours, work / f"cache-{name}")]
    if control:
        arms.append(("control", plain.with_name(f"control-{t.imgsz}.yaml"), work / f"cache-{name}-control"))
        shutil.copyfile(plain, arms[-1][1])
        shutil.rmtree(arms[-1][2], ignore_errors=True)
    out = {"cache_build_s": build_s, **{who: [] for who, *_ in arms}}
    for seed in t.seeds:
        for who, y, cache in arms:
            out[who].append(train_once(y, work / f"run-{name}-{who}-{seed}", t, seed, evaluate=plain,
                                       cache=cache, control=who == "control"))
    return out


def print_training(t: dict, setup: Training, what: str) -> None:
    """Speed (images/s, CPU s) and accuracy, with the seed-to-seed spread that says what "within noise" is."""
    arms = [who for who in ("plain", "ours", "control") if who in t]
    p = statistics.median(x["img_s"] for x in t["plain"])
    o = statistics.median(x["img_s"] for x in t["ours"])
    print(f"training yolo11n.yaml from scratch on {what}, imgsz {setup.imgsz}, {setup.epochs} epochs, batch "
          f"{setup.batch}, seeds {setup.seeds}, device {setup.device or 'cpu'}"
          + (f", also {setup.extra}" if setup.extra else "") + f": plain {p:.1f} img/s, ours {o:.1f} img/s "
          f"(cache build {t['cache_build_s']:.1f} s not included), ratio {o / p:.2f}x")
    for who in arms:
        print(f"  {who}: " + "; ".join(
            f"seed {x['seed']}: {x['img_s']:.1f} img/s, {x['cpu_s']:.0f} CPU s, {x['wall_s']:.0f} s wall"
            + (f", GPU busy {x['gpu_busy']:.0f} % of samples > 0" if x["gpu_busy"] is not None else "")
            for x in t[who]))
    print("  accuracy: last.pt of each run validated on the same val set (the original images)"
          + (" - control: our pipeline with copies resized as ultralytics does (full decode, INTER_LINEAR)"
             if "control" in t else "") + ":")
    n = len(setup.seeds)
    for metric in METRICS:
        runs = {who: [x["eval"][metric] for x in t[who]] for who in arms}
        line = f"    {metric:<8} " + ", ".join(f"{who} {_list(runs[who])}" for who in arms)
        noise = None
        if n > 1:
            # seed-to-seed noise: the run-to-run standard deviation, pooled over plain's and ours' seeds; the
            # difference of two means of n seeds has sqrt(2 / n) of it, and "within noise" is within 2 of those
            sd = {who: statistics.stdev(runs[who]) for who in ("plain", "ours")}
            pooled = ((sd["plain"] ** 2 + sd["ours"] ** 2) / 2) ** 0.5
            noise = 2 * pooled * (2 / n) ** 0.5
            line += (f"; seed-to-seed std plain {sd['plain']:.3f}, ours {sd['ours']:.3f}, pooled {pooled:.3f}; "
                     f"noise of a difference of {n}-seed means (2 x pooled x sqrt(2/{n})): {noise:.3f}")
        print(line)
        for who in arms[1:]:
            diffs = [b - a for a, b in zip(runs["plain"], runs[who], strict=True)]
            mean = statistics.mean(diffs)
            verdict = ("" if noise is None else ": within noise" if abs(mean) <= noise
                       else f": {who} {'HIGHER' if mean > 0 else 'LOWER'}, beyond the noise")
            print(f"      {who} - plain {_list(diffs, sign=True)}, mean {mean:+.3f}{verdict}")
    if "control" in t:
        same = [_same_weights(a["last"], b["last"]) for a, b in zip(t["plain"], t["control"], strict=True)]
        print(f"      control's last.pt bit-identical to plain's, per seed: {same}")
    if 1 < n < 4:
        print(f"  NOTE: {n} seeds make the standard deviation a rough guess: --seeds 0,1,2,3 for a verdict")
    print("  last epoch's training loss (box + cls + dfl): " + "; ".join(
        f"{who} {_list([x['loss'] for x in t[who]])}" for who in arms))
    if statistics.mean(x["eval"]["mAP50"] for x in t["plain"]) < 0.3:
        print("  NOTE: plain ultralytics' mAP50 is under 0.3: too little learned for the comparison to mean much")
    print("  each trainer's own last validation (ours validates on its cached copies): " + "; ".join(
        f"{who} mAP50 {_list([x['own']['mAP50'] for x in t[who]])}, mAP50-95 "
        f"{_list([x['own']['mAP50-95'] for x in t[who]])}" for who in arms))
    runs = [x for who in arms for x in t[who]]
    print(f"  CPU seconds of all {len(runs)} trainings: {sum(x['cpu_s'] for x in runs):.0f}")


def _same_weights(a: Path, b: Path) -> bool:
    import torch

    x, y = (torch.load(p, map_location="cpu", weights_only=False)["model"].state_dict() for p in (a, b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _list(values: list[float], *, sign: bool = False) -> str:
    return ", ".join(f"{v:+.3f}" if sign else f"{v:.3f}" for v in values)


# -- memory ----------------------------------------------------------------------------------------
MEMORY_SNIPPET = """
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
os.environ["YOLO_OFFLINE"] = "1"
from pathlib import Path
what, data_yaml, cache, n = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if what == "cache":
    import ultralytics.data.utils  # the trainer has it imported already: not the cache's memory
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from container.yolo import image_cache
    image_cache.apply(data_yaml, imgsz=64, cache_dir=cache, threads=os.cpu_count(), log=lambda s: None)
else:
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import DEFAULT_CFG
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    data = check_det_dataset(str(data_yaml))
    ds = build_yolo_dataset(get_cfg(DEFAULT_CFG, {{"imgsz": 64}}), data["train"], 16, data, mode="train")
    loader = build_dataloader(ds, 16, 0, shuffle=True, rank=-1)
    for i, b in enumerate(loader):
        if i == 200:
            break
print(json.dumps({{"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "base_mib": base / 1024}}))
"""


def tiny_images(root: Path, n: int) -> None:
    """``n`` small JPEGs with a label each (256x192, noisy fields): the per-image bookkeeping, not the decode."""
    import cv2
    import numpy as np

    images, labels = root / "images" / "train", root / "labels" / "train"
    have = len(list(images.glob("*.jpg"))) if images.is_dir() else 0
    if have >= n:
        return
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(have, n):
        field = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        img = cv2.resize(field, (256, 192), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(images / f"img_{i:06d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 80])
        (labels / f"img_{i:06d}.txt").write_text(f"{i % 2} 0.5 0.5 0.3 0.3\n")


def measure_memory(work: Path, sizes: list[int]) -> list[dict]:
    root = work / "memory"
    tiny_images(root, max(sizes))
    all_images = sorted((root / "images" / "train").glob("*.jpg"))
    rows = []
    for n in sizes:
        listed = root / f"train-{n}.txt"
        listed.write_text("".join(f"{p}\n" for p in all_images[:n]))
        row = {"images": n}
        for what in ("cache", "loader"):
            data_yaml = root / f"data-{n}-{what}.yaml"
            data_yaml.write_text(json.dumps({"path": str(root), "train": listed.name, "val": listed.name,
                                             "names": dict(enumerate(NAMES))}))
            cache = root / f"cache-{n}"
            if what == "loader":  # the loader over the cached tree, as in training
                shutil.copyfile(root / f"data-{n}-cache.yaml", data_yaml)
            else:
                shutil.rmtree(cache, ignore_errors=True)
            done = subprocess.run([sys.executable, "-c", MEMORY_SNIPPET.format(root=str(ROOT)), what, str(data_yaml),
                                   str(cache), str(n)], check=True, capture_output=True, text=True)
            got = json.loads(done.stdout.strip().splitlines()[-1])
            row[f"{what}_peak_mib"], row[f"{what}_base_mib"] = got["peak_mib"], got["base_mib"]
        rows.append(row)
    return rows


# -- /dev/shm --------------------------------------------------------------------------------------
SHM_SNIPPET = """
import json, os, sys
sys.path.insert(0, {root!r})
os.environ["YOLO_OFFLINE"] = "1"
who, data_yaml, imgsz, batch, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
from container.yolo import loader as fitting
from ultralytics.cfg import get_cfg
from ultralytics.data import build_dataloader, build_yolo_dataset
from ultralytics.data.utils import check_det_dataset
from ultralytics.utils import DEFAULT_CFG
if who == "ours":
    workers, reasons = fitting.fit_workers(workers=workers, batch=batch, imgsz=imgsz, cpus=os.cpu_count(),
                                           shm=fitting.shm_bytes(), memory=fitting.memory_available())
data = check_det_dataset(data_yaml)
ds = build_yolo_dataset(get_cfg(DEFAULT_CFG, {{"imgsz": imgsz}}), data["train"], batch, data, mode="train")
dl = build_dataloader(ds, batch, workers, shuffle=True, rank=-1)
n = sum(int(b["img"].shape[0]) for b in dl)
print(json.dumps({{"workers": workers, "images": n}}))
"""


def shm_demo(data_yaml: Path, args) -> dict:
    out = {}
    for who in ("plain", "ours"):
        cmd = ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "$@"', "sh",
               sys.executable, "-c", SHM_SNIPPET.format(root=str(ROOT)), who, str(data_yaml), str(args.imgsz),
               str(args.batch), str(max(2, args.workers))]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
            last = (done.stdout.strip().splitlines() or [""])[-1]
            error = [ln for ln in done.stderr.splitlines() if "Error" in ln][-1:] or [f"exit {done.returncode}"]
            out[who] = json.loads(last) if done.returncode == 0 else {"failed": error[0][:200]}
        except subprocess.TimeoutExpired:
            out[who] = {"failed": "hung for 300 s"}
        except FileNotFoundError:
            out[who] = {"failed": "unshare not available"}
    return out


# -- main ------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large", type=int, default=48, help="large photos (4000x3000)")
    parser.add_argument("--small", type=int, default=192, help="small photos (640x480)")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--passes", type=int, default=2, help="passes over the data per loader measurement")
    parser.add_argument("--repeats", type=int, default=2, help="A/B alternations; the median is reported")
    parser.add_argument("--no-loader", action="store_true", help="skip the loader section (run only the others)")
    trained = parser.add_mutually_exclusive_group()
    trained.add_argument("--train", action="store_true", help="also full training on the large photos, plain vs ours")
    trained.add_argument("--map", action="store_true",
                         help="also the accuracy check: training long enough to learn, plain vs ours, 2 seeds "
                         "(4 for a verdict: --seeds 0,1,2,3)")
    parser.add_argument("--train-imgsz", type=int, help="default: 160 (--train), 128 (--map)")
    parser.add_argument("--train-epochs", type=int, help="default: 10 (--train), 15 (--map)")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")],
                        help="default: 0 (--train), 0,1 (--map)")
    parser.add_argument("--control", action="store_true",
                        help="--train/--map: a third arm, ours with copies resized as ultralytics does")
    parser.add_argument("--map-images", type=lambda s: [int(x) for x in s.split(",")], default=[128, 32],
                        help="--map: train,val photos")
    parser.add_argument("--map-size", type=lambda s: tuple(int(x) for x in s.split("x")), default=(3000, 2000),
                        help="--map: the photos' WxH (reduction to imgsz: the larger, the more ultralytics aliases)")
    parser.add_argument("--device", default="", help="training device: '' = cpu here, '0' on a GPU machine")
    parser.add_argument("--gpu-sample", action="store_true", help="sample nvidia-smi during each training")
    parser.add_argument("--memory", action="store_true", help="peak RSS at 1k and 10k images")
    parser.add_argument("--memory-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 10000])
    parser.add_argument("--shm", action="store_true", help="a 1 MiB /dev/shm, plain vs ours")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench-pipeline")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    import cv2
    import torch
    import ultralytics

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch "
          f"{torch.__version__}, ultralytics {ultralytics.__version__}, OpenCV {cv2.__version__}; workers "
          f"{args.workers}, batch {args.batch}, imgsz {args.imgsz}, {args.passes} passes x {args.repeats} repeats")
    print(f"load average at start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    start_cpu, start_wall = _children_cpu() + time.process_time(), time.perf_counter()
    large = (dataset(args.work / "large", count=args.large, size=(4000, 3000))
             if not args.no_loader or args.train or args.shm else None)
    small = None if args.no_loader else dataset(args.work / "small", count=args.small, size=(640, 480))
    results = []
    for name, plain in () if args.no_loader else (("large 4000x3000", large), ("small 640x480", small)):
        r = compare_loaders(name.split()[0], plain, args, args.work)
        results.append(r)
        be = (f" (pays for itself after {r['break_even_epochs']:.2f} epochs)"
              if r["break_even_epochs"] is not None else "")
        print(f"loader {name}: {r['images']} images, plain {r['plain_img_s']:.1f} img/s, ours {r['ours_img_s']:.1f}"
              f" img/s, ratio {r['ratio']:.2f}x; cache: {r['cached']} images (train + val), {r['cache_mib']:.1f} MiB, "
              f"built or checked in {r['cache_build_s']:.1f} s{be}; runs plain "
              f"{[round(x, 1) for x in r['runs_plain']]}, ours {[round(x, 1) for x in r['runs_ours']]}")
    if args.train or args.map:
        setup = Training(epochs=args.train_epochs or (15 if args.map else 10),
                         imgsz=args.train_imgsz or (128 if args.map else 160), batch=args.batch,
                         workers=args.workers, device=args.device, seeds=args.seeds or ([0, 1] if args.map else [0]),
                         gpu_sample=args.gpu_sample)
        if args.map:
            # Learns in a few CPU minutes: an optimizer step every batch (nbs = batch; ultralytics' 64 would
            # accumulate 4 batches) and no warmup (at least 100 iterations, most of a short run); validation
            # only after the last epoch. The same arguments for both: what differs is the pipeline.
            setup.extra = {"nbs": args.batch, "warmup_epochs": 0, "val": False}
            train, val = args.map_images
            w, h = args.map_size
            data = dataset(args.work / f"map-{w}x{h}", count=train, size=(w, h), val=val)
            what = f"{train} photos {w}x{h} ({val} val)"
        else:
            data, what = large, f"{args.large} photos 4000x3000 (4 val)"
        print_training(compare_training(data, setup, args.work, "map" if args.map else "train", control=args.control),
                       setup, what)
    if args.memory:
        rows = measure_memory(args.work, args.memory_sizes)
        for row in rows:
            print(f"memory {row['images']:>6,} images: cache build peak RSS {row['cache_peak_mib']:.0f} MiB "
                  f"(+{row['cache_peak_mib'] - row['cache_base_mib']:.0f} over its start), loader peak RSS "
                  f"{row['loader_peak_mib']:.0f} MiB (+{row['loader_peak_mib'] - row['loader_base_mib']:.0f})")
        if len(rows) >= 2:
            a, b = rows[0], rows[-1]
            per_k = {w: ((b[f"{w}_peak_mib"] - b[f"{w}_base_mib"]) - (a[f"{w}_peak_mib"] - a[f"{w}_base_mib"]))
                     / ((b["images"] - a["images"]) / 1000) for w in ("cache", "loader")}
            print(f"memory growth per 1,000 images: cache build {per_k['cache']:.1f} MiB, loader "
                  f"{per_k['loader']:.1f} MiB; at 100,000 images about "
                  f"{b['cache_peak_mib'] + per_k['cache'] * (100 - b['images'] / 1000):.0f} MiB and "
                  f"{b['loader_peak_mib'] + per_k['loader'] * (100 - b['images'] / 1000):.0f} MiB peak")
    if args.shm:
        got = shm_demo(large, args)
        print(f"/dev/shm of 1 MiB, workers {max(2, args.workers)}, batch {args.batch}, imgsz {args.imgsz}: "
              f"plain {got['plain']}; ours {got['ours']}")

    cpu = _children_cpu() + time.process_time() - start_cpu
    print(f"whole run: {time.perf_counter() - start_wall:.0f} s wall, {cpu:.0f} CPU s (this process and its "
          f"children); load average at the end: "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
