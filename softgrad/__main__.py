"""Allow `python -m softgrad`."""

import sys

from softgrad.cli import main

sys.exit(main())
