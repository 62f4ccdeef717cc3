"""Verification metrics for discharge forecasts, and the two baselines every forecast must beat.

NaN handling (the same for every metric)
========================================
Metrics take two 1-D arrays of equal length, ``sim`` (forecast) and ``obs`` (observed), in the
same units. A day where **either** is NaN is dropped (pairwise deletion), so a NaN in ``obs``
gives exactly the result of removing that day from both series. After that:

=============== ===================================================================================
fewer than 2    every metric is NaN (``n`` still says how many valid pairs there were)
valid pairs
obs variance 0  ``nse``, ``kge`` and ``r``, ``alpha`` are NaN (they divide by σo); ``rmse``,
                ``beta`` and ``pbias`` are still defined
sim variance 0  ``r`` (and so ``kge``) is NaN; ``alpha`` is 0
Σ obs = 0       ``pbias`` and ``beta`` are NaN
=============== ===================================================================================

Definitions (s = sim, o = obs over the valid pairs; σ are population standard deviations)
-----------------------------------------------------------------------------------------
- ``nse = 1 − Σ(s−o)² / Σ(o−ō)²`` (Nash & Sutcliffe 1970): 1 perfect, 0 = as good as ō.
- ``kge = 1 − √((r−1)² + (α−1)² + (β−1)²)`` (Gupta et al. 2009) with Pearson ``r``,
  ``α = σs/σo`` and ``β = μs/μo``; :func:`kge` returns all four.
- ``pbias = 100 · Σ(s−o) / Σo`` in percent; positive = the forecast has too much water.
- ``rmse = √(mean((s−o)²))`` in the units of the inputs.
- ``peak_timing``: see :func:`peak_timing` (days).

Baselines
---------
:func:`persistence` (tomorrow = today) and :func:`doy_climatology` (the training-period mean for
the day of year) are pure NumPy/pandas and must be fitted on the training period only.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy.signal import find_peaks

METRIC_COLUMNS = ("nse", "kge", "r", "alpha", "beta", "pbias", "rmse", "peak_timing", "n")


class KGE(NamedTuple):
    kge: float
    r: float
    alpha: float
    beta: float


def _pairs(sim, obs) -> tuple[np.ndarray, np.ndarray]:
    """The valid (both finite-or-not-NaN) pairs as float64 arrays."""
    s = np.asarray(sim, dtype="float64")
    o = np.asarray(obs, dtype="float64")
    if s.ndim != 1 or o.ndim != 1 or s.shape != o.shape:
        raise ValueError(f"sim and obs must be 1-D arrays of the same length, got shapes "
                         f"{s.shape} and {o.shape}")
    ok = ~(np.isnan(s) | np.isnan(o))
    return s[ok], o[ok]


def n_valid(sim, obs) -> int:
    """Number of days where both ``sim`` and ``obs`` are not NaN."""
    return int(_pairs(sim, obs)[0].size)


def nse(sim, obs) -> float:
    """Nash–Sutcliffe efficiency over the valid pairs (NaN: < 2 pairs or constant obs)."""
    s, o = _pairs(sim, obs)
    if s.size < 2:
        return math.nan
    denom = float(np.sum((o - o.mean()) ** 2))
    if denom == 0.0:
        return math.nan
    return 1.0 - float(np.sum((s - o) ** 2)) / denom


def kge(sim, obs) -> KGE:
    """Kling–Gupta efficiency (Gupta et al. 2009) and its components ``r``, ``alpha``, ``beta``."""
    s, o = _pairs(sim, obs)
    if s.size < 2:
        return KGE(math.nan, math.nan, math.nan, math.nan)
    ms, mo = float(s.mean()), float(o.mean())
    ss, so = float(s.std()), float(o.std())
    ds, do = s - ms, o - mo
    num = float(np.sum(ds * do))
    den = math.sqrt(float(np.sum(ds**2)) * float(np.sum(do**2)))
    r = num / den if den > 0 else math.nan
    alpha = ss / so if so > 0 else math.nan
    beta = ms / mo if mo != 0 else math.nan
    if so == 0:
        r = math.nan
    value = 1.0 - math.sqrt((r - 1) ** 2 + (alpha - 1) ** 2 + (beta - 1) ** 2)
    return KGE(value, r, alpha, beta)


def pbias(sim, obs) -> float:
    """Percent bias ``100 Σ(s−o)/Σo`` (NaN: < 2 pairs or Σo = 0)."""
    s, o = _pairs(sim, obs)
    total = float(o.sum())
    if s.size < 2 or total == 0.0:
        return math.nan
    return 100.0 * float(np.sum(s - o)) / total


def rmse(sim, obs) -> float:
    """Root mean square error, in the units of the inputs (NaN: < 2 pairs)."""
    s, o = _pairs(sim, obs)
    if s.size < 2:
        return math.nan
    return math.sqrt(float(np.mean((s - o) ** 2)))


def peak_timing(sim, obs, window: int = 3, distance: int = 100,
                prominence_factor: float = 1.0) -> float:
    """Mean absolute timing error (days) between observed peaks and the simulated peaks.

    After NeuralHydrology's ``mean_peak_timing`` (Kratzert et al.), on daily series whose
    consecutive elements are consecutive days:

    1. drop the days where ``sim`` or ``obs`` is NaN;
    2. find the observed peaks with ``scipy.signal.find_peaks(obs, distance=distance,
       prominence=prominence_factor * std(obs))`` (NH's defaults: 100 days apart, one standard
       deviation of prominence);
    3. skip a peak whose ±``window`` days run off either end of the series or span a dropped
       day (the window would not be ``2·window + 1`` real days);
    4. take the day of the simulated maximum within ±``window`` days of the observed peak (the
       first one on a tie) and record ``|offset|`` in days.

    Returns the mean of the recorded offsets, or NaN when no observed peak qualifies. NH keeps the
    simulated value on the peak day when it is itself a local maximum; here the window maximum is
    always used, which is what the definition "nearest simulated peak within the window" means
    when two simulated bumps share the window."""
    s = np.asarray(sim, dtype="float64")
    o = np.asarray(obs, dtype="float64")
    if s.ndim != 1 or s.shape != o.shape:
        raise ValueError(f"sim and obs must be 1-D arrays of the same length, got shapes "
                         f"{s.shape} and {o.shape}")
    pos = np.flatnonzero(~(np.isnan(s) | np.isnan(o)))  # day number of each valid pair
    if pos.size < 2 * window + 1:
        return math.nan
    sv, ov = s[pos], o[pos]
    peaks, _ = find_peaks(ov, distance=distance, prominence=prominence_factor * float(ov.std()))
    errors = []
    for i in peaks:
        lo, hi = i - window, i + window
        if lo < 0 or hi >= ov.size or pos[hi] - pos[lo] != 2 * window:
            continue
        j = lo + int(np.argmax(sv[lo:hi + 1]))
        errors.append(abs(int(pos[i]) - int(pos[j])))
    return float(np.mean(errors)) if errors else math.nan


def all_metrics(sim, obs, **peak_kwargs) -> dict[str, float]:
    """Every metric of :data:`METRIC_COLUMNS` for one series pair, as a dict."""
    k = kge(sim, obs)
    return {
        "nse": nse(sim, obs), "kge": k.kge, "r": k.r, "alpha": k.alpha, "beta": k.beta,
        "pbias": pbias(sim, obs), "rmse": rmse(sim, obs),
        "peak_timing": peak_timing(sim, obs, **peak_kwargs), "n": n_valid(sim, obs),
    }


def metrics_table(sim, obs, basin_ids: Sequence[str], lead_days: Sequence[int],
                  **peak_kwargs) -> pd.DataFrame:
    """Skill per basin and lead, plus a ``median`` row per lead.

    ``sim`` and ``obs`` are arrays ``(basin, time, lead)``: ``obs[b, t, l]`` is the observation
    for the day ``sim[b, t, l]`` forecasts; ``time`` runs over consecutive issue days (so peak
    timing offsets are days). Returns a DataFrame indexed by ``(basin, lead_days)`` (basin ids as
    text), columns :data:`METRIC_COLUMNS`; basin rows in the order given, then for each lead a row
    with basin ``"median"`` holding the NaN-ignoring median over the basins of **each column
    separately** (so its ``kge`` is not recomputed from its ``r``, ``alpha``, ``beta``)."""
    sim = np.asarray(sim, dtype="float64")
    obs = np.asarray(obs, dtype="float64")
    basin_ids = [str(b) for b in basin_ids]
    lead_days = [int(x) for x in lead_days]
    if sim.ndim != 3 or sim.shape != obs.shape:
        raise ValueError(f"sim and obs must be (basin, time, lead) arrays of one shape, got "
                         f"{sim.shape} and {obs.shape}")
    if sim.shape[0] != len(basin_ids) or sim.shape[2] != len(lead_days):
        raise ValueError(f"{len(basin_ids)} basin ids and {len(lead_days)} leads do not match the "
                         f"array shape {sim.shape}")
    rows, index = [], []
    for b, basin in enumerate(basin_ids):
        for l, lead in enumerate(lead_days):
            rows.append(all_metrics(sim[b, :, l], obs[b, :, l], **peak_kwargs))
            index.append((basin, lead))
    table = pd.DataFrame(rows, columns=list(METRIC_COLUMNS), dtype="float64")
    for l, lead in enumerate(lead_days):
        per_basin = table.iloc[[b * len(lead_days) + l for b in range(len(basin_ids))]].to_numpy()
        with np.errstate(all="ignore"):
            med = _nanmedian(per_basin)
        table.loc[len(table)] = med
        index.append(("median", lead))
    table.index = pd.MultiIndex.from_tuples(index, names=["basin", "lead_days"])
    return table


def _nanmedian(a: np.ndarray) -> np.ndarray:
    """Column-wise nanmedian; an all-NaN column gives NaN without a RuntimeWarning."""
    out = np.full(a.shape[1], np.nan)
    for j in range(a.shape[1]):
        col = a[:, j][~np.isnan(a[:, j])]
        if col.size:
            out[j] = np.median(col)
    return out


# ---------------------------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------------------------
def persistence(obs_series, issue_index, lead) -> np.ndarray:
    """Persistence forecast: the value observed on the issue day, for every lead.

    ``obs_series``: daily observations (a Series with a DatetimeIndex, or a 1-D array).
    ``issue_index``: the issue day(s), as integer positions into ``obs_series``, or as dates
    when ``obs_series`` is a Series with a DatetimeIndex (a date it does not hold gives NaN).
    ``lead``: the number of lead days H (leads 1..H) or a sequence of lead days.

    The forecast issued on day t for t+1..t+H is ``obs[t]``: the issue day's own observation is
    taken to be known when the forecast is made. If ``obs[t]`` is NaN the forecast is NaN for
    every lead; it does not fall back to an older observation, so a gap in the gauge record is
    visible in the baseline's ``n`` rather than quietly filled.

    Returns shape ``(n_lead,)`` for one issue day, ``(n_issue, n_lead)`` for several."""
    leads = np.arange(1, int(lead) + 1) if np.ndim(lead) == 0 else np.asarray(lead)
    values = np.asarray(obs_series, dtype="float64")
    scalar = np.ndim(issue_index) == 0
    issues = np.atleast_1d(np.asarray(issue_index))
    if np.issubdtype(issues.dtype, np.integer):
        pos = issues.astype("int64")
        if np.any((pos < 0) | (pos >= values.size)):
            raise IndexError(f"issue index outside the series of {values.size} days")
    else:
        if not (isinstance(obs_series, pd.Series) and isinstance(obs_series.index, pd.DatetimeIndex)):
            raise TypeError("issue dates need obs_series to be a Series with a DatetimeIndex")
        pos = obs_series.index.get_indexer(pd.DatetimeIndex(issues))
    out = np.where(pos >= 0, values[np.clip(pos, 0, None)], np.nan)
    out = np.repeat(out[:, None], leads.size, axis=1)
    return out[0] if scalar else out


def _noleap_doy(dates: pd.DatetimeIndex) -> np.ndarray:
    """Day of year 1..365 ignoring Feb 29: Mar 1 is always 60; Feb 29 shares Feb 28's slot (59)."""
    doy = np.asarray(dates.day_of_year)
    return doy - (dates.is_leap_year & (doy >= 60)).astype(int)


