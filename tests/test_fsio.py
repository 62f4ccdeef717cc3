"""hydrocast.fsio: the one atomic-write helper, leftovers of killed runs, write failures as one-line
errors (disk full → exit 74, unwritable output → exit 73), and disk full during ``ingest``.

Disk-full cases run twice: on a real 2 MiB tmpfs where this machine lets the tests mount one (root,
``mount -t tmpfs``; skipped with the reason otherwise) and with a monkeypatched failure, always."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from hydrocast import fsio, netcdf
from hydrocast.errors import EX_CANTCREAT, EX_IOERR, DiskFullError, OutputError


def dead_pid() -> int:
    """The pid of a process that has exited (as a SIGKILLed earlier run's)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not fsio.pid_alive(proc.pid)
    return proc.pid


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mount_tmpfs(where: Path, options: str) -> str | None:
    """Mount a tmpfs at ``where``; None on success, else why not."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"mount failed: {exc}"
    if proc.returncode != 0:
        return f"mount -t tmpfs refused here: {proc.stderr.strip() or proc.returncode}"
    return None


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30, check=False)


@pytest.fixture
def small_fs(tmp_path):
    """A real 2 MiB file system (tmpfs), or a skip saying why the machine refuses to mount one."""
    where = tmp_path / "small"
    why = _mount_tmpfs(where, "size=2m")
    if why:
        pytest.skip(f"no small tmpfs for a real disk-full test: {why}")
    yield where
    _umount(where)


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def fill(folder: Path, leave: int) -> Path:
    """Fill the file system of ``folder`` until about ``leave`` bytes are free."""
    filler = folder / "filler"
    n = max(free_bytes(folder) - leave, 0)
    with open(filler, "wb") as fh:
        fh.write(b"\0" * n)
    return filler


# -- atomic_write ---------------------------------------------------------------------------------
def test_atomic_write_replaces_and_removes_only_dead_runs_leftovers(tmp_path):
    target = tmp_path / "a.txt"
    dead = dead_pid()
    stale = tmp_path / f".a.txt.{dead}.tmp"
    stale.write_text("half of a killed run's file")
    stale_dir = tmp_path / f".a.txt.{dead}.old"
    stale_dir.mkdir()
    (stale_dir / "x").write_text("x")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        running = tmp_path / f".a.txt.{live.pid}.tmp"  # another run, still writing
        running.write_text("in progress")
        other = tmp_path / f".b.txt.{dead}.tmp"  # another file's leftover: not ours to judge
        other.write_text("b")
        fsio.atomic_write_text(target, "new\n")
        assert target.read_text() == "new\n"
        assert sorted(os.listdir(tmp_path)) == sorted(["a.txt", running.name, other.name])
    finally:
        live.kill()
        live.wait()


def test_netcdf_module_reexports_the_one_helper():
    assert netcdf.atomic_write is fsio.atomic_write
    assert netcdf.atomic_write_text is fsio.atomic_write_text


def test_atomic_write_disk_full_is_one_line_exit_74_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.nc"
    target.write_bytes(b"old forecast")

    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(DiskFullError) as info:
        fsio.atomic_write(target, write)
    assert str(info.value) == f"{target}: disk full (No space left on device); nothing was replaced"
    assert info.value.exit_code == EX_IOERR == 74
    assert target.read_bytes() == b"old forecast"
    assert os.listdir(tmp_path) == ["out.nc"]


def test_atomic_write_other_errors_propagate_unchanged(tmp_path):
    def write(tmp):
        raise ValueError("a bug, not a disk")

    with pytest.raises(ValueError, match="a bug"):
        fsio.atomic_write(tmp_path / "x", write)
    assert os.listdir(tmp_path) == []


# -- translation of write failures ----------------------------------------------------------------
def _safetensor_error(text):
    from safetensors import SafetensorError

    return SafetensorError(text)


@pytest.mark.parametrize("exc,full,kind,needle", [
    (OSError(errno.ENOSPC, "No space left on device"), False, DiskFullError, "disk full (No space left on device)"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), False, DiskFullError, "disk full (Disk quota exceeded)"),
    (OSError(errno.EFBIG, "File too large"), False, DiskFullError, "file too large for the file system"),
    (OSError(errno.EIO, "Input/output error"), False, DiskFullError, "I/O error writing the file (Input/output"),
    (RuntimeError("NetCDF: HDF error"), True, DiskFullError, "disk full (No space left on device)"),
    (RuntimeError("NetCDF: HDF error"), False, DiskFullError, "I/O error writing the file (NetCDF: HDF error)"),
    (OSError(-101, "NetCDF: HDF error"), True, DiskFullError, "disk full"),
    (OSError(-101, "NetCDF: HDF error"), False, DiskFullError, "I/O error writing the file"),
    (PermissionError(errno.EACCES, "Permission denied"), True, DiskFullError, "disk full"),  # netCDF4's create
    (PermissionError(errno.EACCES, "Permission denied"), False, OutputError, "cannot write here (Permission denied)"),
    (OSError(errno.EROFS, "Read-only file system"), True, OutputError, "cannot write here (Read-only file system)"),
    ("safetensors", False, DiskFullError, "disk full (No space left on device)"),
])
def test_write_errors_translation(tmp_path, monkeypatch, exc, full, kind, needle):
    if exc == "safetensors":
        exc = _safetensor_error("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr(fsio, "nearly_full", lambda folder: full)
    target = tmp_path / "cube.nc"
    with pytest.raises(kind) as info, fsio.write_errors(target):
        raise exc
    msg = str(info.value)
    assert msg.startswith(f"{target}: ") and needle in msg and "\n" not in msg
    assert isinstance(info.value.__cause__, type(exc))


@pytest.mark.parametrize("exc", [ValueError("x"), RuntimeError("NetCDF: Not a valid ID"), KeyError("k"),
                                 OSError(errno.ENOENT, "No such file")])
def test_write_errors_leaves_other_errors_alone(tmp_path, monkeypatch, exc):
    monkeypatch.setattr(fsio, "nearly_full", lambda folder: True)
    with pytest.raises(type(exc)), fsio.write_errors(tmp_path / "x"):
        raise exc


def test_nearly_full_thresholds(tmp_path, monkeypatch):
    class St:
        f_frsize = 4096
        f_files = 1000
        f_favail = 10

    def fake(free_blocks, total_blocks, favail=10):
        st = St()
        st.f_bavail, st.f_blocks, st.f_favail = free_blocks, total_blocks, favail
        return lambda path: st

    mib = 256  # blocks of 4 KiB
    cases = [((15 * mib, 100_000 * mib), True),  # 15 MiB free of 100 GiB: full
             ((17 * mib, 100_000 * mib), False),  # 17 MiB free: not full
             ((4 * mib, 100 * mib), True),  # 4 % of a small disk
             ((6 * mib, 100 * mib), False),  # 6 % of it
             ((500 * mib, 1000 * mib, 0), True)]  # no inode left
    for args, expected in cases:
        monkeypatch.setattr(os, "statvfs", fake(*args))
        assert fsio.nearly_full(tmp_path) is expected, args


# -- prepare_out_dir ------------------------------------------------------------------------------
def test_prepare_out_dir_creates_and_probes(tmp_path):
    out = fsio.prepare_out_dir(tmp_path / "a" / "b")
    assert out.is_dir() and os.listdir(out) == []


def test_prepare_out_dir_refuses_a_file_and_a_path_under_a_file(tmp_path):
    f = tmp_path / "forecasts"
    f.write_text("I am a file")
    for path in (f, f / "sub"):
        with pytest.raises(OutputError) as info:
            fsio.prepare_out_dir(path)
        assert str(info.value).startswith(f"{path}: ") and info.value.exit_code == EX_CANTCREAT == 73
    assert f.read_text() == "I am a file"


def test_prepare_out_dir_probe_catches_what_os_access_misses(tmp_path, monkeypatch):
    """Root passes os.access everywhere: the probe file is what finds a read-only mount."""
    real_open = os.open

    def refusing(path, flags, *args, **kwargs):
        if ".hydrocast-probe." in str(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "access", lambda *a, **k: True)
    monkeypatch.setattr(os, "open", refusing)
    with pytest.raises(OutputError, match="Read-only file system") as info:
        fsio.prepare_out_dir(tmp_path / "out")
    assert str(info.value).startswith(f"{tmp_path / 'out'}: ")


def test_prepare_out_dir_on_a_real_read_only_mount(tmp_path):
    ro = tmp_path / "ro"
    why = _mount_tmpfs(ro, "ro,size=1m")
    if why:
        pytest.skip(f"no read-only mount: {why}")
    try:
        for path in (ro, ro / "new"):
            with pytest.raises(OutputError, match="Read-only file system"):
                fsio.prepare_out_dir(path)
    finally:
        _umount(ro)


# -- real disk full on a small tmpfs --------------------------------------------------------------
def test_real_disk_full_text_file(small_fs):
    target = small_fs / "table.csv"
    target.write_text("old table\n")
    free = free_bytes(small_fs)
    with pytest.raises(DiskFullError) as info:
        fsio.atomic_write_text(target, "x" * (3 * 1024 * 1024))
    assert str(info.value) == f"{target}: disk full (No space left on device); nothing was replaced"
    assert target.read_text() == "old table\n"
    assert os.listdir(small_fs) == ["table.csv"]
    assert free_bytes(small_fs) == free  # the temporary file's space was given back


def test_real_disk_full_netcdf_dataset(small_fs):
    target = small_fs / "hindcast.nc"
    small = xr.Dataset({"q": (("t",), np.arange(3, dtype="float32"))})
    netcdf.atomic_write(target, lambda tmp: small.to_netcdf(tmp, engine="netcdf4"))
    before = sha(target)
    rng = np.random.default_rng(0)
    big = xr.Dataset({"q": (("t", "y", "x"), rng.random((40, 100, 100)).astype("float32"))})  # 1.6 MB
    fill(small_fs, leave=600_000)
    with pytest.raises(DiskFullError) as info:
        netcdf.atomic_write(target, lambda tmp: big.to_netcdf(tmp, engine="netcdf4"))
    assert str(info.value).startswith(f"{target}: disk full (No space left on device)")
    assert sha(target) == before
    with xr.open_dataset(target) as ds:
        np.testing.assert_array_equal(ds["q"].values, [0, 1, 2])
    assert sorted(os.listdir(small_fs)) == ["filler", "hindcast.nc"]


# -- disk full during ingest ----------------------------------------------------------------------
def _ingest_project(root: Path, days):
    from tests.test_ingest import make_project

    return make_project(root, days=days)


def _cube_state(cube: Path):
    with xr.open_dataset(cube) as ds:
        return sha(cube), [str(t)[:10] for t in ds["time"].values], ds["precipitation"].values.copy()


def _check_failed_ingest(res, cube: Path, before, needle: str):
    assert res.exit_code == 74, res.output
    err = res.stderr.strip()
    assert err.count("\n") == 0 and str(cube) in err and needle in err, err
    assert _cube_state(cube)[0] == before[0]
    after = _cube_state(cube)
    assert after[1] == before[1]
    np.testing.assert_array_equal(after[2], before[2])
    assert not [e for e in os.listdir(cube.parent) if e.endswith(".tmp")]


def test_real_disk_full_during_ingest_keeps_the_cube(tmp_path):
    from tests.test_ingest import DAYS, cube_path, ingest

    work = tmp_path / "p" / "work"
    why = _mount_tmpfs(work, "size=2m")
    if why:
        pytest.skip(f"no small tmpfs for a real disk-full ingest: {why}")
    try:
        cfg = _ingest_project(tmp_path / "p", DAYS[:2])
        assert ingest(cfg).exit_code == 0
        cube = cube_path(cfg)
        before = _cube_state(cube)
        _ingest_project(tmp_path / "p", DAYS)  # two more days arrive
        fill(work, leave=os.path.getsize(cube) // 3)
        res = ingest(cfg)
        _check_failed_ingest(res, cube, before, "disk full")
        (work / "filler").unlink()  # space again: the next run completes
        res = ingest(cfg)
        assert res.exit_code == 0, res.output
        assert _cube_state(cube)[1] == DAYS
    finally:
        _umount(work)


@pytest.mark.parametrize("full,needle", [(True, "disk full (No space left on device)"),
                                         (False, "I/O error writing the file (NetCDF: HDF error)")])
def test_disk_full_during_ingest_commit_monkeypatched(tmp_path, monkeypatch, full, needle):
    """netCDF4 hides the errno: an HDF error while closing the new cube says "disk full" when the
    file system is nearly full, an I/O error otherwise; exit 74 both times, the old cube kept."""
    from tests.test_ingest import DAYS, cube_path, ingest

    cfg = _ingest_project(tmp_path, DAYS[:2])
    assert ingest(cfg).exit_code == 0
    cube = cube_path(cfg)
    before = _cube_state(cube)
    _ingest_project(tmp_path, DAYS)

    def failing_commit(tmp, path):
        raise RuntimeError("NetCDF: HDF error")

    monkeypatch.setattr(fsio, "commit", failing_commit)
    monkeypatch.setattr(fsio, "nearly_full", lambda folder: full)
    _check_failed_ingest(ingest(cfg), cube, before, needle)


def test_disk_full_while_writing_days_monkeypatched(tmp_path, monkeypatch):
    from hydrocast.cube import CubeWriter, _writes
    from tests.test_ingest import DAYS, cube_path, ingest

    cfg = _ingest_project(tmp_path, DAYS[:2])
    assert ingest(cfg).exit_code == 0
    cube = cube_path(cfg)
    before = _cube_state(cube)
    _ingest_project(tmp_path, DAYS)
    real = CubeWriter.write_days  # (it writes through write_tile, itself a @_writes method)

    def write_days(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(CubeWriter, "write_days", _writes(write_days))
    _check_failed_ingest(ingest(cfg), cube, before, "disk full (No space left on device)")


def test_cube_writer_removes_a_killed_ingests_temporary_file(tmp_path):
    from tests.test_ingest import DAYS, cube_path, ingest

    cfg = _ingest_project(tmp_path, DAYS)
    cube = cube_path(cfg)
    cube.parent.mkdir(parents=True)
    stale = cube.parent / f".cube.nc.{dead_pid()}.tmp"
    stale.write_bytes(b"\x89HDF half a cube")
    assert ingest(cfg).exit_code == 0
    assert not stale.exists() and cube.exists()


def test_ingest_into_a_read_only_folder_is_exit_73(tmp_path):
    from tests.test_ingest import DAYS, cube_path, ingest

    cfg = _ingest_project(tmp_path, DAYS[:1])
    work = tmp_path / "work"
    why = _mount_tmpfs(work, "ro,size=1m")
    if why:
        pytest.skip(f"no read-only mount: {why}")
    try:
        res = ingest(cfg)
        assert res.exit_code == 73, res.output
        err = res.stderr.strip()
        assert err.count("\n") == 0 and str(cube_path(cfg)) in err and "Read-only file system" in err, err
    finally:
        _umount(work)
