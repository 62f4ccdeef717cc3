"""The synthetic sample generator (tools.sampledata) and the committed sample_data/ it made.

Format checks compare against the real example files in ../shared/data where the layout is
known from them (attribute names, dtypes, dimension order); physical checks read the committed
sample the way a user would (netCDF4/h5py/csv), not through the generator's internals.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pytest

from tools import sampledata as sd

SMALL = dict(seed=42, start="2015-01-12", end="2015-01-19", spinup_days=10)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _date_of(name: str) -> dt.date:
    return dt.datetime.strptime(re.search(r"\.(\d{8})-S", name).group(1), "%Y%m%d").date()


def _read_discharge(root: Path) -> dict[str, dict[dt.date, float]]:
    out: dict[str, dict[dt.date, float]] = {}
    with open(root / "discharge/discharge.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            v = float(row["discharge"]) if row["discharge"] != "" else np.nan
            out.setdefault(row["basin_id"], {})[dt.date.fromisoformat(row["date"])] = v
    return out


def _basins(root: Path, name: str = "basins.geojson"):
    from shapely.geometry import shape

    fc = json.loads((root / "basins" / name).read_text())
    return {f["properties"]["id"]: (shape(f["geometry"]), f["properties"]) for f in fc["features"]}


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    """The generator run twice with the same seed on a short period (includes HHR and Early days)."""
    a = tmp_path_factory.mktemp("run_a")
    b = tmp_path_factory.mktemp("run_b")
    sd.generate(a, **SMALL)
    sd.generate(b, **SMALL)
    return a, b


# ------------------------------------------------------------------------------------------------
# determinism
# ------------------------------------------------------------------------------------------------
def test_generator_is_byte_reproducible(small_runs):
    a, b = small_runs
    ta, tb = _tree(a), _tree(b)
    assert ta.keys() == tb.keys()
    assert len(ta) > 100
    different = [k for k in ta if ta[k] != tb[k]]
    assert different == []


def test_small_run_layout(small_runs):
    a, _ = small_runs
    names = sorted(p.name for p in (a / "raw/imerg").iterdir())
    hhr = [n for n in names if n.startswith("3B-HHR.")]
    final = [n for n in names if n.startswith("3B-DAY.")]
    early = [n for n in names if n.startswith("3B-DAY-E.")]
    assert len(hhr) == 96 and {_date_of(n) for n in hhr} == {dt.date(2015, 1, 14), dt.date(2015, 1, 15)}
    assert [_date_of(n) for n in early] == [dt.date(2015, 1, 17), dt.date(2015, 1, 18), dt.date(2015, 1, 19)]
    assert [_date_of(n) for n in final] == [dt.date(2015, 1, 12), dt.date(2015, 1, 13), dt.date(2015, 1, 16)]
    q = _read_discharge(a)
    assert len(q) == 6 and all(len(v) == 8 for v in q.values())


def test_shortened_period_reproduces_the_committed_weather(small_runs, sample_data):
    """Rain depends only on (seed, date): the small run's Final files equal the committed ones."""
    a, _ = small_runs
    same = [p.name for p in (a / "raw/imerg").iterdir() if not p.name.startswith("3B-DAY-E")]
    assert len(same) == 99
    for name in same:
        assert (a / "raw/imerg" / name).read_bytes() == (sample_data / "raw/imerg" / name).read_bytes(), name
    for rel in ("raw/dem/dem.tif", "basins/basins.geojson", "basins/ungauged.geojson", "basins/outlets.csv"):
        assert (a / rel).read_bytes() == (sample_data / rel).read_bytes(), rel


