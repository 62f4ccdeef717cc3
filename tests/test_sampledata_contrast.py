"""The contrast variant of the sample generator (tools.sampledata_contrast): geology, storms, files.

The physics is checked by running the generator's hydrological model on made-up weather (one
storm, placed by the test) and comparing the discharge with that of a run without it, never by
re-running the variant's own code paths on its own weather.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from tools import sampledata as sd
from tools import sampledata_contrast as contrast

SEED = sd.DEFAULT_SEED


@pytest.fixture(scope="module")
def region():
    terrain = sd.make_terrain(SEED)
    return terrain, sd.delineate_basins(SEED, terrain)


def _model_lonlat():
    """Longitude and latitude of every cell of the DEM window of the model grid (where basin masks live)."""
    lon, lat = np.meshgrid(sd.model_lon(), sd.model_lat())
    return sd._window(lon, sd.DEM_WIN), sd._window(lat, sd.DEM_WIN)


def test_the_border_cuts_the_large_basins_and_spares_the_upper_ones(region):
    _, net = region
    perm = sd._window(contrast.permeable(SEED), sd.DEM_WIN)
    lon, _ = _model_lonlat()
    share = {b.id: float(perm[b.mask].mean()) for b in net.gauged}
    assert share == pytest.approx(contrast.permeable_shares(SEED))
    assert share["PT02"] == share["PT06"] == 0.0  # the upper basins lie in the uplands
    assert share["PT05"] > 0.95  # the small lowland basin on the permeable ground
    for big in ("PT01", "PT03", "PT04"):
        assert 0.1 < share[big] < 0.9, (big, share[big])
    # a sharp border: permeable exactly west of it, within the meander's amplitude of BORDER_LON
    west = lon[perm].max()
    east = lon[~perm].min()
    assert west < contrast.BORDER_LON + 0.05 and east > contrast.BORDER_LON - 0.05
    rows = perm.any(axis=1)
    for r in np.nonzero(rows)[0][::20]:  # on each row of cells the permeable ones come first
        row = perm[r]
        assert not row[np.argmin(row):].any()


def test_clusters_come_on_top_of_the_default_storms_and_mostly_in_summer():
    days = [dt.date(2019, 1, 1) + dt.timedelta(days=i) for i in range(365)]
    per_month = np.zeros(12)
    for day in days:
        base = sd.storms_for_day(SEED, day)
        both = contrast.storms_for_day(SEED, day)
        assert both.shape[0] >= base.shape[0]
        assert both[: base.shape[0]].tobytes() == base.tobytes()  # the default region's weather, unchanged
        extra = both[base.shape[0]:]
        per_month[day.month - 1] += extra.shape[0]
        if extra.shape[0]:
            # cells of one cluster move together: group them by their (speed, heading)
            for key in {(float(s["speed"]), float(s["heading"])) for s in extra}:
                cells = extra[(extra["speed"] == key[0]) & (extra["heading"] == key[1])]
                assert 3 <= len(cells) <= 5
                spread = np.hypot(cells["x"] - cells["x"].mean(), cells["y"] - cells["y"].mean())
                assert spread.max() < 5 * contrast.CLUSTER["spread_km"]
                assert (cells["sa"] <= contrast.CLUSTER["size"][1]).all()
    summer, winter = per_month[5:8].sum(), per_month[[0, 1, 11]].sum()
    assert summer > 2 * winter > 0


def _one_storm(lon: float, lat: float, day: dt.date):
    """A storms function with a single slow 10-km cell over (lon, lat) at noon of ``day``."""
    def storms(seed, d, forced=False):
        if sd._as_date(d) != day:
            return np.zeros(0, dtype=sd.STORM_DTYPE)
        s = np.zeros(1, dtype=sd.STORM_DTYPE)
        s["life"], s["speed"], s["heading"] = 6.0, 1.0, 0.0
        s["sa"] = s["sc"] = 10.0
        s["i0"] = 10.0
        s["x"] = (lon - sd.LON0) * sd.KM_PER_DEG_LON
        s["y"] = (lat - sd.LAT0) * sd.KM_PER_DEG_LAT
        s["t_mid"] = (day - sd.UNIX_EPOCH.date()).days * 24.0 + 12.0
        return s
    return storms


def test_rain_on_the_uplands_runs_off_and_on_the_lowlands_comes_out_weeks_later(region):
    """The same storm over PT01's impermeable part and over its permeable part: the first gives
    the higher peak within days, the second more water a month later (recharge to the slow
    groundwater store). A basin-mean rainfall cannot tell the two storms apart."""
    terrain, net = region
    pt01 = next(b for b in net.gauged if b.id == "PT01")
    perm = sd._window(contrast.permeable(SEED), sd.DEM_WIN)
    lon, lat = _model_lonlat()
    start, storm_day = dt.date(2019, 3, 1), dt.date(2019, 3, 3)
    days = [start + dt.timedelta(days=i) for i in range(45)]
    base = contrast.physics(SEED)
    runs = {}
    for name, cells in (("none", None), ("uplands", pt01.mask & ~perm), ("lowlands", pt01.mask & perm)):
        if cells is None:
            storms = _one_storm(0.0, 0.0, dt.date(1900, 1, 1))
        else:  # the storm over the middle of that part of the basin (a cell of it, not its centroid)
            r, c = np.argwhere(cells)[len(np.argwhere(cells)) // 2]
            storms = _one_storm(float(lon[r, c]), float(lat[r, c]), storm_day)
        physics = sd.Physics(base.smax_factor, base.k_perc, base.k_gw_days, storms, base.beta)
        sim = sd.run_model(SEED, days, terrain, net, spinup_days=60, physics=physics)
        runs[name] = sim
    i = net.gauged.index(pt01)
    rain = {k: runs[k].basin_mean_p[i].sum() for k in ("uplands", "lowlands")}
    assert rain["uplands"] > 5 and rain["lowlands"] > 5  # both storms rain on PT01
    dq = {k: (runs[k].q[i] - runs["none"].q[i]) / rain[k] for k in ("uplands", "lowlands")}  # per mm of basin rain
    s = days.index(storm_day)
    assert dq["uplands"][s:s + 5].max() > 10 * dq["lowlands"][s:s + 5].max()
    assert dq["lowlands"][s + 25:s + 35].mean() > 2 * dq["uplands"][s + 25:s + 35].mean() > 0


def test_the_default_physics_is_the_default_region():
    """Physics() is the module's constants: the default variant's output does not depend on it."""
    p = sd.Physics()
    assert (p.smax_factor, p.k_perc, p.k_gw_days, p.storms, p.beta) == (1.0, sd.K_PERC, sd.K_GW_DAYS, None, sd.BETA)


def test_contrast_variant_is_byte_reproducible_reachable_from_the_cli_and_configured(tmp_path):
    from hydrocast.config import load as load_config

    a, b = tmp_path / "a", tmp_path / "b"
    contrast.generate(a, seed=SEED, start="2019-07-01", end="2019-07-08", spinup_days=20)
    assert sd.main([str(b), "--variant", "contrast", "--start", "2019-07-01", "--end", "2019-07-08",
                    "--spinup-days", "20", "--quiet"]) == 0
    ta = {str(p.relative_to(a)): p.read_bytes() for p in sorted(a.rglob("*")) if p.is_file()}
    tb = {str(p.relative_to(b)): p.read_bytes() for p in sorted(b.rglob("*")) if p.is_file()}
    assert ta.keys() == tb.keys() and "hydrocast.toml" in ta
    assert [k for k in ta if ta[k] != tb[k]] == []
    readme = ta["README.md"].decode()
    assert "## This is the contrast variant" in readme and "PT01 54%" in readme
    cfg = load_config(a / "hydrocast.toml")
    assert [s.name for s in cfg.sources][:3] == ["precipitation", "soil_moisture", "dem"]
    assert cfg.resolve(cfg.cube.path).resolve() == (a / "work/cube.nc").resolve()
    # the same weather as the default variant on the fronts' days, more rain where clusters fell
    d = tmp_path / "default"
    sd.generate(d, seed=SEED, start="2019-07-01", end="2019-07-08", spinup_days=20)
    names = sorted(p.name for p in (d / "raw/imerg").glob("*.nc4"))
    assert names == sorted(p.name for p in (a / "raw/imerg").glob("*.nc4"))
    import netCDF4

    more = 0
    for name in names:
        with netCDF4.Dataset(d / "raw/imerg" / name) as f0, netCDF4.Dataset(a / "raw/imerg" / name) as f1:
            p0, p1 = np.ma.filled(f0["precipitation"][:], np.nan), np.ma.filled(f1["precipitation"][:], np.nan)
        ok = np.isfinite(p0) & np.isfinite(p1)
        assert (p1[ok] >= p0[ok] - 1e-3).all()
        more += int((p1[ok] > p0[ok] + 0.1).any())
    assert more >= 1
