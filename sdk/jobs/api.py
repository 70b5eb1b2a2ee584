"""A request checked against botocore's own service model, before anything is uploaded or created.

botocore's :class:`~botocore.validate.ParamValidator` (what boto3 runs before sending) checks
required members, types and *minimums*; it does not check maximums (51 tags, a 300-character
name), enums (``ml.banana.huge``) or patterns (an ARN, a job name). :func:`check_request` runs
the validator and then walks the same shapes for those three, so the rules are the API's own,
read from the model that ships with botocore, not a copy. No credentials, region or network.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable
from typing import Any

from sdk._errors import ConfigurationError

MAX_RUNTIME_LIMIT = 28 * 24 * 3600  # SageMaker's hard ceiling; the model does not declare it (quota: 5 days default)


@functools.lru_cache(maxsize=4)
def service_model(service: str = "sagemaker") -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def input_shape(operation: str, service: str = "sagemaker") -> Any:
    return service_model(service).operation_model(operation).input_shape


def enum_of(operation: str, *path: str, service: str = "sagemaker") -> list[str]:
    """The enum of a member, by its path of member names (``"ResourceConfig", "InstanceType"``)."""
    shape = input_shape(operation, service)
    for name in path:
        shape = shape.members[name]
    return list(getattr(shape, "enum", []) or [])


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:  # a Java-only construct: botocore's validator does not check patterns either
        return None


def _walk(shape: Any, value: Any, path: str, problems: list[str]) -> None:
    if value is None:
        return
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure" and isinstance(value, dict):
        for name, member in value.items():
            if name in shape.members:
                _walk(shape.members[name], member, f"{path}.{name}" if path else name, problems)
    elif kind == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} items; the API accepts at most {meta['max']}")
        for i, item in enumerate(value):
            _walk(shape.member, item, f"{path}[{i}]", problems)
    elif kind == "map" and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} entries; the API accepts at most {meta['max']}")
        for key, item in value.items():
            _walk(shape.key, key, f"{path} key {key!r}", problems)
            _walk(shape.value, item, f"{path}[{key!r}]", problems)
    elif kind == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} characters; the API accepts at most {meta['max']}")
        enum = list(getattr(shape, "enum", []) or [])
        if enum and value not in enum:
            hint = difflib.get_close_matches(value, enum, n=1, cutoff=0.6)
            problems.append(f"{path}: {value!r} is not one of the API's values"
                            + (f"; did you mean {hint[0]!r}?" if hint else f" ({len(enum)} values, e.g. {enum[0]!r})"))
        pattern = meta.get("pattern")
        compiled = _compiled(pattern) if pattern else None
        if compiled is not None and not compiled.fullmatch(value):
            problems.append(f"{path}: {value!r} does not match the API's pattern {pattern}")
    elif kind in ("integer", "long") and isinstance(value, int) and "max" in meta and value > meta["max"]:
        problems.append(f"{path}: {value} is above the API's maximum {meta['max']}")


def problems_of(operation: str, request: dict[str, Any], *, service: str = "sagemaker") -> list[str]:
    """Every way ``request`` breaks the API's model: botocore's validator, then max/enum/pattern."""
    from botocore.validate import ParamValidator

    shape = input_shape(operation, service)
    report = ParamValidator().validate(request, shape)
    problems: list[str] = []
    if report.has_errors():
        # one line per problem, no header (ParamValidationError adds "Parameter validation failed:" itself)
        problems += [line.strip() for line in report.generate_report().splitlines() if line.strip()]
    _walk(shape, request, "", problems)
    return problems


def check_request(operation: str, request: dict[str, Any], *, service: str = "sagemaker",
                  extra: Iterable[str] = ()) -> None:
    """ConfigurationError naming every problem, or nothing."""
    problems = [*extra, *problems_of(operation, request, service=service)]
    if operation == "CreateTrainingJob":
        run = request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
        if isinstance(run, int) and run > MAX_RUNTIME_LIMIT:
            problems.append(f"StoppingCondition.MaxRuntimeInSeconds: {run} s ({run / 86400:.1f} days); SageMaker "
                            f"runs a training job at most 28 days ({MAX_RUNTIME_LIMIT} s), and your account's "
                            "quota may be lower (5 days unless raised)")
    if problems:
        raise ConfigurationError(f"the {operation} request would be refused by the API: " + "; ".join(problems))


def suggest_instance_type(value: str, operation: str = "CreateTrainingJob") -> str | None:
    """``"lcoal"`` -> ``"local"``, ``"g5.xlarge"`` -> ``"ml.g5.xlarge"``, or None."""
    choices = ["local", *enum_of(operation, "ResourceConfig", "InstanceType")]
    if value in choices:
        return None
    if "ml." + value in choices:
        return "ml." + value
    hint = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    return hint[0] if hint else None
