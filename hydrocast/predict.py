"""``hydrocast predict``: hydrographs and forecast maps for one issue date, as CF NetCDF.

The :class:`Forecaster` (artefact + cube, checked against each other) is shared with
:mod:`hydrocast.evaluate`. Output files are named
``<basin>_<YYYYMMDD>_<model id>_hydrograph.nc`` / ``..._maps.nc`` (model id = the first 8 hex
digits of the weights' SHA-256), so a cron job never overwrites a forecast of another day, basin
or model; a rerun of the same forecast replaces it atomically with the same content.

With a model that forecasts a distribution, the hydrograph file also carries its quantiles and
median and, per flood threshold (:meth:`Forecaster.thresholds`), the probability of exceeding
it at every lead (``hydrocast.probmetrics.quantile_cdf``); ``--json`` and the log show the same,
and ``--plot`` draws a fan chart. A threshold exceeded is data, not an error: the exit code stays 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .config import Config
from .errors import BadInputError, BusyError, GridMismatchError, MissingInputError, UnknownBasinError

#: an issue date needs its precipitation, and at most this fraction of the warm-up days missing
MAX_MISSING_WARMUP = 0.1


@dataclass
class BasinSet:
    ids: list[str]
    channels: np.ndarray  # (N, 2, H, W)
    info: list[dict]  # id, name, area_km2, outlet_lon, outlet_lat, gauged


class Forecaster:
    """A trained model and the cube it reads, checked against each other."""

    def __init__(self, cfg: Config):
        import torch

        from . import artefact
        from .cube import read_index
        from .grid import GridSpec
        from .model import HydroConvLSTM, LumpedLSTM
        from .samples import CubeReader, InputSpec

        self.cfg = cfg
        self.model_dir = cfg.resolve(cfg.train.model_dir)
        tensors, meta = artefact.load(self.model_dir)
        self.meta = meta
        self.model_id = meta["weights_sha256"][:8]
        try:
            self.net = HydroConvLSTM(meta["hparams"])
            self.net.load_state_dict(_weights(self.net, tensors, "net."))
            self.lumped = LumpedLSTM(**meta["lumped_hparams"])
            self.lumped.load_state_dict(_weights(self.lumped, tensors, "lumped."))
            self.spec = InputSpec.from_json(meta["inputs"])
            self.grid = GridSpec.from_dict(meta["grid"])
            self.lead = int(meta["lead_days"])
            self.warmup = int(meta["warmup_days"])
            self.spin = int(meta.get("spin_up_days", self.warmup))
            self.ungauged_obs_leads = int(cfg.train.ungauged_observation_leads)
            self.chunk_days = int(cfg.train.inference_chunk_days)
            self.observed = bool(self.net.hparams["observed"])
            self.forecast_name = (meta.get("forecast") or {}).get("source")
            self.q_mu = float(meta["discharge_normalisation"]["mean"])
            self.q_sd = float(meta["discharge_normalisation"]["std"])
            self.gauged = {b["id"]: (i, b) for i, b in enumerate(meta["basins"])}
            self.gauged_channels = tensors["basin_channels"].numpy()
            self.levels = (np.asarray(meta["distribution"]["levels"], dtype="float64")
                           if self.net.hparams.get("quantiles") else None)
            from .thresholds import from_records

            self.model_thresholds = from_records(meta.get("thresholds", []), f"{self.model_dir}/model.json")
            want = (len(self.gauged), 2, *self.grid.shape)
            if tuple(self.gauged_channels.shape) != want:
                raise ValueError(f"basin_channels has shape {tuple(self.gauged_channels.shape)}, expected {want}")
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise BadInputError(f"{self.model_dir}: incompatible model artefact ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200]})") from None
        self.net.eval()
        self.lumped.eval()
        cube_path = cfg.resolve(cfg.cube.path)
        if not cube_path.exists():
            raise MissingInputError(f"{cube_path}: no cube; run `hydrocast ingest` first")
        cube_grid = read_index(cube_path).grid
        if not cube_grid.same_as(self.grid):
            raise GridMismatchError(f"{cube_path}: the cube's grid ({cube_grid.describe()}) is not the grid the model "
                                    f"was trained on ({self.grid.describe()})")
        self.reader = CubeReader(cube_path)
        missing = [n for n in self.spec.dynamic if n not in self.reader.dynamic_names] + \
                  [n for n in self.spec.static if n not in self.reader.static_names]
        if missing:
            self.reader.close()
            raise BadInputError(f"{cube_path}: the cube has no variable {missing[0]!r} that the model needs")
        self.static = torch.from_numpy(self.reader.static_stack(self.spec))
        self.forecasts = None
        self.ensemble_name = None
        try:
            if self.forecast_name:
                from .forecasts import ensemble_source, open_forecasts

                self.forecasts = open_forecasts(cfg)  # None: the lead days run without a forecast (masked)
                self.ensemble_name = ensemble_source(cfg, self.forecasts, self.forecast_name)
            fitted = (self.meta.get("distribution") or {}).get("ensemble") or {}
            # the pooled distribution's recalibration (train.calibrate_ensemble), for the source it was fitted on
            self.ensemble_scale = fitted.get("scale") if fitted.get("source") == self.ensemble_name else None
            self.obs = self._observations() if self.observed else None
        except BaseException:
            self.close()
            raise
        self.precip_vars = [n for n in self.spec.dynamic if self.spec.stats[n].get("log1p")] or self.spec.dynamic[:1]

    def _observations(self) -> np.ndarray | None:
        """The normalised observed discharge (cube days, G) at the model's gauges from ``[discharge]``
        (NaN where none; None without a discharge file): the observations at issue time."""
        from .domain import discharge_table

        if not self.cfg.discharge.path or not self.cfg.resolve(self.cfg.discharge.path).exists():
            return None
        from .windows import DischargeNorm

        ids = list(self.gauged)
        q = discharge_table(self.cfg, self.reader.days, ids).to_numpy("float64")
        area = np.array([self.gauged[b][1]["area_km2"] for b in ids], dtype="float64")
        return DischargeNorm(self.q_mu, self.q_sd, np.ones(len(ids))).normalise(q, area)

    def close(self) -> None:
        self.reader.close()
        if self.forecasts is not None:
            self.forecasts.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- basins ----------------------------------------------------------------------------------
    def basin_set(self, ids: list[str], basins_path: Path | None = None) -> BasinSet:
        """The requested basins: ``["all"]`` = every basin the model was trained on, or of
        ``basins_path`` (polygons/outlets of basins the model may never have seen)."""
        from .ids import check_basin_id

        if ids != ["all"]:
            ids = [check_basin_id(b, "--basin", error=UnknownBasinError) for b in ids]
        if basins_path is not None:
            from .domain import build_domain

            dom = build_domain(self.cfg, self.grid, Path(basins_path), dist_scale_km=float(self.meta["dist_scale_km"]))
            basins, channels = dom.basins, dom.channels
            known = {b.id: i for i, b in enumerate(basins)}
            wanted = list(known) if ids == ["all"] else ids
            unknown = [b for b in wanted if b not in known]
            if unknown:
                raise UnknownBasinError(f"{basins_path}: no basin with id {unknown[0]!r} "
                                        f"(ids: {', '.join(sorted(known))})")
            idx = [known[b] for b in wanted]
            info = []
            for i in idx:
                b = basins[i]
                info.append({"id": b.id, "name": b.name, "area_km2": float(b.area_km2),
                             "outlet_lon": b.outlet_lonlat[0] if b.outlet_lonlat else np.nan,
                             "outlet_lat": b.outlet_lonlat[1] if b.outlet_lonlat else np.nan,
                             "gauged": b.id in self.gauged})
            return BasinSet(wanted, channels[idx], info)
        wanted = list(self.gauged) if ids == ["all"] else ids
        unknown = [b for b in wanted if b not in self.gauged]
        if unknown:
            raise UnknownBasinError(f"{self.model_dir}: the model knows no basin {unknown[0]!r} "
                                    f"(it knows {', '.join(self.gauged)}; use --basins PATH for other basins)")
        info = []
        for b in wanted:
            m = self.gauged[b][1]
            info.append({"id": b, "name": m.get("name") or b, "area_km2": float(m["area_km2"]),
                         "outlet_lon": m.get("outlet_lon") if m.get("outlet_lon") is not None else np.nan,
                         "outlet_lat": m.get("outlet_lat") if m.get("outlet_lat") is not None else np.nan,
                         "gauged": True})
        return BasinSet(wanted, self.gauged_channels[[self.gauged[b][0] for b in wanted]], info)

    # -- issue dates -----------------------------------------------------------------------------
    def supported(self) -> np.ndarray:
        """For every cube day: can a forecast be issued that day? (its precipitation present,
        at most 10 % of the warm-up days without precipitation)."""
        n = len(self.reader.days)
        have = self.reader.complete_days(self.precip_vars, 0, n)
        ok = np.zeros(n, dtype=bool)
        csum = np.concatenate([[0], np.cumsum(~have)])
        for i in range(self.warmup, n):
            missing = csum[i + 1] - csum[i + 1 - self.warmup]
            ok[i] = have[i] and missing <= MAX_MISSING_WARMUP * self.warmup
        return ok

    def issue_index(self, issue_date: str | None) -> int:
        days = self.reader.days
        ok = self.supported()
        if issue_date is None:
            if not ok.any():
                raise BusyError(f"{self.reader.path}: no day in the cube can support a forecast yet "
                                f"(needs {self.warmup} days of precipitation)")
            return int(np.nonzero(ok)[0][-1])
        try:
            d = np.datetime64(issue_date, "D")
        except ValueError:
            raise BadInputError(f"--issue-date {issue_date!r} is not a date YYYY-MM-DD") from None
        if len(days) == 0 or d < days[0] + self.warmup or d > days[-1]:
            raise BusyError(f"{self.reader.path}: cannot issue a forecast on {d}: the cube holds "
                            f"{days[0]} .. {days[-1]} and the model needs the {self.warmup} days before the issue date")
        i = int((d - days[0]).astype(int))
        if not ok[i]:
            have = self.reader.complete_days(self.precip_vars, i - self.warmup, i + 1)
            gaps = [str(days[i - self.warmup + k]) for k in np.nonzero(~have)[0]]
            raise BusyError(f"{self.reader.path}: cannot issue a forecast on {d}: precipitation missing on "
                            f"{len(gaps)} of the {self.warmup + 1} days it needs ({', '.join(gaps[:5])}"
                            f"{' ...' if len(gaps) > 5 else ''})")
        return i

    # -- thresholds ------------------------------------------------------------------------------
    def thresholds(self, basins: BasinSet, log: Callable[[str], None] = lambda s: None) -> dict[str, list]:
        """Per basin, its flood thresholds (:class:`hydrocast.thresholds.Threshold`, by discharge):
        the rows of ``[thresholds] path`` (your own warning levels) for the basins it lists, else
        the model's (fitted at training time), else, for a basin the model never saw, return-period
        flows fitted to the model's own lead-1 hindcast of the training and validation periods
        (as GloFAS does from its reanalysis). That hindcast (a run over those years) is done once
        per basin: its thresholds are kept in ``<cube stem>.state/<model id>.thresholds.json``
        beside the model state, keyed by a digest of the basin's grid cells and the
        ``[thresholds]`` settings (another outline or setting: computed again; a missing or
        corrupt file: rebuilt, never an error)."""
        from .thresholds import fit_basin_thresholds, from_records, read_thresholds, thresholds_for, to_records

        th = self.cfg.thresholds
        user = read_thresholds(self.cfg.resolve(th.path)) if th.path else []
        out = {}
        for b in basins.ids:
            rows = thresholds_for(user, b) or (thresholds_for(self.model_thresholds, b)
                                               if b in self.gauged else [])
            out[b] = rows
        # the model's own basins got theirs at training time (none: too short a record and hindcast);
        # a basin it never saw gets them from the model's hindcast, once (then from the cache file)
        new = [k for k, b in enumerate(basins.ids) if not out[b] and b not in self.gauged]
        span = self._fit_span()
        if not new or span is None:
            return out
        cache_path, cache = self._threshold_cache()
        keys = {basins.ids[k]: _threshold_key(basins.channels[k], th, span) for k in new}
        need = []
        for k in new:
            hit = cache.get(basins.ids[k])
            if isinstance(hit, dict) and hit.get("key") == keys[basins.ids[k]]:
                out[basins.ids[k]] = thresholds_for(from_records(hit.get("rows"), str(cache_path)), basins.ids[k])
            else:
                need.append(k)
        if need:
            a, b = span
            sub = BasinSet([basins.ids[k] for k in need], basins.channels[need], [basins.info[k] for k in need])

            def simulated():
                sim = np.full((b - a + 1, len(need)), np.nan)
                sim[1:] = self.hindcast(self.net, sub, a, b - 1).q[:, :, 0]
                return sim

            rows, notes = fit_basin_thresholds(sub.ids, self.reader.days[a:b + 1], None, simulated, th.return_periods,
                                               th.min_years, th.year_start_month)
            for bid in sub.ids:
                out[bid] = thresholds_for(rows, bid)
                log(f"{bid}: flood thresholds from the model's hindcast: {notes[bid]}")
                cache[bid] = {"key": keys[bid], "rows": to_records(out[bid]), "note": notes[bid]}
            self._save_threshold_cache(cache_path, cache)
        return out

    def _threshold_cache(self) -> tuple[Path, dict]:
        """(path, content) of the ungauged basins' thresholds kept beside the model state; {} where
        the file is missing or unreadable (then rebuilt)."""
        import json

        from .state import state_path

        path = state_path(self.reader.path, self.model_id).with_name(f"{self.model_id}.thresholds.json")
        try:
            content = json.loads(path.read_text())
        except (OSError, ValueError):
            return path, {}
        return path, content if isinstance(content, dict) else {}

    def _save_threshold_cache(self, path: Path, cache: dict) -> None:
        import json

        from .fsio import atomic_write_text, held_lock

        with held_lock(path, f"{path}: another hydrocast run is writing it (lock {{lock}}); retry later", timeout=30):
            atomic_write_text(path, json.dumps(cache, indent=1, sort_keys=True))

    def _fit_span(self) -> tuple[int, int] | None:
        """Cube indices of the model's training + validation span (None where the cube lacks it)."""
        tr = (self.meta.get("config") or {}).get("train") or {}
        ends = [d for k in ("train_period", "validation_period") for d in (tr.get(k) or [])]
        if not ends:
            return None
        days = self.reader.days
        a = max(np.datetime64(min(ends), "D"), days[0])
        b = min(np.datetime64(max(ends), "D"), days[-1])
        if b - a < 365:
            return None
        return int((a - days[0]).astype(int)), int((b - days[0]).astype(int))

    # -- running the network ---------------------------------------------------------------------
    def inputs(self, basins: BasinSet):
        """The :class:`~hydrocast.forward.ModelInputs` for reading out ``basins``: the model's gauges
        (its training basins) give the observations; a read-out basin is a gauge by its id."""
        from .forward import ModelInputs

        area = np.array([i["area_km2"] for i in basins.info])
        index = np.array([self.gauged[b][0] if b in self.gauged and basins.info[k]["gauged"] else -1
                          for k, b in enumerate(basins.ids)])
        return ModelInputs(self.reader, self.spec, self.static, basins.channels, area, self.q_mu, self.q_sd, self.lead,
                           obs=self.obs, obs_basins=self.gauged_channels[:, 0] if self.observed else None,
                           obs_index=index, forecasts=self.forecasts, forecast_name=self.forecast_name,
                           ensemble_name=self.ensemble_name, obs_days=int(self.net.hparams.get("obs_days", 1)))

    def windows(self, basins: BasinSet) -> list | None:
        """The windows (:func:`hydrocast.tiles.plan_windows`) that ``basins`` are run in with
        ``[train] tile_cells`` > 0 (each basin in one window, with its halo); None: the whole grid."""
        tr = self.cfg.train
        if tr.tile_cells <= 0 or not basins.ids:
            return None
        from .tiles import plan_windows

        return plan_windows(basins.channels[:, 0], tr.tile_cells, tr.tile_halo_cells, basins.ids,
                            where=self.cfg.where("train", "tile_cells"))

    def hindcast(self, net, basins: BasinSet, a: int, b: int, with_obs: bool = True, with_forecast: bool = True,
                 inp=None):
        """``net``'s :class:`~hydrocast.forward.PeriodRun` of issue days ``a..b`` spun up over
        ``spin_up_days``, ``[train] inference_chunk_days`` at a time, window by window with
        ``tile_cells`` (then discharge only, no maps)."""
        from .forward import run_plan

        inp = self.inputs(basins) if inp is None else inp
        return run_plan(net, inp, self.windows(basins), a, b, self.spin, with_obs=with_obs,
                        with_forecast=with_forecast, chunk_days=self.chunk_days)

    def members(self, basins: BasinSet, a: int, b: int, errors=None):
        """The ConvLSTM's run per ensemble member (:func:`hydrocast.forward.run_members`) of issue
        days ``a..b``, chunked and tiled as :meth:`hindcast` (discharge only when tiled); None
        without members in the period. ``errors``: the deterministic run's issue-day errors
        (``extra["issue_error"]``), with which every member is updated."""
        from .forward import members_tiled

        return members_tiled(self.net, self.inputs(basins), self.windows(basins), a, b, self.spin,
                             chunk_days=self.chunk_days, errors=errors)

    def run(self, basins: BasinSet, a: int, b: int, lumped: bool = False, with_obs: bool = True,
            with_forecast: bool = True, blend: bool = True) -> dict:
        """Forecasts for issue days ``a..b`` (cube indices, inclusive) through the one forward path
        (:mod:`hydrocast.forward`, :meth:`hindcast`), spun up over the model's ``spin_up_days``.
        Returns ``{"convlstm": PeriodRun, "lumped_lstm": PeriodRun}`` (the latter with ``lumped=True``).
        ``blend=False``: without the models' blend with persistence (the ablation of evaluate)."""
        if not blend:
            from .forward import without_blend

            with without_blend(self.net, self.lumped):
                return self.run(basins, a, b, lumped, with_obs, with_forecast)
        from .forward import blend_ungauged

        inp = self.inputs(basins)
        nets = {"convlstm": self.net, **({"lumped_lstm": self.lumped} if lumped else {})}
        runs = {name: self.hindcast(net, basins, a, b, with_obs, with_forecast, inp=inp) for name, net in nets.items()}
        rows = self.ungauged(inp) if with_obs else np.zeros(0, dtype=int)
        for name, net in nets.items() if len(rows) else ():
            silent = self.hindcast(net, basins, a, b, False, with_forecast, inp=inp)
            blend_ungauged(runs[name], silent, rows, self.ungauged_obs_leads)
        return runs

    def ungauged(self, inp) -> np.ndarray:
        """Rows of ``inp``'s basins forecast at leads beyond ``[train] ungauged_observation_leads``
        as if every gauge were silent (:func:`hydrocast.forward.blend_ungauged`): the basins
        without a gauge of their own, where the model reads observations and has such leads."""
        from .forward import ungauged_rows

        if self.ungauged_obs_leads >= self.lead:
            return np.zeros(0, dtype=int)
        return ungauged_rows(inp)

    def warm_state(self, i: int, log: Callable[[str], None] = lambda s: None, window=None
                   ) -> tuple[object, int, str]:
        """The ConvLSTM's recurrent state before issue day ``i``, continued from the saved state
        (:mod:`hydrocast.state`) where it is still valid, else spun up over ``spin_up_days``
        (``[train] inference_chunk_days`` at a time). ``window`` (:class:`hydrocast.tiles.Window`):
        the state of the model run on that window of the grid only, kept in a file of its own.

        The state saved is the one after the last day ``c < i`` on which every input has data
        (the inputs that arrive late, such as ESA CCI, then never leave stale values in it), and
        ``c < i - 1`` for a model that updates its forecasts with the issue day's error (the
        forecast issued on day ``i - 1``, whose error it reads, is then run again); it is valid
        while the cube's provenance of every day it consumed and the observations it read are
        unchanged. Returns ``(state, first day still to run, what was done)``."""
        import hashlib

        from .forward import advance, update_gain
        from .state import SavedState, check_state, day_digests, inputs_status, load_state, save_state, state_path

        path = state_path(self.reader.path, self.model_id, window)
        names = list(self.spec.dynamic)
        saved, why = load_state(path, self.model_id)

        def obs_digest(a: int, b: int) -> str:
            if self.obs is None:
                return ""
            return hashlib.sha1(np.ascontiguousarray(self.obs[a:b + 1]).tobytes()).hexdigest()

        state, start, note = None, max(0, i - self.spin), f"spun up over the {i - max(0, i - self.spin)} days before"
        back = 2 if update_gain(self.net) is not None else 1  # day i itself runs with the forecast
        if saved is not None:
            ok, why = check_state(saved, self.reader, names)
            a, d = (self.reader.index(saved.start_day), self.reader.index(saved.day)) if ok else (0, 0)
            if ok and saved.extra.get("obs") != obs_digest(a, d):
                ok, why = False, "the observed discharge it read has changed"
            if ok and not (d <= i - back and i - d <= self.spin):
                ok, why = False, (f"it is of {saved.day}, not {back} day(s) before the issue day or more and "
                                  f"within {self.spin} days")
            if ok:
                depth = len([k for k in saved.tensors if k.startswith("h")])
                state = [(saved.tensors[f"h{k}"], saved.tensors[f"c{k}"]) for k in range(depth)]
                start, note = d + 1, f"continued from the saved state of {saved.day}"
        if state is None and why:
            log(f"model state {path}: spinning up ({why})")
        status = inputs_status(self.reader, names, i)
        last = [s["last_day"] for s in status.values()]
        if all(last):
            c = min(min(self.reader.index(x) for x in last), i - back)
            if c >= start:
                inp = self.inputs(BasinSet([], np.zeros((0, 2, *self.grid.shape), "float32"), []))
                if window is not None:
                    inp = inp.window(window.rows, window.cols, [])
                new = advance(self.net, inp, start, c + 1, state, chunk_days=self.chunk_days)
                s0 = start if state is None else self.reader.index(saved.start_day)
                tensors = {}
                for k, (h, cc) in enumerate(new):
                    tensors[f"h{k}"], tensors[f"c{k}"] = h.detach().clone(), cc.detach().clone()
                try:
                    save_state(path, SavedState(self.model_id, self.reader.days[s0], self.reader.days[c], tensors,
                                                day_digests(self.reader, names, s0, c + 1),
                                                {"obs": obs_digest(s0, c)}))
                except BusyError:
                    log(f"model state {path}: not saved (another run holds its lock)")
                state, start = new, c + 1
        return state, start, note

    def map_physical(self, maps_norm: np.ndarray) -> tuple[np.ndarray, dict]:
        """Forecast soil-moisture maps back to physical units."""
        mo = self.meta["map_outputs"][0]
        st = self.spec.stats[mo["name"]]
        return (st["mean"] + st["std"] * maps_norm).astype("float32"), mo


