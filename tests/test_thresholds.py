"""Tests of hydrocast.thresholds against independent computations: pandas groupby for the annual maxima,
the Gumbel L-moment fit written out by hand, large samples of known distributions, hand counts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hydrocast.errors import BadInputError, MissingInputError
from hydrocast.thresholds import (
    MIN_YEARS,
    ReturnLevels,
    Threshold,
    annual_maxima,
    exceedance_probability,
    fit_return_levels,
    levels_from_fit,
    read_thresholds,
    sample_lmoments,
    thresholds_for,
    write_thresholds,
)

EULER = 0.5772157


# ---------------------------------------------------------------------------------------------
# annual maxima
# ---------------------------------------------------------------------------------------------
def _pandas_maxima(days, q, min_coverage, start_month):
    """Reference: label each calendar day of every touched year, group with pandas, count and max."""
    s = pd.Series(q, index=pd.DatetimeIndex(days))
    label = s.index.year + ((s.index.month >= start_month) if start_month != 1 else 0)
    g = s.groupby(np.asarray(label))
    years, maxima = [], []
    for y, grp in g:
        first = pd.Timestamp(year=int(y) - (start_month != 1), month=start_month, day=1)
        n_days = (first + pd.DateOffset(years=1) - first).days
        if grp.notna().sum() >= min_coverage * n_days:
            years.append(int(y))
            maxima.append(float(grp.max()))
    return np.array(years), np.array(maxima)


def _record(seed=0):
    """2018-04-01 .. 2022-08-31 with most of 2019 missing (a gap) and scattered NaNs."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2018-04-01", "2022-08-31", freq="D")
    q = rng.gamma(2.0, 50.0, size=days.size)
    q[rng.random(days.size) < 0.05] = np.nan
    keep = ~((days >= "2019-02-01") & (days <= "2019-11-30"))  # a gap: those days are not in the arrays
    return days[keep].to_numpy().astype("datetime64[D]"), q[keep]


def test_annual_maxima_calendar_year_matches_pandas():
    days, q = _record()
    years, maxima = annual_maxima(days, q)
    ref_years, ref_max = _pandas_maxima(days, q, 0.8, 1)
    np.testing.assert_array_equal(years, ref_years)
    np.testing.assert_allclose(maxima, ref_max)
    # by hand: 2018 has 275 days (Apr-Dec) < 0.8*365, 2019 has a 10-month gap, 2022 ends in August
    assert years.tolist() == [2020, 2021]
    assert years.dtype.kind == "i" and maxima.dtype == np.float64


def test_annual_maxima_water_year_matches_pandas():
    days, q = _record(seed=1)
    years, maxima = annual_maxima(days, q, year_start_month=10)
    ref_years, ref_max = _pandas_maxima(days, q, 0.8, 10)
    np.testing.assert_array_equal(years, ref_years)
    np.testing.assert_allclose(maxima, ref_max)
    # by hand, water years (Oct-Sep, labelled by the ending year): WY2018 has 183 days on record (Apr-Sep),
    # WY2019 holds most of the gap, WY2020 (Oct 2019 - Sep 2020) loses Oct-Nov 2019 to it (305 of 366 days,
    # less ~5 % NaN: below 0.8), WY2022 runs to August 31 (334 of 365 days, less ~5 % NaN: above 0.8)
    assert years.tolist() == [2021, 2022]
    # the maximum of WY2021 is taken over 2020-10-01 .. 2021-09-30 only
    sel = (days >= np.datetime64("2020-10-01")) & (days <= np.datetime64("2021-09-30"))
    assert maxima[years.tolist().index(2021)] == np.nanmax(q[sel])


