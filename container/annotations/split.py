"""Splitting a dataset into train/val[/test], seeded, every class in every split where it can be."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

from container.annotations.paths import SPLIT_NAMES
from container.annotations.types import Item
from container.failure import UserError


def split(items: list[Item], ratios: Sequence[float], *, seed: int = 0) -> dict[str, list[Item]]:
    """Shuffle with ``seed`` and cut by ``ratios`` (train, val[, test]), placing the rarest classes
    first so that each class lands in every split where it has enough images."""
    if not 2 <= len(ratios) <= 3 or not all(math.isfinite(r) and r >= 0 for r in ratios) \
            or abs(sum(ratios) - 1) > 1e-6:  # nan passed every comparison, then failed in round(): a traceback
        raise UserError(f"split ratios must be 2 or 3 non-negative numbers adding up to 1, got {list(ratios)}")
    names = SPLIT_NAMES[:len(ratios)]
    order = list(items)
    random.Random(seed).shuffle(order)
    targets = [round(r * len(order)) for r in ratios]
    targets[0] = len(order) - sum(targets[1:])
    out: dict[str, list[Item]] = {n: [] for n in names}
    placed: set[int] = set()
    counts = Counter(b.label for item in order for b in item.boxes)
    for label in sorted(counts, key=lambda k: (counts[k], k)):  # rarest first
        holders = [it for it in order if id(it) not in placed and any(b.label == label for b in it.boxes)]
        for name, target in zip(names[1:], targets[1:], strict=False):  # one image of the class in each held-out split
            if not any(any(b.label == label for b in it.boxes) for it in out[name]) and len(out[name]) < target \
                    and len(holders) > 1:
                item = holders.pop()
                out[name].append(item)
                placed.add(id(item))
    rest = [it for it in order if id(it) not in placed]
    for name, target in zip(names[1:], targets[1:], strict=False):
        while len(out[name]) < target and rest:
            out[name].append(rest.pop())
    out[names[0]].extend(rest)
    return out
