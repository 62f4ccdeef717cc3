"""The cold variant of the synthetic sample: a small snowy lake region at 60-61 °N where memory matters.

``python -m tools.sampledata OUTDIR --variant cold [--seed 42] [--start 2015-01-01] [--end 2018-12-31]``

Made-up physics in the products' real raw formats, like the default sample (:mod:`tools.sampledata`,
whose writers this module reuses), but for a region where yesterday's rain is not what drives
today's river: snow stored for months, frozen ground, lakes holding water for weeks, slow
groundwater. Deterministic: same seed and period -> byte-identical files. Kept small: 4 years,
a 24 x 24 cell hydrocast grid (0.05°), 6 gauged + 2 ungauged basins, 4 half-hourly days.

Region and terrain
------------------
Grid bounds (EPSG:4326) ``REGION`` = 24.0, 60.0, 25.2, 61.2 (west, south, east, north): a southern
Finland look-alike. The Gulf of Finland's coast runs near 60.1 °N; the land rises gently
northwards to a divide near 61.12 °N (about 300 m). Three meandering south-flowing rivers (A at
24.27 °E, B at 24.60 °E, C at 24.93 °E; two more just outside the region, at 23.90 and 25.27 °E,
make its west and east divides) and two side valleys of B (from the north-east, joining at
60.40 °N, and from the north-west, joining at 60.84 °N). Two lakes fill flat stretches of the
valleys of A (60.26-60.44 °N) and C (60.22-60.38 °N), each draining most of its basin. The
model grid is 1/40° in longitude by 1/60° in latitude (about 1.4 x 1.85 km), as Copernicus-style
DEMs widen their longitude spacing at high latitudes; the DEM is float32 with the sea as nodata
and no voids.

Physics (daily; "model cell" = one DEM-resolution cell)
--------------------------------------------------------
Air temperature (°C)
    ``T = T_clim(doy) + anomaly(date) - 6.5 °C/km * z - 0.7 °C/° * (lat - 60.6)``, with
    ``T_clim = 4.5 - 10.5 cos(2 pi (doy - 22) / 365.25)`` (about -6 °C in late January, +15 °C in
    late July) and an anomaly that depends only on (seed, date): seeded slow oscillations (3-400
    days) plus daily noise, standard deviation 4.5 °C in winter and 2.5 °C in summer. On the
    half-hourly days a diurnal cycle ``2.5 cos(2 pi (h - 13) / 24)`` (h = half-hour centre, UTC)
    is added; its daily mean is zero, so ``T`` is the daily mean on every day.
Precipitation
    Moving Gaussian storms as in the default sample (same closed-form time integrals, so
    half-hours sum exactly to days): fronts from the west-south-west all year, small convective
    cells in summer, most storms in late summer and autumn, orographic factor ``1 + 0.5 z/1000 m``.
    About 600 mm/year.
Phase and snow (degree-day)
    Liquid fraction ``f = clip((T - T_SNOW) / (T_RAIN - T_SNOW), 0, 1)`` with T_SNOW = -1 °C,
    T_RAIN = +3 °C; ``rain = f P``, ``snowfall = P - rain`` (on half-hourly days summed over the
    half-hours with their own temperatures). Snow water equivalent ``SWE += snowfall``, then
    ``melt = min(SWE, DDF * max(T - T_MELT, 0))`` with DDF = 3 mm/°C/day and T_MELT = 0 °C, and
    ``SWE -= melt``: snowfall - melt = the change of SWE, and nothing melts at or below T_MELT.
Frozen soil
    Soil temperature relaxes towards the air temperature, ``Ts += 0.10 / (1 + SWE/10 mm) * (T - Ts)``
    (snow insulates); the soil is frozen where ``Ts < 0``. Frozen soil lets little water in:
    runoff = ``W (0.5 + 0.5 (S/Smax)^2.5)`` instead of ``W (S/Smax)^2.5`` (W = rain + melt), and
    percolation drops to a tenth. A cell is "cold" (what ESA CCI flags) where its soil is frozen or
    it is snow-covered (SWE >= 2 mm).
Soil, groundwater, evaporation
    A bucket per cell as in the default sample (Smax 110-190 mm, smaller on steep and high ground;
    overflow; percolation ``0.04 S (S/Smax)^3``), evapotranspiration ``0.16 mm/°C/day * max(T, 0)``
    (none below 0 °C). Percolation feeds a slow groundwater store drained as a linear reservoir
    with k = 150 days: the long baseflow recession that carries the rivers through winter.
Lakes
    Each lake is one linear reservoir (k = 35 days) at its outlet cell (the lake cell with the largest
    upstream area). It receives the outflow of every cell whose D8 flow path first meets it, the
    rain and melt on its own surface (minus open-water evaporation, the same 0.16 mm/°C/day), and
    the outflow of the lakes upstream; its outflow then travels on to the gauges below it.
Routing and discharge
    As in the default sample: ``0.3 d + L / (0.5 m/s)`` from a cell (or a lake outlet) to each
    gauge downstream, split between two whole days; observations with 4 % multiplicative noise,
    rounded to 0.001 m3/s, with gaps. A 365-day spin-up fills the stores.

Products
--------
IMERG daily (Final, the last 3 days Early) = the model's precipitation averaged to 0.1°; each daily
file also carries ``probabilityLiquidPrecipitation`` as real V07 daily files do. The phase is a
diagnostic of the 0.1° cell's temperature, ``round(100 f(T_cell))`` percent (as IMERG derives it from
ancillary temperature), written everywhere the precipitation is valid, not only where it rains.
On the 4 half-hourly days (stormy by construction) there are 48 HDF5 granules instead of a daily
file, with the phase of each half-hour's temperature. ESA CCI sm = bucket moisture averaged to
0.25° plus noise; where at least half of a 0.25° cell's soil (lake and sea cells excluded) is cold,
``flag`` has bit 1 ("snow coverage or temperature below zero") and ``sm`` is fill; swath gaps
(flag 127), a dense-vegetation cell (flag 2, fill), occasional low-weight retrievals (flag 16,
value kept) and missing days as in the default sample. Air temperature as ERA5-Land daily means
(``t2m``, K) on the ERA5-Land 0.1° points, one CF NetCDF file per calendar year (what hydrocast's
generic ``netcdf`` reader reads; ``T`` averaged over the 0.1° box around each point).
The config (``hydrocast.toml``) ingests the flag as a signal too: source ``frozen_ground`` (kind
``esacci_sm``, ``variable = "frozen"``), the fraction of each cell ESA CCI flags frozen or snow-covered.

Layout of OUTDIR
----------------
::

    raw/dem/dem.tif                                  float32 GeoTIFF, 1/40° x 1/60°, nodata -32767 (sea)
    raw/imerg/3B-HHR.MS.MRG.3IMERG.*.V07B.HDF5       half-hourly Final, 4 days, with the phase
    raw/imerg/3B-DAY[-E].MS.MRG.3IMERG.*.V07B.nc4    daily Final (Early: the last 3 days), with the phase
    raw/esacci/ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-*-fv09.1.nc
    raw/era5land/era5-land-daily-t2m-YYYY.nc         daily mean 2 m temperature
    basins/basins.geojson  basins/outlets.csv  basins/ungauged.geojson
    discharge/discharge.csv
    README.md  hydrocast.toml (the latter only when OUTDIR has none)
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import sampledata as sd

# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------
REGION = (24.0, 60.0, 25.2, 61.2)  # west, south, east, north (EPSG:4326): 24 x 24 cells of 0.05°
DEFAULT_SEED = sd.DEFAULT_SEED
DEFAULT_START = "2015-01-01"
DEFAULT_END = "2018-12-31"
HHR_DAYS = ("2015-04-07", "2015-04-08", "2017-11-18", "2017-11-19")  # thaw and freeze-up: mixed phase
N_EARLY_DAYS = 3
SPINUP_DAYS = 365

# Model grid (= DEM grid): 1/40° (lon) x 1/60° (lat), covering every product footprint:
# IMERG 23.7..25.5 x 59.7..61.5, ESA CCI 23.5..25.75 x 59.75..61.5, ERA5-Land boxes
# 23.55..25.65 x 59.55..61.45 and the DEM 23.9..25.3 x 59.9..61.3.
DLON, DLAT = 1.0 / 40.0, 1.0 / 60.0
MODEL_WEST, MODEL_NORTH, MODEL_W, MODEL_H = 23.5, 61.5, 90, 120
DEM_WIN = (12, 16, 84, 56)  # row0, col0, height, width in model cells
IMERG_WIN, IMERG_BLOCK = (0, 8, 108, 72), (6, 4)  # 0.1°
CCI_WIN, CCI_BLOCK = (0, 0, 105, 90), (15, 10)  # 0.25°
T2M_WIN, T2M_BLOCK = (3, 2, 114, 84), (6, 4)  # 0.1° boxes centred on the ERA5-Land points
DEM_NODATA = -32767.0
LON0, LAT0 = 24.6, 60.6
KM_PER_DEG_LAT = sd.KM_PER_DEG_LAT
KM_PER_DEG_LON = 111.32 * math.cos(math.radians(LAT0))

RIVERS = (23.90, 24.27, 24.60, 24.93, 25.27)  # base longitudes; the first and last lie outside REGION
RIVER_A, RIVER_B, RIVER_C = 1, 2, 3
TRIBUTARIES = ((RIVER_B, 60.40, (24.76, 60.60)), (RIVER_B, 60.84, (24.45, 61.03)))  # river, junction lat, head
LAKES = ((RIVER_A, 60.26, 60.44, 2.2), (RIVER_C, 60.22, 60.38, 1.8))  # river, south, north lat, half-width km

# Physics (documented in the module docstring)
T_MEAN, T_AMP, T_COLDEST_DOY = 4.5, 10.5, 22
T_ANOM_SUMMER, T_ANOM_WINTER = 2.5, 4.5
LAPSE_C_PER_M = 0.0065
T_LAT_GRADIENT = 0.7
DIURNAL_AMP, DIURNAL_PEAK_H = 2.5, 13.0
T_SNOW, T_RAIN = -1.0, 3.0
T_MELT, DDF = 0.0, 3.0
SNOW_COVER_MM = 2.0
SOIL_ALPHA, SOIL_SNOW_MM = 0.10, 10.0
F_FROZEN, FROZEN_PERC = 0.5, 0.1
BETA = 2.5
K_PERC = 0.04
K_GW_DAYS = 150.0
K_LAKE_DAYS = 35.0
PET_PER_DEG = 0.22
FLOW_SPEED_MS = 0.5
HILLSLOPE_DELAY_D = 0.3
N_LAGS = 8
OBS_NOISE = sd.OBS_NOISE
CCI_COLD_FRACTION = 0.5

IMERG_HISTORY = ("Spatial subset lon 23.7..25.5, lat 59.7..61.5 (GES DISC style); variables precipitation, "
                 "precipitation_cnt, probabilityLiquidPrecipitation. SYNTHETIC values written by "
                 "tools.sampledata_cold")


# ---------------------------------------------------------------------------------------------
# Grid helpers
# ---------------------------------------------------------------------------------------------
def model_lon() -> np.ndarray:
    return MODEL_WEST + (np.arange(MODEL_W) + 0.5) * DLON


def model_lat() -> np.ndarray:
    return MODEL_NORTH - (np.arange(MODEL_H) + 0.5) * DLAT


def block_mean(a: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """Mean over non-overlapping ``(by, bx)`` tiles of the last two axes."""
    by, bx = block
    *lead, h, w = a.shape
    return a.reshape(*lead, h // by, by, w // bx, bx).mean(axis=(-3, -1))


def cell_area_m2(lat_centres: np.ndarray) -> np.ndarray:
    """Spherical area of a DLON x DLAT cell centred on each latitude."""
    lat_n = np.radians(lat_centres + DLAT / 2)
    lat_s = np.radians(lat_centres - DLAT / 2)
    return sd.EARTH_RADIUS_M**2 * math.radians(DLON) * (np.sin(lat_n) - np.sin(lat_s))


def imerg_axes() -> tuple[np.ndarray, np.ndarray]:
    """IMERG subset cell centres: lon (west->east), lat (south->north, as IMERG stores it)."""
    n_lat, n_lon = IMERG_WIN[2] // IMERG_BLOCK[0], IMERG_WIN[3] // IMERG_BLOCK[1]
    return np.round(23.75 + 0.1 * np.arange(n_lon), 2), np.round(59.75 + 0.1 * np.arange(n_lat), 2)


def esacci_axes() -> tuple[np.ndarray, np.ndarray]:
    """ESA CCI subset cell centres: lon (west->east), lat (north->south, as CCI stores it)."""
    n_lat, n_lon = CCI_WIN[2] // CCI_BLOCK[0], CCI_WIN[3] // CCI_BLOCK[1]
    return 23.625 + 0.25 * np.arange(n_lon), 61.375 - 0.25 * np.arange(n_lat)


def t2m_axes() -> tuple[np.ndarray, np.ndarray]:
    """ERA5-Land points: lon (west->east), lat (north->south, as ERA5 stores it)."""
    n_lat, n_lon = T2M_WIN[2] // T2M_BLOCK[0], T2M_WIN[3] // T2M_BLOCK[1]
    return np.round(23.6 + 0.1 * np.arange(n_lon), 1), np.round(61.4 - 0.1 * np.arange(n_lat), 1)


def dem_transform():
    from affine import Affine

    r0, c0, _, _ = DEM_WIN
    return Affine(DLON, 0.0, MODEL_WEST + c0 * DLON, 0.0, -DLAT, MODEL_NORTH - r0 * DLAT)


def _river_lon(k: int, lat: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """Longitude of river ``k``'s channel at ``lat`` (gentle meanders)."""
    return (RIVERS[k] + 0.022 * np.sin(2 * np.pi * (lat - 60.0) / 0.37 + phases[k, 0])
            + 0.008 * np.sin(2 * np.pi * lat / 0.13 + phases[k, 1]))


