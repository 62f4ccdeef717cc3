"""Tests of the fan chart (hydrocast.plots.plot_fan_chart) through the Figure seam ``_fan_chart_figure``."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from scipy import stats

from hydrocast import plots

plt = plots._pyplot()
import matplotlib.dates as mdates  # noqa: E402 - after the Agg backend is chosen

REF = np.datetime64("2021-06-15", "D")
LEADS = 5
LEVELS = np.round(np.arange(1, 20) * 0.05, 10)          # 0.05 .. 0.95, the median at index 9
VALID = REF + np.arange(1, LEADS + 1).astype("timedelta64[D]")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _quantiles() -> np.ndarray:
    """(L, 19) lognormal quantiles whose spread grows with lead, via scipy's ppf (independent of plots)."""
    median = np.array([20.0, 24.0, 30.0, 27.0, 22.0])
    sigma = np.linspace(0.1, 0.5, LEADS)
    return stats.lognorm.ppf(LEVELS[None, :], s=sigma[:, None], scale=median[:, None])


def _past(n: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = REF - np.arange(n)[::-1].astype("timedelta64[D]")     # n days ending on the issue day
    obs = 15 + rng.gamma(2.0, 2.0, n)
    sim = obs * rng.uniform(0.8, 1.2, n)
    return t, sim, obs


def _num(values) -> np.ndarray:
    """Dates (datetime64[D] or datetime objects) as matplotlib date numbers."""
    arr = np.asarray(values)
    if arr.dtype.kind == "M":
        arr = arr.astype("datetime64[s]").astype(object)
    return np.asarray(mdates.date2num(list(arr)), dtype="float64")


def _collection(ax, prefix: str):
    found = [c for c in ax.collections if c.get_label().startswith(prefix)]
    assert len(found) == 1, [c.get_label() for c in ax.collections]
    return found[0]


def _line(ax, prefix: str):
    found = [ln for ln in ax.lines if ln.get_label().startswith(prefix)]
    assert len(found) == 1, [ln.get_label() for ln in ax.lines]
    return found[0]


def _band_extent(collection, x: float) -> tuple[float, float]:
    """Lowest and highest polygon vertex at date number ``x``."""
    verts = np.concatenate([p.vertices for p in collection.get_paths()])
    at = verts[np.isclose(verts[:, 0], x, rtol=0, atol=1e-9), 1]
    assert at.size >= 2, f"no band vertices at x={x}"
    return float(at.min()), float(at.max())


def _figure(**kw):
    t, sim, obs = _past()
    args = dict(past_times=t, past_sim_m3s=sim, obs_times=t, obs_m3s=obs,
                thresholds=[("5-year", 48.2), ("2-year", 35.1), ("20-year", 61.0)])
    args.update(kw)
    return plots._fan_chart_figure("B7", REF, VALID, LEVELS, _quantiles(), **args), sim, obs


def test_bands_span_the_quantiles_and_start_at_the_issue_value():
    q = _quantiles()
    fig, sim, _ = _figure()
    ax = fig.axes[0]
    now = sim[-1]                                  # the simulated value of the issue day
    b90, b50 = _collection(ax, "90 %"), _collection(ax, "50 %")
    for x, lo90, hi90, lo50, hi50 in zip(_num(VALID), q[:, 0], q[:, 18], q[:, 4], q[:, 14]):
        assert _band_extent(b90, x) == pytest.approx((lo90, hi90), rel=1e-12)
        assert _band_extent(b50, x) == pytest.approx((lo50, hi50), rel=1e-12)
    # zero width at the issue date, at the issue day's simulated value
    x0 = _num([REF])[0]
    assert _band_extent(b90, x0) == pytest.approx((now, now), rel=1e-12)
    assert _band_extent(b50, x0) == pytest.approx((now, now), rel=1e-12)
    # nothing before the issue date or after the last lead
    verts = np.concatenate([p.vertices for p in b90.get_paths()])
    assert verts[:, 0].min() == pytest.approx(x0) and verts[:, 0].max() == pytest.approx(_num(VALID)[-1])
    # the 50 % band is darker (lower luminance) than the 90 % band
    lum = [float(np.dot(c.get_facecolor()[0][:3], [0.299, 0.587, 0.114])) for c in (b50, b90)]
    assert lum[0] < lum[1]


def test_median_line_is_the_median_column_after_the_starting_point():
    q = _quantiles()
    fig, sim, _ = _figure()
    med = _line(fig.axes[0], "median")
    np.testing.assert_allclose(np.asarray(med.get_ydata(), float), np.concatenate([[sim[-1]], q[:, 9]]), rtol=1e-12)
    np.testing.assert_allclose(_num(med.get_xdata()), _num(np.concatenate([[REF], VALID])))
    assert med.get_marker() == "o"
    assert med.get_markevery() == slice(1, None)            # no marker on the starting point (not a forecast)


def test_fan_starts_from_the_observation_when_the_simulation_of_the_issue_day_is_missing():
    t, sim, obs = _past()
    sim[-1] = np.nan
    fig = plots._fan_chart_figure("B7", REF, VALID, LEVELS, _quantiles(), past_times=t, past_sim_m3s=sim,
                                  obs_times=t, obs_m3s=obs)
    ax = fig.axes[0]
    assert _line(ax, "median").get_ydata()[0] == obs[-1]
    assert _band_extent(_collection(ax, "90 %"), _num([REF])[0]) == pytest.approx((obs[-1], obs[-1]))


def test_ensemble_members_are_drawn_from_the_fan_start():
    q = _quantiles()
    members = np.stack([q[:, 9] * f for f in (0.8, 1.0, 1.3)], axis=1)  # (L, R)
    fig, sim, _ = _figure(members_m3s=members)
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if isinstance(ln.get_color(), str) and ln.get_color() == "0.45"]
    assert len(lines) == 3 and lines[0].get_label().startswith("weather-forecast members (3 runs)")
    for r, ln in enumerate(lines):
        np.testing.assert_allclose(np.asarray(ln.get_ydata(), float), np.concatenate([[sim[-1]], members[:, r]]))
    with pytest.raises(ValueError, match="members_m3s must have shape"):
        _figure(members_m3s=members[:2])


