"""Basins onto the cube grid: fractional masks and flow distance to the outlet.

Inputs (:func:`read_basins`)
----------------------------
* **GeoJSON** (``.geojson``/``.json``): a FeatureCollection (or one Feature) of Polygon /
  MultiPolygon features, read with the standard library. Coordinates are lon/lat (RFC 7946); a
  legacy ``"crs": {"type": "name", "properties": {"name": "EPSG:3857"}}`` member is honoured.
* **Shapefile, GeoPackage and any other OGR vector format** (``.shp``, ``.gpkg``, ``.fgb``,
  ``.gml``, ``.kml``, a zipped Shapefile ``.zip``, a FileGDB folder, ...): read with pyogrio (GDAL).
  One polygon layer (or ``layer=``). The CRS is the file's (a Shapefile's ``.prj``). A file
  **without a CRS** (a Shapefile without ``.prj``, a GeoPackage with an undefined SRS) is read as
  lon/lat WGS84 (a warning is logged) only when every coordinate lies within lon -180..360,
  lat -90..90, which projected coordinates in metres of any real basin never do; otherwise it
  is refused, asking for the ``.prj``. A Shapefile's ``.shx`` and ``.dbf`` must be next to it,
  and the headers of all three must not promise more bytes than the files hold (an interrupted
  copy); a file OGR cannot open (an HTML page saved as ``.shp``, not a vector file) is a
  BadInputError naming it.
* **Outlets CSV** (``.csv``/``.txt``): header ``id,lon,lat`` (+ optional ``name``, ``area_km2``),
  lon/lat in degrees, ``#`` comment lines allowed. Needs the DEM routing
  (:func:`hydrocast.terrain.flow_routing`): each outlet is snapped to the nearest native cell with
  upstream area >= ``min_area_km2`` within ``snap_radius_cells`` (with ``area_km2`` given: the
  candidate whose upstream area is closest to it, on a log scale, ties by distance), the D8 basin
  upstream of it is delineated (pyflwdir ``basins``) and polygonised (``rasterio.features.shapes``
  + ``shapely.union_all``).

Ids and attributes of polygons: the id is the ``id`` field/property (any case; for GeoJSON also
the Feature's ``id`` member); when a file has none, ``HYBAS_ID`` (HydroBASINS) or ``grdc_no``
(GRDC watershed boundaries) is used, in that order. A number that is a whole number (``8057000``,
``8057000.0``) becomes its integer text. The optional ``name`` field gives the name (else the
id), and ``outlet_lon``/``outlet_lat`` give, without a DEM, the outlet for the straight-line
distance. Every id, from every input, goes through :func:`hydrocast.ids.check_basin_id` (ids
become file names: 1-64 characters of ``A-Z a-z 0-9 _ . -``, not starting with "."): a bad one
is a BadInputError naming the file. Ids are unique, also ignoring case (two ids differing only by
case would collide on macOS/Windows file systems).

Polygons are reprojected to the grid CRS (segmentised first so curved edges stay curved). Every
basin is handled on its own, so nested basins simply share cells.

On the grid
-----------
* :func:`basin_fraction` (= :func:`hydrocast.terrain.polygon_fraction`): the exact area fraction
  of each cube cell inside the polygon (shapely 2 vectorised box intersections, only for cells on
  the polygon's boundary; whole cells inside are 1).
  For a geographic grid the fraction is taken in lon/lat (degree) space. The true area weight inside
  a cell varies as cos(lat), i.e. by a relative +-(dlat/2)*tan(lat) across one cell: 0.13 % for a
  0.1 deg cell at 60 N, 0.2 % for 0.25 deg at 45 N, so the fraction error is below that.
* ``area_km2`` = sum(fraction * ``grid.cell_area_m2``); ``area_polygon_km2`` is the geodesic area
  of the polygon (pyproj.Geod, WGS84, with edges following the grid's lines); ``area_dem_km2`` the
  D8 upstream area at the outlet. Any two differing by > 5 % give a warning (logged and kept in
  ``Basin.warnings``), e.g. a basin partly outside the grid or a polygon that disagrees with the DEM.
* :func:`flow_distance` (km, NaN outside the basin): with DEM routing, the along-channel distance of
  each native cell to the outlet, averaged over the basin's native cells in each cube cell.
  - delineated basins: the distance in the whole-DEM routing (exact D8 path to the snapped outlet);
  - polygon basins: the DEM is re-routed *inside the polygon only* (pyflwdir depression filling
    with the single outlet = the native cell of largest upstream area inside the polygon), so every
    cell of the polygon drains to that outlet even where the polygon and the DEM divides disagree.
  - no DEM (or the polygon misses it): the straight-line (geodesic) distance from cube-cell centres
    to the outlet (``outlet_lon``/``outlet_lat`` properties); without an outlet, no distance
    (NaN; the basin channel is then 0).
  Cube cells with fraction > 0 but no native basin cell centre get the value of the nearest cube
  cell that has one.
* :func:`basin_channels`: the model's basin input, ``(n_basins, 2, H, W)`` float32 = the fraction
  and the flow distance divided by ONE scale for the whole domain (by default the largest finite
  distance among the basins given; the training basins' scale is stored with the model and
  passed back for any other basin set), 0 outside the basin or without a distance.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS, Geod, Transformer
from shapely.geometry import shape as shp_shape

from .errors import BadInputError, MissingInputError
from .grid import GridSpec
from .ids import check_basin_id
from .terrain import native_dataarray, routing_from_array
from .terrain import polygon_fraction as basin_fraction

log = logging.getLogger(__name__)

AREA_MISMATCH = 0.05
#: id fields, in order of preference (matched ignoring case): ours, HydroBASINS, GRDC watersheds
ID_FIELDS = ("id", "HYBAS_ID", "grdc_no")
_WGS84 = CRS.from_epsg(4326)


@dataclass(eq=False)
class Basin:
    """One basin on the cube grid. ``polygon`` and ``outlet_xy`` are in the grid CRS."""

    id: str
    name: str
    outlet_lonlat: tuple[float, float] | None
    outlet_xy: tuple[float, float] | None
    area_km2: float  # sum(fraction * cell area)
    polygon: object | None  # shapely (Multi)Polygon in the grid CRS
    fraction: np.ndarray | None = None  # (H, W) float64, 0..1
    distance_km: np.ndarray | None = None  # (H, W) float64, NaN outside
    area_polygon_km2: float | None = None  # geodesic area of the polygon
    area_dem_km2: float | None = None  # D8 upstream area at the outlet
    requested_lonlat: tuple[float, float] | None = None  # outlets CSV: the point before snapping
    snap_distance_m: float | None = None
    distance_method: str = ""  # "dem", "dem-polygon", "straight-line", "none"
    source_file: str = ""
    warnings: list = field(default_factory=list)
    native: dict | None = field(default=None, repr=False)  # delineation on the DEM (window, mask, outlet)


# ------------------------------------------------------------------------------------------------
# ids, areas, fractions
# ------------------------------------------------------------------------------------------------
def _id_value(value):
    """A whole-number float (``8057000.0``, as many tools write integer ids) as an int; else as is."""
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return value


def _check_unique(ids: list[str], path) -> None:
    seen: dict[str, str] = {}
    for i in ids:
        k = i.lower()
        if k in seen:
            same = "" if seen[k] == i else f" (same as {seen[k]!r} ignoring case)"
            raise BadInputError(f"{path}: duplicate basin id {i!r}{same}")
        seen[k] = i


def _segmentize_for(geom, crs: CRS):
    minx, miny, maxx, maxy = geom.bounds
    diag = math.hypot(maxx - minx, maxy - miny)
    step = diag / 512 if diag > 0 else 0
    if crs.is_geographic:
        step = min(step, 0.01) if step > 0 else 0.01
    return shapely.segmentize(geom, step) if step > 0 else geom


def reproject_geometry(geom, src_crs, dst_crs):
    """``geom`` from ``src_crs`` to ``dst_crs`` (x/y = lon/lat order), edges segmentised first."""
    src_crs, dst_crs = CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs)
    if src_crs.equals(dst_crs, ignore_axis_order=True):
        return geom
    tr = Transformer.from_crs(src_crs, dst_crs, always_xy=True)
    out = shapely.transform(_segmentize_for(geom, src_crs), tr.transform, interleaved=False)
    return out if out.is_valid else shapely.make_valid(out)


def geodesic_area_km2(polygon, crs) -> float:
    """Area (km2, WGS84 ellipsoid) of a polygon in ``crs``; for lon/lat the edges follow the grid lines."""
    crs = CRS.from_user_input(crs)
    geom = polygon if crs.is_geographic else reproject_geometry(polygon, crs, _WGS84)
    if crs.is_geographic:
        geom = shapely.segmentize(geom, 0.01)
    area, _ = Geod(ellps="WGS84").geometry_area_perimeter(geom)
    return abs(area) / 1e6


def _grid_lonlat(grid: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    xx, yy = np.meshgrid(grid.x, grid.y)
    if grid.is_geographic:
        return xx, yy
    tr = Transformer.from_crs(grid.crs, _WGS84, always_xy=True)
    return tr.transform(xx, yy)


# ------------------------------------------------------------------------------------------------
# flow distance
# ------------------------------------------------------------------------------------------------
def _fill_from_nearest(values: np.ndarray, need: np.ndarray, max_cells: float = np.inf) -> np.ndarray:
    """Cells in ``need`` that are NaN get the value of the nearest finite cell (if within ``max_cells``)."""
    from scipy.ndimage import distance_transform_edt

    have = np.isfinite(values)
    gaps = need & ~have
    if not gaps.any() or not have.any():
        return values
    dist, (ri, ci) = distance_transform_edt(~have, return_indices=True)
    gaps &= dist <= max_cells
    out = values.copy()
    out[gaps] = values[ri[gaps], ci[gaps]]
    return out


def _straight_line_km(basin: Basin, grid: GridSpec, fraction: np.ndarray) -> np.ndarray:
    lon, lat = _grid_lonlat(grid)
    lon0, lat0 = basin.outlet_lonlat
    _, _, d = Geod(ellps="WGS84").inv(lon, lat, np.full(lon.shape, lon0), np.full(lat.shape, lat0))
    return np.where(fraction > 0, d / 1000.0, np.nan)


def _window_of(routing, geom_dem) -> tuple[slice, slice] | None:
    h, w = routing.shape
    minx, miny, maxx, maxy = geom_dem.bounds
    inv = ~routing.transform
    ca, ra = inv @ (minx, maxy)
    cb, rb = inv @ (maxx, miny)
    c0, c1 = max(int(math.floor(min(ca, cb))) - 1, 0), min(int(math.ceil(max(ca, cb))) + 1, w)
    r0, r1 = max(int(math.floor(min(ra, rb))) - 1, 0), min(int(math.ceil(max(ra, rb))) + 1, h)
    if c1 <= c0 or r1 <= r0:
        return None
    return slice(r0, r1), slice(c0, c1)


def _window_transform(routing, rs: slice, cs: slice):
    from affine import Affine

    t = routing.transform
    return t @ Affine.translation(cs.start, rs.start)


def _polygon_native(basin: Basin, grid: GridSpec, routing):
    """Native distance (m) of a polygon basin re-routed inside the polygon, or None."""
    from rasterio.features import rasterize

    poly = reproject_geometry(basin.polygon, grid.crs, routing.crs)
    win = _window_of(routing, poly)
    if win is None:
        return None
    rs, cs = win
    wt = _window_transform(routing, rs, cs)
    shape = (rs.stop - rs.start, cs.stop - cs.start)
    valid = np.isfinite(routing.elevation[rs, cs])
    mask = rasterize([poly], out_shape=shape, transform=wt, fill=0, default_value=1, dtype="uint8").astype(bool) & valid
    if not mask.any():
        mask = rasterize([poly], out_shape=shape, transform=wt, fill=0, default_value=1, dtype="uint8",
                         all_touched=True).astype(bool) & valid
    if not mask.any():
        return None
    up = np.where(mask, routing.upstream_area_km2[rs, cs], -np.inf)
    k = int(np.argmax(up))
    z = np.where(mask, routing.elevation[rs, cs], np.nan)
    sub = routing_from_array(z, wt, routing.crs, idxs_pit=[k], source_file=routing.source_file)
    dist = np.where(mask, sub.dist_to_outlet_m, np.nan)
    drains = sub.flwdir.basins(idxs=np.array([k])) > 0
    stray = mask & ~drains  # parts of the polygon not 8-connected to the outlet
    if stray.any():
        ok = mask & drains
        rr, cc = np.nonzero(mask)
        kr, kc = divmod(k, shape[1])
        dxm = np.broadcast_to(sub.dx_m, shape)[kr, kc]
        dym = np.broadcast_to(sub.dy_m, shape)[kr, kc]
        euclid = np.full(shape, np.nan)
        euclid[rr, cc] = np.hypot((cc - kc) * dxm, (rr - kr) * dym)
        with np.errstate(invalid="ignore", divide="ignore"):
            both = ok & (euclid > 0)
            ratio = np.nanmedian(np.where(both, dist / euclid, np.nan)) if both.any() else 1.0
        dist = np.where(stray, euclid * (ratio if np.isfinite(ratio) else 1.0), dist)
    ox, oy = routing.xy(rs.start + k // shape[1], cs.start + k % shape[1])
    return {"rs": rs, "cs": cs, "dist_m": dist, "outlet_dem_xy": (float(ox), float(oy)),
            "area_dem_km2": float(routing.upstream_area_km2[rs, cs].flat[k])}


def flow_distance(basin: Basin, grid: GridSpec, routing=None) -> np.ndarray:
    """Along-channel distance (km) from each cube cell to the basin's outlet; NaN outside the basin.

    ``routing``: :class:`hydrocast.terrain.FlowRouting` (native D8), or None for the
    straight-line fallback (see the module docstring). Sets ``basin.distance_method``."""
    from .regrid import regrid

    frac = basin.fraction if basin.fraction is not None else basin_fraction(basin.polygon, grid)
    native = None
    method = "none"
    if routing is not None and basin.native is not None and basin.native.get("routing_id") == id(routing):
        rs, cs, mask = basin.native["rs"], basin.native["cs"], basin.native["mask"]
        d0 = routing.dist_to_outlet_m.flat[basin.native["outlet_idx"]]
        native = {"rs": rs, "cs": cs, "dist_m": np.where(mask, routing.dist_to_outlet_m[rs, cs] - d0, np.nan)}
        method = "dem"
    elif routing is not None and basin.polygon is not None:
        native = _polygon_native(basin, grid, routing)
        if native is not None:
            method = "dem-polygon"
            if basin.native is None:  # a polygon: its outlet is the DEM's (max upstream area)
                ox, oy = native["outlet_dem_xy"]
                lon, lat = Transformer.from_crs(routing.crs, _WGS84, always_xy=True).transform(ox, oy)
                basin.outlet_lonlat = (float(lon), float(lat))
                gx, gy = Transformer.from_crs(routing.crs, grid.crs, always_xy=True).transform(ox, oy)
                basin.outlet_xy = (float(gx), float(gy))
                basin.area_dem_km2 = native["area_dem_km2"]
    if native is not None:
        rs, cs = native["rs"], native["cs"]
        da = native_dataarray(native["dist_m"] / 1000.0, _window_transform(routing, rs, cs), routing.crs,
                              "flow_distance", routing.source_file)
        dist = regrid(da, grid, "average").astype("float64")
        # edge cells holding no native basin cell: the neighbour's value; basin parts beyond the
        # DEM: the straight line; anything left: the nearest value
        dist = _fill_from_nearest(dist, frac > 0, max_cells=1.5)
        if not np.isfinite(dist[frac > 0]).all() and basin.outlet_lonlat is not None:
            dist = np.where(np.isfinite(dist), dist, _straight_line_km(basin, grid, frac))
        dist = _fill_from_nearest(dist, frac > 0)
        dist = np.where(frac > 0, dist, np.nan)
    elif basin.outlet_lonlat is not None:
        dist = _straight_line_km(basin, grid, frac)
        method = "straight-line"
    else:
        dist = np.full(grid.shape, np.nan)
    basin.distance_method = method
    return dist


def basin_channels(basins: list[Basin], grid: GridSpec,
                   dist_scale_km: float | None = None) -> tuple[np.ndarray, float]:
    """The model's basin input and the distance scale it used: ``((n, 2, H, W) float32, scale_km)``.

    Channel 0: the fractional cover of each cell (NaN as 0); channel 1: ``distance_km /
    scale_km`` where the basin covers the cell and has a distance, else 0. ``dist_scale_km=None``
    takes the largest finite distance among ``basins`` (1 km when there is none, or it is 0): ONE
    scale for the whole domain, so that travel times stay comparable between basins (a nested
    basin's far end is nearer to its outlet than its parent's far end to its own). Pass the
    training basins' scale for any other basin set; values may then exceed 1."""
    if dist_scale_km is not None and not (math.isfinite(dist_scale_km) and dist_scale_km > 0):
        raise ValueError(f"dist_scale_km must be a positive number, got {dist_scale_km!r}")
    if not basins:
        return np.zeros((0, 2, grid.height, grid.width), dtype="float32"), float(dist_scale_km or 1.0)
    for b in basins:
        if b.fraction is None or b.fraction.shape != grid.shape or b.distance_km is None \
                or b.distance_km.shape != grid.shape:
            raise ValueError(f"basin {b.id!r} has no fraction/distance on this grid {grid.shape}")
    fr = np.stack([np.nan_to_num(b.fraction, nan=0.0) for b in basins]).astype("float32")
    dist = np.stack([b.distance_km for b in basins]).astype("float64")
    if dist_scale_km is None:
        finite = dist[np.isfinite(dist)]
        dist_scale_km = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    d = np.where(np.isfinite(dist) & (fr > 0), dist / dist_scale_km, 0.0).astype("float32")
    return np.stack([fr, d], axis=1), float(dist_scale_km)


