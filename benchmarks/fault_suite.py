"""The fault suite: hydrocast tried as a hostile world would, one table row per case.

``python benchmarks/fault_suite.py --repo PATH [--quick | --all-moments] [--strict] [--only GROUP] [--keep]``

PATH is any hydrocast checkout (this one by default, an old commit's worktree for a "before"
table). Every command runs as a separate process, the way cron runs it::

    <python> -c "import sys; sys.path.insert(0, PATH); from hydrocast.cli import main; main()" ARGS

with ``--python`` (default: this checkout's ``.venv/bin/python``), ``OMP_NUM_THREADS=1`` and
``--quiet``. The suite builds one tiny project in a temporary folder from this checkout's
``sample_data/`` (the 32 x 32 sample grid, days 2015-01-01 .. 2016-04-15, a 4-channel ConvLSTM,
1 epoch, 60-day windows), ingests one cube and trains one model, and gives every case its own
copy of them. It prints ``case | expected | got | result`` (got = exit code and the first
``hydrocast:`` line of stderr, or the first stderr line, plus what a check found) and a summary
line ``N passed, M failed, K skipped``. It exits 0 (it is a report) unless ``--strict`` is given
and a case failed. The suite changes nothing outside its temporary folder.

How the moments of a kill are chosen
------------------------------------
* **At a time**: SIGKILL to the process group after a fraction of the duration measured on an
  undisturbed run of the same command ("dry run").
* **At a rename**: every atomic replacement ends in ``os.rename``/``os.replace`` (pathlib and
  shutil call them too). For these cases a small hook (``_hc_fault.py``, written into the
  temporary folder and imported before ``hydrocast.cli``) wraps both functions and sends the
  process SIGKILL (or SIGSTOP, for the concurrency cases) right before or right after the N-th
  rename under the case folder: e.g. between the two renames of an artefact replacement, which
  no timer can hit. The dry run logs the renames (``HC_FAULT=log``) to number them. A code path
  that swaps without rename (e.g. ``renameat2`` through ctypes) is only covered by the timed
  kills.

Cases
-----
path traversal (hostile basin ids from the artefact, GeoJSON, CSV, ``--basin``, train's basins
file); SIGKILL of train (timed, before every rename, after the last), of ingest, predict and
evaluate; concurrent ingests and trains (the second exits 75: the first is SIGSTOPped once it
holds a lock, found in ``/proc/locks``), predict and evaluate while train is stopped inside the
artefact replacement; tampered artefacts; disk full on a small tmpfs (ingest, train, predict);
bad IMERG files; read-only and regular-file ``--out``; an invalid ``[grid]`` for every command.
Mounts (tmpfs) need root; where ``mount`` is refused the case is SKIPped with the reason.
By default each command is killed during its work (timed), before the first rename, and at every
step of the artefact swap (train); ``--quick`` keeps one or two moments per command and three of
the five grids; ``--all-moments`` kills before every rename, after the last one and at 30/60/90 %.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

HERE = Path(__file__).resolve().parents[1]  # the suite's checkout: sample data and the sample writer
SAMPLE = HERE / "sample_data"

# exit codes (hydrocast/errors.py; repeated here so that the suite runs against old checkouts too)
OK, DATAERR, NOINPUT, NOUSER, SOFTWARE, CANTCREAT, IOERR, TEMPFAIL, CONFIG = 0, 65, 66, 67, 70, 73, 74, 75, 78

FIRST_DAY, LAST_DAY = dt.date(2015, 1, 1), dt.date(2016, 4, 15)  # the shared cube
EXTRA_FIRST, EXTRA_LAST = dt.date(2016, 4, 16), dt.date(2016, 5, 15)  # "new days" for ingest cases
EARLIER_ISSUE = "2016-04-05"  # the "earlier forecast" kept in --out folders
EVAL_PERIOD = "2016-03-01:2016-03-31"
BAD_DAY = dt.date(2016, 4, 20)  # the day of the bad IMERG files

GRID = """[grid]
crs = "EPSG:4326"
bounds = [-8.8, 40.0, -7.2, 41.6]
resolution = 0.05
"""
BAD_GRIDS = {
    "bounds not a whole number of cells": GRID.replace("41.6]", "41.63]"),
    "west > east": GRID.replace("[-8.8, 40.0, -7.2, 41.6]", "[-7.2, 40.0, -8.8, 41.6]"),
    "NaN bound": GRID.replace("[-8.8,", "[nan,"),
    "negative resolution": GRID.replace("resolution = 0.05", "resolution = -0.05"),
    "unknown CRS": GRID.replace('"EPSG:4326"', '"EPSG:999999"'),
}
TRAIN = """[train]
model_dir = "{model}"
train_period = ["2015-01-01", "2015-12-31"]
validation_period = ["2016-01-01", "2016-03-31"]
test_period = ["2016-03-01", "2016-03-31"]
lead_days = 3
warmup_days = 10
window_days = 60
hidden = 4
epochs = 1
"""

HOOK = '''"""Fault injection for benchmarks/fault_suite.py (see its docstring). Imported before hydrocast.cli.

