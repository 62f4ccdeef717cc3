"""Flood thresholds: annual maxima, return levels, the thresholds file, and exceedance probabilities.

Forecasters want the chance of passing the 2-, 5- and 20-year flood (as GloFAS shows). The thresholds
come from observed annual maxima where the record allows, otherwise from the model's own long hindcast
(the caller passes that series instead; the functions are the same), or from a user's CSV of official
warning levels. Discharge is in m³/s throughout.

Annual maxima (:func:`annual_maxima`)
=====================================
A (hydrological) year starts on the 1st of ``year_start_month`` (1 = calendar year, 10 = US water
year). With a start month other than 1 a year is labelled by the calendar year in which it **ends**
(water year 2021 = 2020-10-01 .. 2021-09-30). NaN (and ±inf) is "missing". A year counts only when at
least ``min_coverage`` of its 365/366 days have a finite value; the partial years at both ends of the
record obey the same rule (days outside the record are missing days).

Return levels (:func:`fit_return_levels`)
=========================================
The return level of T years is the quantile at ``1 − 1/T`` of the distribution fitted to the annual
maxima by L-moments (Hosking 1990) through ``lmoments3`` (``distr.gum`` / ``distr.gev``,
``lmom_fit``). The sample L-moments are the unbiased probability-weighted-moment estimates (the same
as ``lmoments3.lmom_ratios``), computed here in NumPy so that the bootstrap is vectorised:
with the sorted sample x₍₁₎ ≤ … ≤ x₍ₙ₎, ``b_r = (1/n) Σ_i [(i−1)…(i−r)] / [(n−1)…(n−r)] x₍ᵢ₎``,
``λ1 = b0``, ``λ2 = 2b1 − b0``, ``λ3 = 6b2 − 6b1 + b0``, ``τ3 = λ3/λ2``.

- ``distribution="auto"``: **Gumbel for fewer than 25 maxima, GEV from 25 on** (a 3-parameter GEV's
  shape is unstable on short records); should the GEV fit fail (|τ3| = 1: all maxima but one tied at
  one end) "auto" falls back to the Gumbel, and ``distribution`` says so. ``"gumbel"`` / ``"gev"``
  force one (a failed forced GEV fit is a ``ValueError``). ``params`` are in scipy's
  convention (``gumbel_r``: ``loc``, ``scale``; ``genextreme``: ``c``, ``loc``, ``scale``, where
  ``c`` is Hosking's κ: ``c > 0`` has a bounded upper tail).
- Fewer than :data:`MIN_YEARS` finite maxima: ``ValueError`` (the caller falls back to a hindcast).
  Non-finite maxima are ignored.
- Zero spread (all maxima equal, λ2 = 0): every level is that value, ``scale`` is 0 (and ``c`` 0) and
  the interval has zero width.
- Uncertainty: a non-parametric bootstrap: ``n_boot`` resamples of the maxima with replacement (numpy
  ``default_rng(seed)``, so deterministic), each refitted with the **same** distribution; the
  interval is the ``(1 ± ci)/2`` percentiles of the resampled levels. A resample with zero spread
  gives its constant value (the rule above); a resample the GEV fit cannot handle (no convergence)
  is left out. ``n_boot = 0`` (or every resample left out) gives NaN bounds.

Thresholds file (:func:`read_thresholds`, :func:`write_thresholds`)
==================================================================
A CSV with a header, one row per (basin, level):

======================= ======================================================================
``basin``               basin id (text, required)
``name``                level name: ``2y``, ``5y``, ``20y`` for return periods, any name for an
                        official level such as ``alert`` (required; unique per basin)
``discharge_m3s``       the threshold, a finite number > 0 (required)
``return_period_years`` a number > 1, or empty for a named official level
``source``              ``observed``, ``hindcast`` or ``user`` (empty or absent: ``user``)
``ci_low_m3s``,         bounds of the bootstrap interval, finite numbers with low ≤ high, or empty
``ci_high_m3s``
``n_years``             number of annual maxima of the fit, an integer ≥ 1, or empty
``distribution``        ``gumbel``, ``gev``, or empty (any text is kept as written)
======================= ======================================================================

Only the three required columns must be present; column names are matched ignoring case and
surrounding spaces; cells are stripped; blank lines are skipped. Anything else (an unknown column, a
bad value, a duplicated (basin, name)) is a :class:`~hydrocast.errors.BadInputError` naming the file
and the line (1-based, the header is line 1); a missing file is a
:class:`~hydrocast.errors.MissingInputError`. Empty optional values are ``None`` on a
:class:`Threshold`.

Exceedance (:func:`exceedance_probability`)
===========================================
The fraction of ensemble members **strictly** above the threshold, NaN members ignored. With M
(valid) members the probability can only take the values 0, 1/M, …, 1: its resolution is 1/M.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .errors import BadInputError, MissingInputError
from .fsio import atomic_write_text

#: fewer finite annual maxima than this cannot be fitted (the caller falls back to a hindcast)
MIN_YEARS = 3
#: with ``distribution="auto"``, this many maxima or more are fitted with a GEV, fewer with a Gumbel
GEV_MIN_YEARS = 25
DISTRIBUTIONS = ("gumbel", "gev")
SOURCES = ("observed", "hindcast", "user")
COLUMNS = ("basin", "name", "discharge_m3s", "return_period_years", "source", "ci_low_m3s", "ci_high_m3s",
           "n_years", "distribution")
REQUIRED_COLUMNS = ("basin", "name", "discharge_m3s")


# ---------------------------------------------------------------------------------------------
# annual maxima
# ---------------------------------------------------------------------------------------------
def _year_starts(labels: np.ndarray, start_month: int) -> np.ndarray:
    """First day (datetime64[D]) of the hydrological years ``labels``."""
    first_year = labels - (1 if start_month != 1 else 0)
    months = (first_year - 1970) * 12 + (start_month - 1)
    return months.astype("datetime64[M]").astype("datetime64[D]")


def annual_maxima(days, q, min_coverage: float = 0.8, year_start_month: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Annual maxima of a daily discharge series: ``(years, maxima)``, int64 and float64 arrays.

    ``days``: ascending daily dates (``datetime64[D]`` or convertible; gaps allowed, no repeats);
    ``q``: the discharge on those days (NaN = missing). See the module docstring for the year labels
    and the ``min_coverage`` rule. Years without enough finite days are left out."""
    d = np.asarray(days).astype("datetime64[D]")
    v = np.asarray(q, dtype="float64")
    if d.ndim != 1 or d.shape != v.shape:
        raise ValueError(f"days and q must be 1-D arrays of the same length, got shapes {d.shape} and {v.shape}")
    if not 1 <= int(year_start_month) <= 12:
        raise ValueError(f"year_start_month must be 1..12, got {year_start_month}")
    if not 0 < min_coverage <= 1:
        raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
    if d.size and np.any(np.diff(d.astype("int64")) <= 0):
        raise ValueError("days must be strictly ascending (one value per day)")
    ok = np.isfinite(v)
    if not ok.any():
        return np.zeros(0, dtype="int64"), np.zeros(0, dtype="float64")
    d, v = d[ok], v[ok]
    m = int(year_start_month)
    cal_year = d.astype("datetime64[Y]").astype("int64") + 1970
    month = d.astype("datetime64[M]").astype("int64") % 12 + 1
    labels = cal_year + ((month >= m) if m != 1 else 0)
    years, first, count = np.unique(labels, return_index=True, return_counts=True)  # labels are sorted
    maxima = np.maximum.reduceat(v, first)
    start = _year_starts(years, m)
    length = (_year_starts(years + 1, m) - start).astype("int64")  # 365 or 366
    keep = count >= min_coverage * length
    return years[keep].astype("int64"), maxima[keep].astype("float64")


