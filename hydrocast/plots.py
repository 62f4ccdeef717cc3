"""PNG plots of a forecast: the hydrograph of one basin, its fan chart (quantile bands of a
probabilistic forecast, :func:`plot_fan_chart`) and its forecast maps.

matplotlib is imported inside the functions (Agg backend, no display needed), never when the
CLI starts. Files are written atomically (:func:`hydrocast.netcdf.atomic_write`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .netcdf import _day, _days, atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    plt = _pyplot()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)


def plot_hydrograph(path, basin_id: str, reference_time, lead_valid_times, forecast_m3s,
                    obs_times=None, obs_m3s=None, obs_days: int = 60) -> Path:
    """Hydrograph PNG: the last ``obs_days`` days of observations before the issue date as a line,
    the forecast for leads 1..H (valid at ``lead_valid_times``) as markers joined to the reference
    time, a vertical line at the issue date. Missing observations (NaN) leave gaps."""
    plt = _pyplot()
    import matplotlib.dates as mdates

    ref = _day(reference_time)
    valid = _days(lead_valid_times).reshape(-1)
    fc = np.asarray(forecast_m3s, dtype="float64").reshape(-1)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    last_obs = None
    if obs_times is not None and obs_m3s is not None and len(obs_times):
        t = _days(obs_times).reshape(-1)
        q = np.asarray(obs_m3s, dtype="float64").reshape(-1)
        keep = (t > ref - np.timedelta64(obs_days, "D")) & (t <= ref)
        t, q = t[keep], q[keep]
        if len(t):
            ax.plot(t.astype("datetime64[s]").astype(object), q, color="0.2", lw=1.5, label="observed")
            ok = np.isfinite(q)
            if ok.any():
                last_obs = (t[ok][-1], q[ok][-1])
    # the forecast line starts from the last observation on the issue date when there is one
    ft, fq = valid, fc
    if last_obs is not None and last_obs[0] == ref:
        ft, fq = np.concatenate([[ref], valid]), np.concatenate([[last_obs[1]], fc])
        ax.plot(ft.astype("datetime64[s]").astype(object), fq, color="tab:blue", lw=1.2, ls="--")
        ax.plot(valid.astype("datetime64[s]").astype(object), fc, "o", color="tab:blue", ms=5,
                label=f"forecast (leads 1-{len(fc)} d)")
    else:
        ax.plot(valid.astype("datetime64[s]").astype(object), fc, "o--", color="tab:blue", ms=5, lw=1.2,
                label=f"forecast (leads 1-{len(fc)} d)")
    ax.axvline(ref.astype("datetime64[s]").astype(object), color="tab:red", lw=1, ls=":",
               label=f"issue date {ref}")
    ax.set_xlabel("date (UTC)")
    ax.set_ylabel("discharge (m³ s⁻¹)")
    ax.set_title(f"Basin {basin_id}: discharge forecast issued {ref}")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def plot_maps(path, basin_id: str, reference_time, maps: Mapping, extent, basin_mask=None,
              lead_days=None) -> Path:
    """Grid of map panels: rows = variables, columns = lead days, one colour bar per row (shared
    by its leads) with the units; the basin outline is the 0.5 contour of ``basin_mask``.

    ``maps``: name -> (array (lead, h, w), units) or (array, attrs dict with ``units`` and
    optionally ``long_name``), or a bare array (no units);
    ``extent``: (west, east, south, north) of the window in the grid's CRS."""
    plt = _pyplot()

    ref = _day(reference_time)
    items = []
    for name, value in maps.items():
        arr, meta = value if isinstance(value, tuple) and len(value) == 2 else (value, "")
        units = meta.get("units", "") if isinstance(meta, Mapping) else str(meta or "")
        label = meta.get("long_name", name) if isinstance(meta, Mapping) else name
        items.append((name, np.asarray(arr, dtype="float64"), units, label))
    if not items:
        raise ValueError("plot_maps: no maps to plot")
    nlead = items[0][1].shape[0]
    leads = list(lead_days) if lead_days is not None else list(range(1, nlead + 1))
    west, east, south, north = map(float, extent)
    fig, axes = plt.subplots(len(items), nlead, figsize=(2.6 * nlead + 1.2, 2.4 * len(items) + 0.6),
                             squeeze=False, constrained_layout=True)
    mask = None if basin_mask is None else np.asarray(basin_mask, dtype="float64")
    for r, (name, arr, units, label) in enumerate(items):
        finite = arr[np.isfinite(arr)]
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if vmax <= vmin:
            vmax = vmin + 1e-9
        cmap = "Blues" if "precip" in name or "runoff" in name or "discharge" in name else "viridis"
        im = None
        for c in range(nlead):
            ax = axes[r, c]
            im = ax.imshow(arr[c], extent=(west, east, south, north), origin="upper", vmin=vmin, vmax=vmax,
                           cmap=cmap, interpolation="nearest")
            if mask is not None and np.nanmax(mask) >= 0.5 > np.nanmin(mask):
                h, w = mask.shape
                xs = west + (np.arange(w) + 0.5) * (east - west) / w
                ys = north - (np.arange(h) + 0.5) * (north - south) / h
                ax.contour(xs, ys, mask, levels=[0.5], colors="red", linewidths=1.0)
            if r == 0:
                ax.set_title(f"lead {leads[c]} d ({ref + np.timedelta64(int(leads[c]), 'D')})", fontsize="small")
            if c == 0:
                ax.set_ylabel(label, fontsize="small")
            ax.tick_params(labelsize="x-small")
        cb = fig.colorbar(im, ax=list(axes[r, :]), shrink=0.9)
        cb.set_label(f"{name} ({units})" if units else name, fontsize="small")
    fig.suptitle(f"Basin {basin_id}: forecast maps issued {ref}")
    return _save(fig, path)


