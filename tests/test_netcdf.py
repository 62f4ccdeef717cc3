"""CF-1.8 output files (hydrograph, forecast maps, hindcast), atomic writes and plots."""

from __future__ import annotations

import os

import netCDF4
import numpy as np
import pytest
import xarray as xr

from hydrocast import netcdf as hnc
from hydrocast.grid import GridSpec

REF = np.datetime64("2024-05-01", "D")
LEADS = np.arange(1, 8, dtype="int32")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _hydrograph(last_obs=(12.5, 3.25), last_time=("2024-05-01", "2024-04-28"), names=("Upper Inn", "Lech")):
    rng = np.random.default_rng(1)
    q = (rng.random((2, len(LEADS))) * 100).astype("float32")
    ds = hnc.hydrograph_dataset(["AT_101", "basin-22x"], names, [10.5, 11.25], [47.1, 46.9], [1234.5, 88.0],
                                REF, LEADS, q, list(last_obs), list(last_time))
    return ds, q


def _check(path, criteria="lenient"):
    """compliance-checker is a test extra (pyproject [test]); only the CF checks need it."""
    pytest.importorskip("compliance_checker")
    return hnc.check_cf(path, criteria=criteria)


def _assert_cf(path):
    ok, report = _check(path)
    assert ok, report


def _no_int64(path):
    with netCDF4.Dataset(path) as nc:
        return {name: v.dtype for name, v in nc.variables.items() if getattr(v.dtype, "itemsize", 0) == 8
                and np.dtype(v.dtype).kind in "iu"}


# -- the checker itself is not a rubber stamp ------------------------------------------------------
def test_check_cf_rejects_a_non_cf_file(tmp_path):
    path = tmp_path / "bad.nc"
    ds = xr.Dataset({"q": ("t", np.arange(3.0), {"standard_name": "not_a_standard_name", "units": "m3 s-1"})},
                    coords={"t": ("t", np.arange("2020-01-01", "2020-01-04", dtype="datetime64[D]"))},
                    attrs={"Conventions": "CF-1.8"})
    ds.to_netcdf(path)  # xarray's default: int64 time, which CF checkers reject
    ok, report = _check(path)
    assert not ok
    assert "int64" in report


# -- hydrograph --------------------------------------------------------------------------------------
def test_hydrograph_is_cf_and_round_trips(tmp_path):
    ds, q = _hydrograph()
    path = hnc.write_dataset(ds, tmp_path / "hydrograph.nc")
    _assert_cf(path)
    assert _no_int64(path) == {}
    with netCDF4.Dataset(path) as nc:
        bid = nc.variables["basin_id"]
        assert bid.dtype == np.dtype("S1") and bid.dimensions == ("station", "name_strlen")
        assert bid.cf_role == "timeseries_id"
        assert nc.featureType == "timeSeries" and nc.Conventions == "CF-1.8"
        assert nc.variables["time"].dtype == np.int32
        assert nc.variables["forecast_reference_time"].dtype == np.int32
        assert nc.variables["lead_time"].dtype == np.int32
        assert nc.variables["discharge"].units == "m3 s-1"
        assert nc.variables["discharge"].standard_name == "water_volume_transport_in_river_channel"
    with xr.open_dataset(path) as back:
        np.testing.assert_array_equal(back["discharge"].values, q)
        assert back["discharge"].dtype == np.float32
        assert list(back["basin_id"].values) == ["AT_101", "basin-22x"]
        assert list(back["basin_name"].values) == ["Upper Inn", "Lech"]
        assert back["forecast_reference_time"].values == REF.astype("datetime64[ns]")
        assert np.issubdtype(back["time"].dtype, np.datetime64)
        np.testing.assert_array_equal(back["lead_time"].values, LEADS)
        np.testing.assert_array_equal(back["time"].values, (REF + LEADS.astype("timedelta64[D]")).astype("datetime64[ns]"))
        np.testing.assert_array_equal(back["last_observed_discharge"].values, np.float32([12.5, 3.25]))
        np.testing.assert_array_equal(back["last_observation_time"].values,
                                      np.array(["2024-05-01", "2024-04-28"], dtype="datetime64[ns]"))
        np.testing.assert_array_equal(back["basin_area"].values, [1234.5, 88.0])
        np.testing.assert_array_equal(back["lat"].values, [47.1, 46.9])
        assert "time" in back["discharge"].coords and "basin_id" in back["discharge"].coords


