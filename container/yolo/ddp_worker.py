"""One torchrun worker of a job on several instances: ``python -m container.yolo.ddp_worker spec.json``.

In order: the process group (``dist_timeout`` bounds the join and every collective call after it), the
start point agreed (the leader's checkpoint, sent to every host and written into each host's own
checkpoint folder, so that every host resumes from the same epoch), then ultralytics' training with
:class:`DistributedTrainer`. Only global rank 0 prints metric lines and saves checkpoints.

Exit codes: 0 trained (or nothing left to train), 143 stopped by SIGTERM, 1 failed; a failure's reason
goes to ``failure-rank<r>`` in the spec's folder for the host's launcher to report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

from container.failure import EXIT_ERROR, EXIT_STOPPED, TrainingStopped, plain, shorten
from container.signals import GracefulStop
from container.yolo.distributed import FAILURE_PREFIX, JOINED, STOPPED, WorkerSpec


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def join(spec: WorkerSpec) -> None:
    import torch.distributed as dist

    dist.init_process_group(backend=spec.backend, timeout=timedelta(seconds=spec.timeout))


def agree_start(spec: WorkerSpec) -> dict[str, Any]:
    """The leader's start point on every rank; other hosts get its checkpoint files in their own folder."""
    import torch.distributed as dist

    from container.yolo import checkpoints

    payload: list[Any] = [None]
    if _rank() == 0:
        state = spec.leader_state
        files: dict[str, bytes] = {}
        if state is not None and not state.finished:
            files["weights/last.pt"] = Path(state.path).read_bytes()
            results = Path(spec.run_dir) / "results.csv"
            if results.is_file():
                files["results.csv"] = results.read_bytes()
        payload = [{"state": None if state is None else dataclasses.asdict(state), "files": files, "host": spec.host}]
    dist.broadcast_object_list(payload, src=0)
    start = payload[0]
    if spec.host != start["host"] and _local_rank() == 0:  # another host: keep the leader's checkpoint here too
        run_dir = Path(spec.run_dir)
        for rel, data in start["files"].items():
            (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            checkpoints.write_atomic(run_dir / rel, data)
    dist.barrier()
    return start


def run(spec: WorkerSpec, stop: GracefulStop) -> None:
    workdir = Path(spec.workdir)
    join(spec)
    start = agree_start(spec)
    if _local_rank() == 0:
        (workdir / JOINED).write_text(json.dumps({"leader_state": start["state"]}), encoding="utf-8")
    state = start["state"]
    if state is not None and state["finished"]:
        print("distributed: training already finished on the leader; nothing to train", flush=True)
        return

    from ultralytics import YOLO

    from container.yolo.ddp_trainer import DistributedTrainer
    from container.yolo.report import Reporter
    from container.yolo.resumable import ResumableTrainer

    run_dir = Path(spec.run_dir)
    kwargs = dict(spec.kwargs)
    kwargs["device"] = str(_local_rank()) if spec.backend == "nccl" else "cpu"
    if state is not None:
        last = run_dir / "weights" / "last.pt"
        model = YOLO(str(last))
        kwargs["resume"] = str(last)
    else:
        if spec.model is None:
            raise RuntimeError("the leader sent no start point and the spec names no model")
        model = YOLO(spec.model)
    if _rank() == 0:
        Reporter(spec.progress_interval, spec.per_class, run_dir / "final.json").attach(model)
    ResumableTrainer.graceful = stop  # the trainer's stop check reads it there (resumable.py)
    with stop.deferred():
        model.train(trainer=DistributedTrainer, **kwargs)


def main(argv: list[str]) -> int:
    stop = GracefulStop().install()
    spec = WorkerSpec.read(Path(argv[0]))
    workdir = Path(spec.workdir)
    try:
        run(spec, stop)
    except TrainingStopped as err:
        (workdir / STOPPED).write_text(str(err), encoding="utf-8")
        said = err if _rank() == 0 else "stopped by SIGTERM at the same batch as every rank; rank 0 saved"
        print(f"rank {_rank()}: {said}", file=sys.stderr, flush=True)
        return EXIT_STOPPED
    except Exception as err:  # the host's launcher reports what broke
        if stop.requested is not None:
            (workdir / STOPPED).write_text(f"{type(err).__name__} on the way out", encoding="utf-8")
            return EXIT_STOPPED
        traceback.print_exc()
        reason = _reason(err, spec)
        (workdir / f"{FAILURE_PREFIX}{_rank()}").write_text(reason, encoding="utf-8")
        return EXIT_ERROR
    finally:
        stop.uninstall()
        _leave()
    return 0


def _reason(err: BaseException, spec: WorkerSpec) -> str:
    text = shorten(plain(f"{type(err).__name__}: {err}").strip().replace("\n", " "), 500)
    if _is_network(err):
        return (f"rank {_rank()} lost contact with the other hosts (leader {spec.leader}; waited up to "
                f"dist_timeout {spec.timeout:g}s): {text}. A peer host stopped or cannot be reached; "
                "see the first failure in the hosts' logs")
    return f"rank {_rank()} failed: {text}"


def _is_network(err: BaseException) -> bool:
    import torch.distributed as dist

    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, (dist.DistError, ConnectionError, TimeoutError)):
            return True
        message = str(seen).lower()
        if any(word in message for word in ("gloo", "nccl", "connection", "timed out", "timeout", "peer")):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):  # leaving anyway; a peer may be gone already
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
