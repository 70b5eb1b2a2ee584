"""How many worker processes and threads a serving instance runs: facts of the machine, no framework.

Workers are processes, each with its own copy of the model (CPU inference is CPU-bound: processes, not
threads, use the cores). On CPU: one worker per core, fewer where memory cannot hold that many model
copies, and each worker's framework gets ``cores // workers`` intra-op threads so that they do not fight
over cores. On GPU: one worker, which has the GPU to itself. ``SAGEMAKER_MODEL_SERVER_WORKERS`` (the name
AWS's own inference containers read) or ``SERVING_WORKERS`` overrides the count.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

WORKERS_ENV = ("SERVING_WORKERS", "SAGEMAKER_MODEL_SERVER_WORKERS")
WEIGHTS_ENV = "SERVING_WEIGHTS"  # YOLO: best.pt (default), onnx, or a path inside the model folder
THREADS_ENV = "SERVING_THREADS"  # set by the server for its workers; adapters read it with intra_op_threads()
RUNTIME_BYTES = 450 * 1024 * 1024  # a worker with torch or TensorFlow imported, before the weights
MAX_WORKERS_PER_CPU = 8  # a forced worker count past this only contends for the cores and multiplies the memory
WEIGHT_FACTOR = 3  # weights on disk -> resident memory (weights, activations, framework caches)


GPU_ENV = "CUDA_VISIBLE_DEVICES"  # narrowed to one device per worker on a GPU instance


@dataclass(frozen=True)
class Plan:
    workers: int
    threads: int  # intra-op threads per worker
    why: str
    gpus: int = 0  # GPUs the workers are spread over, one device each (gpu_for, visible_device)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def memory_bytes() -> int:
    """Memory this process may use: the cgroup limit where one is set (containers), else physical memory."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def plan_workers(*, cpus: int, memory: int, weights_bytes: int, gpus: int = 0,
                 environ: Mapping[str, str] = os.environ) -> Plan:
    forced = next((environ[k] for k in WORKERS_ENV if environ.get(k)), None)
    if forced is not None:
        try:
            workers = int(forced)
        except ValueError:
            raise ValueError(f"{'/'.join(WORKERS_ENV)} must be an integer, got {forced!r}") from None
        if workers < 1:
            raise ValueError(f"{'/'.join(WORKERS_ENV)} must be at least 1, got {workers}")
        if workers > MAX_WORKERS_PER_CPU * max(1, cpus):  # 10000 forked 10000 copies of the model: out of memory
            raise ValueError(f"{'/'.join(WORKERS_ENV)}={workers} is more than {MAX_WORKERS_PER_CPU} per CPU "
                             f"({cpus} here), each a copy of the model in memory; unset it to plan by CPUs and "
                             "memory, or give fewer")
        spread = f", spread over {gpus} GPU(s)" if gpus else ""
        return Plan(workers, max(1, cpus // workers), f"{workers} worker(s) as set in the environment{spread}", gpus)
    if gpus:  # one model per GPU, each worker sees only its own (a GPU is faster than several workers sharing it)
        return Plan(gpus, max(1, cpus // gpus), f"{gpus} worker(s), one per GPU", gpus)
    per_worker = RUNTIME_BYTES + WEIGHT_FACTOR * weights_bytes
    fit = max(1, int(memory * 0.8) // per_worker)
    workers = max(1, min(cpus, fit))
    why = (f"{workers} worker(s): {cpus} CPU(s), {memory / 2**30:.1f} GiB memory, about "
           f"{per_worker / 2**20:.0f} MiB per worker")
    return Plan(workers, max(1, cpus // workers), why)


def usable_gpus(listed: int, environ: Mapping[str, str] = os.environ) -> int:
    """GPUs the workers may use: those ``nvidia-smi`` lists, or fewer where ``CUDA_VISIBLE_DEVICES`` narrows them
    (nvidia-smi ignores it); an empty value or ``-1`` hides them all, as CUDA does."""
    given = environ.get(GPU_ENV)
    if given is None:
        return listed
    devices = [d.strip() for d in given.split(",") if d.strip()]
    if not devices or devices[0] == "-1":
        return 0
    return min(listed, len(devices))


def gpu_for(held: Iterable[int], gpus: int) -> int:
    """The GPU a new worker gets: the one the fewest live workers hold (the lowest on a tie), so that a worker
    gunicorn restarts takes the place of the one that died."""
    counts = Counter(held)
    return min(range(gpus), key=lambda g: (counts[g], g))


def visible_device(index: int, environ: Mapping[str, str] = os.environ) -> str:
    """``CUDA_VISIBLE_DEVICES`` for the worker on GPU ``index``: the index-th device the container was given
    (where ``CUDA_VISIBLE_DEVICES`` already names some), else the index."""
    given = [d.strip() for d in environ.get(GPU_ENV, "").split(",") if d.strip()]
    return given[index] if index < len(given) else str(index)


def intra_op_threads(environ: Mapping[str, str] = os.environ) -> int:
    """Threads a worker's framework may use (the server's plan, else every core)."""
    value = environ.get(THREADS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else cpu_count()
