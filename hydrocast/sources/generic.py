"""Generic readers: any CF NetCDF variable, or a GeoTIFF per time step.

This module also holds the small helpers the product readers (:mod:`.imerg`, :mod:`.esacci`)
share: cutting a ``bbox`` out of 1-D coordinate vectors *before* reading (:func:`clip_lonlat`
remembers the cut per coordinate vectors), CF ``"<unit> since <date>"`` time parsing, the
precipitation unit table and building the contract's DataArray from a reader's
:class:`~hydrocast.sources.Arrays` (:func:`to_dataarray`).

Config keys (``[[sources]]`` table) understood here
---------------------------------------------------
``kind = "netcdf"``
    ``variable`` (required), ``crs`` (only used when the file has no grid mapping; a different
    CRS from the file's is an error), ``units`` (overrides the file's ``units``), ``quantity``
    (``"precipitation"`` forces the precipitation unit conversion; any other value disables it),
    ``step`` (the interval of one value, e.g. ``"1h"``; otherwise taken from the time bounds or
    the spacing of the time coordinate), ``time_label`` (``"start"`` (default) or ``"end"``: what
    a time stamp without bounds marks; ERA5 accumulations are labelled with the *end* of the hour).
``kind = "geotiff"``
    ``date_format`` (a strptime pattern such as ``"%Y%m%d"`` searched in the file name; without
    it the raster is static), ``band`` (required for multi-band files), ``crs``, ``units``
    (default ``""``), ``quantity``, ``step`` (default ``"1D"``), ``time_label``, ``nodata``
    (overrides the file's nodata value).

Precipitation units
-------------------
A precipitation-like variable (``quantity = "precipitation"``, or without ``quantity`` a name such
as ``tp``, ``pr``, ``prcp``, ``rain`` or containing ``precip``, or a CF precipitation standard
name) is converted to the canonical mean rate in mm/day (:data:`PRECIP_UNITS`). Rates convert by
a constant factor; *depths* (``mm``, ``kg m-2``, ``m``) are taken as the amount accumulated over
one time step, so they are divided by the step's length in days: ERA5 hourly ``tp`` in m becomes
``tp * 1000 * 24`` mm/day. (ERA5-Land's hourly ``tp`` is a running total since 00 UTC, not a
per-hour amount: use its daily statistics instead.) Negative precipitation above -0.01 mm/day is
packing noise (ERA5) and becomes 0; anything lower becomes NaN. Other quantities keep the
file's units unchanged (the config's ``units``, else the variable's ``units`` attribute, e.g. "K"
for ERA5 ``t2m``): :func:`netcdf_units`, which ``scan_netcdf`` also reports as
``FileInfo.extra["units"]``, so that ingest can label a cube variable before reading any data.
"""

from __future__ import annotations

import calendar
import functools
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import BadInputError, ConfigError
from . import HDF5_SIGNATURE, NETCDF3_SIGNATURES, TIFF_SIGNATURES, Arrays, FileInfo, check_signature

NETCDF_SIGNATURES = (HDF5_SIGNATURE, *NETCDF3_SIGNATURES)


# =================================================================================================
# Helpers shared by the readers
# =================================================================================================

@dataclass(frozen=True)
class AxisSelection:
    """Which part of one axis to read: ascending index ranges, concatenated in this order."""

    slices: tuple[slice, ...]
    coords: np.ndarray  # float64 coordinate of every selected cell, in output order

    @property
    def size(self) -> int:
        return int(self.coords.size)


def _cell_size(c: np.ndarray) -> float:
    return float(np.median(np.abs(np.diff(c)))) if c.size > 1 else 0.0


def select_axis(coord, lo: float | None, hi: float | None, *, periodic: bool = False,
                cell: float | None = None) -> AxisSelection | None:
    """Cells of a monotonic, regular 1-D ``coord`` whose centre lies in ``[lo, hi]`` widened by half
    a cell; ``None`` when no cell does. ``lo``/``hi`` of ``None`` select the whole axis.

    ``periodic`` (longitude in degrees): the axis wraps every 360°, so a 0…360 file can serve a
    −180…180 box and a box crossing the antimeridian (``lo > hi``) works; the selected cells are
    returned west to east with their longitudes shifted into the box's range (two index ranges
    where the box crosses the file's seam)."""
    c = np.asarray(coord, dtype="float64").ravel()
    n = c.size
    if n == 0:
        return None
    if lo is None or hi is None:
        return AxisSelection((slice(0, n),), c.copy())
    d = cell if cell else _cell_size(c)
    half = d / 2.0
    tol = 1e-4 * max(d, 1e-9)
    ascending = n < 2 or c[-1] > c[0]
    if periodic and ascending:
        lo, hi = float(lo), float(hi)
        if hi < lo:  # crosses the antimeridian
            hi += 360.0
        base = lo - half - tol
        shifted = c - 360.0 * np.floor((c - base) / 360.0)  # into [base, base + 360), exact shifts
        keep = np.nonzero(shifted <= hi + half + tol)[0]
        if keep.size == 0:
            return None
        order = keep[np.argsort(shifted[keep], kind="stable")]
        # drop duplicated longitudes (a grid holding both -180 and 180)
        _, first = np.unique(np.round(shifted[order], 6), return_index=True)
        order = order[np.sort(first)]
        runs, start = [], 0
        for k in range(1, order.size + 1):
            if k == order.size or order[k] != order[k - 1] + 1:
                runs.append(slice(int(order[start]), int(order[k - 1]) + 1))
                start = k
        return AxisSelection(tuple(runs), shifted[order])
    keep = np.nonzero((c >= lo - half - tol) & (c <= hi + half + tol))[0]
    if keep.size == 0:
        return None
    sl = slice(int(keep.min()), int(keep.max()) + 1)
    return AxisSelection((sl,), c[sl].copy())


