"""The window/target builder (hydrocast.windows): no leakage past the training period, statistics
from training days only, targets exactly the observations of the following days."""

from __future__ import annotations

import numpy as np
import pytest

from hydrocast import windows as W
from hydrocast.cube import CubeWriter
from hydrocast.errors import ConfigError
from hydrocast.grid import GridSpec
from hydrocast.samples import CubeReader


def day_coded(n_days: int, n_basins: int) -> np.ndarray:
    """q_norm whose value IS the day index (+ basin / 1000): any leak is visible in the values."""
    return (np.arange(n_days)[:, None] + np.arange(n_basins)[None, :] / 1000).astype("float64")


@pytest.mark.parametrize("last_target", [30, 55, 99])
def test_targets_are_the_following_days_and_never_pass_last_target(last_target):
    q = day_coded(100, 3)
    start, stop, lead = 20, 60, 3
    y = W.targets(q, start, stop, lead, last_target)
    assert y.shape == (40, 3, 3)
    for i in range(stop - start):
        for l in range(lead):
            day = start + i + l + 1
            if day <= last_target:
                np.testing.assert_allclose(y[i, :, l], q[day], rtol=0, atol=1e-4)
            else:
                assert np.isnan(y[i, :, l]).all()
    finite = y[np.isfinite(y)]
    assert np.floor(finite).max() <= last_target


def test_targets_stop_at_the_end_of_the_record():
    q = day_coded(50, 1)
    y = W.targets(q, 40, 50, 3, 10_000)
    assert np.isnan(y[-1]).all() and y[-4, 0, 2] == pytest.approx(49, abs=1e-4)  # issue day 46, lead 3


def test_map_targets_follow_the_same_rule():
    n, start, stop, lead, last = 40, 5, 25, 2, 20
    block = np.arange(start, stop + lead, dtype="float32")[:, None, None] * np.ones((1, 2, 3), "float32")
    m = W.map_targets(block, start, stop, lead, last)
    for i in range(stop - start):
        for l in range(lead):
            day = start + i + l + 1
            if day <= last:
                assert (m[i, l] == day).all()
            else:
                assert np.isnan(m[i, l]).all()
    # a block shorter than the window + lead (end of the record) leaves NaN, no error
    short = W.map_targets(block[:-2], start, stop, lead, n)
    assert np.isnan(short[-1]).all() and np.isfinite(short[-3]).all()


def test_discharge_statistics_come_from_training_days_only():
    rng = np.random.default_rng(0)
    q = rng.gamma(2.0, 3.0, size=(300, 4))
    q[rng.random(q.shape) < 0.1] = np.nan
    area = np.array([100.0, 250.0, 40.0, 900.0])
    t0, t1 = 50, 199
    norm = W.discharge_norm(q, area, t0, t1)
    spoiled = q.copy()
    spoiled[:t0] *= 100.0
    spoiled[t1 + 1:] = 1e6
    other = W.discharge_norm(spoiled, area, t0, t1)
    assert (other.mean, other.std) == (norm.mean, norm.std)
    np.testing.assert_array_equal(other.basin_std, norm.basin_std)
    # independent computation of the pooled mean / std of specific discharge
    spec = [q[t, n] * 86.4 / area[n] for t in range(t0, t1 + 1) for n in range(4) if np.isfinite(q[t, n])]
    assert norm.mean == pytest.approx(np.mean(spec), rel=1e-12)
    assert norm.std == pytest.approx(np.std(spec), rel=1e-12)
    z = norm.normalise(q, area)
    assert np.nanstd(z[t0:t1 + 1, 2]) == pytest.approx(norm.basin_std[2], rel=1e-5)
    back = W.to_discharge(z[:, :, None], norm.mean, norm.std, area)[..., 0]
    np.testing.assert_allclose(back, np.where(np.isfinite(q), q, np.nan), rtol=1e-5)


