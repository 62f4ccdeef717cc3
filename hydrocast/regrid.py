"""Regridding a reader's DataArray onto the common :class:`~hydrocast.grid.GridSpec`.

All warping goes through GDAL (``rasterio.warp.reproject``):

* ``average`` (the default for precipitation, soil moisture and terrain) is GDAL's area-weighted
  average of every source cell that overlaps a target cell, weighted by the overlapping fraction,
  ignoring NaN (nodata) source cells. For an intensive field such as mm of rain this conserves the
  area-weighted regional total, and a target cell takes no value from across a nodata edge.
* ``bilinear``, ``nearest``, ``max``, ``min``, ``sum`` ... are available per source (config key
  ``resampling``) for fields where they fit better (``max`` for upstream area, say).

Target cells that no valid source cell touches are NaN.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from affine import Affine

from .config import RESAMPLING
from .errors import BadInputError
from .grid import GridSpec


def source_transform(da: xr.DataArray) -> tuple[Affine, bool, bool]:
    """The north-up affine transform of ``da``'s (y, x) cell centres.

    Returns ``(transform, flip_y, flip_x)``: whether the data must be flipped along y (ascending
    latitude, as in IMERG) or x to become north-up, west-to-east."""
    x = np.asarray(da["x"].values, dtype="float64")
    y = np.asarray(da["y"].values, dtype="float64")
    if x.size < 1 or y.size < 1:
        raise BadInputError(f"{da.attrs.get('source_file', '?')}: no cells inside the region")
    # end-to-end spacing, not a median of differences: float32 coordinates (IMERG) make the
    # median off by ~1e-15, enough for GDAL's max/min to count a pixel in its neighbour cell
    dx = float((x[-1] - x[0]) / (x.size - 1)) if x.size > 1 else float(da.attrs.get("dx", 0) or 0)
    dy = float((y[-1] - y[0]) / (y.size - 1)) if y.size > 1 else float(da.attrs.get("dy", 0) or 0)
    if dx == 0 or dy == 0:
        raise BadInputError(f"{da.attrs.get('source_file', '?')}: "
                            "cannot tell the cell size from a single row or column")
    for axis, c, d in (("x", x, dx), ("y", y, dy)):
        if c.size > 2 and np.max(np.abs(np.diff(c) - d)) > 1e-3 * abs(d):
            raise BadInputError(f"{da.attrs.get('source_file', '?')}: {axis} coordinate is not regularly spaced")
    flip_x, flip_y = dx < 0, dy > 0
    adx, ady = abs(dx), abs(dy)
    west = float(x.min()) - adx / 2
    north = float(y.max()) + ady / 2
    return Affine(adx, 0.0, west, 0.0, -ady, north), flip_y, flip_x


def regrid(da: xr.DataArray, grid: GridSpec, resampling: str = "average") -> np.ndarray:
    """Warp ``da`` (dims ``(..., y, x)``, CRS set with rioxarray) onto ``grid``.

    Returns a float32 array of shape ``(n, height, width)`` for 3-D input (``n`` = ``da.shape[0]``)
    or ``(height, width)`` for 2-D input. NaN is nodata on both sides."""
    if da.rio.crs is None:
        raise BadInputError(f"{da.attrs.get('source_file', '?')}: "
                            "data has no CRS; set `crs` for this source in the config")
    return regrid_array(np.asarray(da.transpose(..., "y", "x").values), da["x"].values, da["y"].values,
                        da.rio.crs, grid, resampling, da.attrs.get("source_file", "?"))


def regrid_array(data: np.ndarray, x: np.ndarray, y: np.ndarray, crs, grid: GridSpec,
                 resampling: str = "average", source: str = "?") -> np.ndarray:
    """:func:`regrid` on plain arrays: ``data`` (..., y, x) with cell-centre vectors ``x``, ``y``."""
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    if resampling not in RESAMPLING:
        raise ValueError(f"unknown resampling {resampling!r}; one of {', '.join(RESAMPLING)}")
    probe = xr.DataArray(np.empty((len(y), len(x)), "float32"), dims=("y", "x"), coords={"x": x, "y": y},
                         attrs={"source_file": source})
    transform, flip_y, flip_x = source_transform(probe)
    data = np.asarray(data, dtype="float32")
    if flip_y:
        data = data[..., ::-1, :]
    if flip_x:
        data = data[..., :, ::-1]
    squeeze = data.ndim == 2
    src = np.ascontiguousarray(data[None] if squeeze else data.reshape(-1, *data.shape[-2:]))
    dst = np.full((src.shape[0], grid.height, grid.width), np.nan, dtype="float32")
    if src.shape[0]:
        reproject(
            source=src,
            destination=dst,
            src_transform=transform,
            src_crs=crs,
            src_nodata=np.nan,
            dst_transform=grid.transform,
            dst_crs=grid.crs,
            dst_nodata=np.nan,
            resampling=getattr(Resampling, resampling),
        )
    return dst[0] if squeeze else dst
