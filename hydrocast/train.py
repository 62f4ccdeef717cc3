"""``hydrocast train``: fit the ConvLSTM (and the lumped LSTM baseline) on the cube's basins.

Design (what makes it fit a 2-core CPU; see README "Training"):

* **Whole-domain, sequence-to-sequence.** A batch is ``batch_size`` windows of ``window_days``
  consecutive days over the whole grid. The ConvLSTM runs once per window; every gauged basin is
  read out of the same hidden maps, and the loss is taken on every day after ``warmup_days`` for
  every basin and lead day. One step therefore learns from batch × (window − warmup) × basins ×
  leads targets.
* **Honest periods.** Input normalisation and per-basin discharge statistics come from the
  training period only. Training targets never reach past the training period's last day; the
  validation period (early stopping, learning-rate schedule) is run as one sequence whose
  warm-up days are inputs only. The test period is not touched here.
* **Loss.** NSE* (Kratzert et al. 2019) on per-basin standardised discharge, missing
  observations masked; plus, with weight 0.2, a masked MSE of the next days' soil-moisture maps
  where the satellite saw the ground.
* **Resumable.** After every epoch the full training state (weights, optimiser, schedule, best
  score, epoch) is written to ``<model_dir>/.checkpoint`` as safetensors + JSON; ``--resume``
  continues from the last completed epoch. The final artefact replaces ``model_dir`` atomically.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .config import Config
from .errors import BadInputError, ConfigError, MissingInputError

MAP_LOSS_WEIGHT = 0.2
LUMPED_HIDDEN = 32


# -- the domain: cube, basins, discharge -----------------------------------------------------------

@dataclass
class Domain:
    """Everything the network is fed, for one cube and a list of basins."""

    reader: object  # samples.CubeReader
    grid: object  # GridSpec
    basins: list
    channels: np.ndarray  # (N, 2, H, W): basin fraction, flow distance / dist_scale
    dist_scale_km: float


def dem_routing(cfg: Config, grid):
    """Native-resolution D8 routing of the config's DEM source (None without a DEM)."""
    from .ingest import expand_paths
    from .sources import dem as dem_mod

    src = next((s for s in cfg.sources if s.kind == "dem"), None)
    if src is None:
        return None
    files = expand_paths(cfg, src)
    if not files:
        raise MissingInputError(f"{cfg.path}: [[sources]] {src.name}: no file matches {src.paths}")
    da = dem_mod.read(files[0], src.as_options(), grid.lonlat_bounds(cfg.cube.margin_cells))
    return dem_mod.flow_routing(da)


def load_basins(cfg: Config, grid, path: Path | None = None, routing=None, dist_scale_km: float | None = None):
    """Basins from ``path`` (default ``[basins] path``) with their model channels.

    Channel 1 is the flow distance divided by ONE length scale for the whole domain (the largest
    distance among the training basins), so that travel times stay comparable between basins:
    a nested basin's far end is nearer to its outlet than the parent's far end to its own."""
    from .basins import read_basins

    path = Path(path) if path is not None else (cfg.resolve(cfg.basins.path) if cfg.basins.path else None)
    if path is None:
        raise ConfigError(f"{cfg.path}: [basins] path is not set")
    basins = read_basins(path, grid, routing, min_area_km2=cfg.basins.min_area_km2)
    fr = np.stack([np.nan_to_num(b.fraction, nan=0.0) for b in basins]).astype("float32")
    dist = np.stack([b.distance_km for b in basins]).astype("float64")
    if dist_scale_km is None:
        finite = dist[np.isfinite(dist)]
        dist_scale_km = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    d = np.where(np.isfinite(dist) & (fr > 0), dist / dist_scale_km, 0.0).astype("float32")
    return basins, np.stack([fr, d], axis=1), dist_scale_km


