"""Probabilistic scores and reference ensembles, checked against formulas written out by hand."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from hydrocast import probmetrics as pm


def crps_by_loops(y: float, xs) -> float:
    """E|X − y| − ½ E|X − X'| of the empirical ensemble, with plain Python loops."""
    xs = [float(v) for v in xs if not math.isnan(v)]
    m = len(xs)
    e1 = sum(abs(x - y) for x in xs) / m
    e2 = sum(abs(xi - xj) for xi in xs for xj in xs) / (m * m)
    return e1 - 0.5 * e2


def gaussian_crps(y, mu, sigma):
    z = (np.asarray(y) - mu) / sigma
    cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    return sigma * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))


# -- CRPS --------------------------------------------------------------------------------------
def test_crps_equals_energy_form_by_loops():
    obs = np.array([2.0, 0.0, 5.0, 1.5])
    members = np.array([[1.0, 2.0, 2.0, 4.0],  # ties, obs inside
                        [1.0, 3.0, 0.5, 2.0],  # obs below all
                        [0.0, 1.0, 1.0, 1.0],  # obs above all
                        [1.5, 1.5, 1.5, 1.5]])  # all members equal the obs
    got = pm.crps(obs, members)
    want = [crps_by_loops(y, xs) for y, xs in zip(obs, members)]
    assert got == pytest.approx(want, abs=1e-12)
    assert got[3] == 0.0
    # not the fair estimator (which divides the second term by M(M-1)): day 0 differs
    fair = np.mean(np.abs(members[0] - 2.0)) - 0.5 * np.sum(np.abs(members[0][:, None] - members[0])) / 12
    assert got[0] != pytest.approx(fair)
    assert pm.mean_crps(obs, members) == pytest.approx(np.mean(want))


def test_crps_single_member_is_absolute_error():
    obs = np.array([3.0, -1.0, 2.5])
    x = np.array([[1.0], [2.0], [2.5]])
    assert pm.crps(obs, x) == pytest.approx([2.0, 3.0, 0.0])


def test_crps_nan_rules():
    obs = np.array([2.0, np.nan, 1.0, 4.0])
    members = np.array([[1.0, np.nan, 3.0, 4.0],
                        [1.0, 2.0, 3.0, 4.0],
                        [np.nan, np.nan, np.nan, np.nan],
                        [np.nan, 5.0, np.nan, 2.0]])
    got = pm.crps(obs, members)
    assert got[0] == pytest.approx(crps_by_loops(2.0, [1.0, 3.0, 4.0]))
    assert got[0] == pytest.approx(pm.crps([2.0], [[1.0, 3.0, 4.0]])[0])
    assert math.isnan(got[1]) and math.isnan(got[2])  # NaN obs; all members NaN
    assert got[3] == pytest.approx(crps_by_loops(4.0, [5.0, 2.0]))
    assert pm.mean_crps(obs, members) == pytest.approx((got[0] + got[3]) / 2)
    assert math.isnan(pm.mean_crps([np.nan], [[1.0, 2.0]]))


def test_mean_crps_matches_gaussian_closed_form():
    rng = np.random.default_rng(42)
    mu, sigma = 3.0, 2.0
    obs = rng.normal(mu + 1.0, 1.5 * sigma, size=100)
    members = rng.normal(mu, sigma, size=(100, 2000))
    want = float(np.mean(gaussian_crps(obs, mu, sigma)))
    assert pm.mean_crps(obs, members) == pytest.approx(want, rel=0.03)


def test_crpss():
    assert pm.crpss(0.5, 2.0) == pytest.approx(0.75)
    assert pm.crpss(3.0, 2.0) == pytest.approx(-0.5)
    assert math.isnan(pm.crpss(0.5, 0.0))
    assert math.isnan(pm.crpss(0.5, math.nan))


def test_crps_rejects_bad_shapes():
    with pytest.raises(ValueError):
        pm.crps([1.0, 2.0], [[1.0, 2.0]])
    with pytest.raises(ValueError):
        pm.crps([1.0, 2.0], [1.0, 2.0])


# -- climatology ensemble ----------------------------------------------------------------------
def _record(start: str, end: str) -> tuple[pd.DatetimeIndex, np.ndarray]:
    days = pd.date_range(start, end, freq="D")
    return days, np.arange(len(days), dtype="float64")  # the value of a day is its position


