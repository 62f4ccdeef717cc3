"""PNG plots of a forecast: the hydrograph of one basin and its forecast maps.

matplotlib is imported inside the functions (Agg backend, no display needed), never when the
CLI starts. Files are written atomically (:func:`hydrocast.netcdf.atomic_write`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

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
