"""``hydrocast train``: fit the ConvLSTM (and the lumped LSTM baseline) on the cube's basins.

Design (what makes it fit a 2-core CPU; see README "Training"):

* **Whole-domain, sequence-to-sequence, stateful.** A batch is one chunk of ``window_days`` days
  of each of ``batch_size`` streams that walk the whole training period and carry the recurrent
  state from chunk to chunk and epoch to epoch (:func:`hydrocast.windows.stream_chunks`; built by
  :mod:`hydrocast.dataset`): the year-long memory a snowpack or a lake needs. The ConvLSTM runs
  once per chunk over the whole grid; every gauged basin is read out of the same hidden maps.
  With a weather-forecast source the leads come from rolling the core over the lead days from
  every third issue day (:class:`hydrocast.model.HydroConvLSTM`); observed discharge of the issue
  day enters with random hold-out. ``memory_days = 0`` trains as before issue 8 (random windows
  from a zero state, ``warmup_days`` unscored).
* **Tiled** (``[train] tile_cells`` > 0; :mod:`hydrocast.tiles`): the same chunks, each run on
  every window of the plan in turn (a window = a fixed-size part of the grid holding whole basins
  with a halo), read through a torch ``DataLoader`` (:class:`hydrocast.dataset.TileItems`,
  ``[train] loader_workers``); each window carries its own state, and validation runs window by
  window (:func:`hydrocast.forward.run_tiled`). ``tile_cells = 0``: the whole domain, as above.
* **Honest periods** (the rules are written once, in :mod:`hydrocast.windows`). Input
  normalisation and discharge statistics come from the training period only. Training targets
  never reach past the training period's last day; the validation period (early stopping,
  learning-rate schedule) is run as one sequence whose warm-up days are inputs only
  (:mod:`hydrocast.forward`). The test period is not touched here.
* **Loss.** NSE* (Kratzert et al. 2019) on per-basin standardised discharge, missing
  observations masked; plus, with weight 0.2, a masked MSE of the next days' soil-moisture maps
  where the satellite saw the ground.
* **One loop for both models** (:mod:`hydrocast.loop`): the ConvLSTM and the lumped LSTM
  baseline are two :class:`~hydrocast.loop.Task` s of the same loop (AdamW, plateau schedule,
  early stopping, a checkpoint per epoch).
* **Resumable.** After every epoch the loop's full state is written to
  ``.<model_dir>.checkpoint-<task>`` beside the model (:mod:`hydrocast.checkpoint`); ``--resume``
  continues from the last completed epoch (a finished ConvLSTM is not retrained). The final
  artefact replaces ``model_dir`` atomically (:mod:`hydrocast.artefact`).
* **Multi-process** (``torchrun --nproc-per-node N -m hydrocast train``; :mod:`hydrocast.distributed`).
  Each process trains on its share of every batch's streams (a stream's state stays in one
  process) through ``DistributedDataParallel``; each loss term is weighted by the process's share
  of the batch's valid targets, so the averaged gradient is that of the global batch's loss. The
  validation basins are shared out and their scores gathered. Rank 0 alone takes the model lock,
  logs, writes the checkpoints, calibrates the distribution, fits the thresholds and writes the
  artefact; the others wait for it.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import distributed
from .config import Config
from .errors import ConfigError, GridMismatchError, MissingInputError
from .forward import ModelInputs
from .jsonutil import finite_or_none, jsonable

MAP_LOSS_WEIGHT = 0.2
#: weight of the distribution's pinball loss (it trains only the distribution part: see the model)
QUANTILE_LOSS_WEIGHT = 1.0
LUMPED_HIDDEN = 32
#: the lumped baseline learns with twice the ConvLSTM's learning rate and AdamW's default decay
LUMPED_LR_FACTOR = 2.0
LUMPED_WEIGHT_DECAY = 0.01


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is available here")
    return dev


@dataclass
class TrainResult:
    model_dir: Path
    epochs_run: int = 0
    best_epoch: int = 0
    validation_nse: dict[str, float] = field(default_factory=dict)
    validation_nse_median: float = float("nan")
    lumped_validation_nse_median: float = float("nan")
    seconds: float = 0.0
    device: str = "cpu"
    resumed_from: int = 0
    model_id: str | None = None

    def to_json(self) -> dict:
        return {"model_dir": str(self.model_dir), "model_id": self.model_id, "epochs_run": self.epochs_run,
                "best_epoch": self.best_epoch, "validation_nse_median": self.validation_nse_median,
                "lumped_validation_nse_median": self.lumped_validation_nse_median,
                "validation_nse": self.validation_nse, "seconds": round(self.seconds, 1), "device": self.device,
                "resumed_from_epoch": self.resumed_from}


def blend_summary(weights: dict, most: int = 12) -> str:
    """The fitted blend weights (basin id -> per-lead list) in one log line: every gauge's where
    there are at most ``most``, else the median and the largest per lead and the gauges above 0.5."""
    if len(weights) <= most:
        return "; ".join(f"{b} " + "/".join(f"{x:.2f}" for x in row) for b, row in weights.items())
    w = np.asarray(list(weights.values()), dtype="float64")
    high = [b for b, row in weights.items() if max(row) > 0.5]
    return ("median " + "/".join(f"{x:.2f}" for x in np.median(w, axis=0)) + ", largest "
            + "/".join(f"{x:.2f}" for x in w.max(axis=0))
            + f" over {len(weights)} gauges; above 0.5 at some lead: {len(high)}"
            + (f" ({', '.join(high[:most])}{', ...' if len(high) > most else ''})" if high else ""))


class Trainer:
    """One training run: the domain, the windows and the two models' tasks."""

    def __init__(self, cfg: Config, device: str = "auto", seed: int | None = None, deterministic: bool = False,
                 log: Callable[[str], None] = lambda s: None, basin_ids: list[str] | None = None):
        from .samples import CubeReader

        self.cfg, self.log, self.basin_ids = cfg, log, basin_ids
        tr = cfg.train
        self.seed = tr.seed if seed is None else seed
        if tr.train_period is None or tr.validation_period is None:
            raise ConfigError(f"{cfg.path}: [train] needs train_period and validation_period")
        cube_path = cfg.resolve(cfg.cube.path)
        if not cube_path.exists():
            raise MissingInputError(f"{cube_path}: no cube; run `hydrocast ingest` first")
        self.reader = reader = CubeReader(cube_path)
        self.forecasts = None
        try:
            self._setup(cfg, tr, reader, device, deterministic)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the cube and the forecast store (now, not at a garbage collection: see train())."""
        self.reader.close()
        if self.forecasts is not None:
            self.forecasts.close()

    def _setup(self, cfg: Config, tr, reader, device: str, deterministic: bool) -> None:
        import torch

        from .cube import read_index
        from .domain import build_domain, discharge_table
        from .observations import training_check
        from .windows import discharge_norm, periods

        self.grid = cfg.grid_spec()
        cube_grid = read_index(reader.path).grid
        if not cube_grid.same_as(self.grid):
            raise GridMismatchError(f"{reader.path}: the cube's grid ({cube_grid.describe()}) is not the config's "
                                    f"({self.grid.describe()}); rerun `hydrocast ingest`")
        self.device = distributed.rank_device(resolve_device(device if device != "auto" else tr.device))
        if distributed.world_size() > tr.batch_size:
            raise ConfigError(f"{cfg.where('train', 'batch_size')}: {tr.batch_size} streams cannot be shared out "
                              f"among {distributed.world_size()} torchrun processes; use batch_size >= the number "
                              "of processes")
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % (2**32))
        if deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        self.periods = p = periods(reader.days, tr.train_period, tr.validation_period, tr.window_days,
                                   reader.path, cfg.path)

        # inputs and their statistics (training period only)
        dynamic = tr.inputs or list(reader.dynamic_names)
        static = [n for n in reader.static_names
                  if not (n == "upstream_area" and "log_upstream_area" in reader.static_names)]
        self.spec = reader.compute_stats(dynamic, static, (tr.train_period[0], tr.train_period[1]))
        self.map_var = "soil_moisture" if "soil_moisture" in dynamic else dynamic[0]

        # basins and discharge (statistics from the training days only)
        self.domain = build_domain(cfg, self.grid, only=self.basin_ids)
        ids = self.domain.ids
        q = discharge_table(cfg, reader.days, ids)
        training_check(q, (str(tr.train_period[0]), str(tr.train_period[1])), ids, source=q.attrs["source"])
        self.area_km2 = self.domain.area_km2
        self.q = q.to_numpy("float64")
        self.norm = discharge_norm(self.q, self.area_km2, p.t0, p.t1)
        self.q_norm = self.norm.normalise(self.q, self.area_km2)
        self.static = torch.from_numpy(reader.static_stack(self.spec)).to(self.device)
        self.basin_std_t = torch.as_tensor(self.norm.basin_std, dtype=torch.float32, device=self.device)
        self.basin_ch = torch.from_numpy(self.domain.channels).to(self.device)
        self.area_t = torch.as_tensor(self.area_km2, device=self.device)
        self.observed = bool(tr.observed_discharge)
        self.forecast_name = forecast_source(cfg)
        self.forecasts = None
        if self.forecast_name is not None:
            from .forecasts import open_forecasts

            self.forecasts = open_forecasts(cfg)
            if self.forecasts is None or self.forecast_name not in self.forecasts.names:
                from .forecasts import store_path

                raise MissingInputError(f"{store_path(cfg)}: no forecast store with {self.forecast_name!r}; "
                                        "run `hydrocast ingest` first (or set [train] forecast_source = \"none\")")
        self.inputs = ModelInputs(reader, self.spec, self.static, self.domain.channels, self.area_km2,
                                  self.norm.mean, self.norm.std, tr.lead_days,
                                  obs=self.q_norm if self.observed else None,
                                  obs_basins=self.domain.channels[:, 0] if self.observed else None,
                                  obs_index=np.arange(len(ids)) if self.observed else None,
                                  forecasts=self.forecasts, forecast_name=self.forecast_name,
                                  obs_days=tr.observed_days if self.observed else 1)
        self.spin = tr.memory_days if tr.memory_days > 0 else tr.warmup_days
        self.chunk_days = tr.inference_chunk_days  # inference (validation, calibration): days per chunk
        self.plan = None  # whole domain; [train] tile_cells > 0: the windows of hydrocast.tiles
        if tr.tile_cells > 0:
            from .tiles import describe, plan_windows

            self.plan = plan_windows(self.domain.channels[:, 0], tr.tile_cells, tr.tile_halo_cells, ids,
                                     where=cfg.where("train", "tile_cells"))
            self.log(f"tiled training: {describe(self.plan, reader.shape)}, halo {tr.tile_halo_cells} cells, "
                     f"{tr.loader_workers} loader worker(s)")
        self.stand_in_errors = None
        if self.forecast_name is not None and tr.forecast_stand_in and tr.forecast_stand_in_errors == "archive":
            from .samples import precipitation_slot
            from .standin import calibrate

            slot = precipitation_slot(self.spec)
            if slot is not None:
                self.stand_in_errors = calibrate(reader, self.forecasts, self.forecast_name, self.spec.dynamic[slot],
                                                 p.t0, p.t1, tr.lead_days)
        self.hparams = {"n_dynamic": self.spec.n_dynamic_channels, "n_static": self.spec.n_static_channels,
                        "hidden": tr.hidden, "depth": tr.depth, "kernel": tr.kernel, "lead_days": tr.lead_days,
                        "n_map_outputs": 1, "observed": int(self.observed),
                        "rollout": int(self.forecast_name is not None), "quantiles": int(tr.probabilistic),
                        "obs_days": tr.observed_days if self.observed else 1}

    @property
    def basins(self) -> list:
        return self.domain.basins

    # -- what both models share ------------------------------------------------------------------
    def streams(self, batch) -> dict:
        """The named input streams of a batch (see :mod:`hydrocast.model.network`)."""
        if "basins" in batch:  # a window's batch (tile_cells > 0): its own maps, basins and gauges
            keys = ("dynamic", "static", "basins", "basin_area_km2", "forecast", "rollout_days")
            if self.observed:
                keys += ("obs", "obs_basins", "obs_index", "obs_area")
            return {k: batch[k] for k in keys if k in batch}
        out = {"dynamic": batch["dynamic"], "static": self.static, "basins": self.basin_ch,
               "basin_area_km2": self.area_t, "forecast": batch["forecast"]}
        if "rollout_days" in batch:
            out["rollout_days"] = batch["rollout_days"]
        if self.observed:
            out.update(obs=batch["obs"], obs_basins=self.basin_ch[:, 0],
                       obs_index=torch_arange(len(self.basins), self.device))
        return out

    def batches(self, epoch: int, fresh: bool, offset: int = 0):
        """The epoch's training chunks (see :mod:`hydrocast.windows`), on the device."""
        from .dataset import ChunkBatches
        from .windows import legacy_chunks, stream_chunks

        tr = self.cfg.train
        if tr.memory_days > 0:
            chunks = stream_chunks(self.periods, tr.window_days, tr.warmup_days, tr.batch_size, fresh)
        else:
            chunks = legacy_chunks(self.seed, offset + epoch, self.periods, tr.window_days, tr.warmup_days,
                                   tr.lead_days, len(self.reader.days), tr.batch_size)
        if self.plan is not None:
            from .dataset import TileBatches, TileItems

            items = TileItems(self.inputs, self.q_norm, self.map_var, chunks, tr.window_days, self.periods.t1,
                              seed=(self.seed, offset + epoch), rollout=self.forecast_name is not None,
                              stand_in=tr.forecast_stand_in, windows=self.plan, shard=distributed.is_distributed(),
                              stand_in_errors=self.stand_in_errors)
            return TileBatches(items, self.device, tr.loader_workers)
        return ChunkBatches(self.inputs, self.q_norm, self.map_var, chunks, tr.window_days, self.periods.t1,
                            seed=(self.seed, offset + epoch), rollout=self.forecast_name is not None,
                            stand_in=tr.forecast_stand_in, device=self.device, shard=distributed.is_distributed(),
                            stand_in_errors=self.stand_in_errors)

    def basin_std(self, batch):
        """The NSE* weights of the batch's basins (a window's: its ``basin_rows``)."""
        return self.basin_std_t if "basin_rows" not in batch else self.basin_std_t[batch["basin_rows"]]

    def run(self, net, a: int, b: int):
        """The one forward path over issue days a..b (see :mod:`hydrocast.forward`); tiled
        (``tile_cells`` > 0): window by window, discharge only (no maps)."""
        from .forward import run_plan

        return run_plan(net, self.inputs, self.plan, a, b, self.spin, self.device, chunk_days=self.chunk_days)

    def validation_nse(self, net) -> np.ndarray:
        """Per basin, the NSE on the validation period averaged over the lead days 1..L (every
        target day inside the period): model choice (early stopping, learning-rate schedule)
        serves every lead, not only the first, which persistence already makes easy.

        Under torchrun each process reads out its share of the basins (the core still runs over
        the whole grid: it sees every gauge's observation maps, as in one process) and the scores
        are gathered: every process gets the same vector."""
        if distributed.is_distributed():
            rows = distributed.share(len(self.basins))
            local = self._validation_nse(net, rows) if len(rows) else np.zeros(0)
            return distributed.gather_rows(local, len(self.basins))
        return self._validation_nse(net)

    def _validation_nse(self, net, rows: range | None = None) -> np.ndarray:
        """:meth:`validation_nse` of the basins ``rows`` (default: all)."""
        import dataclasses

        from .forward import run_chunked
        from .metrics import nse

        v0, v1 = self.periods.v0, self.periods.v1
        chunk = self.chunk_days
        if self.plan is not None:  # tiled: the windows' runs, each with its basins (of ``rows``)
            from .forward import run_tiled

            plan = self.plan
            if rows is not None:
                keep = set(rows)
                plan = [dataclasses.replace(w, basins=tuple(n for n in w.basins if n in keep)) for w in plan]
            rows = range(len(self.basins)) if rows is None else rows
            sim = run_tiled(net, self.inputs, plan, v0, v1 - 1, self.spin, self.device,
                            chunk_days=chunk).q[:, list(rows)]
        elif rows is None:
            sim = self.run(net, v0, v1 - 1).q  # issue days whose lead-1 target is in the period
            rows = range(len(self.basins))
        else:
            sel = np.arange(rows.start, rows.stop)
            inp = dataclasses.replace(self.inputs, basins=self.inputs.basins[sel], area_km2=self.area_km2[sel],
                                      obs_index=None if self.inputs.obs_index is None else self.inputs.obs_index[sel])
            sim = run_chunked(net, inp, v0, v1 - 1, self.spin, self.device, chunk_days=chunk).q
        n_days, lead = sim.shape[0], sim.shape[-1]
        out = np.full((lead, len(rows)), np.nan)
        for l in range(lead):  # noqa: E741 - the lead index
            k = n_days - l  # issue days v0 .. v1-1-l: targets v0+l+1 .. v1
            if k > 1:
                out[l] = [nse(sim[:k, j, l], self.q[v0 + l + 1:v0 + l + 1 + k, n]) for j, n in enumerate(rows)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a basin with no validation day: NaN
            return np.nanmean(out, axis=0)

    def fit_update(self, net) -> tuple[list[float], np.ndarray] | None:
        """Fit the model's ``update_gain`` (per lead; :func:`hydrocast.model.fit_update_gain`) on
        the validation period and set it; returns it with the validation issue days' errors (T, N)
        (None for a model without observations). The run that fits it is not updated (gain zero);
        the errors do not depend on the gain (they are the forecasts' before updating). The
        validation period is what early stopping already used, the test period stays untouched."""
        import torch

        from .forward import split_issue_errors
        from .model import fit_update_gain
        from .windows import targets

        if getattr(net, "update_gain", None) is None or self.inputs.obs is None:
            return None
        v0, v1 = self.periods.v0, self.periods.v1
        with torch.no_grad():
            net.update_gain.zero_()
        # from the forecast issued the day before the period, for its first error
        run, errors = split_issue_errors(self.run(net, max(v0 - 1, 0), v1 - 1), self.inputs, v0)
        obs = targets(self.q_norm, v0, v1, run.q_norm.shape[-1], v1)
        gain = fit_update_gain(run.q_norm, errors, obs, self.basin_std_t.cpu().numpy())
        with torch.no_grad():
            net.update_gain.copy_(torch.as_tensor(gain, dtype=net.update_gain.dtype))
        return gain, errors

    def fit_blend(self, net) -> np.ndarray | None:
        """Fit the model's ``persistence_weight`` (per gauge and lead;
        :func:`hydrocast.model.fit_persistence_weight`) on the validation period, the forecasts
        already updated with the issue day's error, and set it; returns it (None for a model
        without observations). The run that fits it is not blended (weights empty)."""
        from .forward import issue_observations, set_persistence_weight
        from .model import fit_persistence_weight
        from .windows import targets

        if getattr(net, "persistence_weight", None) is None or self.inputs.obs is None:
            return None
        v0, v1 = self.periods.v0, self.periods.v1
        set_persistence_weight(net, None)
        run = self.run(net, v0, v1 - 1)
        obs = targets(self.q_norm, v0, v1, run.q_norm.shape[-1], v1)
        weight = fit_persistence_weight(run.q_norm, issue_observations(self.inputs, v0, run.q_norm.shape[0]), obs)
        set_persistence_weight(net, weight)  # the training basins are the model's gauges, in order
        return weight

    def calibrate_spread(self, net) -> list[float]:
        """Fit the model's ``spread_scale`` (per lead) on the validation period (pinball loss) and
        set it; returns it. The validation period is what early stopping already used; the
        test period stays untouched."""
        import torch

        from .model import fit_spread_scale
        from .windows import targets

        v0, v1 = self.periods.v0, self.periods.v1
        with torch.no_grad():
            net.spread_scale.fill_(1.0)
        run = self.run(net, v0, v1 - 1)
        obs = targets(self.q_norm, v0, v1, run.q_norm.shape[-1], v1)
        scale = fit_spread_scale(run.q_norm, run.extra["q_quantiles_norm"], obs)
        with torch.no_grad():
            net.spread_scale.copy_(torch.as_tensor(scale, dtype=net.spread_scale.dtype))
        return scale

    def calibrate_ensemble(self, net, errors=None) -> dict | None:
        """Where the forecast store keeps ensemble members for validation issue days
        (``[train] ensemble_source``): run ``net`` once per member over the validation period, pool
        the members' distributions (:func:`hydrocast.probmetrics.mixture_quantiles`) and fit, per
        lead and level, the factor on the distance from the pooled median that minimises the
        validation pinball loss (the members carry the weather's uncertainty that the model's own
        spread, fitted with single forecasts, already partly holds). ``errors``: the validation
        issue days' errors (:meth:`fit_update`), with which the members are updated. None without
        members."""
        import dataclasses

        from .forecasts import ensemble_source
        from .forward import members_tiled
        from .model import QUANTILE_LEVELS, fit_spread_scale
        from .probmetrics import mixture_quantiles
        from .windows import targets

        name = ensemble_source(self.cfg, self.forecasts, self.forecast_name)
        if name is None:
            return None
        v0, v1 = self.periods.v0, self.periods.v1
        inp = dataclasses.replace(self.inputs, ensemble_name=name)
        run = members_tiled(net, inp, self.plan, v0, v1 - 1, self.spin, self.device, chunk_days=self.chunk_days,
                            errors=errors)
        if run is None:
            return None
        levels = np.asarray(QUANTILE_LEVELS)
        pooled = mixture_quantiles(levels, np.moveaxis(run.extra["q_quantiles_norm"], 1, 0))  # (T, N, L, Q)
        median = pooled[..., int(np.argmin(np.abs(levels - 0.5)))]
        obs = targets(self.q_norm, v0, v1, pooled.shape[2], v1)
        obs = np.where((run.n_members > 0)[:, None, None], obs, np.nan)
        scale = fit_spread_scale(median, pooled, obs)
        return {"source": name, "issue_days": int((run.n_members > 0).sum()), "scale": scale}

    def fit_thresholds(self, net):
        """Return-period flows of the training basins (:func:`hydrocast.thresholds.fit_basin_thresholds`)
        from the observed annual maxima of the training and validation periods (never the test
        period), or from the ConvLSTM's lead-1 hindcast of those days where the record is short."""
        from .thresholds import fit_basin_thresholds

        th, p = self.cfg.thresholds, self.periods
        a, b = min(p.t0, p.v0), max(p.t1, p.v1)
        obs = self.q[a:b + 1].copy()
        inside = np.zeros(b - a + 1, dtype=bool)
        inside[p.t0 - a:p.t1 - a + 1] = inside[p.v0 - a:p.v1 - a + 1] = True
        obs[~inside] = np.nan  # a gap between the two periods is not theirs

        def simulated():
            sim = np.full(obs.shape, np.nan)
            sim[1:] = self.run(net, a, b - 1).q[:, :, 0]  # issued day t for day t + 1
            sim[~inside] = np.nan
            return sim

        return fit_basin_thresholds([x.id for x in self.basins], self.reader.days[a:b + 1], obs, simulated,
                                    th.return_periods, th.min_years, th.year_start_month)

    def n_targets(self, batch) -> int:
        import torch

        return int((~torch.isnan(batch["q_target"][..., 0])).sum())

    def settings(self, lr_factor: float = 1.0, weight_decay: float | None = None, epochs: int | None = None,
                 lr_patience: int = 2):
        from .loop import LoopSettings

        tr = self.cfg.train
        return LoopSettings(epochs=epochs or tr.epochs, learning_rate=tr.learning_rate * lr_factor,
                            weight_decay=tr.weight_decay if weight_decay is None else weight_decay,
                            grad_clip=tr.grad_clip, patience=tr.patience, max_minutes=tr.max_minutes,
                            lr_patience=lr_patience)

    # -- the run ---------------------------------------------------------------------------------
    def fit(self, model_dir: Path, epochs: int | None = None, resume: bool = False,
            progress: Callable | None = None) -> TrainResult:
        import torch

        from . import artefact
        from .loop import fit, median_score
        from .model import HydroConvLSTM, LumpedLSTM, n_obs_features

        t_start = time.monotonic()
        result = TrainResult(model_dir=model_dir, device=str(self.device))
        ckpt = {name: model_dir.parent / f".{model_dir.name}.checkpoint-{name}" for name in ("convlstm", "lumped")}
        net = HydroConvLSTM(self.hparams).to(self.device)
        conv = fit(net, ConvLSTMTask(self), self.settings(epochs=epochs), ckpt["convlstm"], self.device,
                   resume=resume, progress=progress, log=self.log)
        result.resumed_from = conv.resumed_from
        result.validation_nse = {b.id: float(s) for b, s in zip(self.basins, conv.scores)}
        result.validation_nse_median = median_score(conv.scores)
        result.epochs_run, result.best_epoch = conv.state["epoch"], conv.state["best_epoch"]

        torch.manual_seed(self.seed + 1)
        lead, fc = self.cfg.train.lead_days, int(self.forecast_name is not None)
        obs_days = self.hparams["obs_days"]
        n_in = (self.spec.n_dynamic_channels + self.spec.n_static_channels + 1
                + n_obs_features(obs_days) * int(self.observed)
                + fc * lead * self.spec.n_dynamic_channels)
        lumped = LumpedLSTM(n_in, LUMPED_HIDDEN, lead, observed=int(self.observed), forecast=fc,
                            quantiles=int(self.cfg.train.probabilistic), obs_days=obs_days).to(self.device)
        # the lumped LSTM's validation score jumps from epoch to epoch: halving its learning rate after
        # 2 flat epochs cost 0.004 and 0.118 validation NSE (seeds 0 and 1 on the sample), so it halves
        # only after `patience` flat epochs, i.e. it learns at a constant rate until early stopping
        lum = fit(lumped, LumpedTask(self),
                  self.settings(LUMPED_LR_FACTOR, LUMPED_WEIGHT_DECAY, epochs, lr_patience=self.cfg.train.patience),
                  ckpt["lumped"], self.device, resume=resume, progress=progress, log=self.log)
        result.lumped_validation_nse_median = median_score(lum.scores)
        self.log(f"lumped LSTM baseline: validation NSE median {result.lumped_validation_nse_median:.3f}")
        if distributed.is_main():
            result.model_id = self.finish(model_dir, net, lumped, result, conv, lum, t_start)
            for c in ckpt.values():
                artefact.remove(c)
        else:
            result.seconds = time.monotonic() - t_start
        distributed.barrier()  # the other processes wait for rank 0's artefact
        return result

    def finish(self, model_dir: Path, net, lumped, result: TrainResult, conv, lum, t_start: float) -> str:
        """After training (rank 0 alone under torchrun): the forecast distribution's calibration,
        the flood thresholds and the artefact; returns the model id."""
        self.update_gain, errors = {}, {}
        for name, model in (("convlstm", net), ("lumped", lumped)) if self.cfg.train.update_forecasts else ():
            fitted = self.fit_update(model)
            if fitted is not None:
                gain, errors[name] = fitted
                self.update_gain[name] = gain
                self.log(f"{name}: updating with the issue day's error fitted on the validation period, gain "
                         + ", ".join(f"lead {l + 1} {g:.2f}" for l, g in enumerate(gain)))
        self.persistence_weight = {}
        for name, model in (("convlstm", net), ("lumped", lumped)) if self.cfg.train.persistence_blend else ():
            weight = self.fit_blend(model)
            if weight is not None:
                self.persistence_weight[name] = {b.id: [round(float(x), 4) for x in row]
                                                 for b, row in zip(self.basins, weight)}
                self.log(f"{name}: blend with persistence fitted on the validation period, weight per lead "
                         + blend_summary(self.persistence_weight[name]))
        self.spread_scale = {}
        if self.cfg.train.probabilistic:
            for name, model in (("convlstm", net), ("lumped", lumped)):
                self.spread_scale[name] = self.calibrate_spread(model)
                self.log(f"{name}: forecast distribution recalibrated on the validation period, factor on the "
                         "90 % / 50 % interval: " + ", ".join(
                             f"lead {l + 1} x{(c[0] + c[-1]) / 2:.2f} / x{(c[4] + c[-5]) / 2:.2f}"
                             for l, c in enumerate(self.spread_scale[name])))
        self.ensemble_scale = (self.calibrate_ensemble(net, errors.get("convlstm")) if self.cfg.train.probabilistic
                               else None)
        if self.ensemble_scale is not None:
            self.log(f"convlstm: the pooled distribution of the {self.ensemble_scale['source']} members recalibrated "
                     "on "
                     f"{self.ensemble_scale['issue_days']} validation issue days, factor on the 90 % interval: "
                     + ", ".join(f"lead {l + 1} x{(c[0] + c[-1]) / 2:.2f}"
                                 for l, c in enumerate(self.ensemble_scale["scale"])))
        self.threshold_rows, self.threshold_notes = self.fit_thresholds(net)
        for b, note in self.threshold_notes.items():
            self.log(f"{b}: flood thresholds: {note}")
        result.seconds = time.monotonic() - t_start
        return self.save(model_dir, net, lumped, result, conv, lum)

    # -- the artefact ----------------------------------------------------------------------------
    def save(self, model_dir: Path, net, lumped, result: TrainResult, conv, lum) -> str:
        """Write the artefact (schema: :mod:`hydrocast.artefact`); returns the model id."""
        import dataclasses

        import torch
        from shapely.geometry import mapping

        from . import artefact
        from .model import QUANTILE_LEVELS
        from .thresholds import to_records

        tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
        tensors.update({f"lumped.{k}": v for k, v in lumped.state_dict().items()})
        tensors["basin_channels"] = torch.from_numpy(self.domain.channels)
        tr = self.cfg.train
        train_cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(tr).items()}
        for k in ("train_period", "validation_period", "test_period"):
            if train_cfg.get(k):
                train_cfg[k] = [str(d) for d in train_cfg[k]]
        basins = []
        for b, s, ls, std in zip(self.basins, conv.scores, lum.scores, self.norm.basin_std):
            poly_ll = _polygon_lonlat(b.polygon, self.grid)
            basins.append({"id": b.id, "name": b.name, "area_km2": float(b.area_km2),
                           "outlet_lon": b.outlet_lonlat[0] if b.outlet_lonlat else None,
                           "outlet_lat": b.outlet_lonlat[1] if b.outlet_lonlat else None,
                           "basin_std": float(std),
                           "validation_nse": finite_or_none(s), "lumped_validation_nse": finite_or_none(ls),
                           "polygon_lonlat": mapping(poly_ll) if poly_ll is not None else None})
        meta = {
            "hparams": net.hparams,
            "lumped_hparams": lumped.hparams,
            "inputs": self.spec.to_json(),
            "map_outputs": [{"name": self.map_var, **self.reader.attrs(self.map_var)}],
            "grid": self.grid.to_dict(),
            "lead_days": tr.lead_days,
            "warmup_days": tr.warmup_days,
            "memory_days": tr.memory_days,
            "spin_up_days": self.spin,
            "observed_discharge": self.observed,
            "update_gain": self.update_gain or None,
            "persistence_weight": self.persistence_weight or None,
            "distribution": ({"kind": "quantiles", "levels": list(QUANTILE_LEVELS),
                              "spread_scale": self.spread_scale, "ensemble": self.ensemble_scale}
                             if tr.probabilistic else None),
            "thresholds": to_records(self.threshold_rows),
            "thresholds_notes": self.threshold_notes,
            "forecast": ({"source": self.forecast_name, "stand_in": bool(tr.forecast_stand_in),
                          "stand_in_errors": (None if self.stand_in_errors is None
                                              else [e.to_json() for e in self.stand_in_errors])}
                         if self.forecast_name is not None else None),
            "dist_scale_km": self.domain.dist_scale_km,
            "discharge_normalisation": {"quantity": "specific discharge (mm/day = m3/s * 86.4 / km2)",
                                        "mean": self.norm.mean, "std": self.norm.std},
            "basins": basins,
            "config": {"train": train_cfg},
            "training": {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                         "validation_nse_median": result.validation_nse_median,
                         "lumped_validation_nse_median": result.lumped_validation_nse_median,
                         "history": conv.history, "lumped_history": lum.history,
                         "seconds": round(result.seconds, 1),
                         "device": str(self.device), "seed": self.seed, "basin_days_seen": conv.state["basin_days"],
                         "cube": str(self.reader.path),
                         "cube_days": [str(self.reader.days[0]), str(self.reader.days[-1])]},
        }
        if distributed.is_distributed():
            meta["training"]["processes"] = distributed.world_size()  # torchrun; absent: one process
        return artefact.save(model_dir, tensors, jsonable(meta))