def select_lonlat(path: Path, lon, lat, bbox, *, periodic_lon: bool = True,
                  names: tuple[str, str] = ("lon", "lat")) -> tuple[AxisSelection, AxisSelection]:
    """Cut ``bbox = (west, south, east, north)`` out of lon/lat vectors (any order) or raise
    BadInputError when no cell centre falls in the (half-cell widened) box."""
    if bbox is None:
        return select_axis(lon, None, None), select_axis(lat, None, None)
    west, south, east, north = map(float, bbox)
    xs = select_axis(lon, west, east, periodic=periodic_lon)
    ys = select_axis(lat, south, north)
    if xs is None or ys is None:
        lon_a, lat_a = np.asarray(lon, "float64"), np.asarray(lat, "float64")
        raise BadInputError(
            f"{path}: covers {names[0]} {lon_a.min():g}..{lon_a.max():g} {names[1]} "
            f"{lat_a.min():g}..{lat_a.max():g}, outside the region "
            f"[{west:g}, {south:g}, {east:g}, {north:g}] (west, south, east, north)")
    return xs, ys


_CLIP_CACHE: dict[tuple, tuple | None] = {}


def clip_lonlat(path: Path, lon_raw, lat_raw, bbox) -> tuple[AxisSelection, AxisSelection]:
    """:func:`select_lonlat` on lon/lat vectors as stored (rounded to 1e-4°: float32 values are
    179.94999 for 179.95), remembered per (vectors, bbox): every granule of a product repeats the
    same vectors. The cached selections' coordinate arrays are read-only."""
    lon_raw, lat_raw = np.asarray(lon_raw), np.asarray(lat_raw)
    box = None if bbox is None else tuple(map(float, bbox))
    key = (lon_raw.dtype.str, lon_raw.tobytes(), lat_raw.dtype.str, lat_raw.tobytes(), box)
    hit = _CLIP_CACHE.get(key, False)
    if hit is False:
        lon = np.round(lon_raw.astype("float64").ravel(), 4)
        lat = np.round(lat_raw.astype("float64").ravel(), 4)
        try:
            hit = select_lonlat(path, lon, lat, box)
        except BadInputError:
            hit = (lon, lat)  # outside the box: remembered too, the message is made per file below
        for a in hit:
            (a.coords if isinstance(a, AxisSelection) else a).flags.writeable = False
        if len(_CLIP_CACHE) >= 64:
            _CLIP_CACHE.pop(next(iter(_CLIP_CACHE)))
        _CLIP_CACHE[key] = hit
    if not isinstance(hit[0], AxisSelection):
        select_lonlat(path, hit[0], hit[1], box)  # raises BadInputError naming this file
    return hit



def select_in_crs(path: Path, xc, yc, crs, bbox):
    """Axis selections of the cells of ``xc``/``yc`` (in ``crs``) inside ``bbox`` (EPSG:4326
    degrees; ``None`` = everything): the bbox is transformed into the file's CRS first."""
    from pyproj import CRS

    if bbox is None:
        return select_axis(xc, None, None), select_axis(yc, None, None)
    if crs.is_geographic and crs.equals(CRS.from_epsg(4326), ignore_axis_order=True):
        w, s, e, n = bbox
    else:
        from rasterio.warp import transform_bounds

        w, s, e, n = transform_bounds("EPSG:4326", crs.to_wkt(), *bbox, densify_pts=21)
    return select_lonlat(path, xc, yc, (w, s, e, n), periodic_lon=bool(crs.is_geographic),
                         names=("x", "y") if not crs.is_geographic else ("lon", "lat"))


def attr_str(value) -> str:
    """An HDF5/NetCDF attribute (bytes, 1-element array, ...) as text."""
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else ""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8", "replace")
    return str(value)

def read_selection(getter, dims: tuple[str, ...], sel: dict[str, AxisSelection], x_dim: str) -> np.ndarray:
    """Read ``getter(index_tuple)`` for each index range of ``sel[x_dim]`` and join them along x.

    ``dims`` are the variable's dimension names in storage order; dims missing from ``sel`` are
    read whole. Only the x axis may have several ranges (a longitude seam)."""
    pieces = []
    for xs in sel[x_dim].slices:
        index = []
        for dim in dims:
            if dim == x_dim:
                index.append(xs)
            elif dim in sel:
                (s,) = sel[dim].slices
                index.append(s)
            else:
                index.append(slice(None))
        pieces.append(np.asarray(getter(tuple(index))))
    axis = dims.index(x_dim)
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=axis)


