"""Ingest benchmark: ``hydrocast ingest`` vs bare GDAL warps, and peak memory on a global granule.

Run ``python benchmarks/ingest.py`` (about 1-2 minutes on 2 cores; ``--repeat``, ``--year``,
``--skip-globe``, ``--skip-cli``, ``--profile N``). Everything is printed; nothing is asserted.

Part 1: one year of the bundled sample region
----------------------------------------------
A temporary config identical to ``sample_data/hydrocast.toml`` (same ``[grid]``, same source
kinds and options, absolute paths) but restricted to ONE year: IMERG daily Final
``raw/imerg/3B-DAY.MS.MRG.3IMERG.<year>*.nc4`` and ESA CCI ``raw/esacci/*-<year>*.nc``. The DEM
source is LEFT OUT (its static layers need flow routing, which is not a "bare warp"), and so are
the half-hourly and Early IMERG files (so every day is one file in both runs). The cube goes to a
temporary folder and is deleted before every hydrocast run (a rerun would otherwise be a no-op).

* ``hydrocast``: ``hydrocast.ingest.ingest(config.load(path))`` in this process: scan (names and
  headers), read clipped to the region, daily means, regrid, write the cube (zlib, fsync, atomic
  rename).
* ``bare``: what the same work costs with no hydrocast: for every one of the same files, open it
  (h5py for IMERG, netCDF4 for ESA CCI: the libraries hydrocast uses), read the coordinate vectors,
  slice the variable to the same clip (grid bounds + ``margin_cells`` cells, widened by half a
  source cell: hydrocast's rule), mask fill values (IMERG: negative; CCI: sm < 0, ``flag & 63``),
  flip to north-up and call ``rasterio.warp.reproject(Resampling.average, nodata NaN)`` onto the
  same 0.05° grid. Batched the way hydrocast does it: one reproject per ``[cube] chunk_days``
  (31) files of one source. Writes nothing (hydrocast's write is reported in the breakdown).
  After the timings the bare output is compared with the cube hydrocast wrote (it must agree).

The two are alternated (bare, hydrocast, bare, hydrocast, ...) after an untimed warm-up that
imports every library and reads every file once (warm page cache for both), and the medians are
reported with ``hydrocast / bare``. The CLI (``hydrocast ingest -q``, a fresh process, start-up
included) is timed once, separately. One extra hydrocast run with timers wrapped around
scan / read / regrid / cube writer gives the breakdown (``--profile N``: also a cProfile top N).

Part 2: peak memory, one global 0.1° IMERG day clipped to the sample region
--------------------------------------------------------------------------
48 synthetic full-globe (3600 x 1800 float32) half-hourly IMERG V07 HDF5 granules of one day in
the real ``/Grid`` layout: the first written by :func:`tools.sampledata.write_imerg_hhr` with
global lon/lat vectors, the others byte copies with their header times, ``time`` and
``time_bnds`` patched (hydrocast checks them against the name). The ingest of that day onto the
32 x 32 sample grid runs in a child process; its own peak RSS (``ru_maxrss`` from ``os.wait4``)
is taken by a tiny launcher process, not by this one (see :data:`LAUNCHER` for why). For
comparison: one full-globe float32 field in memory, and the peak RSS of a child that only imports
the modules the ingest uses.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
sys.path.insert(0, str(ROOT))

MB = 1e6  # memory figures are in MB = 10^6 bytes (the target is "< 1 GB")


# ---------------------------------------------------------------------------------------------
# Part 1: config for one year
# ---------------------------------------------------------------------------------------------
def _toml_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(v)


def year_config(tmp: Path, year: int) -> tuple[Path, dict, list[Path], list[Path]]:
    """Write the one-year config; return (path, sample [grid] table, IMERG files, CCI files)."""
    sample = tomllib.loads((SAMPLE / "hydrocast.toml").read_text())
    grid = sample["grid"]
    patterns = {"imerg": [str(SAMPLE / f"raw/imerg/3B-DAY.MS.MRG.3IMERG.{year}*.nc4")],
                "esacci_sm": [str(SAMPLE / f"raw/esacci/*-{year}*.nc")]}
    lines = ["# one-year copy of sample_data/hydrocast.toml written by benchmarks/ingest.py (no DEM)",
             "[grid]"] + [f"{k} = {_toml_value(v)}" for k, v in grid.items()]
    for src in sample["sources"]:
        if src["kind"] not in patterns:
            continue  # the DEM
        lines += ["", "[[sources]]"]
        for k, v in src.items():
            lines.append(f"{k} = {_toml_value(patterns[src['kind']] if k == 'paths' else v)}")
    cube = dict(sample.get("cube", {}))
    cube["path"] = str(tmp / "cube.nc")
    lines += ["", "[cube]"] + [f"{k} = {_toml_value(v)}" for k, v in cube.items()]
    path = tmp / "hydrocast.toml"
    path.write_text("\n".join(lines) + "\n")
    imerg = sorted(Path(p) for p in glob.glob(patterns["imerg"][0]))
    cci = sorted(Path(p) for p in glob.glob(patterns["esacci_sm"][0]))
    return path, grid, imerg, cci


# ---------------------------------------------------------------------------------------------
# Part 1: the bare baseline (no hydrocast code)
# ---------------------------------------------------------------------------------------------
def _clip(c: np.ndarray, lo: float, hi: float) -> slice:
    """Cells whose centre lies in [lo, hi] widened by half a cell (hydrocast's clip rule)."""
    half = abs(float(c[-1] - c[0])) / (c.size - 1) / 2
    tol = 1e-4 * 2 * half
    keep = np.nonzero((c >= lo - half - tol) & (c <= hi + half + tol))[0]
    return slice(int(keep.min()), int(keep.max()) + 1)


def _transform(lon: np.ndarray, lat_north_down: np.ndarray):
    from affine import Affine

    dx = float(lon[-1] - lon[0]) / (lon.size - 1)
    dy = float(lat_north_down[0] - lat_north_down[-1]) / (lat_north_down.size - 1)
    return Affine(dx, 0.0, float(lon[0]) - dx / 2, 0.0, -dy, float(lat_north_down[0]) + dy / 2)


def bare_read_imerg(path: Path, bbox):
    import h5py

    west, south, east, north = bbox
    with h5py.File(path, "r") as f:
        g = f["Grid"] if "Grid" in f else f
        lon = np.round(g["lon"][()].astype("float64"), 4)
        lat = np.round(g["lat"][()].astype("float64"), 4)
        xs, ys = _clip(lon, west, east), _clip(lat, south, north)
        p = g["precipitation"][0, xs, ys]  # stored (time, lon, lat), lat ascending
    p = p.T[::-1].astype("float32")  # -> (lat north->south, lon)
    p[p < 0] = np.nan  # _FillValue -9999.9 (and any negative code)
    return p, _transform(lon[xs], lat[ys][::-1])


def bare_read_cci(path: Path, bbox):
    import netCDF4

    west, south, east, north = bbox
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_mask(False)
        lon = np.round(ds["lon"][:].astype("float64"), 4)
        lat = np.round(ds["lat"][:].astype("float64"), 4)  # north -> south
        xs, ys = _clip(lon, west, east), _clip(lat, south, north)
        sm = ds["sm"][0, ys, xs].astype("float32")
        flag = ds["flag"][0, ys, xs]
    sm[(sm < 0) | ((flag.astype("int16") & 63) != 0)] = np.nan  # fill -9999, flags (127 = fill too)
    return sm, _transform(lon[xs], lat[ys])


def bare_ingest(imerg: list[Path], cci: list[Path], grid: dict, margin: float, chunk: int) -> dict:
    """Read + mask + warp every file, one reproject per ``chunk`` files of one source."""
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    west, south, east, north = map(float, grid["bounds"])
    res = float(grid["resolution"])
    width, height = int(round((east - west) / res)), int(round((north - south) / res))
    dst_transform = Affine(res, 0.0, west, 0.0, -res, north)
    crs = CRS.from_user_input(grid["crs"])
    bbox = (west - margin * res, south - margin * res, east + margin * res, north + margin * res)
    out = {}
    for name, files, reader in (("precipitation", imerg, bare_read_imerg), ("soil_moisture", cci, bare_read_cci)):
        parts = []
        for a in range(0, len(files), chunk):
            got = [reader(p, bbox) for p in files[a:a + chunk]]
            src = np.stack([g[0] for g in got])
            dst = np.full((len(got), height, width), np.nan, "float32")
            reproject(source=src, destination=dst, src_transform=got[0][1], src_crs=crs, src_nodata=np.nan,
                      dst_transform=dst_transform, dst_crs=crs, dst_nodata=np.nan,
                      resampling=Resampling.average)
            parts.append(dst)
        out[name] = np.concatenate(parts)
    return out


_DATE = re.compile(r"(?:3IMERG\.|COMBINED-)(\d{8})")


def _day(path: Path) -> np.datetime64:
    d = _DATE.search(path.name).group(1)
    return np.datetime64(f"{d[:4]}-{d[4:6]}-{d[6:]}", "D")


def compare_with_cube(bare: dict, files: dict, cube: Path) -> str:
    import netCDF4

    worst, n = 0.0, 0
    with netCDF4.Dataset(cube) as ds:
        days = np.datetime64("1970-01-01", "D") + ds["time"][:].astype("int64")
        index = {d: i for i, d in enumerate(days)}
        for name, arr in bare.items():
            idx = [index[_day(p)] for p in files[name]]
            cube_vals = np.ma.filled(ds[name][idx], np.nan)
            same_nan = np.array_equal(np.isnan(cube_vals), np.isnan(arr))
            diff = np.nanmax(np.abs(cube_vals - arr)) if np.isfinite(arr).any() else 0.0
            if not same_nan:
                return f"DIFFERENT missing-value masks for {name}"
            worst, n = max(worst, float(diff)), n + arr.size
    return f"same NaN mask, max |diff| {worst:.2e} over {n} cells"


# ---------------------------------------------------------------------------------------------
# Part 1: timing hydrocast
# ---------------------------------------------------------------------------------------------
def run_hydrocast(cfg_path: Path) -> tuple[float, object]:
    from hydrocast import config, ingest

    cube = tomllib.loads(cfg_path.read_text())["cube"]["path"]
    for p in (Path(cube), Path(cube + ".lock")):
        p.unlink(missing_ok=True)
    t = time.perf_counter()
    result = ingest.ingest(config.load(cfg_path))
    return time.perf_counter() - t, result


@contextmanager
def phase_timers():
    """Wrap hydrocast's scan / read / regrid / cube-writer calls with timers (restored after)."""
    import hydrocast.ingest as hi
    import hydrocast.regrid as hr

    total: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                total[name] += time.perf_counter() - t
                calls[name] += 1
        return wrapper

    saved = (hi.get_reader, hi.get_array_reader, hi.plan_source, hi.read_day_chunk, hi.read_index,
             hr.regrid_array, hi.CubeWriter)
    orig_get_reader, orig_get_array_reader, _, _, _, _, orig_writer = saved

    def get_reader(kind):
        scan, read = orig_get_reader(kind)
        return timed("scan (open file, name + header)", scan), timed("read (open, clip, mask, DataArray)", read)

    def get_array_reader(kind):
        return timed("read (open, clip, mask, DataArray)", orig_get_array_reader(kind))

    class Writer(orig_writer):
        __init__ = timed("write: create cube", orig_writer.__init__)
        write_days = timed("write: write_days", orig_writer.write_days)
        commit = timed("write: close + fsync + rename", orig_writer.commit)

    hi.get_reader = get_reader
    hi.get_array_reader = get_array_reader
    hi.plan_source = timed("plan (scan + choose files)", hi.plan_source)
    hi.read_day_chunk = timed("read_day_chunk (read + aggregate + regrid)", hi.read_day_chunk)
    hi.read_index = timed("re-read cube index (summary)", hi.read_index)
    hr.regrid_array = timed("regrid (regrid_array)", hr.regrid_array)
    hi.CubeWriter = Writer
    try:
        yield total, calls
    finally:
        (hi.get_reader, hi.get_array_reader, hi.plan_source, hi.read_day_chunk, hi.read_index,
         hr.regrid_array, hi.CubeWriter) = saved


def _cli_command() -> list[str]:
    exe = Path(sys.executable).parent / "hydrocast"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from hydrocast.cli import main; sys.exit(main())"]


def part1(args, tmp: Path, summary: list) -> None:
    from hydrocast.config import CubeConfig

    cfg_path, grid, imerg, cci = year_config(tmp, args.year)
    if not imerg or not cci:
        print(f"no sample files for {args.year}; pick another --year (2015..2020)")
        return
    cube_cfg = tomllib.loads(cfg_path.read_text())["cube"]
    chunk = int(cube_cfg.get("chunk_days", CubeConfig().chunk_days))
    margin = float(cube_cfg.get("margin_cells", CubeConfig().margin_cells))
    files = {"precipitation": imerg, "soil_moisture": cci}
    n_files = len(imerg) + len(cci)
    print(f"== 1. ingest vs bare warps: {args.year}, sample grid {grid['bounds']} @ {grid['resolution']}° ==")
    print(f"config {cfg_path} (no DEM; IMERG daily Final only)")
    print(f"files: {len(imerg)} IMERG daily nc4 + {len(cci)} ESA CCI nc = {n_files} "
          f"({len(set(map(_day, imerg)) | set(map(_day, cci)))} distinct days); "
          f"batching: one reproject per {chunk} files of a source ({-(-len(imerg) // chunk) + -(-len(cci) // chunk)} "
          "warps) in both")

    # warm-up (untimed): imports, page cache, GDAL/PROJ initialisation for both
    t = time.perf_counter()
    bare_ingest(imerg, cci, grid, margin, chunk)
    warm_cfg = tmp / "warm"
    warm_cfg.mkdir(exist_ok=True)
    wpath, *_ = year_config(warm_cfg, args.year)
    text = (wpath.read_text().replace(f".{args.year}*.nc4", f".{args.year}01*.nc4")
            .replace(f"-{args.year}*.nc", f"-{args.year}01*.nc"))
    wpath.write_text(text)
    run_hydrocast(wpath)
    print(f"warm-up (bare over all files + hydrocast over one month): {time.perf_counter() - t:.1f} s")

    bare_t, hc_t, result, bare_out = [], [], None, None
    for r in range(args.repeat):
        t = time.perf_counter()
        bare_out = bare_ingest(imerg, cci, grid, margin, chunk)
        bare_t.append(time.perf_counter() - t)
        dt_, result = run_hydrocast(cfg_path)
        hc_t.append(dt_)
        print(f"  round {r + 1}: bare {bare_t[-1]:6.2f} s   hydrocast {hc_t[-1]:6.2f} s")
    if result.rejected:
        print(f"  hydrocast rejected {len(result.rejected)} file(s), first: {result.rejected[0].message}")
    print(f"  hydrocast cube: {result.days_total} days, variables {result.variables}")
    print(f"  check: bare output vs cube: {compare_with_cube(bare_out, files, Path(cube_cfg['path']))}")
    mb, mh = statistics.median(bare_t), statistics.median(hc_t)
    print(f"median of {args.repeat}: bare {mb:.2f} s ({1e3 * mb / n_files:.2f} ms/file), "
          f"hydrocast ingest (in-process) {mh:.2f} s ({1e3 * mh / n_files:.2f} ms/file)")
    print(f"ratio hydrocast / bare = {mh / mb:.2f}x   (target <= 1.5x)")
    summary += [("bare read+warp, 1 year (median)", f"{mb:.2f} s", f"{n_files} files"),
                ("hydrocast ingest in-process (median)", f"{mh:.2f} s", f"{1e3 * mh / n_files:.1f} ms/file"),
                ("ratio hydrocast / bare", f"{mh / mb:.2f}x", "target <= 1.5x")]

    if not args.skip_cli:
        cmd = _cli_command()
        t = time.perf_counter()
        subprocess.run(cmd + ["--version"], capture_output=True, check=False)
        t_start = time.perf_counter() - t
        Path(cube_cfg["path"]).unlink(missing_ok=True)
        t = time.perf_counter()
        p = subprocess.run(cmd + ["ingest", "-c", str(cfg_path), "-q"], capture_output=True, text=True, check=False)
        t_cli = time.perf_counter() - t
        print(f"CLI `hydrocast ingest -q` (fresh process, start-up included, 1 run): {t_cli:.2f} s, exit {p.returncode}"
              f"; `hydrocast --version` alone: {t_start:.2f} s")
        if p.returncode not in (0, 65):
            print("  stderr: " + p.stderr.strip()[-500:])
        summary += [("CLI hydrocast ingest (1 run)", f"{t_cli:.2f} s", f"ratio to bare {t_cli / mb:.2f}x"),
                    ("CLI start-up (--version)", f"{t_start:.2f} s", "")]

    with phase_timers() as (total, calls):
        dt_, _ = run_hydrocast(cfg_path)
    print(f"breakdown (one extra timed run, {dt_:.2f} s; nested rows are part of the row above):")
    order = ["plan (scan + choose files)", "scan (open file, name + header)",
             "read_day_chunk (read + aggregate + regrid)", "read (open, clip, mask, DataArray)",
             "regrid (regrid_array)", "write: create cube", "write: write_days", "write: close + fsync + rename",
             "re-read cube index (summary)"]
    nested = {"scan (open file, name + header)", "read (open, clip, mask, DataArray)", "regrid (regrid_array)"}
    for name in order:
        if name in total:
            print(f"  {'  ' if name in nested else ''}{name:<44s} {total[name]:6.2f} s {100 * total[name] / dt_:5.1f} %"
                  f"  ({calls[name]} calls)")
    agg = total["read_day_chunk (read + aggregate + regrid)"] - total["read (open, clip, mask, DataArray)"] \
        - total["regrid (regrid_array)"]
    print(f"    {'aggregate (daily means, grouping)':<44s} {agg:6.2f} s {100 * agg / dt_:5.1f} %")
    top = ["plan (scan + choose files)", "read_day_chunk (read + aggregate + regrid)", "write: create cube",
           "write: write_days", "write: close + fsync + rename", "re-read cube index (summary)"]
    other = dt_ - sum(total[k] for k in top)
    print(f"  {'other (lock, config, setup)':<44s} {other:6.2f} s {100 * other / dt_:5.1f} %")
    write = sum(total[k] for k in top if k.startswith("write"))
    summary.append(("breakdown scan/read/regrid/write",
                    f"{total['scan (open file, name + header)']:.2f}/{total['read (open, clip, mask, DataArray)']:.2f}/"
                    f"{total['regrid (regrid_array)']:.2f}/{write:.2f} s", f"of {dt_:.2f} s"))

    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        run_hydrocast(cfg_path)
        prof.disable()
        print(f"cProfile of one more run (top {args.profile} by cumulative time; "
              "profiling inflates Python-heavy code):")
        pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(args.profile)


# ---------------------------------------------------------------------------------------------
# Part 2: peak memory on a global granule
# ---------------------------------------------------------------------------------------------
def write_globe_granules(folder: Path, days: list[str], slots) -> list[Path]:
    """Full-globe 0.1 deg half-hourly IMERG granules of ``days`` at half-hour ``slots`` (0..47): the
    first written by :func:`tools.sampledata.write_imerg_hhr`, the others byte copies of it with
    their ``FileHeader`` times, ``time`` and ``time_bnds`` patched (hydrocast checks them against the
    name). Every granule holds the same field (reading costs do not depend on the values)."""
    import h5py

    from tools import sampledata as sd

    lon = np.round(-179.95 + 0.1 * np.arange(3600), 2)
    lat = np.round(-89.95 + 0.1 * np.arange(1800), 2)
    rng = np.random.default_rng(7)
    rate = rng.gamma(0.3, 1.0, (1800, 3600)).astype("float32")  # mm/hr, mostly light
    rate[rate < 0.5] = 0.0
    rate[np.abs(lat) > 85] = np.nan  # -> _FillValue -9999.9 near the poles
    slots = sorted(set(int(k) for k in slots))
    first = sd.write_imerg_hhr(folder / sd.imerg_hhr_name(days[0], slots[0]), days[0], slots[0], rate, lon, lat)
    del rate
    with h5py.File(first, "r") as f:
        header0 = f.attrs["FileHeader"].decode()
    paths = [first]
    for day in days:
        t0 = int((np.datetime64(day, "s") - np.datetime64("1980-01-06", "s")).astype("int64"))
        for k in slots:
            p = folder / sd.imerg_hhr_name(day, k)
            if p == first:
                continue
            shutil.copyfile(first, p)
            start = np.datetime64(day, "s") + np.timedelta64(1800 * k, "s")
            stop = start + np.timedelta64(1799, "s")
            header = re.sub(r"FileName=[^;]*;", f"FileName={p.name};", header0)
            header = re.sub(r"StartGranuleDateTime=[^;]*;", f"StartGranuleDateTime={start}.000Z;", header)
            header = re.sub(r"StopGranuleDateTime=[^;]*;", f"StopGranuleDateTime={stop}.999Z;", header)
            with h5py.File(p, "r+") as f:
                f.attrs["FileHeader"] = np.bytes_(header.encode("ascii"))
                f["Grid/time"][0] = t0 + 1800 * k
                f["Grid/time_bnds"][0] = [t0 + 1800 * k, t0 + 1800 * (k + 1)]
            paths.append(p)
    return paths


def write_global_day(folder: Path, day: str, halfhours: int) -> list[Path]:
    return write_globe_granules(folder, [day], range(halfhours))


# A fresh, tiny launcher spawns the measured command and reports that child's rusage. Spawning it
# straight from this process would not do: Linux carries the pre-exec RSS high-water mark of the
# forking process into the child's ru_maxrss (Python's subprocess uses vfork), so every child would
# report at least this benchmark's own RSS. The launcher's floor (~11 MB) is printed.
LAUNCHER = ("import os, sys, time; t = time.perf_counter(); "
            "pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ); _, st, ru = os.wait4(pid, 0); "
            "print('RUSAGE', ru.ru_maxrss, os.waitstatus_to_exitcode(st), time.perf_counter() - t, flush=True)")


def child_peak(code: list[str]) -> tuple[float, float, int, str]:
    """(peak RSS in MB (10^6 bytes) of that child only, wall s, exit code, output tail: its stderr,
    then its stdout, so that the child's last printed line comes last)."""
    p = subprocess.run([sys.executable, "-c", LAUNCHER] + code, capture_output=True, text=True, check=False)
    lines = p.stdout.strip().splitlines()
    last = lines[-1].split() if lines else []
    if len(last) != 4 or last[0] != "RUSAGE":
        return float("nan"), float("nan"), p.returncode, (p.stdout + p.stderr).strip()[-400:]
    out = p.stderr.strip() + "\n" + "\n".join(lines[:-1])
    return int(last[1]) * 1024 / MB, float(last[3]), int(last[2]), out.strip()[-400:]


IMPORTS_ONLY = ("import numpy, pandas, xarray, rioxarray, rasterio, rasterio.warp, h5py, netCDF4, pyproj, filelock; "
                "import hydrocast.config, hydrocast.ingest, hydrocast.regrid, hydrocast.cube; "
                "from hydrocast.sources import dem, esacci, generic, imerg")
INGEST = ("import json, sys; from hydrocast import config, ingest; "
          "r = ingest.ingest(config.load(sys.argv[1])); "
          "print(json.dumps({k: r.to_json()[k] for k in ('days_total', 'rejected')}))")


def part2(args, tmp: Path, summary: list) -> None:
    day = args.globe_day
    folder = tmp / "globe"
    folder.mkdir()
    print(f"\n== 2. peak memory: {args.globe_halfhours} full-globe 0.1° IMERG half-hours of {day} "
          "-> the 32x32 sample grid ==")
    t = time.perf_counter()
    paths = write_global_day(folder, day, args.globe_halfhours)
    size = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} granules (3600x1800, /Grid layout, write_imerg_hhr + patched copies), "
          f"{size / MB:.0f} MB on disk, in {time.perf_counter() - t:.1f} s")
    sample = tomllib.loads((SAMPLE / "hydrocast.toml").read_text())
    cfg = folder / "hydrocast.toml"
    cfg.write_text("[grid]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in sample["grid"].items())
                   + '\n[[sources]]\nname = "precipitation"\nkind = "imerg"\n'
                   f'paths = [{json.dumps(str(folder / "*.HDF5"))}]\n'
                   + f'\n[cube]\npath = {json.dumps(str(folder / "cube.nc"))}\n')
    field = 3600 * 1800 * 4 / MB
    floor, *_ = child_peak(["/bin/true"] if Path("/bin/true").exists() else [sys.executable, "-c", "pass"])
    base, base_wall, rc_b, _ = child_peak([sys.executable, "-c", IMPORTS_ONLY])
    peak, wall, rc, out = child_peak([sys.executable, "-c", INGEST, str(cfg)])
    print(f"one full-globe float32 field in memory: {field:.1f} MB "
          f"(all {len(paths)} half-hours: {field * len(paths):.0f} MB)")
    print(f"measurement floor (launcher + /bin/true): {floor:.0f} MB")
    print(f"python importing the ingest dependencies only: peak RSS {base:.0f} MB ({base_wall:.1f} s, exit {rc_b})")
    print(f"hydrocast ingest of the day in a child process: peak RSS {peak:.0f} MB "
          f"({peak - base:+.0f} MB over imports), {wall:.1f} s, exit {rc}; target < 1000 MB")
    print(f"  child said: {out}")
    summary += [("globe day ingest peak RSS", f"{peak:.0f} MB", "target < 1000 MB"),
                ("  imports-only peak RSS", f"{base:.0f} MB", f"one global field {field:.1f} MB")]
    regional = sorted(glob.glob(str(SAMPLE / "raw/imerg/3B-HHR.MS.MRG.3IMERG.20191102-*.HDF5")))
    if regional:  # control: the same kind of day from the bundled regional (22 x 22) granules
        rfolder = tmp / "regional"
        rfolder.mkdir()
        rcfg = rfolder / "hydrocast.toml"
        rcfg.write_text(cfg.read_text()
                        .replace(json.dumps(str(folder / "*.HDF5")),
                                 json.dumps(str(SAMPLE / "raw/imerg/3B-HHR.MS.MRG.3IMERG.20191102-*.HDF5")))
                        .replace(json.dumps(str(folder / "cube.nc")), json.dumps(str(rfolder / "cube.nc"))))
        rpeak, rwall, rrc, _ = child_peak([sys.executable, "-c", INGEST, str(rcfg)])
        print(f"control: same ingest of 2019-11-02 from the {len(regional)} bundled regional 22x22 granules: "
              f"peak RSS {rpeak:.0f} MB, {rwall:.1f} s, exit {rrc} (global minus regional: {peak - rpeak:+.0f} MB)")
        summary.append(("  regional-granule day peak RSS", f"{rpeak:.0f} MB", "control"))
    if not args.skip_cli:
        (folder / "cube.nc").unlink(missing_ok=True)
        cpeak, cwall, crc, _ = child_peak(_cli_command() + ["ingest", "-c", str(cfg), "-q"])
        print(f"same via the CLI (`hydrocast ingest -q`): peak RSS {cpeak:.0f} MB, {cwall:.1f} s, exit {crc}")
        summary.append(("globe day via CLI peak RSS", f"{cpeak:.0f} MB", f"{cwall:.1f} s"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--year", type=int, default=2019, help="sample year to ingest in part 1 (2015..2020)")
    ap.add_argument("--repeat", type=int, default=3, help="alternating bare/hydrocast rounds (medians reported)")
    ap.add_argument("--skip-globe", action="store_true", help="skip part 2 (global granules, peak memory)")
    ap.add_argument("--skip-cli", action="store_true", help="skip the CLI runs")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="also print a cProfile top N of one run")
    ap.add_argument("--globe-halfhours", type=int, default=48,
                    help="half-hourly global granules to write (44..48; fewer than 44 leaves the day missing)")
    ap.add_argument("--globe-day", default="2019-07-01")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    args.repeat = max(1, args.repeat)

    t_all = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hydrocast-bench-ingest-"))
    summary: list[tuple[str, str, str]] = []
    try:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, temp {tmp}")
        part1(args, tmp, summary)
        if not args.skip_globe:
            part2(args, tmp, summary)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n== summary (one run, {time.perf_counter() - t_all:.0f} s in all) ==")
    w = max(len(r[0]) for r in summary) if summary else 10
    for name, value, note in summary:
        print(f"  {name:<{w}s}  {value:>22s}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
