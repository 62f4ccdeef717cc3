"""hydrocast.artefact: the typed, versioned schema (checked on save and on load), kinds, version 1,
and a replacement that leaves the old or the new complete artefact at every instant: a simulated
crash at every file-system step of save, real SIGKILLs of a process looping saves, and a reader
loading while another process saves."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hydrocast import artefact, fsio
from hydrocast.errors import (
    EX_DATAERR,
    BadInputError,
    BusyError,
    DiskFullError,
    MissingInputError,
    OutputError,
)
from hydrocast.grid import GridSpec

REPO = Path(__file__).resolve().parents[1]


def model_meta(tag: str = "A") -> dict:
    """A model description as train.py writes it (two basins on a 8 x 8 grid)."""
    grid = GridSpec.from_bounds("EPSG:4326", (-8.0, 40.4, -7.6, 40.8), 0.05)
    return {
        "hparams": {"n_dynamic": 6, "n_static": 2, "hidden": 4, "lead_days": 3},
        "lumped_hparams": {"n_inputs": 9, "hidden": 8, "lead_days": 3},
        "inputs": {"dynamic": ["precipitation", "soil_moisture"], "static": ["elevation"],
                   "stats": {"precipitation": {"mean": 0.5, "std": 1.2, "log1p": True, "log10": False},
                             "soil_moisture": {"mean": 0.2, "std": 0.05, "log1p": False, "log10": False},
                             "elevation": {"mean": 300.0, "std": 100.0, "log1p": False, "log10": False}}},
        "map_outputs": [{"name": "soil_moisture", "units": "m3 m-3"}],
        "grid": grid.to_dict(), "lead_days": 3, "warmup_days": 30, "dist_scale_km": 12.5,
        "discharge_normalisation": {"quantity": "specific discharge (mm/day)", "mean": 1.1, "std": 0.7},
        "basins": [
            {"id": "PT01", "name": "Alva", "area_km2": 120.0, "outlet_lon": -7.8, "outlet_lat": 40.6,
             "basin_std": 0.5, "validation_nse": 0.61, "lumped_validation_nse": None, "polygon_lonlat": None},
            {"id": "PT02", "name": None, "area_km2": 80.0, "outlet_lon": None, "outlet_lat": None,
             "basin_std": 0.4, "validation_nse": None, "lumped_validation_nse": 0.3,
             "polygon_lonlat": {"type": "Polygon",
                                "coordinates": [[[-8, 40.5], [-7.9, 40.5], [-7.9, 40.6], [-8, 40.5]]]}}],
        "config": {"train": {"epochs": 2}},
        "training": {"tag": tag},
    }


def tensors(value: float) -> dict:
    return {"net.w": torch.full((3, 4), float(value)), "lumped.b": torch.arange(5, dtype=torch.float32) + value,
            "basin_channels": torch.zeros(2, 2, 8, 8)}


def checkpoint_meta(epoch: int = 3) -> dict:
    return {"state": {"epoch": epoch, "best": 0.4, "best_epoch": 2, "bad_epochs": 1, "history": []},
            "opt_param_groups": [{"lr": 0.001, "params": [0, 1, 2]}],
            "opt_scalars": {"0.step": 12.0}, "sched": {"best": None, "num_bad_epochs": 0}}


def same(a: dict, b: dict) -> bool:
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def versions(folder: Path) -> list[str]:
    return sorted(e for e in os.listdir(folder.parent) if e.startswith(f".{folder.name}.")
                  and not e.endswith((".tmp", ".old", ".lock")))


def leftovers(folder: Path) -> list[str]:
    return sorted(e for e in os.listdir(folder.parent) if e.endswith((".tmp", ".old")))


def write_v1(folder: Path, body: dict, t: dict, extra_files: tuple = ()) -> None:
    """An artefact exactly as hydrocast 0.1 (format version 1) wrote it: a real folder."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file(t, str(folder / "model.safetensors"), metadata={"format": "hydrocast-model", "format_version": "1"})
    sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    meta = {"format": "hydrocast-model", "format_version": 1, "hydrocast_version": "0.1.0", "weights_sha256": sha,
            **body}
    (folder / "model.json").write_text(json.dumps(meta))
    for name in extra_files:
        (folder / name).write_text("user data")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- round trip, layout -----------------------------------------------------------------------------