@dataclass
class PredictResult:
    issue_date: str
    files: list[str] = field(default_factory=list)
    basins: list[dict] = field(default_factory=list)

    model_id: str | None = None
    inputs: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"issue_date": self.issue_date, "model_id": self.model_id, "files": self.files, "basins": self.basins,
                "inputs": self.inputs}


def _forecast_note(fc: Forecaster, day, n_members: int | None = None) -> str:
    if not fc.forecast_name:
        return "not used by this model"
    if fc.forecasts is None or not fc.forecasts.available(fc.forecast_name, np.array([day]))[0]:
        note = (f"none for issue date {day}: the lead days ran without a weather forecast "
                f"({fc.forecast_name} masked), as the model was trained to")
    else:
        ref = fc.forecasts.reference_time(np.array([day]))[0]
        note = f"{fc.forecast_name}: the run of {str(ref).replace('T', ' ')} UTC"
    if n_members is not None:
        note += (f"; ensemble: the {n_members} members of {fc.ensemble_name} (one run each: "
                 "discharge_members, the quantiles pool their distributions, the maps' _median and _spread)")
    elif fc.ensemble_name:
        note += f"; no ensemble run of {fc.ensemble_name} for issue date {day}"
    return note


def _member_maps(name: str, values: np.ndarray, attrs: dict) -> dict:
    """The ensemble median and spread (standard deviation) over the members (R, L, h, w) of one map."""
    base = {k: v for k, v in attrs.items() if k in ("units", "standard_name")}
    method = attrs.get("cell_methods", "")
    what = attrs.get("long_name", name.replace("_", " "))
    with np.errstate(invalid="ignore"):
        median = np.median(values, axis=0)
        spread = np.std(values, axis=0, ddof=1) if len(values) > 1 else np.zeros_like(median)
    return {f"{name}_median": (median, {**base, "long_name": f"{what}: median of the ensemble members' runs",
                                        "cell_methods": f"{method} realization: median".strip()}),
            f"{name}_spread": (spread, {**base, "long_name": f"{what}: standard deviation over the ensemble "
                                        "members' runs", "cell_methods": f"{method} realization: standard_deviation"
                                        .strip()})}