def test_window_starts_stay_in_the_training_period_and_vary_by_epoch():
    p = W.Periods(t0=100, t1=999, v0=1000, v1=1200)
    T, warm, lead = 90, 30, 3
    a = W.window_starts(0, 1, p, T, warm, lead, 1500)
    b = W.window_starts(0, 2, p, T, warm, lead, 1500)
    assert a == W.window_starts(0, 1, p, T, warm, lead, 1500)  # deterministic by (seed, epoch)
    assert sorted(a) != sorted(b)
    for starts in (a, b):
        assert min(starts) >= p.t0 - warm
        # the last issue day of the last window leaves its lead days inside the period
        assert max(starts) + T - 1 <= p.t1 + lead
        # windows do not overlap after their warm-up: each training issue day is seen once
        covered = np.concatenate([np.arange(s + warm, s + T) for s in starts])
        assert len(covered) == len(set(covered))


def test_periods_are_checked():
    days = np.arange(np.datetime64("2015-01-01"), np.datetime64("2017-01-01"))
    p = W.periods(days, ["2015-01-01", "2015-12-31"], ["2016-01-01", "2016-06-30"], 90, "cube.nc", "cfg")
    assert (p.t0, p.t1, p.v0) == (0, 364, 365)
    with pytest.raises(ConfigError, match="overlap"):
        W.periods(days, ["2015-01-01", "2016-01-31"], ["2016-01-01", "2016-06-30"], 90, "cube.nc", "cfg")
    with pytest.raises(ConfigError, match="shorter than window_days"):
        W.periods(days, ["2015-01-01", "2015-02-01"], ["2016-01-01", "2016-06-30"], 90, "cube.nc", "cfg")


def _cube(path, values: np.ndarray, days) -> None:
    grid = GridSpec.from_bounds("EPSG:4326", (0.0, 0.0, 0.3, 0.2), 0.1)
    with CubeWriter(path, grid, days,
                    {"precipitation": {"units": "mm", "standard_name": "lwe_thickness_of_precipitation_amount"},
                     "soil_moisture": {"units": "m3 m-3"}}, {}) as w:
        w.write_days("precipitation", days, values, ["x"] * len(days))
        w.write_days("soil_moisture", days, values / 100.0, ["x"] * len(days))
        w.commit()


def test_input_statistics_and_windows_use_training_days_only(tmp_path):
    days = np.arange(np.datetime64("2015-01-01"), np.datetime64("2015-04-11"))  # 100 days
    rng = np.random.default_rng(1)
    values = rng.gamma(1.0, 4.0, size=(len(days), 2, 3)).astype("float32")
    spoiled = values.copy()
    spoiled[60:] = 500.0  # "validation" days: must not move the statistics
    _cube(tmp_path / "a.nc", values, days)
    _cube(tmp_path / "b.nc", spoiled, days)
    period = ("2015-01-01", "2015-03-01")  # days 0..59
    with CubeReader(tmp_path / "a.nc") as ra, CubeReader(tmp_path / "b.nc") as rb:
        sa = ra.compute_stats(["precipitation", "soil_moisture"], [], period)
        sb = rb.compute_stats(["precipitation", "soil_moisture"], [], period)
        assert sa.stats == sb.stats
        x = np.log1p(values[:60].astype("float64"))
        assert sa.stats["precipitation"]["mean"] == pytest.approx(x.mean(), rel=1e-9)
        assert sa.stats["precipitation"]["std"] == pytest.approx(x.std(), rel=1e-9)
        # a window's inputs hold its own days only, and its map targets stop at last_target
        q = day_coded(len(days), 2).astype("float32")
        w = W.window_arrays(rb, sb, q, "soil_moisture", 30, 50, 2, last_target=59)
        assert w["dynamic"].shape[0] == 20
        np.testing.assert_allclose(w["dynamic"][:, 0], ra.normalise(values[30:50], sa.stats["precipitation"])[0],
                                   rtol=1e-6)
        w2 = W.window_arrays(rb, sb, q, "soil_moisture", 50, 70, 2, last_target=59)
        assert np.isnan(w2["map_target"][9:, 0]).all() and np.isfinite(w2["map_target"][:9, 0]).all()
        assert np.isnan(w2["q_target"][9:, :, 0]).all() and np.nanmax(w2["q_target"]) < 60
