#!/bin/sh
# The main job of README.md on the bundled sample_data/:
#   ingest -> train -> predict (a gauged and an ungauged basin, and one issue date with the
#   weather-forecast ensemble) -> evaluate on the test year.
# Outputs go to work/sample/ (ignored by git). Rerunning is safe: ingest appends nothing new,
# train retrains, predict/evaluate replace their files atomically.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup-venv.sh
HC=.venv/bin/hydrocast
CFG=sample_data/hydrocast.toml
OUT=work/sample
mkdir -p "$OUT"
echo "== ingest (IMERG, ESA CCI, DEM -> $OUT/cube.nc)" >&2
$HC ingest --config "$CFG"
echo "== train (ConvLSTM + lumped LSTM baseline -> $OUT/model)" >&2
$HC train --config "$CFG"
echo "== predict: gauged basin PT01 and ungauged basin PT07 (-> $OUT/forecasts)" >&2
$HC predict --config "$CFG" --basin PT01 --out "$OUT/forecasts" --plot
$HC predict --config "$CFG" --basins sample_data/basins/ungauged.geojson --basin PT07 --out "$OUT/forecasts" --plot
echo "== predict PT01 on 2020-12-20 (a flood rising), once per member of the 10-member weather-forecast ensemble" >&2
$HC predict --config "$CFG" --basin PT01 --issue-date 2020-12-20 --out "$OUT/forecasts" --plot
echo "== evaluate on the test period 2020 (-> $OUT/evaluation)" >&2
$HC evaluate --config "$CFG" --out "$OUT/evaluation"
