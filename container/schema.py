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
import functools
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from container.contract import SAGEMAKER, decode_value, is_reserved
from container.failure import UserError

SCHEMA_DIR = Path(__file__).resolve().parent
METRIC_LIMIT = 40  # SageMaker accepts at most 40 metric definitions per job
NUMBER_RE = r"(-?[0-9]+(?:\.[0-9]+)?)"
KNOWN_TYPES = ("bool", "int", "float", "str", "list", "dict")


def _load_yaml(path: Path) -> Any:
    """libyaml's loader when present: the argument table is ~400 entries (1.7 s in pure Python on a busy machine)."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}


def known_images() -> list[str]:
    """The images that exist: each folder of ``container/`` with a ``schema.yaml``."""
    return sorted(p.parent.name for p in SCHEMA_DIR.glob("*/schema.yaml"))


@dataclass(frozen=True)
class Param:
    name: str
    types: tuple[str, ...]  # accepted types, tried in declared order; empty means anything
    default: Any = None
    help: str = ""
    optional: bool = True  # may be null / empty
    source: str = "image"  # "image", or the framework that declares it ("ultralytics")
    choices: tuple[Any, ...] = ()
    minimum: float | None = None  # inclusive bounds of a number
    maximum: float | None = None
    exclusive: bool = False  # bounds themselves refused: 0 < value < 1
    item_choices: tuple[str, ...] = ()  # each item of a list / comma-separated string must be one of these
    suffixes: tuple[str, ...] = ()  # a string value names a local file: it ends in one of these, and is no URL
    why: str = ""  # said when a value is refused for its suffix: what to give instead
    local: bool = False  # no string in the value may be a URL (free-form overrides): the image downloads nothing

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
class ChannelRule:
    """``model: x.pt`` needs the ``weights`` channel: a value of ``param`` ending in ``suffix`` needs ``channel``."""

    param: str
    suffix: str
    channel: str
    why: str = ""

    def applies(self, value: Any) -> bool:
        return isinstance(value, str) and value.lower().endswith(self.suffix.lower())


@dataclass(frozen=True)
class Channel:
    name: str
    help: str = ""


def metric_number(value: Any) -> float | None:
    """The number a metric line prints for ``value`` (an int as it is); None for what it leaves out: None, bools,
    text that is no number, NaN and inf. One rule for the log line and what MLflow records beside it."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def format_metric_line(line: str, values: Mapping[str, Any], *, prefix: Iterable[str] = ()) -> str:
    """``[line] a=1.000000 b=2.000000``: fixed point, so any regex reads it; NaN/inf left out."""
    parts = [f"[{line}]", *prefix]
    for key, value in values.items():
        number = metric_number(value)
        if number is not None:
            parts.append(f"{key}={value}" if isinstance(value, int) else f"{key}={number:.6f}")
    return " ".join(parts)


# -- reading a framework's argument table -------------------------------------------------------
def read_framework_table(path: Path) -> dict[str, Param]:
    """Params from a generated argument table (``container/yolo/ultralytics_args.yaml``).

    The table is shipped with the package, so the SDK knows every framework argument (types,
    choices, ranges) on an install without the framework; a unit test keeps it equal to what the
    pinned framework's own sources say (``container.yolo.args_table``).
    """
    table = _load_yaml(path)
    package = table.get("package", "")
    return {name: _param(name, spec, source=package) for name, spec in (table.get("args") or {}).items()}


FORMATS_TOKEN = "{formats}"  # in a schema.yaml: the annotation formats the images read, from their one declaration


def _formats() -> tuple[str, ...]:
    from container.annotations.detect import FORMATS

    return FORMATS


def _expand(text: str) -> str:
    return text.replace(FORMATS_TOKEN, ", ".join(_formats())) if FORMATS_TOKEN in text else text


def _choices(items: Iterable[Any]) -> tuple[Any, ...]:
    out: list[Any] = []
    for item in items:
        out.extend(_formats() if item == FORMATS_TOKEN else [item])
    return tuple(out)


def _param(name: str, spec: Mapping[str, Any], *, source: str) -> Param:
    types = str(spec.get("type") or "")
    return Param(
        name=name,
        types=tuple(t.strip() for t in types.split("|") if t.strip()),
        default=spec.get("default"),
        help=_expand(spec.get("help", "")),
        optional=spec.get("optional", spec.get("default") is None),
        source=source,
        choices=_choices(spec.get("choices", ())),
        minimum=spec.get("min"),
        maximum=spec.get("max"),
        exclusive=bool(spec.get("exclusive", False)),
        suffixes=tuple(spec.get("suffixes", ())),
        why=spec.get("why", ""),
        local=bool(spec.get("local", False)),
    )


