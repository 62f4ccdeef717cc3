"""The data cube: one CF-1.8 NetCDF file that every later stage reads.

Contract (written once, here)
=============================

============================ =====================================================================
dimensions                   ``time`` (daily, contiguous: a day with no data is all-NaN, never
                             absent), ``y``, ``x`` (the grid's cell centres, y north→south), ``nv``
``time``                     int32 ``days since 1970-01-01``, the start (00:00 UTC) of each day,
                             with ``time_bnds`` (time, nv) = [day, day + 1)
``x``, ``y``                 float64 cell centres; ``longitude``/``latitude`` standard names on a
                             geographic grid, ``projection_x/y_coordinate`` otherwise
``crs``                      grid mapping variable (pyproj ``CRS.to_cf()``, ``crs_wkt``,
                             ``spatial_ref``, ``GeoTransform``); every data variable names it
dynamic variables            float32 (time, y, x), NaN = missing, zlib + shuffle, chunked
                             (≤ 32 days, ≤ 256 × 256 cells) for the window reads of training.
                             ``precipitation``: daily total in mm
                             (``lwe_thickness_of_precipitation_amount``, ``time: sum``);
                             ``soil_moisture``: daily mean in m3 m-3
                             (``volume_fraction_of_condensed_water_in_soil``); other names keep
                             the units their reader gives.
``<name>_source``            string (time): provenance of each day of ``<name>``: the run, the
                             first source file, how many files and a signature of the file set;
                             "" where no file gave the day. ``missing: <why>`` where files existed
                             but the day was left missing (e.g. too few half-hours).
static variables             float32 (y, x): ``elevation``, ``slope``, ``upstream_area`` ... from
                             the DEM source (see hydrocast.terrain)
global attributes            ``Conventions = "CF-1.8, ACDD-1.3"`` and the ACDD discovery set of
                             :mod:`hydrocast.acdd` (summary, license, creator, geospatial and
                             time coverage, ``date_created`` ...), ``hydrocast_version``,
                             ``hydrocast_grid`` (JSON GridSpec), ``hydrocast_dynamic`` /
                             ``hydrocast_static`` (JSON lists of names),
                             ``hydrocast_static_source`` (DEM file signature), ``history``.
                             Every variable but ``time_bnds`` and ``crs`` has
                             ``coverage_content_type`` (dynamic: ``physicalMeasurement``, static
                             and ``*_source``: ``auxiliaryInformation``, unless the attrs say)
============================ =====================================================================

The cube is only ever replaced whole: :class:`CubeWriter` writes a temporary file in the same
folder, fsyncs it and ``os.replace``-s it over the old one, so a run killed at any moment leaves
the previous cube readable and complete. A failed write (a full disk) is a one-line
DiskFullError naming the cube (exit 74); the old cube stays.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, acdd, fsio
from .errors import BadInputError
from .grid import GridSpec

EPOCH = np.datetime64("1970-01-01", "D")
TIME_UNITS = "days since 1970-01-01 00:00:00"

#: CF attributes for well-known cube variables, by the ``quantity`` they hold.
QUANTITY_ATTRS = {
    "precipitation": {
        "units": "mm", "standard_name": "lwe_thickness_of_precipitation_amount",
        "long_name": "daily precipitation total", "cell_methods": "time: sum"},
    "soil_moisture": {
        "units": "m3 m-3", "standard_name": "volume_fraction_of_condensed_water_in_soil",
        "long_name": "surface soil moisture, daily", "cell_methods": "time: mean"},
    "liquid_fraction": {
        "units": "percent", "long_name": "probability that precipitation is liquid (daily mean)",
        "cell_methods": "time: mean"},
    "frozen_fraction": {
        "units": "1", "long_name": "fraction of the cell flagged frozen or snow-covered by ESA CCI SM",
        "cell_methods": "time: mean"},
}


def days_to_int(days: np.ndarray) -> np.ndarray:
    return (np.asarray(days, dtype="datetime64[D]") - EPOCH).astype("int32")


def int_to_days(values: np.ndarray) -> np.ndarray:
    return EPOCH + np.asarray(values, dtype="int64").astype("timedelta64[D]")


@dataclass
class CubeIndex:
    """What is in an existing cube, without its data."""

    path: Path
    grid: GridSpec
    days: np.ndarray  # datetime64[D]
    dynamic: dict[str, dict]  # name -> attrs
    static: dict[str, dict]
    provenance: dict[str, list[str]] = field(default_factory=dict)  # name -> one string per day
    static_source: str = ""

    def day_index(self) -> dict[np.datetime64, int]:
        return {d: i for i, d in enumerate(self.days)}


def read_index(path: Path) -> CubeIndex:
    """Read the grid, the time axis, the variable list and the provenance of a cube."""
    import netCDF4

    try:
        with netCDF4.Dataset(path) as ds:
            grid = GridSpec.from_dict(json.loads(ds.getncattr("hydrocast_grid")))
            days = int_to_days(ds.variables["time"][:].filled(0)) if ds.dimensions["time"].size else \
                np.array([], dtype="datetime64[D]")
            dyn_names = json.loads(ds.getncattr("hydrocast_dynamic"))
            st_names = json.loads(ds.getncattr("hydrocast_static"))
            dynamic = {n: {k: ds.variables[n].getncattr(k) for k in ds.variables[n].ncattrs()} for n in dyn_names}
            static = {n: {k: ds.variables[n].getncattr(k) for k in ds.variables[n].ncattrs()} for n in st_names}
            prov = {n: [str(s) for s in ds.variables[f"{n}_source"][:]] for n in dyn_names}
            static_source = ds.getncattr("hydrocast_static_source") if "hydrocast_static_source" in ds.ncattrs() else ""
    except (OSError, KeyError, AttributeError, ValueError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: not a readable hydrocast cube ({exc}); move it away to start a new one") from None
    return CubeIndex(Path(path), grid, days, dynamic, static, prov, static_source)


def _grid_mapping_attrs(grid: GridSpec) -> dict:
    attrs = {}
    for k, v in grid.crs.to_cf().items():
        if isinstance(v, (list, tuple)):
            v = np.asarray(v, dtype="float64")
        attrs[k] = v
    wkt = grid.crs.to_wkt()
    attrs["crs_wkt"] = wkt
    attrs["spatial_ref"] = wkt  # GDAL and rioxarray read this name
    t = grid.transform
    attrs["GeoTransform"] = " ".join(str(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e))
    return attrs


def _xy_attrs(grid: GridSpec) -> tuple[dict, dict]:
    if grid.is_geographic:
        return ({"standard_name": "longitude", "long_name": "longitude of cell centre", "units": "degrees_east",
                 "axis": "X"},
                {"standard_name": "latitude", "long_name": "latitude of cell centre", "units": "degrees_north",
                 "axis": "Y"})
    unit = grid.crs.axis_info[0].unit_name if grid.crs.axis_info else "metre"
    unit = {"metre": "m", "meter": "m"}.get(unit, unit)
    return ({"standard_name": "projection_x_coordinate", "long_name": "x of cell centre", "units": unit, "axis": "X"},
            {"standard_name": "projection_y_coordinate", "long_name": "y of cell centre", "units": unit, "axis": "Y"})


def _writes(method):
    """A writing method of :class:`CubeWriter`: a write failure becomes a one-line error naming the
    cube (:func:`hydrocast.fsio.write_errors`: disk full → DiskFullError, exit 74), and any failure
    removes the temporary file at once (the old cube stays as it was)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except BaseException as exc:
            # translated before the temporary file is dropped: the check for a full disk must see it
            path = getattr(self, "path", None)
            err = fsio.translate_write_error(exc, path) if path is not None and isinstance(exc, Exception) else None
            self.abort()
            if err is None:
                raise
            raise err from exc
    return wrapper


