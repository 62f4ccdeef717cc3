"""Discharge observations: readers for river gauge files, in one tidy table.

What :func:`read_discharge` returns (every format; the contract the rest of hydrocast relies on)
===============================================================================================

=========== =========================================================================================
type        ``pandas.DataFrame``
index       ``DatetimeIndex`` named ``"date"``, ``datetime64[ns]``, tz-naive, frequency ``"D"``:
            one row per **calendar day**, contiguous from the first to the last date found for the
            returned basins; days a file does not list are inserted as NaN rows
columns     one per basin, labelled by the basin id as **text** (``"01022500"`` keeps its leading
            zero, a GRDC number is ``"6335020"``); the column index is named ``"basin_id"``.
            Order: ``basin_ids`` when given, otherwise sorted
values      float64 discharge in **m3 s-1**; NaN = missing (empty cell, ``NaN``, a format's
            missing-value code, a GRDC value the provider flags "usage not recommended")
attrs       ``df.attrs["source"]``: the path (or glob) that was read, for error messages
=========== =========================================================================================

Dates are taken as written: a daily mean labelled with its calendar day, no time-zone shift
(GRDC and USGS days are local days; hydrocast's days are UTC days; the difference is ignored).

Formats (``fmt="auto"`` detects them from the content, not the file name)
-------------------------------------------------------------------------
``"csv"``    canonical long CSV with a header holding ``basin_id,date,discharge`` (any order, any
             extra columns ignored, header names are case-insensitive). ``date`` is ISO 8601
             (``2001-03-04``; a midnight timestamp such as ``2001-03-04T00:00Z`` is accepted,
             other times are an error: aggregate sub-daily data to days first). ``discharge`` in
             m3/s; empty, ``NaN``, ``NA`` mean missing.
``"grdc"``   GRDC daily export (``*_Q_Day.Cmd.txt``): ``#`` header with ``GRDC-No.``, ``Station``,
             ``Latitude (DD)``, ``Longitude (DD)``, ``Catchment area (km²)``; then either the
             current table ``YYYY-MM-DD;hh:mm; Value`` or the older
             ``YYYY-MM-DD;hh:mm; Original; Calculated; Flag``. In the older table the GRDC-corrected
             ``Calculated`` value is used where present, else ``Original``; rows with ``Flag`` 99
             ("usage not recommended by the provider") become NaN. Missing: ``-999.000``.
             Monthly GRDC files are refused. Files are read as Latin-1 (GRDC's DOS/ANSI export).
``"camels"`` CAMELS-US ``usgs_streamflow/<gauge>_streamflow_qc.txt``: whitespace-separated
             ``gauge Year Mnth Day QObs(cfs) flag``, no header; ft3/s × 0.0283168466 = m3/s;
             ``-999`` = missing.

``path`` may also be a folder (every ``*.txt``/``*.csv`` file in it, other files ignored) or a
glob (``"data/grdc/*_Q_Day.Cmd.txt"``); the stations of all files are merged into one table.

Decisions about bad data (all raise :class:`~hydrocast.errors.BadInputError`, message starting
with the file path, and ``line N`` where a line is to blame)
------------------------------------------------------------------------------------------------
- empty file, a file in no known format, missing CSV columns, a date that does not parse;
- a **negative** discharge is an error, except the missing-value codes -999 and -9999 (in any
  decimal form) which become NaN. Negative flow is physically possible in tidal reaches, but in
  the data this tool is meant for it is far more often a unit or sign mistake, so it is better
  to stop and say which line than to train on it; mask such rows in the file if they are real;
- the same (basin, date) twice: identical values (or one of them missing) are merged, different
  values are an error naming both lines (also across files of a folder);
- a basin asked for in ``basin_ids`` that no file holds.

A path that does not exist (or a glob/folder that matches no file) is a
:class:`~hydrocast.errors.MissingInputError`.
"""

from __future__ import annotations

import csv
import glob as _glob
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .errors import BadInputError, MissingInputError

