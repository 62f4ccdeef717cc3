"""Readers: one module per product behind one small registry.

The reader contract (every reader keeps it; ``tests/test_sources_*.py`` check it)
================================================================================

Each reader module exposes two functions and is listed in :data:`READERS` by its config ``kind``:

``scan(path, options) -> FileInfo``
    Cheap: looks at the file name and, at most, the file's header. Says which days the file
    covers, which run it belongs to and how fine its time step is, so that ingest can plan what to
    read (and what is already in the cube) without reading any data. Bad files (empty, HTML saved
    under a granule name, not HDF5/NetCDF/GeoTIFF, a name that does not parse) raise
    :class:`~hydrocast.errors.BadInputError` with a message that starts with the path.

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

``options`` is the ``[[sources]]`` table of the config as a plain dict (``name``, ``kind``,
``paths`` and the kind's own keys, e.g. ``variable``, ``flag_mask``, ``crs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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


def check_signature(path: Path, allowed: tuple[bytes, ...], what: str) -> None:
    """Raise BadInputError unless ``path`` is a non-empty file starting with one of ``allowed``.

    Catches the usual failed download: an HTML error page saved under the granule's name."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
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


def _registry() -> dict[str, tuple[Callable, Callable]]:
    from . import dem, esacci, generic, imerg

    return {
        "imerg": (imerg.scan, imerg.read),
        "esacci_sm": (esacci.scan, esacci.read),
        "netcdf": (generic.scan_netcdf, generic.read_netcdf),
        "geotiff": (generic.scan_geotiff, generic.read_geotiff),
        "dem": (dem.scan, dem.read),
    }


KINDS = ("imerg", "esacci_sm", "dem", "netcdf", "geotiff")


def get_reader(kind: str) -> tuple[Callable, Callable]:
    """``(scan, read)`` for a source kind (one of :data:`KINDS`)."""
    reg = _registry()
    if kind not in reg:
        raise KeyError(kind)
    return reg[kind]
