#!/bin/sh
# The test command of README.md (and of CI): set up .venv, lint, check the import contracts,
# then run the whole test suite.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup-venv.sh
.venv/bin/ruff check hydrocast tests benchmarks tools
.venv/bin/lint-imports
exec .venv/bin/python -m pytest -q "$@"
