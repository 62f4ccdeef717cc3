"""The cube as a Zarr v3 store that grows by appending (``[cube] path = "work/cube.zarr"``).

Same variables, dimensions, attributes and chunking rules as the NetCDF cube (the contract is
in :mod:`hydrocast.cube`): ``xarray.open_zarr(path)`` and ``xarray.open_dataset(path,
engine="zarr")`` read it as it is (consolidated metadata in the root ``zarr.json``; CF decoding
of ``time`` as for the NetCDF file). The store is created by xarray (so its layout is xarray's
own), then written with zarr-python.

What a write costs
==================
An ingest touches only the chunks of the days it writes: appending days resizes the arrays
along ``time`` and writes the last (partial) time chunk and the new ones; replacing days (a
better IMERG run) rewrites the chunks holding those days. The cost of a daily ingest therefore
does not grow with the record (``benchmarks/cube_append.py``). Days *before* the first day of the
store (a record extended backwards) or a change of chunking rewrite the whole store into a new
folder, swapped in at the end (two renames; :func:`recover` repairs a kill between them).

Crash safety: a rollback journal
================================
Writes in place are made safe by a journal beside the store, ``.<name>.journal/`` (outside it,
so that the store stays a plain Zarr hierarchy): before a chunk
folder or file (``<var>/c/<k>`` for time chunk k, a whole static array, a ``zarr.json``) is first
written, it is copied into the journal and listed in ``manifest.json`` (itself replaced
atomically; a path that did not exist yet is listed without a copy). :meth:`ZarrCubeWriter.commit`
fsyncs what was written and then deletes the manifest: that unlink is the commit point. A run
killed before it leaves a manifest; :func:`recover` (run by the next ingest under the cube's
lock, and by a reader that finds the lock free) restores every listed path from its copy (and
deletes those that did not exist), so the store is exactly the one before the killed run.
Recovery is idempotent (a kill during recovery is repaired by the next one).

A reader that finds a manifest while the cube's lock is held (an ingest is writing) gets
BusyError (exit 75) rather than half-written days. A reader that opened the store *before* a
write began is not protected (it reads chunks in place): run predict/train after the cron
ingest, not during it, as with any in-place store.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from .. import fsio
from ..errors import BadInputError
from ..grid import GridSpec
from . import common
from .common import CubeIndex, days_to_int, int_to_days

MANIFEST = "manifest.json"
META = "zarr.json"
#: days copied at a time when a whole store is rewritten (memory stays flat)
COPY_DAYS = 64
#: time chunk of the 1-D arrays along time (``time``, ``time_bnds``, ``<name>_source``): long, so
#: that reading the provenance of a long record (every ingest's plan does) is a few chunk reads,
#: while an append still rewrites at most one such chunk (≈ 200 kB of provenance strings)
AXIS_CHUNK_DAYS = 2048


def is_store(path: Path) -> bool:
    """True for a folder holding a Zarr store (its root ``zarr.json``)."""
    return (Path(path) / META).is_file()


def _open(path: Path, mode: str = "r"):
    import zarr

    if mode == "r":
        return zarr.open_group(str(path), mode="r")
    return zarr.open_group(str(path), mode=mode, use_consolidated=False)


def _lock_message(path: Path) -> str:
    return f"{path}: another hydrocast run is writing this cube (lock {{lock}} is held); try later"


# -- recovery -------------------------------------------------------------------------------------
def _prev_dirs(path: Path) -> list[Path]:
    """``.<name>.<pid>.prev``: the old store of a whole rewrite, renamed away before the new one
    was renamed in (newest first)."""
    found = []
    for entry in path.parent.glob(f".{path.name}.*.prev"):
        if is_store(entry):
            found.append(entry)
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def journal_dir(path: Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.journal")


def needs_recovery(path: Path) -> bool:
    path = Path(path)
    return (journal_dir(path) / MANIFEST).exists() or (not path.exists() and bool(_prev_dirs(path)))


def _remove(target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)
    _fsync_tree(dst)


def _fsync_tree(target: Path) -> None:
    if target.is_dir():
        for folder, _dirs, files in os.walk(target):
            for f in files:
                fsio.fsync_file(os.path.join(folder, f))
            fsio.fsync_dir(folder)
    elif target.is_file():
        fsio.fsync_file(target)


def recover(path: Path) -> bool:
    """Repair what a killed write left (the caller holds the cube's lock): roll an interrupted
    in-place write back from its journal, or put back the old store of an interrupted whole
    rewrite. Returns True when something was repaired."""
    path = Path(path)
    repaired = False
    if not path.exists():
        prev = _prev_dirs(path)
        if prev:
            os.rename(prev[0], path)
            fsio.fsync_dir(path.parent)
            repaired = True
    journal = journal_dir(path)
    manifest = journal / MANIFEST
    if manifest.exists():
        entries = json.loads(manifest.read_text())["entries"]
        for entry in reversed(entries):
            target = path / entry["path"]
            _remove(target)
            if entry["backup"] is not None:
                _copy(journal / entry["backup"], target)
            fsio.fsync_dir(target.parent if target.parent.exists() else path)
        manifest.unlink()
        fsio.fsync_dir(journal)
        repaired = True
    if journal.exists():
        shutil.rmtree(journal, ignore_errors=True)
    for prev in path.parent.glob(f".{path.name}.*.prev"):
        pid = prev.name.rsplit(".", 2)[-2]
        if path.exists() and pid.isdigit() and not fsio.pid_alive(int(pid)):
            fsio.discard(prev)
    fsio.clean_stale(path.parent, path.name)
    return repaired


def ensure_readable(path: Path) -> None:
    """Before reading: repair a killed write when no run holds the cube's lock; BusyError when
    one does (a write is in progress)."""
    path = Path(path)
    if needs_recovery(path):
        with fsio.held_lock(path, _lock_message(path)):
            recover(path)


class _Journal:
    """The rollback journal of one in-place write (see the module docstring)."""

    def __init__(self, root: Path):
        self.root, self.dir = root, journal_dir(root)
        self.entries: list[dict] = []
        self.seen: set[str] = set()

    def start(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir()
        self._save()

    def _save(self) -> None:
        fsio.atomic_write_text(self.dir / MANIFEST, json.dumps({"entries": self.entries}))

    def protect(self, rel: str) -> None:
        """Keep a copy of ``rel`` (a file or folder under the store) before its first write."""
        if rel in self.seen:
            return
        src = self.root / rel
        backup = None
        if src.exists():
            backup = f"b{len(self.entries)}"
            _copy(src, self.dir / backup)
        self.entries.append({"path": rel, "backup": backup})
        self.seen.add(rel)
        self._save()

    def backup_of(self, rel: str) -> tuple[bool, Path | None]:
        """(whether ``rel`` was protected by this write, the folder holding its copy: None when it did
        not exist before)."""
        if rel not in self.seen:
            return False, None
        entry = next(e for e in self.entries if e["path"] == rel)
        return True, (self.dir / entry["backup"]) if entry["backup"] is not None else None

    def commit(self) -> None:
        for entry in self.entries:
            _fsync_tree(self.root / entry["path"])
        (self.dir / MANIFEST).unlink()  # the commit point
        fsio.fsync_dir(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


# -- reading --------------------------------------------------------------------------------------
def _strings(values) -> list[str]:
    return [str(s) for s in np.asarray(values, dtype=object)]


def read_index(path: Path) -> CubeIndex:
    """Grid, days, variables and provenance of a Zarr cube (see :func:`hydrocast.cube.read_index`)."""
    path = Path(path)
    ensure_readable(path)
    try:
        g = _open(path)
        attrs = dict(g.attrs)
        grid = GridSpec.from_dict(json.loads(attrs["hydrocast_grid"]))
        days = int_to_days(np.asarray(g["time"][:])) if g["time"].shape[0] else np.array([], "datetime64[D]")
        dyn_names = json.loads(attrs["hydrocast_dynamic"])
        st_names = json.loads(attrs["hydrocast_static"])
        dynamic = {n: _var_attrs(g[n]) for n in dyn_names}
        static = {n: _var_attrs(g[n]) for n in st_names}
        prov = {n: _strings(g[f"{n}_source"][:]) for n in dyn_names}
        static_source = attrs.get("hydrocast_static_source", "")
    except (OSError, KeyError, AttributeError, ValueError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: not a readable hydrocast cube ({exc}); move it away to start a new one") from None
    return CubeIndex(path, grid, days, dynamic, static, prov, static_source)


def _var_attrs(arr) -> dict:
    return {k: v for k, v in arr.attrs.items() if k != "_FillValue"}


class ZarrReader:
    """Random access to a Zarr cube's variables (see :class:`hydrocast.cube.StoreReader`)."""

    def __init__(self, path: Path, check: bool = True):
        self.path = Path(path)
        if check:
            ensure_readable(self.path)
        try:
            self.g = _open(self.path) if check else _open(self.path, "r+")
            attrs = dict(self.g.attrs)
            self.days = int_to_days(np.asarray(self.g["time"][:]))
            self.dynamic_names = json.loads(attrs["hydrocast_dynamic"])
            self.static_names = json.loads(attrs["hydrocast_static"])
            self.shape = (int(self.g["y"].shape[0]), int(self.g["x"].shape[0]))
        except (OSError, KeyError, AttributeError, ValueError, json.JSONDecodeError) as exc:
            raise BadInputError(f"{self.path}: cannot read the cube ({exc}); run `hydrocast ingest`") from None
        self._arrays: dict = {}

    def _array(self, name: str):
        if name not in self._arrays:
            self._arrays[name] = self.g[name]
        return self._arrays[name]

    def close(self) -> None:
        self._arrays.clear()

    def has(self, name: str) -> bool:
        return name in self.g

    def attrs(self, name: str) -> dict:
        return _var_attrs(self._array(name))

    def read(self, name: str, start: int, stop: int, rows: slice = slice(None), cols: slice = slice(None)
             ) -> np.ndarray:
        """Days ``start..stop-1`` of ``name`` on the cells ``rows`` x ``cols`` (default: the grid):
        zarr reads only the chunks that window touches."""
        return np.asarray(self._array(name)[start:stop, rows, cols], dtype="float32")

    def read_static(self, name: str, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        return np.asarray(self._array(name)[rows, cols], dtype="float32")

    def strings(self, name: str, start: int, stop: int) -> list[str]:
        return _strings(self._array(name)[start:stop])


# -- writing --------------------------------------------------------------------------------------
_writes = common.writes


def _create(root: Path, grid: GridSpec, days: np.ndarray, dynamic: dict, static: dict, chunks: tuple,
            attrs: dict) -> None:
    """A new store of ``days`` with every dynamic day missing: xarray writes one day's skeleton
    (its own layout and CF encoding), zarr-python then resizes it to every day."""
    import xarray as xr

    ct, cy, cx = chunks
    first = days_to_int(days[:1])
    xa, ya = common.xy_attrs(grid)
    ds = xr.Dataset(coords={
        "time": ("time", first, common.time_attrs()),
        "y": ("y", np.asarray(grid.y, "float64"), {**ya, "coverage_content_type": "coordinate"}),
        "x": ("x", np.asarray(grid.x, "float64"), {**xa, "coverage_content_type": "coordinate"})})
    ds["time_bnds"] = (("time", "nv"), np.stack([first, first + 1], axis=1).astype("int32"))
    ds["crs"] = ((), np.int32(0), common.grid_mapping_attrs(grid))
    encoding = {"time": {"chunks": (AXIS_CHUNK_DAYS,)}, "time_bnds": {"chunks": (AXIS_CHUNK_DAYS, 2)}}
    for name, a in dynamic.items():
        ds[name] = (("time", "y", "x"), np.full((1, grid.height, grid.width), np.nan, "float32"),
                    common.dynamic_attrs(a))
        ds[f"{name}_source"] = (("time",), np.array([""], dtype=object), common.provenance_attrs(name))
        encoding[name] = {"chunks": (ct, cy, cx), "_FillValue": np.float32(np.nan)}
        encoding[f"{name}_source"] = {"chunks": (AXIS_CHUNK_DAYS,)}
    for name, a in static.items():
        ds[name] = (("y", "x"), np.full((grid.height, grid.width), np.nan, "float32"), common.static_attrs(a))
        encoding[name] = {"chunks": (cy, cx), "_FillValue": np.float32(np.nan)}
    ds.attrs.update(attrs)
    ds.to_zarr(str(root), mode="w-", zarr_format=3, consolidated=False, encoding=encoding)
    g = _open(root, "r+")
    _resize(g, len(days))
    ti = days_to_int(days)
    g["time"][:] = ti
    g["time_bnds"][:] = np.stack([ti, ti + 1], axis=1)


def _time_arrays(g) -> list:
    return [a for _, a in g.arrays() if a.metadata.dimension_names and a.metadata.dimension_names[0] == "time"]


def _resize(g, n: int) -> None:
    for arr in _time_arrays(g):
        arr.resize((n,) + tuple(arr.shape[1:]))


def _attrs_json(attrs: dict) -> dict:
    """Attributes as zarr stores them (JSON: numpy values to lists and numbers)."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


class ZarrCubeWriter:
    """Writes days into the Zarr cube at ``path``: in place with a journal when the store exists
    and starts on the same day with the same chunks, else a whole new store swapped in at
    :meth:`commit`. Same methods as :class:`hydrocast.cube.CubeWriter`; the caller holds the
    cube's lock. Leaving the ``with`` block without :meth:`commit` undoes everything."""

    @_writes
    def __init__(self, path: Path, grid: GridSpec, days: np.ndarray, dynamic: dict[str, dict],
                 static: dict[str, dict], chunks: tuple[int, int, int] = (32, 256, 256), *,
                 institution: str | None = None, global_attrs: dict | None = None, old: CubeIndex | None = None):
        self.path = Path(path)
        self.journal = None
        self.tmp = None
        self.done = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        recover(self.path)
        self.grid, self.days = grid, np.asarray(days, dtype="datetime64[D]")
        self.dynamic, self.static, self.old = dynamic, static, old
        self.chunks = (max(1, chunks[0]),) + common.chunk_shape(grid, 1, chunks)[1:]
        self.attr_args = {"institution": institution, "attrs": global_attrs}
        self.extra_attrs: dict[str, str] = {}
        self.in_place = (old is not None and is_store(self.path) and Path(old.path) == self.path
                         and len(old.days) > 0 and len(self.days) >= len(old.days)
                         and self.days[0] == old.days[0] and self._stored_chunks() == self.chunks)
        self.copies_old = old is not None and not self.in_place
        if self.in_place:
            self.root = self.path
            self.journal = _Journal(self.path)
            self.journal.start()
            self._extend()
        else:
            self.tmp = self.root = fsio.tmp_path(self.path)
            fsio.discard(self.tmp)
            _create(self.root, grid, self.days, dynamic, static, self.chunks, self._global_attrs())
        self.g = _open(self.root, "r+")
        self._index = {d: i for i, d in enumerate(self.days)}

    def _stored_chunks(self) -> tuple | None:
        g = _open(self.path, "r+")
        names = json.loads(g.attrs["hydrocast_dynamic"])
        return tuple(g[names[0]].chunks) if names else None

    def _global_attrs(self) -> dict:
        static_source = self.extra_attrs.get("hydrocast_static_source",
                                             self.old.static_source if self.old is not None else "")
        attrs = common.global_attrs(self.grid, self.days, self.dynamic, self.static, static_source=static_source,
                                    **self.attr_args)
        attrs.update(self.extra_attrs)
        return _attrs_json(attrs)

    def _protect_meta(self, g) -> None:
        self.journal.protect(META)
        for name, _ in g.arrays():
            self.journal.protect(f"{name}/{META}")

    def _protect_days(self, arr, start: int, stop: int) -> None:
        """Journal the time chunks of the array ``arr`` holding days ``start <= i < stop``."""
        if self.journal is None or stop <= start:
            return
        ct = arr.chunks[0]
        for k in range(start // ct, (stop - 1) // ct + 1):
            self.journal.protect(f"{arr.basename}/c/{k}")

    def _extend(self) -> None:
        """In place: the new days (missing until written), the new variables, before any day."""
        g = _open(self.path, "r+")
        self._protect_meta(g)
        n_old, n_new = len(self.old.days), len(self.days)
        if n_new > n_old:
            for arr in _time_arrays(g):
                self._protect_days(arr, n_old, n_new)
            _resize(g, n_new)
            ti = days_to_int(self.days[n_old:])
            g["time"][n_old:] = ti
            g["time_bnds"][n_old:] = np.stack([ti, ti + 1], axis=1)
            for name in self.old.dynamic:  # the new days are missing until a source writes them
                g[name][n_old:] = np.float32(np.nan)
                g[f"{name}_source"][n_old:] = np.array([""] * (n_new - n_old), dtype=object)
        ct, cy, cx = self.chunks
        for name, attrs in self.dynamic.items():
            if name in self.old.dynamic:
                continue
            for new in (name, f"{name}_source"):
                self.journal.protect(new)
            g.create_array(name, shape=(n_new, self.grid.height, self.grid.width), chunks=(ct, cy, cx),
                           dtype="float32", fill_value=np.float32(np.nan), dimension_names=("time", "y", "x"),
                           attributes=_attrs_json(common.dynamic_attrs(attrs)))
            g.create_array(f"{name}_source", shape=(n_new,), chunks=(AXIS_CHUNK_DAYS,), dtype=str, fill_value="",
                           dimension_names=("time",), attributes=common.provenance_attrs(name))

    # -- writing -------------------------------------------------------------------------------
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
        writes it once). The journal protects whole time chunks, so tiles of one time chunk
        written one after the other are rolled back together."""
        idx = self.index_of(days)
        order = np.argsort(idx)
        idx, data = idx[order], np.asarray(data, dtype="float32")[order]
        var, src = self.g[name], self.g[f"{name}_source"]
        for start, stop in common.contiguous_runs(idx):
            a, b = int(idx[start]), int(idx[stop - 1]) + 1
            self._protect_days(var, a, b)
            var[a:b, rows, cols] = data[start:stop]
            if provenance is not None:
                self._protect_days(src, a, b)
                src[a:b] = np.array([provenance[i] for i in order[start:stop]], dtype=object)

    def read_before(self, name: str, index: int, rows: slice, cols: slice) -> np.ndarray:
        """Day ``index`` of the old cube (its own index), window ``[rows, cols]``, as it was before
        this write began: from the old store (a whole rewrite), from the journal's copy of its
        time chunk (in place, the chunk already written by this run) or from the store."""
        if self.journal is None:
            g = _open(self.old.path)
            return np.asarray(g[name][index, rows, cols], dtype="float32")
        arr = self.g[name]
        k = index // arr.chunks[0]
        touched, backup = self.journal.backup_of(f"{arr.basename}/c/{k}")
        if not touched:
            return np.asarray(arr[index, rows, cols], dtype="float32")
        if backup is None:  # the chunk did not exist: nothing was stored for the day
            shape = (len(range(*rows.indices(self.grid.height))), len(range(*cols.indices(self.grid.width))))
            return np.full(shape, np.nan, dtype="float32")
        import zarr

        view = self.journal.dir / "views" / f"{arr.basename}.{k}"
        if not view.exists():  # the array's metadata and the saved copy of the chunk folder, as a read-only array
            (view / "c").mkdir(parents=True)
            shutil.copy2(self.root / arr.basename / META, view / META)
            os.symlink(backup.resolve(), view / "c" / str(k))
        return np.asarray(zarr.open_array(str(view), mode="r")[index, rows, cols], dtype="float32")

    @_writes
    def write_static(self, name: str, data: np.ndarray) -> None:
        if self.journal is not None:
            self.journal.protect(name)
        if name not in self.g:
            self.g.create_array(name, shape=(self.grid.height, self.grid.width), chunks=self.chunks[1:],
                                dtype="float32", fill_value=np.float32(np.nan), dimension_names=("y", "x"),
                                attributes=_attrs_json(common.static_attrs(self.static[name])))
        self.g[name][...] = np.asarray(data, dtype="float32")

    @_writes
    def set_attr(self, key: str, value: str) -> None:
        self.extra_attrs[key] = value

    @_writes
    def carry_over(self, skip_static: bool = False, progress=None) -> None:
        """A whole rewrite: copy the old cube's days (and static layers) into the new store. In
        place there is nothing to copy (the old days stay where they are)."""
        if not self.copies_old:
            return
        from . import open_reader

        old = self.old
        reader = open_reader(old.path)
        try:
            pos = self.index_of(old.days)
            for name in old.dynamic:
                if name not in self.dynamic:
                    continue
                for a in range(0, len(old.days), COPY_DAYS):
                    b = min(a + COPY_DAYS, len(old.days))
                    self.g[name][pos[a]:pos[b - 1] + 1] = reader.read(name, a, b)
                    self.g[f"{name}_source"][pos[a]:pos[b - 1] + 1] = np.array(
                        reader.strings(f"{name}_source", a, b), dtype=object)
                    if progress:
                        progress(b - a)
            if not skip_static:
                for name in old.static:
                    if name in self.static:
                        self.g[name][...] = reader.read_static(name)
                if old.static_source:
                    self.extra_attrs.setdefault("hydrocast_static_source", old.static_source)
        finally:
            reader.close()

    # -- finishing -----------------------------------------------------------------------------
    @_writes
    def commit(self) -> None:
        """Publish: in place, fsync what was written and drop the journal (the commit point);
        a whole rewrite is renamed over the old store."""
        import zarr

        if self.journal is not None:  # static layers the new DEM no longer gives
            for name in set(self.old.static) - set(self.static):
                self.journal.protect(name)
                _remove(self.root / name)
        self.g.attrs.put(self._global_attrs())
        with warnings.catch_warnings():  # "consolidated metadata is not part of the v3 spec": xarray reads it
            warnings.simplefilter("ignore", UserWarning)
            zarr.consolidate_metadata(str(self.root), zarr_format=3)
        if self.journal is not None:
            self.journal.commit()
            self.journal = None
        else:
            _fsync_tree(self.root)
            prev = self.path.with_name(f".{self.path.name}.{os.getpid()}.prev")
            if self.path.exists():
                os.rename(self.path, prev)
            os.rename(self.tmp, self.path)
            fsio.fsync_dir(self.path.parent)
            self.tmp = None
            fsio.discard(prev)
        self.done = True

    def abort(self) -> None:
        """Undo: roll an in-place write back, or drop the new store. Safe to call more than once."""
        if getattr(self, "done", True):
            return
        self.done = True
        if self.journal is not None:
            recover(self.path)
            self.journal = None
        if self.tmp is not None:
            fsio.discard(self.tmp)
            self.tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.abort()
        return False