def test_save_load_round_trip_and_layout(tmp_path):
    folder = tmp_path / "model"
    mid = artefact.save(folder, tensors(1), model_meta("A"))
    t, meta = artefact.load(folder)
    assert same(t, tensors(1))
    assert meta["kind"] == "model" and meta["format_version"] == artefact.FORMAT_VERSION == 2
    assert mid == meta["weights_sha256"][:8] == artefact.model_id(meta)
    assert meta["weights_sha256"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    body = {k: v for k, v in meta.items() if k not in artefact.HEADER_KEYS}
    assert body == model_meta("A")
    assert folder.is_symlink() and not os.path.isabs(os.readlink(folder))
    assert sorted(os.listdir(folder)) == ["model.json", "model.safetensors"]
    # same content, same model id (safetensors' header order must not change the checksum)
    assert artefact.save(folder, tensors(1), model_meta("A")) == mid


def test_previous_version_is_kept_and_older_ones_deleted(tmp_path):
    folder = tmp_path / "model"
    artefact.save(folder, tensors(1), model_meta("A"))
    artefact.save(folder, tensors(2), model_meta("B"))
    assert len(versions(folder)) == 2
    b_dir = folder.parent / os.readlink(folder)
    artefact.save(folder, tensors(3), model_meta("C"))
    names = versions(folder)
    assert len(names) == 2 and b_dir.name in names and os.readlink(folder) in names
    assert leftovers(folder) == []
    # the previous version is still whole for a reader that resolved the link before the swap
    assert json.loads((b_dir / "model.json").read_text())["training"]["tag"] == "B"
    t, meta = artefact.load(folder)
    assert same(t, tensors(3)) and meta["training"]["tag"] == "C"


def test_unknown_extra_keys_are_kept(tmp_path):
    meta = model_meta()
    meta["streams"] = {"observed_discharge": {"lag_days": 1}}
    artefact.save(tmp_path / "m", tensors(1), meta)
    assert artefact.load(tmp_path / "m")[1]["streams"] == {"observed_discharge": {"lag_days": 1}}
    typed = artefact.validate_meta(artefact.load(tmp_path / "m")[1], tmp_path / "m" / "model.json")
    assert isinstance(typed, artefact.ModelMeta) and typed.extra == {"streams": meta["streams"]}
    assert typed.basins[0].id == "PT01" and typed.inputs.stats["precipitation"].log1p is True
    assert typed.grid_spec().shape == (8, 8)


def test_a_copied_plain_folder_loads_as_it_is(tmp_path):
    artefact.save(tmp_path / "m", tensors(1), model_meta())
    copied = tmp_path / "elsewhere" / "my-model"
    shutil.copytree(tmp_path / "m", copied)  # follows the link: a plain folder with the two files
    assert not copied.is_symlink()
    assert same(artefact.load(copied)[0], tensors(1))


# -- schema ---------------------------------------------------------------------------------------
def _set(path: str, value):
    """A mutator setting ``a.b[0].c`` (``DELETE`` removes the key)."""
    def mutate(meta):
        keys = path.replace("[", ".").replace("]", "").split(".")
        obj = meta
        for k in keys[:-1]:
            obj = obj[int(k)] if isinstance(obj, list) else obj[k]
        last = int(keys[-1]) if isinstance(obj, list) else keys[-1]
        if value is DELETE:
            del obj[last]
        else:
            obj[last] = value
    return mutate


DELETE = object()
BAD = [
    ("lead_days", -1, "lead_days = -1: must be an integer >= 1"),
    ("lead_days", "3", 'lead_days = "3": must be an integer >= 1'),
    ("lead_days", 2.5, "lead_days = 2.5: must be an integer >= 1"),
    ("lead_days", True, "lead_days = true: must be an integer >= 1"),
    ("warmup_days", -3, "warmup_days = -3: must be an integer >= 0"),
    ("grid", DELETE, "grid: missing (a required key)"),
    ("basins", DELETE, "basins: missing (a required key)"),
    ("basins", [], "basins = []: must be a non-empty list"),
    ("basins[0].id", "../../x", "basins[0].id: basin id '../../x' is not allowed"),
    ("basins[1].id", "/somewhere/x", "basins[1].id: basin id '/somewhere/x' is not allowed"),
    ("basins[1].id", "PT01", "basins: basin id 'PT01' appears more than once"),
    ("basins[0].area_km2", -5.0, "basins[0].area_km2 = -5.0: must be a finite number > 0"),
    ("basins[0].outlet_lat", 123.0, "basins[0].outlet_lat = 123.0: must be a finite number between -90 and 90 or null"),
    ("discharge_normalisation.std", math.nan, "discharge_normalisation.std = NaN: must be a finite number > 0"),
    ("discharge_normalisation.mean", math.inf, "discharge_normalisation.mean = Infinity: must be a finite number"),
    ("discharge_normalisation.std", 0.0, "discharge_normalisation.std = 0.0: must be a finite number > 0"),
    ("inputs.stats.precipitation.mean", math.nan, "inputs.stats.precipitation.mean = NaN: must be a finite"),
    ("inputs.stats.elevation", DELETE, "inputs.stats.elevation: missing (a required key)"),
    ("inputs.dynamic", [], "inputs.dynamic = []: must be a non-empty list"),
    ("grid.crs_wkt", "not a crs", "grid: does not rebuild a grid (CRSError"),
    ("grid.width", 0, "grid.width = 0: must be an integer >= 1"),
    ("grid.transform", [0.05, 0, -8, 0, 0.05, 40.8], "grid.transform = [0.05, 0, -8, 0, 0.05, 40.8]: must describe"),
    ("grid.transform", [0.05, 0, -8], "grid.transform = [0.05, 0, -8]: must be a list of 6 finite numbers"),
    ("hparams.lead_days", 5, "hparams.lead_days = 5: must equal lead_days (3)"),
    ("lumped_hparams.hidden", 0, "lumped_hparams.hidden = 0: must be an integer >= 1"),
    ("map_outputs", [], "map_outputs = []: must be a non-empty list"),
    ("map_outputs", [{"units": "m"}], "map_outputs[0].name: missing (a required key)"),
    ("dist_scale_km", -1, "dist_scale_km = -1: must be a finite number > 0"),
    ("config", "oops", 'config = "oops": must be an object'),
]


@pytest.mark.parametrize("key,value,message", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_values_are_refused_on_save_and_write_nothing(tmp_path, key, value, message):
    folder = tmp_path / "model"
    meta = model_meta()
    _set(key, value)(meta)
    with pytest.raises(BadInputError) as info:
        artefact.save(folder, tensors(1), meta)
    assert str(info.value).startswith(f"{folder}/model.json: {message}"), str(info.value)
    assert info.value.exit_code == EX_DATAERR == 65
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("key,value,message", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_tampered_model_json_is_refused_on_load_naming_file_and_key(tmp_path, key, value, message):
    folder = tmp_path / "model"
    artefact.save(folder, tensors(1), model_meta())
    meta = json.loads((folder / "model.json").read_text())
    _set(key, value)(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BadInputError) as info:
        artefact.load(folder)
    assert str(info.value).startswith(f"{folder}/model.json: {message}"), str(info.value)


def test_the_lead_days_message_exactly(tmp_path):
    folder = tmp_path / "model"
    artefact.save(folder, tensors(1), model_meta())
    meta = json.loads((folder / "model.json").read_text())
    meta["lead_days"] = -1
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BadInputError) as info:
        artefact.load(folder)
    assert str(info.value) == f"{folder}/model.json: lead_days = -1: must be an integer >= 1"


def test_basin_channels_must_match_the_basins(tmp_path):
    t = tensors(1)
    t["basin_channels"] = torch.zeros(3, 2, 8, 8)
    artefact.save(tmp_path / "m", t, model_meta())
    with pytest.raises(BadInputError, match="basin_channels holds 3 basins, model.json lists 2"):
        artefact.load(tmp_path / "m")


def test_tampered_weights_and_non_json_are_refused(tmp_path):
    folder = tmp_path / "model"
    artefact.save(folder, tensors(1), model_meta())
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="checksum does not match"):
        artefact.load(folder)
    (folder / "model.json").write_text("{not json")
    with pytest.raises(BadInputError, match="model.json: not valid JSON"):
        artefact.load(folder)


# -- versions -------------------------------------------------------------------------------------
def test_version_1_artefact_loads_upgraded_and_is_migrated_on_save(tmp_path):
    folder = tmp_path / "model"
    write_v1(folder, model_meta("old"), tensors(7))
    t, meta = artefact.load(folder)
    assert same(t, tensors(7))
    assert meta["format_version"] == 2 and meta["kind"] == "model" and meta["training"]["tag"] == "old"
    assert json.loads((folder / "model.json").read_text())["format_version"] == 1  # upgraded in memory only
    artefact.save(folder, tensors(8), model_meta("new"))
    assert folder.is_symlink()
    assert artefact.load(folder)[1]["training"]["tag"] == "new"
    (old,) = [v for v in versions(folder) if v != os.readlink(folder)]  # the v1 files, kept as previous
    assert json.loads((tmp_path / old / "model.json").read_text())["format_version"] == 1


def test_version_1_checkpoint_loads_as_a_checkpoint(tmp_path):
    folder = tmp_path / ".model.checkpoint"
    write_v1(folder, checkpoint_meta(4), tensors(1))
    _, meta = artefact.load(folder, kind="checkpoint")
    assert meta["kind"] == "checkpoint" and meta["state"]["epoch"] == 4
    with pytest.raises(BadInputError, match="should hold a model, not a checkpoint"):
        artefact.load(folder)


def test_unknown_version_is_refused_clearly(tmp_path):
    folder = tmp_path / "model"
    artefact.save(folder, tensors(1), model_meta())
    meta = json.loads((folder / "model.json").read_text())
    meta["format_version"] = 99
    meta["hydrocast_version"] = "9.0"
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BadInputError) as info:
        artefact.load(folder)
    msg = str(info.value)
    assert msg.startswith(f"{folder}/model.json: model format version 99 (written by hydrocast 9.0)")
    assert "reads versions 1, 2" in msg and "retrain" in msg


