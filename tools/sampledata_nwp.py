"""Synthetic ECMWF precipitation forecasts (real GRIB2) for the bundled sample region.

``python -m tools.sampledata_nwp OUTDIR [--seed 42] [--start 2017-01-01] [--end 2020-12-31] [--max-lead-days 3]``
(from the repository root) reads the sample's IMERG daily Final files in ``OUTDIR/raw/imerg`` (the truth)
and writes forecasts of them into ``OUTDIR/raw/nwp``. Same seed, period and IMERG files -> byte-identical
files (no clocks; eccodes' built-in sample ``regular_ll_sfc_grib2`` as the template).
``python -m tools.sampledata_nwp OUTDIR --ensemble N [--start 2019-01-01] [...]`` writes an N-member
ensemble (ECMWF ENS) into ``OUTDIR/raw/nwp-ens`` instead (:func:`write_ensemble`); the deterministic files
are left alone.

What a file holds
-----------------
GRIB2 ``tp`` messages as ECMWF's deterministic forecast writes them: centre ``ecmf``, stream ``oper``,
type/dataType ``fc``, paramId 228 (``tp``, m), product template 8 (an accumulation, stepType ``accum``,
startStep 0, endStep 24k h), reference time ``dataDate``/``dataTime`` 00 UTC, a regular 0.25° lat/lon
grid whose points are multiples of 0.25° (:data:`LON`, :data:`LAT`: the region's covering cells plus
one cell of margin, lon -9.0..-7.0, lat 41.75..39.75, scanning north -> south), 16-bit simple packing,
bitmap-missing points where the truth has none.

The ensemble (:func:`write_ensemble`) is written as ECMWF's ENS: the same messages with stream ``enfo``,
product template 11 (an individual ensemble forecast, accumulated over an interval: still stepType
``accum`` from step 0), ``numberOfForecastsInEnsemble`` = N and, per member m = 0..N-1, ``number`` = m
with type/dataType ``cf`` (the control) for m = 0 and ``pf`` (perturbed) for the others;
``typeOfEnsembleForecast`` is left missing. Everything else (grid, packing, units, bitmap) is the
deterministic template's.

Issue dates and runs
--------------------
The forecast of issue date D is the run of D + 1 at 00 UTC (the rule of
:func:`hydrocast.sources.nwp.lead_days_for_issue`), so its lead day k is the UTC day D + k. A run is
written for every D in ``start..end`` whose lead days 1..``max_lead_days`` all have an IMERG daily
**Final** file (the Early files of the sample's last days and the half-hourly-only days are not truth:
runs needing them are skipped, which leaves gaps as real archives have). Files: one per month of run
dates, ``ecmwf-oper-fc-tp-YYYYMM.grib2``, holding every run of the month in order (steps 24, 48, ...
h), except the runs of the last 3 issue dates, written one file per step as ECMWF's open-data server
names them: ``YYYYMMDD000000-24h-oper-fc.grib2`` (YYYYMMDD = the run date), ``-48h-``, ``-72h-``.
The ensemble has the same runs (:func:`issue_dates`; default first issue date 2019-01-01) in
``raw/nwp-ens``: ``ecmwf-enfo-ef-tp-YYYYMM.grib2`` holding every run of the month, each run step by step
with every member of a step together (members in order), and the last 3 runs one file per step holding
all its members, ``YYYYMMDD000000-24h-enfo-ef.grib2`` (ECMWF open data's ENS names).

The errors (:func:`forecast_day`)
---------------------------------
Lead day k of issue date D is the truth of day D + k (IMERG 0.1°, mm), with errors that grow with k,
drawn from ``numpy.random.default_rng([seed, D as days since 1970-01-01, k])`` in a fixed order:
a displacement (dx, dy ~ N(0, (0.12° k)^2), linear interpolation on the 0.1° grid, edges extended),
a multiplicative intensity error ``exp(N(0, (0.2 k)^2))`` (median 1), a missed event (with probability
0.06 k a rainy day, region mean >= 1 mm, is scaled by 0.1), a false event (with probability 0.04 k a
dry day gets a Gaussian blob of peak U(6, 10) mm, sd 0.3°, centred uniformly in the region). The
field is then averaged to the 0.25° cells with weights = overlap area in degrees (the rule of GDAL's
``average`` on a lon/lat grid), missing 0.1° cells left out. ``tp(24k h)`` = the sum of lead days 1..k,
written in metres.

Ensemble member m (``forecast_day(..., member=m)``) gets errors of the same law, split so that the
truth is exchangeable with the members: a **common** part shared by every member of (D, k), drawn from
``default_rng([seed, D, k, 7919])``, and a **member** part from ``default_rng([seed, D, k, 7919, m])``.
Displacement dx = common + member and dy likewise, each part N(0, (0.12° k)^2 / 2) (common dx, dy drawn
first, then member dx, dy); the log of the intensity factor = common + member, each N(0, (0.2 k)^2 / 2)
(drawn after the displacements of its rng); then from the member rng, in the deterministic order, the
missed- and false-event draws (u_miss, u_false, the blob's centre and peak). So every pairwise
difference among {truth, member 0, ..., member N-1} has one law: member - truth = common + member part,
variance (0.12° k)^2 per axis, and member - member = the difference of two member parts, variance
(0.12° k)^2 too (likewise (0.2 k)^2 in log intensity): in displacement and intensity the truth is
statistically one more member (the spread matches the error; the missed/false events are not split),
and each member's error has the deterministic forecast's law. :func:`member_errors` returns a member's
(dx, dy, log factor). The control (m = 0) is a member like the others; no member equals the
deterministic forecast (different rngs).

Hook for the default sample generator
-------------------------------------
:func:`after_generate` (``outdir, seed, log``) writes the files with the defaults above and returns a
summary; ``tools/sampledata.generate`` can call it once its IMERG files exist; it writes the
ensemble too (:data:`ENS_DEFAULT_MEMBERS` members from :data:`ENS_DEFAULT_START`). :data:`README_ROW` and
:data:`ENS_README_ROW` are the lines of the sample's README table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

import hydrocast  # noqa: F401  (pyproj before eccodes: see hydrocast/__init__.py)
from tools import sampledata as sd

RES = 0.25
MARGIN_CELLS = 1
DEFAULT_START = "2017-01-01"
DEFAULT_END = "2020-12-31"
DEFAULT_LEADS = 3
N_SPLIT = 3  # the runs of the last 3 issue dates come one file per step
RAINY_MM = 1.0  # a day whose region-mean truth reaches this is rainy (else dry)
SHIFT_SD = 0.12  # degrees per lead day
INTENSITY_SIGMA = 0.2  # per lead day
P_MISS = 0.06  # per lead day
MISS_SCALE = 0.1
P_FALSE = 0.04  # per lead day
BLOB_MM = (6.0, 10.0)
BLOB_SD = 0.3  # degrees
BITS = 16
MONTH_NAME = "ecmwf-oper-fc-tp-{:%Y%m}.grib2"
STEP_NAME = "{:%Y%m%d}000000-{}h-oper-fc.grib2"
GLOBS = ("ecmwf-oper-fc-tp-*.grib2", "*-oper-fc.grib2")
README_ROW = ("| `raw/nwp/*.grib2` | synthetic ECMWF deterministic `tp` forecasts (GRIB2, 0.25°, 00 UTC runs, "
              "steps 24/48/72 h, metres accumulated from the run start): the IMERG Final truth of each lead day "
              "with displacement, intensity, missed- and false-event errors growing with lead; one file per "
              "month `ecmwf-oper-fc-tp-YYYYMM.grib2`, the last 3 runs one file per step as ECMWF open data names "
              "them (`YYYYMMDD000000-24h-oper-fc.grib2`); issue dates 2017-01-01 .. (see "
              "`tools/sampledata_nwp.py`) |")
EPOCH = dt.date(1970, 1, 1)
# the ensemble (write_ensemble)
ENS_DEFAULT_START = "2019-01-01"
ENS_DEFAULT_MEMBERS = 10
ENS_SALT = 7919  # the 4th seed word of the ensemble's rngs (common: 4 words, member m: 5 words)
ENS_SUBDIR = "raw/nwp-ens"
ENS_PDT = 11  # individual ensemble forecast, accumulated over an interval (template 4.11)
ENS_MONTH_NAME = "ecmwf-enfo-ef-tp-{:%Y%m}.grib2"
ENS_STEP_NAME = "{:%Y%m%d}000000-{}h-enfo-ef.grib2"
ENS_GLOBS = ("ecmwf-enfo-ef-tp-*.grib2", "*-enfo-ef.grib2")
ENS_README_ROW = ("| `raw/nwp-ens/*.grib2` | synthetic ECMWF ENS `tp` forecasts (GRIB2, stream enfo, control `cf` "
                  "member 0 + perturbed `pf` 1..N-1, 0.25°, 00 UTC runs, steps 24/48/72 h, metres accumulated "
                  "from the run start): errors exchangeable with the truth (common + member parts); one file per "
                  "month `ecmwf-enfo-ef-tp-YYYYMM.grib2`, the last 3 runs one file per step "
                  "(`YYYYMMDD000000-24h-enfo-ef.grib2`, all members); issue dates 2019-01-01 .. (see "
                  "`tools/sampledata_nwp.py`) |")


def _axis(lo: float, hi: float, descending: bool = False) -> np.ndarray:
    """0.25°-multiple points whose cells overlap (lo, hi), plus the margin."""
    first = int(np.floor((lo + RES / 2) / RES + 1e-9)) - MARGIN_CELLS
    last = int(np.ceil((hi - RES / 2) / RES - 1e-9)) + MARGIN_CELLS
    pts = np.arange(first, last + 1) * RES
    return pts[::-1] if descending else pts


WEST, SOUTH, EAST, NORTH = sd.REGION
LON = _axis(WEST, EAST)  # west -> east
LAT = _axis(SOUTH, NORTH, descending=True)  # north -> south, as ECMWF scans


def _overlap(coarse: np.ndarray, fine: np.ndarray, fine_res: float) -> np.ndarray:
    """(len(coarse), len(fine)) overlap lengths of the coarse 0.25° cells with the fine cells."""
    lo = np.maximum(coarse[:, None] - RES / 2, fine[None, :] - fine_res / 2)
    hi = np.minimum(coarse[:, None] + RES / 2, fine[None, :] + fine_res / 2)
    return np.clip(hi - lo, 0.0, None)


def aggregate(field: np.ndarray, fine_lon: np.ndarray, fine_lat: np.ndarray, fine_res: float = 0.1) -> np.ndarray:
    """A (lat, lon) field on the fine grid averaged onto (LAT, LON): weights = overlap area in degrees,
    NaN cells left out (NaN where a coarse cell has no valid fine cell)."""
    wy, wx = _overlap(LAT, fine_lat, fine_res), _overlap(LON, fine_lon, fine_res)
    valid = np.isfinite(field)
    num = wy @ np.where(valid, field, 0.0) @ wx.T
    den = wy @ valid.astype("float64") @ wx.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


class Truth:
    """The IMERG daily Final fields of ``imerg_dir``, (lat ascending, lon) mm, read once each."""

    def __init__(self, imerg_dir: Path):
        self.dir = Path(imerg_dir)
        self.lon, self.lat = sd.imerg_axes()
        self._cache: dict[dt.date, np.ndarray | None] = {}

    def __call__(self, day: dt.date) -> np.ndarray | None:
        import netCDF4

        if day not in self._cache:
            path = self.dir / sd.imerg_day_name(day, run="final")
            if not path.is_file():
                self._cache[day] = None
            else:
                with netCDF4.Dataset(path) as ds:
                    v = ds.variables["precipitation"][0]  # (lon, lat)
                    lon, lat = ds.variables["lon"][:], ds.variables["lat"][:]
                assert np.allclose(lon, self.lon) and np.allclose(lat, self.lat), path
                self._cache[day] = np.ma.filled(v.astype("float64"), np.nan).T  # (lat, lon)
        return self._cache[day]


def _draws(seed: int, issue: dt.date, k: int, member: int | None = None) -> tuple:
    """The random draws of lead day ``k`` of ``issue`` (module doc, "The errors"): ``(dx, dy, log_factor,
    u_miss, u_false, bx, by, amp)``. ``member=None``: the deterministic forecast's (one rng, fixed order);
    ``member=m``: ensemble member m's (common + member parts, member rng for the events)."""
    days = (issue - EPOCH).days
    if member is None:
        rng = events = np.random.default_rng([seed, days, k])
        dx, dy = rng.normal(0.0, SHIFT_SD * k, 2)
        log_factor = rng.normal(0.0, INTENSITY_SIGMA * k)
    else:
        if member < 0:
            raise ValueError(f"member must be >= 0, got {member}")
        # (numpy's SeedSequence pads seeds shorter than its 4-word pool with zeros: [a, b, c] == [a, b, c, 0].
        # The common seed has 4 words, a member's 5, so member 0's stream is not the common one.)
        common = np.random.default_rng([seed, days, k, ENS_SALT])
        events = np.random.default_rng([seed, days, k, ENS_SALT, member])
        half_shift, half_log = SHIFT_SD * k / np.sqrt(2.0), INTENSITY_SIGMA * k / np.sqrt(2.0)
        cdx, cdy = common.normal(0.0, half_shift, 2)
        clog = common.normal(0.0, half_log)
        mdx, mdy = events.normal(0.0, half_shift, 2)
        mlog = events.normal(0.0, half_log)
        dx, dy, log_factor = cdx + mdx, cdy + mdy, clog + mlog
    u_miss, u_false = events.random(), events.random()
    bx, by = events.uniform(WEST, EAST), events.uniform(SOUTH, NORTH)
    amp = events.uniform(*BLOB_MM)
    return dx, dy, log_factor, u_miss, u_false, bx, by, amp


