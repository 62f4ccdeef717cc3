"""The generic training loop, used by the ConvLSTM and the lumped LSTM baseline alike.

One loop: AdamW, gradient clipping, ``ReduceLROnPlateau`` on the validation score (median NSE
over basins, higher is better), early stopping after ``patience`` epochs without improvement,
an optional wall-clock limit, and a checkpoint after every epoch (:mod:`hydrocast.checkpoint`)
so that ``--resume`` continues from the last completed epoch. The best epoch's weights are what
:func:`fit` leaves in the network.

What differs between models is a :class:`Task`: its batches, its loss and its validation.

Under torchrun (:mod:`hydrocast.distributed`) the same loop runs in every process: the network
is trained through ``DistributedDataParallel`` (its gradients averaged over the processes), the
task's batches and losses are already this process's share, weighted; the epoch's loss is the
mean over the processes of their weighted losses (the global batches' loss) and the basin-days
their sum; the validation scores are gathered (the same vector on every process, so every
process takes the same schedule and early-stopping decision; the wall-clock limit stops all
when one reaches it), and only rank 0 writes the checkpoint (the others never read it during
the run: they meet rank 0 again at the next step's gradient all-reduce).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol

import numpy as np

from . import artefact, checkpoint, distributed
from .forward import autocast


@dataclass
class LoopSettings:
    epochs: int
    learning_rate: float
    weight_decay: float
    grad_clip: float
    patience: int
    max_minutes: float = 0.0
    lr_factor: float = 0.5
    lr_patience: int = 2


class Task(Protocol):
    name: str

    def batches(self, epoch: int) -> Iterable[dict]:
        """The epoch's batches (dicts of tensors on the device)."""

    def loss(self, net, batch: dict):
        """``(loss to minimise, discharge loss to report)``."""

    def n_targets(self, batch: dict) -> int:
        """Basin-days with a discharge target in the batch (for the record)."""

    def validate(self, net) -> np.ndarray:
        """Per-basin validation scores (NaN where a basin has none); higher is better. ``net`` is
        the bare network (never the DDP wrapper); under torchrun the scores of all basins, the
        same on every process."""


@dataclass
class FitResult:
    state: dict
    scores: np.ndarray
    resumed_from: int = 0
    seconds: float = 0.0
    history: list = field(default_factory=list)


def median_score(scores: np.ndarray) -> float:
    return float(np.nanmedian(scores)) if np.isfinite(scores).any() else -math.inf


def fit(net, task: Task, settings: LoopSettings, ckpt: Path, device, resume: bool = False,
        progress: Callable | None = None, log: Callable[[str], None] = lambda s: None) -> FitResult:
    """Train ``net`` on ``task``; ``ckpt`` is this loop's checkpoint folder."""
    import torch

    t_start = time.monotonic()
    opt = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=settings.lr_factor,
                                                       patience=settings.lr_patience)
    state = {"epoch": 0, "best": -math.inf, "best_epoch": 0, "bad_epochs": 0, "history": [], "basin_days": 0,
             "finished": False}
    best_weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
    resumed_from = 0
    found = resume and distributed.same_everywhere(artefact.exists(ckpt), f"{ckpt} (the checkpoint)")
    if found:
        state, best_weights = checkpoint.load(ckpt, net, opt, sched, device)
        state.setdefault("basin_days", 0)
        state.setdefault("finished", False)
        resumed_from = state["epoch"]
        log(f"{task.name}: resuming after epoch {state['epoch']} (best validation NSE {state['best']:.3f})")
    elif resume:
        log(f"{task.name}: no checkpoint to resume from; starting afresh")
    epoch = state["epoch"]
    model = distributed.wrap(net, device)  # net itself in one process
    while not state["finished"] and epoch < settings.epochs:
        epoch += 1
        net.train()
        batches = task.batches(epoch)
        if progress:
            progress("describe", f"{task.name} epoch {epoch}/{settings.epochs}")
            progress("start", len(batches) if hasattr(batches, "__len__") else None)
        losses, basin_days = [], 0
        for batch in batches:
            with autocast(device):
                loss, reported = task.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip)
            opt.step()
            losses.append(float(reported.detach()))
            basin_days += task.n_targets(batch)
            if progress:
                progress("advance", 1)
        state["basin_days"] += distributed.total(basin_days)
        scores = task.validate(net)
        med = median_score(scores)
        sched.step(med)
        improved = med > state["best"] + 1e-4
        if improved:
            state.update(best=med, best_epoch=epoch, bad_epochs=0)
            best_weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        mean_loss = distributed.average(float(np.mean(losses)) if losses else float("nan"))
        state["history"].append({"epoch": epoch, "loss": mean_loss, "validation_nse_median": med,
                                 "lr": opt.param_groups[0]["lr"]})
        log(f"{task.name}: epoch {epoch:3d}  loss {mean_loss:.4f}  validation NSE median {med:.3f}"
            f"{'  *' if improved else ''}  lr {opt.param_groups[0]['lr']:.2g}")
        if state["bad_epochs"] >= settings.patience:
            log(f"{task.name}: early stop: no improvement in {settings.patience} epochs")
            state["finished"] = True
        elif distributed.any_rank(settings.max_minutes and (time.monotonic() - t_start) / 60 >= settings.max_minutes):
            log(f"{task.name}: stop: max_minutes {settings.max_minutes} reached")
            state["finished"] = True
        elif epoch >= settings.epochs:
            state["finished"] = True
        if distributed.is_main():
            checkpoint.save(ckpt, net, opt, sched, state, best_weights)
    net.load_state_dict(best_weights)
    scores = task.validate(net)
    return FitResult(state, scores, resumed_from, time.monotonic() - t_start, state["history"])
