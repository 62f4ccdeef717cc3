"""Basins onto the cube grid: fractions, areas, ids, delineation, snapping, flow distance."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import rioxarray  # noqa: F401  (the .rio accessor for the DEM fixture)
import shapely
import xarray as xr
from affine import Affine
from pyproj import CRS, Geod, Transformer
from shapely.geometry import Point, box, mapping

from hydrocast import terrain
from hydrocast.basins import basin_channels, basin_fraction, flow_distance, read_basins
from hydrocast.errors import BadInputError
from hydrocast.grid import GridSpec

GEO_GRID = GridSpec.from_bounds("EPSG:4326", (10.0, 40.0, 11.0, 41.0), 0.1)


def _geojson(path, features, crs=None):
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": props, "geometry": mapping(geom)} for props, geom in features]}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return path


def _ogr(path, features, crs, driver=None, layer=None, **layer_options):
    """``features`` ((props, geometry) pairs) written with pyogrio (GDAL): Shapefile, GeoPackage, ...
    (``crs=None``: no CRS, e.g. a Shapefile without .prj)."""
    import warnings

    from pyogrio import raw

    names = list(dict.fromkeys(k for props, _ in features for k in props))
    fields = [np.array([props.get(k) for props, _ in features]) for k in names]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided")
        raw.write(str(path), shapely.to_wkb([g for _, g in features]), fields, names, driver=driver, layer=layer,
                  geometry_type="MultiPolygon", promote_to_multi=True, crs=crs, layer_options=layer_options or None)
    return path


def _gpkg(path, features, epsg):
    return _ogr(path, features, f"EPSG:{epsg}", driver="GPKG", layer="basins")


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
    merc_gj = _geojson(tmp_path / "m.geojson", [({"id": "q"}, merc)], crs="urn:ogc:def:crs:EPSG::3857")
    [gj] = read_basins(merc_gj, GEO_GRID)
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


HOSTILE_IDS = ["../../x", "/abs/x", ".hidden", "a/b", "", "x" * 65, "a b", "a\\b", "..", "x\n"]


def _one_basin_file(tmp_path, source, bid):
    """A basins file of kind ``source`` holding one basin (or outlet) with id ``bid``."""
    geom = box(10.1, 40.1, 10.2, 40.2)
    if source == "geojson":
        return _geojson(tmp_path / "b.geojson", [({"id": bid}, geom)])
    if source == "csv":
        p = tmp_path / "o.csv"
        with open(p, "w", newline="") as fh:
            csv.writer(fh).writerows([["id", "lon", "lat"], [bid, 10.15, 40.15]])
        return p
    driver, name = {"gpkg": ("GPKG", "b.gpkg"), "shp": ("ESRI Shapefile", "b.shp")}[source]
    return _ogr(tmp_path / name, [({"id": bid}, geom)], "EPSG:4326", driver=driver)


@pytest.mark.parametrize("source", ["geojson", "gpkg", "shp", "csv"])
@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_hostile_ids_are_refused_from_every_source(tmp_path, source, bad):
    p = _one_basin_file(tmp_path, source, bad)
    with pytest.raises(BadInputError) as exc:
        read_basins(p, GEO_GRID)
    msg = str(exc.value)
    if source == "csv" and bad != bad.strip():  # blanks around a CSV cell are not part of the id
        assert "needs a DEM" in msg  # "x\n" is the valid id "x": the next check speaks
        return
    assert msg.startswith(f"{p}: basin id ") and exc.value.exit_code == 65
    assert repr(bad) in msg or (source == "shp" and bad == "" and "None" in msg)  # DBF: '' reads as NULL
    assert "not allowed" in msg or "must be a string" in msg


@pytest.mark.parametrize("bad", [1.5, float("nan"), [1], True, None, {"a": 1}])
def test_non_string_ids_are_refused(tmp_path, bad):
    p = tmp_path / "b.geojson"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": bad}, "geometry": mapping(box(10.1, 40.1, 10.2, 40.2))}]}))
    with pytest.raises(BadInputError, match=r"must be a string|not allowed") as exc:
        read_basins(p, GEO_GRID)
    assert str(exc.value).startswith(str(p)) and exc.value.exit_code == 65
    # a number that is not a whole number, in a GeoPackage column
    g = _ogr(tmp_path / "b.gpkg", [({"id": 1.5}, box(10.1, 40.1, 10.2, 40.2))], "EPSG:4326", driver="GPKG")
    with pytest.raises(BadInputError, match=r"basin id 1\.5 must be a string"):
        read_basins(g, GEO_GRID)


def test_good_ids_duplicates_and_outside(tmp_path):
    ok = _geojson(tmp_path / "ok.geojson", [({"id": "Basin_1.v2-x"}, box(10.1, 40.1, 10.2, 40.2)),
                                            ({"id": 8057000}, box(10.1, 40.1, 10.3, 40.3))])
    assert [b.id for b in read_basins(ok, GEO_GRID)] == ["Basin_1.v2-x", "8057000"]
    for a, b in (("x1", "x1"), ("Trinity", "trinity")):
        p = _geojson(tmp_path / "dup.geojson", [({"id": a}, box(10.1, 40.1, 10.2, 40.2)),
                                                ({"id": b}, box(10.3, 40.3, 10.4, 40.4))])
        with pytest.raises(BadInputError, match="duplicate"):
            read_basins(p, GEO_GRID)
    far = _geojson(tmp_path / "far.geojson", [({"id": "inside"}, box(10.1, 40.1, 10.2, 40.2)),
                                               ({"id": "elsewhere"}, box(20.1, 40.1, 20.2, 40.2))])
    with pytest.raises(BadInputError, match="'elsewhere'"):
        read_basins(far, GEO_GRID)


def test_straight_line_distance_without_dem(tmp_path):
    props = {"id": "s", "outlet_lon": 10.05, "outlet_lat": 40.05}
    p = _geojson(tmp_path / "b.geojson", [(props, box(10.0, 40.0, 10.5, 40.5))])
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
    return terrain.flow_routing(da.rio.write_crs(UTM))


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

    ch, scale = basin_channels([outer, inner], UTM_GRID)
    assert scale == pytest.approx(float(np.nanmax(outer.distance_km)))
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
    assert np.all(basin_channels([nb], UTM_GRID)[0][0, 1] == 0)
    # flow_distance is also callable on its own
    np.testing.assert_allclose(flow_distance(pb, UTM_GRID, routing), pb.distance_km, equal_nan=True)


# --- Shapefile, GeoPackage and other OGR formats ------------------------------------------------------
SAMPLE_GRID = GridSpec.from_bounds("EPSG:4326", (-8.8, 40.0, -7.2, 41.6), 0.05)  # sample_data/hydrocast.toml


@pytest.fixture(scope="module")
def sample_routing(sample_data):
    from hydrocast.sources import dem

    return terrain.flow_routing(dem.read(sample_data / "raw/dem/dem.tif", {}, SAMPLE_GRID.lonlat_bounds(2)))


def _features(geojson_path):
    doc = json.loads(geojson_path.read_text())
    return [(f["properties"], shapely.geometry.shape(f["geometry"])) for f in doc["features"]]


def _write_as(kind, features, folder):
    folder.mkdir()
    if kind == "shp":
        return _ogr(folder / "basins.shp", features, "EPSG:4326", driver="ESRI Shapefile")
    if kind == "shp.zip":  # HydroBASINS and GRDC ship zipped Shapefiles
        import zipfile

        shp = _ogr(folder / "basins.shp", features, "EPSG:4326", driver="ESRI Shapefile")
        with zipfile.ZipFile(folder / "basins.zip", "w") as z:
            for part in sorted(folder.glob("basins.*")):
                if part.suffix != ".zip":
                    z.write(part, part.name)
                    part.unlink()
        assert not shp.exists()
        return folder / "basins.zip"
    if kind == "fgb":  # (without its spatial index FlatGeobuf keeps the features in the order written)
        return _ogr(folder / "basins.fgb", features, "EPSG:4326", driver="FlatGeobuf", SPATIAL_INDEX="NO")
    return _ogr(folder / "basins.gpkg", features, "EPSG:4326", driver="GPKG")


@pytest.mark.parametrize("name", ["basins.geojson", "ungauged.geojson"])
def test_ogr_formats_give_exactly_the_geojson_basins(sample_data, sample_routing, tmp_path, name):
    src = sample_data / "basins" / name
    ref = read_basins(src, SAMPLE_GRID, sample_routing)
    assert len(ref) >= 2 and {b.distance_method for b in ref} == {"dem-polygon"}
    feats = _features(src)
    for kind in ("shp", "shp.zip", "gpkg", "fgb"):
        path = _write_as(kind, feats, tmp_path / kind.replace(".", "_"))
        got = read_basins(path, SAMPLE_GRID, sample_routing)
        assert [b.id for b in got] == [b.id for b in ref] and [b.name for b in got] == [b.name for b in ref], kind
        for a, b in zip(got, ref, strict=True):
            np.testing.assert_array_equal(a.fraction, b.fraction, err_msg=f"{kind} {a.id}")
            np.testing.assert_array_equal(a.distance_km, b.distance_km, err_msg=f"{kind} {a.id}")
            assert (a.area_km2, a.area_polygon_km2, a.area_dem_km2) == (b.area_km2, b.area_polygon_km2, b.area_dem_km2)
            assert a.outlet_lonlat == b.outlet_lonlat and a.source_file == str(path)
    # without a DEM the outlet_lon/outlet_lat fields give the straight-line distance, from any format
    plain = read_basins(src, SAMPLE_GRID)
    shp = read_basins(tmp_path / "shp" / "basins.shp", SAMPLE_GRID)
    assert {b.distance_method for b in shp} == {"straight-line"}
    for a, b in zip(shp, plain, strict=True):
        np.testing.assert_array_equal(a.distance_km, b.distance_km)


def test_hydrobasins_and_grdc_id_fields(tmp_path):
    g1, g2 = box(10.1, 40.1, 10.3, 40.3), box(10.5, 40.5, 10.7, 40.7)
    hb = _ogr(tmp_path / "hybas.shp", [({"HYBAS_ID": 2120008490, "UP_AREA": 12.5}, g1),
                                       ({"HYBAS_ID": 2120008500, "UP_AREA": 40.0}, g2)], "EPSG:4326")
    assert [b.id for b in read_basins(hb, GEO_GRID)] == ["2120008490", "2120008500"]
    grdc = _ogr(tmp_path / "grdc.shp", [({"grdc_no": 6335020.0, "river": "RHINE", "station": "REES"}, g1)],
                "EPSG:4326")
    [b] = read_basins(grdc, GEO_GRID)
    assert b.id == "6335020" and b.name == "6335020"
    both = _ogr(tmp_path / "both.gpkg", [({"ID": "rhine_rees", "grdc_no": 6335020, "Name": "Rees"}, g1)],
                "EPSG:4326", driver="GPKG")
    [b] = read_basins(both, GEO_GRID)
    assert (b.id, b.name) == ("rhine_rees", "Rees")  # id first, any case
    gj = _geojson(tmp_path / "hybas.geojson", [({"HYBAS_ID": 2120008490}, g1)])
    assert [b.id for b in read_basins(gj, GEO_GRID)] == ["2120008490"]
    none = _ogr(tmp_path / "none.shp", [({"code": "A1"}, g1)], "EPSG:4326")
    with pytest.raises(BadInputError, match=r"has no 'id' field \(nor HYBAS_ID or grdc_no\); fields: code") as exc:
        read_basins(none, GEO_GRID)
    assert str(exc.value).startswith(str(none))
    dup = _ogr(tmp_path / "dup.shp", [({"HYBAS_ID": 7}, g1), ({"HYBAS_ID": 7}, g2)], "EPSG:4326")
    with pytest.raises(BadInputError, match="duplicate basin id '7'"):
        read_basins(dup, GEO_GRID)


def _shapefile_parts(tmp_path, name="b"):
    folder = tmp_path / name
    folder.mkdir()
    feats = [({"id": f"b{i}"}, box(10.1 + 0.2 * i, 40.1, 10.25 + 0.2 * i, 40.3)) for i in range(4)]
    return _ogr(folder / f"{name}.shp", feats, "EPSG:4326")


def _damage(tmp_path, case):
    if case in ("no .dbf", "no .shx", "truncated .shp", "truncated .dbf", "truncated .shx"):
        shp = _shapefile_parts(tmp_path)
        what, ext = case.split(" ")
        part = shp.with_suffix(ext)
        if what == "no":
            part.unlink()
        else:
            part.write_bytes(part.read_bytes()[: part.stat().st_size // 2 + 3])
        return shp
    name = {"HTML as .shp": "b.shp", "HTML as .gpkg": "b.gpkg", "text as .shp": "b.shp", "GeoTIFF as .gpkg": "b.gpkg",
            "random bytes as .fgb": "b.fgb", "not a GeoPackage": "b.gpkg", "attribute table only": "b.gpkg"}[case]
    p = tmp_path / name
    if case.startswith("HTML"):
        p.write_text("<!DOCTYPE html>\n<html><body>Please log in</body></html>\n")
    elif case == "text as .shp":
        p.write_text("id,lon,lat\nx,1,2\n" * 20)
    elif case == "GeoTIFF as .gpkg":
        import rasterio

        with rasterio.open(p, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8", crs="EPSG:4326",
                           transform=Affine(0.1, 0, 10, 0, -0.1, 41)) as dst:
            dst.write(np.zeros((1, 4, 4), "uint8"))
    elif case == "random bytes as .fgb":
        p.write_bytes(np.random.default_rng(1).bytes(4096))
    elif case == "attribute table only":  # a valid GeoPackage holding a table without geometries
        from pyogrio import raw

        raw.write(str(p), None, [np.array(["a"])], ["id"], driver="GPKG", layer="t")
    else:  # an SQLite file with the GeoPackage application id but none of its tables
        import sqlite3

        con = sqlite3.connect(p)
        con.execute("PRAGMA application_id = 1196444487")
        con.execute("CREATE TABLE t (a INTEGER)")
        con.commit()
        con.close()
    return p


@pytest.mark.parametrize("case, expected", [
    ("no .dbf", r"\.dbf \(attribute table with the basin ids\) is missing"),
    ("no .shx", r"\.shx \(index\) is missing"),
    ("truncated .shp", r"b\.shp is truncated: it has \d+ bytes, its header says \d+"),
    ("truncated .dbf", r"b\.dbf is truncated: it has \d+ bytes, its header says \d+"),
    ("truncated .shx", r"b\.shx is truncated"),
    ("HTML as .shp", r"is an HTML page, not a Shapefile"),
    ("HTML as .gpkg", r"is an HTML page, not a vector file"),
    ("text as .shp", r"is not an ESRI Shapefile"),
    ("GeoTIFF as .gpkg", r"not a vector file GDAL/OGR can read \(basins: GeoJSON, GeoPackage, Shapefile"),
    ("random bytes as .fgb", r"not a vector file GDAL/OGR can read"),
    ("not a GeoPackage", r"cannot read as a vector file \(At least one of the required GeoPackage tables"),
    ("attribute table only", r"layer 't' has no geometries \(a table, not polygons\)"),
])
def test_unreadable_vector_files_are_one_line_errors_naming_the_file(tmp_path, case, expected):
    p = _damage(tmp_path, case)
    with pytest.raises(BadInputError) as exc:
        read_basins(p, GEO_GRID)
    msg = str(exc.value)
    assert msg.startswith(f"{p}: ") and re.search(expected, msg), msg
    assert "\n" not in msg and "Traceback" not in msg and exc.value.exit_code == 65


def test_shapefile_without_prj(tmp_path, caplog):
    shp = _shapefile_parts(tmp_path)
    with_prj = read_basins(shp, GEO_GRID)
    shp.with_suffix(".prj").unlink()
    with caplog.at_level("WARNING", logger="hydrocast.basins"):
        no_prj = read_basins(shp, GEO_GRID)
    assert any("no CRS" in r.getMessage() and str(shp) in r.getMessage() for r in caplog.records)
    for a, b in zip(no_prj, with_prj, strict=True):
        np.testing.assert_array_equal(a.fraction, b.fraction)
    # projected coordinates (UTM metres) without a .prj: refused, asking for it
    utm = Transformer.from_crs(4326, 32632, always_xy=True)
    folder = tmp_path / "utm"
    folder.mkdir()
    p = _ogr(folder / "u.shp", [({"id": "u"}, shapely.transform(box(10.1, 40.1, 10.3, 40.3), utm.transform,
                                                                  interleaved=False))], None)
    assert not p.with_suffix(".prj").exists()
    with pytest.raises(BadInputError, match=r"has no CRS and its coordinates .* are not lon/lat; add the \.prj") as exc:
        read_basins(p, GEO_GRID)
    assert str(exc.value).startswith(str(p))
    # with the .prj the same file is read in its CRS
    p.with_suffix(".prj").write_text(CRS.from_epsg(32632).to_wkt("WKT1_ESRI"))
    [u] = read_basins(p, GEO_GRID)
    assert u.area_polygon_km2 == pytest.approx(read_basins(_geojson(tmp_path / "u.geojson", [
        ({"id": "u"}, box(10.1, 40.1, 10.3, 40.3))]), GEO_GRID)[0].area_polygon_km2, rel=1e-3)


def test_a_geopackage_with_several_layers_needs_layer(tmp_path):
    p = tmp_path / "two.gpkg"
    _ogr(p, [({"id": "a"}, box(10.1, 40.1, 10.2, 40.2))], "EPSG:4326", driver="GPKG", layer="small")
    _ogr(p, [({"id": "b"}, box(10.1, 40.1, 10.4, 40.4))], "EPSG:4326", driver="GPKG", layer="large")
    with pytest.raises(BadInputError, match=r"need exactly one polygon layer \(or `layer`\), found: small, large"):
        read_basins(p, GEO_GRID)
    assert [b.id for b in read_basins(p, GEO_GRID, layer="large")] == ["b"]
    with pytest.raises(BadInputError, match=r"has no layer 'other' \(layers: small, large\)"):
        read_basins(p, GEO_GRID, layer="other")


# --- the model's basin channels: ONE flow-distance scale for the domain ------------------------------
def test_basin_channels_use_one_domain_scale(tmp_path, routing):
    p = _csv(tmp_path / "o.csv", [("outer", "o", *_lonlat(59, 9)), ("inner", "i", *_lonlat(30, 9)),
                                  ("east", "e", *_lonlat(59, 30))])
    outer, inner, east = read_basins(p, UTM_GRID, routing, min_area_km2=1.0)
    ch, scale = basin_channels([outer, inner, east], UTM_GRID)
    # the scale: the largest finite distance of any basin (independently: from the distance maps)
    assert scale == max(float(np.nanmax(b.distance_km)) for b in (outer, inner, east))
    assert ch.shape == (3, 2, 12, 8) and ch.dtype == np.float32
    for i, b in enumerate((outer, inner, east)):
        inside = b.fraction > 0
        np.testing.assert_array_equal(ch[i, 0], b.fraction.astype("float32"))
        np.testing.assert_allclose(ch[i, 1][inside], b.distance_km[inside] / scale, rtol=1e-6)
        assert np.all(ch[i, 1][~inside] == 0)
    # nested: a cell of the inner basin is nearer to the inner outlet than to the outer one, which
    # lies downstream of it; with a per-basin scale both far ends would be 1 and this would fail
    both = (inner.fraction > 0) & (outer.fraction > 0)
    assert both.sum() >= 6 and np.all(ch[1, 1][both] < ch[0, 1][both])
    assert ch[1, 1].max() < 0.8 and ch[:, 1].max() == pytest.approx(1.0)
    # another basin set with the training scale: the same numbers, not rescaled to its own maximum
    ch_inner, s2 = basin_channels([inner], UTM_GRID, dist_scale_km=scale)
    assert s2 == scale
    np.testing.assert_array_equal(ch_inner[0], ch[1])
    alone, own = basin_channels([inner], UTM_GRID)
    assert own == float(np.nanmax(inner.distance_km)) < scale and alone[0, 1].max() == pytest.approx(1.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="dist_scale_km"):
            basin_channels([inner], UTM_GRID, dist_scale_km=bad)


def test_basin_channels_without_any_distance(tmp_path):
    p = _geojson(tmp_path / "b.geojson", [({"id": "a"}, box(10.1, 40.1, 10.35, 40.3))])
    basins = read_basins(p, GEO_GRID)
    ch, scale = basin_channels(basins, GEO_GRID)
    assert scale == 1.0 and np.all(ch[0, 1] == 0) and ch[0, 0].sum() == pytest.approx(basins[0].fraction.sum())
    empty, s = basin_channels([], GEO_GRID)
    assert empty.shape == (0, 2, 10, 10) and s == 1.0