def test_climatology_wraps_over_new_year():
    days, q = _record("2001-01-01", "2002-12-31")
    pos = {d: i for i, d in enumerate(days)}
    ens = pm.climatology_ensemble(days, q, ["2003-01-02"], half_window=3)
    # Jan 2 ± 3 days = Dec 30 .. Jan 5, in both training years
    want = [pos[pd.Timestamp(d)] for d in [
        "2001-01-01", "2001-01-02", "2001-01-03", "2001-01-04", "2001-01-05", "2001-12-30", "2001-12-31",
        "2002-01-01", "2002-01-02", "2002-01-03", "2002-01-04", "2002-01-05", "2002-12-30", "2002-12-31"]]
    got = ens[0][~np.isnan(ens[0])]
    assert list(got) == want  # kept in the order of the training days
    # mid-year, no wrap: 2·15 + 1 = 31 days in each of the 2 years
    ens = pm.climatology_ensemble(days, q, ["2005-07-01"])
    got = ens[0][~np.isnan(ens[0])]
    jul1 = [pos[pd.Timestamp("2001-07-01")], pos[pd.Timestamp("2002-07-01")]]
    assert sorted(got) == list(range(jul1[0] - 15, jul1[0] + 16)) + list(range(jul1[1] - 15, jul1[1] + 16))


def test_climatology_day_366_is_365_and_nan_padding():
    days, q = _record("2003-01-01", "2004-12-31")  # 2004 is a leap year
    pos = {d: i for i, d in enumerate(days)}
    q[pos[pd.Timestamp("2004-01-01")]] = np.nan  # a gap in the record is not a member
    ens = pm.climatology_ensemble(days, q, ["2005-01-01", "2005-06-15"], half_window=1)
    # Jan 1 ± 1 = day of year 365, 1, 2; in 2004 Dec 30 is day 365 and Dec 31 (day 366) counts as 365
    want = sorted(pos[pd.Timestamp(d)] for d in [
        "2003-01-01", "2003-01-02", "2003-12-31", "2004-01-02", "2004-12-30", "2004-12-31"])
    assert sorted(ens[0][~np.isnan(ens[0])]) == want
    # Jun 15 2005 is day 166: days 165..167 of 2003 (Jun 14..16) and of 2004 (Jun 13..15)
    want_jun = sorted(pos[pd.Timestamp(d)] for d in [
        "2003-06-14", "2003-06-15", "2003-06-16", "2004-06-13", "2004-06-14", "2004-06-15"])
    assert sorted(ens[1][~np.isnan(ens[1])]) == want_jun
    # the largest count among the targets sets M (day 364 elsewhere would have 7)
    assert ens.shape == (2, 6)
    assert pm.climatology_ensemble(days, q, ["2005-12-30", "2005-06-15"], half_window=1).shape == (2, 7)


def test_climatology_padding_and_max_members():
    days, q = _record("2001-01-01", "2001-12-31")
    q[160:170] = np.nan  # Jun 10..19 missing
    ens = pm.climatology_ensemble(days, q, ["2002-03-01", "2002-06-15"], half_window=5)
    assert ens.shape == (2, 11)
    assert np.sum(~np.isnan(ens[0])) == 11
    # Jun 15 = day 166, window days 161..171 = positions 160..170: only position 170 is left
    assert list(ens[1][~np.isnan(ens[1])]) == [170.0]
    capped = pm.climatology_ensemble(days, q, ["2002-03-01"], half_window=5, max_members=4)
    window = np.arange(59 - 5, 59 + 6, dtype="float64")  # Mar 1 = position 59
    assert capped.shape == (1, 4)
    assert capped[0] == pytest.approx(np.quantile(window, [0.125, 0.375, 0.625, 0.875]))


def test_climatology_empty_window_is_all_nan_and_scores_drop_it():
    days, q = _record("2001-01-01", "2001-12-31")
    q[150:200] = np.nan
    ens = pm.climatology_ensemble(days, q, ["2002-06-25", "2002-01-10"], half_window=3)
    assert np.all(np.isnan(ens[0]))
    c = pm.crps([100.0, 9.0], ens)
    assert math.isnan(c[0]) and not math.isnan(c[1])


