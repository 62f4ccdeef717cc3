"""The model artefact: one self-contained folder, safe to move, safe to load, and replaced so that
a reader sees the old complete artefact or the new one at every instant, whenever a run is killed.

Files
=====
``model.safetensors``
    every tensor: the network's weights (``net.*``, ``lumped.*``) plus the data the model needs at
    prediction time (``basin_channels`` of the training basins, ...). safetensors cannot carry
    code, so loading never unpickles anything.
``model.json``
    the description below; ``weights_sha256`` is the checksum of ``model.safetensors`` (a
    tampered, truncated or swapped weights file is refused).

Schema of model.json (format version 2; validated on save and on load)
======================================================================
Every error is a BadInputError (exit 65) naming the file and the key, e.g.
``…/model.json: lead_days = -1: must be an integer >= 1``. Unknown extra keys are kept (later
formats add sections) but every key below is checked.

=========================== ========================================================================
``format``                  "hydrocast-model"
``format_version``          2. Version 1 (the previous format: the same keys, no ``kind``, a plain
                            folder) is upgraded in memory; any other version is refused clearly
``kind``                    "model" or "checkpoint" (a training checkpoint, :mod:`hydrocast.checkpoint`);
                            :func:`load` checks it is the kind asked for
``hydrocast_version``       the version that wrote it (str)
``weights_sha256``          64 hex digits
*kind "model"*
``hparams``                 object: rebuilds the ConvLSTM (its ``lead_days``, if any, = ``lead_days``)
``lumped_hparams``          object: rebuilds the lumped LSTM (``n_inputs``, ``hidden``, ``lead_days``:
                            integers >= 1 where present)
``inputs``                  ``dynamic`` (non-empty list of names), ``static`` (list of names),
                            ``stats``: name → ``mean`` (finite), ``std`` (finite, > 0), ``log1p``,
                            ``log10`` (booleans), for every dynamic and static name
``map_outputs``             non-empty list of objects with a ``name``
``grid``                    ``crs_wkt``, ``transform`` (6 finite numbers, north-up), ``width``,
                            ``height`` (>= 1); must rebuild a :class:`~hydrocast.grid.GridSpec`
``lead_days``               integer >= 1; ``warmup_days``: integer >= 0
``dist_scale_km``           finite number > 0
``discharge_normalisation`` ``mean`` (finite), ``std`` (finite, > 0), ``quantity`` (str, optional)
``basins``                  non-empty list: ``id`` (:func:`hydrocast.ids.check_basin_id`, unique),
                            ``area_km2`` (> 0), ``name`` (str or null), ``outlet_lon`` / ``outlet_lat``
                            (degrees or null), ``basin_std`` (>= 0 or null), ``validation_nse``,
                            ``lumped_validation_nse`` (number or null), ``polygon_lonlat`` (GeoJSON
                            object or null)
``config``, ``training``    objects (free-form), optional
``distribution``            optional: ``kind`` "quantiles", ``levels``, ``spread_scale`` (per model, the
                            validation recalibration; the weights carry the same as a buffer),
                            ``ensemble`` (null, or ``source``, ``issue_days``, ``scale`` (L, Q): the
                            recalibration of the pooled distribution of the weather-forecast
                            ensemble's members, :meth:`hydrocast.train.Trainer.calibrate_ensemble`)
``update_gain``             optional: null, or per model (``convlstm``, ``lumped``) a list of
                            ``lead_days`` gains in [0, 1], the updating with the issue day's error
                            fitted on the validation period (:meth:`hydrocast.train.Trainer.fit_update`;
                            the weights carry the same as a buffer, which is what predict uses)
``persistence_weight``      optional: null, or per model (``convlstm``, ``lumped``) an object basin id →
                            ``lead_days`` weights in [0, 1], the blend with persistence fitted on the
                            validation period (:meth:`hydrocast.train.Trainer.fit_blend`; the weights
                            carry the same as a (G, L) buffer in the order of ``basins``, which is
                            what predict uses)
``thresholds``              optional list of flood-threshold records (checked by
                            :func:`hydrocast.thresholds.from_records` when predict reads them), with
                            ``thresholds_notes`` (basin → how they were fitted)
*kind "checkpoint"*
``state``                   object: ``epoch`` (integer >= 0), ``best`` (number or null),
                            ``history`` (list), ...
``opt_param_groups``        list of objects, each with ``params`` (list of integers)
``opt_scalars``             object: name → number; ``sched``: object (optional)
=========================== ========================================================================

Crash-safe replacement
======================
``<dir>/<name>`` (the path users configure, e.g. ``work/model``) is a relative symbolic link to a
version folder beside it, ``.<name>.<YYYYmmddTHHMMSS.ffffffZ>-<pid>``. :func:`save`

1. repairs what a killed run can leave (:func:`recover`): a real folder at ``<name>`` (a version-1
   artefact, or one copied in) is renamed to a version folder and linked; a missing or dangling
   link is pointed at the newest complete version (or at a complete ``.<name>.<pid>.tmp`` /
   ``.old`` left by a run of the version-1 code killed between its two renames); leftovers of
   dead runs are removed;
2. writes both files to ``.<name>.<pid>.tmp``, fsyncs them and renames that folder to a new version
   name: a version folder is therefore always complete;
3. swaps the link with one ``os.replace`` of a new link (``.<name>.<pid>.tmp``): atomic;
4. keeps the previous version (a reader that resolved the old link a moment ago can still read
   it) and deletes older ones, each first renamed to ``.<name>.<pid>.old`` so that no partly
   deleted folder ever carries a version name.

:func:`load` resolves the link once and reads both files through one folder handle, so it sees
one version whole; a version deleted under it (two saves during one read) makes it retry, and
after a few tries it raises BusyError (exit 75), never MissingInputError. Where the link is
missing (a kill during step 1's rename) it reads the newest complete version and restores the
link. Checkpoints use the same code.

To copy or move an artefact, copy what the link points to (``cp -rL model elsewhere/``,
``shutil.copytree``): a moved link alone would dangle. A plain folder with the two files (a copy)
loads as it is.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from . import __version__, fsio
from .errors import BadInputError, BusyError, MissingInputError, OutputError
from .ids import check_basin_id

FORMAT = "hydrocast-model"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
WEIGHTS = "model.safetensors"
META = "model.json"
KINDS = ("model", "checkpoint")
HEADER_KEYS = ("format", "format_version", "kind", "hydrocast_version", "weights_sha256")
#: how many times :func:`load` re-resolves an artefact replaced while it was being read
LOAD_ATTEMPTS = 5
#: how long :func:`save` waits for another save of the same artefact (then BusyError)
SAVE_LOCK_TIMEOUT_S = 60.0
_STAMP = r"\d{8}T\d{6}\.\d{6}Z"
_MISSING = object()


# =================================================================================================
# schema
# =================================================================================================
def _show(value) -> str:
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Obj:
    """Typed reads from one JSON object; every error names the file and the (dotted) key."""

    def __init__(self, obj, path: Path, prefix: str = ""):
        self.obj, self.path, self.prefix = obj, path, prefix

    def fail(self, key, message: str, value=_MISSING) -> NoReturn:
        name = f"{self.prefix}{key}"
        if value is _MISSING:
            raise BadInputError(f"{self.path}: {name}: {message}")
        raise BadInputError(f"{self.path}: {name} = {_show(value)}: {message}")

    def get(self, key: str, optional: bool = False):
        if key not in self.obj:
            if optional:
                return None
            self.fail(key, "missing (a required key)")
        return self.obj[key]

    def integer(self, key: str, minimum: int) -> int:
        v = self.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            self.fail(key, f"must be an integer >= {minimum}", v)
        return v

    def number(self, key: str, *, minimum: float | None = None, positive: bool = False,
               maximum: float | None = None, nullable: bool = False, optional: bool = False) -> float | None:
        v = self.get(key, optional=optional or nullable)
        if v is None and (nullable or optional):
            return None
        if minimum is not None and maximum is not None:
            bounds = f" between {minimum:g} and {maximum:g}"
        else:
            bounds = f" >= {minimum:g}" if minimum is not None else f" <= {maximum:g}" if maximum is not None else ""
        want = "a finite number" + (" > 0" if positive else "") + bounds + (" or null" if nullable else "")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(key, f"must be {want}", v)
        if (positive and v <= 0) or (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
            self.fail(key, f"must be {want}", v)
        return float(v)

    def string(self, key: str, nullable: bool = False, optional: bool = False) -> str | None:
        v = self.get(key, optional=optional or nullable)
        if v is None and (nullable or optional):
            return None
        if not isinstance(v, str):
            self.fail(key, "must be a string" + (" or null" if nullable else ""), v)
        return v

    def boolean(self, key: str, default: bool = False) -> bool:
        v = self.get(key, optional=True)
        if v is None:
            return default
        if not isinstance(v, bool):
            self.fail(key, "must be true or false", v)
        return v

    def mapping(self, key: str, optional: bool = False, nullable: bool = False) -> dict | None:
        v = self.get(key, optional=optional or nullable)
        if v is None and (optional or nullable):
            return None if nullable else {}
        if not isinstance(v, dict):
            self.fail(key, "must be an object" + (" or null" if nullable else ""), v)
        return v

    def array(self, key: str, non_empty: bool = False) -> list:
        v = self.get(key)
        if not isinstance(v, list) or (non_empty and not v):
            self.fail(key, "must be a non-empty list" if non_empty else "must be a list", v)
        return v

    def names(self, key: str, non_empty: bool = False) -> tuple[str, ...]:
        v = self.array(key, non_empty)
        for i, s in enumerate(v):
            if not isinstance(s, str) or not s:
                self.fail(f"{key}[{i}]", "must be a non-empty string", s)
        if len(set(v)) != len(v):
            self.fail(key, "names must be unique", v)
        return tuple(v)

    def sub(self, key, value=_MISSING) -> _Obj:
        """The object at ``key`` (or ``value``, e.g. a list item named ``key``) as an :class:`_Obj`."""
        v = self.mapping(key) if value is _MISSING else value
        if not isinstance(v, dict):
            self.fail(key, "must be an object", v)
        return _Obj(v, self.path, f"{self.prefix}{key}.")


@dataclass(frozen=True)
class VariableStats:
    """Normalisation of one input variable (training period only)."""

    mean: float
    std: float
    log1p: bool = False
    log10: bool = False


@dataclass(frozen=True)
class InputsMeta:
    dynamic: tuple[str, ...]
    static: tuple[str, ...]
    stats: dict[str, VariableStats]


@dataclass(frozen=True)
class DischargeNormalisation:
    mean: float
    std: float
    quantity: str = ""


@dataclass(frozen=True)
class BasinMeta:
    id: str
    area_km2: float
    name: str | None = None
    outlet_lon: float | None = None
    outlet_lat: float | None = None
    basin_std: float | None = None
    validation_nse: float | None = None
    lumped_validation_nse: float | None = None
    polygon_lonlat: dict | None = None


@dataclass(frozen=True)
class ModelMeta:
    """The checked content of a model's ``model.json`` (kind "model"); ``extra`` holds the keys this
    version does not know (kept as they are)."""

    hparams: dict[str, Any]
    lumped_hparams: dict[str, Any]
    inputs: InputsMeta
    map_outputs: tuple[dict, ...]
    grid: dict[str, Any]
    lead_days: int
    warmup_days: int
    dist_scale_km: float
    discharge_normalisation: DischargeNormalisation
    basins: tuple[BasinMeta, ...]
    config: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, meta: dict, path: str | os.PathLike) -> ModelMeta:
        """Check a model description (the body: header keys are ignored here); BadInputError naming
        ``path`` and the key."""
        o = _Obj(meta, Path(path))
        if not isinstance(meta, dict):
            raise BadInputError(f"{path}: not a JSON object")
        lead = o.integer("lead_days", 1)
        warmup = o.integer("warmup_days", 0)
        hparams = o.mapping("hparams")
        if not hparams:
            o.fail("hparams", "must be a non-empty object", hparams)
        if "lead_days" in hparams and hparams["lead_days"] != lead:
            o.fail("hparams.lead_days", f"must equal lead_days ({lead})", hparams["lead_days"])
        lumped = o.sub("lumped_hparams")
        for k in ("n_inputs", "hidden", "lead_days"):
            if k in lumped.obj:
                lumped.integer(k, 1)
        if lumped.obj.get("lead_days", lead) != lead:
            lumped.fail("lead_days", f"must equal lead_days ({lead})", lumped.obj["lead_days"])
        inputs = _inputs(o.sub("inputs"))
        map_outputs = o.array("map_outputs", non_empty=True)
        for i, m in enumerate(map_outputs):
            o.sub(f"map_outputs[{i}]", m).string("name")
        grid = _grid(o)
        dist = o.number("dist_scale_km", positive=True)
        qn = o.sub("discharge_normalisation")
        norm = DischargeNormalisation(qn.number("mean"), qn.number("std", positive=True),
                                      qn.string("quantity", optional=True) or "")
        basins = tuple(_basin(o, i, b) for i, b in enumerate(o.array("basins", non_empty=True)))
        ids = [b.id for b in basins]
        if len(set(ids)) != len(ids):
            dup = next(b for b in ids if ids.count(b) > 1)
            o.fail("basins", f"basin id {dup!r} appears more than once")
        config = o.mapping("config", optional=True)
        training = o.mapping("training", optional=True)
        known = {f.name for f in cls.__dataclass_fields__.values()} | set(HEADER_KEYS)
        extra = {k: v for k, v in meta.items() if k not in known}
        return cls(dict(hparams), dict(lumped.obj), inputs, tuple(map_outputs), dict(grid), lead, warmup, dist,
                   norm, basins, dict(config), dict(training), extra)

    def grid_spec(self):
        """The model's :class:`~hydrocast.grid.GridSpec`."""
        from .grid import GridSpec

        return GridSpec.from_dict(self.grid)


