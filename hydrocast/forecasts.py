"""The forecast store: weather-forecast (NWP) precipitation beside the cube, one CF-1.8 NetCDF file.

Contract (written once, here)
=============================

================================== ==================================================================
file                               ``[cube] forecast_path``, default beside the cube:
                                   ``<cube stem>.forecasts.nc`` (:func:`store_path`)
dimensions                         ``issue_day`` (sorted issue dates D that have a run; not
                                   necessarily contiguous), ``lead`` (1..Lmax), ``y``, ``x`` (the
                                   cube's grid), ``nv``
``issue_day``                      int32 ``days since 1970-01-01``: the issue date D, the last UTC day
                                   whose observations precede the forecast. Lead n is the UTC day D+n.
``forecast_reference_time``        int32 days since 1970-01-01 (issue_day): the reference time of the
                                   runs serving D; by the rule below always D + 1 day, 00:00 UTC
``lead``                           int32 days (``forecast_period``), bounds ``lead_bnds`` = [n-1, n]
                                   days after ``forecast_reference_time``: lead n is [D+n, D+n+1)
``x``, ``y``, ``crs``              as in the cube (:mod:`hydrocast.cube`), the same grid
``<name>`` (issue_day, lead, y, x) float32 mm per UTC day (``lwe_thickness_of_precipitation_amount``,
                                   ``cell_methods = "time: sum"``), NaN where missing (no run of this
                                   source for D, a lead past the run's end, a cell the run lacks);
                                   the member mean of an ensemble run. zlib, chunked per few issues.
``<name>_members`` (issue_day)     int32 members averaged (1: deterministic, 0: no run)
``<name>_ensemble``                float32 (issue_day, realization, lead, y, x) mm: every member of an
                                   ensemble run (member ``number`` order: the control ``cf`` first),
                                   NaN past the run's members and on days served by a deterministic
                                   run; only for sources with ``members = "keep"`` (the default) that
                                   have an ensemble run. Its mean is ``<name>``.
``realization``                    int32 0..R-1 (``standard_name = realization``), R = the most
                                   members of any stored ensemble run; only with an ``_ensemble``
``<name>_source`` (issue_day)      provenance: the run's label, its first file (and how many more),
                                   ``sig=`` a signature of the files' names, sizes and mtimes and of
                                   the source's options; "" where the source has no run for D
global attributes                  ``Conventions = "CF-1.8, ACDD-1.3"``, the ACDD set of
                                   :mod:`hydrocast.acdd` (``time_coverage_*``: the valid days covered),
                                   ``hydrocast_grid`` (JSON GridSpec), ``hydrocast_forecast_variables``
                                   (JSON list of names), ``hydrocast_forecast_files`` (JSON: per
                                   source its options and ``{file: "size:mtime_ns"}`` when last
                                   written), ``hydrocast_forecast_rejected`` (JSON: per source
                                   ``{file: message}``)
================================== ==================================================================

Which run serves which issue date (the rule, once)
--------------------------------------------------
Only the **00 UTC run of D + 1** serves issue date D (:func:`hydrocast.sources.nwp.lead_days_for_issue`):
it is the first run made once day D is over, and its lead day k (24 h steps ``24(k-1)..24k``) is
exactly the UTC day D + k, so store lead n = the run's lead day n. 06/12/18 UTC runs (their 24 h
windows straddle UTC days) and older or later runs are not stored. When several runs of one source
serve the same D (a deterministic and an ensemble run, say) the **deterministic** one is kept, of
stream ``oper`` before others, then the one with more lead days; a stored run is never replaced by
a worse-ranked one (e.g. after its files were deleted).

Values
------
A run is read by :mod:`hydrocast.sources.nwp` (``tp`` de-accumulated into daily totals in mm,
members averaged), clipped first to the grid's lon/lat bounds plus ``[cube] margin_cells``
(:meth:`hydrocast.grid.GridSpec.lonlat_bounds`) and regridded with :mod:`hydrocast.regrid`
(default ``average``: GDAL's area-weighted mean, which conserves mm over the region). Leads past
``max_lead_days`` are dropped.

Updates
-------
Incremental, atomic and locked, like the cube: a rerun whose forecast files (names, sizes, mtimes)
and source options are those recorded in ``hydrocast_forecast_files`` opens no GRIB file and does not
touch the store. Otherwise every file's headers are scanned (no data decoded) and only runs that are
new, or whose files changed (their signature differs from the issue day's ``sig=``), are read; the
others are copied over. The store is only ever replaced whole: a temporary ``.<name>.<pid>.tmp`` in
the same folder, then :func:`hydrocast.fsio.commit` (fsync, ``os.replace``), under a FileLock
``<store>.lock`` (a second writer exits 75). A bad file is rejected with its one-line BadInputError
(listed in the ingest result, exit 65), the other files are still ingested; ``--strict`` makes a
rejection fatal before the store is replaced. A run whose files disappeared stays in the store.
Issue days for which no run could be read are dropped at the next rewrite.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, acdd, fsio
from .config import FORECAST_KINDS, Config, SourceConfig
from .cube import EPOCH, QUANTITY_ATTRS, TIME_UNITS, _grid_mapping_attrs, _xy_attrs, days_to_int, int_to_days
from .errors import BadInputError, ConfigError
from .grid import GridSpec

STORE_SUFFIX = ".forecasts.nc"
DEFAULT_MAX_LEAD_DAYS = 10
DAY = np.timedelta64(1, "D")
#: issue days per chunk of a forecast variable (reads are by issue day)
CHUNK_ISSUES = 8
#: issue days per block when the old store is copied into the new one
COPY_BLOCK = 64
#: the variable of an ensemble source's members: ``<name>`` + this
ENSEMBLE_SUFFIX = "_ensemble"


# -- where, and which sources ----------------------------------------------------------------------

def store_path(cfg: Config) -> Path:
    """The forecast store of ``cfg``: ``[cube] forecast_path``, else ``<cube stem>.forecasts.nc`` beside the cube."""
    if cfg.cube.forecast_path is not None:
        return cfg.resolve(cfg.cube.forecast_path)
    cube = cfg.resolve(cfg.cube.path)
    return cube.with_name(cube.stem + STORE_SUFFIX)


def forecast_sources(cfg: Config) -> list[SourceConfig]:
    """The ``[[sources]]`` of a forecast kind (:data:`hydrocast.config.FORECAST_KINDS`)."""
    return [s for s in cfg.sources if s.kind in FORECAST_KINDS]


def keeps_members(source: SourceConfig) -> bool:
    """Does the store keep the members of this source's ensemble runs (``members = "keep"``)?"""
    return source.options.get("members", "keep") == "keep"