# -- persistence ensemble ----------------------------------------------------------------------
def test_persistence_change_quantiles():
    train = np.array([1.0, 3.0, 2.0, 6.0, 4.0, np.nan, 7.0, 9.0, 8.0])
    # lead 2 changes q[t+2] - q[t] where both exist: 2-1, 6-3, 4-2, 7-4, 8-7
    changes = np.array([1.0, 3.0, 2.0, 3.0, 1.0])
    ens = pm.persistence_ensemble([10.0, np.nan, 0.5], 2, train, n_members=4)
    levels = (np.arange(4) + 0.5) / 4
    assert ens.shape == (3, 4)
    assert ens[0] == pytest.approx(10.0 + np.quantile(changes, levels))
    assert np.all(np.isnan(ens[1]))
    # sorted changes 1 1 2 3 3; level 0.125 sits at position 0.5 -> 1; 0.375 at 1.5 -> 1.5
    assert ens[0][:2] == pytest.approx([11.0, 11.5])


def test_persistence_clips_at_zero():
    train = np.array([5.0, 3.0, 1.0, 0.0, 4.0])  # lead 1 changes -2 -2 -1 4
    ens = pm.persistence_ensemble([1.0], 1, train, n_members=2)
    # levels 0.25, 0.75 of sorted [-2 -2 -1 4]: positions 0.75 -> -2, 2.25 -> -1 + 0.25*5 = 0.25
    assert ens[0] == pytest.approx([0.0, 1.25])


def test_persistence_series_gap_is_not_a_change():
    s = pd.Series([1.0, 2.0, 10.0], index=pd.to_datetime(["2001-01-01", "2001-01-02", "2001-01-04"]))
    ens = pm.persistence_ensemble([0.0], 1, s, n_members=3)
    assert ens[0] == pytest.approx([1.0, 1.0, 1.0])  # only Jan 1 -> Jan 2; Jan 2 -> Jan 4 skips a day
    none = pm.persistence_ensemble([1.0, 2.0], 5, np.array([1.0, 2.0]), n_members=3)
    assert none.shape == (2, 3) and np.all(np.isnan(none))


# -- PIT ---------------------------------------------------------------------------------------
def test_pit_formula_ties_and_nan():
    obs = np.array([2.0, 2.0, np.nan, 5.0])
    members = np.array([[1.0, 2.0, 2.0, 3.0],
                        [1.0, np.nan, 3.0, np.nan],
                        [1.0, 2.0, 3.0, 4.0],
                        [np.nan] * 4])
    u = np.random.default_rng(7).random(4)
    got = pm.pit(obs, members, np.random.default_rng(7))
    assert got[0] == pytest.approx((1 + u[0] * 3) / 5)  # 1 below, 2 equal, M = 4
    assert got[1] == pytest.approx((1 + u[1]) / 3)  # NaN members ignored: M = 2
    assert math.isnan(got[2]) and math.isnan(got[3])


def test_pit_ties_spread_evenly():
    n = 4000
    obs = np.full(n, 2.0)
    members = np.tile([1.0, 2.0, 2.0, 3.0], (n, 1))
    p = pm.pit(obs, members, 3)
    assert p.min() >= 0.2 and p.max() <= 0.8
    assert p.mean() == pytest.approx(0.5, abs=0.01)


def test_pit_calibrated_is_uniform():
    rng = np.random.default_rng(1)
    mu = rng.normal(0, 3, size=3000)
    obs = rng.normal(mu, 1.0)
    members = rng.normal(mu[:, None], 1.0, size=(3000, 20))
    p = pm.pit(obs, members, rng)
    assert np.all((p >= 0) & (p <= 1))
    res = pm.pit_uniformity(p)
    assert res["n"] == 3000
    assert res["p_value"] > 0.01
    assert res["mad"] < 0.02


def test_pit_obs_above_all_members():
    rng = np.random.default_rng(2)
    members = rng.normal(size=(200, 9))
    obs = members.max(axis=1) + 0.1
    p = pm.pit(obs, members, rng)
    assert np.all(p > 9 / 10) and np.all(p <= 1)
    assert pm.pit_uniformity(p)["p_value"] < 1e-6


def test_pit_underdispersed_is_u_shaped():
    rng = np.random.default_rng(3)
    obs = rng.normal(0, 1, size=3000)
    members = rng.normal(0, 0.5, size=(3000, 20))
    h = pm.pit_histogram(pm.pit(obs, members, rng))
    assert h.sum() == 3000
    assert min(h[0], h[-1]) > 2 * max(h[3:7])


def test_pit_histogram_and_uniformity_by_hand():
    h = pm.pit_histogram([0.05, 0.15, 0.15, 1.0, 0.0, np.nan])
    assert list(h) == [2, 2, 0, 0, 0, 0, 0, 0, 0, 1]
    res = pm.pit_uniformity([0.1, 0.2, 0.3, 0.9], bins=2)  # counts 3, 1; expected 2, 2
    assert res["chi2"] == pytest.approx(1.0)  # (1² + 1²) / 2
    assert res["p_value"] == pytest.approx(math.erfc(1 / math.sqrt(2)))  # P(chi2_1 > 1)
    assert res["mad"] == pytest.approx(0.25)
    assert math.isnan(pm.pit_uniformity([np.nan])["p_value"])


