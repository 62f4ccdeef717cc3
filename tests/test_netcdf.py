"""CF-1.8 output files (hydrograph, forecast maps, hindcast), atomic writes and plots."""

from __future__ import annotations

import os

import netCDF4
import numpy as np
import pytest
import xarray as xr

from hydrocast import netcdf as hnc
from hydrocast.grid import GridSpec

REF = np.datetime64("2024-05-01", "D")  # the issue date D of the test forecasts
DAY = np.timedelta64(1, "D")
CUTOFF = REF + DAY  # forecast_reference_time: the end of D, 00:00 UTC of D + 1
LEADS = np.arange(1, 8, dtype="int32")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _hydrograph(last_obs=(12.5, 3.25), last_time=("2024-05-01", "2024-04-28"), names=("Upper Inn", "Lech")):
    rng = np.random.default_rng(1)
    q = (rng.random((2, len(LEADS))) * 100).astype("float32")
    ds = hnc.hydrograph_dataset(["AT_101", "basin-22x"], names, [10.5, 11.25], [47.1, 46.9], [1234.5, 88.0],
                                REF, LEADS, q, list(last_obs), list(last_time))
    return ds, q


def _check(path, criteria="normal"):
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
        assert nc.featureType == "timeSeries" and nc.Conventions == "CF-1.8, ACDD-1.3"
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
        assert back["forecast_reference_time"].values == np.datetime64("2024-05-02T00:00", "ns")
        assert np.issubdtype(back["time"].dtype, np.datetime64)
        np.testing.assert_array_equal(back["lead_time"].values, LEADS)
        # valid time: the end of the lead's day (lead 1 = 2024-05-02, ending 2024-05-03T00)
        np.testing.assert_array_equal(back["time"].values,
                                      (CUTOFF + LEADS.astype("timedelta64[D]")).astype("datetime64[ns]"))
        np.testing.assert_array_equal(back["last_observed_discharge"].values, np.float32([12.5, 3.25]))
        # the end of the observed days 2024-05-01 and 2024-04-28
        np.testing.assert_array_equal(back["last_observation_time"].values,
                                      np.array(["2024-05-02", "2024-04-29"], dtype="datetime64[ns]"))
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
        assert t[0] == np.datetime64("2024-05-01", "ns") and np.isnat(t[1])  # the end of 2024-04-30
        # a boundary variable may not hold fill values: no bounds when a basin has no observation
        assert "last_observation_time_bnds" not in back.variables


def test_all_ungauged_hydrograph_passes(tmp_path):
    ds, _ = _hydrograph(last_obs=(np.nan, np.nan), last_time=(None, None))
    path = hnc.write_dataset(ds, tmp_path / "h.nc")
    _assert_cf(path)
    with xr.open_dataset(path) as back:
        assert np.isnat(back["last_observation_time"].values).all()
        assert "last_observation_time_bnds" not in back.variables  # a boundary variable may not carry a fill


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
                                      (CUTOFF + np.arange(1, 4).astype("timedelta64[D]")).astype("datetime64[ns]"))
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
    extras = {name: (rng.random(shape) * 50).astype("float32")
              for name in ("lumped_lstm", "persistence", "climatology")}
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
        assert back["discharge_observed"].attrs["long_name"] == "observed daily mean discharge on the valid day"
        assert list(back["basin_id"].values) == ["A", "BB", "CCC"]
        np.testing.assert_array_equal(back["forecast_reference_time"].values, (issues + DAY).astype("datetime64[ns]"))
        valid = back["time"].transpose("forecast_reference_time", "lead_time").values
        expect = issues[:, None] + DAY + np.asarray(leads).astype("timedelta64[D]")[None, :]
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


# -- time semantics (issue 7): daily means, bounds, the data cut-off -----------------------------
def _hindcast(issues=None, leads=(1, 2, 3, 5)):
    rng = np.random.default_rng(5)
    issues = np.arange("2023-01-01", "2023-01-11", dtype="datetime64[D]") if issues is None else issues
    shape = (2, len(issues), len(leads))
    arrays = [(rng.random(shape) * 50).astype("float32") for _ in range(3)]
    ds = hnc.hindcast_dataset(["A", "BB"], issues, list(leads), arrays[0], arrays[1], {"persistence": arrays[2]},
                              [10.0, 12.5], [47.0, 45.5], [100.0, 200.0])
    return ds, issues, np.asarray(leads)


