"""Terrain from a DEM: metric cell sizes, slope, D8 flow routing and the static layers of the cube.

The DEM itself is read by :mod:`hydrocast.sources.dem` (a ``(y, x)`` float32 elevation in metres,
NaN = nodata, in the file's own CRS); this module works on what that reader returns and on the
cube grid. It imports neither the readers nor :mod:`hydrocast.basins` (basins import it).

Routing (:func:`flow_routing`): D8 flow directions at the DEM's **native** resolution with
pyflwdir (depression filling after Wang & Liu 2006, outlets at the edge of the valid cells),
upstream area and the along-channel distance of every cell to its outlet, on metric cell sizes.
The routing domain is what the reader returned, so the DEM must cover the whole catchment of
every river of interest: a river entering the DEM from outside gets too small an upstream area.

Static layers (:func:`static_layers`), all float32 on the cube grid, NaN where no valid DEM cell:

=================== ====== ======================================================================
layer               units  why a runoff model wants it
=================== ====== ======================================================================
elevation           m      area-weighted mean height: temperature/snow, orographic rain, climate
elevation_std       m      sub-cell relief (std of native heights): steep, rugged cells respond
                           fast and shed more water; flat cells store it
slope               degree mean native slope on metric spacing: hillslope velocity, infiltration
                           vs runoff, soil depth
upstream_area       km2    MAX upstream area of the native cells centred in the cube cell = the
                           area drained by the cell's main channel: where the rivers are, how big
                           (:func:`centre_max`, not GDAL "max", which leaks across cell edges)
log_upstream_area   1      log10(upstream_area / 1 km2): upstream area spans 5-6 orders of
                           magnitude (one native cell ~0.01 km2 to 1e5 km2 main stems); on a log
                           scale hillslopes, creeks and main stems are all distinguishable after
                           normalisation, instead of a few main-stem cells dominating the channel
hand                m      mean Height Above Nearest Drainage (Nobre et al. 2016): low HAND =
                           valley bottoms and floodplains that saturate first (saturation-excess
                           runoff, the variable-source-area idea); drains = upstream area >=
                           ``hand_drain_km2`` (default 1 km2)
valid_dem_fraction  1      fraction of the cube cell covered by valid DEM cells (0 where there is
                           none): says how much the other layers can be trusted; 0, never NaN
=================== ====== ======================================================================

Numerics
--------
* Metric sizes: for a geographic DEM a cell is ``R cos(lat) dlon`` wide and ``R dlat`` high
  (``R`` = :data:`hydrocast.grid.EARTH_RADIUS_M`, the sphere ``GridSpec.cell_area_m2`` uses) and its
  area is the spherical-zone area. For a projected DEM the CRS's linear unit is converted to metres
  and the projection's scale factors (pyproj ``get_factors``) are divided out, so a Web-Mercator
  DEM at 60 N (scale 2) gives true slopes, lengths and areas, not halved/quartered ones.
* Slope: 2nd-order central differences, falling back to one-sided ones next to nodata or the edge
  (nodata never creates a cliff); NaN where a cell has no valid neighbour along x or y.
* Upstream area: pyflwdir accumulation (``accuflux``) of the metric cell areas.
* Distance to outlet: the metric length of each D8 step to the downstream cell accumulated
  downstream (``accuflux(direction="down")``); the distance from a cell to any outlet downstream of
  it is then a difference of two values (used by :mod:`hydrocast.basins`).
* Averages are GDAL's area-weighted ``average`` (ignores NaN cells): a cube cell half covered by
  nodata averages only its valid half.
* :func:`polygon_fraction`: the exact area fraction of each cube cell inside a polygon (the DEM's
  extent here; every basin in :mod:`hydrocast.basins`, which calls it ``basin_fraction``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS

from .errors import BadInputError
from .grid import EARTH_RADIUS_M, GridSpec

if TYPE_CHECKING:
    import xarray as xr

SLIVER = 1e-6  # fractions below this are round-off of reprojected edges


# ------------------------------------------------------------------------------------------------
# polygons on the grid
# ------------------------------------------------------------------------------------------------
def polygon_fraction(polygon, grid: GridSpec) -> np.ndarray:
    """Exact fraction (0..1, float64, ``grid.shape``) of each cube cell covered by ``polygon``.

    ``polygon`` is in the grid CRS. Cells entirely inside count 1 without any intersection; only
    cells on the boundary are intersected, row by row with the polygon clipped to that row.
    Fractions below ``SLIVER`` (1e-6) are set to 0: they are the round-off of a reprojected edge
    lying on a cell edge, and would otherwise make a cell "in" the basin."""
    out = np.zeros(grid.shape)
    if polygon is None or polygon.is_empty:
        return out
    if not polygon.is_valid:
        polygon = shapely.make_valid(polygon)
    dx, dy = grid.res
    west, north = grid.transform.c, grid.transform.f
    minx, miny, maxx, maxy = polygon.bounds
    c0 = max(int(math.floor((minx - west) / dx)), 0)
    c1 = min(int(math.ceil((maxx - west) / dx)), grid.width)
    r0 = max(int(math.floor((north - maxy) / dy)), 0)
    r1 = min(int(math.ceil((north - miny) / dy)), grid.height)
    if c1 <= c0 or r1 <= r0:
        return out
    cols = np.arange(c0, c1)
    x0 = west + cols * dx
    shapely.prepare(polygon)
    for r in range(r0, r1):
        ytop = north - r * dy
        boxes = shapely.box(x0, ytop - dy, x0 + dx, ytop)
        inside = shapely.contains_properly(polygon, boxes)
        touch = ~inside & shapely.intersects(polygon, boxes)
        row = inside.astype(float)
        if touch.any():
            strip = shapely.intersection(polygon, shapely.box(x0[0], ytop - dy, x0[-1] + dx, ytop))
            shapely.prepare(strip)
            row[touch] = shapely.area(shapely.intersection(boxes[touch], strip)) / (dx * dy)
        out[r, c0:c1] = row
    out[out < SLIVER] = 0.0  # reprojection round-off, not basin
    return np.clip(out, 0.0, 1.0)


# ------------------------------------------------------------------------------------------------
# metric geometry of a raster
# ------------------------------------------------------------------------------------------------
def _linear_unit(crs: CRS) -> float:
    try:
        return float(crs.axis_info[0].unit_conversion_factor) if crs.axis_info else 1.0
    except Exception:
        return 1.0


def _scale_factors(crs: CRS, transform: Affine, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Projection scale factors (parallel, meridional) at the cell centres, shape ``shape``.

    Computed on a lattice of at most ~200x200 points and interpolated bilinearly (the factors are
    smooth); 1 where pyproj cannot compute them."""
    from pyproj import Proj, Transformer
    from scipy.interpolate import RegularGridInterpolator

    h, w = shape
    step = max(1, math.ceil(max(h, w) / 200))
    rows = np.unique(np.r_[np.arange(0, h, step), h - 1]).astype(float)
    cols = np.unique(np.r_[np.arange(0, w, step), w - 1]).astype(float)
    cc, rr = np.meshgrid(cols, rows)
    xs = transform.c + (cc + 0.5) * transform.a
    ys = transform.f + (rr + 0.5) * transform.e
    try:
        lon, lat = Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True).transform(xs, ys)
        f = Proj(crs).get_factors(lon, lat)
        kp = np.asarray(f.parallel_scale, dtype=float).reshape(cc.shape)
        km = np.asarray(f.meridional_scale, dtype=float).reshape(cc.shape)
        if not (np.all(np.isfinite(kp)) and np.all(np.isfinite(km)) and np.all(kp > 0) and np.all(km > 0)):
            raise ValueError("non-finite scale factors")
    except Exception:
        return np.ones(shape), np.ones(shape)
    if step == 1:
        return kp, km
    r_all, c_all = np.arange(h, dtype=float), np.arange(w, dtype=float)
    pts = np.stack(np.meshgrid(r_all, c_all, indexing="ij"), axis=-1)
    out = []
    for k in (kp, km):
        if len(rows) == 1 or len(cols) == 1:
            out.append(np.broadcast_to(k.mean(), shape).copy())
        else:
            out.append(RegularGridInterpolator((rows, cols), k)(pts))
    return out[0], out[1]