def ensemble_source(cfg: Config, forecasts, model_source: str | None) -> str | None:
    """The store variable whose ensemble members predict and evaluate run the model on (module
    doc of :mod:`hydrocast.forecasts`), or None: ``[train] ensemble_source`` = "auto" takes the
    model's own forecast source where the store keeps its members, else the first nwp source whose
    members it keeps; none where the store (``forecasts``, a ForecastReader or None) keeps none, or
    the model reads no weather forecast (``model_source`` None)."""
    name = cfg.train.ensemble_source
    nwp = [s.name for s in cfg.sources if s.kind.startswith("nwp_")]
    if name == "none" or not model_source:
        return None
    if name != "auto" and name not in nwp:
        raise ConfigError(f"{cfg.where('train', 'ensemble_source')}: {name!r} is not a source of kind nwp_grib or "
                          f"nwp_netcdf (those are: {', '.join(nwp) or 'none'})")
    kept = list(getattr(forecasts, "ensembles", []))
    if name != "auto":
        return name if name in kept else None
    for cand in [model_source] + nwp:
        if cand in kept:
            return cand
    return None


# -- what is in a store -----------------------------------------------------------------------------

@dataclass
class StoreIndex:
    """What an existing store holds, without its data."""

    path: Path
    grid: GridSpec
    days: np.ndarray  # datetime64[D], sorted
    n_leads: int
    names: list[str]
    provenance: dict[str, list[str]]  # name -> one string per issue day
    members: dict[str, np.ndarray]
    attrs: dict[str, dict]  # name -> variable attrs
    files: dict = field(default_factory=dict)  # hydrocast_forecast_files
    rejected: dict = field(default_factory=dict)  # hydrocast_forecast_rejected
    ensembles: list[str] = field(default_factory=list)  # names with a <name>_ensemble variable
    n_realizations: int = 0

    def ensemble_days(self, name: str) -> np.ndarray:
        """bool (issue_day,): True where ``<name>_ensemble`` holds the members of the day's run."""
        if name not in self.ensembles:
            return np.zeros(len(self.days), bool)
        return np.array([" ensemble run " in t for t in self.provenance[name]], dtype=bool)


def read_index(path: Path) -> StoreIndex:
    """Read the grid, the issue days, the names and the provenance of a store (BadInputError if unreadable)."""
    import netCDF4

    try:
        with netCDF4.Dataset(path) as ds:
            grid = GridSpec.from_dict(json.loads(ds.getncattr("hydrocast_grid")))
            n = ds.dimensions["issue_day"].size
            days = int_to_days(ds.variables["issue_day"][:].filled(0)) if n else np.array([], "datetime64[D]")
            names = json.loads(ds.getncattr("hydrocast_forecast_variables"))
            prov = {nm: [str(s) for s in ds.variables[f"{nm}_source"][:]] if n else [] for nm in names}
            members = {nm: np.asarray(ds.variables[f"{nm}_members"][:].filled(0)) for nm in names}
            attrs = {nm: {k: ds.variables[nm].getncattr(k) for k in ds.variables[nm].ncattrs()} for nm in names}
            files = json.loads(ds.getncattr("hydrocast_forecast_files"))
            rejected = json.loads(ds.getncattr("hydrocast_forecast_rejected"))
            n_leads = ds.dimensions["lead"].size
            ensembles = [nm for nm in names if nm + ENSEMBLE_SUFFIX in ds.variables]
            n_real = ds.dimensions["realization"].size if "realization" in ds.dimensions else 0
    except (OSError, KeyError, AttributeError, ValueError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: not a readable hydrocast forecast store ({exc}); "
                            "move it away to start a new one") from None
    return StoreIndex(Path(path), grid, days, n_leads, names, prov, members, attrs, files, rejected, ensembles,
                      n_real)