HC_FAULT = "log" | "kill-before:N" | "kill-after:N" | "stop-before:N" | "stop-after:N"
HC_FAULT_ROOT: only renames with a source or target under this folder count.
HC_FAULT_LOG: a file that gets one JSON line per counted rename (t: seconds since this import).
"""
import json
import os
import signal
import time

_T0 = time.monotonic()
_SPEC = os.environ.get("HC_FAULT", "")
_ROOT = os.path.realpath(os.environ.get("HC_FAULT_ROOT", "/nonexistent")) + os.sep
_LOG = os.environ.get("HC_FAULT_LOG")
_MODE, _, _N = _SPEC.partition(":")
_N = int(_N) if _N else 0
_count = [0]


def _under(p):
    try:
        return os.path.realpath(os.fspath(p)).startswith(_ROOT)
    except TypeError:
        return False


def _fire(when):
    if _N == _count[0] and _MODE.endswith(when):
        os.kill(os.getpid(), signal.SIGKILL if _MODE.startswith("kill") else signal.SIGSTOP)


def _wrap(name):
    orig = getattr(os, name)

    def wrapped(src, dst, *args, **kwargs):
        if not (_under(src) or _under(dst)):
            return orig(src, dst, *args, **kwargs)
        _count[0] += 1
        if _LOG:
            with open(_LOG, "a") as fh:
                fh.write(json.dumps({"n": _count[0], "op": name, "src": os.fspath(src), "dst": os.fspath(dst),
                                     "t": round(time.monotonic() - _T0, 3)}) + "\\n")
        _fire("before")
        result = orig(src, dst, *args, **kwargs)
        if _LOG and os.path.isdir(dst):
            with open(_LOG, "a") as fh:
                fh.write(json.dumps({"n": _count[0], "listing": sorted(os.listdir(dst))}) + "\\n")
        _fire("after")
        return result

    setattr(os, name, wrapped)


if _MODE:
    _wrap("rename")
    _wrap("replace")
'''


# ---------------------------------------------------------------------------------------------
# running the CLI
# ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    rc: int | None  # None: still running / killed by the suite on timeout
    stdout: str
    stderr: str
    seconds: float
    killed: bool = False

    def line(self) -> str:
        """The first ``hydrocast:`` line of stderr, else its first non-empty line."""
        lines = [s.strip() for s in self.stderr.splitlines() if s.strip()]
        for s in lines:
            if s.startswith("hydrocast:"):
                return s
        return lines[0] if lines else ""

    def got(self) -> str:
        code = "timeout" if self.rc is None else ("SIGKILL" if self.rc == -9 else str(self.rc))
        return f"{code} {self.line()}".strip()


class Proc:
    """A started CLI process (its own process group), stdout/stderr in files."""

    def __init__(self, argv: list[str], env: dict, cwd: Path, tag: Path):
        self.out, self.err = tag.with_suffix(".out"), tag.with_suffix(".err")
        self.t0 = time.monotonic()
        with open(self.out, "w") as o, open(self.err, "w") as e:
            self.p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=o, stderr=e, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        self.pid = self.p.pid

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def stopped(self) -> bool:
        try:
            return Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
        except (OSError, IndexError):
            return False

    def running(self) -> bool:
        return self.p.poll() is None

    def wait(self, timeout: float) -> Run:
        killed = False
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.p.wait()
            rc, killed = None, True
        return Run(rc, self.out.read_text(errors="replace"), self.err.read_text(errors="replace"),
                   time.monotonic() - self.t0, killed)


class Hydrocast:
    """Runs the CLI of the checkout at ``repo``."""

    def __init__(self, repo: Path, python: str, hookdir: Path, logdir: Path):
        self.repo, self.python, self.hookdir, self.logdir = repo, python, hookdir, logdir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDROCAST_", "HC_FAULT"))}
        self.env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                        PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg", CUDA_VISIBLE_DEVICES="",
                        PYTHONWARNINGS="ignore")
        self.n = 0

    def argv(self, args: list[str], hook: bool) -> list[str]:
        pre = f"sys.path.insert(1, {str(self.hookdir)!r}); import _hc_fault; " if hook else ""
        code = f"import sys; sys.path.insert(0, {str(self.repo)!r}); {pre}from hydrocast.cli import main; main()"
        return [self.python, "-c", code, *args]

    def start(self, args: list[str], cwd: Path, fault: str | None = None, root: Path | None = None,
              log: Path | None = None) -> Proc:
        env = dict(self.env)
        if fault:
            env.update(HC_FAULT=fault, HC_FAULT_ROOT=str(root or cwd))
            if log:
                env["HC_FAULT_LOG"] = str(log)
        self.n += 1
        return Proc(self.argv([*args, "--quiet"], hook=bool(fault)), env, cwd, self.logdir / f"run{self.n:04d}")

    def run(self, args: list[str], cwd: Path, timeout: float = 600, **kw) -> Run:
        return self.start(args, cwd, **kw).wait(timeout)


# ---------------------------------------------------------------------------------------------
# file checks
# ---------------------------------------------------------------------------------------------
def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_sums(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``folder`` (symbolic links followed)."""
    folder = Path(folder)
    out = {}
    for root, _dirs, files in os.walk(folder, followlinks=True):
        for f in files:
            p = Path(root) / f
            out[str(p.relative_to(folder))] = sha(p)
    return out


def nc_ok(path: Path) -> str | None:
    """None when the NetCDF file opens and every variable reads; else why not."""
    import netCDF4

    try:
        with netCDF4.Dataset(path) as ds:
            for v in ds.variables.values():
                v[:]
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "partial"
        return f"{Path(path).name}: {type(exc).__name__}: {exc}"


def cube_days(path: Path) -> list[int] | str:
    """The cube's time values, or why it cannot be read."""
    import netCDF4

    bad = nc_ok(path)
    if bad:
        return bad
    with netCDF4.Dataset(path) as ds:
        return [int(t) for t in np.asarray(ds.variables["time"][:])]


def stale(folder: Path, depth: int = 2) -> list[str]:
    """Names containing ``.tmp`` or ``.old`` under ``folder`` (temporary leftovers of dead runs)."""
    found = []
    folder = Path(folder)
    if not folder.exists():
        return found
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if len(rel.parts) <= depth and re.search(r"[._-](tmp|old)(?![a-z])", p.name, re.I):
            found.append(str(rel))
    return sorted(found)


def hidden_files(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(".")) if Path(folder).is_dir() else []


def visible_partial(folder: Path) -> list[str]:
    """Visible files of an output folder that are not complete (NetCDF that fails, empty or bad CSV)."""
    bad = []
    for p in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix == ".nc":
            why = nc_ok(p)
            if why:
                bad.append(why)
        elif p.suffix == ".csv":
            try:
                rows = list(csv.reader(p.open(newline="")))
                # a header alone is a complete table (e.g. warnings.csv without any threshold);
                # a cut file lacks its final newline or has a short last row
                if not rows or not p.read_bytes().endswith(b"\n") or len({len(r) for r in rows}) != 1 \
                        or not rows[0] or not all(rows[0]):
                    bad.append(f"{p.name}: incomplete CSV")
            except (OSError, csv.Error, UnicodeDecodeError) as exc:
                bad.append(f"{p.name}: {exc}")
        elif p.stat().st_size == 0:
            bad.append(f"{p.name}: empty")
    return bad


def one_line_error(run: Run) -> bool:
    err = [s for s in run.stderr.splitlines() if s.strip()]
    return not any("Traceback" in s for s in err) and sum(s.startswith("hydrocast:") for s in err) >= 1


def date_of(name: str) -> dt.date | None:
    m = re.search(r"(?<!\d)(20\d{6})", name)
    return dt.datetime.strptime(m.group(1), "%Y%m%d").date() if m else None


