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

Not SageMaker's, ours: :attr:`Environment.scratch_dir` (``<base>/scratch``, or ``$SM_DETECTORS_SCRATCH``)
holds what the images derive from the input and can derive again (converted datasets, label and image
caches): outside ``checkpoints/`` so it is never synced to S3, outside ``input/`` so channels stay untouched.
"""

from __future__ import annotations

import ast
import json
import multiprocessing
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"
DEFAULT_BASE_DIR = "/opt/ml"
DEFAULT_HOST = "algo-1"
SCRATCH_ENV = "SM_DETECTORS_SCRATCH"  # moves the scratch folder (a bigger disk, a test's tmp folder)

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


# The files of <base>/input/config/ (and Processing's <base>/config/resourceconfig.json), named once.
HYPERPARAMETERS_FILE = "hyperparameters.json"
INPUT_DATA_CONFIG_FILE = "inputdataconfig.json"
RESOURCE_CONFIG_FILE = "resourceconfig.json"
CHECKPOINT_CONFIG_FILE = "checkpointconfig.json"
# Any of these in <base>/input/config/ means a training job was set up (SageMaker writes all three).
TRAINING_JOB_FILES = (HYPERPARAMETERS_FILE, INPUT_DATA_CONFIG_FILE, RESOURCE_CONFIG_FILE)

TUNING_OBJECTIVE_KEY = "_tuning_objective_metric"  # SageMaker adds it to every training job of a tuning job


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


# A channel's name is a folder's name under <base>/input/data/. SageMaker's API allows [A-Za-z0-9.-_]{1,64};
# "." and ".." match that pattern but name no folder of their own (they would be input/data or input/).
CHANNEL_NAME_RULE = "letters, digits, '.', '-' and '_', at most 64 characters, not '.' or '..'"
CHANNEL_NAME_RE = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9.\-_]{1,64}$")


def is_channel_name(name: str) -> bool:
    """True for a name SageMaker accepts for a channel that is also one folder under ``input/data``."""
    return isinstance(name, str) and CHANNEL_NAME_RE.fullmatch(name) is not None


def encode_value(value: Any) -> str:
    """The one way this project writes a hyperparameter value: what :func:`decode_value` reads back.

    Strings stay as typed (``yolo11n.yaml``, readable in the console) unless they would decode
    as something else (``"true"``, ``"1"``), which are JSON-quoted; everything else is JSON.
    """
    if isinstance(value, str):
        return value if decode_value(value) == value else json.dumps(value)
    return json.dumps(value)


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
class Layout:
    """The ``/opt/ml`` tree under one base folder, declared once: what a training job finds and writes (the
    module docstring's layout), and where a Processing job's inputs, outputs and resourceconfig.json live.
    :class:`Environment` reads a job through it; other code names a path here rather than spelling it."""

    base: Path = Path(DEFAULT_BASE_DIR)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Layout:
        """The tree this process works in: ``$SAGEMAKER_BASE_DIR`` when set, else ``/opt/ml``."""
        environ = os.environ if environ is None else environ
        return cls(Path(environ.get(BASE_DIR_ENV) or DEFAULT_BASE_DIR))

    @property
    def input_config(self) -> Path:
        return self.base / "input" / "config"

    @property
    def hyperparameters_file(self) -> Path:
        return self.input_config / HYPERPARAMETERS_FILE

    @property
    def input_data_config_file(self) -> Path:
        return self.input_config / INPUT_DATA_CONFIG_FILE

    @property
    def resource_config_file(self) -> Path:
        return self.input_config / RESOURCE_CONFIG_FILE

    @property
    def checkpoint_config_file(self) -> Path:
        return self.input_config / CHECKPOINT_CONFIG_FILE

    @property
    def input_data(self) -> Path:
        return self.base / "input" / "data"

    def channel(self, name: str) -> Path:
        """A channel's folder (``name`` checked by :func:`is_channel_name` where it comes from a user)."""
        return self.input_data / name

    @property
    def model(self) -> Path:
        return self.base / "model"

    @property
    def code(self) -> Path:
        """Where SageMaker puts a script-mode job's source (``sagemaker_submit_directory``); our images do not."""
        return self.base / "code"

    @property
    def output(self) -> Path:
        return self.base / "output"

    @property
    def output_data(self) -> Path:
        return self.output / "data"

    @property
    def failure(self) -> Path:
        return self.output / "failure"

    @property
    def tensorboard(self) -> Path:
        return self.output / "tensorboard"

    @property
    def checkpoints(self) -> Path:
        return self.base / "checkpoints"

    @property
    def processing(self) -> Path:
        """A Processing job's inputs (``input/<name>``) and outputs (``output/<name>``)."""
        return self.base / "processing"

    @property
    def processing_resource_config(self) -> Path:
        return self.base / "config" / RESOURCE_CONFIG_FILE

    def write_training_job(self, *, hyperparameters: Mapping[str, str],
                           input_data_config: Mapping[str, Mapping[str, Any]], resource_config: Mapping[str, Any],
                           checkpoint_config: Mapping[str, Any]) -> None:
        """Write what SageMaker writes before a training container starts: the four ``input/config`` files (what
        :class:`Environment` reads back) and empty ``model``, ``output/data`` and ``checkpoints`` folders. For a run
        without SageMaker (container/local.py); ``hyperparameters`` are the strings SageMaker would pass."""
        self.input_config.mkdir(parents=True, exist_ok=True)
        for folder in (self.model, self.output_data, self.checkpoints):
            folder.mkdir(parents=True, exist_ok=True)
        self.hyperparameters_file.write_text(json.dumps(dict(hyperparameters), indent=2))
        self.input_data_config_file.write_text(json.dumps(dict(input_data_config), indent=2))
        self.resource_config_file.write_text(json.dumps(dict(resource_config), indent=2))
        self.checkpoint_config_file.write_text(json.dumps(dict(checkpoint_config)))


SAGEMAKER = Layout()  # the tree as SageMaker mounts it, at /opt/ml


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
        base = Path(base_dir) if base_dir else Layout.from_environ(environ).base
        layout = Layout(base)
        return cls(
            base_dir=base,
            hyperparameters_raw=_read_json(layout.hyperparameters_file),
            input_data_config=_read_json(layout.input_data_config_file),
            resource_config=_read_json(layout.resource_config_file),
            checkpoint_config=_read_json(layout.checkpoint_config_file),
            environ=environ,
            num_gpus=count_gpus() if num_gpus is None else num_gpus,
            num_cpus=multiprocessing.cpu_count() if num_cpus is None else num_cpus,
        )

    # -- paths ---------------------------------------------------------------------------------
    @property
    def layout(self) -> Layout:
        return Layout(self.base_dir)

    @property
    def input_dir(self) -> Path:
        return self.layout.input_config.parent

    @property
    def input_config_dir(self) -> Path:
        return self.layout.input_config

    @property
    def input_data_dir(self) -> Path:
        return self.layout.input_data

    @property
    def model_dir(self) -> Path:
        return self.layout.model

    @property
    def output_dir(self) -> Path:
        return self.layout.output

    @property
    def output_data_dir(self) -> Path:
        return self.layout.output_data

    @property
    def output_intermediate_dir(self) -> Path:
        return self.output_dir / "intermediate"

    @property
    def failure_file(self) -> Path:
        return self.layout.failure

    @property
    def tensorboard_dir(self) -> Path:
        return self.layout.tensorboard

    @property
    def checkpoint_dir(self) -> Path:
        """``CheckpointConfig.LocalPath`` when set, else ``<base>/checkpoints``.

        A LocalPath under ``/opt/ml`` follows the base directory, so a moved base stays self-contained.
        """
        local = self.checkpoint_config.get("LocalPath")
        if not local:
            return self.layout.checkpoints
        path = Path(local)
        try:
            return self.base_dir / path.relative_to(SAGEMAKER.base)
        except ValueError:
            return path

    @property
    def host_checkpoint_dir(self) -> Path:
        """This host's own folder under the checkpoint dir: all hosts share one S3 prefix.

        The training jobs of a tuning job (SageMaker adds ``_tuning_objective_metric`` to each) share
        the tuning job's one checkpoint prefix too: each keeps its own ``<job name>/<host>`` folder, so a
        spot restart resumes its own run and never another job's.
        """
        if TUNING_OBJECTIVE_KEY in self.hyperparameters_raw and self.job_name:
            return self.checkpoint_dir / self.job_name / self.current_host
        return self.checkpoint_dir / self.current_host

    @property
    def holds_training_job(self) -> bool:
        """A training job's files are in ``input/config/`` (what SageMaker, and SDK v3's local mode, write there)."""
        return any((self.input_config_dir / name).is_file() for name in TRAINING_JOB_FILES)

    @property
    def tracking_run_file(self) -> Path:
        """The MLflow run this job logs to (container/tracking.py), where a restarted job finds it again."""
        return self.host_checkpoint_dir / "mlflow-run.json"

    @property
    def scratch_dir(self) -> Path:
        """Derived data that a restart can rebuild: never synced, never inside a channel. Created by its user."""
        chosen = self.environ.get(SCRATCH_ENV)
        return Path(chosen) / self.current_host if chosen else self.base_dir / "scratch" / self.current_host

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
        """The first host: SageMaker lists them ``algo-1, algo-2, ...``."""
        return self.hosts[0]

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