def _assert_day_bounds(bounds, valid):
    """``bounds`` (..., 2) bracket ``valid`` as [valid - 24 h, valid]: the UTC day ending at ``valid``."""
    bounds, valid = np.asarray(bounds), np.asarray(valid)
    assert bounds.shape == valid.shape + (2,)
    np.testing.assert_array_equal(bounds[..., 1], valid)
    assert (bounds[..., 1] - bounds[..., 0] == np.timedelta64(24 * 3600, "s")).all()
    # each lower bound is a midnight UTC
    assert (bounds[..., 0] == bounds[..., 0].astype("datetime64[D]")).all()


def test_hydrograph_time_semantics(tmp_path):
    ds, _ = _hydrograph()
    path = hnc.write_dataset(ds, tmp_path / "h.nc")
    with netCDF4.Dataset(path) as nc:
        assert nc.variables["time"].bounds == "time_bnds"
        assert nc.variables["lead_time"].bounds == "lead_time_bnds"
        assert nc.variables["last_observation_time"].bounds == "last_observation_time_bnds"
        assert nc.variables["discharge"].cell_methods == "time: mean"
        assert nc.variables["last_observed_discharge"].cell_methods == "time: mean"
        assert nc.variables["time_bnds"].dtype == np.int32
        assert nc.issue_date == "2024-05-01"
    with xr.open_dataset(path) as back:
        frt = back["forecast_reference_time"].values
        assert frt == np.datetime64("2024-05-02T00:00:00", "ns")  # issue date 2024-05-01 + 1 day, decoded as is
        valid = back["time"].values
        # time = forecast_reference_time + lead_time exactly (CF forecast_period)
        np.testing.assert_array_equal(valid - frt, LEADS.astype("timedelta64[D]").astype("timedelta64[ns]"))
        _assert_day_bounds(back["time_bnds"].values, valid)
        # lead 1 is the day after the issue date: [2024-05-02 00:00, 2024-05-03 00:00)
        assert back["time_bnds"].values[0, 0] == np.datetime64("2024-05-02", "ns")
        np.testing.assert_array_equal(back["lead_time_bnds"].values, np.stack([LEADS - 1, LEADS], axis=1))
        _assert_day_bounds(back["last_observation_time_bnds"].values, back["last_observation_time"].values)
        # the observed day (the date given) is the lower bound
        np.testing.assert_array_equal(back["last_observation_time_bnds"].values[:, 0],
                                      np.array(["2024-05-01", "2024-04-28"], dtype="datetime64[ns]"))


def test_forecast_maps_time_semantics(tmp_path):
    grid = GridSpec.from_bounds("EPSG:4326", (5.0, 45.0, 15.0, 50.0), 0.25)
    ds = hnc.forecast_map_dataset(grid, (0, 4, 0, 5), REF, [1, 2, 3],
                                  {"soil_moisture": (np.zeros((3, 4, 5)), {"units": "m3 m-3"})}, np.ones((4, 5)), "b")
    path = hnc.write_dataset(ds, tmp_path / "m.nc")
    with xr.open_dataset(path) as back:
        frt = back["forecast_reference_time"].values
        assert frt == CUTOFF.astype("datetime64[ns]")
        assert back.attrs["issue_date"] == str(REF)
        np.testing.assert_array_equal(back["time"].values - frt, np.array([1, 2, 3], dtype="timedelta64[D]")
                                      .astype("timedelta64[ns]"))
        _assert_day_bounds(back["time_bnds"].values, back["time"].values)
        assert back["time_bnds"].values[0, 0] == CUTOFF.astype("datetime64[ns]")


def test_hindcast_time_semantics(tmp_path):
    ds, issues, leads = _hindcast()
    path = hnc.write_dataset(ds, tmp_path / "k.nc")
    with netCDF4.Dataset(path) as nc:
        for name in ("discharge_simulated", "discharge_observed", "discharge_persistence"):
            assert nc.variables[name].cell_methods == "time: mean"
        assert nc.variables["forecast_reference_time"].axis == "T"
        assert not hasattr(nc.variables["time"], "bounds")  # see the module docstring
    with xr.open_dataset(path) as back:
        frt = back["forecast_reference_time"].values
        np.testing.assert_array_equal(frt, (issues + DAY).astype("datetime64[ns]"))
        valid = back["time"].transpose("lead_time", "forecast_reference_time").values
        lead_ns = leads.astype("timedelta64[D]").astype("timedelta64[ns]")
        np.testing.assert_array_equal(valid, frt[None, :] + lead_ns[:, None])
        # the period of each value: forecast_reference_time + lead_time_bnds, 24 h ending at time
        lb = back["lead_time_bnds"].values.astype("timedelta64[D]").astype("timedelta64[ns]")  # (lead, 2)
        period = frt[None, :, None] + lb[:, None, :]
        _assert_day_bounds(period, valid)
        # issue 2023-01-01, lead 1 = the mean over 2023-01-02 (UTC)
        assert period[0, 0, 0] == np.datetime64("2023-01-02", "ns")


