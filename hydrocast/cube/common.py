"""What both cube stores share: the time axis, the index of a cube, and the CF attributes of its
variables and of the whole cube (the contract itself is written in :mod:`hydrocast.cube`)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import __version__, acdd, fsio
from ..grid import GridSpec

EPOCH = np.datetime64("1970-01-01", "D")
TIME_UNITS = "days since 1970-01-01 00:00:00"

#: CF attributes for well-known cube variables, by the ``quantity`` they hold.
QUANTITY_ATTRS = {
    "precipitation": {
        "units": "mm", "standard_name": "lwe_thickness_of_precipitation_amount",
        "long_name": "daily precipitation total", "cell_methods": "time: sum"},
    "soil_moisture": {
        "units": "m3 m-3", "standard_name": "volume_fraction_of_condensed_water_in_soil",
        "long_name": "surface soil moisture, daily", "cell_methods": "time: mean"},
    "liquid_fraction": {
        "units": "percent", "long_name": "probability that precipitation is liquid (daily mean)",
        "cell_methods": "time: mean"},
    "frozen_fraction": {
        "units": "1", "long_name": "fraction of the cell flagged frozen or snow-covered by ESA CCI SM",
        "cell_methods": "time: mean"},
}


def days_to_int(days: np.ndarray) -> np.ndarray:
    return (np.asarray(days, dtype="datetime64[D]") - EPOCH).astype("int32")


def int_to_days(values: np.ndarray) -> np.ndarray:
    return EPOCH + np.asarray(values, dtype="int64").astype("timedelta64[D]")


@dataclass
class CubeIndex:
    """What is in an existing cube, without its data."""

    path: Path
    grid: GridSpec
    days: np.ndarray  # datetime64[D]
    dynamic: dict[str, dict]  # name -> attrs
    static: dict[str, dict]
    provenance: dict[str, list[str]] = field(default_factory=dict)  # name -> one string per day
    static_source: str = ""

    def day_index(self) -> dict[np.datetime64, int]:
        return {d: i for i, d in enumerate(self.days)}



def grid_mapping_attrs(grid: GridSpec) -> dict:
    attrs = {}
    for k, v in grid.crs.to_cf().items():
        if isinstance(v, (list, tuple)):
            v = np.asarray(v, dtype="float64")
        attrs[k] = v
    wkt = grid.crs.to_wkt()
    attrs["crs_wkt"] = wkt
    attrs["spatial_ref"] = wkt  # GDAL and rioxarray read this name
    t = grid.transform
    attrs["GeoTransform"] = " ".join(str(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e))
    return attrs


def xy_attrs(grid: GridSpec) -> tuple[dict, dict]:
    if grid.is_geographic:
        return ({"standard_name": "longitude", "long_name": "longitude of cell centre", "units": "degrees_east",
                 "axis": "X"},
                {"standard_name": "latitude", "long_name": "latitude of cell centre", "units": "degrees_north",
                 "axis": "Y"})
    unit = grid.crs.axis_info[0].unit_name if grid.crs.axis_info else "metre"
    unit = {"metre": "m", "meter": "m"}.get(unit, unit)
    return ({"standard_name": "projection_x_coordinate", "long_name": "x of cell centre", "units": unit, "axis": "X"},
            {"standard_name": "projection_y_coordinate", "long_name": "y of cell centre", "units": unit, "axis": "Y"})


def time_attrs() -> dict:
    return {"standard_name": "time", "long_name": "start of day (UTC)", "units": TIME_UNITS, "calendar": "standard",
            "axis": "T", "bounds": "time_bnds", "coverage_content_type": "coordinate"}


def dynamic_attrs(attrs: dict) -> dict:
    """The attributes a dynamic variable is written with (its reader's, plus the cube's)."""
    return {"coverage_content_type": "physicalMeasurement",
            **{k: v for k, v in attrs.items() if k != "_FillValue"}, "grid_mapping": "crs"}


def static_attrs(attrs: dict) -> dict:
    return {"coverage_content_type": "auxiliaryInformation",
            **{k: v for k, v in attrs.items() if k != "_FillValue"}, "grid_mapping": "crs"}


def provenance_attrs(name: str) -> dict:
    return {"long_name": f"provenance of each day of {name}: run, files, signature",
            "coverage_content_type": "auxiliaryInformation"}


def global_attrs(grid: GridSpec, days: np.ndarray, dynamic, static, *, institution: str | None = None,
                 attrs: dict | None = None, static_source: str = "") -> dict:
    """The global attributes of a cube of ``days`` (ACDD discovery set + hydrocast's own)."""
    days = np.asarray(days, dtype="datetime64[D]")
    span = f"{days[0]}..{days[-1]}" if len(days) else "no days yet"
    return acdd.discovery_attrs(
        title="hydrocast data cube: daily gridded forcing and static terrain layers",
        summary=(f"Daily gridded inputs of the hydrocast river discharge forecaster on its "
                 f"{grid.width}x{grid.height} grid ({grid.crs.name}), UTC days {span}: "
                 f"{', '.join(dynamic) or 'no dynamic variable'}; static layers: {', '.join(static) or 'none'}. "
                 "Daily aggregates of the input products, regridded; the input of hydrocast train, predict "
                 "and evaluate."),
        keywords="precipitation, soil moisture, terrain, elevation, hydrology, data cube, river discharge "
                 "forecasting",
        source=f"hydrocast {__version__} ingest",
        processing_level="daily aggregates of the input products (e.g. Level-3 satellite products), "
                         "regridded to the hydrocast grid",
        comment=("Times are UTC. Day D is [D 00:00, D+1 00:00) UTC: time is its start and time_bnds its "
                 "start and end; daily totals have cell_methods time: sum, daily means time: mean."),
        institution=institution, extent=acdd.grid_extent(grid),
        coverage=acdd.time_coverage(np.stack([days, days + np.timedelta64(1, "D")], axis=-1)),
        extra={"hydrocast_grid": json.dumps(grid.to_dict()),
               "hydrocast_dynamic": json.dumps(list(dynamic)),
               "hydrocast_static": json.dumps(list(static)),
               "hydrocast_static_source": static_source},
        attrs=attrs)


def chunk_shape(grid: GridSpec, n_days: int, chunks: tuple[int, int, int]) -> tuple[int, int, int]:
    """The (time, y, x) chunk of the dynamic variables: ``chunks`` clipped to the cube's size."""
    ct, cy, cx = chunks
    return max(1, min(ct, max(n_days, 1))), max(1, min(cy, grid.height)), max(1, min(cx, grid.width))


def writes(method):
    """A writing method of a cube writer (``self.path``, ``self.abort()``): a write failure becomes
    the one-line error of :func:`hydrocast.fsio.translate_write_error` naming the cube (disk full →
    DiskFullError, exit 74), and any failure undoes the write at once (``abort``: the old cube
    stays as it was)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except BaseException as exc:
            # translated before the write is undone: the check for a full disk must see it
            path = getattr(self, "path", None)
            err = fsio.translate_write_error(exc, path) if path is not None and isinstance(exc, Exception) else None
            self.abort()
            if err is None:
                raise
            raise err from exc
    return wrapper


def day_indices(index: dict, days) -> np.ndarray:
    """Positions in the cube's time axis (``index``: day -> position) of ``days``."""
    return np.array([index[np.datetime64(d, "D")] for d in days], dtype=int)


def contiguous_runs(idx: np.ndarray) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` positions into the sorted ``idx`` of each run of consecutive values: a run
    is written as one slice, to keep chunk rewrites few."""
    start = 0
    while start < len(idx):
        stop = start + 1
        while stop < len(idx) and idx[stop] == idx[stop - 1] + 1:
            stop += 1
        yield start, stop
        start = stop
