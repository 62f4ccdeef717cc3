"""DEM reader (the reader contract) and the static terrain layers.

Expected values come from independent computations: rasterio's raw array, NumPy block means, slopes
of analytic planes, analytic cell areas, pyflwdir called directly on the raw array."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from pyproj import CRS

from hydrocast.errors import BadInputError
from hydrocast.grid import EARTH_RADIUS_M, GridSpec
from hydrocast.sources import dem

R = EARTH_RADIUS_M


@pytest.fixture(scope="module")
def dem_path(shared_data):
    return shared_data / "dem-pysheds" / "dem.tif"


@pytest.fixture(scope="module")
def raw(dem_path):
    with rasterio.open(dem_path) as src:
        return src.read(1), src.transform, src.profile


def _da(z, transform, crs):
    h, w = z.shape
    da = xr.DataArray(np.asarray(z, dtype="float32"), dims=("y", "x"),
                      coords={"y": transform.f + (np.arange(h) + 0.5) * transform.e,
                              "x": transform.c + (np.arange(w) + 0.5) * transform.a},
                      attrs={"units": "m", "source_file": "synthetic"})
    return da.rio.write_crs(crs)


def _write(path, z, transform, crs, nodata=-32768, dtype="int16"):
    with rasterio.open(path, "w", driver="GTiff", width=z.shape[1], height=z.shape[0], count=1,
                       dtype=dtype, crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(z.astype(dtype), 1)
    return path


# --- reader ---------------------------------------------------------------------------------------
def test_read_equals_rasterio_and_keeps_the_contract(dem_path, raw):
    z, t, _ = raw
    da = dem.read(dem_path, {"name": "dem", "kind": "dem"}, None)
    assert da.dims == ("y", "x") and da.dtype == np.float32
    np.testing.assert_array_equal(da.values, z.astype("float32"))
    assert da.rio.crs.to_epsg() == 4326
    np.testing.assert_allclose(da.x.values, t.c + (np.arange(z.shape[1]) + 0.5) * t.a)
    np.testing.assert_allclose(da.y.values, t.f + (np.arange(z.shape[0]) + 0.5) * t.e)
    assert da.attrs["units"] == "m" and da.attrs["step"] == "static" and da.attrs["run"] == ""
    assert da.attrs["source_file"] == "dem.tif"

    info = dem.scan(dem_path, {})
    assert info.step == "static" and info.days == () and info.run == ""


def test_read_nodata_becomes_nan(raw, tmp_path):
    z, t, prof = raw
    z2 = z.copy()
    z2[100:120, 50:90] = -32768
    z2[0, 0] = -32768
    p = _write(tmp_path / "holes.tif", z2, t, prof["crs"])
    da = dem.read(p, {}, None)
    hole = z2 == -32768
    assert np.isnan(da.values[hole]).all()
    np.testing.assert_array_equal(da.values[~hole], z[~hole].astype("float32"))


def test_read_bbox_window(dem_path, raw):
    z, t, _ = raw
    bbox = (-97.40, 32.60, -97.30, 32.70)
    da = dem.read(dem_path, {}, bbox)
    # independent: the cells whose extent intersects the bbox, plus 2 cells of margin
    c0 = math.floor((bbox[0] - t.c) / t.a + 1e-6) - 2
    c1 = math.ceil((bbox[2] - t.c) / t.a - 1e-6) + 2
    r0 = math.floor((t.f - bbox[3]) / -t.e + 1e-6) - 2
    r1 = math.ceil((t.f - bbox[1]) / -t.e - 1e-6) + 2
    np.testing.assert_array_equal(da.values, z[r0:r1, c0:c1].astype("float32"))
    assert da.x.values.min() - t.a / 2 < bbox[0] and da.x.values.max() + t.a / 2 > bbox[2]
    assert da.y.values.min() + t.e / 2 < bbox[1] and da.y.values.max() - t.e / 2 > bbox[3]
    with pytest.raises(BadInputError, match="dem.tif"):
        dem.read(dem_path, {}, (10.0, 10.0, 11.0, 11.0))


def test_bad_files_raise_bad_input_naming_the_file(dem_path, tmp_path):
    html = tmp_path / "dem_html.tif"
    html.write_bytes(b"<!DOCTYPE html><html>Login required</html>")
    with pytest.raises(BadInputError, match=str(html)):
        dem.scan(html, {})
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(BadInputError, match="empty"):
        dem.read(empty, {}, None)
    trunc = tmp_path / "trunc.tif"
    data = dem_path.read_bytes()
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="trunc.tif"):
        dem.read(trunc, {}, None)


def test_read_any_crs_and_feet(tmp_path):
    # a projected DEM in feet: bbox is transformed into its CRS and the values become metres
    t = Affine(100.0, 0, 480000.0, 0, -100.0, 3606000.0)
    z = np.arange(60 * 40, dtype="float32").reshape(60, 40)
    p = _write(tmp_path / "utm.tif", z, t, "EPSG:32614", nodata=-9999.0, dtype="float32")
    da = dem.read(p, {"units": "ft"}, None)
    np.testing.assert_allclose(da.values, z * 0.3048, rtol=1e-6)
    assert da.rio.crs.to_epsg() == 32614
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(32614, 4326, always_xy=True).transform([481000, 482000], [3603000, 3604000])
    sub = dem.read(p, {"margin_cells": 0}, (lon[0], lat[0], lon[1], lat[1]))
    assert sub.x.values.min() <= 481000 + 100 and sub.x.values.max() >= 482000 - 100
    assert sub.shape[1] <= 14 and sub.shape[0] <= 14  # a window, not the whole file


# --- static layers ----------------------------------------------------------------------------------
def _aligned_grid(t, ncol, nrow, k):
    """A grid of k x k DEM cells per cube cell, aligned with the DEM's cell edges."""
    return GridSpec(CRS.from_epsg(4326), Affine(t.a * k, 0, t.c, 0, t.e * k, t.f), ncol, nrow)


