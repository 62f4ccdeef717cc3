"""Weather-forecast precipitation (NWP) from GRIB1/GRIB2 files: ECMWF open data and the like.

A module API for now, **not** a registered source ``kind``: the registry's readers feed ingest's daily cube
(``scan`` → days, ``read`` → ``(time, y, x)``), and a forecast has two time axes (run and lead). Wiring into
ingest (a store beside the cube with dims (issue date, lead, y, x)) comes later.

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
    import xarray as xr

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


# -- which run serves which issue date --------------------------------------------------------

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
