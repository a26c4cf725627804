"""`python -m vaultd.cli`, as the `vaultd` script."""

import sys

from vaultd.cli import main

sys.exit(main())
