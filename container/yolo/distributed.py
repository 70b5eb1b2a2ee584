"""YOLO across several instances: PyTorch's ``torch.distributed.run`` (torchrun) started on every host.

ultralytics launches only one machine's workers; SageMaker's own PyTorch launcher (the training
toolkit's ``torch_distributed.py``) shows the rest, and this module does the same:

* hosts from ``resourceconfig.json``, sorted; this host's node rank is its index there, the leader
  (``--master_addr``) the first, its name resolved with retries (AWS: names may not resolve at once);
* ``NCCL_SOCKET_IFNAME`` / ``GLOO_SOCKET_IFNAME`` from ``network_interface_name``, the EFA variables on
  instance types that have EFA, the port from the ``dist_port`` hyperparameter (default 7777, as
  SageMaker's launcher);
* ``nccl`` on GPU instances (one process per GPU), ``gloo`` on CPU instances (one process per host);
* every wait bounded by ``dist_timeout`` seconds: the name lookup, torchrun's rendezvous (``--rdzv-conf
  timeout``) and every collective call (the process group's timeout). ultralytics' own is 3 hours.

Each host runs the whole job's preparation (hyperparameters, data: every host has every file, since
channels are ``FullyReplicated``), then torchrun with :mod:`container.yolo.ddp_worker` as the worker.
The workers agree on where to start from the leader's checkpoint (ddp_worker.py). Afterwards only the
leader packages: ``/opt/ml/model``, the final evaluation's metric line and ``metrics.json``.

What a failure says: the worker that failed writes its reason next to the spec; a torchrun that ended
before any worker joined the group could not reach the leader, and the failure names it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from container.contract import Environment
from container.failure import TrainingStopped, UserError, shorten
from container.signals import GracefulStop

# Instance families with EFA (SageMaker's toolkit list); RDMA ones also get FI_EFA_USE_DEVICE_RDMA.
EFA_FAMILIES = ("ml.g5.48xlarge", "ml.g6.48xlarge", "ml.g6e.48xlarge", "ml.p3dn.", "ml.p4d.", "ml.p4de.",
                "ml.p5.", "ml.p5e.", "ml.p5en.", "ml.p6-", "ml.trn1.", "ml.trn1n.", "ml.trn2.")
RDMA_FAMILIES = ("ml.p4d.", "ml.p4de.", "ml.p5.", "ml.p5e.", "ml.p5en.", "ml.p6-")
SHARDED = "ShardedByS3Key"
JOINED = "joined"  # marker a worker writes once the process group is up and the start point agreed
STOPPED = "stopped"  # marker a worker writes when it left training on SIGTERM
FAILURE_PREFIX = "failure-rank"  # + the rank: a worker's failure reason
SPEC = "spec.json"  # the WorkerSpec, beside the markers


@dataclass(frozen=True)
class LeaderState:
    finished: bool  # training over: nothing to train, the leader packages
    path: str  # the leader's checkpoint


@dataclass(frozen=True)
class WorkerSpec:
    """What the launcher tells its torchrun workers (``spec.json``): written by :func:`launch`, read by
    ddp_worker.py. Frozen and typed: the two sides read the same fields."""

    model: str | None  # a YAML or .pt to build; None: resume from the leader's checkpoint
    kwargs: dict[str, Any]  # ultralytics' train() arguments
    run_dir: str
    leader_state: LeaderState | None  # read on the leader's rank 0; the others are sent what it finds
    progress_interval: float
    per_class: bool
    # filled in by launch()
    workdir: str = ""
    leader: str = ""
    host: str = ""
    timeout: float = 0.0
    backend: str = "gloo"

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), default=str), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> WorkerSpec:
        data = json.loads(path.read_text(encoding="utf-8"))
        state = data.pop("leader_state")
        return cls(**data, leader_state=None if state is None else LeaderState(**state))


class DistributedError(RuntimeError):
    """The hosts could not train together (leader unreachable, a peer gone); the message names the host."""


@dataclass(frozen=True)
class Cluster:
    hosts: tuple[str, ...]  # sorted, as SageMaker sorts them
    current_host: str
    gpus: int
    interface: str
    instance_type: str
    port: int
    timeout: float  # seconds, every distributed wait

    @property
    def leader(self) -> str:
        return self.hosts[0]

    @property
    def node_rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def is_leader(self) -> bool:
        return self.node_rank == 0

    @property
    def nproc_per_node(self) -> int:
        return max(self.gpus, 1)

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * len(self.hosts)

    @property
    def backend(self) -> str:
        return "nccl" if self.gpus else "gloo"

    def describe(self) -> str:
        """The one line each host logs."""
        return (f"distributed: host {self.current_host} rank {self.node_rank} of {len(self.hosts)} "
                f"(leader {self.leader}, backend {self.backend}); {self.nproc_per_node} process(es) per host, "
                f"world size {self.world_size}, port {self.port}, dist_timeout {self.timeout:g}s")


def cluster_from(env: Environment, hps: Mapping[str, Any]) -> Cluster:
    """The cluster as resourceconfig.json and the hyperparameters describe it; user errors named."""
    hosts = tuple(sorted(env.hosts))
    if env.current_host not in hosts:
        raise UserError(f"resourceconfig.json: current_host {env.current_host!r} is not in hosts "
                        f"({shorten(', '.join(hosts), 200)})")
    if len(set(hosts)) != len(hosts):
        raise UserError(f"resourceconfig.json: hosts has duplicates ({shorten(', '.join(hosts), 200)})")
    port, timeout = hps["dist_port"], hps["dist_timeout"]  # defaults and ranges: schema.yaml
    for name, channel in env.input_data_config.items():
        if str(channel.get("S3DistributionType", "FullyReplicated")) == SHARDED:
            raise UserError(f"channel {name!r} is {SHARDED}: training across {len(hosts)} instances needs every "
                            "channel FullyReplicated (each process samples its own share of the whole dataset). Set "
                            "S3DataDistributionType=FullyReplicated, or use InstanceCount=1")
    return Cluster(hosts=hosts, current_host=env.current_host, gpus=env.num_gpus,
                   interface=env.network_interface_name, instance_type=env.current_instance_type, port=port,
                   timeout=timeout)


def check_batch(batch: float, world_size: int) -> None:
    """``batch`` is the global batch: each of the ``world_size`` processes loads ``batch // world_size``."""
    if batch < 1 or batch != int(batch):
        raise UserError(f"batch={batch:g}: AutoBatch (batch -1 or a fraction) cannot size a batch across instances; "
                        f"give the global batch, a multiple of the {world_size} processes (for example "
                        f"{8 * world_size})")
    if int(batch) // world_size < 2:
        raise UserError(f"batch={int(batch)} is the global batch, shared by {world_size} processes: under 2 images "
                        f"each (BatchNorm needs 2). Use batch >= {2 * world_size}, a multiple of {world_size}")


