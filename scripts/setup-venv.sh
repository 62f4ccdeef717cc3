#!/bin/sh
# Create .venv (if missing) and install hydrocast into it. Used by the two README commands.
# torch is installed first from its CPU wheel so that pip never pulls a multi-GB CUDA build.
set -eu
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