def test_annual_maxima_leap_year_coverage_boundary():
    # 292 finite days: 292/365 = 0.8 counts for 2021, but 292/366 < 0.8 does not count for leap year 2020;
    # 293/366 = 0.8005 does
    def year_with(n_finite, year):
        days = pd.date_range(f"{year}-01-01", f"{year}-12-31", freq="D").to_numpy().astype("datetime64[D]")
        q = np.full(days.size, np.nan)
        q[:n_finite] = np.arange(n_finite, dtype=float)
        return days, q

    for n_finite, year, kept in [(292, 2021, True), (292, 2020, False), (293, 2020, True), (291, 2021, False)]:
        years, maxima = annual_maxima(*year_with(n_finite, year))
        assert (years.tolist() == [year]) is kept, (n_finite, year)
        if kept:
            assert maxima[0] == n_finite - 1
    # a water year ending in a leap year: 2019-10-01 .. 2020-09-30 has 366 days
    days = pd.date_range("2019-10-01", "2020-09-30", freq="D").to_numpy().astype("datetime64[D]")
    assert days.size == 366
    q = np.full(days.size, np.nan)
    q[:292] = 1.0
    assert annual_maxima(days, q, year_start_month=10)[0].size == 0
    q[292] = 2.0
    years, maxima = annual_maxima(days, q, year_start_month=10)
    assert years.tolist() == [2020] and maxima.tolist() == [2.0]


def test_annual_maxima_rejects_unsorted_days():
    days = np.array(["2020-01-02", "2020-01-01"], dtype="datetime64[D]")
    with pytest.raises(ValueError):
        annual_maxima(days, [1.0, 2.0])


# ---------------------------------------------------------------------------------------------
# return levels
# ---------------------------------------------------------------------------------------------
SAMPLE = [112.0, 87.0, 150.0, 95.0, 130.0, 101.0, 176.0, 90.0, 123.0]


def _gumbel_by_hand(values, periods):
    x = sorted(values)
    n = len(x)
    b0 = sum(x) / n
    b1 = sum((i - 1) / (n - 1) * x[i - 1] for i in range(1, n + 1)) / n
    l1, l2 = b0, 2 * b1 - b0
    alpha = l2 / math.log(2)
    xi = l1 - EULER * alpha
    return xi, alpha, {t: xi - alpha * math.log(-math.log(1 - 1 / t)) for t in periods}


def test_gumbel_fit_matches_closed_form():
    xi, alpha, levels = _gumbel_by_hand(SAMPLE, (2, 5, 20, 100))
    fit = fit_return_levels(SAMPLE, (2, 5, 20, 100), distribution="auto", n_boot=0)
    assert fit.distribution == "gumbel" and fit.n_years == len(SAMPLE)
    assert fit.params["loc"] == pytest.approx(xi, rel=1e-6)
    assert fit.params["scale"] == pytest.approx(alpha, rel=1e-9)
    for t, v in levels.items():
        assert fit.levels[t] == pytest.approx(v, rel=1e-6)
        assert math.isnan(fit.ci_low[t]) and math.isnan(fit.ci_high[t])  # n_boot = 0


def test_sample_lmoments_match_lmoments3():
    import lmoments3

    rng = np.random.default_rng(3)
    for n in (3, 7, 40):
        x = rng.gamma(3.0, 20.0, size=n)
        np.testing.assert_allclose(sample_lmoments(x), lmoments3.lmom_ratios(x, nmom=3), rtol=1e-10)


def test_non_finite_maxima_are_ignored():
    with_nan = [SAMPLE[0], np.nan, *SAMPLE[1:], np.inf]
    a = fit_return_levels(with_nan, n_boot=0)
    b = fit_return_levels(SAMPLE, n_boot=0)
    assert a.levels == b.levels and a.n_years == len(SAMPLE)