def test_rerun_with_a_shorter_period_leaves_no_stale_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    sd.generate(tmp_path, seed=3, start="2016-03-01", end="2016-03-06", spinup_days=5)
    sd.generate(tmp_path, seed=3, start="2016-03-01", end="2016-03-03", spinup_days=5)
    imerg = sorted(p.name for p in (tmp_path / "raw/imerg").iterdir())
    assert [_date_of(n) for n in imerg] == [dt.date(2016, 3, d) for d in (1, 2, 3)]
    assert all(n.startswith("3B-DAY-E.") for n in imerg)  # the last 3 days are Early-run files
    assert all(len(v) == 3 for v in _read_discharge(tmp_path).values())
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_halfhours_sum_to_the_daily_total():
    terrain = sd.make_terrain(7)
    day = dt.date(2016, 2, 3)
    w = sd.Weather(7, terrain, forced_days=[day])
    half = w.halfhourly(day)
    daily = w.daily(day)
    assert half.shape == (48, *daily.shape)
    assert daily.max() > 5.0  # the forced front makes it a stormy day
    np.testing.assert_allclose(half.sum(axis=0), daily, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------------------------------
# formats, compared with the real example files
# ------------------------------------------------------------------------------------------------
def _h5_attr(obj, key):
    v = obj.attrs[key]
    return v.decode() if isinstance(v, bytes) else v


def test_imerg_hhr_layout_matches_real_v07(sample_data, shared_data):
    real = h5py.File(next((shared_data / "imerg-hhr-gpm-api-cut").glob("*V07A.HDF5")), "r")
    name = sd.imerg_hhr_name(dt.date(2019, 11, 2), 29)
    assert name == "3B-HHR.MS.MRG.3IMERG.20191102-S143000-E145959.0870.V07B.HDF5"
    with h5py.File(sample_data / "raw/imerg" / name, "r") as f:
        assert set(real.attrs) <= set(f.attrs)  # FileHeader, FileInfo
        header = _h5_attr(f, "FileHeader")
        assert "StartGranuleDateTime=2019-11-02T14:30:00.000Z;" in header
        assert f"FileName={name};" in header and "ProductVersion=V07B;" in header
        for var in ("precipitation", "probabilityLiquidPrecipitation", "lat", "lon", "time", "time_bnds"):
            ours, theirs = f["Grid"][var], real["Grid"][var]
            assert ours.dtype == theirs.dtype, var
            assert ours.ndim == theirs.ndim, var
            assert set(ours.attrs) <= set(theirs.attrs), (var, set(ours.attrs) - set(theirs.attrs))
            assert _h5_attr(ours, "DimensionNames") == _h5_attr(theirs, "DimensionNames")
        p = f["Grid/precipitation"]
        lon, lat = f["Grid/lon"][:], f["Grid/lat"][:]
        assert p.shape == (1, lon.size, lat.size)  # (time, lon, lat)
        assert np.all(np.diff(lat) > 0) and np.all(np.diff(lon) > 0)
        assert lon[0] <= -9.0 and lon[-1] >= -7.0 and lat[0] <= 39.8 and lat[-1] >= 41.8
        assert _h5_attr(p, "units") == "mm/hr" and p.attrs["_FillValue"] == np.float32(-9999.9)
        assert _h5_attr(f["Grid/time"], "units") == "seconds since 1980-01-06 00:00:00 UTC"
        t0 = int(f["Grid/time"][0])
        assert dt.datetime(1980, 1, 6) + dt.timedelta(seconds=t0) == dt.datetime(2019, 11, 2, 14, 30)
        assert list(f["Grid/time_bnds"][0]) == [t0, t0 + 1800]
        q = f["Grid/probabilityLiquidPrecipitation"]
        assert _h5_attr(q, "units") == "percent" and q.dtype == np.int16
    with netCDF4.Dataset(sample_data / "raw/imerg" / name) as nc:
        assert nc.groups["Grid"].variables["precipitation"].dimensions == ("time", "lon", "lat")


def test_imerg_daily_layout(sample_data):
    path = sample_data / "raw/imerg" / sd.imerg_day_name(dt.date(2017, 2, 9))
    with netCDF4.Dataset(path) as nc:
        assert nc.data_model == "NETCDF4" and not nc.groups
        assert nc.BeginDate == "2017-02-09" and "StartGranuleDateTime=2017-02-09T00:00:00.000Z" in nc.FileHeader
        p = nc.variables["precipitation"]
        assert p.dimensions == ("time", "lon", "lat") and p.dtype == np.float32
        assert p.units == "mm/day" and p._FillValue == np.float32(-9999.9)
        cnt = nc.variables["precipitation_cnt"]
        assert cnt.dimensions == ("time", "lon", "lat") and cnt.dtype == np.int16 and cnt.units == "count"
        t = nc.variables["time"]
        assert t.units == "days since 1970-01-01 00:00:00Z"
        days = (dt.date(2017, 2, 9) - dt.date(1970, 1, 1)).days
        assert int(t[0]) == days and list(nc.variables["time_bnds"][0]) == [days, days + 1]
        assert np.all(np.diff(nc.variables["lat"][:]) > 0)


def test_esacci_layout_matches_real(sample_data, shared_data):
    real = netCDF4.Dataset(next((shared_data / "esa-cci-sm").glob("*COMBINED*.nc")))
    path = sample_data / "raw/esacci" / sd.esacci_name(dt.date(2016, 3, 5))
    with netCDF4.Dataset(path) as nc:
        assert nc.data_model == "NETCDF4_CLASSIC"
        assert nc.product_version == "09.1"
        assert set(real.ncattrs()) <= set(nc.ncattrs()), set(real.ncattrs()) - set(nc.ncattrs())
        for var in ("lat", "lon", "time", "t0", "sm", "sm_uncertainty", "flag"):
            ours, theirs = nc.variables[var], real.variables[var]
            assert ours.dimensions == theirs.dimensions, var
            assert ours.dtype == theirs.dtype, var
            assert set(ours.ncattrs()) <= set(theirs.ncattrs()) | {"flag_values", "flag_meanings"}, var
        assert nc.dimensions["time"].size == 1
        lat = nc.variables["lat"][:]
        assert np.all(np.diff(lat) < 0)  # north -> south
        assert np.allclose(np.diff(nc.variables["lon"][:]), 0.25)
        assert nc.variables["sm"].units == "m3 m-3" and nc.variables["sm"]._FillValue == np.float32(-9999.0)
        assert nc.variables["flag"]._FillValue == np.int8(127)
        assert nc.variables["t0"].units == real.variables["t0"].units


def test_dem_geotiff(sample_data):
    import rasterio

    with rasterio.open(sample_data / "raw/dem/dem.tif") as src:
        assert src.crs.to_epsg() == 4326 and src.dtypes[0] == "int16" and src.nodata == -32768
        assert np.allclose(src.res, (1 / 120, 1 / 120))
        assert np.allclose(src.bounds, (-8.9, 39.9, -7.1, 41.7))
        assert src.profile["tiled"] and src.profile["compress"] == "deflate"
        z = src.read(1)
    void = z == -32768
    assert 0 < void.sum() < 0.05 * z.size
    assert void[0, 0] and not void[-1, -1]  # the sea is in the north-west corner
    assert 500 < z[~void].max() < 2500 and z[~void].min() >= 0


def test_writers_accept_any_latitude_order(tmp_path):
    lon = np.array([-8.05, -7.95, -7.85])
    lat_desc = np.array([40.25, 40.15])
    p = np.array([[1.0, 2.0, 3.0], [4.0, np.nan, 6.0]])  # (lat, lon), lat north -> south
    day = dt.date(2021, 3, 1)
    path = sd.write_imerg_day(tmp_path / sd.imerg_day_name(day, "late"), day, p, lon, lat_desc, run="late")
    assert path.name.startswith("3B-DAY-L.")
    with netCDF4.Dataset(path) as nc:
        assert list(nc.variables["lat"][:]) == [40.15, 40.25]
        v = nc.variables["precipitation"]
        v.set_auto_mask(False)
        arr = v[0]  # (lon, lat)
        assert arr[0, 1] == 1.0 and arr[2, 0] == 6.0 and arr[1, 0] == np.float32(-9999.9)
        assert nc.variables["precipitation_cnt"][0, 1, 0] == 0 and nc.variables["precipitation_cnt"][0, 0, 0] == 48
        assert nc.DOI == "10.5067/GPM/IMERGDL/DAY/07"
    hh = sd.write_imerg_hhr(tmp_path / sd.imerg_hhr_name(day, 3, "early"), day, 3, p, lon, lat_desc, run="early")
    assert hh.name == "3B-HHR-E.MS.MRG.3IMERG.20210301-S013000-E015959.0090.V07B.HDF5"
    with h5py.File(hh, "r") as f:
        assert f["Grid/precipitation"][0, 2, 0] == np.float32(6.0)
        assert f["Grid/probabilityLiquidPrecipitation"][0, 1, 0] == -9999
    lat_asc = lat_desc[::-1]
    cci = sd.write_esacci_day(tmp_path / sd.esacci_name(day), day, p[::-1], np.zeros((2, 3), int), lon, lat_asc)
    with netCDF4.Dataset(cci) as nc:
        assert list(nc.variables["lat"][:]) == [40.25, 40.15]
        assert nc.variables["sm"][0, 0, 0] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------
# the committed sample: contents and physics
# ------------------------------------------------------------------------------------------------
def test_imerg_file_set(sample_data):
    names = sorted(p.name for p in (sample_data / "raw/imerg").iterdir())
    hhr = [n for n in names if n.startswith("3B-HHR.")]
    early = [n for n in names if n.startswith("3B-DAY-E.")]
    final = [n for n in names if n.startswith("3B-DAY.")]
    assert len(hhr) == 4 * 48 and len(early) == 3
    covered = sorted({_date_of(n) for n in names})
    assert covered[0] == dt.date(2015, 1, 1) and covered[-1] == dt.date(2020, 12, 31)
    assert len(covered) == 2192 == len(final) + len(early) + 4  # each day exactly once
    assert all(_date_of(n) >= dt.date(2020, 12, 29) for n in early)


def test_basins_and_outlets(sample_data):
    from shapely.geometry import Point, box

    gauged = _basins(sample_data)
    ungauged = _basins(sample_data, "ungauged.geojson")
    assert sorted(gauged) == [f"PT0{i}" for i in range(1, 7)] and sorted(ungauged) == ["PT07", "PT08"]
    region = box(*sd.REGION).buffer(1e-9)
    with open(sample_data / "basins/outlets.csv", newline="") as fh:
        outlets = {r["id"]: (float(r["lon"]), float(r["lat"])) for r in csv.DictReader(fh)}
    assert sorted(outlets) == sorted(gauged)
    for bid, (geom, props) in {**gauged, **ungauged}.items():
        assert 150 <= props["area_km2"] <= 3000, bid
        assert region.contains(geom), bid
        assert geom.distance(Point(props["outlet_lon"], props["outlet_lat"])) < 1e-6, bid
        if bid in outlets:
            assert outlets[bid] == pytest.approx((props["outlet_lon"], props["outlet_lat"]))
    for _bid, (geom, _) in ungauged.items():
        assert all(not geom.equals(g) for g, _ in gauged.values())


def _nested_pairs(sample_data):
    gauged = _basins(sample_data)
    return [(inner, outer) for inner, (gi, _) in gauged.items() for outer, (go, _) in gauged.items()
            if inner != outer and go.buffer(1e-9).contains(gi)]


def test_nested_basin_has_less_water_than_its_parent(sample_data):
    """The outer gauge carries the inner one's water plus its own: less on average and on almost
    every day. (On a few days a flood wave from a storm on the upper basin has not yet reached the
    outer gauge, as in real rivers.)"""
    pairs = _nested_pairs(sample_data)
    assert len(pairs) >= 1
    q = _read_discharge(sample_data)
    for inner, outer in pairs:
        both = np.array([(q[inner][d], q[outer][d]) for d in q[inner]
                         if np.isfinite(q[inner][d]) and np.isfinite(q[outer][d])])
        assert len(both) > 2000
        assert both[:, 0].mean() < 0.8 * both[:, 1].mean(), (inner, outer)
        assert np.mean(both[:, 0] < both[:, 1]) > 0.98, (inner, outer)


def test_discharge_has_gaps(sample_data):
    q = _read_discharge(sample_data)
    assert sorted(q) == [f"PT0{i}" for i in range(1, 7)]
    longest, singles = 0, 0
    for series in q.values():
        dates = sorted(series)
        assert dates[0] == dt.date(2015, 1, 1) and dates[-1] == dt.date(2020, 12, 31) and len(dates) == 2192
        miss = np.array([not np.isfinite(series[d]) for d in dates])
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, miss.astype(int), 0])))[::2]
        longest = max(longest, runs.max(initial=0))
        singles += int((runs == 1).sum())
        assert miss.mean() < 0.05
        assert np.nanmin([series[d] for d in dates]) > 0
    assert 7 <= longest <= 21 and singles >= 10


