"""ESA CCI Soil Moisture L3S daily files (kind ``"esacci_sm"``).

Names: ``ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-YYYYMMDD000000-fvXX.Y.nc`` (also ``SSMV-PASSIVE`` and
``SSMS-ACTIVE``). One day per file, step "1D", run "". The day comes from the name and must match
the ``time`` variable (BadInputError otherwise).

Layout: ``sm`` (time, lat, lon) on a global 0.25° grid, latitude stored north to south (returned
as stored). Only the ``bbox`` rows/columns are read, as raw values (``flag`` stays int8), with
h5py (the files are NetCDF-4, i.e. HDF5; a NetCDF-3 copy is read with netCDF4). ``scan`` reads
the name and the file's first bytes only; ``read`` checks ``sm`` and ``time``.

Masking: ``sm`` is kept where it is finite, not its ``_FillValue`` (−9999), inside ``valid_range``
when the file has one, ``flag`` is not its fill (127) and ``flag & flag_mask == 0``.
``flag_mask`` (config, default 63) masks bits 1 snow/frozen, 2 dense vegetation, 4 no convergence,
8 beyond physical bounds, 16 low weight and 32 all unreliable, and keeps bit 64 (barren ground,
advisory since v08.1). A file without a ``flag`` variable is masked by fill value only.

Units (``units`` attribute): ``m3 m-3`` (and spellings such as ``m^3 m^-3``, ``m3/m3``) are
canonical. ACTIVE products are in percent of saturation (``percent``/``%``): rejected unless the
source sets ``porosity`` (m3 m-3, 0 < porosity ≤ 1), in which case
``sm_volumetric = sm_percent * porosity / 100`` and the attrs say so.

Frozen ground (config ``variable = "frozen"``; default ``"sm"``): instead of soil moisture the
reader returns the flag's bit 1 ("snow_coverage_or_temperature_below_zero") as a number, units
``"1"``: 1 where ``flag & 1``, 0 where the pixel was observed (``flag`` is not its fill, 127)
without bit 1 (whatever its other bits and whether or not ``sm`` has a value), NaN where there was
no retrieval at all (flag fill: outside the swath, the sea). ``sm``, ``flag_mask`` and ``porosity``
play no part (``sm`` need not be in the file); a file without ``flag`` is a BadInputError.
Regridded with the default ``"average"``, the cube holds the fraction of each cell flagged frozen
or snow-covered (ingest's quantity ``frozen_fraction``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import BadInputError, ConfigError
from . import HDF5_SIGNATURE, Arrays, FileInfo, check_signature
from . import _h5 as h5
from .generic import (
    NETCDF_SIGNATURES,
    _norm_units,
    attr_str,
    clip_lonlat,
    decode_time_values,
    read_selection,
    to_dataarray,
)

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


VARIABLES = ("sm", "frozen")


def _variable(options: dict) -> str:
    v = options.get("variable", "sm")
    if v not in VARIABLES:
        raise ConfigError(f"source {options.get('name', '?')!r}: variable must be one of "
                          f"{', '.join(map(repr, VARIABLES))}, got {v!r}")
    return v


def _porosity(options: dict) -> float | None:
    v = options.get("porosity")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < float(v) <= 1:
        raise ConfigError(f"source {options.get('name', '?')!r}: porosity must be a number in (0, 1] m3 m-3, got {v!r}")
    return float(v)


class _Nc:
    """The few NetCDF questions the reader asks, answered by h5py for a NetCDF-4 file (NetCDF-4 is
    HDF5, which h5py opens about ten times faster than ``netCDF4.Dataset``; through :mod:`._h5`)
    or by netCDF4 for a NetCDF-3 one. Values come raw: no masking, no scaling (the reader does
    both)."""

    def __init__(self, path: Path):
        self.h5, error = True, None
        try:
            self.f = h5.File(path)
            if not self.f.userblock:
                return
            self.f.close()  # the signature is not at byte 0: check_signature rejects it, as scan does
        except _NC_ERRORS as exc:
            error = exc
        # not HDF5: say why (HTML page, empty, truncated, ...), or read it as NetCDF-3
        head = check_signature(path, NETCDF_SIGNATURES, "a NetCDF file")
        if head.startswith(HDF5_SIGNATURE):
            raise error
        import netCDF4

        self.h5 = False
        self.f = netCDF4.Dataset(path, "r")
        self.f.set_auto_maskandscale(False)

    def close(self) -> None:
        self.f.close()

    def var(self, name: str):
        """The variable ``name``, or None (a NetCDF-4 dimension without values is no variable)."""
        if not self.h5:
            return self.f.variables.get(name)
        if name not in self.f:
            return None
        obj = self.f[name]
        if not obj.is_dataset:
            return None
        a = obj.attrs
        if "CLASS" in a and "units" not in a and attr_str(a.get("NAME", b"")).startswith(_DIM_ONLY):
            return None
        return obj

    def variables(self) -> list[str]:
        if not self.h5:
            return list(self.f.variables)
        return [n for n in self.f.keys() if self.var(n) is not None]

    def dims(self, v) -> tuple[str, ...]:
        """Dimension names; ``()`` when the file does not record them (HDF5 without dimension scales)."""
        if not self.h5:
            return tuple(v.dimensions)
        return v.dim_names() or ()

    def attrs(self, v, wanted: tuple[str, ...]) -> dict:
        if not self.h5:
            return {k: v.getncattr(k) for k in v.ncattrs() if k in wanted}
        a = v.attrs
        return {k: a[k] for k in wanted if k in a}


_DIM_ONLY = "This is a netCDF dimension but not a netCDF variable"


def _open(path: Path) -> _Nc:
    try:
        return _Nc(path)
    except _NC_ERRORS as exc:
        raise BadInputError(f"{path}: truncated or corrupt NetCDF file ({exc})") from None


def _check_time(path: Path, nc: _Nc, day: np.datetime64) -> None:
    tv = nc.var("time")
    if tv is None:
        return
    units = attr_str(nc.attrs(tv, ("units",)).get("units", ""))
    values = np.asarray(tv[()]).ravel()
    if values.size != 1:
        raise BadInputError(f"{path}: holds {values.size} time steps; ESA CCI L3S daily files hold one")
    try:
        t = decode_time_values(values, units)[0]
    except ValueError:
        raise BadInputError(f"{path}: time variable has units {units!r}, not '<unit> since <date>'") from None
    if t.astype("datetime64[D]") != day:
        raise BadInputError(f"{path}: time variable says {str(t)[:10]}, but the file name says {day}")


def scan(path, options: dict) -> FileInfo:
    """Name and signature only (see the contract in :mod:`hydrocast.sources`): ``sm`` and the
    ``time`` variable are checked by :func:`read`."""
    path = path if isinstance(path, Path) else Path(path)
    check_signature(path, NETCDF_SIGNATURES, "a NetCDF file")
    info = parse_name(path)
    _flag_mask(options)
    _variable(options)
    return FileInfo(path, (info["day"],), "1D", "", {"product": info["product"], "version": info["version"]})


def read(path, options: dict, bbox):
    return to_dataarray(read_arrays(path, options, bbox))


_SM_ATTRS = ("units", "_FillValue", "valid_range", "scale_factor", "add_offset")


def read_arrays(path, options: dict, bbox) -> Arrays:
    path = Path(path)
    nc = _open(path)  # (a file that does not open is then checked for an HTML page, truncation, ...)
    try:
        info = parse_name(path)
        variable = _variable(options)
        flag_mask = _flag_mask(options)
        porosity = _porosity(options)
        main = "flag" if variable == "frozen" else "sm"
        main_v = nc.var(main)
        if main_v is None:
            found = ", ".join(sorted(nc.variables())) or "none"
            why = " (variable = 'frozen' reads the flag)" if variable == "frozen" else ""
            raise BadInputError(f"{path}: has no variable {main!r}{why} (found: {found})")
        _check_time(path, nc, info["day"])
        dims = nc.dims(main_v)
        lon_n = next((d for d in dims if d in ("lon", "longitude")), None)
        lat_n = next((d for d in dims if d in ("lat", "latitude")), None)
        lon_v = nc.var(lon_n) if lon_n else None
        lat_v = nc.var(lat_n) if lat_n else None
        if lon_v is None or lat_v is None:
            raise BadInputError(f"{path}: {main!r} has dimensions {dims}, not lat/lon with coordinates")
        if any(n != 1 for d, n in zip(dims, main_v.shape) if d not in (lon_n, lat_n)):
            raise BadInputError(f"{path}: {main!r} has shape {main_v.shape} {dims}; expected one day")
        xs, ys = clip_lonlat(path, lon_v[()], lat_v[()], bbox)
        sel = {lon_n: xs, lat_n: ys}
        values = read_selection(lambda idx: main_v[idx], dims, sel, lon_n)
        attrs = nc.attrs(main_v, _SM_ATTRS)
        flag = None
        flag_fill = 127
        fv = main_v if variable == "frozen" else nc.var("flag")
        if fv is not None:
            fdims = nc.dims(fv)
            if fdims != dims:
                raise BadInputError(f"{path}: 'flag' dimensions {fdims} differ from 'sm' {dims}")
            flag = values if fv is main_v else read_selection(lambda idx: fv[idx], dims, sel, lon_n)
            flag_fill = int(np.asarray(nc.attrs(fv, ("_FillValue",)).get("_FillValue", 127)).ravel()[0])
    except BadInputError:
        raise
    except _NC_ERRORS as exc:
        raise BadInputError(f"{path}: truncated or corrupt NetCDF file ({exc})") from None
    finally:
        nc.close()

    extra = {"product": info["product"], "version": info["version"]}
    if variable == "frozen":
        return _arrays(path, info, frozen_flag(flag, flag_fill), dims, lat_n, lon_n, xs, ys, "1",
                       {**extra, "variable": "frozen", "flag_fill": flag_fill})
    units = attr_str(attrs.get("units", "")).strip()
    sm_fill = attrs.get("_FillValue")
    valid_range = attrs.get("valid_range")
    sm = values.astype("float64")
    # what netCDF4 (auto-scaling, no auto-masking) gave the previous reader: scaled values, and
    # the comparisons below against the attributes as written
    if "scale_factor" in attrs:
        sm = sm * float(np.asarray(attrs["scale_factor"]).ravel()[0])
    if "add_offset" in attrs:
        sm = sm + float(np.asarray(attrs["add_offset"]).ravel()[0])
    ok = np.isfinite(sm)
    if sm_fill is not None:
        ok &= sm != float(np.asarray(sm_fill).ravel()[0])
    if valid_range is not None and np.size(valid_range) == 2:
        lo, hi = (float(v) for v in np.asarray(valid_range).ravel())
        ok &= (sm >= lo) & (sm <= hi)
    extra["flag_mask"] = flag_mask
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
    return _arrays(path, info, sm, dims, lat_n, lon_n, xs, ys, "m3 m-3", extra)


def frozen_flag(flag: np.ndarray, fill: int = 127) -> np.ndarray:
    """The frozen/snow flag (bit 1) of raw ``flag`` values as float64: 1 where set, 0 where the
    pixel was observed without it, NaN where ``flag`` is ``fill`` (no retrieval)."""
    f = np.asarray(flag).astype("int16")
    return np.where(f == fill, np.nan, (f & 1).astype("float64"))


def _arrays(path: Path, info: dict, values: np.ndarray, dims, lat_n, lon_n, xs, ys, units: str,
            extra: dict) -> Arrays:
    """``values`` (as stored, ``dims`` order) as the contract's (1, lat, lon) float32 Arrays."""
    order = [dims.index(lat_n), dims.index(lon_n)]
    rest = [i for i in range(len(dims)) if i not in order]
    data = np.transpose(values, rest + order).reshape(1, ys.size, xs.size)
    time = np.array([info["day"]], dtype="datetime64[ns]")
    return Arrays(data.astype("float32"), time, xs.coords, ys.coords, "EPSG:4326", units, "1D", "",
                  path.name, extra)