def _inputs(o: _Obj) -> InputsMeta:
    dynamic = o.names("dynamic", non_empty=True)
    static = o.names("static")
    st = o.sub("stats")
    stats = {}
    for name in dynamic + static:
        s = st.sub(name)
        stats[name] = VariableStats(s.number("mean"), s.number("std", positive=True), s.boolean("log1p"),
                                    s.boolean("log10"))
    return InputsMeta(dynamic, static, stats)


def _grid(o: _Obj) -> dict:
    g = o.sub("grid")
    g.string("crs_wkt")
    t = g.get("transform")
    if (not isinstance(t, list) or len(t) != 6
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in t)):
        g.fail("transform", "must be a list of 6 finite numbers (a, b, c, d, e, f)", t)
    if not (t[0] > 0 and t[4] < 0 and t[1] == 0 and t[3] == 0):
        g.fail("transform", "must describe a north-up grid (a > 0, e < 0, b = d = 0)", t)
    g.integer("width", 1)
    g.integer("height", 1)
    try:
        from .grid import GridSpec

        GridSpec.from_dict(g.obj)
    except Exception as exc:  # noqa: BLE001 - pyproj's CRSError, ValueError, ...: it does not rebuild a grid
        o.fail("grid", f"does not rebuild a grid ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    return g.obj


def _basin(o: _Obj, i: int, b) -> BasinMeta:
    s = o.sub(f"basins[{i}]", b)
    if "id" not in b:
        s.fail("id", "missing (a required key)")
    bid = check_basin_id(b["id"], f"{o.path}: basins[{i}].id")
    poly = s.mapping("polygon_lonlat", nullable=True)
    if poly is not None and not isinstance(poly.get("type"), str):
        s.fail("polygon_lonlat", "must be a GeoJSON geometry (an object with a type) or null", poly)
    return BasinMeta(
        id=bid, area_km2=s.number("area_km2", positive=True), name=s.string("name", nullable=True),
        outlet_lon=s.number("outlet_lon", minimum=-180, maximum=180, nullable=True),
        outlet_lat=s.number("outlet_lat", minimum=-90, maximum=90, nullable=True),
        basin_std=s.number("basin_std", minimum=0, nullable=True),
        validation_nse=s.number("validation_nse", maximum=1, nullable=True),
        lumped_validation_nse=s.number("lumped_validation_nse", maximum=1, nullable=True),
        polygon_lonlat=poly)


@dataclass(frozen=True)
class CheckpointMeta:
    """The checked content of a training checkpoint's ``model.json`` (kind "checkpoint")."""

    state: dict[str, Any]
    opt_param_groups: tuple[dict, ...]
    opt_scalars: dict[str, float]
    sched: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, meta: dict, path: str | os.PathLike) -> CheckpointMeta:
        """Check a checkpoint description (light: the keys the loop reads back)."""
        o = _Obj(meta, Path(path))
        if not isinstance(meta, dict):
            raise BadInputError(f"{path}: not a JSON object")
        state = o.sub("state")
        state.integer("epoch", 0)
        if "best" in state.obj:
            state.number("best", nullable=True)
        if "history" in state.obj:
            state.array("history")
        groups = o.array("opt_param_groups")
        for i, g in enumerate(groups):
            params = o.sub(f"opt_param_groups[{i}]", g).array("params")
            if any(isinstance(p, bool) or not isinstance(p, int) for p in params):
                o.fail(f"opt_param_groups[{i}].params", "must be a list of integers", params)
        scalars = o.sub("opt_scalars")
        for k in scalars.obj:
            scalars.number(k)
        sched = o.mapping("sched", optional=True)
        known = {"state", "opt_param_groups", "opt_scalars", "sched", *HEADER_KEYS}
        return cls(dict(state.obj), tuple(groups), dict(scalars.obj), dict(sched),
                   {k: v for k, v in meta.items() if k not in known})