def test_a_real_folder_holding_other_files_is_never_replaced(tmp_path):
    folder = tmp_path / "model"
    write_v1(folder, model_meta(), tensors(1), extra_files=("notes.txt",))
    with pytest.raises(OutputError, match="notes.txt"):
        artefact.save(folder, tensors(2), model_meta())
    assert (folder / "notes.txt").read_text() == "user data" and not folder.is_symlink()


# -- kinds: checkpoints ---------------------------------------------------------------------------
def test_checkpoint_round_trip_and_light_schema(tmp_path):
    ck = tmp_path / ".model.checkpoint-convlstm"
    artefact.save(ck, tensors(1), checkpoint_meta(3), kind="checkpoint")
    t, meta = artefact.load(ck, kind="checkpoint")
    assert same(t, tensors(1)) and meta["kind"] == "checkpoint" and meta["state"]["epoch"] == 3
    bad = checkpoint_meta()
    bad["state"]["epoch"] = -1
    with pytest.raises(BadInputError, match=r"state.epoch = -1: must be an integer >= 0"):
        artefact.save(ck, tensors(1), bad, kind="checkpoint")
    bad = checkpoint_meta()
    bad["opt_param_groups"][0]["params"] = ["x"]
    with pytest.raises(BadInputError, match=r"opt_param_groups\[0\].params .* must be a list of integers"):
        artefact.save(ck, tensors(1), bad, kind="checkpoint")
    bad = checkpoint_meta()
    del bad["opt_scalars"]
    with pytest.raises(BadInputError, match="opt_scalars: missing"):
        artefact.save(ck, tensors(1), bad, kind="checkpoint")


