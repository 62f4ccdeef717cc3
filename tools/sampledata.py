"""A deterministic, seeded synthetic sample region written in the products' real raw formats.

``python -m tools.sampledata OUTDIR [--seed 42] [--start 2015-01-01] [--end 2020-12-31]`` (from the repository root)

``--variant cold`` writes instead a small snowy lake region at 60-61 °N (degree-day snow, frozen
soil, lakes, slow groundwater; 2015-2018): see :mod:`tools.sampledata_cold`, which reuses the
writers below. ``--variant contrast`` writes this region on two geologies with a sharp border
under clustered storms: see :mod:`tools.sampledata_contrast`, which runs this module's model with
other :class:`Physics`. This docstring describes the default variant, whose output
(``sample_data/``) is unchanged by the other two.

Not part of the installed package (``tools/`` is outside ``hydrocast``). The attributes written into the files
still say "hydrocast.sampledata" (its former module name): changing them would change every committed file.

The region looks like northern Portugal: rain-dominated, wet Atlantic winters and dry summers, a
coastal plain in the west rising to a north-south ridge near 7.4°W. Everything is made up; only the
file formats are real. Same seed (and period) -> byte-identical files (no clocks, no random file
names; fixed strings stand in for creation dates).

Physics (daily time step, on a 30 arc-second "model grid" covering every product's footprint)
------------------------------------------------------------------------------------------------
Terrain
    A regional slope from the coast (nodata sea in the north-west corner) up to a ridge near
    7.4°W, three meandering west-flowing river valleys (plus two just outside the region that
    make its northern and southern divides), seeded smooth noise on the hillslopes, a plateau
    east of the ridge. pyflwdir routes the DEM (D8 steepest descent on the int16 DEM as written,
    without its voids; depressions filled).
Precipitation
    Storms are moving Gaussian rain cells: Atlantic frontal bands (long across-track, 25-50 km/h,
    heading east-north-east) and, mostly in summer, small slow convective cells. Each storm has
    a constant peak rate over its life and travels in a straight line, so the rain a point
    receives over any time window has a closed form (a Gaussian across-track times a difference of
    two ``erf`` along-track). Half-hour accumulations therefore sum *exactly* to the daily totals.
    Storm counts follow a seasonal cycle (wet winters, dry summers) modulated by a seeded
    low-frequency "weather regime" (wet and dry spells, wet and dry years). Rain is enhanced
    orographically by ``1 + 0.7 z/1000 m``. The storms of a day depend only on (seed, date),
    so a shortened period reproduces the same weather. On the half-hourly days one strong front
    is forced so that those days are stormy.
Soil moisture
    A bucket per model cell: storage ``S`` (mm) with capacity ``Smax`` = 110..200 mm (smaller on
    steep and high ground). Each day: saturation-excess runoff ``R = P (S/Smax)^2.5`` (plus any
    overflow), percolation ``0.05 S (S/Smax)^3`` to a groundwater store, evapotranspiration
    ``PET(doy) * min(1, S / 0.5 Smax)`` with PET 1.0 mm/d in winter to 5.2 mm/d in July.
    Volumetric moisture ``theta = 0.05 + 0.40 S/Smax`` (m3 m-3). Runoff ratio ~0.6, basin rain
    ~0.9-2.1 m/year (wet and dry years).
Runoff and routing
    Groundwater drains as a linear reservoir (``k = 45`` days) -> baseflow. Each cell's outflow
    (quick runoff + baseflow) reaches a gauge after ``0.3 d + L / (0.5 m/s)``, ``L`` = the D8 flow
    distance from the cell to the gauge (pyflwdir), split linearly between the two neighbouring
    whole days. Rain next to a gauge shows up on day 0-1, rain at the far end of the largest
    basin 2-4 days later. A gauge's discharge (m3/s) is the routed outflow summed over its
    upstream cells times their area, so a nested gauge always sees less water than its parent.
    Observations carry 4 % multiplicative noise, are rounded to 0.001 m3/s and have gaps.
    A 365-day spin-up before the start fills the stores.
Products (what a satellite "sees")
    IMERG Final = the model's rain averaged to 0.1° (exact, no retrieval error), IMERG Early =
    the same times a smooth log-normal error field with light rain missed. ESA CCI sm = the
    bucket theta averaged to 0.25° (land cells), plus N(0, 0.02) noise, with swath gaps, flags and
    missing days. probabilityLiquidPrecipitation < 100 only on high ground in the cold season (the
    model itself treats all precipitation as rain).

Layout of OUTDIR (see also the README.md the generator writes)
--------------------------------------------------------------
::

    raw/dem/dem.tif                      int16 GeoTIFF, EPSG:4326, 1/120°, nodata -32768
    raw/imerg/3B-HHR.MS.MRG.3IMERG.*.V07B.HDF5     half-hourly Final, 4 stormy days
    raw/imerg/3B-DAY.MS.MRG.3IMERG.*.V07B.nc4      daily Final, every other day
    raw/imerg/3B-DAY-E.MS.MRG.3IMERG.*.V07B.nc4    daily Early, the last 3 days
    raw/esacci/ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-*-fv09.1.nc   daily, ~1.5 % days missing
    basins/basins.geojson  basins/outlets.csv  basins/ungauged.geojson
    discharge/discharge.csv              basin_id,date,discharge (m3/s; empty = missing)
    README.md

The small ``write_*`` functions write one file each and are public so that tests can make
variants (another run, a date outside the sample, a corrupted copy).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import math
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------
REGION = (-8.8, 40.0, -7.2, 41.6)  # west, south, east, north (EPSG:4326)
DEFAULT_SEED = 42
DEFAULT_START = "2015-01-01"
DEFAULT_END = "2020-12-31"
HHR_DAYS = ("2015-01-14", "2015-01-15", "2019-11-02", "2019-11-03")
N_EARLY_DAYS = 3
SPINUP_DAYS = 365
IMERG_VERSION = "V07B"
ESACCI_VERSION = "09.1"

FINE = 1.0 / 120.0  # 30 arc-seconds
# The model grid covers every product footprint: IMERG (-9.1..-6.9, 39.7..41.9), ESA CCI
# (-9.25..-6.75, 39.75..42.0) and the DEM (-8.9..-7.1, 39.9..41.7).
MODEL_WEST, MODEL_NORTH, MODEL_W, MODEL_H = -9.25, 42.0, 300, 276
DEM_WIN = (36, 42, 216, 216)  # row0, col0, height, width in model cells
IMERG_WIN = (12, 18, 264, 264)
IMERG_BLOCK = 12  # 0.1°
CCI_WIN = (0, 0, 270, 300)
CCI_BLOCK = 30  # 0.25°

IMERG_FILL = np.float32(-9999.9)
DEM_NODATA = -32768
GPS_EPOCH = dt.datetime(1980, 1, 6)
UNIX_EPOCH = dt.datetime(1970, 1, 1)
EARTH_RADIUS_M = 6_371_008.8
KM_PER_DEG_LAT = 111.0
LON0, LAT0 = -8.0, 40.8
KM_PER_DEG_LON = 111.32 * math.cos(math.radians(LAT0))

# Fixed strings where real files carry production dates (keeps the output reproducible).
GENERATION_TIME = "2024-11-11T00:00:00.000Z"
CCI_DATE_CREATED = "20240301T000000Z"

# Hydrological parameters (documented in the module docstring).
BETA = 2.5
K_PERC = 0.05
K_GW_DAYS = 45.0
FLOW_SPEED_MS = 0.5
HILLSLOPE_DELAY_D = 0.3
N_LAGS = 8
OBS_NOISE = 0.04


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------
def _as_date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, np.datetime64):
        return dt.date.fromisoformat(str(value.astype("datetime64[D]")))
    return dt.date.fromisoformat(str(value)[:10])


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *[int(k) for k in keys]])


def model_lon() -> np.ndarray:
    return MODEL_WEST + (np.arange(MODEL_W) + 0.5) * FINE


def model_lat() -> np.ndarray:
    return MODEL_NORTH - (np.arange(MODEL_H) + 0.5) * FINE


def _window(a: np.ndarray, win: tuple[int, int, int, int]) -> np.ndarray:
    r0, c0, h, w = win
    return a[..., r0:r0 + h, c0:c0 + w]


def _block_mean(a: np.ndarray, block: int) -> np.ndarray:
    """Mean over non-overlapping ``block x block`` tiles of the last two axes."""
    *lead, h, w = a.shape
    return a.reshape(*lead, h // block, block, w // block, block).mean(axis=(-3, -1))


def imerg_axes() -> tuple[np.ndarray, np.ndarray]:
    """IMERG subset cell centres: lon (west->east), lat (south->north, as IMERG stores it)."""
    lon = np.round(-9.05 + 0.1 * np.arange(IMERG_WIN[3] // IMERG_BLOCK), 2)
    lat = np.round(39.75 + 0.1 * np.arange(IMERG_WIN[2] // IMERG_BLOCK), 2)
    return lon, lat


def esacci_axes() -> tuple[np.ndarray, np.ndarray]:
    """ESA CCI subset cell centres: lon (west->east), lat (north->south, as CCI stores it)."""
    lon = -9.125 + 0.25 * np.arange(CCI_WIN[3] // CCI_BLOCK)
    lat = 41.875 - 0.25 * np.arange(CCI_WIN[2] // CCI_BLOCK)
    return lon, lat


def dem_transform():
    from affine import Affine

    r0, c0, _, _ = DEM_WIN
    return Affine(FINE, 0.0, MODEL_WEST + c0 * FINE, 0.0, -FINE, MODEL_NORTH - r0 * FINE)


def cell_area_m2(lat_centres: np.ndarray, res: float = FINE) -> np.ndarray:
    """Spherical area of a ``res``-degree cell centred on each latitude."""
    lat_n = np.radians(lat_centres + res / 2)
    lat_s = np.radians(lat_centres - res / 2)
    return EARTH_RADIUS_M**2 * math.radians(res) * (np.sin(lat_n) - np.sin(lat_s))


# ---------------------------------------------------------------------------------------------
# File names
# ---------------------------------------------------------------------------------------------
_RUN_TAG = {"final": "", "late": "-L", "early": "-E"}


def _check_run(run: str) -> str:
    run = run.lower()
    if run not in _RUN_TAG:
        raise ValueError(f"run must be one of {sorted(_RUN_TAG)}, got {run!r}")
    return run


def imerg_hhr_name(date, halfhour_index: int, run: str = "final", version: str = IMERG_VERSION) -> str:
    """``3B-HHR[-E|-L].MS.MRG.3IMERG.YYYYMMDD-SHHMMSS-EHHMMSS.NNNN.V07B.HDF5``."""
    d = _as_date(date)
    if not 0 <= halfhour_index < 48:
        raise ValueError(f"halfhour_index must be 0..47, got {halfhour_index}")
    start = dt.datetime.combine(d, dt.time()) + dt.timedelta(minutes=30 * halfhour_index)
    end = start + dt.timedelta(minutes=29, seconds=59)
    return (f"3B-HHR{_RUN_TAG[_check_run(run)]}.MS.MRG.3IMERG.{d:%Y%m%d}-S{start:%H%M%S}-E{end:%H%M%S}."
            f"{30 * halfhour_index:04d}.{version}.HDF5")


def imerg_day_name(date, run: str = "final", version: str = IMERG_VERSION) -> str:
    """``3B-DAY[-E|-L].MS.MRG.3IMERG.YYYYMMDD-S000000-E235959.V07B.nc4``."""
    d = _as_date(date)
    return f"3B-DAY{_RUN_TAG[_check_run(run)]}.MS.MRG.3IMERG.{d:%Y%m%d}-S000000-E235959.{version}.nc4"


def esacci_name(date, version: str = ESACCI_VERSION) -> str:
    d = _as_date(date)
    return f"ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-{d:%Y%m%d}000000-fv{version}.nc"


# ---------------------------------------------------------------------------------------------
# Writers: IMERG
# ---------------------------------------------------------------------------------------------
def _fixed_str(s: str) -> np.bytes_:
    """A fixed-length ASCII HDF5 string attribute, as NASA's toolkit writes them."""
    return np.bytes_(s.encode("ascii"))


