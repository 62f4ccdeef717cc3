"""Multi-process training: ``torchrun --nproc-per-node N -m hydrocast train ...`` (the helpers).

torchrun starts N processes with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment;
with ``WORLD_SIZE > 1`` :func:`session` joins them in one process group (``gloo`` on CPU, ``nccl``
when the device is CUDA, GPU ``LOCAL_RANK`` per process). Outside torchrun (or with one process)
every helper here is the identity: rank 0 of 1, :func:`wrap` returns the network itself,
:func:`loss_weights` returns None, and the single-process code path is the one that ran before.

What the processes split, and what agrees with one process on the same global batch:

* **Streams.** Each batch is the same ``[train] batch_size`` streams; process ``r`` trains on the
  rows :func:`share` gives it (contiguous, sizes differing by one at most), so a stream's
  recurrent state stays on one process. Every process builds the whole batch (the hold-out and
  stand-in draws of a chunk come from one generator, stream after stream) and keeps its rows.
* **Loss and gradients.** The network is wrapped in ``DistributedDataParallel``, which averages
  the gradients over the N processes. :func:`loss_weights` scales each local mean loss by
  ``N * n_local / n_global`` (n = the valid targets of that term), so the averaged gradient is the
  gradient of the global mean over every valid target of the batch: the loss one process would
  minimise on the same batch, up to the order of float32 summation.
* **Validation.** The basins are shared out the same way; each process scores its own and
  :func:`gather_rows` puts the per-basin scores together, byte for byte the same on every
  process: the learning-rate schedule and early stopping take the same decision everywhere.
* **Writes.** Only rank 0 writes checkpoints, the model artefact, log lines and progress; the
  others wait for it at the end (:func:`barrier`).

A process that fails leaves :func:`session` through its ``finally`` (the process group is
destroyed); a peer blocked in a collective then gets an error at once (gloo: the connection is
closed; at the latest after :data:`TIMEOUT`), and torchrun ends the other processes. Rank 0
exits with the exit code of its error, as in one process.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from datetime import timedelta

import numpy as np

from .errors import ConfigError, MissingInputError

#: the longest one process waits for another in a collective: rank 0 alone calibrates the forecast
#: distribution and writes the artefact while the others wait at the final barrier
TIMEOUT = timedelta(minutes=60)
#: seconds a failing process other than rank 0 waits before it leaves (see :func:`session`)
GRACE_S = 5.0


def launched() -> bool:
    """Started by torchrun with more than one process (``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def is_distributed() -> bool:
    """A process group of more than one process is initialised (inside :func:`session`)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without torchrun); read from the environment before :func:`session`."""
    return int(os.environ.get("RANK", "0")) if launched() else 0


def world_size() -> int:
    return int(os.environ["WORLD_SIZE"]) if launched() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if launched() else 0


def is_main() -> bool:
    return rank() == 0


def rank_device(device):
    """The device of this process: under torchrun a CUDA device is GPU ``LOCAL_RANK``."""
    import torch

    if not launched() or device.type != "cuda":
        return device
    if device.index is not None and device.index != local_rank():
        raise ConfigError(f"--device {device}: under torchrun each process takes the GPU of its LOCAL_RANK; "
                          "use --device cuda (or auto)")
    return torch.device("cuda", local_rank())


@contextmanager
def session(device):
    """Join torchrun's process group for the block (nothing without torchrun, or when a group
    is already there); destroyed on the way out, also on an error.

    A process other than rank 0 that fails waits :data:`GRACE_S` seconds before it leaves: when
    its error is rank 0's failure (a closed connection), rank 0 then reports its own error and
    exits with its own code first, and torchrun stops this process (without the wait, torchrun
    often saw this process fail first and SIGTERMed rank 0 while it was reporting)."""
    import torch
    import torch.distributed as dist

    if not launched() or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(rank_device(device))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    try:
        yield
    except BaseException:
        if not is_main():
            time.sleep(GRACE_S)
        raise
    finally:
        dist.destroy_process_group()


def share(n: int, r: int | None = None) -> range:
    """Rank ``r``'s (default: this process's) contiguous share of ``n`` items (all of them in one
    process); the shares of ranks 0..N-1 cover 0..n-1 in order, sizes differ by one at most."""
    w = world_size() if is_distributed() else 1
    r = (rank() if w > 1 else 0) if r is None else r
    return range(r * n // w, (r + 1) * n // w)


def wrap(net, device):
    """``net`` in ``DistributedDataParallel`` in a process group, else ``net`` itself.

    The recurrent state carried between chunks is a detached input of the forward (and the
    output state is detached by the task), so DDP needs nothing special for it: every parameter
    takes part in every step's loss, its gradients are averaged in buckets during the backward."""
    if not is_distributed():
        return net
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=ids)


def _device():
    """Where this process group's collectives take their tensors (NCCL: the process's GPU)."""
    import torch
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _tensor(values, dtype):
    import torch

    return torch.as_tensor(values, dtype=dtype).to(_device())


def _all_reduce(values, dtype, op: str = "sum"):
    import torch
    import torch.distributed as dist

    t = _tensor(values, dtype)
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return t.to(torch.device("cpu"))


def loss_weights(*counts):
    """Per loss term, the factor ``N * n_local / n_global`` on this process's mean loss over its
    ``n_local`` valid targets (``counts``: 0-d tensors, one all-reduce for all of them), so that
    DDP's average of the N gradients is the gradient of the mean over all ``n_global`` targets.
    None in a single process (no factor at all: the loss is what it always was)."""
    if not is_distributed():
        return None
    import torch
    import torch.distributed as dist

    local = torch.stack([c.detach().to(torch.float64).reshape(()) for c in counts])
    total = local.to(_device(), copy=True)
    dist.all_reduce(total)
    w = dist.get_world_size() * local / total.to(local.device).clamp_min(1)
    return list(w.to(torch.float32).unbind())


def average(x: float) -> float:
    """The mean of ``x`` over the processes (``x`` itself in one process)."""
    if not is_distributed():
        return x
    import torch
    import torch.distributed as dist

    return float(_all_reduce([x], torch.float64)[0]) / dist.get_world_size()


def total(x: int) -> int:
    """The sum of ``x`` over the processes (``x`` itself in one process)."""
    if not is_distributed():
        return x
    import torch

    return int(_all_reduce([x], torch.int64)[0])


def any_rank(flag: bool) -> bool:
    """True on every process when ``flag`` is true on any (``flag`` in one process): one decision
    for all, e.g. a wall-clock limit that one process reaches a moment before the others."""
    if not is_distributed():
        return bool(flag)
    import torch

    return bool(_all_reduce([int(bool(flag))], torch.int64, "max")[0])


def same_everywhere(flag: bool, what: str) -> bool:
    """``flag``, checked to be the same on every process (MissingInputError naming ``what`` if not)."""
    if not is_distributed():
        return bool(flag)
    import torch

    hi, neg_lo = (int(v) for v in _all_reduce([int(bool(flag)), -int(bool(flag))], torch.int64, "max"))
    if hi != -neg_lo:
        raise MissingInputError(f"{what}: seen by some of the torchrun processes only; every process must "
                                "read the same folder (a shared file system)")
    return bool(flag)


def gather_rows(local: np.ndarray, n: int) -> np.ndarray:
    """The ``(n, ...)`` array whose rows :func:`share` ``(n, r)`` are rank r's ``local`` (float64),
    the same bytes on every process (``local`` itself in one process)."""
    if not is_distributed():
        return local
    import torch
    import torch.distributed as dist

    mine = share(n)
    local = np.asarray(local, dtype="float64")
    full = np.full((n, *local.shape[1:]), np.nan)
    full[mine.start:mine.stop] = local
    t = _tensor(full, torch.float64)
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t)
    out = np.empty_like(full)
    for r, part in enumerate(parts):
        rows = share(n, r)
        out[rows.start:rows.stop] = part.cpu().numpy()[rows.start:rows.stop]
    return out


def barrier() -> None:
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()


def main_says(flag: bool) -> bool:
    """Rank 0's ``flag`` on every process (``flag`` in one process), e.g. "rank 0 holds the lock"."""
    if not is_distributed():
        return bool(flag)
    import torch
    import torch.distributed as dist

    t = _tensor([int(bool(flag))], torch.int64)
    dist.broadcast(t, 0)
    return bool(t.cpu()[0])