def member_errors(seed: int, issue: dt.date, k: int, member: int | None = None) -> tuple[float, float, float]:
    """``(dx, dy, log_factor)`` (degrees, degrees, log of the intensity factor) of lead day ``k`` of
    ``issue`` for ensemble ``member`` (``None``: the deterministic forecast): the draws of
    :func:`forecast_day`."""
    dx, dy, log_factor = _draws(seed, issue, k, member)[:3]
    return float(dx), float(dy), float(log_factor)


def forecast_day(truth_fine: np.ndarray, seed: int, issue: dt.date, k: int, fine_lon: np.ndarray,
                 fine_lat: np.ndarray, member: int | None = None) -> np.ndarray:
    """Lead day ``k`` of issue date ``issue``: the truth of its valid day with the errors of the module
    doc, on (LAT, LON) in mm. ``member=None``: the deterministic forecast; ``member=m``: ensemble member m."""
    from scipy import ndimage

    dx, dy, log_factor, u_miss, u_false, bx, by, amp = _draws(seed, issue, k, member)
    factor = float(np.exp(log_factor))
    valid = np.isfinite(truth_fine)
    filled = np.where(valid, truth_fine, np.nanmean(truth_fine) if valid.any() else 0.0)
    res = float(fine_lon[1] - fine_lon[0])
    f = ndimage.shift(filled, (dy / res, dx / res), order=1, mode="nearest") * factor
    inside = (fine_lon[None, :] >= WEST) & (fine_lon[None, :] <= EAST) & (fine_lat[:, None] >= SOUTH) & (
        fine_lat[:, None] <= NORTH)
    rainy = float(np.nanmean(np.where(inside & valid, truth_fine, np.nan))) >= RAINY_MM
    if rainy and u_miss < P_MISS * k:
        f = f * MISS_SCALE
    elif not rainy and u_false < P_FALSE * k:
        r2 = (fine_lon[None, :] - bx) ** 2 + (fine_lat[:, None] - by) ** 2
        f = f + amp * np.exp(-r2 / (2 * BLOB_SD**2))
    f = np.clip(np.where(valid, f, np.nan), 0.0, None)
    return aggregate(f, fine_lon, fine_lat, res)