def discharge_table(cfg: Config, reader, basin_ids: list[str], path: Path | None = None):
    """Discharge (days of the cube × basins) in m3/s, NaN = missing, aligned to the cube."""
    import pandas as pd

    from .observations import read_discharge

    path = Path(path) if path is not None else (cfg.resolve(cfg.discharge.path) if cfg.discharge.path else None)
    if path is None:
        raise ConfigError(f"{cfg.path}: [discharge] path is not set")
    df = read_discharge(path, None, fmt=cfg.discharge.format)
    have = [b for b in basin_ids if b in df.columns]
    out = pd.DataFrame(index=pd.DatetimeIndex(reader.days.astype("datetime64[ns]")), columns=basin_ids, dtype="float64")
    if have:
        out.loc[:, have] = df[have].reindex(out.index).to_numpy()
    out.attrs["source"] = str(path)
    return out


# -- the training state ----------------------------------------------------------------------------

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

    def to_json(self) -> dict:
        return {"model_dir": str(self.model_dir), "epochs_run": self.epochs_run, "best_epoch": self.best_epoch,
                "validation_nse_median": self.validation_nse_median,
                "lumped_validation_nse_median": self.lumped_validation_nse_median,
                "validation_nse": self.validation_nse, "seconds": round(self.seconds, 1), "device": self.device,
                "resumed_from_epoch": self.resumed_from}


def _day_index(reader, day, what: str) -> int:
    d = np.datetime64(day, "D")
    if len(reader.days) == 0 or d < reader.days[0] or d > reader.days[-1]:
        raise BadInputError(f"{reader.path}: {what} day {d} is outside the cube "
                            f"({reader.days[0] if len(reader.days) else '-'} .. {reader.days[-1] if len(reader.days) else '-'})")
    return int((d - reader.days[0]).astype(int))


def targets(q_norm: np.ndarray, start: int, stop: int, lead: int, last_target: int) -> np.ndarray:
    """(T, N, L) targets for issue days start..stop-1: ``q_norm[t + l + 1]``; NaN past
    ``last_target`` (so training never sees a validation day) and past the record."""
    T, N = stop - start, q_norm.shape[1]
    out = np.full((T, N, lead), np.nan, dtype="float32")
    for l in range(lead):
        a, b = start + l + 1, min(stop + l + 1, last_target + 1, len(q_norm))
        if b > a:
            out[: b - a, :, l] = q_norm[a:b]
    return out


def map_targets(sm_norm: np.ndarray, lead: int) -> np.ndarray:
    """(T, L, H, W) next-day soil-moisture targets from a (T + lead, H, W) normalised block."""
    T = sm_norm.shape[0] - lead
    return np.stack([sm_norm[l + 1:l + 1 + T] for l in range(lead)], axis=1)