def _obs_note(fc: Forecaster, info: dict, last_t, day) -> str:
    if not fc.observed:
        return "not used by this model"
    if not info["gauged"]:
        k = fc.ungauged_obs_leads
        if k >= fc.lead:
            return "ungauged basin: the observations of the model's gauges entered as maps"
        return (f"ungauged basin: the observations of the model's gauges entered as maps for lead day(s) 1..{k}; "
                f"leads {k + 1}..{fc.lead} as if every gauge were silent ([train] ungauged_observation_leads = {k})"
                if k > 0 else "ungauged basin: forecast as if every gauge were silent "
                "([train] ungauged_observation_leads = 0)")
    if last_t is None or np.datetime64(last_t, "D") != np.datetime64(day, "D"):
        return (f"none on the issue day {day} (last {last_t or 'never'}): the gauge counted as silent")
    return f"observed discharge of {day} entered the forecast"


def _update_note(fc: Forecaster, error_m3s: float, day, blend: np.ndarray | None = None) -> str:
    """What the updating with the issue day's error, and the blend with persistence (``blend``:
    the basin's weights per lead, 0 where not blended), did to one basin's forecast (the file says)."""
    from .forward import persistence_weight, update_gain

    gain = update_gain(fc.net)
    if gain is None:
        note = "none: this model does not update its forecasts ([train] update_forecasts, or gains fitted at 0)"
    elif error_m3s == 0.0:
        note = ("none: no observation of the issue day, no forecast of the day before, or a basin without a "
                "gauge of its own")
    else:
        note = (f"the observation of {day} was {error_m3s:+.3f} m3/s off the lead-1 forecast issued the day "
                f"before; lead days 1..{len(gain)} moved by " + " / ".join(f"{g:.2f}" for g in gain) + " of it")
    if persistence_weight(fc.net) is None:
        return note
    if blend is None or not np.any(blend > 0):
        return note + "; no blend with persistence (no observation of the issue day, a basin without a gauge " \
                      "of its own, or its weights fitted at 0)"
    return note + (f"; then blended with the observation of {day} (persistence), its weight at lead days "
                   f"1..{len(blend)} " + " / ".join(f"{w:.2f}" for w in blend))