# -- intervals ---------------------------------------------------------------------------------
def test_interval_coverage_and_width_by_hand():
    row = [0.0, 1.0, 2.0, 3.0, 4.0]  # quantiles 0.25 and 0.75 are 1 and 3
    members = np.array([row] * 5)
    obs = np.array([1.0, 3.0, 3.5, 0.5, np.nan])
    assert pm.interval_coverage(obs, members, 0.5) == pytest.approx(2 / 4)
    assert pm.interval_width(members, 0.5) == pytest.approx([2.0] * 5)
    two = np.array([[0.0, np.nan, 10.0], [np.nan] * 3])  # [2.5, 7.5] by interpolation
    assert pm.interval_width(two, 0.5)[0] == pytest.approx(5.0)
    assert math.isnan(pm.interval_width(two, 0.5)[1])
    assert pm.interval_coverage([2.5, 1.0], two, 0.5) == 1.0
    assert pm.interval_coverage([2.4], two[:1], 0.5) == 0.0
    assert math.isnan(pm.interval_coverage([np.nan], two[:1], 0.5))
    with pytest.raises(ValueError):
        pm.interval_width(members, 1.0)


def test_interval_width_matches_numpy_quantile():
    rng = np.random.default_rng(4)
    x = rng.gamma(2.0, size=(50, 13))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[0, :] = 1.0
    want = [np.nanquantile(r, 0.95) - np.nanquantile(r, 0.05) for r in x]
    assert pm.interval_width(x, 0.9) == pytest.approx(want)


def test_interval_coverage_calibrated():
    rng = np.random.default_rng(5)
    t = 3000
    mu, sd = rng.normal(10, 3, size=t), rng.uniform(0.5, 2.0, size=t)
    obs = rng.normal(mu, sd)
    draws = rng.normal(mu[:, None], sd[:, None], size=(t, 200))
    assert 0.87 <= pm.interval_coverage(obs, draws, 0.9) <= 0.93
    from scipy.stats import norm

    levels = (np.arange(99) + 0.5) / 99
    quantile_members = mu[:, None] + sd[:, None] * norm.ppf(levels)[None, :]
    assert 0.87 <= pm.interval_coverage(obs, quantile_members, 0.9) <= 0.93


def test_interval_coverage_small_ensembles_fall_short():
    # With M = 10 draws the 5 % / 95 % bounds lie between the 1st and 2nd (9th and 10th) order
    # statistics, and a new draw falls between the i-th and j-th of M draws with probability
    # (j - i)/(M + 1): so the expected coverage lies between 7/11 and 9/11, short of 0.9.
    rng = np.random.default_rng(6)
    obs = rng.normal(size=6000)
    members = rng.normal(size=(6000, 10))
    cov = pm.interval_coverage(obs, members, 0.9)
    assert 7 / 11 + 0.02 < cov < 9 / 11 - 0.02


# -- thresholds --------------------------------------------------------------------------------
OBS6 = np.array([12.0, 5.0, 15.0, 3.0, 10.0, 20.0])
MEM6 = np.array([[11.0, 12.0, 9.0, 8.0],  # p 0.50, event: hit
                 [11.0, 12.0, 13.0, 8.0],  # p 0.75, no event: false alarm
                 [1.0, 2.0, 3.0, 11.0],  # p 0.25, event: miss
                 [1.0, 2.0, 3.0, 4.0],  # p 0, no event: correct negative
                 [10.0, 10.0, 10.0, 10.0],  # p 0 (10 is not > 10), obs 10 no event: correct negative
                 [21.0, 22.0, 23.0, 24.0]])  # p 1, event: hit


def test_brier_and_contingency_by_hand():
    assert pm.brier_score(OBS6, MEM6, 10.0) == pytest.approx((0.25 + 0.5625 + 0.5625) / 6)
    c = pm.contingency(OBS6, MEM6, 10.0)
    assert (c["hits"], c["misses"], c["false_alarms"], c["correct_negatives"]) == (2, 1, 1, 2)
    assert c["n_events"] == 3 and c["n"] == 6
    assert c["hit_rate"] == pytest.approx(2 / 3)
    assert c["false_alarm_ratio"] == pytest.approx(1 / 3)
    strict = pm.contingency(OBS6, MEM6, 10.0, p_warn=0.8)  # day 0 and day 1 no longer warn
    assert (strict["hits"], strict["misses"], strict["false_alarms"]) == (1, 2, 0)
    assert strict["false_alarm_ratio"] == 0.0


