"""Terrain from a DEM (hydrocast.terrain): static layers, slope, D8 routing, and the import rules
that keep it apart from the DEM reader and from hydrocast.basins.

Expected values come from independent computations: NumPy block means, slopes of analytic planes,
analytic cell areas, pyflwdir called directly on the raw array."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from pyproj import CRS

from hydrocast import terrain
from hydrocast.grid import EARTH_RADIUS_M, GridSpec
from hydrocast.sources import dem

R = EARTH_RADIUS_M
PKG = Path(__file__).resolve().parents[1] / "hydrocast"


def _da(z, transform, crs):
    import rioxarray  # noqa: F401  (the .rio accessor)

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



def _imports(path: Path) -> set[str]:
    """Every hydrocast module ``path`` imports, at the top or inside a function (absolute names)."""
    tree = ast.parse(path.read_text())
    pkg = ["hydrocast", *path.relative_to(PKG).parent.parts]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("hydrocast")}


def test_no_import_cycle_between_basins_terrain_and_the_dem_reader():
    basins, terr, reader = (_imports(PKG / p) for p in ("basins.py", "terrain.py", "sources/dem.py"))
    assert "hydrocast.terrain" in basins  # basins use the routing ...
    assert not {m for m in basins if m.startswith("hydrocast.sources")}  # ... not the reader
    assert not {m for m in terr if m.startswith(("hydrocast.basins", "hydrocast.sources"))}
    assert not {m for m in reader if m.startswith(("hydrocast.basins", "hydrocast.terrain"))}
    # and the DEM reader is only a reader now
    assert not hasattr(dem, "flow_routing") and not hasattr(dem, "static_layers")


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
    layers = terrain.static_layers(da, grid)
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
    layers = terrain.static_layers(dem.read(p, {}, None), grid)
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
    routing = terrain.flow_routing(dem.read(p, {}, None))
    s = terrain.slope_degrees(routing.elevation, routing.dx_m, routing.dy_m)
    s0 = terrain.slope_degrees(z.astype("float64"), routing.dx_m, routing.dy_m)
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
    layers = terrain.static_layers(_da(z, t, crs), grid)
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
        routing = terrain.flow_routing(_da(z, t, crs))
        s = terrain.slope_degrees(routing.elevation.astype("float64"), routing.dx_m, routing.dy_m)
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
    routing = terrain.flow_routing(_da(z, t, "EPSG:4326"), outlets="min")
    out_r, out_c = z.shape[0] - 1, 20
    assert routing.upstream_area_km2[out_r, out_c] == pytest.approx(total_km2, rel=0.02)
    assert np.nanargmax(routing.upstream_area_km2) == out_r * z.shape[1] + out_c
    grid = GridSpec(CRS.from_epsg(4326), Affine(0.005, 0, 10.0, 0, -0.005, 45.05), 9, 10)
    layers = terrain.static_layers(_da(z, t, "EPSG:4326"), grid, routing=routing)
    upa = layers["upstream_area"][0]
    assert np.nanmax(upa) == pytest.approx(total_km2, rel=0.02)
    assert np.unravel_index(np.nanargmax(upa), upa.shape) == (9, 4)  # the cell holding the outlet
    # with outlets at every edge cell the valley still collects all but (some of) its edge cells
    edge = terrain.flow_routing(_da(z, t, "EPSG:4326"))
    n_edge = 2 * (z.shape[0] + z.shape[1])
    assert total_km2 * (1 - n_edge / np.isfinite(z).sum()) <= edge.upstream_area_km2[out_r, out_c] <= total_km2 * 1.001


def test_flow_distance_to_outlet_is_metric():
    z, t = _v_valley_geographic(nodata_hole=False)
    routing = terrain.flow_routing(_da(z, t, "EPSG:4326"), outlets="min")
    out_r, out_c = z.shape[0] - 1, 20
    assert routing.dist_to_outlet_m[out_r, out_c] == 0
    # straight down the channel: distance = rows * R * dlat
    for r in (0, 10, 30):
        assert routing.dist_to_outlet_m[r, out_c] == pytest.approx((out_r - r) * R * math.radians(t.a), rel=1e-6)