_TIME_UNIT_NS = {
    "nanoseconds": 1, "nanosecond": 1, "ns": 1,
    "microseconds": 10**3, "microsecond": 10**3, "us": 10**3,
    "milliseconds": 10**6, "millisecond": 10**6, "ms": 10**6,
    "seconds": 10**9, "second": 10**9, "secs": 10**9, "sec": 10**9, "s": 10**9,
    "minutes": 60 * 10**9, "minute": 60 * 10**9, "mins": 60 * 10**9, "min": 60 * 10**9,
    "hours": 3600 * 10**9, "hour": 3600 * 10**9, "hrs": 3600 * 10**9, "hr": 3600 * 10**9, "h": 3600 * 10**9,
    "days": 86400 * 10**9, "day": 86400 * 10**9, "d": 86400 * 10**9,
}


def decode_time_values(values, units: str) -> np.ndarray:
    """CF ``"<unit> since <epoch>"`` numbers to ``datetime64[ns]`` (UTC).

    The calendar attribute is ignored on purpose: IMERG labels its GPS-epoch seconds
    ``calendar = "julian"`` although they are plain elapsed seconds (no leap seconds), and for the
    standard/gregorian/proleptic calendars all dates after 1582 agree. Raises ValueError on units
    it cannot parse."""
    epoch, factor = _time_units(str(units))
    v = np.asarray(values, dtype="float64") * factor
    return epoch + np.round(v).astype("int64").astype("timedelta64[ns]")


@functools.lru_cache(maxsize=256)
def _time_units(units: str) -> tuple[np.datetime64, int]:
    """(epoch as datetime64[ns], nanoseconds per unit) of ``"<unit> since <date>"`` (cached: every
    granule of a product repeats the same string, and parsing it costs more than the rest)."""
    m = re.match(r"\s*([A-Za-z]+)\s+since\s+(.+?)\s*$", units)
    if not m or m.group(1).lower() not in _TIME_UNIT_NS:
        raise ValueError(f"time units {units!r} are not '<unit> since <date>'")
    ref = re.sub(r"\s*(UTC|GMT|Z)$", "", m.group(2).strip(), flags=re.IGNORECASE)
    ref = re.sub(r"\s*[+-]00:?00$", "", ref)
    import pandas as pd

    epoch = np.datetime64(pd.Timestamp(ref).to_datetime64(), "ns")
    return epoch, _TIME_UNIT_NS[m.group(1).lower()]


def month_days(start: np.datetime64) -> int:
    d = start.astype("datetime64[D]").item()
    return calendar.monthrange(d.year, d.month)[1]


_SIMPLE_STEP = re.compile(r"(\d+)(s|min|h|D)")
_SIMPLE_UNIT_NS = {"s": 10**9, "min": 60 * 10**9, "h": 3600 * 10**9, "D": 86400 * 10**9}


@functools.lru_cache(maxsize=64)
def step_timedelta(step: str) -> np.timedelta64 | None:
    """The length of a fixed step ("30min", "1h", "1D", ...); ``None`` for "1MS" and "static"."""
    if step in ("1MS", "MS", "static"):
        return None
    m = _SIMPLE_STEP.fullmatch(step) if isinstance(step, str) else None
    if m and int(m.group(1)) > 0:  # "30min", "1h", "1D": what the readers' names give (no pandas import)
        return np.timedelta64(int(m.group(1)) * _SIMPLE_UNIT_NS[m.group(2)], "ns")
    import pandas as pd

    try:
        td = pd.Timedelta(step)
    except (ValueError, TypeError):
        raise ConfigError(f"step {step!r} is not a time step such as '30min', '1h', '1D' or '1MS'") from None
    if td <= pd.Timedelta(0):
        raise ConfigError(f"step {step!r} must be positive")
    return np.timedelta64(td.value, "ns")


def step_end(start: np.datetime64, step: str) -> np.datetime64:
    """The end (exclusive) of the interval that starts at ``start``."""
    start = np.datetime64(start, "ns")
    if step in ("1MS", "MS"):
        m = start.astype("datetime64[M]")
        return (m + 1).astype("datetime64[ns]")
    return start + step_timedelta(step)


def step_days(start: np.datetime64, step: str) -> float:
    """Length of one step in days (a month's true length for "1MS")."""
    if step in ("1MS", "MS"):
        return float(month_days(start))
    return float(step_timedelta(step) / np.timedelta64(86400, "s"))


def days_covered(starts, step: str) -> tuple[np.datetime64, ...]:
    """The UTC days (datetime64[D]) touched by the intervals ``[start, start + step)``."""
    starts = np.atleast_1d(np.asarray(starts, dtype="datetime64[ns]"))
    if step == "1D" and starts.size == 1 and starts[0] == starts[0].astype("datetime64[D]"):
        return (starts[0].astype("datetime64[D]"),)  # the common case (a daily file), without arange
    days: set[np.datetime64] = set()
    for s in starts:
        end = step_end(s, step) - np.timedelta64(1, "ns")
        first, last = s.astype("datetime64[D]"), end.astype("datetime64[D]")
        days.update(np.arange(first, last + np.timedelta64(1, "D"), dtype="datetime64[D]"))
    return tuple(sorted(days))