def upgrade(meta, path: str | os.PathLike) -> dict:
    """Check the header of a ``model.json`` and return it as format version 2 (a copy): version 1
    (the same keys, no ``kind``) is upgraded, any other version is refused (BadInputError)."""
    path = Path(path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BadInputError(f"{path}: not a hydrocast model description (no \"format\": \"{FORMAT}\")")
    version = meta.get("format_version")
    if version == 1:
        kind = "checkpoint" if "opt_param_groups" in meta else "model"
        return {**meta, "format_version": FORMAT_VERSION, "kind": kind}
    if isinstance(version, bool) or version != FORMAT_VERSION:
        by = meta.get("hydrocast_version")
        raise BadInputError(
            f"{path}: model format version {_show(version)}"
            + (f" (written by hydrocast {by})" if isinstance(by, str) else "")
            + f"; this hydrocast ({__version__}) reads versions {', '.join(map(str, READABLE_VERSIONS))}: "
            "retrain the model with this version")
    return dict(meta)


def validate_meta(meta: dict, path: str | os.PathLike, kind: str | None = None) -> ModelMeta | CheckpointMeta:
    """Check a complete (version 2) ``model.json``: header, and the body of its kind; with ``kind``
    given, that it is of that kind. Returns the typed description; BadInputError naming ``path``
    and the key."""
    o = _Obj(meta, Path(path))
    if not isinstance(meta, dict):
        raise BadInputError(f"{path}: not a JSON object")
    if meta.get("format") != FORMAT:
        o.fail("format", f"must be {FORMAT!r}", meta.get("format"))
    if meta.get("format_version") != FORMAT_VERSION:
        o.fail("format_version", f"must be {FORMAT_VERSION}", meta.get("format_version"))
    found = o.string("kind")
    if found not in KINDS:
        o.fail("kind", f"must be one of {', '.join(KINDS)}", found)
    if kind is not None and found != kind:
        o.fail("kind", f"this folder should hold a {kind}, not a {found}; move it away", found)
    o.string("hydrocast_version")
    sha = o.string("weights_sha256")
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        o.fail("weights_sha256", "must be 64 lowercase hex digits", sha)
    return (ModelMeta if found == "model" else CheckpointMeta).from_json(meta, path)


def model_id(meta: dict) -> str:
    """The model id: the first 8 hex digits of the weights' SHA-256."""
    return str(meta["weights_sha256"])[:8]


# =================================================================================================
# layout: a link to versioned folders
# =================================================================================================
def _abs(folder) -> Path:
    return Path(os.path.abspath(os.fspath(folder)))


def _versions(folder: Path) -> list[Path]:
    """The version folders of ``folder``, oldest first."""
    pat = re.compile(rf"^\.{re.escape(folder.name)}\.({_STAMP})-(\d+)$")
    try:
        entries = os.listdir(folder.parent)
    except OSError:
        return []
    found = [(m.group(1), int(m.group(2)), e) for e in entries if (m := pat.match(e))]
    return [folder.parent / e for _, _, e in sorted(found)]


def _new_version(folder: Path) -> Path:
    ns = time.time_ns()
    while True:
        sec, us = divmod(ns // 1000, 1_000_000)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(sec)) + f".{us:06d}Z"
        p = folder.parent / f".{folder.name}.{stamp}-{os.getpid()}"
        if not os.path.lexists(p):
            return p
        ns += 1000


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _complete(d: Path) -> bool:
    """True when ``d`` holds a whole artefact: a hydrocast model.json whose checksum matches."""
    try:
        meta = json.loads((d / META).read_text(encoding="utf-8"))
        return (isinstance(meta, dict) and meta.get("format") == FORMAT
                and meta.get("weights_sha256") == _sha256_file(d / WEIGHTS))
    except (OSError, ValueError):
        return False


def _leftover(folder: Path) -> Path | None:
    """The newest complete ``.<name>.<pid>.tmp`` / ``.old`` folder of a dead run: what the version-1
    code left when killed between its two renames (``.tmp`` = the new artefact, ``.old`` = the
    old one; the new one is preferred)."""
    pat = fsio.stale_pattern(folder.name)
    try:
        entries = os.listdir(folder.parent)
    except OSError:
        return None
    found = []
    for e in entries:
        m = pat.match(e)
        p = folder.parent / e
        if m and not fsio.pid_alive(int(m.group(1))) and p.is_dir() and not p.is_symlink() and _complete(p):
            found.append((e.endswith(".tmp"), (p / META).stat().st_mtime_ns, p))
    return max(found)[2] if found else None


def _fallback(folder: Path) -> Path | None:
    """What to read where the link is missing or dangling: the newest complete version folder,
    else a complete leftover of a dead run of the version-1 code."""
    for v in reversed(_versions(folder)):
        if _complete(v):
            return v
    return _leftover(folder)


def _point(folder: Path, target: Path) -> None:
    """Make ``folder`` a relative link to ``target`` (a sibling) with one atomic ``os.replace``."""
    link = fsio.tmp_path(folder)
    fsio.discard(link)
    os.symlink(target.name, link)
    try:
        os.replace(link, folder)
    except BaseException:
        fsio.discard(link)
        raise
    fsio.fsync_dir(folder.parent)


def _current(folder: Path) -> Path | None:
    """The version folder the link points to, when it is one of ours and exists."""
    if not folder.is_symlink():
        return None
    target = folder.parent / os.readlink(folder)
    return target if target.parent == folder.parent and target in _versions(folder) and target.is_dir() else None


def _migrate(folder: Path) -> None:
    """Turn a real folder at ``folder`` (a version-1 artefact, or a copied one) into a version
    folder and a link. A folder holding anything else is refused, never deleted."""
    entries = sorted(os.listdir(folder))
    other = [e for e in entries if e not in (WEIGHTS, META)]
    if other:
        raise OutputError(f"{folder}: a folder that is not a hydrocast model artefact (it holds {other[0]!r}); "
                          "refusing to replace it: move it away or choose another model_dir")
    if not entries:
        os.rmdir(folder)
        return
    version = _new_version(folder)
    os.rename(folder, version)  # from here until _point, the link is missing: load reads `version`
    fsio.fsync_dir(folder.parent)
    _point(folder, version)


def recover(folder: str | os.PathLike) -> Path | None:
    """Repair what a killed save can leave (see the module docstring) and remove the leftovers of
    dead runs; returns the version folder the link points to afterwards (None if there is none, or
    the link points to a folder that is not one of ours). For writers: :func:`save` calls it."""
    folder = _abs(folder)
    if folder.is_dir() and not folder.is_symlink():
        _migrate(folder)
    elif os.path.lexists(folder) and not folder.is_symlink():
        raise OutputError(f"{folder}: is a file, not a model artefact folder; move it away")
    if not folder.exists():  # missing, or a dangling link
        found = _fallback(folder)
        if found is not None and fsio.stale_pattern(folder.name).match(found.name):
            version = _new_version(folder)  # adopt an old run's leftover under a version name first
            os.rename(found, version)
            found = version
        if found is not None:
            _point(folder, found)
    fsio.clean_stale(folder.parent, folder.name)
    return _current(folder)


def _prune(folder: Path, keep: set[str]) -> None:
    """Delete the version folders not in ``keep`` (renamed to ``.<name>.<pid>.old`` first)."""
    trash = folder.parent / f".{folder.name}.{os.getpid()}.old"
    for v in _versions(folder):
        if v.name in keep:
            continue
        try:
            fsio.discard(trash)
            os.rename(v, trash)
        except OSError:
            continue
        fsio.discard(trash)


def _lock(folder: Path):
    from filelock import FileLock, Timeout

    lock = FileLock(str(folder.parent / f".{folder.name}.save.lock"), timeout=SAVE_LOCK_TIMEOUT_S)
    try:
        with fsio.write_errors(folder):
            lock.acquire()
    except Timeout:
        raise BusyError(f"{folder}: another process is saving this artefact; retry later") from None
    return lock


# =================================================================================================
# save / load
# =================================================================================================
def save(folder: str | os.PathLike, tensors: dict, meta: dict, kind: str = "model") -> str:
    """Write ``tensors`` (name → torch.Tensor) and ``meta`` (the JSON body: the schema of ``kind``)
    as the artefact ``folder``, replacing the previous one crash-safely (module docstring).

    ``meta`` is checked before anything is written (BadInputError naming the key); a full disk is a
    DiskFullError naming the file, and the previous artefact stays. Returns the model id."""
    from safetensors.torch import save_file

    folder = _abs(folder)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "hydrocast_version": __version__,
            "weights_sha256": "0" * 64, **{k: v for k, v in meta.items() if k not in HEADER_KEYS}}
    validate_meta(full, folder / META, kind)
    with fsio.write_errors(folder):
        folder.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock(folder)
    try:
        with fsio.write_errors(folder):
            previous = recover(folder)
        tmp = fsio.tmp_path(folder)
        fsio.discard(tmp)
        try:
            with fsio.write_errors(folder / WEIGHTS):
                tmp.mkdir()
                # one metadata key: safetensors writes several in a random order, and the model id
                # (the file's checksum) should not depend on it
                header = json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind})
                save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / WEIGHTS),
                          metadata={"hydrocast": header})
                fsio.fsync_file(tmp / WEIGHTS)
            full["weights_sha256"] = _sha256_file(tmp / WEIGHTS)
            with fsio.write_errors(folder / META):
                with open(tmp / META, "w", encoding="utf-8") as fh:
                    fh.write(json.dumps(full, indent=1))
                fsio.fsync_file(tmp / META)
            with fsio.write_errors(folder):
                fsio.fsync_dir(tmp)
                version = _new_version(folder)
                os.rename(tmp, version)  # a version folder is complete from its first instant
                fsio.fsync_dir(folder.parent)
        except BaseException:
            fsio.discard(tmp)
            raise
        with fsio.write_errors(folder):
            _point(folder, version)
        _prune(folder, {version.name} | ({previous.name} if previous is not None else set()))
    finally:
        lock.release()
    return model_id(full)


