"""A local run with no AWS: build an /opt/ml tree, run ``train`` exactly as the image does, pack the model.

    python -m container.local --train data/ [--channel cfg=cfg/] [--hyperparameters hp.json] \
        [--hp epochs=3 ...] --out runs/job1

leaves ``runs/job1/opt_ml`` (the tree the trainer saw), ``runs/job1/model.tar.gz`` and
``output.tar.gz`` laid out as SageMaker writes them, and exits with the trainer's exit code.
Hyperparameters are written as SageMaker writes them: every value a string.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from container.archive import make_tarball
from container.contract import (
    BASE_DIR_ENV,
    CHANNEL_NAME_RULE,
    DEFAULT_HOST,
    SAGEMAKER,
    Layout,
    encode_value,
    is_channel_name,
)
from container.failure import EXIT_USER_ERROR, UserError, plain
from container.walk import walk_files


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


LOCAL_INSTANCE = "local"  # resourceconfig.json's current_instance_type in a tree build_tree wrote


def build_tree(base: Path, channels: Mapping[str, Path], hyperparameters: Mapping[str, Any], *,
               hosts: tuple[str, ...] = (DEFAULT_HOST,), current_host: str = DEFAULT_HOST,
               interface: str = "eth0") -> Path:
    """Write ``base`` as SageMaker would: config files, one folder per channel (hard links, not moves).

    A channel's files are those :func:`container.walk.walk_files` finds: links inside the folder
    followed, links out of it, loops, dangling links and special files refused (:class:`UnsafeTree`).
    """
    check_channels(base, channels)  # before anything is created or removed
    layout = Layout(base)
    layout.write_training_job(
        hyperparameters={k: v if isinstance(v, str) else encode_value(v)  # strings as given
                         for k, v in hyperparameters.items()},
        input_data_config={name: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                                  "RecordWrapperType": "None"} for name in channels},
        resource_config={"current_host": current_host, "hosts": list(hosts), "network_interface_name": interface,
                         "current_instance_type": LOCAL_INSTANCE},
        checkpoint_config={"LocalPath": str(SAGEMAKER.checkpoints)})  # as SageMaker names it; Environment moves it
    trees = {name: walk_files(src) for name, src in channels.items()}  # every channel checked before any is linked
    for name, files in trees.items():
        dst = layout.channel(name)  # one folder of this tree: check_channels refused "..", "/"
        if dst.is_symlink() or dst.is_file():
            dst.unlink()
        elif dst.is_dir():
            shutil.rmtree(dst)  # an earlier build of this channel, in this tree (rmtree follows no links)
        dst.mkdir(parents=True)
        for item in files:  # the same files the SDK would upload (container.walk's policy)
            target = dst / item.relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(str(item.path), str(target))
    return base


def check_channels(base: Path, channels: Mapping[str, Path]) -> None:
    """Refuse (:class:`UserError`) a channel name that is not one folder's name under ``input/data``, and a
    channel folder that holds the tree or lies inside it (a build would copy the tree into itself, or
    replace the data it reads)."""
    tree = Path(os.path.abspath(base))
    for name, src in channels.items():
        if not is_channel_name(name):
            raise UserError(f"channel name {name!r} is not valid ({CHANNEL_NAME_RULE})")
        folder = Path(src).resolve()
        if tree.resolve().is_relative_to(folder):
            raise UserError(f"channel {name}: its folder {folder} holds the output tree {tree}; "
                            "choose an output folder outside the data")
        if folder.is_relative_to(tree.resolve()):
            raise UserError(f"channel {name}: its folder {folder} lies inside the output tree {tree}, "
                            "which a run replaces; move the data out of it")


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


TREE = "opt_ml"  # the tree's folder in --out
MODEL_TARBALL, OUTPUT_TARBALL = OUTPUTS = ("model.tar.gz", "output.tar.gz")  # what pack writes beside the tree


def pack(base: Path, out: Path) -> Path:
    """``model.tar.gz`` (and ``output.tar.gz``) as SageMaker uploads them."""
    layout = Layout(base)
    model = make_tarball(layout.model, out / MODEL_TARBALL)
    make_tarball(layout.output, out / OUTPUT_TARBALL)
    return model


def load_hyperparameters(path: Path | None, pairs: list[str]) -> dict[str, Any]:
    """The hyperparameters of ``--hyperparameters`` and ``--hp``; :class:`UserError` naming the fix."""
    hp: dict[str, Any] = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))  # JSON is YAML
        except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as err:
            raise UserError(f"--hyperparameters {path}: not a readable JSON or YAML file "
                            f"({type(err).__name__}: {str(err)[:200]})") from None
        if not isinstance(data, dict):
            raise UserError(f"--hyperparameters {path}: expected a mapping of name: value")
        hp.update(data)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--hp {pair!r}: expected KEY=VALUE")
        hp[key] = value
    return hp


def is_local_tree(base: Path) -> bool:
    """True where ``base`` is a tree :func:`build_tree` wrote (its resourceconfig names the instance ``local``)."""
    try:
        config = json.loads(Layout(base).resource_config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("current_instance_type") == LOCAL_INSTANCE




def _check_out(out: Path) -> None:
    """``--out`` may hold anything; what a run replaces there (``opt_ml/``, the tarballs) must be a run's own."""
    base = out / TREE
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder (new, or the --out of an earlier run)")
    if base.exists() or base.is_symlink():
        if base.is_symlink() or not is_local_tree(base):
            raise UserError(f"--out {out}: {base} was not written by container.local and a run replaces it; "
                            "choose another --out (a new folder, or the --out of an earlier run)")
        return
    for name in OUTPUTS:
        if (out / name).exists() or (out / name).is_symlink():
            raise UserError(f"--out {out}: {out / name} was not written by container.local (no opt_ml/ beside it) "
                            "and a run replaces it; choose another --out")