CFS_TO_M3S = 0.0283168466  # 1 ft3/s in m3/s (0.3048 m)³
MISSING_CODES = (-999.0, -9999.0)  # negative values read as "missing", not as bad data
FORMATS = ("csv", "grdc", "camels")
FOLDER_SUFFIXES = (".txt", ".csv")
CSV_COLUMNS = ("basin_id", "date", "discharge")
META_COLUMNS = ("name", "river", "country", "lat", "lon", "area_km2", "altitude_m", "format", "source")

_GLOB_CHARS = re.compile(r"[*?\[]")
_GRDC_HEADER = re.compile(r"^#\s*([^:]+?)\s*:\s*(.*?)\s*$")
_NA_STRINGS = {"", "nan", "na", "n/a", "null", "none"}


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def read_discharge(path: str | Path, basin_ids: Sequence[str] | None = None,
                   fmt: str = "auto") -> pd.DataFrame:
    """Daily discharge (m3/s) of one file, a folder or a glob, as the table in the module docstring.

    ``basin_ids``: keep only these basins (compared as text, so ``"01022500"`` is not
    ``"1022500"``), in this order; one that no file holds is a BadInputError.
    ``fmt``: ``"auto"`` (default), ``"csv"``, ``"grdc"`` or ``"camels"``."""
    _check_fmt(fmt)
    files = _expand(path)
    parts = [_read_long(f, fmt) for f in files]
    long = _merge(parts)
    if basin_ids is not None:
        wanted = [str(b) for b in basin_ids]
        if not wanted:
            raise ValueError("basin_ids is empty; pass None to read every basin")
        held = set(long.basin_id.unique())
        absent = [b for b in wanted if b not in held]
        if absent:
            raise BadInputError(
                f"{path}: no discharge for basin {', '.join(absent)} (basins in the file: "
                f"{_short_list(sorted(held))}; ids are compared as text, leading zeros matter)")
        long = long[long.basin_id.isin(wanted)]
        order = wanted
    else:
        order = sorted(long.basin_id.unique())
    return _to_wide(long, order, source=str(path))


def read_discharge_meta(path: str | Path, fmt: str = "auto") -> pd.DataFrame:
    """Station metadata, one row per basin (index ``basin_id``, text).

    Columns: ``name`` (GRDC ``Station``), ``river``, ``country``, ``lat``, ``lon`` (decimal
    degrees), ``area_km2`` (catchment area), ``altitude_m``, ``format`` and ``source`` (the file).
    Only GRDC files carry metadata; for CSV and CAMELS files the numbers are NaN and the texts
    empty (CAMELS keeps its gauge metadata in ``camels_topo.txt``/``camels_name.txt``). GRDC's
    -999 for an unknown area or altitude becomes NaN."""
    _check_fmt(fmt)
    rows: dict[str, dict] = {}
    for f in _expand(path):
        text = _read_text(f)
        kind = _detect(f, text) if fmt == "auto" else fmt
        if kind == "grdc":
            meta = _grdc_header(f, text)
            ids = [meta["basin_id"]]
        else:
            ids = sorted(_read_long(f, kind).basin_id.unique())
            meta = {}
        for b in ids:
            if b in rows:
                continue
            rows[b] = {
                "name": meta.get("name", ""), "river": meta.get("river", ""),
                "country": meta.get("country", ""), "lat": meta.get("lat", math.nan),
                "lon": meta.get("lon", math.nan), "area_km2": meta.get("area_km2", math.nan),
                "altitude_m": meta.get("altitude_m", math.nan), "format": kind, "source": str(f),
            }
    df = pd.DataFrame.from_dict(rows, orient="index", columns=list(META_COLUMNS))
    df.index.name = "basin_id"
    for col in ("lat", "lon", "area_km2", "altitude_m"):
        df[col] = df[col].astype("float64")
    return df


