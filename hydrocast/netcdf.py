"""CF-1.8 / ACDD-1.3 NetCDF writers for the forecast products (atomic writes: :mod:`hydrocast.fsio`).

Contract of the three output files (written once, here)
=======================================================

Time: what a date means
-----------------------
hydrocast's days are **UTC calendar days**: the cube's day D holds the IMERG precipitation of
[D 00:00, D+1 00:00) UTC (the IMERG daily file ``YYYYMMDD-S000000-E235959`` or the 48 half-hours
starting 00:00 UTC), and a discharge record dated D is taken as the mean over that UTC day
(GRDC and USGS daily values are local-time days: a shift of a few hours hydrocast does not
correct).

* **Issue date D**: the last day whose inputs the forecast used. The **data cut-off**, the
  instant the last input ends, is D+1 00:00 UTC: that is ``forecast_reference_time``.
  ``issue_date`` (a global attribute of hydrographs and maps, ``"YYYY-MM-DD"``) keeps D.
* **Lead n** (``lead_time = n`` days, ``standard_name = forecast_period``) is the n-th UTC day
  after D: the day D+n, the period [reference + (n-1) days, reference + n days), with
  ``lead_time_bnds = [n-1, n]``.
* Discharge values are **daily means** over that day: ``cell_methods = "time: mean"``, and
  ``time_bnds = [D+n 00:00, D+n+1 00:00)`` (in the hindcast, where ``time`` is 2-D:
  ``forecast_reference_time + lead_time_bnds``).
* The **valid time** coordinate ``time`` is the **end** of the averaging day, D+n+1 00:00 UTC,
  so that ``time = forecast_reference_time + lead_time`` exactly (CF's definition of
  ``forecast_period``: the interval from the reference time to the validity time) and times are
  whole days (int32). The calendar day a value is for is ``time - 1 day`` (``time_bnds[..., 0]``).
  This is the convention of GloFAS ``dis24``, whose ``valid_time`` is the end of its 24-hour
  averaging period: hydrocast ``time`` and GloFAS ``valid_time`` compare **as they are** (GloFAS
  ``valid_time`` 2020-01-02T00 = mean over 2020-01-01 00–24 UTC = hydrocast ``time``
  2020-01-02T00, the forecast for valid date 2020-01-01). GloFAS's ``forecast_reference_time``
  (``time``) is its run time, hydrocast's the end of its inputs' last day; to compare lead by
  lead, match valid times, not leads.
* ``last_observation_time`` follows the same rule: the end of the observed day, with bounds.
* The cube (:mod:`hydrocast.cube`) is not a forecast: its ``time`` is the *start* of each day,
  with ``time_bnds = [day, day + 1)``.

Common to all three
-------------------
* NetCDF-4 files. Global attributes: the ACDD-1.3 discovery set of :mod:`hydrocast.acdd`
  (``Conventions = "CF-1.8, ACDD-1.3"``, ``title``, ``summary``, ``keywords``, ``comment`` (the
  time rule above), ``license``, ``institution``/``creator_*``, ``project``, ``source``,
  ``processing_level``, ``product_version``, ``history``, ``date_created``, ``id``,
  ``geospatial_*``, ``time_coverage_*`` = the bounds of the valid days,
  ``standard_name_vocabulary``), ``hydrocast_version``, ``hydrocast_model_id`` when given.
  Every variable but the bounds and ``crs`` has ``coverage_content_type``
  (``modelResult``, ``physicalMeasurement``, ``auxiliaryInformation``, ``coordinate``).
* Times are never int64 (CF checkers reject it): dates are ``int32`` ``days since 1970-01-01``
  (``calendar = "standard"``), or ``float64`` days where a value is not a whole day; missing
  times are ``_FillValue = -2147483647`` (int32) / NaN (float64). They decode to ``datetime64``.
  Bounds variables (``*_bnds``, dimension ``nv``) are data variables, not coordinates.
* Strings (basin ids) are char arrays ``(n, name_strlen)`` (vlen strings fail CF checkers),
  ``_Encoding = "utf-8"``; xarray decodes them back to ``str``.
* Discharge is ``float32`` ``m3 s-1``, ``standard_name = water_volume_transport_in_river_channel``,
  ``cell_methods = "time: mean"``, ``_FillValue = NaN`` (NaN = missing).
* Every file is written atomically (:func:`write_dataset` → :func:`hydrocast.fsio.atomic_write`,
  re-exported here with ``atomic_write_text``): a temporary ``.<name>.<pid>.tmp`` in the same
  folder, fsync, ``os.replace``, fsync of the folder; a full disk is a one-line DiskFullError
  (exit 74) naming the file, and the old file stays.

Hydrograph forecast (:func:`hydrograph_dataset`)
------------------------------------------------
CF Discrete Sampling Geometry, ``featureType = "timeSeries"`` (orthogonal multidimensional array
representation: all basins share the valid times).

============================== ==================================================================
dimensions                     ``station`` (one per basin), ``lead_time``, ``name_strlen``, ``nv``
``basin_id`` (station)         char array, ``cf_role = "timeseries_id"``
``lat``, ``lon`` (station)     outlet position, degrees north / east (float64)
``basin_area`` (station)       float64 km2
``basin_name`` (station)       char array, only where names were given
``forecast_reference_time``    scalar: the data cut-off, issue date + 1 day, 00:00 UTC
``lead_time`` (lead_time)      int32 days, ``forecast_period``, bounds ``lead_time_bnds``
``time`` (lead_time)           valid time = end of the lead's day, auxiliary coordinate,
                               ``standard_name time``, ``axis = T`` (marks it as the feature's
                               time for checkers), bounds ``time_bnds`` (lead_time, nv)
``discharge``                  float32 (station, lead_time) m3 s-1, daily mean,
                               ``coordinates = "time lat lon basin_id basin_area [basin_name]
                               forecast_reference_time"`` (station metadata are auxiliary
                               coordinates, so xarray reads them as coordinates)
``last_observed_discharge``    float32 (station): the last observed daily mean discharge (NaN:
                               ungauged or no observation), its time in ``last_observation_time``
``last_observation_time``      (station) end of the observed day (its date + 1 day), bounds
                               ``last_observation_time_bnds`` (only when every basin of the file has
                               an observation: a CF boundary variable may not hold fill values)
``quantile`` (quantile)        float64 quantile levels of the forecast distribution (0.05 .. 0.95;
                               a model trained with ``probabilistic = true``), units ``1``
``discharge_quantiles``        float32 (station, lead_time, quantile) m3 s-1: the forecast
                               distribution's quantiles (never crossing)
``discharge_median``           float32 (station, lead_time) m3 s-1: its median (quantile 0.5)
``realization`` (realization)  int32 ensemble member, ``standard_name = realization`` (only where
                               the weather forecast of the issue date is an ensemble kept in the
                               forecast store: :mod:`hydrocast.forecasts`)
``discharge_members``          float32 (station, lead_time, realization) m3 s-1: the deterministic
                               forecast driven by each member (the quantiles are then those of
                               the members' distributions pooled, see :mod:`hydrocast.predict`)
``threshold`` (threshold)      int32 index of the discharge thresholds (return periods or official
                               levels: :mod:`hydrocast.thresholds`), with ``threshold_name``
                               (threshold, char), ``threshold_discharge`` (station, threshold) m3 s-1
                               and ``threshold_return_period`` (station, threshold) years (NaN: a
                               named level)
``exceedance_probability``     float32 (station, lead_time, threshold) units ``1``: the share of the
                               forecast distribution above each threshold (NaN where a basin has
                               no such threshold)
============================== ==================================================================

Forecast maps (:func:`forecast_map_dataset`)
--------------------------------------------
============================== ==================================================================
dimensions                     ``lead_time``, ``y``, ``x`` (a window of the model grid, cropped
                               around one basin), ``nv``
``x``, ``y``                   float64 cell centres, same values and attributes as in the cube
``crs``                        grid mapping variable (as in the cube: ``crs_wkt``,
                               ``spatial_ref``, ``GeoTransform`` of the *cropped* window);
                               every map names it in ``grid_mapping``
``lead_time``, ``time``,       as in the hydrograph file (with ``time_bnds``, ``lead_time_bnds``)
``forecast_reference_time``
``<map name>``                 float32 (lead_time, y, x), attributes from the model (units,
                               standard_name, long_name, cell_methods), ``grid_mapping = "crs"``
``<map>_median``, ``_spread``  with a weather-forecast ensemble: the members' median and standard
                               deviation of the map (``cell_methods`` ``realization: median`` /
                               ``realization: standard_deviation``), with the scalar coordinate
                               ``realization`` (its long_name says which members: all R)
``basin_fraction`` (y, x)      float32 fraction of each cell inside the basin, units ``1``,
                               ``standard_name = area_fraction``
global ``basin_id``            the basin the window belongs to
============================== ==================================================================

Hindcast (:func:`hindcast_dataset`)
-----------------------------------
``featureType = "timeSeries"``; one series per basin and lead. The names mean the same as in
the other two files: ``forecast_reference_time`` is always the data cut-off (issue date + 1 day)
and ``time`` always the valid time (a dimension named ``time`` must have ``standard_name = time``
for CF checkers, so the reference-time dimension is not called ``time``).

============================== ==================================================================
dimensions                     ``basin``, ``forecast_reference_time``, ``lead_time``,
                               ``name_strlen``, ``nv``
``basin_id`` (basin)           char array, ``cf_role = "timeseries_id"``
``lat``, ``lon``, ``basin_area`` (basin), as in the hydrograph file
``forecast_reference_time``    the data cut-off of each issue date (coordinate variable),
                               ``axis = T``: the series run along it
``lead_time`` (lead_time)      int32 days, ``forecast_period``, bounds ``lead_time_bnds``
``time`` (lead_time, forecast_reference_time): valid time = reference + lead (end of the valid
                               day), ``standard_name = time`` (auxiliary coordinate). No bounds
                               variable: the period of a value is ``forecast_reference_time +
                               lead_time_bnds``. (``time_bnds`` (lead_time,
                               forecast_reference_time, nv=2) would be CF-correct, nv being the
                               vertices of a 1-D interval, but compliance-checker 6.1 demands
                               nv >= 3 for a 2-D coordinate, a simplex as for lat/lon meshes, and
                               its ACDD time check fails on a 2-D axis-T variable.)
``discharge_simulated``        float32 (basin, lead_time, forecast_reference_time) m3 s-1: the
                               ConvLSTM (time last: CF's recommended dimension order)
``discharge_simulated_quantiles`` float32 (basin, lead_time, quantile, forecast_reference_time):
                               its forecast distribution (``quantile`` as in the hydrograph file),
                               with ``discharge_lumped_lstm_quantiles`` for the lumped LSTM
``discharge_observed``         float32 (same dims) m3 s-1, observed on the valid day
``discharge_<baseline>``       float32 (same dims) m3 s-1, e.g. ``lumped_lstm``,
                               ``persistence``, ``climatology``
============================== ==================================================================
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import __version__, acdd
from .cube import _grid_mapping_attrs, _xy_attrs
from .fsio import atomic_write, atomic_write_text  # noqa: F401 - the one atomic-write helper, re-exported
from .grid import GridSpec

TIME_UNITS = "days since 1970-01-01 00:00:00"
INT32_FILL = np.int32(-2147483647)
DISCHARGE_STD = "water_volume_transport_in_river_channel"
DISCHARGE_UNITS = "m3 s-1"
STRLEN_DIM = "name_strlen"

#: long names of the baselines of a hindcast (others get a generic one)
BASELINE_LONG_NAMES = {
    "lumped_lstm": "discharge simulated by the lumped (basin-average) LSTM baseline",
    "persistence": "persistence baseline: last observed discharge carried forward",
    "climatology": "climatology baseline: day-of-year mean observed discharge",
    "convlstm_no_obs": "discharge forecast by the ConvLSTM as if every gauge were silent at issue time",
    "lumped_lstm_no_obs": "discharge forecast by the lumped LSTM as if every gauge were silent at issue time",
    "convlstm_no_forecast": "discharge forecast by the ConvLSTM as if no weather forecast were available",
    "lumped_lstm_no_forecast": "discharge forecast by the lumped LSTM as if no weather forecast were available",
    "convlstm_no_blend": "discharge forecast by the ConvLSTM without its blend with persistence",
    "lumped_lstm_no_blend": "discharge forecast by the lumped LSTM without its blend with persistence",
}

DAY = np.timedelta64(1, "D")
BOUNDS_DIM = "nv"
VALID_TIME_COMMENT = (
    "end of the 24-hour UTC period the daily mean is over; the period is time_bnds = [time - 1 day, time), "
    "so the calendar day of a value is the date of time - 1 day (the convention of GloFAS dis24 valid_time)")
TIME_COMMENT = (
    "Times are UTC. Discharge values are daily means over UTC calendar days (cell_methods time: mean). "
    "forecast_reference_time is the data cut-off: 00:00 UTC of the day after the issue date, when the "
    "issue date's inputs end. Lead n is the n-th day after the issue date; its time is the END of that "
    "day, as GloFAS dis24 valid_time (time = forecast_reference_time + lead_time), and time_bnds gives "
    "its start and end.")
TIME_COMMENT_HINDCAST = TIME_COMMENT.replace(
    "and time_bnds gives its start and end", "and forecast_reference_time + lead_time_bnds gives its start and end")
HINDCAST_VALID_TIME_COMMENT = (
    "end of the 24-hour UTC period the daily mean is over, which starts one day earlier: the period is "
    "forecast_reference_time + lead_time_bnds (the convention of GloFAS dis24 valid_time)")
TIME_COMMENT_MAPS = (
    "Times are UTC. forecast_reference_time is the data cut-off: 00:00 UTC of the day after the issue "
    "date, when the issue date's inputs end. Lead n is the n-th day after the issue date; its time is the "
    "END of that day (time = forecast_reference_time + lead_time) and time_bnds gives its start and end.")


# -- helpers -------------------------------------------------------------------------------------------
def _day(value) -> np.datetime64:
    """A date-like value (str, date, datetime64, pandas Timestamp) as ``datetime64[D]``."""
    if hasattr(value, "to_datetime64"):
        value = value.to_datetime64()
    return np.datetime64(value, "D")


def _days(values) -> np.ndarray:
    """Dates as ``datetime64[D]``; None, NaN and NaT become NaT."""
    def one(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return np.datetime64("NaT", "D")
        return _day(v)
    if isinstance(values, np.ndarray) and values.dtype.kind == "M":
        return values.astype("datetime64[D]")
    values = list(values) if not isinstance(values, np.ndarray) else values
    return np.asarray([one(v) for v in np.ravel(np.asarray(values, dtype=object))],
                      dtype="datetime64[D]").reshape(np.shape(values))


def _ns(days) -> np.ndarray:
    return np.asarray(days).astype("datetime64[ns]")


def _day_bounds(end) -> np.ndarray:
    """``[end - 1 day, end]`` along a new last axis (NaT stays NaT): the UTC day ending at ``end``."""
    end = np.asarray(end, dtype="datetime64[D]")
    return np.stack([end - DAY, end], axis=-1)


def _reference_time_attrs() -> dict:
    return {"standard_name": "forecast_reference_time",
            "long_name": "data cut-off of the forecast: end of the issue date, 00:00 UTC of the next day",
            "comment": "issue date = forecast_reference_time - 1 day; no input after this instant was used",
            "coverage_content_type": "coordinate"}


def _valid_time_attrs(long_name: str) -> dict:
    # axis = "T" marks *the* time coordinate of the feature for checkers (compliance-checker picks
    # the time variable by axis first; without it last_observation_time is taken and the
    # station-only variables are misdetected as points). CF >= 1.7 lets axis sit on auxiliary
    # coordinates too, and the checker accepts it even with -c strict.
    return {"standard_name": "time", "long_name": long_name, "axis": "T", "bounds": "time_bnds",
            "comment": VALID_TIME_COMMENT, "coverage_content_type": "coordinate"}


def _lead_attrs() -> dict:
    return {"standard_name": "forecast_period", "units": "days", "bounds": "lead_time_bnds",
            "long_name": "forecast lead time: lead n is the n-th UTC day after the issue date, ending "
                         "n days after forecast_reference_time",
            "coverage_content_type": "coordinate"}


def _lead_vars(leads: np.ndarray) -> tuple[dict, dict]:
    """``lead_time`` (a coordinate) and its bounds ``[n - 1, n]`` days (a data variable)."""
    import xarray as xr

    coords = {"lead_time": xr.Variable("lead_time", leads, _lead_attrs())}
    data = {"lead_time_bnds": xr.Variable(("lead_time", BOUNDS_DIM),
                                          np.stack([leads - 1, leads], axis=1).astype("int32"))}
    return coords, data


def _station_vars(dim: str, basin_ids, outlet_lon, outlet_lat, area_km2) -> dict:
    import xarray as xr

    n = len(basin_ids)
    lon = np.asarray(outlet_lon, dtype="float64").reshape(n)
    lat = np.asarray(outlet_lat, dtype="float64").reshape(n)
    area = np.asarray(area_km2, dtype="float64").reshape(n)
    return {
        "basin_id": xr.Variable(dim, np.asarray([str(b) for b in basin_ids], dtype=str),
                                {"cf_role": "timeseries_id", "long_name": "basin identifier",
                                 "coverage_content_type": "coordinate"}),
        "lat": xr.Variable(dim, lat, {"standard_name": "latitude", "long_name": "latitude of the basin outlet",
                                      "units": "degrees_north", "coverage_content_type": "coordinate"}),
        "lon": xr.Variable(dim, lon, {"standard_name": "longitude", "long_name": "longitude of the basin outlet",
                                      "units": "degrees_east", "coverage_content_type": "coordinate"}),
        "basin_area": xr.Variable(dim, area, {"long_name": "upstream area of the basin", "units": "km2",
                                              "coverage_content_type": "auxiliaryInformation"}),
    }


def _discharge(dims, values, long_name: str, coordinates: str, content_type: str):
    """A daily-mean discharge variable (``cell_methods = "time: mean"``: over its ``time_bnds``)."""
    import xarray as xr

    v = xr.Variable(dims, np.asarray(values, dtype="float32"),
                    {"standard_name": DISCHARGE_STD, "long_name": long_name, "units": DISCHARGE_UNITS,
                     "cell_methods": "time: mean", "coverage_content_type": content_type})
    v.encoding["coordinates"] = coordinates
    return v


def _list(names, limit: int = 5) -> str:
    names = [str(s) for s in names]
    return ", ".join(names) if len(names) <= limit else f"{', '.join(names[:limit])} and {len(names) - limit} more"


def _file_id(*parts) -> str:
    return "_".join(["hydrocast", *(str(p) for p in parts if p)])


def _source(step: str, what: str, model_id: str | None) -> str:
    return f"hydrocast {__version__} {step}: {what}" + (f" (model {model_id})" if model_id else "")


# -- the three products --------------------------------------------------------------------------------
def _quantile_coord(levels):
    import xarray as xr

    return xr.Variable("quantile", np.asarray(levels, dtype="float64"),
                       {"long_name": "quantile level of the forecast distribution (probability of not exceeding)",
                        "units": "1", "coverage_content_type": "coordinate"})


def _threshold_vars(dim: str, thresholds: Mapping, n: int, n_leads: int, coordinates: str) -> tuple[dict, dict]:
    """Coordinates and data variables of the thresholds and their exceedance probabilities (see the
    module docstring); ``thresholds``: ``names`` (K,), ``discharge`` (basin, K), ``return_period``
    (basin, K), ``probability`` (basin, lead, K)."""
    import xarray as xr

    names = [str(x) for x in thresholds["names"]]
    k = len(names)
    q = np.asarray(thresholds["discharge"], dtype="float32").reshape(n, k)
    rp = np.asarray(thresholds["return_period"], dtype="float32").reshape(n, k)
    prob = np.asarray(thresholds["probability"], dtype="float32").reshape(n, n_leads, k)
    coords = {"threshold": xr.Variable("threshold", np.arange(k, dtype="int32"),
                                       {"long_name": "index of the discharge threshold",
                                        "coverage_content_type": "coordinate"}),
              "threshold_name": xr.Variable("threshold", np.asarray(names, dtype=str),
                                            {"long_name": "name of the discharge threshold (5y: the 5-year flood)",
                                             "coverage_content_type": "auxiliaryInformation"})}
    tq = xr.Variable((dim, "threshold"), q, {"standard_name": DISCHARGE_STD, "units": DISCHARGE_UNITS,
                                             "long_name": "discharge threshold (daily mean)",
                                             "coverage_content_type": "referenceInformation"})
    trp = xr.Variable((dim, "threshold"), rp, {"long_name": "return period of the threshold (NaN: a named level)",
                                               "units": "year", "coverage_content_type": "referenceInformation"})
    pv = xr.Variable((dim, "lead_time", "threshold"), prob,
                     {"long_name": "probability that the daily mean discharge exceeds the threshold", "units": "1",
                      "valid_min": np.float32(0.0), "valid_max": np.float32(1.0),
                      "coverage_content_type": "modelResult"})
    pv.encoding["coordinates"] = coordinates + " threshold_name"
    return coords, {"threshold_discharge": tq, "threshold_return_period": trp, "exceedance_probability": pv}


def hydrograph_dataset(basin_ids, names, outlet_lon, outlet_lat, area_km2, reference_time, lead_days,
                       discharge, last_obs, last_obs_time, institution: str | None = None, *,
                       model_id: str | None = None, global_attrs: Mapping | None = None,
                       quantiles=None, levels=None, thresholds: Mapping | None = None, members=None):
    """The hydrograph forecast of ``len(basin_ids)`` basins as a CF timeSeries DSG dataset.

    ``reference_time``: the issue date D (the last day whose inputs were used); the file's
    ``forecast_reference_time`` is D + 1 day 00:00 UTC and lead n the n-th day after D.
    ``names``: optional basin names (None or "" to leave out); ``discharge``: (basin, lead) m3/s,
    daily means; ``last_obs``: (basin,) last observed discharge, NaN where none; ``last_obs_time``:
    (basin,) the dates (UTC days) of those observations, None/NaT where none. ``model_id`` goes
    into ``source`` and ``id``; ``global_attrs`` are extra global attributes (override the defaults).
    ``quantiles`` (basin, lead, Q) m3/s at ``levels`` (Q,): the forecast distribution;
    ``thresholds``: see :func:`_threshold_vars`; ``members`` (basin, lead, R) m3/s: the forecast
    driven by each ensemble member of the weather forecast."""
    import xarray as xr

    n = len(basin_ids)
    issue = _day(reference_time)
    ref = issue + DAY
    leads = np.asarray(lead_days, dtype="int32").reshape(-1)
    q = np.asarray(discharge, dtype="float32")
    if q.shape != (n, len(leads)):
        raise ValueError(f"discharge has shape {q.shape}, expected (basins, leads) = {(n, len(leads))}")
    coords = _station_vars("station", basin_ids, outlet_lon, outlet_lat, area_km2)
    if names is not None and any(str(s or "") for s in names):
        coords["basin_name"] = xr.Variable("station", np.asarray([str(s or "") for s in names], dtype=str),
                                           {"long_name": "basin name", "coverage_content_type": "auxiliaryInformation"})
    coords["forecast_reference_time"] = xr.Variable((), _ns(ref), _reference_time_attrs())
    lead_coords, lead_data = _lead_vars(leads)
    coords.update(lead_coords)
    valid = ref + leads.astype("timedelta64[D]")
    coords["time"] = xr.Variable("lead_time", _ns(valid), _valid_time_attrs(
        "valid time of the forecast: end of its UTC day (forecast_reference_time + lead_time)"))
    obs_day = _days(last_obs_time).reshape(n)
    obs_end = obs_day + DAY
    coords["last_observation_time"] = xr.Variable(
        "station", _ns(obs_end),
        {"standard_name": "time", "bounds": "last_observation_time_bnds", "coverage_content_type": "coordinate",
         "long_name": "end of the UTC day of the last observed discharge (its date + 1 day)"})
    meta = [k for k in ("basin_area", "basin_name") if k in coords]
    data = {
        "discharge": _discharge(("station", "lead_time"), q, "forecast daily mean river discharge at the basin outlet",
                                " ".join(["time", "lat", "lon", "basin_id", *meta, "forecast_reference_time"]),
                                "modelResult"),
        "last_observed_discharge": _discharge(
            "station", np.asarray(last_obs, dtype="float32").reshape(n),
            "last observed daily mean river discharge at the basin outlet",
            " ".join(["last_observation_time", "lat", "lon", "basin_id", *meta]), "physicalMeasurement"),
        "time_bnds": xr.Variable(("lead_time", BOUNDS_DIM), _ns(_day_bounds(valid))),
        "last_observation_time_bnds": xr.Variable(("station", BOUNDS_DIM), _ns(_day_bounds(obs_end))),
        **lead_data,
    }
    cq = " ".join(["time", "lat", "lon", "basin_id", *meta, "forecast_reference_time"])
    if quantiles is not None:
        lv = np.asarray(levels, dtype="float64").reshape(-1)
        qq = np.asarray(quantiles, dtype="float32")
        if qq.shape != (n, len(leads), len(lv)):
            raise ValueError(f"quantiles has shape {qq.shape}, expected (basins, leads, levels) = "
                             f"{(n, len(leads), len(lv))}")
        coords["quantile"] = _quantile_coord(lv)
        data["discharge_quantiles"] = _discharge(("station", "lead_time", "quantile"), qq,
                                                 "quantiles of the forecast daily mean river discharge", cq,
                                                 "modelResult")
        med = np.flatnonzero(np.isclose(lv, 0.5))
        if med.size:
            data["discharge_median"] = _discharge(("station", "lead_time"), qq[..., med[0]],
                                                  "median of the forecast daily mean river discharge", cq,
                                                  "modelResult")
    if members is not None:
        qm = np.asarray(members, dtype="float32")
        if qm.ndim != 3 or qm.shape[:2] != (n, len(leads)):
            raise ValueError(f"members has shape {qm.shape}, expected (basins, leads, members)")
        coords["realization"] = xr.Variable("realization", np.arange(qm.shape[2], dtype="int32"), {
            "standard_name": "realization", "units": "1", "coverage_content_type": "coordinate",
            "long_name": "ensemble member of the weather forecast driving the run (0: its control)"})
        data["discharge_members"] = _discharge(("station", "lead_time", "realization"), qm,
                                               "forecast daily mean river discharge driven by each ensemble member "
                                               "of the weather forecast", cq, "modelResult")
    if thresholds is not None:
        tc, td = _threshold_vars("station", thresholds, n, len(leads), cq)
        coords.update(tc)
        data.update(td)
    if np.isnat(obs_end).any():  # a basin without observation: no bounds (CF bounds may not carry a fill value)
        del data["last_observation_time_bnds"]
        del coords["last_observation_time"].attrs["bounds"]
    ids = [str(b) for b in basin_ids]
    stamp = str(issue).replace("-", "")
    gattrs = acdd.discovery_attrs(
        title="hydrocast river discharge forecast (hydrographs)",
        summary=(f"Forecast of the daily mean river discharge at the outlet of {n} basin(s) ({_list(ids)}) for "
                 f"the {len(leads)} UTC days after the issue date {issue}, made by the hydrocast ConvLSTM from "
                 f"gridded precipitation, soil moisture and terrain up to the end of {issue} (UTC), with the last "
                 "observed discharge of each gauged basin."),
        keywords="river discharge, streamflow, hydrological forecast, hydrograph, ConvLSTM, precipitation, "
                 "soil moisture",
        source=_source("predict", "ConvLSTM discharge forecast", model_id),
        processing_level="model output: daily forecast of the hydrocast ConvLSTM",
        comment=TIME_COMMENT, institution=institution, extent=acdd.point_extent(coords["lon"].values,
                                                                               coords["lat"].values),
        coverage=acdd.time_coverage(_day_bounds(valid)),
        id=_file_id(ids[0] if n == 1 else f"{n}basins", stamp, model_id, "hydrograph"),
        extra={"featureType": "timeSeries", "issue_date": str(issue),
               **({"hydrocast_model_id": str(model_id)} if model_id else {})},
        attrs=global_attrs)
    ds = xr.Dataset(data, coords=coords, attrs=gattrs)
    return _set_encodings(ds)


def forecast_map_dataset(grid: GridSpec, window, reference_time, lead_days, maps: Mapping, basin_mask,
                         basin_id: str, institution: str | None = None, *, model_id: str | None = None,
                         global_attrs: Mapping | None = None, realizations: int | None = None):
    """Forecast maps of one basin on the ``window = (row0, row1, col0, col1)`` of ``grid``
    (half-open row/column ranges).

    ``reference_time``: the issue date D, as in :func:`hydrograph_dataset`. ``maps``: name ->
    (array (lead, h, w), attrs) with ``(h, w)`` the window's shape (an array of the whole grid's
    shape is cropped to the window); ``basin_mask`` likewise (h, w): the fraction of each cell
    inside the basin. A map's attrs may say ``cell_methods`` (e.g. ``"time: mean"`` for a daily
    mean); ``coverage_content_type`` defaults to ``modelResult``. ``realizations`` R: the maps
    include statistics over R ensemble members (``cell_methods`` naming ``realization``), which
    get the scalar coordinate ``realization`` (its long_name says the members covered)."""
    import xarray as xr
    from affine import Affine

    row0, row1, col0, col1 = (int(v) for v in window)
    if not (0 <= row0 < row1 <= grid.height and 0 <= col0 < col1 <= grid.width):
        raise ValueError(f"window {tuple(window)} is not inside the {grid.height}x{grid.width} grid")
    h, w = row1 - row0, col1 - col0

    def crop(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        if a.shape[-2:] == (h, w):
            return a
        if a.shape[-2:] == grid.shape:
            return a[..., row0:row1, col0:col1]
        raise ValueError(f"array of shape {a.shape} fits neither the window ({h}x{w}) nor the grid {grid.shape}")

    issue = _day(reference_time)
    ref = issue + DAY
    leads = np.asarray(lead_days, dtype="int32").reshape(-1)
    valid = ref + leads.astype("timedelta64[D]")
    t = grid.transform
    sub = GridSpec(grid.crs, t * Affine.translation(col0, row0), w, h)
    xa, ya = _xy_attrs(grid)
    lead_coords, lead_data = _lead_vars(leads)
    coords = {
        "x": xr.Variable("x", grid.x[col0:col1].astype("float64"), {**xa, "coverage_content_type": "coordinate"}),
        "y": xr.Variable("y", grid.y[row0:row1].astype("float64"), {**ya, "coverage_content_type": "coordinate"}),
        "forecast_reference_time": xr.Variable((), _ns(ref), _reference_time_attrs()),
        **lead_coords,
        "time": xr.Variable("lead_time", _ns(valid), _valid_time_attrs(
            "valid time of the forecast: end of its UTC day (forecast_reference_time + lead_time)")),
    }
    # crs is also listed in each map's ``coordinates`` so that xarray opens it as a coordinate and
    # ``ds[name].rio.crs`` works without decode_coords="all" (as rioxarray itself writes files);
    # as an auxiliary coordinate it then needs a long_name for CF checkers.
    data = {"crs": xr.Variable((), np.int32(0), {"long_name": "coordinate reference system",
                                                 **_grid_mapping_attrs(sub)}),
            "time_bnds": xr.Variable(("lead_time", BOUNDS_DIM), _ns(_day_bounds(valid))), **lead_data}
    if realizations:
        # (a scalar coordinate's bounds would need 2 dimensions for compliance-checker: none, the
        # members covered are said in words)
        coords["realization"] = xr.Variable((), np.int32(0), {
            "standard_name": "realization", "units": "1", "coverage_content_type": "coordinate",
            "long_name": f"the weather-forecast ensemble members a statistic is over: all {int(realizations)} "
                         f"(0 .. {int(realizations) - 1})"})
    for name, (arr, mattrs) in maps.items():
        a = crop(arr).astype("float32")
        if a.shape != (len(leads), h, w):
            raise ValueError(f"map {name!r} has shape {a.shape}, expected {(len(leads), h, w)}")
        mattrs = {k: v for k, v in dict(mattrs or {}).items() if k not in ("_FillValue", "grid_mapping", "coordinates")}
        mattrs.setdefault("long_name", name.replace("_", " "))
        mattrs.setdefault("coverage_content_type", "modelResult")
        v = xr.Variable(("lead_time", "y", "x"), a, {**mattrs, "grid_mapping": "crs"})
        over = "realization" in str(mattrs.get("cell_methods", "")) and realizations
        v.encoding["coordinates"] = "time forecast_reference_time crs" + (" realization" if over else "")
        data[name] = v
    data["basin_fraction"] = xr.Variable(
        ("y", "x"), crop(basin_mask).astype("float32"),
        {"standard_name": "area_fraction", "long_name": "fraction of the cell's area inside the basin", "units": "1",
         "grid_mapping": "crs", "coverage_content_type": "auxiliaryInformation"})
    data["basin_fraction"].encoding["coordinates"] = "crs"
    stamp = str(issue).replace("-", "")
    gattrs = acdd.discovery_attrs(
        title=f"hydrocast forecast maps for basin {basin_id}",
        summary=(f"Forecast maps ({_list(maps)}) on the window of the hydrocast model grid around basin {basin_id}, "
                 f"for the {len(leads)} UTC days after the issue date {issue}, made by the hydrocast ConvLSTM from "
                 f"inputs up to the end of {issue} (UTC), with the fraction of each cell inside the basin."),
        keywords="hydrological forecast, soil moisture, runoff, gridded forecast, river basin, ConvLSTM",
        source=_source("predict", "ConvLSTM forecast maps", model_id),
        processing_level="model output: daily forecast maps of the hydrocast ConvLSTM",
        comment=TIME_COMMENT_MAPS, institution=institution, extent=acdd.grid_extent(sub),
        coverage=acdd.time_coverage(_day_bounds(valid)), id=_file_id(basin_id, stamp, model_id, "maps"),
        extra={"basin_id": str(basin_id), "issue_date": str(issue),
               **({"hydrocast_model_id": str(model_id)} if model_id else {})},
        attrs=global_attrs)
    ds = xr.Dataset(data, coords=coords, attrs=gattrs)
    return _set_encodings(ds)


def hindcast_dataset(basin_ids, issue_times, lead_days, simulated, observed,
                     extra_simulations: Mapping | None, outlet_lon, outlet_lat, area_km2,
                     institution: str | None = None, *, model_id: str | None = None,
                     global_attrs: Mapping | None = None, quantiles: Mapping | None = None, levels=None):
    """A hindcast: forecasts issued on each of ``issue_times`` (issue dates D; the file's
    ``forecast_reference_time`` is D + 1 day 00:00 UTC) for every basin and lead, with the
    observations at the valid days and baseline simulations (``extra_simulations``: name ->
    array, written as ``discharge_<name>``).

    The arrays given are (basin, issue time, lead) m3/s; the dataset holds them as
    (basin, lead_time, forecast_reference_time): one time series over issue dates per basin and
    lead, time last as CF's orthogonal timeSeries layout wants (select by dimension name).
    ``quantiles``: name ("simulated", "lumped_lstm", "convlstm_ensemble") -> (basin, issue time, lead, Q) m3/s at
    ``levels``, written as ``discharge_<name>_quantiles`` (basin, lead_time, quantile,
    forecast_reference_time)."""
    import xarray as xr

    n = len(basin_ids)
    issues = _days(issue_times).reshape(-1)
    refs = issues + DAY
    leads = np.asarray(lead_days, dtype="int32").reshape(-1)
    shape = (n, len(issues), len(leads))
    coords = _station_vars("basin", basin_ids, outlet_lon, outlet_lat, area_km2)
    # The series run along forecast_reference_time: it is the T axis (compliance-checker's ACDD time
    # check reads the axis-T variable as 1-D and fails on the 2-D valid time). The 2-D valid time
    # has no bounds variable: time_bnds (lead_time, forecast_reference_time, nv) would be CF-correct
    # (nv = the vertices of a 1-D interval), but compliance-checker 6.1 wants nv >= 3 for a 2-D
    # coordinate (a simplex, as for lat/lon meshes) and warns. The period of each value is given by
    # lead_time_bnds instead: [reference + (n - 1) days, reference + n days].
    coords["forecast_reference_time"] = xr.Variable("forecast_reference_time", _ns(refs),
                                                    {**_reference_time_attrs(), "axis": "T"})
    lead_coords, lead_data = _lead_vars(leads)
    coords.update(lead_coords)
    valid = leads[:, None].astype("timedelta64[D]") + refs[None, :]
    vattrs = _valid_time_attrs("valid time: end of the UTC day forecast (forecast_reference_time + lead_time)")
    del vattrs["axis"], vattrs["bounds"]
    vattrs["comment"] = HINDCAST_VALID_TIME_COMMENT
    coords["time"] = xr.Variable(("lead_time", "forecast_reference_time"), _ns(valid), vattrs)
    cattr = "time lat lon basin_id basin_area"
    data = dict(lead_data)
    series = [("simulated", simulated, "daily mean discharge forecast by the hydrocast ConvLSTM", "modelResult"),
              ("observed", observed, "observed daily mean discharge on the valid day", "physicalMeasurement")]
    for name, arr in (extra_simulations or {}).items():
        series.append((name, arr, BASELINE_LONG_NAMES.get(name, f"discharge simulated by the {name} baseline"),
                       "modelResult"))
    for name, arr, long_name, content in series:
        a = np.asarray(arr, dtype="float32")
        if a.shape != shape:
            raise ValueError(f"{name} has shape {a.shape}, expected (basin, time, lead) = {shape}")
        data[f"discharge_{name}"] = _discharge(("basin", "lead_time", "forecast_reference_time"),
                                               a.transpose(0, 2, 1), long_name, cattr, content)
    if quantiles:
        lv = np.asarray(levels, dtype="float64").reshape(-1)
        coords["quantile"] = _quantile_coord(lv)
        for name, arr in quantiles.items():
            a = np.asarray(arr, dtype="float32")
            if a.shape != (*shape, len(lv)):
                raise ValueError(f"{name} quantiles have shape {a.shape}, expected {(*shape, len(lv))}")
            who = {"simulated": "the hydrocast ConvLSTM",
                   "convlstm_ensemble": "the hydrocast ConvLSTM run once per member of the weather forecast "
                                        "ensemble (the members' distributions pooled)"}.get(
                name, f"the {name.replace('_', ' ')} baseline")
            data[f"discharge_{name}_quantiles"] = _discharge(
                ("basin", "lead_time", "quantile", "forecast_reference_time"), a.transpose(0, 2, 3, 1),
                f"quantiles of the daily mean discharge forecast by {who}", cattr, "modelResult")
    ids = [str(b) for b in basin_ids]
    span = f"{issues.min()}..{issues.max()}" if issues.size else "(none)"
    stamps = [str(d).replace("-", "") for d in (issues.min(), issues.max())] if issues.size else []
    gattrs = acdd.discovery_attrs(
        title="hydrocast hindcast: forecast and observed river discharge",
        summary=(f"Hindcast for skill evaluation: the daily mean river discharge forecast by the hydrocast ConvLSTM "
                 f"for each of {len(issues)} issue dates {span} and leads 1..{int(leads.max()) if leads.size else 0} "
                 f"days at the outlets of {n} basin(s) ({_list(ids)}), beside the observed discharge of each valid "
                 f"day and the baselines ({_list(extra_simulations or {}) or 'none'})."),
        keywords="river discharge, streamflow, hindcast, forecast verification, hydrological forecast, ConvLSTM, "
                 "persistence, climatology",
        source=_source("evaluate", "ConvLSTM hindcast, baselines and observed discharge", model_id),
        processing_level="model output beside observations: hindcast of the hydrocast ConvLSTM",
        comment=TIME_COMMENT_HINDCAST, institution=institution,
        extent=acdd.point_extent(coords["lon"].values, coords["lat"].values),
        coverage=acdd.time_coverage(_day_bounds(valid)),
        id=_file_id(*stamps, model_id, "hindcast"),
        extra={"featureType": "timeSeries", **({"hydrocast_model_id": str(model_id)} if model_id else {})},
        attrs=global_attrs)
    ds = xr.Dataset(data, coords=coords, attrs=gattrs)
    return _set_encodings(ds)


# -- writing -------------------------------------------------------------------------------------------
def _set_encodings(ds):
    """Per-variable encodings that keep the file CF-clean: int32/float64 times, char-array
    strings, NaN fill only on data (not coordinate) variables, compression of large arrays."""
    for name, var in ds.variables.items():
        enc = var.encoding
        kind = var.dtype.kind
        if kind == "M":
            days = np.asarray(var.values).astype("datetime64[ns]")
            ok = days[~np.isnat(days)]
            whole = bool(np.all(ok == ok.astype("datetime64[D]")))
            enc.setdefault("units", TIME_UNITS)
            enc.setdefault("calendar", "standard")
            if whole:
                enc["dtype"] = "int32"
                enc["_FillValue"] = INT32_FILL if np.isnat(days).any() else None
            else:
                enc["dtype"] = "float64"
                enc["_FillValue"] = np.nan if np.isnat(days).any() else None
        elif kind == "m":
            raise TypeError(f"{name}: timedelta variables are not written; use int32 days")
        elif kind in "UOS":
            enc["dtype"] = "S1"
            enc["char_dim_name"] = STRLEN_DIM if name == "basin_id" else f"{name}_strlen"
            enc["_FillValue"] = None
        elif kind == "f":
            if name in ds.coords:  # coordinates must not have missing values
                enc["_FillValue"] = None
            else:
                enc.setdefault("_FillValue", var.dtype.type(np.nan))
                if var.size > 1024:
                    enc.setdefault("zlib", True)
                    enc.setdefault("complevel", 4)
        elif kind in "iu":
            if var.dtype.itemsize > 4:
                raise TypeError(f"{name}: int64 variables are not written (CF checkers reject them)")
            enc.setdefault("_FillValue", None)
    return ds


def _encode_times(ds):
    """Replace every datetime64 variable by its CF numbers: int32 days since 1970-01-01 where all
    values are whole days (fill -2147483647 for NaT), float64 days otherwise (NaN for NaT).

    Done here rather than by xarray's time encoder, which fails on an all-NaT variable (e.g.
    ``last_observation_time`` when no basin is gauged) and defaults to int64."""
    import xarray as xr

    epoch = np.datetime64("1970-01-01T00:00:00", "ns")
    new_coords, new_data = {}, {}
    for name, var in ds.variables.items():
        if var.dtype.kind != "M":
            continue
        t = np.asarray(var.values).astype("datetime64[ns]")
        nat = np.isnat(t)
        ns = np.where(nat, 0, (t - epoch).astype("int64"))
        day_ns = 86_400 * 10**9
        enc = {k: v for k, v in var.encoding.items()
               if k not in ("units", "calendar", "dtype", "_FillValue", "missing_value", "scale_factor", "add_offset")}
        if np.all(ns % day_ns == 0):
            values = np.where(nat, INT32_FILL, ns // day_ns).astype("int32")
            enc["_FillValue"] = INT32_FILL if nat.any() else None
        else:
            values = np.where(nat, np.nan, ns / day_ns).astype("float64")
            enc["_FillValue"] = np.nan if nat.any() else None
        attrs = {**var.attrs, "units": TIME_UNITS, "calendar": "standard"}
        new = xr.Variable(var.dims, values, attrs, encoding=enc)
        (new_coords if name in ds.coords else new_data)[name] = new
    return ds.assign_coords(new_coords).assign(new_data)


def write_dataset(ds, path: str | os.PathLike) -> Path:
    """Write one of the datasets above to ``path`` atomically (NetCDF-4, CF encodings set).

    Use this rather than ``ds.to_netcdf``: times are encoded here (int32 days, see
    :func:`_encode_times`)."""
    ds = _set_encodings(_encode_times(ds.copy()))
    return atomic_write(path, lambda tmp: ds.to_netcdf(tmp, format="NETCDF4", engine="netcdf4"))


def _checker() -> str:
    exe = Path(sys.executable).with_name("compliance-checker")
    cmd = str(exe) if exe.exists() else shutil.which("compliance-checker")
    if not cmd:
        raise FileNotFoundError("compliance-checker is not installed (pip install compliance-checker)")
    return cmd


def check_cf(path, criteria: str = "normal") -> tuple[bool, str]:
    """Run ``compliance-checker -t cf:1.8 -c <criteria>`` on ``path`` (or a list of paths, checked
    in one run, passing only if all pass): (passed, text report).

    Used by the tests; the checker is a test dependency, not a runtime one."""
    paths = [str(p) for p in path] if isinstance(path, (list, tuple)) else [str(path)]
    proc = subprocess.run([_checker(), "-t", "cf:1.8", "-c", criteria, "-f", "text", *paths],
                          check=False, capture_output=True, text=True, timeout=300)
    return proc.returncode == 0, proc.stdout + proc.stderr


def check_acdd(path) -> dict:
    """Run ``compliance-checker -t acdd:1.3`` on one file: ``{"scored": points, "possible": points,
    "high": [...], "medium": [...], "low": [...], "errors": {...}}`` with the messages of each
    priority (high = ACDD "Highly Recommended", medium = "Recommended", low = "Suggested").

    Used by the tests and the evidence of issue 7; a test dependency like :func:`check_cf`."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "acdd.json"
        proc = subprocess.run([_checker(), "-t", "acdd:1.3", "-c", "strict", "-f", "json_new", "-o", str(out),
                               str(path)], check=False, capture_output=True, text=True, timeout=300)
        if not out.exists():
            raise RuntimeError(f"compliance-checker wrote no report for {path}: {proc.stdout}{proc.stderr}")
        report = next(iter(json.loads(out.read_text()).values()))["acdd:1.3"]

    def msgs(key: str) -> list[str]:
        return [f"{r['name'].rstrip(':')}: {m}" for r in report.get(key, []) if r["value"][0] != r["value"][1]
                for m in r["msgs"] or [""]]
    return {"scored": report["scored_points"], "possible": report["possible_points"],
            "high": msgs("high_priorities"), "medium": msgs("medium_priorities"), "low": msgs("low_priorities"),
            "errors": report.get("errors", {})}