# ------------------------------------------------------------------------------------------------
# readers
# ------------------------------------------------------------------------------------------------
def _crs_or_error(value, path) -> CRS:
    try:
        return CRS.from_user_input(value)
    except Exception as exc:
        raise BadInputError(f"{path}: unknown CRS {value!r} ({exc})") from None


def _polygonal(geom, path, bid):
    if geom is None or geom.is_empty:
        raise BadInputError(f"{path}: basin {bid!r} has an empty geometry")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    parts = [g for g in shapely.get_parts(geom) if g.geom_type in ("Polygon", "MultiPolygon")]
    if not parts:
        raise BadInputError(f"{path}: basin {bid!r} is a {geom.geom_type}, not a polygon")
    geom = shapely.union_all(parts)
    if geom.is_empty or geom.area <= 0:
        raise BadInputError(f"{path}: basin {bid!r} has no area")
    return shapely.force_2d(geom)


def _lookup(names, wanted: str):
    """The member of ``names`` equal to ``wanted``, else equal ignoring case, else None."""
    if wanted in names:
        return wanted
    low = wanted.lower()
    return next((n for n in names if isinstance(n, str) and n.lower() == low), None)


def _missing(value) -> bool:
    """None, or a NaN (what OGR gives for a NULL number)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _prop(props: dict, wanted: str):
    key = _lookup(props, wanted)
    return None if key is None else props[key]


def _item(path, bid, geom, props: dict) -> dict:
    """One polygon basin as the readers hand it on (id checked, name defaulted)."""
    bid = check_basin_id(_id_value(bid), path)
    name = _prop(props, "name")
    if _missing(name) or str(name).strip() == "":
        name = bid
    return {"id": bid, "name": str(name), "geometry": geom, "props": props}


def _read_geojson(path: Path) -> tuple[list[dict], CRS]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: not valid GeoJSON ({exc})") from None
    if not isinstance(doc, dict):
        raise BadInputError(f"{path}: not a GeoJSON object")
    crs = CRS.from_user_input("OGC:CRS84")
    if doc.get("crs") is not None:  # legacy (2008) GeoJSON
        c = doc["crs"]
        name = c.get("properties", {}).get("name") if isinstance(c, dict) else c
        if not name:
            raise BadInputError(f"{path}: only a named \"crs\" member is supported, got {c!r}")
        crs = _crs_or_error(name, path)
    if doc.get("type") == "FeatureCollection":
        feats = doc.get("features") or []
    elif doc.get("type") == "Feature":
        feats = [doc]
    else:
        raise BadInputError(f"{path}: GeoJSON must be a FeatureCollection or a Feature of polygons, "
                            f"got {doc.get('type')!r}")
    out = []
    for n, f in enumerate(feats):
        if not isinstance(f, dict):
            raise BadInputError(f"{path}: feature {n} is not a GeoJSON Feature")
        props = f.get("properties") or {}
        if not isinstance(props, dict):
            raise BadInputError(f"{path}: feature {n}: \"properties\" is not an object")
        key = _lookup(props, "id")
        if key is not None:
            bid = props[key]
        elif f.get("id") is not None:
            bid = f["id"]
        else:
            key = next((k for k in (_lookup(props, k) for k in ID_FIELDS[1:]) if k is not None), None)
            if key is None:
                raise BadInputError(f"{path}: feature {n} has no 'id' property (nor HYBAS_ID or grdc_no)")
            bid = props[key]
        bid = check_basin_id(_id_value(bid), path)
        try:
            geom = shp_shape(f["geometry"]) if f.get("geometry") else None
        except Exception as exc:
            raise BadInputError(f"{path}: basin {bid!r}: bad geometry ({exc})") from None
        out.append(_item(path, bid, geom, props))
    return out, crs


_HTML = (b"<!doctype html", b"<html", b"<head", b"<body")


def _head(path: Path, n: int = 100) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be read ({exc.strerror})") from None


def _sidecar(path: Path, ext: str) -> Path | None:
    """``path`` with the extension ``ext`` (".dbf"), in lower or upper case, if that file exists."""
    for cand in (path.with_suffix(ext), path.with_suffix(ext.upper())):
        if cand.is_file():
            return cand
    return None


def _check_shapefile(path: Path) -> None:
    """A Shapefile's parts exist and hold what their headers say (GDAL reads a truncated .shp as
    NULL geometries and a .shp without .dbf as features without fields, saying nothing)."""
    head = _head(path)
    if head.lstrip().lower().startswith(_HTML):
        raise BadInputError(f"{path}: is an HTML page, not a Shapefile (a failed download?)")
    if len(head) < 100 or int.from_bytes(head[:4], "big") != 9994:
        raise BadInputError(f"{path}: is not an ESRI Shapefile (no .shp header)")
    parts = {".shp": path}
    for ext, what in ((".shx", "index"), (".dbf", "attribute table with the basin ids")):
        side = _sidecar(path, ext)
        if side is None:
            raise BadInputError(f"{path}: the Shapefile's {ext} ({what}) is missing next to it; "
                                "copy all of .shp, .shx, .dbf and .prj")
        parts[ext] = side
    for ext, part in parts.items():
        size = part.stat().st_size
        h = head if ext == ".shp" else _head(part, 32)
        if ext == ".dbf":
            if len(h) < 12:
                raise BadInputError(f"{path}: the Shapefile's {part.name} is truncated ({size} bytes)")
            n_rec, header, record = (int.from_bytes(h[a:b], "little") for a, b in ((4, 8), (8, 10), (10, 12)))
            want = header + n_rec * record
        else:
            if len(h) < 28 or int.from_bytes(h[:4], "big") != 9994:
                raise BadInputError(f"{path}: the Shapefile's {part.name} has no Shapefile header")
            want = 2 * int.from_bytes(h[24:28], "big")
        if size < want:
            raise BadInputError(f"{path}: the Shapefile's {part.name} is truncated: it has {size} bytes, "
                                f"its header says {want} (an interrupted copy?)")


def _ogr_error(path: Path, exc: Exception) -> BadInputError:
    """A one-line BadInputError for what pyogrio/GDAL raised on ``path``."""
    if path.is_file() and _head(path, 64).lstrip().lower().startswith(_HTML):
        return BadInputError(f"{path}: is an HTML page, not a vector file (a failed download?)")
    msg = " ".join(str(exc).split()).replace(f"'{path}'", "the file").replace(str(path), "the file")
    if "not recognized as being in a supported file format" in msg or "not recognised" in msg:
        return BadInputError(f"{path}: not a vector file GDAL/OGR can read (basins: GeoJSON, GeoPackage, "
                             "Shapefile or another OGR format; outlets: .csv)")
    return BadInputError(f"{path}: cannot read as a vector file ({msg.split('; It might help')[0]})")


def _undefined_crs(crs: CRS | None) -> bool:
    """No CRS, or GDAL's stand-ins for one (GeoPackage srs_id 0 / -1)."""
    return crs is None or crs.name in ("Undefined geographic SRS", "Undefined Cartesian SRS") \
        or crs.type_name == "Engineering CRS"