def observed_discharge(cfg: Config):
    """The ``[discharge] path`` observations (a DataFrame), or None where there are none."""
    if not cfg.discharge.path or not cfg.resolve(cfg.discharge.path).exists():
        return None
    from .observations import read_discharge

    return read_discharge(cfg.resolve(cfg.discharge.path), None, fmt=cfg.discharge.format)


def last_observation(df, fc: Forecaster, basin_id: str, upto: int) -> tuple[float, str | None, tuple]:
    """(value, date, (recent times, recent values)) of the basin's observed discharge up to the
    issue date; NaN/None where there is none (ungauged basins)."""
    if df is None or basin_id not in df.columns:
        return float("nan"), None, ([], [])
    s = df[basin_id].loc[: str(fc.reader.days[upto])].dropna()
    if s.empty:
        return float("nan"), None, ([], [])
    recent = s.iloc[-90:]
    return float(s.iloc[-1]), str(s.index[-1].date()), (recent.index.values, recent.to_numpy())


def predict(cfg: Config, basin_ids: list[str], out_dir: Path, issue_date: str | None = None,
            basins_path: Path | None = None, plot: bool = False,
            log: Callable[[str], None] = lambda s: None) -> PredictResult:
    """Run ``hydrocast predict``; see the module docstring."""
    with Forecaster(cfg) as fc:
        return _predict(cfg, fc, basin_ids, out_dir, issue_date, basins_path, plot, log)


