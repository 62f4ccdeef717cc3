#!/bin/sh
# The main job of README.md on the bundled sample_data/: ingest -> train -> predict -> evaluate.
# Outputs go to work/sample/ (ignored by git).
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup-venv.sh
HC=.venv/bin/hydrocast
CFG=sample_data/hydrocast.toml
$HC ingest --config "$CFG"