LIMIT_KEYS = ("min", "max", "suffixes", "why")  # what ``framework_args.limits`` may set on a framework argument


def _limited(param: Param, spec: Mapping[str, Any], image: str) -> Param:
    """A framework argument with the bounds this image adds (``framework_args.limits`` in its schema.yaml)."""
    unknown = set(spec) - set(LIMIT_KEYS)
    if unknown:
        raise ValueError(f"schema {image}: limits of {param.name!r} may set {', '.join(LIMIT_KEYS)}, not "
                         f"{', '.join(sorted(unknown))}")
    return replace(param, minimum=spec.get("min", param.minimum), maximum=spec.get("max", param.maximum),
                   suffixes=tuple(spec.get("suffixes", param.suffixes)), why=spec.get("why", param.why))


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
    try:
        value = decode_value(raw)
    except (RecursionError, MemoryError):  # 1,100 "[": JSON's and Python's parsers give up (MemoryError: its stack)
        raise ValueError(f"is nested too deeply to read ({_shown(raw)}): give a plain value, a flat list or a "
                         "mapping") from None
    if value is None or (isinstance(value, str) and value.strip() == "" and "str" not in param.types):
        if param.optional:
            return None
        raise ValueError(f"needs a value ({param.type_label})")
    if (unusable := _unusable(value)) is not None:
        raise ValueError(unusable)
    if not param.types:
        return value
    for kind in param.types:
        try:
            result = _coerce_one(kind, value, raw)
        except _NoMatch:
            continue
        return _check_value(param, result, raw)
    raise ValueError(f"must be {_article(param.type_label)}, got {_shown(raw)}")


INT_LIMIT = 2**63  # torch, numpy and TensorFlow hold an integer in 64 bits: a larger one is an OverflowError there


def _unusable(value: Any) -> str | None:
    """Why ``value`` (decoded, at any depth of a list or mapping) can reach no framework, else None: NaN and
    infinity (``1e400`` is infinity once read) pass every range check (``nan < 0`` and ``nan > 1`` are both
    false) and make a job train on NaN; an integer past 64 bits; a NUL character, which no path or name holds."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {_shown(value)}"
    if isinstance(value, int) and not isinstance(value, bool) and not -INT_LIMIT <= value < INT_LIMIT:
        return f"must fit in 64 bits, got {_shown(value)}"
    if isinstance(value, str) and "\0" in value:
        return f"holds a NUL character ({_shown(value)}): remove it"
    items = value if isinstance(value, list) else [*value, *value.values()] if isinstance(value, dict) else []
    return next((why for item in items if (why := _unusable(item)) is not None), None)


def _canonical(value: Any, choices: Iterable[Any]) -> Any:
    """The declared spelling of a choice (``adamw`` is ``AdamW``), or raise ValueError."""
    for choice in choices:
        if value == choice or (isinstance(value, str) and str(choice).lower() == value.lower()):
            return choice
    raise ValueError


def _check_value(param: Param, value: Any, raw: Any) -> Any:
    """Choices and ranges, after the type matched. The image and the SDK both call this."""
    if param.choices:
        try:
            value = _canonical(value, param.choices)
        except ValueError:
            hint = difflib.get_close_matches(str(value), [str(c) for c in param.choices], n=1, cutoff=0.6)
            raise ValueError(f"must be one of {', '.join(map(str, param.choices))}, got {_shown(raw)}"
                             + (f" (did you mean {hint[0]!r}?)" if hint else "")) from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = param.minimum, param.maximum
        if param.exclusive:
            out = (low is not None and value <= low) or (high is not None and value >= high)
        else:
            out = (low is not None and value < low) or (high is not None and value > high)
        if out:
            if low is not None and high is not None:
                bounds = f"between {low} and {high}" + (" (both excluded)" if param.exclusive else "")
            elif low is not None:
                bounds = f"above {low}" if param.exclusive else f"at least {low}"
            else:
                bounds = f"below {high}" if param.exclusive else f"at most {high}"
            raise ValueError(f"must be {bounds}, got {_shown(raw)}")
    if param.suffixes and isinstance(value, str) and not _local_file(value, param.suffixes):
        raise ValueError(f"must name a {' or '.join(param.suffixes)} file, got {_shown(raw)}"
                         + (f": {param.why}" if param.why else ""))
    if param.local and (url := next((s for s in _texts(value) if URL_IN.search(s)), None)) is not None:
        raise ValueError(f"names a URL ({_shown(url)}): " + (param.why or "the image downloads nothing"))
    if param.item_choices and isinstance(value, (str, list)):
        items = value if isinstance(value, list) else value.split(",")
        wrong = [str(i).strip() for i in items if str(i).strip()
                 and str(i).strip().lower() not in {c.lower() for c in param.item_choices}]
        if wrong:
            hints = {w: difflib.get_close_matches(w.lower()[:60], list(param.item_choices), n=1) for w in wrong[:5]}
            said = ", ".join(_shown(w) + (f" (did you mean {hints[w][0]!r}?)" if hints[w] else "") for w in wrong[:5])
            said += f" and {len(wrong) - 5} more" if len(wrong) > 5 else ""
            raise ValueError(f"has unknown item(s) {said}; each must be one of {', '.join(param.item_choices)}")
    return value


URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # http://, https://, s3://, gs://, rtsp://: fetched, not read


URL_IN = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://")  # a URL anywhere in a text


def _texts(value: Any) -> list[str]:
    """Every string in ``value``: itself, or the keys and values of its lists and mappings, at any depth."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_texts(k), *_texts(v))]
    if isinstance(value, list):
        return [s for v in value for s in _texts(v)]
    return []


