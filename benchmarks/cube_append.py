"""The cost of a daily ingest against the length of the record (issue 10: ratio <= 1.3).

Builds a 2-year and a 10-year cube of synthetic daily fields in both stores (NetCDF file, Zarr
store), then appends ONE new day to each, the way ``hydrocast ingest`` writes it: read the cube's
index (grid, days, provenance: what the ingest plan compares against), open the store's writer
for the new day range, carry the old days over where the store needs it (NetCDF: the whole file
is rewritten; Zarr: nothing), write the day, commit (fsync, rename / journal). Reading and
regridding the raw files of that day cost the same for any record and are left out.

Each append is repeated ``--repeat`` times (alternating the cubes; each repeat appends the next
day), and the medians are compared: ``10-year / 2-year`` per store (target <= 1.3 for Zarr), and
NetCDF / Zarr at 10 years.

    python benchmarks/cube_append.py [--cells 128] [--vars 2] [--repeat 3] [--keep DIR]

About 2 minutes on 2 cores with the defaults (building the 10-year cubes dominates); writes about
1 GB of temporary files and deletes them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydrocast  # noqa: E402,F401  (pyproj before netCDF4/cfgrib: see hydrocast/__init__.py)
from hydrocast import cube  # noqa: E402
from hydrocast.grid import GridSpec  # noqa: E402

NAMES = ["precipitation", "soil_moisture", "liquid_fraction", "frozen_fraction"]
BLOCK = 64


def fields(rng, n: int, shape: tuple[int, int]) -> np.ndarray:
    """Smooth-ish positive fields (they compress like real ones, not like white noise)."""
    base = rng.gamma(0.6, 4.0, size=(n, shape[0] // 8 + 1, shape[1] // 8 + 1)).astype("float32")
    out = np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)[:, :shape[0], :shape[1]]
    return np.round(out, 1)


def build(path: Path, grid: GridSpec, days: np.ndarray, names: list[str], rng) -> None:
    dyn = {n: dict(cube.QUANTITY_ATTRS.get(n, {"units": "1"})) for n in names}
    st = {"elevation": {"units": "m"}}
    with cube.open_writer(path, grid, days, dyn, st, old=None) as w:
        for name in names:
            for a in range(0, len(days), BLOCK):
                d = days[a:a + BLOCK]
                prov = [f"final 3B-DAY.MS.MRG.3IMERG.{str(x).replace('-', '')}-S000000-E235959.V07B.nc4 n=1 "
                        f"sig={a:012x}" for x in d]
                w.write_days(name, d, fields(rng, len(d), grid.shape), prov)
        w.write_static("elevation", rng.random(grid.shape).astype("float32") * 1000)
        w.commit()


def append_one(path: Path, grid: GridSpec, rng) -> float:
    """One daily ingest's store work; seconds."""
    t0 = time.perf_counter()
    old = cube.read_index(path)
    day = old.days[-1] + np.timedelta64(1, "D")
    days = np.arange(old.days[0], day + np.timedelta64(1, "D"), dtype="datetime64[D]")
    with cube.open_writer(path, grid, days, old.dynamic, old.static, old=old) as w:
        w.carry_over()
        for name in old.dynamic:
            w.write_days(name, [day], fields(rng, 1, grid.shape), [f"early new day {day} sig=0"])
        w.commit()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=128, help="grid edge in cells (default 128 x 128)")
    ap.add_argument("--vars", type=int, default=2, help="dynamic variables (1..4)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="build the cubes here and keep them")
    args = ap.parse_args()
    grid = GridSpec.from_bounds("EPSG:4326", (0.0, 0.0, args.cells * 0.05, args.cells * 0.05), 0.05)
    names = NAMES[:max(1, min(args.vars, len(NAMES)))]
    root = args.keep or Path(tempfile.mkdtemp(prefix="hc-append-"))
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cubes = {}
    try:
        for years in (2, 10):
            days = np.arange("2010-01-01", np.datetime64("2010-01-01") + np.timedelta64(365 * years, "D"),
                             dtype="datetime64[D]")
            for fmt, suffix in (("zarr", ".zarr"), ("netcdf", ".nc")):
                path = root / f"cube-{years}y{suffix}"
                t0 = time.perf_counter()
                build(path, grid, days, names, rng)
                print(f"built {path.name}: {len(days)} days x {len(names)} variables on {args.cells}x{args.cells} "
                      f"cells in {time.perf_counter() - t0:.1f} s", flush=True)
                cubes[(fmt, years)] = path
        times = {k: [] for k in cubes}
        for _ in range(args.repeat):
            for key, path in cubes.items():
                times[key].append(append_one(path, grid, rng))
        med = {k: statistics.median(v) for k, v in times.items()}
        print()
        print("| store | 2-year cube: one-day append (s) | 10-year cube (s) | ratio 10y / 2y |")
        print("|---|---|---|---|")
        for fmt in ("zarr", "netcdf"):
            a, b = med[(fmt, 2)], med[(fmt, 10)]
            print(f"| {fmt} | {a:.3f} | {b:.3f} | {b / a:.2f} |")
        print()
        print(f"Zarr 10-year ratio {med[('zarr', 10)] / med[('zarr', 2)]:.2f} (target <= 1.3); NetCDF / Zarr at 10 "
              f"years: {med[('netcdf', 10)] / med[('zarr', 10)]:.1f}x; medians of {args.repeat} appends each")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