# ---------------------------------------------------------------------------------------------
# return levels
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReturnLevels:
    """Return levels fitted to annual maxima (see :func:`fit_return_levels`); keys are return periods."""

    distribution: str  # "gumbel" or "gev"
    params: dict  # scipy convention: gumbel_r (loc, scale), genextreme (c, loc, scale)
    n_years: int
    levels: dict = field(default_factory=dict)  # T -> discharge (m³/s)
    ci_low: dict = field(default_factory=dict)  # T -> lower bound of the bootstrap interval
    ci_high: dict = field(default_factory=dict)  # T -> upper bound


def sample_lmoments(x) -> np.ndarray:
    """Sample L-moments ``(λ1, λ2, τ3)`` along the last axis (unbiased PWM estimates, n ≥ 3).

    ``x`` is ``(..., n)``; returns ``(..., 3)``. ``τ3`` is NaN where ``λ2 = 0`` (zero spread)."""
    s = np.sort(np.asarray(x, dtype="float64"), axis=-1)
    n = s.shape[-1]
    if n < 3:
        raise ValueError(f"sample L-moments up to τ3 need at least 3 values, got {n}")
    i = np.arange(n, dtype="float64")  # i - 1 for the 1-based rank
    b0 = s.mean(axis=-1)
    b1 = (s * (i / (n - 1))).sum(axis=-1) / n
    b2 = (s * (i * (i - 1) / ((n - 1) * (n - 2)))).sum(axis=-1) / n
    l1, l2, l3 = b0, 2 * b1 - b0, 6 * b2 - 6 * b1 + b0
    flat = s[..., -1] == s[..., 0]  # exactly zero spread, whatever the rounding of the sums above
    l2, l3 = np.where(flat, 0.0, l2), np.where(flat, 0.0, l3)
    with np.errstate(invalid="ignore", divide="ignore"):
        t3 = np.where(l2 > 0, l3 / np.where(l2 > 0, l2, 1.0), np.nan)
    return np.stack([l1, l2, t3], axis=-1)