def step_alias(td: np.timedelta64) -> str:
    """A pandas offset alias for a fixed step: 30 min -> "30min", 1 h -> "1h", 1 day -> "1D"."""
    s = int(td / np.timedelta64(1, "s"))
    if s <= 0:
        raise ValueError("non-positive time step")
    if s % 86400 == 0:
        return f"{s // 86400}D"
    if s % 3600 == 0:
        return f"{s // 3600}h"
    if s % 60 == 0:
        return f"{s // 60}min"
    return f"{s}s"


def _norm_units(units: str) -> str:
    u = str(units).strip().lower().replace("**", "").replace("^", "")
    u = re.sub(r"\s+", " ", u)
    return u


# factor to mm/day for rates; depths are per step (divided by the step's length in days)
PRECIP_UNITS: dict[str, tuple[str, float]] = {}
for _names, _kind, _f in (
    (("mm/day", "mm/d", "mm d-1", "mm day-1", "mm.d-1", "mm per day", "mm/24h"), "rate", 1.0),
    (("mm/hr", "mm/h", "mm hr-1", "mm h-1", "mm/hour", "mm hour-1", "mm.h-1", "mm per hour"), "rate", 24.0),
    (("kg m-2 s-1", "kg/m2/s", "kg m-2s-1", "kg/(m2 s)", "kg/m2s", "kg.m-2.s-1", "mm/s", "mm s-1"), "rate", 86400.0),
    (("m/s", "m s-1"), "rate", 86400.0 * 1000.0),
    (("m/day", "m/d", "m d-1", "m day-1"), "rate", 1000.0),
    (("m/hr", "m/h", "m hr-1", "m h-1"), "rate", 24000.0),
    (("mm", "millimeter", "millimeters", "millimetre", "millimetres", "kg m-2", "kg/m2", "kg.m-2"), "depth", 1.0),
    (("m", "meter", "meters", "metre", "metres", "m of water equivalent"), "depth", 1000.0),
):
    for _n in _names:
        PRECIP_UNITS[_n] = (_kind, _f)


def precip_factors(path: Path, units: str | None, step: str, starts) -> np.ndarray:
    """Per-time-step factors that turn precipitation in ``units`` into a mean rate in mm/day."""
    if units is None or str(units).strip() == "":
        raise BadInputError(f"{path}: precipitation has no units attribute; set `units` for this source")
    key = _norm_units(units)
    if key not in PRECIP_UNITS:
        raise BadInputError(
            f"{path}: unknown precipitation units {units!r} (known: mm/hr, mm/day, mm, m, "
            "kg m-2 s-1, kg m-2, ...); set `units` for this source if the file is wrong")
    kind, f = PRECIP_UNITS[key]
    starts = np.atleast_1d(np.asarray(starts, dtype="datetime64[ns]"))
    if kind == "rate":
        return np.full(starts.size, f, dtype="float64")
    if step == "static":
        raise BadInputError(f"{path}: precipitation in {units!r} is an amount per time step, "
                            "but the file has no time step")
    return np.array([f / step_days(s, step) for s in starts], dtype="float64")


