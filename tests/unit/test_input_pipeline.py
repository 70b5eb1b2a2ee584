"""The input pipeline's parts (docs/input-pipeline.md): the image cache on small real images, worker sizing."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from container.yolo import image_cache, loader

IMGSZ = 64


def _tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _jpeg(path: Path, w: int, h: int, seed: int, exif_orientation: int | None = None) -> None:
    rng = np.random.default_rng(seed)
    field = rng.integers(0, 255, (max(2, h // 20), max(2, w // 20), 3), dtype=np.uint8)
    img = cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil = Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    if exif_orientation:
        exif = pil.getexif()
        exif[274] = exif_orientation
        pil.save(path, quality=92, exif=exif.tobytes())
    elif path.suffix == ".png":
        pil.save(path)
    else:
        pil.save(path, quality=92)


@pytest.fixture
def dataset(tmp_path):
    """A channel (images/ + labels/) and a scratch folder with lists and a data YAML, as the dataset step writes."""
    channel = tmp_path / "channel"
    images = channel / "images"
    specs = {"big0.jpg": (400, 300, None), "big1.jpg": (300, 400, None), "rotated.jpg": (400, 300, 6),
             "big.png": (320, 240, None), "small.jpg": (80, 60, None), "under.jpg": (90, 60, None)}
    for i, (name, (w, h, orient)) in enumerate(specs.items()):
        _jpeg(images / name, w, h, i, orient)
        label = channel / "labels" / Path(name).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(f"{i % 2} 0.5 0.5 0.25 0.25\n")
    (images / "background.jpg").unlink(missing_ok=True)
    _jpeg(images / "background.jpg", 400, 300, 99)  # no label file
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff not a JPEG at all")
    work = tmp_path / "scratch" / "data"
    work.mkdir(parents=True)
    all_images = sorted(images.iterdir())
    (work / "train.txt").write_text("".join(f"{p}\n" for p in all_images[:-2]))
    (work / "val.txt").write_text("".join(f"{p}\n" for p in all_images[-2:]))
    data_yaml = work / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"path": str(work), "train": "train.txt", "val": "val.txt",
                                         "nc": 2, "names": {0: "a", 1: "b"}}))
    return channel, data_yaml, tmp_path / "scratch" / "image-cache"


def _listed(data_yaml: Path) -> dict[str, Path]:
    data = yaml.safe_load(data_yaml.read_text())
    out = {}
    for split in ("train", "val"):
        for line in Path(data[split]).read_text().splitlines():
            out[Path(line).stem] = Path(line)
    return out


# -- geometry --------------------------------------------------------------------------------------
@pytest.mark.parametrize("w, h, imgsz, want", [
    (4000, 3000, 640, (640, 480)), (3000, 4000, 640, (480, 640)), (4032, 3024, 640, (640, 480)),
    (1001, 333, 320, (320, 107)), (5472, 3648, 640, (640, 427)), (640, 640, 320, (320, 320)),
])
def test_target_size_is_ultralytics_long_side_rule(w, h, imgsz, want):
    assert image_cache.target_size(w, h, imgsz) == want


@pytest.mark.parametrize("w, h, target, factor", [
    (4000, 3000, (640, 480), 4), (5120, 3840, (640, 480), 8), (1000, 750, (640, 480), 1),
    (1280, 960, (640, 480), 2), (3000, 4000, (480, 640), 4), (5112, 3834, (640, 480), 4), (5121, 3841, (640, 481), 8),
])
def test_reduction_never_decodes_below_the_target(w, h, target, factor):
    assert image_cache.reduction(w, h, target) == factor


def test_decode_resized_matches_a_full_decode_and_follows_exif(tmp_path):
    path = tmp_path / "r.jpg"
    _jpeg(path, 800, 600, 1, exif_orientation=6)
    full = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)  # what ultralytics' imread gives
    assert full.shape[:2] == (800, 600)  # upright: rotated by the decoder
    got = image_cache.decode_resized(path, (800, 600), image_cache.target_size(800, 600, 128))
    assert got.shape[:2] == (128, 96)
    reference = cv2.resize(full, (96, 128), interpolation=cv2.INTER_AREA)
    assert np.abs(got.astype(int) - reference).mean() < 1.5  # two good resizers, not two images


# -- the cache -------------------------------------------------------------------------------------
def test_apply_caches_large_images_only_and_keeps_labels_and_channel(dataset):
    channel, data_yaml, cache = dataset
    before = _tree_state(channel)
    lines = []
    summary = image_cache.apply(data_yaml, imgsz=IMGSZ, cache_dir=cache, threads=2, log=lines.append)
    assert _tree_state(channel) == before, "nothing is written next to the data"
    listed = _listed(data_yaml)
    assert summary.format == "bmp" and summary.built == summary.cached == 5  # big0, big1, rotated, big.png, background
    assert summary.images == 8 and not summary.failed
    for stem, (w, h) in {"big0": (64, 48), "big1": (48, 64), "rotated": (48, 64), "big": (64, 48),
                         "background": (64, 48)}.items():
        copy = listed[stem]
        assert copy.suffix == ".bmp" and cache in copy.parents
        assert cv2.imread(str(copy)).shape[:2] == (h, w), stem
    for stem in ("small", "under", "broken"):  # under 1.5x imgsz (96 px) or unreadable: the originals
        assert cache not in listed[stem].parents and listed[stem].parent == channel / "images"
    label = Path(str(listed["big0"]).replace("/images/", "/labels/")).with_suffix(".txt")
    assert label.is_symlink() and label.read_text() == (channel / "labels" / "big0.txt").read_text()
    assert not Path(str(listed["background"]).replace("/images/", "/labels/")).with_suffix(".txt").exists()
    assert any("read from copies" in line for line in lines)


def test_apply_reuses_what_survives_and_rebuilds_what_changed(dataset):
    channel, data_yaml, cache = dataset
    first = image_cache.apply(data_yaml, imgsz=IMGSZ, cache_dir=cache, threads=2, log=lambda s: None)
    copy = _listed(data_yaml)["big0"]
    again = image_cache.apply(data_yaml, imgsz=IMGSZ, cache_dir=cache, threads=2, log=lambda s: None)
    assert (again.built, again.reused) == (0, first.built)
    _jpeg(channel / "images" / "big0.jpg", 400, 300, seed=1234)  # new content, same name
    copy.unlink()
    (cache / image_cache.TREE).joinpath("nothing.bmp").write_bytes(b"")  # not in the manifest: ignored
    changed = image_cache.apply(data_yaml, imgsz=IMGSZ, cache_dir=cache, threads=2, log=lambda s: None)
    assert (changed.built, changed.reused) == (1, first.built - 1)
    bigger = image_cache.apply(data_yaml, imgsz=2 * IMGSZ, cache_dir=cache, threads=2, log=lambda s: None)
    assert bigger.built == 5 and bigger.reused == 0  # every copy has a new size
    assert cv2.imread(str(_listed(data_yaml)["big0"])).shape[:2] == (96, 128)


def test_a_damaged_manifest_means_a_rebuild(dataset):
    _, data_yaml, cache = dataset
    image_cache.apply(data_yaml, imgsz=IMGSZ, cache_dir=cache, threads=1, log=lambda s: None)
    (cache / image_cache.MANIFEST).write_text("{not json")
    rebuilt = image_cache.apply(data_yaml, imgsz=IMGSZ, cache_dir=cache, threads=1, log=lambda s: None)
    assert rebuilt.built == 5 and rebuilt.reused == 0
    assert json.loads((cache / image_cache.MANIFEST).read_text())["version"] == image_cache.CACHE_VERSION


def test_disk_budget_png_then_originals(dataset, monkeypatch):
    _, data_yaml, cache = dataset
    reserve = image_cache.RESERVE_MIN
    bmp_one = image_cache.encoded_size("bmp", 64, 48)
    # room for about two BMP copies: PNG is chosen, and what does not fit keeps its original
    monkeypatch.setattr(image_cache, "free_bytes", lambda path: (reserve + 2 * bmp_one, 10 * reserve))
    lines = []
    summary = image_cache.apply(data_yaml, imgsz=IMGSZ, cache_dir=cache, threads=1, log=lines.append)
    assert summary.format == "png"
    assert summary.cached >= 1 and summary.over_budget >= 1 and summary.cached + summary.over_budget == 5
    assert summary.bytes <= 2 * bmp_one
    assert any("BMP does not fit" in line for line in lines)
    assert any("the disk holds no more" in line for line in lines)
    monkeypatch.setattr(image_cache, "free_bytes", lambda path: (reserve // 2, 10 * reserve))
    none = image_cache.apply(data_yaml, imgsz=IMGSZ, cache_dir=cache.with_name("elsewhere"), threads=1,
                             log=lambda s: None)
    assert none.cached == 0 and all(cache not in p.parents for p in _listed(data_yaml).values())


def test_off_leaves_the_data_yaml_alone(dataset):
    _, data_yaml, cache = dataset
    text = data_yaml.read_text()
    lines = []
    assert image_cache.apply(data_yaml, imgsz=IMGSZ, cache_dir=cache, threads=1, log=lines.append,
                             enabled=False).cached == 0
    assert data_yaml.read_text() == text and not cache.exists() and "off" in lines[0]


# -- workers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cpus, gpus, want", [(2, 0, 2), (4, 1, 4), (16, 1, 15), (96, 8, 11), (8, 4, 2), (1, 1, 1)])
def test_default_workers_follow_the_cpus(cpus, gpus, want):
    assert loader.default_workers(cpus=cpus, gpus=gpus) == want


def test_workers_fit_a_small_dev_shm():
    mib = 2**20
    args = {"batch": 16, "imgsz": 640, "cpus": 16, "memory": None}
    one = loader.shm_need(workers=1, batch=16, imgsz=640, cpus=16)
    assert loader.fit_workers(workers=8, shm=(64 * mib, 64 * mib), **args)[0] == 0  # Docker's default: none fit
    fitted, reasons = loader.fit_workers(workers=8, shm=(4 * one, 4 * one), **args)
    assert 1 <= fitted < 8 and "/dev/shm" in reasons[0]
    assert loader.shm_need(workers=fitted, batch=16, imgsz=640, cpus=16) <= loader.SHM_SHARE * 4 * one
    assert loader.fit_workers(workers=8, shm=(2**40, 2**40), **args) == (8, [])
    assert loader.fit_workers(workers=8, shm=None, **args) == (8, [])
    halves = loader.fit_workers(workers=8, shm=(4 * one, 4 * one), ranks=2, **args)[0]
    assert halves < fitted  # two GPU ranks share the instance's /dev/shm


def test_workers_fit_memory():
    per_worker = loader.memory_need(workers=1, batch=64, imgsz=640, cpus=1)
    fitted, reasons = loader.fit_workers(workers=15, batch=64, imgsz=640, cpus=16, shm=None,
                                         memory=int(8 * per_worker / loader.MEMORY_SHARE))
    assert 1 <= fitted < 15 and "memory" in reasons[0]


def test_fitted_loaders_build_with_the_fitted_number(monkeypatch):
    seen = []

    class Base:
        def get_dataloader(self, dataset_path, batch_size=16, rank=0, mode="train"):
            seen.append((mode, self.args.workers))

    class Trainer(loader.FittedLoaders, Base):
        pass

    class Args:
        workers = 8
        imgsz = 640

    trainer = Trainer()
    trainer.args, trainer.world_size = Args(), 1
    one = loader.shm_need(workers=1, batch=16, imgsz=640, cpus=2)
    monkeypatch.setattr(loader, "shm_bytes", lambda path=loader.SHM: (one, one))
    monkeypatch.setattr(loader.os, "cpu_count", lambda: 2)
    trainer.get_dataloader("train.txt", 16, mode="train")
    trainer.get_dataloader("val.txt", 32, mode="val")
    assert seen == [("train", 0), ("val", 0)] and trainer.args.workers == 8  # the job's value is kept


def test_plan_logs_dev_shm_and_respects_the_job(monkeypatch):
    lines = []
    monkeypatch.setattr(loader, "shm_bytes", lambda path=loader.SHM: (64 * 2**20, 60 * 2**20))
    assert loader.plan(cpus=16, gpus=1, user_workers=None, log=lines.append) == 15
    assert "/dev/shm 64 MiB, 60 MiB free" in lines[0]
    assert loader.plan(cpus=16, gpus=1, user_workers=3, log=lines.append) is None


def test_a_rewritten_yaml_goes_back_to_the_originals_when_nothing_is_cached(dataset):
    _, data_yaml, cache = dataset
    original = yaml.safe_load(data_yaml.read_text())
    image_cache.apply(data_yaml, imgsz=IMGSZ, cache_dir=cache, threads=1, log=lambda s: None)
    assert yaml.safe_load(data_yaml.read_text())["train"] == str(cache / "train.txt")
    image_cache.apply(data_yaml, imgsz=8 * IMGSZ, cache_dir=cache, threads=1, log=lambda s: None)  # none is 1.5x 512
    assert {k: v for k, v in yaml.safe_load(data_yaml.read_text()).items() if k != "path"} == {
        **{k: v for k, v in original.items() if k != "path"},
        "train": str(data_yaml.parent / "train.txt"), "val": str(data_yaml.parent / "val.txt")}
    image_cache.apply(data_yaml, imgsz=IMGSZ, cache_dir=cache, threads=1, log=lambda s: None)
    image_cache.apply(data_yaml, imgsz=IMGSZ, cache_dir=cache, threads=1, log=lambda s: None, enabled=False)
    assert yaml.safe_load(data_yaml.read_text())["train"] == str(data_yaml.parent / "train.txt")


def test_a_stop_during_the_build_keeps_what_is_done(dataset, monkeypatch):
    """SIGTERM raises in the main thread while it waits for the threads (GracefulStop outside training)."""
    from container.failure import TrainingStopped

    _, data_yaml, cache = dataset
    real_wait = image_cache.wait
    manifest = cache / image_cache.MANIFEST

    def wait_then_stop(*args, **kwargs):
        if manifest.is_file() and json.loads(manifest.read_text())["copies"]:
            raise TrainingStopped("SIGTERM received; stopped")  # once a copy is recorded (progress saves it)
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(image_cache, "wait", wait_then_stop)
    monkeypatch.setattr(image_cache, "PROGRESS_SECONDS", 0.0)
    with pytest.raises(TrainingStopped):
        image_cache.apply(data_yaml, imgsz=IMGSZ, cache_dir=cache, threads=1, log=lambda s: None)
    saved = json.loads(manifest.read_text())["copies"]
    assert 1 <= len(saved) < 5
    assert all(Path(copy).is_file() for copy in saved)
    monkeypatch.setattr(image_cache, "wait", real_wait)
    again = image_cache.apply(data_yaml, imgsz=IMGSZ, cache_dir=cache, threads=1, log=lambda s: None)
    assert again.reused == len(saved) and again.built == 5 - len(saved)