def test_thresholds_nan_rules():
    obs = np.concatenate([OBS6, [12.0, np.nan]])
    mem = np.vstack([MEM6, [[np.nan] * 4, [30.0] * 4]])  # all-NaN members; NaN obs: both dropped
    assert pm.brier_score(obs, mem, 10.0) == pytest.approx(pm.brier_score(OBS6, MEM6, 10.0))
    assert pm.contingency(obs, mem, 10.0) == pm.contingency(OBS6, MEM6, 10.0)
    one = pm.brier_score([12.0], [[11.0, 12.0, 9.0, np.nan]], 10.0)  # p = 2/3, not 2/4
    assert one == pytest.approx((1 - 2 / 3) ** 2)
    calm = pm.contingency([1.0, 2.0], [[0.0, 1.0], [0.0, 0.0]], 10.0)
    assert math.isnan(calm["hit_rate"]) and math.isnan(calm["false_alarm_ratio"])
    assert calm["correct_negatives"] == 2
    assert math.isnan(pm.brier_score([np.nan], [[1.0]], 0.0))


# -- paired comparison -------------------------------------------------------------------------
def test_paired_shifted_copy():
    rng = np.random.default_rng(8)
    b = rng.normal(0.6, 0.1, size=40)
    a = b + 0.1 + rng.normal(0, 0.01, size=40)
    a[3], b[7] = np.nan, np.nan
    r = pm.paired_median_difference(a, b)
    ok = ~(np.isnan(a) | np.isnan(b))
    assert r["n"] == 38 and r["wins"] == int(np.sum(a[ok] > b[ok]))
    assert r["median_difference"] == pytest.approx(np.median(a[ok] - b[ok]))
    assert r["ci_low"] < 0.1 < r["ci_high"]
    assert r["ci_low"] > 0
    assert r["wilcoxon_p"] < 1e-6