def make_dataarray(data: np.ndarray, *, x, y, times=None, crs, units: str, step: str, run: str,
                   source_file: str, extra_attrs: dict | None = None):
    """The contract's DataArray: float32 (time, y, x) or (y, x), CRS written with rioxarray."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    data = np.ascontiguousarray(np.asarray(data, dtype="float32"))
    coords = {"y": np.asarray(y, "float64"), "x": np.asarray(x, "float64")}
    if times is None:
        dims = ("y", "x")
    else:
        dims = ("time", "y", "x")
        coords["time"] = np.asarray(times, dtype="datetime64[ns]")
    attrs = {"units": units, "step": step, "run": run, "source_file": source_file}
    if extra_attrs:
        attrs.update(extra_attrs)
    coords["spatial_ref"] = xr.Variable((), 0, attrs=_crs_coord_attrs(crs))
    return xr.DataArray(data, dims=dims, coords=coords, attrs=attrs)


def to_dataarray(a: Arrays):
    """The contract's DataArray for what a reader's ``read_arrays`` returned."""
    # (x, y copied: the readers' coordinate vectors may be shared, read-only cache entries)
    return make_dataarray(a.values, x=np.array(a.x, "float64"), y=np.array(a.y, "float64"), times=a.times,
                          crs=a.crs, units=a.units, step=a.step, run=a.run, source_file=a.source_file,
                          extra_attrs=a.extra)


@functools.lru_cache(maxsize=64)
def _crs_coord_attrs_cached(crs: str) -> tuple:
    import xarray as xr

    # exactly what rioxarray's write_crs puts on the spatial_ref coordinate, computed once per CRS
    # (write_crs costs ~5 ms a call, more than reading a small regional granule)
    probe = xr.DataArray(np.zeros((1, 1), "float32"), dims=("y", "x")).rio.write_crs(crs)
    return tuple(probe["spatial_ref"].attrs.items())


def _crs_coord_attrs(crs) -> dict:
    key = crs if isinstance(crs, str) else crs.to_wkt()
    return dict(_crs_coord_attrs_cached(key))


def to_datetime64(values) -> np.ndarray:
    """Decoded time values (datetime64 of any unit, or cftime objects) to ``datetime64[ns]``."""
    v = np.asarray(values)
    if np.issubdtype(v.dtype, np.datetime64):
        return v.astype("datetime64[ns]")
    out = []
    for t in v.ravel():
        try:
            out.append(np.datetime64(datetime(t.year, t.month, t.day, t.hour, t.minute, t.second,
                                              getattr(t, "microsecond", 0)), "ns"))
        except (AttributeError, ValueError) as exc:
            raise ValueError(f"time value {t!r} is not a real calendar date ({exc})") from None
    return np.array(out, dtype="datetime64[ns]").reshape(v.shape)


# =================================================================================================
# CRS handling (NetCDF and GeoTIFF)
# =================================================================================================

def _config_crs(options: dict):
    from pyproj import CRS

    value = options.get("crs")
    if value in (None, ""):
        return None
    try:
        return CRS.from_user_input(value)
    except Exception as exc:  # pyproj.exceptions.CRSError
        raise ConfigError(f"sources.crs {value!r} is not a CRS pyproj understands: {exc}") from None


_IGNORED_PROJ_KEYS = {"no_defs", "type", "towgs84", "wktext"}


def same_crs(a, b) -> bool:
    """Whether two CRSs describe the same coordinates (axis order and datum shifts ignored)."""
    if a.equals(b, ignore_axis_order=True):
        return True
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "lose projection information": fine here
            da, db = a.to_dict(), b.to_dict()
    except Exception:
        return False
    keys = (set(da) | set(db)) - _IGNORED_PROJ_KEYS
    for k in keys:
        va, vb = da.get(k), db.get(k)
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)):
            if abs(float(va) - float(vb)) > 1e-9 * max(1.0, abs(float(va))):
                return False
        elif va != vb:
            # an ellipsoid given by name on one side and implied by the datum on the other
            if {k} <= {"ellps", "datum"} and (va is None or vb is None):
                continue
            return False
    return True


def resolve_crs(path: Path, file_crs, options: dict, *, implied=None):
    """The data's CRS: the file's; the config's fills in when the file has none; a config CRS that
    differs from the file's is an error; neither (and nothing ``implied``) is an error."""
    cfg = _config_crs(options)
    if file_crs is not None:
        if cfg is not None and not same_crs(file_crs, cfg):
            raise BadInputError(
                f"{path}: wrong CRS: the file is in {file_crs.to_string()!r} but the config says "
                f"{cfg.to_string()!r} (drop `crs` for this source or fix it)")
        return file_crs
    if cfg is not None:
        return cfg
    if implied is not None:
        return implied
    raise BadInputError(f"{path}: has no CRS (no grid mapping); set `crs` for this source in the config")


# =================================================================================================
# NetCDF
# =================================================================================================

_X_NAMES = {"x", "lon", "longitude", "rlon", "easting", "xc", "nlon", "long"}
_Y_NAMES = {"y", "lat", "latitude", "rlat", "northing", "yc", "nlat"}
_X_STD = {"projection_x_coordinate", "longitude", "grid_longitude", "projection_x_angular_coordinate"}
_Y_STD = {"projection_y_coordinate", "latitude", "grid_latitude", "projection_y_angular_coordinate"}
_T_NAMES = {"time", "valid_time", "t", "date", "times"}
_PRECIP_NAMES = {"tp", "pr", "pre", "prcp", "precip", "ppt", "rain", "rainfall", "precipitation",
                 "total_precipitation", "rr", "prec"}
_PRECIP_STD = {"precipitation_amount", "precipitation_flux", "lwe_thickness_of_precipitation_amount",
               "lwe_precipitation_rate", "rainfall_amount", "rainfall_flux", "rainfall_rate",
               "thickness_of_rainfall_amount"}


def _required_variable(options: dict) -> str:
    var = options.get("variable")
    if not var or not isinstance(var, str):
        raise ConfigError(f"source {options.get('name', '?')!r}: "
                          f"`variable` is required for kind {options.get('kind', 'netcdf')!r}")
    return var


def _open_netcdf(path: Path):
    import xarray as xr

    return xr.open_dataset(path, engine="netcdf4", decode_coords="all", cache=False)


