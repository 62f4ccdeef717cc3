"""Model inputs from the cube: normalisation statistics and windows of days, read as needed.

Contract (what the network sees)
================================

dynamic channels, per day (``(T, C, H, W)``, float32, no NaN)
    for every dynamic cube variable ``v`` in ``inputs``: its normalised value (NaN → 0) and a
    validity mask (1 where the cube had a value, 0 in a gap), then ``sin`` and ``cos`` of the
    day of year. Precipitation-like variables (units mm) are ``log1p``-transformed before
    standardising: daily rain is heavy-tailed and the network should see a storm of 80 mm as
    large, not as a 10-sigma outlier that dominates every gradient.
static channels (``(S, H, W)``)
    every static cube layer standardised (``upstream_area`` as log10 of km2 first), NaN → 0, and
    one ``static_valid`` mask (1 where the DEM had data).
statistics
    means and standard deviations over the **training period only** (valid cells only), stored in
    the model artefact; validation and test days never enter them.

Windows are read from the NetCDF cube with plain slicing, so memory holds one batch of windows
at a time, never the record (see benchmarks/train_memory.py for the 2-vs-8-year check).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadInputError

LOG_STATICS = ("upstream_area",)


def is_precipitation(attrs: dict) -> bool:
    return "precipitation" in str(attrs.get("standard_name", "")) or str(attrs.get("units", "")) == "mm"


@dataclass
class InputSpec:
    """Which cube variables feed the network, and how they are normalised."""

    dynamic: list[str]
    static: list[str]
    stats: dict[str, dict]  # name -> {"mean": float, "std": float, "log1p": bool, "log10": bool}

    @property
    def n_dynamic_channels(self) -> int:
        return 2 * len(self.dynamic) + 2

    @property
    def n_static_channels(self) -> int:
        return len(self.static) + 1

    def to_json(self) -> dict:
        return {"dynamic": self.dynamic, "static": self.static, "stats": self.stats}

    @classmethod
    def from_json(cls, d: dict) -> "InputSpec":
        return cls(list(d["dynamic"]), list(d["static"]), dict(d["stats"]))


def season_channels(days: np.ndarray) -> np.ndarray:
    """(T, 2) sin and cos of the day of year of ``days`` (datetime64[D])."""
    days = np.asarray(days, dtype="datetime64[D]")
    doy = (days - days.astype("datetime64[Y]")).astype(int)
    phase = 2 * np.pi * doy / 365.25
    return np.stack([np.sin(phase), np.cos(phase)], axis=1).astype("float32")


def precipitation_slot(spec: "InputSpec") -> int | None:
    """Index (in ``spec.dynamic``) of the precipitation input a precipitation forecast stands for:
    the first ``log1p``-transformed input (the cube's precipitation-like variables); None if none."""
    return next((k for k, n in enumerate(spec.dynamic) if spec.stats[n].get("log1p")), None)


class CubeReader:
    """Random access to days of a cube (either store, :func:`hydrocast.cube.open_reader`),
    normalised per an :class:`InputSpec`."""

    def __init__(self, path: Path):
        from . import cube

        self.path = Path(path)
        self.store = cube.open_reader(self.path)
        self.days = self.store.days
        self.dynamic_names = self.store.dynamic_names
        self.static_names = self.store.static_names
        self.shape = self.store.shape

    def close(self) -> None:
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def attrs(self, name: str) -> dict:
        return self.store.attrs(name)

    def index(self, day) -> int:
        d = np.datetime64(day, "D")
        i = int((d - self.days[0]).astype(int)) if len(self.days) else -1
        if not 0 <= i < len(self.days):
            raise BadInputError(f"{self.path}: day {d} is outside the cube ({self.days[0]} .. {self.days[-1]})")
        return i

    #: the cells this reader reads (:meth:`window`); None: the whole grid
    cells: tuple[slice, slice] | None = None

    def window(self, rows: slice, cols: slice) -> "CubeReader":
        """A view of this reader on the cells ``rows`` x ``cols`` of its grid (steps of 1; of this
        view's cells when it is a view itself): :meth:`raw`, :meth:`static_raw`,
        :meth:`dynamic_window`, :meth:`forecast_window` (the forecast maps cropped),
        :meth:`static_stack`, :meth:`complete_days` and ``shape`` are those of the window; only
        the window's cells are read from the store. It shares the store: close the reader, not
        the view. Normalisation statistics are the caller's (an :class:`InputSpec` of the domain)."""
        import copy

        r0, r1, _ = rows.indices(self.shape[0])
        c0, c1, _ = cols.indices(self.shape[1])
        if self.cells is not None:
            r0, r1 = r0 + self.cells[0].start, r1 + self.cells[0].start
            c0, c1 = c0 + self.cells[1].start, c1 + self.cells[1].start
        view = copy.copy(self)
        view.cells = (slice(r0, r1), slice(c0, c1))
        view.shape = (max(r1 - r0, 0), max(c1 - c0, 0))
        return view

    def raw(self, name: str, start: int, stop: int) -> np.ndarray:
        if self.cells is None:
            return self.store.read(name, start, stop)
        return self.store.read(name, start, stop, *self.cells)

    def static_raw(self, name: str) -> np.ndarray:
        if self.cells is None:
            return self.store.read_static(name)
        return self.store.read_static(name, *self.cells)

    def crop(self, maps: np.ndarray) -> np.ndarray:
        """Maps (..., H, W) of the whole grid cut to this reader's cells."""
        return maps if self.cells is None else maps[..., self.cells[0], self.cells[1]]

    # -- normalisation --------------------------------------------------------------------------
    def compute_stats(self, dynamic: list[str], static: list[str], period: tuple) -> InputSpec:
        """Mean and std of every input over the training ``period`` only (valid cells only)."""
        missing = ([n for n in dynamic if n not in self.dynamic_names]
                   + [n for n in static if n not in self.static_names])
        if missing:
            raise BadInputError(f"{self.path}: the cube has no variable {missing[0]!r} "
                                f"(it has {', '.join(self.dynamic_names + self.static_names)}); check [train] inputs "
                                "or run `hydrocast ingest`")
        a, b = self.index(period[0]), self.index(period[1]) + 1
        stats = {}
        for name in dynamic:
            log = is_precipitation(self.attrs(name))
            s = s2 = n = 0.0
            for c in range(a, b, 64):  # chunked: flat memory however long the period
                x = self.raw(name, c, min(c + 64, b)).astype("float64")
                x = x[np.isfinite(x)]
                if log:
                    x = np.log1p(np.maximum(x, 0))
                s, s2, n = s + x.sum(), s2 + (x * x).sum(), n + x.size
            if n == 0:
                raise BadInputError(f"{self.path}: {name} has no valid value in the training period "
                                    f"{period[0]}..{period[1]}")
            mean = s / n
            std = float(np.sqrt(max(s2 / n - mean * mean, 0.0))) or 1.0
            stats[name] = {"mean": float(mean), "std": std, "log1p": log, "log10": False}
        for name in static:
            x = self.static_raw(name).astype("float64")
            log10 = name in LOG_STATICS
            x = x[np.isfinite(x)]
            if log10:
                x = np.log10(np.maximum(x, 1e-3))
            if x.size == 0:
                raise BadInputError(f"{self.path}: static layer {name} is all missing")
            stats[name] = {"mean": float(x.mean()), "std": float(x.std()) or 1.0, "log1p": False, "log10": log10}
        return InputSpec(list(dynamic), list(static), stats)

    @staticmethod
    def normalise(x: np.ndarray, st: dict) -> tuple[np.ndarray, np.ndarray]:
        valid = np.isfinite(x)
        x = np.where(valid, x, 0.0)
        if st.get("log1p"):
            x = np.log1p(np.maximum(x, 0))
        if st.get("log10"):
            x = np.log10(np.maximum(x, 1e-3))
        x = (x - st["mean"]) / st["std"]
        return np.where(valid, x, 0.0).astype("float32"), valid.astype("float32")

    def day_of(self, i):
        """The date of cube day index ``i`` (also past the cube's ends)."""
        return self.days[0] + np.asarray(i).astype("timedelta64[D]")

    def dynamic_window(self, spec: InputSpec, start: int, stop: int, pad: bool = False) -> np.ndarray:
        """Normalised dynamic channels of days ``start`` ≤ i < ``stop``: ``(T, C, H, W)``. With
        ``pad``, days past the cube's end are padding (values and validity 0, their season)."""
        if start < 0 or (stop > len(self.days) and not pad) or start >= len(self.days):
            raise BadInputError(f"{self.path}: days {start}..{stop} are outside the cube")
        T, stop_c = stop - start, min(stop, len(self.days))
        out = np.zeros((T, spec.n_dynamic_channels, *self.shape), dtype="float32")
        for k, name in enumerate(spec.dynamic):
            out[:stop_c - start, 2 * k], out[:stop_c - start, 2 * k + 1] = self.normalise(
                self.raw(name, start, stop_c), spec.stats[name])
        out[:, -2:] = season_channels(self.day_of(np.arange(start, stop)))[:, :, None, None]
        return out

    def forecast_window(self, spec: InputSpec, forecasts, name: str | None, start: int, stop: int, lead: int,
                        stand_in: np.random.Generator | None = None, stand_in_errors: list | None = None
                        ) -> np.ndarray:
        """The forecast stream ``(T, L, C, H, W)`` of issue days start..stop-1 (see
        :class:`hydrocast.model.HydroConvLSTM`): for issue day ``t`` and lead ``l`` the dynamic
        channels of day ``t + l`` as a forecast knows them: the forecast precipitation (store
        ``name`` of ``forecasts``, a :class:`hydrocast.forecasts.ForecastReader`; mm) normalised
        like the cube's precipitation (:func:`precipitation_slot`) and its validity, the day's
        season, zeros for every other variable (not forecast). No forecast = validity 0.

        ``stand_in`` (training only): where the store has no forecast, the observed precipitation
        of the lead day with noise stands in (a field-wide lognormal factor, sigma 0.25 per lead
        day, times a per-cell lognormal factor, sigma 0.3), so the rollout learns to use a forecast
        that is informative but wrong, also on days before the forecast archive begins.
        ``stand_in_errors`` (per lead, :class:`hydrocast.standin.LeadError`): the stand-in is
        instead degraded as the archive's forecasts are (:func:`hydrocast.standin.degrade`: smoothed,
        displaced, scaled) for the leads calibrated on the archive."""
        T = stop - start
        out = np.zeros((T, lead, spec.n_dynamic_channels, *self.shape), dtype="float32")
        issue = self.day_of(np.arange(start, stop))
        for l in range(lead):  # noqa: E741
            out[:, l, -2:] = season_channels(issue + np.timedelta64(l + 1, "D"))[:, :, None, None]
        slot = precipitation_slot(spec)
        if slot is None:
            return out
        if forecasts is not None and name is not None and name in forecasts.names:
            mm = np.asarray(forecasts.read(name, issue, lead, cells=self.cells), dtype="float32")  # this window's cells
        else:
            mm = np.full((T, lead, *self.shape), np.nan, dtype="float32")
        if stand_in is not None:
            var = spec.dynamic[slot]
            for l in range(lead):  # noqa: E741
                have = np.isfinite(mm[:, l]).reshape(T, -1).any(axis=1)
                a, b = start + l + 1, min(stop + l + 1, len(self.days))
                if b <= a or have.all():
                    continue
                obs = np.full((T, *self.shape), np.nan, dtype="float32")
                obs[: b - a] = self.raw(var, a, b)
                err = stand_in_errors[l] if stand_in_errors is not None else None
                if err is not None and err.source == "archive":
                    from .standin import degrade

                    for k in np.nonzero(~have)[0]:
                        mm[k, l] = degrade(obs[k], err, stand_in)
                    continue
                factor = np.exp(stand_in.normal(0.0, 0.25 * (l + 1), T))[:, None, None] * \
                    np.exp(stand_in.normal(0.0, 0.3, obs.shape))
                mm[~have, l] = (obs * factor)[~have]
        norm, valid = self.normalise(mm, spec.stats[spec.dynamic[slot]])
        out[:, :, 2 * slot], out[:, :, 2 * slot + 1] = norm, valid
        return out

    def static_stack(self, spec: InputSpec) -> np.ndarray:
        """Normalised static channels plus the DEM validity mask: ``(S, H, W)``."""
        out = np.zeros((spec.n_static_channels, *self.shape), dtype="float32")
        valid_all = np.ones(self.shape, dtype=bool)
        for k, name in enumerate(spec.static):
            x = self.static_raw(name)
            out[k], valid = self.normalise(x, spec.stats[name])
            valid_all &= valid.astype(bool)
        out[-1] = valid_all
        return out

    def complete_days(self, names: list[str], start: int, stop: int) -> np.ndarray:
        """For each day, True when every variable in ``names`` has at least one valid cell."""
        ok = np.ones(stop - start, dtype=bool)
        for name in names:
            x = self.raw(name, start, stop)
            ok &= np.isfinite(x).reshape(len(x), -1).any(axis=1)
        return ok