def _predict(cfg, fc, basin_ids, out_dir, issue_date, basins_path, plot, log) -> PredictResult:
    from .fsio import prepare_out_dir
    from .ids import id_path
    from .netcdf import forecast_map_dataset, hydrograph_dataset, write_dataset
    from .state import inputs_status, status_attribute

    basins = fc.basin_set(basin_ids, basins_path)
    i = fc.issue_index(issue_date)
    day = fc.reader.days[i]
    boxes = [_map_box(basins.channels[n, 0], info["id"]) for n, info in enumerate(basins.info)]
    fr = _forecast_windows(fc, basins, i, boxes, log)
    status = inputs_status(fc.reader, list(fc.spec.dynamic), i)
    if fc.forecast_name:
        have_fc = fc.forecasts is not None and bool(fc.forecasts.available(fc.forecast_name, np.array([day]))[0])
        status[fc.forecast_name] = {"last_day": str(day) if have_fc else None, "days_behind": 0 if have_fc else None,
                                    "missing_on_issue_day": not have_fc}
    provenance = {"hydrocast_inputs_status": status_attribute(status),
                  "hydrocast_weather_forecast": _forecast_note(fc, day, fr.n_members)}
    q, qq, members, r = fr.q, fr.qq, fr.members, fr.n_members  # (N, L), (N, L, Q), (N, L, R)
    mo = fc.meta["map_outputs"][0]
    if members is not None and qq is not None:
        from .probmetrics import pooled_quantiles

        qq = pooled_quantiles(fc.levels, fr.member_qq, fc.ensemble_scale).astype("float32")
    thresholds = fc.thresholds(basins, log) if qq is not None else {}
    out_dir = prepare_out_dir(Path(out_dir))
    result = PredictResult(issue_date=str(day), model_id=fc.model_id, inputs={k: dict(v) for k, v in status.items()})
    leads = np.arange(1, fc.lead + 1)
    stamp = str(day).replace("-", "")
    # everything is computed before the first file is written: an error leaves nothing partial
    products = []
    observations = observed_discharge(cfg)
    for n, info in enumerate(basins.info):
        last, last_t, recent = last_observation(observations, fc, info["id"], i)
        warn = _warnings(fc, thresholds.get(info["id"], []), qq[n] if qq is not None else None)
        hyd = hydrograph_dataset([info["id"]], [info["name"]], [info["outlet_lon"]], [info["outlet_lat"]],
                                 [info["area_km2"]], day, leads, q[n:n + 1], [last], [last_t],
                                 model_id=fc.model_id, quantiles=None if qq is None else qq[n:n + 1],
                                 levels=fc.levels, thresholds=warn["netcdf"] if warn else None,
                                 members=None if members is None else members[n:n + 1])
        error_m3s = float(fr.errors[n]) * fc.q_sd * info["area_km2"] / 86.4  # standardised -> m3/s
        hyd.attrs.update(provenance, hydrocast_spin_up=fr.spin_notes[n],
                         hydrocast_observed_discharge=_obs_note(fc, info, last_t, day),
                         hydrocast_updating=_update_note(fc, error_m3s, day, fr.blend[n]))
        frac = basins.channels[n, 0]
        window = fr.boxes[n]
        r0, r1, c0, c1 = window
        crop = fr.crops[n]
        sm_attrs = {k: v for k, v in mo.items() if k in ("units", "standard_name")}
        sm_attrs.update(long_name="forecast surface soil moisture", cell_methods="time: mean")
        ro_attrs = {"units": "1", "long_name": "where the model generates the runoff that reaches the outlet at "
                                               "each lead (relative, basin-masked)"}
        maps = {
            mo["name"]: (crop["sm"], sm_attrs),
            "runoff_generation": (crop["runoff"] * frac[None, r0:r1, c0:c1], ro_attrs),
        }
        if members is not None:
            maps.update(_member_maps(mo["name"], crop["sm_members"], sm_attrs))
            maps.update(_member_maps("runoff_generation", crop["runoff_members"] * frac[r0:r1, c0:c1], ro_attrs))
        mp = forecast_map_dataset(fc.grid, window, day, leads, maps, frac[r0:r1, c0:c1], info["id"],
                                  model_id=fc.model_id, realizations=r)
        mp.attrs.update(provenance, hydrocast_spin_up=fr.spin_notes[n])
        base = id_path(out_dir, info["id"], f"_{stamp}_{fc.model_id}")
        products.append((n, info, hyd, mp, base, recent, maps, window, warn))
        entry = {"id": info["id"], "gauged": info["gauged"], "area_km2": round(info["area_km2"], 1),
                 "discharge_m3s": [round(float(v), 3) for v in q[n]],
                 "valid_dates": [str(day + np.timedelta64(int(l), "D")) for l in leads],
                 "last_observed": None if np.isnan(last) else last,
                 "issue_day_error_m3s": round(error_m3s, 3)}
        if members is not None:
            entry["members_m3s"] = [[round(float(v), 3) for v in members[n, l]] for l in range(fc.lead)]
        if qq is not None:
            shown = (0.05, 0.25, 0.5, 0.75, 0.95)
            entry["quantiles_m3s"] = {f"{lv:g}": [round(float(v), 3) for v in qq[n, :, k]]
                                      for k, lv in enumerate(fc.levels) if round(lv, 2) in shown}
            entry["thresholds"] = warn["json"] if warn else []
        result.basins.append(entry)
    past = _past_simulation(fc, basins, i) if plot and qq is not None else None
    for n, info, hyd, mp, base, recent, maps, window, warn in products:
        for ds, suffix in ((hyd, "_hydrograph.nc"), (mp, "_maps.nc")):
            path = Path(f"{base}{suffix}")
            write_dataset(ds, path)
            result.files.append(str(path))
        if plot:
            from .plots import plot_hydrograph, plot_maps

            valid = [day + np.timedelta64(int(l), "D") for l in leads]
            if qq is None:
                result.files.append(str(plot_hydrograph(Path(f"{base}_hydrograph.png"), info["id"], day, valid, q[n],
                                                        recent[0], recent[1])))
            else:
                from .plots import plot_fan_chart

                result.files.append(str(plot_fan_chart(
                    Path(f"{base}_hydrograph.png"), info["id"], day, valid, fc.levels, qq[n],
                    past_times=past[0], past_sim_m3s=past[1][:, n], obs_times=recent[0], obs_m3s=recent[1],
                    thresholds=[(_threshold_label(t), t.discharge_m3s) for t in warn["rows"]] if warn else (),
                    ungauged=not info["gauged"], members_m3s=None if members is None else members[n])))
            r0, r1, c0, c1 = window
            west, north = fc.grid.transform.c + c0 * fc.grid.res[0], fc.grid.transform.f - r0 * fc.grid.res[1]
            extent = (west, west + (c1 - c0) * fc.grid.res[0], north - (r1 - r0) * fc.grid.res[1], north)
            result.files.append(str(plot_maps(Path(f"{base}_maps.png"), info["id"], day,
                                              {k: (v[0], v[1].get("units", "")) for k, v in maps.items()}, extent,
                                              basins.channels[n, 0][r0:r1, c0:c1], lead_days=leads)))
        if qq is None:
            log(f"{info['id']}: {', '.join(f'{v:.2f}' for v in q[n])} m3/s for leads 1..{fc.lead} after {day}")
        else:
            lo, hi = _level(fc.levels, 0.05), _level(fc.levels, 0.95)
            log(f"{info['id']}: " + ", ".join(f"{q[n, l]:.2f} ({qq[n, l, lo]:.2f}-{qq[n, l, hi]:.2f})"
                                              for l in range(fc.lead))
                + f" m3/s (90 % interval) for leads 1..{fc.lead} after {day}")
            for t in (warn["json"] if warn else []):
                log(f"{info['id']}:   P(> {t['name']} {t['discharge_m3s']:.1f} m3/s, {t['source']}) = "
                    + ", ".join(f"{p:.2f}" for p in t["exceedance_probability"]))
    return result


