"""A local run with no AWS: build an /opt/ml tree, run ``train`` exactly as the image does, pack the model.

    python -m container.local --train data/ [--channel cfg=cfg/] [--hyperparameters hp.json] \
        [--hp epochs=3 ...] --out runs/job1

leaves ``runs/job1/opt_ml`` (the tree the trainer saw), ``runs/job1/model.tar.gz`` and
``output.tar.gz`` laid out as SageMaker writes them, and exits with the trainer's exit code.
Hyperparameters are written as SageMaker writes them: every value a string.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from container.archive import make_tarball
from container.contract import BASE_DIR_ENV, encode_value
from container.failure import UserError
from container.walk import walk_files


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def build_tree(base: Path, channels: Mapping[str, Path], hyperparameters: Mapping[str, Any], *,
               hosts: tuple[str, ...] = ("algo-1",), current_host: str = "algo-1",
               interface: str = "eth0") -> Path:
    """Write ``base`` as SageMaker would: config files, one folder per channel (hard links, not moves).

    A channel's files are those :func:`container.walk.walk_files` finds: links inside the folder
    followed, links out of it, loops, dangling links and special files refused (:class:`UnsafeTree`).
    """
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    for sub in ("model", "output/data", "checkpoints"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    hp = {k: v if isinstance(v, str) else encode_value(v) for k, v in hyperparameters.items()}  # strings as given
    (config / "hyperparameters.json").write_text(json.dumps(hp, indent=2))
    (config / "inputdataconfig.json").write_text(json.dumps(
        {name: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
         for name in channels}, indent=2))
    (config / "resourceconfig.json").write_text(json.dumps(
        {"current_host": current_host, "hosts": list(hosts), "network_interface_name": interface,
         "current_instance_type": "local"}, indent=2))
    (config / "checkpointconfig.json").write_text(json.dumps({"LocalPath": "/opt/ml/checkpoints"}))
    trees = {name: walk_files(src) for name, src in channels.items()}  # every channel checked before any is linked
    for name, files in trees.items():
        dst = base / "input" / "data" / name
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir(parents=True)
        for item in files:  # the same files the SDK would upload (container.walk's policy)
            target = dst / item.relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(str(item.path), str(target))
    return base


TRAIN_COMMAND = (sys.executable, "-m", "container", "train")


def train_environ(base: Path, *, image: str = "yolo", env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the image's ``train`` sees, pointed at ``base`` instead of /opt/ml."""
    return {**os.environ, BASE_DIR_ENV: str(base), "TRAINER_IMAGE": image, "PYTHONUNBUFFERED": "1", **(env or {})}


def run_train(base: Path, *, image: str = "yolo", env: Mapping[str, str] | None = None,
              **run_kwargs: Any) -> subprocess.CompletedProcess:
    """Run ``python -m container train`` against ``base``: the image's command, as a process.

    ``run_kwargs`` go to :func:`subprocess.run` (``timeout``, ``capture_output``, ...).
    """
    return subprocess.run(list(TRAIN_COMMAND), env=train_environ(base, image=image, env=env), **run_kwargs)


def pack(base: Path, out: Path) -> Path:
    """``model.tar.gz`` (and ``output.tar.gz``) as SageMaker uploads them."""
    model = make_tarball(base / "model", out / "model.tar.gz")
    make_tarball(base / "output", out / "output.tar.gz")
    return model


def load_hyperparameters(path: Path | None, pairs: list[str]) -> dict[str, Any]:
    hp: dict[str, Any] = {}
    if path:
        data = yaml.safe_load(Path(path).read_text())  # JSON is YAML
        if not isinstance(data, dict):
            raise SystemExit(f"{path}: expected a mapping of hyperparameters")
        hp.update(data)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--hp {pair!r}: expected key=value")
        hp[key] = value
    return hp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m container.local", description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=Path, help="the train channel (a folder)")
    parser.add_argument("--val", type=Path, help="the val channel")
    parser.add_argument("--channel", action="append", default=[], metavar="NAME=PATH", help="any other channel")
    parser.add_argument("--hyperparameters", type=Path, help="JSON or YAML file of hyperparameters")
    parser.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE", help="one hyperparameter")
    parser.add_argument("--image", default="yolo", help="which image's trainer (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the /opt/ml tree and the tarballs")
    parser.add_argument("--keep-checkpoints", action="store_true", help="resume from an earlier run in --out")
    args = parser.parse_args(argv)

    channels: dict[str, Path] = {}
    if args.train:
        channels["train"] = args.train
    if args.val:
        channels["val"] = args.val
    for item in args.channel:
        name, sep, path = item.partition("=")
        if not sep:
            parser.error(f"--channel {item!r}: expected NAME=PATH")
        channels[name] = Path(path)
    for name, path in channels.items():
        if not path.exists():
            parser.error(f"channel {name}: {path} does not exist")
    base = args.out.resolve() / "opt_ml"
    if not args.keep_checkpoints:
        shutil.rmtree(base, ignore_errors=True)
    else:
        for sub in ("model", "output"):
            shutil.rmtree(base / sub, ignore_errors=True)
    try:
        build_tree(base, channels, load_hyperparameters(args.hyperparameters, args.hp))
    except UserError as err:
        parser.error(str(err))
    code = run_train(base, image=args.image).returncode
    model = pack(base, args.out.resolve())
    if code == 0:
        print(f"model: {model}")
    else:
        failure = base / "output" / "failure"
        print(f"training failed (exit {code})" + (f": {failure.read_text()}" if failure.exists() else ""),
              file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