def _axis_kind(ds, dim: str) -> str | None:
    attrs = ds[dim].attrs if dim in ds.variables else {}
    axis = str(attrs.get("axis", "")).upper()
    std = str(attrs.get("standard_name", "")).lower()
    units = str(attrs.get("units", "")).lower()
    if axis in ("X", "Y", "T"):
        return axis
    if std in _X_STD or units in ("degrees_east", "degree_east", "degrees_e"):
        return "X"
    if std in _Y_STD or units in ("degrees_north", "degree_north", "degrees_n"):
        return "Y"
    if std == "time" or (dim in ds.variables and np.issubdtype(ds[dim].dtype, np.datetime64)):
        return "T"
    name = dim.lower()
    if name in _X_NAMES:
        return "X"
    if name in _Y_NAMES:
        return "Y"
    if name in _T_NAMES:
        return "T"
    return None


@dataclass
class _NcLayout:
    var: str
    dims: tuple[str, ...]
    x_dim: str
    y_dim: str
    t_dim: str | None
    squeeze: tuple[str, ...]


def _layout(path: Path, ds, var: str) -> _NcLayout:
    if var not in ds.data_vars and var not in ds.variables:
        found = ", ".join(sorted(str(v) for v in ds.data_vars)) or "none"
        raise BadInputError(f"{path}: has no variable {var!r} (found: {found})")
    da = ds[var]
    kinds = {d: _axis_kind(ds, d) for d in da.dims}
    by_kind: dict[str, list[str]] = {}
    for d, k in kinds.items():
        by_kind.setdefault(k, []).append(d)
    xs, ys, ts = by_kind.get("X", []), by_kind.get("Y", []), by_kind.get("T", [])
    if len(xs) != 1 or len(ys) != 1 or len(ts) > 1:
        raise BadInputError(
            f"{path}: cannot tell the x/y/time dimensions of {var!r} from {da.dims} "
            "(give them CF axis or standard_name attributes)")
    others = tuple(d for d, k in kinds.items() if k not in ("X", "Y", "T"))
    big = [f"{d}={da.sizes[d]}" for d in others if da.sizes[d] != 1]
    if big:
        raise BadInputError(f"{path}: variable {var!r} has extra dimensions {', '.join(big)}; "
                            "hydrocast reads (time, y, x) fields only")
    return _NcLayout(var, tuple(da.dims), xs[0], ys[0], ts[0] if ts else None, others)


def _file_crs(path: Path, ds, var: str):
    from pyproj import CRS

    gm = ds[var].encoding.get("grid_mapping") or ds[var].attrs.get("grid_mapping")
    if not gm:
        return None
    name = str(gm).split(":")[0].split()[0]
    if name not in ds.variables:
        raise BadInputError(f"{path}: {var!r} names grid mapping {name!r}, which is not in the file")
    attrs = dict(ds[name].attrs)
    for key in ("crs_wkt", "spatial_ref"):
        if attrs.get(key):
            try:
                return CRS.from_wkt(str(attrs[key]))
            except Exception:
                pass
    try:
        return CRS.from_cf(attrs)
    except Exception as exc:
        raise BadInputError(f"{path}: cannot understand grid mapping {name!r} ({exc})") from None


def _is_precip(var: str, attrs: dict, options: dict) -> bool:
    q = options.get("quantity")
    if q:
        return str(q).lower() == "precipitation"
    name = var.lower()
    return (name in _PRECIP_NAMES or "precip" in name
            or str(attrs.get("standard_name", "")).lower() in _PRECIP_STD)


def _check_time_label(options: dict) -> str:
    label = options.get("time_label", "start")
    if label not in ("start", "end"):
        raise ConfigError(f"source {options.get('name', '?')!r}: time_label must be 'start' or 'end', got {label!r}")
    return label


def _shift_back(times: np.ndarray, step: str) -> np.ndarray:
    if step in ("1MS", "MS"):
        return (times.astype("datetime64[M]") - 1).astype("datetime64[ns]")
    return times - step_timedelta(step)


def _infer_step(path: Path, times: np.ndarray) -> str:
    if times.size < 2:
        raise BadInputError(f"{path}: has a single time value and no time bounds, so its time step is "
                            "unknown; set `step` for this source (e.g. '1h' or '1D')")
    t = np.sort(times)
    d = np.diff(t)
    if np.any(d <= np.timedelta64(0, "ns")):
        raise BadInputError(f"{path}: time coordinate has repeated values")
    month_start = t.astype("datetime64[M]").astype("datetime64[ns]")
    if np.all(t == month_start) and d.min() >= np.timedelta64(28, "D"):
        return "1MS"
    step = d.min()
    if np.any(d % step != np.timedelta64(0, "ns")):
        raise BadInputError(f"{path}: time coordinate is irregular "
                            f"(steps {sorted(set(step_alias(x) for x in d))}); set `step`")
    return step_alias(step)