def _segment_km(X, Y, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """Distance (km) from points (X, Y) (km) to the segment a-b (lon, lat)."""
    ax, ay = (a[0] - LON0) * KM_PER_DEG_LON, (a[1] - LAT0) * KM_PER_DEG_LAT
    bx, by = (b[0] - LON0) * KM_PER_DEG_LON, (b[1] - LAT0) * KM_PER_DEG_LAT
    vx, vy = bx - ax, by - ay
    u = np.clip(((X - ax) * vx + (Y - ay) * vy) / (vx * vx + vy * vy), 0.0, 1.0)
    return np.hypot(X - ax - u * vx, Y - ay - u * vy)


# ---------------------------------------------------------------------------------------------
# Terrain
# ---------------------------------------------------------------------------------------------
@dataclass
class Terrain:
    elev: np.ndarray  # model grid, m (0 on the sea)
    land: np.ndarray  # model grid, bool (lakes are land, the sea is not)
    lake_id: np.ndarray  # model grid, int: index into LAKES, -1 elsewhere
    dem: np.ndarray  # DEM window, float32 as written (nodata on the sea)
    smax: np.ndarray  # bucket capacity (mm), model grid

    @property
    def lake(self) -> np.ndarray:
        return self.lake_id >= 0

    @property
    def soil(self) -> np.ndarray:
        """Cells with a soil bucket: land that is not lake."""
        return self.land & ~self.lake


def make_terrain(seed: int) -> Terrain:
    """Elevation, land, lakes and bucket capacity on the model grid (see the module docstring).

    Valley floors rise monotonically northwards (``bed``), hillslopes grow with the distance to the
    nearest channel (``relief * g``), seeded noise roughens the hillslopes only, and each lake is a
    flat lens at the level of the valley floor at its southern tip, so it drains through that tip."""
    rng = sd._rng(seed, 0xC0DE)
    lon = model_lon()[None, :]
    lat = model_lat()[:, None]
    shape = (MODEL_H, MODEL_W)
    X = (lon - LON0) * KM_PER_DEG_LON
    Y = (lat - LAT0) * KM_PER_DEG_LAT
    ph = rng.uniform(0, 2 * np.pi, 4)
    coast = (60.10 + 0.035 * np.sin(2 * np.pi * (lon - 23.5) / 0.55 + ph[0])
             + 0.015 * np.sin(2 * np.pi * lon / 0.17 + ph[1]))
    ridge = 61.12 + 0.015 * np.sin(2 * np.pi * (lon - 23.5) / 0.8 + ph[2])
    land = np.broadcast_to(lat >= coast, shape).copy()
    s = np.clip((lat - coast) / (ridge - coast), 0.0, 1.0)
    phases = rng.uniform(0, 2 * np.pi, (len(RIVERS), 2))
    dkm = np.full(shape, np.inf)
    for k in range(len(RIVERS)):
        dkm = np.minimum(dkm, np.abs(lon - _river_lon(k, lat, phases)) * KM_PER_DEG_LON)
    for k, lat_j, head in TRIBUTARIES:
        junction = (float(_river_lon(k, np.array(lat_j), phases)), lat_j)
        dkm = np.minimum(dkm, _segment_km(X, Y, junction, head))
    g = np.clip(dkm / 9.0, 0.0, 1.0) ** 0.8
    bed = 2.0 + 170.0 * s**1.15
    relief = 20.0 + 100.0 * s
    noise = (0.30 * sd._smooth_noise(rng, shape, 10) + 0.18 * sd._smooth_noise(rng, shape, 4)
             + 0.08 * sd._smooth_noise(rng, shape, 1.5))
    valley = bed + relief * np.clip(g * (1.0 + noise), 0.0, None) + 8.0 * s * g * noise
    top = 300.0 + 25.0 * sd._smooth_noise(rng, shape, 8)
    north = top - 150.0 * np.clip((lat - ridge) / 0.25, 0.0, 1.0) + 10.0 * noise
    w_ridge = np.clip((lat - (ridge - 0.12)) / 0.12, 0.0, 1.0)
    z = np.where(lat <= ridge, (1 - w_ridge) * valley + w_ridge * np.maximum(valley, top), north)
    z = np.where(land, np.maximum(z, 1.0), 0.0)

    lake_id = np.full(shape, -1, dtype=np.int64)
    for i, (k, south, north_lat, half_km) in enumerate(LAKES):
        t = np.clip((lat - south) / (north_lat - south), 0.0, 1.0)
        width = half_km * np.sin(np.pi * t) ** 0.7
        inside = (lat >= south) & (lat <= north_lat) & (np.abs(lon - _river_lon(k, lat, phases)) * KM_PER_DEG_LON
                                                        < np.maximum(width, 0.75))
        inside = np.broadcast_to(inside, shape) & land
        rows, cols = np.nonzero(inside)
        level = float(np.min(z[rows, cols]))  # the valley floor at the lake's southern tip
        z[inside] = level
        lake_id[inside] = i
    z = np.where(land, np.round(z, 1), 0.0)

    dx = KM_PER_DEG_LON * 1000 * DLON
    dy = KM_PER_DEG_LAT * 1000 * DLAT
    dzdy, dzdx = np.gradient(z, dy, dx)
    slope = np.hypot(dzdx, dzdy)
    smax = 190.0 - 50.0 * np.clip(slope / 0.04, 0, 1) - 30.0 * np.clip(z / 350.0, 0, 1)
    dem = np.where(sd._window(land, DEM_WIN), sd._window(z, DEM_WIN), DEM_NODATA).astype(np.float32)
    return Terrain(elev=z, land=land, lake_id=lake_id, dem=dem, smax=smax)


# ---------------------------------------------------------------------------------------------
# Basins and lakes
# ---------------------------------------------------------------------------------------------
@dataclass
class Network:
    flw: object
    upa: np.ndarray  # km2, DEM window
    cell_km2: np.ndarray  # DEM window
    gauged: list[sd.Basin] = field(default_factory=list)
    ungauged: list[sd.Basin] = field(default_factory=list)
    lake_outlet: list[int] = field(default_factory=list)  # flat DEM-window index of each lake's outlet
    next_lake: list[int] = field(default_factory=list)  # the first lake below each lake's outlet, or -1
    first_lake: np.ndarray | None = None  # DEM window (flat): the first lake on each cell's flow path, or -1
    lake_area_km2: list[float] = field(default_factory=list)

    @property
    def basins(self) -> list[sd.Basin]:
        return self.gauged + self.ungauged


def _inside_region(mask: np.ndarray) -> bool:
    r0, c0, _, _ = DEM_WIN
    rows, cols = np.nonzero(mask)
    west = MODEL_WEST + (c0 + cols.min()) * DLON
    east = MODEL_WEST + (c0 + cols.max() + 1) * DLON
    north = MODEL_NORTH - (r0 + rows.min()) * DLAT
    south = MODEL_NORTH - (r0 + rows.max() + 1) * DLAT
    w_, s_, e_, n_ = REGION
    eps = 1e-9
    return west >= w_ - eps and east <= e_ + eps and south >= s_ - eps and north <= n_ + eps


def _polygonize(mask: np.ndarray):
    from rasterio.features import shapes
    from shapely.geometry import shape
    from shapely.ops import unary_union

    polys = [shape(g) for g, v in shapes(mask.astype(np.uint8), mask=mask, transform=dem_transform(),
                                         connectivity=4) if v == 1]
    return unary_union(polys)


def delineate_basins(terrain: Terrain) -> Network:
    """Route the DEM with pyflwdir, find each lake's outlet, pick 6 gauged + 2 ungauged outlets.

    Gauges sit on the main stems of rivers A, B and C (walking upstream from the coast to the first
    cell whose basin lies inside the region, or to the first cell above a lake) and at the mouths
    of the two side valleys of B."""
    import pyflwdir

    r0, c0, h, w = DEM_WIN
    flw = pyflwdir.from_dem(terrain.dem, nodata=DEM_NODATA, transform=dem_transform(), latlon=True, outlets="edge")
    upa = flw.upstream_area(unit="km2")
    upa_flat = upa.ravel()
    idxs_ds = np.asarray(flw.idxs_ds)
    lat_c = MODEL_NORTH - (r0 + np.arange(h) + 0.5) * DLAT
    lon_c = MODEL_WEST + (c0 + np.arange(w) + 0.5) * DLON
    cell_km2 = np.repeat((cell_area_m2(lat_c) / 1e6)[:, None], w, axis=1)
    main_us = np.asarray(flw.main_upstream(uparea=upa)).ravel()
    lake_win = sd._window(terrain.lake_id, DEM_WIN).ravel()

    # lakes: outlet = the lake cell with the largest upstream area; first lake on every flow path
    outlets = []
    for i in range(len(LAKES)):
        cells = np.flatnonzero(lake_win == i)
        outlets.append(int(cells[np.argmax(upa_flat[cells])]))
    first = np.full(upa_flat.size, -1, dtype=np.int64)
    for idx in np.asarray(flw.idxs_seq):  # downstream -> upstream: a cell's downstream neighbour is done
        ds = int(idxs_ds[idx])
        first[idx] = lake_win[idx] if lake_win[idx] >= 0 else (first[ds] if ds != idx else -1)
    next_lake = []
    for i, o in enumerate(outlets):
        ds = int(idxs_ds[o])
        nxt = int(first[ds]) if ds != o else -1
        if nxt == i:
            raise RuntimeError(f"lake {i}: its outlet drains back into it")
        next_lake.append(nxt)
    for i, o in enumerate(outlets):  # every lake cell must drain through the lake's outlet
        below = flw.basins(idxs=np.array([int(idxs_ds[o])], dtype=np.intp)).ravel() > 0
        if not below[lake_win == i].all():
            raise RuntimeError(f"lake {i}: some of its cells drain elsewhere than through its outlet")

    def basin_mask(idx: int) -> np.ndarray:
        return flw.basins(idxs=np.array([idx], dtype=np.intp)) > 0

    def stem_from(idx: int) -> list[int]:
        stem = [idx]
        while 0 <= (nxt := int(main_us[stem[-1]])) < upa_flat.size and nxt != stem[-1]:
            stem.append(nxt)
        return stem

    def stem_from_coast(k: int) -> list[int]:
        """The main stem of river ``k`` from its largest cell near the coast."""
        base = RIVERS[k]
        cols = np.nonzero(np.abs(lon_c - base) < 0.08)[0]
        rows = np.nonzero(lat_c < 60.3)[0]
        sub = np.where(np.isfinite(upa[np.ix_(rows, cols)]), upa[np.ix_(rows, cols)], -1.0)
        rr, cc = np.unravel_index(np.argmax(sub), sub.shape)
        return stem_from(int(rows[rr] * w + cols[cc]))

    def lat_of(idx: int) -> float:
        return float(lat_c[idx // w])

    def pick_on_stem(stem: list[int], min_lat: float, max_area: float = 3000.0) -> int:
        for idx in stem:
            if lat_of(idx) >= min_lat and upa_flat[idx] <= max_area and lake_win[idx] < 0 \
                    and _inside_region(basin_mask(idx)):
                return idx
        raise RuntimeError(f"no outlet north of {min_lat} with a basin inside the region")

    def pick_tributary(stem: list[int], lat_range: tuple[float, float], lo: float, hi: float) -> int:
        stem_arr = np.asarray(stem, dtype=np.intp)
        cand = np.nonzero(np.isin(idxs_ds, stem_arr) & ~np.isin(np.arange(idxs_ds.size), stem_arr)
                          & (upa_flat >= lo) & (upa_flat <= hi) & (lake_win < 0))[0]
        cand = [int(i) for i in cand[np.argsort(-upa_flat[cand], kind="stable")]
                if lat_range[0] <= lat_of(int(i)) <= lat_range[1]]
        for idx in cand:
            if _inside_region(basin_mask(idx)):
                return idx
        raise RuntimeError(f"no tributary with area in [{lo}, {hi}] km2 inside the region")

    def junction(j: int) -> tuple[float, float]:
        return TRIBUTARIES[j][1] - 0.1, TRIBUTARIES[j][1] + 0.1

    stem_a, stem_b, stem_c = (stem_from_coast(k) for k in (RIVER_A, RIVER_B, RIVER_C))
    lake_a_north, lake_c_north = LAKES[0][2], LAKES[1][2]
    spec = [  # id, name, outlet index, gauged
        ("FI01", "Joki A (lower, below the lake)", pick_on_stem(stem_a, 60.12), True),
        ("FI02", "Joki A (upper)", pick_on_stem(stem_a, lake_a_north + 0.05), True),
        ("FI03", "Joki B (lower)", pick_on_stem(stem_b, 60.12), True),
        ("FI04", "Joki C (lower, below the lake)", pick_on_stem(stem_c, 60.12), True),
        ("FI05", "Oja B (north-eastern side valley)", pick_tributary(stem_b, junction(0), 80.0, 800.0), True),
        ("FI06", "Joki B (upper)", pick_on_stem(stem_b, 60.72), True),
        ("FI07", "Oja B (north-western side valley)", pick_tributary(stem_b, junction(1), 60.0, 600.0), False),
        ("FI08", "Joki C (upper, above the lake)", pick_on_stem(stem_c, lake_c_north + 0.05), False),
    ]

    rr_all, cc_all = np.divmod(np.arange(upa_flat.size), w)
    rr_ds, cc_ds = np.divmod(idxs_ds, w)
    coslat = np.cos(np.radians(lat_c[rr_all]))
    step_m = np.hypot((cc_ds - cc_all) * math.radians(DLON) * sd.EARTH_RADIUS_M * coslat,
                      (rr_ds - rr_all) * math.radians(DLAT) * sd.EARTH_RADIUS_M)

    net = Network(flw=flw, upa=upa, cell_km2=cell_km2, lake_outlet=outlets, next_lake=next_lake, first_lake=first,
                  lake_area_km2=[float(cell_km2.ravel()[lake_win == i].sum()) for i in range(len(LAKES))])
    lat_model = model_lat()
    for bid, name, idx, gauged in spec:
        m = basin_mask(idx)
        rr, cc = divmod(idx, w)
        dist = np.where(m, sd._flow_distance(idxs_ds, step_m, idx).reshape(h, w), np.nan)
        b = sd.Basin(id=bid, name=name, outlet_idx=int(idx), mask=m, area_km2=float(cell_km2[m].sum()),
                     outlet_lon=float(MODEL_WEST + (c0 + cc + 0.5) * DLON), outlet_lat=float(lat_model[r0 + rr]),
                     dist_m=dist, gauged=gauged)
        b.polygon = _polygonize(m)
        (net.gauged if gauged else net.ungauged).append(b)
    for b in net.basins:  # smallest enclosing basin = parent
        parents = [o for o in net.basins if o is not b and o.mask[b.mask].all() and o.area_km2 > b.area_km2]
        if parents:
            b.parent = min(parents, key=lambda o: o.area_km2).id
    return net


def basin_lakes(net: Network, b: sd.Basin) -> list[int]:
    """Indices of the lakes whose outlet lies in basin ``b``."""
    return [i for i, o in enumerate(net.lake_outlet) if b.mask.ravel()[o]]


# ---------------------------------------------------------------------------------------------
# Weather: air temperature and storms
# ---------------------------------------------------------------------------------------------
def climatology_c(day: dt.date) -> float:
    """Mean daily air temperature (°C) at sea level and 60.6 °N for ``day``'s day of the year."""
    doy = day.timetuple().tm_yday
    return T_MEAN - T_AMP * math.cos(2 * math.pi * (doy - T_COLDEST_DOY) / 365.25)


_ANOMALY_CACHE: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def temperature_anomaly_c(seed: int, day: dt.date) -> float:
    """Regional temperature anomaly (°C) of ``day``: slow seeded oscillations plus daily noise;
    standard deviation 4.5 °C in winter, 2.5 °C in summer. Depends only on (seed, date)."""
    if seed not in _ANOMALY_CACHE:
        rng = sd._rng(seed, 0x7E)
        periods = np.exp(rng.uniform(np.log(3.0), np.log(400.0), 12))
        amps = (periods / 3.0) ** 0.15
        phases = rng.uniform(0, 2 * np.pi, 12)
        _ANOMALY_CACHE[seed] = (periods, amps / np.sqrt(0.5 * np.sum(amps**2)), phases)
    periods, amps, phases = _ANOMALY_CACHE[seed]
    t = (day - dt.date(2000, 1, 1)).days
    slow = float(np.sum(amps * np.sin(2 * np.pi * t / periods + phases)))
    noise = float(sd._rng(seed, 0x7F, day.toordinal()).standard_normal())
    winter = 1.0 - _warm_season(day)
    return (T_ANOM_SUMMER + (T_ANOM_WINTER - T_ANOM_SUMMER) * winter) * (0.85 * slow + 0.5 * noise)


def temperature_offset(terrain: Terrain) -> np.ndarray:
    """The static part of the air temperature (°C): lapse rate with elevation and cooling northwards."""
    return -LAPSE_C_PER_M * terrain.elev - T_LAT_GRADIENT * (model_lat()[:, None] - LAT0)


def diurnal_c() -> np.ndarray:
    """The 48 half-hours' departure (°C) from the daily mean on the half-hourly days (sums to 0)."""
    h = 0.5 * (np.arange(48) + 0.5)
    return DIURNAL_AMP * np.cos(2 * np.pi * (h - DIURNAL_PEAK_H) / 24.0)


def liquid_fraction(t_c: np.ndarray) -> np.ndarray:
    """Fraction of precipitation falling as rain at air temperature ``t_c`` (°C)."""
    return np.clip((np.asarray(t_c) - T_SNOW) / (T_RAIN - T_SNOW), 0.0, 1.0)


def _wet_season(day: dt.date) -> float:
    """1 in early September (most storms), 0 in early March."""
    doy = day.timetuple().tm_yday
    return 0.5 + 0.5 * math.cos(2 * math.pi * (doy - 245) / 365.25)


def _warm_season(day: dt.date) -> float:
    """1 in mid-July, 0 in mid-January."""
    doy = day.timetuple().tm_yday
    return 0.5 + 0.5 * math.cos(2 * math.pi * (doy - 200) / 365.25)


def storms_for_day(seed: int, day, forced: bool = False) -> np.ndarray:
    """The storms born on ``day`` (hours since 1970, km from 24.6 °E 60.6 °N); only (seed, day) matter."""
    day = sd._as_date(day)
    rng = sd._rng(seed, 0xC01D, day.toordinal())
    wet, warm = _wet_season(day), _warm_season(day)
    lam = (0.30 + 0.70 * wet) * math.exp(0.5 * sd._regime(seed, day) - 0.125)
    n = int(rng.poisson(min(lam, 5.0)))
    t_day = (day - sd.UNIX_EPOCH.date()).days * 24.0
    return sd.draw_storms(rng, n, t_day, forced, 0.05 + 0.55 * warm**2, COLD_STORMS)


#: The cold region's storm climate (summer convective cells, frontal bands from the west-south-west),
#: parameters of :func:`tools.sampledata.draw_storms`
COLD_STORMS = {
    "conv_life": (1.5, 4.5), "conv_speed": (8.0, 30.0), "conv_heading": (40.0, 50.0), "conv_size": (5.0, 15.0),
    "conv_i0": (2.0, 3.5), "conv_x": (-60, 60), "conv_y": (-100, 100),
    "front_life": (8.0, 24.0), "front_speed": (30.0, 55.0), "front_heading": (25.0, 25.0),
    "front_sa": (20.0, 50.0), "front_sc": (80.0, 250.0), "front_i0": (2.0, 0.9),
    "front_x": (-90, 90), "front_y": (-120, 120),
    "forced_speed": (30.0, 40.0), "forced_heading": (20.0, 8.0), "forced_i0": (2.5, 3.5),
    "forced_x": (-20, 20), "forced_y": (-30, 30),
}


class Weather(sd.Weather):
    """The default sample's closed-form storm integrals on the cold region's grid and storms."""

    def __init__(self, seed: int, terrain: Terrain, forced_days=()):
        self.seed = seed
        self.forced = {sd._as_date(d) for d in forced_days}
        X = (model_lon() - LON0) * KM_PER_DEG_LON
        Y = (model_lat() - LAT0) * KM_PER_DEG_LAT
        self.X, self.Y = np.meshgrid(X, Y)
        self.oro = 1.0 + 0.5 * terrain.elev / 1000.0
        self._cache: dict[dt.date, np.ndarray] = {}

    def storms(self, day: dt.date) -> np.ndarray:
        if day not in self._cache:
            self._cache[day] = storms_for_day(self.seed, day, forced=day in self.forced)
            for old in [d for d in self._cache if (day - d).days > 2]:
                del self._cache[old]
        return self._cache[day]


# ---------------------------------------------------------------------------------------------
# The hydrological model
# ---------------------------------------------------------------------------------------------
PROBE_QUANTILES = (0.02, 0.25, 0.5, 0.75, 0.98)  # elevation quantiles of the basins' soil cells
PROBE_FIELDS = ("precip", "temp", "rain", "snowfall", "melt", "swe", "soil_temp")
BASIN_FIELDS = ("precip", "rain", "snowfall", "melt", "swe")


@dataclass
class Simulation:
    days: list[dt.date]
    imerg_daily: np.ndarray  # (n_days, 18, 18) mm, 0.1° cells, lat north->south (model order)
    imerg_temp: np.ndarray  # (n_days, 18, 18) °C, daily mean air temperature of the 0.1° cells
    imerg_hhr: dict  # half-hourly day -> (48, 18, 18) mm/hr
    imerg_hhr_temp: dict  # half-hourly day -> (48, 18, 18) °C
    cci_sm: np.ndarray  # (n_days, 7, 9) m3 m-3, soil mean (NaN where under half the cell is soil)
    cci_cold: np.ndarray  # (n_days, 7, 9) fraction of the cell's soil frozen or snow-covered (NaN likewise)
    t2m: np.ndarray  # (n_days, 19, 21) °C, mean over the 0.1° box around each ERA5-Land point
    q: np.ndarray  # (n_basins, n_days) m3/s, error-free
    lake_outflow: np.ndarray  # (n_lakes, n_days) m3/s at each lake's outlet
    basin_ids: list[str]
    basin_mean: dict  # BASIN_FIELDS name -> (n_basins, n_days) mm (swe: end of day)
    probes: dict  # PROBE_FIELDS name -> (n_days, n_probes): mm, °C (swe: end of day)
    probe_cells: list[int]  # flat model-grid indices of the probe cells
    hhr_days: list[dt.date] = field(default_factory=list)


def _routing_matrices(net: Network, lakes: bool = True):
    """``route`` (n_basins * N_LAGS, n_model_cells + n_lakes): m3/s at each lag per mm of a cell's outflow
    (or per m3/day of a lake's outflow); ``to_lake`` (n_lakes, n_model_cells): m3 per mm of outflow.

    With ``lakes`` False every cell is routed straight to the gauges (the lakes do nothing)."""
    from scipy.sparse import csr_matrix

    r0, c0, h, w = DEM_WIN
    area_row = cell_area_m2(model_lat())
    n_cells, n_l = MODEL_H * MODEL_W, len(LAKES)
    outlets = np.asarray(net.lake_outlet)
    first = net.first_lake
    rows, cols, vals = [], [], []

    def add(b_i, tau, col, val):
        k = np.floor(tau).astype(int)
        frac = tau - k
        if k.max() + 1 >= N_LAGS:
            raise RuntimeError(f"travel time {tau.max():.1f} d exceeds {N_LAGS - 1} days")
        rows.extend([b_i * N_LAGS + k, b_i * N_LAGS + k + 1])
        cols.extend([col, col])
        vals.extend([val * (1 - frac), val * frac])

    for b_i, b in enumerate(net.basins):
        in_b = b.mask.ravel()
        cells = np.flatnonzero(in_b)
        if lakes:  # cells whose water first meets a lake inside this basin reach it through the lake
            fl = first[cells]
            cells = cells[(fl < 0) | ~in_b[outlets[np.maximum(fl, 0)]]]
        rr, cc = np.divmod(cells, w)
        tau = HILLSLOPE_DELAY_D + b.dist_m[rr, cc] / (FLOW_SPEED_MS * 86400.0)
        add(b_i, tau, (rr + r0) * MODEL_W + (cc + c0), area_row[rr + r0] / 1000.0 / 86400.0)
        if lakes:
            for i in basin_lakes(net, b):
                nxt = net.next_lake[i]
                if nxt >= 0 and in_b[outlets[nxt]]:
                    continue  # its water reaches this gauge through the lake below it
                tau = np.array([b.dist_m.ravel()[outlets[i]] / (FLOW_SPEED_MS * 86400.0)])
                add(b_i, tau, np.array([n_cells + i]), np.array([1.0 / 86400.0]))
    route = csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(len(net.basins) * N_LAGS, n_cells + n_l))
    cells = np.flatnonzero(first >= 0)
    rr, cc = np.divmod(cells, w)
    to_lake = csr_matrix((area_row[rr + r0] / 1000.0, (first[cells], (rr + r0) * MODEL_W + (cc + c0))),
                         shape=(n_l, n_cells))
    return route, to_lake


def _probe_cells(terrain: Terrain, net: Network) -> list[int]:
    r0, c0, h, w = DEM_WIN
    in_any = np.zeros((h, w), bool)
    for b in net.basins:
        in_any |= b.mask
    cand = np.flatnonzero(in_any.ravel() & sd._window(terrain.soil, DEM_WIN).ravel())
    z = sd._window(terrain.elev, DEM_WIN).ravel()[cand]
    order = cand[np.argsort(z, kind="stable")]
    picked = [int(order[min(len(order) - 1, int(q * len(order)))]) for q in PROBE_QUANTILES]
    return [(i // w + r0) * MODEL_W + (i % w + c0) for i in picked]


def run_model(seed: int, days: list[dt.date], terrain: Terrain, net: Network, hhr_days=(),
              spinup_days: int = SPINUP_DAYS, lakes: bool = True, progress=None) -> Simulation:
    """Run weather, snow, frozen soil, bucket, groundwater, lakes and routing day by day.

    Starts ``spinup_days`` before ``days[0]`` (soil 70 % full, 50 mm groundwater, no snow, lakes at
    35 days of a 1 mm/day inflow); only the period is returned. ``lakes=False`` routes every cell
    straight to the gauges (the same weather without lakes: for tests)."""
    hhr_days = {sd._as_date(d) for d in hhr_days}
    weather = Weather(seed, terrain, forced_days=hhr_days)
    basins = net.basins
    route, to_lake = _routing_matrices(net, lakes=lakes)
    soil, lake = terrain.soil, terrain.lake
    smax = terrain.smax
    t_off = temperature_offset(terrain)
    diurnal = diurnal_c()[:, None, None]
    area = cell_area_m2(model_lat())[:, None] * np.ones((1, MODEL_W))
    n_l = len(LAKES)
    lake_order = sorted(range(n_l), key=lambda i: net.upa.ravel()[net.lake_outlet[i]])
    lake_m3_per_mm = np.stack([(area * (terrain.lake_id == i)).ravel() / 1000.0 for i in range(n_l)])
    S = 0.7 * smax
    G = np.full(smax.shape, 50.0)
    swe = np.zeros(smax.shape)
    ts = np.full(smax.shape, 0.5)
    V = np.array([K_LAKE_DAYS * 1e-3 * net.upa.ravel()[o] * 1e6 for o in net.lake_outlet])
    first = days[0] - dt.timedelta(days=spinup_days)
    n_all = spinup_days + len(days)
    n = len(days)
    q = np.zeros((len(basins), n_all + N_LAGS))
    soil_cci = sd._window(soil.astype(float), CCI_WIN)
    soil_frac = block_mean(soil_cci, CCI_BLOCK)
    cci_ok = soil_frac >= 0.5
    bw = np.stack([(b.mask / b.mask.sum()).ravel() for b in basins])  # (n_basins, DEM cells)
    nlat_i, nlon_i = IMERG_WIN[2] // IMERG_BLOCK[0], IMERG_WIN[3] // IMERG_BLOCK[1]
    out_p = np.zeros((n, nlat_i, nlon_i))
    out_t = np.zeros((n, nlat_i, nlon_i))
    out_sm = np.zeros((n, *soil_frac.shape))
    out_cold = np.zeros((n, *soil_frac.shape))
    out_t2m = np.zeros((n, T2M_WIN[2] // T2M_BLOCK[0], T2M_WIN[3] // T2M_BLOCK[1]))
    out_lake = np.zeros((n_l, n))
    basin_out = {k: np.zeros((len(basins), n)) for k in BASIN_FIELDS}
    probe_cells = _probe_cells(terrain, net)
    probes = {k: np.zeros((n, len(probe_cells))) for k in PROBE_FIELDS}
    hhr, hhr_t = {}, {}
    for t in range(n_all):
        day = first + dt.timedelta(days=t)
        T = climatology_c(day) + temperature_anomaly_c(seed, day) + t_off
        if day in hhr_days and t >= spinup_days:
            half = weather.halfhourly(day)
            P = half.sum(axis=0)
            T_hh = T[None] + diurnal
            rain = (half * liquid_fraction(T_hh)).sum(axis=0)
            hhr[day] = 2.0 * block_mean(sd._window(half, IMERG_WIN), IMERG_BLOCK)  # mm/hr
            hhr_t[day] = block_mean(sd._window(T_hh, IMERG_WIN), IMERG_BLOCK)
        else:
            P = weather.daily(day)
            rain = P * liquid_fraction(T)
        snowfall = P - rain
        # degree-day snow: snowfall - melt is exactly the change of the pack
        swe = swe + snowfall
        melt = np.minimum(swe, DDF * np.maximum(T - T_MELT, 0.0))
        swe = swe - melt
        # soil temperature, insulated by snow; frozen soil lets little water in
        ts = ts + SOIL_ALPHA / (1.0 + swe / SOIL_SNOW_MM) * (T - ts)
        frozen = ts < 0.0
        W = rain + melt
        sat = (S / smax) ** BETA
        runoff = W * np.where(frozen, F_FROZEN + (1.0 - F_FROZEN) * sat, sat)
        S = S + W - runoff
        over = np.maximum(S - smax, 0.0)
        S -= over
        runoff += over
        perc = K_PERC * S * (S / smax) ** 3 * np.where(frozen, FROZEN_PERC, 1.0)
        S -= perc
        pet = PET_PER_DEG * np.maximum(T, 0.0)
        et = np.minimum(S, pet * np.minimum(1.0, S / (0.5 * smax)))
        S -= et
        G += perc
        base = G / K_GW_DAYS
        G -= base
        outflow = np.where(soil, runoff + base, np.where(lake, W, 0.0)).ravel()
        lake_q = np.zeros(n_l)
        if lakes:
            inflow = to_lake @ outflow
            evap = lake_m3_per_mm @ pet.ravel()  # open-water evaporation, m3/day
            for i in lake_order:
                V[i] += inflow[i] + sum(lake_q[u] for u in range(n_l) if net.next_lake[u] == i)
                V[i] -= min(V[i], evap[i])
                lake_q[i] = V[i] / K_LAKE_DAYS
                V[i] -= lake_q[i]
        contrib = (route @ np.concatenate([outflow, lake_q])).reshape(len(basins), N_LAGS)
        q[:, t:t + N_LAGS] += contrib
        if t >= spinup_days:
            i = t - spinup_days
            out_p[i] = block_mean(sd._window(P, IMERG_WIN), IMERG_BLOCK)
            out_t[i] = block_mean(sd._window(T, IMERG_WIN), IMERG_BLOCK)
            out_t2m[i] = block_mean(sd._window(T, T2M_WIN), T2M_BLOCK)
            theta = np.where(soil, 0.08 + 0.40 * S / smax, 0.0)
            cold = (soil & (frozen | (swe >= SNOW_COVER_MM))).astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                out_sm[i] = np.where(cci_ok, block_mean(sd._window(theta, CCI_WIN), CCI_BLOCK) / soil_frac, np.nan)
                out_cold[i] = np.where(cci_ok, block_mean(sd._window(cold, CCI_WIN), CCI_BLOCK) / soil_frac,
                                       np.nan)
            out_lake[:, i] = lake_q / 86400.0
            for name, fld in (("precip", P), ("rain", rain), ("snowfall", snowfall), ("melt", melt), ("swe", swe)):
                basin_out[name][:, i] = bw @ sd._window(fld, DEM_WIN).ravel()
            for name, fld in (("precip", P), ("temp", T), ("rain", rain), ("snowfall", snowfall), ("melt", melt),
                              ("swe", swe), ("soil_temp", ts)):
                probes[name][i] = fld.ravel()[probe_cells]
        if progress and (t + 1) % 365 == 0:
            progress(f"simulated up to {day}")
    return Simulation(days=list(days), imerg_daily=out_p, imerg_temp=out_t, imerg_hhr=hhr, imerg_hhr_temp=hhr_t,
                      cci_sm=out_sm, cci_cold=out_cold, t2m=out_t2m,
                      q=q[:, spinup_days:spinup_days + n], lake_outflow=out_lake, basin_ids=[b.id for b in basins],
                      basin_mean=basin_out, probes=probes, probe_cells=probe_cells, hhr_days=sorted(hhr))


# ---------------------------------------------------------------------------------------------
# Products and writers
# ---------------------------------------------------------------------------------------------
def phase_percent(t_c: np.ndarray) -> np.ndarray:
    """``probabilityLiquidPrecipitation`` (percent, before rounding) for a 0.1° cell at ``t_c`` °C."""
    return 100.0 * liquid_fraction(t_c)


def era5land_name(year: int) -> str:
    return f"era5-land-daily-t2m-{year:04d}.nc"


def write_era5land_t2m(path, dates: list[dt.date], t2m_k: np.ndarray, lon, lat) -> Path:
    """One ERA5-Land daily-statistics style CF NetCDF4 file: ``t2m`` (K) daily means on
    ``(valid_time, latitude, longitude)``, latitude north -> south as ERA5 stores it."""
    import netCDF4

    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    t2m_k = np.asarray(t2m_k, dtype=np.float64)
    if t2m_k.shape != (len(dates), lat.size, lon.size):
        raise ValueError(f"t2m shape {t2m_k.shape} must be (time, lat, lon) = ({len(dates)}, {lat.size}, {lon.size})")
    if lat.size > 1 and lat[0] < lat[-1]:
        lat, t2m_k = lat[::-1], t2m_k[:, ::-1, :]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncatts({
            "Conventions": "CF-1.7",
            "institution": "European Centre for Medium-Range Weather Forecasts",
            "title": "ERA5-Land post-processed daily statistics: daily mean 2m temperature (SYNTHETIC)",
            "history": "SYNTHETIC values written by tools.sampledata_cold; layout after the CDS "
                       "derived-era5-land-daily-statistics NetCDF files",
        })
        nc.createDimension("valid_time", len(dates))
        nc.createDimension("latitude", lat.size)
        nc.createDimension("longitude", lon.size)
        v = nc.createVariable("valid_time", "i4", ("valid_time",))
        v.setncatts({"long_name": "time", "standard_name": "time", "units": "days since 1970-01-01",
                     "calendar": "proleptic_gregorian"})
        v[:] = [(d - sd.UNIX_EPOCH.date()).days for d in dates]
        v = nc.createVariable("latitude", "f8", ("latitude",))
        v.setncatts({"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude"})
        v[:] = lat
        v = nc.createVariable("longitude", "f8", ("longitude",))
        v.setncatts({"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"})
        v[:] = lon
        v = nc.createVariable("t2m", "f4", ("valid_time", "latitude", "longitude"), fill_value=np.float32(np.nan))
        v.setncatts({"units": "K", "long_name": "2 metre temperature", "standard_name": "air_temperature",
                     "cell_methods": "valid_time: mean"})
        v[:] = t2m_k.astype(np.float32)
    return path


def _dense_vegetation_cell(cci_sm0: np.ndarray) -> tuple[int, int]:
    """One inland cell flagged for dense vegetation (boreal forest), no retrieval there."""
    land = [(r, c) for r in range(cci_sm0.shape[0]) for c in range(2, cci_sm0.shape[1] - 2)
            if np.isfinite(cci_sm0[r, c])]
    return land[len(land) // 2]


def cci_day_product(seed: int, day: dt.date, sm: np.ndarray, cold: np.ndarray, dense: tuple[int, int]):
    """sm, flag, uncertainty and t0 as the product reports them (lat north->south).

    Cold cells (``cold >= CCI_COLD_FRACTION``) get flag bit 1 and no value; then the dense-vegetation
    cell (bit 2, no value), an occasional low-weight retrieval (16, value kept), swath gaps and the
    sea (127)."""
    rng = sd._rng(seed, 0xC5, day.toordinal())
    day0 = (day - sd.UNIX_EPOCH.date()).days
    ny, nx = sm.shape
    obs = np.clip(sm + rng.normal(0.0, 0.02, sm.shape), 0.02, 0.6)
    sea = ~np.isfinite(sm)
    flag = np.zeros(sm.shape, dtype=np.int16)
    unc = np.clip(0.04 + 0.01 * rng.standard_normal(sm.shape), 0.02, 0.08)
    t0 = day0 + rng.uniform(0.25, 0.9, sm.shape)
    frozen = ~sea & (np.nan_to_num(cold, nan=0.0) >= CCI_COLD_FRACTION)
    flag[frozen] |= 1
    obs[frozen] = np.nan
    flag[dense] |= 2
    obs[dense] = np.nan
    if rng.random() < 0.05:
        r, c = int(rng.integers(0, ny)), int(rng.integers(0, nx))
        if not sea[r, c] and flag[r, c] == 0:
            flag[r, c] = 16  # keeps a value: must be masked by the reader
    if rng.random() < 0.22:  # swath gap: a diagonal band with no observation at all
        rr, cc = np.mgrid[0:ny, 0:nx]
        k0 = rng.uniform(-ny, nx)
        width = rng.uniform(1.5, 3.0)
        gap = np.abs(cc - 0.6 * rr - k0) < width
        obs[gap] = np.nan
        flag[gap] = 127
    obs[sea] = np.nan
    flag[sea] = 127
    unc[~np.isfinite(obs)] = np.nan
    t0[flag == 127] = np.nan
    return obs, flag, unc, t0


def write_config(path: Path, start: dt.date, end: dt.date) -> Path:
    """A hydrocast.toml for the cold sample (relative paths; the cube and model go to ``work/``): the
    sources precipitation, precipitation_phase (IMERG), air_temperature (ERA5-Land t2m, K),
    soil_moisture and frozen_ground (ESA CCI ``sm`` and its frozen/snow flag, ``variable = "frozen"``)
    and the DEM.

    Train on all but the last two years, validate and test on one year each (for periods of at least
    three calendar years; otherwise the periods are left for the user to set)."""
    w, s, e, n = REGION
    years = list(range(start.year, end.year + 1))
    periods = ""
    if len(years) >= 3:
        periods = (f'train_period = ["{start}", "{years[-3]}-12-31"]\n'
                   f'validation_period = ["{years[-2]}-01-01", "{years[-2]}-12-31"]\n'
                   f'test_period = ["{years[-1]}-01-01", "{end}"]\n')
    text = f"""# hydrocast project file for the synthetic cold sample (tools/sampledata_cold.py; see README.md).
# Relative paths are relative to this file's folder.

[grid]
crs = "EPSG:4326"
bounds = [{w}, {s}, {e}, {n}]     # west, south, east, north
resolution = 0.05                     # 24 x 24 cells

[[sources]]
name = "precipitation"
kind = "imerg"
paths = ["raw/imerg/*.HDF5", "raw/imerg/*.nc4"]

[[sources]]
name = "precipitation_phase"          # percent liquid: in the half-hourly and the daily files
kind = "imerg"
variable = "probabilityLiquidPrecipitation"
paths = ["raw/imerg/*.HDF5", "raw/imerg/*.nc4"]

[[sources]]
name = "air_temperature"              # ERA5-Land-like daily mean, K
kind = "netcdf"
variable = "t2m"
paths = ["raw/era5land/*.nc"]

[[sources]]
name = "soil_moisture"
kind = "esacci_sm"
paths = ["raw/esacci/*.nc"]

[[sources]]
name = "frozen_ground"                # fraction of the cell ESA CCI flags frozen or snow-covered
kind = "esacci_sm"
variable = "frozen"
paths = ["raw/esacci/*.nc"]

[[sources]]
name = "dem"
kind = "dem"
paths = ["raw/dem/dem.tif"]

[cube]
path = "work/cube.nc"

[basins]
path = "basins/basins.geojson"

[discharge]
path = "discharge/discharge.csv"

[train]
model_dir = "work/model"
{periods}lead_days = 3
"""
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------------
@dataclass
class ColdSample:
    """What :func:`generate_with_state` made: the summary and the model state behind the files."""

    summary: dict
    terrain: Terrain
    network: Network
    sim: Simulation


def generate_with_state(outdir, seed: int = DEFAULT_SEED, start=DEFAULT_START, end=DEFAULT_END,
                        spinup_days: int = SPINUP_DAYS, log=None) -> ColdSample:
    """Write the cold sample into ``outdir``; return the summary with the terrain, basins and simulation."""
    t_start = time.perf_counter()
    user_log = log or (lambda msg: None)

    def log(msg: str) -> None:
        user_log(f"[{time.perf_counter() - t_start:5.1f} s] {msg}")

    outdir = Path(outdir)
    start, end = sd._as_date(start), sd._as_date(end)
    if end < start:
        raise ValueError("end is before start")
    days = sd._daterange(start, end)
    early_days = set(days[-N_EARLY_DAYS:])
    hhr_days = [d for d in map(sd._as_date, HHR_DAYS) if start <= d <= end and d not in early_days]

    if outdir.exists():
        removed = sd._remove_previous_output(outdir)
        if removed:
            log(f"removed {removed} files of a previous run")
    log("terrain, lakes and basins")
    terrain = make_terrain(seed)
    net = delineate_basins(terrain)
    sd.write_dem(outdir / "raw/dem/dem.tif", terrain.dem, dem_transform(), dtype="float32", nodata=DEM_NODATA)
    sd.write_basins_geojson(outdir / "basins/basins.geojson", net.gauged, "basins")
    sd.write_basins_geojson(outdir / "basins/ungauged.geojson", net.ungauged, "ungauged")
    sd.write_outlets_csv(outdir / "basins/outlets.csv", net.gauged)

    log("hydrological model")
    sim = run_model(seed, days, terrain, net, hhr_days=hhr_days, spinup_days=spinup_days, progress=log)
    n_g = len(net.gauged)
    q_obs = sd.observe_discharge(seed, sim.q, n_g)
    sd.write_discharge_csv(outdir / "discharge/discharge.csv", sim.basin_ids[:n_g], days, q_obs)

    log("IMERG files")
    lon_i, lat_i = imerg_axes()
    imerg_dir = outdir / "raw/imerg"
    for i, day in enumerate(days):
        if day in sim.imerg_hhr:
            rates = sim.imerg_hhr[day][:, ::-1]  # lat ascending
            phase = phase_percent(sim.imerg_hhr_temp[day])[:, ::-1]
            rng = sd._rng(seed, 0xC6, day.toordinal())
            for hh in range(48):
                r = rates[hh].copy()
                if rng.random() < 0.04:
                    r.flat[int(rng.integers(0, r.size))] = np.nan
                sd.write_imerg_hhr(imerg_dir / sd.imerg_hhr_name(day, hh), day, hh, r, lon_i, lat_i,
                                   prob_liquid=phase[hh])
            continue
        run = "early" if day in early_days else "final"
        p, cnt = sd._imerg_day_product(seed, day, sim.imerg_daily[i], run)
        sd.write_imerg_day(imerg_dir / sd.imerg_day_name(day, run), day, p, lon_i, lat_i, run=run, count=cnt,
                           prob_liquid=phase_percent(sim.imerg_temp[i])[::-1], history=IMERG_HISTORY)

    log("ESA CCI files")
    lon_c, lat_c = esacci_axes()
    dense = _dense_vegetation_cell(sim.cci_sm[0])
    cci_dir = outdir / "raw/esacci"
    n_cci = 0
    for i, day in enumerate(days):
        if sd._rng(seed, 0xC7, day.toordinal()).random() < 0.015:
            continue  # no file that day
        sm, flag, unc, t0 = cci_day_product(seed, day, sim.cci_sm[i], sim.cci_cold[i], dense)
        sd.write_esacci_day(cci_dir / sd.esacci_name(day), day, sm, flag, lon_c, lat_c, sm_uncertainty=unc, t0=t0)
        n_cci += 1

    log("ERA5-Land temperature files")
    lon_t, lat_t = t2m_axes()
    for year in range(start.year, end.year + 1):
        idx = [i for i, d in enumerate(days) if d.year == year]
        write_era5land_t2m(outdir / "raw/era5land" / era5land_name(year), [days[i] for i in idx],
                           sim.t2m[idx] + 273.15, lon_t, lat_t)

    months = np.array([d.month for d in days])
    area = np.array([b.area_km2 for b in net.basins])
    bm = sim.basin_mean
    summary = {
        "variant": "cold", "seed": seed, "start": start.isoformat(), "end": end.isoformat(), "n_days": len(days),
        "spinup_days": spinup_days,
        "hhr_days": [d.isoformat() for d in hhr_days], "early_days": sorted(d.isoformat() for d in early_days),
        "esacci_files": n_cci,
        "lakes": [{"river": "ABC"[k - 1], "lat": [south, north], "area_km2": round(a, 1),
                   "catchment_km2": round(float(net.upa.ravel()[o]), 1), "residence_days": K_LAKE_DAYS}
                  for (k, south, north, _), a, o in zip(LAKES, net.lake_area_km2, net.lake_outlet)],
        "basins": [{"id": b.id, "name": b.name, "area_km2": round(b.area_km2, 1), "gauged": b.gauged,
                    "parent": b.parent, "outlet": [round(b.outlet_lon, 6), round(b.outlet_lat, 6)],
                    "lakes": len(basin_lakes(net, b)),
                    "max_travel_days": round(float(HILLSLOPE_DELAY_D
                                                   + np.nanmax(b.dist_m) / (FLOW_SPEED_MS * 86400)), 2)}
                   for b in net.basins],
        "mean_annual_precip_mm": round(float(bm["precip"].mean()) * 365.25, 0),
        "snowfall_fraction": round(float(bm["snowfall"].sum() / max(bm["precip"].sum(), 1e-9)), 2),
        "max_basin_swe_mm": round(float(bm["swe"].max()), 0),
        "mean_discharge_m3s": {bid: round(float(np.nanmean(sim.q[i])), 2) for i, bid in enumerate(sim.basin_ids)},
        "runoff_mm_per_year": {bid: round(float(np.nanmean(sim.q[i])) * 86400 * 365.25 / (area[i] * 1e3), 0)
                               for i, bid in enumerate(sim.basin_ids)},
        "monthly_discharge_m3s": {bid: [round(float(sim.q[i][months == m].mean()), 2) if np.any(months == m)
                                        else None for m in range(1, 13)] for i, bid in enumerate(sim.basin_ids)},
    }
    write_readme(outdir, summary)
    if not (outdir / "hydrocast.toml").exists():
        write_config(outdir / "hydrocast.toml", start, end)
    summary["seconds"] = round(time.perf_counter() - t_start, 1)
    log(f"done in {summary['seconds']} s")
    return ColdSample(summary=summary, terrain=terrain, network=net, sim=sim)


def generate(outdir, seed: int = DEFAULT_SEED, start=DEFAULT_START, end=DEFAULT_END,
             spinup_days: int = SPINUP_DAYS, log=None) -> dict:
    """Write the cold sample into ``outdir``; returns a summary dict (as :func:`tools.sampledata.generate`)."""
    return generate_with_state(outdir, seed=seed, start=start, end=end, spinup_days=spinup_days, log=log).summary


def write_readme(outdir, summary: dict) -> Path:
    outdir = Path(outdir)
    n_files, n_bytes, n_tgz = sd._tree_sizes(outdir)
    rows = "\n".join(
        f"| {b['id']} | {b['name']} | {b['area_km2']:.1f} | {'yes' if b['gauged'] else 'no (ungauged)'} | "
        f"{b['parent'] or '-'} | {'yes' if b['lakes'] else '-'} | {b['outlet'][0]:.4f}, {b['outlet'][1]:.4f} | "
        f"{summary['mean_discharge_m3s'][b['id']]:.1f} |"
        for b in summary["basins"])
    lakes = "; ".join(f"river {lk['river']}, {lk['lat'][0]:.2f}-{lk['lat'][1]:.2f} °N, {lk['area_km2']:.0f} km2 "
                      f"draining {lk['catchment_km2']:.0f} km2" for lk in summary["lakes"])
    w, s, e, n = REGION
    text = f"""# hydrocast cold sample data (synthetic)

A made-up, southern-Finland-like region at 60-61 °N where memory matters: snow every winter, frozen
ground, lakes holding water for weeks and slow groundwater, written in the **real raw formats** of
the products hydrocast reads. Nothing here is an observation. Regenerate it (byte-identical) with

    python -m tools.sampledata OUTDIR --variant cold --seed {summary['seed']} --start {summary['start']} \
--end {summary['end']}

The physics and the file layout are documented in the docstring of `tools/sampledata_cold.py`.

- Region (grid bounds, EPSG:4326): west, south, east, north = {w}, {s}, {e}, {n} (0.05° -> 24 x 24 cells).
- Period {summary['start']} .. {summary['end']} ({summary['n_days']} days); seed {summary['seed']}.
- Basin-mean precipitation about {summary['mean_annual_precip_mm']:.0f} mm/year, \
{summary['snowfall_fraction'] * 100:.0f} % of it as snow; basin-mean snowpack up to \
{summary['max_basin_swe_mm']:.0f} mm SWE.
- Lakes (linear reservoirs, {K_LAKE_DAYS:g} days): {lakes}.

## Contents

| path | what |
|---|---|
| `raw/dem/dem.tif` | DEM, float32 GeoTIFF, EPSG:4326, 1/40° x 1/60° cells, region + 0.1° margin, nodata -32767 (sea) |
| `raw/imerg/3B-HHR.MS.MRG.3IMERG.*.V07B.HDF5` | IMERG V07 half-hourly Final (HDF5, `/Grid`), \
`precipitation` mm/hr and `probabilityLiquidPrecipitation` percent, for {', '.join(summary['hhr_days'])} |
| `raw/imerg/3B-DAY[-E].MS.MRG.3IMERG.*.V07B.nc4` | IMERG V07 daily, each day without half-hourly files \
(Early run for \
{', '.join(summary['early_days'])}); with `probabilityLiquidPrecipitation` as in real V07 daily files |
| `raw/esacci/ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-*-fv09.1.nc` | ESA CCI SM daily, {summary['esacci_files']} \
files: flag bit 1 and no value where the soil is frozen or snow-covered, swath gaps, flags 2 and 16 |
| `raw/era5land/era5-land-daily-t2m-YYYY.nc` | daily mean 2 m temperature (K), ERA5-Land 0.1° points, one file \
per year (hydrocast kind `netcdf`, variable `t2m`) |
| `basins/basins.geojson`, `basins/outlets.csv`, `basins/ungauged.geojson` | 6 gauged and 2 ungauged basins |
| `discharge/discharge.csv` | `basin_id,date,discharge` (m3/s, daily, empty = missing) |
| `hydrocast.toml` | a project file for this folder (written only when none exists) |

## Basins

| id | name | area km2 | gauged | nested in | lake | outlet lon, lat | mean Q (m3/s) |
|---|---|---|---|---|---|---|---|
{rows}

## Physics in brief

Air temperature = seasonal cycle + seeded weather anomaly - 6.5 °C/km lapse rate (from the DEM);
it splits precipitation into rain and snow (all snow below {T_SNOW:g} °C, all rain above {T_RAIN:g} °C),
melts the snowpack by degree days ({DDF:g} mm/°C/day above {T_MELT:g} °C) and freezes the soil (a soil
temperature that follows the air, insulated by snow). Frozen soil sheds most rain and melt as quick
runoff; percolation feeds groundwater that drains with k = {K_GW_DAYS:g} days, which carries the rivers
through the winter low flow; the spring melt on frozen ground makes the April-May peak. Two lakes are
linear reservoirs of {K_LAKE_DAYS:g} days. IMERG's phase is the 0.1° cell's liquid fraction; ESA CCI flags
every 0.25° cell whose soil is at least half frozen or snow-covered.

## Sizes

{n_files} data files, {n_bytes / 1e6:.1f} MB uncompressed, {n_tgz / 1e6:.1f} MB as a gzip-compressed tar
(this README and hydrocast.toml excluded).
"""
    path = outdir / "README.md"
    path.write_text(text)
    return path