def test_hydrograph_with_ungauged_basin_passes(tmp_path):
    ds, q = _hydrograph(last_obs=(12.5, np.nan), last_time=("2024-04-30", None), names=None)
    path = hnc.write_dataset(ds, tmp_path / "hydrograph.nc")
    _assert_cf(path)
    with netCDF4.Dataset(path) as nc:
        assert nc.variables["last_observation_time"].dtype == np.int32
        assert "basin_name" not in nc.variables
    with xr.open_dataset(path) as back:
        np.testing.assert_array_equal(back["discharge"].values, q)
        lo = back["last_observed_discharge"].values
        assert lo[0] == np.float32(12.5) and np.isnan(lo[1])
        t = back["last_observation_time"].values
        assert t[0] == np.datetime64("2024-04-30", "ns") and np.isnat(t[1])


def test_all_ungauged_hydrograph_passes(tmp_path):
    ds, _ = _hydrograph(last_obs=(np.nan, np.nan), last_time=(None, None))
    path = hnc.write_dataset(ds, tmp_path / "h.nc")
    _assert_cf(path)
    with xr.open_dataset(path) as back:
        assert np.isnat(back["last_observation_time"].values).all()


# -- forecast maps -----------------------------------------------------------------------------------
@pytest.mark.parametrize("crs,bounds,res", [
    ("EPSG:4326", (5.0, 45.0, 15.0, 50.0), 0.25),
    ("EPSG:3035", (4_000_000.0, 2_600_000.0, 4_100_000.0, 2_700_000.0), 5_000.0),
])
def test_forecast_maps_crop_and_crs(tmp_path, crs, bounds, res):
    import rioxarray  # noqa: F401  (registers .rio)
    from pyproj import CRS

    grid = GridSpec.from_bounds(crs, bounds, res)
    window = (3, 9, 4, 14)  # rows 3..8, cols 4..13
    h, w = 6, 10
    rng = np.random.default_rng(2)
    sm = rng.random((3, h, w)).astype("float32")
    q = rng.random((3, h, w)).astype("float32") * 10
    frac = np.clip(rng.random((h, w)) * 1.5, 0, 1).astype("float32")
    maps = {"soil_moisture": (sm, {"units": "m3 m-3", "standard_name": "volume_fraction_of_condensed_water_in_soil",
                                   "long_name": "forecast surface soil moisture"}),
            "runoff": (q, {"units": "mm", "long_name": "forecast runoff depth"})}
    ds = hnc.forecast_map_dataset(grid, window, REF, [1, 2, 3], maps, frac, "AT_101")
    path = hnc.write_dataset(ds, tmp_path / "maps.nc")
    _assert_cf(path)
    assert _no_int64(path) == {}
    with xr.open_dataset(path) as back:
        np.testing.assert_array_equal(back["x"].values, grid.x[4:14])
        np.testing.assert_array_equal(back["y"].values, grid.y[3:9])
        np.testing.assert_array_equal(back["soil_moisture"].values, sm)
        np.testing.assert_array_equal(back["runoff"].values, q)
        np.testing.assert_array_equal(back["basin_fraction"].values, frac)
        assert back["soil_moisture"].attrs["grid_mapping"] == "crs"
        assert back["soil_moisture"].attrs["units"] == "m3 m-3"
        assert back["basin_fraction"].attrs["units"] == "1"
        assert back.attrs["basin_id"] == "AT_101"
        assert back["lead_time"].attrs["standard_name"] == "forecast_period"
        np.testing.assert_array_equal(back["time"].values,
                                      (REF + np.arange(1, 4).astype("timedelta64[D]")).astype("datetime64[ns]"))
        got = back["soil_moisture"].rio.crs
        assert got is not None and CRS.from_user_input(got.to_wkt()).equals(CRS.from_user_input(crs))
        # the window's own transform: its top-left corner is the grid's cell (3, 4)
        t = back["soil_moisture"].rio.transform()
        gt = grid.transform
        assert t.c == pytest.approx(gt.c + 4 * gt.a) and t.f == pytest.approx(gt.f + 3 * gt.e)
        assert t.a == pytest.approx(gt.a) and t.e == pytest.approx(gt.e)
        xa = back["x"].attrs["standard_name"]
        assert xa == ("longitude" if grid.is_geographic else "projection_x_coordinate")


