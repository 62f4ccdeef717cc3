"""Peak memory of `hydrocast train` does not grow with the length of the record.

Builds two synthetic cubes on the same grid, one with 2 years and one with 8 years of daily maps
(written with hydrocast's own CubeWriter), trains one epoch on each in a subprocess with the
same training-period length, and prints each child's peak RSS and their ratio. Windows are read
from the cube as needed, so the ratio should stay near 1 (a design that loaded the record would
grow ~4x in the data part).

    python benchmarks/train_memory.py [--size 64] [--train-years 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_project(root: Path, years: int, size: int, train_years: int) -> Path:
    from hydrocast.cube import QUANTITY_ATTRS, CubeWriter
    from hydrocast.grid import GridSpec

    root.mkdir(parents=True, exist_ok=True)
    res = 0.05
    west, south = -8.8, 40.0
    grid = GridSpec.from_bounds("EPSG:4326", (west, south, west + size * res, south + size * res), res)
    days = np.arange(np.datetime64("2010-01-01"), np.datetime64(f"{2010 + years}-01-01"), dtype="datetime64[D]")
    rng = np.random.default_rng(0)
    dyn = {"precipitation": QUANTITY_ATTRS["precipitation"], "soil_moisture": QUANTITY_ATTRS["soil_moisture"]}
    static = {"elevation": {"units": "m", "long_name": "elevation"}}
    with CubeWriter(root / "cube.nc", grid, days, dyn, static) as w:
        for a in range(0, len(days), 64):  # chunked: this script itself stays small too
            d = days[a:a + 64]
            p = rng.gamma(0.5, 6.0, (len(d), *grid.shape)).astype("float32")
            sm = (0.2 + 0.1 * rng.random((len(d), *grid.shape))).astype("float32")
            w.write_days("precipitation", d, p, [""] * len(d))
            w.write_days("soil_moisture", d, sm, [""] * len(d))
        w.write_static("elevation", rng.random(grid.shape) * 500)
        w.commit()
    # two rectangular basins with their outlets, and a noisy discharge record
    feats = []
    for i, (x0, x1) in enumerate(((0.1, 0.45), (0.55, 0.9))):
        lon0, lon1 = west + x0 * size * res, west + x1 * size * res
        lat0, lat1 = south + 0.1 * size * res, south + 0.9 * size * res
        feats.append({"type": "Feature",
                      "properties": {"id": f"B{i}", "outlet_lon": lon0 + 0.01, "outlet_lat": lat0 + 0.01},
                      "geometry": {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1],
                                                                       [lon0, lat1], [lon0, lat0]]]}})
    (root / "basins.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    lines = ["basin_id,date,discharge"]
    for b in ("B0", "B1"):
        q = 20 + 5 * rng.random(len(days))
        lines += [f"{b},{d},{v:.3f}" for d, v in zip(days, q)]
    (root / "discharge.csv").write_text("\n".join(lines) + "\n")
    t0 = f"{2010 + years - train_years - 1}-01-01"
    t1 = f"{2010 + years - 2}-12-31"
    v0, v1 = f"{2010 + years - 1}-01-01", f"{2010 + years - 1}-12-31"
    (root / "hydrocast.toml").write_text(f"""
[grid]
crs = "EPSG:4326"
bounds = [{west}, {south}, {west + size * res}, {south + size * res}]
resolution = {res}

[cube]
path = "cube.nc"

[basins]
path = "basins.geojson"

[discharge]
path = "discharge.csv"

[train]
model_dir = "model"
train_period = ["{t0}", "{t1}"]
validation_period = ["{v0}", "{v1}"]
epochs = 1
hidden = 16
""")
    return root / "hydrocast.toml"


def peak_rss_mb(args: list[str]) -> tuple[float, float]:
    """Run ``hydrocast <args>`` in a fresh process; its own peak RSS (MB) and wall time (s).

    The peak is read by the child itself (RUSAGE_SELF at exit): RUSAGE_CHILDREN in a parent
    also counts the parent's own high-water mark inherited through vfork before exec."""
    probe = ("import resource, runpy, sys\n"
             "sys.argv = ['hydrocast'] + sys.argv[1:]\n"
             "try:\n    runpy.run_module('hydrocast.cli', run_name='__main__')\n"
             "except SystemExit as e:\n    assert not e.code, e.code\n"
             "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    t = time.monotonic()
    out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True)
    peak = next(int(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("PEAK"))
    return peak / 1024, time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64, help="grid cells per side")
    ap.add_argument("--train-years", type=int, default=1, help="training period length (same for both records)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for years in (2, 8):
            cfg = make_project(Path(tmp) / f"y{years}", years, args.size, args.train_years)
            cube_mb = (cfg.parent / "cube.nc").stat().st_size / 1e6
            raw_mb = years * 365 * args.size * args.size * 4 * 2 / 1e6
            rss, wall = peak_rss_mb(["train", "--config", str(cfg), "--quiet", "--device", "cpu"])
            rows.append((years, rss, wall, cube_mb, raw_mb))
    print(f"grid {args.size}x{args.size}, training period {args.train_years} year(s), 1 epoch, CPU")
    print(f"{'record':>8} {'peak RSS MB':>12} {'wall s':>8} {'cube on disk MB':>16} {'record in memory MB':>20}")
    for years, rss, wall, cube_mb, raw_mb in rows:
        print(f"{years:>6} y {rss:>12.0f} {wall:>8.1f} {cube_mb:>16.1f} {raw_mb:>20.1f}")
    print(f"peak RSS ratio 8y / 2y: {rows[1][1] / rows[0][1]:.2f}  (record length ratio 4.0; data held in memory "
          f"would add {rows[1][4] - rows[0][4]:.0f} MB)")


if __name__ == "__main__":
    main()
