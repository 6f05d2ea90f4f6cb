"""`python -m services.infer ...` is `ovbus infer ...`."""

import sys

from services.cli import main

sys.exit(main(["infer", *sys.argv[1:]]))