def torch_arange(n: int, device):
    import torch

    return torch.arange(n, device=device)


def forecast_source(cfg: Config) -> str | None:
    """The name of the weather-forecast source the model's lead days roll over, or None:
    ``[train] forecast_source`` = "auto" takes the config's first source of an nwp kind."""
    name = cfg.train.forecast_source
    nwp = [s.name for s in cfg.sources if s.kind.startswith("nwp_")]
    if name == "none":
        return None
    if name == "auto":
        return nwp[0] if nwp else None
    if name not in nwp:
        raise ConfigError(f"{cfg.where('train', 'forecast_source')}: {name!r} is not a source of kind nwp_grib or "
                          f"nwp_netcdf (those are: {', '.join(nwp) or 'none'})")
    return name


def _keep(state, reset, repeat: int = 1):
    """Per stream (each repeated ``repeat`` times): 1 where the stream carries its state into this
    chunk, 0 where it starts from a zero state (``reset``); None when no stream carries one."""
    if state is None or bool(reset.all()):
        return None
    return (~reset).float().repeat_interleave(repeat)


class ConvLSTMTask:
    """The ConvLSTM: NSE* on discharge + ``MAP_LOSS_WEIGHT`` × masked MSE of the next days' map.

    Stateful: the core's state after a chunk is carried (detached) into the stream's next chunk,
    zeroed where the chunk says ``reset`` (:func:`hydrocast.windows.stream_chunks`).

    Under torchrun ``batch`` holds this process's streams and each term (NSE*, map MSE, pinball)
    is its mean over the process's valid targets times ``N n_local / n_global``
    (:func:`hydrocast.distributed.loss_weights`). What agrees with one process on the same global
    batch: the loss value (the mean over the processes of the returned terms is the global
    batch's), its gradient (DDP's average of the N gradients) and so the clipped step, up to the
    order of the float32 sums (tests/test_distributed.py)."""

    name = "convlstm"
    EPOCH_OFFSET = 0

    def __init__(self, trainer: Trainer):
        self.t = trainer
        self.state = None
        self.window_states: dict[int, object] = {}  # tiled: the carried state of each window

    def batches(self, epoch: int):
        fresh = self.state is None and not self.window_states
        return self.t.batches(epoch, fresh=fresh, offset=self.EPOCH_OFFSET)

    def state_of(self, batch):
        """The state carried into ``batch`` (its window's, tiled)."""
        return self.state if "window" not in batch else self.window_states.get(int(batch["window"]))

    def keep_state(self, batch, state) -> None:
        if "window" in batch:
            self.window_states[int(batch["window"])] = state
        else:
            self.state = state

    def carried(self, batch):
        state = self.state_of(batch)
        keep = _keep(state, batch["reset"])
        if keep is None:
            return None
        k = keep.view(-1, 1, 1, 1)
        return [(h * k.to(h.dtype), c * k.to(c.dtype)) for h, c in state]

    def loss(self, net, batch):
        import torch

        from .model import nse_star_loss

        out = net(self.t.streams(batch), self.carried(batch))
        self.keep_state(batch, [(h.detach(), c.detach()) for h, c in out["state"]])
        q_t, m_t = batch["q_target"], batch["map_target"]
        if "rollout_days" in batch:
            q_t, m_t = q_t[:, batch["rollout_days"]], m_t[:, batch["rollout_days"]]
        lq = nse_star_loss(out["q"].float(), q_t, self.t.basin_std(batch))
        maps = out["maps"][:, :, :, 0].float()
        valid = ~torch.isnan(m_t)
        err = torch.where(valid, maps - torch.nan_to_num(m_t), torch.zeros_like(maps))
        lm = err.square().sum() / valid.sum().clamp_min(1)
        ld = self.distribution_loss(out, q_t, batch)
        share = distributed.loss_weights((~torch.isnan(q_t)).sum(), valid.sum())  # None in one process
        if share is not None:
            lq, lm, ld = lq * share[0], lm * share[1], ld * share[0]
        return lq + MAP_LOSS_WEIGHT * lm + ld, lq

    def distribution_loss(self, out, q_t, batch):
        """``QUANTILE_LOSS_WEIGHT`` × the pinball loss of the forecast distribution (0 without)."""
        if "q_quantiles" not in out:
            return 0.0
        from .model import quantile_loss

        return QUANTILE_LOSS_WEIGHT * quantile_loss(out["q_quantiles"].float(), q_t, self.t.basin_std(batch))

    def n_targets(self, batch) -> int:
        return self.t.n_targets(batch)

    def validate(self, net) -> np.ndarray:
        return self.t.validation_nse(net)


