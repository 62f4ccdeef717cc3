"""The saved recurrent state of operational ``predict``, and the input-status record of a forecast.

A forecast spins the network up over >= 365 days of the cube. The daily cron run keeps that
recurrent state on disk and continues from it; but older cube days get revised (IMERG Early ->
Late -> Final, ESA CCI arriving weeks late), so a saved state is only valid while every day it
consumed still has the inputs it had then. Each day's inputs are identified by its provenance
(the cube's ``<name>_source`` strings: run, files and a signature of the file set,
:mod:`hydrocast.cube`), not by its values.

Contract (written once, here)
=============================

=========================== =======================================================================
file                        ``<cube folder>/<cube stem>.state/<model id>.safetensors``
                            (:func:`state_path`): one per model, beside the cube; run window by
                            window (``[train] tile_cells``), one per window:
                            ``<model id>.y<y0>-<y1>.x<x0>-<x1>.safetensors`` (its grid rows and columns)
tensors                     the caller's tensors (name -> torch.Tensor), any dtype, stored on CPU
metadata                    one safetensors metadata key ``hydrocast_state``, a JSON object:
                            ``format`` "hydrocast-state", ``format_version`` 1, ``model_id``,
                            ``start_day`` (first day consumed) and ``day`` (last day consumed; the
                            state is the one *after* that day's inputs), ``YYYY-MM-DD``,
                            ``digests`` (one signed 64-bit integer per day start_day..day) and
                            ``extra`` (free JSON for the caller)
day digest                  :func:`day_digests`: BLAKE2b (8 bytes, little-endian, signed) of the JSON
                            list ``[[name, source], ...]`` of that day's ``<name>_source`` strings,
                            for the dynamic names in the caller's order
writing                     :func:`save_state`: under the file lock ``<file>.lock`` (30 s, then
                            BusyError, exit 75), atomically (:func:`hydrocast.fsio.atomic_write`:
                            a killed or failed write leaves the previous file; a full disk is a
                            DiskFullError naming the file, exit 74)
reading                     :func:`load_state` never raises for a bad state file: a missing,
                            truncated, corrupt file, another model's or another format's gives
                            ``(None, reason)`` and the caller spins up from scratch (and logs the
                            reason). safetensors only: loading never unpickles anything
validity                    :func:`check_state`: the cube still holds every day start_day..day and
                            each day's digest is the saved one
=========================== =======================================================================

The input-status record (:func:`inputs_status`, :func:`status_attribute`) says, for each dynamic
input, the last day up to the issue day with at least one valid cell, looking back at most
:data:`STATUS_MAX_DAYS` days and reading the cube backwards one 32-day chunk at a time (a
variable that lags by months does not read the whole record).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import fsio
from .errors import BadInputError

FORMAT = "hydrocast-state"
FORMAT_VERSION = 1
META_KEY = "hydrocast_state"
#: how long :func:`save_state` waits for another save of the same state (then BusyError)
LOCK_TIMEOUT_S = 30.0
#: :func:`inputs_status` looks back at most this many days before the issue day
STATUS_MAX_DAYS = 400
#: days read at a time by :func:`inputs_status` (the cube's time chunk, :class:`hydrocast.cube.CubeWriter`)
STATUS_CHUNK_DAYS = 32
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# -- where ----------------------------------------------------------------------------------------
def state_path(cube_path: Path, model_id: str, window=None) -> Path:
    """``<cube folder>/<cube stem>.state/<model_id>.safetensors``; the state of one window (an
    object with ``y0, y1, x0, x1``, :class:`hydrocast.tiles.Window`) of the grid:
    ``<model_id>.y<y0>-<y1>.x<x0>-<x1>.safetensors``."""
    if not _MODEL_ID.match(str(model_id)):
        raise ValueError(f"model id {model_id!r} is not a plain file name")
    cube_path = Path(cube_path)
    name = model_id if window is None else f"{model_id}.y{window.y0}-{window.y1}.x{window.x0}-{window.x1}"
    return cube_path.parent / f"{cube_path.stem}.state" / f"{name}.safetensors"


# -- what the state consumed ----------------------------------------------------------------------
def _sources(reader, name: str, start: int, stop: int) -> list[str]:
    if not reader.store.has(f"{name}_source"):
        raise BadInputError(f"{reader.path}: has no variable {name}_source (the provenance of {name}); "
                            "rebuild it with `hydrocast ingest`")
    return reader.store.strings(f"{name}_source", start, stop)


def day_digests(reader, names: list[str], start: int, stop: int) -> np.ndarray:
    """int64 ``(stop - start,)``: for cube days ``start`` <= i < ``stop`` (indices into
    ``reader.days``), the digest of that day's ``<name>_source`` strings for ``names`` (in order).
    BadInputError naming the cube when a ``<name>_source`` variable is missing."""
    if not 0 <= start <= stop <= len(reader.days):
        raise BadInputError(f"{reader.path}: days {start}..{stop} are outside the cube (0..{len(reader.days)})")
    columns = [_sources(reader, name, start, stop) for name in names]
    out = np.empty(stop - start, dtype="int64")
    for k in range(stop - start):
        text = json.dumps([[name, col[k]] for name, col in zip(names, columns)], ensure_ascii=False)
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
        out[k] = int.from_bytes(digest, "little", signed=True)
    return out


# -- the saved state ------------------------------------------------------------------------------
@dataclass(eq=False)
class SavedState:
    """A recurrent state after the inputs of days ``start_day``..``day`` (inclusive)."""

    model_id: str
    start_day: np.datetime64  # first day the state consumed
    day: np.datetime64  # last day consumed: the state is the one after this day's inputs
    tensors: dict  # name -> torch.Tensor
    digests: np.ndarray  # int64, one per day start_day..day (day_digests)
    extra: dict = field(default_factory=dict)  # JSON-able, the caller's

    def __post_init__(self):
        self.start_day = np.datetime64(self.start_day, "D")
        self.day = np.datetime64(self.day, "D")
        self.digests = np.asarray(self.digests, dtype="int64")

    @property
    def n_days(self) -> int:
        return int((self.day - self.start_day).astype(int)) + 1


def _header(state: SavedState) -> str:
    if state.n_days < 1:
        raise ValueError(f"state day {state.day} is before its start day {state.start_day}")
    if state.digests.shape != (state.n_days,):
        raise ValueError(f"{state.digests.shape[0] if state.digests.ndim else 0} digests for the "
                         f"{state.n_days} days {state.start_day}..{state.day}")
    return json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, "model_id": str(state.model_id),
                       "start_day": str(state.start_day), "day": str(state.day),
                       "digests": [int(d) for d in state.digests], "extra": state.extra},
                      allow_nan=False)


def save_state(path: Path, state: SavedState) -> Path:
    """Write ``state`` to ``path`` (safetensors, metadata as JSON) atomically, under the lock
    ``<path>.lock``; creates the folder. BusyError when another run holds the lock for 30 s;
    DiskFullError / OutputError naming the file when it cannot be written (the old file stays).
    ValueError (before anything is written) for an inconsistent state or non-JSON ``extra``."""
    from safetensors.torch import save

    path = Path(path)
    header = _header(state)
    # a copy on the CPU: safetensors refuses tensors that share memory (views of one buffer)
    tensors = {str(k): v.detach().to("cpu", copy=True).contiguous() for k, v in state.tensors.items()}
    data = save(tensors, metadata={META_KEY: header})

    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    with fsio.held_lock(path, f"{path}: another hydrocast run is saving this state (lock {{lock}} is held); "
                        "retry later", timeout=LOCK_TIMEOUT_S):
        return fsio.atomic_write(path, _write)


def _parse(meta: dict | None) -> tuple[str, np.datetime64, np.datetime64, np.ndarray, dict]:
    """The checked header of a state file; ValueError / KeyError / TypeError when it is not one."""
    if not meta or META_KEY not in meta:
        raise ValueError(f"no {META_KEY} metadata (not a hydrocast state file)")
    head = json.loads(meta[META_KEY])
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise ValueError(f"format is not {FORMAT!r}")
    if head.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"format version {head.get('format_version')!r}; this hydrocast reads {FORMAT_VERSION}")
    start, day = np.datetime64(head["start_day"], "D"), np.datetime64(head["day"], "D")
    digests = head["digests"]
    if not isinstance(digests, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in digests):
        raise ValueError("digests is not a list of integers")
    digests = np.asarray(digests, dtype="int64")
    n = int((day - start).astype(int)) + 1
    if n < 1 or digests.shape != (n,):
        raise ValueError(f"{len(digests)} digests for the days {start}..{day}")
    if not isinstance(head["extra"], dict) or not isinstance(head["model_id"], str):
        raise ValueError("model_id is not a string or extra is not an object")
    return head["model_id"], start, day, digests, head["extra"]


def load_state(path: Path, model_id: str) -> tuple[SavedState | None, str]:
    """``(state, "")``, or ``(None, reason)`` when ``path`` is missing, unreadable, truncated,
    corrupt, of another format or of another model than ``model_id``. Never raises for a bad
    state file: the caller spins up from scratch and logs the reason."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        return None, f"{path}: no saved state"
    try:
        with safe_open(str(path), framework="pt") as fh:  # one open file: a concurrent save replaces, never edits
            meta = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        return None, f"{path}: unreadable state file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    try:
        saved_id, start, day, digests, extra = _parse(meta)
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"{path}: not a usable hydrocast state ({exc})"
    if saved_id != model_id:
        return None, f"{path}: saved by model {saved_id}, not {model_id}"
    return SavedState(saved_id, start, day, tensors, digests, extra), ""