def _local_file(value: str, suffixes: Iterable[str]) -> bool:
    """Whether ``value`` names a local file with one of ``suffixes``: no URL (a framework downloads those), and a
    suffix (ultralytics takes ``yolo11n`` for ``yolo11n.pt`` and downloads it)."""
    return not URL.match(value.strip()) and value.strip().lower().endswith(tuple(s.lower() for s in suffixes))


def _shown(raw: Any) -> str:
    """A value as a message shows it: its repr, cut short (a value of 1,100 characters must not hide the fix)."""
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


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
    trainer: str = ""  # "module:function" the image runs
    input_modes: tuple[str, ...] = ("File", "FastFile")  # channel input modes the trainer can read
    objective: str = ""  # the metric a tuning job maximizes by default
    max_instances: int | None = None  # how many instances one job may have (None: no limit of the image's own)
    channel_rules: tuple[ChannelRule, ...] = ()  # a hyperparameter value that needs a channel
    progress: Mapping[str, str] = field(default_factory=dict)  # which metrics the SDK's progress line shows

    @classmethod
    def load(cls, image: str) -> Schema:
        """The image's schema (read once per process: it is frozen, and the files ship with the code)."""
        return _load_schema(image)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: Path | None = None) -> Schema:
        params: dict[str, Param] = {}
        framework = data.get("framework_args") or {}
        if framework:
            table = (base or SCHEMA_DIR / data["image"]) / framework["table"]
            limits = framework.get("limits") or {}
            for name, param in read_framework_table(table).items():
                if name not in framework.get("managed", {}):
                    params[name] = _limited(param, limits[name], data["image"]) if name in limits else param
            if missing := set(limits) - set(params):
                raise ValueError(f"schema {data['image']}: limits name unknown arguments {', '.join(sorted(missing))}")
        for name, spec in (data.get("hyperparameters") or {}).items():
            params[name] = _param(name, spec, source="image")
        for name, spec in (data.get("hyperparameters") or {}).items():
            linked = spec.get("item_choices_from")  # export: each item one of ultralytics' `format` choices
            if linked:
                source = params.get(linked)
                if source is None or not source.choices:
                    raise ValueError(f"schema {data['image']}: {name}.item_choices_from names {linked!r}, "
                                     "which has no choices")
                params[name] = replace(params[name], item_choices=tuple(map(str, source.choices)))
        metrics = tuple(Metric(**m) for m in data.get("metrics", []))
        per_class = tuple(Metric(**m) for m in data.get("per_class_metrics", []))
        return cls(
            image=data["image"],
            title=data.get("title", ""),
            params=params,
            channels={n: Channel(n, _expand((c or {}).get("help", "")))
                      for n, c in (data.get("channels") or {}).items()},
            required_channels=tuple(tuple(g) for g in data.get("required_channels", [])),
            metrics=metrics,
            per_class_metrics=per_class,
            featured=tuple(framework.get("featured", [])),
            managed=dict(framework.get("managed", {})),
            framework=framework.get("package"),
            trainer=data.get("trainer", ""),
            input_modes=tuple(data.get("input_modes", ("File", "FastFile"))),
            objective=data.get("objective", ""),
            max_instances=data.get("max_instances"),
            channel_rules=tuple(ChannelRule(**r) for r in data.get("channel_rules", [])),
            progress=dict(data.get("progress") or {}),
        )

    # -- hyperparameters ----------------------------------------------------------------------
    def defaults(self) -> dict[str, Any]:
        return {n: p.default for n, p in self.params.items() if p.source == "image"}

    def suggest(self, key: str) -> list[str]:
        return difflib.get_close_matches(key, list(self.params), n=3, cutoff=0.6)

    def parse(self, raw: Mapping[str, Any], *, origin: str = "hyperparameter") -> dict[str, Any]:
        """One layer's typed values, for the keys given only (what the SDK sends; :meth:`resolve` fills in the
        defaults). Every problem reported at once."""
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
                suggestion = f"; did you mean {' or '.join(map(repr, hint))}?" if hint else ""
                problems.append(f"unknown {origin} {key!r}{suggestion}")
                continue
            try:
                typed[key] = coerce(param, value)
            except ValueError as err:
                problems.append(f"{origin} {key!r} {err}")
        if problems:
            text = "; ".join(problems)
            raise UserError(text + ("" if text.endswith((".", "?", "!")) else ".")
                            + f" Run `describe` to list the {self.image} image's hyperparameters.")
        return typed

    @functools.cached_property
    def typed_defaults(self) -> Mapping[str, Any]:
        """Every declared key's default, of its declared type (``progress_interval: 30`` is 30.0)."""
        out: dict[str, Any] = {}
        for name, param in self.params.items():
            try:
                out[name] = None if param.default is None else coerce(param, param.default)
            except ValueError as err:
                raise ValueError(f"schema {self.image}: the default of {name!r} {err}") from None
        return MappingProxyType(out)

    def resolve(self, layers: Iterable[tuple[str, Mapping[str, Any]]]) -> Hyperparameters:
        """A job's hyperparameters: every declared key at its typed default, then each layer's values (parsed and
        checked by :meth:`parse`) in turn, later layers winning. A layer is (origin, raw values); the origin names
        it in messages and in :attr:`Hyperparameters.sources` ("hyperparameters": the job's own)."""
        values = dict(self.typed_defaults)
        sources = dict.fromkeys(values, DEFAULT)
        for origin, raw in layers:
            typed = self.parse(raw, origin=f"{origin} key" if origin != "hyperparameters" else "hyperparameter")
            values.update(typed)
            sources.update(dict.fromkeys(typed, origin))
        return Hyperparameters(self, values, sources)

    def check_job(self, typed: Mapping[str, Any], channels: Iterable[str], *, instance_count: int = 1) -> list[str]:
        """What the image refuses at start beyond single values: too many instances, a missing channel.

        ``typed`` are the job's hyperparameters (parsed), ``channels`` the names of its channels.
        """
        problems: list[str] = []
        if self.max_instances is not None and instance_count > self.max_instances:
            problems.append(f"the {self.image} image trains on at most {self.max_instances} instance(s); got "
                            f"instance_count={instance_count} (use one instance with more GPUs)")
        names = set(channels)
        for rule in self.channel_rules:
            value = typed.get(rule.param, self.params[rule.param].default if rule.param in self.params else None)
            if rule.applies(value) and rule.channel not in names:
                problems.append(f"{rule.param}={value!r} needs the {rule.channel!r} channel ({rule.why})" if rule.why
                                else f"{rule.param}={value!r} needs the {rule.channel!r} channel")
        return problems

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

    def metric_keys(self, line: str) -> tuple[str, ...]:
        """The keys ``schema.yaml`` declares for a metric line tag (``metrics``, ``final``, ``class``, ...)."""
        return tuple(m.key for m in (*self.metrics, *self.per_class_metrics) if m.line == line)

    def metric_line(self, line: str, values: Mapping[str, Any], *, prefix: Iterable[str] = ()) -> str:
        """The one way a trainer prints a metric line: only a tag and keys this schema declares, so every
        number printed is one SageMaker's regexes (generated from the same entries) can read. Values the
        framework reports beyond those stay out of the line (they are in metrics.json and TensorBoard)."""
        keys = self.metric_keys(line)
        if not keys:
            raise ValueError(f"metric line [{line}] is not declared in the {self.image} schema")
        return format_metric_line(line, {k: v for k, v in values.items() if k in keys}, prefix=prefix)

    def metric_values(self, line: str, values: Mapping[str, Any], *, class_name: str | None = None
                      ) -> dict[str, float]:
        """A metric line's numbers under their metric definitions' names (``val:mAP50-95``): what MLflow records
        (container/tracking.py), so the console, the log and MLflow say the same names."""
        out: dict[str, float] = {}
        for m in self.per_class_metrics if class_name is not None else self.metrics:
            number = metric_number(values.get(m.key)) if m.line == line else None
            if number is not None:
                out[m.name.format(name=class_name) if class_name is not None else m.name] = float(number)
        return out

    def metric_regexes(self) -> dict[str, str]:
        return {m.name: m.regex for m in self.metrics}

    # -- describing ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "title": self.title,
            "hyperparameters": {n: {"type": p.type_label, "default": p.default, "help": p.help, "source": p.source,
                                    **({"choices": list(p.choices)} if p.choices else {}),
                                    **({"min": p.minimum} if p.minimum is not None else {}),
                                    **({"max": p.maximum} if p.maximum is not None else {}),
                                    **({"items": list(p.item_choices)} if p.item_choices else {}),
                                    **({"suffixes": list(p.suffixes)} if p.suffixes else {})}
                                for n, p in self.params.items()},
            "channels": {n: asdict(c) for n, c in self.channels.items()},
            "required_channels": [list(g) for g in self.required_channels],
            "input_modes": list(self.input_modes),
            "metric_definitions": self.metric_definitions(),
        }

    def describe(self) -> str:
        out = [f"{self.title} ({self.image} image)", "",
               f"CHANNELS (S3 prefixes mounted under {SAGEMAKER.input_data}/<name>)"]
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
            out += ["", f"{self.framework.upper()} ARGUMENTS "
                        "(every key of its default.yaml is accepted; the usual ones)"]
            for name in self.featured:
                featured = self.params.get(name)
                if featured is not None:
                    out.append(f"  {featured.name} ({featured.type_label}, default {json.dumps(featured.default)}): "
                               f"{featured.help}")
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


