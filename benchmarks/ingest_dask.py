"""Ingest on dask.distributed: wall time with 1 and 2 workers, peak memory per worker, the cost of one
task (one day chunk x one tile), and what ten years of a continental grid would take on 32 workers.

Run ``python benchmarks/ingest_dask.py`` (about 1 minute on 2 cores; options below). Everything is
printed; nothing is asserted.

Data: ``--days`` days (default 16) of full-globe 0.1° IMERG V07 half-hourly HDF5 granules in the
real ``/Grid`` layout (3600 x 1800 float32 ``precipitation`` + int16 ``probabilityLiquidPrecipitation``,
39 MB each, uncompressed as :func:`tools.sampledata.write_imerg_hhr` writes them): the first granule
written by that writer, the others byte copies with their ``FileHeader`` times, ``time`` and
``time_bnds`` patched (hydrocast checks them against the name). Only ``--halfhours`` (default 8)
half-hours per day, evenly spread, to keep disk (days x half-hours x 39 MB: 4.8 GB by default)
and time sane; the source's ``min_valid_fraction`` is set to (half-hours - 0.5) / 48 so that
these days count as complete. Every granule holds the same field (the cost does not depend on
the values).

Grid: ``--box`` W H degrees (default 70 x 35, from ``--origin`` lon lat = -10 35: Europe and the
Mediterranean) at ``--res`` 0.05° (1400 x 700 cells), a Zarr cube with the default chunks
[32, 256, 256], ``[cube] chunk_days = --chunk-days`` (default 8: 2 chunks), tiles
of ``--tile`` cells (default 256: the chunks' y/x; 3 x 6 = 18 tiles).

Runs (the cube deleted before each):
* in-process (``hydrocast.ingest.ingest``, no cluster) in a child process, for its wall time and
  peak RSS (taken by a tiny launcher: see benchmarks/ingest.py's LAUNCHER);
* for each of ``--workers`` (default 1,2): a ``distributed.LocalCluster(n_workers=N,
  threads_per_worker=1, processes=True)`` is started and warmed up (every worker imports the ingest
  modules) outside the timing, then ``hydrocast.ingest_dask.ingest(cfg, client=...)`` is timed
  (plan, tasks, the client's writes, commit). The tasks report their seconds and the worker's
  peak RSS during each task (Linux: the peak is reset at the start of every task); the per-worker
  peak is the largest of its tasks', the per-task growth is peak minus RSS at the task's start.
  The cubes are compared with the in-process one (bit for bit).

Capacity estimate (printed at the end, with its assumptions): ten years (3653 days) of 48 half-hours
a day on the full box, tiles and chunks as measured but ``chunk_days = 31``: tasks = ceil(3653/31) x
tiles; a task's seconds = the median measured task's, scaled in proportion to the granules it reads
(31 x 48 against the measured chunk's days x half-hours: reading dominates; the per-day averaging and
warp scale with days only, so this is an upper bound); its memory = the median measured growth plus,
per granule beyond those, 2 x 4 bytes x the tile's source cells (the clipped values, cached for the
chunk, and the day's stack of them); 32 workers at the parallel efficiency measured here with 2
workers (at most 100 %); the client's writing (serial) scaled per task from the measured write time
per tile and per day. Disk I/O is assumed not to be the bottleneck (the
files are in the page cache here; on a cluster they are read over a shared file system).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest import child_peak, write_globe_granules  # noqa: E402  (benchmarks/ingest.py)

MB = 2**20  # MiB, as hydrocast.ingest_dask reports the workers' memory

IN_PROCESS = ("import json, sys, time; from hydrocast import config, ingest; t = time.perf_counter(); "
              "r = ingest.ingest(config.load(sys.argv[1])); "
              "print(json.dumps({'seconds': time.perf_counter() - t, 'days': r.days_total, "
              "'rejected': len(r.rejected)}))")


def write_granules(folder: Path, days: list[str], halfhours: int) -> list[Path]:
    """Full-globe half-hourly granules, ``halfhours`` a day evenly spread."""
    return write_globe_granules(folder, days, (int(round(i * 48 / halfhours)) for i in range(halfhours)))


def write_config(folder: Path, args, cube: Path) -> Path:
    west, south = args.origin
    w, h = args.box
    cfg = folder / "hydrocast.toml"
    cfg.write_text(
        "[grid]\ncrs = \"EPSG:4326\"\n"
        f"bounds = [{west}, {south}, {west + w}, {south + h}]\nresolution = {args.res}\n\n"
        "[[sources]]\nname = \"precipitation\"\nkind = \"imerg\"\n"
        f"paths = [{json.dumps(str(folder / 'imerg' / '*.HDF5'))}]\n"
        f"min_valid_fraction = {(args.halfhours - 0.5) / 48:.6f}\n\n"  # these half-hours make a day
        f"[cube]\npath = {json.dumps(str(cube))}\nchunk_days = {args.chunk_days}\n"
        f"tile_cells = {args.tile}\n")
    return cfg


def _warm() -> float:
    """On a worker: import what a task uses; its RSS after (MB)."""
    import hydrocast.ingest_dask  # noqa: F401
    import hydrocast.regrid  # noqa: F401
    import hydrocast.sources.imerg  # noqa: F401
    from hydrocast.ingest_dask import _rss_mb

    return _rss_mb()


def cluster_run(cfg_path: Path, cube: Path, workers: int, memory: str) -> dict:
    import logging

    import distributed

    from hydrocast import config, ingest_dask

    t = time.perf_counter()
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=memory,
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        client.wait_for_workers(workers)
        base = client.run(_warm)
        start = time.perf_counter() - t
        shutil.rmtree(cube, ignore_errors=True)
        t = time.perf_counter()
        result = ingest_dask.ingest(config.load(cfg_path), client=client)
        wall = time.perf_counter() - t
    return {"wall": wall, "start": start, "base_mb": base, "stats": result.cluster, "days": result.days_total,
            "rejected": len(result.rejected)}


def warm_client(tmp: Path, folder: Path, args) -> None:
    """Untimed: one in-process ingest of one granule onto a 1° box, so that this process has imported
    and initialised what the client's writing uses (zarr, xarray, ...) before the timed runs."""
    from hydrocast import config, ingest

    small = argparse.Namespace(**{**vars(args), "box": (1.0, 1.0), "halfhours": 48, "chunk_days": 1, "days": 1})
    (tmp / "warm").mkdir()
    cfg = write_config(tmp / "warm", small, tmp / "warm" / "cube.zarr")
    cfg.write_text(cfg.read_text().replace(json.dumps(str(tmp / "warm" / "imerg" / "*.HDF5")),
                                           json.dumps(str(next(folder.glob("*.HDF5"))))))
    ingest.ingest(config.load(cfg))
    shutil.rmtree(tmp / "warm")