def _imerg_arrays(lon, lat, *arrays):
    """Validate ``(lat, lon)`` arrays; return lon, lat ascending and each array as ``(lon, lat)``.

    ``None`` entries pass through unchanged."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    flip = lat.size > 1 and lat[0] > lat[-1]
    out = []
    for a in arrays:
        if a is None:
            out.append(None)
            continue
        a = np.asarray(a, dtype=np.float64)
        if a.shape != (lat.size, lon.size):
            raise ValueError(f"array shape {a.shape} must be (lat, lon) = ({lat.size}, {lon.size})")
        out.append((a[::-1, :] if flip else a).T)
    return lon, (lat[::-1] if flip else lat), out


def write_imerg_hhr(path, date, halfhour_index, precip_mm_per_hr, lon, lat, run: str = "final",
                    prob_liquid=None, version: str = IMERG_VERSION) -> Path:
    """Write one IMERG V07 half-hourly granule (HDF5, group ``/Grid``) for a regional subset.

    ``precip_mm_per_hr`` is a 2-D ``(lat, lon)`` array of mean rates over the half hour
    (NaN -> ``_FillValue`` -9999.9); ``lon``/``lat`` are cell centres (lat in any order, stored
    ascending). ``prob_liquid`` (percent, same shape; default 100) fills
    ``probabilityLiquidPrecipitation``. Variables are stored (time, lon, lat) as in real files.
    """
    import h5py

    run = _check_run(run)
    d = _as_date(date)
    lon, lat, (rate, p) = _imerg_arrays(lon, lat, precip_mm_per_hr, prob_liquid)
    if p is None:
        prob = np.full(rate.shape, 100, dtype=np.int16)
    else:
        prob = np.where(np.isfinite(p), np.clip(np.rint(p), 0, 100), -9999).astype(np.int16)
    data = np.where(np.isfinite(rate), rate, IMERG_FILL).astype(np.float32)[None]
    prob = np.where(np.isfinite(rate), prob, np.int16(-9999)).astype(np.int16)[None]

    start = dt.datetime.combine(d, dt.time()) + dt.timedelta(minutes=30 * int(halfhour_index))
    t0 = int((start - GPS_EPOCH).total_seconds())
    name = Path(path).name
    short = {"final": "3IMERGHH", "late": "3IMERGHHL", "early": "3IMERGHHE"}[run]
    doi = {"final": "3B-HH", "late": "3B-HH-L", "early": "3B-HH-E"}[run]
    header = (f"DOI=10.5067/GPM/IMERG/{doi}/07;\nDOIauthority=http://dx.doi.org/;\nDOIshortName={short};\n"
              f"AlgorithmID={short};\nAlgorithmVersion=3IMERGH_7.0;\nFileName={name};\nSatelliteName=MULTI;\n"
              f"InstrumentName=MERGED;\nGenerationDateTime={GENERATION_TIME};\n"
              f"StartGranuleDateTime={start:%Y-%m-%dT%H:%M:%S}.000Z;\n"
              f"StopGranuleDateTime={start + dt.timedelta(minutes=29, seconds=59):%Y-%m-%dT%H:%M:%S}.999Z;\n"
              "GranuleNumber=;\nNumberOfSwaths=0;\nNumberOfGrids=1;\nGranuleStart=;\nTimeInterval=HALF_HOUR;\n"
              f"ProcessingSystem=PPS;\nProductVersion={version};\nEmptyGranule=NOT_EMPTY;\nMissingData=;\n")
    info = ("DataFormatVersion=7e;\nTKCodeBuildVersion=0;\nMetadataVersion=7e;\nFormatPackage=HDF5-1.10.9;\n"
            "BlueprintFilename=GPM.V7.3IMERGHH.blueprint.xml;\nBlueprintVersion=BV_69;\nTKIOVersion=3.101;\n"
            "MetadataStyle=PVL;\nEndianType=LITTLE_ENDIAN;\n")
    grid_header = ("BinMethod=ARITHMETIC_MEAN;\nRegistration=CENTER;\nLatitudeResolution=0.1;\n"
                   "LongitudeResolution=0.1;\nNorthBoundingCoordinate=90;\nSouthBoundingCoordinate=-90;\n"
                   "EastBoundingCoordinate=180;\nWestBoundingCoordinate=-180;\nOrigin=SOUTHWEST;\n")
    units_t = "seconds since 1980-01-06 00:00:00 UTC"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", libver="earliest", track_order=False) as f:
        f.attrs["FileHeader"] = _fixed_str(header)
        f.attrs["FileInfo"] = _fixed_str(info)
        g = f.create_group("Grid")
        g.attrs["GridHeader"] = _fixed_str(grid_header)

        def attrs(ds, items):
            for k, v in items:
                ds.attrs[k] = _fixed_str(v) if isinstance(v, str) else v

        v_lat = g.create_dataset("lat", data=lat.astype(np.float32))
        attrs(v_lat, [("DimensionNames", "lat"), ("Units", "degrees_north"), ("units", "degrees_north"),
                      ("standard_name", "latitude"),
                      ("LongName", "Latitude at the center of\n\t\t\t0.10 degree grid intervals of latitude\n"
                                   "\t\t\tfrom -90 to 90."),
                      ("axis", "Y")])
        v_lon = g.create_dataset("lon", data=lon.astype(np.float32))
        attrs(v_lon, [("DimensionNames", "lon"), ("Units", "degrees_east"), ("units", "degrees_east"),
                      ("standard_name", "longitude"),
                      ("LongName", "Longitude at the center of\n\t\t\t0.10 degree grid intervals of longitude \n"
                                   "\t\t\tfrom -180 to 180."),
                      ("axis", "X")])
        v_time = g.create_dataset("time", data=np.array([t0], dtype=np.int32))
        attrs(v_time, [("DimensionNames", "time"), ("Units", units_t), ("units", units_t),
                       ("standard_name", "time"),
                       ("LongName", "\nRepresentative time of data in \n"
                                    "\t\t\tseconds since 1980-01-06 00:00:00 UTC.\n"
                                    "\t\t\tThe calculation of time does not add leap seconds.\n"
                                    "\t\t\tThe difference due to leap seconds grows with time \n"
                                    "\t\t\tand in 2019 is less than 30 seconds.\n"),
                       ("bounds", "time_bnds"), ("axis", "T"), ("calendar", "julian")])
        v_nv = g.create_dataset("nv", data=np.zeros(2, dtype=np.int32))
        attrs(v_nv, [("DimensionNames", "nv"), ("LongName", "Number of time bounds."),
                     ("standard_name", "numbertimebnds")])
        v_tb = g.create_dataset("time_bnds", data=np.array([[t0, t0 + 1800]], dtype=np.int32))
        attrs(v_tb, [("DimensionNames", "time,nv"), ("Units", units_t), ("units", units_t),
                     ("coordinates", "time nv")])
        v_p = g.create_dataset("precipitation", data=data)
        attrs(v_p, [("DimensionNames", "time,lon,lat"), ("Units", "mm/hr"), ("units", "mm/hr"),
                    ("coordinates", "time lon lat"), ("_FillValue", IMERG_FILL), ("CodeMissingValue", "-9999.9"),
                    ("LongName", "\nComplete merged microwave-infrared (gauge-adjusted)\n                        "
                                 "precipitation estimate;  formerly precipitationCal\n")])
        v_q = g.create_dataset("probabilityLiquidPrecipitation", data=prob)
        attrs(v_q, [("DimensionNames", "time,lon,lat"), ("Units", "percent"), ("units", "percent"),
                    ("coordinates", "time lon lat"), ("_FillValue", np.int16(-9999)), ("CodeMissingValue", "-9999"),
                    ("LongName", "\nProbability of liquid precipitation;  estimated with\n                        "
                                 "a diagnostic parameterization using ancillary data\n")])
        # netCDF-readable dimension scales, as in the real granules
        v_time.make_scale("")
        v_lon.make_scale("")
        v_lat.make_scale("")
        v_nv.make_scale("This is a netCDF dimension but not a netCDF variable.         2")
        for var in (v_p, v_q):
            var.dims[0].attach_scale(v_time)
            var.dims[1].attach_scale(v_lon)
            var.dims[2].attach_scale(v_lat)
        v_tb.dims[0].attach_scale(v_time)
        v_tb.dims[1].attach_scale(v_nv)
    return path


def write_imerg_day(path, date, precip_mm, lon, lat, run: str = "final", count=None,
                    version: str = IMERG_VERSION, prob_liquid=None, history: str | None = None) -> Path:
    """Write one IMERG V07 daily file (flat NetCDF4, GES DISC regional subset).

    ``precip_mm`` is the day's total in mm on a ``(lat, lon)`` grid (= the daily mean rate in
    mm/day, the V07 daily unit); NaN -> ``_FillValue``. ``count`` (same shape) is
    ``precipitation_cnt``, the number of valid half-hours (default 48, 0 where NaN).
    ``prob_liquid`` (percent, same shape; optional) adds ``probabilityLiquidPrecipitation``
    (int16, fill -9999 where it or the precipitation is NaN), which real V07 daily files carry.
    ``history`` replaces the default history attribute (which names the default sample's subset).
    Variables are stored (time, lon, lat) with lat ascending.
    """
    import netCDF4

    run = _check_run(run)
    d = _as_date(date)
    lon, lat, (p, c, q) = _imerg_arrays(lon, lat, precip_mm, count, prob_liquid)
    if c is None:
        cnt = np.where(np.isfinite(p), 48, 0).astype(np.int16)
    else:
        cnt = np.where(np.isfinite(p), c, 0).astype(np.int16)
    days = (d - UNIX_EPOCH.date()).days
    prod = {"final": "DF", "late": "DL", "early": "DE"}[run]
    title_run = {"final": "Final", "late": "Late", "early": "Early"}[run]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncatts({
            "BeginDate": f"{d:%Y-%m-%d}", "BeginTime": "00:00:00.000Z",
            "EndDate": f"{d:%Y-%m-%d}", "EndTime": "23:59:59.999Z",
            "FileHeader": (f"StartGranuleDateTime={d:%Y-%m-%d}T00:00:00.000Z;\n"
                           f"StopGranuleDateTime={d:%Y-%m-%d}T23:59:59.999Z"),
            "title": f"GPM IMERG {title_run} Precipitation L3 1 day 0.1 degree x 0.1 degree (GPM_3IMERG{prod})",
            "DOI": f"10.5067/GPM/IMERG{prod}/DAY/07",
            "ProductionTime": GENERATION_TIME,
            "history": history if history is not None else (
                "Spatial subset lon -9.1..-6.9, lat 39.7..41.9 (GES DISC style); variables precipitation, "
                "precipitation_cnt. SYNTHETIC values written by hydrocast.sampledata"),
        })
        nc.createDimension("time", 1)
        nc.createDimension("lon", lon.size)
        nc.createDimension("lat", lat.size)
        nc.createDimension("nv", 2)
        v = nc.createVariable("lon", "f4", ("lon",))
        v.setncatts({"units": "degrees_east", "long_name": "Longitude"})
        v[:] = lon
        v = nc.createVariable("lat", "f8", ("lat",))
        v.setncatts({"units": "degrees_north", "long_name": "Latitude"})
        v[:] = lat
        v = nc.createVariable("time", "i4", ("time",))
        v.setncatts({"standard_name": "time", "bounds": "time_bnds", "long_name": "time",
                     "units": "days since 1970-01-01 00:00:00Z", "calendar": "julian"})
        v[:] = [days]
        v = nc.createVariable("time_bnds", "i4", ("time", "nv"))
        v.setncatts({"coordinates": "time nv", "units": "days since 1970-01-01 00:00:00Z"})
        v[:] = [[days, days + 1]]
        v = nc.createVariable("precipitation", "f4", ("time", "lon", "lat"), fill_value=IMERG_FILL)
        v.setncatts({"units": "mm/day",
                     "long_name": "Daily mean precipitation rate (combined microwave-IR) estimate. "
                                  "Formerly precipitationCal.",
                     "coordinates": "time lon lat"})
        v.set_auto_mask(False)
        v[:] = np.where(np.isfinite(p), p, IMERG_FILL).astype(np.float32)[None]
        v = nc.createVariable("precipitation_cnt", "i2", ("time", "lon", "lat"))
        v.setncatts({"units": "count",
                     "long_name": "Count of all valid half-hourly precipitation retrievals for the day",
                     "coordinates": "time lon lat"})
        v[:] = cnt[None]
        if q is not None:
            ok = np.isfinite(p) & np.isfinite(q)
            prob = np.where(ok, np.clip(np.rint(np.where(ok, q, 0.0)), 0, 100), -9999).astype(np.int16)
            v = nc.createVariable("probabilityLiquidPrecipitation", "i2", ("time", "lon", "lat"),
                                  fill_value=np.int16(-9999))
            v.setncatts({"units": "percent", "long_name": "Probability of liquid precipitation",
                         "coordinates": "time lon lat"})
            v.set_auto_mask(False)
            v[:] = prob[None]
    return path


# ---------------------------------------------------------------------------------------------
# Writers: ESA CCI SM
# ---------------------------------------------------------------------------------------------
CCI_FLAG_VALUES = np.array([0, 1, 2, 4, 8, 16, 32, 64, 127], dtype=np.int8)
CCI_FLAG_MEANINGS = ("no_data_inconsistency_detected snow_coverage_or_temperature_below_zero dense_vegetation "
                     "others_no_convergence_in_the_model_thus_no_valid_sm_estimates "
                     "soil_moisture_value_exceeds_physical_boundary weight_of_measurement_below_threshold "
                     "all_datasets_deemed_unreliable barren_ground_advisory_flag NaN")


def write_esacci_day(path, date, sm, flag, lon, lat, sm_uncertainty=None, t0=None,
                     version: str = ESACCI_VERSION) -> Path:
    """Write one ESA CCI SM L3S COMBINED daily file (NETCDF4_CLASSIC) for a regional subset.

    ``sm`` (m3 m-3, NaN -> -9999), ``flag`` (int, bits as in the product; 127 = fill) and the
    optional ``sm_uncertainty`` and ``t0`` (observation time, days since 1970) are ``(lat, lon)``
    arrays; lat may come in any order and is stored north -> south as in the real product.
    """
    import netCDF4

    d = _as_date(date)
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    arrays = {"sm": np.asarray(sm, dtype=np.float64), "flag": np.asarray(flag)}
    if sm_uncertainty is not None:
        arrays["sm_uncertainty"] = np.asarray(sm_uncertainty, dtype=np.float64)
    if t0 is not None:
        arrays["t0"] = np.asarray(t0, dtype=np.float64)
    for k, a in arrays.items():
        if a.shape != (lat.size, lon.size):
            raise ValueError(f"{k} shape {a.shape} must be (lat, lon) = ({lat.size}, {lon.size})")
    if lat.size > 1 and lat[0] < lat[-1]:
        lat = lat[::-1]
        arrays = {k: a[::-1, :] for k, a in arrays.items()}
    sm = arrays["sm"]
    flag = arrays["flag"].astype(np.int16)
    valid = np.isfinite(sm)
    if "sm_uncertainty" not in arrays:
        arrays["sm_uncertainty"] = np.where(valid, 0.04, np.nan)
    day0 = (d - UNIX_EPOCH.date()).days
    if "t0" not in arrays:
        arrays["t0"] = np.where(valid | (flag != 127), day0 + 0.5, np.nan)
    name = Path(path).name
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as nc:
        nc.setncatts({
            "title": "ESA CCI Surface Soil Moisture COMBINED Product",
            "institution": "TU Wien (AUT); VanderSat B.V. (NL); Planet Labs (NL); CESBIO (FR); EODC Gmbh (AUT)",
            "contact": "cci_sm_contact@eodc.eu",
            "source": "LPRMv7/SMMR/Nimbus 7 ... AMI-WS/ERS-1/2, ASCAT/Metop-A/B/C, SMOS, SMAP (SYNTHETIC subset)",
            "platform": "Nimbus 7, DMSP, TRMM, AQUA, Coriolis, GCOM-W1, MIRAS, SMAP, FY-3B, FY-3C, FY-3D, GPM; "
                        "ERS-1, ERS-2, METOP-A, METOP-B, METOP-C",
            "sensor": "SMMR, SSM/I, TMI, AMSR-E, WindSat, AMSR2, SMOS, SMAP, MWRI, GMI; "
                      "AMI-WS, ASCAT-A, ASCAT-B, ASCAT-C",
            "references": "http://www.esa-soilmoisture-cci.org; Dorigo et al. (2017) ESA CCI Soil Moisture for "
                          "improved Earth system understanding, Remote Sensing of Environment, "
                          "https://doi.org/10.1016/j.rse.2017.07.001; Gruber et al. (2019) Evolution of the ESA CCI "
                          "Soil Moisture climate data records, ESSD, https://doi.org/10.5194/essd-11-717-2019",
            "product_version": version,
            "id": name,
            "tracking_id": "00000000-0000-0000-0000-000000000000",
            "Conventions": "CF-1.7",
            "standard_name_vocabulary": "NetCDF Climate and Forecast (CF) Metadata Convention",
            "summary": "The data set was produced with funding of the ESA CCI Soil Moisture project.",
            "keywords": "Soil Moisture/Water Content",
            "naming_authority": "TU Wien",
            "keywords_vocabulary": "NASA Global Change Master Directory (GCMD) Science Keywords",
            "cdm_data_type": "Grid",
            "comment": "SYNTHETIC regional subset written by hydrocast.sampledata; values are made up.",
            "history": f"{CCI_DATE_CREATED[:4]}-{CCI_DATE_CREATED[4:6]}-{CCI_DATE_CREATED[6:8]} - product produced",
            "date_created": CCI_DATE_CREATED,
            "creator_name": "Department of Geodesy and Geoinformation, Vienna University of Technology",
            "creator_url": "http://rs.geo.tuwien.ac.at",
            "creator_email": "cci_sm_developer@eodc.eu",
            "project": "Climate Change Initiative - European Space Agency",
            "license": "ESA CCI Data Policy: free and open access",
            "time_coverage_start": "19781101T000000Z",
            "time_coverage_end": "20231231T235959Z",
            "time_coverage_duration": "P45Y",
            "time_coverage_resolution": "P1D",
            "geospatial_lat_min": f"{lat.min() - 0.125:.3f}",
            "geospatial_lat_max": f"{lat.max() + 0.125:.3f}",
            "geospatial_lon_min": f"{lon.min() - 0.125:.3f}",
            "geospatial_lon_max": f"{lon.max() + 0.125:.3f}",
            "geospatial_vertical_min": "0.0",
            "geospatial_vertical_max": "0.0",
            "geospatial_lat_units": "degrees_north",
            "geospatial_lon_units": "degrees_east",
            "geospatial_lat_resolution": "0.25 degree",
            "geospatial_lon_resolution": "0.25 degree",
            "spatial_resolution": "25km",
        })
        nc.createDimension("time", 1)
        nc.createDimension("lat", lat.size)
        nc.createDimension("lon", lon.size)
        v = nc.createVariable("lat", "f4", ("lat",))
        v.setncatts({"units": "degrees_north", "_CoordinateAxisType": "Lat", "standard_name": "latitude",
                     "valid_range": np.array([-90.0, 90.0])})
        v[:] = lat
        v = nc.createVariable("lon", "f4", ("lon",))
        v.setncatts({"units": "degrees_east", "_CoordinateAxisType": "Lon", "standard_name": "longitude",
                     "valid_range": np.array([-180.0, 180.0])})
        v[:] = lon
        v = nc.createVariable("time", "f8", ("time",))
        v.setncatts({"units": "days since 1970-01-01 00:00:00 UTC", "_CoordinateAxisType": "Time",
                     "standard_name": "time", "calendar": "standard"})
        v[:] = [float(day0)]
        dims = ("time", "lat", "lon")
        v = nc.createVariable("t0", "f8", dims, fill_value=-9999.0)
        v.setncatts({"long_name": "Observation Timestamp", "units": "days since 1970-01-01 00:00:00 UTC",
                     "valid_range": np.array([day0 - 0.5, day0 + 1.5]), "_CoordinateAxes": "time lat lon"})
        v.set_auto_mask(False)
        t0a = arrays["t0"]
        v[:] = np.where(np.isfinite(t0a), t0a, -9999.0)[None]
        v = nc.createVariable("sm", "f4", dims, fill_value=np.float32(-9999.0))
        v.setncatts({"long_name": "Volumetric Soil Moisture", "units": "m3 m-3",
                     "valid_range": np.array([0.0, 1.0], dtype=np.float32), "_CoordinateAxes": "time lat lon"})
        v.set_auto_mask(False)
        v[:] = np.where(valid, sm, -9999.0).astype(np.float32)[None]
        v = nc.createVariable("sm_uncertainty", "f4", dims, fill_value=np.float32(-9999.0))
        u = arrays["sm_uncertainty"]
        v.setncatts({"long_name": "Volumetric Soil Moisture Uncertainty", "units": "m3 m-3",
                     "description": "Uncertainty is the estimated standard deviation of the  observation",
                     "valid_range": np.array([0.0, 1.0], dtype=np.float32), "_CoordinateAxes": "time lat lon"})
        v.set_auto_mask(False)
        v[:] = np.where(np.isfinite(u), u, -9999.0).astype(np.float32)[None]
        v = nc.createVariable("flag", "i1", dims, fill_value=np.int8(127))
        v.setncatts({"long_name": "Flag", "flag_values": CCI_FLAG_VALUES, "flag_meanings": CCI_FLAG_MEANINGS,
                     "_CoordinateAxes": "time lat lon"})
        v.set_auto_mask(False)
        v[:] = flag.astype(np.int8)[None]
    return path


# ---------------------------------------------------------------------------------------------
# Writers: DEM, basins, discharge
# ---------------------------------------------------------------------------------------------
def write_dem(path, elevation, transform, dtype: str = "int16", nodata: float = DEM_NODATA) -> Path:
    """Write an EPSG:4326 GeoTIFF (default int16, nodata -32768; tiled 128x128, deflate)."""
    import rasterio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    z = np.asarray(elevation).astype(dtype)
    profile = dict(driver="GTiff", width=z.shape[1], height=z.shape[0], count=1, dtype=dtype,
                   crs="EPSG:4326", transform=transform, nodata=nodata, tiled=True,
                   blockxsize=128, blockysize=128, compress="deflate",
                   predictor=3 if np.dtype(dtype).kind == "f" else 2)  # 3: floating-point predictor
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(z, 1)
    return path


def _round_coords(obj, nd: int = 6):
    if isinstance(obj, (list, tuple)):
        return [_round_coords(o, nd) for o in obj]
    if isinstance(obj, float):
        r = round(obj, nd)
        return 0.0 if r == 0 else r
    return obj


def write_basins_geojson(path, basins: list["Basin"], name: str) -> Path:
    """A GeoJSON FeatureCollection (lon/lat, CRS84) of basin polygons with their properties."""
    from shapely.geometry import mapping

    feats = []
    for b in basins:
        geom = mapping(b.polygon)
        feats.append({"type": "Feature",
                      "properties": {"id": b.id, "name": b.name, "area_km2": round(b.area_km2, 1),
                                     "outlet_lon": round(b.outlet_lon, 6), "outlet_lat": round(b.outlet_lat, 6)},
                      "geometry": {"type": geom["type"], "coordinates": _round_coords(geom["coordinates"])}})
    fc = {"type": "FeatureCollection", "name": name,
          "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
          "features": feats}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fc, indent=1) + "\n")
    return path


def write_outlets_csv(path, basins: list["Basin"]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["id", "lon", "lat"])
        for b in basins:
            w.writerow([b.id, f"{b.outlet_lon:.6f}", f"{b.outlet_lat:.6f}"])
    return path


def write_discharge_csv(path, ids: list[str], dates: list[dt.date], q: np.ndarray) -> Path:
    """Long CSV ``basin_id,date,discharge``; NaN -> empty field."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["basin_id", "date", "discharge"])
        for i, bid in enumerate(ids):
            for j, d in enumerate(dates):
                v = q[i, j]
                w.writerow([bid, d.isoformat(), "" if not np.isfinite(v) else f"{v:.3f}"])
    return path


# ---------------------------------------------------------------------------------------------
# Terrain
# ---------------------------------------------------------------------------------------------
@dataclass
class Terrain:
    elev: np.ndarray  # model grid, float m (0 on sea)
    land: np.ndarray  # model grid, bool
    dem: np.ndarray  # DEM window, int16 as written (with voids)
    dem_routed: np.ndarray  # DEM window, int16 used for routing (sea = nodata, no voids)
    smax: np.ndarray  # bucket capacity (mm), model grid


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    n = gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return n / n.std()


def make_terrain(seed: int) -> Terrain:
    """Synthetic elevation, land mask and bucket capacity on the model grid; the DEM window.

    West of the ridge the surface is ``bed(x) + relief(x) * g(d)``: a river-bed profile rising
    inland, plus hills whose height grows with the distance ``d`` to the nearest of five
    meandering west-flowing rivers (three inside the region, two just outside that make its
    northern and southern divides), so the valleys always drain. Seeded smooth noise roughens the
    hillslopes (never the valley floors). East of the ridge a plateau slopes away eastwards."""
    rng = _rng(seed, 0xDE)
    lon = model_lon()[None, :]
    lat = model_lat()[:, None]
    shape = (MODEL_H, MODEL_W)
    coast = -8.93 + 0.26 * np.clip((lat - 41.42) / 0.28, 0.0, 1.0)
    land = np.broadcast_to(lon >= coast, shape).copy()
    ridge = -7.42 + 0.04 * np.sin(2 * np.pi * (lat - 40.0) / 1.3 + rng.uniform(0, 2 * np.pi))
    s = np.clip((lon - coast) / (ridge - coast), 0.0, 1.0)
    dkm = np.full(shape, np.inf)
    for lat_k in (41.76, 41.28, 40.82, 40.36, 39.86):
        ph1, ph2 = rng.uniform(0, 2 * np.pi, 2)
        yk = (lat_k + 0.06 * np.sin(2 * np.pi * (lon + 8.8) / 0.55 + ph1)
              + 0.025 * np.sin(2 * np.pi * lon / 0.21 + ph2))
        dkm = np.minimum(dkm, np.abs(lat - yk) * KM_PER_DEG_LAT)
    g = np.clip(dkm / 25.0, 0.0, 1.0) ** 0.8
    bed = 4.0 + 600.0 * s**1.5
    relief = 50.0 + 480.0 * s**1.2
    noise = (0.30 * _smooth_noise(rng, shape, 20) + 0.18 * _smooth_noise(rng, shape, 7)
             + 0.08 * _smooth_noise(rng, shape, 2.5))
    west = bed + relief * np.clip(g * (1.0 + noise), 0.0, None) + 25.0 * s * noise
    # ridge plateau, with east-west spurs just inside the region's north and south edges so that
    # the divides near the ridge do not wander outside it
    spurs = np.exp(-(((lat - 41.56) / 0.05) ** 2)) + np.exp(-(((lat - 40.04) / 0.05) ** 2))
    top = 1050.0 + 120.0 * _smooth_noise(rng, shape, 15) + 300.0 * spurs
    east = top - 420.0 * np.clip((lon - ridge) / 0.5, 0.0, 1.0) + 60.0 * noise
    # blend the valleys into the ridge plateau over the last 0.2 degrees
    w_ridge = np.clip((lon - (ridge - 0.2)) / 0.2, 0.0, 1.0)
    z = np.where(lon <= ridge, (1 - w_ridge) * west + w_ridge * np.maximum(west, top), east)
    z = np.where(land, np.maximum(z, 1.0), 0.0)

    # bucket capacity: smaller on steep and high ground
    dzdy, dzdx = np.gradient(z, KM_PER_DEG_LAT * 1000 * FINE, KM_PER_DEG_LON * 1000 * FINE)
    slope = np.hypot(dzdx, dzdy)
    smax = 200.0 - 50.0 * np.clip(slope / 0.15, 0, 1) - 40.0 * np.clip(z / 1400.0, 0, 1)

    dem_routed = np.where(_window(land, DEM_WIN), np.rint(_window(z, DEM_WIN)), DEM_NODATA).astype(np.int16)
    return Terrain(elev=z, land=land, dem=dem_routed.copy(), dem_routed=dem_routed, smax=smax)


def _add_dem_voids(seed: int, dem: np.ndarray, upa_km2: np.ndarray) -> np.ndarray:
    """SRTM-like voids: a few small clusters away from the rivers."""
    rng = _rng(seed, 0x7D)
    out = dem.copy()
    h, w = dem.shape
    placed = 0
    while placed < 7:
        r, c = rng.integers(8, h - 8), rng.integers(8, w - 8)
        rs = slice(r, r + rng.integers(1, 3))
        cs = slice(c, c + rng.integers(1, 4))
        if np.all(out[rs, cs] != DEM_NODATA) and np.all(upa_km2[rs, cs] < 3.0):
            out[rs, cs] = DEM_NODATA
            placed += 1
    return out


# ---------------------------------------------------------------------------------------------
# Basins
# ---------------------------------------------------------------------------------------------
@dataclass
class Basin:
    id: str
    name: str
    outlet_idx: int  # flat index in the DEM window
    mask: np.ndarray  # DEM window, bool
    area_km2: float
    outlet_lon: float
    outlet_lat: float
    polygon: object = None
    dist_m: np.ndarray | None = None  # flow distance to the outlet (DEM window), NaN outside
    gauged: bool = True
    parent: str | None = None


@dataclass
class Network:
    flw: object
    upa: np.ndarray  # km2, DEM window
    cell_km2: np.ndarray  # DEM window
    gauged: list[Basin] = field(default_factory=list)
    ungauged: list[Basin] = field(default_factory=list)


def _inside_region(mask: np.ndarray) -> bool:
    r0, c0, h, w = DEM_WIN
    rows, cols = np.nonzero(mask)
    west = MODEL_WEST + (c0 + cols.min()) * FINE
    east = MODEL_WEST + (c0 + cols.max() + 1) * FINE
    north = MODEL_NORTH - (r0 + rows.min()) * FINE
    south = MODEL_NORTH - (r0 + rows.max() + 1) * FINE
    w_, s_, e_, n_ = REGION
    eps = 1e-9
    return west >= w_ - eps and east <= e_ + eps and south >= s_ - eps and north <= n_ + eps


def delineate_basins(seed: int, terrain: Terrain) -> Network:
    """Route the DEM with pyflwdir and pick 6 gauged + 2 ungauged outlets by target area.

    Outlets are found on the main stems of the three valleys (walking upstream from the mouth
    until the upstream area drops below a target and the basin lies inside the region) and at
    the mouths of their largest tributaries, so the choice adapts to any seed."""
    import pyflwdir

    r0, c0, h, w = DEM_WIN
    transform = dem_transform()
    flw = pyflwdir.from_dem(terrain.dem_routed.astype(np.float32), nodata=float(DEM_NODATA),
                            transform=transform, latlon=True, outlets="edge")
    upa = flw.upstream_area(unit="km2")
    upa_flat = upa.ravel()
    idxs_ds = flw.idxs_ds
    lat_c = MODEL_NORTH - (r0 + np.arange(h) + 0.5) * FINE
    cell_km2 = np.repeat((cell_area_m2(lat_c) / 1e6)[:, None], w, axis=1)
    main_us = flw.main_upstream(uparea=upa)  # flat array: main upstream neighbour or -1 (mv)
    main_us = np.asarray(main_us).ravel()
    lon_c = MODEL_WEST + (c0 + np.arange(w) + 0.5) * FINE

    def basin_mask(idx: int) -> np.ndarray:
        return flw.basins(idxs=np.array([idx], dtype=np.intp)) > 0

    def stem_from(idx: int) -> list[int]:
        """``idx`` and its main upstream cells, walking up to the source."""
        stem = [idx]
        while 0 <= (nxt := int(main_us[stem[-1]])) < upa_flat.size and nxt != stem[-1]:
            stem.append(nxt)
        return stem

    def stem_from_mouth(lat_k: float) -> list[int]:
        cols = np.nonzero((lon_c > -8.79) & (lon_c < -8.70))[0]
        rows = np.nonzero(np.abs(lat_c - lat_k) < 0.15)[0]
        sub = upa[np.ix_(rows, cols)]
        rr, cc = np.unravel_index(np.argmax(sub), sub.shape)
        idx = int(rows[rr] * w + cols[cc])
        return stem_from(idx)

    def pick_on_stem(stem: list[int], max_area: float, min_area: float = 120.0) -> int:
        """The most downstream stem cell with area <= max_area whose basin lies inside the region;
        failing that (a headwater crossing the region's edge), the largest such cell anywhere
        upstream of the stem's first cell."""
        for idx in stem:
            if upa_flat[idx] <= max_area and lon_c[idx % w] > -8.78:
                if upa_flat[idx] < min_area:
                    break
                if _inside_region(basin_mask(idx)):
                    return idx
        within = basin_mask(stem[0]).ravel()
        cand = np.nonzero(within & (upa_flat >= min_area) & (upa_flat <= max_area)
                          & (lon_c[np.arange(upa_flat.size) % w] > -8.78))[0]
        for idx in cand[np.argsort(-upa_flat[cand], kind="stable")]:
            if _inside_region(basin_mask(int(idx))):
                return int(idx)
        raise RuntimeError(f"no outlet with area in [{min_area}, {max_area}] km2 inside the region")

    def pick_tributary(stem: list[int], lo: float, hi: float, exclude: set[int]) -> int:
        stem_arr = np.asarray(stem, dtype=np.intp)
        on_stem = np.isin(idxs_ds, stem_arr)
        cand = np.nonzero(on_stem & ~np.isin(np.arange(idxs_ds.size), stem_arr)
                          & (upa_flat >= lo) & (upa_flat <= hi))[0]
        for idx in cand[np.argsort(-upa_flat[cand], kind="stable")]:
            if int(idx) in exclude:
                continue
            m = basin_mask(int(idx))
            if _inside_region(m):
                return int(idx)
        raise RuntimeError(f"no tributary with area in [{lo}, {hi}] km2 inside the region")

    stem_a, stem_b, stem_c = (stem_from_mouth(y) for y in (41.28, 40.82, 40.36))
    pt01 = pick_on_stem(stem_a, 3000.0)
    pt03 = pick_on_stem(stem_b, 2500.0)
    pt04 = pick_on_stem(stem_c, 2000.0)
    spec = [  # id, name, outlet index, gauged
        ("PT01", "Rio Alto (lower)", pt01, True),
        ("PT02", "Rio Alto (upper)", pick_on_stem(stem_from(pt01)[1:], min(700.0, 0.6 * upa_flat[pt01])), True),
        ("PT03", "Rio Medio", pt03, True),
        ("PT04", "Rio Baixo", pt04, True),
        ("PT05", "Ribeira do Baixo", pick_tributary(stem_c, 150.0, 800.0, set()), True),
        ("PT06", "Rio Medio (upper)", pick_on_stem(stem_from(pt03)[1:], min(450.0, 0.6 * upa_flat[pt03])), True),
    ]
    used = {s[2] for s in spec}
    spec.append(("PT07", "Ribeira do Alto", pick_tributary(stem_a, 150.0, 1200.0, used), False))
    spec.append(("PT08", "Rio Baixo (upper)", pick_on_stem(stem_from(pt04)[1:], min(420.0, 0.6 * upa_flat[pt04])),
                 False))

    # length (m) of each cell's D8 step to its downstream neighbour
    rr_all, cc_all = np.divmod(np.arange(upa_flat.size), w)
    rr_ds, cc_ds = np.divmod(idxs_ds, w)
    coslat = np.cos(np.radians(lat_c[rr_all]))
    rad = math.radians(FINE) * EARTH_RADIUS_M
    step_m = np.hypot((cc_ds - cc_all) * rad * coslat, (rr_ds - rr_all) * rad)

    net = Network(flw=flw, upa=upa, cell_km2=cell_km2)
    lat_model = model_lat()
    for bid, name, idx, gauged in spec:
        m = basin_mask(idx)
        rr, cc = divmod(idx, w)
        dist = np.where(m, _flow_distance(idxs_ds, step_m, idx).reshape(h, w), np.nan)
        b = Basin(id=bid, name=name, outlet_idx=int(idx), mask=m, area_km2=float(cell_km2[m].sum()),
                  outlet_lon=float(MODEL_WEST + (c0 + cc + 0.5) * FINE),
                  outlet_lat=float(lat_model[r0 + rr]), dist_m=dist, gauged=gauged)
        b.polygon = _polygonize(m)
        (net.gauged if gauged else net.ungauged).append(b)
    everything = net.gauged + net.ungauged
    for b in everything:  # smallest enclosing basin = parent
        parents = [o for o in everything if o is not b and o.mask[b.mask].all() and o.area_km2 > b.area_km2]
        if parents:
            b.parent = min(parents, key=lambda o: o.area_km2).id
    return net


def _flow_distance(idxs_ds: np.ndarray, step_m: np.ndarray, outlet: int) -> np.ndarray:
    """Distance (m) along D8 flow paths from every cell to ``outlet`` (meaningful upstream of it).

    Pointer doubling: after k rounds each cell knows the length of its next 2^k steps."""
    ptr = idxs_ds.astype(np.intp).copy()
    dist = step_m.astype(np.float64).copy()
    ptr[outlet] = outlet
    dist[outlet] = 0.0
    pits = ptr == np.arange(ptr.size)
    dist[pits] = 0.0
    for _ in range(64):
        if np.all(ptr[ptr] == ptr):
            break
        dist = dist + dist[ptr]
        ptr = ptr[ptr]
    return dist


def _polygonize(mask: np.ndarray):
    from rasterio.features import shapes
    from shapely.geometry import shape
    from shapely.ops import unary_union

    polys = [shape(g) for g, v in shapes(mask.astype(np.uint8), mask=mask, transform=dem_transform(),
                                         connectivity=4) if v == 1]
    return unary_union(polys)


# ---------------------------------------------------------------------------------------------
# Weather: storms and precipitation
# ---------------------------------------------------------------------------------------------
STORM_DTYPE = np.dtype([("t_mid", "f8"), ("life", "f8"), ("x", "f8"), ("y", "f8"), ("heading", "f8"),
                        ("speed", "f8"), ("sa", "f8"), ("sc", "f8"), ("i0", "f8")])


def _season(day: dt.date) -> float:
    """1 in mid-January (wettest), 0 in mid-July."""
    doy = day.timetuple().tm_yday
    return 0.5 + 0.5 * math.cos(2 * math.pi * (doy - 20) / 365.25)


_REGIME_CACHE: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _regime(seed: int, day: dt.date) -> float:
    """A seeded low-frequency anomaly (unit variance): wet and dry spells, wet and dry years."""
    if seed not in _REGIME_CACHE:
        rng = _rng(seed, 0x4E)
        periods = np.exp(rng.uniform(np.log(4.0), np.log(700.0), 14))
        amps = (periods / 4.0) ** 0.1
        phases = rng.uniform(0, 2 * np.pi, 14)
        _REGIME_CACHE[seed] = (periods, amps / np.sqrt(0.5 * np.sum(amps**2)), phases)
    periods, amps, phases = _REGIME_CACHE[seed]
    t = (day - dt.date(2000, 1, 1)).days
    return float(np.sum(amps * np.sin(2 * np.pi * t / periods + phases)))


def storms_for_day(seed: int, day, forced: bool = False) -> np.ndarray:
    """The storms born on ``day`` (times in hours since 1970-01-01, positions in km from 8°W 40.8°N).

    Depends only on (seed, day), so any sub-period reproduces the same weather."""
    day = _as_date(day)
    rng = _rng(seed, 1, day.toordinal())
    season = _season(day)
    lam = (0.06 + 1.2 * season**1.5) * math.exp(0.6 * _regime(seed, day) - 0.18)
    n = int(rng.poisson(min(lam, 6.0)))
    t_day = (day - UNIX_EPOCH.date()).days * 24.0
    return draw_storms(rng, n, t_day, forced, 0.12 + 0.55 * (1.0 - season), DEFAULT_STORMS)


#: The default region's storm climate (convective cells and Atlantic frontal bands): the parameters
#: of :func:`draw_storms`, each ``(a, b)`` the arguments of the rng call named in its key
DEFAULT_STORMS = {
    "conv_life": (1.5, 5.0), "conv_speed": (8.0, 30.0), "conv_heading": (20.0, 45.0), "conv_size": (6.0, 18.0),
    "conv_i0": (2.0, 4.5), "conv_x": (-110, 110), "conv_y": (-130, 140),
    "front_life": (8.0, 24.0), "front_speed": (25.0, 50.0), "front_heading": (12.0, 22.0),
    "front_sa": (18.0, 45.0), "front_sc": (60.0, 220.0), "front_i0": (2.0, 1.9),
    "front_x": (-90, 90), "front_y": (-160, 170),
    "forced_speed": (28.0, 40.0), "forced_heading": (10.0, 8.0), "forced_i0": (5.0, 7.0),
    "forced_x": (-30, 30), "forced_y": (-40, 40),
}


def draw_storms(rng, n: int, t_day: float, forced: bool, p_convective: float, c: dict) -> np.ndarray:
    """``n`` storms (plus one forced frontal storm) drawn from ``rng`` with the storm climate ``c``
    (see :data:`DEFAULT_STORMS`): a convective cell with probability ``p_convective``, else a frontal band."""
    out = np.zeros(n + (1 if forced else 0), dtype=STORM_DTYPE)
    for k in range(n):
        s = out[k]
        if rng.random() < p_convective:  # convective cell
            s["life"] = rng.uniform(*c["conv_life"])
            s["speed"] = rng.uniform(*c["conv_speed"])
            s["heading"] = np.radians(rng.normal(*c["conv_heading"]))
            s["sa"] = s["sc"] = rng.uniform(*c["conv_size"])
            s["i0"] = rng.gamma(*c["conv_i0"])
            s["x"], s["y"] = rng.uniform(*c["conv_x"]), rng.uniform(*c["conv_y"])
        else:  # frontal band, long across-track
            s["life"] = rng.uniform(*c["front_life"])
            s["speed"] = rng.uniform(*c["front_speed"])
            s["heading"] = np.radians(rng.normal(*c["front_heading"]))
            s["sa"] = rng.uniform(*c["front_sa"])
            s["sc"] = rng.uniform(*c["front_sc"])
            s["i0"] = rng.gamma(*c["front_i0"])
            s["x"], s["y"] = rng.uniform(*c["front_x"]), rng.uniform(*c["front_y"])
        s["t_mid"] = t_day + rng.uniform(0.0, 24.0)
    if forced:
        s = out[n]
        s["life"], s["speed"] = 20.0, rng.uniform(*c["forced_speed"])
        s["heading"] = np.radians(rng.normal(*c["forced_heading"]))
        s["sa"], s["sc"], s["i0"] = rng.uniform(35.0, 50.0), rng.uniform(150.0, 250.0), rng.uniform(*c["forced_i0"])
        s["x"], s["y"] = rng.uniform(*c["forced_x"]), rng.uniform(*c["forced_y"])
        s["t_mid"] = t_day + rng.uniform(9.0, 15.0)
    return out


class Weather:
    """Rain accumulations on the model grid from the storms of (seed, day); ``storms`` draws them
    (default :func:`storms_for_day`, the region's storm climate)."""

    def __init__(self, seed: int, terrain: Terrain, forced_days=(), storms=None):
        self.seed = seed
        self._draw = storms or storms_for_day
        self.forced = {_as_date(d) for d in forced_days}
        X = (model_lon() - LON0) * KM_PER_DEG_LON
        Y = (model_lat() - LAT0) * KM_PER_DEG_LAT
        self.X, self.Y = np.meshgrid(X, Y)
        self.oro = 1.0 + 0.7 * terrain.elev / 1000.0
        self._cache: dict[dt.date, np.ndarray] = {}

    def storms(self, day: dt.date) -> np.ndarray:
        if day not in self._cache:
            self._cache[day] = self._draw(self.seed, day, forced=day in self.forced)
            for old in [d for d in self._cache if (day - d).days > 2]:
                del self._cache[old]
        return self._cache[day]

    def accumulate(self, day: dt.date, windows: list[tuple[float, float]]) -> np.ndarray:
        """Rain (mm) over each ``(start_h, end_h)`` window (hours since the day's 00 UTC)."""
        from scipy.special import erf

        t_day = (day - UNIX_EPOCH.date()).days * 24.0
        storms = np.concatenate([self.storms(day - dt.timedelta(days=1)), self.storms(day)])
        out = np.zeros((len(windows), *self.X.shape))
        for s in storms:
            t_beg, t_end = s["t_mid"] - s["life"] / 2, s["t_mid"] + s["life"] / 2
            if t_end <= t_day or t_beg >= t_day + 24:
                continue
            ux, uy = math.cos(s["heading"]), math.sin(s["heading"])
            dx, dy = self.X - s["x"], self.Y - s["y"]
            along = dx * ux + dy * uy
            cross = -dx * uy + dy * ux
            gc = s["i0"] * np.exp(-0.5 * (cross / s["sc"]) ** 2)
            if gc.max() < 1e-3:
                continue
            k = s["sa"] / s["speed"] * math.sqrt(math.pi / 2)
            r2s = math.sqrt(2.0) * s["sa"]
            for i, (wa, wb) in enumerate(windows):
                ta, tb = max(t_beg, t_day + wa), min(t_end, t_day + wb)
                if tb <= ta:
                    continue
                out[i] += gc * k * (erf((along - s["speed"] * (ta - s["t_mid"])) / r2s)
                                    - erf((along - s["speed"] * (tb - s["t_mid"])) / r2s))
        return out * self.oro

    def daily(self, day: dt.date) -> np.ndarray:
        return self.accumulate(day, [(0.0, 24.0)])[0]

    def halfhourly(self, day: dt.date) -> np.ndarray:
        return self.accumulate(day, [(0.5 * i, 0.5 * (i + 1)) for i in range(48)])


def liquid_probability(elev: np.ndarray, day: dt.date) -> np.ndarray:
    """Percent chance that precipitation is liquid: < 100 only high up in the cold season."""
    snow_line = 1600.0 - 500.0 * _season(day)  # metres; ~1100 m in January
    return np.clip(100.0 - (elev - snow_line + 200.0) / 8.0, 0.0, 100.0)


# ---------------------------------------------------------------------------------------------
# The hydrological model
# ---------------------------------------------------------------------------------------------
@dataclass
class Simulation:
    days: list[dt.date]
    imerg_daily: np.ndarray  # (n_days, nlat, nlon) mm, IMERG grid, lat north->south (model order)
    imerg_hhr: dict  # day -> (48, nlat, nlon) mm/hr
    prob_liquid: dict  # day -> (nlat, nlon) percent
    cci_sm: np.ndarray  # (n_days, 9, 10) m3 m-3, land mean (NaN over sea)
    q: np.ndarray  # (n_basins, n_days) m3/s, error-free
    basin_ids: list[str]
    basin_mean_p: np.ndarray  # (n_basins, n_days) mm


def _routing_matrix(net: Network):
    """Sparse (n_basins * N_LAGS, n_model_cells): m3/s at each lag per mm of cell outflow."""
    from scipy.sparse import csr_matrix

    r0, c0, h, w = DEM_WIN
    basins = net.gauged + net.ungauged
    rows, cols, vals = [], [], []
    lat_c = model_lat()
    area_row = cell_area_m2(lat_c)
    for b_i, b in enumerate(basins):
        rr, cc = np.nonzero(b.mask)
        tau = HILLSLOPE_DELAY_D + b.dist_m[rr, cc] / (FLOW_SPEED_MS * 86400.0)
        k = np.floor(tau).astype(int)
        frac = tau - k
        if k.max() + 1 >= N_LAGS:
            raise RuntimeError(f"{b.id}: travel time {tau.max():.1f} d exceeds {N_LAGS - 1} days")
        flat = (rr + r0) * MODEL_W + (cc + c0)
        a = area_row[rr + r0] / 1000.0 / 86400.0  # mm/day over the cell -> m3/s
        rows += [b_i * N_LAGS + k, b_i * N_LAGS + k + 1]
        cols += [flat, flat]
        vals += [a * (1 - frac), a * frac]
    return csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(len(basins) * N_LAGS, MODEL_H * MODEL_W))