class _Replaced(Exception):
    """The version being read was deleted under the reader: resolve the link again."""


def _resolve(folder: Path) -> Path | None:
    """The folder whose files are the artefact now (None: there is none)."""
    if folder.exists():
        real = Path(os.path.realpath(folder))
        if not real.is_dir():
            raise BadInputError(f"{folder}: is a file, not a model artefact folder")
        return real
    found = _fallback(folder)
    if found is not None and not os.path.lexists(folder) and found.parent == folder.parent \
            and found in _versions(folder):
        try:  # restore a missing link; never replace one (a writer may have just made it)
            os.symlink(found.name, folder)
        except OSError:
            pass
    return found


def _read(folder: Path, src: Path) -> tuple[bytes, bytes]:
    """``model.json`` and ``model.safetensors`` of ``src``, read through one folder handle."""
    try:
        dfd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise _Replaced from None
    try:
        out = []
        for name in (META, WEIGHTS):
            try:
                fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
            except FileNotFoundError:
                if src.is_dir() and Path(os.path.realpath(folder)) == src:
                    raise BadInputError(f"{folder / name}: missing from the model artefact") from None
                raise _Replaced from None
            with os.fdopen(fd, "rb") as fh:
                out.append(fh.read())
        return out[0], out[1]
    finally:
        os.close(dfd)