def issue_dates(truth: Truth, start: dt.date, end: dt.date, max_lead_days: int) -> list[dt.date]:
    """Issue dates D in start..end whose lead days D+1..D+max_lead_days all have truth."""
    out = []
    for i in range((end - start).days + 1):
        d = start + dt.timedelta(days=i)
        if all(truth(d + dt.timedelta(days=k)) is not None for k in range(1, max_lead_days + 1)):
            out.append(d)
    return out


def run_fields(truth: Truth, seed: int, issue: dt.date, max_lead_days: int, member: int | None = None) -> np.ndarray:
    """(max_lead_days, LAT, LON) daily totals in mm of the run serving ``issue`` (``member``: of that
    ensemble member): what the files hold (before accumulation and packing)."""
    return np.stack([forecast_day(truth(issue + dt.timedelta(days=k)), seed, issue, k, truth.lon, truth.lat,
                                  member) for k in range(1, max_lead_days + 1)])


def _template():
    import eccodes

    h = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
    keys = [("setLocalDefinition", 1), ("localDefinitionNumber", 1), ("stream", "oper"), ("type", "fc"),
            ("productDefinitionTemplateNumber", 8), ("typeOfFirstFixedSurface", 1), ("paramId", 228),
            ("Ni", LON.size), ("Nj", LAT.size),
            ("latitudeOfFirstGridPointInDegrees", float(LAT[0])),
            ("longitudeOfFirstGridPointInDegrees", float(LON[0] % 360)),
            ("latitudeOfLastGridPointInDegrees", float(LAT[-1])),
            ("longitudeOfLastGridPointInDegrees", float(LON[-1] % 360)),
            ("iDirectionIncrementInDegrees", RES), ("jDirectionIncrementInDegrees", RES),
            ("iScansNegatively", 0), ("jScansPositively", 0), ("dataTime", 0),
            ("packingType", "grid_simple"), ("bitsPerValue", BITS)]
    for k, v in keys:
        eccodes.codes_set(h, k, v)
    return h