def _imerg_basin_rain(sample_data, geoms: dict, start: dt.date, end: dt.date) -> dict[str, dict[dt.date, float]]:
    """Basin-mean daily rain (mm) from the IMERG daily files: mean of the 0.1° cells centred inside."""
    from shapely.geometry import Point

    lon, lat = sd.imerg_axes()
    inside = {k: np.array([[g.contains(Point(x, y)) for y in lat] for x in lon]) for k, g in geoms.items()}
    out: dict[str, dict[dt.date, float]] = {k: {} for k in geoms}
    for path in sorted((sample_data / "raw/imerg").glob("3B-DAY*.nc4")):
        d = _date_of(path.name)
        if start <= d <= end:
            with netCDF4.Dataset(path) as nc:
                p = np.ma.filled(nc.variables["precipitation"][0], np.nan)  # (lon, lat)
            for k, m in inside.items():
                out[k][d] = float(p[m].mean())
    return out


def test_discharge_responds_to_rain_with_a_delay(sample_data):
    gauged = _basins(sample_data)
    q = _read_discharge(sample_data)
    start, end = dt.date(2019, 1, 1), dt.date(2020, 12, 28)
    dates = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    best = {}
    rains = _imerg_basin_rain(sample_data, {k: gauged[k][0] for k in ("PT01", "PT02")}, start, end)
    for bid, rain in rains.items():
        p = np.array([rain.get(d, np.nan) for d in dates])
        qq = np.array([q[bid][d] for d in dates])
        corr = {}
        for lag in range(-3, 7):
            a = p[: len(p) - lag] if lag >= 0 else p[-lag:]
            b = qq[lag:] if lag >= 0 else qq[: len(qq) + lag]
            ok = np.isfinite(a) & np.isfinite(b)
            corr[lag] = np.corrcoef(a[ok], b[ok])[0, 1]
        best[bid] = max(corr, key=corr.get)
        assert corr[best[bid]] > 0.5, bid
        assert corr[1] > corr[-1] + 0.1, bid
    assert best["PT01"] >= 1  # the large basin's flood arrives a day or more after the rain
    assert 0 <= best["PT02"] <= best["PT01"]  # the small upstream basin responds no later


