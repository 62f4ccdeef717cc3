"""Generic NetCDF and GeoTIFF readers, on files written here with xarray/rioxarray/rasterio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine
from pyproj import Transformer

from hydrocast.errors import BadInputError, ConfigError
from hydrocast.sources import generic
from hydrocast.sources.generic import date_regex, select_axis

# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def test_select_axis_half_cell_rule_and_descending():
    c = np.array([0.5, 1.5, 2.5, 3.5, 4.5])
    # widened by half a cell: [0.7, 3.4] -> centres 1.5, 2.5 (0.5 and 3.5 are outside)
    s = select_axis(c, 1.2, 2.9)
    assert s.coords.tolist() == [1.5, 2.5] and s.slices == (slice(1, 3),)
    # [1.5, 3.5]: centres exactly half a cell out are kept (their cells touch the box)
    assert select_axis(c, 2.0, 3.0).coords.tolist() == [1.5, 2.5, 3.5]
    d = select_axis(c[::-1], 2.1, 2.9)  # descending axis: [1.6, 3.4] -> 2.5 only
    assert d.coords.tolist() == [2.5] and d.slices == (slice(2, 3),)
    d = select_axis(c[::-1], 1.9, 3.1)
    assert d.coords.tolist() == [3.5, 2.5, 1.5] and d.slices == (slice(1, 4),)
    assert select_axis(c, 10, 11) is None


def test_select_axis_periodic_0_360():
    lon = np.arange(0.5, 360, 1.0)
    s = select_axis(lon, -2.0, 2.0, periodic=True)
    assert s.coords.tolist() == [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]
    assert s.slices == (slice(357, 360), slice(0, 3))


def test_date_regex():
    assert date_regex("%Y%m%d").search("prec_20200105_v2.tif").group(0) == "20200105"
    assert date_regex("%Y%m%d").search("prec_120200105.tif") is None
    assert date_regex("%Y-%j").search("chirps-2020-005.tif").group(0) == "2020-005"
    with pytest.raises(ConfigError):
        date_regex("%Q")


# ------------------------------------------------------------------------------------------------
# NetCDF
# ------------------------------------------------------------------------------------------------

def laea_file(path: Path, *, crs="EPSG:3035", var="sm", grid_mapping=True, units="m3 m-3"):
    x = 4_000_500.0 + 1000.0 * np.arange(40)
    y = 3_000_500.0 + 1000.0 * np.arange(30)[::-1]
    t = pd.date_range("2021-05-01", periods=3, freq="D")
    rng = np.random.default_rng(1)
    vals = rng.random((3, 30, 40)).astype("f4")
    vals[1, 5, 7] = np.nan
    da = xr.DataArray(vals, dims=("time", "y", "x"), coords={"time": t, "y": y, "x": x}, name=var,
                      attrs={"units": units})
    if grid_mapping:
        da = da.rio.write_crs(crs)
    da.to_netcdf(path)
    return path, da


def test_netcdf_epsg3035_read_and_clipped(tmp_path):
    path, src = laea_file(tmp_path / "sm.nc")
    # a window of the grid in EPSG:3035, turned into a lon/lat bbox that covers it
    x0, x1, y0, y1 = 4_010_000, 4_020_000, 3_008_000, 3_016_000
    tr = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)
    xx, yy = np.meshgrid(np.linspace(x0, x1, 11), np.linspace(y0, y1, 11))
    lon, lat = tr.transform(xx, yy)
    bbox = (lon.min(), lat.min(), lon.max(), lat.max())
    da = generic.read_netcdf(path, {"variable": "sm"}, bbox)
    assert da.dims == ("time", "y", "x") and da.dtype == np.float32
    assert da.rio.crs.to_epsg() == 3035
    # covers the window, is smaller than the file, values sit at the right coordinates
    assert da.x.min() <= x0 + 500 and da.x.max() >= x1 - 500 and da.y.min() <= y0 + 500 and da.y.max() >= y1 - 500
    assert da.sizes["x"] < 40 and da.sizes["y"] < 30
    expected = src.sel(x=da.x.values, y=da.y.values).values
    np.testing.assert_array_equal(da.values, expected)
    assert da.attrs["units"] == "m3 m-3" and da.attrs["step"] == "1D" and da.attrs["run"] == ""
    assert da.time.values.tolist() == src.time.values.astype("datetime64[ns]").tolist()
    info = generic.scan_netcdf(path, {"variable": "sm"})
    assert info.step == "1D" and info.days == tuple(np.datetime64("2021-05-01") + np.arange(3))
    full = generic.read_netcdf(path, {"variable": "sm", "crs": "EPSG:3035"}, None)
    np.testing.assert_array_equal(full.values, src.values)


def test_netcdf_wrong_crs_and_no_crs(tmp_path):
    path, _ = laea_file(tmp_path / "sm.nc")
    with pytest.raises(BadInputError, match="wrong CRS") as exc:
        generic.read_netcdf(path, {"variable": "sm", "crs": "EPSG:32633"}, None)
    assert str(exc.value).startswith(str(path))
    bare, src = laea_file(tmp_path / "bare.nc", grid_mapping=False)
    with pytest.raises(BadInputError, match="has no CRS"):
        generic.read_netcdf(bare, {"variable": "sm"}, None)
    da = generic.read_netcdf(bare, {"variable": "sm", "crs": "EPSG:3035"}, None)
    assert da.rio.crs.to_epsg() == 3035
    np.testing.assert_array_equal(da.values, src.values)


def test_netcdf_missing_variable(tmp_path):
    path, _ = laea_file(tmp_path / "sm.nc")
    with pytest.raises(BadInputError, match=r"has no variable 'swvl1' \(found: .*sm"):
        generic.read_netcdf(path, {"variable": "swvl1"}, None)
    with pytest.raises(BadInputError, match="has no variable"):
        generic.scan_netcdf(path, {"variable": "swvl1"})
    with pytest.raises(ConfigError, match="variable"):
        generic.scan_netcdf(path, {"name": "x"})


def era5_tp(path: Path, *, label_end_times=True):
    """ERA5-like hourly tp in m on a global 0..360 1° grid (valid_time, latitude N->S, longitude)."""
    lon = np.arange(0.0, 360.0, 1.0)
    lat = np.arange(60.0, 29.0, -1.0)
    t = pd.date_range("2022-02-01 01:00", periods=24, freq="h")  # accumulations labelled by their end
    rng = np.random.default_rng(2)
    tp = (rng.random((24, lat.size, lon.size)) * 2e-3).astype("f4")
    tp[0, 0, 0] = -1e-9  # GRIB packing noise
    ds = xr.Dataset({"tp": (("valid_time", "latitude", "longitude"), tp, {"units": "m"})},
                    coords={"valid_time": t, "latitude": ("latitude", lat, {"units": "degrees_north"}),
                            "longitude": ("longitude", lon, {"units": "degrees_east"})})
    ds.to_netcdf(path)
    return path, ds


def test_netcdf_era5_hourly_tp_in_m(tmp_path):
    path, src = era5_tp(tmp_path / "era5.nc")
    bbox = (-5.0, 40.0, 5.0, 50.0)  # straddles the 0° seam of the 0..360 file
    da = generic.read_netcdf(path, {"variable": "tp", "time_label": "end"}, bbox)
    assert da.attrs["units"] == "mm/day" and da.attrs["step"] == "1h" and da.attrs["original_units"] == "m"
    assert da.rio.crs.to_epsg() == 4326  # implied by CF lat/lon axes
    assert da.x.values.tolist() == list(np.arange(-5.0, 6.0))
    assert da.y.values.tolist() == list(np.arange(50.0, 39.0, -1.0))
    lon360 = np.mod(da.x.values, 360)
    expected = src.tp.sel(longitude=lon360, latitude=da.y.values).values.astype("f8") * 1000 * 24
    np.testing.assert_allclose(da.values, expected, rtol=1e-6)
    assert da.time.values[0] == np.datetime64("2022-02-01T00:00", "ns")  # start of the first hour
    info = generic.scan_netcdf(path, {"variable": "tp", "time_label": "end"})
    assert info.step == "1h" and info.days == (np.datetime64("2022-02-01"),)
    info_start = generic.scan_netcdf(path, {"variable": "tp"})
    assert info_start.days == (np.datetime64("2022-02-01"), np.datetime64("2022-02-02"))
    whole = generic.read_netcdf(path, {"variable": "tp"}, None)
    assert whole.values[0, 0, 0] == 0.0  # -1e-9 m is packing noise, not missing


def test_netcdf_units_override_and_unknown(tmp_path):
    path, src = era5_tp(tmp_path / "era5.nc")
    da = generic.read_netcdf(path, {"variable": "tp", "units": "mm/h"}, (0.0, 45.0, 1.0, 46.0))
    exp = src.tp.sel(longitude=da.x.values, latitude=da.y.values).values.astype("f8") * 24
    exp[exp < 0] = 0
    np.testing.assert_allclose(da.values, exp, rtol=1e-6)
    with pytest.raises(BadInputError, match="unknown precipitation units 'inch'"):
        generic.read_netcdf(path, {"variable": "tp", "units": "inch"}, None)
    other = generic.read_netcdf(path, {"variable": "tp", "quantity": "snow_depth"}, (0.0, 45.0, 1.0, 46.0))
    assert other.attrs["units"] == "m"  # not precipitation: units kept, values untouched
    np.testing.assert_allclose(other.values, src.tp.sel(longitude=other.x.values, latitude=other.y.values).values)


def test_netcdf_single_time_needs_step(tmp_path):
    path = tmp_path / "one.nc"
    xr.Dataset({"pr": (("time", "lat", "lon"), np.ones((1, 2, 2), "f4"), {"units": "kg m-2 s-1"})},
               coords={"time": [np.datetime64("2020-01-01")], "lat": [0.5, 1.5], "lon": [0.5, 1.5]}).to_netcdf(path)
    with pytest.raises(BadInputError, match="set `step`"):
        generic.scan_netcdf(path, {"variable": "pr"})
    da = generic.read_netcdf(path, {"variable": "pr", "step": "1D"}, None)
    np.testing.assert_allclose(da.values, 86400.0)


def test_netcdf_outside_bbox_and_not_netcdf(tmp_path):
    path, _ = laea_file(tmp_path / "sm.nc")
    with pytest.raises(BadInputError, match="outside the region"):
        generic.read_netcdf(path, {"variable": "sm"}, (100.0, -10.0, 110.0, 0.0))
    junk = tmp_path / "junk.nc"
    junk.write_text("not a netcdf file at all")
    with pytest.raises(BadInputError, match="is not a NetCDF file"):
        generic.scan_netcdf(junk, {"variable": "sm"})


# ------------------------------------------------------------------------------------------------
# GeoTIFF
# ------------------------------------------------------------------------------------------------

_TIF_TRANSFORM = Affine(0.5, 0, 10.0, 0, -0.5, 50.0)  # default of write_tif: 0.5° cells, north-west corner 10E 50N


def write_tif(path: Path, arr, *, crs="EPSG:4326", transform=_TIF_TRANSFORM, nodata=-9999.0):
    arr = np.asarray(arr, "f4")
    if arr.ndim == 2:
        arr = arr[None]
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype="float32", crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(arr)
    return path


def test_geotiff_daily_with_date_format(tmp_path):
    days = ["20200301", "20200302"]
    arrs = []
    for k, d in enumerate(days):
        a = np.arange(80, dtype="f4").reshape(8, 10) + 100 * k
        a[2, 3] = -9999.0
        arrs.append(a)
        write_tif(tmp_path / f"rain_{d}.tif", a)
    opts = {"date_format": "%Y%m%d", "units": "mm/day", "quantity": "precipitation"}
    infos = [generic.scan_geotiff(tmp_path / f"rain_{d}.tif", opts) for d in days]
    assert [i.days for i in infos] == [(np.datetime64("2020-03-01"),), (np.datetime64("2020-03-02"),)]
    assert all(i.step == "1D" for i in infos)
    bbox = (11.1, 47.1, 12.4, 48.9)  # cols with centres 11.25..12.25 (+ half cell), rows 48.75..47.25
    da = generic.read_geotiff(tmp_path / "rain_20200302.tif", opts, bbox)
    assert da.dims == ("time", "y", "x") and da.time.values[0] == np.datetime64("2020-03-02", "ns")
    xs = 10.25 + 0.5 * np.arange(10)
    ys = 49.75 - 0.5 * np.arange(8)
    cols = np.nonzero((xs >= bbox[0] - 0.25) & (xs <= bbox[2] + 0.25))[0]
    rows = np.nonzero((ys >= bbox[1] - 0.25) & (ys <= bbox[3] + 0.25))[0]
    exp = np.where(arrs[1] == -9999.0, np.nan, arrs[1])[np.ix_(rows, cols)]
    np.testing.assert_array_equal(da.values[0], exp)
    np.testing.assert_allclose(da.x.values, xs[cols])
    np.testing.assert_allclose(da.y.values, ys[rows])
    assert np.isnan(da.sel(x=11.75, y=48.75).item())  # nodata cell (row 2, col 3)
    assert da.attrs["units"] == "mm/day" and da.rio.crs.to_epsg() == 4326


def test_geotiff_static_projected_and_errors(tmp_path):
    t = Affine(1000.0, 0, 500_000.0, 0, -1000.0, 5_400_000.0)
    a = np.arange(50, dtype="f4").reshape(5, 10)
    p = write_tif(tmp_path / "elev.tif", a, crs="EPSG:32633", transform=t)
    info = generic.scan_geotiff(p, {})
    assert info.step == "static" and info.days == ()
    da = generic.read_geotiff(p, {}, None)
    assert da.dims == ("y", "x") and da.attrs["units"] == ""
    np.testing.assert_array_equal(da.values, a)
    assert da.x.values[0] == 500_500.0 and da.y.values[0] == 5_399_500.0
    with pytest.raises(BadInputError, match="wrong CRS"):
        generic.read_geotiff(p, {"crs": "EPSG:4326"}, None)
    multi = write_tif(tmp_path / "multi.tif", np.stack([a, a * 2]), crs="EPSG:32633", transform=t)
    with pytest.raises(BadInputError, match="set `band`"):
        generic.read_geotiff(multi, {}, None)
    np.testing.assert_array_equal(generic.read_geotiff(multi, {"band": 2}, None).values, a * 2)
    with pytest.raises(BadInputError, match="no date matching"):
        generic.scan_geotiff(p, {"date_format": "%Y%m%d"})
    html = tmp_path / "x_20200101.tif"
    html.write_bytes(b"<!doctype html><html></html>")
    with pytest.raises(BadInputError, match="HTML"):
        generic.scan_geotiff(html, {"date_format": "%Y%m%d"})


def test_netcdf_cf_grid_mapping_without_wkt_and_axis_attributes(tmp_path):
    """A grid mapping given by CF parameters only, on dims with odd names but CF axis attributes."""
    path = tmp_path / "cf.nc"
    e = 4_000_500.0 + 1000.0 * np.arange(6)
    n = 3_000_500.0 + 1000.0 * np.arange(4)  # south to north
    vals = np.arange(2 * 4 * 6, dtype="f4").reshape(2, 4, 6)
    gm = {"grid_mapping_name": "lambert_azimuthal_equal_area", "latitude_of_projection_origin": 52.0,
          "longitude_of_projection_origin": 10.0, "false_easting": 4321000.0, "false_northing": 3210000.0,
          "semi_major_axis": 6378137.0, "inverse_flattening": 298.257222101}
    ds = xr.Dataset(
        {"swe": (("t", "N", "E"), vals, {"units": "mm", "grid_mapping": "laea"}),
         "laea": ((), 0, gm)},
        coords={"t": ("t", np.array(["2021-01-01", "2021-01-02"], "datetime64[ns]"), {"axis": "T"}),
                "N": ("N", n, {"axis": "Y", "units": "m"}), "E": ("E", e, {"axis": "X", "units": "m"})})
    ds.to_netcdf(path)
    da = generic.read_netcdf(path, {"variable": "swe", "crs": "EPSG:3035"}, None)  # same CRS: accepted
    assert da.dims == ("time", "y", "x") and da.attrs["units"] == "mm"  # not precipitation: kept
    np.testing.assert_array_equal(da.values, vals)
    np.testing.assert_array_equal(da.y.values, n)
    from pyproj import CRS

    assert generic.same_crs(CRS.from_wkt(da.rio.crs.to_wkt()), CRS.from_epsg(3035))
    with pytest.raises(BadInputError, match="wrong CRS"):
        generic.read_netcdf(path, {"variable": "swe", "crs": "EPSG:3034"}, None)  # LCC Europe


def test_netcdf_noleap_calendar_becomes_datetime64(tmp_path):
    path = tmp_path / "cmip.nc"
    ds = xr.Dataset({"pr": (("time", "lat", "lon"), np.full((3, 2, 2), 1e-5, "f4"), {"units": "kg m-2 s-1"})},
                    coords={"lat": [0.5, 1.5], "lon": [0.5, 1.5], "time": ("time", [0.0, 1.0, 2.0])})
    ds.time.attrs.update(units="days since 2001-02-27", calendar="noleap")
    ds.to_netcdf(path)
    da = generic.read_netcdf(path, {"variable": "pr"}, None)
    assert da.time.dtype == np.dtype("datetime64[ns]")
    assert da.time.values.tolist() == np.array(["2001-02-27", "2001-02-28", "2001-03-01"], "datetime64[ns]").tolist()
    np.testing.assert_allclose(da.values, 1e-5 * 86400, rtol=1e-6)
    assert da.attrs["step"] == "1D"


def test_netcdf_truncated(tmp_path):
    path, _ = laea_file(tmp_path / "sm.nc")
    data = path.read_bytes()
    bad = tmp_path / "half.nc"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="truncated or corrupt") as exc:
        generic.read_netcdf(bad, {"variable": "sm"}, None)
    assert str(exc.value).startswith(str(bad))


# ------------------------------------------------------------------------------------------------
# units: the file's units attribute is kept (ERA5-Land t2m in K), in the reader and in the cube
# ------------------------------------------------------------------------------------------------

def era5land_t2m(path: Path) -> tuple[Path, np.ndarray]:
    """ERA5-Land daily-statistics-like t2m (K): 0.1° points 24.05..24.75 E, 60.75..60.05 N (N->S), 3 days."""
    lon = np.round(24.05 + 0.1 * np.arange(8), 2)
    lat = np.round(60.75 - 0.1 * np.arange(8), 2)
    t = pd.date_range("2016-01-30", periods=3, freq="D")
    k = (263.15 + np.arange(3 * 8 * 8).reshape(3, 8, 8) * 0.01).astype("f4")
    ds = xr.Dataset({"t2m": (("valid_time", "latitude", "longitude"), k,
                             {"units": "K", "standard_name": "air_temperature"})},
                    coords={"valid_time": t, "latitude": ("latitude", lat, {"units": "degrees_north"}),
                            "longitude": ("longitude", lon, {"units": "degrees_east"})})
    ds.to_netcdf(path)
    return path, k


def test_netcdf_scan_reports_the_units_read_gives(tmp_path):
    path, _ = era5land_t2m(tmp_path / "t2m.nc")
    for options, units in [({}, "K"), ({"units": "degC"}, "degC")]:
        opts = {"variable": "t2m", **options}
        assert generic.scan_netcdf(path, opts).extra["units"] == units
        assert generic.read_netcdf(path, opts, None).attrs["units"] == units
    tp, _ = era5_tp(tmp_path / "era5.nc")  # precipitation: converted, so the scan says mm/day as read does
    assert generic.scan_netcdf(tp, {"variable": "tp"}).extra["units"] == "mm/day"
    assert generic.scan_netcdf(tp, {"variable": "tp", "quantity": "snow_depth"}).extra["units"] == "m"


T2M_TOML = """
[grid]
bounds = [24.0, 60.0, 24.8, 60.8]
resolution = 0.2

[[sources]]
name = "air_temperature"
kind = "netcdf"
variable = "t2m"
paths = ["t2m.nc"]

[cube]
path = "cube.nc"
margin_cells = 0
"""


@pytest.fixture(scope="module")
def t2m_cube(tmp_path_factory):
    import netCDF4

    from hydrocast import config, ingest

    root = tmp_path_factory.mktemp("t2m")
    _, k = era5land_t2m(root / "t2m.nc")
    (root / "hydrocast.toml").write_text(T2M_TOML)
    ingest.ingest(config.load(root / "hydrocast.toml"))
    with netCDF4.Dataset(root / "cube.nc") as ds:
        v = ds["air_temperature"]
        return v[:].filled(np.nan), {a: v.getncattr(a) for a in v.ncattrs()}, k


def test_cube_of_era5land_t2m_holds_kelvin_values(t2m_cube):
    """0.2° cells = the mean of their 2 x 2 ERA5-Land points (both axes N->S, W->E here): no conversion."""
    values, _, k = t2m_cube
    expected = k.reshape(3, 4, 2, 4, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(values, expected, rtol=1e-6)


def test_cube_of_era5land_t2m_has_units_k(t2m_cube):
    _, attrs, _ = t2m_cube
    assert attrs["units"] == "K"
