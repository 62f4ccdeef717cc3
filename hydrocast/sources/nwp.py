"""Weather-forecast precipitation (NWP) from GRIB1/GRIB2 files: ECMWF open data and the like.

The readers of the source kinds ``nwp_grib`` and ``nwp_netcdf``. They are not in the daily-cube registry
(a forecast has two time axes, run and lead): :mod:`hydrocast.forecasts` stores their daily totals beside
the cube with dims (issue date, lead, y, x), and ingest updates that store.

Runs, not files
---------------
:func:`scan_runs` reads the header of every GRIB message (eccodes, no data decoded) and groups the ``tp``
(total precipitation) messages into forecast :class:`Run` objects by their metadata: centre, reference time
(``dataDate``/``dataTime``), ``stream``, deterministic (``dataType`` ``fc``) or ensemble (``cf``/``pf``), and
grid. Never by file: a run may be one file holding every step and member, or one file per step as ECMWF's
open-data server names them (``20240101000000-24h-enfo-ef.grib2``), and one file may hold several runs.
Members: ``number`` (absent → 0), so the control ``cf`` is member 0 and the perturbed ``pf`` are 1..N.
The same (member, step) in two messages is refused (BadInputError naming both files).

Steps come from eccodes' ``startStep``/``endStep`` read in seconds (``stepUnits`` set to ``s``), which
honours each message's unit (minutes in some files), never the raw ``forecastTime``.

Daily totals
------------
:func:`read_run` returns a float32 ``DataArray`` with dims ``(member, lead_day, y, x)``: the precipitation
total in **mm** of each lead day (numerically the day's mean rate in mm/day, the cube's canonical unit).
``tp`` is accumulated from the run's start (metres; ``kg m**-2`` and ``mm`` are taken as mm), so lead
day ``k`` (1-based) is ``tp(24k h) − tp(24(k−1) h)``, covering ``[T + 24(k−1) h, T + 24k h)`` for the
run's reference time ``T``. ``tp`` at step 0 is zero by definition (a step-0 message is not needed and
not read). Only steps that are whole multiples of 24 h are used; every one of them from 24 h up to the
run's last such step must be there for every member, else BadInputError (a lead day needs both ends).
Differences below zero by at most 0.5 mm (packing noise) become 0; a larger decrease means the field is
not an accumulation from the run start and is refused. Values are decoded by cfgrib (xarray engine,
no index file written next to the data), which puts any scanning order (north→south, south→north,
alternate rows) onto latitude/longitude axes and bitmap-missing points to NaN; the grid is then
clipped to ``bbox = (west, south, east, north)`` (EPSG:4326 degrees, or ``None`` for the whole grid)
with the other readers' rule (cells whose centre lies in the box widened by half a cell; longitudes
from 0..360 or −180..180 grids are shifted into the box's range; the antimeridian works). ``y`` is
returned north → south, ``x`` west → east. The CRS (EPSG:4326) is written with rioxarray.

What is refused (BadInputError, one line that starts with the file name): a file that does not start
with ``GRIB`` (an HTML page, an empty file), a corrupt or truncated message, a file with no ``tp``
message, ``tp`` on a grid other than regular lat/lon (reduced Gaussian, Lambert, ...: *not supported
yet*; regridding them would need the grid's geometry, not done here), ``tp`` of a ``dataType`` that is
not a forecast, a ``tp`` accumulated over a window that does not start at the run's start (bucket
totals), an average/max ``stepType`` (``instant`` is accepted: GRIB1 ``tp`` is often labelled so; ECMWF's
``tp`` is always accumulated from the start), units other than m / kg m**-2 / mm, a run without a 24 h
step, missing intermediate 24 h steps, and a grid that does not overlap ``bbox``.

Which run serves which issue date
---------------------------------
hydrocast's days are UTC days; the forecast for issue date ``D`` is made once day ``D`` is over, and its
lead ``n`` is the UTC day ``D + n``. A run with reference time ``T`` serves the issue date whose day ended
at or before ``T`` and is the latest such day: ``D + 1 day <= T < D + 2 days``. Within that window only a
run started at 00 UTC (``T = D + 1 day``) has lead days that are UTC days (its lead day ``k`` is the UTC
day ``D + k``, so lead ``n`` of the issue is its lead day ``n``); an 06/12/18 UTC run's 24 h windows
straddle UTC days and serve nothing yet. Older runs (``T <= D``) are not used for ``D`` (a fallback,
with shifted leads, is later work), and a later run (``T >= D + 2 days``) never is: it already knew day
``D + 1``. :func:`lead_days_for_issue` applies this rule.

CF NetCDF forecasts
-------------------
:func:`scan_netcdf_runs` / :func:`read_netcdf_run` give the same ``(member, lead_day, y, x)`` mm totals
from CF NetCDF files (a reference-time dim ``forecast_reference_time`` or ``time`` x ``step``/``lead`` x
lat/lon, optionally members); accumulated from the run start unless the step bounds or ``cell_methods``
say per-step totals. The rules are written once, above :class:`NetCDFRun`. :class:`RunReader` is
:func:`read_run` for many GRIB runs (the forecast store's path: files opened once).

Import order: eccodes must be loaded after pyproj (see :mod:`hydrocast`, whose ``__init__`` imports
pyproj first); this module is inside the package, so that is always the case here.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from . import check_signature

DAY_S = 86_400
#: ``tp`` units (as eccodes spells them) -> factor to mm
UNIT_FACTORS = {"m": 1000.0, "kg m**-2": 1.0, "kg m-2": 1.0, "mm": 1.0}
#: a decrease of the accumulation (mm) still taken as packing noise (clipped to 0)
NOISE_MM = 0.5
_ENSEMBLE_TYPES = ("cf", "pf")
_FORECAST_TYPES = ("fc", "cf", "pf", "")


@dataclass(frozen=True)
class Message:
    """The header of one GRIB message, as :func:`scan_file` reads it."""

    path: Path
    offset: int  # byte offset of the message in the file
    short_name: str
    units: str
    reference_time: np.datetime64  # dataDate + dataTime, datetime64[m], UTC
    centre: str
    stream: str  # "" when the message has no stream key
    data_type: str  # "fc", "cf", "pf", "an", ... ("" when absent)
    member: int  # ``number``, 0 when absent
    step_type: str  # "accum", "instant", "avg", ...
    start_s: int  # startStep in seconds
    end_s: int  # endStep in seconds
    grid_type: str  # "regular_ll", "reduced_gg", "lambert", ...
    grid: tuple  # (Ni, Nj, south, north, west mod 360, di, dj) for regular_ll; () otherwise
    keys: tuple  # (key, value) pairs cfgrib filters on to find this message's field in its file


@dataclass(frozen=True)
class Run:
    """One forecast run: every ``tp`` message of one reference time, stream, kind and grid."""

    reference_time: np.datetime64  # datetime64[m], UTC
    centre: str
    stream: str
    ensemble: bool  # True for cf/pf messages, False for a deterministic fc
    grid: tuple
    units: str
    messages: tuple[Message, ...]  # sorted by (member, end_s)

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(sorted({m.path for m in self.messages}))

    @property
    def members(self) -> tuple[int, ...]:
        return tuple(sorted({m.member for m in self.messages}))

    @property
    def steps_h(self) -> tuple[float, ...]:
        return tuple(sorted({m.end_s / 3600 for m in self.messages}))

    @property
    def lead_days(self) -> int:
        """The K of :func:`read_run` as the headers tell it: the last whole-day step in days (0: none).
        A run missing an intermediate 24 h step still fails in :func:`read_run`."""
        return max((m.end_s // DAY_S for m in self.messages if m.end_s > 0 and m.end_s % DAY_S == 0), default=0)

    @property
    def label(self) -> str:
        kind = "ensemble" if self.ensemble else "deterministic"
        t = str(self.reference_time)[:16].replace("T", " ")
        return f"{self.centre} {self.stream or '-'} {kind} run of {t} UTC"

    def where(self) -> str:
        """The run's files, for error messages: the first one, and how many more."""
        p = self.paths
        return f"{p[0]}" + (f" (and {len(p) - 1} more file(s) of the {self.label})" if len(p) > 1 else "")