@pytest.mark.parametrize("content", ["model", "junk-file", "junk-folder", "empty"])
def test_checkpoint_folder_holding_something_else_is_exit_65(tmp_path, content):
    ck = tmp_path / ".model.checkpoint-convlstm"
    if content == "model":
        artefact.save(ck, tensors(1), model_meta())
    elif content == "junk-file":
        ck.write_text("junk")
    elif content == "junk-folder":
        ck.mkdir()
        (ck / "model.json").write_text(json.dumps({"hello": 1}))
        (ck / "model.safetensors").write_bytes(b"\0" * 10)
    else:
        ck.mkdir()
    with pytest.raises(BadInputError) as info:
        artefact.load(ck, kind="checkpoint")
    assert info.value.exit_code == 65 and str(ck) in str(info.value)


def test_missing_artefact_is_exit_66(tmp_path):
    with pytest.raises(MissingInputError, match="no model artefact here"):
        artefact.load(tmp_path / "nothing")
    assert not artefact.exists(tmp_path / "nothing")


def test_remove_deletes_link_versions_and_leftovers(tmp_path):
    ck = tmp_path / ".m.checkpoint"
    for i in range(3):
        artefact.save(ck, tensors(i), checkpoint_meta(i), kind="checkpoint")
    (tmp_path / f"..m.checkpoint.{dead_pid()}.tmp").mkdir()
    (tmp_path / "keep.txt").write_text("not ours")
    assert artefact.exists(ck)
    artefact.remove(ck)
    assert not artefact.exists(ck) and not os.path.lexists(ck)
    assert os.listdir(tmp_path) == ["keep.txt"]


