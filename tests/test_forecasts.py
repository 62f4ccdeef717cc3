"""The forecast store (hydrocast.forecasts): layout and CF attributes, values against hand computations,
the run-to-issue-date rule, incremental and atomic updates, bad files, the reader API, and the wiring
into ``hydrocast ingest``.

GRIB2 runs are written here with eccodes (tools.sampledata_nwp's template: ECMWF oper fc tp on the
0.25° grid lon -9..-7, lat 41.75..39.75); the expected values are computed by hand from the daily
fields written (block means on a grid aligned to the GRIB cells), never through the store's code.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import eccodes
import netCDF4
import numpy as np
import pytest

from hydrocast import config, forecasts
from hydrocast.errors import BadInputError
from hydrocast.sources import nwp
from tools import sampledata_nwp as snwp

# 2 x 2 cells of 0.5°, edges on the GRIB cells' edges (odd multiples of 0.125°): each cell is 2 x 2 GRIB cells
GRID = """
[grid]
crs = "EPSG:4326"
bounds = [-8.625, 40.125, -7.625, 41.125]
resolution = 0.5
"""
PACKING_MM = 0.02  # 16-bit packing of accumulations up to ~0.3 m, difference of two values


def project(root: Path, extra: str = "", grid: str = GRID) -> config.Config:
    root.mkdir(parents=True, exist_ok=True)
    (root / "hydrocast.toml").write_text(grid + f"""
