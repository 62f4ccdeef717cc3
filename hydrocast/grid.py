"""The common grid every source is regridded onto.

A :class:`GridSpec` is a north-up regular raster: a CRS, an affine transform and a shape.
Cell centres are ``x[j] = west + (j + 0.5) * dx`` and ``y[i] = north - (i + 0.5) * dy``, so
``y`` decreases with the row index, as in a GeoTIFF.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from pyproj import CRS

from .errors import BadInputError, ConfigError, MissingInputError

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG), used for cell areas on geographic grids


@dataclass(frozen=True)
class GridSpec:
    crs: CRS
    transform: Affine
    width: int
    height: int

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_bounds(cls, crs: str | CRS, bounds: tuple[float, float, float, float],
                    resolution: float | tuple[float, float]) -> "GridSpec":
        """Grid covering ``bounds = (west, south, east, north)`` (grid CRS units) at ``resolution``.

        The bounds must be a whole number of cells wide and high (within 1e-6 of a cell)."""
        west, south, east, north = map(float, bounds)
        dx, dy = (resolution, resolution) if np.isscalar(resolution) else resolution
        dx, dy = float(dx), float(dy)
        if dx <= 0 or dy <= 0:
            raise ConfigError(f"grid.resolution must be positive, got {resolution!r}")
        if not (east > west and north > south):
            raise ConfigError("grid.bounds must be [west, south, east, north] with west<east and south<north, "
                              f"got {list(bounds)}")
        nx, ny = (east - west) / dx, (north - south) / dy
        if abs(nx - round(nx)) > 1e-6 or abs(ny - round(ny)) > 1e-6:
            raise ConfigError(
                f"grid.bounds {list(bounds)} are not a whole number of cells of {resolution} "
                f"({nx:.4f} x {ny:.4f} cells)")
        try:
            crs_obj = CRS.from_user_input(crs)
        except Exception as exc:  # pyproj raises CRSError
            raise ConfigError(f"grid.crs {crs!r} is not a CRS pyproj understands: {exc}") from None
        return cls(crs_obj, Affine(dx, 0.0, west, 0.0, -dy, north), int(round(nx)), int(round(ny)))

    @classmethod
    def from_template(cls, path: str | Path) -> "GridSpec":
        """The grid of a raster file (any GDAL format, e.g. a GeoTIFF)."""
        import rasterio

        path = Path(path)
        if not path.exists():
            raise MissingInputError(f"{path}: grid template raster does not exist")
        try:
            with rasterio.open(path) as src:
                if src.crs is None:
                    raise BadInputError(f"{path}: grid template has no CRS")
                t = src.transform
                if t.b != 0 or t.d != 0 or t.e >= 0:
                    raise BadInputError(f"{path}: grid template is rotated or not north-up")
                return cls(CRS.from_user_input(src.crs.to_wkt()), t, src.width, src.height)
        except rasterio.errors.RasterioIOError as exc:
            raise BadInputError(f"{path}: cannot read grid template ({exc})") from None

    # -- geometry ---------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def res(self) -> tuple[float, float]:
        return (self.transform.a, -self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        west, north = self.transform.c, self.transform.f
        dx, dy = self.res
        return (west, north - dy * self.height, west + dx * self.width, north)

    @property
    def x(self) -> np.ndarray:
        dx = self.res[0]
        return self.transform.c + (np.arange(self.width) + 0.5) * dx

    @property
    def y(self) -> np.ndarray:
        dy = self.res[1]
        return self.transform.f - (np.arange(self.height) + 0.5) * dy

    @property
    def is_geographic(self) -> bool:
        return bool(self.crs.is_geographic)

    def cell_area_m2(self) -> np.ndarray:
        """Area of each cell in m2, shape (height, width).

        Geographic grids: exact spherical-zone area ``R^2 * dlon * (sin(lat_n) - sin(lat_s))``.
        Projected grids: ``dx * dy`` in the CRS's linear unit converted to metres (projection scale
        distortion is ignored, which is the convention of equal-area grids such as EPSG:3035)."""
        dx, dy = self.res
        if self.is_geographic:
            lat_n = np.radians(self.y + dy / 2)
            lat_s = np.radians(self.y - dy / 2)
            band = EARTH_RADIUS_M**2 * math.radians(dx) * (np.sin(lat_n) - np.sin(lat_s))
            return np.repeat(band[:, None], self.width, axis=1)
        unit = self.crs.axis_info[0].unit_conversion_factor if self.crs.axis_info else 1.0
        return np.full(self.shape, dx * dy * unit * unit)

    def crop(self, rows: slice, cols: slice) -> "GridSpec":
        """The sub-grid of cells ``[rows, cols]`` (a window of this grid: same CRS and cell size, its
        cells exactly this grid's). ``rows``/``cols`` are slices with step 1 inside the grid."""
        r0, r1, _ = rows.indices(self.height)
        c0, c1, _ = cols.indices(self.width)
        if r1 <= r0 or c1 <= c0:
            raise ValueError(f"empty window rows {rows}, cols {cols} of a {self.height}x{self.width} grid")
        t = self.transform
        return GridSpec(self.crs, Affine(t.a, t.b, t.c + c0 * t.a + r0 * t.b, t.d, t.e, t.f + c0 * t.d + r0 * t.e),
                        c1 - c0, r1 - r0)

    def tiles(self, tile_rows: int, tile_cols: int) -> list[tuple[slice, slice]]:
        """The grid cut into windows of ``tile_rows`` x ``tile_cols`` cells (smaller at the south
        and east edges), row-major: ``[(rows, cols), ...]`` for :meth:`crop`."""
        if tile_rows < 1 or tile_cols < 1:
            raise ValueError(f"tile size must be >= 1 cell, got {tile_rows} x {tile_cols}")
        return [(slice(r, min(r + tile_rows, self.height)), slice(c, min(c + tile_cols, self.width)))
                for r in range(0, self.height, tile_rows) for c in range(0, self.width, tile_cols)]

    def lonlat_bounds(self, margin_cells: float = 2.0) -> tuple[float, float, float, float]:
        """The grid's bounds in EPSG:4326 (west, south, east, north), widened by ``margin_cells``.

        Readers of global lat/lon products use this to cut the region out before any warping."""
        from rasterio.warp import transform_bounds

        west, south, east, north = self.bounds
        dx, dy = self.res
        west, east = west - margin_cells * dx, east + margin_cells * dx
        south, north = south - margin_cells * dy, north + margin_cells * dy
        if self.is_geographic and self.crs.to_epsg() == 4326:
            return (max(west, -180.0), max(south, -90.0), min(east, 180.0), min(north, 90.0))
        w, s, e, n = transform_bounds(self.crs, "EPSG:4326", west, south, east, north, densify_pts=21)
        return (w, s, e, n)

    # -- identity ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-able description (stored in the cube and in model artefacts)."""
        return {"crs_wkt": self.crs.to_wkt(), "transform": list(self.transform)[:6],
                "width": self.width, "height": self.height}

    @classmethod
    def from_dict(cls, d: dict) -> "GridSpec":
        return cls(CRS.from_wkt(d["crs_wkt"]), Affine(*d["transform"]), int(d["width"]), int(d["height"]))

    def same_as(self, other: "GridSpec", tol: float = 1e-9) -> bool:
        """True when both grids have the same CRS, shape and transform (to ``tol`` of a cell)."""
        if self.shape != other.shape or not self.crs.equals(other.crs, ignore_axis_order=True):
            return False
        a, b = np.array(list(self.transform)[:6]), np.array(list(other.transform)[:6])
        scale = max(abs(self.transform.a), abs(self.transform.e))
        return bool(np.all(np.abs(a - b) <= tol * max(scale, 1.0) + tol))

    def describe(self) -> str:
        w, s, e, n = self.bounds
        name = self.crs.to_string()
        return (f"{self.height}x{self.width} cells of {self.res[0]:g}x{self.res[1]:g} in {name}, "
                f"bounds [{w:g}, {s:g}, {e:g}, {n:g}]")
