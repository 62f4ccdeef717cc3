"""NASA GPM IMERG precipitation: half-hourly HDF5, daily and monthly files (kind ``"imerg"``).

Supported files (the version suffix is never hard-coded: V06B, V07A, V07B ... all work):

* half-hourly, step "30min", HDF5 with group ``/Grid``:
  ``3B-HHR[-E|-L].MS.MRG.3IMERG.YYYYMMDD-SHHMMSS-EHHMMSS.NNNN.V07B.HDF5`` (also ``.RT-H5``
  near-real-time copies; NNNN = minutes since 00 UTC, checked against SHHMMSS);
* daily, step "1D", flat NetCDF4: ``3B-DAY[-E|-L].MS.MRG.3IMERG.YYYYMMDD-S000000-E235959.V07B.nc4``
  (and GES DISC subsets such as ``....V06.nc4.SUB.nc4``);
* monthly, step "1MS": ``3B-MO.MS.MRG.3IMERG.YYYYMM01-S000000-E235959.MM.V06B.HDF5`` (``/Grid``) and
  GES DISC ``.HDF5.nc4`` subsets (flat). ``scan`` lists every day of the month; the values are the
  month's mean rate.

Run: ``-E`` early, ``-L`` late, none final. The time comes from the file *name*; the header (the
``FileHeader`` ``StartGranuleDateTime``, daily ``BeginDate``/``BeginTime`` and the ``time``
variable) must agree with it, else BadInputError. V07's ``seconds since 1980-01-06`` with
``calendar = "julian"`` is read as plain elapsed seconds (its LongName says: no leap seconds added),
which is what it is; the calendar label is ignored.

Variable: ``precipitation`` (V07, daily, monthly) or ``precipitationCal`` (V06 half-hourly and
daily), chosen by presence; ``options["variable"]`` overrides (e.g.
``"probabilityLiquidPrecipitation"``, kept in ``percent``, 0–100 else NaN). Data are stored
(time, lon, lat) — the dimension names are read from the file — and returned (time, y=lat, x=lon)
with latitude ascending as stored.

Values: ``_FillValue`` / ``missing_value`` / ``CodeMissingValue`` (−9999.9) become NaN, and so does
any other negative precipitation (IMERG has no legitimate negative rates; a negative value is a
missing-data code, never a zero). Units come from the ``units`` attribute and become a mean rate
in mm/day: ``mm/hr`` ×24, ``mm/day`` ×1, ``kg m-2 s-1`` ×86400, and an amount (``mm``, as in V06
daily files) is divided by the step's length in days (daily ×1, half-hour ×48, month ÷ days).
Unknown units are a BadInputError.

A file without a single valid value anywhere is refused like any bad file (BadInputError "no
valid precipitation value in the whole field ...") when its values are not all the declared
fill value (e.g. all −5000: a broken writer, a tampered file), and when it is a daily or monthly
file or a global half-hourly granule that is all fill value (a whole day without one estimate
over the file's region, or an empty global granule; ingest then builds the day from the run's
half-hourly files, if any). The one exception is a **regional cut of one half-hour** (a GES DISC
subset) that is all fill value: a legitimate gap in the coverage for that half-hour (the real
V06B south-pole cut in the shared test data is one), read as NaN, silently, and counted as a
missing half-hour. A region with no valid value read from a larger file that has valid values
elsewhere is silent too. The check costs nothing on the usual path: only when the region read
holds no valid value is the whole field scanned, in blocks, stopping at the first valid value
(:func:`_field_state`).

Reading is done with h5py (NetCDF4 files are HDF5; its low-level API, see :mod:`._h5`), slicing
the lat/lon vectors to ``bbox`` first, so a global 3600×1800 granule costs only the region's
cells. ``scan`` reads the name and the file's first bytes only; ``read`` checks the header.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from . import HDF5_SIGNATURE, Arrays, FileInfo, check_signature
from . import _h5 as h5
from .generic import (
    _norm_units,
    attr_str,
    clip_lonlat,
    days_covered,
    decode_time_values,
    precip_factors,
    read_selection,
    step_end,
    to_dataarray,
)

_NAME = re.compile(
    r"3B-(?P<product>HHR|DAY|MO)(?:-(?P<run>[EL]))?\.MS\.MRG\.3IMERG\."
    r"(?P<date>\d{8})-S(?P<start>\d{6})-E(?P<end>\d{6})"
    r"(?:\.(?P<seq>\d{4}|\d{2}))?"
    r"\.(?P<version>V\d{2}[A-Z]?)"
    r"(?P<ext>(?:\.[A-Za-z0-9_-]+)*)$"
)
_STEP = {"HHR": "30min", "DAY": "1D", "MO": "1MS"}
_RUN = {"E": "early", "L": "late", None: "final"}
_PRECIP_VARS = ("precipitation", "precipitationCal")
_LON_NAMES = ("lon", "longitude", "nlon")
_LAT_NAMES = ("lat", "latitude", "nlat")
_HDF5_ERRORS = (OSError, KeyError, ValueError, RuntimeError)


def parse_name(path: Path) -> dict:
    """Product, run, version and interval start of an IMERG file name (BadInputError if it does
    not parse or is inconsistent)."""
    m = _NAME.search(path.name)
    if not m:
        raise BadInputError(f"{path}: name is not an IMERG granule name "
                            "(3B-HHR|3B-DAY|3B-MO[-E|-L].MS.MRG.3IMERG.YYYYMMDD-SHHMMSS-EHHMMSS...V..)")
    g = m.groupdict()
    d, s, e = g["date"], g["start"], g["end"]
    try:
        start = np.datetime64(f"{d[:4]}-{d[4:6]}-{d[6:]}T{s[:2]}:{s[2:4]}:{s[4:]}", "ns")
    except ValueError:
        raise BadInputError(f"{path}: name holds an invalid date/time {d}-S{s}") from None
    product = g["product"]
    ok = True
    if product == "HHR":
        minutes = int(s[:2]) * 60 + int(s[2:4])
        end_expected = start + np.timedelta64(1799, "s")
        ok = (s[2:4] in ("00", "30") and s[4:] == "00" and g["seq"] is not None and len(g["seq"]) == 4
              and int(g["seq"]) == minutes
              and str(end_expected)[11:19].replace(":", "") == e)
    elif product == "DAY":
        ok = s == "000000" and e == "235959"
    else:  # MO
        ok = d[6:] == "01" and s == "000000" and (g["seq"] is None or int(g["seq"]) == int(d[4:6]))
    if not ok:
        raise BadInputError(f"{path}: IMERG {product} name has inconsistent start/end/sequence fields")
    return {"product": product, "run": _RUN[g["run"]], "version": g["version"], "step": _STEP[product],
            "start": start}


def _attr(obj, *names, default=None):
    for n in names:
        if n in obj.attrs:
            return obj.attrs[n]
    return default


_START_GRANULE = re.compile(r"StartGranuleDateTime=\s*(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})")
_NO_MATCH = object()


def _granule_start(header) -> np.datetime64 | None | object:
    m = _START_GRANULE.search(attr_str(header))
    if not m:
        return _NO_MATCH
    try:
        return np.datetime64(f"{m.group(1)}T{m.group(2)}", "ns")
    except ValueError:  # e.g. "2012-06-00" in early test products: no usable check
        return None


def _header_start(f) -> np.datetime64 | None:
    """StartGranuleDateTime from a (possibly GES-DISC-renamed) FileHeader, or BeginDate/BeginTime."""
    fattrs = f.attrs
    # "FileHeader" itself first: listing every global attribute costs more than reading one
    if "FileHeader" in fattrs:
        got = _granule_start(fattrs["FileHeader"])
        if got is not _NO_MATCH:
            return got
    for key in fattrs:
        if key.endswith("FileHeader") and key != "FileHeader":
            got = _granule_start(fattrs[key])
            if got is not _NO_MATCH:
                return got
    if "BeginDate" in fattrs:
        date = attr_str(fattrs["BeginDate"]).strip()
        clock = attr_str(fattrs.get("BeginTime", "00:00:00")).strip()[:8]
        try:
            return np.datetime64(f"{date}T{clock}", "ns")
        except ValueError:
            return None
    return None


def _group(f):
    return f["Grid"] if "Grid" in f else f


def _check_header_time(path: Path, f, grp, info: dict) -> None:
    start, step = info["start"], info["step"]
    hstart = _header_start(f)
    if hstart is not None and hstart != start:
        raise BadInputError(f"{path}: header says the data start at {str(hstart)[:19]}, "
                            f"but the file name says {str(start)[:19]}")
    if "time" in grp:
        tv = grp["time"]
        units = attr_str(_attr(tv, "units", "Units", default=""))
        values = np.asarray(tv[()]).ravel()
        if units and values.size:
            try:
                t = decode_time_values(values[:1], units)[0]
            except ValueError:
                return
            end = step_end(start, step)
            if not (start <= t < end):
                raise BadInputError(f"{path}: time variable says {str(t)[:19]}, outside the interval "
                                    f"{str(start)[:19]}..{str(end)[:19]} of the file name")


def _choose_variable(path: Path, grp, options: dict) -> tuple[str, h5.Node]:
    requested = options.get("variable")
    candidates = (requested,) if requested else _PRECIP_VARS
    for name in candidates:
        if name in grp:
            node = grp[name]
            if node.is_dataset:
                return name, node
    import h5py

    def field(name, obj):
        if hasattr(obj, "shape") and len(obj.shape) >= 2 and not name.endswith("_bnds"):
            found.append(name)

    found = []
    with h5py.File(path, "r") as f:  # only to say what the file holds
        (f["Grid"] if "Grid" in f else f).visititems(field)
    raise BadInputError(f"{path}: has no variable {candidates[0]!r} (found: {', '.join(sorted(found)) or 'none'})")


def _coord(grp, names, path: Path, what: str) -> tuple[str, np.ndarray]:
    """A lat/lon vector as stored (:func:`.generic.clip_lonlat` rounds it)."""
    for n in names:
        if n in grp:
            return n, np.asarray(grp[n][()]).ravel()
    raise BadInputError(f"{path}: has no {what} coordinate ({'/'.join(names)})")


def _dim_names(ds, attrs: dict, lon_n: str, lat_n: str, nlon: int, nlat: int) -> tuple[str, ...]:
    dn = attrs.get("DimensionNames")
    if dn is not None:
        names = tuple(x.strip() for x in attr_str(dn).split(","))
        if len(names) == ds.ndim:
            return names
    try:
        names = ds.dim_names()  # the NetCDF-4 dimensions (HDF5 dimension scales)
        if names is not None and len(names) == ds.ndim:
            return names
    except (IndexError, KeyError, RuntimeError, ValueError, TypeError):
        pass
    shape = ds.shape
    if len(shape) == 3 and shape[1:] == (nlon, nlat):
        return ("time", lon_n, lat_n)
    if len(shape) == 3 and shape[1:] == (nlat, nlon):
        return ("time", lat_n, lon_n)
    if shape == (nlon, nlat):
        return (lon_n, lat_n)
    if shape == (nlat, nlon):
        return (lat_n, lon_n)
    raise ValueError(f"cannot tell the dimensions of a {shape} variable")


#: the variable attributes the reader uses (each looked up by name: cheaper than listing them all)
_VAR_ATTRS = ("DimensionNames", "units", "Units", "_FillValue", "missing_value", "CodeMissingValue",
              "scale_factor", "add_offset")


def _var_attrs(ds) -> dict:
    a = ds.attrs
    return {k: a[k] for k in _VAR_ATTRS if k in a}


def _fill_values(attrs: dict) -> list[float]:
    out = []
    for key in ("_FillValue", "missing_value", "CodeMissingValue"):
        if key in attrs:
            v = attrs[key]
            try:
                vals = np.atleast_1d(np.asarray(v)).ravel()
                if vals.dtype.kind in "SUO":
                    vals = np.array([float(attr_str(x)) for x in vals])
                out.extend(float(x) for x in vals)
            except ValueError:
                continue
    return out


def _open(path: Path):
    """The file, opened; BadInputError naming it when it is not an HDF5 file that starts with the
    HDF5 signature (HTML page, empty, truncated, ...: :func:`.check_signature` says which)."""
    try:
        f = h5.File(path)
    except _HDF5_ERRORS as exc:
        check_signature(path, (HDF5_SIGNATURE,), "an HDF5/NetCDF4 file")
        raise BadInputError(f"{path}: truncated or corrupt HDF5 file ({exc})") from None
    if f.userblock:  # the signature is not at byte 0: rejected, as scan rejects it
        f.close()
        check_signature(path, (HDF5_SIGNATURE,), "an HDF5/NetCDF4 file")
    return f


def scan(path, options: dict) -> FileInfo:
    """Name and signature only (see the contract in :mod:`hydrocast.sources`): the header and the
    variable are checked by :func:`read`."""
    path = path if isinstance(path, Path) else Path(path)
    check_signature(path, (HDF5_SIGNATURE,), "an HDF5/NetCDF4 file")
    info = parse_name(path)
    days = days_covered(info["start"], info["step"])
    return FileInfo(path, days, info["step"], info["run"], {"product": info["product"], "version": info["version"]})


def read(path, options: dict, bbox):
    return to_dataarray(read_arrays(path, options, bbox))


def read_arrays(path, options: dict, bbox) -> Arrays:
    path = Path(path)
    with _open(path) as f:  # (a file that does not open is then checked for an HTML page, truncation, ...)
        info = parse_name(path)
        try:
            grp = _group(f)
            _check_header_time(path, f, grp, info)
            name, ds = _choose_variable(path, grp, options)
            attrs = _var_attrs(ds)
            lon_n, lon = _coord(grp, _LON_NAMES, path, "longitude")
            lat_n, lat = _coord(grp, _LAT_NAMES, path, "latitude")
            dims = _dim_names(ds, attrs, lon_n, lat_n, lon.size, lat.size)
            if lon_n not in dims or lat_n not in dims:
                raise BadInputError(f"{path}: variable {name!r} has dimensions {dims}, not lon/lat")
            if ds.shape[dims.index(lon_n)] != lon.size or ds.shape[dims.index(lat_n)] != lat.size:
                raise BadInputError(f"{path}: variable {name!r} has shape {ds.shape} {dims}, which does not "
                                    f"match {lon_n}={lon.size} {lat_n}={lat.size}")
            others = [d for d in dims if d not in (lon_n, lat_n)]
            if len(others) > 1 or (others and ds.shape[dims.index(others[0])] != 1):
                raise BadInputError(f"{path}: variable {name!r} has shape {ds.shape} {dims}; "
                                    "expected one time step on a lon/lat grid")
            xs, ys = clip_lonlat(path, lon, lat, bbox)
            raw = read_selection(lambda idx: ds[idx], dims, {lon_n: xs, lat_n: ys}, lon_n)
            units = attr_str(_attr_dict(attrs, "units", "Units", default="")).strip()
            percent = _norm_units(units) in ("percent", "%")
            data = _decode(raw, attrs)
            if not _any_valid(data, percent):  # rare: only then is the whole field looked at
                _check_field(path, ds, attrs, percent, name, gap_allowed=info["step"] == "30min"
                             and not _covers_globe(lon, lat))
        except BadInputError:
            raise
        except _HDF5_ERRORS as exc:
            raise BadInputError(f"{path}: truncated or corrupt HDF5 file ({exc})") from None
    # to (lat, lon) with a leading time axis
    order = [dims.index(lat_n), dims.index(lon_n)]
    other_axes = [i for i in range(len(dims)) if i not in order]
    data = np.transpose(data, other_axes + order).reshape(1, ys.size, xs.size)

    start, step = info["start"], info["step"]
    extra = {"variable": name, "version": info["version"], "product": info["product"]}
    if percent:
        data[(data < 0) | (data > 100)] = np.nan
        out_units = "percent"
    else:
        factor = precip_factors(path, units, step, [start])[0]
        data[data < 0] = np.nan
        data = data * factor
        out_units = "mm/day"
        extra["original_units"] = units
    return Arrays(data.astype("float32"), np.array([start], dtype="datetime64[ns]"), xs.coords, ys.coords,
                  "EPSG:4326", out_units, step, info["run"], path.name, extra)


def _decode(raw: np.ndarray, attrs: dict) -> np.ndarray:
    """Stored values as float64: fill values and non-finite values NaN, scale/offset applied."""
    missing = ~np.isfinite(raw) if raw.dtype.kind == "f" else np.zeros(raw.shape, bool)
    for fv in _fill_values(attrs):
        try:
            missing |= raw == np.asarray(fv).astype(raw.dtype)
        except (OverflowError, ValueError):
            continue
    data = raw.astype("float64")
    scale = attrs.get("scale_factor")
    offset = attrs.get("add_offset")
    if scale is not None:
        data = data * float(np.asarray(scale).ravel()[0])
    if offset is not None:
        data = data + float(np.asarray(offset).ravel()[0])
    data[missing] = np.nan
    return data


def _any_valid(data: np.ndarray, percent: bool) -> bool:
    """Whether any decoded value is valid: >= 0 (precipitation) or 0..100 (a percentage)."""
    with np.errstate(invalid="ignore"):
        ok = (data >= 0) & (data <= 100) if percent else data >= 0
    return bool(ok.any())


#: values per block when :func:`_field_state` scans a whole field (4 MB of float32)
_BLOCK = 1 << 20


def _is_fill(raw: np.ndarray, attrs: dict) -> np.ndarray:
    """Where ``raw`` holds a declared fill value (NaN counts only when a fill value is NaN)."""
    out = np.zeros(raw.shape, bool)
    for fv in _fill_values(attrs):
        if np.isnan(fv):
            if raw.dtype.kind == "f":
                out |= np.isnan(raw)
            continue
        try:
            out |= raw == np.asarray(fv).astype(raw.dtype)
        except (OverflowError, ValueError):
            continue
    return out


def _field_state(ds, attrs: dict, percent: bool) -> tuple[bool, bool, float | None]:
    """``(any valid value, every value a declared fill value, an invalid value that is not a fill)``
    over the WHOLE field, read in blocks along its first axis longer than 1, stopping at the first
    valid value (for a granule with data anywhere, usually within the first block)."""
    shape = ds.shape
    axis = next((i for i, n in enumerate(shape) if n > 1), 0)
    rest = max(1, int(np.prod(shape)) // max(shape[axis], 1))
    step = max(1, _BLOCK // rest)
    only_fill, example = True, None
    for a in range(0, shape[axis], step):
        index = tuple(slice(a, a + step) if i == axis else slice(None) for i in range(len(shape)))
        raw = np.asarray(ds[index])
        if _any_valid(_decode(raw, attrs), percent):
            return True, False, None
        other = ~_is_fill(raw, attrs)
        if other.any():
            only_fill = False
            example = example if example is not None else float(raw[other].flat[0])
    return False, only_fill, example


def _covers_globe(lon: np.ndarray, lat: np.ndarray) -> bool:
    """Whether the file's grid spans all longitudes and latitudes (a global granule, not a cut)."""
    def extent(v):
        return v.size * float(np.abs(np.diff(v.astype("float64"))).mean()) if v.size > 1 else 0.0
    return extent(lon) >= 359.9 and extent(lat) >= 179.9


def _check_field(path: Path, ds, attrs: dict, percent: bool, name: str, gap_allowed: bool) -> None:
    """BadInputError unless the field holds a valid value somewhere or, where ``gap_allowed`` (a
    regional cut of one half-hour), is all fill value: a gap in the product's coverage (see the
    module docstring)."""
    has_valid, only_fill, example = _field_state(ds, attrs, percent)
    if has_valid or (only_fill and gap_allowed):
        return
    what = f"value of {name!r}" if percent else "precipitation value"
    why = ("every value is the fill value" if only_fill
           else f"its values are NaN, negative or out of range, e.g. {example:g}: a broken file")
    raise BadInputError(f"{path}: no valid {what} in the whole field ({why})")


def _attr_dict(attrs: dict, *names, default=None):
    for n in names:
        if n in attrs:
            return attrs[n]
    return default