[[sources]]
name = "fc"
kind = "nwp_grib"
paths = ["raw/nwp/*.grib2"]
{extra}
[cube]
path = "work/cube.nc"
""")
    (root / "raw/nwp").mkdir(parents=True, exist_ok=True)
    return config.load(root / "hydrocast.toml")


def daily_fields(seed: int, n: int = 3) -> np.ndarray:
    """(n, LAT, LON) mm: random daily totals on the sample GRIB grid (some dry cells)."""
    rng = np.random.default_rng(seed)
    f = rng.gamma(0.7, 8.0, size=(n, snwp.LAT.size, snwp.LON.size))
    f[rng.random(f.shape) < 0.3] = 0.0
    return f


def grib_msgs(run_date, daily, data_time: int = 0, **keys) -> list[bytes]:
    tpl = snwp._template()
    try:
        for k, v in keys.items():
            eccodes.codes_set(tpl, k, v)
        eccodes.codes_set(tpl, "dataTime", data_time)
        return snwp.messages(tpl, dt.date.fromisoformat(run_date), daily)
    finally:
        eccodes.codes_release(tpl)


def ensemble_msgs(run_date, members: list[np.ndarray]) -> list[bytes]:
    out = []
    for m, daily in enumerate(members):
        out += grib_msgs(run_date, daily, stream="enfo", type="cf" if m == 0 else "pf",
                         productDefinitionTemplateNumber=11, number=m, numberOfForecastsInEnsemble=50)
    return out


def write(path: Path, msgs: list[bytes]) -> Path:
    path.write_bytes(b"".join(msgs))
    return path


def block_mean(daily: np.ndarray) -> np.ndarray:
    """The 0.5° cells of GRID by hand: the GRIB points -8.5, -8.25 | -8.0, -7.75 (lon) and 41.0, 40.75 |
    40.5, 40.25 (lat) are the 2 x 2 blocks (plain means: equal cells in degrees, GDAL's average)."""
    lon = {v: i for i, v in enumerate(np.round(snwp.LON, 3))}
    lat = {v: i for i, v in enumerate(np.round(snwp.LAT, 3))}
    out = np.empty(daily.shape[:1] + (2, 2))
    for r, lats in enumerate(((41.0, 40.75), (40.5, 40.25))):
        for c, lons in enumerate(((-8.5, -8.25), (-8.0, -7.75))):
            out[:, r, c] = np.mean([daily[:, lat[a], lon[b]] for a in lats for b in lons], axis=0)
    return out


def read_store(cfg):
    with forecasts.open_forecasts(cfg) as r:
        return r.issue_days, r.read("fc", r.issue_days, r.n_leads)


# -- layout, values, the rule ------------------------------------------------------------------

def test_store_layout_cf_attrs_and_block_mean_values(tmp_path):
    cfg = project(tmp_path / "p")
    d1, d2 = daily_fields(1), daily_fields(2)
    write(cfg.root / "raw/nwp/a.grib2", grib_msgs("2020-03-02", d1) + grib_msgs("2020-03-05", d2))
    result, rejected = forecasts.update_store(cfg)
    assert rejected == [] and result.changed and result.runs_added == 2
    path = forecasts.store_path(cfg)
    assert path == cfg.root / "work" / "cube.forecasts.nc"
    with netCDF4.Dataset(path) as ds:
        assert {k: v.size for k, v in ds.dimensions.items()} == {"issue_day": 2, "lead": 3, "y": 2, "x": 2, "nv": 2}
        assert list(ds["issue_day"][:]) == [(np.datetime64(d) - np.datetime64("1970-01-01")).astype(int)
                                            for d in ("2020-03-01", "2020-03-04")]  # run date - 1 day
        assert ds["issue_day"].dtype == np.int32 and ds["issue_day"].units == "days since 1970-01-01 00:00:00"
        assert list(ds["forecast_reference_time"][:] - ds["issue_day"][:]) == [1, 1]
        assert ds["forecast_reference_time"].standard_name == "forecast_reference_time"
        assert list(ds["lead"][:]) == [1, 2, 3] and ds["lead"].standard_name == "forecast_period"
        assert ds["lead_bnds"][:].tolist() == [[0, 1], [1, 2], [2, 3]]
        v = ds["fc"]
        assert v.dimensions == ("issue_day", "lead", "y", "x") and v.dtype == np.float32
        assert (v.units, v.standard_name, v.cell_methods, v.grid_mapping) == (
            "mm", "lwe_thickness_of_precipitation_amount", "time: sum", "crs")
        assert list(ds["fc_members"][:]) == [1, 1]
        assert ds["fc_source"][0].startswith("ecmf oper deterministic run of 2020-03-02 00:00 UTC: a.grib2 sig=")
        np.testing.assert_allclose(ds["x"][:], [-8.375, -7.875])
        np.testing.assert_allclose(ds["y"][:], [40.875, 40.375])
        assert "crs_wkt" in ds["crs"].ncattrs() and ds.Conventions == "CF-1.8, ACDD-1.3"
        assert ds.time_coverage_start == "2020-03-02T00:00:00Z" and ds.time_coverage_end == "2020-03-08T00:00:00Z"
        got = np.asarray(v[:])
    np.testing.assert_allclose(got[0], block_mean(d1), atol=PACKING_MM)
    np.testing.assert_allclose(got[1], block_mean(d2), atol=PACKING_MM)
    assert got.max() > 5


def test_which_run_serves_which_issue_date(tmp_path):
    """00 UTC of D+1 serves D; a 12 UTC run serves nothing; deterministic beats ensemble for the same D;
    an ensemble alone gives its member mean and member count."""
    cfg = project(tmp_path / "p")
    det, members = daily_fields(3), [daily_fields(10 + m) for m in range(3)]
    solo = [daily_fields(20 + m) for m in range(2)]
    write(cfg.root / "raw/nwp/det.grib2", grib_msgs("2020-03-02", det))
    write(cfg.root / "raw/nwp/ens.grib2", ensemble_msgs("2020-03-02", members) + ensemble_msgs("2020-03-10", solo))
    write(cfg.root / "raw/nwp/noon.grib2", grib_msgs("2020-03-06", daily_fields(4), data_time=1200))
    result, _ = forecasts.update_store(cfg)
    assert result.runs_ignored == 1  # the 12 UTC run
    with forecasts.open_forecasts(cfg) as r:
        assert list(r.issue_days.astype(str)) == ["2020-03-01", "2020-03-09"]
        asked = np.array(["2020-03-01", "2020-03-05", "2020-03-09", "2019-01-01"], "datetime64[D]")
        got = r.read("fc", asked, 4)
        assert got.shape == (4, 4, 2, 2) and got.dtype == np.float32
        np.testing.assert_allclose(got[0, :3], block_mean(det), atol=PACKING_MM)
        np.testing.assert_allclose(got[2, :3], block_mean(np.mean(solo, axis=0)), atol=PACKING_MM)
        assert np.isnan(got[1]).all() and np.isnan(got[3]).all() and np.isnan(got[:, 3]).all()  # no run; lead 4
        assert list(r.available("fc", asked)) == [True, False, True, False]
        assert list(r.reference_time(asked).astype(str)) == ["2020-03-02T00:00", "NaT", "2020-03-10T00:00", "NaT"]
        with pytest.raises(KeyError, match="no forecast variable 'rain'"):
            r.read("rain", asked, 1)
    with netCDF4.Dataset(forecasts.store_path(cfg)) as ds:
        assert list(ds["fc_members"][:]) == [1, 2]
        assert "deterministic" in ds["fc_source"][0] and "ensemble" in ds["fc_source"][1]


def test_ensemble_members_kept_by_realization_and_grown_incrementally(tmp_path):
    """members = "keep" (the default): every member of an ensemble run in fc_ensemble (issue_day,
    realization, lead, y, x), each the hand block mean of what was written; days with fewer members or a
    deterministic run are NaN there; a later run with more members grows the realization dimension and
    the members already stored are copied unchanged; members = "mean" keeps only the mean."""
    cfg = project(tmp_path / "p")
    det = daily_fields(3)
    three, two = [daily_fields(30 + m) for m in range(3)], [daily_fields(40 + m) for m in range(2)]
    write(cfg.root / "raw/nwp/det.grib2", grib_msgs("2020-03-02", det))
    write(cfg.root / "raw/nwp/ens.grib2", ensemble_msgs("2020-03-05", three) + ensemble_msgs("2020-03-08", two))
    forecasts.update_store(cfg)
    asked = np.array(["2020-03-01", "2020-03-04", "2020-03-07", "2020-03-20"], "datetime64[D]")
    with forecasts.open_forecasts(cfg) as r:
        assert r.ensembles == ["fc"]
        assert list(r.member_count("fc", asked)) == [0, 3, 2, 0]
        got = r.read_members("fc", asked, 3)
        mean = r.read("fc", asked, 3)
    assert got.shape == (4, 3, 3, 2, 2)
    for m in range(3):
        np.testing.assert_allclose(got[1, m], block_mean(three[m]), atol=PACKING_MM)
    for m in range(2):
        np.testing.assert_allclose(got[2, m], block_mean(two[m]), atol=PACKING_MM)
    assert np.isnan(got[0]).all() and np.isnan(got[2, 2]).all() and np.isnan(got[3]).all()
    np.testing.assert_allclose(mean[1], got[1].mean(axis=0), atol=1e-4)  # the stored mean is the members' mean
    with netCDF4.Dataset(forecasts.store_path(cfg)) as ds:
        v = ds["fc_ensemble"]
        assert v.dimensions == ("issue_day", "realization", "lead", "y", "x")
        assert (v.units, v.standard_name, v.grid_mapping) == ("mm", "lwe_thickness_of_precipitation_amount", "crs")
        assert ds["realization"].standard_name == "realization" and list(ds["realization"][:]) == [0, 1, 2]
    four = [daily_fields(50 + m) for m in range(4)]
    write(cfg.root / "raw/nwp/ens2.grib2", ensemble_msgs("2020-03-12", four))
    result, _ = forecasts.update_store(cfg)
    assert result.runs_added == 1 and result.runs_replaced == 0
    with forecasts.open_forecasts(cfg) as r:
        later = np.array(["2020-03-04", "2020-03-11"], "datetime64[D]")
        assert list(r.member_count("fc", later)) == [3, 4]
        again = r.read_members("fc", later, 3)
    assert again.shape[1] == 4 and np.isnan(again[0, 3]).all()
    np.testing.assert_array_equal(again[0, :3], got[1])  # copied, not re-read
    np.testing.assert_allclose(again[1, 3], block_mean(four[3]), atol=PACKING_MM)
    mean_only = project(tmp_path / "q", extra='members = "mean"')
    write(mean_only.root / "raw/nwp/ens.grib2", ensemble_msgs("2020-03-05", three))
    forecasts.update_store(mean_only)
    with forecasts.open_forecasts(mean_only) as r:
        assert r.ensembles == [] and list(r.member_count("fc", asked)) == [0, 0, 0, 0]
        np.testing.assert_allclose(r.read("fc", asked[1:2], 3)[0], mean[1], atol=1e-5)
    with netCDF4.Dataset(forecasts.store_path(mean_only)) as ds:
        assert "fc_ensemble" not in ds.variables and "realization" not in ds.dimensions


def test_ensemble_source_choice(tmp_path):
    """[train] ensemble_source: auto takes the model's source when its members are kept, else the first
    nwp source whose are; a name must be an nwp source; none, or a model without forecasts, gives none."""
    from hydrocast.errors import ConfigError

    cfg = project(tmp_path / "p", extra='[[sources]]\nname = "ens"\nkind = "nwp_grib"\npaths = ["raw/ens/*.grib2"]\n')

    class Store:
        ensembles = ["ens"]

    assert forecasts.ensemble_source(cfg, Store(), "fc") == "ens"
    Store.ensembles = ["fc", "ens"]
    assert forecasts.ensemble_source(cfg, Store(), "fc") == "fc"
    assert forecasts.ensemble_source(cfg, Store(), None) is None
    assert forecasts.ensemble_source(cfg, None, "fc") is None
    cfg.train.ensemble_source = "ens"
    assert forecasts.ensemble_source(cfg, Store(), "fc") == "ens"
    cfg.train.ensemble_source = "none"
    assert forecasts.ensemble_source(cfg, Store(), "fc") is None
    cfg.train.ensemble_source = "rain"
    with pytest.raises(ConfigError, match="ensemble_source.*'rain' is not a source of kind nwp"):
        forecasts.ensemble_source(cfg, Store(), "fc")


def test_real_open_data_grid_uniform_field(tmp_path, shared_data):
    """The real ECMWF open-data tp message (0.4°, longitudes 180 -> 179.6, CCSDS packing) cloned into a
    2-day run of uniform daily totals: any area-weighted regridding of a uniform field is that field."""
    import lzma

    from tests.test_sources_nwp import OPEN_DATA, handles, tp_clone

    raw = tmp_path / OPEN_DATA[:-3]
    raw.write_bytes(lzma.decompress((shared_data / "nwp-grib" / OPEN_DATA).read_bytes()))
    tp0 = handles(raw)[2]
    n = eccodes.codes_get(tp0, "numberOfValues")
    cfg = project(tmp_path / "p", grid=GRID.replace("0.5", "0.1"))
    msgs = [tp_clone(tp0, 24, np.full(n, 0.004)), tp_clone(tp0, 48, np.full(n, 0.0065))]  # 4 mm, then 2.5 mm
    with open(cfg.root / "raw/nwp/20240101000000-oper-fc.grib2", "wb") as f:
        for h in msgs:
            eccodes.codes_write(h, f)
    forecasts.update_store(cfg)
    days, got = read_store(cfg)
    assert list(days.astype(str)) == ["2023-12-31"] and got.shape == (1, 2, 10, 10)
    np.testing.assert_allclose(got[0, 0], 4.0, atol=1e-3)
    np.testing.assert_allclose(got[0, 1], 2.5, atol=1e-3)


# -- incremental, atomic, bad files ----------------------------------------------------------------

def test_rerun_does_not_rewrite_new_files_add_changed_files_are_reread(tmp_path):
    cfg = project(tmp_path / "p")
    d1, d2, d3 = daily_fields(1), daily_fields(2), daily_fields(3)
    a = write(cfg.root / "raw/nwp/a.grib2", grib_msgs("2020-03-02", d1))
    forecasts.update_store(cfg)
    path = forecasts.store_path(cfg)
    before = path.stat()
    result, _ = forecasts.update_store(cfg)
    after = path.stat()
    assert not result.changed and result.issue_days == 1
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    days0, vals0 = read_store(cfg)

    write(cfg.root / "raw/nwp/b.grib2", grib_msgs("2020-03-08", d2))  # a new run
    result, _ = forecasts.update_store(cfg)
    assert result.changed and (result.runs_added, result.runs_replaced) == (1, 0)
    days1, vals1 = read_store(cfg)
    assert list(days1.astype(str)) == ["2020-03-01", "2020-03-07"] and path.stat().st_ino != before.st_ino
    np.testing.assert_array_equal(vals1[0], vals0[0])  # the old run copied as it was
    np.testing.assert_allclose(vals1[1], block_mean(d2), atol=PACKING_MM)

    write(a, grib_msgs("2020-03-02", d3))  # a changed file: its run is read again
    result, _ = forecasts.update_store(cfg)
    assert (result.runs_added, result.runs_replaced) == (0, 1)
    _, vals2 = read_store(cfg)
    np.testing.assert_allclose(vals2[0], block_mean(d3), atol=PACKING_MM)
    np.testing.assert_array_equal(vals2[1], vals1[1])
    assert not list(path.parent.glob(".*.tmp"))


def test_bad_file_is_rejected_by_name_and_the_others_land(tmp_path):
    cfg = project(tmp_path / "p")
    write(cfg.root / "raw/nwp/good.grib2", grib_msgs("2020-03-02", daily_fields(1)))
    whole = b"".join(grib_msgs("2020-03-05", daily_fields(2)))
    bad = cfg.root / "raw/nwp/truncated.grib2"
    bad.write_bytes(whole[:-200])
    html = cfg.root / "raw/nwp/page.grib2"
    html.write_bytes(b"<!DOCTYPE html><html>503</html>")
    with pytest.raises(BadInputError, match="--strict: nothing was written"):
        forecasts.update_store(cfg, strict=True)
    assert not forecasts.store_path(cfg).exists()
    result, rejected = forecasts.update_store(cfg)
    assert sorted(Path(r.path).name for r in rejected) == ["page.grib2", "truncated.grib2"]
    for r in rejected:
        assert r.message.startswith(r.path) and "\n" not in r.message
    assert result.issue_days == 1 and result.first_issue_day == "2020-03-01"
    _, again = forecasts.update_store(cfg)  # nothing changed: not rewritten, the bad files reported again
    assert sorted(Path(r.path).name for r in again) == ["page.grib2", "truncated.grib2"]


def test_run_split_into_step_files_gives_the_same_store(tmp_path):
    daily = daily_fields(5)
    one = project(tmp_path / "one")
    write(one.root / "raw/nwp/run.grib2", grib_msgs("2020-03-02", daily))
    split = project(tmp_path / "split")
    for k, m in enumerate(grib_msgs("2020-03-02", daily), start=1):
        write(split.root / f"raw/nwp/20200302000000-{24 * k}h-oper-fc.grib2", [m])
    forecasts.update_store(one)
    forecasts.update_store(split)
    (d_one, v_one), (d_split, v_split) = read_store(one), read_store(split)
    assert np.array_equal(d_one, d_split) and np.array_equal(v_one, v_split, equal_nan=True)
    with netCDF4.Dataset(forecasts.store_path(split)) as ds:
        assert "(+2 files)" in ds["fc_source"][0]


def test_max_lead_days_and_forecast_path(tmp_path):
    cfg = project(tmp_path / "p", extra="max_lead_days = 2\n")
    cfg.cube.forecast_path = Path("elsewhere/fc.nc")
    write(cfg.root / "raw/nwp/a.grib2", grib_msgs("2020-03-02", daily_fields(1)))
    result, _ = forecasts.update_store(cfg)
    assert forecasts.store_path(cfg) == cfg.root / "elsewhere/fc.nc" and result.n_leads == 2


def test_runreader_equals_read_run(tmp_path):
    """The store's batch reader (eccodes by offset) gives read_run's values (cfgrib), for a month file."""
    path = write(tmp_path / "m.grib2", grib_msgs("2020-03-02", daily_fields(1)) + grib_msgs("2020-03-03",
                                                                                          daily_fields(2)))
    runs = nwp.scan_runs([path])
    box = (-8.6, 40.1, -7.6, 41.1)
    with nwp.RunReader(box) as reader:
        for run in runs:
            a, b = nwp.read_run(run, box), reader.read(run)
            assert a.dims == b.dims and np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
            np.testing.assert_allclose(b.values, a.values, rtol=1e-6, atol=1e-5)
            assert a.attrs == b.attrs and np.array_equal(a.valid_start, b.valid_start)


# -- wiring into hydrocast ingest ----------------------------------------------------------------------

def test_ingest_writes_cube_and_store(tmp_path):
    from hydrocast.ingest import ingest
    from tests.test_ingest import CONFIG, make_project

    cfg_path = make_project(tmp_path / "p")
    cfg_path.write_text(CONFIG.replace("[cube]", '[[sources]]\nname = "precipitation_forecast"\nkind = "nwp_grib"\n'
                                                 'paths = ["raw/nwp/*.grib2"]\n\n[cube]'))
    (cfg_path.parent / "raw/nwp").mkdir(parents=True)
    write(cfg_path.parent / "raw/nwp/a.grib2", grib_msgs("2020-03-02", daily_fields(1)))
    cfg = config.load(cfg_path)
    result = ingest(cfg)
    js = json.loads(json.dumps(result.to_json()))
    assert js["forecasts"]["runs_added"] == 1 and js["forecasts"]["issue_days"] == 1
    assert js["forecasts"]["store"] == str(cfg_path.parent / "work/cube.forecasts.nc")
    assert "precipitation_forecast" not in result.variables  # not a cube variable
    with forecasts.open_forecasts(cfg) as r:
        assert r.names == ["precipitation_forecast"] and r.grid.same_as(cfg.grid_spec())
        assert np.isfinite(r.read("precipitation_forecast", r.issue_days, 3)).all()
    stat = forecasts.store_path(cfg).stat()
    again = ingest(cfg)
    assert not again.changed and not again.forecasts.changed
    assert forecasts.store_path(cfg).stat().st_mtime_ns == stat.st_mtime_ns


def test_netcdf_source_gives_the_grib_store_values(tmp_path):
    """The same run as CF NetCDF (kind nwp_netcdf: accumulated tp in m, latitude south -> north) and as GRIB2."""
    daily = daily_fields(6)
    grib = project(tmp_path / "g")
    write(grib.root / "raw/nwp/a.grib2", grib_msgs("2020-03-02", daily))
    nc = project(tmp_path / "n")
    text = (nc.root / "hydrocast.toml").read_text().replace('kind = "nwp_grib"', 'kind = "nwp_netcdf"\nvariable = "tp"')
    (nc.root / "hydrocast.toml").write_text(text.replace("*.grib2", "*.nc"))
    nc = config.load(nc.root / "hydrocast.toml")
    with netCDF4.Dataset(nc.root / "raw/nwp/a.nc", "w") as ds:
        for name, size in (("time", 1), ("step", 3), ("latitude", snwp.LAT.size), ("longitude", snwp.LON.size)):
            ds.createDimension(name, size)
        v = ds.createVariable("time", "i4", ("time",))
        v.units = "days since 2020-03-02"
        v[:] = [0]
        v = ds.createVariable("step", "i4", ("step",))
        v.units = "hours"
        v[:] = [24, 48, 72]
        ds.createVariable("latitude", "f8", ("latitude",))[:] = snwp.LAT[::-1]
        ds.createVariable("longitude", "f8", ("longitude",))[:] = snwp.LON
        v = ds.createVariable("tp", "f4", ("time", "step", "latitude", "longitude"))
        v.units = "m"
        v[:] = (np.cumsum(daily, axis=0)[:, ::-1] / 1000.0)[None]
    forecasts.update_store(grib)
    result, rejected = forecasts.update_store(nc)
    assert rejected == [] and result.runs_added == 1
    (dg, vg), (dn, vn) = read_store(grib), read_store(nc)
    assert np.array_equal(dg, dn)
    np.testing.assert_allclose(vn, vg, atol=PACKING_MM)
    np.testing.assert_allclose(vn[0], block_mean(daily), atol=1e-3)
