"""Probabilistic verification of ensemble discharge forecasts, and the two reference ensembles.

Inputs and NaN handling (the same for every score)
==================================================
A score works on **one series** (one basin, one lead): ``obs`` is a 1-D array ``(T,)`` and
``members`` a 2-D array ``(T, M)`` in the same units; row ``t`` of ``members`` is the ensemble
for the day ``obs[t]`` observes. The members are the M members of a weather ensemble, or M
equally spaced quantiles of a predicted distribution passed as members; either way each member
has weight 1/M. Then:

- a day whose ``obs`` is NaN is **dropped**;
- a NaN member is **ignored**: the day is scored with the ``M_t`` members that are not NaN, exactly
  as if the NaN members had never been in the array (so ``M`` can pad ragged ensembles with NaN);
- a day whose members are all NaN is **dropped**.

Per-day scores (:func:`crps`, :func:`pit`) return ``(T,)`` with NaN on the dropped days; summary
scores average over the valid days only and are NaN when there is none. Wrong shapes raise
``ValueError``. Nothing here reads a file.

Definitions (y = obs, x_1..x_M the valid members of one day, X, X' independent draws from them)
------------------------------------------------------------------------------------------------
- ``crps = E|X − y| − ½ E|X − X'|`` of the empirical ensemble (Gneiting & Raftery 2007), in the
  units of the inputs; 0 is perfect, a one-member ensemble gives ``|x − y|``. This is the
  ordinary ("nrg") CRPS, **not** the fair estimator with ``M(M−1)`` in the second term.
  It is computed with ``scoringrules.crps_ensemble(obs, fct, estimator="qd")``: the quantile
  decomposition ``(2/M²) Σ_i (x_(i) − y)(M·1{y < x_(i)} − i + ½)`` is the same number as
  the energy form for an empirical ensemble, but costs O(M log M) instead of O(M²) per day,
  which matters for climatology ensembles of several hundred members. (scoringrules' ``"pwm"``
  estimator divides by ``M(M−1)``, i.e. it is the fair CRPS, so it is not used.)
- ``crpss = 1 − CRPS_model / CRPS_ref`` of the two mean CRPS: 1 perfect, 0 = as good as the reference.
- ``pit``: randomized probability integral transform ``u = (n_below + U·(n_equal + 1)) / (M + 1)``
  with ``n_below = #{x_i < y}``, ``n_equal = #{x_i = y}`` and ``U ~ uniform(0, 1)``: the
  randomized rank of y among the members, so ties are spread evenly over the ranks they share and an
  obs outside all members falls in ``[0, 1/(M+1)]`` or ``[M/(M+1), 1]``. Calibrated ensembles give
  uniform PIT values; under-dispersed ones a U-shaped histogram.
- Intervals: the central ``level`` interval of a day's members runs from their quantile
  ``(1 − level)/2`` to ``(1 + level)/2``, linear interpolation between order statistics (NumPy's
  default ``"linear"`` method); coverage counts the bounds as inside.
- Thresholds: the forecast probability of an event is the fraction of members ``> threshold``;
  the event is ``obs > threshold``; a warning is issued when the probability is ``≥ p_warn``.

Reference ensembles
-------------------
:func:`climatology_ensemble` (the training observations of the same season) and
:func:`persistence_ensemble` (the issue-day flow plus the training distribution of lead-day
changes) must be built from training-period data only: they see nothing but what the caller passes.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

__all__ = [
    "crps", "mean_crps", "crpss", "climatology_ensemble", "persistence_ensemble", "pit",
    "pit_histogram", "pit_uniformity", "interval_coverage", "interval_width", "brier_score",
    "contingency", "paired_median_difference", "quantile_cdf", "quantiles_of", "crps_quantiles",
    "pit_quantiles", "quantile_coverage", "brier_quantiles", "contingency_quantiles",
]


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------
def _members(members) -> np.ndarray:
    x = np.asarray(members, dtype="float64")
    if x.ndim != 2:
        raise ValueError(f"members must be a 2-D array (T, M), got shape {x.shape}")
    return x


def _series(obs, members) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``obs`` (T,), the members sorted along each row with the NaN last (T, M), and the count of
    valid members per day (T,)."""
    o = np.asarray(obs, dtype="float64")
    x = _members(members)
    if o.ndim != 1 or x.shape[0] != o.shape[0]:
        raise ValueError(f"obs must be (T,) and members (T, M) with the same T, got shapes "
                         f"{o.shape} and {x.shape}")
    return o, np.sort(x, axis=1), np.sum(~np.isnan(x), axis=1)


