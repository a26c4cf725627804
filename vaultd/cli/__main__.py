"""`python -m vaultd.cli`, as the `vaultd` script."""

import sys

from vaultd.cli import main

if __name__ == "__main__":  # not when a tool imports every module (tests/test_errors_doc.py)
    sys.exit(main())
