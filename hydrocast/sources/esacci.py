"""ESA CCI Soil Moisture L3S daily files (kind ``"esacci_sm"``).

Names: ``ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-YYYYMMDD000000-fvXX.Y.nc`` (also ``SSMV-PASSIVE`` and
``SSMS-ACTIVE``). One day per file, step "1D", run "". The day comes from the name and must match
the ``time`` variable (BadInputError otherwise).

Layout: ``sm`` (time, lat, lon) on a global 0.25° grid, latitude stored north to south (returned
as stored). Only the ``bbox`` rows/columns are read (netCDF4 slicing, raw values: auto-masking is
off so that ``flag`` stays int8 and ``t0`` stays a number).

Masking: ``sm`` is kept where it is finite, not its ``_FillValue`` (−9999), inside ``valid_range``
when the file has one, ``flag`` is not its fill (127) and ``flag & flag_mask == 0``.
``flag_mask`` (config, default 63) masks bits 1 snow/frozen, 2 dense vegetation, 4 no convergence,
8 beyond physical bounds, 16 low weight and 32 all unreliable, and keeps bit 64 (barren ground,
advisory since v08.1). A file without a ``flag`` variable is masked by fill value only.

Units (``units`` attribute): ``m3 m-3`` (and spellings such as ``m^3 m^-3``, ``m3/m3``) are
canonical. ACTIVE products are in percent of saturation (``percent``/``%``): rejected unless the
source sets ``porosity`` (m3 m-3, 0 < porosity ≤ 1), in which case
``sm_volumetric = sm_percent * porosity / 100`` and the attrs say so.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import BadInputError, ConfigError
from . import FileInfo, check_signature
from .generic import (NETCDF_SIGNATURES, _norm_units, decode_time_values, make_dataarray,
                      read_selection, select_lonlat)

_NAME = re.compile(
    r"ESACCI-SOILMOISTURE-L3S-SSM(?P<kind>[VS])-(?P<product>COMBINED|PASSIVE|ACTIVE)-"
    r"(?P<date>\d{8})(?P<clock>\d{6})-fv(?P<version>\d+(?:\.\d+)*)\.nc$"
)
_VOLUMETRIC = {"m3 m-3", "m3m-3", "m3/m3", "m3.m-3", "m3 m-3 ", "m m-1"}
_PERCENT = {"percent", "%", "percent of saturation", "% saturation", "percentage"}
_NC_ERRORS = (OSError, RuntimeError, ValueError, KeyError)


def parse_name(path: Path) -> dict:
    m = _NAME.fullmatch(path.name) or _NAME.search(path.name)
    if not m:
        raise BadInputError(f"{path}: name is not an ESA CCI SM L3S name "
                            "(ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-YYYYMMDD000000-fvXX.Y.nc)")
    d = m.group("date")
    try:
        day = np.datetime64(f"{d[:4]}-{d[4:6]}-{d[6:]}", "D")
    except ValueError:
        raise BadInputError(f"{path}: name holds an invalid date {d}") from None
    return {"product": m.group("product"), "version": m.group("version"), "day": day}


def _flag_mask(options: dict) -> int:
    v = options.get("flag_mask", 63)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= int(v) <= 127:
        raise ConfigError(f"source {options.get('name', '?')!r}: flag_mask must be an integer 0..127, got {v!r}")
    return int(v)


def _porosity(options: dict) -> float | None:
    v = options.get("porosity")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < float(v) <= 1:
        raise ConfigError(f"source {options.get('name', '?')!r}: porosity must be a number in (0, 1] m3 m-3, got {v!r}")
    return float(v)


def _open(path: Path):
    import netCDF4

    try:
        ds = netCDF4.Dataset(path, "r")
    except _NC_ERRORS as exc:
        raise BadInputError(f"{path}: truncated or corrupt NetCDF file ({exc})") from None
    ds.set_auto_mask(False)
    return ds


def _check_time(path: Path, ds, day: np.datetime64) -> None:
    if "time" not in ds.variables:
        return
    tv = ds.variables["time"]
    units = getattr(tv, "units", "")
    values = np.asarray(tv[:]).ravel()
    if values.size != 1:
        raise BadInputError(f"{path}: holds {values.size} time steps; ESA CCI L3S daily files hold one")
    try:
        t = decode_time_values(values, units)[0]
    except ValueError:
        raise BadInputError(f"{path}: time variable has units {units!r}, not '<unit> since <date>'") from None
    if t.astype("datetime64[D]") != day:
        raise BadInputError(f"{path}: time variable says {str(t)[:10]}, but the file name says {day}")


def _check_sm(path: Path, ds) -> None:
    if "sm" not in ds.variables:
        found = ", ".join(sorted(ds.variables)) or "none"
        raise BadInputError(f"{path}: has no variable 'sm' (found: {found})")


def scan(path, options: dict) -> FileInfo:
    path = Path(path)
    check_signature(path, NETCDF_SIGNATURES, "a NetCDF file")
    info = parse_name(path)
    _flag_mask(options)
    ds = _open(path)
    try:
        _check_sm(path, ds)
        _check_time(path, ds, info["day"])
    except BadInputError:
        raise
    except _NC_ERRORS as exc:
        raise BadInputError(f"{path}: truncated or corrupt NetCDF file ({exc})") from None
    finally:
        ds.close()
    return FileInfo(path, (info["day"],), "1D", "", {"product": info["product"], "version": info["version"]})


def read(path, options: dict, bbox):
    path = Path(path)
    check_signature(path, NETCDF_SIGNATURES, "a NetCDF file")
    info = parse_name(path)
    flag_mask = _flag_mask(options)
    porosity = _porosity(options)
    ds = _open(path)
    try:
        _check_sm(path, ds)
        _check_time(path, ds, info["day"])
        sm_v = ds.variables["sm"]
        dims = tuple(sm_v.dimensions)
        lon_n = next((d for d in dims if d in ("lon", "longitude")), None)
        lat_n = next((d for d in dims if d in ("lat", "latitude")), None)
        if lon_n is None or lat_n is None or lon_n not in ds.variables or lat_n not in ds.variables:
            raise BadInputError(f"{path}: 'sm' has dimensions {dims}, not lat/lon with coordinates")
        others = [d for d in dims if d not in (lon_n, lat_n)]
        if any(len(ds.dimensions[d]) != 1 for d in others):
            raise BadInputError(f"{path}: 'sm' has shape {sm_v.shape} {dims}; expected one day")
        lon = np.round(np.asarray(ds.variables[lon_n][:], "float64"), 4)
        lat = np.round(np.asarray(ds.variables[lat_n][:], "float64"), 4)
        xs, ys = select_lonlat(path, lon, lat, bbox)
        sel = {lon_n: xs, lat_n: ys}
        sm = read_selection(lambda idx: sm_v[idx], dims, sel, lon_n)
        units = str(getattr(sm_v, "units", "")).strip()
        sm_fill = getattr(sm_v, "_FillValue", None)
        valid_range = getattr(sm_v, "valid_range", None)
        flag = None
        flag_fill = 127
        if "flag" in ds.variables:
            fv = ds.variables["flag"]
            if tuple(fv.dimensions) != dims:
                raise BadInputError(f"{path}: 'flag' dimensions {tuple(fv.dimensions)} differ from 'sm' {dims}")
            flag = read_selection(lambda idx: fv[idx], dims, sel, lon_n)
            flag_fill = int(np.asarray(getattr(fv, "_FillValue", 127)).ravel()[0])
    except BadInputError:
        raise
    except _NC_ERRORS as exc:
        raise BadInputError(f"{path}: truncated or corrupt NetCDF file ({exc})") from None
    finally:
        ds.close()

    sm = sm.astype("float64")
    ok = np.isfinite(sm)
    if sm_fill is not None:
        ok &= sm != float(np.asarray(sm_fill).ravel()[0])
    if valid_range is not None and np.size(valid_range) == 2:
        lo, hi = (float(v) for v in np.asarray(valid_range).ravel())
        ok &= (sm >= lo) & (sm <= hi)
    extra = {"product": info["product"], "version": info["version"], "flag_mask": flag_mask}
    if flag is not None:
        f = flag.astype("int16")
        ok &= (f != flag_fill) & ((f & flag_mask) == 0)
    else:
        extra["flag_masking"] = "none: the file has no 'flag' variable"
    sm[~ok] = np.nan

    u = _norm_units(units)
    if u in _VOLUMETRIC or u.replace(" ", "") in {"m3m-3", "m3/m3"}:
        pass
    elif u in _PERCENT:
        if porosity is None:
            raise BadInputError(
                f"{path}: sm units are {units!r}: the {info['product']} product is in percent of saturation; "
                "hydrocast needs volumetric m3 m-3 (use COMBINED or PASSIVE, or set `porosity` for this source)")
        sm = sm * porosity / 100.0
        extra["converted"] = f"percent of saturation x porosity {porosity:g} / 100"
        extra["original_units"] = units
    else:
        raise BadInputError(f"{path}: unknown soil moisture units {units!r} (expected m3 m-3, or percent for ACTIVE)")

    order = [dims.index(lat_n), dims.index(lon_n)]
    rest = [i for i in range(len(dims)) if i not in order]
    data = np.transpose(sm, rest + order).reshape(1, ys.size, xs.size)
    time = np.array([info["day"]], dtype="datetime64[ns]")
    return make_dataarray(data, x=xs.coords, y=ys.coords, times=time, crs="EPSG:4326", units="m3 m-3",
                          step="1D", run="", source_file=path.name, extra_attrs=extra)
