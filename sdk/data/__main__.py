"""``python -m sdk.data``: the dataset commands (describe, check, convert, split, ...)."""

import sys

from sdk.data import main

sys.exit(main())
