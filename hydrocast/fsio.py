"""Crash-safe writing: the one atomic-write helper, and write failures as one-line errors.

Every file hydrocast writes (cube, forecasts, hindcasts, skill tables, the files of a model
artefact) is written to a temporary ``.<name>.<pid>.tmp`` in the same folder, fsynced and
``os.replace``-d onto its name, and the folder is fsynced: a run killed at any moment leaves the
old file or the new one, never a mix. The temporary name carries the writer's pid so that
:func:`clean_stale` can tell the leftovers of a killed run (pid no longer alive) from the work of
a live one. (The pid test assumes the writers of one folder share a pid namespace: two machines
writing into one NFS folder could see each other's live temporaries as stale.)

Write failures become :class:`~hydrocast.errors.DiskFullError` (exit 74) or
:class:`~hydrocast.errors.OutputError` (exit 73) with one line naming the file
(:func:`write_errors`):

=========================================== =========================================================
failure                                     message
=========================================== =========================================================
``OSError`` ENOSPC, EDQUOT                  ``<file>: disk full (No space left on device); nothing was
                                            replaced``
``OSError`` EFBIG / EIO                     ``<file>: file too large ... / I/O error writing the file ...``
netCDF4 ``RuntimeError: NetCDF: HDF error``, netCDF4 hides the errno: when the file system is nearly full
``OSError`` errno -101 (NC_EHDFERR)         (:func:`nearly_full`) "disk full", else ``<file>: I/O error
                                            writing the file (NetCDF: HDF error)``
netCDF4 ``PermissionError`` on a full disk  "disk full" when nearly full (netCDF4 reports a failed
                                            create as EACCES)
safetensors ``SafetensorError ... os error  the errno in the message, as above
28``
``OSError`` EROFS, EACCES, EPERM            ``<file>: cannot write here (Read-only file system)`` (73)
=========================================== =========================================================
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import DiskFullError, HydrocastError, OutputError

#: netCDF-C's NC_EHDFERR: netCDF4 sometimes raises it as ``OSError(-101, "NetCDF: HDF error")``
NC_EHDFERR = -101
#: below this many free bytes (or 5 % of a small file system) an HDF error is taken for a full disk
NEARLY_FULL_BYTES = 16 * 1024 * 1024
_ERRNO_IN_TEXT = re.compile(r"(?:os error|\[Errno)\s*(-?\d+)")


# -- durability -----------------------------------------------------------------------------------
def fsync_dir(folder: str | os.PathLike) -> None:
    """Make the entries of ``folder`` (a rename, a new file) durable; errors are ignored (some file
    systems cannot fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def tmp_path(path: str | os.PathLike) -> Path:
    """The temporary name of ``path`` for this process: ``.<name>.<pid>.tmp`` in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Publish the complete file ``tmp`` as ``path``: fsync it, ``os.replace`` it, fsync the folder."""
    path = Path(path)
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def discard(path: str | os.PathLike) -> None:
    """Remove a temporary file, link or folder, ignoring errors. A file is truncated first: a
    netCDF4 file whose close failed stays open in the HDF5 library, and unlinking it alone would not
    give its space back to a full disk."""
    path = Path(path)
    try:
        if path.is_symlink() or not path.is_dir():
            if path.is_file() and not path.is_symlink():
                os.truncate(path, 0)
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass


# -- the atomic write -----------------------------------------------------------------------------
def atomic_write(path: str | os.PathLike, write_fn: Callable[[Path], object]) -> Path:
    """Write ``path`` atomically: ``write_fn(tmp_path)`` writes the whole file to a temporary
    ``.<name>.<pid>.tmp`` in the same folder, which is then fsynced and ``os.replace``-d onto
    ``path`` (and the folder fsynced). Leftover temporaries of ``path`` from killed runs are removed
    first (:func:`clean_stale`). On any exception the temporary file is removed, ``path`` is left as
    it was and the exception propagates, write failures translated by :func:`write_errors`
    (disk full → DiskFullError). Returns ``path``."""
    path = Path(path)
    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent, path.name)
    tmp = tmp_path(path)
    try:
        with write_errors(path):
            write_fn(tmp)
            commit(tmp, path)
    except BaseException:
        discard(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    def _write(tmp: Path) -> None:
        with open(tmp, "w", encoding=encoding) as fh:
            fh.write(text)
    return atomic_write(path, _write)


# -- leftovers of killed runs ---------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (ours included)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def stale_pattern(name: str) -> re.Pattern:
    """Matches ``.<name>.<pid>.tmp`` and ``.<name>.<pid>.old``; group 1 is the pid."""
    return re.compile(rf"^\.{re.escape(name)}\.(\d+)\.(?:tmp|old)$")


def clean_stale(folder: str | os.PathLike, name: str) -> list[Path]:
    """Remove the ``.<name>.<pid>.tmp`` / ``.<name>.<pid>.old`` leftovers in ``folder`` (files,
    links or folders) whose pid is not a live process: what a SIGKILLed earlier run left. Returns
    what was removed; errors (e.g. a read-only folder) are ignored."""
    folder = Path(folder)
    pat = stale_pattern(name)
    removed = []
    try:
        entries = os.listdir(folder)
    except OSError:
        return removed
    for entry in entries:
        m = pat.match(entry)
        if m and not pid_alive(int(m.group(1))):
            discard(folder / entry)
            removed.append(folder / entry)
    return removed


# -- write failures as one-line errors ------------------------------------------------------------
def error_number(exc: BaseException) -> int | None:
    """The errno of a write failure: ``exc.errno``, or the number in ``os error 28`` /
    ``[Errno 28]`` in the message (safetensors and netCDF4 put it there)."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int):
        return code
    m = _ERRNO_IN_TEXT.search(str(exc))
    return int(m.group(1)) if m else None


def nearly_full(folder: str | os.PathLike) -> bool:
    """True when the file system of ``folder`` has less than 16 MiB (or 5 % of its size, on a small
    one) left for us: a write that failed there failed for lack of space."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    return free < min(NEARLY_FULL_BYTES, total // 20) or (st.f_files > 0 and st.f_favail == 0)


def translate_write_error(exc: BaseException, path: str | os.PathLike) -> HydrocastError | None:
    """The one-line error for a failure while writing ``path`` (see the module docstring), or None
    when ``exc`` is not a write failure (it then propagates unchanged)."""
    path = Path(path)
    if isinstance(exc, HydrocastError):
        return None
    code = error_number(exc)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    hdf = isinstance(exc, (RuntimeError, OSError)) and (code == NC_EHDFERR or "HDF error" in text)
    if not isinstance(exc, (OSError, RuntimeError)) and code is None:
        return None
    if code in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"{path}: disk full ({os.strerror(code)}); nothing was replaced")
    if code == errno.EFBIG:
        return DiskFullError(f"{path}: file too large for the file system ({os.strerror(code)}); "
                             "nothing was replaced")
    if code == errno.EIO:
        return DiskFullError(f"{path}: I/O error writing the file ({os.strerror(code)}); nothing was replaced")
    if hdf or code in (errno.EACCES, errno.EPERM, errno.EROFS):
        if code != errno.EROFS and nearly_full(path.parent):
            return DiskFullError(f"{path}: disk full ({os.strerror(errno.ENOSPC)}); nothing was replaced")
        if hdf:
            return DiskFullError(f"{path}: I/O error writing the file ({text}); nothing was replaced")
        return OutputError(f"{path}: cannot write here ({os.strerror(code)})")
    return None