# -- the reader API (the model side) ------------------------------------------------------------------

class ForecastReader:
    """Read access to a store. A context manager; :meth:`close` releases the file.

    ``names`` (list of forecast variables), ``issue_days`` (datetime64[D] array), ``n_leads`` (Lmax)."""

    def __init__(self, path: str | os.PathLike):
        import netCDF4

        self.path = Path(path)
        idx = read_index(self.path)
        self.names: list[str] = list(idx.names)
        self.issue_days: np.ndarray = idx.days
        self.n_leads: int = int(idx.n_leads)
        self.grid = idx.grid
        self._has = {nm: np.array([bool(s) for s in idx.provenance[nm]], dtype=bool) for nm in self.names}
        self.ensembles: list[str] = list(idx.ensembles)
        self._n_members = {nm: np.where(idx.ensemble_days(nm), idx.members[nm], 0).astype(int)
                           for nm in self.ensembles}
        try:
            self._ds = netCDF4.Dataset(self.path)
            ref = self._ds.variables["forecast_reference_time"][:] if len(self.issue_days) else np.ma.array([])
        except OSError as exc:
            raise BadInputError(f"{self.path}: cannot open the forecast store ({exc})") from None
        self._ref = np.where(np.ma.getmaskarray(ref), np.datetime64("NaT", "m"),
                             (EPOCH + np.ma.filled(ref, 0).astype("int64").astype("timedelta64[D]")
                              ).astype("datetime64[m]")) if len(self.issue_days) else np.array([], "datetime64[m]")

    def _positions(self, days) -> tuple[np.ndarray, np.ndarray]:
        """(hit mask, index into issue_days) for ``days``."""
        days = np.atleast_1d(np.asarray(days, dtype="datetime64[D]"))
        n = len(self.issue_days)
        if n == 0:
            return np.zeros(days.shape, bool), np.zeros(days.shape, int)
        pos = np.clip(np.searchsorted(self.issue_days, days), 0, n - 1)
        return self.issue_days[pos] == days, pos

    def _check(self, name: str) -> None:
        if name not in self.names:
            raise KeyError(f"{self.path}: no forecast variable {name!r} (it holds {', '.join(self.names) or 'none'})")

    def _cells(self, cells) -> tuple[slice, slice, int, int]:
        """(rows, cols, height, width) of ``cells`` (a (rows, cols) pair of slices of the grid, steps
        of 1; None: the whole grid)."""
        if cells is None:
            return slice(None), slice(None), self.grid.height, self.grid.width
        r0, r1, _ = cells[0].indices(self.grid.height)
        c0, c1, _ = cells[1].indices(self.grid.width)
        return slice(r0, r1), slice(c0, c1), max(r1 - r0, 0), max(c1 - c0, 0)

    def read(self, name: str, days, n_leads: int, cells=None) -> np.ndarray:
        """float32 ``(len(days), n_leads, H, W)`` mm: lead n of issue date ``days[i]`` at ``[i, n - 1]``;
        NaN where the store has no forecast for that issue date or lead (any dates may be asked).
        ``cells`` (rows, cols slices): only that window of the grid is read (H, W its size)."""
        self._check(name)
        hit, pos = self._positions(days)
        rows, cols, h, w = self._cells(cells)
        out = np.full((hit.size, int(n_leads), h, w), np.nan, dtype="float32")
        take = min(int(n_leads), self.n_leads)
        if hit.any() and take > 0 and h and w:
            want = np.unique(pos[hit])
            block = np.ma.filled(self._ds.variables[name][want.tolist(), :take, rows, cols],
                                 np.nan).astype("float32")
            out[hit, :take] = block[np.searchsorted(want, pos[hit])]
        return out

    def member_count(self, name: str, days) -> np.ndarray:
        """int ``(len(days),)``: the members of the ensemble run stored for each issue date (0 where
        none: no run, a deterministic run, or a source whose store keeps only the mean)."""
        self._check(name)
        hit, pos = self._positions(days)
        if name not in self.ensembles or not len(self.issue_days):
            return np.zeros(hit.shape, int)
        return np.where(hit, self._n_members[name][pos], 0)

    def read_members(self, name: str, days, n_leads: int, n_members: int | None = None, cells=None) -> np.ndarray:
        """float32 ``(len(days), R, n_leads, H, W)`` mm: member r of the ensemble run of issue date
        ``days[i]`` at ``[i, r]`` (R = ``n_members``, default the store's realizations); NaN where a
        day has fewer members (see :meth:`member_count`) or no ensemble run. ``cells``: as :meth:`read`."""
        self._check(name)
        hit, pos = self._positions(days)
        n_real = self._ds.dimensions["realization"].size if "realization" in self._ds.dimensions else 0
        r = n_real if n_members is None else int(n_members)
        rows, cols, h, w = self._cells(cells)
        out = np.full((hit.size, r, int(n_leads), h, w), np.nan, dtype="float32")
        take, rr = min(int(n_leads), self.n_leads), min(r, n_real)
        if name in self.ensembles and hit.any() and take > 0 and rr > 0 and h and w:
            want = np.unique(pos[hit])
            var = self._ds.variables[name + ENSEMBLE_SUFFIX]
            block = np.ma.filled(var[want.tolist(), :rr, :take, rows, cols], np.nan).astype("float32")
            out[hit, :rr, :take] = block[np.searchsorted(want, pos[hit])]
        return out

    def available(self, name: str, days) -> np.ndarray:
        """bool ``(len(days),)``: True where a run of ``name`` is stored for the issue date."""
        self._check(name)
        hit, pos = self._positions(days)
        return hit & self._has[name][pos] if len(self.issue_days) else hit

    def reference_time(self, days) -> np.ndarray:
        """datetime64[m] ``(len(days),)``: the reference time of the runs of each issue date (NaT where none)."""
        hit, pos = self._positions(days)
        if not len(self.issue_days):
            return np.full(hit.shape, np.datetime64("NaT", "m"))
        return np.where(hit, self._ref[pos], np.datetime64("NaT", "m"))

    def close(self) -> None:
        ds, self._ds = getattr(self, "_ds", None), None
        if ds is not None:
            ds.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_forecasts(cfg: Config) -> ForecastReader | None:
    """The store of ``cfg`` opened for reading, or None when the config has no forecast source or no
    store exists yet."""
    path = store_path(cfg)
    if not forecast_sources(cfg) or not path.exists():
        return None
    return ForecastReader(path)


