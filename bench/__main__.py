"""``python -m bench``: run every benchmark (``--help`` for the options)."""

import sys

from bench.run import main

sys.exit(main())
