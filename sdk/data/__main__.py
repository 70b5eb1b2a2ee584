"""``python -m sdk.data``: the dataset commands (check, convert, split), as ``python -m sdk data``."""

import sys

from sdk.cli import data_main as main

sys.exit(main())