# -- recovery of what a kill leaves -----------------------------------------------------------------
def test_link_missing_reads_and_restores_the_newest_complete_version(tmp_path):
    folder = tmp_path / "model"
    artefact.save(folder, tensors(1), model_meta("A"))
    artefact.save(folder, tensors(2), model_meta("B"))
    target = os.readlink(folder)
    folder.unlink()  # as a kill during a legacy folder's migration leaves it
    assert artefact.exists(folder)
    t, meta = artefact.load(folder)
    assert meta["training"]["tag"] == "B" and same(t, tensors(2))
    assert os.readlink(folder) == target  # the link is back


def test_old_hydrocast_killed_between_its_two_renames_is_recovered(tmp_path):
    """hydrocast 0.1 moved the old artefact to .model.<pid>.old, then .model.<pid>.tmp to model:
    a kill in between left no model. The new one (.tmp) is used, and the next save cleans up."""
    folder = tmp_path / "model"
    pid = dead_pid()
    write_v1(tmp_path / f".model.{pid}.old", model_meta("old"), tensors(1))
    write_v1(tmp_path / f".model.{pid}.tmp", model_meta("new"), tensors(2))
    assert artefact.load(folder)[1]["training"]["tag"] == "new"
    artefact.save(folder, tensors(3), model_meta("newer"))
    assert artefact.load(folder)[1]["training"]["tag"] == "newer"
    assert leftovers(folder) == [] and len(versions(folder)) == 2