@dataclass
class Physics:
    """What a variant of the region changes in :func:`run_model`: the bucket capacity (a factor on
    :attr:`Terrain.smax`), the percolation coefficient, the groundwater time constant and the
    exponent of the saturation-excess runoff (numbers, or arrays on the model grid: a geology),
    and the storm climate (a function like :func:`storms_for_day`). The defaults are this
    module's region."""

    smax_factor: float | np.ndarray = 1.0
    k_perc: float | np.ndarray = K_PERC
    k_gw_days: float | np.ndarray = K_GW_DAYS
    storms: object = None
    beta: float | np.ndarray = BETA


def run_model(seed: int, days: list[dt.date], terrain: Terrain, net: Network, hhr_days=(),
              spinup_days: int = SPINUP_DAYS, progress=None, physics: Physics | None = None) -> Simulation:
    """Run weather, bucket soil-water balance, groundwater and routing day by day.

    Starts ``spinup_days`` before ``days[0]`` with the stores at 60 % / 20 mm; nothing from
    the spin-up is returned except the state it leaves and the water it routes into the period.
    ``physics``: a variant's parameters (default: the region's)."""
    physics = physics or Physics()
    hhr_days = {_as_date(d) for d in hhr_days}
    weather = Weather(seed, terrain, forced_days=hhr_days, storms=physics.storms)
    basins = net.gauged + net.ungauged
    route = _routing_matrix(net)
    land = terrain.land
    smax = terrain.smax * physics.smax_factor
    k_perc, k_gw_days, beta = physics.k_perc, physics.k_gw_days, physics.beta
    S = 0.6 * smax
    G = np.full(smax.shape, 20.0)
    first = days[0] - dt.timedelta(days=spinup_days)
    n_all = spinup_days + len(days)
    q = np.zeros((len(basins), n_all + N_LAGS))
    cci_land = _window(land.astype(float), CCI_WIN)
    cci_frac = _block_mean(cci_land, CCI_BLOCK)
    basin_w = [(b.mask / b.mask.sum()) for b in basins]
    out_p = np.zeros((len(days), IMERG_WIN[2] // IMERG_BLOCK, IMERG_WIN[3] // IMERG_BLOCK))
    out_sm = np.zeros((len(days), CCI_WIN[2] // CCI_BLOCK, CCI_WIN[3] // CCI_BLOCK))
    out_bp = np.zeros((len(basins), len(days)))
    hhr, plq = {}, {}
    imerg_elev = _block_mean(_window(terrain.elev, IMERG_WIN), IMERG_BLOCK)
    for t in range(n_all):
        day = first + dt.timedelta(days=t)
        if day in hhr_days and t >= spinup_days:
            half = weather.halfhourly(day)
            P = half.sum(axis=0)
            hhr[day] = 2.0 * _block_mean(_window(half, IMERG_WIN), IMERG_BLOCK)  # mm/hr
            plq[day] = liquid_probability(imerg_elev, day)
        else:
            P = weather.daily(day)
        doy = day.timetuple().tm_yday
        pet = 1.0 + 4.2 * (0.5 - 0.5 * math.cos(2 * math.pi * (doy - 15) / 365.25))
        # bucket: saturation-excess runoff, overflow, percolation, evapotranspiration
        runoff = P * (S / smax) ** beta
        S = S + P - runoff
        over = np.maximum(S - smax, 0.0)
        S -= over
        runoff += over
        perc = k_perc * S * (S / smax) ** 3
        S -= perc
        et = np.minimum(S, pet * np.minimum(1.0, S / (0.5 * smax)))
        S -= et
        G += perc
        base = G / k_gw_days
        G -= base
        outflow = np.where(land, runoff + base, 0.0)
        contrib = (route @ outflow.ravel()).reshape(len(basins), N_LAGS)
        q[:, t:t + N_LAGS] += contrib
        if t >= spinup_days:
            i = t - spinup_days
            out_p[i] = _block_mean(_window(P, IMERG_WIN), IMERG_BLOCK)
            theta = np.where(land, 0.05 + 0.40 * S / smax, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                out_sm[i] = np.where(cci_frac >= 0.5,
                                     _block_mean(_window(theta, CCI_WIN), CCI_BLOCK) / cci_frac, np.nan)
            Pd = _window(P, DEM_WIN)
            out_bp[:, i] = [float((Pd * bw).sum()) for bw in basin_w]
        if progress and (t + 1) % 365 == 0:
            progress(f"simulated up to {day}")
    return Simulation(days=list(days), imerg_daily=out_p, imerg_hhr=hhr, prob_liquid=plq, cci_sm=out_sm,
                      q=q[:, spinup_days:spinup_days + len(days)], basin_ids=[b.id for b in basins],
                      basin_mean_p=out_bp)


# ---------------------------------------------------------------------------------------------
# Observation layers (what the products see)
# ---------------------------------------------------------------------------------------------
def observe_discharge(seed: int, q: np.ndarray, n_gauged: int) -> np.ndarray:
    """Multiplicative noise, rounding, and gaps: scattered single days plus 1-3 week runs."""
    out = np.empty((n_gauged, q.shape[1]))
    n = q.shape[1]
    for i in range(n_gauged):
        rng = _rng(seed, 0x0B5, i)
        out[i] = np.round(q[i] * np.exp(rng.normal(0.0, OBS_NOISE, n)), 3)
        out[i, rng.random(n) < 0.004] = np.nan
        if i in (1, 4) and n > 30:  # PT02 and PT05 have a run of missing days
            length = int(rng.integers(7, 22))
            start = int(rng.integers(0, n - length))
            out[i, start:start + length] = np.nan
    return out


def _early_error(seed: int, day: dt.date, shape) -> np.ndarray:
    rng = _rng(seed, 3, day.toordinal())
    from scipy.ndimage import gaussian_filter

    e = gaussian_filter(rng.standard_normal(shape), 2.0)
    return np.exp(0.3 * e / max(e.std(), 1e-9) - 0.045)


def _imerg_day_product(seed: int, day: dt.date, p_mm: np.ndarray, run: str):
    """Daily field (lat ascending) and precipitation_cnt with a few gaps."""
    p = p_mm[::-1].copy()  # model order is north->south; IMERG stores south->north
    if run == "early":
        p = p * _early_error(seed, day, p.shape)
        p[p < 0.3] = 0.0
    cnt = np.full(p.shape, 48, dtype=np.int16)
    rng = _rng(seed, 4, day.toordinal())
    if rng.random() < 0.03:  # a few cells with missing half-hours (mean of the rest)
        k = int(rng.integers(1, 4))
        cells = rng.integers(0, p.size, k)
        cnt.flat[cells] = rng.integers(30, 48, k)
    if rng.random() < 0.01:  # a cell with no valid half-hour at all
        p.flat[int(rng.integers(0, p.size))] = np.nan
    return p, cnt


def _cci_day_product(seed: int, day: dt.date, sm: np.ndarray, static_flags: dict):
    """sm, flag, uncertainty and t0 as the product would report them (lat north->south)."""
    rng = _rng(seed, 5, day.toordinal())
    day0 = (day - UNIX_EPOCH.date()).days
    ny, nx = sm.shape
    obs = np.clip(sm + rng.normal(0.0, 0.02, sm.shape), 0.02, 0.5)
    sea = ~np.isfinite(sm)
    flag = np.zeros(sm.shape, dtype=np.int16)
    unc = np.clip(0.035 + 0.01 * rng.standard_normal(sm.shape), 0.02, 0.08)
    t0 = day0 + rng.uniform(0.25, 0.9, sm.shape)
    # static flags: dense vegetation (fill and "valid-looking" trap), barren ground advisory
    for (r, c), kind in static_flags["cells"].items():
        if kind == "dense_fill":
            flag[r, c] = 2
            obs[r, c] = np.nan
        elif kind == "dense_trap":
            flag[r, c] = 2
            obs[r, c] = 0.08 + 0.01 * rng.random()
        elif kind == "barren":
            flag[r, c] = 64
    # cold winter mornings: frozen flag on the highest cell; occasional low-weight retrievals
    if day.month in (12, 1, 2) and rng.random() < 0.1:
        r, c = static_flags["highest"]
        flag[r, c] |= 1
        obs[r, c] = np.nan
    if rng.random() < 0.05:
        r, c = int(rng.integers(0, ny)), int(rng.integers(0, nx))
        if not sea[r, c] and flag[r, c] == 0:
            flag[r, c] = 16  # keeps a value: must be masked by the reader
    # swath gap: a diagonal band with no observation at all
    if rng.random() < 0.22:
        rr, cc = np.mgrid[0:ny, 0:nx]
        k0 = rng.uniform(-ny, nx)
        width = rng.uniform(1.5, 3.5)
        gap = np.abs(cc - 0.6 * rr - k0) < width
        obs[gap] = np.nan
        flag[gap] = 127
    obs[sea] = np.nan
    flag[sea] = 127
    unc[~np.isfinite(obs)] = np.nan
    t0[flag == 127] = np.nan
    return obs, flag, unc, t0


def _cci_static_flags(terrain: Terrain, cci_sm0: np.ndarray) -> dict:
    elev = _block_mean(_window(terrain.elev, CCI_WIN), CCI_BLOCK)
    land = np.isfinite(cci_sm0)
    cells = {}
    inner = [(r, c) for r in range(1, elev.shape[0] - 1) for c in range(2, elev.shape[1] - 1) if land[r, c]]
    order = sorted(inner, key=lambda rc: elev[rc])
    cells[order[len(order) // 3]] = "dense_fill"  # a lowland cell: dense vegetation, no retrieval
    cells[order[len(order) // 2]] = "dense_trap"  # dense vegetation flag with a valid-looking value
    cells[order[-2]] = "barren"  # high rocky plateau: barren advisory only, value is good
    return {"cells": cells, "highest": order[-1]}


# ---------------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------------
_OUTPUT_PATTERNS = ("raw/imerg/3B-*.HDF5", "raw/imerg/3B-*.nc4", "raw/esacci/ESACCI-SOILMOISTURE-*.nc",
                    "raw/era5land/era5-land-daily-t2m-*.nc",  # written by the cold variant only
                    "raw/nwp/*.grib2", "raw/nwp-ens/*.grib2",  # tools/sampledata_nwp.py, the default sample only
                    "raw/dem/dem.tif", "basins/*.geojson", "basins/outlets.csv", "discharge/discharge.csv",
                    "README.md")


def _remove_previous_output(outdir: Path) -> int:
    """Delete files a previous run wrote (only names this generator writes), so that a run with
    a shorter period leaves no stale days behind."""
    n = 0
    for pattern in _OUTPUT_PATTERNS:
        for p in outdir.glob(pattern):
            if p.is_file():
                p.unlink()
                n += 1
    return n


def _daterange(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def generate(outdir, seed: int = DEFAULT_SEED, start=DEFAULT_START, end=DEFAULT_END,
             spinup_days: int = SPINUP_DAYS, log=None, physics: Physics | None = None) -> dict:
    """Write the whole sample into ``outdir``; returns a summary dict. ``physics``: a variant's
    (:mod:`tools.sampledata_contrast`); the default region without.

    Weather (IMERG files) depends only on (seed, date); soil moisture and discharge also depend on
    the spin-up, so a shortened period or spin-up changes those but not the rain."""
    t_start = time.perf_counter()
    user_log = log or (lambda msg: None)

    def log(msg: str) -> None:
        user_log(f"[{time.perf_counter() - t_start:5.1f} s] {msg}")

    outdir = Path(outdir)
    start, end = _as_date(start), _as_date(end)
    if end < start:
        raise ValueError("end is before start")
    days = _daterange(start, end)
    early_days = set(days[-N_EARLY_DAYS:])
    hhr_days = [d for d in map(_as_date, HHR_DAYS) if start <= d <= end and d not in early_days]

    if outdir.exists():
        removed = _remove_previous_output(outdir)
        if removed:
            log(f"removed {removed} files of a previous run")
    log("terrain and basins")
    terrain = make_terrain(seed)
    net = delineate_basins(seed, terrain)
    terrain.dem = _add_dem_voids(seed, terrain.dem_routed, net.upa)
    write_dem(outdir / "raw/dem/dem.tif", terrain.dem, dem_transform())
    write_basins_geojson(outdir / "basins/basins.geojson", net.gauged, "basins")
    write_basins_geojson(outdir / "basins/ungauged.geojson", net.ungauged, "ungauged")
    write_outlets_csv(outdir / "basins/outlets.csv", net.gauged)

    log("hydrological model")
    sim = run_model(seed, days, terrain, net, hhr_days=hhr_days, spinup_days=spinup_days, progress=log,
                    physics=physics)
    n_g = len(net.gauged)
    q_obs = observe_discharge(seed, sim.q, n_g)
    write_discharge_csv(outdir / "discharge/discharge.csv", sim.basin_ids[:n_g], days, q_obs)

    log("IMERG files")
    lon_i, lat_i = imerg_axes()
    imerg_dir = outdir / "raw/imerg"
    for i, day in enumerate(days):
        if day in sim.imerg_hhr:
            rates = sim.imerg_hhr[day][:, ::-1]  # lat ascending
            plq = sim.prob_liquid[day][::-1]
            rng = _rng(seed, 6, day.toordinal())
            for hh in range(48):
                r = rates[hh].copy()
                if rng.random() < 0.04:
                    r.flat[int(rng.integers(0, r.size))] = np.nan
                write_imerg_hhr(imerg_dir / imerg_hhr_name(day, hh), day, hh, r, lon_i, lat_i,
                                prob_liquid=np.where(r > 0.01, plq, 100.0))
            continue
        run = "early" if day in early_days else "final"
        p, cnt = _imerg_day_product(seed, day, sim.imerg_daily[i], run)
        write_imerg_day(imerg_dir / imerg_day_name(day, run), day, p, lon_i, lat_i, run=run, count=cnt)

    log("ESA CCI files")
    lon_c, lat_c = esacci_axes()
    static = _cci_static_flags(terrain, sim.cci_sm[0])
    cci_dir = outdir / "raw/esacci"
    n_cci = 0
    for i, day in enumerate(days):
        if _rng(seed, 7, day.toordinal()).random() < 0.015:
            continue  # no file that day
        sm, flag, unc, t0 = _cci_day_product(seed, day, sim.cci_sm[i], static)
        write_esacci_day(cci_dir / esacci_name(day), day, sm, flag, lon_c, lat_c, sm_uncertainty=unc, t0=t0)
        n_cci += 1

    summary = {
        "seed": seed, "start": start.isoformat(), "end": end.isoformat(), "n_days": len(days),
        "spinup_days": spinup_days,
        "hhr_days": [d.isoformat() for d in hhr_days], "early_days": sorted(d.isoformat() for d in early_days),
        "esacci_files": n_cci,
        "basins": [{"id": b.id, "name": b.name, "area_km2": round(b.area_km2, 1), "gauged": b.gauged,
                    "parent": b.parent, "outlet": [round(b.outlet_lon, 6), round(b.outlet_lat, 6)],
                    "max_travel_days": round(float(HILLSLOPE_DELAY_D
                                                   + np.nanmax(b.dist_m) / (FLOW_SPEED_MS * 86400)), 2)}
                   for b in net.gauged + net.ungauged],
        "mean_annual_precip_mm": round(float(sim.basin_mean_p.mean()) * 365.25, 0),
        "mean_discharge_m3s": {bid: round(float(np.nanmean(sim.q[i])), 2) for i, bid in enumerate(sim.basin_ids)},
    }
    from . import sampledata_nwp

    summary["nwp"] = sampledata_nwp.after_generate(outdir, seed=seed, log=log)
    write_readme(outdir, summary)
    summary["seconds"] = round(time.perf_counter() - t_start, 1)
    log(f"done in {summary['seconds']} s")
    return summary


def _tree_sizes(outdir: Path) -> tuple[int, int, int]:
    """(number of files, total bytes, bytes of a deterministic tar.gz) of the files written here
    (README.md and anything else in the folder, such as a hydrocast.toml, excluded)."""
    files = sorted({p for pattern in _OUTPUT_PATTERNS if pattern != "README.md"
                    for p in outdir.glob(pattern) if p.is_file()})
    buf = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6, format=tarfile.GNU_FORMAT) as tar:
        for p in files:
            data = p.read_bytes()
            total += len(data)
            info = tarfile.TarInfo(str(p.relative_to(outdir)))
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return len(files), total, len(buf.getvalue())


def _nwp_row() -> str:
    from . import sampledata_nwp

    return sampledata_nwp.README_ROW + "\n" + sampledata_nwp.ENS_README_ROW


def write_readme(outdir, summary: dict) -> Path:
    outdir = Path(outdir)
    n_files, n_bytes, n_tgz = _tree_sizes(outdir)
    rows = "\n".join(
        f"| {b['id']} | {b['name']} | {b['area_km2']:.1f} | {'yes' if b['gauged'] else 'no (ungauged)'} | "
        f"{b['parent'] or '-'} | {b['outlet'][0]:.4f}, {b['outlet'][1]:.4f} | {b['max_travel_days']:.1f} | "
        f"{summary['mean_discharge_m3s'][b['id']]:.1f} |"
        for b in summary["basins"])
    text = f"""# hydrocast sample data (synthetic)

A made-up, northern-Portugal-like, rain-dominated region written in the **real raw formats** of the
products hydrocast reads. Nothing here is an observation: the values come from a seeded weather
generator and a simple hydrological model. Regenerate it (byte-identical) with

    python -m tools.sampledata sample_data --seed {summary['seed']} --start {summary['start']} --end {summary['end']}

The physics and the file layout are documented in the docstring of `tools/sampledata.py`
(run it from the repository root).

- Region (grid bounds, EPSG:4326): west, south, east, north = -8.8, 40.0, -7.2, 41.6 (0.05° -> 32 x 32 cells).
- Period {summary['start']} .. {summary['end']} ({summary['n_days']} days): \
train 2015-2018, validation 2019, test 2020.
- Seed {summary['seed']}. Basin-mean precipitation over the gauged basins: \
about {summary['mean_annual_precip_mm']:.0f} mm/year.

## Contents

| path | what |
|---|---|
| `raw/dem/dem.tif` | DEM, int16 GeoTIFF, EPSG:4326, 30" (1/120°) cells, region + 0.1° margin (216 x 216), \
nodata -32768: a sea patch in the north-west corner and a few SRTM-like voids; tiled 128 x 128, deflate |
{_nwp_row()}
| `raw/imerg/3B-HHR.MS.MRG.3IMERG.*.V07B.HDF5` | IMERG V07 half-hourly Final granules \
(HDF5, `/Grid`, (time, lon, lat), mm/hr, `probabilityLiquidPrecipitation` in percent) \
for {', '.join(summary['hhr_days'])} (48 per day) |
| `raw/imerg/3B-DAY.MS.MRG.3IMERG.*.V07B.nc4` | IMERG V07 daily Final \
(flat NetCDF4, (time, lon, lat), `precipitation` mm/day, `precipitation_cnt`, `time_bnds`) for every other day |
| `raw/imerg/3B-DAY-E.MS.MRG.3IMERG.*.V07B.nc4` | IMERG daily **Early** run \
for the last {len(summary['early_days'])} days ({summary['early_days'][0]} .. {summary['early_days'][-1]}): \
no Final exists yet, values carry retrieval error |
| `raw/esacci/ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-*-fv09.1.nc` | ESA CCI SM L3S COMBINED daily \
(NETCDF4_CLASSIC, (time=1, lat north->south, lon), 0.25°): {summary['esacci_files']} files, \
the other days are missing; swath gaps, flags 1/2/16 (mask) and 64 (advisory, keep), \
one dense-vegetation cell with a valid-looking but wrong value |
| `basins/basins.geojson` | 6 gauged basins \
(CRS84 lon/lat polygons; `id`, `name`, `area_km2`, `outlet_lon`, `outlet_lat`) |
| `basins/outlets.csv` | `id,lon,lat` of the gauged outlets (outlet cell centres) |
| `basins/ungauged.geojson` | 2 ungauged basins for prediction without discharge |
| `discharge/discharge.csv` | `basin_id,date,discharge` \
(m3/s, daily, empty = missing: scattered days and two runs of 1-3 weeks) |

Both IMERG and ESA CCI files are regional subsets: IMERG 0.1° cell centres lon -9.05..-6.95,
lat 39.75..41.85 (22 x 22); ESA CCI 0.25° centres lon -9.125..-6.875, lat 41.875..39.875 (10 x 9).

## Basins

| id | name | area km2 | gauged | nested in | outlet lon, lat | max travel (days) | mean Q (m3/s) |
|---|---|---|---|---|---|---|---|
{rows}

## Physics in brief

Moving Gaussian storm cells (Atlantic frontal bands and summer convective cells) travel mostly west to
east at 8-50 km/h; wet winters, dry summers, seeded wet and dry spells; orographic enhancement.
Half-hourly rain is the exact time integral of the same storms, so the 48 half-hours of a day sum to
its daily total. A bucket per 30" cell makes saturation-excess runoff `P (S/Smax)^{BETA:g}`, percolates to a
groundwater store (baseflow, k = {K_GW_DAYS:g} days) and dries by seasonal evapotranspiration; ESA CCI sm
is the bucket moisture averaged to 0.25° plus noise. Each cell's outflow reaches a gauge after
{HILLSLOPE_DELAY_D:g} d + flow distance / {FLOW_SPEED_MS:g} m/s, so nested gauges are consistent with their
parents. IMERG Final is the model's rain exactly; IMERG Early carries a log-normal error field.
Discharge has {OBS_NOISE * 100:g} % multiplicative observation noise.

## Sizes

{n_files} data files, {n_bytes / 1e6:.1f} MB uncompressed, {n_tgz / 1e6:.1f} MB as a gzip-compressed tar
(this README excluded).
"""
    path = outdir / "README.md"
    path.write_text(text)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.sampledata",
                                 description="Write the synthetic hydrocast sample region into OUTDIR.")
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--variant", choices=("default", "cold", "contrast"), default="default",
                    help="default: the rain-fed sample region (sample_data/); cold: a small snowy lake region at "
                         "60-61 N (tools/sampledata_cold.py); contrast: the default region on two geologies "
                         "with a sharp border, under clustered storms (tools/sampledata_contrast.py)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--start", default=None, help=f"first day (YYYY-MM-DD; default {DEFAULT_START}, cold 2015-01-01)")
    ap.add_argument("--end", default=None, help=f"last day (YYYY-MM-DD; default {DEFAULT_END}, cold 2018-12-31)")
    ap.add_argument("--spinup-days", type=int, default=SPINUP_DAYS, help="model spin-up before START")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    if args.variant == "cold":
        from . import sampledata_cold as cold

        summary = cold.generate(args.outdir, seed=args.seed, start=args.start or cold.DEFAULT_START,
                                end=args.end or cold.DEFAULT_END, spinup_days=args.spinup_days, log=log)
    elif args.variant == "contrast":
        from . import sampledata_contrast as contrast

        summary = contrast.generate(args.outdir, seed=args.seed, start=args.start or DEFAULT_START,
                                    end=args.end or DEFAULT_END, spinup_days=args.spinup_days, log=log)
    else:
        summary = generate(args.outdir, seed=args.seed, start=args.start or DEFAULT_START,
                           end=args.end or DEFAULT_END, spinup_days=args.spinup_days, log=log)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
