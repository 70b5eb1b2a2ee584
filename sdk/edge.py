"""``python -m sdk.edge``: run an exported TFLite detector on images and draw its boxes.

The code lives in :mod:`container.edge` (the TF image runs every TFLite export with it, and the images never
import the SDK); this module re-exports it so ``from sdk.edge import ...`` and ``python -m sdk.edge`` keep
working. To put it on a device, copy ``container/edge.py`` alone: it needs only NumPy, Pillow and LiteRT.
"""

from __future__ import annotations

import sys

from container.edge import Detection, detect, draw, main, normalize, open_interpreter, read_labels, run

__all__ = ["Detection", "detect", "draw", "main", "normalize", "open_interpreter", "read_labels", "run"]

if __name__ == "__main__":
    sys.exit(main())