# -- fan chart of a probabilistic forecast --------------------------------------------------------
FAN_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
_LEVEL_TOL = 1e-6
_BAND90_COLOUR = "#c6dbef"
_BAND50_COLOUR = "#6baed6"
_MEDIAN_COLOUR = "#08306b"
_THRESHOLD_LOW = np.array([0.93, 0.80, 0.0])   # yellow (lowest threshold) ...
_THRESHOLD_HIGH = np.array([0.80, 0.0, 0.0])   # ... to red (highest)
UNGAUGED_NOTE = "ungauged: no discharge observed here"


def _level_index(levels: np.ndarray, level: float) -> int:
    """Index of ``level`` in ``levels`` (within 1e-6); ValueError naming it when absent."""
    hit = np.flatnonzero(np.abs(levels - level) <= _LEVEL_TOL)
    if hit.size == 0:
        raise ValueError(f"plot_fan_chart: quantile level {level:g} is missing from levels "
                         f"{[round(float(v), 6) for v in levels]}")
    return int(hit[0])


def _fmt_m3s(value: float) -> str:
    """A discharge for a label: 3 significant figures, never in exponent notation."""
    a = abs(value)
    return f"{value:.0f}" if a >= 100 else f"{value:.1f}" if a >= 10 else f"{value:.2f}"


def _threshold_colours(values: np.ndarray) -> np.ndarray:
    """(n, 3) RGB from yellow (lowest value) to red (highest), by rank; a single threshold is orange."""
    n = values.size
    pos = np.empty(n)
    pos[np.argsort(values, kind="stable")] = np.linspace(0.0, 1.0, n) if n > 1 else 0.5
    return _THRESHOLD_LOW + pos[:, None] * (_THRESHOLD_HIGH - _THRESHOLD_LOW)


def _past_series(times, values, what: str):
    """``(t, q)`` of a past series as datetime64[D] / float64 arrays, or None when not given."""
    if times is None or values is None:
        return None
    t = _days(times).reshape(-1)
    q = np.asarray(values, dtype="float64").reshape(-1)
    if t.shape != q.shape:
        raise ValueError(f"plot_fan_chart: {what} times and values differ in length ({t.size} vs {q.size})")
    return t, q


def _window(series, ref: np.datetime64, past_days: int):
    """The days of ``series`` in (ref − past_days, ref]."""
    t, q = series
    keep = (t > ref - np.timedelta64(past_days, "D")) & (t <= ref)
    return t[keep], q[keep]


