"""Training checkpoints: the full state of one training loop, resumable, without pickle.

A checkpoint is an artefact folder of kind ``"checkpoint"`` (see :mod:`hydrocast.artefact`:
same crash-safe replacement, checksum and schema check) holding the tensors ``net.*`` (current
weights), ``best.*`` (best weights so far) and ``opt.<param>.<name>`` (optimiser moments), and in
its JSON the loop ``state`` (epoch, best score, best epoch, bad epochs, history, finished), the
optimiser's param groups and scalar state, and the scheduler's state.
"""

from __future__ import annotations

import math
from pathlib import Path

from . import artefact
from .jsonutil import jsonable


def save(folder: Path, net, opt, sched, state: dict, best_weights: dict) -> None:
    import torch

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
            "sched": {k: v for k, v in sched.state_dict().items()
                      if isinstance(v, (int, float, str, list, type(None)))}}
    artefact.save(folder, tensors, jsonable(meta), kind="checkpoint")


def load(folder: Path, net, opt, sched, device) -> tuple[dict, dict]:
    """Restore ``net``, ``opt`` and ``sched`` from ``folder``; returns ``(state, best_weights)``."""
    import torch

    tensors, meta = artefact.load(folder, kind="checkpoint")
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