def _valid_days(obs: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return ~np.isnan(obs) & (counts > 0)


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level must lie strictly between 0 and 1, got {level}")
    return level


def _row_quantiles(sorted_x: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` of each row's valid members (rows sorted, NaN last), NumPy's ``"linear"``
    method: position ``q·(k − 1)`` between order statistics. Rows without a member give NaN."""
    out = np.full(sorted_x.shape[0], np.nan)
    ok = counts > 0
    if not np.any(ok):
        return out
    xs, k = sorted_x[ok], counts[ok]
    pos = q * (k - 1)
    lo = np.floor(pos).astype("int64")
    hi = np.minimum(lo + 1, k - 1)
    frac = pos - lo
    x_lo = np.take_along_axis(xs, lo[:, None], axis=1)[:, 0]
    x_hi = np.take_along_axis(xs, hi[:, None], axis=1)[:, 0]
    out[ok] = x_lo + frac * (x_hi - x_lo)
    return out


# ---------------------------------------------------------------------------------------------
# CRPS
# ---------------------------------------------------------------------------------------------
def crps(obs, members) -> np.ndarray:
    """CRPS of each day's ensemble, ``(T,)``; NaN on the dropped days (see the module docstring).

    The ordinary empirical-ensemble CRPS ``E|X − y| − ½E|X − X'|``, via
    ``scoringrules.crps_ensemble(..., estimator="qd")`` (equal to ``"nrg"``, faster)."""
    import scoringrules as sr

    o, xs, counts = _series(obs, members)
    out = np.full(o.shape, np.nan)
    valid = _valid_days(o, counts)
    for k in np.unique(counts[valid]):
        rows = valid & (counts == k)
        out[rows] = np.asarray(sr.crps_ensemble(o[rows], xs[rows, :k], estimator="qd", sorted_ensemble=True,
                                                backend="numpy"), dtype="float64")
    return out


def mean_crps(obs, members) -> float:
    """Mean CRPS over the valid days (NaN when there is none)."""
    c = crps(obs, members)
    c = c[~np.isnan(c)]
    return float(c.mean()) if c.size else math.nan


def crpss(crps_model_mean: float, crps_ref_mean: float) -> float:
    """Skill score ``1 − model / ref`` of two mean CRPS (NaN when ``ref`` is 0 or NaN)."""
    model, ref = float(crps_model_mean), float(crps_ref_mean)
    if math.isnan(ref) or ref == 0.0:
        return math.nan
    return 1.0 - model / ref


# ---------------------------------------------------------------------------------------------
# reference ensembles
# ---------------------------------------------------------------------------------------------
def _doy365(dates: pd.DatetimeIndex) -> np.ndarray:
    """Day of year 1..365 (day 366 of a leap year counts as 365); NaT gives 0."""
    doy = np.asarray(dates.day_of_year, dtype="float64")
    return np.where(np.isnan(doy), 0, np.minimum(np.nan_to_num(doy), 365)).astype("int64")


def climatology_ensemble(train_days, train_q, target_days, half_window: int = 15,
                         max_members: int | None = None) -> np.ndarray:
    """Seasonal climatology ensemble ``(T, M)``, padded with NaN, for the ``T`` target days.

    The members of a target day are the non-NaN training observations whose day of year lies
    within ``± half_window`` days of the target's, circularly over the year end (Dec 25 and
    Jan 5 are 11 days apart), pooled over the training years and kept in the order of
    ``train_days``. Days of year are ``date.day_of_year`` with day 366 treated as 365.
    ``M`` is the largest member count among the target days; shorter rows are padded with NaN
    (which every score ignores). With ``max_members`` a window holding more than that many values is replaced by its
    ``max_members`` equally spaced quantiles (levels ``(i + 0.5)/max_members``, linear
    interpolation), so ``M ≤ max_members``. A target day whose window holds no training value (or a
    NaT target) gets an all-NaN row, which the scores drop.

    ``train_days`` / ``train_q``: the training period's dates and discharges, same length;
    ``target_days``: the dates to forecast (anything ``pd.DatetimeIndex`` accepts)."""
    days = pd.DatetimeIndex(train_days)
    q = np.asarray(train_q, dtype="float64")
    if q.ndim != 1 or q.shape[0] != len(days):
        raise ValueError(f"train_q must be 1-D with one value per training day, got shape {q.shape} "
                         f"for {len(days)} days")
    half_window = int(half_window)
    if half_window < 0:
        raise ValueError(f"half_window must be >= 0, got {half_window}")
    if max_members is not None and int(max_members) < 1:
        raise ValueError(f"max_members must be >= 1, got {max_members}")
    targets = pd.DatetimeIndex(target_days)

    ok = ~np.isnan(q) & ~np.asarray(days.isna())
    q_ok, doy_ok = q[ok], _doy365(days[ok])
    slots = np.arange(1, 366)
    dist = np.abs(slots[:, None] - doy_ok[None, :]) % 365
    in_window = np.minimum(dist, 365 - dist) <= half_window  # (365, N_valid)
    counts = in_window.sum(axis=1)
    m = int(counts.max()) if counts.size else 0
    if max_members is not None:
        m = min(m, int(max_members))
    m = max(m, 1)
    table = np.full((366, m), np.nan)  # row 0: NaT targets; rows filled from the left
    for s in range(365):
        vals = q_ok[in_window[s]]
        if vals.size > m:
            vals = np.quantile(vals, (np.arange(m) + 0.5) / m)
        table[s + 1, :vals.size] = vals
    out = table[_doy365(targets)]
    used = int(np.sum(~np.isnan(out), axis=1).max()) if len(out) else 0
    return out[:, :max(used, 1)]


def persistence_ensemble(issue_q, lead: int, train_q, n_members: int = 50) -> np.ndarray:
    """Persistence ensemble ``(T, n_members)``: the issue-day flow plus the training distribution of
    the ``lead``-day change.

    ``issue_q`` ``(T,)``: the last observed discharge when each forecast is issued ("yesterday's
    flow" for lead ``lead`` counted from it). ``train_q``: the training series of consecutive days
    (a 1-D array, or a Series with a DatetimeIndex, which is first put on a gap-free daily index).
    The changes ``d = q[t + lead] − q[t]`` over every ``t`` where both are not NaN give the members
    ``issue_q[t] + quantile(d, (i + 0.5)/n_members)``, ``i = 0..n_members−1`` (linear
    interpolation), clipped at 0 because discharge is never negative. A NaN ``issue_q`` gives a
    NaN row; a training series without one valid change gives all-NaN members."""
    lead, n_members = int(lead), int(n_members)
    if lead < 1:
        raise ValueError(f"lead must be >= 1 day, got {lead}")
    if n_members < 1:
        raise ValueError(f"n_members must be >= 1, got {n_members}")
    issue = np.asarray(issue_q, dtype="float64")
    if issue.ndim != 1:
        raise ValueError(f"issue_q must be a 1-D array (T,), got shape {issue.shape}")
    if isinstance(train_q, pd.Series) and isinstance(train_q.index, pd.DatetimeIndex) and len(train_q):
        idx = train_q.index
        if not (idx.is_unique and idx.is_monotonic_increasing):
            raise ValueError("train_q's dates must be unique and increasing")
        full = pd.date_range(idx[0].normalize(), idx[-1].normalize(), freq="D")
        train_q = train_q.set_axis(idx.normalize()).reindex(full)
    q = np.asarray(train_q, dtype="float64")
    if q.ndim != 1:
        raise ValueError(f"train_q must be a 1-D series, got shape {q.shape}")
    d = q[lead:] - q[:-lead] if q.size > lead else np.empty(0)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return np.full((issue.size, n_members), np.nan)
    changes = np.quantile(d, (np.arange(n_members) + 0.5) / n_members)
    return np.maximum(issue[:, None] + changes[None, :], 0.0)  # np.maximum keeps NaN


# ---------------------------------------------------------------------------------------------
# PIT
# ---------------------------------------------------------------------------------------------
def pit(obs, members, rng) -> np.ndarray:
    """Randomized PIT value of each day in [0, 1], ``(T,)``; NaN on the dropped days.

    ``u = (n_below + U·(n_equal + 1)) / (M_t + 1)`` with ``M_t`` the day's valid members and
    ``U ~ uniform(0, 1)`` from ``rng`` (a ``numpy.random.Generator``, or a seed). One ``U`` is drawn
    for every one of the T days, dropped or not, so a day's value does not depend on which other
    days are NaN."""
    o, xs, counts = _series(obs, members)
    u = np.random.default_rng(rng).random(o.shape[0])
    with np.errstate(invalid="ignore"):
        n_below = np.sum(xs < o[:, None], axis=1)
        n_equal = np.sum(xs == o[:, None], axis=1)
    out = (n_below + u * (n_equal + 1)) / (counts + 1)
    out[~_valid_days(o, counts)] = np.nan
    return out


def pit_histogram(pit_values, bins: int = 10) -> np.ndarray:
    """Counts of the non-NaN PIT values in ``bins`` equal bins over [0, 1] (1.0 goes in the last)."""
    p = np.asarray(pit_values, dtype="float64").ravel()
    counts, _ = np.histogram(p[~np.isnan(p)], bins=int(bins), range=(0.0, 1.0))
    return counts


def pit_uniformity(pit_values, bins: int = 10) -> dict[str, float]:
    """How far the PIT histogram is from flat.

    Returns ``chi2`` and ``p_value`` of ``scipy.stats.chisquare`` against ``n/bins`` per bin,
    ``mad`` = mean over the bins of ``|count/n − 1/bins|`` (a reliability index: 0 flat, larger
    worse) and ``n``, the number of PIT values used. All NaN when ``n`` is 0."""
    from scipy.stats import chisquare

    counts = pit_histogram(pit_values, bins)
    n = int(counts.sum())
    if n == 0:
        return {"chi2": math.nan, "p_value": math.nan, "mad": math.nan, "n": 0}
    res = chisquare(counts)
    mad = float(np.mean(np.abs(counts / n - 1.0 / counts.size)))
    return {"chi2": float(res.statistic), "p_value": float(res.pvalue), "mad": mad, "n": n}


# ---------------------------------------------------------------------------------------------
# intervals
# ---------------------------------------------------------------------------------------------
def interval_coverage(obs, members, level: float) -> float:
    """Fraction of the valid days whose obs lies in the central ``level`` interval of the members,
    bounds included (NaN when there is no valid day)."""
    level = _check_level(level)
    o, xs, counts = _series(obs, members)
    valid = _valid_days(o, counts)
    if not np.any(valid):
        return math.nan
    lo = _row_quantiles(xs[valid], counts[valid], (1.0 - level) / 2)
    hi = _row_quantiles(xs[valid], counts[valid], (1.0 + level) / 2)
    y = o[valid]
    return float(np.mean((y >= lo) & (y <= hi)))


def interval_width(members, level: float) -> np.ndarray:
    """Width of each day's central ``level`` interval, ``(T,)``, in the units of the members; NaN on
    days whose members are all NaN (there is no obs here, so no other day is dropped)."""
    level = _check_level(level)
    x = _members(members)
    xs, counts = np.sort(x, axis=1), np.sum(~np.isnan(x), axis=1)
    return _row_quantiles(xs, counts, (1.0 + level) / 2) - _row_quantiles(xs, counts, (1.0 - level) / 2)


# ---------------------------------------------------------------------------------------------
# thresholds
# ---------------------------------------------------------------------------------------------
def _event_probability(obs, members, threshold) -> tuple[np.ndarray, np.ndarray]:
    """Forecast probability and the event (0/1) on the valid days. ``threshold``: a number, or
    one per day ``(T,)``."""
    o, xs, counts = _series(obs, members)
    thr = np.broadcast_to(np.asarray(threshold, dtype="float64"), o.shape)
    valid = _valid_days(o, counts) & ~np.isnan(thr)
    with np.errstate(invalid="ignore"):
        n_above = np.sum(xs[valid] > thr[valid, None], axis=1)
    prob = n_above / counts[valid]
    event = (o[valid] > thr[valid]).astype("float64")
    return prob, event


def brier_score(obs, members, threshold) -> float:
    """Brier score ``mean((p − e)²)`` over the valid days, ``p`` = fraction of members above
    ``threshold``, ``e`` = 1 if obs is above it (NaN when there is no valid day)."""
    prob, event = _event_probability(obs, members, threshold)
    return float(np.mean((prob - event) ** 2)) if prob.size else math.nan


def contingency(obs, members, threshold, p_warn: float = 0.5) -> dict[str, float]:
    """2×2 table of warnings (forecast probability ``≥ p_warn``) against events (obs > threshold).

    Returns ``hits``, ``misses``, ``false_alarms``, ``correct_negatives``, ``n_events``, ``n``
    (valid days), ``hit_rate`` = hits / (hits + misses) (probability of detection; NaN when no
    event) and ``false_alarm_ratio`` = false_alarms / (hits + false_alarms) (NaN when no warning)."""
    prob, event = _event_probability(obs, members, threshold)
    return _contingency(prob, event, p_warn)


def _contingency(prob: np.ndarray, event: np.ndarray, p_warn: float) -> dict[str, float]:
    warn, ev = prob >= float(p_warn), event > 0
    hits = int(np.sum(warn & ev))
    misses = int(np.sum(~warn & ev))
    false_alarms = int(np.sum(warn & ~ev))
    correct_negatives = int(np.sum(~warn & ~ev))
    return {
        "hits": hits, "misses": misses, "false_alarms": false_alarms,
        "correct_negatives": correct_negatives, "n_events": hits + misses, "n": int(prob.size),
        "hit_rate": hits / (hits + misses) if hits + misses else math.nan,
        "false_alarm_ratio": false_alarms / (hits + false_alarms) if hits + false_alarms else math.nan,
    }


# ---------------------------------------------------------------------------------------------
# paired comparison over basins
# ---------------------------------------------------------------------------------------------
def paired_median_difference(a, b, n_boot: int = 2000, ci: float = 0.90, seed: int = 0) -> dict[str, float]:
    """Median of the per-basin differences ``a − b`` with a bootstrap interval and a Wilcoxon test.

    ``a``, ``b``: one score per basin (same basins, same order); a pair with a NaN is dropped.
    Returns ``median_difference``; ``ci_low``, ``ci_high``: the ``(1 ± ci)/2`` percentiles of the
    median over ``n_boot`` resamples of the basins with replacement (``numpy.random.default_rng(seed)``;
    NaN with fewer than 2 pairs); ``wilcoxon_p``: two-sided ``scipy.stats.wilcoxon`` p-value on the
    differences (NaN with fewer than 2 pairs or when every difference is 0, never raising);
    ``n``: the pairs used; ``wins``: how many have ``a > b``."""
    from scipy.stats import wilcoxon

    x = np.asarray(a, dtype="float64")
    y = np.asarray(b, dtype="float64")
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"a and b must be 1-D arrays of the same length, got shapes {x.shape} and {y.shape}")
    if not 0.0 < float(ci) < 1.0:
        raise ValueError(f"ci must lie strictly between 0 and 1, got {ci}")
    ok = ~(np.isnan(x) | np.isnan(y))
    d = x[ok] - y[ok]
    n = int(d.size)
    out = {"median_difference": float(np.median(d)) if n else math.nan, "ci_low": math.nan,
           "ci_high": math.nan, "wilcoxon_p": math.nan, "n": n, "wins": int(np.sum(x[ok] > y[ok]))}
    if n < 2:
        return out
    rng = np.random.default_rng(seed)
    boot = np.median(d[rng.integers(0, n, size=(int(n_boot), n))], axis=1)
    out["ci_low"], out["ci_high"] = (float(v) for v in np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2]))
    if np.any(d != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out["wilcoxon_p"] = float(wilcoxon(d).pvalue)
            except ValueError:
                pass
    return out


# ---------------------------------------------------------------------------------------------
# forecasts given as quantiles (the model's distribution head)
# ---------------------------------------------------------------------------------------------
# A forecast given as Q quantiles ``qq`` (T, Q) at ascending ``levels`` (Q,) (e.g. 0.05 .. 0.95)
# is scored as that distribution, not as Q equally weighted members: its CDF is linear between
# neighbouring quantiles (:func:`quantile_cdf`); the CRPS is the quantile-score approximation
# (2/Q) Σ pinball (scoringrules.crps_quantile); intervals are read off the levels. Reference
# ensembles are turned into the same quantiles (:func:`quantiles_of`) so that every system is
# scored by the same estimator. NaN rules as above: a day with NaN obs or a NaN quantile is dropped.

def quantile_cdf(levels, quantiles, x) -> np.ndarray:
    """P(Q <= x) of forecasts given as ``quantiles`` (..., Q) at ascending ``levels`` (Q,); ``x`` a
    number or an array (the two broadcast against each other).

    Linear between neighbouring quantiles. Beyond the outermost levels the tails are exponential
    with the slope of the two outermost quantiles of that side: above the top quantile
    ``1 - F(x) = (1 - levels[-1]) exp(-(x - q[-1]) / s)``, ``s = (q[-1] - q[-2]) / ln((1 -
    levels[-2]) / (1 - levels[-1]))``, and the lower tail likewise. So a threshold far above the
    forecast gets a probability near 0 (not the 5 % the outer level leaves open), and the CDF
    still passes through every given quantile (PIT bins aligned with the levels stay exact). A
    tail whose two outer quantiles coincide is a step. Where several levels share one value (a
    forecast clamped at zero) ``x`` at that value gets the highest of them. NaN gives NaN."""
    lv = np.asarray(levels, dtype="float64").reshape(-1)
    qq = np.asarray(quantiles, dtype="float64")
    if qq.shape[-1] != lv.size:
        raise ValueError(f"quantiles have {qq.shape[-1]} levels, expected {lv.size}")
    xs = np.asarray(x, dtype="float64")
    shape = np.broadcast_shapes(qq.shape[:-1], xs.shape)
    qq, xs = np.broadcast_to(qq, (*shape, lv.size)), np.broadcast_to(xs, shape)
    q2, x1 = qq.reshape(-1, lv.size), xs.reshape(-1)
    out = np.full(x1.shape, np.nan)
    ok = np.isfinite(x1) & np.isfinite(q2).all(axis=1)
    q2, xv = q2[ok], x1[ok]
    k = np.sum(q2 <= xv[:, None], axis=1)  # levels at or below x
    cdf = np.empty(xv.shape)
    below, above = k == 0, k == lv.size
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s_lo = (q2[:, 1] - q2[:, 0]) / math.log(lv[1] / lv[0])
        s_hi = (q2[:, -1] - q2[:, -2]) / math.log((1 - lv[-2]) / (1 - lv[-1]))
        tail_lo = np.where(s_lo > 0, lv[0] * np.exp(-(q2[:, 0] - xv) / np.where(s_lo > 0, s_lo, 1.0)), 0.0)
        tail_hi = np.where(s_hi > 0, 1 - (1 - lv[-1]) * np.exp(-(xv - q2[:, -1]) / np.where(s_hi > 0, s_hi, 1.0)),
                           1.0)
    cdf[below], cdf[above] = tail_lo[below], tail_hi[above]
    mid = ~below & ~above
    if mid.any():
        km, qm, xm = k[mid], q2[mid], xv[mid]
        rows = np.arange(km.size)
        lo_q, hi_q = qm[rows, km - 1], qm[rows, km]
        frac = np.where(hi_q > lo_q, (xm - lo_q) / np.where(hi_q > lo_q, hi_q - lo_q, 1.0), 0.0)
        cdf[mid] = lv[km - 1] + (lv[km] - lv[km - 1]) * frac
    # x exactly at the highest quantile: the last level (not the tail midpoint)
    at_top = above & (q2[:, -1] == xv)
    cdf[at_top] = lv[-1]
    out[ok] = cdf
    return out.reshape(shape)


def mixture_quantiles(levels, quantiles, chunk: int = 256) -> np.ndarray:
    """The ``levels`` quantiles (..., Q) of the equal-weight mixture of R forecast distributions
    ``quantiles`` (R, ..., Q) given at ``levels`` (e.g. one per ensemble member of the weather
    forecast): the mixture's CDF is the mean of the members' :func:`quantile_cdf` (exponential
    tails included), evaluated at the union of the members' quantiles and inverted linearly
    between them. Members that are NaN for a forecast are left out of it (NaN where none is
    left). A single member gives back its own quantiles."""
    lv = np.asarray(levels, dtype="float64").reshape(-1)
    qq = np.asarray(quantiles, dtype="float64")
    if qq.ndim < 2 or qq.shape[-1] != lv.size:
        raise ValueError(f"quantiles have shape {qq.shape}, expected (members, ..., {lv.size})")
    r, shape = qq.shape[0], qq.shape[1:-1]
    flat = qq.reshape(r, -1, lv.size).transpose(1, 0, 2)  # (F, R, Q)
    out = np.full((flat.shape[0], lv.size), np.nan)
    for a in range(0, flat.shape[0], chunk):
        block = flat[a:a + chunk]  # (f, R, Q)
        f = block.shape[0]
        knots = np.sort(block.reshape(f, -1), axis=1)  # (f, R*Q), NaN last
        ok = np.isfinite(block).all(axis=2)  # (f, R) valid members
        cdf = quantile_cdf(lv, block[:, :, None, :], knots[:, None, :])  # (f, R, R*Q)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mix = np.nanmean(np.where(ok[:, :, None], cdf, np.nan), axis=1)  # (f, R*Q)
        for i in range(f):
            good = np.isfinite(knots[i]) & np.isfinite(mix[i])
            if not ok[i].any() or not good.any():
                continue
            x, c = knots[i][good], np.maximum.accumulate(mix[i][good])
            out[a + i] = np.interp(lv, c, x)
    return out.reshape(*shape, lv.size)


def pooled_quantiles(levels, quantiles, scale=None) -> np.ndarray:
    """The forecast distribution of an ensemble-driven run: :func:`mixture_quantiles` of the members'
    ``quantiles`` (R, ..., L, Q), then, with ``scale`` (L, Q) (fitted on the validation period by
    :func:`hydrocast.model.fit_spread_scale` around the pooled median), each level's distance from
    the pooled median times its factor, sorted so that no two levels cross."""
    lv = np.asarray(levels, dtype="float64").reshape(-1)
    out = mixture_quantiles(lv, quantiles)
    if scale is None:
        return out
    s = np.asarray(scale, dtype="float64")
    if s.shape != out.shape[-2:]:
        raise ValueError(f"scale has shape {s.shape}, expected (leads, levels) = {out.shape[-2:]}")
    med = out[..., [int(np.argmin(np.abs(lv - 0.5)))]]
    return np.sort(med + s * (out - med), axis=-1)


def quantiles_of(members, levels) -> np.ndarray:
    """(T, Q) the ``levels`` quantiles of each day's valid members (linear interpolation; NaN
    where a day has no valid member): a reference ensemble as quantiles."""
    x = _members(members)
    lv = np.asarray(levels, dtype="float64").reshape(-1)
    out = np.full((x.shape[0], lv.size), np.nan)
    has = np.isfinite(x).any(axis=1)
    if has.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[has] = np.nanquantile(x[has], lv, axis=1).T
    return out


def _quantile_series(obs, qq, levels) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    o = np.asarray(obs, dtype="float64")
    q = np.asarray(qq, dtype="float64")
    lv = np.asarray(levels, dtype="float64").reshape(-1)
    if o.ndim != 1 or q.ndim != 2 or q.shape != (o.size, lv.size):
        raise ValueError(f"obs must be (T,) and quantiles (T, Q) with Q = len(levels), got shapes "
                         f"{o.shape}, {q.shape}, {lv.shape}")
    valid = np.isfinite(o) & np.isfinite(q).all(axis=1)
    return o, q, lv, valid


def crps_quantiles(obs, quantiles, levels) -> np.ndarray:
    """(T,) the CRPS of quantile forecasts, ``(2/Q) Σ_q pinball_q`` (scoringrules.crps_quantile);
    NaN on dropped days."""
    import scoringrules as sr

    o, q, lv, valid = _quantile_series(obs, quantiles, levels)
    out = np.full(o.shape, np.nan)
    if valid.any():
        out[valid] = np.asarray(sr.crps_quantile(o[valid], q[valid], lv, backend="numpy"), dtype="float64")
    return out


def pit_quantiles(obs, quantiles, levels) -> np.ndarray:
    """(T,) PIT values ``F(obs)`` of quantile forecasts (:func:`quantile_cdf`); NaN on dropped days."""
    o, q, lv, valid = _quantile_series(obs, quantiles, levels)
    out = np.full(o.shape, np.nan)
    out[valid] = quantile_cdf(lv, q[valid], o[valid])
    return out


def quantile_coverage(obs, quantiles, levels, level: float) -> float:
    """Fraction of valid days whose obs lies in ``[q_(1-level)/2, q_(1+level)/2]`` (both levels must
    be among ``levels``; bounds inside)."""
    o, q, lv, valid = _quantile_series(obs, quantiles, levels)
    level = _check_level(level)
    idx = []
    for target in ((1 - level) / 2, (1 + level) / 2):
        hit = np.flatnonzero(np.isclose(lv, target, atol=1e-9))
        if not hit.size:
            raise ValueError(f"level {target:g} is not among the quantile levels")
        idx.append(int(hit[0]))
    if not valid.any():
        return math.nan
    ov, qv = o[valid], q[valid]
    return float(np.mean((ov >= qv[:, idx[0]]) & (ov <= qv[:, idx[1]])))


def _quantile_events(obs, quantiles, levels, threshold) -> tuple[np.ndarray, np.ndarray]:
    o, q, lv, valid = _quantile_series(obs, quantiles, levels)
    thr = np.broadcast_to(np.asarray(threshold, dtype="float64"), o.shape)
    valid = valid & np.isfinite(thr)
    prob = 1.0 - quantile_cdf(lv, q[valid], thr[valid])
    return prob, (o[valid] > thr[valid]).astype("float64")


def brier_quantiles(obs, quantiles, levels, threshold) -> float:
    """Brier score of the exceedance probability ``1 - F(threshold)`` of quantile forecasts."""
    prob, event = _quantile_events(obs, quantiles, levels, threshold)
    return float(np.mean((prob - event) ** 2)) if prob.size else math.nan


def contingency_quantiles(obs, quantiles, levels, threshold, p_warn: float = 0.5) -> dict[str, float]:
    """:func:`contingency` for quantile forecasts (warning: ``1 - F(threshold) >= p_warn``)."""
    prob, event = _quantile_events(obs, quantiles, levels, threshold)
    return _contingency(prob, event, p_warn)