class LumpedTask(ConvLSTMTask):
    """The lumped LSTM baseline: same chunks (legacy windows: another random phase), periods, loss
    and state carrying; the same information (observations, forecast channels) as basin means."""

    name = "lumped"
    EPOCH_OFFSET = 10_000

    def carried(self, batch):
        state = self.state_of(batch)
        n = batch["basins"].shape[0] if "basins" in batch else len(self.t.basins)
        keep = _keep(state, batch["reset"], repeat=n)
        if keep is None:
            return None
        h, c = state
        k = keep.view(1, -1, 1)
        return (h * k, c * k)

    def loss(self, net, batch):
        import torch

        from .model import nse_star_loss

        streams = self.t.streams(batch)
        streams.pop("rollout_days", None)
        out = net(streams, self.carried(batch))
        self.keep_state(batch, tuple(x.detach() for x in out["state"]))
        loss = nse_star_loss(out["q"], batch["q_target"], self.t.basin_std(batch))
        ld = self.distribution_loss(out, batch["q_target"], batch)
        share = distributed.loss_weights((~torch.isnan(batch["q_target"])).sum())  # None in one process
        if share is not None:
            loss, ld = loss * share[0], ld * share[0]
        return loss + ld, loss

def _polygon_lonlat(poly, grid):
    if poly is None:
        return None
    from .basins import reproject_geometry

    if grid.crs.to_epsg() == 4326:
        return poly
    return reproject_geometry(poly, grid.crs, "EPSG:4326")



