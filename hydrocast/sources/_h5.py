"""A thin read-only layer over h5py's low-level API, for the readers' per-granule hot path.

Reading one small regional granule takes about twenty HDF5 lookups, attribute reads and dataset
reads. Through h5py's high-level objects each of them costs 50-150 µs of Python bookkeeping on
top of the HDF5 call (object wrappers, weak-reference registries, dtype conversions, a sweep
over every open identifier on close), so opening a 22 x 22 granule cost more than reading and
warping it. :class:`Node` makes the same HDF5 calls with less of that and offers the small part
of the h5py interface the readers use: ``name in group``, ``group[name]``, ``group.keys()``,
``node.attrs`` (``in``, ``[]``, ``get``, iteration: the values h5py's ``AttributeManager`` gives),
``dataset[index]`` for ``()`` or a tuple of slices, ``shape``/``ndim``/``dtype``, and
:meth:`Node.dim_names` for the dimension scales (NetCDF-4 dimensions) of a dataset.

Only the readers' hot path uses it; anything unusual (an error message listing a file's
contents, ...) is free to use h5py's ordinary interface.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from h5py import AttributeManager, h5a, h5d, h5f, h5o, h5r, h5s, h5t


class Node:
    """An open HDF5 file, group or dataset (see the module docstring)."""

    __slots__ = ("id", "file", "_shape", "_dtype")

    def __init__(self, oid, file: "File"):
        self.id = oid
        self.file = file
        self._shape = self._dtype = None

    # -- groups --------------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name.encode() in self.id  # h5py's test: the link exists and resolves to an object

    def keys(self) -> list[str]:
        return [n.decode("utf-8", "replace") for n in self.id]

    def child(self, name: str) -> "Node":
        oid = h5o.open(self.id, name.encode())
        self.file.opened.append(oid)
        return Node(oid, self.file)

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.child(key)
        return self.read(key)

    # -- any object ------------------------------------------------------------------------------
    @property
    def attrs(self) -> "Attrs":
        return Attrs(self)

    @property
    def is_dataset(self) -> bool:
        return isinstance(self.id, h5d.DatasetID)

    # -- datasets --------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        if self._shape is None:
            self._shape = self.id.shape  # AttributeError for a group, as with h5py
        return self._shape

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> np.dtype:
        if self._dtype is None:
            self._dtype = self.id.dtype
        return self._dtype

    def _read_types(self) -> tuple:
        """(numpy dtype, HDF5 memory type) to read into: native numbers the cheap way (h5py gives
        the same values, in the file's byte order), anything else as h5py reads it."""
        ftype = self.id.get_type()
        cls = ftype.get_class()
        if cls == h5t.INTEGER or cls == h5t.FLOAT:
            is_float = cls == h5t.FLOAT
            native = _numeric_type(is_float, ftype.get_size(), is_float or ftype.get_sign() != h5t.SGN_NONE)
            if native is not None:
                return native
        return self.dtype, None

    def read(self, index=()) -> np.ndarray:
        """The values at ``index``: ``()`` (everything) or one slice (step 1) per dimension."""
        if not self.is_dataset:
            raise ValueError("not a dataset")
        shape = self.shape
        if index == () or index is Ellipsis:
            index = (slice(None),) * len(shape)
        if len(index) != len(shape):
            raise ValueError(f"index {index!r} does not fit a dataset of shape {shape}")
        start, count = [], []
        for sl, n in zip(index, shape):
            a, b, step = sl.indices(n)
            if step != 1:
                raise ValueError("only contiguous slices are supported")
            start.append(a)
            count.append(max(0, b - a))
        count = tuple(count)
        dtype, mtype = self._read_types()
        out = np.empty(count, dtype=dtype)
        if out.size:
            if count == shape:  # everything: no dataspace selections to build
                self.id.read(h5s.ALL, h5s.ALL, out, mtype=mtype)
            else:
                fspace = self.id.get_space()
                fspace.select_hyperslab(tuple(start), count)
                self.id.read(h5s.create_simple(count), fspace, out, mtype=mtype)
        return out

    def dim_names(self) -> tuple[str, ...] | None:
        """The names of the dimension scales attached to each dimension (NetCDF-4 dimensions);
        ``None`` when a dimension has none."""
        refs = self.attrs.get("DIMENSION_LIST")
        if refs is None or len(refs) != self.ndim:
            return None
        names = []
        for r in refs:
            if len(r) == 0:
                return None
            names.append(h5r.get_name(r[0], self.file.id).decode("utf-8", "replace").rsplit("/", 1)[-1])
        return tuple(names)


class Attrs:
    """An object's attributes, read-only, with the values h5py's ``AttributeManager`` gives.

    Numbers and fixed-length strings (nearly every attribute of these products) are read with
    three HDF5 calls instead of h5py's generic path (about 100 µs an attribute, more than reading
    a small dataset); anything else (variable-length strings, references, empty attributes, ...)
    goes through h5py's ``AttributeManager``."""

    __slots__ = ("node",)

    def __init__(self, node: Node):
        self.node = node

    def __contains__(self, name: str) -> bool:
        return h5a.exists(self.node.id, name.encode())

    def __iter__(self):
        return iter(list(AttributeManager(self.node)))

    def get(self, name: str, default=None):
        return self[name] if name in self else default

    def __getitem__(self, name: str):
        attr = h5a.open(self.node.id, name.encode())
        ftype = attr.get_type()
        cls = ftype.get_class()
        if cls == h5t.STRING and not ftype.is_variable_str():
            shape = attr.shape
            if shape is not None:
                size = ftype.get_size()
                out = np.empty(shape, dtype=f"S{size}")
                attr.read(out, mtype=_string_mtype(size, ftype.get_cset()))
                return out[()] if out.ndim == 0 else out
        elif cls == h5t.INTEGER or cls == h5t.FLOAT:
            is_float = cls == h5t.FLOAT
            native = _numeric_type(is_float, ftype.get_size(), is_float or ftype.get_sign() != h5t.SGN_NONE)
            shape = attr.shape
            if native is not None and shape is not None:
                out = np.empty(shape, dtype=native[0])
                attr.read(out, mtype=native[1])
                return out[()] if out.ndim == 0 else out
        return AttributeManager(self.node)[name]


_STRING_MTYPES: dict = {}


def _string_mtype(size: int, cset: int):
    """The memory type h5py reads a fixed-length string attribute into: same length and character
    set, null-padded (``numpy.bytes_`` then drops the padding)."""
    key = (size, cset)
    if key not in _STRING_MTYPES:
        mtype = h5t.C_S1.copy()
        mtype.set_size(size)
        mtype.set_cset(cset)
        mtype.set_strpad(h5t.STR_NULLPAD)
        _STRING_MTYPES[key] = mtype
    return _STRING_MTYPES[key]


@functools.lru_cache(maxsize=None)
def _numeric_type(is_float: bool, size: int, signed: bool) -> tuple | None:
    """(native numpy dtype, its HDF5 memory type) for a number attribute (h5py gives the same
    values, in the file's byte order)."""
    if is_float:
        code = f"f{size}" if size in (2, 4, 8) else None
    else:
        code = f"{'i' if signed else 'u'}{size}" if size in (1, 2, 4, 8) else None
    if code is None:
        return None
    dtype = np.dtype(code)
    return dtype, h5t.py_create(dtype)


class File(Node):
    """An HDF5 file opened read-only (with h5py's default file access properties, so that h5py or
    netCDF4 may hold the same file open meanwhile); use as a context manager."""

    __slots__ = ("opened",)

    def __init__(self, path):
        super().__init__(h5f.open(os.fsencode(str(path)), h5f.ACC_RDONLY), self)
        self.opened: list = []

    @property
    def userblock(self) -> int:
        """Size of the user block before the HDF5 data (0 when the file starts with its signature)."""
        return self.id.get_create_plist().get_userblock()

    def close(self) -> None:
        """Close every object opened through this file, then the file itself (what
        ``h5py.File.close`` does, without its sweep over all open identifiers)."""
        for oid in self.opened:
            if oid.valid:
                oid._close()
        self.opened.clear()
        self.id.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
