"""The ``SM_*`` variables AWS's ``sagemaker-training`` toolkit exports, computed without it.

Kept apart from :mod:`container.contract` (the ``/opt/ml`` layout): nothing in our trainers reads
these; ``train`` exports them only so that scripts written for AWS's framework images keep working.
``tests/unit/test_contract.py`` compares them with the toolkit's own, value for value.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from typing import Any

from container.contract import SAGEMAKER_HYPERPARAMETERS, Environment, is_reserved

# Hyperparameters by which SageMaker's SDKs ask for a distribution strategy.
_DISTRIBUTION_FLAGS = (
    "sagemaker_mpi_enabled",
    "sagemaker_parameter_server_enabled",
    "sagemaker_distributed_dataparallel_enabled",
    "sagemaker_pytorch_ddp_enabled",
    "sagemaker_pytorch_xla_multi_worker_enabled",
    "sagemaker_multi_worker_mirrored_strategy_enabled",
    "sagemaker_torch_distributed_enabled",
)


def toolkit_decode(raw: Any) -> Any:
    """Decode exactly as ``sagemaker_training.environment.read_hyperparameters`` does."""
    try:
        return json.loads(raw)
    except (ValueError, TypeError, RecursionError):  # RecursionError: 1,100 "[" (the image's parse names it)
        return raw


def _framework_params(env: Environment) -> dict[str, Any]:
    decoded = {k: toolkit_decode(v) for k, v in env.hyperparameters_raw.items()}
    return {k: v for k, v in decoded.items() if is_reserved(k)}


def _instance_groups(env: Environment) -> list[Mapping[str, Any]]:
    return list(env.resource_config.get("instance_groups", []) or [])


def _current_instance_group(env: Environment) -> str:
    return str(env.resource_config.get("current_group_name", "homogeneousCluster"))


def _distribution_instance_groups(env: Environment) -> list[str]:
    params = _framework_params(env)
    if "sagemaker_distribution_instance_groups" in params:
        return params["sagemaker_distribution_instance_groups"]
    return [_current_instance_group(env)] if any(params.get(f, False) for f in _DISTRIBUTION_FLAGS) else []


def _distribution_hosts(env: Environment) -> list[str]:
    groups = _instance_groups(env)
    if not groups:
        return list(env.hosts)
    wanted = _distribution_instance_groups(env)
    hosts: list[str] = []
    for group in groups:
        if group["instance_group_name"] in wanted:
            hosts.extend(group["hosts"])
    return hosts


def training_env(env: Environment) -> dict[str, Any]:
    """The dictionary AWS's toolkit exports as ``SM_TRAINING_ENV``."""
    environ = env.environ
    framework = _framework_params(env)
    user_hps = {k: toolkit_decode(v) for k, v in env.hyperparameters_raw.items() if not is_reserved(k)}
    groups = _instance_groups(env)
    current_group = _current_instance_group(env)
    group_hosts: list[str] = []
    for group in groups:
        if group["instance_group_name"] == current_group:
            group_hosts = group["hosts"]
            break
    distribution_hosts = _distribution_hosts(env)
    master = (distribution_hosts or env.hosts)[0]
    program = environ.get("SAGEMAKER_PROGRAM")
    module_name = program if program is not None else str(framework.get("sagemaker_program", None))
    if module_name and module_name.endswith(".py"):
        module_name = module_name[:-3]
    mp = environ.get("SM_HP_MP_PARAMETERS")
    return {
        "additional_framework_parameters": {
            k: v for k, v in framework.items() if k not in SAGEMAKER_HYPERPARAMETERS
        },
        "channel_input_dirs": {c: str(env.layout.channel(c)) for c in env.input_data_config},
        "current_host": env.resource_config.get("current_host", env.current_host),
        "current_instance_group": current_group,
        "current_instance_group_hosts": group_hosts,
        "current_instance_type": env.current_instance_type,
        "distribution_hosts": distribution_hosts,
        "distribution_instance_groups": _distribution_instance_groups(env),
        "framework_module": environ.get("SAGEMAKER_TRAINING_MODULE"),
        "hosts": env.resource_config.get("hosts", env.hosts),
        "hyperparameters": user_hps,
        "input_config_dir": str(env.input_config_dir),
        "input_data_config": dict(env.input_data_config),
        "input_dir": str(env.input_dir),
        "instance_groups": [g["instance_group_name"] for g in groups],
        "instance_groups_dict": {g["instance_group_name"]: g for g in groups},
        "is_hetero": len(groups) > 1,
        "is_master": env.current_host == master,
        "is_modelparallel_enabled": (mp and mp != "{}") if mp is not None else None,
        "is_smddpmprun_installed": shutil.which("smddpmprun") is not None,
        "is_smddprun_installed": shutil.which("smddprun") is not None,
        "job_name": env.job_name,
        "log_level": framework.get("sagemaker_container_log_level", logging.INFO),
        "master_hostname": master,
        "model_dir": str(env.model_dir),
        "module_dir": str(framework.get("sagemaker_submit_directory", env.layout.code)),
        "module_name": module_name,
        "network_interface_name": env.network_interface_name,
        "num_cpus": env.num_cpus,
        "num_gpus": env.num_gpus,
        "num_neurons": 0,
        "output_data_dir": str(env.output_data_dir),
        "output_dir": str(env.output_dir),
        "output_intermediate_dir": str(env.output_intermediate_dir),
        "resource_config": dict(env.resource_config),
        "topology": env.resource_config.get("topology", []),
        "user_entry_point": program or framework.get("sagemaker_program"),
    }


# SM_<NAME> -> the training_env key it flattens (the toolkit's own table).
_FLAT = {
    "hosts": "hosts", "network_interface_name": "network_interface_name", "hps": "hyperparameters",
    "user_entry_point": "user_entry_point", "framework_params": "additional_framework_parameters",
    "resource_config": "resource_config", "input_data_config": "input_data_config",
    "output_data_dir": "output_data_dir", "current_host": "current_host",
    "current_instance_type": "current_instance_type", "current_instance_group": "current_instance_group",
    "current_instance_group_hosts": "current_instance_group_hosts", "instance_groups": "instance_groups",
    "instance_groups_dict": "instance_groups_dict",
    "distribution_instance_groups": "distribution_instance_groups", "is_hetero": "is_hetero",
    "module_name": "module_name", "log_level": "log_level", "framework_module": "framework_module",
    "input_dir": "input_dir", "input_config_dir": "input_config_dir", "output_dir": "output_dir",
    "num_cpus": "num_cpus", "num_gpus": "num_gpus", "num_neurons": "num_neurons", "model_dir": "model_dir",
    "module_dir": "module_dir", "output_intermediate_dir": "output_intermediate_dir",
}


def sm_env_vars(env: Environment) -> dict[str, str]:
    """The ``SM_*`` variables, with the values AWS's ``sagemaker-training`` toolkit exports."""
    te = training_env(env)
    flat: dict[str, Any] = {name: te[key] for name, key in _FLAT.items()}
    flat["channels"] = sorted(te["channel_input_dirs"])
    flat["training_env"] = te
    flat["user_args"] = _cmd_args(te["hyperparameters"])
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