def _issue_value(series, ref: np.datetime64) -> float | None:
    """The last finite value of the series on the issue day, or None."""
    if series is None:
        return None
    t, q = series
    ok = (t == ref) & np.isfinite(q)
    return float(q[ok][-1]) if ok.any() else None


def _as_dt(t: np.ndarray) -> np.ndarray:
    return t.astype("datetime64[s]").astype(object)


def _fan_chart_figure(basin_id: str, reference_time, lead_valid_times, levels, quantiles_m3s, *,
                      past_times=None, past_sim_m3s=None, obs_times=None, obs_m3s=None,
                      thresholds: Sequence[tuple[str, float]] = (), ungauged: bool = False, past_days: int = 60,
                      members_m3s=None):
    """The matplotlib Figure of :func:`plot_fan_chart` (not saved, not closed; see there)."""
    plt = _pyplot()
    import matplotlib.dates as mdates
    import matplotlib.transforms as mtransforms

    ref = _day(reference_time)
    valid = _days(lead_valid_times).reshape(-1)
    lev = np.asarray(levels, dtype="float64").reshape(-1)
    qs = np.asarray(quantiles_m3s, dtype="float64")
    if lev.size == 0 or np.any(~np.isfinite(lev)) or np.any(lev <= 0) or np.any(lev >= 1) or np.any(np.diff(lev) <= 0):
        raise ValueError(f"plot_fan_chart: levels must be strictly ascending in (0, 1), got {lev.tolist()}")
    if qs.ndim != 2 or qs.shape != (valid.size, lev.size):
        raise ValueError(f"plot_fan_chart: quantiles_m3s must have shape (leads, levels) = "
                         f"({valid.size}, {lev.size}), got {qs.shape}")
    if int(past_days) < 0:
        raise ValueError(f"plot_fan_chart: past_days must be >= 0, got {past_days}")
    i05, i25, i50, i75, i95 = (_level_index(lev, v) for v in FAN_LEVELS)
    sim = _past_series(past_times, past_sim_m3s, "past_sim")
    obs = _past_series(obs_times, obs_m3s, "obs")

    fig, ax = plt.subplots(figsize=(9, 4.5))
    # the simulated past (thin) and the observations (darker); a series with nothing finite in the
    # window is not drawn (and so not in the legend)
    for series, style in ((sim, dict(color="tab:blue", lw=0.9, label="simulated (lead-1 hindcast)")),
                          (obs, dict(color="0.1", lw=1.5, label="observed"))):
        if series is None:
            continue
        t, q = _window(series, ref, int(past_days))
        if np.isfinite(q).any():
            ax.plot(_as_dt(t), q, **style)

    # the fan: zero width at the issue day's value (simulated, else observed), when there is one
    now = _issue_value(sim, ref)
    if now is None:
        now = _issue_value(obs, ref)
    x, band = valid, qs
    if now is not None:
        x = np.concatenate([[ref], valid])
        band = np.vstack([np.full((1, lev.size), now), qs])
    xd = _as_dt(x)
    nlead = valid.size
    ax.fill_between(xd, band[:, i05], band[:, i95], color=_BAND90_COLOUR, lw=0,
                    label=f"90 % interval ({lev[i05]:g}–{lev[i95]:g})")
    ax.fill_between(xd, band[:, i25], band[:, i75], color=_BAND50_COLOUR, lw=0,
                    label=f"50 % interval ({lev[i25]:g}–{lev[i75]:g})")
    if members_m3s is not None:
        mem = np.asarray(members_m3s, dtype="float64")
        if mem.ndim != 2 or mem.shape[0] != valid.size:
            raise ValueError(f"plot_fan_chart: members_m3s must have shape (leads, members) = ({valid.size}, R), "
                             f"got {mem.shape}")
        if now is not None:
            mem = np.vstack([np.full((1, mem.shape[1]), now), mem])
        for r in range(mem.shape[1]):
            ax.plot(xd, mem[:, r], color="0.45", lw=0.6, alpha=0.7,
                    label=f"weather-forecast members ({mem.shape[1]} runs)" if r == 0 else None)
    ax.plot(xd, band[:, i50], "-o", color=_MEDIAN_COLOUR, lw=1.4, ms=4,
            markevery=slice(1 if now is not None else 0, None), label=f"median forecast (leads 1-{nlead} d)")

    # thresholds: dashed horizontal lines, labelled just right of the axes, yellow -> red by value
    pairs = [(str(name), float(value)) for name, value in thresholds if np.isfinite(float(value))]
    if pairs:
        colours = _threshold_colours(np.array([v for _, v in pairs]))
        right = mtransforms.blended_transform_factory(ax.transAxes, ax.transData)
        for (name, value), colour in zip(pairs, colours):
            ax.axhline(value, color=colour, lw=1.1, ls="--")
            ax.text(1.005, value, f"{name} {_fmt_m3s(value)} m³/s", transform=right, ha="left", va="center",
                    fontsize="x-small", color=colour * 0.8, clip_on=False)

    ax.axvline(ref.astype("datetime64[s]").astype(object), color="tab:red", lw=1, ls=":",
               label=f"issue date {ref}")
    if ungauged:
        ax.text(0.015, 0.97, UNGAUGED_NOTE, transform=ax.transAxes, ha="left", va="top", fontsize="small",
                bbox=dict(boxstyle="round", facecolor="white", edgecolor="0.5", alpha=0.9))
    ax.set_xlabel("date (UTC)")
    ax.set_ylabel("discharge (m³ s⁻¹)")
    ax.set_title(f"Basin {basin_id}: discharge forecast issued {ref}" + (" (ungauged basin)" if ungauged else ""))
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.legend(loc="best", fontsize="small")
    return fig