def _lmom_dist(distribution: str):
    from lmoments3 import distr

    return distr.gum if distribution == "gumbel" else distr.gev


def _fit_params(distribution: str, lmom: np.ndarray) -> dict:
    """Distribution parameters from ``(λ1, λ2, τ3)``; zero spread gives scale 0 (see the module docstring).
    Raises ValueError when the GEV fit fails."""
    l1, l2, t3 = (float(v) for v in lmom)
    if not l2 > 0:
        return {"loc": l1, "scale": 0.0} if distribution == "gumbel" else {"c": 0.0, "loc": l1, "scale": 0.0}
    try:
        para = _lmom_dist(distribution).lmom_fit(lmom_ratios=[l1, l2, t3])
    except Exception as exc:  # lmoments3 raises a bare Exception when its GEV iteration does not converge
        raise ValueError(f"{distribution} L-moment fit failed (λ1={l1:g}, λ2={l2:g}, τ3={t3:g}): {exc}") from None
    return {k: float(v) for k, v in para.items()}


def _quantiles(distribution: str, params: dict, probs: np.ndarray) -> np.ndarray:
    """Quantiles at ``probs`` of the fitted distribution (the location where the scale is 0)."""
    if params["scale"] == 0.0:
        return np.full(probs.shape, params["loc"])
    return np.asarray(_lmom_dist(distribution).ppf(probs, **params), dtype="float64")