def _channels(args: argparse.Namespace) -> dict[str, Path]:
    channels: dict[str, Path] = {}
    if args.train:
        channels["train"] = args.train
    if args.val:
        channels["val"] = args.val
    for item in args.channel:
        name, sep, path = item.partition("=")
        if not sep:
            raise UserError(f"--channel {item!r}: expected NAME=PATH, e.g. --channel cfg=path/to/folder")
        if not is_channel_name(name):
            swapped = (f"; it looks like PATH=NAME: write --channel {path}={name}"
                       if is_channel_name(path) and Path(name).exists() else
                       ", e.g. --channel cfg=path/to/folder")
            raise UserError(f"--channel {item!r}: channel name {name!r} is not valid ({CHANNEL_NAME_RULE}); "
                            f"--channel takes NAME=PATH{swapped}")
        if name in channels:  # --train A --channel train=B: one of them would be dropped without a word
            raise UserError(f"--channel {item!r}: channel {name!r} is already {channels[name]}; give each channel once")
        channels[name] = Path(path)
    for name, path in channels.items():
        if not path.is_dir():
            raise UserError(f"channel {name}: {path} " + ("is not a folder" if path.exists() else "does not exist"))
    return channels


# -- the train process: stopped with the runner, never left behind ----------------------------------------------
def _die_with(parent: int) -> Any:
    """For the child, between fork and exec: SIGTERM when ``parent`` dies, even by SIGKILL (PR_SET_PDEATHSIG)."""
    def arrange() -> None:  # pragma: no cover - runs in the child
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no prctl: the runner's handlers are all there is
            return
        if os.getppid() != parent:  # the runner died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
    return arrange


FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def supervise(command: list[str], env: Mapping[str, str]) -> tuple[int, list[int]]:
    """Run ``command`` until it exits; returns its exit code and the signals this process received meanwhile.

    The child runs in a session of its own, so a terminal's Ctrl-C reaches only this process, which passes
    the stop on as SageMaker does: SIGTERM to the trainer (it saves a checkpoint and exits), a second signal
    SIGKILL to its whole group. Whatever the trainer leaves in its group (data loader workers) is killed when
    it exits, and the trainer gets SIGTERM should this process die without a word (SIGKILL).
    """
    received: list[int] = []
    started: list[subprocess.Popen] = []
    relays: list[threading.Thread] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        if not started:  # not started yet: passed on as soon as it is
            return
        if len(received) == 1:
            print(f"\n{signal.Signals(signum).name}: stopping train (pid {started[0].pid}); it saves a checkpoint "
                  "and exits. Signal again to kill it at once.", file=sys.stderr, flush=True)
            _signal(started[0].pid, signal.SIGTERM, group=False)
        else:
            _signal(started[0].pid, signal.SIGKILL, group=True)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}  # before the child exists: no gap
    try:
        # into a file or a pipe, train's lines pass through here without ultralytics' colour codes
        relay = not (sys.stdout.isatty() and sys.stderr.isatty())
        pipes: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE} if relay else {}
        started.append(subprocess.Popen(command, env=dict(env), start_new_session=True, text=True, errors="replace",
                                        preexec_fn=_die_with(os.getpid()) if sys.platform == "linux" else None,
                                        **pipes))
        child = started[0]
        relays = [threading.Thread(target=_relay, args=(source, target), daemon=True)
                  for source, target in ((child.stdout, sys.stdout), (child.stderr, sys.stderr)) if source]
        for thread in relays:
            thread.start()
        if received:
            forward(received.pop(), None)
        code = child.wait()
    finally:
        for child in started:
            if child.poll() is None:  # an exception in this process while train ran: it must not outlive us
                _signal(child.pid, signal.SIGTERM, group=False)
                child.wait()
            _signal(child.pid, signal.SIGKILL, group=True)  # what train left behind in its group
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for thread in relays:
        thread.join(timeout=10)  # ends at the pipe's end; a process that left the group may hold it open
    code = 128 - code if code < 0 else code  # killed by a signal: the shell's number (SIGKILL: 137)
    return code, received


def _relay(source: Any, target: Any) -> None:
    """train's lines to ``target`` without colour codes; a reader that left (``| head``) stops the writing, never
    the reading: a pipe left full would block train."""
    writing = True
    for line in source:
        if writing:
            try:
                target.write(plain(line))
                target.flush()
            except (OSError, ValueError):  # BrokenPipeError; a closed stream
                writing = False
                with contextlib.suppress(OSError, ValueError):  # what is left in its buffer goes nowhere, quietly
                    os.dup2(os.open(os.devnull, os.O_WRONLY), target.fileno())


def _signal(pid: int, sig: int, *, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)  # the child leads its own session, so its group id is its pid
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m container.local", description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=Path, help="the train channel (a folder)")
    parser.add_argument("--val", type=Path, help="the val channel")
    parser.add_argument("--channel", action="append", default=[], metavar="NAME=PATH",
                        help=f"any other channel; NAME: {CHANNEL_NAME_RULE}")
    parser.add_argument("--hyperparameters", type=Path, help="JSON or YAML file of hyperparameters")
    parser.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE", help="one hyperparameter")
    parser.add_argument("--image", default="yolo", help="which image's trainer (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for the /opt/ml tree (opt_ml/) and the tarballs; a run replaces only these")
    parser.add_argument("--keep-checkpoints", action="store_true", help="resume from an earlier run in --out")
    args = parser.parse_args(argv)

    out = args.out.resolve()
    base = out / TREE
    layout = Layout(base)
    try:  # every check before anything is created or removed
        channels = _channels(args)
        hyperparameters = load_hyperparameters(args.hyperparameters, args.hp)
        _check_out(out)
        check_channels(base, channels)
    except UserError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    # base is a tree an earlier run wrote (checked above), or nothing yet
    if not args.keep_checkpoints:
        shutil.rmtree(base, ignore_errors=True)
    else:
        for folder in (layout.model, layout.output):
            shutil.rmtree(folder, ignore_errors=True)
    try:
        build_tree(base, channels, hyperparameters)
    except UserError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    code, signals = supervise(list(TRAIN_COMMAND), train_environ(base, image=args.image))
    model = pack(base, out)
    if code == 0:
        print(f"model: {model}")
    elif signals:
        print(f"stopped ({signal.Signals(signals[0]).name}; train exit {code}): checkpoints kept in "
              f"{layout.checkpoints}; rerun with --keep-checkpoints to resume", file=sys.stderr)
    else:
        failure = layout.failure
        print(f"training failed (exit {code})" + (f": {failure.read_text()}" if failure.exists() else ""),
              file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
