"""The generic training loop, used by the ConvLSTM and the lumped LSTM baseline alike.

One loop: AdamW, gradient clipping, ``ReduceLROnPlateau`` on the validation score (median NSE
over basins, higher is better), early stopping after ``patience`` epochs without improvement,
an optional wall-clock limit, and a checkpoint after every epoch (:mod:`hydrocast.checkpoint`)
so that ``--resume`` continues from the last completed epoch. The best epoch's weights are what
:func:`fit` leaves in the network.

What differs between models is a :class:`Task`: its batches, its loss and its validation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol

import numpy as np

from . import artefact, checkpoint
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
        """Per-basin validation scores (NaN where a basin has none); higher is better."""


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
    if resume and artefact.exists(ckpt):
        state, best_weights = checkpoint.load(ckpt, net, opt, sched, device)
        state.setdefault("basin_days", 0)
        state.setdefault("finished", False)
        resumed_from = state["epoch"]
        log(f"{task.name}: resuming after epoch {state['epoch']} (best validation NSE {state['best']:.3f})")
    elif resume:
        log(f"{task.name}: no checkpoint to resume from; starting afresh")
    epoch = state["epoch"]
    while not state["finished"] and epoch < settings.epochs:
        epoch += 1
        net.train()
        batches = task.batches(epoch)
        if progress:
            progress("describe", f"{task.name} epoch {epoch}/{settings.epochs}")
            progress("start", len(batches) if hasattr(batches, "__len__") else None)
        losses = []
        for batch in batches:
            with autocast(device):
                loss, reported = task.loss(net, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip)
            opt.step()
            losses.append(float(reported.detach()))
            state["basin_days"] += task.n_targets(batch)
            if progress:
                progress("advance", 1)
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
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        state["history"].append({"epoch": epoch, "loss": mean_loss, "validation_nse_median": med,
                                 "lr": opt.param_groups[0]["lr"]})
        log(f"{task.name}: epoch {epoch:3d}  loss {mean_loss:.4f}  validation NSE median {med:.3f}"
            f"{'  *' if improved else ''}  lr {opt.param_groups[0]['lr']:.2g}")
        if state["bad_epochs"] >= settings.patience:
            log(f"{task.name}: early stop: no improvement in {settings.patience} epochs")
            state["finished"] = True
        elif settings.max_minutes and (time.monotonic() - t_start) / 60 >= settings.max_minutes:
            log(f"{task.name}: stop: max_minutes {settings.max_minutes} reached")
            state["finished"] = True
        elif epoch >= settings.epochs:
            state["finished"] = True
        checkpoint.save(ckpt, net, opt, sched, state, best_weights)
    net.load_state_dict(best_weights)
    scores = task.validate(net)
    return FitResult(state, scores, resumed_from, time.monotonic() - t_start, state["history"])
