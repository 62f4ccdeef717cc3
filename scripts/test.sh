#!/bin/sh
# The test command of README.md (and of CI): set up .venv, then run the whole test suite.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup-venv.sh
exec .venv/bin/python -m pytest -q "$@"