@pytest.mark.parametrize("dist, args, forced", [
    (stats.gumbel_r, (), "auto"),
    (stats.gumbel_r, (), "gumbel"),
    (stats.genextreme, (-0.15,), "auto"),  # heavy upper tail (Hosking's κ < 0)
    (stats.genextreme, (0.2,), "gev"),  # bounded upper tail
])
def test_large_sample_recovers_true_levels(dist, args, forced):
    x = dist.rvs(*args, loc=100.0, scale=30.0, size=3000, random_state=42)
    fit = fit_return_levels(x, (2, 5, 20), distribution=forced, n_boot=0)
    assert fit.distribution == ("gumbel" if forced == "gumbel" else "gev")
    for t in (2, 5, 20):
        truth = dist.ppf(1 - 1 / t, *args, loc=100.0, scale=30.0)
        assert fit.levels[t] == pytest.approx(truth, rel=0.03), t
    if fit.distribution == "gev":
        assert fit.params["c"] == pytest.approx(args[0] if args else 0.0, abs=0.05)


def test_bootstrap_interval_covers_truth_and_shrinks_with_record_length():
    periods = (2, 5, 20)
    truth = {t: stats.gumbel_r.ppf(1 - 1 / t, loc=100.0, scale=30.0) for t in periods}
    covered = dict.fromkeys(periods, 0)
    width40, width10 = [], []
    for seed in range(20):
        x = stats.gumbel_r.rvs(loc=100.0, scale=30.0, size=40, random_state=seed)
        fit40 = fit_return_levels(x, periods, n_boot=300, seed=seed)  # auto: GEV
        for t in periods:
            assert fit40.ci_low[t] <= fit40.ci_high[t]
            covered[t] += fit40.ci_low[t] <= truth[t] <= fit40.ci_high[t]
        fit40g = fit_return_levels(x, periods, distribution="gumbel", n_boot=300, seed=seed)
        fit10g = fit_return_levels(x[:10], periods, distribution="gumbel", n_boot=300, seed=seed)
        width40.append(fit40g.ci_high[20] - fit40g.ci_low[20])
        width10.append(fit10g.ci_high[20] - fit10g.ci_low[20])
    assert all(c >= 15 for c in covered.values()), covered
    assert np.mean(width10) > 1.3 * np.mean(width40)


def test_bootstrap_is_deterministic_with_seed():
    a = fit_return_levels(SAMPLE, n_boot=200, seed=7)
    b = fit_return_levels(SAMPLE, n_boot=200, seed=7)
    c = fit_return_levels(SAMPLE, n_boot=200, seed=8)
    assert a == b
    assert a.ci_low != c.ci_low
    assert a.levels == c.levels  # the point estimate does not depend on the seed


def test_auto_rule_and_minimum_years():
    rng = np.random.default_rng(0)
    x = stats.gumbel_r.rvs(loc=50, scale=10, size=25, random_state=rng)
    assert fit_return_levels(x[:24], n_boot=0).distribution == "gumbel"
    assert fit_return_levels(x, n_boot=0).distribution == "gev"
    assert fit_return_levels(x[:MIN_YEARS], n_boot=0).distribution == "gumbel"
    with pytest.raises(ValueError):
        fit_return_levels([10.0, 20.0, np.nan, np.nan])  # 2 finite maxima
    with pytest.raises(ValueError):
        fit_return_levels([], n_boot=0)


def test_constant_maxima_give_that_value_and_zero_width():
    for n, expected in ((5, "gumbel"), (30, "gev")):
        fit = fit_return_levels([42.5] * n, (2, 5, 20), n_boot=100)
        assert fit.distribution == expected
        for t in (2, 5, 20):
            assert fit.levels[t] == 42.5 and fit.ci_low[t] == 42.5 and fit.ci_high[t] == 42.5