def test_elevation_is_block_mean_and_upstream_area_max_is_where_pyflwdir_says(dem_path, raw):
    import pyflwdir

    z, t, _ = raw
    k = 12  # 0.01 deg
    grid = _aligned_grid(t, 30, 29, k)
    da = dem.read(dem_path, {}, None)
    layers = dem.static_layers(da, grid)
    for name, (arr, attrs) in layers.items():
        assert arr.shape == grid.shape and arr.dtype == np.float32, name
        assert attrs["units"] and attrs["long_name"], name
    assert layers["elevation"][1]["standard_name"] == "surface_altitude"
    blocks = z[: 29 * k, : 30 * k].astype("float64").reshape(29, k, 30, k).mean(axis=(1, 3))
    np.testing.assert_allclose(layers["elevation"][0], blocks, rtol=1e-5)
    std = z[: 29 * k, : 30 * k].astype("float64").reshape(29, k, 30, k).std(axis=(1, 3))
    np.testing.assert_allclose(layers["elevation_std"][0], std, atol=0.02)
    np.testing.assert_allclose(layers["valid_dem_fraction"][0], 1.0)

    flw = pyflwdir.from_dem(z.astype("float32"), nodata=-32768.0, transform=t, latlon=True)
    upa = flw.upstream_area("km2")
    upa[upa < 0] = np.nan
    sub = upa[: 29 * k, : 30 * k]
    i, j = np.unravel_index(np.nanargmax(sub), sub.shape)
    mine = layers["upstream_area"][0]
    assert np.unravel_index(np.nanargmax(mine), mine.shape) == (i // k, j // k)
    assert mine[i // k, j // k] == pytest.approx(sub[i, j], rel=0.01)
    blockmax = np.nanmax(sub.reshape(29, k, 30, k), axis=(1, 3))
    np.testing.assert_allclose(mine, blockmax, rtol=0.01)
    np.testing.assert_allclose(layers["log_upstream_area"][0], np.log10(mine), rtol=1e-5)
    hand = layers["hand"][0]
    assert np.all(hand >= 0) and np.nanmax(hand) < z.max() - z.min()


def test_nodata_block_does_not_leak(raw, tmp_path):
    z, t, prof = raw
    k = 12
    z2 = z.copy()
    z2[24:60, 30:66] = -32768  # cube rows 2-4 fully; cube cols 3-4 fully, 2 and 5 partly
    p = _write(tmp_path / "hole.tif", z2, t, prof["crs"])
    grid = _aligned_grid(t, 10, 8, k)
    layers = dem.static_layers(dem.read(p, {}, None), grid)
    elev = layers["elevation"][0]
    zz = np.where(z2 == -32768, np.nan, z2.astype("float64"))[: 8 * k, : 10 * k].reshape(8, k, 10, k)
    valid = np.isfinite(zz).mean(axis=(1, 3))
    for name in ("elevation", "elevation_std", "slope", "upstream_area", "hand"):
        arr = layers[name][0]
        assert np.isnan(arr[2:5, 3:5]).all(), name
        assert np.isfinite(arr[2:5, 2]).all() and np.isfinite(arr[2:5, 5]).all(), name
    with np.errstate(invalid="ignore"):  # all-nodata blocks: 0/0 = NaN
        block_mean = np.nansum(zz, axis=(1, 3)) / np.isfinite(zz).sum(axis=(1, 3))
    np.testing.assert_allclose(elev, block_mean, rtol=1e-5)  # partial cells average valid cells only
    np.testing.assert_allclose(layers["valid_dem_fraction"][0], valid, atol=1e-6)
    # no cliffs: slopes next to the hole stay like the DEM's own slopes (a -32768 step would be ~90 deg)
    routing = dem.flow_routing(dem.read(p, {}, None))
    s = dem.slope_degrees(routing.elevation, routing.dx_m, routing.dy_m)
    s0 = dem.slope_degrees(z.astype("float64"), routing.dx_m, routing.dy_m)
    ring = np.zeros_like(z2, dtype=bool)
    ring[23:61, 29:67] = True
    ring[24:60, 30:66] = False
    assert np.nanmax(s[ring]) <= np.nanmax(s0) + 1e-6
    assert np.nanmax(layers["slope"][0]) <= np.nanmax(s0)


@pytest.mark.parametrize("crs, x0, y0, lat, k", [
    ("EPSG:32614", 480000.0, 3606000.0, None, 0.9996),  # UTM 14N, scale ~0.9996 near the CM
    ("EPSG:3857", 0.0, 8399738.0, 60.0, 2.0),  # Web Mercator at 60 N: 1 CRS metre = 0.5 m
])
def test_slope_of_a_projected_plane(crs, x0, y0, lat, k):
    gx, gy = 0.08, -0.06  # dz per CRS unit
    t = Affine(100.0, 0, x0, 0, -100.0, y0)
    h, w = 40, 40
    xs = x0 + (np.arange(w) + 0.5) * 100.0
    ys = y0 - (np.arange(h) + 0.5) * 100.0
    z = 500.0 + gx * (xs[None, :] - x0) + gy * (ys[:, None] - y0)
    if lat is not None:  # the local Mercator scale at this latitude, from the formula, not from pyproj
        from pyproj import Transformer

        _, lat_c = Transformer.from_crs(crs, 4326, always_xy=True).transform(x0 + 2000, y0 - 2000)
        k = 1 / math.cos(math.radians(lat_c))
    expected = math.degrees(math.atan(k * math.hypot(gx, gy)))
    grid = GridSpec.from_bounds(crs, (x0, y0 - 4000, x0 + 4000, y0), 1000.0)
    layers = dem.static_layers(_da(z, t, crs), grid)
    np.testing.assert_allclose(layers["slope"][0], expected, atol=0.5)
    assert abs(float(np.mean(layers["slope"][0])) - expected) < 0.1


@pytest.mark.parametrize("lat0", [0.0, 60.0])
def test_slope_of_a_geographic_plane_uses_metres(lat0):
    a = 0.1  # metres per metre
    d = 0.0005
    h, w = 60, 60
    t = Affine(d, 0, -w * d / 2, 0, -d, lat0 + h * d / 2)
    lon = np.radians(t.c + (np.arange(w) + 0.5) * d)
    lat = np.radians(t.f - (np.arange(h) + 0.5) * d)
    ns = 100 + a * R * (lat[:, None] - math.radians(lat0)) + 0 * lon[None, :]  # rises northward
    ew = 100 + a * R * np.cos(lat[:, None]) * lon[None, :]  # rises eastward
    crs = "EPSG:4326"
    for z in (ns, ew):
        routing = dem.flow_routing(_da(z, t, crs))
        s = dem.slope_degrees(routing.elevation.astype("float64"), routing.dx_m, routing.dy_m)
        # float32 storage of heights ~100-400 m limits precision; compare inner cells
        np.testing.assert_allclose(s[2:-2, 2:-2], math.degrees(math.atan(a)), atol=0.5)


def _v_valley_geographic(nodata_hole=True):
    # a valley along a meridian draining south; heights in m on a 0.001 deg grid at 45 N
    d = 0.001
    h, w = 50, 41
    t = Affine(d, 0, 10.0, 0, -d, 45.05)
    r, c = np.mgrid[0:h, 0:w]
    z = 100.0 + 2.0 * np.abs(c - 20) + 0.5 * (h - 1 - r)
    if nodata_hole:
        z[5:9, 30:35] = np.nan
    return z, t


def test_upstream_area_of_a_v_valley_is_the_whole_valid_area():
    z, t = _v_valley_geographic()
    lat = t.f + (np.arange(z.shape[0]) + 0.5) * t.e
    zone = R**2 * math.radians(t.a) * (np.sin(np.radians(lat + t.a / 2)) - np.sin(np.radians(lat - t.a / 2)))
    total_km2 = float(np.sum(np.isfinite(z) * zone[:, None])) / 1e6
    routing = dem.flow_routing(_da(z, t, "EPSG:4326"), outlets="min")
    out_r, out_c = z.shape[0] - 1, 20
    assert routing.upstream_area_km2[out_r, out_c] == pytest.approx(total_km2, rel=0.02)
    assert np.nanargmax(routing.upstream_area_km2) == out_r * z.shape[1] + out_c
    grid = GridSpec(CRS.from_epsg(4326), Affine(0.005, 0, 10.0, 0, -0.005, 45.05), 9, 10)
    layers = dem.static_layers(_da(z, t, "EPSG:4326"), grid, routing=routing)
    upa = layers["upstream_area"][0]
    assert np.nanmax(upa) == pytest.approx(total_km2, rel=0.02)
    assert np.unravel_index(np.nanargmax(upa), upa.shape) == (9, 4)  # the cell holding the outlet
    # with outlets at every edge cell the valley still collects all but (some of) its edge cells
    edge = dem.flow_routing(_da(z, t, "EPSG:4326"))
    n_edge = 2 * (z.shape[0] + z.shape[1])
    assert total_km2 * (1 - n_edge / np.isfinite(z).sum()) <= edge.upstream_area_km2[out_r, out_c] <= total_km2 * 1.001


def test_flow_distance_to_outlet_is_metric():
    z, t = _v_valley_geographic(nodata_hole=False)
    routing = dem.flow_routing(_da(z, t, "EPSG:4326"), outlets="min")
    out_r, out_c = z.shape[0] - 1, 20
    assert routing.dist_to_outlet_m[out_r, out_c] == 0
    # straight down the channel: distance = rows * R * dlat
    for r in (0, 10, 30):
        assert routing.dist_to_outlet_m[r, out_c] == pytest.approx((out_r - r) * R * math.radians(t.a), rel=1e-6)
