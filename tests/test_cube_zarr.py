"""The Zarr cube store (hydrocast.cube.zarrstore): the same cube as the NetCDF file, appends and
replacements that touch only their days' chunks, and a rollback journal that survives SIGKILL at
every write. Uses test_ingest's tiny synthetic project (IMERG / ESA CCI / DEM in their real layouts)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from hydrocast import cube, fsio
from hydrocast.cube import zarrstore
from hydrocast.errors import BusyError
from hydrocast.samples import CubeReader
from tests.test_ingest import CCI_LAT, CCI_LON, DAYS, IM_LAT, IM_LON, ingest, make_project, rain, sm_field
from tools import sampledata as sd

REPO = Path(__file__).resolve().parents[1]


def zarr_project(root: Path, days=DAYS, chunk_days: int = 2, run: str = "final") -> Path:
    cfg = make_project(root, days=days, run=run)
    text = cfg.read_text().replace('path = "work/cube.nc"',
                                   f'path = "work/cube.zarr"\nchunks = [{chunk_days}, 256, 256]')
    cfg.write_text(text)
    return cfg


def add_day(root: Path, i: int, day: str, run: str = "final", scale: float = 1.0, sm: bool = True) -> None:
    sd.write_imerg_day(root / "raw/imerg" / sd.imerg_day_name(day, run=run), day, rain(i) * scale, IM_LON, IM_LAT,
                       run=run)
    if not sm:
        return
    sm, flag = sm_field(i)
    sd.write_esacci_day(root / "raw/esacci" / sd.esacci_name(day), day, sm, flag, CCI_LON, CCI_LAT)


def files(store: Path) -> dict[str, str]:
    """Every file of the store (and of its journal, if any) -> digest of its bytes."""
    out = {}
    for base in (store, zarrstore.journal_dir(store)):
        for folder, _, names in os.walk(base):
            for n in names:
                p = Path(folder) / n
                out[str(p.relative_to(store.parent))] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def test_zarr_cube_is_the_netcdf_cube(tmp_path):
    """Same values, days, provenance and CF attributes in both stores (xarray opens each as is)."""
    nc_cfg = make_project(tmp_path / "nc")
    z_cfg = zarr_project(tmp_path / "z")
    assert ingest(nc_cfg).exit_code == 0
    res = ingest(z_cfg)
    assert res.exit_code == 0, res.output
    store = z_cfg.parent / "work" / "cube.zarr"
    assert (store / "zarr.json").is_file() and not (z_cfg.parent / "work" / "cube.nc").exists()
    with xr.open_dataset(nc_cfg.parent / "work" / "cube.nc") as a, xr.open_zarr(store) as b:
        assert set(a.data_vars) == set(b.data_vars) and dict(a.sizes) == dict(b.sizes)
        for name in list(a.data_vars) + ["time", "x", "y"]:
            if name == "crs":  # a grid mapping's value means nothing (NetCDF leaves it unwritten)
                pass
            elif a[name].dtype.kind in "OUT":
                def text(values):  # (the signature covers the files' paths, which differ between the projects)
                    return [str(v).rsplit(" sig=", 1)[0] for v in values]
                assert text(a[name].values) == text(b[name].values), name
            else:
                np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
            assert a[name].attrs == b[name].attrs, name
        skip = {"date_created", "history", "hydrocast_static_source"}  # (the signature holds the file's path)
        def kept(attrs):
            return {k: v for k, v in attrs.items() if k not in skip}
        assert kept(a.attrs) == kept(b.attrs)
        assert b["time"].dtype.kind == "M" and b.attrs["Conventions"].startswith("CF-1.8")
    # the training reader gives the same normalisation statistics from either store
    with CubeReader(nc_cfg.parent / "work" / "cube.nc") as r1, CubeReader(store) as r2:
        s1 = r1.compute_stats(["precipitation", "soil_moisture"], ["elevation"], (DAYS[0], DAYS[-1]))
        s2 = r2.compute_stats(["precipitation", "soil_moisture"], ["elevation"], (DAYS[0], DAYS[-1]))
        assert s1.stats == s2.stats
        np.testing.assert_array_equal(r1.raw("soil_moisture", 1, 3), r2.raw("soil_moisture", 1, 3))
        assert [s.rsplit(" sig=")[0] for s in r2.store.strings("precipitation_source", 0, 2)] == \
            [s.rsplit(" sig=")[0] for s in r1.store.strings("precipitation_source", 0, 2)]


def test_append_and_replace_touch_only_their_chunks(tmp_path):
    cfg = zarr_project(tmp_path, chunk_days=2)  # 4 days: time chunks 0 and 1, both full
    assert ingest(cfg).exit_code == 0
    store = cfg.parent / "work" / "cube.zarr"
    with xr.open_zarr(store) as ds:
        before = ds["precipitation"].values.copy()
    f0 = files(store)

    add_day(tmp_path, 4, "2020-03-05")  # one new day -> a new time chunk (2)
    res = ingest(cfg)
    assert res.exit_code == 0, res.output
    f1 = files(store)
    changed = {k for k in f1 if f0.get(k) != f1[k]}
    data_changes = {k for k in changed if not k.endswith("zarr.json")}
    maps = {k for k in data_changes if k.split("/")[1] in ("precipitation", "soil_moisture")}
    assert maps and all("/c/2/" in k for k in maps), sorted(maps)  # the new time chunk of the maps only
    axis = ("time", "time_bnds", "precipitation_source", "soil_moisture_source")  # (one long chunk along time)
    assert {k.split("/")[1] for k in data_changes - maps} <= set(axis), sorted(data_changes)
    assert all(f0[k] == f1[k] for k in f0 if k.split("/")[1] not in axis and "/c/" in k and "/c/2/" not in k)
    with xr.open_zarr(store) as ds:
        assert ds.sizes["time"] == 5 and str(ds["time"].values[-1])[:10] == "2020-03-05"
        np.testing.assert_array_equal(ds["precipitation"].values[:4], before)
        assert np.isfinite(ds["precipitation"].values[4]).all()

    # a better IMERG run of day 2 (index 1, chunk 0) replaces it: only chunk 0 of precipitation changes
    add_day(tmp_path, 1, DAYS[1], run="final", scale=1.7, sm=False)
    res = ingest(cfg)
    assert res.exit_code == 0 and json.loads(res.stdout)["days_replaced"] == 1, res.output
    f2 = files(store)
    data_changes = {k for k in f2 if f1.get(k) != f2[k] and not k.endswith("zarr.json")}
    assert data_changes and all(k.startswith("cube.zarr/precipitation") and "/c/0" in k for k in data_changes), \
        sorted(data_changes)
    with xr.open_zarr(store) as ds:
        p = ds["precipitation"].values
        np.testing.assert_array_equal(p[[0, 2, 3]], before[[0, 2, 3]])
        assert not np.allclose(p[1], before[1])

    res = ingest(cfg)  # nothing new: nothing is written
    assert res.exit_code == 0 and files(store) == f2


CHILD = """
import os, signal, sys
import zarr.core.array as za
from hydrocast.cube import zarrstore
target, count = int(sys.argv[1]), [0]
def counted(fn):
    def wrapper(*a, **k):
        count[0] += 1
        if count[0] == target:
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*a, **k)
    return wrapper
