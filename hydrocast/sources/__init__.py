"""Readers: one module per product behind one small registry.

The reader contract (every reader keeps it; ``tests/test_sources_*.py`` check it)
================================================================================

Each reader module exposes ``scan`` and ``read`` (and, for the kinds ingest reads day by day,
``read_arrays``) and is listed in the registry (:func:`get_reader`, :func:`get_array_reader`) by
its config ``kind``:

``scan(path, options) -> FileInfo``
    Cheap: says which days the file covers, which run it belongs to and how fine its time step
    is, so that ingest can plan what to read (and what is already in the cube) without reading
    any data. The IMERG, ESA CCI and dated-GeoTIFF scans look at the file name and the file's
    first bytes only (its signature and, for HDF5, the superblock's end-of-file address against
    the file's size): a daily rerun over years of files costs one 64-byte read per file. Where
    the name cannot tell, a scan reads what it must from the header (the generic NetCDF scan
    its time axis, the DEM scan its CRS). Bad files a scan can see (empty, HTML saved under a
    granule name, not HDF5/NetCDF/GeoTIFF, a truncated HDF5 file, a name that does not parse)
    raise :class:`~hydrocast.errors.BadInputError` with a message that starts with the path.
    Content checks (a header or ``time`` variable that disagrees with the name, a missing
    variable, corrupt contents) are ``read``'s: a file that passes ``scan`` and fails ``read`` is
    rejected by ingest all the same (one line naming it; ``--strict`` aborts before the cube is
    replaced), and its day is planned again from the day's other files.

``read(path, options, bbox) -> xarray.DataArray``
    Reads the data, clipped to ``bbox = (west, south, east, north)`` in EPSG:4326 degrees (or
    ``None`` for the whole file) *before* loading it, so a global file costs little. Returns:

    ========== ==================================================================================
    dims       ``("time", "y", "x")`` for dynamic products, ``("y", "x")`` for static ones
    dtype      float32, fully loaded (``.values`` is a NumPy array, no lazy handle left open)
    missing    NaN (fill values, flagged cells, nodata all become NaN; never 0)
    x, y       1-D cell-centre coordinates, regular spacing, in the data's CRS; any order
               (readers do not need to flip a north-to-south latitude axis)
    CRS        set with ``da.rio.write_crs(...)`` (EPSG:4326 for IMERG and ESA CCI)
    time       ``datetime64[ns]``, the **start** of each value's interval, in UTC
    attrs      ``units``: canonical units (below); ``step``: the interval of one value as a pandas
               offset alias ("30min", "1D", "1MS"); ``run``: "early", "late", "final" or "";
               ``source_file``: the file name
    ========== ==================================================================================

    Canonical units: precipitation is a **mean rate in mm/day** over the value's interval (so a
    half-hour of 2 mm/hr is 48 mm/day, and a day's total in mm is the mean of its rates); soil
    moisture is m3 m-3; elevation is m. Anything a reader cannot convert is a BadInputError.
    Content errors (truncated file, missing variable, unknown units, file outside ``bbox``)
    raise BadInputError naming the file.

``read_arrays(path, options, bbox) -> Arrays``
    The same read without the DataArray: :class:`Arrays` holds exactly what ``read`` puts in its
    DataArray (``read`` is ``to_dataarray(read_arrays(...))``). Ingest uses it: building an
    xarray object per small regional granule only to take its arrays out again cost more than
    reading the granule.

``options`` is the ``[[sources]]`` table of the config as a plain dict (``name``, ``kind``,
``paths`` and the kind's own keys, e.g. ``variable``, ``flag_mask``, ``crs``).

Weather forecasts (kinds ``nwp_grib`` and ``nwp_netcdf``, :mod:`.nwp`) are not in this registry: a
forecast has a run and a lead axis, not the daily ``(time, y, x)`` of the cube; ingest stores them
beside the cube through :mod:`hydrocast.forecasts`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from ..errors import BadInputError

#: Ranking of IMERG runs: a day made from a better run replaces one made from a worse run.
RUN_RANK = {"": 0, "early": 1, "late": 2, "final": 3}

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NETCDF3_SIGNATURES = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


@dataclass(frozen=True)
class FileInfo:
    """What :func:`scan` learns about one file without reading its data."""

    path: Path
    days: tuple[np.datetime64, ...]  # the UTC days (datetime64[D]) this file holds data for
    step: str  # "30min", "1D", "1MS" or "static"
    run: str = ""  # "early" | "late" | "final" | ""
    extra: dict = field(default_factory=dict, compare=False)


class Arrays(NamedTuple):
    """What ``read_arrays`` returns: the contract's DataArray as plain arrays (see the module doc)."""

    values: np.ndarray  # float32, (time, y, x), or (y, x) for a static field
    times: np.ndarray | None  # datetime64[ns] interval starts, one per values[i]; None when static
    x: np.ndarray  # float64 cell centres
    y: np.ndarray
    crs: object  # "EPSG:4326", or a pyproj CRS (anything rasterio and rioxarray accept)
    units: str
    step: str
    run: str
    source_file: str
    extra: dict  # further attrs (variable, version, original_units, ...)