def test_without_any_past_the_fan_starts_at_lead_1():
    q = _quantiles()
    fig = plots._fan_chart_figure("B7", REF, VALID, LEVELS, q)
    ax = fig.axes[0]
    med = _line(ax, "median")
    np.testing.assert_allclose(np.asarray(med.get_ydata(), float), q[:, 9], rtol=1e-12)
    verts = np.concatenate([p.vertices for p in _collection(ax, "90 %").get_paths()])
    assert verts[:, 0].min() == pytest.approx(_num(VALID)[0])


def test_levels_found_by_value_within_tolerance():
    q = _quantiles()
    jitter = LEVELS + np.where(np.arange(19) % 2 == 0, 5e-7, -5e-7)      # within 1e-6 of the nominal levels
    fig = plots._fan_chart_figure("B7", REF, VALID, jitter, q)
    np.testing.assert_allclose(np.asarray(_line(fig.axes[0], "median").get_ydata(), float), q[:, 9])
    # a coarser set of levels: the indices differ but the values are found by level
    sub = [0, 4, 9, 14, 18]
    fig = plots._fan_chart_figure("B7", REF, VALID, LEVELS[sub], q[:, sub])
    ax = fig.axes[0]
    np.testing.assert_allclose(np.asarray(_line(ax, "median").get_ydata(), float), q[:, 9])
    assert _band_extent(_collection(ax, "50 %"), _num(VALID)[2]) == pytest.approx((q[2, 4], q[2, 14]))


@pytest.mark.parametrize("missing", [0.05, 0.25, 0.5, 0.75, 0.95])
def test_missing_level_raises_naming_it(missing):
    keep = np.abs(LEVELS - missing) > 1e-9
    with pytest.raises(ValueError, match=f"level {missing:g} "):
        plots._fan_chart_figure("B7", REF, VALID, LEVELS[keep], _quantiles()[:, keep])


def test_level_off_by_more_than_the_tolerance_is_missing():
    lev = LEVELS.copy()
    lev[9] = 0.5 + 1e-4
    with pytest.raises(ValueError, match="level 0.5 "):
        plots._fan_chart_figure("B7", REF, VALID, lev, _quantiles())


def test_bad_shapes_and_levels_raise_value_error():
    q = _quantiles()
    with pytest.raises(ValueError, match="shape"):
        plots._fan_chart_figure("B7", REF, VALID[:-1], LEVELS, q)
    with pytest.raises(ValueError, match="ascending"):
        plots._fan_chart_figure("B7", REF, VALID, LEVELS[::-1], q)
    t, sim, _ = _past()
    with pytest.raises(ValueError, match="past_sim"):
        plots._fan_chart_figure("B7", REF, VALID, LEVELS, q, past_times=t, past_sim_m3s=sim[:-1])


def test_one_dashed_line_per_threshold_coloured_yellow_to_red():
    fig, _, _ = _figure()
    ax = fig.axes[0]
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    values = sorted(float(ln.get_ydata()[0]) for ln in dashed)
    assert values == [35.1, 48.2, 61.0]
    for ln in dashed:
        assert ln.get_ydata()[0] == ln.get_ydata()[1]          # horizontal
        np.testing.assert_allclose(ln.get_xdata(), [0, 1])      # across the whole axes
    # colour by value: green falls from yellow (lowest) to red (highest); red stays high
    by_value = sorted(dashed, key=lambda ln: ln.get_ydata()[0])
    rgb = np.array([ln.get_color() for ln in by_value], float)
    assert np.all(np.diff(rgb[:, 1]) < 0) and rgb[0, 1] > 0.6 and rgb[-1, 1] < 0.1 and np.all(rgb[:, 0] >= 0.8)
    texts = {t.get_text() for t in ax.texts}
    assert {"2-year 35.1 m³/s", "5-year 48.2 m³/s", "20-year 61.0 m³/s"} <= texts
    # the labels sit just right of the right edge (axes x > 1), at the threshold's height
    label = next(t for t in ax.texts if t.get_text().startswith("2-year"))
    x, y = label.get_position()
    assert 1.0 < x < 1.02 and y == pytest.approx(35.1) and label.get_horizontalalignment() == "left"