def test_forecast_maps_accepts_full_grid_arrays():
    grid = GridSpec.from_bounds("EPSG:4326", (0.0, 0.0, 4.0, 3.0), 1.0)
    full = np.arange(2 * 3 * 4, dtype="float32").reshape(2, 3, 4)
    ds = hnc.forecast_map_dataset(grid, (1, 3, 1, 3), REF, [1, 2], {"soil_moisture": (full, {"units": "m3 m-3"})},
                                  np.ones(grid.shape), "b")
    np.testing.assert_array_equal(ds["soil_moisture"].values, full[:, 1:3, 1:3])
    with pytest.raises(ValueError):
        hnc.forecast_map_dataset(grid, (1, 3, 1, 3), REF, [1, 2], {"soil_moisture": (full[:, :2, :3], {})},
                                 np.ones(grid.shape), "b")
    with pytest.raises(ValueError):
        hnc.forecast_map_dataset(grid, (0, 4, 0, 2), REF, [1, 2], {}, np.ones(grid.shape), "b")


# -- hindcast ----------------------------------------------------------------------------------------
def test_hindcast_is_cf_and_round_trips(tmp_path):
    rng = np.random.default_rng(3)
    issues = np.arange("2023-01-01", "2023-01-21", dtype="datetime64[D]")
    leads = [1, 2, 3, 5]
    shape = (3, len(issues), len(leads))
    sim = (rng.random(shape) * 50).astype("float32")
    obs = (rng.random(shape) * 50).astype("float32")
    obs[1] = np.nan  # an ungauged basin
    obs[0, -1, 2:] = np.nan  # valid time beyond the last observation
    extras = {name: (rng.random(shape) * 50).astype("float32") for name in ("lumped_lstm", "persistence", "climatology")}
    ds = hnc.hindcast_dataset(["A", "BB", "CCC"], issues, leads, sim, obs, extras,
                              [10.0, 11.0, 12.0], [47.0, 46.5, 46.0], [100.0, 200.0, 300.0])
    path = hnc.write_dataset(ds, tmp_path / "hindcast.nc")
    _assert_cf(path)
    assert _no_int64(path) == {}
    with netCDF4.Dataset(path) as nc:
        assert nc.variables["basin_id"].cf_role == "timeseries_id"
        assert nc.variables["basin_id"].dtype == np.dtype("S1")
        assert nc.featureType == "timeSeries"
    with xr.open_dataset(path) as back:
        order = ("basin", "forecast_reference_time", "lead_time")
        np.testing.assert_array_equal(back["discharge_simulated"].transpose(*order).values, sim)
        np.testing.assert_array_equal(back["discharge_observed"].transpose(*order).values, obs)
        for name, arr in extras.items():
            v = back[f"discharge_{name}"]
            np.testing.assert_array_equal(v.transpose(*order).values, arr)
            assert v.attrs["standard_name"] == "water_volume_transport_in_river_channel"
            assert v.attrs["units"] == "m3 s-1" and v.attrs["long_name"]
        assert back["discharge_observed"].attrs["long_name"] == "observed discharge at valid time"
        assert list(back["basin_id"].values) == ["A", "BB", "CCC"]
        np.testing.assert_array_equal(back["forecast_reference_time"].values, issues.astype("datetime64[ns]"))
        valid = back["time"].transpose("forecast_reference_time", "lead_time").values
        expect = issues[:, None] + np.asarray(leads).astype("timedelta64[D]")[None, :]
        np.testing.assert_array_equal(valid, expect.astype("datetime64[ns]"))
        # selection by name: basin BB, lead 3 is a series over issue dates
        one = back["discharge_simulated"].isel(basin=1).sel(lead_time=3)
        np.testing.assert_array_equal(one.values, sim[1, :, 2])


