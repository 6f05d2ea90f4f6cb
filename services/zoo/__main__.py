"""`python -m services.zoo ...` is `ovbus zoo ...`."""

import sys

from services.cli import main

sys.exit(main(["zoo", *sys.argv[1:]]))
