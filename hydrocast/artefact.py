"""The model artefact: one self-contained folder, safe to move and safe to load.

Contract
========

``model.safetensors``
    every tensor: the network's weights (``net.*``) plus the data the model needs at prediction
    time (``basin_channels`` of the training basins, ...). safetensors cannot carry code, so
    loading never unpickles anything.
``model.json``
    ``format`` = "hydrocast-model", ``format_version`` (an int; an artefact of another version
    fails with a clear error), ``hydrocast_version``, ``weights_sha256`` (the checksum of
    ``model.safetensors``: a tampered or truncated weights file is refused), ``hparams`` (rebuilds
    the network), and free-form sections written by :mod:`hydrocast.train`: ``config``,
    ``inputs``, ``normalisation``, ``grid``, ``lead_days``, ``warmup_days``, ``basins`` (ids,
    areas, outlets, validation scores), ``training``.

Both files are written to a temporary folder beside the target and renamed into place, so a
killed run leaves either the old artefact or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from . import __version__
from .errors import BadInputError, MissingInputError

FORMAT = "hydrocast-model"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
META = "model.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def save(folder: Path, tensors: dict, meta: dict) -> None:
    """Write ``tensors`` (name → torch.Tensor) and ``meta`` (JSON-able) as an artefact in ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        weights = tmp / WEIGHTS
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(weights),
                  metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
        full = {"format": FORMAT, "format_version": FORMAT_VERSION, "hydrocast_version": __version__,
                "weights_sha256": _sha256(weights), **meta}
        (tmp / META).write_text(json.dumps(full, indent=1, sort_keys=False))
        for f in (weights, tmp / META):
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
        if folder.exists():
            os.replace(folder, old)  # a folder cannot be replaced in one rename when it exists
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(folder.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load(folder: Path) -> tuple[dict, dict]:
    """``(tensors, meta)`` of an artefact; BadInputError for anything tampered or incompatible."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    weights, meta_path = folder / WEIGHTS, folder / META
    if not folder.is_dir():
        raise MissingInputError(f"{folder}: no model artefact here (train one with `hydrocast train`)")
    for p in (weights, meta_path):
        if not p.is_file():
            raise BadInputError(f"{p}: missing from the model artefact")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BadInputError(f"{meta_path}: not a hydrocast model description")
    if meta.get("format_version") != FORMAT_VERSION:
        raise BadInputError(f"{meta_path}: model format version {meta.get('format_version')!r}; this hydrocast "
                            f"({__version__}) reads version {FORMAT_VERSION}: retrain the model")
    if _sha256(weights) != meta.get("weights_sha256"):
        raise BadInputError(f"{weights}: checksum does not match model.json (tampered, truncated or replaced)")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BadInputError(f"{weights}: not a valid safetensors file ({exc})") from None
    return tensors, meta
