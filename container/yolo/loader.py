"""Data-loading workers that fit the instance: its CPUs, its memory and its ``/dev/shm``.

* CPUs: ultralytics' default is 8 workers per GPU whatever the instance (capped at the CPU count).
  With more CPUs per GPU, the extra CPUs sat idle while the GPU waited for data (issue 17), so unless
  the job sets ``workers``, :func:`default_workers` gives each GPU rank all its CPUs, less one for the
  training process itself once there are 8 or more.
* Shared memory: PyTorch's DataLoader workers hand each batch to the training process through
  ``/dev/shm``. ultralytics keeps ``prefetch_factor`` 4 batches per train worker and 2 per validation
  worker (twice as many workers, batches twice as large), and the validation workers stay alive and
  prefetch between validations. When ``/dev/shm`` is smaller than that (Docker's default is 64 MiB;
  its size on SageMaker depends on the instance type) the workers die with a bus error mid-epoch.
  :func:`fit_workers` lowers the number of workers until the batches fit, down to 0 (loading in the
  training process, no shared memory). PyTorch's ``file_system`` sharing strategy does not help: its
  segments live in ``/dev/shm`` too; it only avoids running out of file descriptors.
* Memory: each train worker keeps ultralytics' mosaic buffer (up to ``min(8 x batch, 1000)`` images
  at ``imgsz``) besides its own footprint; workers are also limited to half the available memory.

:class:`FittedLoaders` applies :func:`fit_workers` where ultralytics builds its loaders, with the
real batch size (after AutoBatch) and image size.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

SHM = Path("/dev/shm")
TRAIN_PREFETCH = 4  # ultralytics.data.build.build_dataloader: prefetch_factor 4 when shuffling (train) ...
VAL_PREFETCH = 2  # ... and 2 for validation, whose loader has twice the workers and twice the batch
SHM_SHARE = 0.8  # of the free /dev/shm the loaders may plan to fill
MEMORY_SHARE = 0.5  # of the available memory the workers may plan to take
WORKER_BYTES = 300 * 2**20  # a forked worker's own memory beyond what it shares with the training process
MOSAIC_BUFFER = (8, 1000)  # ultralytics' BaseDataset.max_buffer_length: min(n, 8 x batch, 1000) images
MANY_CPUS = 8  # from this many CPUs per GPU rank, one is left to the training process


def shm_bytes(path: Path = SHM) -> tuple[int, int] | None:
    """(total, free) bytes of the shared-memory filesystem, or None when there is none."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def memory_available() -> int | None:
    """Bytes the job can still use: MemAvailable, lowered by a cgroup memory limit when there is one."""
    found = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = int(Path(limit_file).read_text().strip())
            used = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):  # absent, or "max": no limit
            continue
        if limit < 2**60:
            found = min(found, limit - used) if found is not None else limit - used
        break
    return found


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def default_workers(*, cpus: int, gpus: int) -> int:
    """Workers per GPU rank (per process on CPU) when the job does not set ``workers``."""
    per_rank = max(1, cpus // max(1, gpus))
    return per_rank - 1 if per_rank >= MANY_CPUS else per_rank


def shm_need(*, workers: int, batch: int, imgsz: int, cpus: int) -> int:
    """Bytes of /dev/shm one rank's train and validation loaders hold at most (uint8 batches)."""
    if workers <= 0:
        return 0
    image = 3 * imgsz * imgsz
    val_workers = min(cpus, 2 * workers)
    return workers * TRAIN_PREFETCH * batch * image + val_workers * VAL_PREFETCH * 2 * batch * image


def memory_need(*, workers: int, batch: int, imgsz: int, cpus: int) -> int:
    """Bytes one rank's loader workers hold: their own footprint and the train workers' mosaic buffers."""
    if workers <= 0:
        return 0
    buffer = min(MOSAIC_BUFFER[0] * batch, MOSAIC_BUFFER[1]) * 3 * imgsz * imgsz
    return workers * (WORKER_BYTES + buffer) + min(cpus, 2 * workers) * WORKER_BYTES


def fit_workers(*, workers: int, batch: int, imgsz: int, cpus: int, ranks: int = 1,
                shm: tuple[int, int] | None, memory: int | None) -> tuple[int, list[str]]:
    """The most workers, at most ``workers``, whose batches fit /dev/shm and whose buffers fit memory.

    Returns the number and the reasons it is lower than asked (empty when it is not). ``ranks``: GPU
    processes on this instance, which share /dev/shm and memory.
    """
    reasons = []
    fitted = max(0, workers)
    if shm is not None:
        room = SHM_SHARE * shm[1] / max(1, ranks)
        while fitted > 0 and shm_need(workers=fitted, batch=batch, imgsz=imgsz, cpus=cpus) > room:
            fitted -= 1
        if fitted < workers:
            need = shm_need(workers=workers, batch=batch, imgsz=imgsz, cpus=cpus)
            reasons.append(f"/dev/shm has {_mib(shm[1])} free and {workers} workers would hold up to {_mib(need)} "
                           f"of batches there (batch {batch}, imgsz {imgsz}"
                           f"{f', {ranks} GPU ranks' if ranks > 1 else ''})")
    if memory is not None:
        room = MEMORY_SHARE * memory / max(1, ranks)
        before = fitted
        while fitted > 1 and memory_need(workers=fitted, batch=batch, imgsz=imgsz, cpus=cpus) > room:
            fitted -= 1
        if fitted < before:
            reasons.append(f"{_mib(memory)} of memory available and each worker keeps up to "
                           f"{_mib(memory_need(workers=1, batch=batch, imgsz=imgsz, cpus=1))}")
    return fitted, reasons


def describe_shm(shm: tuple[int, int] | None) -> str:
    if shm is None:
        return "shared memory: no /dev/shm (DataLoader workers cannot share batches; loading in the training process)"
    return f"shared memory: /dev/shm {_mib(shm[0])}, {_mib(shm[1])} free"


class FittedLoaders:
    """Mixin for an ultralytics trainer: its loaders get the workers :func:`fit_workers` allows.

    ``args.workers`` itself is left as the job set it (it is saved in the checkpoints); only the
    loaders are built with the fitted number. ultralytics builds the train loader first, with the real
    (per-rank) batch size, then the validation loader with ``2 x workers``.
    """

    args: Any
    world_size: int
    _fitted: int | None = None

    def get_dataloader(self, dataset_path: str, batch_size: int = 16, rank: int = 0, mode: str = "train") -> Any:
        from ultralytics.utils import LOGGER

        asked = int(self.args.workers)
        if self._fitted is None:
            # the ranks on this host share its CPUs and /dev/shm (torchrun's LOCAL_WORLD_SIZE on several hosts)
            local = os.environ.get("LOCAL_WORLD_SIZE")
            ranks = max(1, int(local) if local else int(getattr(self, "world_size", 1) or 1))
            train_batch = batch_size if mode == "train" else max(1, batch_size // 2)
            cpus = max(1, (os.cpu_count() or 1) // ranks)
            self._fitted, reasons = fit_workers(workers=asked, batch=train_batch, imgsz=int(self.args.imgsz),
                                                cpus=cpus, ranks=ranks, shm=shm_bytes(), memory=memory_available())
            if reasons:
                LOGGER.warning(f"data loading: {self._fitted} workers instead of {asked}: " + "; ".join(reasons)
                               + (". Loading in the training process (slower, but no bus error)" if not self._fitted
                                  else ". Fewer workers load more slowly but cannot die of a bus error"))
        self.args.workers = self._fitted
        try:
            return super().get_dataloader(dataset_path, batch_size, rank, mode)  # type: ignore[misc]
        finally:
            self.args.workers = asked


def plan(*, cpus: int, gpus: int, user_workers: Any, log: Callable[[str], None]) -> int | None:
    """Log the instance's CPUs, memory and /dev/shm at start; the workers to set, or None to keep the job's."""
    shm = shm_bytes()
    memory = memory_available()
    log(describe_shm(shm) + (f"; memory available {_mib(memory)}" if memory is not None else ""))
    if user_workers is not None:
        log(f"data loading: workers={user_workers} as the job set it (per GPU rank)")
        return None
    workers = default_workers(cpus=cpus, gpus=gpus)
    log(f"data loading: workers={workers} per {'GPU rank' if gpus else 'process'} ({cpus} CPUs, {gpus} GPU(s); "
        "set the hyperparameter workers to choose)"
        + ("" if gpus else "; ultralytics itself loads in the training process when it trains on the CPU"))
    return workers