# -- scanning -----------------------------------------------------------------------------------

def _get(h, key: str, default=None, ktype=None):
    import eccodes

    try:
        if not eccodes.codes_is_defined(h, key):
            return default
        return eccodes.codes_get(h, key, ktype) if ktype else eccodes.codes_get(h, key)
    except eccodes.GribInternalError:
        return default


def _grid_signature(h) -> tuple:
    ni, nj = _get(h, "Ni", 0, int), _get(h, "Nj", 0, int)
    lat1, lat2 = _get(h, "latitudeOfFirstGridPointInDegrees", 0.0), _get(h, "latitudeOfLastGridPointInDegrees", 0.0)
    lon1, lon2 = _get(h, "longitudeOfFirstGridPointInDegrees", 0.0), _get(h, "longitudeOfLastGridPointInDegrees", 0.0)
    west = lon2 if _get(h, "iScansNegatively", 0, int) else lon1
    di, dj = _get(h, "iDirectionIncrementInDegrees", 0.0), _get(h, "jDirectionIncrementInDegrees", 0.0)
    r = 6
    return (ni, nj, round(min(lat1, lat2), r), round(max(lat1, lat2), r), round(west % 360.0, r),
            round(float(di), r), round(float(dj), r))


def _message(path: Path, h) -> Message:
    import eccodes

    date, time = _get(h, "dataDate", 0, int), _get(h, "dataTime", 0, int)
    try:
        ref = np.datetime64(dt.datetime(date // 10000, date // 100 % 100, date % 100, time // 100, time % 100), "m")
    except ValueError:
        raise BadInputError(f"{path}: message at byte {_get(h, 'offset', 0, int)} has an invalid reference time "
                            f"(dataDate {date}, dataTime {time})") from None
    eccodes.codes_set(h, "stepUnits", "s")  # endStep/startStep in seconds, whatever unit the message uses
    grid_type = str(_get(h, "gridType", ""))
    grid = _grid_signature(h) if grid_type == "regular_ll" else ()
    keys = [("shortName", _get(h, "shortName", "")), ("dataDate", date), ("dataTime", time),
            ("gridType", grid_type)]
    for k in ("dataType", "stream", "Ni", "Nj"):
        v = _get(h, k)
        if v is not None:
            keys.append((k, v))
    return Message(
        path=path, offset=_get(h, "offset", 0, int), short_name=str(_get(h, "shortName", "")),
        units=str(_get(h, "units", "")), reference_time=ref, centre=str(_get(h, "centre", "")),
        stream=str(_get(h, "stream", "")), data_type=str(_get(h, "dataType", "")), member=_get(h, "number", 0, int),
        step_type=str(_get(h, "stepType", "")), start_s=_get(h, "startStep", 0, int), end_s=_get(h, "endStep", 0, int),
        grid_type=grid_type, grid=grid, keys=tuple(keys))


def scan_file(path: str | Path) -> list[Message]:
    """The header of every message of one GRIB file (any parameter), in file order.

    BadInputError naming the file: missing, empty, not starting with ``GRIB`` (an HTML page ...), a
    corrupt message (wrong length, unsupported edition) or a truncated file."""
    import eccodes

    path = Path(path)
    check_signature(path, (b"GRIB",), "a GRIB file")
    out: list[Message] = []
    with open(path, "rb") as fh:
        while True:
            at = fh.tell()
            try:
                h = eccodes.codes_grib_new_from_file(fh, headers_only=True)
            except eccodes.PrematureEndOfFileError:
                raise BadInputError(f"{path}: truncated GRIB file (message at byte {at} ends early: "
                                    f"an interrupted download?)") from None
            except eccodes.GribInternalError as exc:
                raise BadInputError(f"{path}: corrupt GRIB message at byte {at} ({exc})") from None
            if h is None:
                break
            try:
                out.append(_message(path, h))
            except eccodes.GribInternalError as exc:
                raise BadInputError(f"{path}: GRIB message at byte {at} has unreadable header keys ({exc})") from None
            finally:
                eccodes.codes_release(h)
    if not out:
        raise BadInputError(f"{path}: holds no GRIB message")
    return out


def _check_tp(m: Message) -> None:
    """Raise BadInputError unless ``m`` is a ``tp`` message this reader can use."""
    where = f"{m.path}: tp message at byte {m.offset}"
    if m.grid_type != "regular_ll":
        raise BadInputError(f"{where} is on a {m.grid_type} grid: not supported yet (regular lat/lon grids only)")
    if m.data_type not in _FORECAST_TYPES:
        raise BadInputError(f"{where} has dataType {m.data_type!r}, not a forecast (fc, cf or pf)")
    if m.units not in UNIT_FACTORS:
        raise BadInputError(f"{where} has units {m.units!r} (expected m, kg m**-2 or mm)")
    if m.step_type == "accum":
        if m.start_s != 0:
            raise BadInputError(f"{where} is accumulated from step {m.start_s / 3600:g} h to {m.end_s / 3600:g} h, "
                                "not from the run's start")
    elif m.step_type != "instant":
        raise BadInputError(f"{where} has stepType {m.step_type!r} (expected an accumulation from the run's start)")
    if m.end_s < 0:
        raise BadInputError(f"{where} has a negative step ({m.end_s} s)")


def _tp_messages(path: Path) -> list[Message]:
    msgs = scan_file(path)
    tp = [m for m in msgs if m.short_name == "tp"]
    if not tp:
        found = sorted({f"{m.short_name}" + (f" on a {m.grid_type} grid" if m.grid_type != "regular_ll" else "")
                        for m in msgs})
        unsupported = any(m.grid_type != "regular_ll" for m in msgs)
        raise BadInputError(f"{path}: no tp (total precipitation) message; it holds {', '.join(found)}"
                            + (" (and grids other than regular lat/lon are not supported yet)" if unsupported else ""))
    for m in tp:
        _check_tp(m)
    return tp


def scan_runs(paths, rejected: list | None = None) -> list[Run]:
    """Group the ``tp`` messages of ``paths`` into forecast runs (see the module doc), sorted by reference
    time, centre, stream and kind.

    A bad file raises BadInputError naming it; when ``rejected`` is a list, ``(path, message)`` is appended
    to it instead and the other files are still used. The same (member, step) of one run in two messages
    always raises (both files named)."""
    seen: set[Path] = set()
    groups: dict[tuple, list[Message]] = defaultdict(list)
    for p in paths:
        p = Path(p)
        key = p.resolve()
        if key in seen:
            continue
        seen.add(key)
        try:
            tp = _tp_messages(p)
        except BadInputError as exc:
            if rejected is None:
                raise
            rejected.append((p, str(exc)))
            continue
        for m in tp:
            groups[(m.reference_time, m.centre, m.stream, m.data_type in _ENSEMBLE_TYPES, m.grid)].append(m)
    runs = []
    for (ref, centre, stream, ens, grid), msgs in sorted(groups.items(), key=lambda kv: kv[0][:4]):
        msgs.sort(key=lambda m: (m.member, m.end_s, str(m.path), m.offset))
        for a, b in zip(msgs, msgs[1:]):
            if (a.member, a.end_s) == (b.member, b.end_s):
                raise BadInputError(f"{b.path}: tp of member {b.member} at step {b.end_s / 3600:g} h of the run of "
                                    f"{str(ref)[:16]} UTC is also in {a.path} (byte {a.offset}): one of them must go")
        units = {m.units for m in msgs}
        if len(units) > 1:
            raise BadInputError(f"{msgs[0].path}: tp of the run of {str(ref)[:16]} UTC comes in several units "
                                f"({', '.join(sorted(units))})")
        runs.append(Run(ref, centre, stream, ens, grid, units.pop(), tuple(msgs)))
    return runs


# -- reading ------------------------------------------------------------------------------------

def _day_steps(run: Run) -> tuple[int, dict[int, dict[int, Message]]]:
    """``(K, {member: {k: message}})`` for the 24 h steps ``k = 1..K`` of ``run``, or BadInputError."""
    per_member: dict[int, dict[int, Message]] = defaultdict(dict)
    for m in run.messages:
        if m.end_s > 0 and m.end_s % DAY_S == 0:
            per_member[m.member][m.end_s // DAY_S] = m
    if not per_member:
        hours = ", ".join(f"{h:g}" for h in run.steps_h)
        raise BadInputError(f"{run.where()}: the {run.label} has tp at step(s) {hours} h only: no 24 h step, "
                            "so no lead day")
    n_days = max(max(days) for days in per_member.values())
    for member in run.members:
        missing = [24 * k for k in range(1, n_days + 1) if k not in per_member.get(member, {})]
        if missing:
            who = f"member {member} of " if run.ensemble else ""
            raise BadInputError(f"{run.where()}: {who}the {run.label} lacks tp at step(s) "
                                f"{', '.join(map(str, missing))} h, needed for its lead days up to {n_days} "
                                "(a lead day needs both ends)")
    return n_days, per_member


def _select(da, member: int, end_s: int, path: Path):
    """The 2-D (latitude, longitude) field of ``member`` at step ``end_s`` out of a cfgrib DataArray."""
    sel = {}
    for name, want in (("number", member), ("step", np.timedelta64(end_s, "s"))):
        if name in da.dims:
            sel[name] = want
        elif name in da.coords and da[name].values != want:  # a single member or step: a scalar coordinate
            raise BadInputError(f"{path}: cfgrib finds {name} {da[name].values} where the scan found {want}")
    try:
        field = da.sel(sel) if sel else da
    except KeyError:
        raise BadInputError(f"{path}: cfgrib finds no tp of member {member} at step {end_s / 3600:g} h") from None
    if field.dims != ("latitude", "longitude"):
        raise BadInputError(f"{path}: tp decodes to dims {field.dims}, expected (latitude, longitude)")
    return field


def _open_tp(path: Path, keys: tuple):
    import xarray as xr

    try:
        ds = xr.open_dataset(path, engine="cfgrib", decode_timedelta=True,
                             backend_kwargs={"indexpath": "", "errors": "raise", "filter_by_keys": dict(keys)})
    except Exception as exc:  # noqa: BLE001 - cfgrib/eccodes raise many kinds; all mean a bad file here
        raise BadInputError(f"{path}: cannot be decoded by cfgrib ({type(exc).__name__}: {exc})") from None
    if "tp" not in ds:
        ds.close()
        raise BadInputError(f"{path}: cfgrib finds no tp variable for {dict(keys)}")
    return ds


def _indices(sel) -> np.ndarray:
    return np.concatenate([np.arange(s.start, s.stop) for s in sel.slices])


def read_run(run: Run, bbox=None):
    """Daily precipitation totals (mm) of ``run``: a float32 ``DataArray`` ``(member, lead_day, y, x)``.

    ``lead_day`` is 1..K; coordinate ``valid_start`` (per lead day) is the start of its 24 h window,
    ``reference_time + 24 (k − 1) h``. ``bbox = (west, south, east, north)`` in EPSG:4326 degrees, or
    ``None``. Attrs: ``units`` "mm", ``reference_time`` (ISO, UTC), ``stream``, ``centre``, ``ensemble``
    (0/1), ``source_files``. See the module doc for the rules and what is refused."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    from .generic import select_lonlat

    n_days, per_member = _day_steps(run)
    members = list(run.members)
    factor = UNIT_FACTORS[run.units]
    by_file: dict[tuple, list[tuple[int, int, Message]]] = defaultdict(list)
    for i, member in enumerate(members):
        for k in range(1, n_days + 1):
            m = per_member[member][k]
            by_file[(m.path, m.keys)].append((i, k, m))
    acc = None  # (member, K + 1, y, x) accumulations in mm; [:, 0] = 0 (step 0)
    lat_out = lon_out = None
    for (path, keys), wanted in sorted(by_file.items(), key=lambda kv: str(kv[0][0])):
        ds = _open_tp(path, keys)
        try:
            da = ds["tp"]
            lat = np.round(np.asarray(da["latitude"].values, "float64"), 6)
            lon = np.round(np.asarray(da["longitude"].values, "float64"), 6)
            lon_order = np.argsort(lon, kind="stable")
            xs, ys = select_lonlat(path, lon[lon_order], lat, bbox)
            ix, iy = lon_order[_indices(xs)], _indices(ys)
            ycoords = ys.coords
            if ys.size > 1 and ycoords[0] < ycoords[-1]:  # south -> north: return north -> south
                iy, ycoords = iy[::-1], ycoords[::-1]
            if acc is None:
                acc = np.zeros((len(members), n_days + 1, iy.size, ix.size), "float64")
                lat_out, lon_out = ycoords, xs.coords
            elif iy.size != lat_out.size or ix.size != lon_out.size or not (
                    np.allclose(ycoords, lat_out) and np.allclose(xs.coords, lon_out)):
                raise BadInputError(f"{path}: tp grid differs from that of the run's other files")
            for i, k, m in wanted:
                field = _select(da, run.members[i], m.end_s, path)
                try:
                    values = np.asarray(field.values, "float64")
                except Exception as exc:  # noqa: BLE001 - a data section eccodes cannot decode
                    raise BadInputError(f"{path}: tp message at byte {m.offset} cannot be decoded "
                                        f"({type(exc).__name__}: {exc})") from None
                acc[i, k] = values[np.ix_(iy, ix)] * factor
        finally:
            ds.close()
    return _daily_totals(run, members, acc, lat_out, lon_out, n_days)


def _decode(fh, m: Message, cache: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, latitudes, longitudes) of message ``m`` (eccodes, by its byte offset); bitmap points NaN.
    The coordinates come from eccodes (``latitudes``/``longitudes``), computed once per grid and scanning."""
    import eccodes

    fh.seek(m.offset)
    h = eccodes.codes_grib_new_from_file(fh)
    if h is None:
        raise BadInputError(f"{m.path}: no GRIB message at byte {m.offset} any more (file changed while read?)")
    try:
        values = np.asarray(eccodes.codes_get_values(h), "float64")
        if _get(h, "bitmapPresent", 0, int):
            values[values == eccodes.codes_get(h, "missingValue")] = np.nan
        key = m.grid + tuple(_get(h, k, 0, int) for k in ("iScansNegatively", "jScansPositively",
                                                           "jPointsAreConsecutive", "alternativeRowScanning"))
        if key not in cache:
            cache[key] = (np.round(np.asarray(eccodes.codes_get_array(h, "latitudes"), "float64"), 6),
                          np.round(np.asarray(eccodes.codes_get_array(h, "longitudes"), "float64") % 360.0, 6))
    except eccodes.GribInternalError as exc:
        raise BadInputError(f"{m.path}: tp message at byte {m.offset} cannot be decoded ({exc})") from None
    finally:
        eccodes.codes_release(h)
    return (values, *cache[key])


class RunReader:
    """:func:`read_run` for many runs: ``reader.read(run)`` returns the same DataArray, but files stay open
    and every message is decoded by eccodes directly at the byte offset the scan found (no cfgrib open per
    run: a month file of 30 runs costs one pass). Values are put on the latitude/longitude axes by eccodes'
    own per-point coordinates, so any scanning order works; the rules (and errors) are read_run's. A
    context manager (closes the files)."""

    def __init__(self, bbox=None):
        self.bbox = bbox
        self._cache: dict = {}
        self._files: dict[Path, object] = {}

    def read(self, run: Run):
        import rioxarray  # noqa: F401  (registers the .rio accessor)

        from .generic import select_lonlat

        n_days, per_member = _day_steps(run)
        members = list(run.members)
        factor = UNIT_FACTORS[run.units]
        acc = lat_out = lon_out = None
        for i, member in enumerate(members):
            for k in range(1, n_days + 1):
                m = per_member[member][k]
                if m.path not in self._files:
                    self._files[m.path] = open(m.path, "rb")
                values, lats, lons = _decode(self._files[m.path], m, self._cache)
                if acc is None:  # (every message of a run has the same grid: the scan groups by it)
                    lat_axis, lon_axis = np.unique(lats)[::-1], np.unique(lons)  # north -> south, lon 0..360
                    xs, ys = select_lonlat(m.path, lon_axis, lat_axis, self.bbox)
                    ix, iy = _indices(xs), _indices(ys)
                    lat_out, lon_out = ys.coords, xs.coords
                    rows = lat_axis.size - 1 - np.searchsorted(lat_axis[::-1], lats)
                    cols = np.searchsorted(lon_axis, lons)
                    acc = np.zeros((len(members), n_days + 1, iy.size, ix.size), "float64")
                full = np.full((lat_axis.size, lon_axis.size), np.nan)
                full[rows, cols] = values
                acc[i, k] = full[np.ix_(iy, ix)] * factor
        return _daily_totals(run, members, acc, lat_out, lon_out, n_days)

    def close(self) -> None:
        files, self._files = self._files, {}
        for fh in files.values():
            fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# -- which run serves which issue date --------------------------------------------------------

def _daily_totals(run: Run, members, acc: np.ndarray, lat_out, lon_out, n_days: int):
    """The lead-day totals (member, lead_day, y, x) mm from the accumulations ``acc`` (member, step
    0..n_days, y, x): de-accumulated, packing noise clipped, a real decrease refused."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    daily = np.diff(acc, axis=1)
    worst = np.nanmin(daily) if np.isfinite(daily).any() else 0.0
    if worst < -NOISE_MM:
        i, k = np.unravel_index(np.nanargmin(daily), daily.shape)[:2]
        raise BadInputError(f"{run.where()}: tp of the {run.label} decreases by {-worst:.3g} mm over lead day {k + 1}"
                            f" (member {members[i]}): not an accumulation from the run's start")
    daily = np.where(daily < 0, 0.0, daily).astype("float32")
    ref = run.reference_time
    valid = np.array([ref + np.timedelta64(24 * (k - 1), "h") for k in range(1, n_days + 1)], "datetime64[ns]")
    coords = {"member": np.array(members, "int64"), "lead_day": np.arange(1, n_days + 1, dtype="int64"),
              "y": np.asarray(lat_out, "float64"), "x": np.asarray(lon_out, "float64"),
              "valid_start": ("lead_day", valid)}
    attrs = {"units": "mm", "long_name": "precipitation total of the lead day (24 h from valid_start)",
             "reference_time": str(ref) + "Z", "stream": run.stream, "centre": run.centre,
             "ensemble": int(run.ensemble), "source_files": " ".join(p.name for p in run.paths)}
    return xr.DataArray(daily, dims=("member", "lead_day", "y", "x"), coords=coords, attrs=attrs).rio.write_crs(
        "EPSG:4326")


def lead_days_for_issue(run_reference_time, issue_date, n_leads: int,
                        run_lead_days: int | None = None) -> list[int | None]:
    """For leads 1..``n_leads`` of ``issue_date``: the ``lead_day`` of a run started at ``run_reference_time``
    (UTC) that holds it, or ``None`` (rule in the module doc: only a 00 UTC run with
    ``issue_date + 1 day <= T < issue_date + 2 days`` serves, its lead day n being lead n).
    ``run_lead_days`` (the K of :func:`read_run`, when known) turns leads past the run's end into None."""
    if n_leads < 0:
        raise ValueError(f"n_leads must be >= 0, got {n_leads}")
    t = np.datetime64(run_reference_time, "m")
    issue_end = (np.datetime64(issue_date, "D") + np.timedelta64(1, "D")).astype("datetime64[m]")
    # serves: issue_end <= t < issue_end + 1 day; of those runs only the 00 UTC one has UTC-day lead days
    if t != issue_end:
        return [None] * n_leads
    last = n_leads if run_lead_days is None else min(n_leads, run_lead_days)
    return [n if n <= last else None for n in range(1, n_leads + 1)]


# -- CF NetCDF forecasts --------------------------------------------------------------------------
#
# A second input format with the same output as read_run. The rules:
#
# * the variable is ``options["variable"]`` (default ``tp``), dims: a reference-time dim
#   ``forecast_reference_time`` or ``time`` (or neither, with a scalar ``forecast_reference_time``
#   coordinate: one run), a step dim ``step``, ``lead`` or ``lead_time`` (CF time-interval units:
#   seconds/minutes/hours/days, e.g. ``units = "hours"``), optionally a member dim ``number``,
#   ``member`` or ``realization`` (ensemble when longer than 1), and ``latitude``/``lat`` x
#   ``longitude``/``lon``; nothing else.
# * accumulated from the run start (as ECMWF's tp, and cfgrib's NetCDF conversions of it) unless the
#   file says per-step totals: the step coordinate's CF ``bounds`` are consecutive windows (the
#   first from 0, each next one from the previous step), or, without bounds, the variable's
#   ``cell_methods`` holds ``"<step dim>: sum"``. Bounds that all start at 0 mean accumulated; any
#   other bounds are refused. Per-step totals are summed up to each step, then treated as tp.
# * units m, kg m-2 (kg m**-2) or mm (``options["units"]`` overrides the file's); lead days, steps,
#   missing steps, negative differences and the bbox as for GRIB (read_run).

_REF_DIMS = ("forecast_reference_time", "time")
_STEP_DIMS = ("step", "lead", "lead_time")
_MEMBER_DIMS = ("number", "member", "realization")
_LAT_DIMS = ("latitude", "lat")
_LON_DIMS = ("longitude", "lon")
_STEP_UNITS_S = {"second": 1, "seconds": 1, "s": 1, "minute": 60, "minutes": 60, "min": 60, "hour": 3600,
                 "hours": 3600, "h": 3600, "day": DAY_S, "days": DAY_S, "d": DAY_S}


@dataclass(frozen=True)
class NetCDFRun:
    """One run of a CF NetCDF forecast file (see the rules above :func:`scan_netcdf_runs`)."""

    reference_time: np.datetime64  # datetime64[m], UTC
    path: Path
    variable: str
    ref_index: int | None  # position along the reference-time dim (None: no such dim)
    dims: tuple[str, ...]  # the variable's dims
    steps_s: tuple[int, ...]  # step ends, seconds, in file order
    per_step: bool
    units: str
    members: tuple[int, ...]
    ensemble: bool
    centre: str = ""
    stream: str = ""

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.path,)

    @property
    def lead_days(self) -> int:
        return max((s // DAY_S for s in self.steps_s if s > 0 and s % DAY_S == 0), default=0)

    @property
    def label(self) -> str:
        kind = "ensemble" if self.ensemble else "deterministic"
        return f"netcdf {self.variable} {kind} run of {str(self.reference_time)[:16].replace('T', ' ')} UTC"

    def where(self) -> str:
        return str(self.path)


def _pick(dims, names, what: str, path: Path, required: bool = True) -> str | None:
    found = [d for d in dims if d in names]
    if not found and required:
        raise BadInputError(f"{path}: the forecast variable has dims {tuple(dims)}: no {what} dim "
                            f"({' or '.join(names)})")
    return found[0] if found else None


def _step_seconds(path: Path, var) -> np.ndarray:
    unit = str(getattr(var, "units", "")).strip().split(" ")[0].lower()
    if unit not in _STEP_UNITS_S:
        raise BadInputError(f"{path}: step coordinate {var.name!r} has units {getattr(var, 'units', None)!r} "
                            "(expected seconds, minutes, hours or days)")
    return np.round(np.asarray(var[:], "float64") * _STEP_UNITS_S[unit]).astype("int64")


def _netcdf_file_runs(path: Path, options: dict) -> list[NetCDFRun]:
    import cftime
    import netCDF4

    from . import HDF5_SIGNATURE, NETCDF3_SIGNATURES

    check_signature(path, (HDF5_SIGNATURE, *NETCDF3_SIGNATURES), "a NetCDF file")
    name = options.get("variable") or "tp"
    try:
        ds = netCDF4.Dataset(path)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be opened as NetCDF ({exc})") from None
    try:
        if name not in ds.variables:
            raise BadInputError(f"{path}: no variable {name!r} (it has {', '.join(sorted(ds.variables))})")
        var = ds.variables[name]
        dims = var.dimensions
        ref_dim = _pick(dims, _REF_DIMS, "reference time", path, required=False)
        step_dim = _pick(dims, _STEP_DIMS, "step", path)
        member_dim = _pick(dims, _MEMBER_DIMS, "member", path, required=False)
        _pick(dims, _LAT_DIMS, "latitude", path)
        _pick(dims, _LON_DIMS, "longitude", path)
        if len(dims) != 3 + (ref_dim is not None) + (member_dim is not None):
            raise BadInputError(f"{path}: {name} has dims {dims}; expected reference time, step, [member,] lat, lon")
        ref_name = ref_dim or "forecast_reference_time"
        if ref_name not in ds.variables:
            raise BadInputError(f"{path}: no {ref_name} variable: the runs' reference times are unknown")
        rv = ds.variables[ref_name]
        times = cftime.num2date(np.atleast_1d(rv[:]), rv.units, getattr(rv, "calendar", "standard"),
                                only_use_cftime_datetimes=False, only_use_python_datetimes=True)
        refs = [np.datetime64(t.replace(tzinfo=None), "m") for t in times]
        sv = ds.variables[step_dim] if step_dim in ds.variables else None
        if sv is None:
            raise BadInputError(f"{path}: no {step_dim} coordinate variable: the steps are unknown")
        steps = _step_seconds(path, sv)
        bounds = getattr(sv, "bounds", None)
        if bounds and bounds in ds.variables:
            b = np.round(np.asarray(ds.variables[bounds][:], "float64") * _STEP_UNITS_S[
                str(sv.units).split(" ")[0].lower()]).astype("int64")
            if not np.array_equal(b[:, 1], steps):
                raise BadInputError(f"{path}: {bounds} upper bounds differ from the {step_dim} values")
            if np.all(b[:, 0] == 0):
                per_step = False
            elif b[0, 0] == 0 and np.array_equal(b[1:, 0], b[:-1, 1]):
                per_step = True
            else:
                raise BadInputError(f"{path}: {bounds} are neither accumulations from the run start (lower bounds "
                                    "0) nor consecutive per-step windows")
        else:
            per_step = f"{step_dim}: sum" in str(getattr(var, "cell_methods", ""))
        if np.any(np.diff(steps) <= 0) or steps[0] < 0:
            raise BadInputError(f"{path}: {step_dim} values are not increasing from 0")
        units = str(options.get("units") or getattr(var, "units", "")).replace("**", "")
        factor_key = {"kg m-2": "kg m-2", "m": "m", "mm": "mm"}.get(units)
        if factor_key is None:
            raise BadInputError(f"{path}: {name} has units {units!r} (expected m, kg m-2 or mm)")
        members = tuple(int(v) for v in ds.variables[member_dim][:]) if member_dim and member_dim in ds.variables \
            else tuple(range(ds.dimensions[member_dim].size)) if member_dim else (0,)
    finally:
        ds.close()
    return [NetCDFRun(ref, path, name, i if ref_dim else None, tuple(dims), tuple(int(s) for s in steps), per_step,
                      factor_key, members, len(members) > 1) for i, ref in enumerate(refs)]


def scan_netcdf_runs(paths, options: dict | None = None, rejected: list | None = None) -> list[NetCDFRun]:
    """The runs of CF NetCDF forecast files (rules above), sorted by reference time. A bad file raises
    BadInputError naming it, or with ``rejected`` a list, ``(path, message)`` is appended and the others
    are used. The same reference time (and kind) in two files raises (both named)."""
    options = options or {}
    runs: dict[tuple, NetCDFRun] = {}
    for p in dict.fromkeys(Path(p) for p in paths):
        try:
            found = _netcdf_file_runs(p, options)
        except BadInputError as exc:
            if rejected is None:
                raise
            rejected.append((p, str(exc)))
            continue
        for run in found:
            key = (run.reference_time, run.ensemble)
            if key in runs:
                raise BadInputError(f"{p}: the run of {str(run.reference_time)[:16]} UTC is also in {runs[key].path}: "
                                    "one of them must go")
            runs[key] = run
    return [runs[k] for k in sorted(runs)]


def read_netcdf_run(run: NetCDFRun, bbox=None):
    """Daily totals (mm) of a NetCDF run: the DataArray of :func:`read_run` (same dims, coords, attrs)."""
    import netCDF4
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    from .generic import select_lonlat

    path = run.path
    with netCDF4.Dataset(path) as ds:
        var = ds.variables[run.variable]
        lat_dim, lon_dim = _pick(run.dims, _LAT_DIMS, "latitude", path), _pick(run.dims, _LON_DIMS, "longitude", path)
        lat = np.round(np.asarray(ds.variables[lat_dim][:], "float64"), 6)
        lon = np.round(np.asarray(ds.variables[lon_dim][:], "float64"), 6)
        lon_order = np.argsort(lon, kind="stable")
        xs, ys = select_lonlat(path, lon[lon_order], lat, bbox)
        ix, iy = lon_order[_indices(xs)], _indices(ys)
        ycoords = ys.coords
        if ys.size > 1 and ycoords[0] < ycoords[-1]:
            iy, ycoords = iy[::-1], ycoords[::-1]
        index = tuple(run.ref_index if d in _REF_DIMS else slice(None) for d in run.dims)
        try:
            data = np.ma.filled(np.ma.asarray(var[index], "float64"), np.nan)
        except (OSError, RuntimeError, IndexError) as exc:
            raise BadInputError(f"{path}: {run.variable} cannot be read ({exc})") from None
    kept = [d for d in run.dims if d not in _REF_DIMS]
    member_dim = _pick(kept, _MEMBER_DIMS, "member", path, required=False)
    order = [kept.index(d) for d in (member_dim, _pick(kept, _STEP_DIMS, "step", path), lat_dim, lon_dim) if d]
    data = np.transpose(data, order)
    data = data[None] if member_dim is None else data  # (member, step, lat, lon)
    data = data[:, :, iy][:, :, :, ix] * UNIT_FACTORS[run.units]
    acc = np.cumsum(data, axis=1) if run.per_step else data
    pos = {s: i for i, s in enumerate(run.steps_s)}
    n_days = run.lead_days
    if n_days == 0:
        raise BadInputError(f"{path}: the {run.label} has no 24 h step, so no lead day")
    missing = [24 * k for k in range(1, n_days + 1) if k * DAY_S not in pos]
    if missing:
        raise BadInputError(f"{path}: the {run.label} lacks step(s) {', '.join(map(str, missing))} h, needed for its "
                            f"lead days up to {n_days} (a lead day needs both ends)")
    ends = np.stack([np.zeros(acc.shape[:1] + acc.shape[2:])] + [acc[:, pos[k * DAY_S]] for k in range(1, n_days + 1)],
                    axis=1)
    daily = np.diff(ends, axis=1)
    worst = np.nanmin(daily) if np.isfinite(daily).any() else 0.0
    if worst < -NOISE_MM:
        raise BadInputError(f"{path}: {run.variable} of the {run.label} decreases by {-worst:.3g} mm: not an "
                            "accumulation from the run's start")
    daily = np.where(daily < 0, 0.0, daily).astype("float32")
    ref = run.reference_time
    valid = np.array([ref + np.timedelta64(24 * (k - 1), "h") for k in range(1, n_days + 1)], "datetime64[ns]")
    coords = {"member": np.array(run.members, "int64"), "lead_day": np.arange(1, n_days + 1, dtype="int64"),
              "y": np.asarray(ycoords, "float64"), "x": np.asarray(xs.coords, "float64"),
              "valid_start": ("lead_day", valid)}
    attrs = {"units": "mm", "long_name": "precipitation total of the lead day (24 h from valid_start)",
             "reference_time": str(ref) + "Z", "stream": run.stream, "centre": run.centre,
             "ensemble": int(run.ensemble), "source_files": path.name}
    return xr.DataArray(daily, dims=("member", "lead_day", "y", "x"), coords=coords, attrs=attrs).rio.write_crs(
        "EPSG:4326")