def test_degenerate_resamples():
    # x = [10, 10, 10, 10, 40]: a resample is all 10s with probability (4/5)^5 = 0.33 > 5 %, and any
    # resample holding the 40 has a Gumbel 2-year level above 10 (λ1 − 0.304 λ2 > min when λ2 < 2(λ1 − min)),
    # so the lower bound of the 90 % interval is exactly 10
    fit = fit_return_levels([10.0, 10.0, 10.0, 10.0, 40.0], (2,), n_boot=400, seed=1)
    assert fit.ci_low[2] == 10.0
    assert fit.ci_high[2] > fit.levels[2] > 10.0
    # GEV on a sample full of ties: many resamples have |τ3| = 1 (no GEV) and are left out, no crash
    x = [5.0] * 22 + [6.0, 7.0, 30.0]
    fit = fit_return_levels(x, (2, 20), distribution="gev", n_boot=300, seed=0)
    assert all(np.isfinite(list(fit.ci_low.values()))) and fit.ci_low[20] <= fit.ci_high[20]


def test_auto_falls_back_to_gumbel_when_no_gev_exists():
    x = [10.0] * 24 + [50.0]  # τ3 = 1 exactly: a forced GEV cannot be fitted
    with pytest.raises(ValueError):
        fit_return_levels(x, distribution="gev", n_boot=0)
    fit = fit_return_levels(x, (2, 20), n_boot=0)
    _, _, levels = _gumbel_by_hand(x, (2, 20))
    assert fit.distribution == "gumbel"
    assert fit.levels[20] == pytest.approx(levels[20], rel=1e-6)


# ---------------------------------------------------------------------------------------------
# thresholds file
# ---------------------------------------------------------------------------------------------
def _fit(levels, lo, hi):
    return ReturnLevels(distribution="gev", params={"c": 0.1, "loc": 1.0, "scale": 1.0}, n_years=31,
                        levels=levels, ci_low=lo, ci_high=hi)


def test_levels_from_fit():
    fit = _fit({20: 300.0, 2: 100.0, 5: 180.5}, {20: 250.0, 2: 90.0, 5: 160.0}, {20: 380.0, 2: 111.0, 5: 200.0})
    rows = levels_from_fit("B1", fit, "observed")
    assert [r.name for r in rows] == ["2y", "5y", "20y"]
    assert [r.discharge_m3s for r in rows] == [100.0, 180.5, 300.0]
    assert [r.return_period_years for r in rows] == [2.0, 5.0, 20.0]
    assert rows[2].ci_low_m3s == 250.0 and rows[2].ci_high_m3s == 380.0
    assert all(r.source == "observed" and r.n_years == 31 and r.distribution == "gev" and r.basin == "B1"
               for r in rows)
    nan_ci = levels_from_fit("B1", _fit({2: 5.0}, {2: math.nan}, {2: math.nan}), "hindcast")
    assert nan_ci[0].ci_low_m3s is None and nan_ci[0].source == "hindcast"
    with pytest.raises(ValueError):
        levels_from_fit("B1", fit, "guess")


def test_round_trip(tmp_path):
    fit = _fit({2: 100.123456789, 5: 180.5, 20: 300.0}, {2: 90.0, 5: 160.0, 20: 250.0},
               {2: 111.0, 5: 200.0, 20: 380.0})
    rows = levels_from_fit("B1", fit, "observed") + levels_from_fit("B-2", fit, "hindcast") + [
        Threshold(basin="B1", name="alert", discharge_m3s=150.0),
        Threshold(basin="B1", name="2.5y", discharge_m3s=120.0, return_period_years=2.5, source="user"),
    ]
    path = tmp_path / "th.csv"
    write_thresholds(path, rows)
    assert path.read_text().splitlines()[0] == ("basin,name,discharge_m3s,return_period_years,source,ci_low_m3s,"
                                                "ci_high_m3s,n_years,distribution")
    assert read_thresholds(path) == rows
    assert not list(tmp_path.glob(".*tmp"))  # no temporary left behind