def doy_climatology(train_obs: pd.Series, period: tuple | None = None,
                    half_window: int = 15) -> Callable:
    """Day-of-year climatology from the training observations; returns ``f(date) -> value``.

    For each day of year d the value is the mean of every non-NaN training observation whose
    day of year lies within ``d ± half_window`` days (the window wraps around New Year), pooled
    over the training years. Days of year are counted on a 365-day calendar: Feb 29 is treated
    as Feb 28 (so a leap day both contributes to and is forecast from the Feb 28 slot).

    ``period = (start, end)`` (both included) restricts ``train_obs`` to the training period;
    without it the whole series is used, so pass only training data. Nothing outside it can
    change the result. ``f`` takes one date (returns a float) or many (returns an array);
    a day whose window holds no training value gives NaN."""
    s = pd.Series(train_obs, dtype="float64")
    if not isinstance(s.index, pd.DatetimeIndex):
        raise TypeError("train_obs must be a Series with a DatetimeIndex")
    if period is not None:
        start, end = (pd.Timestamp(p) for p in period)
        s = s[(s.index >= start) & (s.index <= end)]
    s = s.dropna()
    if s.empty:
        raise ValueError("no training observations to build a day-of-year climatology from")
    slot = _noleap_doy(s.index) - 1
    sums = np.bincount(slot, weights=s.to_numpy(), minlength=365)
    counts = np.bincount(slot, minlength=365).astype("float64")
    wsum = np.zeros(365)
    wcount = np.zeros(365)
    for k in range(-half_window, half_window + 1):
        wsum += np.roll(sums, k)
        wcount += np.roll(counts, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        clim = np.where(wcount > 0, wsum / wcount, np.nan)

    def climatology(date):
        scalar = np.ndim(date) == 0
        idx = pd.DatetimeIndex([date] if scalar else date)
        v = clim[_noleap_doy(idx) - 1]
        return float(v[0]) if scalar else v

    climatology.table = clim  # the 365 values (slot 0 = Jan 1), for inspection and tests
    return climatology
