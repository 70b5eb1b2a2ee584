"""Each image's schema, declared once as data: hyperparameters, channels, metrics.

``container/<image>/schema.yaml`` is the one declaration. The image reads it at run time to
parse and check hyperparameters and to print metric lines; ``describe`` prints it; the SDK
reads the same file to validate requests and to generate ``MetricDefinitions``.

A schema may adopt a framework's own argument list instead of copying it
(``framework_args``): for the YOLO image every key of ultralytics' ``cfg/default.yaml`` is a
hyperparameter, typed and described by that file's own comments
(``epochs: 100 # (int) number of epochs to train for``). The file is read without importing
the framework, so the SDK can use it with nothing heavy installed.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from container.contract import decode_value, is_reserved
from container.failure import UserError

SCHEMA_DIR = Path(__file__).resolve().parent
METRIC_LIMIT = 40  # SageMaker accepts at most 40 metric definitions per job
NUMBER_RE = r"(-?[0-9]+(?:\.[0-9]+)?)"
KNOWN_TYPES = ("bool", "int", "float", "str", "list", "dict")


@dataclass(frozen=True)
class Param:
    name: str
    types: tuple[str, ...]  # accepted types, tried in declared order; empty means anything
    default: Any = None
    help: str = ""
    optional: bool = True  # may be null / empty
    source: str = "image"  # "image", or the framework that declares it ("ultralytics")
    choices: tuple[Any, ...] = ()

    @property
    def type_label(self) -> str:
        return " | ".join(self.types) or "any"


@dataclass(frozen=True)
class Metric:
    name: str  # CloudWatch metric name
    line: str  # tag of the line that carries it: "[metrics] ... key=value"
    key: str
    help: str = ""

    @property
    def regex(self) -> str:
        return rf"\[{re.escape(self.line)}\] .*\b{re.escape(self.key)}={NUMBER_RE}"


@dataclass(frozen=True)
class Channel:
    name: str
    help: str = ""


def format_metric_line(line: str, values: Mapping[str, Any], *, prefix: Iterable[str] = ()) -> str:
    """``[line] a=1.000000 b=2.000000``: fixed point, so any regex reads it; NaN/inf left out."""
    parts = [f"[{line}]", *prefix]
    for key, value in values.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            parts.append(f"{key}={value}")
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if number == number and abs(number) != float("inf"):
            parts.append(f"{key}={number:.6f}")
    return " ".join(parts)


# -- reading a framework's own argument list ------------------------------------------------------
_TYPE_COMMENT = re.compile(r"^\(([^)]*)\)\s*(.*)$")


def read_framework_args(package: str, relpath: str) -> dict[str, Param] | None:
    """Params from a framework's defaults YAML (``key: default # (type) help``), or None if absent."""
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relpath
    if not path.is_file():
        return None
    defaults = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    params: dict[str, Param] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw or raw[0] in " #" or ":" not in raw:
            continue
        key = raw.split(":", 1)[0].strip()
        if key not in defaults:
            continue
        comment = raw.split(" # ", 1)[1].strip() if " # " in raw else ""
        types: tuple[str, ...] = ()
        optional = defaults[key] is None
        match = _TYPE_COMMENT.match(comment)
        if match:
            declared, comment = match.group(1), match.group(2)
            optional = optional or "optional" in declared
            names = [t.strip().split("[")[0] for t in declared.replace(", optional", "").split("|")]
            types = tuple(t for t in names if t in KNOWN_TYPES)
        if not types and defaults[key] is not None:
            types = (type(defaults[key]).__name__,)
        params[key] = Param(key, types, defaults[key], comment, optional, package)
    return params


# -- coercion -------------------------------------------------------------------------------------
class _NoMatch(Exception):
    pass


def _coerce_one(kind: str, value: Any, raw: Any) -> Any:
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("yes", "no", "on", "off"):
            return value.strip().lower() in ("yes", "on")
        raise _NoMatch
    if kind == "int":
        if isinstance(value, bool):
            raise _NoMatch
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _NoMatch
    if kind == "float":
        if isinstance(value, bool):
            raise _NoMatch
        if isinstance(value, (int, float)):
            return float(value)
        raise _NoMatch
    if kind == "list":
        if isinstance(value, list):
            return value
        raise _NoMatch
    if kind == "dict":
        if isinstance(value, dict):
            return value
        raise _NoMatch
    if kind == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(raw, str):
            return raw.strip().strip('"')  # keep "001" as typed, not the number JSON made of it
        raise _NoMatch
    raise _NoMatch