def _nc_times(path: Path, ds, lay: _NcLayout, options: dict) -> tuple[np.ndarray, str]:
    """Interval starts (datetime64[ns]) and the step alias."""
    label = _check_time_label(options)
    if lay.t_dim is None:
        return np.array([], dtype="datetime64[ns]"), "static"
    tv = ds[lay.t_dim]
    try:
        times = to_datetime64(tv.values).ravel()
    except ValueError as exc:
        raise BadInputError(f"{path}: cannot decode time coordinate {lay.t_dim!r} ({exc})") from None
    if not np.issubdtype(times.dtype, np.datetime64):
        raise BadInputError(f"{path}: time coordinate {lay.t_dim!r} has no CF time units")
    bounds = tv.encoding.get("bounds") or tv.attrs.get("bounds")
    if options.get("step"):
        step = str(options["step"])
        step_timedelta(step)  # validates
        if label == "end":
            times = _shift_back(times, step)
        return times, step
    if bounds and bounds in ds.variables:
        try:
            b = to_datetime64(ds[bounds].values)
        except ValueError as exc:
            raise BadInputError(f"{path}: cannot decode time bounds {bounds!r} ({exc})") from None
        if b.ndim == 2 and b.shape[1] == 2 and b.shape[0] == times.size:
            starts = b[:, 0]
            widths = b[:, 1] - b[:, 0]
            if np.all(starts.astype("datetime64[M]").astype("datetime64[ns]") == starts) and \
                    np.all((widths >= np.timedelta64(28, "D")) & (widths <= np.timedelta64(31, "D"))):
                return starts, "1MS"
            if np.all(widths == widths[0]) and widths[0] > np.timedelta64(0, "ns"):
                return starts, step_alias(widths[0])
    step = _infer_step(path, times)
    if label == "end":
        times = _shift_back(times, step)
    return times, step


def _nc_guard(path: Path, fn):
    try:
        return fn()
    except (BadInputError, ConfigError):
        raise
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise BadInputError(f"{path}: truncated or corrupt NetCDF file, or not one xarray can read ({exc})") from None


def netcdf_units(var: str, attrs: dict, options: dict) -> str:
    """The units ``read_netcdf`` gives variable ``var`` (its attributes ``attrs``): "mm/day" for
    precipitation (converted), else the config's ``units``, else the file's (``""`` if none)."""
    if _is_precip(var, attrs, options):
        return "mm/day"
    return str(options.get("units") or attrs.get("units") or "")


def scan_netcdf(path, options: dict) -> FileInfo:
    path = Path(path)
    check_signature(path, NETCDF_SIGNATURES, "a NetCDF file")
    var = _required_variable(options)

    def work():
        with _open_netcdf(path) as ds:
            lay = _layout(path, ds, var)
            times, step = _nc_times(path, ds, lay, options)
            units = netcdf_units(var, dict(ds[var].attrs), options)
        days = () if step == "static" else days_covered(times, step)
        return FileInfo(path, days, step, "", {"variable": var, "n_times": int(times.size), "units": units})

    return _nc_guard(path, work)


def read_netcdf(path, options: dict, bbox):
    return to_dataarray(read_netcdf_arrays(path, options, bbox))


def read_netcdf_arrays(path, options: dict, bbox) -> Arrays:
    path = Path(path)
    check_signature(path, NETCDF_SIGNATURES, "a NetCDF file")
    var = _required_variable(options)

    def work():
        from pyproj import CRS

        with _open_netcdf(path) as ds:
            lay = _layout(path, ds, var)
            times, step = _nc_times(path, ds, lay, options)
            xc = np.asarray(ds[lay.x_dim].values, "float64") if lay.x_dim in ds.variables else None
            yc = np.asarray(ds[lay.y_dim].values, "float64") if lay.y_dim in ds.variables else None
            if xc is None or yc is None:
                raise BadInputError(f"{path}: {var!r} has no x/y coordinate values")
            implied = None
            xk = ds[lay.x_dim].attrs
            geographic_axes = (str(xk.get("units", "")).lower().startswith("degree")
                               or lay.x_dim.lower() in ("lon", "longitude"))
            if geographic_axes and lay.x_dim.lower() not in ("rlon",):
                implied = CRS.from_epsg(4326)
            crs = resolve_crs(path, _file_crs(path, ds, var), options, implied=implied)
            xs, ys = select_in_crs(path, xc, yc, crs, bbox)
            src = ds[var]
            raw = read_selection(lambda idx: src[idx].values, lay.dims, {lay.x_dim: xs, lay.y_dim: ys}, lay.x_dim)
            attrs = dict(src.attrs)
        order = [lay.dims.index(d) for d in ((lay.t_dim,) if lay.t_dim else ()) + (lay.y_dim, lay.x_dim)]
        squeeze_axes = tuple(lay.dims.index(d) for d in lay.squeeze)
        data = np.transpose(raw, order + list(squeeze_axes))
        data = data.reshape(data.shape[:len(order)]).astype("float64")
        units = options.get("units") or attrs.get("units") or ""
        extra = {}
        if _is_precip(var, attrs, options):
            if lay.t_dim is None:
                raise BadInputError(f"{path}: precipitation variable {var!r} has no time dimension")
            f = precip_factors(path, units, step, times)
            data = data * f[:, None, None]
            noise = (data < 0) & (data > -0.01)
            data[noise] = 0.0
            data[data < 0] = np.nan
            extra["original_units"] = str(units)
            units = "mm/day"
        return Arrays(data.astype("float32"), times if lay.t_dim else None, xs.coords, ys.coords, crs,
                      str(units), step, "", path.name, {"variable": var, **extra})

    return _nc_guard(path, work)


