"""`python -m services.zoo ...` is `ovbus zoo ...`."""

import sys

from ovbus.cli import main

sys.exit(main(["zoo", *sys.argv[1:]]))