def check_state(state: SavedState, reader, names: list[str]) -> tuple[bool, str]:
    """``(True, "")`` when the cube of ``reader`` still holds every day ``state.start_day`` ..
    ``state.day`` and their digests (:func:`day_digests` over ``names``) are the saved ones; else
    ``(False, reason)``, the reason naming the first changed day. BadInputError (from
    :func:`day_digests`) when the cube lacks a ``<name>_source`` variable."""
    days = reader.days
    if not len(days) or state.start_day < days[0] or state.day > days[-1]:
        held = f"{days[0]}..{days[-1]}" if len(days) else "no day"
        return False, f"the cube no longer holds the days {state.start_day}..{state.day} of the state (it holds {held})"
    if state.digests.shape != (state.n_days,):
        return False, f"the state holds {state.digests.size} digests for its {state.n_days} days"
    start = int((state.start_day - days[0]).astype(int))
    now = day_digests(reader, names, start, start + state.n_days)
    changed = np.flatnonzero(now != state.digests)
    if changed.size:
        first = state.start_day + np.timedelta64(int(changed[0]), "D")
        what = " or ".join(names) if names else "the"
        n = changed.size - 1
        more = f" (and {n} later day{'s' if n > 1 else ''})" if n else ""
        return False, f"{first}: {what} input changed since the state was saved{more}"
    return True, ""