def test_soil_moisture_range_flags_and_season(sample_data):
    files = sorted((sample_data / "raw/esacci").glob("ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-*-fv09.1.nc"))
    dates = [dt.datetime.strptime(p.name.split("-")[5][:8], "%Y%m%d").date() for p in files]
    missing = 2192 - len(files)
    assert 0.005 * 2192 <= missing <= 0.03 * 2192
    winter, summer = [], []
    trap = barren = gaps = low_weight = 0
    for path, d in zip(files, dates):
        if d.year != 2018:
            continue
        with netCDF4.Dataset(path) as nc:
            nc.set_auto_mask(False)
            sm = nc.variables["sm"][0]
            flag = nc.variables["flag"][0]
        valid = sm != -9999.0
        assert np.all((sm[valid] > 0) & (sm[valid] <= 0.5))
        good = valid & (flag & 0b0111111 == 0)
        trap += int(np.any(valid & (flag & 2 > 0)))
        low_weight += int(np.any(valid & (flag & 16 > 0)))
        barren += int(np.any(valid & (flag & 64 > 0)))
        gaps += int(np.any((flag == 127) & (np.arange(sm.shape[1]) >= 2)[None, :]))
        if d.month in (12, 1, 2):
            winter.append(sm[good].mean())
        elif d.month in (6, 7, 8):
            summer.append(sm[good].mean())
    assert trap > 300 and barren > 300 and gaps > 30 and low_weight > 3
    assert np.mean(winter) > np.mean(summer) + 0.1