# =================================================================================================
# GeoTIFF
# =================================================================================================

_STRPTIME_REGEX = {
    "Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{2}", "d": r"\d{2}", "j": r"\d{3}", "H": r"\d{2}",
    "M": r"\d{2}", "S": r"\d{2}", "b": r"[A-Za-z]{3}", "B": r"[A-Za-z]+", "%": "%",
}


def date_regex(fmt: str) -> re.Pattern:
    """A regex matching what ``strftime(fmt)`` produces, for searching a date inside a file name."""
    out, i = [], 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%":
            if i + 1 >= len(fmt) or fmt[i + 1] not in _STRPTIME_REGEX:
                code = fmt[i:i + 2]
                raise ConfigError(f"date_format {fmt!r}: unsupported directive {code!r} "
                                  f"(use %{', %'.join(k for k in _STRPTIME_REGEX if k != '%')})")
            out.append(_STRPTIME_REGEX[fmt[i + 1]])
            i += 2
        else:
            out.append(re.escape(ch))
            i += 1
    pattern = "".join(out)
    if fmt[:2] in ("%Y", "%y", "%m", "%d", "%j", "%H", "%M", "%S"):
        pattern = r"(?<!\d)" + pattern
    if fmt[-2:] in ("%Y", "%y", "%m", "%d", "%j", "%H", "%M", "%S"):
        pattern = pattern + r"(?!\d)"
    return re.compile(pattern)


def date_from_name(path: Path, fmt: str) -> np.datetime64:
    for m in date_regex(fmt).finditer(path.name):
        try:
            return np.datetime64(datetime.strptime(m.group(0), fmt), "ns")
        except ValueError:
            continue
    raise BadInputError(f"{path}: file name has no date matching date_format {fmt!r}")


def _geotiff_time(path: Path, options: dict) -> tuple[np.ndarray | None, str]:
    fmt = options.get("date_format")
    if not fmt:
        return None, "static"
    step = str(options.get("step", "1D"))
    step_timedelta(step)
    t = date_from_name(path, str(fmt))
    if _check_time_label(options) == "end":
        t = _shift_back(np.array([t]), step)[0]
    return np.array([t], dtype="datetime64[ns]"), step


def scan_geotiff(path, options: dict) -> FileInfo:
    path = Path(path)
    check_signature(path, TIFF_SIGNATURES, "a GeoTIFF")
    times, step = _geotiff_time(path, options)
    days = () if times is None else days_covered(times, step)
    return FileInfo(path, days, step, "", {})


def read_geotiff(path, options: dict, bbox):
    return to_dataarray(read_geotiff_arrays(path, options, bbox))


def read_geotiff_arrays(path, options: dict, bbox) -> Arrays:
    import rasterio
    from pyproj import CRS
    from rasterio.windows import Window

    path = Path(path)
    check_signature(path, TIFF_SIGNATURES, "a GeoTIFF")
    times, step = _geotiff_time(path, options)
    try:
        with rasterio.open(path) as src:
            file_crs = CRS.from_wkt(src.crs.to_wkt()) if src.crs else None
            crs = resolve_crs(path, file_crs, options)
            t = src.transform
            if t.b != 0 or t.d != 0:
                raise BadInputError(f"{path}: raster is rotated (affine {tuple(t)[:6]}); "
                                    "hydrocast reads north-up rasters")
            band = options.get("band")
            if band is None:
                if src.count != 1:
                    raise BadInputError(f"{path}: has {src.count} bands; set `band` for this source")
                band = 1
            if not isinstance(band, int) or not 1 <= band <= src.count:
                raise ConfigError(f"source {options.get('name', '?')!r}: "
                                  f"band {band!r} not in 1..{src.count} for {path}")
            xc = t.c + (np.arange(src.width) + 0.5) * t.a
            yc = t.f + (np.arange(src.height) + 0.5) * t.e
            xs, ys = select_in_crs(path, xc, yc, crs, bbox)
            (yslice,) = ys.slices
            pieces = []
            for xslice in xs.slices:
                win = Window.from_slices(yslice, xslice)
                arr = src.read(band, window=win, masked=True)
                pieces.append(np.ma.filled(arr.astype("float64"), np.nan))
            data = pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)
            if options.get("nodata") is not None:
                data[data == float(options["nodata"])] = np.nan
    except (BadInputError, ConfigError):
        raise
    except (rasterio.errors.RasterioError, OSError, ValueError) as exc:
        raise BadInputError(f"{path}: truncated or corrupt GeoTIFF ({exc})") from None
    units = str(options.get("units", ""))
    extra = {}
    if times is not None and options.get("quantity") and str(options["quantity"]).lower() == "precipitation":
        f = precip_factors(path, units, step, times)
        data = data * f[0]
        data[(data < 0) & (data > -0.01)] = 0.0
        data[data < 0] = np.nan
        extra["original_units"] = units
        units = "mm/day"
    if times is not None:
        data = data[None]
    return Arrays(data.astype("float32"), times, xs.coords, ys.coords, crs, units, step, "", path.name, extra)