def test_minimal_hand_written_file(tmp_path):
    path = tmp_path / "official.csv"
    path.write_text(" Basin , NAME,discharge_m3s\nB1, alert ,150\n\nB1,alarm,2.5e2\nB2,alert,80\n")
    rows = read_thresholds(path)
    assert rows == [
        Threshold("B1", "alert", 150.0, None, "user", None, None, None, None),
        Threshold("B1", "alarm", 250.0, None, "user", None, None, None, None),
        Threshold("B2", "alert", 80.0, None, "user", None, None, None, None),
    ]
    path.write_text("basin,name,discharge_m3s,source,return_period_years\nB1,10y,500,observed,10\n")
    assert read_thresholds(path) == [Threshold("B1", "10y", 500.0, 10.0, "observed")]


def test_thresholds_for_sorts_by_discharge():
    rows = [Threshold("A", "20y", 300.0), Threshold("B", "2y", 1.0), Threshold("A", "alert", 120.0),
            Threshold("A", "2y", 100.0)]
    assert [r.name for r in thresholds_for(rows, "A")] == ["2y", "alert", "20y"]
    assert thresholds_for(rows, "C") == []


HEADER = "basin,name,discharge_m3s,return_period_years\n"


@pytest.mark.parametrize("body, line, words", [
    ("B1,2y,100,2\nB1,5y,150,5\nB1,20y,abc,20\n", 4, "discharge_m3s 'abc' is not a positive number"),
    ("B1,2y,100,2\nB1,5y,-5,5\n", 3, "discharge_m3s '-5' is not a positive number"),
    ("B1,2y,0,2\n", 2, "discharge_m3s '0' is not a positive number"),
    ("B1,2y,nan,2\n", 2, "discharge_m3s 'nan' is not a positive number"),
    ("B1,2y,100,2\nB1,2y,120,2\n", 3, "duplicate basin 'B1' name '2y' (first on line 2)"),
    ("B1,2y,100,1\n", 2, "return_period_years '1' is not a number of years > 1"),
    ("B1,2y,100,x\n", 2, "return_period_years 'x' is not a number of years > 1"),
    ("B1,2y,100\n", 2, "3 fields, the header has 4"),
    (",2y,100,2\n", 2, "basin is empty"),
])
def test_bad_values_name_file_and_line(tmp_path, body, line, words):
    path = tmp_path / "th.csv"
    path.write_text(HEADER + body)
    with pytest.raises(BadInputError) as err:
        read_thresholds(path)
    assert str(err.value) == f"{path} line {line}: {words}"


@pytest.mark.parametrize("text, line, words", [
    ("basin,name,discharge_m3s,colour\nB1,2y,1,red\n", 1, "'colour'"),
    ("basin,name\nB1,2y\n", 1, "discharge_m3s"),
    ("basin,name,discharge_m3s,source\nB1,2y,1,model\n", 2, "source 'model'"),
    ("basin,name,discharge_m3s,n_years\nB1,2y,1,2.5\n", 2, "n_years '2.5'"),
    ("basin,name,discharge_m3s,ci_low_m3s,ci_high_m3s\nB1,2y,1,5,4\n", 2, "ci_low_m3s '5' is above"),
])
def test_header_and_optional_column_errors(tmp_path, text, line, words):
    path = tmp_path / "th.csv"
    path.write_text(text)
    with pytest.raises(BadInputError) as err:
        read_thresholds(path)
    msg = str(err.value)
    assert msg.startswith(f"{path} line {line}: ") and words in msg and "\n" not in msg


def test_missing_and_empty_files(tmp_path):
    path = tmp_path / "none.csv"
    with pytest.raises(MissingInputError) as err:
        read_thresholds(path)
    assert str(path) in str(err.value)
    path.write_text("\n\n")
    with pytest.raises(BadInputError) as err:
        read_thresholds(path)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------------------------------------