def training_check(df: pd.DataFrame, period: tuple, basin_ids: Iterable[str] | None = None,
                   source: str | Path | None = None) -> None:
    """Raise BadInputError naming the basin when a basin has no observation in ``period``.

    ``period = (start, end)``, both days included (anything :func:`pandas.Timestamp` reads).
    ``basin_ids`` defaults to all columns of ``df``; a requested basin that is not a column is
    an error too. The message starts with ``source`` (default ``df.attrs["source"]``), the file
    the observations came from."""
    start, end = (pd.Timestamp(p) for p in period)
    if end < start:
        raise ValueError(f"training period ends ({end:%Y-%m-%d}) before it starts ({start:%Y-%m-%d})")
    where = str(source if source is not None else df.attrs.get("source", "discharge observations"))
    span = f"{start:%Y-%m-%d}..{end:%Y-%m-%d}"
    wanted = [str(b) for b in (df.columns if basin_ids is None else basin_ids)]
    window = df.loc[(df.index >= start) & (df.index <= end)]
    for b in wanted:
        if b not in df.columns:
            raise BadInputError(f"{where}: basin {b} has no discharge series at all "
                                f"(it has no observation in the training period {span})")
        n = int(window[b].notna().sum())
        if n == 0:
            raise BadInputError(f"{where}: basin {b} has no discharge observation in the training "
                                f"period {span}")


# ---------------------------------------------------------------------------------------------
# files, detection, merging
# ---------------------------------------------------------------------------------------------
def _check_fmt(fmt: str) -> None:
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown discharge format {fmt!r}; use 'auto' or one of {', '.join(FORMATS)}")