class Trainer:
    """One training run. Kept as a class so that predict/evaluate can reuse the forward pass."""

    def __init__(self, cfg: Config, device: str = "auto", seed: int | None = None, deterministic: bool = False,
                 log: Callable[[str], None] = lambda s: None):
        from .samples import CubeReader

        self.cfg, self.log = cfg, log
        tr = cfg.train
        self.seed = tr.seed if seed is None else seed
        if tr.train_period is None or tr.validation_period is None:
            raise ConfigError(f"{cfg.path}: [train] needs train_period and validation_period")
        cube_path = cfg.resolve(cfg.cube.path)
        if not cube_path.exists():
            raise MissingInputError(f"{cube_path}: no cube; run `hydrocast ingest` first")
        self.reader = reader = CubeReader(cube_path)
        try:
            self._setup(cfg, tr, reader, device, deterministic)
        except BaseException:
            reader.close()
            raise

    def _setup(self, cfg: Config, tr, reader, device: str, deterministic: bool) -> None:
        import torch

        self.grid = cfg.grid_spec()
        from .cube import read_index

        cube_grid = read_index(reader.path).grid
        if not cube_grid.same_as(self.grid):
            raise BadInputError(f"{reader.path}: the cube's grid ({cube_grid.describe()}) is not the config's "
                                f"({self.grid.describe()}); rerun `hydrocast ingest`")
        self.device = resolve_device(device if device != "auto" else tr.device)
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % (2**32))
        if deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False

        # periods as day indices of the cube
        self.t0 = _day_index(reader, tr.train_period[0], "train_period start")
        self.t1 = _day_index(reader, tr.train_period[1], "train_period end")
        self.v0 = _day_index(reader, tr.validation_period[0], "validation_period start")
        self.v1 = _day_index(reader, tr.validation_period[1], "validation_period end")
        if self.v0 <= self.t1 and self.t0 <= self.v1:
            raise ConfigError(f"{cfg.path}: [train] train_period and validation_period overlap")
        if self.t1 - self.t0 + 1 < tr.window_days:
            raise ConfigError(f"{cfg.path}: [train] train_period ({self.t1 - self.t0 + 1} days) is shorter than "
                              f"window_days ({tr.window_days})")

        # inputs and their statistics (training period only)
        dynamic = tr.inputs or list(reader.dynamic_names)
        static = [n for n in reader.static_names if not (n == "upstream_area" and "log_upstream_area" in reader.static_names)]
        self.spec = reader.compute_stats(dynamic, static, (tr.train_period[0], tr.train_period[1]))
        self.map_var = "soil_moisture" if "soil_moisture" in dynamic else dynamic[0]

        # basins and discharge
        self.routing = dem_routing(cfg, self.grid)
        self.basins, self.channels, self.dist_scale = load_basins(cfg, self.grid, routing=self.routing)
        ids = [b.id for b in self.basins]
        q = discharge_table(cfg, reader, ids)
        from .observations import training_check

        tp = (str(tr.train_period[0]), str(tr.train_period[1]))
        training_check(q, tp, ids, source=q.attrs["source"])
        # Discharge as specific discharge (mm/day = m3/s * 86.4 / km2), standardised with ONE
        # mean/std pooled over all training basins: the network's output then means the same in
        # every basin, so an ungauged basin's discharge is that output times its own area. Large
        # and small rivers weigh alike through the NSE* loss, which divides each basin's errors
        # by that basin's own spread (basin_std).
        self.area_km2 = np.array([b.area_km2 for b in self.basins], dtype="float64")
        self.q = q.to_numpy("float64")
        spec_q = self.q * 86.4 / self.area_km2
        train_q = spec_q[self.t0:self.t1 + 1]
        self.q_mu = float(np.nanmean(train_q))
        self.q_sd = float(np.nanstd(train_q)) or 1.0
        self.q_norm = ((spec_q - self.q_mu) / self.q_sd).astype("float32")
        self.basin_std = np.nanstd(self.q_norm[self.t0:self.t1 + 1], axis=0)
        self.basin_std = np.where(np.isfinite(self.basin_std) & (self.basin_std > 0), self.basin_std, 1.0)
        self.static = torch.from_numpy(reader.static_stack(self.spec)).to(self.device)
        self.basin_std_t = torch.as_tensor(self.basin_std, dtype=torch.float32, device=self.device)
        self.basin_ch = torch.from_numpy(self.channels).to(self.device)
        self.map_stats = self.spec.stats[self.map_var]
        self.hparams = {"n_dynamic": self.spec.n_dynamic_channels, "n_static": self.spec.n_static_channels,
                        "hidden": tr.hidden, "depth": tr.depth, "kernel": tr.kernel, "lead_days": tr.lead_days,
                        "n_map_outputs": 1}

    # -- batches ---------------------------------------------------------------------------------
    def window(self, start: int, stop: int, last_target: int):
        """Inputs (T, C, H, W), discharge targets (T, N, L) and map targets (T, L, H, W)."""
        lead = self.cfg.train.lead_days
        x = self.reader.dynamic_window(self.spec, start, stop)
        y = targets(self.q_norm, start, stop, lead, last_target)
        stop_m = min(stop + lead, len(self.reader.days))
        sm = self.reader.raw(self.map_var, start, stop_m)
        sm_n, valid = self.reader._normalise(sm, self.map_stats)
        sm_n = np.where(valid > 0, sm_n, np.nan)
        if stop_m < stop + lead:
            sm_n = np.concatenate([sm_n, np.full((stop + lead - stop_m, *sm_n.shape[1:]), np.nan, "float32")])
        m = map_targets(sm_n, lead)
        for l in range(lead):  # map targets after the period's last day are not training data
            m[max(0, last_target - start - l):, l] = np.nan
        return x, y, m

    def batch(self, starts: list[int], last_target: int):
        import torch

        T = self.cfg.train.window_days
        xs, ys, ms = zip(*(self.window(s, s + T, last_target) for s in starts))
        to = lambda a: torch.from_numpy(np.stack(a)).to(self.device)  # noqa: E731
        return to(xs), to(ys), to(ms)

    # -- loss ------------------------------------------------------------------------------------
    def loss(self, out, y, m, warmup: int):
        import torch

        from .model import nse_star_loss

        q = out["q"][:, warmup:].float()
        lq = nse_star_loss(q, y[:, warmup:], self.basin_std_t)
        maps = out["maps"][:, warmup:, :, 0].float()
        mt = m[:, warmup:]
        valid = ~torch.isnan(mt)
        lm = torch.where(valid, maps - torch.nan_to_num(mt), torch.zeros_like(maps)).square().sum() / valid.sum().clamp_min(1)
        return lq + MAP_LOSS_WEIGHT * lm, lq

    def autocast(self):
        import contextlib

        import torch

        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- validation ------------------------------------------------------------------------------
    def predict_period(self, net, a: int, b: int) -> np.ndarray:
        """Physical discharge (T, N, L) for issue days a..b (inclusive), one sequence with
        ``warmup_days`` of inputs before ``a``."""
        import torch


        warm = self.cfg.train.warmup_days
        s = max(0, a - warm)
        x = torch.from_numpy(self.reader.dynamic_window(self.spec, s, b + 1)).unsqueeze(0).to(self.device)
        net.eval()
        with torch.no_grad(), self.autocast():
            out = net(x, self.static, self.basin_ch)
        return self.to_physical(out["q"][0, a - s:].float().cpu().numpy())

    def to_physical(self, qn: np.ndarray) -> np.ndarray:
        """Normalised output (..., N, L) → discharge in m3/s, never negative."""
        return to_discharge(qn, self.q_mu, self.q_sd, self.area_km2)

    def validation_nse(self, net) -> np.ndarray:
        """NSE per basin on the validation period, lead day 1."""
        from .metrics import nse

        sim = self.predict_period(net, self.v0, self.v1 - 1)  # issue days whose lead-1 target is in the period
        obs = self.q[self.v0 + 1:self.v1 + 1]
        return np.array([nse(sim[:, n, 0], obs[:, n]) for n in range(len(self.basins))])

    # -- the loop --------------------------------------------------------------------------------
    def starts_for_epoch(self, epoch: int) -> list[int]:
        """Window starts covering the training period once, with a random phase per epoch."""
        tr = self.cfg.train
        T, warm = tr.window_days, tr.warmup_days
        rng = np.random.default_rng([self.seed, epoch])
        first = max(0, self.t0 - warm)  # warm-up may use (input-only) days before the period
        last = self.t1 - T + 1 + tr.lead_days
        last = max(first, min(last, len(self.reader.days) - T))
        stride = T - warm
        phase = int(rng.integers(0, stride))
        starts = list(range(first + phase, last + 1, stride)) or [first]
        rng.shuffle(starts)
        return starts

    def fit(self, model_dir: Path, epochs: int | None = None, resume: bool = False,
            progress: Callable | None = None) -> TrainResult:
        import torch

        from .model import HydroConvLSTM

        tr = self.cfg.train
        epochs = epochs or tr.epochs
        t_start = time.monotonic()
        net = HydroConvLSTM(self.hparams).to(self.device)
        opt = torch.optim.AdamW(net.parameters(), lr=tr.learning_rate, weight_decay=tr.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=2)
        result = TrainResult(model_dir=model_dir, device=str(self.device))
        state = {"epoch": 0, "best": -math.inf, "best_epoch": 0, "bad_epochs": 0, "history": []}
        best_weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
        ckpt = model_dir.parent / f".{model_dir.name}.checkpoint"
        if resume and ckpt.exists():
            state, best_weights = load_checkpoint(ckpt, net, opt, sched, self.device)
            result.resumed_from = state["epoch"]
            self.log(f"resuming after epoch {state['epoch']} (best validation NSE {state['best']:.3f})")
        elif resume:
            self.log("no checkpoint to resume from; starting afresh")
        n_basin_days = 0
        for epoch in range(state["epoch"] + 1, epochs + 1):
            net.train()
            starts = self.starts_for_epoch(epoch)
            if progress:
                progress("describe", f"epoch {epoch}/{epochs}")
                progress("start", len(starts))
            losses = []
            for k in range(0, len(starts), tr.batch_size):
                x, y, m = self.batch(starts[k:k + tr.batch_size], self.t1)
                with self.autocast():
                    out = net(x, self.static, self.basin_ch)
                    loss, lq = self.loss(out, y, m, tr.warmup_days)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), tr.grad_clip)
                opt.step()
                losses.append(float(lq.detach()))
                n_basin_days += int((~torch.isnan(y[:, tr.warmup_days:, :, 0])).sum())
                if progress:
                    progress("advance", len(starts[k:k + tr.batch_size]))
            scores = self.validation_nse(net)
            med = float(np.nanmedian(scores)) if np.isfinite(scores).any() else -math.inf
            sched.step(med)
            improved = med > state["best"] + 1e-4
            if improved:
                state.update(best=med, best_epoch=epoch, bad_epochs=0)
                best_weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                state["bad_epochs"] += 1
            state["epoch"] = epoch
            state["history"].append({"epoch": epoch, "loss": float(np.mean(losses)), "validation_nse_median": med,
                                     "lr": opt.param_groups[0]["lr"]})
            self.log(f"epoch {epoch:3d}  loss {np.mean(losses):.4f}  validation NSE median {med:.3f}"
                     f"{'  *' if improved else ''}  lr {opt.param_groups[0]['lr']:.2g}")
            save_checkpoint(ckpt, net, opt, sched, state, best_weights)
            elapsed_min = (time.monotonic() - t_start) / 60
            if state["bad_epochs"] >= tr.patience:
                self.log(f"early stop: no improvement in {tr.patience} epochs")
                break
            if tr.max_minutes and elapsed_min >= tr.max_minutes:
                self.log(f"stop: max_minutes {tr.max_minutes} reached")
                break
        net.load_state_dict(best_weights)
        scores = self.validation_nse(net)
        result.validation_nse = {b.id: float(s) for b, s in zip(self.basins, scores)}
        result.validation_nse_median = float(np.nanmedian(scores))
        result.epochs_run, result.best_epoch = state["epoch"], state["best_epoch"]

        lumped, lumped_scores = self.fit_lumped(epochs)
        result.lumped_validation_nse_median = float(np.nanmedian(lumped_scores))
        result.seconds = time.monotonic() - t_start
        self.save(model_dir, net, lumped, result, state, scores, lumped_scores, n_basin_days)
        import shutil

        shutil.rmtree(ckpt, ignore_errors=True)
        return result

    # -- the lumped baseline ---------------------------------------------------------------------
    def lumped_inputs(self, x, static):
        return lumped_inputs(x, static, self.basin_ch, self.area_km2)

    def fit_lumped(self, epochs: int):
        """The lumped LSTM baseline: same windows, periods, loss and early stopping."""
        import torch

        from .model import LumpedLSTM, nse_star_loss

        tr = self.cfg.train
        torch.manual_seed(self.seed + 1)
        n_in = self.spec.n_dynamic_channels + self.spec.n_static_channels + 1
        net = LumpedLSTM(n_in, LUMPED_HIDDEN, tr.lead_days).to(self.device)
        opt = torch.optim.AdamW(net.parameters(), lr=tr.learning_rate * 2)
        best, best_w, bad = -math.inf, None, 0
        for epoch in range(1, epochs + 1):
            net.train()
            starts = self.starts_for_epoch(10_000 + epoch)
            for k in range(0, len(starts), tr.batch_size):
                x, y, _ = self.batch(starts[k:k + tr.batch_size], self.t1)
                pred = net(self.lumped_inputs(x, self.static))
                loss = nse_star_loss(pred[:, tr.warmup_days:], y[:, tr.warmup_days:], self.basin_std_t)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), tr.grad_clip)
                opt.step()
            scores = self.lumped_validation(net)
            med = float(np.nanmedian(scores))
            if med > best + 1e-4:
                best, bad = med, 0
                best_w = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
                if bad >= tr.patience:
                    break
        if best_w is not None:
            net.load_state_dict(best_w)
        scores = self.lumped_validation(net)
        self.log(f"lumped LSTM baseline: validation NSE median {np.nanmedian(scores):.3f}")
        return net, scores

    def lumped_period(self, net, a: int, b: int) -> np.ndarray:
        import torch

        warm = self.cfg.train.warmup_days
        s = max(0, a - warm)
        x = torch.from_numpy(self.reader.dynamic_window(self.spec, s, b + 1)).unsqueeze(0).to(self.device)
        net.eval()
        with torch.no_grad():
            qn = net(self.lumped_inputs(x, self.static))[0, a - s:]
        return self.to_physical(qn.float().cpu().numpy())

    def lumped_validation(self, net) -> np.ndarray:
        from .metrics import nse

        sim = self.lumped_period(net, self.v0, self.v1 - 1)
        obs = self.q[self.v0 + 1:self.v1 + 1]
        return np.array([nse(sim[:, n, 0], obs[:, n]) for n in range(len(self.basins))])

    # -- the artefact ----------------------------------------------------------------------------
    def save(self, model_dir: Path, net, lumped, result: TrainResult, state: dict, scores, lumped_scores,
             n_basin_days: int) -> None:
        import dataclasses

        import torch

        from . import artefact

        tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
        tensors.update({f"lumped.{k}": v for k, v in lumped.state_dict().items()})
        tensors["basin_channels"] = torch.from_numpy(self.channels)
        tr = self.cfg.train
        train_cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(tr).items()}
        for k in ("train_period", "validation_period", "test_period"):
            if train_cfg.get(k):
                train_cfg[k] = [str(d) for d in train_cfg[k]]
        basins = []
        for b, s, ls, std in zip(self.basins, scores, lumped_scores, self.basin_std):
            from shapely.geometry import mapping

            poly_ll = _polygon_lonlat(b.polygon, self.grid)
            basins.append({"id": b.id, "name": b.name, "area_km2": float(b.area_km2),
                           "outlet_lon": b.outlet_lonlat[0] if b.outlet_lonlat else None,
                           "outlet_lat": b.outlet_lonlat[1] if b.outlet_lonlat else None,
                           "basin_std": float(std),
                           "validation_nse": _num(s), "lumped_validation_nse": _num(ls),
                           "polygon_lonlat": mapping(poly_ll) if poly_ll is not None else None})
        meta = {
            "hparams": net.hparams,
            "lumped_hparams": lumped.hparams,
            "inputs": self.spec.to_json(),
            "map_outputs": [{"name": self.map_var, **self.reader.attrs(self.map_var)}],
            "grid": self.grid.to_dict(),
            "lead_days": tr.lead_days,
            "warmup_days": tr.warmup_days,
            "dist_scale_km": self.dist_scale,
            "discharge_normalisation": {"quantity": "specific discharge (mm/day = m3/s * 86.4 / km2)",
                                        "mean": self.q_mu, "std": self.q_sd},
            "basins": basins,
            "config": {"train": train_cfg},
            "training": {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                         "validation_nse_median": result.validation_nse_median,
                         "lumped_validation_nse_median": result.lumped_validation_nse_median,
                         "history": state["history"], "seconds": round(result.seconds, 1),
                         "device": str(self.device), "seed": self.seed, "basin_days_seen": n_basin_days,
                         "cube": str(self.reader.path), "cube_days": [str(self.reader.days[0]), str(self.reader.days[-1])]},
        }
        artefact.save(model_dir, tensors, _jsonable(meta))