DEFAULT = "default"  # the source of a value no layer set


class Hyperparameters(Mapping[str, Any]):
    """A job's hyperparameters after parsing, read-only: every key its schema declares is present, of its declared
    type, at the value a layer set or its declared default (:meth:`Schema.resolve`). Code indexes it
    (``hps["imgsz"]``) and never supplies a default of its own."""

    def __init__(self, schema: Schema, values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
        self._schema = schema
        self._values = MappingProxyType(dict(values))
        self.sources: Mapping[str, str] = MappingProxyType(dict(sources))  # key -> origin, or "default"

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Hyperparameters({dict(self.shown())!r})"

    def is_set(self, key: str) -> bool:
        """Whether a layer (a cfg file, the job) set ``key``, rather than its default standing."""
        return self.sources.get(key, DEFAULT) != DEFAULT

    def set_sources(self) -> dict[str, str]:
        """Where each value a layer set came from (the defaults left out)."""
        return {k: v for k, v in self.sources.items() if v != DEFAULT}

    def framework_args(self) -> dict[str, Any]:
        """The framework's own arguments that were set: passed on to it, which applies its defaults to the rest."""
        return {k: v for k, v in self._values.items() if self._schema.params[k].source != "image" and self.is_set(k)}

    def shown(self) -> dict[str, Any]:
        """The image's own values and the framework arguments that were set: what the log, MLflow and metrics.json
        record (the framework's ~100 defaults are its own to say)."""
        return {k: v for k, v in self._values.items() if self._schema.params[k].source == "image" or self.is_set(k)}


@functools.cache
def _load_schema(image: str) -> Schema:
    path = SCHEMA_DIR / image / "schema.yaml"
    if not path.is_file():
        raise UserError(f"unknown image {image!r}; known images: {', '.join(known_images())}")
    return Schema.from_dict(_load_yaml(path), base=path.parent)
