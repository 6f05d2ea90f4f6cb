"""`python -m services.infer ...` is `ovbus infer ...`."""

import sys

from ovbus.cli import main

sys.exit(main(["infer", *sys.argv[1:]]))