def metric_spacing(crs: CRS, transform: Affine, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx_m, dy_m, cell_area_m2)`` of a north-up raster, each broadcastable to ``shape``.

    Geographic: per row (``(h, 1)`` arrays) on the sphere of radius ``EARTH_RADIUS_M``.
    Projected: per cell, CRS units converted to metres and projection scale divided out."""
    h, w = shape
    crs = CRS.from_user_input(crs)
    dx, dy = abs(transform.a), abs(transform.e)
    if crs.is_geographic:
        lat_c = transform.f + (np.arange(h) + 0.5) * transform.e
        lat_n, lat_s = np.radians(lat_c + dy / 2), np.radians(lat_c - dy / 2)
        dlon, dlat = math.radians(dx), math.radians(dy)
        dx_m = (EARTH_RADIUS_M * np.cos(np.radians(lat_c)) * dlon)[:, None]
        dy_m = np.full((h, 1), EARTH_RADIUS_M * dlat)
        area = (EARTH_RADIUS_M**2 * dlon * np.abs(np.sin(lat_n) - np.sin(lat_s)))[:, None]
        return dx_m, dy_m, area
    u = _linear_unit(crs)
    kp, km = _scale_factors(crs, transform, shape)
    dx_m = dx * u / kp
    dy_m = dy * u / km
    return dx_m, dy_m, dx_m * dy_m


def slope_degrees(z: np.ndarray, dx_m: np.ndarray, dy_m: np.ndarray) -> np.ndarray:
    """Slope angle (degrees) of elevation ``z`` (NaN = nodata) on metric spacings.

    Central differences; one-sided next to nodata/edges so that nodata never makes a cliff; NaN
    where a valid cell has no valid neighbour along x or along y, and at nodata cells."""
    z = np.asarray(z, dtype="float64")
    zp = np.pad(z, 1, constant_values=np.nan)
    c = zp[1:-1, 1:-1]

    def derivative(a, b):  # a: the +1 neighbour, b: the -1 neighbour
        fa, fb = np.isfinite(a), np.isfinite(b)
        return np.where(fa & fb, (a - b) / 2.0, np.where(fa, a - c, np.where(fb, c - b, np.nan)))

    with np.errstate(invalid="ignore"):
        gx = derivative(zp[1:-1, 2:], zp[1:-1, :-2]) / dx_m
        gy = derivative(zp[:-2, 1:-1], zp[2:, 1:-1]) / dy_m
        s = np.degrees(np.arctan(np.hypot(gx, gy)))
    s[~np.isfinite(c)] = np.nan
    return s


# ------------------------------------------------------------------------------------------------
# flow routing at native resolution
# ------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class FlowRouting:
    """D8 routing of a DEM at its native resolution (all arrays ``shape``, north-up).

    ``dist_to_outlet_m`` is the along-channel distance from each cell to the outlet (pit) its
    water finally leaves through; for a cell ``c`` upstream of a cell ``o`` the distance from ``c``
    to ``o`` is ``dist_to_outlet_m[c] - dist_to_outlet_m[o]``."""

    flwdir: "object"  # pyflwdir.FlwdirRaster
    elevation: np.ndarray  # float32, NaN = nodata (as read)
    filled: np.ndarray  # float32, depression-filled elevation (NaN = nodata)
    transform: Affine
    crs: CRS
    dx_m: np.ndarray
    dy_m: np.ndarray
    cell_area_m2: np.ndarray  # (h, w) float64
    upstream_area_km2: np.ndarray  # (h, w) float64, NaN = nodata
    dist_to_outlet_m: np.ndarray  # (h, w) float64, NaN = nodata
    source_file: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.elevation.shape

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.elevation)

    @property
    def x(self) -> np.ndarray:
        return self.transform.c + (np.arange(self.shape[1]) + 0.5) * self.transform.a

    @property
    def y(self) -> np.ndarray:
        return self.transform.f + (np.arange(self.shape[0]) + 0.5) * self.transform.e

    def rowcol(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Row/column (int, may lie outside the raster) of points in the DEM CRS."""
        inv = ~self.transform
        c, r = inv @ (np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        return np.floor(r).astype(int), np.floor(c).astype(int)

    def xy(self, row, col) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre coordinates (DEM CRS) of rows/columns."""
        x, y = self.transform @ (np.asarray(col, dtype=float) + 0.5, np.asarray(row, dtype=float) + 0.5)
        return x, y

    def dataarray(self, arr: np.ndarray, name: str = "v") -> xr.DataArray:
        """``arr`` (native shape) as a georeferenced DataArray that :func:`~hydrocast.regrid.regrid` takes."""
        return native_dataarray(arr, self.transform, self.crs, name, self.source_file)


def native_dataarray(arr, transform: Affine, crs: CRS, name: str = "v", source_file: str = "") -> xr.DataArray:
    """``arr`` on a north-up raster (``transform``, ``crs``) as a DataArray with the CRS written."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    h, w = arr.shape
    da = xr.DataArray(np.asarray(arr, dtype="float32"), dims=("y", "x"), name=name,
                      coords={"y": transform.f + (np.arange(h) + 0.5) * transform.e,
                              "x": transform.c + (np.arange(w) + 0.5) * transform.a},
                      attrs={"source_file": source_file, "dx": transform.a, "dy": transform.e})
    return da.rio.write_crs(crs)


def downstream_step_m(flw, dx_m: np.ndarray, dy_m: np.ndarray) -> np.ndarray:
    """Metric length (m) of each cell's D8 step to its downstream cell; 0 at pits, NaN invalid."""
    h, w = flw.shape
    idx = np.arange(h * w)
    ds = np.asarray(flw.idxs_ds, dtype=np.int64)
    r0, c0 = np.divmod(idx, w)
    r1, c1 = np.divmod(ds, w)
    dxm = np.broadcast_to(dx_m, (h, w)).ravel()
    dym = np.broadcast_to(dy_m, (h, w)).ravel()
    # mean spacing of the two cells (matters for diagonal steps across latitudes)
    step = np.hypot((c1 - c0) * 0.5 * (dxm + dxm[ds]), (r1 - r0) * 0.5 * (dym + dym[ds]))
    step[~np.asarray(flw.mask).ravel()] = np.nan
    return step.reshape(h, w)


def distance_to_outlet_m(flw, dx_m, dy_m) -> np.ndarray:
    """Along-channel distance (m) from every cell to its pit, NaN outside valid cells."""
    step = downstream_step_m(flw, dx_m, dy_m)
    valid = np.isfinite(step)
    data = np.where(valid, step, -9999.0)
    dist = flw.accuflux(data, nodata=-9999.0, direction="down")
    return np.where(valid, dist, np.nan)


def routing_from_array(z: np.ndarray, transform: Affine, crs: CRS, outlets: str = "edge",
                       max_depth: float = -1.0, idxs_pit=None, source_file: str = "") -> FlowRouting:
    """D8 routing of a north-up elevation array ``z`` (NaN = nodata) on ``transform``/``crs``.

    ``outlets``/``max_depth`` as in :func:`flow_routing`; ``idxs_pit`` (flat indices) forces the
    only outlets instead (:mod:`hydrocast.basins` re-routes a polygon to one outlet this way)."""
    import pyflwdir
    from pyflwdir.dem import fill_depressions

    z = np.asarray(z, dtype="float32")
    if not np.isfinite(z).any():
        raise BadInputError(f"{source_file or 'DEM'}: no valid elevation cell to route on")
    crs = CRS.from_user_input(crs)
    # from_dem() == fill_depressions() + from_array(); done in two steps to keep the filled DEM (HAND)
    kwargs = {"nodata": np.nan, "max_depth": float(max_depth)}  # float64 NaN: one numba signature
    if idxs_pit is not None:
        kwargs["idxs_pit"] = np.asarray(idxs_pit, dtype=np.int64)
    else:
        kwargs["outlets"] = outlets
    filled, d8 = fill_depressions(z, **kwargs)
    flw = pyflwdir.from_array(d8, ftype="d8", check_ftype=False, transform=transform,
                              latlon=bool(crs.is_geographic))
    dx_m, dy_m, area = metric_spacing(crs, transform, z.shape)
    area = np.broadcast_to(area, z.shape).astype("float64")
    valid = np.asarray(flw.mask).reshape(z.shape)
    up = flw.accuflux(np.where(valid, area, -9999.0), nodata=-9999.0, direction="up")
    up = np.where(valid, up / 1e6, np.nan)
    dist = distance_to_outlet_m(flw, dx_m, dy_m)
    filled = np.where(valid, filled, np.nan).astype("float32")
    return FlowRouting(flwdir=flw, elevation=np.where(valid, z, np.nan).astype("float32"), filled=filled,
                       transform=transform, crs=crs, dx_m=dx_m, dy_m=dy_m, cell_area_m2=area,
                       upstream_area_km2=up, dist_to_outlet_m=dist, source_file=source_file)


def flow_routing(dem: xr.DataArray, *, outlets: str = "edge", max_depth: float = -1.0) -> FlowRouting:
    """D8 routing (pyflwdir) of a DEM DataArray (as :func:`hydrocast.sources.dem.read` returns) at
    native resolution.

    ``outlets="edge"``: water may leave through any cell on the edge of the valid DEM (the right
    choice for a DEM cut out of a larger one); ``"min"``: only through the lowest edge cell (a DEM
    clipped to one catchment). ``max_depth``: see ``pyflwdir.from_dem`` (-1 fills all pits)."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    from .regrid import source_transform

    if dem.rio.crs is None:
        raise BadInputError(f"{dem.attrs.get('source_file', 'DEM')}: DEM has no CRS")
    transform, flip_y, flip_x = source_transform(dem)
    z = np.asarray(dem.transpose("y", "x").values, dtype="float32")
    if flip_y:
        z = z[::-1, :]
    if flip_x:
        z = z[:, ::-1]
    crs = CRS.from_user_input(dem.rio.crs.to_wkt())
    return routing_from_array(np.ascontiguousarray(z), transform, crs, outlets=outlets,
                              max_depth=max_depth, source_file=str(dem.attrs.get("source_file", "")))


# ------------------------------------------------------------------------------------------------
# static layers on the cube grid
# ------------------------------------------------------------------------------------------------
def _extent_fraction(routing: FlowRouting, grid: GridSpec) -> np.ndarray:
    """Fraction of each cube cell inside the DEM's rectangular extent."""
    h, w = routing.shape
    t = routing.transform
    box = shapely.box(t.c, t.f + h * t.e, t.c + w * t.a, t.f)
    if not routing.crs.equals(grid.crs, ignore_axis_order=True):
        from pyproj import Transformer

        box = shapely.segmentize(box, max(abs(t.a) * w, abs(t.e) * h) / 256)
        tr = Transformer.from_crs(routing.crs, grid.crs, always_xy=True)
        box = shapely.transform(box, tr.transform, interleaved=False)
    return polygon_fraction(box, grid)


def _fmax_by_index(values: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """NaN-ignoring max of ``values`` grouped by ``idx`` (0..n-1; -1 = drop) -> length n, NaN if empty."""
    out = np.full(n, -np.inf)
    keep = (idx >= 0) & np.isfinite(values)
    np.maximum.at(out, idx[keep], values[keep])
    out[np.isneginf(out)] = np.nan
    return out


def centre_max(values: np.ndarray, routing: "FlowRouting", grid: GridSpec) -> np.ndarray:
    """Max of the native cells whose CENTRE lies in each cube cell (NaN-ignoring), ``grid.shape``.

    Used instead of GDAL's ``max`` resampling, which takes any source pixel that overlaps a target
    cell by even 1e-13 of a cell (the transform rebuilt from float coordinates is never exact), so
    a main channel leaks into the neighbouring cube cells. Cube cells holding no native centre (a
    cube finer than the DEM) fall back to GDAL's ``max``."""
    from .regrid import regrid

    h, w = routing.shape
    west, north = grid.transform.c, grid.transform.f
    gdx, gdy = grid.res
    values = np.asarray(values, dtype="float64")
    if routing.crs.equals(grid.crs, ignore_axis_order=True):
        ci = np.floor((routing.x - west) / gdx).astype(np.int64)
        ri = np.floor((north - routing.y) / gdy).astype(np.int64)
        ci[(ci < 0) | (ci >= grid.width)] = -1
        ri[(ri < 0) | (ri >= grid.height)] = -1
        rr, cc = np.meshgrid(ri, ci, indexing="ij")
        flat = np.where((rr >= 0) & (cc >= 0), rr * grid.width + cc, -1)
        out = _fmax_by_index(values.ravel(), flat.ravel(), grid.width * grid.height)
    else:
        from pyproj import Transformer

        tr = Transformer.from_crs(routing.crs, grid.crs, always_xy=True)
        out = np.full(grid.width * grid.height, np.nan)
        rows_per_chunk = max(1, 2_000_000 // max(w, 1))
        for r0 in range(0, h, rows_per_chunk):
            r1 = min(h, r0 + rows_per_chunk)
            xx, yy = np.meshgrid(routing.x, routing.y[r0:r1])
            gx, gy = tr.transform(xx, yy)
            ci = np.floor((np.asarray(gx) - west) / gdx)
            ri = np.floor((north - np.asarray(gy)) / gdy)
            ok = np.isfinite(ci) & np.isfinite(ri) & (ci >= 0) & (ci < grid.width) & (ri >= 0) & (ri < grid.height)
            flat = np.where(ok, ri * grid.width + ci, -1).astype(np.int64)
            part = _fmax_by_index(values[r0:r1].ravel(), flat.ravel(), grid.width * grid.height)
            out = np.fmax(out, part)
    out = out.reshape(grid.shape)
    gaps = np.isnan(out)
    if gaps.any():
        gdal = regrid(routing.dataarray(values), grid, "max")
        out[gaps] = gdal[gaps]
    return out


def static_layers(dem: xr.DataArray, grid: GridSpec, *, routing: FlowRouting | None = None,
                  hand_drain_km2: float = 1.0, outlets: str = "edge") -> dict[str, tuple[np.ndarray, dict]]:
    """Terrain layers on ``grid``: ``{name: (float32 array grid.shape, CF attrs)}``.

    See the module docstring for the layers and why. ``routing`` (from :func:`flow_routing` on
    the same DEM) is computed when not given."""
    from .regrid import regrid

    if routing is None:
        routing = flow_routing(dem, outlets=outlets)
    z = routing.elevation
    valid = np.isfinite(z)
    src = routing.source_file
    da = routing.dataarray

    elev = regrid(da(z, "elevation"), grid, "average")

    # sub-cell relief: deviations from the cube-cell mean, mapped back to the native cells
    native_grid = GridSpec(routing.crs, routing.transform, routing.shape[1], routing.shape[0])
    mean_da = native_dataarray(elev, grid.transform, grid.crs, "elevation", src)
    mean_nn = regrid(mean_da, native_grid, "nearest").astype("float64")
    dev = z.astype("float64") - mean_nn
    m1 = regrid(da(dev), grid, "average").astype("float64")
    m2 = regrid(da(dev * dev), grid, "average").astype("float64")
    estd = np.sqrt(np.maximum(m2 - m1 * m1, 0.0))
    estd[~np.isfinite(elev)] = np.nan

    slope_native = slope_degrees(z, routing.dx_m, routing.dy_m)
    slope = regrid(da(slope_native, "slope"), grid, "average")

    upa = centre_max(routing.upstream_area_km2, routing, grid)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_upa = np.log10(upa)

    drain = np.isfinite(routing.upstream_area_km2) & (routing.upstream_area_km2 >= hand_drain_km2)
    filled = np.where(valid, routing.filled, -9999.0).astype("float64")
    hand_native = routing.flwdir.hand(drain=drain, elevtn=filled)
    hand_native = np.where(valid & (hand_native > -9999.0), hand_native, np.nan)
    hand = regrid(da(hand_native, "hand"), grid, "average")

    ind = regrid(da(valid.astype("float32"), "valid"), grid, "average")
    vfrac = np.where(np.isfinite(ind), ind, 0.0) * _extent_fraction(routing, grid)
    vfrac = np.clip(vfrac, 0.0, 1.0)

    common = {"source_file": src}
    layers = {
        "elevation": (elev, {"units": "m", "standard_name": "surface_altitude",
                             "long_name": "mean surface elevation", "cell_methods": "area: mean"}),
        "elevation_std": (estd, {"units": "m",
                                 "long_name": "standard deviation of native DEM elevations within the cell",
                                 "cell_methods": "area: standard_deviation"}),
        "slope": (slope, {"units": "degree",
                          "long_name": "mean terrain slope angle (native resolution, metric spacing)",
                          "cell_methods": "area: mean"}),
        "upstream_area": (upa, {"units": "km2",
                                "long_name": "upstream (contributing) area of the cell's main channel, D8",
                                "cell_methods": "area: maximum"}),
        "log_upstream_area": (log_upa, {"units": "1", "long_name": "log10 of upstream_area in km2",
                                        "cell_methods": "area: maximum"}),
        "hand": (hand, {"units": "m", "long_name": "mean height above nearest drainage",
                        "comment": f"drains: native cells with upstream area >= {hand_drain_km2:g} km2; "
                                   "D8, depression-filled DEM",
                        "cell_methods": "area: mean"}),
        "valid_dem_fraction": (vfrac, {"units": "1", "long_name": "fraction of the cell covered by valid DEM cells"}),
    }
    return {k: (np.asarray(v, dtype="float32"), {**a, **common}) for k, (v, a) in layers.items()}