# -- the input-status record ----------------------------------------------------------------------
def _last_valid(reader, name: str, issue_index: int) -> int | None:
    """Index of the last day <= ``issue_index`` with a valid cell of ``name``, at most
    STATUS_MAX_DAYS back; read backwards one cube chunk (32 days) at a time."""
    lo = max(0, issue_index - STATUS_MAX_DAYS)
    stop = issue_index + 1
    while stop > lo:
        start = max(lo, (stop - 1) // STATUS_CHUNK_DAYS * STATUS_CHUNK_DAYS)  # aligned on the cube's chunks
        x = reader.raw(name, start, stop)
        valid = np.flatnonzero(np.isfinite(x).reshape(len(x), -1).any(axis=1))
        if valid.size:
            return start + int(valid[-1])
        stop = start
    return None


def inputs_status(reader, names: list[str], issue_index: int) -> dict[str, dict]:
    """For each dynamic variable in ``names``: ``{"last_day": "YYYY-MM-DD" or None, "days_behind":
    int or None, "missing_on_issue_day": bool}``: the last day <= the issue day (``issue_index``
    into ``reader.days``) with at least one valid cell, looking back at most STATUS_MAX_DAYS days
    (None beyond). BadInputError naming the cube for an unknown name or an issue day outside it."""
    if not 0 <= issue_index < len(reader.days):
        raise BadInputError(f"{reader.path}: issue day index {issue_index} is outside the cube "
                            f"({len(reader.days)} days)")
    unknown = [n for n in names if n not in reader.dynamic_names]
    if unknown:
        raise BadInputError(f"{reader.path}: has no dynamic variable {unknown[0]!r} "
                            f"(it has {', '.join(reader.dynamic_names)})")
    out = {}
    for name in names:
        last = _last_valid(reader, name, issue_index)
        out[name] = {"last_day": None if last is None else str(reader.days[last]),
                     "days_behind": None if last is None else issue_index - last,
                     "missing_on_issue_day": last != issue_index}
    return out


def status_attribute(status: dict) -> str:
    """One line for a NetCDF global attribute, e.g.
    ``precipitation: current; soil_moisture: 23 days behind (last 2020-06-08)``."""
    parts = []
    for name, st in status.items():
        behind = st.get("days_behind")
        if behind is None:
            text = f"no data in the {STATUS_MAX_DAYS} days up to the issue day"
        elif behind == 0:
            text = "current"
        else:
            text = f"{behind} day{'s' if behind != 1 else ''} behind (last {st['last_day']})"
        parts.append(f"{name}: {text}")
    return "; ".join(parts)
