"""`python -m bridge.cli`, as the tests and benchmarks start the command."""

import sys

from bridge.cli import main

sys.exit(main())