def test_a_reader_whose_version_was_deleted_retries_then_is_busy(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    artefact.save(folder, tensors(1), model_meta("A"))
    stale = folder.parent / os.readlink(folder)
    artefact.save(folder, tensors(2), model_meta("B"))
    artefact.save(folder, tensors(3), model_meta("C"))
    assert not stale.exists()  # two saves later, the version a slow reader resolved is gone
    real, calls = artefact._resolve, []

    def resolve_stale_once(f):
        calls.append(f)
        return stale if len(calls) == 1 else real(f)

    monkeypatch.setattr(artefact, "_resolve", resolve_stale_once)
    assert artefact.load(folder)[1]["training"]["tag"] == "C" and len(calls) == 2
    monkeypatch.setattr(artefact, "_resolve", lambda f: stale)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    with pytest.raises(BusyError) as info:
        artefact.load(folder)
    assert info.value.exit_code == 75


# -- a crash at every step of save -------------------------------------------------------------------
class Crash(BaseException):
    """The process dies here: this and every later file-system call of the 'dead' process fails."""


def _instrument(monkeypatch, k: int) -> dict:
    import safetensors.torch

    state = {"calls": 0, "dead": False}
    targets = [(os, n) for n in ("replace", "rename", "symlink", "unlink", "rmdir", "mkdir", "truncate", "fsync")]
    targets += [(shutil, "rmtree"), (safetensors.torch, "save_file")]
    for mod, name in targets:
        real = getattr(mod, name)

        def wrapper(*args, _real=real, **kwargs):
            if state["dead"]:
                raise Crash
            state["calls"] += 1
            if state["calls"] == k:
                state["dead"] = True
                raise Crash
            return _real(*args, **kwargs)

        monkeypatch.setattr(mod, name, wrapper)
    # the save lock is released by the kernel when a process dies; not part of the simulation
    monkeypatch.setattr(artefact, "_lock", lambda folder: type("L", (), {"release": lambda self: None})())
    return state


def _meta(kind: str, tag: str) -> dict:
    if kind == "model":
        return model_meta(tag)
    return {**checkpoint_meta(), "training": {"tag": tag}}  # an extra key: kept as it is


def _start(layout: str, folder: Path, kind: str) -> dict | None:
    """The artefact before the crashing save: {tag: tensors} of what load may return."""
    if layout == "none":
        return None
    if layout == "v1":
        write_v1(folder, _meta(kind, "old"), tensors(1))
    else:
        artefact.save(folder, tensors(0), _meta(kind, "older"), kind=kind)
        artefact.save(folder, tensors(1), _meta(kind, "old"), kind=kind)
    return {"old": tensors(1)}


@pytest.mark.parametrize("layout,kind", [("v2", "model"), ("v1", "model"), ("none", "model"),
                                         ("v2", "checkpoint"), ("v1", "checkpoint")])
def test_crash_at_every_step_of_save_leaves_old_or_new(tmp_path, monkeypatch, layout, kind):
    """Checkpoints too: ``--resume`` loads the checkpoint, so it must never see a half-written one."""
    completed = False
    for k in range(1, 200):
        root = tmp_path / f"{layout}-{k}"
        root.mkdir()
        folder = root / ("model" if kind == "model" else ".model.checkpoint-convlstm")
        old = _start(layout, folder, kind)
        with monkeypatch.context() as m:
            state = _instrument(m, k)
            try:
                artefact.save(folder, tensors(2), _meta(kind, "new"), kind=kind)
                completed = not state["dead"]
            except Crash:
                pass
        with monkeypatch.context() as m:
            m.setattr(fsio, "pid_alive", lambda pid: False)  # the crashed process is dead now
            try:
                t, meta = artefact.load(folder, kind=kind)
            except MissingInputError:
                assert old is None, f"k={k}: the old artefact was lost"
            else:
                tag = meta["training"]["tag"]
                expect = {"new": tensors(2), **(old or {})}
                assert tag in expect and same(t, expect[tag]), f"k={k}: load gave {tag!r}, not old or new whole"
            # the next save repairs everything and cleans the dead run's leftovers
            artefact.save(folder, tensors(3), _meta(kind, "next"), kind=kind)
            assert artefact.load(folder, kind=kind)[1]["training"]["tag"] == "next"
            assert folder.is_symlink() and leftovers(folder) == [] and len(versions(folder)) <= 2, k
        if completed:
            break
        shutil.rmtree(root)
    assert completed and k > 5, "the save never completed: the simulation did not reach its end"


# -- real SIGKILLs and a concurrent reader ----------------------------------------------------------
SAVER = """
import json, sys, torch
sys.path.insert(0, {repo!r})
from hydrocast import artefact
folder, meta = sys.argv[1], json.load(open(sys.argv[2]))
i = int(sys.argv[3])
print("ready", flush=True)
while True:
    i += 1
    meta["training"] = {{"counter": i}}
    artefact.save(folder, {{"net.w": torch.full((128, 128), float(i), dtype=torch.float64),
                           "basin_channels": torch.zeros(2, 2, 8, 8)}}, meta)
"""


def _saver(tmp_path: Path, folder: Path, start: int) -> subprocess.Popen:
    script = tmp_path / "saver.py"
    script.write_text(SAVER.format(repo=str(REPO)))
    meta_file = tmp_path / "meta.json"
    meta_file.write_text(json.dumps(model_meta()))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(folder), str(meta_file), str(start)],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=str(tmp_path))
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _consistent(folder: Path) -> int:
    t, meta = artefact.load(folder)
    c = meta["training"]["counter"]
    assert torch.all(t["net.w"] == float(c)), "weights of one save with the description of another"
    return c


