#!/usr/bin/env bash
# The whole test suite: lint, types, the generated docs being current, then pytest (warnings are
# errors). `make test` runs this after bootstrapping.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
echo "== ruff"
$PY -m ruff check .
echo "== mypy"
$PY -m mypy
echo "== generated docs are current"
$PY -m services.cli schema --check
echo "== pytest"
$PY -m pytest "$@"
