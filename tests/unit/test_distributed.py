"""The multi-instance launcher's pieces: cluster from resourceconfig.json, leader lookup, variables, command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from container.contract import Environment
from container.failure import UserError
from container.local import build_tree
from container.schema import Schema
from container.yolo import distributed
from container.yolo.distributed import Cluster, DistributedError


def env_for(tmp_path: Path, *, hosts=("algo-2", "algo-1", "algo-3"), current="algo-2", gpus=0,
            itype="ml.c5.xlarge", sharded: str | None = None) -> Environment:
    base = build_tree(tmp_path / current, {}, {}, hosts=hosts, current_host=current)
    rc = base / "input" / "config" / "resourceconfig.json"
    rc.write_text(json.dumps({**json.loads(rc.read_text()), "current_instance_type": itype}))
    if sharded:
        (base / "input" / "config" / "inputdataconfig.json").write_text(json.dumps(
            {sharded: {"TrainingInputMode": "File", "S3DistributionType": "ShardedByS3Key"}}))
    return Environment.from_base_dir(base, num_gpus=gpus)


HPS = {"dist_port": 7777, "dist_timeout": 600.0}


def test_cluster_from_resourceconfig(tmp_path):
    cluster = distributed.cluster_from(env_for(tmp_path), HPS)
    assert cluster.hosts == ("algo-1", "algo-2", "algo-3")  # sorted, whatever order the file has
    assert (cluster.leader, cluster.node_rank, cluster.is_leader) == ("algo-1", 1, False)
    assert (cluster.backend, cluster.nproc_per_node, cluster.world_size) == ("gloo", 1, 3)
    assert cluster.describe().startswith("distributed: host algo-2 rank 1 of 3 (leader algo-1, backend gloo)")


def test_gpu_hosts_use_nccl_and_one_process_per_gpu(tmp_path):
    cluster = distributed.cluster_from(env_for(tmp_path, gpus=8, current="algo-1"), HPS)
    assert (cluster.backend, cluster.nproc_per_node, cluster.world_size, cluster.is_leader) == ("nccl", 8, 24, True)


@pytest.mark.parametrize("hps, words", [
    ({"dist_port": "80"}, "'dist_port' must be between 1024 and 65535, got '80'"),
    ({"dist_timeout": "2"}, "'dist_timeout' must be at least 10, got '2'"),
])
def test_bad_settings_are_user_errors(hps, words):
    """The bounds are schema.yaml's: the image refuses them at start, the SDK before a job is made."""
    with pytest.raises(UserError, match=words):
        Schema.load("yolo").resolve([("hyperparameters", hps)])


def test_sharded_channel_refused(tmp_path):
    with pytest.raises(UserError, match="channel 'train' is ShardedByS3Key.*FullyReplicated"):
        distributed.cluster_from(env_for(tmp_path, sharded="train"), HPS)


def test_current_host_not_in_hosts(tmp_path):
    with pytest.raises(UserError, match="current_host 'algo-9' is not in hosts"):
        distributed.cluster_from(env_for(tmp_path, hosts=("algo-1", "algo-2"), current="algo-9"), HPS)


def test_leader_name_is_retried_until_it_resolves():
    answers = iter([OSError("Name or service not known"), OSError("again"), "10.0.0.1"])
    said: list[str] = []

    def lookup(host: str) -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert distributed.resolve("algo-1", 30, lookup=lookup, log=said.append, pause=0.01) == "10.0.0.1"
    assert len(said) == 1 and "does not resolve yet" in said[0]


def test_leader_that_never_resolves_is_named():
    def lookup(host: str) -> str:
        raise OSError("Name or service not known")

    with pytest.raises(DistributedError, match="cannot resolve the leader host 'algo-1'.*dist_timeout"):
        distributed.resolve("algo-1", 0.05, lookup=lookup, log=lambda _: None, pause=0.01)


def cluster(**kw) -> Cluster:
    values = {"hosts": ("algo-1", "algo-2"), "current_host": "algo-2", "gpus": 8, "interface": "eth0",
              "instance_type": "ml.p4d.24xlarge", "port": 7777, "timeout": 600.0}
    return Cluster(**{**values, **kw})


def test_network_variables(tmp_path, monkeypatch):
    (tmp_path / "eth0").mkdir()
    for key in ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "FI_PROVIDER", "FI_EFA_USE_DEVICE_RDMA", "NCCL_PROTO"):
        monkeypatch.delenv(key, raising=False)
    got = distributed.network_env(cluster(), interfaces=tmp_path)
    assert got["NCCL_SOCKET_IFNAME"] == got["GLOO_SOCKET_IFNAME"] == "eth0"
    assert (got["FI_PROVIDER"], got["FI_EFA_USE_DEVICE_RDMA"], got["NCCL_PROTO"]) == ("efa", "1", "simple")
    plain = distributed.network_env(cluster(instance_type="ml.g5.12xlarge", interface="ens5"), interfaces=tmp_path)
    assert "FI_PROVIDER" not in plain and "NCCL_SOCKET_IFNAME" not in plain  # no EFA; no such interface here
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "bond0")
    assert "NCCL_SOCKET_IFNAME" not in distributed.network_env(cluster(), interfaces=tmp_path)  # the job's own wins


def test_torchrun_command_is_sagemakers():
    cmd = distributed.torchrun_command(cluster(), "10.0.0.1", Path("/tmp/spec.json"))
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert {"--nnodes=2", "--nproc_per_node=8", "--node_rank=1", "--master_addr=10.0.0.1", "--master_port=7777",
            "--rdzv-conf=timeout=600", "--max_restarts=0"} <= set(cmd)
    assert cmd[-3:] == ["-m", "container.yolo.ddp_worker", "/tmp/spec.json"]


def test_failure_reasons_name_the_leader(tmp_path):
    c = cluster(current_host="algo-2")
    assert "could not start training with the leader algo-1 (port 7777)" in distributed.failure_reason(
        c, tmp_path, 1, 12.0)
    leader = distributed.failure_reason(cluster(current_host="algo-1"), tmp_path, 1, 12.0)
    assert "the leader, waited 12s for the other hosts (algo-2) to join on port 7777" in leader
    (tmp_path / distributed.JOINED).write_text("{}")
    assert "a peer host stopped answering (leader algo-1)" in distributed.failure_reason(c, tmp_path, 1, 50.0)
    (tmp_path / "failure-rank1").write_text("rank 1 lost contact with the other hosts (leader algo-1)")
    assert distributed.failure_reason(c, tmp_path, 1, 50.0).endswith("rank 1 lost contact with the other hosts "
                                                                       "(leader algo-1)")


def test_version_pin_guard(monkeypatch):
    import ultralytics

    from container.yolo import ddp_trainer

    ddp_trainer.check_version()  # the pinned version passes
    monkeypatch.setattr(ultralytics, "__version__", "8.5.0")
    with pytest.raises(RuntimeError, match="checked against ultralytics 8.4.190, this image has 8.5.0"):
        ddp_trainer.check_version()


@pytest.mark.parametrize("batch, world, words", [
    (-1, 2, "AutoBatch"), (0.7, 2, "AutoBatch"), (3, 2, "under 2 images each"), (16, 16, "under 2 images each"),
])
def test_batch_is_the_global_batch(batch, world, words):
    with pytest.raises(UserError, match=words):
        distributed.check_batch(batch, world)
    distributed.check_batch(4 * world, world)  # two per process and more: fine