def _ensemble_template(members: int):
    """:func:`_template` as an ENS message: stream enfo, product template 11, ``numberOfForecastsInEnsemble``
    = ``members``; :func:`messages` sets ``type`` (cf/pf) and ``number`` per member."""
    import eccodes

    h = _template()
    for k, v in [("stream", "enfo"), ("type", "cf"), ("productDefinitionTemplateNumber", ENS_PDT),
                 ("numberOfForecastsInEnsemble", members)]:
        eccodes.codes_set(h, k, v)
    return h


def messages(template, run_date: dt.date, daily_mm: np.ndarray, member: int | None = None) -> list[bytes]:
    """The GRIB2 messages (steps 24k h, tp accumulated in m) of the run of ``run_date`` 00 UTC; with
    ``member`` (and :func:`_ensemble_template`) those of ensemble member ``member``: ``type`` cf for 0,
    pf for the others, ``number`` = member."""
    import eccodes

    acc = np.cumsum(np.where(np.isfinite(daily_mm), daily_mm, 0.0), axis=0) / 1000.0
    out = []
    for k in range(1, daily_mm.shape[0] + 1):
        h = eccodes.codes_clone(template)
        try:
            if member is not None:
                eccodes.codes_set(h, "type", "cf" if member == 0 else "pf")
                eccodes.codes_set(h, "number", member)
            eccodes.codes_set(h, "dataDate", int(f"{run_date:%Y%m%d}"))
            eccodes.codes_set(h, "stepUnits", "h")
            eccodes.codes_set(h, "stepRange", f"0-{24 * k}")
            values = acc[k - 1].copy()
            missing = ~np.isfinite(daily_mm[:k]).all(axis=0)
            if missing.any():
                eccodes.codes_set(h, "bitmapPresent", 1)
                values[missing] = eccodes.codes_get(h, "missingValue")
            eccodes.codes_set_values(h, values.ravel())  # rows north -> south, west -> east
            out.append(eccodes.codes_get_message(h))
        finally:
            eccodes.codes_release(h)
    return out