def replace_values(obj, old: str, new: str):
    """``obj`` (parsed JSON) with every string value equal to ``old`` replaced (keys untouched)."""
    if isinstance(obj, dict):
        return {k: replace_values(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [replace_values(v, old, new) for v in obj]
    return new if obj == old else obj


def set_key(obj, key: str, value) -> bool:
    """Set every ``key`` in nested dicts to ``value``; True when one was found."""
    found = False
    if isinstance(obj, dict):
        for k in obj:
            if k == key:
                obj[k], found = value, True
            else:
                found |= set_key(obj[k], key, value)
    elif isinstance(obj, list):
        for v in obj:
            found |= set_key(v, key, value)
    return found


class Mount:
    """A tmpfs mounted at ``path`` (``ro``: read-only); unmounted on exit. ``error`` when refused."""

    def __init__(self, path: Path, size: int, ro: bool = False):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        opts = f"size={max(size, 4096)}" + (",ro" if ro else "")
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(self.path)],
                             capture_output=True, text=True)
        self.error = None if res.returncode == 0 else (res.stderr.strip() or f"mount exited {res.returncode}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.error is None:
            if subprocess.run(["umount", str(self.path)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclass
class Row:
    case: str
    expected: str
    got: str
    status: str  # PASS | FAIL | SKIP


class Checks:
    """Conditions of one case: the row passes when all hold; ``got`` shows the first that failed."""

    def __init__(self, summary: str = ""):
        self.summary, self.failed = summary, []

    def expect(self, ok: bool, why: str) -> bool:
        if not ok:
            self.failed.append(why)
        return ok

    def row(self, case: str, expected: str) -> Row:
        got = "; ".join(self.failed) if self.failed else self.summary
        return Row(case, expected, got, "FAIL" if self.failed else "PASS")


def kill_note(k: Run) -> str:
    return "SIGKILLed" if k.rc == -signal.SIGKILL else f"finished before the kill ({k.got()})"


def code_is(run: Run, codes: int | tuple[int, ...]) -> bool:
    return run.rc in ((codes,) if isinstance(codes, int) else codes)


# ---------------------------------------------------------------------------------------------
# the project
# ---------------------------------------------------------------------------------------------
class Suite:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.repo = Path(args.repo).resolve()
        self.root = Path(tempfile.mkdtemp(prefix="hc-faults-", dir=args.workdir))
        (self.root / "hook").mkdir()
        (self.root / "hook" / "_hc_fault.py").write_text(HOOK)
        (self.root / "logs").mkdir()
        self.hc = Hydrocast(self.repo, args.python, self.root / "hook", self.root / "logs")
        self.rows: list[Row] = []
        self.n_case = 0
        self.setup_error: dict[str, str] = {}
        self.train_log: list[dict] = []
        self.train_dry: Run | None = None

    # -- helpers --------------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        print(f"[{time.monotonic() - T0:6.0f} s] {msg}", file=sys.stderr, flush=True)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        self.log(f"{row.status:4s} {row.case}: {row.got[:150]}")

    def config(self, folder: Path, cube: Path, model: Path, grid: str = GRID, extra: bool = False,
               extra_imerg: Path | None = None, basins: Path | None = None) -> Path:
        raw = self.root / "raw"
        imerg = [f"{raw}/imerg/*.HDF5", f"{raw}/imerg/*.nc4"]
        esacci = [f"{raw}/esacci/*.nc"]
        if extra:
            imerg.append(f"{self.root}/extra/imerg/*.nc4")
            esacci.append(f"{self.root}/extra/esacci/*.nc")
        if extra_imerg is not None:
            imerg += [f"{extra_imerg}/*.HDF5", f"{extra_imerg}/*.nc4"]
        text = f"""{grid}
[[sources]]
name = "precipitation"
kind = "imerg"
paths = {json.dumps(imerg)}

[[sources]]
name = "soil_moisture"
kind = "esacci_sm"
paths = {json.dumps(esacci)}

[[sources]]
name = "dem"
kind = "dem"
paths = ["{raw}/dem/dem.tif"]

[cube]
path = "{cube}"

[basins]
path = "{basins or SAMPLE / 'basins/basins.geojson'}"

[discharge]
path = "{SAMPLE / 'discharge/discharge.csv'}"

""" + TRAIN.format(model=model)
        path = folder / "hydrocast.toml"
        path.write_text(text)
        return path

    def case_dir(self, name: str, cube: bool = True, model: bool = True, **cfg) -> tuple[Path, Path]:
        """A fresh folder with a copy of the shared cube and model (``work/``) and its config."""
        self.n_case += 1
        d = self.root / "cases" / f"{self.n_case:03d}-{re.sub(r'[^A-Za-z0-9]+', '-', name)[:40]}"
        (d / "work").mkdir(parents=True)
        base = self.root / "base" / "work"
        ignore = shutil.ignore_patterns("*.lock")
        if cube:
            shutil.copy2(base / "cube.nc", d / "work" / "cube.nc")
        if model:
            for p in base.iterdir():
                if p.name.startswith(("model", ".model")) and not p.name.endswith(".lock"):
                    if p.is_dir() and not p.is_symlink():
                        shutil.copytree(p, d / "work" / p.name, symlinks=True, ignore=ignore)
                    else:
                        shutil.copy2(p, d / "work" / p.name, follow_symlinks=False)
        cfg_path = self.config(d, d / "work" / "cube.nc", d / "work" / "model", **cfg)
        return d, cfg_path

    def needs(self, *what: str) -> str | None:
        for w in what:
            if w in self.setup_error:
                return f"cannot build: {w} failed ({self.setup_error[w]})"
        return None

    def model_file(self, model: Path, suffix: str) -> Path | None:
        found = sorted(Path(model).resolve().glob(f"*{suffix}"))
        return found[0] if found else None

    def predict_args(self, cfg: Path, out: Path, *more: str) -> list[str]:
        return ["predict", "--config", str(cfg), "--out", str(out), *more]

    def evaluate_args(self, cfg: Path, out: Path) -> list[str]:
        return ["evaluate", "--config", str(cfg), "--period", EVAL_PERIOD, "--out", str(out)]

    # -- setup ----------------------------------------------------------------------------------
    def setup(self) -> None:
        self.log(f"project in {self.root}")
        for sub, folder in (("raw", (FIRST_DAY, LAST_DAY)), ("extra", (EXTRA_FIRST, EXTRA_LAST))):
            for kind in ("imerg", "esacci"):
                dst = self.root / sub / kind
                dst.mkdir(parents=True)
                for f in sorted((SAMPLE / "raw" / kind).iterdir()):
                    d = date_of(f.name)
                    if d is not None and folder[0] <= d <= folder[1]:
                        (dst / f.name).symlink_to(f)
        (self.root / "raw" / "dem").mkdir()
        (self.root / "raw" / "dem" / "dem.tif").symlink_to(SAMPLE / "raw/dem/dem.tif")
        base = self.root / "base"
        (base / "work").mkdir(parents=True)
        self.base_cfg = self.config(base, base / "work" / "cube.nc", base / "work" / "model")
        res = self.hc.run(["ingest", "--config", str(self.base_cfg)], base)
        self.log(f"setup ingest: {res.got()} ({res.seconds:.0f} s)")
        self.ingest_seconds = res.seconds
        if res.rc != 0:
            self.setup_error["ingest"] = res.got()
            self.setup_error["train"] = "no cube"
            return
        self.base_days = cube_days(base / "work" / "cube.nc")
        res = self.hc.run(["train", "--config", str(self.base_cfg), "--seed", "1"], base)
        self.log(f"setup train: {res.got()} ({res.seconds:.0f} s)")
        self.train_seconds = res.seconds
        if res.rc != 0:
            self.setup_error["train"] = res.got()
            return
        self.base_model = tree_sums(base / "work" / "model")

    def train_dry_run(self) -> None:
        """A retrain (--epochs 2) over a copy of the model, renames logged: numbers the kill moments."""
        if self.needs("train") or self.train_dry is not None:
            return
        d, cfg = self.case_dir("train dry run")
        self.train_dry_dir = d
        log = d / "renames.jsonl"
        self.train_dry = self.hc.run(["train", "--config", str(cfg), "--seed", "1", "--epochs", "2"], d,
                                     fault="log", log=log)
        self.log(f"train dry run: {self.train_dry.got()} ({self.train_dry.seconds:.0f} s)")
        self.train_log = [json.loads(s) for s in log.read_text().splitlines()] if log.exists() else []
        if self.train_dry.rc != 0:
            self.setup_error["train dry run"] = self.train_dry.got()

    def renames(self, entries: list[dict]) -> list[dict]:
        return [e for e in entries if "op" in e]

    def listing(self, entries: list[dict], n: int) -> list[str] | None:
        for e in entries:
            if e.get("n") == n and "listing" in e:
                return e["listing"]
        return None

    @staticmethod
    def describe(e: dict) -> str:
        def short(p: str) -> str:
            name = re.sub(r"\d{8}T\d{6}(\.\d+)?Z-\d+", "<version>", Path(p).name)
            name = re.sub(r"(?<=\.)\d{2,7}(?=\.)", "<pid>", name)
            return re.sub(r"_\d{8}_[0-9a-f]{8}_", "_<date>_<id>_", name)
        return f"{short(e['src'])} -> {short(e['dst'])}"

    @staticmethod
    def is_checkpoint(e: dict) -> bool:
        return any(w in (Path(e["src"]).name + Path(e["dst"]).name).lower() for w in ("checkpoint", "ckpt"))

    # -- the cases ------------------------------------------------------------------------------
    def run_all(self) -> None:
        groups: list[tuple[str, Callable[[], Iterator[Row]]]] = [
            ("invalid grid", self.cases_grid),
            ("path traversal", self.cases_traversal),
            ("tampered artefact", self.cases_tampered),
            ("bad input", self.cases_bad_inputs),
            ("output folder", self.cases_outputs),
            ("disk full", self.cases_disk_full),
            ("concurrency", self.cases_concurrency),
            ("kill ingest", self.cases_kill_ingest),
            ("kill train", self.cases_kill_train),
            ("kill predict", self.cases_kill_predict),
            ("kill evaluate", self.cases_kill_evaluate),
        ]
        for name, fn in groups:
            if self.args.only and not any(o.lower() in name for o in self.args.only):
                continue
            self.log(f"== {name}")
            try:
                for row in fn():
                    self.add(row)
            except Exception as exc:  # noqa: BLE001 - a suite bug must not hide the other groups
                traceback.print_exc()
                self.add(Row(f"{name}: (the suite itself)", "no suite error", f"suite error: {exc!r}", "FAIL"))

    # ---- invalid [grid] for every command -------------------------------------------------------
    def cases_grid(self) -> Iterator[Row]:
        skip = self.needs("train")
        grids = BAD_GRIDS if not self.quick else dict(list(BAD_GRIDS.items())[::2])
        for what, grid in grids.items():
            for cmd in ("ingest", "train", "predict", "evaluate"):
                case = f"[grid] {what}: {cmd}"
                if skip:
                    yield Row(case, "78", skip, "SKIP")
                    continue
                d, cfg = self.case_dir(case, grid=grid)
                args = {"ingest": ["ingest", "--config", str(cfg)],
                        "train": ["train", "--config", str(cfg), "--epochs", "1"],
                        "predict": self.predict_args(cfg, d / "out", "--basin", "PT01"),
                        "evaluate": self.evaluate_args(cfg, d / "eval")}[cmd]
                res = self.hc.run(args, d)
                c = Checks(res.got())
                c.expect(code_is(res, CONFIG), res.got())
                yield c.row(case, "78 (config error)")

    # ---- hostile basin ids ----------------------------------------------------------------------
    def written_outside(self, d: Path, out: Path, extra: list[Path] = ()) -> list[str]:
        hits = [p for p in d.rglob("x*") if out not in p.parents and p.is_file()]
        for folder in extra:
            hits += [p for p in Path(folder).rglob("*") if p.is_file()]
        return sorted(str(p.relative_to(d)) if d in p.parents else str(p) for p in hits)

    def cases_traversal(self) -> Iterator[Row]:
        skip = self.needs("train")
        exp = "65, nothing written outside --out"
        # ids in the artefact
        for label in ("../../x", "/abs/x"):
            case = f"artefact basin id {label!r}: predict --basin all"
            if skip:
                yield Row(case, exp, skip, "SKIP")
                continue
            d, cfg = self.case_dir(case)
            (d / "abs").mkdir()
            hostile = str(d / "abs" / "x") if label.startswith("/") else label
            meta_path = d / "work" / "model" / "model.json"
            meta = json.loads(meta_path.read_text())
            meta_path.write_text(json.dumps(replace_values(meta, "PT01", hostile), indent=1))
            out = d / "o1" / "o2" / "out"
            res = self.hc.run(self.predict_args(cfg, out, "--basin", "all"), d)
            outside = self.written_outside(d, out, [d / "abs"])
            c = Checks(res.got())
            c.expect(code_is(res, DATAERR), res.got())
            c.expect(not outside, f"wrote outside --out: {outside[:2]}")
            yield c.row(case, exp)
        # ids in a basins file given to predict
        for kind in ("geojson", "csv"):
            for label in ("../x", "/abs/x"):
                case = f"{kind} basin id {label!r}: predict --basins"
                if skip:
                    yield Row(case, exp, skip, "SKIP")
                    continue
                d, cfg = self.case_dir(case, cube=True, model=True)
                (d / "abs").mkdir()
                hostile = str(d / "abs" / "x") if label.startswith("/") else label
                if kind == "geojson":
                    fc = json.loads((SAMPLE / "basins/ungauged.geojson").read_text())
                    fc["features"][0]["properties"]["id"] = hostile
                    path = d / "hostile.geojson"
                    path.write_text(json.dumps(fc))
                else:
                    rows = list(csv.DictReader((SAMPLE / "basins/outlets.csv").open(newline="")))
                    path = d / "hostile.csv"
                    with path.open("w", newline="") as fh:
                        w = csv.writer(fh)
                        w.writerow(["id", "lon", "lat"])
                        w.writerow([hostile, rows[0]["lon"], rows[0]["lat"]])
                out = d / "o" / "out"
                res = self.hc.run(self.predict_args(cfg, out, "--basins", str(path), "--basin", "all"), d)
                outside = self.written_outside(d, out, [d / "abs"])
                c = Checks(res.got())
                c.expect(code_is(res, DATAERR), res.got())
                c.expect(not outside, f"wrote outside --out: {outside[:2]}")
                yield c.row(case, exp)
        case = "--basin '../x': predict"
        if skip:
            yield Row(case, "65 or 67, nothing outside --out", skip, "SKIP")
        else:
            d, cfg = self.case_dir(case)
            out = d / "o" / "out"
            res = self.hc.run(self.predict_args(cfg, out, "--basin", "../x"), d)
            outside = self.written_outside(d, out)
            c = Checks(res.got())
            c.expect(code_is(res, (DATAERR, NOUSER)), res.got())
            c.expect(not outside, f"wrote outside --out: {outside[:2]}")
            yield c.row(case, "65 or 67, nothing outside --out")
        case = "basins.geojson id '../x': train"
        if skip:
            yield Row(case, "65", skip, "SKIP")
        else:
            d, _ = self.case_dir(case)
            fc = json.loads((SAMPLE / "basins/basins.geojson").read_text())
            fc["features"][0]["properties"]["id"] = "../x"
            (d / "basins.geojson").write_text(json.dumps(fc))
            cfg = self.config(d, d / "work" / "cube.nc", d / "work" / "model", basins=d / "basins.geojson")
            before = tree_sums(d / "work" / "model")
            res = self.hc.run(["train", "--config", str(cfg), "--epochs", "1"], d)
            c = Checks(res.got())
            c.expect(code_is(res, DATAERR), res.got())
            c.expect(tree_sums(d / "work" / "model") == before, "model replaced")
            yield c.row(case, "65, model untouched")

    # ---- tampered artefacts ---------------------------------------------------------------------
    def cases_tampered(self) -> Iterator[Row]:
        skip = self.needs("train")
        meta0 = {} if skip else json.loads((self.root / "base/work/model/model.json").read_text())
        version0 = meta0.get("format_version")

        def tamper_json(fn: Callable[[dict], str | None]):
            def apply(d: Path) -> str | None:
                p = d / "work" / "model" / "model.json"
                meta = json.loads(p.read_text())
                why = fn(meta)
                p.write_text(json.dumps(meta, indent=1))
                return why
            return apply

        def lead(meta):
            return None if set_key(meta, "lead_days", -1) else "model.json has no lead_days key"

        def missing(meta):
            for key in ("hparams", "normalisation", "grid"):
                if key in meta:
                    del meta[key]
                    return None
            return "model.json has none of hparams, normalisation, grid"

        def missing_key() -> str:
            return next((k for k in ("hparams", "normalisation", "grid") if k in meta0), "hparams")

        def version(v):
            def f(meta):
                meta["format_version"] = v
            return f

        def weights(mode):
            def apply(d: Path) -> str | None:
                w = self.model_file(d / "work" / "model", ".safetensors")
                if w is None:
                    return "no .safetensors file in the model folder"
                data = w.read_bytes()
                w.write_bytes(os.urandom(len(data)) if mode == "replaced" else data[: len(data) // 2])
                return None
            return apply

        def not_json(d: Path) -> None:
            (d / "work" / "model" / "model.json").write_text('{"format": "hydrocast-model", "basins": [')

        weights_name = "safetensors"
        cases = [
            ("lead_days = -1", tamper_json(lead), "lead_days"),
            (f"missing key {missing_key()!r}", tamper_json(missing), missing_key()),
            ("weights replaced (random bytes)", weights("replaced"), weights_name),
            ("weights truncated", weights("truncated"), weights_name),
            ("model.json not JSON", not_json, "model.json"),
            ("format_version 99", tamper_json(version(99)), "version"),
        ]
        for what, apply, word in cases:
            case = f"artefact {what}: predict"
            exp = f"65 naming {word}"
            if skip:
                yield Row(case, exp, skip, "SKIP")
                continue
            d, cfg = self.case_dir(case)
            why = apply(d)
            if why:
                yield Row(case, exp, f"cannot build: {why}", "SKIP")
                continue
            res = self.hc.run(self.predict_args(cfg, d / "out", "--basin", "PT01"), d)
            c = Checks(res.got())
            c.expect(code_is(res, DATAERR) and word.lower() in res.line().lower(), res.got())
            yield c.row(case, exp)
        # version 1: the version of the old artefact format
        case = "artefact format_version 1: predict"
        if skip:
            yield Row(case, "0 (loads) or 65 naming version", skip, "SKIP")
        else:
            d, cfg = self.case_dir(case)
            tamper_json(version(1))(d)
            res = self.hc.run(self.predict_args(cfg, d / "out", "--basin", "PT01"), d)
            c = Checks(res.got())
            if version0 == 1:
                exp = "0 (1 is the version this code writes)"
                c.expect(code_is(res, OK), res.got())
            else:  # the issue: "a version-1 artefact still loads or fails with a clear message"
                exp = "0 (loads) or 65 naming version"
                c.expect(code_is(res, OK) or (code_is(res, DATAERR) and "version" in res.line().lower()), res.got())
            yield c.row(case, exp)
        # a checkpoint holding junk, or holding something else (the final artefact)
        for what in ("junk bytes", "a model artefact"):
            case = f"checkpoint holding {what}: train --resume"
            exp = "65 naming the checkpoint"
            skip2 = skip or self.needs_dry()
            if skip2:
                yield Row(case, exp, skip2, "SKIP")
                continue
            paths = self.checkpoint_paths()
            if not paths:
                yield Row(case, exp, "cannot build: the dry run wrote no checkpoint", "SKIP")
                continue
            d, cfg = self.case_dir(case)
            for rel, names in paths:  # every checkpoint the dry run wrote (ConvLSTM, lumped baseline, ...)
                target = d / rel
                if what == "junk bytes":
                    if names is None:  # a file
                        target.write_bytes(b"junk\n" * 10)
                    else:
                        target.mkdir(parents=True)
                        for n in names:
                            (target / n).write_bytes(b"junk\n" * 10)
                else:
                    shutil.copytree((d / "work" / "model").resolve(), target)
            res = self.hc.run(["train", "--config", str(cfg), "--resume", "--epochs", "1"], d)
            c = Checks(res.got())
            named = any(Path(rel).name.lower().lstrip(".") in res.line().lower().replace(str(d).lower(), "")
                        for rel, _ in paths)
            c.expect(code_is(res, DATAERR) and named, res.got())
            yield c.row(case, exp)

    def checkpoint_paths(self) -> list[tuple[str, list[str] | None]]:
        """(path relative to the case folder, file names inside or None for a file) of every checkpoint
        the train dry run committed: the targets of its checkpoint renames that carry no pid/time stamp."""
        out: dict[str, list[str] | None] = {}
        for e in self.renames(self.train_log):
            dst = Path(e["dst"])
            if self.is_checkpoint(e) and not re.search(r"\d{3,}", dst.name):
                out.setdefault(str(dst.relative_to(self.train_dry_dir)), self.listing(self.train_log, e["n"]))
        return list(out.items())

    def needs_dry(self) -> str | None:
        self.train_dry_run()
        return self.needs("train", "train dry run")

    # ---- bad IMERG files ------------------------------------------------------------------------
    def write_bad(self, folder: Path, what: str) -> Path:
        sd = sample_writer()
        folder.mkdir(parents=True, exist_ok=True)
        lon, lat = sd.imerg_axes()
        if what == "all -5000":
            return sd.write_imerg_day(folder / sd.imerg_day_name(BAD_DAY), BAD_DAY,
                                      np.full((lat.size, lon.size), -5000.0, "float32"), lon, lat)
        if what == "all fill":
            return sd.write_imerg_day(folder / sd.imerg_day_name(BAD_DAY), BAD_DAY,
                                      np.full((lat.size, lon.size), np.nan, "float32"), lon, lat)
        path = folder / sd.imerg_hhr_name(BAD_DAY, 0)
        if what == "truncated HDF5":
            src = next((SAMPLE / "raw/imerg").glob("3B-HHR.*.HDF5"))
            data = src.read_bytes()
            path.write_bytes(data[: int(len(data) * 0.4)])
        else:  # HTML error page
            path.write_text("<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head>"
                            "<body><h1>Service Unavailable</h1></body></html>\n")
        return path

    def cases_bad_inputs(self) -> Iterator[Row]:
        skip = self.needs("ingest")
        for what in ("all -5000", "all fill", "truncated HDF5", "HTML named .HDF5"):
            case = f"IMERG file {what}: ingest"
            exp = "65 naming the file, cube days kept"
            if skip:
                yield Row(case, exp, skip, "SKIP")
                continue
            d, _ = self.case_dir(case, model=False)
            bad = self.write_bad(d / "incoming", what)
            cfg = self.config(d, d / "work" / "cube.nc", d / "work" / "model", extra_imerg=d / "incoming")
            res = self.hc.run(["ingest", "--config", str(cfg)], d)
            c = Checks(res.got())
            named = bad.name in res.stderr or bad.name[:40] in res.stderr
            c.expect(code_is(res, DATAERR) and named, res.got() + ("" if named else " (file not named)"))
            days = cube_days(d / "work" / "cube.nc")
            c.expect(isinstance(days, list) and set(self.base_days) <= set(days), f"cube: {days}"[:100])
            yield c.row(case, exp)

    # ---- --out that cannot be created ---------------------------------------------------------
    def cases_outputs(self) -> Iterator[Row]:
        skip = self.needs("train")
        for cmd in ("predict", "evaluate"):
            for what in ("inside a read-only folder", "a regular file"):
                case = f"{cmd} --out {what}"
                if skip:
                    yield Row(case, "73", skip, "SKIP")
                    continue
                d, cfg = self.case_dir(case)
                if what == "a regular file":
                    out = d / "out.txt"
                    out.write_text("not a folder\n")
                    res = self.run_cmd(cmd, cfg, out, d)
                    c = Checks(res.got())
                    c.expect(code_is(res, CANTCREAT), res.got())
                    c.expect(out.read_text() == "not a folder\n", "the file was changed")
                    yield c.row(case, "73, the file untouched")
                    continue
                with Mount(d / "ro", 1 << 20, ro=True) as m:
                    if m.error:
                        yield Row(case, "73", f"mount refused: {m.error}", "SKIP")
                        continue
                    res = self.run_cmd(cmd, cfg, d / "ro" / "out", d)
                c = Checks(res.got())
                c.expect(code_is(res, CANTCREAT), res.got())
                yield c.row(case, "73 (cannot create output)")

    def run_cmd(self, cmd: str, cfg: Path, out: Path, d: Path, **kw) -> Run:
        if cmd == "predict":
            return self.hc.run(self.predict_args(cfg, out, "--basin", "PT01"), d, **kw)
        return self.hc.run(self.evaluate_args(cfg, out), d, **kw)

    # ---- disk full ------------------------------------------------------------------------------
    def cases_disk_full(self) -> Iterator[Row]:
        exp = "74, one line naming the file, previous {} intact"
        # ingest: the cube on a tmpfs with room for the old cube only
        case = "disk full: ingest (cube on a small tmpfs)"
        skip = self.needs("ingest")
        if skip:
            yield Row(case, exp.format("cube"), skip, "SKIP")
        else:
            d, _ = self.case_dir(case, cube=False, model=False)
            size = (self.root / "base/work/cube.nc").stat().st_size
            with Mount(d / "mnt", int(size * 1.15) + 65536) as m:
                if m.error:
                    yield Row(case, exp.format("cube"), f"mount refused: {m.error}", "SKIP")
                else:
                    cube = d / "mnt" / "cube.nc"
                    shutil.copy2(self.root / "base/work/cube.nc", cube)
                    before = sha(cube)
                    cfg = self.config(d, cube, d / "work" / "model", extra=True)
                    res = self.hc.run(["ingest", "--config", str(cfg)], d)
                    c = Checks(res.got())
                    c.expect(code_is(res, IOERR) and "cube.nc" in res.line() and one_line_error(res), res.got())
                    c.expect(cube.exists() and sha(cube) == before, "the old cube changed or is gone")
                    yield c.row(case, exp.format("cube"))
        # train: the model folder on a tmpfs with room for the old model only
        case = "disk full: train (model folder on a small tmpfs)"
        skip = self.needs("train")
        if skip:
            yield Row(case, exp.format("artefact"), skip, "SKIP")
        else:
            d, _ = self.case_dir(case, model=False)
            base = self.root / "base/work/model"
            size = sum(p.stat().st_size for p in base.resolve().rglob("*") if p.is_file())
            with Mount(d / "mnt", int(size * 1.3) + 16384) as m:
                if m.error:
                    yield Row(case, exp.format("artefact"), f"mount refused: {m.error}", "SKIP")
                else:
                    model = d / "mnt" / "model"
                    shutil.copytree(base.resolve(), model)
                    before = tree_sums(model)
                    cfg = self.config(d, d / "work" / "cube.nc", model)
                    res = self.hc.run(["train", "--config", str(cfg), "--epochs", "1"], d)
                    c = Checks(res.got())
                    c.expect(code_is(res, IOERR) and str(d / "mnt") in res.line() and one_line_error(res), res.got())
                    c.expect(model.exists() and tree_sums(model) == before, "the old artefact changed or is gone")
                    yield c.row(case, exp.format("artefact"))
        # predict: --out on a tmpfs too small for the forecasts
        case = "disk full: predict (--out on a 16 KiB tmpfs)"
        if skip:
            yield Row(case, "74 naming the file, no partial file", skip, "SKIP")
        else:
            d, cfg = self.case_dir(case)
            with Mount(d / "mnt", 16384) as m:
                if m.error:
                    yield Row(case, "74 naming the file, no partial file", f"mount refused: {m.error}", "SKIP")
                else:
                    res = self.hc.run(self.predict_args(cfg, d / "mnt", "--basin", "all"), d)
                    c = Checks(res.got())
                    c.expect(code_is(res, IOERR) and str(d / "mnt") in res.line() and one_line_error(res), res.got())
                    partial = visible_partial(d / "mnt") + hidden_files(d / "mnt")
                    c.expect(not partial, f"left: {partial[:2]}")
                    yield c.row(case, "74 naming the file, no partial file")

    # ---- concurrency ----------------------------------------------------------------------------
    def holds_lock(self, proc: Proc, folder: Path) -> bool:
        """Whether ``proc`` holds a lock (``/proc/locks``) on a file under ``folder`` named *lock*."""
        try:
            text = Path("/proc/locks").read_text()
        except OSError:
            return False
        inodes = set()
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 6 and parts[4] == str(proc.pid):
                inodes.add(int(parts[5].split(":")[-1]))
        if not inodes:
            return False
        for p in Path(folder).rglob("*"):
            try:
                if "lock" in p.name.lower() and p.stat().st_ino in inodes:
                    return True
            except OSError:
                pass
        return False

    def first_holds_lock(self, a: Proc, folder: Path, limit: float = 120) -> bool:
        t = time.monotonic()
        while a.running() and time.monotonic() - t < limit:
            if self.holds_lock(a, folder):
                a.signal(signal.SIGSTOP)
                return True
            time.sleep(0.02)
        return False

    def cases_concurrency(self) -> Iterator[Row]:
        for cmd in ("ingest", "train"):
            case = f"two {cmd}s at once"
            exp = "second 75, first 0"
            skip = self.needs("ingest" if cmd == "ingest" else "train")
            if skip:
                yield Row(case, exp, skip, "SKIP")
                continue
            d, cfg = self.case_dir(case, extra=(cmd == "ingest"))
            args = ["ingest", "--config", str(cfg)] if cmd == "ingest" else \
                ["train", "--config", str(cfg), "--epochs", "1"]
            a = self.hc.start(args, d)
            locked = self.first_holds_lock(a, d / "work")
            b = self.hc.run(args, d, timeout=180)
            a.signal(signal.SIGCONT)
            ra = a.wait(600)
            c = Checks(f"second: {b.got()}; first: {ra.got()}")
            c.expect(locked, "never saw the first run hold a lock file")
            c.expect(code_is(b, TEMPFAIL), f"second: {b.got()}")
            c.expect(code_is(ra, OK), f"first: {ra.got()}")
            yield c.row(case, exp)
        # predict / evaluate while train is stopped inside the artefact replacement
        skip = self.needs_dry()
        final = [] if skip else [e for e in self.renames(self.train_log) if not self.is_checkpoint(e)]
        points = [(f"stop-before:{e['n']}", f"before rename {self.describe(e)}") for e in final]
        if final:
            points.append((f"stop-after:{final[-1]['n']}", f"after rename {self.describe(final[-1])}"))
        if not self.args.all_moments:  # inside the swap: before each of its renames but the first
            points = points[1:-1] if len(points) > 2 else points[:1]
        if skip or not points:
            for cmd in ("predict", "evaluate"):
                yield Row(f"{cmd} while train replaces the artefact", "0 or 75",
                          skip or "cannot build: the dry run logged no rename of the artefact", "SKIP")
            return
        for fault, where in points:
            d, cfg = self.case_dir(f"replace {fault}")
            t = self.hc.start(["train", "--config", str(cfg), "--seed", "1", "--epochs", "2"], d, fault=fault)
            limit = time.monotonic() + 600
            while t.running() and not t.stopped() and time.monotonic() < limit:
                time.sleep(0.05)
            stopped = t.stopped()
            runs = {cmd: self.run_cmd(cmd, cfg, d / f"out-{cmd}", d, timeout=180) for cmd in ("predict", "evaluate")}
            t.signal(signal.SIGCONT)
            rt = t.wait(600)
            for cmd, res in runs.items():
                c = Checks(f"{res.got()} (train then: {rt.got()})")
                c.expect(stopped, f"train never reached the stop point ({rt.got()})")
                c.expect(code_is(res, (OK, TEMPFAIL)), res.got())
                yield c.row(f"{cmd} while train is stopped {where}", "0 or 75 (never 66/70)")

    # ---- SIGKILL at several moments ---------------------------------------------------------------
    def dry_run(self, name: str, args_of: Callable[[Path, Path], list[str]], prepare: Callable[[Path], None],
                **case_kw) -> tuple[Run, list[dict]]:
        d, cfg = self.case_dir(f"{name} dry run", **case_kw)
        prepare(d)
        log = d / "renames.jsonl"
        res = self.hc.run(args_of(d, cfg), d, fault="log", log=log)
        self.log(f"{name} dry run: {res.got()} ({res.seconds:.0f} s)")
        entries = [json.loads(s) for s in log.read_text().splitlines()] if log.exists() else []
        return res, self.renames(entries)

    def kill_points(self, dry: Run, renames: list[dict], fractions: tuple[float, ...], before: list[dict],
                    after_last: bool, timed: list[tuple[str, float]] = ()) -> list[tuple[str, str | float]]:
        """(label, moment): a float is seconds after the start, a string a hook spec. ``fractions`` of the
        dry run's duration and ``timed`` (label, seconds) are timed kills. ``--all-moments``: every rename,
        and the fractions 0.3, 0.6, 0.9."""
        if self.args.all_moments:
            fractions, before, after_last = (0.3, 0.6, 0.9), renames, True
        points: list[tuple[str, str | float]] = [(f"at {f:.0%} of the run", f * dry.seconds) for f in fractions]
        points += list(timed)
        seen = set()
        for e in before:
            if e["n"] not in seen:
                seen.add(e["n"])
                points.append((f"before rename {e['n']}/{len(renames)} ({self.describe(e)})", f"kill-before:{e['n']}"))
        if renames and after_last:
            e = renames[-1]
            points.append((f"after rename {e['n']}/{len(renames)} ({self.describe(e)})", f"kill-after:{e['n']}"))
        return points

    def killed_run(self, args: list[str], d: Path, moment: str | float) -> Run:
        if isinstance(moment, str):
            return self.hc.run(args, d, fault=moment)
        p = self.hc.start(args, d)
        limit = p.t0 + moment
        while p.running() and time.monotonic() < limit:
            time.sleep(0.01)
        p.signal(signal.SIGKILL)
        return p.wait(600)

    def cases_kill_ingest(self) -> Iterator[Row]:
        exp = "old cube readable, days kept; rerun 0; no stale temp"
        skip = self.needs("ingest")
        if skip:
            yield Row("ingest SIGKILL", exp, skip, "SKIP")
            return
        dry, renames = self.dry_run("ingest", lambda d, cfg: ["ingest", "--config", str(cfg)], lambda d: None,
                                    model=False, extra=True)
        if dry.rc != 0:
            yield Row("ingest SIGKILL", exp, f"cannot build: ingest with new days {dry.got()}", "SKIP")
            return
        if self.quick:
            points = self.kill_points(dry, renames, (0.5,), renames[-1:], False)
        else:
            points = self.kill_points(dry, renames, (0.3, 0.7), renames, True)
        for label, moment in points:
            case = f"ingest SIGKILL {label}"
            d, cfg = self.case_dir(case, model=False, extra=True)
            cube = d / "work" / "cube.nc"
            k = self.killed_run(["ingest", "--config", str(cfg)], d, moment)
            days = cube_days(cube)
            c = Checks()
            c.expect(isinstance(days, list) and set(self.base_days) <= set(days),
                     f"after the kill the cube is {'unreadable: ' + days if isinstance(days, str) else 'missing days'}")
            res = self.hc.run(["ingest", "--config", str(cfg)], d)
            c.expect(code_is(res, OK), f"rerun: {res.got()}")
            days2 = cube_days(cube)
            n_all = len(self.base_days) + (EXTRA_LAST - EXTRA_FIRST).days + 1
            c.expect(isinstance(days2, list) and len(days2) == n_all,
                     f"after the rerun: {days2 if isinstance(days2, str) else len(days2)} days")
            left = stale(d / "work")
            c.expect(not left, f"stale after the rerun: {left[:2]}")
            c.summary = f"{kill_note(k)}; rerun: {res.got()}"
            yield c.row(case, exp)

    def cases_kill_train(self) -> Iterator[Row]:
        exp = "predict 0 (old/new model); --resume 0; no stale .tmp/.old"
        skip = self.needs_dry()
        if skip:
            yield Row("train SIGKILL", exp, skip, "SKIP")
            return
        renames = self.renames(self.train_log)

        ck = [e for e in renames if self.is_checkpoint(e)]
        final = [e for e in renames if not self.is_checkpoint(e)]
        # the renames that commit the first checkpoint (epoch 1, epoch 2, ...)
        first = self.checkpoint_paths()[:1]
        commits = [e for e in ck if first and Path(e["dst"]).name == Path(first[0][0]).name]
        # during epoch 2: half-way between the commits of the epoch-1 and epoch-2 checkpoints
        timed = [("during epoch 2", (commits[0]["t"] + commits[1]["t"]) / 2)] if len(commits) >= 2 else []
        if self.quick:  # the first checkpoint write; inside the artefact swap
            points = self.kill_points(self.train_dry, renames, (), ck[:1] + final[-1:], False)
        else:  # during epoch 2; the first checkpoint write; committing the epoch-2 checkpoint over the
            # epoch-1 one; at every step of the artefact swap; after the last rename
            points = self.kill_points(self.train_dry, renames, () if timed else (0.5,),
                                      ck[:1] + commits[1:2] + final, True, timed)
        args = ["--seed", "1", "--epochs", "2"]
        for label, moment in points:
            case = f"train SIGKILL {label}"
            d, cfg = self.case_dir(case)
            k = self.killed_run(["train", "--config", str(cfg), *args], d, moment)
            c = Checks()
            p = self.hc.run(self.predict_args(cfg, d / "out", "--basin", "PT01"), d)
            c.expect(code_is(p, OK), f"predict after the kill: {p.got()}")
            r = self.hc.run(["train", "--config", str(cfg), "--resume", *args], d)
            c.expect(code_is(r, OK), f"--resume: {r.got()}")
            left = stale(d / "work")
            c.expect(not left, f"stale after --resume: {left[:3]}")
            c.summary = f"{kill_note(k)}; predict {p.rc}; resume {r.rc}"
            yield c.row(case, exp)

    def output_kills(self, cmd: str) -> Iterator[Row]:
        exp = "no partial file; earlier files intact; rerun 0, no temp left"
        skip = self.needs("train")
        if skip:
            yield Row(f"{cmd} SIGKILL", exp, skip, "SKIP")
            return
        # an earlier forecast in the output folder (its checksums must survive)
        prep, cfg = self.case_dir(f"{cmd} earlier output")
        earlier = prep / "earlier"
        res = self.hc.run(self.predict_args(cfg, earlier, "--basin", "all", "--issue-date", EARLIER_ISSUE), prep)
        if res.rc != 0:
            yield Row(f"{cmd} SIGKILL", exp, f"cannot build the earlier forecast: {res.got()}", "SKIP")
            return
        if cmd == "evaluate":  # and an earlier evaluation in the same folder
            res = self.hc.run(self.evaluate_args(cfg, earlier), prep)
            if res.rc != 0:
                yield Row(f"{cmd} SIGKILL", exp, f"cannot build the earlier evaluation: {res.got()}", "SKIP")
                return
        keep = {k: v for k, v in tree_sums(earlier).items()
                if cmd == "predict" or not k.startswith(("hindcast", "metrics"))}  # evaluate replaces these two

        def args_of(d: Path, cfg: Path) -> list[str]:
            out = d / "out"
            return self.predict_args(cfg, out, "--basin", "all") if cmd == "predict" else self.evaluate_args(cfg, out)

        def prepare(d: Path) -> None:
            shutil.copytree(earlier, d / "out")

        dry, renames = self.dry_run(cmd, args_of, prepare)
        if dry.rc != 0:
            yield Row(f"{cmd} SIGKILL", exp, f"cannot build: {cmd} {dry.got()}", "SKIP")
            return

        if self.quick:
            points = self.kill_points(dry, renames, (), renames[:1], False)
        else:  # the first file written, one in the middle (predict) or the last (evaluate)
            points = self.kill_points(dry, renames, (0.6,), renames[:1] + renames[len(renames) // 2:][:1]
                                      if cmd == "predict" else renames[:1] + renames[-1:], False)
        for label, moment in points:
            case = f"{cmd} SIGKILL {label}"
            d, cfg = self.case_dir(case)
            prepare(d)
            out = d / "out"
            k = self.killed_run(args_of(d, cfg), d, moment)
            c = Checks()
            bad = visible_partial(out)
            c.expect(not bad, f"partial after the kill: {bad[:1]}")
            now = tree_sums(out)
            lost = [n for n, s in keep.items() if now.get(n) != s]
            c.expect(not lost, f"earlier files changed: {lost[:2]}")
            res = self.hc.run(args_of(d, cfg), d)
            c.expect(code_is(res, OK), f"rerun: {res.got()}")
            hidden = hidden_files(out)
            c.expect(not hidden, f"temp files after the rerun: {hidden[:2]}")
            bad = visible_partial(out)
            c.expect(not bad, f"partial after the rerun: {bad[:1]}")
            c.summary = f"{kill_note(k)}; rerun: {res.got()}"
            yield c.row(case, exp)

    def cases_kill_predict(self) -> Iterator[Row]:
        yield from self.output_kills("predict")

    def cases_kill_evaluate(self) -> Iterator[Row]:
        yield from self.output_kills("evaluate")

    # -- report ---------------------------------------------------------------------------------
    def table(self) -> str:
        def cut(s: str, n: int) -> str:
            s = re.sub(re.escape(str(self.root)) + r"/cases/[^/\s]+", "<case>", " ".join(s.split()))
            s = s.replace(str(self.root), "<tmp>")
            return s if len(s) <= n else s[: n - 3] + "..."

        rows = [("case", "expected", "got", "result")] + [(r.case, r.expected, r.got, r.status) for r in self.rows]
        widths = [min(cap, max(len(cut(r[i], cap)) for r in rows)) for i, cap in enumerate((100, 60, 100))]
        lines = []
        for i, (a, b, g, s) in enumerate(rows):
            lines.append(f"{cut(a, widths[0]):<{widths[0]}} | {cut(b, widths[1]):<{widths[1]}} | "
                         f"{cut(g, widths[2]):<{widths[2]}} | {s}")
            if i == 0:
                lines.append("-" * (sum(widths) + 16))
        n = {s: sum(r.status == s for r in self.rows) for s in ("PASS", "FAIL", "SKIP")}
        lines.append("")
        lines.append(f"{n['PASS']} passed, {n['FAIL']} failed, {n['SKIP']} skipped")
        return "\n".join(lines)


def sample_writer():
    """The sample-data writers: tools.sampledata here, hydrocast.sampledata in older checkouts."""
    sys.path.insert(0, str(HERE))
    try:
        from tools import sampledata
    except ImportError:
        from hydrocast import sampledata
    return sampledata


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/fault_suite.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=str(HERE), help="the hydrocast checkout to try (default: this one)")
    default_py = HERE / ".venv" / "bin" / "python"
    ap.add_argument("--python", default=str(default_py if default_py.exists() else sys.executable),
                    help="the interpreter with hydrocast's dependencies (default: this checkout's .venv)")
    ap.add_argument("--quick", action="store_true", help="fewer kill moments and grids")
    ap.add_argument("--all-moments", action="store_true", help="kill at every rename and at 30/60/90 %% of each run")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a case failed")
    ap.add_argument("--only", action="append", default=[], help="run only groups whose name contains this")
    ap.add_argument("--workdir", default=None, help="parent of the temporary project folder")
    ap.add_argument("--keep", action="store_true", help="keep the temporary project folder")
    ap.add_argument("--table", type=Path, help="also write the table to this file")
    args = ap.parse_args(argv)

    suite = Suite(args)
    probe = subprocess.run(suite.hc.argv([], hook=False)[:2] + [
        f"import sys; sys.path.insert(0, {str(suite.repo)!r}); import hydrocast; print(hydrocast.__file__)"],
        capture_output=True, text=True, env=suite.hc.env)
    where = probe.stdout.strip()
    commit = subprocess.run(["git", "-C", str(suite.repo), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(suite.repo), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    mode = "quick" if args.quick else "all moments" if args.all_moments else "default"
    header = (f"hydrocast fault suite: {suite.repo} (commit {commit or '?'}{' + uncommitted changes' if dirty else ''})"
              f", hydrocast from {where or probe.stderr.strip()[-200:]}, {mode}, {dt.datetime.now():%Y-%m-%d %H:%M}")
    print(header, file=sys.stderr)
    if not where.startswith(str(suite.repo)):
        print(f"fault_suite: hydrocast does not import from {suite.repo}", file=sys.stderr)
        return 2
    try:
        suite.setup()
        suite.run_all()
    finally:
        if not args.keep:
            shutil.rmtree(suite.root, ignore_errors=True)
        else:
            print(f"kept {suite.root}", file=sys.stderr)
    text = header + f", {time.monotonic() - T0:.0f} s\n\n" + suite.table()
    print(text)
    if args.table:
        args.table.write_text(text + "\n")
    failed = any(r.status == "FAIL" for r in suite.rows)
    return 1 if (failed and args.strict) else 0


T0 = time.monotonic()

if __name__ == "__main__":
    raise SystemExit(main())