def fit_return_levels(maxima, return_periods: Sequence[float] = (2, 5, 20), distribution: str = "auto",
                      n_boot: int = 500, ci: float = 0.90, seed: int = 0) -> ReturnLevels:
    """Fit a Gumbel (fewer than 25 maxima) or a GEV (25 or more) by L-moments and return the levels.

    ``maxima``: annual maxima (non-finite values ignored); ``return_periods``: T in years (> 1), the
    level of T is the quantile at ``1 − 1/T``; ``distribution``: ``"auto"`` (the rule just stated),
    ``"gumbel"`` or ``"gev"``; ``n_boot`` resamples for the ``ci`` percentile interval, deterministic
    with ``seed``. Fewer than :data:`MIN_YEARS` finite maxima: ValueError. See the module docstring."""
    x = np.asarray(maxima, dtype="float64").ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n < MIN_YEARS:
        raise ValueError(f"need at least {MIN_YEARS} finite annual maxima to fit return levels, got {n}")
    auto = distribution == "auto"
    if auto:
        distribution = "gev" if n >= GEV_MIN_YEARS else "gumbel"
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be 'auto', 'gumbel' or 'gev', got {distribution!r}")
    periods = list(return_periods)
    if not periods or any(not (float(t) > 1 and math.isfinite(float(t))) for t in periods):
        raise ValueError(f"return periods must be finite numbers of years > 1, got {periods}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    probs = 1.0 - 1.0 / np.asarray(periods, dtype="float64")

    lmom = sample_lmoments(x)
    try:
        params = _fit_params(distribution, lmom)
    except ValueError:
        if not auto:
            raise
        distribution = "gumbel"  # e.g. 24 of 25 maxima tied at the minimum: τ3 = 1, no GEV exists
        params = _fit_params(distribution, lmom)
    levels = _quantiles(distribution, params, probs)

    lo = hi = np.full(len(periods), np.nan)
    if n_boot > 0:
        boot = _bootstrap_levels(x, distribution, probs, n_boot, seed)
        ok = np.isfinite(boot).all(axis=1)
        if ok.any():
            alpha = (1.0 - ci) / 2.0
            lo, hi = np.quantile(boot[ok], [alpha, 1.0 - alpha], axis=0)
    return ReturnLevels(
        distribution=distribution, params=params, n_years=n,
        levels={t: float(v) for t, v in zip(periods, levels)},
        ci_low={t: float(v) for t, v in zip(periods, lo)},
        ci_high={t: float(v) for t, v in zip(periods, hi)},
    )


def _bootstrap_levels(x: np.ndarray, distribution: str, probs: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, len(probs))`` levels of resamples of ``x`` refitted with ``distribution``; a row of NaN
    where the fit failed."""
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(0, x.size, size=(n_boot, x.size))]
    lmom = sample_lmoments(samples)
    out = np.full((n_boot, probs.size), np.nan)
    flat = ~(lmom[:, 1] > 0)
    out[flat] = lmom[flat, :1]  # zero spread: the constant value for every level
    good, fitted = [], []
    for r in np.flatnonzero(~flat):
        try:
            fitted.append(_fit_params(distribution, lmom[r]))
        except ValueError:  # a GEV iteration that did not converge: leave this resample out
            continue
        good.append(r)
    if good:
        pars = {k: np.asarray([p[k] for p in fitted])[:, None] for k in fitted[0]}
        out[good] = _lmom_dist(distribution).ppf(probs[None, :], **pars)
    return out


# ---------------------------------------------------------------------------------------------
# thresholds table and file
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Threshold:
    """One row of the thresholds file (see the module docstring); empty optional values are None."""

    basin: str
    name: str
    discharge_m3s: float
    return_period_years: float | None = None
    source: str = "user"
    ci_low_m3s: float | None = None
    ci_high_m3s: float | None = None
    n_years: int | None = None
    distribution: str | None = None

    def __post_init__(self):
        if not str(self.basin) or not str(self.name):
            raise ValueError("a threshold needs a basin and a name")
        if not (math.isfinite(self.discharge_m3s) and self.discharge_m3s > 0):
            raise ValueError(f"discharge_m3s {self.discharge_m3s!r} is not a positive number")
        if self.source not in SOURCES:
            raise ValueError(f"source {self.source!r} is not one of {', '.join(SOURCES)}")


def _format_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def write_thresholds(path, rows: Iterable[Threshold]) -> Path:
    """Write ``rows`` as a thresholds CSV (all of :data:`COLUMNS`, in that order) atomically; returns the path."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_format_cell(getattr(row, c)) for c in COLUMNS])
    return atomic_write_text(path, buf.getvalue())


def _number(text: str, column: str, where: str, what: str = "a number") -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadInputError(f"{where}: {column} {text!r} is not {what}") from None
    if not math.isfinite(value):
        raise BadInputError(f"{where}: {column} {text!r} is not {what}")
    return value


def _parse_row(cells: Mapping[str, str], where: str) -> Threshold:
    """One data row (stripped cells by column name) as a Threshold; BadInputError at ``where``."""
    basin, name = cells["basin"], cells["name"]
    if not basin:
        raise BadInputError(f"{where}: basin is empty")
    if not name:
        raise BadInputError(f"{where}: name is empty")
    q = _number(cells["discharge_m3s"], "discharge_m3s", where, "a positive number")
    if q <= 0:
        raise BadInputError(f"{where}: discharge_m3s {cells['discharge_m3s']!r} is not a positive number")
    opt = {c: cells.get(c, "") for c in COLUMNS}
    period = None
    if opt["return_period_years"]:
        period = _number(opt["return_period_years"], "return_period_years", where, "a number of years > 1")
        if period <= 1:
            raise BadInputError(f"{where}: return_period_years {opt['return_period_years']!r} is not a number "
                                "of years > 1")
    source = opt["source"] or "user"
    if source not in SOURCES:
        raise BadInputError(f"{where}: source {source!r} is not one of {', '.join(SOURCES)}")
    ci_low = _number(opt["ci_low_m3s"], "ci_low_m3s", where) if opt["ci_low_m3s"] else None
    ci_high = _number(opt["ci_high_m3s"], "ci_high_m3s", where) if opt["ci_high_m3s"] else None
    if ci_low is not None and ci_high is not None and ci_low > ci_high:
        raise BadInputError(f"{where}: ci_low_m3s {opt['ci_low_m3s']!r} is above ci_high_m3s {opt['ci_high_m3s']!r}")
    n_years = None
    if opt["n_years"]:
        v = _number(opt["n_years"], "n_years", where, "a whole number >= 1")
        if v < 1 or v != int(v):
            raise BadInputError(f"{where}: n_years {opt['n_years']!r} is not a whole number >= 1")
        n_years = int(v)
    return Threshold(basin=basin, name=name, discharge_m3s=q, return_period_years=period, source=source,
                     ci_low_m3s=ci_low, ci_high_m3s=ci_high, n_years=n_years,
                     distribution=opt["distribution"] or None)


def read_thresholds(path) -> list[Threshold]:
    """Read a thresholds CSV (hand-written files welcome; see the module docstring), rows in file order."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path}: thresholds file does not exist")
    if path.is_dir():
        raise BadInputError(f"{path}: is a folder, not a thresholds CSV file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BadInputError(f"{path}: thresholds file is not UTF-8 text") from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be read ({exc.strerror})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = None
    rows: list[Threshold] = []
    seen: dict[tuple[str, str], int] = {}
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header = _check_header(cells, path, line)
                continue
            where = f"{path} line {line}"
            if len(cells) != len(header):
                raise BadInputError(f"{where}: {len(cells)} fields, the header has {len(header)}")
            row = _parse_row({h: c.strip() for h, c in zip(header, cells)}, where)
            key = (row.basin, row.name)
            if key in seen:
                raise BadInputError(f"{where}: duplicate basin {row.basin!r} name {row.name!r} "
                                    f"(first on line {seen[key]})")
            seen[key] = line
            rows.append(row)
    except csv.Error as exc:
        raise BadInputError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from None
    if header is None:
        raise BadInputError(f"{path}: thresholds file is empty (needs a header with {', '.join(REQUIRED_COLUMNS)})")
    return rows


def _check_header(cells: list[str], path: Path, line: int) -> list[str]:
    header = [c.strip().lower() for c in cells]
    where = f"{path} line {line}"
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise BadInputError(f"{where}: unknown column(s) {', '.join(repr(c) for c in unknown)} "
                            f"(allowed: {', '.join(COLUMNS)})")
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise BadInputError(f"{where}: column(s) {', '.join(dup)} appear more than once")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise BadInputError(f"{where}: missing required column(s) {', '.join(missing)}")
    return header


def thresholds_for(rows: Iterable[Threshold], basin) -> list[Threshold]:
    """The thresholds of ``basin`` (compared as text), sorted by discharge (then name)."""
    b = str(basin)
    return sorted((r for r in rows if r.basin == b), key=lambda r: (r.discharge_m3s, r.name))


def levels_from_fit(basin, fit: ReturnLevels, source: str) -> list[Threshold]:
    """One :class:`Threshold` per return period of ``fit``, named ``"<T>y"`` (``2y``, ``2.5y``), sorted by T.

    ``source`` is ``"observed"`` or ``"hindcast"`` (or ``"user"``). A level that is not a positive
    finite number (e.g. the maxima of a dry river are all 0) is left out: it cannot be a threshold."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    out = []
    for t in sorted(fit.levels, key=float):
        q = fit.levels[t]
        if not (math.isfinite(q) and q > 0):
            continue
        lo, hi = fit.ci_low.get(t, math.nan), fit.ci_high.get(t, math.nan)
        out.append(Threshold(
            basin=str(basin), name=f"{float(t):g}y", discharge_m3s=float(q), return_period_years=float(t),
            source=source, ci_low_m3s=float(lo) if math.isfinite(lo) else None,
            ci_high_m3s=float(hi) if math.isfinite(hi) else None, n_years=int(fit.n_years),
            distribution=fit.distribution,
        ))
    return out


# ---------------------------------------------------------------------------------------------
# exceedance
# ---------------------------------------------------------------------------------------------
def exceedance_probability(members, threshold) -> np.ndarray:
    """Fraction of ensemble members strictly above ``threshold``, shape ``members.shape[:-1]``.

    ``members`` is ``(..., M)``; ``threshold`` a number or an array broadcastable to
    ``members.shape[:-1]`` (one threshold per basin, say). NaN members are ignored; where every member
    (or the threshold) is NaN the result is NaN. With M valid members the resolution is 1/M."""
    m = np.asarray(members, dtype="float64")
    if m.ndim < 1:
        raise ValueError("members must have a last axis of ensemble members")
    t = np.asarray(threshold, dtype="float64")[..., None]
    valid = ~np.isnan(m)
    count = np.sum(valid & (m > t), axis=-1)
    n = np.sum(valid, axis=-1)
    n, count = np.broadcast_arrays(n, count)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, count / np.where(n > 0, n, 1), np.nan)
    return np.where(np.isnan(t[..., 0]), np.nan, p)


