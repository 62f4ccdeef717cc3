"""``hydrocast ingest --workers N`` / ``--scheduler ADDRESS``: ingest's reading and regridding as
tasks on a dask.distributed cluster; everything else stays as in :mod:`hydrocast.ingest`.

What runs where
===============
* **In this process (the client)**, as without a cluster: the cube's lock, the plan
  (:func:`hydrocast.ingest.plan_source`: names and signatures only), the static layers of the DEM
  (flow routing needs the whole domain), the cube writer (the NetCDF file or the Zarr store with
  its journal: one writer), the commit, the forecast store.
* **On the workers**: one task per (source, run of ``[cube] chunk_days`` planned days, spatial
  tile). A tile is a window of the grid (:meth:`GridSpec.crop`) of ``[cube] tile_cells`` cells
  (default: the y and x of ``[cube] chunks``, so that the tiles write disjoint chunks of the
  store; on a projected grid, bands of the chunks' y rows: see "Exactness"). A task gets only
  the day plans (paths, signatures, the fallback candidates), the source's options and the
  tile's GridSpec; it opens the raw files itself, reads each clipped to the tile (see
  "Exactness"), averages sub-daily steps into days and regrids onto the tile with the same code
  as the in-process ingest (:func:`hydrocast.ingest.read_chunk`). It returns the tile's data, the
  days' provenance, the rejected files and the days that keep the old cube's data; it writes
  nothing and opens no cube.
* **Writing**: the client takes finished tiles as they come (``as_completed``) and writes each
  into its window of the store (``write_tile``; the Zarr journal protects whole time-chunk
  folders, so any tile of a time chunk is rolled back with it). A day's provenance is written
  once per chunk. Days that keep the old cube's data (their new file turned out unreadable) are
  filled by the client from the cube as it was before this run (``writer.read_before``).

Memory
======
A task holds what the in-process ingest holds for one chunk, on a tile instead of the grid: the
values of its files clipped to the tile plus margin (``chunk_days`` x steps per day x tile
cells of the source) and its result (``chunk_days`` x tile cells, float32): flat in the record
length and in the domain size (the default bands of a projected grid grow with its width only).
At most ``2 x`` (worker threads) tasks are in flight, so results waiting for the client are
bounded as well. The client holds one tile result at a time (and the
plan, as without a cluster). Each local worker gets ``--worker-memory`` (default
:data:`DEFAULT_WORKER_MEMORY`; dask pauses a worker at 80 % of it and restarts it at 95 %).

Exactness: a tile equals the same cells of the whole grid
=========================================================
Each file is read clipped to the tile's bounds widened by ``[cube] margin_cells`` grid cells and,
where the first file read shows it is needed, by the source's own cells: at least one source cell
across (the warp needs two cells along each axis), and for kernel resamplings (``bilinear``,
``cubic``) the kernel's reach beyond the tile plus one cell. Area methods (``average``, ``max``,
``sum``, ...) and ``nearest`` only use source cells overlapping a tile cell, which the clip always
includes (it keeps every cell touching the box). The window is never wider than the in-process
clip (grid plus margin), so the region's edges see the same cells too. ``tests/test_ingest_dask.py``
checks tile against whole-grid values: equal bit for bit (bilinear: to float32 rounding) where the
source's CRS is the grid's (IMERG and ESA CCI on a lat/lon grid). Where they differ (a projected
grid), GDAL's weights for cells straddling a source cell's edge depend on the width of the
destination window warped at once (measured: up to 1 % of the value with ``average`` on a 3 km
UTM grid from 0.1° IMERG, for any tile narrower than the grid; bands across the whole width of 3
rows and more were exact): so on a projected grid the default tiles are bands of the chunks' y rows across the whole
width, and a ``tile_cells`` there trades that exactness for smaller tasks.

Bad files
=========
Each task applies ingest's rules (reject, plan the day again from its other files, keep the old
day); a read that fails on the tile's window is retried with the in-process window (the region
plus margin), so a file is rejected with the very message it gets without a cluster (a file that
only misses this tile is used, as without a cluster). Whether a file reads can still depend on
the window (a file damaged in one place): when the tiles of a chunk disagree about which files
are bad, the chunk is run again with the union of those files rejected in every tile. The
client then lists the rejections chunk by chunk in the in-process order, and ``--strict`` writes
nothing: exit codes do not change.

``--workers 1`` is the in-process ingest (no cluster): a one-worker cluster would only add its
start-up, a second process and the transfer of every tile, for the same work done one task at a
time. A one-worker tiled run (its memory bounded by the tile, not the domain) is a
``--scheduler`` away (``dask scheduler`` + ``dask worker --nworkers 1 --nthreads 1``).
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from . import ingest as ingest_mod
from .config import Config, SourceConfig
from .cube.common import chunk_shape
from .errors import BadInputError, BusyError, ConfigError
from .grid import GridSpec
from .inputfiles import Rejection
from .sources import get_array_reader

#: memory limit of each worker of ``--workers N`` (a task of a 256 x 256 tile and 31 days of 48
#: half-hours holds ~0.2 GB, a worker's imports ~0.3 GB)
DEFAULT_WORKER_MEMORY = "2GiB"
#: seconds to wait for a ``--scheduler`` to answer, and for its first worker
CONNECT_TIMEOUT = 15
#: source cells a kernel resampling reaches beyond the cell it samples (at equal cell sizes)
KERNEL_RADIUS = {"bilinear": 1, "cubic": 2}
_READ_ERRORS = (BadInputError, OSError, ValueError, KeyError, RuntimeError)


# -- the tasks (run on the workers) ---------------------------------------------------------------

def tile_shape(cfg: Config, grid: GridSpec) -> tuple[int, int]:
    """(rows, cols) of a tile: ``[cube] tile_cells`` square, else the y and x of ``[cube] chunks``
    on a geographic grid, and bands of the chunks' y rows across the whole width on a projected
    one (see the module docstring, "Exactness")."""
    if cfg.cube.tile_cells:
        return (min(cfg.cube.tile_cells, grid.height), min(cfg.cube.tile_cells, grid.width))
    _, cy, cx = chunk_shape(grid, 1, tuple(cfg.cube.chunks))
    return (cy, cx) if grid.is_geographic else (cy, grid.width)


def _union(a, b):
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _intersect(a, b):
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def _contains(outer, inner) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3]


class TileReader:
    """``read(path) -> Arrays`` of one tile (see the module docstring, "Exactness", "Bad files")."""

    def __init__(self, source: SourceConfig, tile: GridSpec, region_bbox, margin_cells: float):
        self.read_arrays = get_array_reader(source.kind)
        self.opts = source.as_options()
        self.region = tuple(map(float, region_bbox))
        self.inner = tile.lonlat_bounds(0)
        w, s, e, n = self.inner
        self.cell = ((e - w) / tile.width, (n - s) / tile.height)  # a grid cell, in degrees
        self.radius = KERNEL_RADIUS.get(source.options.get("resampling", "average"), 0)
        # a box across the antimeridian: read the region (no widening rules there)
        self.whole = self.region[0] > self.region[2] or w > e
        self.bbox = self.region if self.whole else _intersect(tile.lonlat_bounds(margin_cells), self.region)
        self._deg: dict[str, tuple[float, float]] = {}

    def __call__(self, path):
        if self.whole:
            return self.read_arrays(path, self.opts, self.region)
        try:
            arrays = self.read_arrays(path, self.opts, self.bbox)
            want = self._needed(arrays)
            if want is None:
                return self.read_arrays(path, self.opts, self.region)
            if not _contains(self.bbox, want):
                self.bbox = _intersect(_union(self.bbox, want), self.region)
                arrays = self.read_arrays(path, self.opts, self.bbox)
            return arrays
        except _READ_ERRORS:  # what the in-process read says of this file (also: it only misses this tile)
            return self.read_arrays(path, self.opts, self.region)

    def _degrees_per_unit(self, crs) -> tuple[float, float]:
        key = str(crs)
        if key not in self._deg:
            from pyproj import CRS

            c = CRS.from_user_input(crs)
            if c.is_geographic:
                self._deg[key] = (1.0, 1.0)
            else:
                from rasterio.warp import transform_bounds

                w, s, e, n = self.inner
                ws, ss, es, ns = transform_bounds("EPSG:4326", c.to_wkt(), w, s, e, n, densify_pts=21)
                self._deg[key] = ((e - w) / max(es - ws, 1e-12), (n - s) / max(ns - ss, 1e-12))
        return self._deg[key]

    def _needed(self, arrays):
        """The box this tile needs read from a file with ``arrays``' cells; None: read the region."""
        x, y = np.asarray(arrays.x, "float64"), np.asarray(arrays.y, "float64")
        if x.size < 2 or y.size < 2:
            return None
        kx, ky = self._degrees_per_unit(arrays.crs)
        dx = abs(x[-1] - x[0]) / (x.size - 1) * kx
        dy = abs(y[-1] - y[0]) / (y.size - 1) * ky
        mx = (self.radius * max(1.0, self.cell[0] / dx) + 1) * dx if self.radius else 0.0
        my = (self.radius * max(1.0, self.cell[1] / dy) + 1) * dy if self.radius else 0.0
        w, s, e, n = self.inner[0] - mx, self.inner[1] - my, self.inner[2] + mx, self.inner[3] + my
        if e - w < 1.01 * dx:
            pad = (1.01 * dx - (e - w)) / 2
            w, e = w - pad, e + pad
        if n - s < 1.01 * dy:
            pad = (1.01 * dy - (n - s)) / 2
            s, n = s - pad, n + pad
        return (w, s, e, n)


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def _reset_peak() -> bool:
    """Reset this process's peak RSS (Linux: ``/proc/self/clear_refs``), so that the task's own
    peak can be read after it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_tile(source: SourceConfig, plans: list, tile: GridSpec, region_bbox, margin_cells: float,
              known_bad: dict[str, str]) -> dict:
    """One task: the planned days ``plans`` of ``source`` read, averaged and regridded onto ``tile``.

    Returns ``data`` (n, tile rows, tile cols) float32, ``provenance`` (n strings), ``rejected``
    [(path, message)], ``kept`` (days keeping the old cube's data: NaN here), and what the task
    cost: ``seconds``, ``rss_mb`` (the worker before it), ``peak_mb`` (the worker's peak RSS
    during it, where Linux lets it be reset; else since the worker started), ``worker``."""
    t0 = time.perf_counter()
    reset = _reset_peak()
    rss0 = _rss_mb()
    rejected: list[Rejection] = []
    reader = TileReader(source, tile, region_bbox, margin_cells)
    data, prov, _units, kept = ingest_mod.read_chunk(source, plans, tile, reader, rejected, known_bad)
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        worker = f"pid {os.getpid()}"
    return {"data": data, "provenance": prov, "rejected": [(r.path, r.message) for r in rejected], "kept": kept,
            "seconds": time.perf_counter() - t0, "rss_mb": rss0, "peak_mb": _peak_mb(), "peak_is_task": reset,
            "worker": worker}


# -- the client's side ---------------------------------------------------------------------------

@contextmanager
def connect(workers: int | None = None, scheduler: str | None = None,
            memory_limit: str = DEFAULT_WORKER_MEMORY, log: Callable[[str], None] = lambda s: None) -> Iterator:
    """A ``distributed.Client``: of a new local cluster of ``workers`` processes (one thread each,
    ``memory_limit`` each), or of the cluster whose scheduler is at ``scheduler``. Closed after."""
    import distributed

    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise BusyError(f"cannot reach the dask scheduler at {scheduler} ({exc}); is it running?") from None
        try:
            try:
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError):
                raise BusyError(f"the dask scheduler at {scheduler} has no worker (waited {CONNECT_TIMEOUT} s); "
                                f"start some (`dask worker {scheduler}`)") from None
            _check_workers(client, scheduler)
            log(f"dask: scheduler {scheduler}, {len(client.nthreads())} worker(s), "
                f"{sum(client.nthreads().values())} thread(s)")
            yield client
        finally:
            client.close()
        return
    t = time.perf_counter()
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       memory_limit=memory_limit, dashboard_address=None,
                                       silence_logs=logging.ERROR)
    try:
        client = distributed.Client(cluster)
        try:
            log(f"dask: local cluster of {workers} worker processes ({memory_limit} each), "
                f"started in {time.perf_counter() - t:.1f} s")
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _worker_version() -> str:
    import hydrocast

    return hydrocast.__version__


def _check_workers(client, scheduler: str) -> None:
    """ConfigError unless every worker of the cluster imports this version of hydrocast."""
    from . import __version__

    try:
        versions = client.run(_worker_version)
    except Exception as exc:  # noqa: BLE001 - a worker without hydrocast fails to unpickle the function
        raise ConfigError(f"--scheduler {scheduler}: a worker cannot run hydrocast ({type(exc).__name__}: {exc}); "
                          "install this hydrocast in the workers' environment") from None
    other = {w: v for w, v in versions.items() if v != __version__}
    if other:
        w, v = next(iter(other.items()))
        raise ConfigError(f"--scheduler {scheduler}: worker {w} runs hydrocast {v}, this is {__version__}; "
                          "install the same version on the workers")


@dataclass
class _Chunk:
    """One run of ``chunk_days`` planned days of one source, and the state of its tiles."""

    source: SourceConfig
    plans: list
    bad: dict = field(default_factory=dict)  # files rejected in every tile (tiles disagreed)
    round: int = 0
    ref: tuple | None = None  # (rejected, provenance, kept) of this round's first finished tile
    done: set = field(default_factory=set)
    provenance_written: bool = False


class ClusterExecution:
    """The ``execute`` of :func:`hydrocast.ingest.ingest` that runs the tiles on a cluster.

    ``connect``: a function returning a context manager that gives a ``distributed.Client``
    (entered only when there are days to read: a rerun with nothing new starts no cluster).
    After a run, :attr:`stats` holds what the tasks cost (also in the result's ``cluster``)."""

    def __init__(self, connect: Callable, tile: tuple[int, int] | None = None):
        self.connect = connect
        self.tile = tile
        self.stats: dict = {}

    def __call__(self, cfg: Config, grid: GridSpec, bbox, dynamic: list[SourceConfig], plans: dict, writer,
                 rejected: list[Rejection], result, progress, log) -> None:
        cd = cfg.cube.chunk_days
        chunks = [_Chunk(s, plans[s.name][a:a + cd]) for s in dynamic for a in range(0, len(plans[s.name]), cd)]
        if not chunks:
            for s in dynamic:
                log(f"{s.name}: 0 day(s) read")
            return
        ty, tx = self.tile or tile_shape(cfg, grid)
        windows = grid.tiles(ty, tx)
        tiles = [grid.crop(r, c) for r, c in windows]
        with self.connect() as client:
            self._run(client, cfg, chunks, windows, tiles, bbox, writer, result, progress, log)
        for c in chunks:  # in the in-process order: source by source, chunk by chunk
            rejected.extend(Rejection(p, m) for p, m in c.ref[0])
        self.stats.update(tile_cells=[ty, tx], tiles=len(tiles))
        result.cluster = dict(self.stats)
        for s in dynamic:
            n = len(plans[s.name])
            log(f"{s.name}: {n} day(s) read ({-(-n // cd) * len(tiles)} tasks of {ty}x{tx} cells)")

    def _run(self, client, cfg, chunks, windows, tiles, bbox, writer, result, progress, log) -> None:
        from distributed import as_completed

        threads = sum(client.nthreads().values()) or 1
        limit = max(2, 2 * threads)
        queue = deque((j, t) for j in range(len(chunks)) for t in range(len(tiles)))
        pending: dict = {}
        done = as_completed()
        stats = {"workers": len(client.nthreads()), "threads": threads, "tasks": 0, "reruns": 0,
                 "task_seconds": 0.0, "max_task_seconds": 0.0, "write_seconds": 0.0, "result_mb": 0.0,
                 "max_task_peak_mb": 0.0, "max_task_growth_mb": 0.0, "worker_peak_mb": {}}
        self.stats = stats
        seconds, growth = [], []

        def submit() -> None:
            while queue and len(pending) < limit:
                j, t = queue.popleft()
                c = chunks[j]
                fut = client.submit(read_tile, c.source, c.plans, tiles[t], bbox, cfg.cube.margin_cells,
                                    dict(c.bad), pure=False)
                pending[fut] = (j, t, c.round)
                done.add(fut)

        try:
            submit()
            for fut in done:
                j, t, rnd = pending.pop(fut)
                try:
                    res = fut.result()
                except Exception as exc:
                    if type(exc).__name__ == "KilledWorker":
                        c = chunks[j]
                        raise RuntimeError(
                            f"a dask worker died reading {c.source.name} {c.plans[0].day}..{c.plans[-1].day}, "
                            f"tile {t} ({exc}); out of memory? (--worker-memory, [cube] tile_cells, chunk_days)"
                        ) from None
                    raise
                del fut
                c = chunks[j]
                stats["tasks"] += 1
                stats["task_seconds"] += res["seconds"]
                stats["max_task_seconds"] = max(stats["max_task_seconds"], res["seconds"])
                seconds.append(res["seconds"])
                stats["result_mb"] += res["data"].nbytes / 2**20
                stats["max_task_peak_mb"] = max(stats["max_task_peak_mb"], res["peak_mb"])
                if res["peak_is_task"]:
                    stats["max_task_growth_mb"] = max(stats["max_task_growth_mb"], res["peak_mb"] - res["rss_mb"])
                    growth.append(res["peak_mb"] - res["rss_mb"])
                wp = stats["worker_peak_mb"]
                wp[res["worker"]] = max(wp.get(res["worker"], 0.0), res["peak_mb"])
                if rnd != c.round:  # a tile of an earlier round of a chunk that is being run again
                    submit()
                    continue
                sig = (res["rejected"], res["provenance"], res["kept"])
                if c.ref is None:
                    c.ref = sig
                elif sig != c.ref:
                    self._rerun(c, j, sig, queue, len(tiles), stats, log)
                    submit()
                    continue
                rows, cols = windows[t]
                data = res["data"]
                if res["kept"] and not data.flags.writeable:
                    data = data.copy()
                t0 = time.perf_counter()
                for i in res["kept"]:
                    _, index, _ = c.plans[i].old
                    data[i] = writer.read_before(c.source.name, index, rows, cols)
                writer.write_tile(c.source.name, [p.day for p in c.plans], rows, cols, data,
                                  None if c.provenance_written else res["provenance"])
                stats["write_seconds"] += time.perf_counter() - t0
                c.provenance_written = True
                c.done.add(t)
                del res, data
                if len(c.done) == len(tiles):  # the chunk is complete
                    kept = set(c.ref[2])
                    result.days_replaced += sum(p.replaces for i, p in enumerate(c.plans) if i not in kept)
                    if progress:
                        progress("advance", len(c.plans))
                submit()
        except BaseException:
            client.cancel(list(pending))
            raise
        stats["median_task_seconds"] = float(np.median(seconds)) if seconds else 0.0
        stats["median_task_growth_mb"] = float(np.median(growth)) if growth else None

    @staticmethod
    def _rerun(c: _Chunk, j: int, sig: tuple, queue: deque, n_tiles: int, stats: dict, log) -> None:
        """Tiles of chunk ``c`` disagree: the files any of them rejected are rejected in all, and
        every tile of the chunk runs again (its tiles already written are written again)."""
        bad = dict(c.bad)
        for path, msg in list(c.ref[0]) + list(sig[0]):
            bad.setdefault(path, msg)
        if bad.keys() == c.bad.keys():
            raise RuntimeError(f"tiles of {c.source.name} {c.plans[0].day}..{c.plans[-1].day} disagree on the "
                               "days' provenance with the same files rejected (a bug: please report it)")
        new = sorted(set(bad) - set(c.bad))
        log(f"{c.source.name} {c.plans[0].day}..{c.plans[-1].day}: {len(new)} file(s) readable in some tiles only "
            f"({', '.join(os.path.basename(p) for p in new)}): rejected in every tile, the days read again")
        c.bad, c.round, c.ref, c.done, c.provenance_written = bad, c.round + 1, None, set(), False
        stats["reruns"] += 1
        queue.extendleft((j, t) for t in reversed(range(n_tiles)))


def ingest(cfg: Config, *, workers: int | None = None, scheduler: str | None = None,
           memory_limit: str = DEFAULT_WORKER_MEMORY, client=None, tile: tuple[int, int] | None = None,
           strict: bool = False, progress: Callable | None = None,
           log: Callable[[str], None] = lambda s: None):
    """:func:`hydrocast.ingest.ingest` with the tiles read on a cluster: ``client`` (an existing
    ``distributed.Client``, left open), else ``scheduler`` (an address), else a local cluster of
    ``workers`` processes. ``tile``: (rows, cols), instead of :func:`tile_shape`."""
    if client is not None:
        @contextmanager
        def opener():
            yield client
    else:
        def opener():
            return connect(workers=workers, scheduler=scheduler, memory_limit=memory_limit, log=log)
    return ingest_mod.ingest(cfg, strict=strict, progress=progress, log=log, execute=ClusterExecution(opener, tile))