def _expand(path: str | Path) -> list[Path]:
    """The files behind a file, a folder or a glob (sorted, so merges are reproducible)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                       and f.suffix.lower() in FOLDER_SUFFIXES)
        if not files:
            raise MissingInputError(f"{p}: folder holds no discharge files "
                                    f"({', '.join('*' + s for s in FOLDER_SUFFIXES)})")
        return files
    if p.exists():
        return [p]
    if _GLOB_CHARS.search(str(path)):
        files = sorted(Path(f) for f in _glob.glob(str(path)) if Path(f).is_file())
        if not files:
            raise MissingInputError(f"{path}: no file matches this pattern")
        return files
    raise MissingInputError(f"{p}: file does not exist")


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be read ({exc.strerror})") from None
    if not raw.strip():
        raise BadInputError(f"{path}: file is empty")
    if b"\x00" in raw[:4096]:
        raise BadInputError(f"{path}: is a binary file, not a discharge table "
                            f"(expected {_FORMAT_HINT})")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # GRDC exports are DOS/ANSI text ("km²" as byte 0xB2); Latin-1 decodes any byte.
        return raw.decode("latin-1")


_FORMAT_HINT = ("a CSV with basin_id,date,discharge, a GRDC daily file or a CAMELS-US "
                "streamflow file")


def _first_lines(text: str, n: int = 5) -> list[str]:
    lines = []
    for ln in text.splitlines():
        if ln.strip():
            lines.append(ln.strip())
            if len(lines) == n:
                break
    return lines


def _detect(path: Path, text: str) -> str:
    lines = _first_lines(text, 200)
    first = lines[0]
    if any(ln.upper().startswith("YYYY-MM-DD;") for ln in lines) or (
            first.startswith("#") and "GRDC" in text[:5000]):
        return "grdc"
    header = [c.strip().strip('"').lower() for c in first.split(",")]
    if len(header) > 1 and any(c in header for c in CSV_COLUMNS):
        return "csv"  # a CSV header; _parse_csv names any missing column
    tokens = first.split()
    if len(tokens) >= 5 and all(t.isdigit() for t in tokens[:4]) and len(tokens[1]) == 4 \
            and _is_number(tokens[4]):
        return "camels"
    raise BadInputError(f"{path}: unknown discharge file format (expected {_FORMAT_HINT}); "
                        f"first line: {first[:60]!r}")


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _read_long(path: Path, fmt: str) -> pd.DataFrame:
    """One file as a long table: basin_id (str), date (datetime64[ns]), discharge, file, line."""
    text = _read_text(path)
    kind = _detect(path, text) if fmt == "auto" else fmt
    reader = {"csv": _parse_csv, "grdc": _parse_grdc, "camels": _parse_camels}[kind]
    rows = reader(path, text)
    if len(rows.basin_ids) == 0:
        raise BadInputError(f"{path}: no data rows")
    q = np.asarray(rows.values, dtype="float64")
    _check_values(path, q, rows.lines)
    return pd.DataFrame({
        "basin_id": pd.Series(rows.basin_ids, dtype=object),
        "date": pd.DatetimeIndex(rows.dates).as_unit("ns"),
        "discharge": q * rows.factor,
        "file": str(path),
        "line": np.asarray(rows.lines, dtype="int64"),
    })


@dataclass
class _Rows:
    basin_ids: list[str]
    dates: object  # DatetimeIndex or array of datetime64
    values: object  # float array, NaN where missing
    lines: list[int]
    factor: float = 1.0  # to m3/s


def _check_values(path: Path, q: np.ndarray, lines: Sequence[int]) -> None:
    """Missing codes → NaN (in place); other negative or infinite values are an error."""
    codes = np.isin(q, MISSING_CODES)
    q[codes] = np.nan
    bad = np.flatnonzero(np.isinf(q) | (q < 0))
    if bad.size:
        i = bad[0]
        raise BadInputError(f"{path}: line {lines[i]}: discharge {q[i]:g} is "
                            f"{'infinite' if np.isinf(q[i]) else 'negative'} "
                            f"(missing values must be empty, NaN, -999 or -9999)"
                            + (f"; {bad.size} such lines" if bad.size > 1 else ""))


def _merge(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate, merge duplicate (basin, date) rows that agree, refuse those that do not."""
    long = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    dup = long.duplicated(["basin_id", "date"], keep=False)
    if not dup.any():
        return long
    d = long[dup]
    valid = d[d.discharge.notna()]
    spread = valid.groupby(["basin_id", "date"]).discharge.agg(["min", "max"])
    clash = spread[~np.isclose(spread["min"], spread["max"], rtol=1e-9, atol=0.0)]
    if len(clash):
        basin, date = clash.index[0]
        a, b = valid[(valid.basin_id == basin) & (valid.date == date)].iloc[:2].itertuples()
        second = f"line {b.line}" if b.file == a.file else f"{b.file}: line {b.line}"
        raise BadInputError(f"{a.file}: basin {basin} on {date:%Y-%m-%d} has two different "
                            f"discharges: line {a.line} ({a.discharge:g}) and {second} "
                            f"({b.discharge:g})")
    # keep one row per key, preferring a non-missing value
    long = long.assign(_missing=long.discharge.isna()).sort_values(
        ["basin_id", "date", "_missing"], kind="stable")
    return long.drop_duplicates(["basin_id", "date"], keep="first").drop(columns="_missing")


def _to_wide(long: pd.DataFrame, order: list[str], source: str) -> pd.DataFrame:
    wide = long.pivot(index="date", columns="basin_id", values="discharge")
    days = pd.date_range(long.date.min(), long.date.max(), freq="D", name="date").as_unit("ns")
    wide = wide.reindex(index=days, columns=order).astype("float64")
    wide.index.name = "date"
    wide.columns = pd.Index([str(c) for c in wide.columns], dtype=object, name="basin_id")
    wide.attrs["source"] = source
    return wide


def _short_list(items: list[str], n: int = 10) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _parse_dates(path: Path, strings: list[str], lines: list[int]) -> pd.DatetimeIndex:
    """ISO dates (or midnight timestamps) → tz-naive UTC days; error names the first bad line."""
    s = pd.Series(strings, dtype=object)
    dates = pd.to_datetime(s, format="ISO8601", errors="coerce", utc=True)
    bad = np.flatnonzero(dates.isna().to_numpy())
    if bad.size:
        i = bad[0]
        raise BadInputError(f"{path}: line {lines[i]}: date {strings[i]!r} is not an ISO date "
                            f"(YYYY-MM-DD)")
    dates = pd.DatetimeIndex(dates).tz_convert(None)
    off = np.flatnonzero(dates != dates.normalize())
    if off.size:
        i = off[0]
        raise BadInputError(f"{path}: line {lines[i]}: {strings[i]!r} is not a whole day; daily "
                            f"discharge is expected (aggregate sub-daily values to days first)")
    return dates