# exceedance
# ---------------------------------------------------------------------------------------------
def test_exceedance_probability_hand_count():
    nan = np.nan
    members = np.array([
        [[1.0, 5.0, 7.0, 9.0], [5.0, 5.0, 5.0, 5.0]],  # basin 0, leads 0 and 1
        [[nan, 6.0, 4.0, nan], [nan, nan, nan, nan]],  # basin 1
    ])
    p = exceedance_probability(members, 5.0)
    # strictly above 5: lead 0 -> 7, 9 of 4; 5 == 5 is not above; basin 1: 6 of the 2 valid; all NaN -> NaN
    expected = np.array([[2 / 4, 0 / 4], [1 / 2, nan]])
    assert p.shape == (2, 2)
    np.testing.assert_array_equal(p, expected)
    # one threshold per basin, broadcast over the leads
    p = exceedance_probability(members, np.array([[0.5], [3.0]]))
    np.testing.assert_array_equal(p, np.array([[1.0, 1.0], [1.0, nan]]))
    assert exceedance_probability([1.0, 2.0, 3.0], 1.5) == pytest.approx(2 / 3)
    assert np.isnan(exceedance_probability([1.0, 2.0], nan))


# -- several basins: observed where the record allows, else the model's hindcast ------------------
def test_fit_basin_thresholds_uses_the_record_then_the_hindcast_then_nothing():
    from hydrocast.thresholds import fit_basin_thresholds

    rng = np.random.default_rng(7)
    days = np.arange(np.datetime64("2001-01-01"), np.datetime64("2008-12-31") + 1)  # 8 years
    sim = rng.gumbel(50, 10, size=(len(days), 3))
    obs = sim * 2.0
    obs[: len(days) // 2, 1] = np.nan  # basin B: 4 observed years only
    obs[:, 2] = np.nan  # basin C: never observed
    calls = []

    def simulated():
        calls.append(1)
        return sim

    rows, notes = fit_basin_thresholds(["A", "B", "C"], days, obs, simulated, (2, 5), min_years=5)
    by = {(r.basin, r.name): r for r in rows}
    assert {r.source for r in rows if r.basin == "A"} == {"observed"}
    assert {r.source for r in rows if r.basin in "BC"} == {"hindcast"}
    assert len(calls) == 1  # the hindcast is run once, only because some basin needs it
    # A is fitted to the observed maxima (which are twice the simulated ones), B to the simulated
    _, mx_a = annual_maxima(days, obs[:, 0])
    assert by[("A", "2y")].discharge_m3s == pytest.approx(fit_return_levels(mx_a, (2,)).levels[2])
    _, mx_b = annual_maxima(days, sim[:, 1])
    assert by[("B", "5y")].discharge_m3s == pytest.approx(fit_return_levels(mx_b, (5,)).levels[5])
    assert "4 observed years < min_years 5" in notes["B"] and notes["A"].startswith("observed annual maxima, 8 years")

    # no hindcast: B and C get nothing, and the notes say so; everyone well gauged: no hindcast run
    rows, notes = fit_basin_thresholds(["A", "B", "C"], days, obs, None, (2,), min_years=5)
    assert {r.basin for r in rows} == {"A"} and notes["C"].startswith("none")
    calls.clear()
    fit_basin_thresholds(["A"], days, obs[:, :1], simulated, (2,), min_years=5)
    assert calls == []


def test_records_round_trip_and_bad_records_name_where():
    from hydrocast.errors import BadInputError
    from hydrocast.thresholds import Threshold, from_records, to_records

    rows = [Threshold("A", "2y", 35.5, 2.0, "observed", 30.0, 41.0, 8, "gumbel"), Threshold("A", "alert", 50.0)]
    assert from_records(to_records(rows), "m.json") == rows
    bad = to_records(rows)
    bad[1]["discharge_m3s"] = -1.0
    with pytest.raises(BadInputError, match=r"m.json thresholds\[1\]: discharge_m3s"):
        from_records(bad, "m.json")
    with pytest.raises(BadInputError, match="duplicate"):
        from_records(to_records(rows) + to_records(rows[:1]), "m.json")
    with pytest.raises(BadInputError, match="not a thresholds record"):
        from_records([{"basin": "A", "name": "x", "discharge_m3s": 1.0, "colour": "red"}], "m.json")