# -- ACDD discovery attributes -----------------------------------------------------------------------
#: Recommended ACDD attributes hydrocast cannot fill honestly by itself (a user may give them as attrs)
UNKNOWABLE = {"acknowledgment/acknowledgement", "creator_url", "creator_email", "naming_authority",
              "publisher_name", "publisher_url", "publisher_email", "geospatial_vertical_min",
              "geospatial_vertical_max", "geospatial_vertical_positive", "geospatial_bounds_vertical_crs", "id"}
#: checks that compare coverage (cell edges, period bounds) with coordinate points: expected mismatches
POINT_CHECKS = {"geospatial_lat_extents_match", "geospatial_lon_extents_match", "time_coverage_extents_match"}


def _acdd(path):
    pytest.importorskip("compliance_checker")
    return hnc.check_acdd(path)


def _assert_acdd_clean(path, allow_points=()):
    rep = _acdd(path)
    assert rep["high"] == [], rep["high"]
    assert rep["errors"] == {}, rep["errors"]
    for msg in rep["medium"]:
        name, _, text = msg.partition(": ")
        if name == "Global Attributes":
            assert text.removesuffix(" not present") in UNKNOWABLE, msg
        else:
            assert name in POINT_CHECKS and name in allow_points, msg
    return rep


def _attrs(path) -> dict:
    with netCDF4.Dataset(path) as nc:
        return {k: nc.getncattr(k) for k in nc.ncattrs()}


def _assert_discovery(attrs: dict) -> None:
    for key in ("title", "summary", "keywords", "license", "institution", "creator_name", "creator_type", "project",
                "source", "history", "date_created", "product_version", "standard_name_vocabulary",
                "time_coverage_start", "time_coverage_end", "time_coverage_duration", "time_coverage_resolution"):
        assert attrs.get(key), key
    assert attrs["Conventions"] == "CF-1.8, ACDD-1.3"
    assert "MIT" in attrs["license"] and "input products" in attrs["license"]
    created = np.datetime64(attrs["date_created"].removesuffix("Z"), "s")
    assert attrs["date_created"].endswith("Z") and attrs["history"].startswith(attrs["date_created"])
    assert not np.isnat(created)
    assert attrs["time_coverage_resolution"] == "P1D"


def _coverage(start, end) -> dict:
    days = int((np.datetime64(end, "D") - np.datetime64(start, "D")).astype(int))
    return {"time_coverage_start": f"{np.datetime64(start, 'D')}T00:00:00Z",
            "time_coverage_end": f"{np.datetime64(end, 'D')}T00:00:00Z", "time_coverage_duration": f"P{days}D"}


def _coverage_content_types(path) -> dict:
    with netCDF4.Dataset(path) as nc:
        return {n: getattr(v, "coverage_content_type", None) for n, v in nc.variables.items()}


def test_hydrograph_acdd(tmp_path):
    ds, _ = _hydrograph()
    path = hnc.write_dataset(ds, tmp_path / "h.nc")
    _assert_acdd_clean(path, allow_points={"time_coverage_extents_match"})
    a = _attrs(path)
    _assert_discovery(a)
    # outlets (10.5, 47.1) and (11.25, 46.9); valid days 2024-05-02 .. 2024-05-08 (the end of the 8th)
    assert (a["geospatial_lat_min"], a["geospatial_lat_max"]) == (46.9, 47.1)
    assert (a["geospatial_lon_min"], a["geospatial_lon_max"]) == (10.5, 11.25)
    assert a["geospatial_bounds"] == "MULTIPOINT ((47.100000 10.500000), (46.900000 11.250000))"
    assert {k: a[k] for k in ("time_coverage_start", "time_coverage_end", "time_coverage_duration")} == \
        _coverage("2024-05-02", "2024-05-09")
    assert a["institution"] == "unknown" and a["creator_type"] == "institution"
    types = _coverage_content_types(path)
    assert types["discharge"] == "modelResult" and types["last_observed_discharge"] == "physicalMeasurement"
    assert all(types[k] == "coordinate" for k in ("time", "lead_time", "forecast_reference_time", "lat", "lon",
                                                  "basin_id", "last_observation_time"))
    assert all(t is not None for n, t in types.items() if not n.endswith("_bnds")), types