def remove_previous(nwp_dir: Path, globs=GLOBS) -> int:
    n = 0
    for pattern in globs:
        for p in nwp_dir.glob(pattern):
            if p.is_file():
                p.unlink()
                n += 1
    return n


def write_forecasts(outdir: Path, seed: int = 42, start=DEFAULT_START, end=DEFAULT_END,
                    max_lead_days: int = DEFAULT_LEADS) -> dict:
    """Write the forecast files of ``outdir`` (module doc) into ``outdir/raw/nwp``; returns a summary
    (issue dates, files, bytes). Files of a previous run of this writer are removed first."""
    import eccodes

    outdir = Path(outdir)
    start, end = sd._as_date(start), sd._as_date(end)
    truth = Truth(outdir / "raw/imerg")
    issues = issue_dates(truth, start, end, max_lead_days)
    nwp_dir = outdir / "raw/nwp"
    nwp_dir.mkdir(parents=True, exist_ok=True)
    remove_previous(nwp_dir)
    template = _template()
    files: dict[str, list[bytes]] = {}
    try:
        for i, issue in enumerate(issues):
            run_date = issue + dt.timedelta(days=1)
            msgs = messages(template, run_date, run_fields(truth, seed, issue, max_lead_days))
            if i >= len(issues) - N_SPLIT:
                for k, m in enumerate(msgs, start=1):
                    files[STEP_NAME.format(run_date, 24 * k)] = [m]
            else:
                files.setdefault(MONTH_NAME.format(run_date), []).extend(msgs)
    finally:
        eccodes.codes_release(template)
    return _write_files(nwp_dir, files, issues, max_lead_days)