# -- planning -------------------------------------------------------------------------------------

@dataclass
class ForecastResult:
    """What one update did to the store (part of ``hydrocast ingest``'s result)."""

    store: Path
    changed: bool = False
    runs_added: int = 0  # (source, issue day) pairs newly stored
    runs_replaced: int = 0  # (source, issue day) pairs re-read (changed files)
    runs_ignored: int = 0  # runs that serve no issue date (06/12/18 UTC ...)
    issue_days: int = 0
    first_issue_day: str | None = None
    last_issue_day: str | None = None
    n_leads: int = 0
    variables: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in ("changed", "runs_added", "runs_replaced", "runs_ignored", "issue_days",
                                          "first_issue_day", "last_issue_day", "n_leads", "variables")}
        d["store"] = str(self.store)
        return d


@dataclass
class RunPlan:
    source: SourceConfig
    day: np.datetime64  # the issue date D
    candidates: list  # runs serving D, best first (the next is tried when one cannot be read)
    replaces: bool = False


@dataclass
class StorePlan:
    path: Path
    grid: GridSpec
    old: StoreIndex | None
    runs: list[RunPlan]
    files: dict  # the new hydrocast_forecast_files
    rejected: list  # ingest.Rejection
    rejected_map: dict  # source -> {file: message}
    ignored: int = 0


def _options(source: SourceConfig) -> dict:
    return {"kind": source.kind, "resampling": source.options.get("resampling", "average"),
            "max_lead_days": int(source.options.get("max_lead_days", DEFAULT_MAX_LEAD_DAYS)),
            "members": source.options.get("members", "keep"),
            **{k: source.options[k] for k in ("variable", "units") if k in source.options}}


def _file_map(files: list[Path]) -> dict[str, str]:
    out = {}
    for p in files:
        try:
            st = p.stat()
        except OSError:
            continue
        out[str(p)] = f"{st.st_size}:{st.st_mtime_ns}"
    return out


