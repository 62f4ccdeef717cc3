"""``hydrocast ingest``: raw product files → the daily data cube (see :mod:`hydrocast.cube`).

The run, step by step:

1. Take the cube's lock (a second concurrent run exits 75 at once).
2. Scan every source's files (names and file signatures, not contents) and pick, for each day,
   the best file set: the best IMERG run available (Final > Late > Early; a worse run never
   replaces a better one), and within a run a daily file before half-hourly ones. A day whose
   file set is the one already recorded in the cube's provenance is skipped, so a rerun with
   nothing new opens no data file and writes nothing.
3. Read the chosen files in chunks of ``[cube] chunk_days`` days (memory stays flat however long
   the record), clipped to the region before anything is loaded; sub-daily values become daily
   means of the rates (= daily totals for precipitation in mm/day). A cell (or a whole day) with
   fewer than ``min_valid_fraction`` (default 0.9) of its sub-daily steps is left missing rather
   than under-counted. A file that fails only when read (a header contradicting its name, ...) is
   rejected and its day planned again from the other files, as if the scan had rejected it.
4. Regrid onto the grid (:mod:`hydrocast.regrid`) and write a complete new cube beside the old
   one, then replace it atomically.
5. Weather-forecast sources (kinds ``nwp_grib``, ``nwp_netcdf``) are not cube variables: their runs go
   into the forecast store beside the cube (:mod:`hydrocast.forecasts`, its own contract and lock),
   after the cube; their files are scanned before the cube is written (``strict`` stops there).

Bad files are listed and skipped (exit 65 at the end), or with ``strict`` abort the run before
the cube is replaced. Nothing already in the cube is lost: old days are copied over unless a
better run replaces them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from . import cube as cube_store
from .config import FORECAST_KINDS, Config, SourceConfig
from .cube import QUANTITY_ATTRS, CubeIndex, read_index
from .errors import BadInputError, MissingInputError
from .grid import GridSpec
from .inputfiles import Rejection, expand_paths
from .inputfiles import rejection_summary as _rejection_summary
from .sources import RUN_RANK, FileInfo, get_array_reader, get_reader

STEP_PRIORITY = {"1D": 2, "30min": 1}  # within one run, a daily file beats half-hourly ones


@dataclass
class DayPlan:
    day: np.datetime64
    files: list[Path]
    run: str
    step: str
    signature: str
    note: str = ""  # non-empty: the day is recorded as missing for this reason
    # set by plan_source, for read_day_chunk's fallback when planned files turn out unreadable:
    candidates: tuple = field(default=(), repr=False, compare=False)  # every FileInfo scanned for the day
    old: tuple | None = None  # (old cube path, index, provenance) when the old cube holds the day
    replaces: bool = False  # replaces data in the old cube (counted in days_replaced once written)

    def provenance(self, rejected: list[str] = ()) -> str:
        if self.note:
            text = f"missing: {self.note}"
        else:
            first = self.files[0].name
            more = f" (+{len(self.files) - 1} files)" if len(self.files) > 1 else ""
            text = f"{self.run or '-'} {first}{more}"
        for r in rejected:
            text += f" | rejected: {r}"
        return f"{text} sig={self.signature}"


@dataclass
class IngestResult:
    cube: Path
    changed: bool = False
    days_added: int = 0
    days_replaced: int = 0
    days_total: int = 0
    first_day: str | None = None
    last_day: str | None = None
    variables: list[str] = field(default_factory=list)
    static_updated: bool = False
    rejected: list[Rejection] = field(default_factory=list)
    forecasts: object | None = None  # hydrocast.forecasts.ForecastResult when the config has forecast sources
    cluster: dict | None = None  # ingest on a dask cluster (hydrocast.ingest_dask): what its tasks cost

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in ("changed", "days_added", "days_replaced", "days_total",
                                          "first_day", "last_day", "variables", "static_updated")}
        d["cube"] = str(self.cube)
        d["rejected"] = [{"file": r.path, "error": r.message} for r in self.rejected]
        d["forecasts"] = self.forecasts.to_json() if self.forecasts is not None else None
        d["cluster"] = self.cluster
        return d


# -- planning -----------------------------------------------------------------------------------

def _signature(paths: list[Path]) -> str:
    h = hashlib.sha1()
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:12]


def _parse_provenance(text: str) -> tuple[str, str]:
    """(run, signature) of a provenance string; ("", "") for an empty one."""
    if not text:
        return "", ""
    sig = text.rsplit("sig=", 1)[-1] if "sig=" in text else ""
    run = "" if text.startswith("missing:") else text.split(" ", 1)[0]
    return ("" if run == "-" else run), sig


def steps_per_day(step: str) -> int:
    import pandas as pd

    return max(1, int(round(pd.Timedelta("1D") / pd.Timedelta(step))))


def choose_files(day, infos: list[FileInfo], min_fraction: float) -> DayPlan:
    """The best complete file set for one day (see the module docstring)."""
    by_run_step: dict[tuple[str, str], list[FileInfo]] = defaultdict(list)
    for fi in infos:
        by_run_step[(fi.run, fi.step)].append(fi)
    order = sorted(by_run_step, key=lambda k: (RUN_RANK.get(k[0], 0), STEP_PRIORITY.get(k[1], 0)), reverse=True)
    incomplete = []
    for run, step in order:
        group = by_run_step[(run, step)]
        paths = sorted({fi.path for fi in group})
        if step == "30min":
            need = math.ceil(min_fraction * 48)
            slots = {fi.extra.get("slot", fi.path.name) for fi in group}
            if len(slots) < need:
                incomplete.append(f"{len(slots)}/48 half-hours ({run or 'unknown run'})")
                continue
        return DayPlan(day, paths, run, step, _signature(paths))
    all_paths = sorted({fi.path for fi in infos})
    return DayPlan(day, [], "", "", _signature(all_paths), note="; ".join(incomplete) or "no usable files")


def _against_old(plan: DayPlan, text: str | None) -> str:
    """What ``plan`` means for a day whose provenance in the old cube is ``text`` (None or "" when
    the cube has nothing for it): "same" (the cube already holds this file set), "keep" (the cube
    holds a better run: never replaced by a worse one), "replace" (it replaces data) or "new"."""
    if not text:
        return "new"
    old_run, old_sig = _parse_provenance(text)
    if old_sig == plan.signature:
        return "same"
    if text.startswith("missing:"):
        return "new"
    return "keep" if RUN_RANK.get(old_run, 0) > RUN_RANK.get(plan.run, 0) else "replace"


def plan_source(cfg: Config, source: SourceConfig, old: CubeIndex | None,
                rejected: list[Rejection]) -> tuple[list[DayPlan], int]:
    """Days of ``source`` to (re)read, and how many of them replace days already in the cube.

    Plans from names and file signatures only (the readers' ``scan``): a rerun with nothing new
    opens no data file."""
    scan, _ = get_reader(source.kind)
    opts = source.as_options()
    files = expand_paths(cfg, source)
    if not files:
        raise MissingInputError(f"{cfg.path}: [[sources]] {source.name}: no file matches {source.paths}")
    per_day: dict[np.datetime64, list[FileInfo]] = defaultdict(list)
    for path in files:
        try:
            info = scan(path, opts)
        except BadInputError as exc:
            rejected.append(Rejection(str(path), str(exc)))
            continue
        if info.step == "1MS":
            rejected.append(Rejection(str(path), f"{path}: is a monthly product; the hydrocast cube is daily"))
            continue
        for d in info.days:
            per_day[np.datetime64(d, "D")].append(info)
    min_fraction = source.options.get("min_valid_fraction", 0.9)
    old_days = old.day_index() if old is not None else {}
    old_prov = old.provenance.get(source.name, []) if old is not None else []
    plans, replaced = [], 0
    for day in sorted(per_day):
        plan = choose_files(day, per_day[day], min_fraction)
        text = old_prov[old_days[day]] if day in old_days and old_prov else None
        verdict = _against_old(plan, text)
        if verdict == "same":
            for part in text.split(" | rejected: ")[1:]:  # report still-bad files again, without rewriting
                rejected.append(Rejection(part.split(" sig=")[0], part.split(" sig=")[0]))
            continue
        if verdict == "keep":
            continue  # never replace a better run by a worse one
        plan.candidates, plan.replaces = tuple(per_day[day]), verdict == "replace"
        plan.old = (old.path, old_days[day], text) if text else None
        replaced += plan.replaces
        plans.append(plan)
    return plans, replaced


# -- reading ------------------------------------------------------------------------------------

def quantity_of(source: SourceConfig) -> str | None:
    if source.kind == "imerg":
        var = source.options.get("variable", "")
        return "liquid_fraction" if var == "probabilityLiquidPrecipitation" else "precipitation"
    if source.kind == "esacci_sm":
        return "frozen_fraction" if source.options.get("variable") == "frozen" else "soil_moisture"
    return source.options.get("quantity")


def variable_attrs(source: SourceConfig, plans: list[DayPlan] = ()) -> dict:
    """CF attributes of the cube variable of ``source``: its quantity's (QUANTITY_ATTRS), else the
    config's ``units`` or those the scan of its planned files reports (``FileInfo.extra["units"]``;
    no ``units`` key when neither says: the caller keeps the old cube's, or "1")."""
    q = quantity_of(source)
    if q in QUANTITY_ATTRS:
        return dict(QUANTITY_ATTRS[q])
    units = source.options.get("units") or next(
        (fi.extra["units"] for p in plans for fi in p.candidates if fi.extra.get("units")), "")
    return {"long_name": source.name, **({"units": units} if units else {}), "cell_methods": "time: mean"}


def read_day_chunk(source: SourceConfig, plans: list[DayPlan], grid: GridSpec, bbox,
                   rejected: list[Rejection]) -> tuple[np.ndarray, list[str], dict]:
    """Read, aggregate to days and regrid the files of ``plans``; returns (n, H, W), provenance.

    Works on plain arrays (the readers' ``read_arrays``: an xarray object per small regional
    granule, or xarray operations per day, would cost more than reading the granule).

    ``scan`` looks at names and signatures only, so a planned file can still fail to read (a
    header that contradicts its name, a missing variable, ...). It is rejected, and the day is
    planned again from its other files, as if the scan had rejected it. Where that leaves what
    the old cube already holds, a worse run than it, or nothing while it holds data, the old
    day is kept (nothing in the cube is lost to a bad new file), its provenance noting the
    rejected file with the signature of the plan, so that reruns skip the day and report the
    file again until it changes."""
    read_arrays = get_array_reader(source.kind)
    opts = source.as_options()
    out, prov, units, kept = read_chunk(source, plans, grid, lambda path: read_arrays(path, opts, bbox), rejected)
    for i in kept:
        cube, index, _ = plans[i].old
        reader = cube_store.open_reader(cube, writing=True)
        try:
            out[i] = reader.read(source.name, index, index + 1)[0]
        finally:
            reader.close()
        plans[i].replaces = False
    return out, prov, units


def read_chunk(source: SourceConfig, plans: list[DayPlan], grid: GridSpec, read: Callable,
               rejected: list[Rejection], known_bad: dict[str, str] | None = None
               ) -> tuple[np.ndarray, list[str], dict, list[int]]:
    """The work of :func:`read_day_chunk` on any ``grid`` (the cube's, or a tile of it:
    :mod:`hydrocast.ingest_dask`), reading each file with ``read(path) -> Arrays``. Returns
    ``(data, provenance, units, kept)``: ``kept`` lists the days (indices into ``plans``) whose
    data stay the old cube's; their rows of ``data`` are NaN here, for the caller to fill from
    the old cube. Opens no cube. ``known_bad`` (path -> message): files rejected without being
    read, with that message, at the moment they would have been read (the same order of
    rejections and the same fallback as if they had failed here)."""
    from .regrid import regrid_array

    resampling = source.options.get("resampling", "average")
    min_fraction = source.options.get("min_valid_fraction", 0.9)
    out = np.full((len(plans), grid.height, grid.width), np.nan, dtype="float32")
    prov: list[str] = []
    cache: dict[Path, object] = {}
    units: dict = {}
    failed: set[Path] = set()
    known_bad = known_bad or {}
    kept_days: list[int] = []

    def load(path: Path):
        if path not in cache and str(path) in known_bad:
            cache[path] = None
            rejected.append(Rejection(str(path), known_bad[str(path)]))
            failed.add(path)
        if path not in cache:
            try:
                arrays = read(path)
                if arrays.times is None:
                    raise BadInputError(f"{path}: holds a static field (no time axis); this source needs dated values")
                cache[path] = arrays
            except BadInputError as exc:
                cache[path] = None
                rejected.append(Rejection(str(path), str(exc)))
            except (OSError, ValueError, KeyError, RuntimeError) as exc:  # a reader bug must not lose the run
                cache[path] = None
                rejected.append(Rejection(str(path), f"{path}: unreadable ({type(exc).__name__}: {exc})"))
            if cache[path] is None:
                failed.add(path)
        return cache[path]

    def keep_old(i: int, plan: DayPlan, bad: list[str]) -> str:
        kept_days.append(i)
        text = plan.old[2]
        kept = text.split(" | rejected: ")[0].rsplit(" sig=", 1)[0]
        return kept + "".join(f" | rejected: {r}" for r in bad) + f" sig={plan.signature}"

    # read: per day, the steps that fall inside it, grouped by source grid
    groups: dict[tuple, list[tuple[int, np.ndarray, int]]] = defaultdict(list)
    geos: dict[tuple, tuple] = {}
    one_day = np.timedelta64(1, "D")
    for i, plan in enumerate(plans):
        if plan.note:
            prov.append(plan.provenance())
            continue
        start = plan.day.astype("datetime64[ns]")
        old_data = plan.old is not None and not plan.old[2].startswith("missing:")
        attempt, bad, kept = plan, [], False
        while True:
            pieces, times, geo, n_bad = [], [], None, len(bad)
            for path in attempt.files:
                item = load(path)
                if item is None:
                    bad.append(path.name)
                    continue
                units.setdefault("units", item.units)
                sel = (item.times >= start) & (item.times < start + one_day)
                if sel.all():
                    pieces.append(item.values)
                    times.append(item.times)
                    geo = (item.x, item.y, item.crs)
                elif sel.any():
                    pieces.append(item.values[sel])
                    times.append(item.times[sel])
                    geo = (item.x, item.y, item.crs)
            expected = steps_per_day(attempt.step) if attempt.step not in ("", "static") else 1
            need = math.ceil(min_fraction * expected)
            if len(times) == 1 and times[0].size == 1:
                n_steps = 1
            else:
                n_steps = len(np.unique(np.concatenate(times))) if times else 0
            if pieces and n_steps >= need:
                text = replace(attempt, signature=plan.signature).provenance(bad)
                break
            note = f"{n_steps}/{expected} steps readable" if pieces else "no readable file"
            text = replace(plan, files=[], run="", step="", note=note).provenance(bad)
            if len(bad) == n_bad:
                break  # nothing new was unreadable: the day is short of steps, as planned
            # plan the day again without the unreadable files, as plan_source would have
            remaining = [fi for fi in plan.candidates if fi.path not in failed]
            if not remaining:
                if old_data:
                    text, kept = keep_old(i, plan, bad), True
                break
            attempt = choose_files(plan.day, remaining, min_fraction)
            if _against_old(attempt, plan.old[2] if plan.old else None) in ("same", "keep"):
                text, kept = keep_old(i, plan, bad), True
                break
            if attempt.note:
                text = replace(attempt, signature=plan.signature).provenance(bad)
                break
        prov.append(text)
        if kept or text.startswith("missing:"):
            continue
        stack = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        x, y, crs = geo
        key = (x.tobytes(), y.tobytes(), str(crs))
        geos.setdefault(key, geo)
        groups[key].append((i, stack, need))

    # daily means (of rates: = daily totals for mm/day) and one warp per source grid: all days
    # read from same-shaped files are averaged and regridded together
    for key, items in groups.items():
        idx = [i for i, _, _ in items]
        means = np.empty((len(items),) + items[0][1].shape[1:], dtype="float32")
        single = [j for j, (_, stack, need) in enumerate(items) if stack.shape[0] == 1 and need == 1]
        if single:  # one value for the day (a daily file): the mean is the value, NaN where missing
            vals = np.concatenate([items[j][1] for j in single])
            means[single] = np.where(np.isfinite(vals), vals, np.float32(np.nan))
        for j in sorted(set(range(len(items))) - set(single)):
            _, stack, need = items[j]
            valid = np.isfinite(stack).sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                means[j] = np.where(valid >= need, np.nansum(stack, axis=0) / np.maximum(valid, 1), np.nan)
        x, y, crs = geos[key]
        out[idx] = regrid_array(means, x, y, crs, grid, resampling, source.name)
    return out, prov, units, kept_days


# -- the command --------------------------------------------------------------------------------

def _static_signature(paths: list[Path], grid: GridSpec) -> str:
    return _signature(paths) + ":" + hashlib.sha1(json.dumps(grid.to_dict()).encode()).hexdigest()[:8]


def ingest(cfg: Config, strict: bool = False, progress: Callable | None = None,
           log: Callable[[str], None] = lambda s: None, execute: Callable | None = None) -> IngestResult:
    """Run the whole ingest for ``cfg``; see the module docstring.

    ``execute``: how the dynamic sources' planned days are read, regridded and written (step 3
    and 4): None = here, ``[cube] chunk_days`` at a time (:func:`write_dynamic`); any callable
    with :func:`write_dynamic`'s signature does the same work otherwise
    (:mod:`hydrocast.ingest_dask`: tiles on a dask cluster). Planning, the static layers, the
    lock, the writer and its commit stay here, in this process."""
    from . import fsio

    grid = cfg.grid_spec()
    cube_path = cfg.resolve(cfg.cube.path)
    with fsio.held_lock(cube_path, f"{cube_path}: another hydrocast run is writing this cube "
                        "(lock {lock} is held); try later"):
        return _ingest_locked(cfg, grid, cube_path, strict, progress, log, execute or write_dynamic)


def write_dynamic(cfg: Config, grid: GridSpec, bbox, dynamic: list[SourceConfig], plans: dict[str, list[DayPlan]],
                  writer, rejected: list[Rejection], result: IngestResult, progress: Callable | None,
                  log: Callable[[str], None]) -> None:
    """Read, regrid and write every planned day of the ``dynamic`` sources into ``writer``, in this
    process, ``[cube] chunk_days`` days at a time; rejections are appended to ``rejected``,
    replaced days counted in ``result``."""
    for source in dynamic:
        source_plans = plans[source.name]
        for a in range(0, len(source_plans), cfg.cube.chunk_days):
            chunk = source_plans[a:a + cfg.cube.chunk_days]
            data, prov, units = read_day_chunk(source, chunk, grid, bbox, rejected)
            writer.write_days(source.name, [p.day for p in chunk], data, prov)
            result.days_replaced += sum(p.replaces for p in chunk)  # (a day kept after all is not)
            if progress:
                progress("advance", len(chunk))
        log(f"{source.name}: {len(source_plans)} day(s) read")


def _ingest_locked(cfg, grid, cube_path, strict, progress, log, execute) -> IngestResult:
    """The cube, then the forecast store of the ``nwp_*`` sources (:mod:`hydrocast.forecasts`), whose
    files are scanned first so that ``strict`` stops at a bad forecast file before anything is written."""
    from . import forecasts

    if not forecasts.forecast_sources(cfg):
        return _ingest_cube(cfg, grid, cube_path, strict, progress, log, execute)
    with forecasts.store_lock(forecasts.store_path(cfg)):
        fplan = forecasts.plan_store(cfg, grid, log)
        if strict and fplan.rejected:
            raise BadInputError(_rejection_summary(fplan.rejected, strict=True))
        result = _ingest_cube(cfg, grid, cube_path, strict, progress, log, execute)
        result.forecasts = forecasts.write_store(fplan, grid.lonlat_bounds(cfg.cube.margin_cells), strict=strict,
                                                 log=log)
    result.rejected = list(result.rejected) + list(fplan.rejected)
    return result


def _ingest_cube(cfg, grid, cube_path, strict, progress, log, execute) -> IngestResult:
    result = IngestResult(cube=cube_path)
    cube_store.prepare(cube_path, cfg.cube.format)  # a Zarr store: roll back what a killed ingest left
    old = read_index(cube_path) if cube_path.exists() else None
    if old is not None and not old.grid.same_as(grid):
        raise BadInputError(f"{cube_path}: was made on another grid ({old.grid.describe()}) than the config asks for "
                            f"({grid.describe()}); use another [cube] path or move the old cube away")
    rejected: list[Rejection] = []
    dynamic = [s for s in cfg.sources if s.kind != "dem" and s.kind not in FORECAST_KINDS]
    dem_sources = [s for s in cfg.sources if s.kind == "dem"]
    bbox = grid.lonlat_bounds(cfg.cube.margin_cells)

    plans: dict[str, list[DayPlan]] = {}
    for source in dynamic:
        plans[source.name], _ = plan_source(cfg, source, old, rejected)

    # static layers: recomputed only when the DEM file (or the grid) changed
    static_layers: dict[str, tuple[np.ndarray, dict]] | None = None
    static_sig = ""
    if dem_sources:
        src = dem_sources[0]
        files = expand_paths(cfg, src)
        if not files:
            raise MissingInputError(f"{cfg.path}: [[sources]] {src.name}: no file matches {src.paths}")
        static_sig = _static_signature(files, grid)
        if old is None or old.static_source != static_sig:
            from . import terrain

            scan, read = get_reader("dem")
            try:
                scan(files[0], src.as_options())
                dem_da = read(files[0], src.as_options(), bbox)
                static_layers = terrain.static_layers(dem_da, grid)
            except BadInputError as exc:
                rejected.append(Rejection(str(files[0]), str(exc)))
                static_layers = None
                static_sig = old.static_source if old is not None else ""

    if strict and rejected:
        raise BadInputError(_rejection_summary(rejected, strict=True))

    new_days = {p.day for ps in plans.values() for p in ps}
    old_days = {np.datetime64(d, "D") for d in old.days} if old is not None else set()
    new_vars = [s.name for s in dynamic if old is None or s.name not in old.dynamic]
    if not new_days and static_layers is None and not new_vars:
        result.rejected = rejected
        _fill_summary(result, old)
        return result  # nothing new: the cube is not touched
    all_days = [np.datetime64(d, "D") for d in (new_days | old_days)]
    if not all_days:
        raise BadInputError(_rejection_summary(rejected) if rejected else f"{cube_path}: no data to ingest")
    days = np.arange(min(all_days), max(all_days) + np.timedelta64(1, "D"), dtype="datetime64[D]")

    dyn_attrs = dict(old.dynamic) if old is not None else {}
    for s in dynamic:
        dyn_attrs[s.name] = {"units": "1", **dyn_attrs.get(s.name, {}), **variable_attrs(s, plans[s.name])}
        dyn_attrs[s.name].pop("grid_mapping", None)
    if static_layers is not None:
        st_attrs = {name: attrs for name, (_, attrs) in static_layers.items()}
    else:
        st_attrs = dict(old.static) if old is not None else {}
    st_attrs = {k: {a: v for a, v in attrs.items() if a != "grid_mapping"} for k, attrs in st_attrs.items()}

    with cube_store.open_writer(cube_path, grid, days, dyn_attrs, st_attrs, old=old, fmt=cfg.cube.format,
                                chunks=tuple(cfg.cube.chunks)) as writer:
        total = sum(len(p) for p in plans.values()) + (len(old.days) * len(old.dynamic) if writer.copies_old else 0)
        if progress:
            progress("start", total)
        writer.carry_over(skip_static=static_layers is not None,
                          progress=(lambda n: progress("advance", n)) if progress else None)
        if static_layers is not None:
            for name, (arr, _) in static_layers.items():
                writer.write_static(name, arr)
            writer.set_attr("hydrocast_static_source", static_sig)
            result.static_updated = True
        execute(cfg, grid, bbox, dynamic, plans, writer, rejected, result, progress, log)
        if strict and rejected:
            raise BadInputError(_rejection_summary(rejected, strict=True))
        writer.commit()
    result.changed = True
    result.days_added = len(new_days - old_days)
    result.rejected = rejected
    _fill_summary(result, read_index(cube_path))
    return result


def _fill_summary(result: IngestResult, index: CubeIndex | None) -> None:
    if index is None:
        return
    result.days_total = int(len(index.days))
    if len(index.days):
        result.first_day, result.last_day = str(index.days[0]), str(index.days[-1])
    result.variables = list(index.dynamic) + list(index.static)


