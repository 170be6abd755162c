"""`python -m proxy`: the same command line as `gateway`."""

import sys

from proxy.server.cli import main

sys.exit(main())
