"""`python -m services.capture ...` is `ovbus capture ...`."""

import sys

from services.cli import main

sys.exit(main(["capture", *sys.argv[1:]]))