def check_signature(path: Path, allowed: tuple[bytes, ...], what: str) -> bytes:
    """Raise BadInputError unless ``path`` is a non-empty file starting with one of ``allowed``.

    Catches the usual failed download: an HTML error page saved under the granule's name.
    An HDF5 file (``HDF5_SIGNATURE``) shorter than the end-of-file address in its superblock is
    a truncated download and is rejected here too (the check HDF5 itself makes when it opens the
    file). Returns the first bytes read."""
    try:
        fd = os.open(path, os.O_RDONLY)  # (plain os calls: a rerun checks thousands of files)
        try:
            head = os.read(fd, 64)
            size = os.fstat(fd).st_size if head.startswith(HDF5_SIGNATURE) else 0
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise BadInputError(f"{path}: file does not exist") from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be read ({exc.strerror})") from None
    if not head:
        raise BadInputError(f"{path}: file is empty")
    if not any(head.startswith(sig) for sig in allowed):
        text = head.lstrip().lower()
        if text.startswith((b"<!doctype html", b"<html", b"<?xml")):
            raise BadInputError(f"{path}: is an HTML/XML page, not {what} (a failed download?)")
        raise BadInputError(f"{path}: is not {what} (unexpected file signature {head[:8]!r})")
    if head.startswith(HDF5_SIGNATURE):
        stored = hdf5_stored_eof(head)
        if stored is not None and size < stored:
            raise BadInputError(f"{path}: truncated or corrupt HDF5 file (it has {size} bytes, its superblock "
                                f"says {stored}: an interrupted download?)")
    return head


def hdf5_stored_eof(head: bytes) -> int | None:
    """The end-of-file address an HDF5 superblock at offset 0 records (``None`` when ``head``
    does not hold one we can read: unknown version, base address not 0, undefined address).

    Layout (HDF5 file format spec, "Superblock"): versions 0 and 1 hold the sizes of offsets at
    byte 13, then after 24 (v0) or 28 (v1) bytes the base address, the free-space address and
    the end-of-file address; versions 2 and 3 hold the size of offsets at byte 9 and the base
    address, the superblock-extension address and the end-of-file address from byte 12."""
    if len(head) < 12 or not head.startswith(HDF5_SIGNATURE):
        return None
    version = head[8]
    if version in (0, 1):
        size, start = head[13], (24 if version == 0 else 28)
    elif version in (2, 3):
        size, start = head[9], 12
    else:
        return None
    if size not in (2, 4, 8) or len(head) < start + 3 * size:
        return None
    base = int.from_bytes(head[start:start + size], "little")
    eof = head[start + 2 * size:start + 3 * size]
    if base != 0 or eof == b"\xff" * size:
        return None
    return int.from_bytes(eof, "little")


#: kind -> (module, scan, read, read_arrays). Modules are imported when their kind is first used:
#: a rerun over IMERG and ESA CCI files need not import xarray/rioxarray (the DEM reader does).
_READERS = {
    "imerg": ("imerg", "scan", "read", "read_arrays"),
    "esacci_sm": ("esacci", "scan", "read", "read_arrays"),
    "netcdf": ("generic", "scan_netcdf", "read_netcdf", "read_netcdf_arrays"),
    "geotiff": ("generic", "scan_geotiff", "read_geotiff", "read_geotiff_arrays"),
    "dem": ("dem", "scan", "read", None),  # static: read by ingest's static-layer step only
}

KINDS = ("imerg", "esacci_sm", "dem", "netcdf", "geotiff")


def _entry(kind: str) -> tuple:
    import importlib

    if kind not in _READERS:
        raise KeyError(kind)
    module, *names = _READERS[kind]
    mod = importlib.import_module(f".{module}", __name__)
    return tuple(getattr(mod, n) if n else None for n in names)


def get_reader(kind: str) -> tuple[Callable, Callable]:
    """``(scan, read)`` for a source kind (one of :data:`KINDS`)."""
    return _entry(kind)[:2]


def get_array_reader(kind: str) -> Callable:
    """``read_arrays`` for a dynamic source kind (``read`` without the DataArray; ingest's path)."""
    read_arrays = _entry(kind)[2]
    if read_arrays is None:
        raise KeyError(kind)
    return read_arrays