def _ogr_layer(path: Path, layer: str | None):
    """``(layer name, pyogrio info, (meta, fids, shapely geometries, field arrays))``."""
    import pyogrio
    from pyogrio import raw

    try:
        layers = [(str(n), g) for n, g in pyogrio.list_layers(path)]
    except (RuntimeError, OSError, ValueError) as exc:  # pyogrio's DataSourceError is a RuntimeError
        raise _ogr_error(path, exc) from None
    have = [n for n, g in layers if g is not None] or [n for n, _ in layers]
    if layer is not None:
        if layer not in (n for n, _ in layers):
            raise BadInputError(f"{path}: has no layer {layer!r} (layers: {', '.join(have) or 'none'})")
    elif len(have) != 1:
        raise BadInputError(f"{path}: need exactly one polygon layer (or `layer`), found: {', '.join(have) or 'none'}")
    else:
        layer = have[0]
    try:
        info = pyogrio.read_info(path, layer=layer)
        meta, fids, wkb, values = raw.read(path, layer=layer, return_fids=True)
        if wkb is None:
            raise BadInputError(f"{path}: layer {layer!r} has no geometries (a table, not polygons)")
        geoms = shapely.from_wkb(wkb)
    except (RuntimeError, OSError, ValueError, shapely.errors.GEOSException) as exc:
        raise _ogr_error(path, exc) from None
    return layer, info, (meta, fids, geoms, values)