def _map_box(frac: np.ndarray, basin_id: str) -> tuple[int, int, int, int]:
    """Rows and columns (``r0, r1, c0, c1``, ends exclusive) of a basin's forecast maps: its
    cells' bounding box and one cell around it (clamped to the grid)."""
    rows, cols = np.nonzero(frac > 0)
    if rows.size == 0:
        raise BadInputError(f"basin {basin_id}: covers no cell of the grid")
    h, w = frac.shape
    return (int(max(rows.min() - 1, 0)), int(min(rows.max() + 2, h)), int(max(cols.min() - 1, 0)),
            int(min(cols.max() + 2, w)))


def _weights(net, tensors: dict, prefix: str) -> dict:
    """``net``'s weights among the artefact's ``tensors`` (keys ``prefix`` + name); a model saved
    before the updating with the issue day's error existed has no ``update_gain``: zero (no update);
    one saved before the blend with persistence, no ``persistence_weight``: empty (no blend)."""
    out = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if getattr(net, "update_gain", None) is not None and "update_gain" not in out:
        out["update_gain"] = net.update_gain.detach().clone()
    if getattr(net, "persistence_weight", None) is not None:
        if "persistence_weight" not in out:  # saved before the blend with persistence existed: none
            out["persistence_weight"] = net.persistence_weight.detach().clone()
        from .forward import set_persistence_weight

        set_persistence_weight(net, out["persistence_weight"].numpy())  # the buffer takes the saved shape
    return out