@contextmanager
def write_errors(path: str | os.PathLike) -> Iterator[None]:
    """Translate a write failure inside the block into a one-line error naming ``path``
    (:func:`translate_write_error`); anything else propagates unchanged. Use it around writes whose
    target is only replaced once they succeed: the message says "nothing was replaced"."""
    try:
        yield
    except Exception as exc:
        err = translate_write_error(exc, path)
        if err is None:
            raise
        raise err from exc


@contextmanager
def held_lock(target: str | os.PathLike, busy: str, timeout: float = 0, lock_path: str | os.PathLike | None = None
              ) -> Iterator[Path]:
    """Hold the file lock ``lock_path`` (default ``<target>.lock``) of a file about to be replaced:
    its folder is created, a write failure while doing so is the one-line error of
    :func:`write_errors`, a lock still held after ``timeout`` seconds is ``BusyError(busy)``
    (``busy`` may name ``{lock}``, the lock file). Yields the lock's path."""
    from filelock import FileLock, Timeout

    from .errors import BusyError

    target = Path(target)
    lock_path = Path(lock_path) if lock_path is not None else target.with_name(target.name + ".lock")
    lock = FileLock(str(lock_path), timeout=timeout)
    try:
        with write_errors(target):  # a read-only folder: exit 73; no space: 74
            target.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire()
    except Timeout:
        raise BusyError(busy.replace("{lock}", str(lock_path))) from None
    try:
        yield lock_path
    finally:
        lock.release()


# -- output folders -------------------------------------------------------------------------------
def prepare_out_dir(path: str | os.PathLike) -> Path:
    """Create the output folder ``path`` (and its parents) and check that files can be created in
    it, with a probe file rather than ``os.access`` (root passes every permission test, yet a
    read-only mount still refuses). OutputError (exit 73) when ``path`` is an existing file, lies
    under one, or is read-only / not writable; DiskFullError when there is no space for a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder (the output must be a folder)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{path}: cannot create the output folder: a part of the path is a file") from None
    except OSError as exc:
        err = translate_write_error(exc, path)
        if isinstance(err, DiskFullError):
            raise err from None
        raise OutputError(f"{path}: cannot create the output folder ({exc.strerror or exc})") from None
    probe = path / f".hydrocast-probe.{os.getpid()}.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
    except OSError as exc:
        err = translate_write_error(exc, path)
        if isinstance(err, DiskFullError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise err from None
        raise OutputError(f"{path}: cannot write in the output folder ({exc.strerror or exc})") from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
    return path
