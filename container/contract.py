"""The SageMaker training contract: what a container finds under ``/opt/ml``.

One frozen object, :class:`Environment`, read from a base directory (``/opt/ml``, or the
``SAGEMAKER_BASE_DIR`` environment variable that AWS's ``sagemaker-training`` toolkit also
honours). Importing this module has no side effects; reading the layout creates nothing.

Layout (every file and every key optional)::

    <base>/input/config/hyperparameters.json   {"epochs": "3", ...}   strings, any client's encoding
    <base>/input/config/inputdataconfig.json   {"train": {"TrainingInputMode": "File", ...}}
    <base>/input/config/resourceconfig.json    {"current_host": "algo-1", "hosts": [...], ...}
    <base>/input/config/checkpointconfig.json  {"LocalPath": "/opt/ml/checkpoints", "S3Uri": ...}
    <base>/input/data/<channel>/               channel contents (File and FastFile modes)
    <base>/model/                              tarred to model.tar.gz by SageMaker
    <base>/output/data/                        tarred to output.tar.gz
    <base>/output/failure                      becomes FailureReason (first 1024 characters)
    <base>/output/tensorboard/                 synced to S3 when TensorBoardOutputConfig is set
    <base>/checkpoints/                        synced to S3 when CheckpointConfig is set
"""

from __future__ import annotations

import ast
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"
DEFAULT_BASE_DIR = "/opt/ml"
DEFAULT_HOST = "algo-1"

# Hyperparameters that SageMaker's SDKs add for their own use; never the trainer's concern.
SAGEMAKER_PREFIX = "sagemaker_"
SAGEMAKER_HYPERPARAMETERS = (
    "sagemaker_program",
    "sagemaker_submit_directory",
    "sagemaker_enable_cloudwatch_metrics",
    "sagemaker_region",
    "sagemaker_container_log_level",
    "sagemaker_job_name",
    "default_user_module_name",
    "_tuning_objective_metric",
    "sagemaker_s3_output",
)
_DISTRIBUTION_FLAGS = (
    "sagemaker_mpi_enabled",
    "sagemaker_parameter_server_enabled",
    "sagemaker_distributed_dataparallel_enabled",
    "sagemaker_pytorch_ddp_enabled",
    "sagemaker_pytorch_xla_multi_worker_enabled",
    "sagemaker_multi_worker_mirrored_strategy_enabled",
    "sagemaker_torch_distributed_enabled",
)


def is_reserved(key: str) -> bool:
    """True for keys SageMaker itself adds (``sagemaker_*``, ``_tuning_objective_metric``...)."""
    return key in SAGEMAKER_HYPERPARAMETERS or key.startswith(SAGEMAKER_PREFIX)


def decode_value(raw: Any) -> Any:
    """Decode one hyperparameter value, whatever client wrote it.

    * JSON (SDK v2 framework estimators, SDK v3): ``"\\"yolo11n.yaml\\""``, ``true``, ``0.01``;
    * ``str()`` (SDK v2 ``Estimator``): ``True``, ``0.01``, ``{'a': 1}``, ``[640, 480]``;
    * typed by hand in the console: ``yolo11n.yaml``, ``0.01``, ``TRUE``.
    Anything that decodes as neither stays the raw string.
    """
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if text[:1] in "[{(":
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return raw
        return list(value) if isinstance(value, tuple) else value
    return raw


def encode_value(value: Any) -> str:
    """The one way this project writes a hyperparameter value: what :func:`decode_value` reads back.

    Strings stay as typed (``yolo11n.yaml``, readable in the console) unless they would decode
    as something else (``"true"``, ``"1"``), which are JSON-quoted; everything else is JSON.
    """
    if isinstance(value, str):
        return value if decode_value(value) == value else json.dumps(value)
    return json.dumps(value)


def toolkit_decode(raw: Any) -> Any:
    """Decode exactly as ``sagemaker_training.environment.read_hyperparameters`` does."""
    try:
        return json.loads(raw)
    except (ValueError, TypeError):
        return raw


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return {}
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