def _write_files(folder: Path, files: dict[str, list[bytes]], issues: list, max_lead_days: int) -> dict:
    """Write each file's messages into ``folder``; the writers' summary (issue dates, files, bytes)."""
    for name, msgs in files.items():
        (folder / name).write_bytes(b"".join(msgs))
    return {"issue_dates": len(issues), "first_issue_date": issues[0].isoformat() if issues else None,
            "last_issue_date": issues[-1].isoformat() if issues else None, "max_lead_days": max_lead_days,
            "files": len(files), "bytes": sum(len(b"".join(m)) for m in files.values())}


def write_ensemble(outdir: Path, members: int = ENS_DEFAULT_MEMBERS, seed: int = 42, start=ENS_DEFAULT_START,
                   end=DEFAULT_END, max_lead_days: int = DEFAULT_LEADS) -> dict:
    """Write the ensemble forecast files of ``outdir`` (module doc) into ``outdir/raw/nwp-ens``: ``members``
    members (0 = control) of every run of :func:`issue_dates`; returns :func:`write_forecasts`' summary
    plus ``members``. Files of a previous run of this writer are removed first."""
    import eccodes

    if not 1 <= members <= 255:  # numberOfForecastsInEnsemble / number are one octet
        raise ValueError(f"members must be 1..255, got {members}")
    outdir = Path(outdir)
    start, end = sd._as_date(start), sd._as_date(end)
    truth = Truth(outdir / "raw/imerg")
    issues = issue_dates(truth, start, end, max_lead_days)
    ens_dir = outdir / ENS_SUBDIR
    ens_dir.mkdir(parents=True, exist_ok=True)
    remove_previous(ens_dir, ENS_GLOBS)
    template = _ensemble_template(members)
    files: dict[str, list[bytes]] = {}
    try:
        for i, issue in enumerate(issues):
            run_date = issue + dt.timedelta(days=1)
            per_member = [messages(template, run_date, run_fields(truth, seed, issue, max_lead_days, m), m)
                          for m in range(members)]
            for k in range(1, max_lead_days + 1):  # step by step, every member of a step together
                step = [msgs[k - 1] for msgs in per_member]
                name = ENS_STEP_NAME.format(run_date, 24 * k) if i >= len(issues) - N_SPLIT else \
                    ENS_MONTH_NAME.format(run_date)
                files.setdefault(name, []).extend(step)
    finally:
        eccodes.codes_release(template)
    return {**_write_files(ens_dir, files, issues, max_lead_days), "members": members}


def after_generate(outdir, seed: int = sd.DEFAULT_SEED, log=None) -> dict:
    """The hook for ``tools.sampledata.generate`` (after its IMERG files are written)."""
    if log:
        log("NWP forecast files")
    summary = write_forecasts(Path(outdir), seed=seed)
    if log:
        log(f"NWP ensemble files ({ENS_DEFAULT_MEMBERS} members)")
    summary["ensemble"] = write_ensemble(Path(outdir), members=ENS_DEFAULT_MEMBERS, seed=seed)
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.sampledata_nwp",
                                 description="Write synthetic ECMWF tp forecasts (GRIB2) of OUTDIR's IMERG truth.")
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--seed", type=int, default=sd.DEFAULT_SEED)
    ap.add_argument("--start", default=None,
                    help=f"first issue date (default {DEFAULT_START}; with --ensemble {ENS_DEFAULT_START})")
    ap.add_argument("--end", default=DEFAULT_END)
    ap.add_argument("--max-lead-days", type=int, default=DEFAULT_LEADS)
    ap.add_argument("--ensemble", type=int, metavar="N", default=None,
                    help=f"write an N-member ENS into OUTDIR/{ENS_SUBDIR} instead of the deterministic files")
    args = ap.parse_args(argv)
    if args.ensemble is not None:
        if not 1 <= args.ensemble <= 255:
            ap.error(f"--ensemble must be 1..255, got {args.ensemble}")
        summary = write_ensemble(args.outdir, args.ensemble, args.seed, args.start or ENS_DEFAULT_START, args.end,
                                 args.max_lead_days)
    else:
        summary = write_forecasts(args.outdir, args.seed, args.start or DEFAULT_START, args.end, args.max_lead_days)
    print(json.dumps(summary, indent=1), file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
