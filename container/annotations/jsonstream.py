"""Read a big JSON object one array element at a time: a COCO file of 3 million annotations in bounded memory.

``json.load`` of such a file builds every annotation as a dict at once (gigabytes). Here the standard
library's C scanner (``JSONDecoder.raw_decode``) decodes one element at a time from a sliding buffer,
so memory is one buffer plus what the caller keeps. No new dependency (ijson would need a C backend).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
_DECODER = json.JSONDecoder()
_SPACE = " \t\r\n"
_CUT = 16  # a value cut by a chunk's end ("2.5e", "\\u00") fails this close to the end, a wrong file anywhere
_SPACE_RUN = re.compile(r"[ \t\r\n]*")
_SEPARATOR = re.compile(r"[ \t\r\n]*([,\]])[ \t\r\n]*")  # after an array element


class _Buffer:
    def __init__(self, fh: Any) -> None:
        self.fh, self.buf, self.pos, self.eof = fh, "", 0, False
        self.base = 0  # characters of the file before buf[0], for error messages

    def more(self) -> bool:
        if self.eof:
            return False
        # at least as much as is still pending: an element longer than a chunk (one 256 MB string) is then
        # decoded again log(n) times, not n / CHUNK times (quadratic: 88 s for 256 MB, now about a second)
        chunk = self.fh.read(max(CHUNK, len(self.buf) - self.pos))
        if not chunk:
            self.eof = True
            return False
        self.base += self.pos
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0
        return True

    def skip_space(self) -> str:
        """The next non-space character (not consumed); "" at the end of the file."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _SPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def expect(self, chars: str) -> str:
        ch = self.skip_space()
        if not ch or ch not in chars:
            raise ValueError(f"expected one of {chars!r} at character {self.pos}, found {ch!r}")
        self.pos += 1
        return ch

    def value(self) -> Any:
        self.skip_space()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError:
                if self.more():
                    continue
                raise
            if end == len(self.buf) and not self.eof and not isinstance(value, (dict, list, str)) and self.more():
                continue  # a number cut by the chunk boundary: read on, decode again
            self.pos = end
            return value


def _space_end(text: str, pos: int) -> int:
    """Where the run of whitespace at ``pos`` ends (``pos`` itself when there is none)."""
    found = _SPACE_RUN.match(text, pos)
    return found.end() if found else pos


def _array(buf: _Buffer, callback: Callable[[Any], None]) -> None:
    """The elements of the array whose ``[`` was just consumed, each to ``callback``; the ``]`` consumed.

    The hot loop of a million-image file: the C scanner's ``scan_once`` decodes an element and one compiled
    regex consumes the whitespace and separator after it, so the Python per element is a few lines. An
    element or separator cut by the end of the buffer is read again after the next chunk."""
    # a stub gap: typeshed lacks JSONDecoder.scan_once, which JSONDecoder.__init__ sets (the C scanner)
    scan, sep = _DECODER.scan_once, _SEPARATOR.match  # type: ignore[attr-defined]
    if buf.skip_space() == "]":
        buf.pos += 1
        return
    text, pos = buf.buf, buf.pos
    while True:
        found = None
        try:
            value, end = scan(text, pos)
            if end < len(text):
                found = sep(text, end)
                if found is None and _space_end(text, end) < len(text) - _CUT:
                    raise ValueError(f"expected ',' or ']' at character {buf.base + end} of the file")
        except StopIteration:
            if pos < len(text) and text[pos] in _SPACE:  # whitespace the last chunk ended in
                pos = _space_end(text, pos)
                continue
        except json.JSONDecodeError as err:
            # an element cut by the chunk's end fails at that end (or in a string that runs to it); an error
            # well before the end is in the file: say so now rather than read the rest of a big file first
            if err.pos < len(text) - _CUT and not err.msg.startswith("Unterminated string"):
                raise ValueError(f"{err.msg} at character {buf.base + err.pos} of the file") from None
        if found is None:  # cut by the chunk boundary: read on and decode again
            buf.pos = pos
            if buf.more():
                text, pos = buf.buf, buf.pos
                continue
            callback(buf.value())  # the end of the file: the decoder's own error, or a missing "]"
            buf.expect("]")
            return
        callback(value)
        pos = found.end()
        if found.group(1) == "]":
            buf.pos = pos
            return


def top_level(path: Path, arrays: dict[str, Callable[[Any], None]]) -> dict[str, Any]:
    """Walk a JSON object file: each element of the arrays named in ``arrays`` goes to its callback as it is
    decoded; every other top-level value is returned, whole, in a dict (keep those small)."""
    rest: dict[str, Any] = {}
    with open(path, encoding="utf-8-sig") as fh:
        buf = _Buffer(fh)
        buf.expect("{")
        if buf.skip_space() == "}":
            return rest
        while True:
            key = buf.value()
            buf.expect(":")
            callback = arrays.get(key)
            if callback is not None and buf.skip_space() == "[":
                buf.pos += 1
                _array(buf, callback)
            else:
                rest[key] = buf.value()
            if buf.expect(",}") == "}":
                return rest


def elements(path: Path, key: str) -> Iterator[Any]:
    """The elements of one top-level array (a convenience for tests and small files)."""
    found: list[Any] = []
    top_level(path, {key: found.append})
    yield from found