def test_paired_by_hand_and_degenerate_cases():
    r = pm.paired_median_difference([1.0, 2.0, 3.0], [0.0, 2.0, 4.0])
    assert r["median_difference"] == 0.0 and r["wins"] == 1 and r["n"] == 3
    x = np.array([0.3, 0.5, 0.7, 0.2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = pm.paired_median_difference(x, x.copy())
        one = pm.paired_median_difference([0.5, np.nan], [0.1, 0.2])
    assert same["median_difference"] == 0.0 and math.isnan(same["wilcoxon_p"])
    assert same["ci_low"] == 0.0 and same["ci_high"] == 0.0 and same["wins"] == 0
    assert one["n"] == 1 and one["median_difference"] == pytest.approx(0.4)
    assert math.isnan(one["wilcoxon_p"]) and math.isnan(one["ci_low"])


# -- forecasts given as quantiles -----------------------------------------------------------------
LEVELS = np.arange(1, 20) / 20


def test_quantile_cdf_passes_through_the_quantiles_and_has_exponential_tails():
    from hydrocast.probmetrics import quantile_cdf

    q = np.array([0.0, 1.0, 3.0, 4.0, 6.0])
    lv = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    assert np.allclose(quantile_cdf(lv, q, q), lv)
    assert quantile_cdf(lv, q, 2.0) == pytest.approx(0.4)  # half way between 1 (0.3) and 3 (0.5)
    # above the top: 1 - 0.1 * exp(-(x - 6) / s), s = (6 - 4) / ln(0.3 / 0.1)
    s = 2.0 / np.log(3.0)
    assert quantile_cdf(lv, q, 9.0) == pytest.approx(1 - 0.1 * np.exp(-3.0 / s))
    # below the bottom: 0.1 * exp(-(0 - x) / s_lo), s_lo = (1 - 0) / ln(0.3 / 0.1)
    assert quantile_cdf(lv, q, -0.5) == pytest.approx(0.1 * np.exp(-0.5 * np.log(3.0)))
    assert quantile_cdf(lv, np.array([0, 0, 0, 1, 2.0]), 0.0) == pytest.approx(0.5)  # ties: highest level
    assert quantile_cdf(lv, np.array([0, 0, 0, 1, 2.0]), -1.0) == 0.0  # a step: outer quantiles coincide
    assert np.isnan(quantile_cdf(lv, np.array([0, np.nan, 1, 2, 3.0]), 1.0))


def test_quantile_scores_of_exact_gaussian_quantiles_against_closed_forms():
    from hydrocast.probmetrics import crps_quantiles, pit_quantiles, quantile_coverage

    rng = np.random.default_rng(11)
    T = 20000
    mu, sigma = rng.normal(size=T), 2.0
    obs = mu + sigma * rng.normal(size=T)
    qq = mu[:, None] + sigma * norm.ppf(LEVELS)[None, :]
    obs[:5] = np.nan
    c = crps_quantiles(obs, qq, LEVELS)
    assert np.isnan(c[:5]).all() and np.isfinite(c[5:]).all()
    z = (obs[5:] - mu[5:]) / sigma
    exact = sigma * np.mean(z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))
    assert np.nanmean(c) == pytest.approx(exact, rel=0.15)  # 19 levels miss the outer tails
    assert quantile_coverage(obs, qq, LEVELS, 0.9) == pytest.approx(0.9, abs=0.01)
    assert quantile_coverage(obs, qq, LEVELS, 0.5) == pytest.approx(0.5, abs=0.015)
    u = pit_quantiles(obs, qq, LEVELS)[5:]
    hist = np.histogram(u, bins=10, range=(0, 1))[0] / u.size
    assert np.abs(hist - 0.1).max() < 0.01  # bins aligned with the levels: uniform
    with pytest.raises(ValueError, match="0.225"):
        quantile_coverage(obs, qq, LEVELS, 0.55)


def test_brier_and_contingency_of_quantile_forecasts_by_hand():
    from hydrocast.probmetrics import brier_quantiles, contingency_quantiles

    lv = np.array([0.25, 0.5, 0.75])
    qq = np.array([[0, 1, 2], [4, 5, 6], [0, 1, 2], [4, 5, 6.0]])
    obs = np.array([0.5, 7.0, 3.0, np.nan])
    # threshold 5: P(exceed) = 1 - F(5): day 1 above the top (s = 1/ln(0.5/0.25)): 0.25 exp(-3 ln 2)
    p1 = 0.25 * np.exp(-3 * np.log(2.0))
    probs, events = np.array([p1, 0.5, p1]), np.array([0.0, 1.0, 0.0])
    assert brier_quantiles(obs, qq, lv, 5.0) == pytest.approx(np.mean((probs - events) ** 2))
    ct = contingency_quantiles(obs, qq, lv, 5.0, p_warn=0.5)
    assert (ct["hits"], ct["misses"], ct["false_alarms"], ct["correct_negatives"], ct["n"]) == (1, 0, 0, 2, 3)
    assert ct["hit_rate"] == 1.0 and ct["false_alarm_ratio"] == 0.0


def test_mixture_quantiles_of_two_members_match_the_mixture_of_normals():
    """Two members N(0, 1) and N(4, 1) given as 19 quantiles: the pooled quantiles are those of the
    equal mixture (its CDF computed independently with scipy on a fine grid); a NaN member is left
    out; one member gives its own quantiles back; all-NaN gives NaN."""
    levels = np.round(np.arange(0.05, 0.951, 0.05), 2)
    a, b = norm.ppf(levels, 0, 1), norm.ppf(levels, 4, 1)
    grid = np.linspace(-8, 12, 40001)
    want = np.interp(levels, 0.5 * (norm.cdf(grid, 0, 1) + norm.cdf(grid, 4, 1)), grid)
    got = pm.mixture_quantiles(levels, np.stack([a, b])[:, None, :])  # (R=2, F=1, Q)
    assert got.shape == (1, 19)
    np.testing.assert_allclose(got[0], want, atol=0.03)  # (each member linear between its quantiles)
    assert got[0, 9] == pytest.approx(2.0, abs=1e-6)  # symmetric: the median halfway
    both = np.stack([np.stack([a, a]), np.stack([b, np.full(19, np.nan)])])  # (R, F=2, Q)
    out = pm.mixture_quantiles(levels, both)
    np.testing.assert_allclose(out[0], got[0], atol=1e-9)
    np.testing.assert_allclose(out[1], a, atol=1e-9)  # the NaN member is left out
    np.testing.assert_allclose(pm.mixture_quantiles(levels, a[None, None])[0], a, atol=1e-9)
    assert np.isnan(pm.mixture_quantiles(levels, np.full((3, 1, 19), np.nan))).all()
