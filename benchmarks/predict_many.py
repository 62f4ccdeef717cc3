"""The cost of ``predict`` against the number of basins (issue 10: "thousands of basins cost minutes").

On the sample region: ingest, a short training (1 epoch: the cost does not depend on the skill),
then ``hydrocast predict --basins FILE --basin all`` for N ungauged basins (the sample's polygons
repeated under new ids), N = 6, 60, 600 by default. Each N is run
twice: the first run also fits the ungauged basins' flood thresholds from a hindcast of the
training and validation years (then cached), the second is the daily cron run. Prints seconds,
milliseconds per basin and the ratio to the smallest N.

    python benchmarks/predict_many.py [--counts 6,60,600] [--work DIR]

About 6 minutes on 2 cores (ingest and training ~4 of them).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"


def hc(*args: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hydrocast", *args, "--quiet"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"hydrocast {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def config(work: Path) -> Path:
    text = (SAMPLE / "hydrocast.toml").read_text()
    text = re.sub(r"\[\[sources\]\]\nname = \"precipitation_ensemble\".*?\n(?=\[)", "", text, flags=re.S)
    for rel in ("raw/", "basins/", "discharge/"):
        text = text.replace(f'"{rel}', f'"{SAMPLE}/{rel}')
    text = text.replace('path = "../work/sample/cube.nc"', f'path = "{work}/cube.nc"')
    text = re.sub(r'model_dir = "[^"]*"', f'model_dir = "{work}/model"', text)
    text = text.replace("[train]", "[train]\nepochs = 1", 1)
    cfg = work / "hydrocast.toml"
    cfg.write_text(text)
    return cfg


def basins_file(work: Path, n: int) -> Path:
    """``n`` basins: the sample's 8 polygons (6 gauged, 2 ungauged) repeated under new ids. Each
    costs its own read-out, output files and thresholds (a repeated polygon is one more basin to
    the forecaster; the thresholds' cache is keyed by basin id and cells)."""
    import json

    feats = []
    for name in ("basins.geojson", "ungauged.geojson"):
        feats += json.loads((SAMPLE / "basins" / name).read_text())["features"]
    out = []
    for k in range(n):
        f = json.loads(json.dumps(feats[k % len(feats)]))
        f["properties"] = {"id": f"U{k:05d}"}
        out.append(f)
    path = work / f"basins-{n}.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": out}))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--counts", default="6,60,600")
    ap.add_argument("--work", type=Path, default=None, help="keep the project here (reused when it exists)")
    ap.add_argument("--issue-date", default="2020-06-01")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="hc-many-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        cfg = config(work)
        if not (work / "model").exists():
            print(f"ingest {hc('ingest', '-c', str(cfg)):.0f} s", flush=True)
            print(f"train (1 epoch) {hc('train', '-c', str(cfg)):.0f} s", flush=True)
        rows = []
        for n in [int(c) for c in args.counts.split(",")]:
            csv = basins_file(work, n)
            times = []
            for run in range(2):
                out = work / f"fc-{n}-{run}"
                times.append(hc("predict", "-c", str(cfg), "--basins", str(csv), "--basin", "all",
                                "--issue-date", args.issue_date, "--out", str(out)))
            files = len(list((work / f"fc-{n}-1").glob("*.nc")))
            rows.append((n, times[0], times[1], files))
            print(f"N={n}: first {times[0]:.1f} s, cron run {times[1]:.1f} s, {files} NetCDF files", flush=True)
        n0, _, c0, _ = rows[0]
        print()
        print("| basins | first run (s) | daily run (s) | daily ms per basin | daily run / smallest N |")
        print("|---|---|---|---|---|")
        for n, first, cron, _ in rows:
            print(f"| {n} | {first:.1f} | {cron:.1f} | {1000 * cron / n:.0f} | {cron / c0:.2f} |")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
