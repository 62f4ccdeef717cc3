"""The cube as one NetCDF-4 file (the default store; the contract is in :mod:`hydrocast.cube`).

The file is only ever replaced whole: :class:`CubeWriter` writes a temporary file in the same
folder, fsyncs it and ``os.replace``-s it over the old one, so a run killed at any moment leaves
the previous cube readable and complete. A failed write (a full disk) is a one-line
DiskFullError naming the cube (exit 74); the old cube stays. An ingest therefore costs time in
proportion to the whole record (the old days are copied); the Zarr store
(:mod:`hydrocast.cube.zarrstore`) appends instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import fsio
from ..errors import BadInputError
from ..grid import GridSpec
from . import common
from .common import (
    CubeIndex,
    chunk_shape,
    days_to_int,
    dynamic_attrs,
    grid_mapping_attrs,
    int_to_days,
    provenance_attrs,
    static_attrs,
    time_attrs,
    xy_attrs,
)


def read_index(path: Path) -> CubeIndex:
    """Read the grid, the time axis, the variable list and the provenance of a cube."""
    import netCDF4

    try:
        with netCDF4.Dataset(path) as ds:
            grid = GridSpec.from_dict(json.loads(ds.getncattr("hydrocast_grid")))
            days = int_to_days(ds.variables["time"][:].filled(0)) if ds.dimensions["time"].size else \
                np.array([], dtype="datetime64[D]")
            dyn_names = json.loads(ds.getncattr("hydrocast_dynamic"))
            st_names = json.loads(ds.getncattr("hydrocast_static"))
            dynamic = {n: {k: ds.variables[n].getncattr(k) for k in ds.variables[n].ncattrs()} for n in dyn_names}
            static = {n: {k: ds.variables[n].getncattr(k) for k in ds.variables[n].ncattrs()} for n in st_names}
            prov = {n: [str(s) for s in ds.variables[f"{n}_source"][:]] for n in dyn_names}
            static_source = ds.getncattr("hydrocast_static_source") if "hydrocast_static_source" in ds.ncattrs() else ""
    except (OSError, KeyError, AttributeError, ValueError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: not a readable hydrocast cube ({exc}); move it away to start a new one") from None
    return CubeIndex(Path(path), grid, days, dynamic, static, prov, static_source)


_writes = common.writes


class CubeWriter:
    """Writes a complete new cube to a temporary file beside ``path``; :meth:`commit` replaces.

    Use as a context manager: leaving the block without :meth:`commit` removes the temporary
    file and leaves the old cube untouched. The temporary file (``.<name>.<pid>.tmp``) lives for
    the whole ingest; the leftovers of killed runs are removed when a writer starts. A write that
    fails (a full disk: netCDF4 reports "NetCDF: HDF error") raises DiskFullError naming the cube."""

    @_writes
    def __init__(self, path: Path, grid: GridSpec, days: np.ndarray, dynamic: dict[str, dict],
                 static: dict[str, dict], chunks: tuple[int, int, int] = (32, 256, 256), *,
                 institution: str | None = None, global_attrs: dict | None = None, old: CubeIndex | None = None):
        """``institution`` and ``global_attrs`` (extra global attributes, e.g. ``creator_email``)
        go into the ACDD discovery attributes (:mod:`hydrocast.acdd`). ``old``: the cube this one
        replaces, whose days :meth:`carry_over` copies (this store rewrites the whole file)."""
        import netCDF4

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fsio.clean_stale(self.path.parent, self.path.name)
        self.tmp = fsio.tmp_path(self.path)
        self.days = np.asarray(days, dtype="datetime64[D]")
        self.dynamic, self.static = dynamic, static
        self.old = old
        self.copies_old = old is not None
        self.ds = ds = netCDF4.Dataset(self.tmp, "w", format="NETCDF4")
        nt = len(self.days)
        ds.createDimension("time", nt)
        ds.createDimension("y", grid.height)
        ds.createDimension("x", grid.width)
        ds.createDimension("nv", 2)
        t = ds.createVariable("time", "i4", ("time",))
        t.setncatts(time_attrs())
        ti = days_to_int(self.days)
        t[:] = ti
        tb = ds.createVariable("time_bnds", "i4", ("time", "nv"))
        tb[:] = np.stack([ti, ti + 1], axis=1) if nt else np.zeros((0, 2), "i4")
        xa, ya = xy_attrs(grid)
        x = ds.createVariable("x", "f8", ("x",))
        x.setncatts({**xa, "coverage_content_type": "coordinate"})
        x[:] = grid.x
        y = ds.createVariable("y", "f8", ("y",))
        y.setncatts({**ya, "coverage_content_type": "coordinate"})
        y[:] = grid.y
        crs = ds.createVariable("crs", "i4", ())
        crs.setncatts(grid_mapping_attrs(grid))
        chunks = chunk_shape(grid, nt, chunks)
        for name, attrs in dynamic.items():
            v = ds.createVariable(name, "f4", ("time", "y", "x"), zlib=True, complevel=4, shuffle=True,
                                  chunksizes=chunks, fill_value=np.float32(np.nan))
            v.setncatts(dynamic_attrs(attrs))
            p = ds.createVariable(f"{name}_source", str, ("time",))
            p.setncatts(provenance_attrs(name))
        for name, attrs in static.items():
            v = ds.createVariable(name, "f4", ("y", "x"), zlib=True, complevel=4, shuffle=True,
                                  chunksizes=chunks[1:], fill_value=np.float32(np.nan))
            v.setncatts(static_attrs(attrs))
        ds.setncatts(common.global_attrs(grid, self.days, dynamic, static, institution=institution,
                                         attrs=global_attrs))
        self._index = {d: i for i, d in enumerate(self.days)}

    # -- writing ---------------------------------------------------------------------------------
    def index_of(self, days) -> np.ndarray:
        return common.day_indices(self._index, days)

    def write_days(self, name: str, days, data: np.ndarray, provenance: list[str]) -> None:
        """Write ``data`` (n, y, x) for ``days`` (n dates, need not be contiguous)."""
        self.write_tile(name, days, slice(None), slice(None), data, provenance)

    @_writes
    def write_tile(self, name: str, days, rows: slice, cols: slice, data: np.ndarray,
                   provenance: list[str] | None = None) -> None:
        """Write ``data`` (n, rows, cols) into the window ``[rows, cols]`` of ``days`` (n dates), and
        their provenance unless None (a day's provenance is the same for every tile: the caller
        writes it once)."""
        idx = self.index_of(days)
        var, prov = self.ds.variables[name], self.ds.variables[f"{name}_source"]
        order = np.argsort(idx)
        idx, data = idx[order], np.asarray(data, dtype="float32")[order]
        for start, stop in common.contiguous_runs(idx):
            var[idx[start]:idx[stop - 1] + 1, rows, cols] = data[start:stop]
            if provenance is not None:
                for k in range(start, stop):
                    prov[idx[k]] = provenance[order[k]]

    def read_before(self, name: str, index: int, rows: slice, cols: slice) -> np.ndarray:
        """Day ``index`` of the old cube (its own index), window ``[rows, cols]`` (this store writes a
        new file: the old one is as it was)."""
        import netCDF4

        with netCDF4.Dataset(self.old.path) as src:
            src.set_auto_mask(False)
            return np.asarray(src.variables[name][index, rows, cols], dtype="float32")

    @_writes
    def write_static(self, name: str, data: np.ndarray) -> None:
        self.ds.variables[name][:] = np.asarray(data, dtype="float32")

    @_writes
    def set_attr(self, key: str, value: str) -> None:
        self.ds.setncattr(key, value)

    def carry_over(self, skip_static: bool = False, progress=None) -> None:
        """Copy the old cube's days (and static layers, unless ``skip_static``) into this one."""
        if self.old is not None:
            self.copy_from(self.old, skip_static=skip_static, progress=progress)

    def copy_from(self, old: CubeIndex, skip_static: bool = False, progress=None) -> None:
        """Copy every variable of the old cube into this one, ``chunk`` days at a time."""
        import netCDF4

        with netCDF4.Dataset(old.path) as src:
            pos = self.index_of(old.days)
            step = 64
            for name in old.dynamic:
                if name not in self.dynamic:
                    continue
                sv, dv = src.variables[name], self.ds.variables[name]
                sp, dp = src.variables[f"{name}_source"], self.ds.variables[f"{name}_source"]
                for a in range(0, len(old.days), step):
                    b = min(a + step, len(old.days))
                    block = np.ma.filled(sv[a:b], np.nan).astype("float32")
                    # the old axis maps onto a contiguous run of the new one (both are daily ranges)
                    prov = sp[a:b]
                    with fsio.write_errors(self.path):  # (reading the old cube is not a write)
                        dv[pos[a]:pos[b - 1] + 1] = block
                        for k in range(b - a):
                            dp[pos[a] + k] = str(prov[k])
                    if progress:
                        progress(b - a)
            if not skip_static:
                for name in old.static:
                    if name in self.static:
                        data = np.ma.filled(src.variables[name][:], np.nan)
                        with fsio.write_errors(self.path):
                            self.ds.variables[name][:] = data
                if old.static_source:
                    self.set_attr("hydrocast_static_source", old.static_source)

    # -- finishing -------------------------------------------------------------------------------
    @_writes
    def commit(self) -> None:
        """Close the temporary file and publish it as the cube (:func:`hydrocast.fsio.commit`:
        fsync, ``os.replace``, fsync of the folder)."""
        ds, self.ds = self.ds, None
        ds.close()  # HDF5 writes its last chunks and metadata here: a full disk often fails here
        fsio.commit(self.tmp, self.path)

    def abort(self) -> None:
        """Drop the temporary file (the old cube is untouched). Safe to call more than once."""
        ds, self.ds = getattr(self, "ds", None), None
        if ds is not None:
            try:
                ds.close()
            except (OSError, RuntimeError):  # a close that failed once (disk full) fails again
                ds = None
        if getattr(self, "tmp", None) is not None:
            fsio.discard(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.ds is not None:
            self.abort()
        return False


class NcReader:
    """Random access to a NetCDF cube's variables (the store side of
    :class:`hydrocast.samples.CubeReader`; see :class:`hydrocast.cube.StoreReader`)."""

    def __init__(self, path: Path):
        import netCDF4

        self.path = Path(path)
        self.ds = None
        try:
            self.ds = netCDF4.Dataset(self.path)
            self.ds.set_auto_mask(False)
            self.days = int_to_days(self.ds.variables["time"][:])
            self.dynamic_names = json.loads(self.ds.getncattr("hydrocast_dynamic"))
            self.static_names = json.loads(self.ds.getncattr("hydrocast_static"))
            self.shape = (self.ds.dimensions["y"].size, self.ds.dimensions["x"].size)
        except (OSError, KeyError, AttributeError, ValueError, json.JSONDecodeError) as exc:
            self.close()
            raise BadInputError(f"{self.path}: cannot read the cube ({exc}); run `hydrocast ingest`") from None

    def close(self) -> None:
        if self.ds is not None and self.ds.isopen():
            self.ds.close()

    def has(self, name: str) -> bool:
        return name in self.ds.variables

    def attrs(self, name: str) -> dict:
        v = self.ds.variables[name]
        return {k: v.getncattr(k) for k in v.ncattrs()}

    def read(self, name: str, start: int, stop: int, rows: slice = slice(None), cols: slice = slice(None)
             ) -> np.ndarray:
        """Days ``start..stop-1`` of ``name`` on the cells ``rows`` x ``cols`` (default: the grid):
        the variable is sliced, so only that window is read."""
        return np.asarray(self.ds.variables[name][start:stop, rows, cols], dtype="float32")

    def read_static(self, name: str, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        return np.asarray(self.ds.variables[name][rows, cols], dtype="float32")

    def strings(self, name: str, start: int, stop: int) -> list[str]:
        return [str(s) for s in np.asarray(self.ds.variables[name][start:stop], dtype=object)]