za.Array.__setitem__ = counted(za.Array.__setitem__)   # every write of the in-place update
zarrstore._Journal.commit = counted(zarrstore._Journal.commit)  # and the commit itself
zarrstore._copy = counted(zarrstore._copy)
from hydrocast.cli import main
sys.argv = ["hydrocast", "ingest", "--config", sys.argv[2], "--quiet"]
main()
"""


def _run_child(cfg: Path, target: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", CHILD, str(target), str(cfg)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode


def test_sigkill_at_every_write_leaves_the_old_cube(tmp_path):
    """SIGKILL an appending and replacing ingest before its k-th write (chunk writes, journal
    copies, the commit): the next reader rolls the store back to exactly the files it had (byte
    for byte); a kill after the commit point leaves the new cube; a later ingest completes it."""
    cfg = zarr_project(tmp_path, chunk_days=2)
    assert ingest(cfg).exit_code == 0
    store = cfg.parent / "work" / "cube.zarr"
    old = files(store)
    for i, d in enumerate(["2020-03-05", "2020-03-06", "2020-03-07"], start=4):
        add_day(tmp_path, i, d)
    add_day(tmp_path, 1, DAYS[1], scale=1.3)  # and a replaced day

    killed = 0
    for target in range(1, 200):
        rc = _run_child(cfg, target)
        if rc == 0:
            break  # the run got past its last counted write: it finished
        assert rc == -signal.SIGKILL
        killed += 1
        assert zarrstore.needs_recovery(store)
        index = cube.read_index(store)  # the lock is free: this reader repairs the store
        assert not zarrstore.needs_recovery(store) and len(index.days) == 4
        assert files(store) == old, f"kill before write {target}: the store differs from the old one"
    assert killed >= 10  # (the update really was cut at many places)
    with xr.open_zarr(store) as ds:
        assert ds.sizes["time"] == 7 and np.isfinite(ds["precipitation"].values).all()
        done = {v: ds[v].values.copy() for v in ("precipitation", "soil_moisture")}

    # the same result as an ingest that was never killed
    fresh = zarr_project(tmp_path / "fresh", chunk_days=2)
    assert ingest(fresh).exit_code == 0
    for i, d in enumerate(["2020-03-05", "2020-03-06", "2020-03-07"], start=4):
        add_day(tmp_path / "fresh", i, d)
    add_day(tmp_path / "fresh", 1, DAYS[1], scale=1.3)
    assert ingest(fresh).exit_code == 0
    with xr.open_zarr(fresh.parent / "work" / "cube.zarr") as ds:
        for v, values in done.items():
            np.testing.assert_array_equal(ds[v].values, values)


def test_kill_during_recovery_and_a_reader_during_a_write(tmp_path):
    cfg = zarr_project(tmp_path, chunk_days=2)
    assert ingest(cfg).exit_code == 0
    store = cfg.parent / "work" / "cube.zarr"
    old = files(store)
    add_day(tmp_path, 4, "2020-03-05")
    add_day(tmp_path, 0, DAYS[0], scale=2.0)
    assert _run_child(cfg, 6) == -signal.SIGKILL  # mid-update: a journal is left
    assert zarrstore.needs_recovery(store)

    # while another run holds the cube's lock, a reader refuses rather than read half-written days
    with fsio.held_lock(store, "busy"):
        with pytest.raises(BusyError):
            cube.read_index(store)
        with pytest.raises(BusyError):
            CubeReader(store)

    # a recovery killed at its second copy-back is finished by the next one
    script = ("import os, signal, sys\nfrom hydrocast.cube import zarrstore\nn = [0]\norig = zarrstore._copy\n"
              "def c(*a):\n    n[0] += 1\n    if n[0] == 2: os.kill(os.getpid(), signal.SIGKILL)\n    orig(*a)\n"
              "zarrstore._copy = c\nzarrstore.recover(zarrstore.Path(sys.argv[1]))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rc = subprocess.run([sys.executable, "-c", script, str(store)], env=env).returncode
    assert rc == -signal.SIGKILL and zarrstore.needs_recovery(store)
    zarrstore.ensure_readable(store)
    assert files(store) == old


def test_days_before_the_store_rewrite_it_whole(tmp_path):
    """A record extended backwards cannot append: the whole store is rewritten and swapped in;
    a kill between the two renames of the swap is repaired by the next reader."""
    cfg = zarr_project(tmp_path, days=DAYS[2:], chunk_days=2)
    assert ingest(cfg).exit_code == 0
    store = cfg.parent / "work" / "cube.zarr"
    with xr.open_zarr(store) as ds:
        late = ds["precipitation"].values.copy()
    for i, d in enumerate(DAYS[:2]):
        add_day(tmp_path, i, d)
    res = ingest(cfg)
    assert res.exit_code == 0, res.output
    with xr.open_zarr(store) as ds:
        assert ds.sizes["time"] == 4 and str(ds["time"].values[0])[:10] == DAYS[0]
        np.testing.assert_array_equal(ds["precipitation"].values[2:], late)
        assert np.isfinite(ds["precipitation"].values[:2]).all()
    before = files(store)
    prev = store.with_name(f".{store.name}.999999999.prev")  # a swap killed after its first rename
    os.rename(store, prev)
    index = cube.read_index(store)
    assert len(index.days) == 4 and not prev.exists() and files(store) == before


def test_config_chooses_and_checks_the_store(tmp_path):
    from hydrocast.config import load
    from hydrocast.errors import ConfigError

    cfg = zarr_project(tmp_path)
    text = cfg.read_text()
    cfg.write_text(text.replace("chunks = [2, 256, 256]", "chunks = [2, 256]"))
    with pytest.raises(ConfigError, match="chunks"):
        load(cfg)
    cfg.write_text(text.replace('path = "work/cube.zarr"', 'path = "work/cube.zarr"\nformat = "hdf"'))
    with pytest.raises(ConfigError, match="format"):
        load(cfg)
    # a NetCDF cube where the config now asks for a Zarr store: refused, the file untouched
    cfg.write_text(text.replace('path = "work/cube.zarr"', 'path = "work/cube.nc"'))
    assert ingest(cfg).exit_code == 0
    nc = cfg.parent / "work" / "cube.nc"
    before = nc.read_bytes()
    cfg.write_text(text.replace('path = "work/cube.zarr"', 'path = "work/cube.nc"\nformat = "zarr"'))
    res = ingest(cfg)
    assert res.exit_code == 78 and "format" in res.stderr and nc.read_bytes() == before