class CubeWriter:
    """Writes a complete new cube to a temporary file beside ``path``; :meth:`commit` replaces.

    Use as a context manager: leaving the block without :meth:`commit` removes the temporary
    file and leaves the old cube untouched. The temporary file (``.<name>.<pid>.tmp``) lives for
    the whole ingest; the leftovers of killed runs are removed when a writer starts. A write that
    fails (a full disk: netCDF4 reports "NetCDF: HDF error") raises DiskFullError naming the cube."""

    @_writes
    def __init__(self, path: Path, grid: GridSpec, days: np.ndarray, dynamic: dict[str, dict],
                 static: dict[str, dict], chunk_days: int = 32, *, institution: str | None = None,
                 global_attrs: dict | None = None):
        """``institution`` and ``global_attrs`` (extra global attributes, e.g. ``creator_email``)
        go into the ACDD discovery attributes (:mod:`hydrocast.acdd`)."""
        import netCDF4

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fsio.clean_stale(self.path.parent, self.path.name)
        self.tmp = fsio.tmp_path(self.path)
        self.days = np.asarray(days, dtype="datetime64[D]")
        self.dynamic, self.static = dynamic, static
        self.ds = ds = netCDF4.Dataset(self.tmp, "w", format="NETCDF4")
        nt = len(self.days)
        ds.createDimension("time", nt)
        ds.createDimension("y", grid.height)
        ds.createDimension("x", grid.width)
        ds.createDimension("nv", 2)
        t = ds.createVariable("time", "i4", ("time",))
        t.setncatts({"standard_name": "time", "long_name": "start of day (UTC)", "units": TIME_UNITS,
                     "calendar": "standard", "axis": "T", "bounds": "time_bnds", "coverage_content_type": "coordinate"})
        ti = days_to_int(self.days)
        t[:] = ti
        tb = ds.createVariable("time_bnds", "i4", ("time", "nv"))
        tb[:] = np.stack([ti, ti + 1], axis=1) if nt else np.zeros((0, 2), "i4")
        xa, ya = _xy_attrs(grid)
        x = ds.createVariable("x", "f8", ("x",))
        x.setncatts({**xa, "coverage_content_type": "coordinate"})
        x[:] = grid.x
        y = ds.createVariable("y", "f8", ("y",))
        y.setncatts({**ya, "coverage_content_type": "coordinate"})
        y[:] = grid.y
        crs = ds.createVariable("crs", "i4", ())
        crs.setncatts(_grid_mapping_attrs(grid))
        chunks = (max(1, min(chunk_days, nt)), min(grid.height, 256), min(grid.width, 256))
        for name, attrs in dynamic.items():
            v = ds.createVariable(name, "f4", ("time", "y", "x"), zlib=True, complevel=4, shuffle=True,
                                  chunksizes=chunks, fill_value=np.float32(np.nan))
            v.setncatts({"coverage_content_type": "physicalMeasurement",
                         **{k: val for k, val in attrs.items() if k != "_FillValue"}, "grid_mapping": "crs"})
            p = ds.createVariable(f"{name}_source", str, ("time",))
            p.setncatts({"long_name": f"provenance of each day of {name}: run, files, signature",
                         "coverage_content_type": "auxiliaryInformation"})
        for name, attrs in static.items():
            v = ds.createVariable(name, "f4", ("y", "x"), zlib=True, complevel=4, shuffle=True,
                                  fill_value=np.float32(np.nan))
            v.setncatts({"coverage_content_type": "auxiliaryInformation",
                         **{k: val for k, val in attrs.items() if k != "_FillValue"}, "grid_mapping": "crs"})
        span = f"{self.days[0]}..{self.days[-1]}" if nt else "no days yet"
        ds.setncatts(acdd.discovery_attrs(
            title="hydrocast data cube: daily gridded forcing and static terrain layers",
            summary=(f"Daily gridded inputs of the hydrocast river discharge forecaster on its "
                     f"{grid.width}x{grid.height} grid ({grid.crs.name}), UTC days {span}: "
                     f"{', '.join(dynamic) or 'no dynamic variable'}; static layers: {', '.join(static) or 'none'}. "
                     "Daily aggregates of the input products, regridded; the input of hydrocast train, predict "
                     "and evaluate."),
            keywords="precipitation, soil moisture, terrain, elevation, hydrology, data cube, river discharge "
                     "forecasting",
            source=f"hydrocast {__version__} ingest",
            processing_level="daily aggregates of the input products (e.g. Level-3 satellite products), "
                             "regridded to the hydrocast grid",
            comment=("Times are UTC. Day D is [D 00:00, D+1 00:00) UTC: time is its start and time_bnds its "
                     "start and end; daily totals have cell_methods time: sum, daily means time: mean."),
            institution=institution, extent=acdd.grid_extent(grid),
            coverage=acdd.time_coverage(np.stack([self.days, self.days + np.timedelta64(1, "D")], axis=-1)),
            extra={"hydrocast_grid": json.dumps(grid.to_dict()),
                   "hydrocast_dynamic": json.dumps(list(dynamic)),
                   "hydrocast_static": json.dumps(list(static)),
                   "hydrocast_static_source": ""},
            attrs=global_attrs))
        self._index = {d: i for i, d in enumerate(self.days)}

    # -- writing ---------------------------------------------------------------------------------
    def index_of(self, days) -> np.ndarray:
        return np.array([self._index[np.datetime64(d, "D")] for d in days], dtype=int)

    @_writes
    def write_days(self, name: str, days, data: np.ndarray, provenance: list[str]) -> None:
        """Write ``data`` (n, y, x) for ``days`` (n dates, need not be contiguous)."""
        idx = self.index_of(days)
        var, prov = self.ds.variables[name], self.ds.variables[f"{name}_source"]
        # contiguous runs are written in one slice (the common case) to keep chunk rewrites few
        order = np.argsort(idx)
        idx, data = idx[order], np.asarray(data, dtype="float32")[order]
        provenance = [provenance[i] for i in order]
        start = 0
        while start < len(idx):
            stop = start + 1
            while stop < len(idx) and idx[stop] == idx[stop - 1] + 1:
                stop += 1
            var[idx[start]:idx[stop - 1] + 1] = data[start:stop]
            for k in range(start, stop):
                prov[idx[k]] = provenance[k]
            start = stop

    @_writes
    def write_static(self, name: str, data: np.ndarray) -> None:
        self.ds.variables[name][:] = np.asarray(data, dtype="float32")

    @_writes
    def set_attr(self, key: str, value: str) -> None:
        self.ds.setncattr(key, value)

    def copy_from(self, old: CubeIndex, skip_static: bool = False, progress=None) -> None:
        """Copy every variable of the old cube into this one, ``chunk`` days at a time."""
        import netCDF4

        with netCDF4.Dataset(old.path) as src:
            pos = self.index_of(old.days)
            step = 64
            for name in old.dynamic:
                if name not in self.dynamic:
                    continue
                sv, dv = src.variables[name], self.ds.variables[name]
                sp, dp = src.variables[f"{name}_source"], self.ds.variables[f"{name}_source"]
                for a in range(0, len(old.days), step):
                    b = min(a + step, len(old.days))
                    block = np.ma.filled(sv[a:b], np.nan).astype("float32")
                    # the old axis maps onto a contiguous run of the new one (both are daily ranges)
                    prov = sp[a:b]
                    with fsio.write_errors(self.path):  # (reading the old cube is not a write)
                        dv[pos[a]:pos[b - 1] + 1] = block
                        for k in range(b - a):
                            dp[pos[a] + k] = str(prov[k])
                    if progress:
                        progress(b - a)
            if not skip_static:
                for name in old.static:
                    if name in self.static:
                        data = np.ma.filled(src.variables[name][:], np.nan)
                        with fsio.write_errors(self.path):
                            self.ds.variables[name][:] = data
                if old.static_source:
                    self.set_attr("hydrocast_static_source", old.static_source)

    # -- finishing -------------------------------------------------------------------------------
    @_writes
    def commit(self) -> None:
        """Close the temporary file and publish it as the cube (:func:`hydrocast.fsio.commit`:
        fsync, ``os.replace``, fsync of the folder)."""
        ds, self.ds = self.ds, None
        ds.close()  # HDF5 writes its last chunks and metadata here: a full disk often fails here
        fsio.commit(self.tmp, self.path)

    def abort(self) -> None:
        """Drop the temporary file (the old cube is untouched). Safe to call more than once."""
        ds, self.ds = getattr(self, "ds", None), None
        if ds is not None:
            try:
                ds.close()
            except (OSError, RuntimeError):  # a close that failed once (disk full) fails again
                ds = None
        if getattr(self, "tmp", None) is not None:
            fsio.discard(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.ds is not None:
            self.abort()
        return False


def open_cube(path: Path):
    """The cube as an ``xarray.Dataset`` (lazily loaded)."""
    import xarray as xr

    try:
        return xr.open_dataset(path)
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path}: cannot open the cube ({exc})") from None