def test_legend_lists_only_what_is_drawn():
    fig, _, _ = _figure()
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert sorted(labels) == sorted(["simulated (lead-1 hindcast)", "observed", "90 % interval (0.05–0.95)",
                                     "50 % interval (0.25–0.75)", "median forecast (leads 1-5 d)",
                                     "issue date 2021-06-15"])
    fig = plots._fan_chart_figure("B7", REF, VALID, LEVELS, _quantiles())
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert sorted(labels) == sorted(["90 % interval (0.05–0.95)", "50 % interval (0.25–0.75)",
                                     "median forecast (leads 1-5 d)", "issue date 2021-06-15"])
    # observations given but all NaN in the window: not drawn, not listed
    t, sim, obs = _past()
    fig = plots._fan_chart_figure("B7", REF, VALID, LEVELS, _quantiles(), past_times=t, past_sim_m3s=sim,
                                  obs_times=t, obs_m3s=np.full_like(obs, np.nan))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "observed" not in labels and "simulated (lead-1 hindcast)" in labels


def test_issue_date_line_title_and_axes():
    fig, _, _ = _figure()
    ax = fig.axes[0]
    issue = _line(ax, "issue date")
    assert issue.get_linestyle() == ":"
    np.testing.assert_allclose(_num(issue.get_xdata()), _num([REF, REF]))
    assert ax.get_title() == "Basin B7: discharge forecast issued 2021-06-15"
    assert ax.get_ylim()[0] == 0 and "m³" in ax.get_ylabel()


def test_ungauged_title_and_note_only_when_asked():
    fig, _, _ = _figure()
    ax = fig.axes[0]
    assert "ungauged" not in ax.get_title()
    assert not any("ungauged" in t.get_text() for t in ax.texts)
    t, sim, _ = _past()
    fig = plots._fan_chart_figure("B7", REF, VALID, LEVELS, _quantiles(), past_times=t, past_sim_m3s=sim,
                                  ungauged=True)
    ax = fig.axes[0]
    assert ax.get_title().endswith("(ungauged basin)")
    notes = [x for x in ax.texts if x.get_text() == "ungauged: no discharge observed here"]
    assert len(notes) == 1 and notes[0].get_bbox_patch() is not None
    assert not any(ln.get_label() == "observed" for ln in ax.lines)


def test_past_lines_keep_only_the_last_past_days():
    t, sim, obs = _past(100)
    obs[-3] = np.nan                                         # a gap inside the window stays a gap
    fig = plots._fan_chart_figure("B7", REF, VALID, LEVELS, _quantiles(), past_times=t, past_sim_m3s=sim,
                                  obs_times=t, obs_m3s=obs, past_days=10)
    ax = fig.axes[0]
    expected = [dt.date(2021, 6, 6) + dt.timedelta(days=i) for i in range(10)]   # 06-06 .. 06-15
    for label, values in (("simulated", sim), ("observed", obs)):
        ln = _line(ax, label)
        np.testing.assert_allclose(_num(ln.get_xdata()), mdates.date2num(expected))
        np.testing.assert_array_equal(np.asarray(ln.get_ydata(), float), values[-10:])
    assert np.isnan(_line(ax, "observed").get_ydata()[-3])
    # past data after the issue date is not drawn either
    t2 = np.concatenate([t, [REF + np.timedelta64(1, "D")]])
    fig = plots._fan_chart_figure("B7", REF, VALID, LEVELS, _quantiles(), obs_times=t2,
                                  obs_m3s=np.concatenate([obs, [99.0]]), past_days=10)
    assert _num(_line(fig.axes[0], "observed").get_xdata()).max() == pytest.approx(_num([REF])[0])


def test_plot_fan_chart_writes_a_png_atomically(tmp_path):
    t, sim, obs = _past(30)
    before = set(plt.get_fignums())
    out = plots.plot_fan_chart(tmp_path / "fan.png", "B7", REF, VALID, LEVELS, _quantiles(), past_times=t,
                               past_sim_m3s=sim, obs_times=t, obs_m3s=obs, thresholds=[("2-year", 35.1)])
    assert out == tmp_path / "fan.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["fan.png"]
    assert set(plt.get_fignums()) == before                  # the figure was closed