def days_with_data(cube: Path) -> str:
    import xarray as xr

    with xr.open_zarr(cube) as ds:
        p = ds["precipitation"]
        return f"{int(p.notnull().any(('y', 'x')).sum())}/{p.sizes['time']}"


def same_cube(a: Path, b: Path) -> bool:
    import xarray as xr

    with xr.open_zarr(a) as x, xr.open_zarr(b) as y:
        return bool(np.array_equal(x["precipitation"].values, y["precipitation"].values, equal_nan=True)
                    and [str(s).rsplit(" sig=")[0] for s in x["precipitation_source"].values]
                    == [str(s).rsplit(" sig=")[0] for s in y["precipitation_source"].values])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=16, help="days of granules (default 16)")
    ap.add_argument("--halfhours", type=int, default=8, help="half-hourly granules per day, of 48 (default 8)")
    ap.add_argument("--box", type=float, nargs=2, default=(70.0, 35.0), metavar=("W", "H"),
                    help="grid box in degrees (default 70 35)")
    ap.add_argument("--origin", type=float, nargs=2, default=(-10.0, 35.0), metavar=("LON", "LAT"),
                    help="south-west corner (default -10 35)")
    ap.add_argument("--res", type=float, default=0.05, help="grid resolution in degrees (default 0.05)")
    ap.add_argument("--tile", type=int, default=256, help="[cube] tile_cells (default 256 = the chunks' y/x)")
    ap.add_argument("--chunk-days", type=int, default=8, help="[cube] chunk_days (default 8)")
    ap.add_argument("--workers", default="1,2", help="cluster sizes to time (default 1,2)")
    ap.add_argument("--worker-memory", default="2GiB", help="memory limit per worker (default 2GiB)")
    ap.add_argument("--skip-in-process", action="store_true", help="skip the in-process reference run")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    sizes = [int(n) for n in args.workers.split(",")]

    from hydrocast import config
    from hydrocast.ingest_dask import tile_shape

    tmp = Path(tempfile.mkdtemp(prefix="hydrocast-ingest-dask-"))
    try:
        days = [str(np.datetime64("2019-07-01") + np.timedelta64(i, "D")) for i in range(args.days)]
        t = time.perf_counter()
        (tmp / "imerg").mkdir()
        paths = write_granules(tmp / "imerg", days, args.halfhours)
        disk = sum(p.stat().st_size for p in paths) / MB
        cfg_path = write_config(tmp, args, tmp / "cube.zarr")
        cfg = config.load(cfg_path)
        grid = cfg.grid_spec()
        ty, tx = tile_shape(cfg, grid)
        n_tiles = len(grid.tiles(ty, tx))
        cd = cfg.cube.chunk_days
        files_per_task = min(cd, args.days) * args.halfhours
        print(f"granules: {len(paths)} full-globe 0.1° IMERG half-hours ({args.days} days x {args.halfhours}), "
              f"{disk:.0f} MB, written in {time.perf_counter() - t:.1f} s")
        print(f"grid: {grid.describe()}; tiles {ty}x{tx} ({n_tiles}), chunk_days {cd}: "
              f"{math.ceil(args.days / cd) * n_tiles} tasks")
        cube0 = tmp / "cube.zarr"
        ref = tmp / "ref.zarr"
        if not args.skip_in_process:
            peak, wall, rc, out = child_peak([sys.executable, "-c", IN_PROCESS, str(cfg_path)])
            peak *= 1e6 / MB  # child_peak's MB are 10^6 bytes; here MiB, as the workers' figures
            inner = json.loads(out.splitlines()[-1])["seconds"] if rc == 0 else float("nan")
            print(f"\nin-process (no cluster): {inner:.1f} s ingest ({wall:.1f} s with the start of Python), "
                  f"peak RSS {peak:.0f} MB, exit {rc}, days with data {days_with_data(cube0)}")
            if rc:
                print(out)
            os.rename(cube0, ref)
        warm_client(tmp, tmp / "imerg", args)
        runs = {}
        for n in sizes:
            r = runs[n] = cluster_run(cfg_path, cube0, n, args.worker_memory)
            s = r["stats"]
            peaks = sorted(s["worker_peak_mb"].values())
            same = same_cube(ref, cube0) if ref.exists() else None
            print(f"\n{n} worker(s): {r['wall']:.1f} s ingest (cluster start + warm-up {r['start']:.1f} s, not "
                  f"counted); {s['tasks']} tasks, {s['task_seconds']:.1f} task-s; client writes "
                  f"{s['write_seconds']:.1f} s; cube identical to in-process: {same}")
            print(f"  per-worker peak RSS: {', '.join(f'{p:.0f}' for p in peaks)} MB (after imports: "
                  f"{', '.join(f'{b:.0f}' for b in sorted(r['base_mb'].values()))} MB; limit {args.worker_memory})")
            print(f"  per task (1 chunk of {cd} days x 1 tile of {ty}x{tx}, {files_per_task} granules): "
                  f"{s['median_task_seconds']:.2f} s median, {s['max_task_seconds']:.2f} s max (a worker's first); "
                  f"memory growth over the task's start {s['median_task_growth_mb']:.0f} MB median, "
                  f"{s['max_task_growth_mb']:.0f} MB max; result {s['result_mb'] / s['tasks']:.1f} MB; "
                  f"client write {s['write_seconds'] / s['tasks']:.3f} s")
        if 1 in runs and 2 in runs:
            speedup = runs[1]["wall"] / runs[2]["wall"]
            print(f"\nspeed-up 2 workers / 1 worker: {speedup:.2f}x (parallel efficiency {speedup / 2:.0%})")
        else:
            speedup = None
        best = runs[max(runs)]["stats"] if runs else None
        if best:
            scale = 31 * 48 / files_per_task
            t_task = best["median_task_seconds"] * scale
            # memory: what a task holds per granule is its values clipped to the tile plus margin (cached for
            # the chunk) and the day's stack of them: 2 x float32 x the source cells of the window
            cells = (ty * args.res / 0.1 + 4) * (tx * args.res / 0.1 + 4)
            g_task = best["median_task_growth_mb"] + (31 * 48 - files_per_task) * 8 * cells / MB
            w_task = best["write_seconds"] / best["tasks"] * 31 / cd
            tasks = math.ceil(3653 / 31) * n_tiles
            eff = min(1.0, speedup / 2) if speedup else 1.0
            compute = tasks * t_task / (32 * eff)
            write = tasks * w_task
            base = max(max(r["base_mb"].values()) for r in runs.values())
            print(f"\ncapacity estimate: ten years (3653 days, 48 half-hours a day) on this {grid.height}x{grid.width} "
                  f"grid, chunk_days 31, tiles {ty}x{tx}: {tasks} tasks of ~{t_task:.1f} s each (the median task "
                  f"scaled x{scale:.0f} by granules read) holding ~{g_task:.0f} MB over the worker's "
                  f"{base:.0f} MB (the values of 31 x 48 granules on the tile's {cells:.0f} source cells, twice)")
            print(f"  32 workers at {eff:.0%} efficiency (measured with 2): {compute / 3600:.2f} h of tasks; the "
                  f"client's writes (serial, {w_task:.2f} s per task): {write / 3600:.2f} h; so ~"
                  f"{max(compute, write) / 3600:.2f} h ({'write-bound' if write > compute else 'compute-bound'}), "
                  f"~{base + g_task:.0f} MB per worker")
            print("  assumptions: a task's time scales with the granules it reads (an upper bound: the warp scales "
                  "with days only); the files are read as fast as here (page cache, uncompressed granules; real "
                  "IMERG granules are compressed, and on a cluster come over a shared file system); the client "
                  "machine writes as fast as this one; the efficiency measured with 2 workers holds at 32")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
