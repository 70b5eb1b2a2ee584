"""Label maps, read and written in one place: TF Object Detection's ``label_map.pbtxt``, the ``id,name``
CSV that Model Garden's ``TfExampleDecoderLabelMap`` reads, and a YAML with ``names``. Ids count from 1
(0 is the background in the TF Object Detection convention).

Names may hold anything a person types: ``apple, red`` (the CSV is written with the csv module, which
quotes it, and Model Garden reads it with ``csv.reader``), ``driver's license`` or a ``"`` (the pbtxt is
written with protobuf text-format escapes and read with a small tokenizer that honours them).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import yaml

from container.failure import UserError

_TOKEN = re.compile(r"""\s+|\#[^\n]*|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[{}:;,<>\[\]]|[^\s{}:;,<>\[\]"'#]+""")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f",
            "v": "\v", "?": "?"}


def _unquote(token: str) -> str:
    """A protobuf text-format string literal's value (``\\'``, ``\\"``, ``\\n``, octal and hex escapes; the
    bytes are UTF-8)."""
    body, out, i = token[1:-1], bytearray(), 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode()
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out += _ESCAPES[nxt].encode()
            i += 2
        elif nxt in "01234567" and (octal := re.match(r"[0-7]{1,3}", body[i + 1:])):
            digits = octal.group()
            out.append(int(digits, 8) & 0xFF)
            i += 1 + len(digits)
        elif nxt in "xX" and (hexits := re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])):
            out.append(int(hexits.group(), 16))
            i += 2 + len(hexits.group())
        else:
            out += nxt.encode()
            i += 2
    return out.decode("utf-8", errors="replace")


def _quote(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _pbtxt_items(text: str, source: str) -> dict[int, str]:
    tokens = [t for t in _TOKEN.findall(text) if t.strip() and not t.startswith("#")]
    pairs: dict[int, str] = {}
    depth, i = 0, 0
    item: dict[str, int | str] | None = None
    while i < len(tokens):
        tok = tokens[i]
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if depth == 0 and item is not None:
                if "id" in item and ("name" in item or "display_name" in item):
                    pairs[int(item["id"])] = str(item.get("display_name", item.get("name", "")))
                item = None
        elif depth == 0 and tok == "item":
            item = {}
        elif depth == 1 and item is not None and i + 2 < len(tokens) and tokens[i + 1] == ":":
            value = tokens[i + 2]
            if tok in ("name", "display_name") and value[:1] in "\"'":
                item.setdefault(tok, _unquote(value))
            elif tok == "id":
                try:
                    item["id"] = int(value)
                except ValueError:
                    raise UserError(f"label map {source}: id {value!r} is not a whole number") from None
            i += 2
        i += 1
    return pairs


def read_label_map(path: Path) -> list[str]:
    """Class names in id order (id 1 first) from a pbtxt, an ``id,name`` CSV or a YAML with ``names``."""
    text = Path(path).read_text(encoding="utf-8-sig")
    pairs: dict[int, str] = {}
    if path.suffix == ".pbtxt":
        pairs = _pbtxt_items(text, path.name)
    elif path.suffix == ".csv":
        for row in csv.reader(io.StringIO(text)):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2 or not row[0].strip().isdigit():
                raise UserError(f"label map {path.name}: row {row!r} is not 'id,name' (quote a name with a comma)")
            pairs[int(row[0])] = row[1].strip()
    else:
        try:
            data = yaml.safe_load(text) or {}
        except (yaml.YAMLError, RecursionError) as err:  # RecursionError: brackets nested past the parser
            why = "nested too deeply" if isinstance(err, RecursionError) else str(err).splitlines()[0]
            raise UserError(f"label map {path.name} is not valid YAML ({why})") from None
        names = data.get("names", data) if isinstance(data, dict) else data
        if isinstance(names, dict) and all((isinstance(k, int) and not isinstance(k, bool))
                                           or (isinstance(k, str) and k.strip().isdigit()) for k in names):
            pairs = {int(k) + 1: str(v) for k, v in names.items()}
        elif isinstance(names, list):
            pairs = {i + 1: str(n) for i, n in enumerate(names)}
        else:
            raise UserError(f"label map {path.name}: 'names' must be a list of class names or a mapping of class "
                            "ids 0, 1, 2, ... to names")
    if not pairs:
        raise UserError(f"label map {path.name} names no classes")
    ids = sorted(pairs)
    if ids != list(range(1, len(ids) + 1)):
        shown = "[" + ", ".join(map(str, ids[:10])) + (", ...]" if len(ids) > 10 else "]")
        raise UserError(f"label map {path.name}: ids must be 1..{len(ids)} without gaps (0 is the background), "
                        f"got {shown}")
    return [pairs[i] for i in ids]


def write_label_map(names: list[str], out: Path) -> tuple[Path, Path]:
    """``out/label_map.pbtxt`` (TF Object Detection) and ``out/label_map.csv`` (``id,name`` rows, quoted
    where a name needs it), ids from 1."""
    out.mkdir(parents=True, exist_ok=True)
    pbtxt = "".join(f"item {{\n  id: {i}\n  name: {_quote(n)}\n}}\n" for i, n in enumerate(names, 1))
    (out / "label_map.pbtxt").write_text(pbtxt, encoding="utf-8")
    with open(out / "label_map.csv", "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows((i, n) for i, n in enumerate(names, 1))
    return out / "label_map.pbtxt", out / "label_map.csv"