def load(folder: str | os.PathLike, kind: str = "model") -> tuple[dict, dict]:
    """``(tensors, meta)`` of the artefact ``folder``: tensors by name, and ``model.json`` as a plain
    dict (version 1 upgraded to 2), checked against the schema of ``kind``.

    BadInputError (exit 65) for anything tampered, incomplete, incompatible or of another kind;
    MissingInputError (66) when there is no artefact; BusyError (75) when it kept being replaced
    while read."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    shown = Path(folder)
    folder = _abs(folder)
    what = "model artefact" if kind == "model" else kind
    for attempt in range(LOAD_ATTEMPTS):
        src = _resolve(folder)
        if src is None:
            hint = " (train one with `hydrocast train`)" if kind == "model" else ""
            raise MissingInputError(f"{shown}: no {what} here{hint}")
        try:
            meta_bytes, weights = _read(shown, src)
            break
        except _Replaced:
            time.sleep(0.01 * (attempt + 1))
    else:
        raise BusyError(f"{shown}: the {what} was replaced while being read (another run is saving it); retry")
    meta_path, weights_path = shown / META, shown / WEIGHTS
    try:
        raw = json.loads(meta_bytes.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{meta_path}: not valid JSON ({exc})") from None
    meta = upgrade(raw, meta_path)
    checked = validate_meta(meta, meta_path, kind)
    if hashlib.sha256(weights).hexdigest() != meta["weights_sha256"]:
        raise BadInputError(f"{weights_path}: checksum does not match model.json (tampered, truncated or replaced)")
    try:
        tensors = load_bytes(weights)
    except (SafetensorError, OSError, ValueError) as exc:
        raise BadInputError(f"{weights_path}: not a valid safetensors file ({exc})") from None
    if isinstance(checked, ModelMeta) and "basin_channels" in tensors:
        n = tensors["basin_channels"].shape[0] if tensors["basin_channels"].ndim else -1
        if n != len(checked.basins):
            raise BadInputError(f"{weights_path}: basin_channels holds {n} basins, model.json lists "
                                f"{len(checked.basins)}")
    return tensors, meta


def exists(folder: str | os.PathLike) -> bool:
    """True when :func:`load` would find an artefact at ``folder`` (through a missing link too)."""
    folder = _abs(folder)
    return folder.exists() or _fallback(folder) is not None


def remove(folder: str | os.PathLike) -> None:
    """Delete the artefact ``folder``: its link, its version folders and leftovers (e.g. a
    checkpoint once training is done). A real folder is removed only if it holds nothing but the
    artefact's files."""
    folder = _abs(folder)
    if not os.path.lexists(folder) and not _versions(folder):
        return
    lock = _lock(folder)
    try:
        _prune(folder, set())  # versions first: a link left dangling by a kill reads as "no artefact"
        if folder.is_symlink():
            folder.unlink()
        elif folder.is_dir():
            if any(e not in (WEIGHTS, META) for e in os.listdir(folder)):
                raise OutputError(f"{folder}: holds files that are not a model artefact's; not removed")
            for e in os.listdir(folder):
                (folder / e).unlink()
            folder.rmdir()
        fsio.clean_stale(folder.parent, folder.name)
        fsio.fsync_dir(folder.parent)
    finally:
        lock.release()
    try:  # nothing is left to save under this name: its lock file goes too
        (folder.parent / f".{folder.name}.save.lock").unlink(missing_ok=True)
    except OSError:
        pass
