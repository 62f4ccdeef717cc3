"""The measuring tools of benchmarks/fault_suite.py: the rename hook kills and stops a process at
the exact rename asked for, and the leftover/partial-file checks see what they should.

The suite itself (it runs the hydrocast CLI many times) is a report, not a test:
``python benchmarks/fault_suite.py --repo PATH``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import netCDF4
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fs():
    spec = importlib.util.spec_from_file_location("fault_suite", REPO / "benchmarks" / "fault_suite.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fault_suite"] = mod
    spec.loader.exec_module(mod)
    return mod


CHILD = """
import os, sys
sys.path.insert(0, sys.argv[1])
import _hc_fault
root = sys.argv[2]
os.replace(os.path.join(sys.argv[3], "outside"), os.path.join(sys.argv[3], "outside2"))  # not under root
for name in ("a", "b", "c"):
    os.replace(os.path.join(root, name), os.path.join(root, name + "2"))
os.rename(os.path.join(root, "d"), os.path.join(root, "d2"))
"""


def _child(fs, tmp_path: Path, fault: str, log: Path | None = None) -> subprocess.Popen:
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "_hc_fault.py").write_text(fs.HOOK)
    root, other = tmp_path / "root", tmp_path / "other"
    for folder in (root, other):
        folder.mkdir(exist_ok=True)
    for name in "abcd":
        (root / name).write_text(name)
    (other / "outside").write_text("x")
    env = dict(os.environ, HC_FAULT=fault, HC_FAULT_ROOT=str(root))
    if log:
        env["HC_FAULT_LOG"] = str(log)
    return subprocess.Popen([sys.executable, "-c", CHILD, str(hook), str(root), str(other)], env=env)


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_kill_before_the_nth_rename(fs, tmp_path):
    p = _child(fs, tmp_path, "kill-before:2")
    assert p.wait(60) == -signal.SIGKILL
    assert _names(tmp_path / "root") == {"a2", "b", "c", "d"}  # the 2nd rename (b) never happened
    assert _names(tmp_path / "other") == {"outside2"}  # a rename outside the root is not counted


def test_kill_after_the_nth_rename(fs, tmp_path):
    p = _child(fs, tmp_path, "kill-after:2")
    assert p.wait(60) == -signal.SIGKILL
    assert _names(tmp_path / "root") == {"a2", "b2", "c", "d"}


def test_log_counts_os_rename_and_os_replace(fs, tmp_path):
    log = tmp_path / "renames.jsonl"
    p = _child(fs, tmp_path, "log", log)
    assert p.wait(60) == 0
    entries = [json.loads(s) for s in log.read_text().splitlines()]
    assert [(e["n"], e["op"], Path(e["dst"]).name) for e in entries] == [
        (1, "replace", "a2"), (2, "replace", "b2"), (3, "replace", "c2"), (4, "rename", "d2")]


def test_stop_after_the_nth_rename_then_continue(fs, tmp_path):
    p = _child(fs, tmp_path, "stop-after:3")
    state = ""
    for _ in range(600):
        state = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            break
        time.sleep(0.05)
    assert state == "T"
    assert _names(tmp_path / "root") == {"a2", "b2", "c2", "d"}  # stopped right after the 3rd
    os.kill(p.pid, signal.SIGCONT)
    assert p.wait(60) == 0
    assert _names(tmp_path / "root") == {"a2", "b2", "c2", "d2"}


def test_stale_names(fs, tmp_path):
    for name in (".model.1234.tmp", "..model.checkpoint.77.old", "model", "cube.nc", "cube.nc.lock",
                 ".cube.nc.tmp-ab12", "template.nc", "folder.tmpl"):
        (tmp_path / name).mkdir()
    (tmp_path / "model" / ".x.5.tmp").write_text("")
    assert set(fs.stale(tmp_path)) == {".cube.nc.tmp-ab12", ".model.1234.tmp", "..model.checkpoint.77.old",
                                       "model/.x.5.tmp"}


def test_visible_partial_and_hidden(fs, tmp_path):
    good = tmp_path / "good.nc"
    with netCDF4.Dataset(good, "w") as ds:
        ds.createDimension("t", 1000)
        ds.createVariable("q", "f4", ("t",))[:] = np.arange(1000, dtype="f4")
    data = good.read_bytes()
    (tmp_path / "cut.nc").write_bytes(data[: len(data) // 2])
    (tmp_path / ".hidden.nc.9.tmp").write_bytes(data[:100])
    (tmp_path / "metrics.csv").write_text("model,basin,nse\nconvlstm,PT01,0.5\nconvlstm,PT02")
    bad = fs.visible_partial(tmp_path)
    assert [b.split(":")[0] for b in bad] == ["cut.nc", "metrics.csv"]
    assert fs.hidden_files(tmp_path) == [".hidden.nc.9.tmp"]
    assert fs.nc_ok(good) is None
