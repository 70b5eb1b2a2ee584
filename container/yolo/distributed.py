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

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from container import tracking
from container.contract import Environment
from container.failure import TrainingStopped, UserError, shorten
from container.signals import GracefulStop

DEFAULT_PORT = 7777  # SageMaker's PyTorch launcher uses it too
# Instance families with EFA (SageMaker's toolkit list); RDMA ones also get FI_EFA_USE_DEVICE_RDMA.
EFA_FAMILIES = ("ml.g5.48xlarge", "ml.g6.48xlarge", "ml.g6e.48xlarge", "ml.p3dn.", "ml.p4d.", "ml.p4de.",
                "ml.p5.", "ml.p5e.", "ml.p5en.", "ml.p6-", "ml.trn1.", "ml.trn1n.", "ml.trn2.")
RDMA_FAMILIES = ("ml.p4d.", "ml.p4de.", "ml.p5.", "ml.p5e.", "ml.p5en.", "ml.p6-")
SHARDED = "ShardedByS3Key"
JOINED = "joined"  # marker a worker writes once the process group is up and the start point agreed
STOPPED = "stopped"  # marker a worker writes when it left training on SIGTERM
FAILURE_PREFIX = "failure-rank"


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


def cluster_from(env: Environment, hps: dict[str, Any]) -> Cluster:
    """The cluster as resourceconfig.json and the hyperparameters describe it; user errors named."""
    hosts = tuple(sorted(env.hosts))
    if env.current_host not in hosts:
        raise UserError(f"resourceconfig.json: current_host {env.current_host!r} is not in hosts "
                        f"({shorten(', '.join(hosts), 200)})")
    if len(set(hosts)) != len(hosts):
        raise UserError(f"resourceconfig.json: hosts has duplicates ({shorten(', '.join(hosts), 200)})")
    port = int(hps.get("dist_port") or DEFAULT_PORT)
    if not 1024 <= port <= 65535:
        raise UserError(f"dist_port={port} is outside 1024-65535: pick a free unprivileged port (default 7777)")
    timeout = float(hps.get("dist_timeout") or 0)
    if timeout < 10:
        raise UserError(f"dist_timeout={timeout:g} seconds is too short for hosts to start together: use at least "
                        "10 (default 600)")
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
def launch(cluster: Cluster, spec: dict[str, Any], workdir: Path, stop: GracefulStop,
           log: Callable[[str], None] = print) -> None:
    """Run this host's share of the training; returns when every worker on it finished training."""
    leader_addr = resolve(cluster.leader, cluster.timeout, log=log)
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.iterdir():  # markers of an earlier attempt
        if old.name in (JOINED, STOPPED) or old.name.startswith(FAILURE_PREFIX):
            old.unlink()
    spec_file = workdir / "spec.json"
    spec_file.write_text(json.dumps({**spec, "workdir": str(workdir), "leader": cluster.leader,
                                     "host": cluster.current_host, "timeout": cluster.timeout,
                                     "backend": cluster.backend}, default=str), encoding="utf-8")
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


# -- the job on each host ----------------------------------------------------------------------------
def train(env: Environment, schema: Any, stop: GracefulStop, hps: dict[str, Any], sources: dict[str, str]) -> None:
    """trainer.train for a job on several instances: the same preparation, torchrun, then the leader packages."""
    from container.archive import sha256
    from container.yolo import checkpoints, validate
    from container.yolo import dataset as datasets
    from container.yolo import prepare as single
    from container.yolo.package import package
    from container.yolo.report import Reporter, log, quiet_progress_bars

    cluster = cluster_from(env, hps)
    log(cluster.describe())
    framework_args = {k: v for k, v in hps.items() if schema.params[k].source == "ultralytics"}
    if framework_args.get("device") not in (None, ""):
        raise UserError(f"device={framework_args['device']!r} cannot be set on a job with several instances: each "
                        "host trains on all its GPUs (or its CPU where it has none). Leave device out")
    check_batch(float(framework_args.get("batch") or 16), cluster.world_size)
    log("hyperparameters: " + json.dumps({k: hps[k] for k in sorted(hps)}, default=str))
    tracking.log_params(hps, env)  # the leader's run (container/tracking.py); other hosts have none
    log("set by: " + json.dumps({k: v for k, v in sorted(sources.items()) if v != "default"}))
    single.configure_offline()
    host_dir = env.host_checkpoint_dir
    run_dir = host_dir / "train"
    scratch = env.scratch_dir
    single.log_checkpoint_folder(host_dir, "at start")
    ds = datasets.resolve(env, hps, scratch / "data", seed=int(hps.get("seed") or 0), log=log)
    stop.check()

    import ultralytics
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    from container.yolo.ddp_trainer import check_version

    check_version()
    single.install_fonts(Path(USER_CONFIG_DIR))
    SETTINGS.update({"mlflow": False})  # one job, one MLflow run: ours; the workers read the saved settings
    quiet_progress_bars()
    validate.check_framework_args(framework_args)
    log(f"ultralytics {ultralytics.__version__}; {env.num_gpus} GPU(s), {env.num_cpus} CPU(s); run folder {run_dir}")

    weights_dir = run_dir / "weights"
    state = checkpoints.resume_point(weights_dir, log)
    if state is None and cluster.is_leader and (channel := env.channel("checkpoint")) is not None:
        checkpoints.from_channel(channel, run_dir, log)
        state = checkpoints.resume_point(weights_dir, log)
    weights_used: dict[str, str] = {}
    model_name = None
    if state is None or not cluster.is_leader:  # a follower is told by the leader whether to resume
        explicit = sources.get("model", "default") != "default"
        model_name, pretrained = single.choose_model(hps, explicit, single.find_weights(env, scratch / "weights-in"))
        for path in filter(None, (model_name if model_name.endswith(".pt") else None, pretrained)):
            weights_used[Path(path).name] = sha256(Path(path))
        if pretrained:
            framework_args["pretrained"] = pretrained
    if state is not None and cluster.is_leader:
        log(f"found {state.path} ({state.epochs_done} of {state.epochs} epoch(s) done"
            + (", training finished)" if state.finished else ", resumable): every host resumes from it"))
        weights_used[state.path.name] = sha256(state.path)
    spec = {"model": model_name, "kwargs": {**framework_args, "data": str(ds.data_yaml), "save_dir": str(run_dir),
                                            "exist_ok": True},
            "run_dir": str(run_dir),
            "leader_state": None if state is None else {"finished": state.finished, "path": str(state.path)},
            "progress_interval": float(hps.get("progress_interval") or 0),
            "per_class": bool(hps.get("per_class_metrics"))}
    launch(cluster, spec, scratch / "distributed", stop, log)
    stop.check()
    if not cluster.is_leader:
        log(f"distributed: host {cluster.current_host} done; the leader {cluster.leader} writes the model folder")
        return
    single.log_checkpoint_folder(host_dir, "after training")
    reporter = Reporter(float(hps.get("progress_interval") or 0), bool(hps.get("per_class_metrics")),
                        run_dir / "final.json")
    package(env, hps, ds, run_dir, reporter, weights_used, sources, stop)
