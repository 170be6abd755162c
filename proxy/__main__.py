"""`python -m proxy`: the same command line as `gateway`."""

import sys

from proxy.cli import main

sys.exit(main())