def test_sigkill_at_random_moments_then_load_succeeds(tmp_path):
    folder = tmp_path / "model"
    meta = model_meta()
    meta["training"] = {"counter": 0}
    artefact.save(folder, {"net.w": torch.zeros(128, 128, dtype=torch.float64),
                           "basin_channels": torch.zeros(2, 2, 8, 8)}, meta)
    rng = random.Random(7)
    for round_ in range(5):
        proc = _saver(tmp_path, folder, (round_ + 1) * 1_000_000)  # each round's counters are its own
        time.sleep(rng.uniform(0.0, 0.5))
        proc.kill()
        proc.wait()
        _consistent(folder)
    meta["training"] = {"counter": -1}
    artefact.save(folder, {"net.w": torch.full((128, 128), -1.0, dtype=torch.float64),
                           "basin_channels": torch.zeros(2, 2, 8, 8)}, meta)
    assert _consistent(folder) == -1
    assert leftovers(folder) == [] and len(versions(folder)) == 2


def test_reader_during_repeated_saves_gets_complete_artefacts_or_busy(tmp_path):
    folder = tmp_path / "model"
    meta = model_meta()
    meta["training"] = {"counter": 0}
    artefact.save(folder, {"net.w": torch.zeros(128, 128, dtype=torch.float64),
                           "basin_channels": torch.zeros(2, 2, 8, 8)}, meta)
    proc = _saver(tmp_path, folder, 0)
    seen, busy, loads = set(), 0, 0
    try:
        deadline = time.monotonic() + 120
        while (len(seen) < 5 or loads < 50) and time.monotonic() < deadline:
            try:
                seen.add(_consistent(folder))
            except BusyError:
                busy += 1
            loads += 1
    finally:
        proc.kill()
        proc.wait()
    assert len(seen) >= 2, f"the writer never replaced the artefact during {loads} loads"
    assert loads - busy >= 1


# -- disk full while saving -------------------------------------------------------------------------
def test_real_disk_full_keeps_the_previous_artefact(tmp_path):
    from tests.test_fsio import _mount_tmpfs, _umount

    where = tmp_path / "small"
    why = _mount_tmpfs(where, "size=2m")
    if why:
        pytest.skip(f"no small tmpfs for a real disk-full test: {why}")
    try:
        folder = where / "model"
        artefact.save(folder, tensors(1), model_meta("A"))
        big = {**tensors(2), "net.big": torch.ones(1024, 1024)}  # 4 MiB: cannot fit
        with pytest.raises(DiskFullError) as info:
            artefact.save(folder, big, model_meta("B"))
        assert str(info.value) == (f"{folder}/model.safetensors: disk full (No space left on device); "
                                   "nothing was replaced")
        assert info.value.exit_code == 74
        t, meta = artefact.load(folder)
        assert meta["training"]["tag"] == "A" and same(t, tensors(1))
        assert leftovers(folder) == [] and len(versions(folder)) == 1
        artefact.save(folder, tensors(3), model_meta("C"))  # what fits still saves
        assert artefact.load(folder)[1]["training"]["tag"] == "C"
    finally:
        _umount(where)


@pytest.mark.parametrize("step", ["weights", "json", "link"])
def test_disk_full_at_each_write_of_save_monkeypatched(tmp_path, monkeypatch, step):
    import builtins

    import safetensors.torch
    from safetensors import SafetensorError

    folder = tmp_path / "model"
    artefact.save(folder, tensors(1), model_meta("A"))
    if step == "weights":
        def save_file(*args, **kwargs):
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        monkeypatch.setattr(safetensors.torch, "save_file", save_file)
        name = "model.safetensors"
    elif step == "json":
        real_open = builtins.open

        def full_open(file, mode="r", *args, **kwargs):
            if str(file).endswith("model.json") and "w" in mode:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_open(file, mode, *args, **kwargs)
        monkeypatch.setattr(builtins, "open", full_open)
        name = "model.json"
    else:
        def symlink(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # tmpfs: no inode left
        monkeypatch.setattr(os, "symlink", symlink)
        name = ""
    with pytest.raises(DiskFullError) as info:
        artefact.save(folder, tensors(2), model_meta("B"))
    assert str(info.value) == f"{folder / name if name else folder}: disk full (No space left on device); " \
                              "nothing was replaced"
    monkeypatch.undo()
    assert artefact.load(folder)[1]["training"]["tag"] == "A"
    assert leftovers(folder) == []