def count_gpus() -> int:
    """GPUs the way AWS's toolkit counts them: ``nvidia-smi --list-gpus``; 0 without it."""
    try:
        output = subprocess.check_output(["nvidia-smi", "--list-gpus"], stderr=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError):
        return 0
    return sum(1 for line in output.decode("utf-8", "replace").splitlines() if line.startswith("GPU "))


@dataclass(frozen=True)
class Environment:
    """A read-only snapshot of the SageMaker training layout under ``base_dir``.

    Build it with :meth:`from_base_dir` in a container, or directly from dicts in tests.
    """

    base_dir: Path = Path(DEFAULT_BASE_DIR)
    hyperparameters_raw: Mapping[str, Any] = field(default_factory=dict)
    input_data_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    resource_config: Mapping[str, Any] = field(default_factory=dict)
    checkpoint_config: Mapping[str, Any] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=dict)
    num_gpus: int = 0
    num_cpus: int = 1

    @classmethod
    def from_base_dir(
        cls,
        base_dir: str | os.PathLike | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        num_gpus: int | None = None,
        num_cpus: int | None = None,
    ) -> Environment:
        """Read the layout. ``base_dir`` defaults to ``$SAGEMAKER_BASE_DIR`` then ``/opt/ml``."""
        environ = dict(os.environ if environ is None else environ)
        base = Path(base_dir or environ.get(BASE_DIR_ENV) or DEFAULT_BASE_DIR)
        config = base / "input" / "config"
        return cls(
            base_dir=base,
            hyperparameters_raw=_read_json(config / "hyperparameters.json"),
            input_data_config=_read_json(config / "inputdataconfig.json"),
            resource_config=_read_json(config / "resourceconfig.json"),
            checkpoint_config=_read_json(config / "checkpointconfig.json"),
            environ=environ,
            num_gpus=count_gpus() if num_gpus is None else num_gpus,
            num_cpus=multiprocessing.cpu_count() if num_cpus is None else num_cpus,
        )

    # -- paths ---------------------------------------------------------------------------------
    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def input_config_dir(self) -> Path:
        return self.input_dir / "config"

    @property
    def input_data_dir(self) -> Path:
        return self.input_dir / "data"

    @property
    def model_dir(self) -> Path:
        return self.base_dir / "model"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def output_intermediate_dir(self) -> Path:
        return self.output_dir / "intermediate"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def tensorboard_dir(self) -> Path:
        return self.output_dir / "tensorboard"

    @property
    def checkpoint_dir(self) -> Path:
        """``CheckpointConfig.LocalPath`` when set, else ``<base>/checkpoints``.

        A LocalPath under ``/opt/ml`` follows the base directory, so a moved base stays self-contained.
        """
        local = self.checkpoint_config.get("LocalPath")
        if not local:
            return self.base_dir / "checkpoints"
        path = Path(local)
        try:
            return self.base_dir / path.relative_to(DEFAULT_BASE_DIR)
        except ValueError:
            return path

    @property
    def host_checkpoint_dir(self) -> Path:
        """This host's own folder under the checkpoint dir: all hosts share one S3 prefix."""
        return self.checkpoint_dir / self.current_host

    # -- cluster -------------------------------------------------------------------------------
    @property
    def current_host(self) -> str:
        return str(self.resource_config.get("current_host") or DEFAULT_HOST)

    @property
    def hosts(self) -> list[str]:
        hosts = self.resource_config.get("hosts") or [self.current_host]
        return [str(h) for h in hosts]

    @property
    def is_master(self) -> bool:
        return self.current_host == self.master_hostname

    @property
    def master_hostname(self) -> str:
        return (self.distribution_hosts or self.hosts)[0]

    @property
    def current_instance_type(self) -> str:
        return str(self.resource_config.get("current_instance_type", "local"))

    @property
    def network_interface_name(self) -> str:
        return str(self.resource_config.get("network_interface_name", "eth0"))

    @property
    def job_name(self) -> str | None:
        return self.environ.get("TRAINING_JOB_NAME")

    # -- channels ------------------------------------------------------------------------------
    @property
    def channels(self) -> dict[str, Path]:
        """Channels present on disk (declared in inputdataconfig.json or just there), by name."""
        found: dict[str, Path] = {}
        names = set(self.input_data_config)
        if self.input_data_dir.is_dir():
            names.update(p.name for p in self.input_data_dir.iterdir() if p.is_dir())
        for name in sorted(names):
            path = self.input_data_dir / name
            if path.exists():
                found[name] = path
        return found

    def channel(self, name: str) -> Path | None:
        return self.channels.get(name)

    def input_mode(self, channel: str) -> str:
        return str(self.input_data_config.get(channel, {}).get("TrainingInputMode", "File"))

    # -- hyperparameters -----------------------------------------------------------------------
    @property
    def hyperparameters(self) -> dict[str, Any]:
        """User hyperparameters, decoded by :func:`decode_value`, SageMaker's own keys removed."""
        return {k: decode_value(v) for k, v in self.hyperparameters_raw.items() if not is_reserved(k)}

    # -- the toolkit's variables ---------------------------------------------------------------
    def _framework_params(self) -> dict[str, Any]:
        decoded = {k: toolkit_decode(v) for k, v in self.hyperparameters_raw.items()}
        return {k: v for k, v in decoded.items() if is_reserved(k)}

    @property
    def instance_groups_config(self) -> list[Mapping[str, Any]]:
        return list(self.resource_config.get("instance_groups", []) or [])

    @property
    def current_instance_group(self) -> str:
        return str(self.resource_config.get("current_group_name", "homogeneousCluster"))

    @property
    def distribution_instance_groups(self) -> list[str]:
        params = self._framework_params()
        if "sagemaker_distribution_instance_groups" in params:
            return params["sagemaker_distribution_instance_groups"]
        return [self.current_instance_group] if any(params.get(f, False) for f in _DISTRIBUTION_FLAGS) else []

    @property
    def distribution_hosts(self) -> list[str]:
        if not self.instance_groups_config:
            return list(self.hosts)
        hosts: list[str] = []
        for group in self.instance_groups_config:
            if group["instance_group_name"] in self.distribution_instance_groups:
                hosts.extend(group["hosts"])
        return hosts

    def training_env(self) -> dict[str, Any]:
        """The dictionary AWS's toolkit exports as ``SM_TRAINING_ENV``, computed without it."""
        environ = self.environ
        framework = self._framework_params()
        user_hps = {
            k: toolkit_decode(v) for k, v in self.hyperparameters_raw.items() if not is_reserved(k)
        }
        groups = self.instance_groups_config
        group_hosts: list[str] = []
        for group in groups:
            if group["instance_group_name"] == self.current_instance_group:
                group_hosts = group["hosts"]
                break
        program = environ.get("SAGEMAKER_PROGRAM")
        module_name = program if program is not None else str(framework.get("sagemaker_program", None))
        if module_name and module_name.endswith(".py"):
            module_name = module_name[:-3]
        mp = environ.get("SM_HP_MP_PARAMETERS")
        base = str(self.base_dir)
        env = {
            "additional_framework_parameters": {
                k: v for k, v in framework.items() if k not in SAGEMAKER_HYPERPARAMETERS
            },
            "channel_input_dirs": {c: os.path.join(base, "input", "data", c) for c in self.input_data_config},
            "current_host": self.resource_config.get("current_host", self.current_host),
            "current_instance_group": self.current_instance_group,
            "current_instance_group_hosts": group_hosts,
            "current_instance_type": self.current_instance_type,
            "distribution_hosts": self.distribution_hosts,
            "distribution_instance_groups": self.distribution_instance_groups,
            "framework_module": environ.get("SAGEMAKER_TRAINING_MODULE"),
            "hosts": self.resource_config.get("hosts", self.hosts),
            "hyperparameters": user_hps,
            "input_config_dir": os.path.join(base, "input", "config"),
            "input_data_config": dict(self.input_data_config),
            "input_dir": os.path.join(base, "input"),
            "instance_groups": [g["instance_group_name"] for g in groups],
            "instance_groups_dict": {g["instance_group_name"]: g for g in groups},
            "is_hetero": len(groups) > 1,
            "is_master": self.is_master,
            "is_modelparallel_enabled": (mp and mp != "{}") if mp is not None else None,
            "is_smddpmprun_installed": shutil.which("smddpmprun") is not None,
            "is_smddprun_installed": shutil.which("smddprun") is not None,
            "job_name": self.job_name,
            "log_level": framework.get("sagemaker_container_log_level", logging.INFO),
            "master_hostname": self.master_hostname,
            "model_dir": os.path.join(base, "model"),
            "module_dir": str(framework.get("sagemaker_submit_directory", os.path.join(base, "code"))),
            "module_name": module_name,
            "network_interface_name": self.network_interface_name,
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "num_neurons": 0,
            "output_data_dir": os.path.join(base, "output", "data"),
            "output_dir": os.path.join(base, "output"),
            "output_intermediate_dir": os.path.join(base, "output", "intermediate"),
            "resource_config": dict(self.resource_config),
            "topology": self.resource_config.get("topology", []),
            "user_entry_point": program or framework.get("sagemaker_program"),
        }
        return env

    def sm_env_vars(self) -> dict[str, str]:
        """The ``SM_*`` variables, with the values AWS's ``sagemaker-training`` toolkit exports."""
        te = self.training_env()
        flat = {
            "hosts": te["hosts"],
            "network_interface_name": te["network_interface_name"],
            "hps": te["hyperparameters"],
            "user_entry_point": te["user_entry_point"],
            "framework_params": te["additional_framework_parameters"],
            "resource_config": te["resource_config"],
            "input_data_config": te["input_data_config"],
            "output_data_dir": te["output_data_dir"],
            "channels": sorted(te["channel_input_dirs"]),
            "current_host": te["current_host"],
            "current_instance_type": te["current_instance_type"],
            "current_instance_group": te["current_instance_group"],
            "current_instance_group_hosts": te["current_instance_group_hosts"],
            "instance_groups": te["instance_groups"],
            "instance_groups_dict": te["instance_groups_dict"],
            "distribution_instance_groups": te["distribution_instance_groups"],
            "is_hetero": te["is_hetero"],
            "module_name": te["module_name"],
            "log_level": te["log_level"],
            "framework_module": te["framework_module"],
            "input_dir": te["input_dir"],
            "input_config_dir": te["input_config_dir"],
            "output_dir": te["output_dir"],
            "num_cpus": te["num_cpus"],
            "num_gpus": te["num_gpus"],
            "num_neurons": te["num_neurons"],
            "model_dir": te["model_dir"],
            "module_dir": te["module_dir"],
            "training_env": te,
            "user_args": _cmd_args(te["hyperparameters"]),
            "output_intermediate_dir": te["output_intermediate_dir"],
        }
        if te["topology"]:
            flat["topology"] = te["topology"]
        for name, path in te["channel_input_dirs"].items():
            flat[f"channel_{name}"] = path
        for key, value in te["hyperparameters"].items():
            flat[f"hp_{key}"] = value
        return {f"SM_{k.upper()}": _env_value(v) for k, v in flat.items()}


def _env_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _cmd_args(hps: Mapping[str, Any]) -> list[str]:
    args: list[str] = []
    for key in sorted(hps):
        value = hps[key]
        args.append(f"--{key}" if len(key) > 1 else f"-{key}")
        if hasattr(value, "items"):
            args.append(",".join(f"{k}={v}" for k, v in sorted(value.items())))
        else:
            args.append("" if value is None else str(value))
    return args
