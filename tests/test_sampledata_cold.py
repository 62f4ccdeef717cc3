"""The cold variant of the sample generator (tools.sampledata_cold): physics and files.

The sample is generated once per module into a temporary folder (about 25 s); the tests read the
files back the way hydrocast or a user would (h5py/netCDF4/csv and hydrocast's own readers) and
check the physics against independent computations from the generator's exposed model state
(probe cells, block means), never by re-running the generator's own code paths.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pytest

from tools import sampledata as sd
from tools import sampledata_cold as cold

GAUGED = [f"FI0{i}" for i in range(1, 7)]
LAKE_BASINS = ("FI01", "FI04")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("cold")
    state = cold.generate_with_state(out)
    return out, state


def _date_of(name: str) -> dt.date:
    return dt.datetime.strptime(re.search(r"\.(\d{8})-S", name).group(1), "%Y%m%d").date()


def _read_discharge(root: Path) -> dict[str, np.ndarray]:
    rows: dict[str, list[float]] = {}
    with open(root / "discharge/discharge.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            rows.setdefault(row["basin_id"], []).append(float(row["discharge"]) if row["discharge"] else np.nan)
    return {k: np.array(v) for k, v in rows.items()}


def _liquid_percent(t_c) -> np.ndarray:
    """The documented phase rule, written out independently: linear from -1 °C (snow) to +3 °C (rain)."""
    return 100.0 * np.clip((np.asarray(t_c, dtype=float) + 1.0) / 4.0, 0.0, 1.0)


def _roughness(q: np.ndarray) -> float:
    """Variance of the day-to-day change relative to the variance (2 (1 - lag-1 autocorrelation))."""
    ok = np.isfinite(q[1:]) & np.isfinite(q[:-1])
    return float(np.var((q[1:] - q[:-1])[ok]) / np.nanvar(q))


# ------------------------------------------------------------------------------------------------
# layout, determinism, the command line
# ------------------------------------------------------------------------------------------------
def test_layout_is_small_and_complete(sample):
    out, state = sample
    days = state.sim.days
    assert days[0] == dt.date(2015, 1, 1) and days[-1] == dt.date(2018, 12, 31) and len(days) == 1461
    names = sorted(p.name for p in (out / "raw/imerg").iterdir())
    hhr = [n for n in names if n.startswith("3B-HHR.")]
    early = [n for n in names if n.startswith("3B-DAY-E.")]
    final = [n for n in names if n.startswith("3B-DAY.")]
    assert len(hhr) == 4 * 48 and {_date_of(n) for n in hhr} == set(map(dt.date.fromisoformat, cold.HHR_DAYS))
    assert [_date_of(n) for n in early] == [dt.date(2018, 12, d) for d in (29, 30, 31)]
    assert len(final) + len(early) + 4 == 1461 and len({_date_of(n) for n in names}) == 1461
    years = sorted(p.name for p in (out / "raw/era5land").iterdir())
    assert years == [f"era5-land-daily-t2m-{y}.nc" for y in range(2015, 2019)]
    assert len(list((out / "raw/esacci").iterdir())) == state.summary["esacci_files"]
    q = _read_discharge(out)
    assert sorted(q) == GAUGED and all(v.size == 1461 for v in q.values())
    ids = [b.id for b in state.network.gauged], [b.id for b in state.network.ungauged]
    assert ids == (GAUGED, ["FI07", "FI08"])
    assert (out / "hydrocast.toml").is_file() and "--variant cold" in (out / "README.md").read_text()


def test_basins_lie_in_the_region_and_nest(sample):
    from shapely.geometry import box

    _, state = sample
    region = box(*cold.REGION).buffer(1e-9)
    by_id = {b.id: b for b in state.network.basins}
    for b in by_id.values():
        assert region.contains(b.polygon), b.id
        assert 150 <= b.area_km2 <= 3000, b.id
    # FI02 is upstream of FI01's lake, FI08 of FI04's; the side valleys drain into river B
    assert {k: by_id[k].parent for k in ("FI02", "FI05", "FI06", "FI07", "FI08")} == \
        {"FI02": "FI01", "FI05": "FI03", "FI06": "FI03", "FI07": "FI06", "FI08": "FI04"}
    assert [bool(cold.basin_lakes(state.network, by_id[k])) for k in sorted(by_id)] == \
        [k in LAKE_BASINS for k in sorted(by_id)]


def test_cold_variant_is_byte_reproducible_and_reachable_from_the_cli(tmp_path):
    """Two short runs, one through ``python -m tools.sampledata --variant cold``: identical files."""
    a, b = tmp_path / "a", tmp_path / "b"
    kw = dict(seed=5, start="2015-04-05", end="2015-04-12", spinup_days=20)
    cold.generate(a, **kw)
    assert sd.main([str(b), "--variant", "cold", "--seed", "5", "--start", "2015-04-05", "--end", "2015-04-12",
                    "--spinup-days", "20", "--quiet"]) == 0
    ta = {str(p.relative_to(a)): p.read_bytes() for p in sorted(a.rglob("*")) if p.is_file()}
    tb = {str(p.relative_to(b)): p.read_bytes() for p in sorted(b.rglob("*")) if p.is_file()}
    assert ta.keys() == tb.keys() and len(ta) > 100
    assert [k for k in ta if ta[k] != tb[k]] == []
    assert sum(k.startswith("raw/imerg/3B-HHR.") for k in ta) == 96  # 2015-04-07 and 08


# ------------------------------------------------------------------------------------------------
# snow
# ------------------------------------------------------------------------------------------------
def test_snow_water_balance_and_degree_day_melt(sample):
    _, state = sample
    pr = state.sim.probes
    P, T, rain, snow, melt, swe = (pr[k] for k in ("precip", "temp", "rain", "snowfall", "melt", "swe"))
    # the pack changes by exactly snowfall - melt (day 0: the state before the period is not exposed)
    np.testing.assert_allclose(np.diff(swe, axis=0), (snow - melt)[1:], rtol=0, atol=1e-9)
    np.testing.assert_allclose(rain + snow, P, rtol=0, atol=1e-9)
    # degree-day melt, recomputed from the pack, the snowfall and the temperature
    swe_prev = swe[:-1] + snow[1:]
    expected = np.minimum(swe_prev, 3.0 * np.maximum(T[1:], 0.0))
    np.testing.assert_allclose(melt[1:], expected, rtol=0, atol=1e-9)
    assert np.all(melt[T <= 0.0] == 0.0)  # nothing melts at or below the threshold
    assert (melt > 0).sum() > 100 and ((T > 0) & (swe > 0)).sum() > 100
    # the phase of a day's precipitation follows its temperature (half-hourly days: own diurnal cycle)
    hhr = np.isin(np.array(state.sim.days), state.sim.hhr_days)
    np.testing.assert_allclose(rain[~hhr], (P * _liquid_percent(T) / 100.0)[~hhr], rtol=0, atol=1e-9)
    # every probe holds snow in February and none in August; high ground keeps it longer
    months = np.array([d.month for d in state.sim.days])
    assert np.all(swe[months == 2].mean(axis=0) > 20.0) and np.all(swe[months == 8] == 0.0)
    last_snow = [max(i for i in range(len(months)) if months[i] <= 6 and swe[i, k] > 0 and
                     state.sim.days[i].year == 2016) for k in range(swe.shape[1])]
    assert last_snow[-1] >= last_snow[0]  # probes are ordered by elevation


def test_basin_snow_balance_and_snowfall_share(sample):
    _, state = sample
    bm = state.sim.basin_mean
    np.testing.assert_allclose(np.diff(bm["swe"], axis=1), (bm["snowfall"] - bm["melt"])[:, 1:], rtol=0, atol=1e-9)
    share = bm["snowfall"].sum(axis=1) / bm["precip"].sum(axis=1)
    assert np.all((share > 0.2) & (share < 0.6))
    annual = bm["precip"].mean(axis=1) * 365.25
    assert np.all((annual > 450) & (annual < 900))


# ------------------------------------------------------------------------------------------------
# precipitation phase in the IMERG files
# ------------------------------------------------------------------------------------------------
def test_halfhourly_phase_follows_the_temperature(sample):
    out, state = sample
    values = []
    for day in state.sim.hhr_days:
        t_hh = state.sim.imerg_hhr_temp[day][:, ::-1]  # (48, lat ascending, lon)
        for hh in range(48):
            with h5py.File(out / "raw/imerg" / sd.imerg_hhr_name(day, hh), "r") as f:
                g = f["Grid"]
                assert g["probabilityLiquidPrecipitation"].dims[1][0].name.endswith("lon")
                prob = g["probabilityLiquidPrecipitation"][0].T  # stored (time, lon, lat)
                rate = g["precipitation"][0].T
                assert g["probabilityLiquidPrecipitation"].attrs["units"] == b"percent"
            valid = rate != np.float32(-9999.9)
            assert np.all((prob == -9999) == ~valid)
            assert np.all(np.abs(prob[valid] - _liquid_percent(t_hh[hh])[valid]) <= 0.5 + 1e-6)
            values.append(prob[valid])
    v = np.concatenate(values)
    assert (v == 0).mean() > 0.05 and (v == 100).mean() > 0.05 and ((v > 0) & (v < 100)).mean() > 0.1


def test_daily_files_carry_the_phase_of_the_daily_temperature(sample):
    out, state = sample
    lon_t, lat_t = cold.t2m_axes()
    t2m = {}
    for path in sorted((out / "raw/era5land").glob("*.nc")):
        with netCDF4.Dataset(path) as nc:
            t = nc.variables["valid_time"][:]
            k = nc.variables["t2m"][:] - 273.15
        for i, day in enumerate(t):
            t2m[dt.date(1970, 1, 1) + dt.timedelta(days=int(day))] = float(k[i].mean())
    cold_days = warm_days = 0
    for i, day in enumerate(state.sim.days):
        if day in state.sim.imerg_hhr:
            continue
        run = "early" if day >= dt.date(2018, 12, 29) else "final"
        with netCDF4.Dataset(out / "raw/imerg" / sd.imerg_day_name(day, run)) as nc:
            v = nc.variables["probabilityLiquidPrecipitation"]
            assert v.dimensions == ("time", "lon", "lat") and v.units == "percent" and v.dtype == np.int16
            prob = np.ma.filled(v[0], -9999).T.astype(float)  # (lat ascending, lon)
            precip = np.ma.filled(nc.variables["precipitation"][0], np.nan).T
        assert np.all((prob == -9999) == ~np.isfinite(precip))
        ok = prob != -9999
        if i % 7 == 0:
            expected = _liquid_percent(state.sim.imerg_temp[i][::-1])
            assert np.all(np.abs(prob[ok] - expected[ok]) <= 0.5 + 1e-6), day
        # against the temperature file (another grid): the phase follows the regional temperature
        if t2m[day] < -3.0:
            assert prob[ok].mean() < 15.0, day
            cold_days += 1
        elif t2m[day] > 5.0:
            assert prob[ok].mean() > 85.0, day
            warm_days += 1
    assert cold_days > 150 and warm_days > 500


# ------------------------------------------------------------------------------------------------
# frozen soil in ESA CCI
# ------------------------------------------------------------------------------------------------
def test_cci_frozen_flag_exactly_where_the_soil_is_cold(sample):
    out, state = sample
    index = {d: i for i, d in enumerate(state.sim.days)}
    flagged_by_month = np.zeros(13)
    files_by_month = np.zeros(13)
    for path in sorted((out / "raw/esacci").glob("*.nc")):
        day = dt.datetime.strptime(path.name.split("-")[5][:8], "%Y%m%d").date()
        with netCDF4.Dataset(path) as nc:
            nc.set_auto_mask(False)
            sm = nc.variables["sm"][0]
            flag = nc.variables["flag"][0].astype(int)
        cold_frac = state.sim.cci_cold[index[day]]
        expected = np.nan_to_num(cold_frac, nan=0.0) >= 0.5
        seen = flag != 127  # 127 = fill (sea, swath gap), which has every bit set
        frozen = seen & (flag & 1 > 0)
        assert np.array_equal(frozen[seen], expected[seen]), day
        assert np.all(sm[frozen] == -9999.0)
        assert np.all(flag[~np.isfinite(cold_frac)] == 127)  # under half soil (sea): fill
        flagged_by_month[day.month] += frozen.sum() / max(seen.sum(), 1)
        files_by_month[day.month] += 1
    share = flagged_by_month[1:] / files_by_month[1:]
    assert share[0] > 0.9 and share[1] > 0.9  # January, February: frozen or snow-covered
    assert np.all(share[5:9] == 0.0)  # June..September: never


# ------------------------------------------------------------------------------------------------
# discharge: lakes, spring melt, winter low flow
# ------------------------------------------------------------------------------------------------
def test_lakes_smooth_the_discharge(sample):
    out, state = sample
    q = _read_discharge(out)
    # the observed record: a lake basin against its lake-free neighbour of about the same size
    assert _roughness(q["FI01"]) < 0.7 * _roughness(q["FI03"])
    assert _roughness(q["FI04"]) < 0.7 * _roughness(q["FI03"])
    # the same weather without lakes: the lake basins get rougher, the others do not change at all
    sim = state.sim
    bare = cold.run_model(state.summary["seed"], sim.days, state.terrain, state.network, hhr_days=sim.hhr_days,
                          lakes=False)
    for i, bid in enumerate(sim.basin_ids):
        if bid in LAKE_BASINS:
            assert _roughness(sim.q[i]) < 0.6 * _roughness(bare.q[i]), bid
            # a lake delays the water and evaporates a little of it; it makes none
            assert 0.9 < sim.q[i].sum() / bare.q[i].sum() <= 1.0, bid
        else:
            np.testing.assert_array_equal(sim.q[i], bare.q[i])
    assert np.all(sim.lake_outflow > 0)  # a linear reservoir never runs dry


def test_spring_melt_peak_and_winter_low_flow(sample):
    out, state = sample
    q = _read_discharge(out)
    days = np.array(state.sim.days)
    months = np.array([d.month for d in days])
    years = np.array([d.year for d in days])
    for bid, series in q.items():
        for year in range(2015, 2019):
            spring = series[(years == year) & np.isin(months, (4, 5))]
            winter = series[(years == year) & np.isin(months, (1, 2))]
            assert np.nanmax(spring) > 2.0 * np.nanmean(winter), (bid, year)
            # winter low flow: below the yearly mean, but carried by groundwater (never near zero)
            assert np.nanmean(winter) < np.nanmean(series[years == year]), (bid, year)
            assert np.nanmin(winter) > 0.1 * np.nanmean(series), (bid, year)


def test_baseflow_recedes_slowly_in_frozen_spells(sample):
    """After a week with no rain and no melt anywhere in a lake-free basin, the flow is baseflow
    from a store with k = 150 days: it recedes by about exp(-1/150) a day, not by the percent or
    more a day of a fast store. (Still fed by slow percolation, it can even rise a little on the
    day the soil thaws and percolation resumes.)"""
    _, state = sample
    sim = state.sim
    i = sim.basin_ids.index("FI03")
    water = sim.basin_mean["rain"][i] + sim.basin_mean["melt"][i]
    dry = np.array([t >= 7 and water[t - 7:t + 1].max() < 1e-6 for t in range(len(water))])
    ratio = sim.q[i][1:][dry[1:] & dry[:-1]] / sim.q[i][:-1][dry[1:] & dry[:-1]]
    assert ratio.size > 30
    assert np.mean(ratio < 1.0) > 0.9
    assert math.exp(-1 / 150) - 0.002 < np.median(ratio) < 1.0


# ------------------------------------------------------------------------------------------------
# hydrocast's own readers
# ------------------------------------------------------------------------------------------------
def test_hydrocast_readers_accept_the_files(sample):
    from hydrocast import config
    from hydrocast.sources import get_reader

    out, state = sample
    bbox = cold.REGION
    scan, read = get_reader("imerg")
    day = dt.date(2016, 1, 20)
    i = state.sim.days.index(day)
    daily = out / "raw/imerg" / sd.imerg_day_name(day)
    info = scan(daily, {})
    assert info.step == "1D" and info.run == "final" and list(info.days) == [np.datetime64("2016-01-20")]
    p = read(daily, {}, bbox)
    assert p.attrs["units"] == "mm/day" and p.shape == (1, 14, 14)
    lon, lat = cold.imerg_axes()
    cols, rows = np.isin(lon, p.x.values), np.isin(lat, p.y.values)
    expected = state.sim.imerg_daily[i][::-1][np.ix_(rows, cols)]
    np.testing.assert_allclose(p.values[0], expected, rtol=1e-6, atol=1e-6)
    phase = read(daily, {"variable": "probabilityLiquidPrecipitation"}, bbox)
    assert phase.attrs["units"] == "percent"
    np.testing.assert_allclose(phase.values[0], np.rint(_liquid_percent(state.sim.imerg_temp[i][::-1]))
                               [np.ix_(rows, cols)], atol=1.0)
    hh = out / "raw/imerg" / sd.imerg_hhr_name(state.sim.hhr_days[0], 24)
    assert scan(hh, {}).step == "30min"
    ph = read(hh, {"variable": "probabilityLiquidPrecipitation"}, bbox).values
    assert np.nanmin(ph) >= 0 and np.nanmax(ph) <= 100

    scan, read = get_reader("esacci_sm")
    day = dt.date(2016, 2, 10)
    path = next((out / "raw/esacci").glob(f"*-{day:%Y%m%d}000000-*.nc"))
    assert scan(path, {}).step == "1D"
    with netCDF4.Dataset(path) as nc:
        flag = nc.variables["flag"][0].filled(127).astype(int)
    sm = read(path, {}, None).values[0]
    frozen = (flag != 127) & (flag & 1 > 0)
    assert np.all(np.isnan(sm[frozen])) and frozen.sum() > 0
    thaw = next((out / "raw/esacci").glob("*-20160413000000-*.nc"))  # partly frozen, with a swath gap
    with netCDF4.Dataset(thaw) as nc:
        flag = nc.variables["flag"][0].filled(127).astype(int)
    signal = read(thaw, {"variable": "frozen"}, None).values[0]  # the flag as a signal: 1 / 0 / NaN (127)
    assert np.array_equal(signal, np.where(flag == 127, np.nan, flag & 1), equal_nan=True)
    assert 0 < np.nansum(signal) < np.isfinite(signal).sum() and np.isnan(signal).sum() > 9  # (9: the sea)
    summer = next((out / "raw/esacci").glob("*-20160710000000-*.nc"))
    assert np.isfinite(read(summer, {}, None).values).sum() >= 20

    scan, read = get_reader("netcdf")
    t2m_path = out / "raw/era5land" / cold.era5land_name(2017)
    assert len(scan(t2m_path, {"variable": "t2m"}).days) == 365
    t = read(t2m_path, {"variable": "t2m"}, bbox)
    assert t.attrs["units"] == "K" and t.shape[0] == 365
    j = state.sim.days.index(dt.date(2017, 1, 1))
    lon_t, lat_t = cold.t2m_axes()
    expected = state.sim.t2m[j:j + 365][:, np.isin(lat_t, t.y.values)][:, :, np.isin(lon_t, t.x.values)] + 273.15
    np.testing.assert_allclose(t.values, expected, atol=1e-3)

    scan, read = get_reader("dem")
    z = read(out / "raw/dem/dem.tif", {}, bbox).values
    assert np.isnan(z).any() and 100 < np.nanmax(z) < 500  # the sea is nodata; a low upland

    cfg = config.load(out / "hydrocast.toml")
    assert [s.name for s in cfg.sources] == ["precipitation", "precipitation_phase", "air_temperature",
                                             "soil_moisture", "frozen_ground", "dem"]
    by_name = {s.name: s for s in cfg.sources}
    assert by_name["frozen_ground"].kind == "esacci_sm" and by_name["frozen_ground"].options == {"variable": "frozen"}
    assert by_name["frozen_ground"].paths == by_name["soil_moisture"].paths


def test_cold_config_ingests_end_to_end(tmp_path):
    """Six thawing days of the cold sample through ``hydrocast ingest --config``: the cube holds every dynamic
    source with its quantity's attributes; frozen_ground is each day's 0.25° flag bit on the nested grid."""
    from typer.testing import CliRunner

    from hydrocast.cli import app

    cold.generate(tmp_path, seed=5, start="2015-04-01", end="2015-04-06", spinup_days=20)
    res = CliRunner().invoke(app, ["ingest", "--config", str(tmp_path / "hydrocast.toml"), "--quiet"])
    assert res.exit_code == 0, res.output
    with netCDF4.Dataset(tmp_path / "work/cube.nc") as ds:
        days = [dt.date(1970, 1, 1) + dt.timedelta(days=int(d)) for d in ds["time"][:]]
        units = {n: ds[n].units for n in ("precipitation", "precipitation_phase", "soil_moisture", "frozen_ground")}
        t2m, fg, sm = (ds[n][:].filled(np.nan) for n in ("air_temperature", "frozen_ground", "soil_moisture"))
        lon, lat = ds["x"][:], ds["y"][:]
    assert days == [dt.date(2015, 4, d) for d in range(1, 7)]
    assert units == {"precipitation": "mm", "precipitation_phase": "percent", "soil_moisture": "m3 m-3",
                     "frozen_ground": "1"}
    assert np.isfinite(t2m).all() and 255 < t2m.min() < t2m.max() < 290  # kelvin, as in the files
    # the 0.05° grid nests in the 0.25° ESA CCI grid: each cell takes its CCI pixel's 1 / 0 / NaN
    c_lon, c_lat = cold.esacci_axes()  # lat north -> south
    rows = np.floor((c_lat[0] + 0.125 - lat) / 0.25).astype(int)  # the 0.25° pixel holding each cell centre
    cols = np.floor((lon - (c_lon[0] - 0.125)) / 0.25).astype(int)
    seen = set()
    for i, day in enumerate(days):
        paths = list((tmp_path / "raw/esacci").glob(f"*-{day:%Y%m%d}000000-*.nc"))
        if not paths:  # a day without a file
            assert np.isnan(fg[i]).all()
            continue
        with netCDF4.Dataset(paths[0]) as nc:
            f = nc.variables["flag"][0].filled(127).astype(int)[np.ix_(rows, cols)]
        expected = np.where(f == 127, np.nan, (f & 1).astype(float))
        np.testing.assert_array_equal(fg[i], expected, err_msg=str(day))
        assert np.all(np.isnan(sm[i][expected == 1]))  # sm is masked wherever frozen_ground is 1
        seen |= set(np.unique(fg[i][np.isfinite(fg[i])]).tolist())
    assert seen == {0.0, 1.0}