def test_products_pass_strict_criteria(tmp_path):
    """Stronger than required: no warnings at all (guards the CF decisions documented in netcdf.py)."""
    ds, _ = _hydrograph()
    h = hnc.write_dataset(ds, tmp_path / "h.nc")
    grid = GridSpec.from_bounds("EPSG:3035", (4_000_000.0, 2_600_000.0, 4_100_000.0, 2_700_000.0), 5_000.0)
    m = hnc.write_dataset(hnc.forecast_map_dataset(
        grid, (0, 4, 0, 5), REF, [1, 2], {"soil_moisture": (np.zeros((2, 4, 5)), {"units": "m3 m-3"})},
        np.ones((4, 5)), "b"), tmp_path / "m.nc")
    issues = np.arange("2023-01-01", "2023-01-05", dtype="datetime64[D]")
    z = np.zeros((1, 4, 2))
    k = hnc.write_dataset(hnc.hindcast_dataset(["b"], issues, [1, 2], z, z, {"persistence": z}, [1.0], [2.0], [3.0]),
                          tmp_path / "k.nc")
    ok, report = _check([h, m, k], criteria="strict")
    assert ok, report


# -- atomic writes -----------------------------------------------------------------------------------
def test_atomic_write_failure_leaves_target_untouched(tmp_path):
    target = tmp_path / "out.nc"
    target.write_bytes(b"old content \x00\x01")
    before = target.read_bytes()

    def boom(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"half a new file")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        hnc.atomic_write(target, boom)
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["out.nc"]


def test_atomic_write_replaces_and_cleans(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    hnc.atomic_write_text(target, "first\n")
    hnc.atomic_write_text(target, "second\n")
    assert target.read_text() == "second\n"
    assert os.listdir(target.parent) == ["a.txt"]


def test_write_dataset_failure_keeps_old_file(tmp_path):
    ds, _ = _hydrograph()
    path = hnc.write_dataset(ds, tmp_path / "h.nc")
    before = path.read_bytes()
    bad = ds.assign(oops=("station", np.array([1, 2], dtype="int64")))  # int64: refused
    with pytest.raises(TypeError, match="int64"):
        hnc.write_dataset(bad, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["h.nc"]


# -- plots -------------------------------------------------------------------------------------------
def _png_ok(path, min_bytes=10_000):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes


def test_plot_hydrograph(tmp_path):
    from hydrocast import plots

    t = np.arange("2024-02-01", "2024-05-02", dtype="datetime64[D]")
    q = 20 + 10 * np.sin(np.arange(len(t)) / 7.0)
    q[10:14] = np.nan
    valid = REF + LEADS.astype("timedelta64[D]")
    out = plots.plot_hydrograph(tmp_path / "h.png", "AT_101", REF, valid, 25 + LEADS, t, q)
    _png_ok(out)
    # ungauged: no observations at all
    out2 = plots.plot_hydrograph(tmp_path / "h2.png", "X", REF, valid, 25 + LEADS, None, None)
    _png_ok(out2)
    assert sorted(os.listdir(tmp_path)) == ["h.png", "h2.png"]


def test_plot_maps(tmp_path):
    from hydrocast import plots

    rng = np.random.default_rng(4)
    mask = np.zeros((8, 10))
    mask[2:6, 3:8] = 1.0
    maps = {"soil_moisture": (rng.random((3, 8, 10)), "m3 m-3"),
            "runoff": (rng.random((3, 8, 10)) * 5, {"units": "mm", "long_name": "runoff depth"})}
    out = plots.plot_maps(tmp_path / "m.png", "AT_101", REF, maps, (6.0, 8.5, 47.0, 49.0), mask)
    _png_ok(out)
    assert os.listdir(tmp_path) == ["m.png"]