def _read_ogr(path: Path, layer: str | None) -> tuple[list[dict], CRS]:
    """Polygon basins from any vector format OGR reads (Shapefile, GeoPackage, ...), via pyogrio."""
    if path.suffix.lower() == ".shp":
        _check_shapefile(path)
    elif path.is_file() and _head(path, 64).lstrip().lower().startswith(_HTML):
        raise BadInputError(f"{path}: is an HTML page, not a vector file (a failed download?)")
    with warnings.catch_warnings(record=True) as caught:  # GDAL's warnings: logged below, naming the file
        warnings.simplefilter("always")
        layer, info, (meta, fids, geoms, values) = _ogr_layer(path, layer)
    for msg in dict.fromkeys(" ".join(str(w.message).split()) for w in caught):
        log.warning("%s: GDAL: %s", path, msg)
    fields = [str(f) for f in meta["fields"]]
    id_field = next((f for f in (_lookup(fields, k) for k in ID_FIELDS) if f is not None), None)
    if id_field is not None:
        ids = values[fields.index(id_field)]
    elif info.get("fid_column") and info["fid_column"].lower() == "id":  # a GeoPackage keyed by "id"
        ids = fids
    else:
        raise BadInputError(f"{path}: layer {layer!r} has no 'id' field (nor HYBAS_ID or grdc_no); "
                            f"fields: {', '.join(fields) or 'none'}")
    def py(v):  # NumPy scalars as Python values
        return v.item() if isinstance(v, np.generic) else v

    out = []
    for n in range(len(geoms)):
        props = {f: py(v[n]) for f, v in zip(fields, values, strict=True)}
        out.append(_item(path, py(ids[n]), geoms[n], props))
    crs = None if meta["crs"] is None else _crs_or_error(meta["crs"], path)
    if _undefined_crs(crs):
        bounds = shapely.total_bounds(geoms) if len(geoms) else np.full(4, np.nan)
        minx, miny, maxx, maxy = (float(v) for v in bounds)
        if not (-180 <= minx <= maxx <= 360 and -90 <= miny <= maxy <= 90):
            raise BadInputError(f"{path}: has no CRS and its coordinates ({minx:.6g}..{maxx:.6g}, {miny:.6g}.."
                                f"{maxy:.6g}) are not lon/lat; add the .prj (or the layer's CRS) to the file")
        log.warning("%s: no CRS; the coordinates are within lon/lat bounds, read as WGS84 lon/lat (EPSG:4326)",
                    path)
        crs = CRS.from_user_input("OGC:CRS84")
    return out, crs


