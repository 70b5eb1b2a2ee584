"""``python -m sdk.cli``, as ``python -m sdk``."""

import sys

from sdk.cli import main

sys.exit(main())