def _parse_numbers(path: Path, strings: list[str], lines: list[int]) -> np.ndarray:
    out = np.empty(len(strings), dtype="float64")
    for i, s in enumerate(strings):
        t = s.strip()
        if t.lower() in _NA_STRINGS:
            out[i] = np.nan
            continue
        try:
            out[i] = float(t)
        except ValueError:
            raise BadInputError(f"{path}: line {lines[i]}: discharge {t!r} is not a number") from None
    return out


# ---------------------------------------------------------------------------------------------
# the three formats
# ---------------------------------------------------------------------------------------------
def _parse_csv(path: Path, text: str) -> _Rows:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = None
    for row in reader:
        if any(c.strip() for c in row):
            header = [c.strip().lower() for c in row]
            break
    missing = [c for c in CSV_COLUMNS if header is None or c not in header]
    if missing:
        raise BadInputError(f"{path}: line {reader.line_num}: CSV header lacks column "
                            f"{', '.join(missing)} (needs {','.join(CSV_COLUMNS)})")
    ib, idt, iq = (header.index(c) for c in CSV_COLUMNS)
    need = max(ib, idt, iq) + 1
    ids, dates, values, lines = [], [], [], []
    for row in reader:
        if not any(c.strip() for c in row):
            continue
        if len(row) < need:
            raise BadInputError(f"{path}: line {reader.line_num}: {len(row)} fields, expected at "
                                f"least {need}")
        b = row[ib].strip()
        if not b:
            raise BadInputError(f"{path}: line {reader.line_num}: empty basin_id")
        ids.append(b)
        dates.append(row[idt].strip())
        values.append(row[iq])
        lines.append(reader.line_num)
    return _Rows(ids, _parse_dates(path, dates, lines) if ids else [],
                 _parse_numbers(path, values, lines), lines)


def _grdc_header(path: Path, text: str) -> dict:
    """The ``# key: value`` lines of a GRDC file, with numbers parsed and -999 as NaN."""
    raw: dict[str, str] = {}
    for ln in text.splitlines():
        if not ln.startswith("#"):
            if ln.strip():
                break
            continue
        m = _GRDC_HEADER.match(ln)
        if m and m.group(1) not in raw:
            raw[m.group(1)] = m.group(2)

    def find(prefix: str) -> str | None:
        for k, v in raw.items():
            if k.lower().startswith(prefix.lower()):
                return v
        return None

    def number(prefix: str) -> float:
        v = find(prefix)
        try:
            x = float(v) if v not in (None, "", "-") else math.nan
        except ValueError:
            raise BadInputError(f"{path}: GRDC header {prefix!r} is not a number: {v!r}") from None
        return math.nan if x in MISSING_CODES else x

    content = (find("Data Set Content") or "").upper()
    if "MONTH" in content:
        raise BadInputError(f"{path}: is a monthly GRDC file ({content.strip()}); daily discharge "
                            f"is needed (the *_Q_Day files)")
    unit = (find("Unit") or "").replace(" ", "")
    # "m³/s", "m3/s", or the ³ mis-decoded ("m�/s", "mÂ³/s"); l/s or ft3/s we do not convert
    if unit and not (unit.startswith("m") and unit.endswith("/s") and len(unit) <= 6):
        raise BadInputError(f"{path}: GRDC unit {unit!r} is not m³/s")
    gid = (find("GRDC-No") or "").strip()
    if not gid:
        m = re.match(r"(\d+)_", path.name)
        if not m:
            raise BadInputError(f"{path}: GRDC header has no 'GRDC-No.' line and the file name "
                                f"does not start with the station number")
        gid = m.group(1)
    return {
        "basin_id": gid,
        "name": (find("Station") or "").strip(),
        "river": (find("River") or "").strip(),
        "country": (find("Country") or "").strip(),
        "lat": number("Latitude"),
        "lon": number("Longitude"),
        "area_km2": number("Catchment area"),
        "altitude_m": number("Altitude"),
    }