def train(cfg: Config, device: str = "auto", seed: int | None = None, deterministic: bool = False,
          resume: bool = False, epochs: int | None = None, progress: Callable | None = None,
          log: Callable[[str], None] = lambda s: None, basin_ids: list[str] | None = None) -> TrainResult:
    """Run ``hydrocast train`` for ``cfg``; returns the summary. ``basin_ids``: train on just these
    of the config's basins (a cross-validation fold). Under torchrun (``WORLD_SIZE`` > 1) every
    process runs this; rank 0's result carries the model id (see :mod:`hydrocast.distributed`)."""
    model_dir = cfg.resolve(cfg.train.model_dir)
    if not distributed.launched():
        return _train(cfg, model_dir, device, seed, deterministic, resume, epochs, progress, log, basin_ids)
    # torchrun: one process group for the run; rank 0 alone logs, shows progress and holds the lock
    with distributed.session(resolve_device(device if device != "auto" else cfg.train.device)):
        main = distributed.is_main()
        return _train(cfg, model_dir, device, seed, deterministic, resume, epochs, progress if main else None,
                      log if main else (lambda s: None), basin_ids)


def _train(cfg: Config, model_dir: Path, device, seed, deterministic, resume, epochs, progress, log,
           basin_ids) -> TrainResult:
    from filelock import FileLock, Timeout

    from .errors import BusyError

    lock = FileLock(str(model_dir.parent / f".{model_dir.name}.lock"), timeout=0)
    held = True
    if distributed.is_main():
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire()
        except Timeout:
            held = False
    if not distributed.main_says(held):
        raise BusyError(f"{model_dir}: another hydrocast train is writing this model; try later")
    try:
        trainer = Trainer(cfg, device=device, seed=seed, deterministic=deterministic, log=log, basin_ids=basin_ids)
        try:
            procs = f" x {distributed.world_size()} torchrun processes" if distributed.is_distributed() else ""
            log(f"training on {trainer.device}{procs}: {len(trainer.basins)} basins, inputs "
                f"{', '.join(trainer.spec.dynamic)} + {len(trainer.spec.static)} static layers, "
                f"grid {trainer.grid.describe()}")
            return trainer.fit(model_dir, epochs=epochs, resume=resume, progress=progress)
        finally:
            # close the cube now, not at some later garbage collection: HDF5 shares one file
            # struct between handles of a process, and a handle freed while another is being
            # opened crashes it
            trainer.close()
    finally:
        if lock.is_locked:
            lock.release()