def coerce(param: Param, raw: Any) -> Any:
    """Turn one raw value (a string from hyperparameters.json, or a Python value) into the param's type."""
    value = decode_value(raw)
    if value is None or (isinstance(value, str) and value.strip() == "" and "str" not in param.types):
        if param.optional:
            return None
        raise ValueError(f"needs a value ({param.type_label})")
    if not param.types:
        return value
    for kind in param.types:
        try:
            result = _coerce_one(kind, value, raw)
        except _NoMatch:
            continue
        if param.choices and result not in param.choices:
            raise ValueError(f"must be one of {', '.join(map(str, param.choices))}, got {raw!r}")
        return result
    raise ValueError(f"must be {_article(param.type_label)}, got {raw!r}")


def _article(label: str) -> str:
    words = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
             "list": "a list", "dict": "a mapping"}
    return " or ".join(words.get(t.strip(), t) for t in label.split("|"))


# -- the schema -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Schema:
    image: str
    title: str
    params: Mapping[str, Param]
    channels: Mapping[str, Channel]
    required_channels: tuple[tuple[str, ...], ...]
    metrics: tuple[Metric, ...]
    per_class_metrics: tuple[Metric, ...] = ()
    featured: tuple[str, ...] = ()
    managed: Mapping[str, str] = field(default_factory=dict)  # framework keys the image sets itself
    framework: str | None = None
    framework_available: bool = True
    trainer: str = ""  # "module:function" the image runs
    input_modes: tuple[str, ...] = ("File", "FastFile")  # channel input modes the trainer can read
    objective: str = ""  # the metric a tuning job maximizes by default

    @classmethod
    def load(cls, image: str) -> Schema:
        path = SCHEMA_DIR / image / "schema.yaml"
        if not path.is_file():
            known = sorted(p.parent.name for p in SCHEMA_DIR.glob("*/schema.yaml"))
            raise UserError(f"unknown image {image!r}; known images: {', '.join(known)}")
        return cls.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schema:
        params: dict[str, Param] = {}
        framework = data.get("framework_args") or {}
        available = True
        if framework:
            adopted = read_framework_args(framework["package"], framework["defaults"])
            available = adopted is not None
            for name, param in (adopted or {}).items():
                if name not in framework.get("managed", {}):
                    params[name] = param
            if adopted is None:  # the SDK without the framework: featured keys, untyped
                for name in framework.get("featured", []):
                    params[name] = Param(name, (), None, "", True, framework["package"])
        for name, spec in (data.get("hyperparameters") or {}).items():
            types = spec.get("type", "")
            params[name] = Param(
                name=name,
                types=tuple(t.strip() for t in types.split("|") if t.strip()),
                default=spec.get("default"),
                help=spec.get("help", ""),
                optional=spec.get("optional", spec.get("default") is None),
                source="image",
                choices=tuple(spec.get("choices", ())),
            )
        metrics = tuple(Metric(**m) for m in data.get("metrics", []))
        per_class = tuple(Metric(**m) for m in data.get("per_class_metrics", []))
        return cls(
            image=data["image"],
            title=data.get("title", ""),
            params=params,
            channels={n: Channel(n, (c or {}).get("help", "")) for n, c in (data.get("channels") or {}).items()},
            required_channels=tuple(tuple(g) for g in data.get("required_channels", [])),
            metrics=metrics,
            per_class_metrics=per_class,
            featured=tuple(framework.get("featured", [])),
            managed=dict(framework.get("managed", {})),
            framework=framework.get("package"),
            framework_available=available,
            trainer=data.get("trainer", ""),
            input_modes=tuple(data.get("input_modes", ("File", "FastFile"))),
            objective=data.get("objective", ""),
        )

    # -- hyperparameters ----------------------------------------------------------------------
    def defaults(self) -> dict[str, Any]:
        return {n: p.default for n, p in self.params.items() if p.source == "image"}

    def suggest(self, key: str) -> list[str]:
        return difflib.get_close_matches(key, list(self.params), n=3, cutoff=0.6)

    def parse(self, raw: Mapping[str, Any], *, origin: str = "hyperparameter") -> dict[str, Any]:
        """Typed values for the keys given (defaults not filled in). Every problem reported at once."""
        problems: list[str] = []
        typed: dict[str, Any] = {}
        for key, value in raw.items():
            if is_reserved(key):
                continue
            param = self.params.get(key)
            if param is None:
                if key in self.managed:
                    problems.append(f"{origin} {key!r} is set by the image ({self.managed[key]})")
                    continue
                hint = self.suggest(key)
                problems.append(f"unknown {origin} {key!r}" + (f"; did you mean {' or '.join(map(repr, hint))}?" if hint else ""))
                continue
            try:
                typed[key] = coerce(param, value)
            except ValueError as err:
                problems.append(f"{origin} {key!r} {err}")
        if problems:
            more = "" if self.framework_available or not self.framework else \
                f" (only the featured {self.framework} arguments are known without {self.framework} installed)"
            raise UserError("; ".join(problems) + more + f". Run `describe` to list the {self.image} image's hyperparameters.")
        return typed

    # -- metrics ------------------------------------------------------------------------------
    def metric_definitions(self, class_names: Iterable[str] = ()) -> list[dict[str, str]]:
        """``MetricDefinitions`` for a job: the fixed metrics, then per-class ones while under 40."""
        defs = [{"Name": m.name, "Regex": m.regex} for m in self.metrics]
        for cls_name in class_names:
            extra = [
                {"Name": m.name.format(name=cls_name),
                 "Regex": rf"\[{re.escape(m.line)}\] class={re.escape(cls_name)} .*\b{re.escape(m.key)}={NUMBER_RE}"}
                for m in self.per_class_metrics
            ]
            if len(defs) + len(extra) > METRIC_LIMIT:
                break
            defs.extend(extra)
        return defs

    def metric_regexes(self) -> dict[str, str]:
        return {m.name: m.regex for m in self.metrics}

    # -- describing ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "title": self.title,
            "hyperparameters": {n: {"type": p.type_label, "default": p.default, "help": p.help, "source": p.source,
                                    **({"choices": list(p.choices)} if p.choices else {})}
                                for n, p in self.params.items()},
            "channels": {n: asdict(c) for n, c in self.channels.items()},
            "required_channels": [list(g) for g in self.required_channels],
            "input_modes": list(self.input_modes),
            "metric_definitions": self.metric_definitions(),
        }

    def describe(self) -> str:
        out = [f"{self.title} ({self.image} image)", "", "CHANNELS (S3 prefixes mounted under /opt/ml/input/data/<name>)"]
        for c in self.channels.values():
            out.append(f"  {c.name:<11} {c.help}")
        needs = " or ".join("+".join(g) for g in self.required_channels)
        if needs:
            out.append(f"  required: {needs}")
        out.append(f"  input modes: {', '.join(self.input_modes)}")
        out += ["", "HYPERPARAMETERS of this image (name, type, default: description)"]
        for p in self.params.values():
            if p.source == "image":
                out.append(f"  {p.name} ({p.type_label}, default {json.dumps(p.default)}): {p.help}")
        if self.framework:
            out += ["", f"{self.framework.upper()} ARGUMENTS (every key of its default.yaml is accepted; the usual ones)"]
            for name in self.featured:
                p = self.params.get(name)
                if p is not None:
                    out.append(f"  {p.name} ({p.type_label}, default {json.dumps(p.default)}): {p.help}")
            rest = sorted(n for n, p in self.params.items() if p.source == self.framework and n not in self.featured)
            if rest:
                out.append("  also: " + ", ".join(rest))
            if self.managed:
                out.append("  set by the image: " + ", ".join(sorted(self.managed)))
        out += ["", "METRIC DEFINITIONS (paste into the console: name, then regex)"]
        for d in self.metric_definitions():
            out.append(f"  {d['Name']}\t{d['Regex']}")
        if self.per_class_metrics:
            out.append("  per class (with per_class_metrics=true), for a class called NAME:")
            for d in Schema.metric_definitions(self, ["NAME"])[len(self.metrics):]:
                out.append(f"  {d['Name']}\t{d['Regex']}")
        return "\n".join(out)