def test_hydrograph_attrs_from_the_caller(tmp_path):
    rng = np.random.default_rng(0)
    ds = hnc.hydrograph_dataset(["X1"], None, [5.0], [45.0], [10.0], REF, [1, 2], rng.random((1, 2)), [np.nan],
                                [None], "Hydro Service", model_id="m42",
                                global_attrs={"creator_email": "ops@example.org", "license": "CC-BY-4.0"})
    path = hnc.write_dataset(ds, tmp_path / "h.nc")
    a = _attrs(path)
    assert a["institution"] == a["creator_name"] == "Hydro Service"
    assert a["creator_email"] == "ops@example.org" and a["license"] == "CC-BY-4.0"
    assert a["id"] == "hydrocast_X1_20240501_m42_hydrograph" and "m42" in a["source"]
    assert a["geospatial_bounds"] == "POINT (45.000000 5.000000)"
    _assert_cf(path)


@pytest.mark.parametrize("crs,bounds,res", [
    ("EPSG:4326", (5.0, 45.0, 15.0, 50.0), 0.25),
    ("EPSG:3035", (4_000_000.0, 2_600_000.0, 4_100_000.0, 2_700_000.0), 5_000.0),
])
def test_forecast_maps_acdd(tmp_path, crs, bounds, res):
    from pyproj import Transformer

    grid = GridSpec.from_bounds(crs, bounds, res)
    window = (3, 9, 4, 14)
    sm = {"units": "m3 m-3", "standard_name": "volume_fraction_of_condensed_water_in_soil",
          "cell_methods": "time: mean"}
    ds = hnc.forecast_map_dataset(grid, window, REF, [1, 2, 3], {"soil_moisture": (np.zeros((3, 6, 10)), sm)},
                                  np.ones((6, 10)), "AT_101")
    path = hnc.write_dataset(ds, tmp_path / "m.nc")
    _assert_cf(path)
    _assert_acdd_clean(path, allow_points=POINT_CHECKS)
    a = _attrs(path)
    _assert_discovery(a)
    assert {k: a[k] for k in ("time_coverage_start", "time_coverage_end", "time_coverage_duration")} == \
        _coverage("2024-05-02", "2024-05-05")
    # the window's cells' outer edges, from the cell centres and the resolution
    xs, ys = grid.x[4:14], grid.y[3:9]
    west, east, south, north = xs[0] - res / 2, xs[-1] + res / 2, ys[-1] - res / 2, ys[0] + res / 2
    if grid.is_geographic:
        assert (a["geospatial_lon_min"], a["geospatial_lon_max"]) == pytest.approx((west, east), abs=1e-12)
        assert (a["geospatial_lat_min"], a["geospatial_lat_max"]) == pytest.approx((south, north), abs=1e-12)
        assert a["geospatial_lat_resolution"] == "0.25 degrees"
    else:  # every cell corner of the window, transformed: the extremes of the outline
        cx, cy = np.meshgrid(np.linspace(west, east, 11), np.linspace(south, north, 7))
        lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(cx, cy)
        assert (a["geospatial_lon_min"], a["geospatial_lon_max"]) == pytest.approx((lon.min(), lon.max()), abs=1e-4)
        assert (a["geospatial_lat_min"], a["geospatial_lat_max"]) == pytest.approx((lat.min(), lat.max()), abs=1e-4)
    assert a["geospatial_bounds"].startswith("POLYGON ((")
    types = _coverage_content_types(path)
    assert types["soil_moisture"] == "modelResult" and types["basin_fraction"] == "auxiliaryInformation"
    assert types["x"] == types["y"] == types["time"] == "coordinate"


def test_hindcast_acdd(tmp_path):
    ds, issues, leads = _hindcast()
    path = hnc.write_dataset(ds, tmp_path / "k.nc")
    _assert_acdd_clean(path, allow_points={"time_coverage_extents_match"})
    a = _attrs(path)
    _assert_discovery(a)
    # issues 2023-01-01 .. 2023-01-10, leads up to 5: valid days 2023-01-02 .. 2023-01-15
    assert {k: a[k] for k in ("time_coverage_start", "time_coverage_end", "time_coverage_duration")} == \
        _coverage(issues[0] + DAY, issues[-1] + DAY + int(leads.max()) * DAY)
    assert (a["geospatial_lat_min"], a["geospatial_lat_max"], a["geospatial_lon_min"], a["geospatial_lon_max"]) == \
        (45.5, 47.0, 10.0, 12.5)
    types = _coverage_content_types(path)
    assert types["discharge_observed"] == "physicalMeasurement"
    assert types["discharge_simulated"] == types["discharge_persistence"] == "modelResult"


