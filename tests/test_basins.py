"""Basins onto the cube grid: fractions, areas, ids, delineation, snapping, flow distance."""

from __future__ import annotations

import json
import sqlite3
import struct

import numpy as np
import pytest
import shapely
import xarray as xr
from affine import Affine
from pyproj import CRS, Geod, Transformer
from shapely.geometry import Point, box, mapping

from hydrocast.basins import basin_channels, basin_fraction, flow_distance, read_basins
from hydrocast.errors import BadInputError
from hydrocast.grid import GridSpec
from hydrocast.sources import dem

GEO_GRID = GridSpec.from_bounds("EPSG:4326", (10.0, 40.0, 11.0, 41.0), 0.1)


def _geojson(path, features, crs=None):
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": props, "geometry": mapping(geom)} for props, geom in features]}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return path


def _gpkg(path, features, epsg):
    """A minimal GeoPackage written by hand (GeoPackage 1.3 tables, GP header + WKB blobs)."""
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT, srs_id INTEGER PRIMARY KEY, organization TEXT,
            organization_coordsys_id INTEGER, definition TEXT, description TEXT);
        CREATE TABLE gpkg_contents (table_name TEXT PRIMARY KEY, data_type TEXT, identifier TEXT,
            description TEXT, last_change TEXT, min_x REAL, min_y REAL, max_x REAL, max_y REAL, srs_id INTEGER);
        CREATE TABLE gpkg_geometry_columns (table_name TEXT, column_name TEXT, geometry_type_name TEXT,
            srs_id INTEGER, z INTEGER, m INTEGER);
        CREATE TABLE basins (fid INTEGER PRIMARY KEY, geom BLOB, id TEXT, name TEXT);
    """)
    con.execute("INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, 'EPSG', ?, ?, '')",
                (f"EPSG:{epsg}", epsg, epsg, CRS.from_epsg(epsg).to_wkt()))
    con.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier, srs_id) VALUES ('basins', 'features', 'basins', ?)", (epsg,))
    con.execute("INSERT INTO gpkg_geometry_columns VALUES ('basins', 'geom', 'MULTIPOLYGON', ?, 0, 0)", (epsg,))
    for props, geom in features:
        minx, miny, maxx, maxy = geom.bounds
        blob = b"GP" + bytes([0, 0b011]) + struct.pack("<i", epsg) + struct.pack("<4d", minx, maxx, miny, maxy) + shapely.to_wkb(geom)
        con.execute("INSERT INTO basins (geom, id, name) VALUES (?, ?, ?)", (blob, props["id"], props.get("name")))
    con.commit()
    con.close()
    return path


# --- fractions and areas ----------------------------------------------------------------------------
def test_left_half_of_a_cell_is_one_half():
    # cell (row 4, col 3) spans lon 10.3-10.4, lat 40.5-40.6
    frac = basin_fraction(box(10.3, 40.5, 10.35, 40.6), GEO_GRID)
    assert frac[4, 3] == pytest.approx(0.5, abs=1e-12)
    assert frac.sum() == pytest.approx(0.5, abs=1e-12)
    # a diagonal triangle: half of the cell by area although the cell centre lies on its edge
    tri = shapely.Polygon([(10.3, 40.5), (10.4, 40.5), (10.4, 40.6)])
    assert basin_fraction(tri, GEO_GRID)[4, 3] == pytest.approx(0.5, abs=1e-12)
    # a polygon covering 2.25 cells around a corner
    f = basin_fraction(box(10.25, 40.45, 10.4, 40.6), GEO_GRID)
    np.testing.assert_allclose(f[4:6, 2:4], [[0.5, 1.0], [0.25, 0.5]], atol=1e-12)


def test_fraction_area_matches_the_geodesic_area(tmp_path):
    poly = Point(10.47, 40.52).buffer(0.31, quad_segs=32)  # ~ 1400 km2, crossing many cells
    p = _geojson(tmp_path / "b.geojson", [({"id": "circle", "name": "Circle"}, poly)])
    [b] = read_basins(p, GEO_GRID)
    geo_km2 = abs(Geod(ellps="WGS84").geometry_area_perimeter(shapely.segmentize(poly, 0.005))[0]) / 1e6
    mask_km2 = float((b.fraction * GEO_GRID.cell_area_m2()).sum()) / 1e6
    assert mask_km2 == pytest.approx(geo_km2, rel=0.01)
    assert b.area_km2 == pytest.approx(mask_km2, rel=1e-9)
    assert b.area_polygon_km2 == pytest.approx(geo_km2, rel=1e-3)
    assert b.name == "Circle" and b.warnings == []
    assert b.fraction.max() == 1.0 and 0 < b.fraction[b.fraction < 1].max()  # fractional edges


def test_crs_member_geopackage_and_lonlat_give_the_same_cells(tmp_path):
    poly = shapely.Polygon([(10.12, 40.15), (10.83, 40.22), (10.71, 40.88), (10.2, 40.61)])
    to_merc = Transformer.from_crs(4326, 3857, always_xy=True)
    merc = shapely.transform(shapely.segmentize(poly, 0.01), to_merc.transform, interleaved=False)
    [ll] = read_basins(_geojson(tmp_path / "ll.geojson", [({"id": "q"}, poly)]), GEO_GRID)
    [gj] = read_basins(_geojson(tmp_path / "m.geojson", [({"id": "q"}, merc)], crs="urn:ogc:def:crs:EPSG::3857"), GEO_GRID)
    [gp] = read_basins(_gpkg(tmp_path / "m.gpkg", [({"id": "q"}, shapely.MultiPolygon([merc]))], 3857), GEO_GRID)
    for other in (gj, gp):
        np.testing.assert_allclose(other.fraction, ll.fraction, atol=2e-3)
        assert other.area_km2 == pytest.approx(ll.area_km2, rel=1e-3)
    # a projected grid: the lon/lat polygon lands where the Mercator one is
    mgrid = GridSpec.from_bounds("EPSG:3857", (1110000, 4860000, 1230000, 5010000), 10000)
    [a] = read_basins(tmp_path / "ll.geojson", mgrid)
    [c] = read_basins(tmp_path / "m.gpkg", mgrid)
    np.testing.assert_allclose(a.fraction, c.fraction, atol=2e-3)
    np.testing.assert_allclose(a.fraction, basin_fraction(merc, mgrid), atol=2e-3)
    # Web Mercator cells are not 1e8 m2 on the ground: the grid area and the geodesic area disagree
    assert a.area_km2 > 1.5 * a.area_polygon_km2 and any("differ" in w for w in a.warnings)


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "a b", "x" * 65, "a\\b"])
def test_bad_ids_are_rejected(tmp_path, bad):
    p = _geojson(tmp_path / "b.geojson", [({"id": bad}, box(10.1, 40.1, 10.2, 40.2))])
    with pytest.raises(BadInputError) as exc:
        read_basins(p, GEO_GRID)
    assert str(p) in str(exc.value) and repr(bad) in str(exc.value)
    csvp = tmp_path / "o.csv"
    csvp.write_text(f"id,lon,lat\n{bad},10.15,40.15\n")
    with pytest.raises(BadInputError):
        read_basins(csvp, GEO_GRID)


def test_good_ids_duplicates_and_outside(tmp_path):
    ok = _geojson(tmp_path / "ok.geojson", [({"id": "Basin_1.v2-x"}, box(10.1, 40.1, 10.2, 40.2)),
                                            ({"id": 8057000}, box(10.1, 40.1, 10.3, 40.3))])
    assert [b.id for b in read_basins(ok, GEO_GRID)] == ["Basin_1.v2-x", "8057000"]
    for a, b in (("x1", "x1"), ("Trinity", "trinity")):
        p = _geojson(tmp_path / "dup.geojson", [({"id": a}, box(10.1, 40.1, 10.2, 40.2)), ({"id": b}, box(10.3, 40.3, 10.4, 40.4))])
        with pytest.raises(BadInputError, match="duplicate"):
            read_basins(p, GEO_GRID)
    far = _geojson(tmp_path / "far.geojson", [({"id": "inside"}, box(10.1, 40.1, 10.2, 40.2)),
                                               ({"id": "elsewhere"}, box(20.1, 40.1, 20.2, 40.2))])
    with pytest.raises(BadInputError, match="'elsewhere'"):
        read_basins(far, GEO_GRID)


def test_straight_line_distance_without_dem(tmp_path):
    p = _geojson(tmp_path / "b.geojson", [({"id": "s", "outlet_lon": 10.05, "outlet_lat": 40.05}, box(10.0, 40.0, 10.5, 40.5))])
    [b] = read_basins(p, GEO_GRID)
    assert b.distance_method == "straight-line"
    d = b.distance_km
    assert np.nanargmin(d) == np.ravel_multi_index((9, 0), GEO_GRID.shape)
    assert d[5, 4] == pytest.approx(Geod(ellps="WGS84").inv(10.45, 40.45, 10.05, 40.05)[2] / 1000, rel=1e-6)
    assert np.isnan(d[0, 9]) and np.isfinite(d[b.fraction > 0]).all()


# --- delineation on a synthetic DEM with two valleys --------------------------------------------------
X0, Y0, CELL = 480000.0, 3606000.0, 100.0
NROW, NCOL = 60, 40
UTM = CRS.from_epsg(32614)
TRANSFORM = Affine(CELL, 0, X0, 0, -CELL, Y0)
UTM_GRID = GridSpec(UTM, Affine(500.0, 0, X0, 0, -500.0, Y0), 8, 12)


def _two_valleys():
    """Valleys along columns 9 and 30 draining south to pits at (59, 9) and (59, 30), in a frame of
    high cells. The frame drains inwards (pyflwdir makes an edge cell a pit only where it is not
    reached from a lower cell first), so each valley collects its whole half: 60 rows x 20 columns."""
    r, c = np.mgrid[0:NROW, 0:NCOL]
    cv = np.where(c < 20, 9, 30)
    z = 100.0 + 5.0 * np.abs(c - cv) + 0.5 * (NROW - 1 - r)
    wall = (r == 0) | (r == NROW - 1) | (c == 0) | (c == NCOL - 1)
    z[wall] = 1000.0
    z[NROW - 1, 9] = z[NROW - 1, 30] = 90.0
    return z


@pytest.fixture(scope="module")
def routing():
    z = _two_valleys()
    da = xr.DataArray(z.astype("float32"), dims=("y", "x"),
                      coords={"y": Y0 - (np.arange(NROW) + 0.5) * CELL, "x": X0 + (np.arange(NCOL) + 0.5) * CELL})
    return dem.flow_routing(da.rio.write_crs(UTM))


def _lonlat(row, col, dx=0.0, dy=0.0):
    x, y = X0 + (col + 0.5) * CELL + dx, Y0 - (row + 0.5) * CELL + dy
    return Transformer.from_crs(UTM, 4326, always_xy=True).transform(x, y)


def _csv(path, rows):
    path.write_text("id,name,lon,lat\n" + "".join(f"{i},{n},{lon:.9f},{lat:.9f}\n" for i, n, lon, lat in rows))
    return path


def test_outlets_delineate_two_valleys(tmp_path, routing):
    scale = 0.9996  # UTM scale near easting 482 km: ground area of a 100 m cell = 1e4 / k^2 m2
    expected_km2 = 60 * 20 * CELL * CELL / scale**2 / 1e6
    p = _csv(tmp_path / "o.csv", [("west", "West", *_lonlat(59, 9)), ("east", "East", *_lonlat(59, 30))])
    west, east = read_basins(p, UTM_GRID, routing, min_area_km2=1.0)
    for b in (west, east):
        assert b.area_dem_km2 == pytest.approx(expected_km2, rel=0.01)
        assert b.area_km2 == pytest.approx(expected_km2, rel=0.01)  # fractions x cell areas
        assert b.area_polygon_km2 == pytest.approx(expected_km2, rel=0.01)
        assert b.snap_distance_m == pytest.approx(0.0, abs=1e-3)  # lon/lat printed to 1e-9 deg
        assert b.distance_method == "dem"
    # the west basin is columns 0-19 (x 480-482 km) = cube columns 0-3
    np.testing.assert_allclose(west.fraction[:, 4:], 0.0)
    np.testing.assert_allclose(east.fraction[:, :4], 0.0)
    np.testing.assert_allclose(west.fraction[:, :4], 1.0)
    np.testing.assert_allclose(west.fraction + east.fraction, 1.0)  # no overlap, no gap
    assert west.polygon.area == pytest.approx(60 * 20 * CELL * CELL)


def test_snapping_moves_an_outlet_beside_the_channel_onto_it(tmp_path, routing):
    import pyflwdir

    z = _two_valleys()
    upa_pf = pyflwdir.from_dem(z.astype("float32"), transform=TRANSFORM, latlon=False).upstream_area("km2")
    p = _csv(tmp_path / "o.csv", [("beside", "b", *_lonlat(30, 10)), ("beside2", "b", *_lonlat(30, 8, dx=-20))])
    for b in read_basins(p, UTM_GRID, routing, min_area_km2=1.0):
        ox, oy = Transformer.from_crs(4326, UTM, always_xy=True).transform(*b.outlet_lonlat)
        assert (ox, oy) == pytest.approx((X0 + 9.5 * CELL, Y0 - 30.5 * CELL), abs=1e-3)
        assert b.outlet_xy == pytest.approx((ox, oy), abs=1e-3)
        assert b.area_dem_km2 == pytest.approx(upa_pf[30, 9], rel=0.002)
        assert upa_pf[30, 10] < 1.0 < upa_pf[30, 9]  # the point was off the channel
        assert 50 < b.snap_distance_m < 150
    # nothing big enough within the radius: a clear error naming the basin
    bad = _csv(tmp_path / "bad.csv", [("ridge", "r", *_lonlat(10, 19))])
    with pytest.raises(BadInputError, match="'ridge'"):
        read_basins(bad, UTM_GRID, routing, min_area_km2=1.0, snap_radius_cells=2)
    outside = _csv(tmp_path / "out.csv", [("far", "f", 12.0, 45.0)])
    with pytest.raises(BadInputError, match="'far'"):
        read_basins(outside, UTM_GRID, routing, min_area_km2=1.0)


def test_nested_basins_and_flow_distance(tmp_path, routing):
    p = _csv(tmp_path / "o.csv", [("outer", "o", *_lonlat(59, 9)), ("inner", "i", *_lonlat(30, 9))])
    outer, inner = read_basins(p, UTM_GRID, routing, min_area_km2=1.0)
    assert inner.area_km2 < 0.7 * outer.area_km2
    assert np.all(inner.fraction <= outer.fraction + 1e-9)
    assert inner.fraction.sum() > 0 and (outer.fraction > inner.fraction + 0.5).any()

    d = outer.distance_km
    assert np.isnan(d[outer.fraction == 0]).all() and np.isfinite(d[outer.fraction > 0]).all()
    assert np.nanargmin(d) == np.ravel_multi_index((11, 1), UTM_GRID.shape)  # the cell holding the pit
    assert d[11, 1] < 0.5
    col = d[:, 1]  # the cube column holding the channel: distance grows upstream (northward)
    assert np.all(np.diff(col[::-1]) > 0)
    # flow paths are at least as long as the straight line, and D8 paths not much longer
    ox, oy = X0 + 9.5 * CELL, Y0 - 59.5 * CELL
    xs, ys = X0 + (np.arange(NCOL) + 0.5) * CELL, Y0 - (np.arange(NROW) + 0.5) * CELL
    eu = np.hypot(xs[None, :] - ox, ys[:, None] - oy) / 1000
    inb = routing.flwdir.basins(idxs=np.array([59 * NCOL + 9])) > 0
    eu = np.where(inb, eu, np.nan)[:, :40].reshape(12, 5, 8, 5)
    with np.errstate(invalid="ignore"):  # cube cells outside the basin: 0/0 = NaN
        eu_cell = np.nansum(eu, axis=(1, 3)) / np.isfinite(eu).sum(axis=(1, 3))
    ok = np.isfinite(eu_cell)
    assert np.all(d[ok] >= 0.999 * eu_cell[ok] - 1e-6)
    assert np.all(d[ok] <= 1.5 * eu_cell[ok] + 0.15)
    # the inner basin's distances are to ITS outlet: 0-ish at row 30
    assert np.nanmin(inner.distance_km) < 0.5
    assert np.nanargmin(inner.distance_km) == np.ravel_multi_index((6, 1), UTM_GRID.shape)

    ch = basin_channels([outer, inner], UTM_GRID, routing)
    assert ch.shape == (2, 2, 12, 8) and ch.dtype == np.float32
    np.testing.assert_allclose(ch[:, 0], [outer.fraction, inner.fraction], atol=1e-7)
    assert ch[0, 1].max() == pytest.approx(1.0) and ch[0, 1][11, 1] < 0.1
    assert np.all(ch[:, 1][ch[:, 0] == 0] == 0) and ch.min() >= 0 and ch.max() <= 1


def test_polygon_basin_uses_dem_routing_inside_the_polygon(tmp_path, routing):
    # the west valley as a polygon, given in lon/lat: same cells, same outlet
    west_utm = box(X0, Y0 - NROW * CELL, X0 + 20 * CELL, Y0)
    to_ll = Transformer.from_crs(UTM, 4326, always_xy=True)
    west_ll = shapely.transform(shapely.segmentize(west_utm, 50), to_ll.transform, interleaved=False)
    poly = _geojson(tmp_path / "w.geojson", [({"id": "west_poly"}, west_ll)])
    [pb] = read_basins(poly, UTM_GRID, routing)
    [cb] = read_basins(_csv(tmp_path / "o.csv", [("west", "w", *_lonlat(59, 9))]), UTM_GRID, routing, min_area_km2=1.0)
    assert pb.distance_method == "dem-polygon"
    ox, oy = Transformer.from_crs(4326, UTM, always_xy=True).transform(*pb.outlet_lonlat)
    assert (ox, oy) == pytest.approx((X0 + 9.5 * CELL, Y0 - 59.5 * CELL), abs=1.0)
    np.testing.assert_allclose(pb.fraction, cb.fraction, atol=2e-3)
    np.testing.assert_allclose(pb.distance_km, cb.distance_km, rtol=0.05, atol=0.05)
    # the same polygon without a DEM and without an outlet: fraction only, no distance channel
    [nb] = read_basins(poly, UTM_GRID)
    assert nb.distance_method == "none" and np.isnan(nb.distance_km).all()
    assert np.all(basin_channels([nb], UTM_GRID)[0, 1] == 0)
    # flow_distance is also callable on its own
    np.testing.assert_allclose(flow_distance(pb, UTM_GRID, routing), pb.distance_km, equal_nan=True)