def lumped_inputs(x, static, basin_ch, area_km2):
    """The lumped LSTM's inputs (B, T, N, C): the basin averages of the dynamic channels
    ``x`` (B, T, C, H, W) and of the static layers (S, H, W), plus log10 of the basin area."""
    import torch

    from .model import basin_average

    b, t = x.shape[:2]
    dyn = basin_average(x, basin_ch)  # (B, T, N, C)
    st = basin_average(static.unsqueeze(0).unsqueeze(0), basin_ch)[0, 0]  # (N, S)
    area = torch.log10(torch.as_tensor(np.maximum(np.asarray(area_km2, dtype="float64"), 1e-3),
                                       dtype=x.dtype, device=x.device)).view(-1, 1)
    st = torch.cat([st, area], dim=1)
    return torch.cat([dyn, st.view(1, 1, *st.shape).expand(b, t, -1, -1)], dim=-1)


def to_discharge(qn: np.ndarray, mu: float, sd: float, area_km2: np.ndarray) -> np.ndarray:
    """Network output (..., N, L), standardised specific discharge → m3/s (never negative).

    The clamp at zero can only reduce the error against an observation (which is >= 0)."""
    spec = np.maximum(mu + sd * np.asarray(qn, dtype="float64"), 0.0)
    return (spec * np.asarray(area_km2, dtype="float64")[:, None] / 86.4).astype("float32")


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return float(o) if math.isfinite(float(o)) else None
    if isinstance(o, np.integer):
        return int(o)
    return o


