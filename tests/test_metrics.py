"""Verification metrics and baselines, checked against hand computations on tiny series."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hydrocast import metrics as m


# -- NSE ---------------------------------------------------------------------------------------
def test_nse_by_hand():
    sim, obs = [1.0, 2.0, 3.0], [1.0, 2.0, 4.0]
    mean_obs = 7 / 3  # 2.333...
    sse = (1 - 1) ** 2 + (2 - 2) ** 2 + (3 - 4) ** 2  # = 1
    var = (1 - mean_obs) ** 2 + (2 - mean_obs) ** 2 + (4 - mean_obs) ** 2  # = 14/3
    assert m.nse(sim, obs) == pytest.approx(1 - sse / var)
    assert m.nse(sim, obs) == pytest.approx(11 / 14)


def test_nse_perfect_and_mean():
    obs = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0])
    assert m.nse(obs, obs) == 1.0
    assert m.nse(np.full_like(obs, obs.mean()), obs) == pytest.approx(0.0, abs=1e-12)


def test_nse_nan_when_too_few_pairs_or_constant_obs():
    assert math.isnan(m.nse([1.0, np.nan], [2.0, 3.0]))  # one valid pair
    assert math.isnan(m.nse([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]))  # obs variance 0


# -- KGE ---------------------------------------------------------------------------------------
def test_kge_components_by_hand():
    obs = [1.0, 2.0, 3.0, 4.0]
    sim = [2.0, 3.0, 5.0, 6.0]
    # means: obs 2.5, sim 4.0; deviations obs -1.5 -0.5 0.5 1.5, sim -2 -1 1 2
    sum_do2 = 1.5**2 + 0.5**2 + 0.5**2 + 1.5**2  # 5
    sum_ds2 = 4 + 1 + 1 + 4  # 10
    sum_dsdo = (-1.5) * (-2) + (-0.5) * (-1) + 0.5 * 1 + 1.5 * 2  # 7
    r = sum_dsdo / math.sqrt(sum_ds2 * sum_do2)  # 7 / sqrt(50)
    alpha = math.sqrt(sum_ds2 / 4) / math.sqrt(sum_do2 / 4)  # sqrt(2)
    beta = 4.0 / 2.5  # 1.6
    expected = 1 - math.sqrt((r - 1) ** 2 + (alpha - 1) ** 2 + (beta - 1) ** 2)

    k = m.kge(sim, obs)
    assert k.r == pytest.approx(7 / math.sqrt(50))
    assert k.alpha == pytest.approx(math.sqrt(2))
    assert k.beta == pytest.approx(1.6)
    assert k.kge == pytest.approx(expected)
    assert m.kge(obs, obs) == pytest.approx((1.0, 1.0, 1.0, 1.0))


def test_kge_constant_obs_and_sim():
    k = m.kge([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert math.isnan(k.kge) and math.isnan(k.r) and math.isnan(k.alpha)
    assert k.beta == pytest.approx(1.0)
    k = m.kge([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])  # flat forecast: alpha 0, r undefined
    assert k.alpha == 0.0 and math.isnan(k.r) and math.isnan(k.kge)


# -- pbias, rmse -------------------------------------------------------------------------------
def test_pbias_and_rmse_by_hand():
    obs = [1.0, 2.0, 3.0, 4.0]
    sim = [2.0, 3.0, 5.0, 6.0]
    # differences 1, 1, 2, 2: sum 6 over sum(obs) 10
    assert m.pbias(sim, obs) == pytest.approx(100 * 6 / 10)
    assert m.rmse(sim, obs) == pytest.approx(math.sqrt((1 + 1 + 4 + 4) / 4))
    assert m.pbias([0.5, 1.0], [1.0, 2.0]) == pytest.approx(-50.0)
    assert math.isnan(m.pbias([1.0, 1.0], [0.0, 0.0]))


# -- NaN handling ------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["obs", "sim", "both"])
def test_nan_pairs_are_dropped(where):
    rng = np.random.default_rng(0)
    obs = rng.gamma(2.0, 3.0, size=40)
    sim = obs + rng.normal(0, 1.0, size=40)
    o, s = obs.copy(), sim.copy()
    drop = [3, 17, 30]
    if where in ("obs", "both"):
        o[drop] = np.nan
    if where in ("sim", "both"):
        s[drop] = np.nan
    keep = np.setdiff1d(np.arange(40), drop)
    for f in (m.nse, m.pbias, m.rmse):
        assert f(s, o) == pytest.approx(f(sim[keep], obs[keep]))
    assert tuple(m.kge(s, o)) == pytest.approx(tuple(m.kge(sim[keep], obs[keep])))
    assert m.n_valid(s, o) == 37
    assert m.all_metrics(s, o)["n"] == 37


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        m.nse([1.0, 2.0], [1.0, 2.0, 3.0])


# -- peak timing -------------------------------------------------------------------------------
def _hydrograph(n=400, peaks=(60, 200, 330)):
    t = np.arange(n, dtype=float)
    q = np.ones(n)
    for p in peaks:
        q += 10.0 * np.exp(-0.5 * ((t - p) / 2.0) ** 2)
    return q


def test_peak_timing_two_day_lag():
    obs = _hydrograph()
    sim = np.concatenate([[1.0, 1.0], obs[:-2]])  # every simulated peak two days late
    assert int(np.argmax(sim[150:250])) + 150 == 202
    assert m.peak_timing(sim, obs) == 2.0
    early = np.concatenate([obs[2:], [1.0, 1.0]])  # two days early counts the same
    assert m.peak_timing(early, obs) == 2.0
    assert m.peak_timing(obs, obs) == 0.0


def test_peak_timing_window_and_gaps():
    obs = _hydrograph()
    late5 = np.concatenate([np.ones(5), obs[:-5]])
    # 5 days late is outside the default ±3-day window: the window maximum sits at its edge
    assert m.peak_timing(late5, obs) == 3.0
    assert m.peak_timing(late5, obs, window=6) == 5.0
    # a missing observation inside a peak's window removes that peak, not the others
    sim = np.concatenate([[1.0, 1.0], obs[:-2]])  # peaks at 62, 202, 332...
    sim[190:215] = obs[190:215]  # ...except the middle one, which is on time
    assert m.peak_timing(sim, obs) == pytest.approx((2 + 0 + 2) / 3)
    gappy = obs.copy()
    gappy[201] = np.nan  # inside the ±3-day window of the peak on day 200
    assert m.peak_timing(sim, gappy) == 2.0
    assert math.isnan(m.peak_timing(np.ones(10), np.ones(10)))  # no peak at all


# -- metrics table -----------------------------------------------------------------------------
def test_metrics_table_rows_and_median():
    rng = np.random.default_rng(1)
    nb, nt, nl = 3, 60, 2
    obs = rng.gamma(2.0, 2.0, size=(nb, nt, nl))
    sim = obs * rng.uniform(0.7, 1.3, size=obs.shape)
    obs[0, :10, 0] = np.nan
    sim[2, :, 1] = np.nan  # basin c has no valid pair at lead 2: NaN row, ignored by the median
    ids = ["a", "b", "c"]
    table = m.metrics_table(sim, obs, ids, [1, 2])

    assert list(table.columns) == list(m.METRIC_COLUMNS)
    assert list(table.index) == [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 1), ("c", 2),
                                 ("median", 1), ("median", 2)]
    assert table.loc[("a", 1), "n"] == 50
    assert table.loc[("b", 2), "nse"] == pytest.approx(m.nse(sim[1, :, 1], obs[1, :, 1]))
    assert table.loc[("a", 1), "kge"] == pytest.approx(m.kge(sim[0, :, 0], obs[0, :, 0]).kge)
    assert np.isnan(table.loc[("c", 2), "nse"]) and table.loc[("c", 2), "n"] == 0
    for lead in (1, 2):
        per_basin = table.loc[[(b, lead) for b in ids]].to_numpy()
        np.testing.assert_allclose(table.loc[("median", lead)].to_numpy(),
                                   np.nanmedian(per_basin, axis=0), equal_nan=True)


# -- baselines ---------------------------------------------------------------------------------
def test_persistence():
    days = pd.date_range("2001-01-01", periods=4, freq="D")
    obs = pd.Series([5.0, 6.0, np.nan, 8.0], index=days)
    np.testing.assert_array_equal(m.persistence(obs, 1, 3), [6.0, 6.0, 6.0])
    assert np.isnan(m.persistence(obs, 2, 3)).all()  # missing on the issue day → NaN, no fallback
    out = m.persistence(obs, np.array([0, 3]), [1, 2])
    np.testing.assert_array_equal(out, [[5.0, 5.0], [8.0, 8.0]])
    np.testing.assert_array_equal(m.persistence(obs, pd.Timestamp("2001-01-04"), 2), [8.0, 8.0])
    assert np.isnan(m.persistence(obs, pd.Timestamp("2002-01-01"), 2)).all()


def test_climatology_by_hand():
    days = pd.date_range("2001-01-01", "2001-12-31", freq="D")
    train = pd.Series(np.arange(1, 366, dtype=float), index=days)  # value = day of year
    clim = m.doy_climatology(train)
    # July 1 is day 182: the window 167..197 averages to 182
    assert clim(pd.Timestamp("2001-07-01")) == pytest.approx(182.0)
    # Jan 1 wraps round New Year: days 351..365 and 1..16
    expected = (sum(range(351, 366)) + sum(range(1, 17))) / 31
    assert clim(pd.Timestamp("2005-01-01")) == pytest.approx(expected)
    # leap days: Feb 29 uses Feb 28's value, and Mar 1 is Mar 1 in every year
    assert clim(pd.Timestamp("2004-02-29")) == clim(pd.Timestamp("2001-02-28"))
    assert clim(pd.Timestamp("2004-03-01")) == clim(pd.Timestamp("2001-03-01"))
    many = clim(pd.DatetimeIndex(["2001-07-01", "2004-02-29"]))
    assert many.shape == (2,) and many[0] == pytest.approx(182.0)


def test_climatology_pools_training_years_and_leap_day():
    days = pd.date_range("2000-01-01", "2001-12-31", freq="D")  # 2000 is a leap year
    train = pd.Series(1.0, index=days)
    train[days.year == 2001] = 3.0
    train[pd.Timestamp("2000-02-29")] = 10.0
    clim = m.doy_climatology(train, half_window=0)
    assert clim(pd.Timestamp("2003-06-01")) == pytest.approx((1.0 + 3.0) / 2)
    # Feb 28 slot holds 2000-02-28 (1), 2000-02-29 (10) and 2001-02-28 (3)
    assert clim(pd.Timestamp("2003-02-28")) == pytest.approx((1.0 + 10.0 + 3.0) / 3)


def test_climatology_uses_only_training_years():
    days = pd.date_range("2001-01-01", "2003-12-31", freq="D")
    rng = np.random.default_rng(2)
    series = pd.Series(rng.gamma(2.0, 5.0, size=days.size), index=days)
    period = ("2001-01-01", "2002-12-31")
    before = m.doy_climatology(series, period=period)
    changed = series.copy()
    changed[changed.index.year == 2003] *= 100.0  # the test year changes a lot
    after = m.doy_climatology(changed, period=period)
    np.testing.assert_array_equal(before.table, after.table)
    np.testing.assert_array_equal(before.table, m.doy_climatology(series.loc[:"2002"]).table)
    # ...while including 2003 would change it
    assert not np.allclose(before.table, m.doy_climatology(changed).table)
