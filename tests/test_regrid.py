"""Regridding against independent computations (GDAL does the warping; we check its result)."""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from hydrocast.grid import GridSpec
from hydrocast.regrid import regrid

REGION = (-8.8, 40.0, -7.2, 41.6)


def imerg_like(values: np.ndarray, west: float, south: float, res: float = 0.1) -> xr.DataArray:
    """A lat-ascending (IMERG-style) 0.1-degree field whose lower-left corner is (west, south)."""
    ny, nx = values.shape[-2:]
    x = west + (np.arange(nx) + 0.5) * res
    y = south + (np.arange(ny) + 0.5) * res
    dims = ("time", "y", "x") if values.ndim == 3 else ("y", "x")
    return xr.DataArray(values.astype("float32"), dims=dims, coords={"x": x, "y": y}).rio.write_crs("EPSG:4326")


def sphere_area(lat_s: np.ndarray, lat_n: np.ndarray, dlon: float) -> np.ndarray:
    r = 6_371_008.8
    return r * r * np.radians(dlon) * (np.sin(np.radians(lat_n)) - np.sin(np.radians(lat_s)))


def smooth_field(rng, ny, nx):
    f = rng.gamma(0.6, 8.0, size=(ny, nx))
    f[rng.random((ny, nx)) < 0.3] = 0.0  # dry cells, as in real rain fields
    return f


@pytest.mark.parametrize("res", [0.05, 0.08, 0.2])
def test_regional_total_is_conserved(res):
    """The area-weighted total over the region agrees within 1 % before and after regridding.

    The 'before' total is computed independently: the 0.1° field is supersampled exactly onto
    0.01° cells (each 0.1° cell is 10 x 10 of them), cut to the region and summed with spherical
    cell areas, without GDAL."""
    rng = np.random.default_rng(1)
    west, south = -9.0, 39.8  # region plus a 0.2-degree margin
    src = smooth_field(rng, 20, 20)
    da = imerg_like(src, west, south)
    grid = GridSpec.from_bounds("EPSG:4326", REGION, res)
    out = regrid(da, grid)
    assert not np.isnan(out).any()
    after = float((out * grid.cell_area_m2()).sum())

    fine = np.repeat(np.repeat(src, 10, axis=0), 10, axis=1)  # 0.01° cells, rows south->north
    lat_edges = south + np.arange(fine.shape[0] + 1) * 0.01
    lon_edges = west + np.arange(fine.shape[1] + 1) * 0.01
    rows = (lat_edges[:-1] >= REGION[1] - 1e-9) & (lat_edges[1:] <= REGION[3] + 1e-9)
    cols = (lon_edges[:-1] >= REGION[0] - 1e-9) & (lon_edges[1:] <= REGION[2] + 1e-9)
    area = sphere_area(lat_edges[:-1], lat_edges[1:], 0.01)[:, None]
    before = float((fine * area)[rows][:, cols].sum())
    assert after == pytest.approx(before, rel=0.01)


def test_total_conserved_onto_projected_grid():
    """Onto a 5 km grid in UTM 29N (EPSG:32629): the mean rain over the grid's footprint stays."""
    rng = np.random.default_rng(2)
    src = smooth_field(rng, 30, 30)
    src[:] = src.mean() + 0.2 * (src - src.mean())  # moderate contrast keeps the footprint test sharp
    da = imerg_like(src, -9.5, 39.5)
    grid = GridSpec.from_bounds("EPSG:32629", (480000, 4440000, 580000, 4560000), 5000)
    out = regrid(da, grid)
    assert not np.isnan(out).any()
    # independent: sample the source at 200 m points in the grid footprint, transformed to lon/lat
    from pyproj import Transformer

    xs = np.arange(480100, 580000, 200.0)
    ys = np.arange(4440100, 4560000, 200.0)
    X, Y = np.meshgrid(xs, ys)
    lon, lat = Transformer.from_crs(32629, 4326, always_xy=True).transform(X, Y)
    i = np.floor((lat - 39.5) / 0.1).astype(int)
    j = np.floor((lon + 9.5) / 0.1).astype(int)
    assert float(out.mean()) == pytest.approx(float(src[i, j].mean()), rel=0.01)


def test_constant_field_stays_constant():
    da = imerg_like(np.full((2, 30, 30), 7.25), -9.5, 39.5)
    for grid in (GridSpec.from_bounds("EPSG:4326", REGION, 0.05),
                 GridSpec.from_bounds("EPSG:4326", (-8.77, 40.01, -7.22, 41.56), 0.031),
                 GridSpec.from_bounds("EPSG:32629", (480000, 4440000, 580000, 4560000), 5000)):
        out = regrid(da, grid)
        np.testing.assert_allclose(out, 7.25, rtol=1e-6)


def test_single_wet_cell_lands_where_it_should():
    """One wet 0.1° cell (lon -8.0..-7.9, lat 40.8..40.9) becomes exactly four 0.05° cells."""
    src = np.zeros((20, 20))
    # source rows go south->north from 39.8, columns west->east from -9.0
    src[int(round((40.8 - 39.8) / 0.1)), int(round((-8.0 + 9.0) / 0.1))] = 12.0
    grid = GridSpec.from_bounds("EPSG:4326", REGION, 0.05)
    out = regrid(imerg_like(src, -9.0, 39.8), grid)
    wet = np.argwhere(out > 0)
    # grid rows go north->south from 41.6: lat 40.9..40.8 is rows (41.6-40.9)/0.05 = 14 and 15
    expected_rows = {int(round((41.6 - 40.9) / 0.05)), int(round((41.6 - 40.9) / 0.05)) + 1}
    expected_cols = {int(round((-8.0 + 8.8) / 0.05)), int(round((-8.0 + 8.8) / 0.05)) + 1}
    assert {r for r, _ in wet} == expected_rows
    assert {c for _, c in wet} == expected_cols
    assert len(wet) == 4
    np.testing.assert_allclose(out[out > 0], 12.0, rtol=1e-6)
    assert grid.y[min(expected_rows)] == pytest.approx(40.875)
    assert grid.x[min(expected_cols)] == pytest.approx(-7.975)


def test_nodata_is_not_smeared():
    """A NaN block stays NaN where it covers a target cell fully; partly covered target cells
    take the mean of their valid part only (never a zero-filled average)."""
    src = np.full((20, 20), 4.0)
    src[5:10, 5:10] = np.nan
    src[10, 5:10] = 8.0  # row just north of the block
    grid = GridSpec.from_bounds("EPSG:4326", (-8.8, 40.0, -7.3, 41.5), 0.15)  # not aligned with 0.1°
    out = regrid(imerg_like(src, -9.0, 39.8), grid)
    assert np.nanmin(out) >= 4.0 - 1e-5  # no value was pulled towards zero by nodata
    # a target cell fully inside the NaN block (lon -8.5..-8.0, lat 40.3..40.8) is NaN
    inside = (grid.x > -8.5 + 0.075) & (grid.x < -8.0 - 0.075)
    rows = (grid.y > 40.3 + 0.075) & (grid.y < 40.8 - 0.075)
    assert rows.any() and inside.any()
    assert np.isnan(out[np.ix_(rows, inside)]).all()
    assert np.isnan(out).sum() < out.size / 10
