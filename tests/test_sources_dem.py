"""DEM reader (the reader contract): scan and read only (what is derived from the elevation is
tested in tests/test_terrain.py).

Expected values come from independent computations: rasterio's raw array, windows computed here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from affine import Affine

from hydrocast.errors import BadInputError
from hydrocast.sources import dem


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