@dataclass
class WindowForecasts:
    """One issue day's forecasts of every basin of a :class:`BasinSet`, run window by window
    (:func:`_forecast_windows`): ``q`` (N, L) m3/s, ``qq`` (N, L, Q) the model's quantiles (None
    without), ``members`` (N, L, R) and ``member_qq`` (R, N, L, Q) the ensemble members' runs
    (None without), ``crops`` per basin its maps cut to ``boxes[n]`` (``sm``, ``runoff``
    (L, h, w); ``sm_members``, ``runoff_members`` (R, L, h, w) with members) and ``spin_notes``
    how its window's state was obtained."""

    q: np.ndarray
    qq: np.ndarray | None
    members: np.ndarray | None
    member_qq: np.ndarray | None
    n_members: int | None
    boxes: list
    crops: list
    spin_notes: list
    errors: np.ndarray  # (N,) the issue day's error each basin was updated with (standardised; 0: none)
    blend: np.ndarray | None = None  # (N, L) the weight of the issue day's observation (persistence) per lead


def _forecast_windows(fc: Forecaster, basins: BasinSet, i: int, boxes: list, log) -> WindowForecasts:
    """The forecasts of issue day ``i`` for ``basins``: on the whole grid, or (``[train]
    tile_cells`` > 0) window by window (:meth:`Forecaster.windows`), each window with its own saved
    state, its basins and the gauges that reach into it; every basin's maps are cut from its own
    window's (a box outside the window is clipped to it)."""
    from .forward import blend_ungauged, run_chunked, run_members

    inp_all = fc.inputs(basins)
    windows = fc.windows(basins)
    groups = [(None, list(range(len(basins.ids))))] if windows is None else \
        [(w, list(w.basins)) for w in windows if w.basins]
    n, lead, ck = len(basins.ids), fc.lead, fc.chunk_days
    q = np.full((n, lead), np.nan, dtype="float32")
    qq = np.full((n, lead, len(fc.levels)), np.nan, dtype="float32") if fc.levels is not None else None
    members = member_qq = n_members = None
    crops, notes, boxes = [None] * n, [""] * n, list(boxes)
    errors = np.zeros(n, dtype="float32")
    blend = np.zeros((n, lead), dtype="float32")
    for w, rows in groups:
        inp = inp_all if w is None else inp_all.window(w.rows, w.cols, rows)
        y0, x0 = (0, 0) if w is None else (w.y0, w.x0)
        state, start, note = fc.warm_state(i, log, window=w)
        run = run_chunked(fc.net, inp, i, i, fc.spin, state=state, start=start, chunk_days=ck)
        ens = run_members(fc.net, inp, i, i, fc.spin, state=state, start=start, group=64, with_maps=True,
                          chunk_days=ck, errors=run.extra.get("issue_error"))
        silent = fc.ungauged(inp)
        if len(silent):  # their later leads as if every gauge were silent, spun up without observations
            blend_ungauged(run, run_chunked(fc.net, inp, i, i, fc.spin, with_obs=False, chunk_days=ck), silent,
                           fc.ungauged_obs_leads)
            if ens is not None:
                blend_ungauged(ens, run_members(fc.net, inp, i, i, fc.spin, group=64, with_obs=False, chunk_days=ck),
                               silent, fc.ungauged_obs_leads, basin_axis=2)
        sm = fc.map_physical(run["maps"][0])[0]  # (L, h, w) of the window
        runoff = run["runoff"][0]
        if ens is not None:
            r = int(ens.n_members[0])
            if members is None:
                n_members = r
                members = np.full((n, lead, r), np.nan, dtype="float32")
                member_qq = np.full((r, n, lead, len(fc.levels)), np.nan) if qq is not None else None
            sm_m, ro_m = fc.map_physical(ens.extra["maps"][0, :r])[0], ens.extra["runoff"][0, :r]
        for k, nb in enumerate(rows):
            q[nb] = run.q[0, k]
            if "issue_error" in run.extra:
                errors[nb] = run.extra["issue_error"][0, k]
            if "persistence_weight" in run.extra:
                blend[nb] = run.extra["persistence_weight"][0, k]
            if qq is not None:
                qq[nb] = run.extra["q_quantiles"][0, k]
            r0, r1, c0, c1 = boxes[nb]
            if w is not None:
                r0, r1, c0, c1 = max(r0, w.y0), min(r1, w.y1), max(c0, w.x0), min(c1, w.x1)
                boxes[nb] = (r0, r1, c0, c1)
            cut = (slice(r0 - y0, r1 - y0), slice(c0 - x0, c1 - x0))
            crops[nb] = {"sm": sm[(slice(None), *cut)], "runoff": runoff[(slice(None), *cut)]}
            if ens is not None:
                members[nb] = np.moveaxis(ens.q[0, :r, k], 0, -1)
                if member_qq is not None:
                    member_qq[:, nb] = ens.extra["q_quantiles"][0, :r, k]
                crops[nb].update(sm_members=sm_m[(slice(None), slice(None), *cut)],
                                 runoff_members=ro_m[(slice(None), slice(None), *cut)])
            notes[nb] = note
    return WindowForecasts(q, qq, members, member_qq, n_members, boxes, crops, notes, errors, blend)


