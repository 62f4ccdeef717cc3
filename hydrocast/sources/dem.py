"""Digital elevation models (GeoTIFF): the reader only.

Reader (the contract in :mod:`hydrocast.sources`): :func:`scan` and :func:`read` return a
``(y, x)`` float32 elevation in metres with nodata as NaN, in the file's own CRS (any CRS).
Options (the ``[[sources]]`` table): ``band`` (default 1), ``crs`` (only for files without one),
``nodata`` (overrides the file's nodata value), ``units`` ("m" or "ft"/"us-ft"; overrides the
band's unit tag) and ``margin_cells`` (default 2: extra DEM cells read around ``bbox``).

What is derived from the elevation (metric cell sizes, slope, D8 flow routing, the static layers
of the cube) is :mod:`hydrocast.terrain`'s.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from pyproj import CRS

from ..errors import BadInputError
from . import TIFF_SIGNATURES, FileInfo, check_signature

_FEET = {"ft": 0.3048, "foot": 0.3048, "feet": 0.3048, "international foot": 0.3048,
         "us-ft": 1200.0 / 3937.0, "ftus": 1200.0 / 3937.0, "us survey foot": 1200.0 / 3937.0,
         "us_survey_foot": 1200.0 / 3937.0}
_METRES = {"", "m", "metre", "meter", "metres", "meters"}


# ------------------------------------------------------------------------------------------------
# reader
# ------------------------------------------------------------------------------------------------
def _open(path: Path):
    import rasterio

    try:
        return rasterio.open(path)
    except Exception as exc:  # RasterioIOError, CPLE_* ...
        raise BadInputError(f"{path}: cannot open as a GeoTIFF DEM ({exc})") from None


def _file_crs(src, path: Path, options: dict) -> CRS:
    if options.get("crs"):
        try:
            return CRS.from_user_input(options["crs"])
        except Exception as exc:
            raise BadInputError(f"{path}: option crs={options['crs']!r} is not a CRS ({exc})") from None
    if src.crs is None:
        raise BadInputError(f"{path}: DEM has no CRS; set `crs` for this source in the config")
    return CRS.from_user_input(src.crs.to_wkt())


def _unit_factor(src, band: int, path: Path, options: dict) -> float:
    unit = options.get("units")
    if unit is None:
        unit = (src.units[band - 1] if src.units else None) or ""
    key = str(unit).strip().lower()
    if key in _METRES:
        return 1.0
    if key in _FEET:
        return _FEET[key]
    raise BadInputError(f"{path}: elevation units {unit!r} are not metres or feet; set `units` for this source")


def scan(path, options: dict | None = None) -> FileInfo:
    """Check the file is a readable GeoTIFF with a CRS; a DEM is static (no days)."""
    path = Path(path)
    options = options or {}
    check_signature(path, TIFF_SIGNATURES, "a GeoTIFF")
    with _open(path) as src:
        crs = _file_crs(src, path, options)
        band = int(options.get("band", 1))
        if not 1 <= band <= src.count:
            raise BadInputError(f"{path}: has {src.count} band(s), option band={band}")
        extra = {"crs_wkt": crs.to_wkt(), "bounds": tuple(src.bounds), "res": src.res,
                 "shape": (src.height, src.width), "dtype": src.dtypes[band - 1], "nodata": src.nodata}
    return FileInfo(path=path, days=(), step="static", run="", extra=extra)


def read(path, options: dict | None = None, bbox=None) -> xr.DataArray:
    """Elevation (m, float32, NaN = nodata) of ``path`` clipped to ``bbox`` (EPSG:4326 degrees).

    Only the window covering ``bbox`` (plus ``margin_cells``) is read."""
    from rasterio.warp import transform_bounds
    from rasterio.windows import Window

    path = Path(path)
    options = options or {}
    check_signature(path, TIFF_SIGNATURES, "a GeoTIFF")
    band = int(options.get("band", 1))
    with _open(path) as src:
        crs = _file_crs(src, path, options)
        t = src.transform
        if t.b != 0 or t.d != 0 or t.e >= 0 or t.a <= 0:
            raise BadInputError(f"{path}: DEM is rotated or not north-up; warp it first (gdalwarp)")
        if not 1 <= band <= src.count:
            raise BadInputError(f"{path}: has {src.count} band(s), option band={band}")
        factor = _unit_factor(src, band, path, options)
        if bbox is None:
            win = Window(0, 0, src.width, src.height)
        else:
            west, south, east, north = map(float, bbox)
            if not (east > west and north > south):
                raise BadInputError(f"{path}: bbox {list(bbox)} is not (west, south, east, north)")
            try:
                w, s, e, n = transform_bounds(CRS.from_epsg(4326), crs, west, south, east, north, densify_pts=21)
            except Exception as exc:
                raise BadInputError(f"{path}: cannot transform bbox {list(bbox)} into the DEM's CRS ({exc})") from None
            margin = int(options.get("margin_cells", 2))
            inv = ~t
            c0, r0 = inv @ (w, n)
            c1, r1 = inv @ (e, s)
            c0, c1 = math.floor(min(c0, c1) + 1e-6) - margin, math.ceil(max(c0, c1) - 1e-6) + margin
            r0, r1 = math.floor(min(r0, r1) + 1e-6) - margin, math.ceil(max(r0, r1) - 1e-6) + margin
            c0, r0 = max(c0, 0), max(r0, 0)
            c1, r1 = min(c1, src.width), min(r1, src.height)
            if c1 <= c0 or r1 <= r0:
                raise BadInputError(f"{path}: DEM does not overlap bbox {list(bbox)} (DEM bounds {tuple(src.bounds)})")
            win = Window(c0, r0, c1 - c0, r1 - r0)
        try:
            data = src.read(band, window=win, masked=True)
        except Exception as exc:  # truncated/corrupt tiles: RasterioIOError, CPLE_AppDefinedError
            raise BadInputError(f"{path}: cannot read the DEM (corrupt or truncated file?): {exc}") from None
        nodata = options.get("nodata")
        arr = np.ma.filled(data.astype("float64"), np.nan)
        if nodata is not None:
            arr[arr == float(nodata)] = np.nan
        scale = src.scales[band - 1] if src.scales else 1.0
        offset = src.offsets[band - 1] if src.offsets else 0.0
        arr = (arr * (scale or 1.0) + (offset or 0.0)) * factor
        wt = src.window_transform(win)
    arr = arr.astype("float32")
    ny, nx = arr.shape
    x = wt.c + (np.arange(nx) + 0.5) * wt.a
    y = wt.f + (np.arange(ny) + 0.5) * wt.e
    da = xr.DataArray(arr, dims=("y", "x"), coords={"y": y, "x": x}, name="elevation",
                      attrs={"units": "m", "step": "static", "run": "", "source_file": path.name,
                             "long_name": "surface elevation", "standard_name": "surface_altitude"})
    return da.rio.write_crs(crs)