def _parse_grdc(path: Path, text: str) -> _Rows:
    meta = _grdc_header(path, text)
    lines_all = text.splitlines()
    start = None
    for n, ln in enumerate(lines_all):
        if not ln.startswith("#") and ln.strip().upper().startswith("YYYY-MM-DD"):
            start = n
            break
    if start is None:
        raise BadInputError(f"{path}: GRDC file has no 'YYYY-MM-DD;hh:mm; Value' table header")
    cols = [c.strip().lower() for c in lines_all[start].split(";")]
    if cols[2:] == ["value"]:
        layout = "value"
    elif cols[2:5] == ["original", "calculated", "flag"]:
        layout = "original"
    else:
        raise BadInputError(f"{path}: line {start + 1}: unknown GRDC table header "
                            f"{lines_all[start].strip()!r} (expected 'YYYY-MM-DD;hh:mm; Value' or "
                            f"'YYYY-MM-DD;hh:mm; Original; Calculated; Flag')")
    ncol = len(cols)
    dates, values, lines = [], [], []
    for n in range(start + 1, len(lines_all)):
        ln = lines_all[n]
        if not ln.strip() or ln.startswith("#"):
            continue
        f = [c.strip() for c in ln.split(";")]
        if len(f) < ncol:
            raise BadInputError(f"{path}: line {n + 1}: {len(f)} fields, expected {ncol}")
        try:
            if layout == "value":
                q = float(f[2])
            else:
                orig, calc, flag = float(f[2]), float(f[3]), float(f[4])
                q = math.nan if flag == 99 else (calc if calc != -999.0 else orig)
        except ValueError:
            raise BadInputError(f"{path}: line {n + 1}: discharge is not a number: "
                                f"{ln.strip()!r}") from None
        dates.append(f[0])
        values.append(q)
        lines.append(n + 1)
    parsed = _parse_dates(path, dates, lines) if dates else []
    return _Rows([meta["basin_id"]] * len(dates), parsed, values, lines)


def _parse_camels(path: Path, text: str) -> _Rows:
    ids, ymd, values, lines = [], [], [], []
    for n, ln in enumerate(text.splitlines(), start=1):
        t = ln.split()
        if not t:
            continue
        if len(t) < 5:
            raise BadInputError(f"{path}: line {n}: {len(t)} fields, expected "
                                f"'gauge Year Mnth Day QObs flag'")
        try:
            y, m, d = int(t[1]), int(t[2]), int(t[3])
        except ValueError:
            raise BadInputError(f"{path}: line {n}: date {' '.join(t[1:4])!r} is not "
                                f"'Year Mnth Day'") from None
        try:
            q = float(t[4])
        except ValueError:
            raise BadInputError(f"{path}: line {n}: QObs {t[4]!r} is not a number") from None
        ids.append(t[0])
        ymd.append((y, m, d))
        values.append(q)
        lines.append(n)
    if not ids:
        return _Rows([], [], [], [])
    parts = pd.DataFrame(ymd, columns=["year", "month", "day"])
    dates = pd.to_datetime(parts, errors="coerce")
    bad = np.flatnonzero(dates.isna().to_numpy())
    if bad.size:
        i = bad[0]
        raise BadInputError(f"{path}: line {lines[i]}: {ymd[i][0]} {ymd[i][1]:02d} {ymd[i][2]:02d} "
                            f"is not a valid date")
    q = np.asarray(values, dtype="float64")
    # -999 is CAMELS' missing code (flag "M"); turn it into NaN before the cfs conversion
    q[np.isin(q, MISSING_CODES)] = np.nan
    return _Rows(ids, pd.DatetimeIndex(dates), q, lines, factor=CFS_TO_M3S)