def test_acdd_report_before_the_attributes(tmp_path):
    """The checker is no rubber stamp: a file without the discovery attributes has high-priority failures."""
    ds, _ = _hydrograph()
    bare = ds.copy()
    bare.attrs = {"Conventions": "CF-1.8", "title": "x"}
    path = hnc.write_dataset(bare, tmp_path / "bare.nc")
    rep = _acdd(path)
    assert any("summary" in m for m in rep["high"]) and any("keywords" in m for m in rep["high"])
    assert rep["scored"] < _acdd(hnc.write_dataset(ds, tmp_path / "full.nc"))["scored"]


def test_cube_is_cf_and_acdd(tmp_path):
    from hydrocast.cube import QUANTITY_ATTRS, CubeWriter, read_index

    grid = GridSpec.from_bounds("EPSG:4326", (-8.8, 40.0, -8.0, 40.5), 0.1)
    days = np.arange("2020-03-01", "2020-03-11", dtype="datetime64[D]")
    dyn = {"precipitation": QUANTITY_ATTRS["precipitation"], "soil_moisture": QUANTITY_ATTRS["soil_moisture"]}
    static = {"elevation": {"units": "m", "standard_name": "surface_altitude", "long_name": "mean surface elevation"}}
    path = tmp_path / "cube.nc"
    rng = np.random.default_rng(0)
    with CubeWriter(path, grid, days, dyn, static, institution="Test Lab") as w:
        for name in dyn:
            w.write_days(name, days, rng.random((len(days), *grid.shape)), [""] * len(days))
        w.write_static("elevation", rng.random(grid.shape) * 500)
        w.commit()
    _assert_cf(path)
    assert hnc.check_cf(path, criteria="strict")[0]
    _assert_acdd_clean(path, allow_points=POINT_CHECKS)
    a = _attrs(path)
    _assert_discovery(a)
    assert a["institution"] == "Test Lab"
    assert not {"units", "standard_name", "long_name", "grid_mapping"} & set(a)  # no variable's attrs leaked
    assert {k: a[k] for k in ("time_coverage_start", "time_coverage_end", "time_coverage_duration")} == \
        _coverage("2020-03-01", "2020-03-11")
    assert (a["geospatial_lon_min"], a["geospatial_lat_min"], a["geospatial_lon_max"], a["geospatial_lat_max"]) == \
        pytest.approx((grid.x[0] - 0.05, grid.y[-1] - 0.05, grid.x[-1] + 0.05, grid.y[0] + 0.05), abs=1e-9)
    types = _coverage_content_types(path)
    assert types["precipitation"] == types["soil_moisture"] == "physicalMeasurement"
    assert types["precipitation_source"] == types["elevation"] == "auxiliaryInformation"
    assert types["time"] == types["x"] == types["y"] == "coordinate"
    idx = read_index(path)  # the cube's own attributes are still there
    assert idx.grid.same_as(grid) and list(idx.dynamic) == ["precipitation", "soil_moisture"]
    np.testing.assert_array_equal(idx.days, days)


def test_acdd_helpers():
    from hydrocast import acdd

    assert acdd.iso_duration(np.timedelta64(7, "D")) == "P7D"
    assert acdd.iso_duration(np.timedelta64(90, "m")) == "PT5400S"
    assert acdd.iso_duration(np.timedelta64(25, "h")) == "P1DT3600S"
    b = np.array([["2020-01-01", "2020-01-02"], ["NaT", "NaT"], ["2020-01-03", "2020-01-04"]], dtype="datetime64[D]")
    assert acdd.time_coverage(b) == {"time_coverage_start": "2020-01-01T00:00:00Z",
                                     "time_coverage_end": "2020-01-04T00:00:00Z",
                                     "time_coverage_duration": "P3D", "time_coverage_resolution": "P1D"}
    assert acdd.time_coverage(np.array([], dtype="datetime64[D]")) == {}
    assert acdd.point_extent([np.nan], [np.nan]) == {}


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
