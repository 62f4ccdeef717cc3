"""The forecast stand-in (hydrocast.standin): the degradation measured on archived forecasts is the
one that made them, and a stand-in is degraded by what was measured."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from hydrocast import standin
from hydrocast.standin import LeadError, best_shift, calibrate_lead, degrade


def rain_field(rng, shape=(40, 40)) -> np.ndarray:
    """A rainy, spatially coherent field (mm): smoothed gamma noise, mean a few mm."""
    return ndimage.gaussian_filter(rng.gamma(0.6, 8.0, shape), 2.0) + 0.5


def test_best_shift_finds_a_known_displacement():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(30):
        o = rain_field(rng)
        dy, dx = (int(v) for v in rng.integers(-7, 8, 2))
        f = ndimage.shift(o, (dy, dx), order=1, mode="nearest")
        hits += best_shift(f, o) == (dy, dx)
    assert hits >= 27
    # missing cells (NaN) in either field do not count
    o = rain_field(rng)
    f = ndimage.shift(o, (3, -2), order=1, mode="nearest")
    f[:5] = np.nan
    o[:, -4:] = np.nan
    assert best_shift(f, o) == (3, -2)


def test_calibration_recovers_the_errors_that_made_the_forecasts():
    rng = np.random.default_rng(2)
    sigma_shift, log_sd, smooth = 3.0, 0.4, 2.0
    fc, ob = [], []
    for _ in range(150):
        o = rain_field(rng)
        dy, dx = rng.normal(0.0, sigma_shift, 2)
        f = ndimage.shift(ndimage.gaussian_filter(o, smooth, mode="nearest"), (dy, dx), order=1, mode="nearest")
        fc.append(f * np.exp(rng.normal(0.0, log_sd)))
        ob.append(o)
    err = calibrate_lead(fc, ob, 2)
    assert err.source == "archive" and err.n_days == 150
    assert err.smooth_cells == smooth
    assert abs(err.shift_cells - sigma_shift) < 0.6  # (whole-cell peaks of interpolated shifts)
    assert abs(err.log_sd - log_sd) < 0.08


def test_too_few_rainy_days_fall_back_to_the_fixed_noise():
    rng = np.random.default_rng(3)
    dry = [np.full((20, 20), 0.2)] * 30  # domain means below RAINY_MM
    wet = [rain_field(rng, (20, 20)) for _ in range(standin.MIN_DAYS - 1)]
    for fc, ob in ((dry, dry), (wet, wet), ([], [])):
        err = calibrate_lead(fc, ob, 3)
        assert err == standin.fallback(3) and err.source == "fallback" and err.log_sd == 0.75


def test_degrade_reproduces_the_measured_errors_and_keeps_missing_cells():
    rng = np.random.default_rng(4)
    o = rain_field(rng)
    o[0, :3] = np.nan
    # no error: the observation itself
    same = degrade(o, LeadError(0.0, 0.0, 0.0, 20, "archive"), np.random.default_rng(0))
    np.testing.assert_allclose(same, o, rtol=1e-6)
    assert np.isnan(same[0, :3]).all()
    # the measured errors, drawn many times: the stand-ins show them again
    err = LeadError(1.5, 2.5, 0.3, 20, "archive")
    draws = np.random.default_rng(5)
    shifts, logs, spread = [], [], []
    for _ in range(120):
        d = degrade(o, err, draws)
        assert d.dtype == np.float32 and np.isnan(d[0, :3]).all() and (d[np.isfinite(d)] >= 0).all()
        ref = standin._smooth(o, err.smooth_cells)
        shifts.append(best_shift(d, ref))
        logs.append(np.log(np.nanmean(d) / np.nanmean(ref)))
        spread.append(np.nanstd(d) / np.nanstd(o))
    rms = float(np.sqrt(np.mean(np.array(shifts, dtype=float) ** 2)))
    assert abs(rms - err.shift_cells) < 0.6
    assert abs(np.std(logs) - err.log_sd) < 0.08
    assert np.median(spread) < 0.95  # smoother than the observation
    # the same generator state gives the same stand-in
    np.testing.assert_array_equal(degrade(o, err, np.random.default_rng(9)), degrade(o, err, np.random.default_rng(9)))