def to_records(rows: Iterable[Threshold]) -> list[dict]:
    """The rows as JSON-ready dicts (the file's columns; None where empty): how a model stores them."""
    return [{c: getattr(r, c) for c in COLUMNS} for r in rows]


def from_records(records, where: str) -> list[Threshold]:
    """Rows back from :func:`to_records` (e.g. a model's ``thresholds``), checked as a file is;
    BadInputError naming ``where`` and the record."""
    if not isinstance(records, list):
        raise BadInputError(f"{where}: thresholds must be a list of records")
    out, seen = [], set()
    for i, rec in enumerate(records):
        here = f"{where} thresholds[{i}]"
        if not isinstance(rec, dict) or set(rec) - set(COLUMNS):
            raise BadInputError(f"{here}: not a thresholds record (keys: {', '.join(COLUMNS)})")
        row = _parse_row({c: _format_cell(rec.get(c)) for c in COLUMNS}, here)
        if (row.basin, row.name) in seen:
            raise BadInputError(f"{here}: duplicate basin {row.basin!r} name {row.name!r}")
        seen.add((row.basin, row.name))
        out.append(row)
    return out


def fit_basin_thresholds(basin_ids: Sequence[str], days, observed, simulated, return_periods: Sequence[float],
                         min_years: int, year_start_month: int = 1, min_coverage: float = 0.8
                         ) -> tuple[list[Threshold], dict[str, str]]:
    """Return-period thresholds of several basins, the way GloFAS sets them where records are short.

    ``days`` (T,) datetime64[D]; ``observed`` (T, N) observed discharge (NaN = none; None: no basin
    is gauged); ``simulated`` (T, N) the model's discharge on the same days, or a callable giving it
    (called only when some basin needs it). A basin with at least ``min_years`` observed annual
    maxima gets a fit of those ("observed"); otherwise one of the simulated maxima ("hindcast"),
    when there are at least :data:`MIN_YEARS`; otherwise none. Returns the rows and, per basin,
    a note of what was done (for logs and the model's description)."""
    rows: list[Threshold] = []
    notes: dict[str, str] = {}
    days = np.asarray(days).astype("datetime64[D]")
    sim = None
    for n, basin in enumerate(basin_ids):
        fit, source = None, None
        n_obs = 0
        if observed is not None:
            _, mx = annual_maxima(days, np.asarray(observed)[:, n], min_coverage, year_start_month)
            n_obs = int(np.isfinite(mx).sum())
            if n_obs >= min_years:
                fit, source = fit_return_levels(mx, return_periods), "observed"
        if fit is None and simulated is not None:
            if sim is None:
                sim = np.asarray(simulated() if callable(simulated) else simulated, dtype="float64")
            _, mx = annual_maxima(days, sim[:, n], min_coverage, year_start_month)
            if np.isfinite(mx).sum() >= MIN_YEARS:
                fit, source = fit_return_levels(mx, return_periods), "hindcast"
        if fit is None:
            had = f"{n_obs} observed annual maxima (< {min_years})" if observed is not None else "no observed record"
            notes[str(basin)] = f"none: {had} and fewer than {MIN_YEARS} years of hindcast"
            continue
        rows += levels_from_fit(basin, fit, source)
        why = ""
        if source == "hindcast":
            why = (f" ({n_obs} observed years < min_years {min_years})" if observed is not None
                   else " (no observed record)")
        notes[str(basin)] = f"{source} annual maxima, {fit.n_years} years, {fit.distribution} by L-moments{why}"
    return rows, notes