def run_signature(run, source: SourceConfig) -> str:
    """Signature of a run's files (names, sizes, mtimes) and of the source's options."""
    h = hashlib.sha1(json.dumps(_options(source), sort_keys=True).encode())
    for p in sorted(run.paths):
        st = Path(p).stat()
        h.update(f"{Path(p).name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:12]


def provenance(run, source: SourceConfig) -> str:
    paths = run.paths
    more = f" (+{len(paths) - 1} files)" if len(paths) > 1 else ""
    return f"{run.label}: {Path(paths[0]).name}{more} sig={run_signature(run, source)}"


def _rank(run) -> tuple:
    """Higher is better (the module doc's preference): deterministic, stream oper, more lead days."""
    return (not run.ensemble, run.stream == "oper", run.lead_days)


def _rank_of_text(text: str) -> tuple:
    """The first two parts of :func:`_rank` from a provenance string (a label of :mod:`.sources.nwp`)."""
    return ("deterministic run" in text, " oper " in text)


def issue_day_of(run) -> np.datetime64 | None:
    """The issue date a run serves (module doc), or None: only a 00 UTC run serves, the day before its date."""
    from .sources import nwp

    t = np.datetime64(run.reference_time, "m")
    day = t.astype("datetime64[D]") - DAY
    return day if nwp.lead_days_for_issue(t, day, 1) == [1] else None


def _scan(source: SourceConfig, files: list[Path], rejected: list) -> list:
    from .inputfiles import Rejection
    from .sources import nwp

    raw: list = []
    try:
        if source.kind == "nwp_grib":
            runs = nwp.scan_runs(files, rejected=raw)
        else:
            runs = nwp.scan_netcdf_runs(files, source.as_options(), rejected=raw)
    except BadInputError as exc:  # the same (member, step) in two files: nothing of this source is taken
        msg = str(exc)
        rejected.append(Rejection(msg.split(": ", 1)[0], msg))
        return []
    rejected.extend(Rejection(str(p), m) for p, m in raw)
    return runs


def plan_store(cfg: Config, grid: GridSpec | None = None, log: Callable[[str], None] = lambda s: None) -> StorePlan:
    """Which runs of the forecast sources to read into the store (module doc: "Updates")."""
    from .inputfiles import Rejection, expand_paths

    grid = grid or cfg.grid_spec()
    path = store_path(cfg)
    old = read_index(path) if path.exists() else None
    if old is not None and not old.grid.same_as(grid):
        raise BadInputError(f"{path}: was made on another grid ({old.grid.describe()}) than the config asks for "
                            f"({grid.describe()}); use another [cube] forecast_path or move the old store away")
    sources = forecast_sources(cfg)
    files_by_source = {s.name: expand_paths(cfg, s) for s in sources}
    new_files = {s.name: {"options": _options(s), "files": _file_map(files_by_source[s.name])} for s in sources}
    rejected: list = []
    if old is not None and old.files == new_files:  # nothing new: no GRIB file is opened
        for bad in old.rejected.values():
            rejected.extend(Rejection(p, m) for p, m in bad.items())
        return StorePlan(path, grid, old, [], new_files, rejected, old.rejected)
    plans: list[RunPlan] = []
    rejected_map: dict = {}
    ignored = 0
    for source in sources:
        files = files_by_source[source.name]
        if not files:
            log(f"{source.name}: no file matches {source.paths}")
        mine: list = []
        runs = _scan(source, files, mine) if files else []
        rejected += mine
        rejected_map[source.name] = {r.path: r.message for r in mine}
        per_day: dict = defaultdict(list)
        for run in runs:
            day = issue_day_of(run)
            if day is None or run.lead_days < 1:
                ignored += 1
                continue
            per_day[day].append(run)
        old_pos = {d: i for i, d in enumerate(old.days)} if old is not None else {}
        old_prov = old.provenance.get(source.name) if old is not None else None
        for day in sorted(per_day):
            cands = sorted(per_day[day], key=_rank, reverse=True)
            text = old_prov[old_pos[day]] if old_prov is not None and day in old_pos else ""
            if text:
                sig = text.rsplit("sig=", 1)[-1]
                if any(run_signature(r, source) == sig for r in cands):
                    continue  # the stored run, unchanged
                if _rank_of_text(text) > _rank(cands[0])[:2]:
                    continue  # never replace a better run by a worse one
            plans.append(RunPlan(source, day, cands, replaces=bool(text)))
    return StorePlan(path, grid, old, plans, new_files, rejected, rejected_map, ignored)


# -- reading and writing -----------------------------------------------------------------------------

def _read_run(run, source: SourceConfig, day, reader, grid: GridSpec) -> tuple[np.ndarray, int, np.ndarray | None]:
    """The run's leads 1..K for issue date ``day`` on ``grid``: ((K, H, W) float32 mm member mean,
    members, (members, K, H, W) every member where the source keeps them and the run is an ensemble)."""
    from .regrid import regrid_array
    from .sources import nwp

    da = nwp.read_netcdf_run(run, reader.bbox) if source.kind == "nwp_netcdf" else reader.read(run)
    max_lead = int(source.options.get("max_lead_days", DEFAULT_MAX_LEAD_DAYS))
    k_run = da.sizes["lead_day"]
    leads = nwp.lead_days_for_issue(run.reference_time, day, min(k_run, max_lead), run_lead_days=k_run)
    values = np.asarray(da.values, dtype="float32")
    with np.errstate(invalid="ignore"):
        mean = values.mean(axis=0, keepdims=True)  # member mean (NaN where a member lacks the cell)
    each = bool(run.ensemble) and keeps_members(source)
    stack = np.concatenate([mean, values]) if each else mean  # (1 [+ M], K_run, h, w)
    field_ = np.full(stack.shape[:1] + (len(leads),) + stack.shape[2:], np.nan, dtype="float32")
    for n, k in enumerate(leads):
        if k is not None:
            field_[:, n] = stack[:, k - 1]
    out = regrid_array(field_, da["x"].values, da["y"].values, "EPSG:4326", grid,
                       source.options.get("resampling", "average"), Path(run.paths[0]).name)
    out = out.reshape(field_.shape[:2] + out.shape[-2:])
    return out[0], values.shape[0], (out[1:] if each else None)


def _lead_count(plan: RunPlan) -> int:
    return min(max(r.lead_days for r in plan.candidates),
               int(plan.source.options.get("max_lead_days", DEFAULT_MAX_LEAD_DAYS)))


def write_store(plan: StorePlan, bbox, strict: bool = False, log: Callable[[str], None] = lambda s: None,
                institution: str | None = None) -> ForecastResult:
    """Carry out ``plan``: read its runs, copy the old store, replace it atomically (module doc)."""
    from .inputfiles import Rejection
    from .inputfiles import rejection_summary as _rejection_summary
    from .sources import nwp

    result = ForecastResult(store=plan.path)
    old = plan.old
    if not plan.runs:
        _summary(result, old)
        return result  # nothing new: the store is not touched
    names = list(old.names) if old is not None else []
    for r in plan.runs:
        if r.source.name not in names:
            names.append(r.source.name)
    keep_old = np.zeros(0, bool) if old is None else np.array(
        [any(old.provenance[nm][i] for nm in old.names) for i in range(len(old.days))], dtype=bool)
    days = np.unique(np.concatenate([old.days[keep_old] if old is not None else np.array([], "datetime64[D]"),
                                     np.array([r.day for r in plan.runs], dtype="datetime64[D]")]))
    n_leads = max([old.n_leads if old is not None else 0] + [_lead_count(r) for r in plan.runs])
    ensembles, n_real = _ensemble_layout(plan, names)
    attrs = {nm: dict(QUANTITY_ATTRS["precipitation"]) for nm in names}
    for nm in names:
        attrs[nm]["long_name"] = f"forecast precipitation total of the lead's UTC day ({nm})"
    path = plan.path
    fsio.clean_stale(path.parent, path.name)
    tmp = fsio.tmp_path(path)
    try:
        with fsio.write_errors(path):
            ds = _create(tmp, plan.grid, days, n_leads, names, attrs, plan, institution, ensembles, n_real)
            try:
                pos = {d: i for i, d in enumerate(days)}
                if old is not None:
                    _copy_old(ds, old, keep_old, pos, ensembles)
                counts = {"added": 0, "replaced": 0}
                with nwp.RunReader(bbox) as reader:
                    for rp in plan.runs:
                        _write_run(ds, rp, pos[rp.day], reader, plan.grid, counts, plan.rejected, Rejection)
                if strict and plan.rejected:
                    raise BadInputError(_rejection_summary(plan.rejected, strict=True))
                refs = days + DAY
                ds.variables["forecast_reference_time"][:] = days_to_int(refs)
            finally:
                ds.close()
            fsio.commit(tmp, path)
    except BaseException:
        fsio.discard(tmp)
        raise
    result.changed = True
    result.runs_added, result.runs_replaced, result.runs_ignored = counts["added"], counts["replaced"], plan.ignored
    _summary(result, read_index(path))
    log(f"{path.name}: {result.runs_added} run(s) added, {result.runs_replaced} replaced, "
        f"{result.issue_days} issue day(s) in all")
    return result


def _ensemble_layout(plan: StorePlan, names: list[str]) -> tuple[list[str], int]:
    """(names that get a ``<name>_ensemble`` variable, realizations R) of the new store: the sources
    keeping members that had one or have an ensemble run to read (R only ever grows)."""
    old = plan.old
    keep = {r.source.name: keeps_members(r.source) for r in plan.runs}
    sizes = [old.n_realizations if old is not None else 0]
    ensembles = set()
    for r in plan.runs:
        ens = [len(c.members) for c in r.candidates if c.ensemble]
        if keep[r.source.name] and ens:
            ensembles.add(r.source.name)
            sizes.append(max(ens))
    if old is not None:  # a source whose option went to "mean" re-reads every run (its signature changed)
        ensembles |= {nm for nm in old.ensembles if keep.get(nm, True)}
    return [nm for nm in names if nm in ensembles], max(sizes)


def _write_run(ds, rp: RunPlan, index: int, reader, grid, counts, rejected, Rejection) -> None:
    name = rp.source.name
    for run in rp.candidates:
        try:
            data, members, each = _read_run(run, rp.source, rp.day, reader, grid)
        except BadInputError as exc:
            rejected.append(Rejection(str(run.paths[0]), str(exc)))
            continue
        except (OSError, ValueError, KeyError, RuntimeError) as exc:  # a reader bug must not lose the run
            rejected.append(Rejection(str(run.paths[0]), f"{run.paths[0]}: unreadable ({type(exc).__name__}: {exc})"))
            continue
        var = ds.variables[name]
        block = np.full((var.shape[1],) + data.shape[1:], np.nan, dtype="float32")
        block[:data.shape[0]] = data
        var[index] = block
        ds.variables[f"{name}_members"][index] = members
        if name + ENSEMBLE_SUFFIX in ds.variables:
            ens = ds.variables[name + ENSEMBLE_SUFFIX]
            block = np.full(ens.shape[1:], np.nan, dtype="float32")
            if each is not None:
                block[:each.shape[0], :each.shape[1]] = each
            ens[index] = block  # (a deterministic run replacing an ensemble one leaves no stale member)
        ds.variables[f"{name}_source"][index] = provenance(run, rp.source)
        counts["replaced" if rp.replaces else "added"] += 1
        return
    # no candidate could be read: whatever the old store held for the day stays (copied already)


def _copy_old(ds, old: StoreIndex, keep: np.ndarray, pos: dict, ensembles: list[str]) -> None:
    import netCDF4

    src_idx = np.flatnonzero(keep)
    with netCDF4.Dataset(old.path) as src:
        for a in range(0, src_idx.size, COPY_BLOCK):
            sel = src_idx[a:a + COPY_BLOCK]
            dst = [pos[old.days[i]] for i in sel]
            for nm in old.names:
                block = np.ma.filled(src.variables[nm][sel.tolist()], np.nan).astype("float32")
                ds.variables[nm][dst, :old.n_leads] = block
                ds.variables[f"{nm}_members"][dst] = np.ma.filled(src.variables[f"{nm}_members"][sel.tolist()], 0)
                if nm in ensembles and nm in old.ensembles:
                    block = np.ma.filled(src.variables[nm + ENSEMBLE_SUFFIX][sel.tolist()], np.nan)
                    ds.variables[nm + ENSEMBLE_SUFFIX][dst, :old.n_realizations, :old.n_leads] = block
                prov = ds.variables[f"{nm}_source"]
                for j, i in zip(dst, sel):
                    prov[j] = old.provenance[nm][i]


def _create(tmp: Path, grid: GridSpec, days: np.ndarray, n_leads: int, names: list[str], attrs: dict,
            plan: StorePlan, institution: str | None, ensembles: list[str] = (), n_real: int = 0):
    """A new, empty store file with every variable (data NaN, provenance "")."""
    import netCDF4

    ds = netCDF4.Dataset(tmp, "w", format="NETCDF4")
    try:
        n = len(days)
        ds.createDimension("issue_day", n)
        ds.createDimension("lead", n_leads)
        ds.createDimension("y", grid.height)
        ds.createDimension("x", grid.width)
        ds.createDimension("nv", 2)
        if ensembles:
            ds.createDimension("realization", n_real)
            v = ds.createVariable("realization", "i4", ("realization",))
            v.setncatts({"standard_name": "realization", "units": "1", "coverage_content_type": "coordinate",
                         "long_name": "ensemble member (0: the control run, then the perturbed members)"})
            v[:] = np.arange(n_real, dtype="int32")
        v = ds.createVariable("issue_day", "i4", ("issue_day",))
        v.setncatts({"long_name": "issue date D: the last UTC day of observations before the forecast; "
                                  "lead n is the UTC day D + n",
                     "units": TIME_UNITS, "calendar": "standard", "coverage_content_type": "coordinate"})
        v[:] = days_to_int(days)
        v = ds.createVariable("forecast_reference_time", "i4", ("issue_day",))
        v.setncatts({"standard_name": "forecast_reference_time", "units": TIME_UNITS, "calendar": "standard",
                     "long_name": "reference time of the runs serving the issue date (00 UTC of D + 1)",
                     "coverage_content_type": "coordinate"})
        v = ds.createVariable("lead", "i4", ("lead",))
        v.setncatts({"standard_name": "forecast_period", "units": "days", "bounds": "lead_bnds",
                     "long_name": "lead n: the n-th UTC day after the issue date",
                     "coverage_content_type": "coordinate"})
        v[:] = np.arange(1, n_leads + 1, dtype="int32")
        v = ds.createVariable("lead_bnds", "i4", ("lead", "nv"))
        v[:] = np.stack([np.arange(n_leads), np.arange(1, n_leads + 1)], axis=1).astype("int32")
        xa, ya = _xy_attrs(grid)
        v = ds.createVariable("x", "f8", ("x",))
        v.setncatts({**xa, "coverage_content_type": "coordinate"})
        v[:] = grid.x
        v = ds.createVariable("y", "f8", ("y",))
        v.setncatts({**ya, "coverage_content_type": "coordinate"})
        v[:] = grid.y
        v = ds.createVariable("crs", "i4", ())
        v.setncatts(_grid_mapping_attrs(grid))
        chunks = (max(1, min(CHUNK_ISSUES, n)), max(1, n_leads), min(grid.height, 256), min(grid.width, 256))
        for nm in names:
            v = ds.createVariable(nm, "f4", ("issue_day", "lead", "y", "x"), zlib=True, complevel=4, shuffle=True,
                                  chunksizes=chunks, fill_value=np.float32(np.nan))
            v.setncatts({"coverage_content_type": "modelResult",
                         **{k: a for k, a in attrs[nm].items() if k != "_FillValue"},
                         "grid_mapping": "crs", "coordinates": "forecast_reference_time"})
            if nm in ensembles:
                v = ds.createVariable(nm + ENSEMBLE_SUFFIX, "f4", ("issue_day", "realization", "lead", "y", "x"),
                                      zlib=True, complevel=4, shuffle=True, fill_value=np.float32(np.nan),
                                      chunksizes=(1, max(1, n_real)) + chunks[1:])
                v.setncatts({"coverage_content_type": "modelResult",
                             **{k: a for k, a in attrs[nm].items() if k not in ("_FillValue", "long_name")},
                             "long_name": f"forecast precipitation total of the lead's UTC day, every ensemble "
                                          f"member ({nm}; {nm} is their mean)",
                             "grid_mapping": "crs", "coordinates": "forecast_reference_time"})
            v = ds.createVariable(f"{nm}_members", "i4", ("issue_day",))
            v.setncatts({"long_name": f"ensemble members averaged into {nm} (1: deterministic run, 0: no run)",
                         "units": "1", "coverage_content_type": "auxiliaryInformation"})
            if n:
                v[:] = np.zeros(n, "int32")
            v = ds.createVariable(f"{nm}_source", str, ("issue_day",))
            v.setncatts({"long_name": f"provenance of each issue day of {nm}: run, files, signature",
                         "coverage_content_type": "auxiliaryInformation"})
        valid = np.stack([days + DAY, days + DAY * (n_leads + 1)], axis=-1) if n else np.zeros((0, 2), "datetime64[D]")
        span = f"issue dates {days[0]}..{days[-1]}" if n else "no issue date"
        ds.setncatts(acdd.discovery_attrs(
            title="hydrocast forecast store: daily precipitation of weather-forecast runs",
            summary=(f"Daily precipitation totals of numerical weather prediction runs by issue date and lead "
                     f"day, regridded onto the hydrocast grid ({grid.width}x{grid.height}, {grid.crs.name}), "
                     f"{span}, leads 1..{n_leads}: {', '.join(names)}. Ensemble runs are member means"
                     + (f"; every member is kept in {', '.join(nm + ENSEMBLE_SUFFIX for nm in ensembles)}."
                        if ensembles else ".")),
            keywords="precipitation, weather forecast, NWP, ECMWF, hydrology, river discharge forecasting",
            source=f"hydrocast {__version__} ingest",
            processing_level="de-accumulated daily totals of forecast products, regridded to the hydrocast grid",
            comment=("Times are UTC. issue_day D is the last observed day; its forecasts come from the 00 UTC run "
                     "of D + 1 (forecast_reference_time); lead n is the UTC day D + n, [reference + (n - 1) days, "
                     "reference + n days) (lead_bnds)."),
            institution=institution, extent=acdd.grid_extent(grid), coverage=acdd.time_coverage(valid),
            extra={"hydrocast_grid": json.dumps(grid.to_dict()),
                   "hydrocast_forecast_variables": json.dumps(names),
                   "hydrocast_forecast_files": json.dumps(plan.files, sort_keys=True),
                   "hydrocast_forecast_rejected": json.dumps(plan.rejected_map, sort_keys=True)}))
    except BaseException:
        ds.close()
        raise
    return ds


def _summary(result: ForecastResult, index: StoreIndex | None) -> None:
    if index is None:
        return
    result.issue_days = int(len(index.days))
    if len(index.days):
        result.first_issue_day, result.last_issue_day = str(index.days[0]), str(index.days[-1])
    result.n_leads = int(index.n_leads)
    result.variables = list(index.names)


# -- the whole update -----------------------------------------------------------------------------------

def store_lock(path: Path):
    """The FileLock ``<store>.lock`` (timeout 0: a second writer gets BusyError, exit 75)."""
    path = Path(path)
    return fsio.held_lock(path, f"{path}: another hydrocast run is writing this forecast store "
                          "(lock {lock} is held); try later")


def update_store(cfg: Config, strict: bool = False, log: Callable[[str], None] = lambda s: None
                 ) -> tuple[ForecastResult, list]:
    """Bring the store of ``cfg`` up to date with its forecast sources: (result, rejections).

    ``hydrocast ingest`` does this after the cube (under the cube's lock too); with ``strict`` a
    rejected file raises BadInputError before the store is replaced."""
    from .inputfiles import rejection_summary as _rejection_summary

    grid = cfg.grid_spec()
    with store_lock(store_path(cfg)):
        plan = plan_store(cfg, grid, log)
        if strict and plan.rejected:
            raise BadInputError(_rejection_summary(plan.rejected, strict=True))
        result = write_store(plan, grid.lonlat_bounds(cfg.cube.margin_cells), strict=strict, log=log)
    return result, plan.rejected
