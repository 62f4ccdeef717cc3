"""CF-1.8 NetCDF writers for the forecast products, and the atomic-write helper.

Contract of the three output files (written once, here)
=======================================================

Common to all three
-------------------
* NetCDF-4 files, global attributes ``Conventions = "CF-1.8"``, ``title``, ``source``
  (``hydrocast <version>``), ``history`` (UTC time of writing), ``hydrocast_version``;
  optional ``institution``.
* Times are never int64 (CF checkers reject it): dates are ``int32`` ``days since 1970-01-01``
  (``calendar = "standard"``), or ``float64`` days where a value is not a whole day; missing
  times are ``_FillValue = -2147483647`` (int32) / NaN (float64). They decode to ``datetime64``.
* ``lead_time`` is ``int32`` days, ``standard_name = forecast_period``: lead 1 is valid the day
  after the issue (reference) date. ``valid time = reference + lead``.
* Strings (basin ids) are char arrays ``(n, name_strlen)`` (vlen strings fail CF checkers),
  ``_Encoding = "utf-8"``; xarray decodes them back to ``str``.
* Discharge is ``float32`` ``m3 s-1``, ``standard_name = water_volume_transport_in_river_channel``,
  ``_FillValue = NaN`` (NaN = missing).
* Every file is written atomically (:func:`write_dataset` → :func:`atomic_write`): a temporary
  ``.<name>.<pid>.tmp`` in the same folder, fsync, ``os.replace``, fsync of the folder.

Hydrograph forecast (:func:`hydrograph_dataset`)
------------------------------------------------
CF Discrete Sampling Geometry, ``featureType = "timeSeries"`` (orthogonal multidimensional array
representation: all basins share the valid times).

============================== ==================================================================
dimensions                     ``station`` (one per basin), ``lead_time``, ``name_strlen``
``basin_id`` (station)         char array, ``cf_role = "timeseries_id"``
``lat``, ``lon`` (station)     outlet position, degrees north / east (float64)
``basin_area`` (station)       float64 km2
``basin_name`` (station)       char array, only where names were given
``forecast_reference_time``    scalar: the issue date (last day with input data)
``lead_time`` (lead_time)      int32 days, ``forecast_period``
``time`` (lead_time)           valid date of each lead, auxiliary coordinate, ``standard_name time``,
                               ``axis = T`` (marks it as the feature's time for checkers)
``discharge``                  float32 (station, lead_time) m3 s-1,
                               ``coordinates = "time lat lon basin_id basin_area [basin_name]
                               forecast_reference_time"`` (station metadata are auxiliary
                               coordinates, so xarray reads them as coordinates)
``last_observed_discharge``    float32 (station): the last observed discharge (NaN: ungauged or
                               no observation), its date in ``last_observation_time`` (station)
``last_observation_time``      (station) date, fill value where there is none
============================== ==================================================================

Forecast maps (:func:`forecast_map_dataset`)
--------------------------------------------
============================== ==================================================================
dimensions                     ``lead_time``, ``y``, ``x`` (a window of the model grid, cropped
                               around one basin)
``x``, ``y``                   float64 cell centres, same values and attributes as in the cube
``crs``                        grid mapping variable (as in the cube: ``crs_wkt``,
                               ``spatial_ref``, ``GeoTransform`` of the *cropped* window);
                               every map names it in ``grid_mapping``
``lead_time``, ``time``,       as in the hydrograph file
``forecast_reference_time``
``<map name>``                 float32 (lead_time, y, x), attributes from the model (units,
                               standard_name, long_name), ``grid_mapping = "crs"``
``basin_fraction`` (y, x)      float32 fraction of each cell inside the basin, units ``1``
global ``basin_id``            the basin the window belongs to
============================== ==================================================================

Hindcast (:func:`hindcast_dataset`)
-----------------------------------
``featureType = "timeSeries"``; one series per basin and lead. The names mean the same as in
the other two files: ``forecast_reference_time`` is always the issue date and ``time`` always the
valid date (a dimension named ``time`` must have ``standard_name = time`` for CF checkers, so the
issue-date dimension is not called ``time``).

============================== ==================================================================
dimensions                     ``basin``, ``forecast_reference_time`` (issue dates), ``lead_time``,
                               ``name_strlen``
``basin_id`` (basin)           char array, ``cf_role = "timeseries_id"``
``lat``, ``lon``, ``basin_area`` (basin), as in the hydrograph file
``forecast_reference_time``    issue dates (coordinate variable), ``standard_name`` the same
``lead_time`` (lead_time)      int32 days, ``forecast_period``
``time`` (lead_time, forecast_reference_time): valid date = issue date + lead,
                               ``standard_name = time``, ``axis = T`` (auxiliary coordinate)
``discharge_simulated``        float32 (basin, lead_time, forecast_reference_time) m3 s-1: the
                               ConvLSTM (time last: CF's recommended dimension order)
``discharge_observed``         float32 (same dims) m3 s-1, observed at the valid time
``discharge_<baseline>``       float32 (same dims) m3 s-1, e.g. ``lumped_lstm``,
                               ``persistence``, ``climatology``
============================== ==================================================================
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from . import __version__
from .cube import _grid_mapping_attrs, _xy_attrs
from .grid import GridSpec

TIME_UNITS = "days since 1970-01-01 00:00:00"
INT32_FILL = np.int32(-2147483647)
DISCHARGE_STD = "water_volume_transport_in_river_channel"
DISCHARGE_UNITS = "m3 s-1"
STRLEN_DIM = "name_strlen"

#: long names of the baselines of a hindcast (others get a generic one)
BASELINE_LONG_NAMES = {
    "lumped_lstm": "discharge simulated by the lumped (basin-average) LSTM baseline",
    "persistence": "persistence baseline: last observed discharge carried forward",
    "climatology": "climatology baseline: day-of-year mean observed discharge",
}


# -- atomic writes ----------------------------------------------------------------------------------
def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write_fn: Callable[[Path], object]) -> Path:
    """Write ``path`` atomically: ``write_fn(tmp_path)`` writes the whole file to a temporary
    ``.<name>.<pid>.tmp`` in the same folder, which is then fsynced and ``os.replace``-d onto
    ``path`` (and the folder fsynced). On any exception the temporary file is removed, ``path`` is
    left as it was and the exception propagates. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write_fn(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    def _write(tmp: Path) -> None:
        with open(tmp, "w", encoding=encoding) as fh:
            fh.write(text)
    return atomic_write(path, _write)


# -- helpers -------------------------------------------------------------------------------------------
def _day(value) -> np.datetime64:
    """A date-like value (str, date, datetime64, pandas Timestamp) as ``datetime64[D]``."""
    if hasattr(value, "to_datetime64"):
        value = value.to_datetime64()
    return np.datetime64(value, "D")


def _days(values) -> np.ndarray:
    """Dates as ``datetime64[D]``; None, NaN and NaT become NaT."""
    def one(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return np.datetime64("NaT", "D")
        return _day(v)
    if isinstance(values, np.ndarray) and values.dtype.kind == "M":
        return values.astype("datetime64[D]")
    values = list(values) if not isinstance(values, np.ndarray) else values
    return np.asarray([one(v) for v in np.ravel(np.asarray(values, dtype=object))],
                      dtype="datetime64[D]").reshape(np.shape(values))


def _time_attrs(standard_name: str, long_name: str) -> dict:
    return {"standard_name": standard_name, "long_name": long_name}  # units, calendar: encoding


def _valid_time_attrs(long_name: str) -> dict:
    # axis = "T" marks *the* time coordinate of the feature for checkers (compliance-checker picks
    # the time variable by axis first; without it last_observation_time is taken and the
    # station-only variables are misdetected as points). CF >= 1.7 lets axis sit on auxiliary
    # coordinates too, and the checker accepts it even with -c strict.
    return {"standard_name": "time", "long_name": long_name, "axis": "T"}


def _lead_attrs() -> dict:
    return {"standard_name": "forecast_period", "long_name": "forecast lead time (days after the issue date)",
            "units": "days"}


def _global_attrs(title: str, institution: str | None, extra: Mapping | None = None) -> dict:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    attrs = {"Conventions": "CF-1.8", "title": title, "source": f"hydrocast {__version__}",
             "history": f"{now} written by hydrocast {__version__}", "hydrocast_version": __version__}
    if institution:
        attrs["institution"] = institution
    attrs.update(extra or {})
    return attrs


def _station_vars(dim: str, basin_ids, outlet_lon, outlet_lat, area_km2) -> dict:
    import xarray as xr

    n = len(basin_ids)
    lon = np.asarray(outlet_lon, dtype="float64").reshape(n)
    lat = np.asarray(outlet_lat, dtype="float64").reshape(n)
    area = np.asarray(area_km2, dtype="float64").reshape(n)
    return {
        "basin_id": xr.Variable(dim, np.asarray([str(b) for b in basin_ids], dtype=str),
                                {"cf_role": "timeseries_id", "long_name": "basin identifier"}),
        "lat": xr.Variable(dim, lat, {"standard_name": "latitude", "long_name": "latitude of the basin outlet",
                                      "units": "degrees_north"}),
        "lon": xr.Variable(dim, lon, {"standard_name": "longitude", "long_name": "longitude of the basin outlet",
                                      "units": "degrees_east"}),
        "basin_area": xr.Variable(dim, area, {"long_name": "upstream area of the basin", "units": "km2"}),
    }


def _discharge(dims, values, long_name: str, coordinates: str):
    import xarray as xr

    v = xr.Variable(dims, np.asarray(values, dtype="float32"),
                    {"standard_name": DISCHARGE_STD, "long_name": long_name, "units": DISCHARGE_UNITS})
    v.encoding["coordinates"] = coordinates
    return v


# -- the three products --------------------------------------------------------------------------------
def hydrograph_dataset(basin_ids, names, outlet_lon, outlet_lat, area_km2, reference_time, lead_days,
                       discharge, last_obs, last_obs_time, institution: str | None = None):
    """The hydrograph forecast of ``len(basin_ids)`` basins as a CF timeSeries DSG dataset.

    ``names``: optional basin names (None or "" to leave out); ``discharge``: (basin, lead) m3/s;
    ``last_obs``: (basin,) last observed discharge, NaN where none; ``last_obs_time``: (basin,)
    its dates, None/NaT where none."""
    import xarray as xr

    n = len(basin_ids)
    ref = _day(reference_time)
    leads = np.asarray(lead_days, dtype="int32").reshape(-1)
    q = np.asarray(discharge, dtype="float32")
    if q.shape != (n, len(leads)):
        raise ValueError(f"discharge has shape {q.shape}, expected (basins, leads) = {(n, len(leads))}")
    coords = _station_vars("station", basin_ids, outlet_lon, outlet_lat, area_km2)
    if names is not None and any(str(s or "") for s in names):
        coords["basin_name"] = xr.Variable("station", np.asarray([str(s or "") for s in names], dtype=str),
                                           {"long_name": "basin name"})
    coords["forecast_reference_time"] = xr.Variable(
        (), ref.astype("datetime64[ns]"), _time_attrs("forecast_reference_time", "issue date of the forecast"))
    coords["lead_time"] = xr.Variable("lead_time", leads, _lead_attrs())
    coords["time"] = xr.Variable("lead_time", (ref + leads.astype("timedelta64[D]")).astype("datetime64[ns]"),
                                 _valid_time_attrs("valid date of the forecast"))
    coords["last_observation_time"] = xr.Variable(
        "station", _days(last_obs_time).reshape(n).astype("datetime64[ns]"),
        _time_attrs("time", "date of the last observed discharge"))
    meta = [k for k in ("basin_area", "basin_name") if k in coords]
    data = {
        "discharge": _discharge(("station", "lead_time"), q, "forecast river discharge at the basin outlet",
                                " ".join(["time", "lat", "lon", "basin_id", *meta, "forecast_reference_time"])),
        "last_observed_discharge": _discharge(
            "station", np.asarray(last_obs, dtype="float32").reshape(n),
            "last observed river discharge at the basin outlet",
            " ".join(["last_observation_time", "lat", "lon", "basin_id", *meta])),
    }
    ds = xr.Dataset(data, coords=coords, attrs=_global_attrs(
        "hydrocast river discharge forecast (hydrographs)", institution, {"featureType": "timeSeries"}))
    return _set_encodings(ds)


def forecast_map_dataset(grid: GridSpec, window, reference_time, lead_days, maps: Mapping, basin_mask,
                         basin_id: str, institution: str | None = None):
    """Forecast maps of one basin on the ``window = (row0, row1, col0, col1)`` of ``grid``
    (half-open row/column ranges).

    ``maps``: name -> (array (lead, h, w), attrs) with ``(h, w)`` the window's shape (an array of
    the whole grid's shape is cropped to the window); ``basin_mask`` likewise (h, w): the fraction
    of each cell inside the basin."""
    import xarray as xr
    from affine import Affine

    row0, row1, col0, col1 = (int(v) for v in window)
    if not (0 <= row0 < row1 <= grid.height and 0 <= col0 < col1 <= grid.width):
        raise ValueError(f"window {tuple(window)} is not inside the {grid.height}x{grid.width} grid")
    h, w = row1 - row0, col1 - col0

    def crop(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        if a.shape[-2:] == (h, w):
            return a
        if a.shape[-2:] == grid.shape:
            return a[..., row0:row1, col0:col1]
        raise ValueError(f"array of shape {a.shape} fits neither the window ({h}x{w}) nor the grid {grid.shape}")

    ref = _day(reference_time)
    leads = np.asarray(lead_days, dtype="int32").reshape(-1)
    t = grid.transform
    sub = GridSpec(grid.crs, t * Affine.translation(col0, row0), w, h)
    xa, ya = _xy_attrs(grid)
    coords = {
        "x": xr.Variable("x", grid.x[col0:col1].astype("float64"), xa),
        "y": xr.Variable("y", grid.y[row0:row1].astype("float64"), ya),
        "forecast_reference_time": xr.Variable(
            (), ref.astype("datetime64[ns]"), _time_attrs("forecast_reference_time", "issue date of the forecast")),
        "lead_time": xr.Variable("lead_time", leads, _lead_attrs()),
        "time": xr.Variable("lead_time", (ref + leads.astype("timedelta64[D]")).astype("datetime64[ns]"),
                            _valid_time_attrs("valid date of the forecast")),
    }
    # crs is also listed in each map's ``coordinates`` so that xarray opens it as a coordinate and
    # ``ds[name].rio.crs`` works without decode_coords="all" (as rioxarray itself writes files);
    # as an auxiliary coordinate it then needs a long_name for CF checkers.
    data = {"crs": xr.Variable((), np.int32(0), {"long_name": "coordinate reference system",
                                                 **_grid_mapping_attrs(sub)})}
    for name, (arr, attrs) in maps.items():
        a = crop(arr).astype("float32")
        if a.shape != (len(leads), h, w):
            raise ValueError(f"map {name!r} has shape {a.shape}, expected {(len(leads), h, w)}")
        attrs = {k: v for k, v in dict(attrs or {}).items() if k not in ("_FillValue", "grid_mapping", "coordinates")}
        attrs.setdefault("long_name", name.replace("_", " "))
        v = xr.Variable(("lead_time", "y", "x"), a, {**attrs, "grid_mapping": "crs"})
        v.encoding["coordinates"] = "time forecast_reference_time crs"
        data[name] = v
    data["basin_fraction"] = xr.Variable(
        ("y", "x"), crop(basin_mask).astype("float32"),
        {"long_name": "fraction of the cell inside the basin", "units": "1", "grid_mapping": "crs"})
    data["basin_fraction"].encoding["coordinates"] = "crs"
    ds = xr.Dataset(data, coords=coords, attrs=_global_attrs(
        f"hydrocast forecast maps for basin {basin_id}", institution, {"basin_id": str(basin_id)}))
    return _set_encodings(ds)


def hindcast_dataset(basin_ids, issue_times, lead_days, simulated, observed,
                     extra_simulations: Mapping | None, outlet_lon, outlet_lat, area_km2,
                     institution: str | None = None):
    """A hindcast: forecasts issued on each of ``issue_times`` for every basin and lead, with the
    observations at the valid times and baseline simulations (``extra_simulations``: name ->
    array, written as ``discharge_<name>``).

    The arrays given are (basin, issue time, lead) m3/s; the dataset holds them as
    (basin, lead_time, forecast_reference_time): one time series over issue dates per basin and
    lead, time last as CF's orthogonal timeSeries layout wants (select by dimension name)."""
    import xarray as xr

    n = len(basin_ids)
    issues = _days(issue_times).reshape(-1)
    leads = np.asarray(lead_days, dtype="int32").reshape(-1)
    shape = (n, len(issues), len(leads))
    coords = _station_vars("basin", basin_ids, outlet_lon, outlet_lat, area_km2)
    coords["forecast_reference_time"] = xr.Variable(
        "forecast_reference_time", issues.astype("datetime64[ns]"),
        _time_attrs("forecast_reference_time", "issue date of the forecast"))
    coords["lead_time"] = xr.Variable("lead_time", leads, _lead_attrs())
    coords["time"] = xr.Variable(
        ("lead_time", "forecast_reference_time"),
        (leads[:, None].astype("timedelta64[D]") + issues[None, :]).astype("datetime64[ns]"),
        _valid_time_attrs("valid date of the forecast (issue date + lead)"))
    cattr = "time lat lon basin_id basin_area"
    data = {}
    series = [("simulated", simulated, "discharge simulated by the hydrocast ConvLSTM"),
              ("observed", observed, "observed discharge at valid time")]
    for name, arr in (extra_simulations or {}).items():
        series.append((name, arr, BASELINE_LONG_NAMES.get(name, f"discharge simulated by the {name} baseline")))
    for name, arr, long_name in series:
        a = np.asarray(arr, dtype="float32")
        if a.shape != shape:
            raise ValueError(f"{name} has shape {a.shape}, expected (basin, time, lead) = {shape}")
        data[f"discharge_{name}"] = _discharge(("basin", "lead_time", "forecast_reference_time"),
                                               a.transpose(0, 2, 1), long_name, cattr)
    ds = xr.Dataset(data, coords=coords, attrs=_global_attrs(
        "hydrocast hindcast: forecast and observed river discharge", institution, {"featureType": "timeSeries"}))
    return _set_encodings(ds)


# -- writing -------------------------------------------------------------------------------------------
def _set_encodings(ds):
    """Per-variable encodings that keep the file CF-clean: int32/float64 times, char-array
    strings, NaN fill only on data (not coordinate) variables, compression of large arrays."""
    for name, var in ds.variables.items():
        enc = var.encoding
        kind = var.dtype.kind
        if kind == "M":
            days = np.asarray(var.values).astype("datetime64[ns]")
            ok = days[~np.isnat(days)]
            whole = bool(np.all(ok == ok.astype("datetime64[D]")))
            enc.setdefault("units", TIME_UNITS)
            enc.setdefault("calendar", "standard")
            if whole:
                enc["dtype"] = "int32"
                enc["_FillValue"] = INT32_FILL if np.isnat(days).any() else None
            else:
                enc["dtype"] = "float64"
                enc["_FillValue"] = np.nan if np.isnat(days).any() else None
        elif kind == "m":
            raise TypeError(f"{name}: timedelta variables are not written; use int32 days")
        elif kind in "UOS":
            enc["dtype"] = "S1"
            enc["char_dim_name"] = STRLEN_DIM if name == "basin_id" else f"{name}_strlen"
            enc["_FillValue"] = None
        elif kind == "f":
            if name in ds.coords:  # coordinates must not have missing values
                enc["_FillValue"] = None
            else:
                enc.setdefault("_FillValue", var.dtype.type(np.nan))
                if var.size > 1024:
                    enc.setdefault("zlib", True)
                    enc.setdefault("complevel", 4)
        elif kind in "iu":
            if var.dtype.itemsize > 4:
                raise TypeError(f"{name}: int64 variables are not written (CF checkers reject them)")
            enc.setdefault("_FillValue", None)
    return ds


def _encode_times(ds):
    """Replace every datetime64 variable by its CF numbers: int32 days since 1970-01-01 where all
    values are whole days (fill -2147483647 for NaT), float64 days otherwise (NaN for NaT).

    Done here rather than by xarray's time encoder, which fails on an all-NaT variable (e.g.
    ``last_observation_time`` when no basin is gauged) and defaults to int64."""
    import xarray as xr

    epoch = np.datetime64("1970-01-01T00:00:00", "ns")
    new_coords, new_data = {}, {}
    for name, var in ds.variables.items():
        if var.dtype.kind != "M":
            continue
        t = np.asarray(var.values).astype("datetime64[ns]")
        nat = np.isnat(t)
        ns = np.where(nat, 0, (t - epoch).astype("int64"))
        day_ns = 86_400 * 10**9
        enc = {k: v for k, v in var.encoding.items()
               if k not in ("units", "calendar", "dtype", "_FillValue", "missing_value", "scale_factor", "add_offset")}
        if np.all(ns % day_ns == 0):
            values = np.where(nat, INT32_FILL, ns // day_ns).astype("int32")
            enc["_FillValue"] = INT32_FILL if nat.any() else None
        else:
            values = np.where(nat, np.nan, ns / day_ns).astype("float64")
            enc["_FillValue"] = np.nan if nat.any() else None
        attrs = {**var.attrs, "units": TIME_UNITS, "calendar": "standard"}
        new = xr.Variable(var.dims, values, attrs, encoding=enc)
        (new_coords if name in ds.coords else new_data)[name] = new
    return ds.assign_coords(new_coords).assign(new_data)


def write_dataset(ds, path: str | os.PathLike) -> Path:
    """Write one of the datasets above to ``path`` atomically (NetCDF-4, CF encodings set).

    Use this rather than ``ds.to_netcdf``: times are encoded here (int32 days, see
    :func:`_encode_times`)."""
    ds = _set_encodings(_encode_times(ds.copy()))
    return atomic_write(path, lambda tmp: ds.to_netcdf(tmp, format="NETCDF4", engine="netcdf4"))


def check_cf(path, criteria: str = "lenient") -> tuple[bool, str]:
    """Run ``compliance-checker -t cf:1.8 -c <criteria>`` on ``path`` (or a list of paths, checked
    in one run, passing only if all pass): (passed, text report).

    Used by the tests; the checker is a test dependency, not a runtime one."""
    paths = [str(p) for p in path] if isinstance(path, (list, tuple)) else [str(path)]
    exe = Path(sys.executable).with_name("compliance-checker")
    cmd = str(exe) if exe.exists() else shutil.which("compliance-checker")
    if not cmd:
        raise FileNotFoundError("compliance-checker is not installed (pip install compliance-checker)")
    proc = subprocess.run([cmd, "-t", "cf:1.8", "-c", criteria, "-f", "text", *paths],
                          capture_output=True, text=True, timeout=300)
    return proc.returncode == 0, proc.stdout + proc.stderr