def _polygon_lonlat(poly, grid):
    if poly is None:
        return None
    from .basins import reproject_geometry

    if grid.crs.to_epsg() == 4326:
        return poly
    return reproject_geometry(poly, grid.crs, "EPSG:4326")


# -- checkpoints (no pickle: safetensors + JSON) -----------------------------------------------------

def save_checkpoint(folder: Path, net, opt, sched, state: dict, best_weights: dict) -> None:
    import torch

    from . import artefact

    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in best_weights.items()})
    opt_sd = opt.state_dict()
    scalars = {}
    for pid, st in opt_sd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val) and val.ndim > 0:
                tensors[f"opt.{pid}.{name}"] = val
            else:
                scalars[f"{pid}.{name}"] = float(val)
    meta = {"state": state, "opt_param_groups": opt_sd["param_groups"], "opt_scalars": scalars,
            "sched": {k: v for k, v in sched.state_dict().items() if isinstance(v, (int, float, str, list, type(None)))}}
    artefact.save(folder, tensors, _jsonable(meta))


def load_checkpoint(folder: Path, net, opt, sched, device):
    import torch

    from . import artefact

    tensors, meta = artefact.load(folder)
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    best = {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("best.")}
    opt_state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = v.to(device)
    for k, v in meta["opt_scalars"].items():
        pid, name = k.split(".", 1)
        opt_state.setdefault(int(pid), {})[name] = torch.tensor(v)
    opt.load_state_dict({"state": opt_state, "param_groups": meta["opt_param_groups"]})
    sd = sched.state_dict()
    sd.update(meta.get("sched", {}))
    sched.load_state_dict(sd)
    state = meta["state"]
    state["best"] = -math.inf if state.get("best") is None else state["best"]
    return state, best


def train(cfg: Config, device: str = "auto", seed: int | None = None, deterministic: bool = False,
          resume: bool = False, epochs: int | None = None, progress: Callable | None = None,
          log: Callable[[str], None] = lambda s: None) -> TrainResult:
    """Run ``hydrocast train`` for ``cfg``; returns the summary."""
    from filelock import FileLock, Timeout

    from .errors import BusyError

    model_dir = cfg.resolve(cfg.train.model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(model_dir.parent / f".{model_dir.name}.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise BusyError(f"{model_dir}: another hydrocast train is writing this model; try later") from None
    try:
        trainer = Trainer(cfg, device=device, seed=seed, deterministic=deterministic, log=log)
        try:
            log(f"training on {trainer.device}: {len(trainer.basins)} basins, inputs "
                f"{', '.join(trainer.spec.dynamic)} + {len(trainer.spec.static)} static layers, grid {trainer.grid.describe()}")
            return trainer.fit(model_dir, epochs=epochs, resume=resume, progress=progress)
        finally:
            # close the cube now, not at some later garbage collection: HDF5 shares one file
            # struct between handles of a process, and a handle freed while another is being
            # opened crashes it
            trainer.reader.close()
    finally:
        lock.release()