def plot_fan_chart(path, basin_id: str, reference_time, lead_valid_times, levels, quantiles_m3s, *,
                   past_times=None, past_sim_m3s=None, obs_times=None, obs_m3s=None,
                   thresholds: Sequence[tuple[str, float]] = (), ungauged: bool = False, past_days: int = 60,
                   members_m3s=None) -> Path:
    """Fan chart PNG of a probabilistic discharge forecast for one basin; returns ``path``.

    - ``levels`` (Q,): quantile levels, strictly ascending in (0, 1), which must contain 0.05, 0.25,
      0.5, 0.75 and 0.95 (matched within 1e-6; a missing one is a ValueError naming it);
      ``quantiles_m3s`` (L, Q): the discharge at each level for leads 1..L valid at
      ``lead_valid_times``. Shaded: the 90 % band (0.05–0.95) and, darker, the 50 % band
      (0.25–0.75); the median as a line with markers. Crossed quantiles are drawn as given.
    - The fan starts at the issue date with zero width at the last finite simulated value of the
      issue day (``past_sim_m3s`` at ``reference_time``), else the observed one; with neither it
      starts at lead 1.
    - ``past_times``/``past_sim_m3s`` (the lead-1 hindcast) as a thin line and ``obs_times``/``obs_m3s``
      as a darker line, both only for the days in (issue date − ``past_days``, issue date]; NaN
      leaves gaps; a series with nothing finite in that window is not drawn.
    - ``thresholds``: (label, m³/s) pairs as dashed horizontal lines labelled "label value m³/s" just
      outside the right edge (clear of the fan), coloured yellow → red by value; non-finite values are skipped.
    - ``ungauged``: "(ungauged basin)" in the title and a note in the plot.
    - ``members_m3s`` (L, R): the forecast driven by each weather-forecast ensemble member, thin grey lines
      (from the fan's start).
    The legend lists only what is drawn (thresholds are labelled in the plot instead). Written
    atomically (PNG, 110 dpi)."""
    fig = _fan_chart_figure(basin_id, reference_time, lead_valid_times, levels, quantiles_m3s,
                            past_times=past_times, past_sim_m3s=past_sim_m3s, obs_times=obs_times, obs_m3s=obs_m3s,
                            thresholds=thresholds, ungauged=ungauged, past_days=past_days, members_m3s=members_m3s)
    return _save(fig, path)
