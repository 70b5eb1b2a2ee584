"""Secrets out of what the SDK prints: ``--dry-run`` shows the request, never the values that unlock things.

Masked: every value of an ``Environment`` mapping (its names stay, so the request can still be
checked), any value under a key that names a secret (``token``, ``password``, ``api_key``...),
and, in any string, URL userinfo (``https://user:token@host``), AWS access key ids and GitHub
tokens. Masking is for display only: the request sent to AWS is never changed.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
_SECRET_KEY = re.compile(r"secret|passw(or)?d|token|api[_-]?key|access[_-]?key|credential|private[_-]?key|auth",
                         re.IGNORECASE)
_IN_TEXT = (
    (re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@"), r"\g<scheme>" + MASK + "@"),  # URL userinfo
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),  # AWS access key ids
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b|\bgithub_pat_[A-Za-z0-9_]{20,}\b"), MASK),  # GitHub tokens
)


def redact_text(text: str) -> str:
    for pattern, replacement in _IN_TEXT:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, *, key: str = "") -> Any:
    """A copy of ``value`` (JSON-like: dicts, lists, strings) with secrets masked."""
    if isinstance(value, dict):
        if key == "Environment":
            return {k: MASK for k in value}
        return {k: redact(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, key=key) for v in value]
    if isinstance(value, str):
        return MASK if value and _SECRET_KEY.search(key) else redact_text(value)
    return value
