"""The data cube that every later stage reads: one CF-1.8 NetCDF file (the default, small regions)
or a Zarr v3 store that grows by appending (large domains, long records).

Which store: ``[cube] format = "auto"`` (default) takes a Zarr store for a path ending in
``.zarr`` and the NetCDF file otherwise (``"netcdf"`` / ``"zarr"`` force one); a reader goes by
what is on disk (a folder with ``zarr.json`` is a Zarr store). ``[cube] chunks`` = (time, y, x)
chunk shape of the dynamic variables (default 32 days x 256 x 256 cells: a training window of
45 days over a region reads two time chunks; y and x are clipped to the grid).

Contract (written once, here)
=============================

============================ =====================================================================
dimensions                   ``time`` (daily, contiguous: a day with no data is all-NaN, never
                             absent), ``y``, ``x`` (the grid's cell centres, y north→south), ``nv``
``time``                     int32 ``days since 1970-01-01``, the start (00:00 UTC) of each day,
                             with ``time_bnds`` (time, nv) = [day, day + 1)
``x``, ``y``                 float64 cell centres; ``longitude``/``latitude`` standard names on a
                             geographic grid, ``projection_x/y_coordinate`` otherwise
``crs``                      grid mapping variable (pyproj ``CRS.to_cf()``, ``crs_wkt``,
                             ``spatial_ref``, ``GeoTransform``); every data variable names it
dynamic variables            float32 (time, y, x), NaN = missing, compressed (NetCDF: zlib +
                             shuffle; Zarr: zstd), chunked ``[cube] chunks`` for the window reads
                             of training.
                             ``precipitation``: daily total in mm
                             (``lwe_thickness_of_precipitation_amount``, ``time: sum``);
                             ``soil_moisture``: daily mean in m3 m-3
                             (``volume_fraction_of_condensed_water_in_soil``); other names keep
                             the units their reader gives.
``<name>_source``            string (time): provenance of each day of ``<name>``: the run, the
                             first source file, how many files and a signature of the file set;
                             "" where no file gave the day. ``missing: <why>`` where files existed
                             but the day was left missing (e.g. too few half-hours).
static variables             float32 (y, x): ``elevation``, ``slope``, ``upstream_area`` ... from
                             the DEM source (see hydrocast.terrain)
global attributes            ``Conventions = "CF-1.8, ACDD-1.3"`` and the ACDD discovery set of
                             :mod:`hydrocast.acdd` (summary, license, creator, geospatial and
                             time coverage, ``date_created`` ...), ``hydrocast_version``,
                             ``hydrocast_grid`` (JSON GridSpec), ``hydrocast_dynamic`` /
                             ``hydrocast_static`` (JSON lists of names),
                             ``hydrocast_static_source`` (DEM file signature), ``history``.
                             Every variable but ``time_bnds`` and ``crs`` has
                             ``coverage_content_type`` (dynamic: ``physicalMeasurement``, static
                             and ``*_source``: ``auxiliaryInformation``, unless the attrs say)
============================ =====================================================================

Writing: :mod:`hydrocast.cube.ncfile` replaces the whole file atomically at every ingest (cost
in proportion to the record); :mod:`hydrocast.cube.zarrstore` writes only the chunks of the days
written, under a rollback journal (cost independent of the record). Both are crash-safe: a run
killed at any moment leaves the cube as it was before that run, or as the run left it complete.
Both writers also write a spatial window of days (``write_tile``: ingest on a dask cluster,
:mod:`hydrocast.ingest_dask`, one tile at a time) and read a day of the old cube as it was
before the write began (``read_before``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import BadInputError, ConfigError
from ..grid import GridSpec
from . import ncfile, zarrstore
from .common import EPOCH, QUANTITY_ATTRS, TIME_UNITS, CubeIndex, days_to_int, int_to_days
from .common import grid_mapping_attrs as _grid_mapping_attrs
from .common import xy_attrs as _xy_attrs
from .ncfile import CubeWriter, _writes
from .zarrstore import ZarrCubeWriter

__all__ = ["EPOCH", "QUANTITY_ATTRS", "TIME_UNITS", "CubeIndex", "CubeWriter", "ZarrCubeWriter", "StoreReader",
           "days_to_int", "int_to_days", "read_index", "open_reader", "open_writer", "open_cube", "store_format",
           "prepare", "_grid_mapping_attrs", "_xy_attrs", "_writes", "FORMATS"]

FORMATS = ("auto", "netcdf", "zarr")


class StoreReader(Protocol):
    """What both stores' readers give (:class:`ncfile.NcReader`, :class:`zarrstore.ZarrReader`)."""

    path: Path
    days: np.ndarray
    dynamic_names: list[str]
    static_names: list[str]
    shape: tuple[int, int]

    def close(self) -> None: ...
    def has(self, name: str) -> bool: ...
    def attrs(self, name: str) -> dict: ...
    def read(self, name: str, start: int, stop: int, rows: slice = ..., cols: slice = ...) -> np.ndarray: ...
    def read_static(self, name: str, rows: slice = ..., cols: slice = ...) -> np.ndarray: ...
    def strings(self, name: str, start: int, stop: int) -> list[str]: ...