def _threshold_key(channels: np.ndarray, th, span: tuple[int, int]) -> str:
    """What an ungauged basin's cached thresholds depend on: its grid cells and distances, the
    ``[thresholds]`` settings and the hindcast's span."""
    import hashlib

    h = hashlib.sha256(np.ascontiguousarray(channels, dtype="float32").tobytes())
    h.update(repr((list(th.return_periods), th.min_years, th.year_start_month, span)).encode())
    return h.hexdigest()[:32]


def _level(levels, value: float) -> int:
    return int(np.argmin(np.abs(np.asarray(levels) - value)))


def _threshold_label(t) -> str:
    return f"{t.return_period_years:g}-year" if t.return_period_years else t.name  # the plot adds the value


def _warnings(fc: Forecaster, rows: list, qq) -> dict | None:
    """The exceedance probabilities of one basin's thresholds ``rows`` for its forecast quantiles
    ``qq`` (L, Q): the NetCDF variables, the JSON entries and the rows; None without either."""
    if qq is None or not rows:
        return None
    from .probmetrics import quantile_cdf

    prob = np.stack([1.0 - quantile_cdf(fc.levels, qq, t.discharge_m3s) for t in rows], axis=-1)  # (L, K)
    netcdf = {"names": [t.name for t in rows], "discharge": [[t.discharge_m3s for t in rows]],
              "return_period": [[t.return_period_years if t.return_period_years else np.nan for t in rows]],
              "probability": prob[None]}
    entries = [{"name": t.name, "discharge_m3s": round(t.discharge_m3s, 3),
                "return_period_years": t.return_period_years, "source": t.source,
                "exceedance_probability": [round(float(p), 3) for p in prob[:, k]]}
               for k, t in enumerate(rows)]
    return {"netcdf": netcdf, "json": entries, "rows": rows}


def _past_simulation(fc: Forecaster, basins: BasinSet, i: int, days: int = 60):
    """(days, (days, N) m3/s) the ConvLSTM's lead-1 forecasts of the ``days`` days up to issue day ``i``
    (the simulated past of a fan chart)."""
    a = max(i - days, 0)
    run = fc.hindcast(fc.net, basins, a, i - 1)
    return run.issue_days + np.timedelta64(1, "D"), run.q[:, :, 0]