def _read_outlets_csv(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BadInputError(f"{path}: outlets CSV is not UTF-8 text") from None
    lines = [ln for ln in text.splitlines(keepends=True) if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader(lines)
    fields = {f.strip().lower(): f for f in (reader.fieldnames or [])}
    missing = [k for k in ("id", "lon", "lat") if k not in fields]
    if missing:
        raise BadInputError(f"{path}: outlets CSV needs columns id,lon,lat (missing: {', '.join(missing)})")
    out = []
    for n, row in enumerate(reader, start=2):
        bid = check_basin_id((row.get(fields["id"]) or "").strip(), path)
        try:
            lon, lat = float(row[fields["lon"]]), float(row[fields["lat"]])
            area = row.get(fields["area_km2"]) if "area_km2" in fields else None
            area = float(area) if area not in (None, "") else None
        except (TypeError, ValueError):
            raise BadInputError(f"{path}: basin {bid!r} (row {n}): lon/lat/area_km2 are not numbers") from None
        if not (-180 <= lon <= 360 and -90 <= lat <= 90) or not (math.isfinite(lon) and math.isfinite(lat)):
            raise BadInputError(f"{path}: basin {bid!r}: lon/lat ({lon}, {lat}) out of range")
        name = (row.get(fields["name"]) or "").strip() if "name" in fields else ""
        out.append({"id": bid, "name": name or bid, "lon": lon, "lat": lat, "area_km2": area})
    return out


def _kind(path: Path) -> str:
    """"geojson", "csv" or "ogr" (everything else) from the suffix; a file without one is sniffed."""
    suf = path.suffix.lower()
    if suf in (".geojson", ".json"):
        return "geojson"
    if suf in (".csv", ".txt"):
        return "csv"
    if suf or path.is_dir():
        return "ogr"
    head = _head(path, 512)
    if head.lstrip().startswith(b"{"):
        return "geojson"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "ogr"
    return "ogr" if "\x00" in text or text.lstrip().startswith("<") else "csv"


def _finish(b: Basin, grid: GridSpec, path) -> Basin:
    """Fraction, areas and the overlap check (shared by all inputs)."""
    b.fraction = basin_fraction(b.polygon, grid)
    if not (b.fraction > 0).any():
        raise BadInputError(f"{path}: basin {b.id!r} does not overlap the grid ({grid.describe()})")
    b.area_km2 = float(np.sum(b.fraction * grid.cell_area_m2()) / 1e6)
    b.area_polygon_km2 = geodesic_area_km2(b.polygon, grid.crs)
    _check_areas(b)
    return b


def _check_areas(b: Basin) -> None:
    named = [("on the grid", b.area_km2), ("of the polygon", b.area_polygon_km2), ("of the DEM", b.area_dem_km2)]
    named = [(k, v) for k, v in named if v is not None and v > 0]
    for i in range(len(named)):
        for j in range(i + 1, len(named)):
            (ka, a), (kb, c) = named[i], named[j]
            if abs(a - c) > AREA_MISMATCH * max(a, c):
                msg = (f"basin {b.id!r}: area {ka} {a:.4g} km2 and {kb} {c:.4g} km2 differ by "
                       f"{100 * abs(a - c) / max(a, c):.0f} %")
                if msg not in b.warnings:
                    b.warnings.append(msg)
                    log.warning(msg)


def _snap(routing, x, y, min_area_km2, radius, area_hint, path, bid):
    h, w = routing.shape
    r, c = (int(v) for v in routing.rowcol(x, y))
    if not (0 <= r < h and 0 <= c < w):
        raise BadInputError(f"{path}: outlet of basin {bid!r} lies outside the DEM")
    rs = slice(max(r - radius, 0), min(r + radius + 1, h))
    cs = slice(max(c - radius, 0), min(c + radius + 1, w))
    up = routing.upstream_area_km2[rs, cs]
    rr, cc = np.meshgrid(np.arange(rs.start, rs.stop), np.arange(cs.start, cs.stop), indexing="ij")
    dxm = float(np.broadcast_to(routing.dx_m, routing.shape)[r, c])
    dym = float(np.broadcast_to(routing.dy_m, routing.shape)[r, c])
    px, py = (~routing.transform) @ (x, y)  # fractional col/row of the point
    dist = np.hypot((cc + 0.5 - px) * dxm, (rr + 0.5 - py) * dym)
    in_radius = np.hypot(cc - c, rr - r) <= radius + 1e-9
    cand = np.isfinite(up) & (up >= min_area_km2) & in_radius
    if not cand.any():
        best = np.nanmax(np.where(in_radius, up, np.nan)) if np.isfinite(up[in_radius]).any() else float("nan")
        raise BadInputError(
            f"{path}: outlet of basin {bid!r}: no cell with upstream area >= {min_area_km2:g} km2 within "
            f"{radius} cells (largest there: {best:.3g} km2); move the outlet or lower min_area_km2")
    d, u = dist[cand], up[cand]
    if area_hint:
        key = np.lexsort((d, -u, np.round(np.abs(np.log(u / area_hint)), 3)))
    else:
        key = np.lexsort((-u, np.round(d, 6)))
    k = key[0]
    return int(rr[cand][k]), int(cc[cand][k]), float(d[k])


def _delineate(items: list[dict], grid: GridSpec, routing, path, min_area_km2: float,
               snap_radius_cells: int) -> list[Basin]:
    from rasterio.features import shapes

    to_dem = Transformer.from_crs(_WGS84, routing.crs, always_xy=True)
    to_ll = Transformer.from_crs(routing.crs, _WGS84, always_xy=True)
    to_grid = Transformer.from_crs(routing.crs, grid.crs, always_xy=True)
    flw = routing.flwdir
    h, w = routing.shape
    out = []
    for it in items:
        bid = it["id"]
        x, y = to_dem.transform(it["lon"], it["lat"])
        r, c, dsnap = _snap(routing, x, y, min_area_km2, snap_radius_cells, it["area_km2"], path, bid)
        idx = r * w + c
        mask_full = flw.basins(idxs=np.array([idx])) > 0
        rows = np.nonzero(mask_full.any(axis=1))[0]
        cols = np.nonzero(mask_full.any(axis=0))[0]
        rs, cs = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        mask = mask_full[rs, cs]
        wt = _window_transform(routing, rs, cs)
        geoms = [shp_shape(g) for g, v in shapes(mask.astype("uint8"), mask=mask, transform=wt) if v == 1]
        poly = shapely.union_all(geoms)
        if not routing.crs.equals(grid.crs, ignore_axis_order=True):
            poly = reproject_geometry(poly, routing.crs, grid.crs)
        ox, oy = routing.xy(r, c)
        lon, lat = to_ll.transform(float(ox), float(oy))
        gx, gy = to_grid.transform(float(ox), float(oy))
        b = Basin(id=bid, name=it["name"], outlet_lonlat=(float(lon), float(lat)), outlet_xy=(float(gx), float(gy)),
                  area_km2=float("nan"), polygon=poly, area_dem_km2=float(routing.upstream_area_km2[r, c]),
                  requested_lonlat=(it["lon"], it["lat"]), snap_distance_m=dsnap, source_file=str(path),
                  native={"rs": rs, "cs": cs, "mask": mask, "outlet_idx": idx, "routing_id": id(routing)})
        if dsnap > 0:
            log.info("basin %r: outlet snapped %.0f m to (%.6f, %.6f), upstream area %.4g km2",
                     bid, dsnap, lon, lat, b.area_dem_km2)
        out.append(_finish(b, grid, path))
    return out


def read_basins(path, grid: GridSpec, flwdir_info=None, *, min_area_km2: float = 10.0,
                snap_radius_cells: int = 3, layer: str | None = None) -> list[Basin]:
    """Basins from polygons (GeoJSON, Shapefile, GeoPackage or any OGR format) or an outlets CSV.

    ``layer``: the layer of a multi-layer OGR source. Missing file: MissingInputError; anything
    wrong in it: BadInputError naming it (see the module docstring).

    ``flwdir_info``: :class:`hydrocast.terrain.FlowRouting` of the DEM (required for an outlets
    CSV; for polygons it gives DEM flow distances instead of straight lines). Each basin gets its
    fraction, areas and flow distance (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path}: basins file does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise BadInputError(f"{path}: basins file is empty")
    kind = _kind(path)
    if kind == "csv":
        items = _read_outlets_csv(path)
        if not items:
            raise BadInputError(f"{path}: no outlets in the file")
        _check_unique([i["id"] for i in items], path)
        if flwdir_info is None:
            raise BadInputError(f"{path}: an outlets CSV needs a DEM to delineate the basins (add a `dem` source)")
        basins = _delineate(items, grid, flwdir_info, path, float(min_area_km2), int(snap_radius_cells))
    else:
        items, crs = _read_geojson(path) if kind == "geojson" else _read_ogr(path, layer)
        if not items:
            raise BadInputError(f"{path}: no basins in the file")
        _check_unique([i["id"] for i in items], path)
        basins = []
        for it in items:
            geom = _polygonal(it["geometry"], path, it["id"])
            poly = reproject_geometry(geom, crs, grid.crs)
            outlet_ll = outlet_xy = None
            lon, lat = _prop(it["props"], "outlet_lon"), _prop(it["props"], "outlet_lat")
            if not _missing(lon) and not _missing(lat):
                try:
                    outlet_ll = (float(lon), float(lat))
                except (TypeError, ValueError):
                    raise BadInputError(f"{path}: basin {it['id']!r}: outlet_lon/outlet_lat are not numbers") from None
                if not all(math.isfinite(v) for v in outlet_ll):
                    raise BadInputError(f"{path}: basin {it['id']!r}: outlet_lon/outlet_lat are not finite")
                outlet_xy = Transformer.from_crs(_WGS84, grid.crs, always_xy=True).transform(*outlet_ll)
            b = Basin(id=it["id"], name=it["name"], outlet_lonlat=outlet_ll, outlet_xy=outlet_xy,
                      area_km2=float("nan"), polygon=poly, source_file=str(path))
            basins.append(_finish(b, grid, path))
    for b in basins:
        b.distance_km = flow_distance(b, grid, flwdir_info)
        _check_areas(b)
    return basins