def store_format(path: Path, fmt: str = "auto") -> str:
    """``"netcdf"`` or ``"zarr"`` for the cube at ``path`` (``[cube] format``; see the docstring).
    ConfigError when the config asks for one store and ``path`` holds the other."""
    path = Path(path)
    on_disk = "zarr" if zarrstore.is_store(path) else ("netcdf" if path.is_file() else None)
    wanted = fmt if fmt != "auto" else ("zarr" if path.suffix == ".zarr" else "netcdf")
    if on_disk is not None and on_disk != wanted and fmt != "auto":
        raise ConfigError(f"{path}: holds a {on_disk} cube but [cube] format = {fmt!r}; move it away or use "
                          "another [cube] path")
    return on_disk or wanted


def _on_disk(path: Path) -> str:
    path = Path(path)
    if zarrstore.is_store(path) or (path.suffix == ".zarr" and zarrstore.needs_recovery(path)):
        return "zarr"
    return "netcdf"


def prepare(path: Path, fmt: str = "auto") -> None:
    """Before a write, under the cube's lock: repair what a killed write left (Zarr store)."""
    if store_format(path, fmt) == "zarr":
        zarrstore.recover(Path(path))


def read_index(path: Path) -> CubeIndex:
    """Read the grid, the time axis, the variable list and the provenance of a cube."""
    if _on_disk(path) == "zarr":
        return zarrstore.read_index(Path(path))
    return ncfile.read_index(Path(path))


def open_reader(path: Path, *, writing: bool = False) -> StoreReader:
    """Random access to the variables of the cube at ``path`` (either store). ``writing``: the
    caller holds the cube's lock and is writing it (no check for an unfinished write)."""
    if _on_disk(path) == "zarr":
        return zarrstore.ZarrReader(Path(path), check=not writing)
    return ncfile.NcReader(Path(path))


def open_writer(path: Path, grid: GridSpec, days: np.ndarray, dynamic: dict[str, dict], static: dict[str, dict],
                *, old: CubeIndex | None, chunks: tuple[int, int, int] = (32, 256, 256), fmt: str = "auto",
                institution: str | None = None, global_attrs: dict | None = None):
    """The writer of the cube at ``path`` for ``days`` (every day of the new cube): a
    :class:`CubeWriter` (NetCDF: a whole new file) or a :class:`ZarrCubeWriter` (in place).
    ``writer.carry_over()`` copies the old days where the store needs it (``writer.copies_old``)."""
    cls = ZarrCubeWriter if store_format(path, fmt) == "zarr" else CubeWriter
    return cls(Path(path), grid, days, dynamic, static, chunks, institution=institution, global_attrs=global_attrs,
               old=old)


def open_cube(path: Path):
    """The cube as an ``xarray.Dataset`` (lazily loaded), either store."""
    import xarray as xr

    path = Path(path)
    try:
        if _on_disk(path) == "zarr":
            zarrstore.ensure_readable(path)
            return xr.open_zarr(path)
        return xr.open_dataset(path)
    except (OSError, ValueError, KeyError) as exc:
        raise BadInputError(f"{path}: cannot open the cube ({exc})") from None
