"""The forecast stand-in: what stands in for a weather forecast where the archive has none (torch-free).

Why a stand-in
==============
A forecast archive usually covers only the last years of a record, but the rollout over the
lead days (:class:`hydrocast.model.HydroConvLSTM`, ``rollout=1``) is trained on the whole training
period. On issue days without an archived run, the lead days' *observed* precipitation, degraded,
stands in for the forecast, so that the rollout learns from every year to use a forecast that is
informative but wrong.

Two stand-ins
=============
``[train] forecast_stand_in_errors = "noise"`` (the default; in
:meth:`hydrocast.samples.CubeReader.forecast_window`): the observed rain times lognormal noise.
``"archive"`` (this module): the observed rain degraded as the archive's forecasts are,
measured per lead day on the training period's archived runs against the precipitation
observed on that day (:func:`calibrate`) and reproduced (:func:`degrade`). The idea: a stand-in
sharper and better placed than the real forecasts may teach the model to trust the forecast's
cells more than it should. Measured on the sample's validation year (one seed) it did not help:
the ConvLSTM's NSE fell from 0.902 / 0.812 / 0.784 to 0.884 / 0.789 / 0.697, hence not the
default.

* **smoothing**: a forecast is smoother than the observation (a coarser model grid, regridded;
  the loss of small-scale detail with lead). ``smooth_cells`` is the Gaussian sigma (grid cells)
  whose smoothing brings the observed fields' spatial standard deviation, as a fraction of their
  own, closest to the forecasts' (median over rainy days; candidates :data:`SMOOTH_CANDIDATES`);
* **displacement**: the shift (whole cells, at most a quarter of the grid each way) that maximises
  the cross-correlation of the forecast's anomalies with the smoothed observation's, per rainy day;
  ``shift_cells`` is the root mean square of its components (one sigma per axis). A stand-in is
  shifted by a draw from N(0, shift_cells²) in y and x (linear interpolation, edges extended);
* **intensity**: ``log_sd`` is the standard deviation over rainy days of the log ratio of the
  forecast's domain mean to the observation's; a stand-in is scaled by exp(N(0, log_sd²)).

A rainy day: both fields' domain means at least :data:`RAINY_MM` mm. Calibration reads at most
:data:`MAX_DAYS` issue days, evenly spread over the period. A lead with fewer than
:data:`MIN_DAYS` rainy pairs (no archive in the training period, or a dry region) gets the fixed
defaults of :func:`fallback` (a field-wide log sd of 0.25 per lead day, no smoothing, no shift: the
"noise" stand-in's field-wide factor), and ``source`` says so; there the per-cell noise of
"noise" applies as well.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: Gaussian sigmas (grid cells) tried for the smoothing
SMOOTH_CANDIDATES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
RAINY_MM = 1.0
MAX_DAYS = 240
MIN_DAYS = 10


@dataclass(frozen=True)
class LeadError:
    """The degradation of one lead day (see the module docstring)."""

    smooth_cells: float
    shift_cells: float
    log_sd: float
    n_days: int
    source: str  # "archive" (calibrated) or "fallback"

    def to_json(self) -> dict:
        return asdict(self)


def fallback(lead_day: int) -> LeadError:
    """The fixed degradation of lead day ``lead_day`` (1..L) used without a calibration."""
    return LeadError(0.0, 0.0, 0.25 * lead_day, 0, "fallback")



def _smooth(field: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of ``field`` (NaN = missing: normalised convolution, NaN stays NaN)."""
    if sigma <= 0:
        return field
    from scipy import ndimage

    valid = np.isfinite(field)
    num = ndimage.gaussian_filter(np.where(valid, field, 0.0), sigma, mode="nearest")
    den = ndimage.gaussian_filter(valid.astype("float64"), sigma, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    return np.where(valid, out, np.nan)


def best_shift(forecast: np.ndarray, observed: np.ndarray) -> tuple[int, int]:
    """(dy, dx) whole cells such that ``observed`` shifted by them matches ``forecast`` best (the
    peak of the cross-correlation of their anomalies; NaN cells count as anomaly 0), each at most
    a quarter of the grid."""
    h, w = forecast.shape
    vf, vo = np.isfinite(forecast), np.isfinite(observed)
    f = np.where(vf, forecast - np.nanmean(forecast), 0.0)
    o = np.where(vo, observed - np.nanmean(observed), 0.0)
    ph, pw = 2 * h, 2 * w

    def xcorr(a, b):  # zero-padded: out[dy, dx] = sum_{y,x} a[y, x] * b[y - dy, x - dx]
        return np.fft.irfft2(np.fft.rfft2(a, (ph, pw)) * np.conj(np.fft.rfft2(b, (ph, pw))), (ph, pw))

    # normalised by the overlap, so that a shift is not penalised for the cells it moves out
    num, ff, oo = xcorr(f, o), xcorr(f * f, vo.astype(float)), xcorr(vf.astype(float), o * o)
    overlap = xcorr(vf.astype(float), vo.astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(overlap >= 0.5 * min(vf.sum(), vo.sum()), num / np.sqrt(ff * oo), -np.inf)
    my, mx = max(h // 4, 1), max(w // 4, 1)
    dys = np.r_[0:my + 1, -my:0]
    dxs = np.r_[0:mx + 1, -mx:0]
    sub = np.nan_to_num(corr[np.ix_(dys % ph, dxs % pw)], nan=-np.inf)
    iy, ix = np.unravel_index(int(np.argmax(sub)), sub.shape)
    return int(dys[iy]), int(dxs[ix])


def calibrate_lead(forecasts: list[np.ndarray], observed: list[np.ndarray], lead_day: int) -> LeadError:
    """The :class:`LeadError` of lead day ``lead_day`` from pairs of forecast and observed fields
    (mm, (H, W) each, NaN = missing) of the same days."""
    pairs = [(f, o) for f, o in zip(forecasts, observed)
             if np.isfinite(f).any() and np.isfinite(o).any()
             and np.nanmean(f) >= RAINY_MM and np.nanmean(o) >= RAINY_MM]
    if len(pairs) < MIN_DAYS:
        return fallback(lead_day)
    ratios = {s: [] for s in SMOOTH_CANDIDATES}
    target = []
    for f, o in pairs:
        so = float(np.nanstd(o))
        if so <= 0:
            continue
        target.append(float(np.nanstd(f)) / so)
        for s in SMOOTH_CANDIDATES:
            ratios[s].append(float(np.nanstd(_smooth(o, s))) / so)
    if not target:
        return fallback(lead_day)
    want = float(np.median(target))
    sigma = min(SMOOTH_CANDIDATES, key=lambda s: abs(float(np.median(ratios[s])) - want))
    shifts = np.array([best_shift(f, _smooth(o, sigma)) for f, o in pairs], dtype="float64")
    shift = float(np.sqrt(np.mean(shifts ** 2)))  # RMS of dy and dx together: one sigma per axis
    logr = np.log([np.nanmean(f) / np.nanmean(o) for f, o in pairs])
    return LeadError(float(sigma), shift, float(np.std(logr)), len(pairs), "archive")


def calibrate(reader, forecasts, name: str, precipitation: str, t0: int, t1: int, lead: int) -> list[LeadError]:
    """Per lead day 1..``lead``, the degradation measured on the archived runs of forecast
    ``name`` (a :class:`hydrocast.forecasts.ForecastReader`) whose issue day ``t`` and lead day
    ``t + l`` both lie in the cube days ``t0..t1`` (the training period), against the cube's
    ``precipitation`` of day ``t + l``."""
    errors = []
    for l in range(1, lead + 1):  # noqa: E741
        issue = np.arange(t0, t1 - l + 1)
        have = (forecasts.available(name, reader.day_of(issue)) if forecasts is not None and len(issue)
                else np.zeros(len(issue), bool))
        days = issue[have]
        if len(days) > MAX_DAYS:
            days = days[np.linspace(0, len(days) - 1, MAX_DAYS).round().astype(int)]
        fc, ob = [], []
        for t in days:
            fc.append(forecasts.read(name, reader.day_of(np.array([t])), l)[0, l - 1].astype("float64"))
            ob.append(reader.raw(precipitation, int(t) + l, int(t) + l + 1)[0].astype("float64"))
        errors.append(calibrate_lead(fc, ob, l))
    return errors


def degrade(observed: np.ndarray, err: LeadError, rng: np.random.Generator) -> np.ndarray:
    """A stand-in forecast (H, W) mm of one lead day from the ``observed`` field (NaN = missing:
    it stays NaN), degraded by ``err`` with draws from ``rng`` (in a fixed order: the intensity,
    then dy, dx)."""
    from scipy import ndimage

    factor = np.exp(rng.normal(0.0, err.log_sd)) if err.log_sd > 0 else 1.0
    dy, dx = rng.normal(0.0, err.shift_cells, 2) if err.shift_cells > 0 else (0.0, 0.0)
    valid = np.isfinite(observed)
    f = _smooth(observed.astype("float64"), err.smooth_cells)
    if dy or dx:
        f = ndimage.shift(np.where(valid, f, 0.0), (dy, dx), order=1, mode="nearest")
    return np.where(valid, np.maximum(f, 0.0) * factor, np.nan).astype("float32")