# -- the leader's address ---------------------------------------------------------------------------
def resolve(host: str, timeout: float, *, lookup: Callable[[str], str] = socket.gethostbyname,
            log: Callable[[str], None] = print, pause: float = 2.0) -> str:
    """The leader's address, retried until ``timeout`` seconds: hosts' names may not resolve at start."""
    deadline = time.monotonic() + timeout
    tries = 0
    while True:
        tries += 1
        try:
            return lookup(host)
        except OSError as err:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DistributedError(f"cannot resolve the leader host {host!r} ({err}) after {tries} tries in "
                                       f"{timeout:g}s (dist_timeout): the instances cannot find each other. Check "
                                       "the job's VPC/DNS settings, or raise dist_timeout") from None
            if tries == 1:
                log(f"distributed: leader {host} does not resolve yet ({err}); retrying for up to {timeout:g}s")
            time.sleep(min(pause, left))


# -- environment and command ------------------------------------------------------------------------
def network_env(cluster: Cluster, *, interfaces: Path = Path("/sys/class/net")) -> dict[str, str]:
    """Variables for NCCL/gloo/EFA; values the job's environment already sets win."""
    wanted: dict[str, str] = {}
    if cluster.interface and (interfaces / cluster.interface).exists():
        wanted["NCCL_SOCKET_IFNAME"] = wanted["GLOO_SOCKET_IFNAME"] = cluster.interface
    if cluster.gpus:
        wanted["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = "1"  # a lost peer ends the collective at the timeout
    itype = cluster.instance_type
    if itype.startswith(EFA_FAMILIES):
        wanted.update(FI_PROVIDER="efa", NCCL_PROTO="simple")
        if itype.startswith(RDMA_FAMILIES):
            wanted.update(FI_EFA_USE_DEVICE_RDMA="1", RDMAV_FORK_SAFE="1")
    return {k: v for k, v in wanted.items() if k not in os.environ}


def worker_env(cluster: Cluster) -> dict[str, str]:
    """This process's environment, the network variables, and this code importable from the workers."""
    import container

    root = str(Path(container.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, **network_env(cluster), "PYTHONPATH": root + (os.pathsep + path if path else "")}


def torchrun_command(cluster: Cluster, leader_addr: str, spec: Path) -> list[str]:
    """PyTorch's launcher, as SageMaker's own runs it, with every wait bounded by dist_timeout."""
    return [sys.executable, "-m", "torch.distributed.run",
            f"--nnodes={len(cluster.hosts)}", f"--nproc_per_node={cluster.nproc_per_node}",
            f"--node_rank={cluster.node_rank}", f"--master_addr={leader_addr}", f"--master_port={cluster.port}",
            f"--rdzv-conf=timeout={int(cluster.timeout)}", "--max_restarts=0",
            "-m", "container.yolo.ddp_worker", str(spec)]


# -- running ---------------------------------------------------------------------------------------
def launch(cluster: Cluster, spec: WorkerSpec, workdir: Path, stop: GracefulStop,
           log: Callable[[str], None] = print) -> None:
    """Run this host's share of the training; returns when every worker on it finished training."""
    leader_addr = resolve(cluster.leader, cluster.timeout, log=log)
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.iterdir():  # markers of an earlier attempt
        if old.name in (JOINED, STOPPED) or old.name.startswith(FAILURE_PREFIX):
            old.unlink()
    spec_file = workdir / SPEC
    dataclasses.replace(spec, workdir=str(workdir), leader=cluster.leader, host=cluster.current_host,
                        timeout=cluster.timeout, backend=cluster.backend).write(spec_file)
    cmd = torchrun_command(cluster, leader_addr, spec_file)
    log(f"distributed: {' '.join(cmd[1:])}")
    started = time.monotonic()
    # A SIGTERM is only recorded here and passed on to torchrun, which passes it to its workers: they agree
    # on the batch to stop at and the leader saves. (Raising here would kill torchrun and orphan them.)
    with stop.deferred(), stop.forwarding():
        proc = subprocess.Popen(cmd, env=worker_env(cluster))
        late = _wait_joined(proc, workdir / JOINED, started + cluster.timeout)
        code = proc.wait()
    if late:
        raise DistributedError(failure_reason(cluster, workdir, code, time.monotonic() - started, late=True))
    if code == 0:
        return
    if stop.requested is not None or (workdir / STOPPED).exists():
        raise TrainingStopped("stopped by SIGTERM; the leader saved the checkpoint")
    raise DistributedError(failure_reason(cluster, workdir, code, time.monotonic() - started))


def _wait_joined(proc: subprocess.Popen, joined: Path, deadline: float) -> bool:
    """Wait until this host's workers joined the group; past ``deadline``, end torchrun and return True.

    torchrun's own waits are bounded too (``--rdzv-conf timeout``), but its store client tries twice and
    the start of its workers comes on top; this keeps the whole start within dist_timeout.
    """
    while proc.poll() is None and not joined.exists():
        if time.monotonic() > deadline:
            proc.terminate()  # torchrun closes its workers (SIGTERM, then SIGKILL after 30 s)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            return True
        time.sleep(0.5)
    return False


def failure_reason(cluster: Cluster, workdir: Path, code: int, seconds: float, *, late: bool = False) -> str:
    """Why torchrun ended badly, naming the host this one waited for."""
    where = f"host {cluster.current_host} (rank {cluster.node_rank} of {len(cluster.hosts)})"
    reasons = sorted(workdir.glob(f"{FAILURE_PREFIX}*"))
    if reasons and not late:
        return f"{where}: {reasons[0].read_text(encoding='utf-8', errors='replace').strip()}"
    if (late or not (workdir / JOINED).exists()) and cluster.is_leader:
        others = shorten(", ".join(cluster.hosts[1:]), 200)
        return (f"{where}, the leader, waited {seconds:.0f}s for the other hosts ({others}) to join on port "
                f"{cluster.port} (dist_timeout {cluster.timeout:g}s; torchrun exit code {code}): not all "
                f"{len(cluster.hosts)} hosts joined. Check that every instance started and that port {cluster.port} "
                "is open between them (same security group), or raise dist_timeout")
    if late or not (workdir / JOINED).exists():
        return (f"{where} could not start training with the leader {cluster.leader} (port {cluster.port}) within "
                f"{seconds:.0f}s (dist_timeout {cluster.timeout:g}s; torchrun exit code {code}): the leader did "
                f"not answer, or not all {len(cluster.hosts)} hosts joined. Check that every instance started and "
                f"that port {cluster.port} is open between them (same security group), or raise dist_timeout")
    return (f"{where}: torchrun exit code {code} after {seconds:.0f}s; a peer host stopped answering (leader "
            f"{cluster.leader}); see the log of each host for the first failure")


# -- the job on each host (its steps are trainer.train's; these are the parts only several hosts have) ---
def check_framework_args(hps: Mapping[str, Any], cluster: Cluster) -> None:
    """What a job on several instances cannot take: a device choice, a batch that does not split over ranks."""
    if hps["device"] not in (None, ""):
        raise UserError(f"device={hps['device']!r} cannot be set on a job with several instances: each "
                        "host trains on all its GPUs (or its CPU where it has none). Leave device out")
    check_batch(float(hps["batch"]), cluster.world_size)


def worker_spec(model: str | None, kwargs: dict[str, Any], run_dir: Path, state: Any,
                hps: Mapping[str, Any]) -> WorkerSpec:
    """What this host's torchrun workers train: ``model`` (None: the leader's checkpoint), ultralytics' arguments
    (without ``resume``: a worker resumes from the start point the ranks agree on), the leader's start point."""
    return WorkerSpec(model=model, kwargs={k: v for k, v in kwargs.items() if k != "resume"}, run_dir=str(run_dir),
                      leader_state=None if state is None else LeaderState(finished=state.finished,
                                                                          path=str(state.path)),
                      progress_interval=hps["progress_interval"], per_class=hps["per_class_metrics"])


def fit(cluster: Cluster, spec: WorkerSpec, scratch: Path, stop: GracefulStop, log: Callable[[str], None]) -> None:
    """trainer.fit on several instances: torchrun with :mod:`container.yolo.ddp_worker` on this host."""
    launch(cluster, spec, scratch / "distributed", stop, log)
