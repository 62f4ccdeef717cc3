"""Training-step benchmark: hydrocast's ConvLSTM (fp32, bf16, optionally compiled) against a plain
reference ConvLSTM, in basin-days (samples) per second, all measured in one run.

Run ``python benchmarks/train.py`` (CPU defaults finish in about 3 minutes on 2 cores) or, on a GPU,
``python benchmarks/train.py --device cuda --batch 32 --hidden 64 --compile``.

What is timed: one training step (forward + backward + Adam step) on random inputs of shape
(batch, days, channels, size, size) with the NSE* loss on ``--basins`` basins at ``--lead-days``
leads on every day after ``--warmup`` days. Every variant has the same basin-days per step
(batch x (days - warmup) x basins), so samples per second compare like for like:

* ``reference fp32``: a textbook ConvLSTM in eager PyTorch (separate input and hidden
  convolutions per step, zero initial states, four gate slices; same depth, hidden width and
  kernel) under hydrocast's basin head (:class:`hydrocast.model.BasinHead`), fp32 NCHW. The
  ratio therefore compares the recurrent cores and what surrounds them, not the readout.
* ``hydrocast fp32``: :class:`hydrocast.model.HydroConvLSTM` as training runs it without autocast.
* ``hydrocast bf16``: the same under ``torch.autocast(bfloat16)`` (what ``hydrocast train`` uses
  on CUDA, :func:`hydrocast.forward.autocast`); on CUDA also channels_last (``--no-channels-last``
  to turn off). On a CPU without bf16 units it is slow: it is run there to exercise the code path.
* ``hydrocast bf16 compiled`` (``--compile``): the bf16 model through ``torch.compile`` (its
  compilation is in the untimed warm-up step and printed).
* The design ratio: a plain ConvLSTM that re-runs a window per (basin, issue day) learns
  ``batch`` basin-days per step of the reference core alone; the whole-domain sequence-to-sequence
  design learns the figure above.

Steps are interleaved (reference, hydrocast fp32, bf16, ... then again) in one process so that a
busy machine slows all of them alike; the figure is the median of the timed steps after one
warm-up step each (``--steps`` rounds, fewer if ``--budget`` seconds run out; at least one).

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` during the step above what was allocated
before it. On CPU, the bytes of the tensors autograd saves for the backward pass (unique storages,
counted with ``torch.autograd.graph.saved_tensors_hooks``): the activation memory that grows with
batch x days x cells, exact and independent of the allocator. The process's peak RSS
(``resource.getrusage().ru_maxrss``) is printed once at the end.

Target (issue 10): hydrocast bf16 >= 6x the samples per second of the fp32 reference on an
H100-class GPU, at batch 32, 30 days, 64 x 64 cells, hidden 64.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hydrocast.model import BasinHead, HydroConvLSTM, nse_star_loss  # noqa: E402


class ReferenceConvLSTM(nn.Module):
    """Plain eager ConvLSTM: per step ``conv_x(x_t) + conv_h(h)``, gates i, f, g, o."""

    def __init__(self, in_ch: int, hidden: int, kernel: int, depth: int):
        super().__init__()
        self.hidden = hidden
        self.conv_x = nn.ModuleList(nn.Conv2d(in_ch if d == 0 else hidden, 4 * hidden, kernel, padding=kernel // 2)
                                    for d in range(depth))
        self.conv_h = nn.ModuleList(nn.Conv2d(hidden, 4 * hidden, kernel, padding=kernel // 2, bias=False)
                                    for d in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _, hgt, wid = x.shape
        inp = x
        for conv_x, conv_h in zip(self.conv_x, self.conv_h):
            h = x.new_zeros(b, self.hidden, hgt, wid)
            c = x.new_zeros(b, self.hidden, hgt, wid)
            outs = []
            for step in range(t):
                i, f, g, o = (conv_x(inp[:, step]) + conv_h(h)).chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                outs.append(h)
            inp = torch.stack(outs, dim=1)
        return inp


class _SavedBytes:
    """Bytes of the unique storages autograd saves for backward while the block runs."""

    def __enter__(self):
        self._seen: dict[int, int] = {}

        def pack(t):
            st = t.untyped_storage()
            self._seen[st.data_ptr()] = st.nbytes()
            return t

        self._hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        self.total = sum(self._seen.values())


class ReferenceModel(nn.Module):
    """The reference core under hydrocast's basin head: the same outputs and targets as the model."""

    def __init__(self, in_ch: int, hidden: int, kernel: int, depth: int, lead_days: int):
        super().__init__()
        self.core = ReferenceConvLSTM(in_ch, hidden, kernel, depth)
        self.head = BasinHead(hidden, lead_days)

    def forward(self, x: torch.Tensor, basins: torch.Tensor) -> torch.Tensor:
        return self.head(self.core(x), basins)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--size", type=int, default=64, help="grid cells per side")
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--channels", type=int, default=6, help="dynamic input channels")
    ap.add_argument("--basins", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=10, help="days without loss (seq2seq warm-up)")
    ap.add_argument("--lead-days", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant (median)")
    ap.add_argument("--budget", type=float, default=150.0,
                    help="seconds for the timed rounds; stops early when the next round would not fit")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16 variants")
    ap.add_argument("--compile", action="store_true", help="also time the bf16 model through torch.compile")
    ap.add_argument("--no-channels-last", action="store_true",
                    help="CUDA: keep the bf16 variants in NCHW (default there: channels_last, for tensor cores)")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    b, t, c, s, hid = args.batch, args.days, args.channels, args.size, args.hidden
    hp = {"n_dynamic": c, "n_static": 0, "hidden": hid, "depth": args.depth, "kernel": args.kernel,
          "lead_days": args.lead_days}
    x = torch.randn(b, t, c, s, s, device=device)
    basins = torch.zeros(args.basins, 2, s, s, device=device)
    for n in range(args.basins):  # nested-ish rectangles with a distance ramp
        basins[n, 0, : s // 2 + n, : s // 2 + n] = 1
        basins[n, 1] = basins[n, 0] * torch.linspace(0, 1, s, device=device).view(1, -1)
    q_obs = torch.randn(b, t, args.basins, args.lead_days, device=device)
    nhwc = cuda and not args.no_channels_last

    def loss_of(q):
        return nse_star_loss(q[:, args.warmup:].float(), q_obs[:, args.warmup:], 1.0)

    variants: dict[str, dict] = {}

    def add(name: str, model: nn.Module, call, bf16: bool):
        variants[name] = {"model": model, "call": call, "bf16": bf16, "times": [], "mem": 0,
                          "opt": torch.optim.Adam(model.parameters(), lr=1e-3)}

    ref = ReferenceModel(c, hid, args.kernel, args.depth, args.lead_days).to(device)
    add("reference fp32", ref, lambda m: m(x, basins), False)
    add("hydrocast fp32", HydroConvLSTM(hp).to(device), lambda m: m({"dynamic": x, "basins": basins})["q"], False)
    if not args.no_bf16:
        net = HydroConvLSTM(hp).to(device)
        if nhwc:
            net.core.channels_last = True
            net.to(memory_format=torch.channels_last)
        add("hydrocast bf16" + (" NHWC" if nhwc else ""), net, lambda m: m({"dynamic": x, "basins": basins})["q"],
            True)
        if args.compile:
            comp = HydroConvLSTM(hp).to(device)
            if nhwc:
                comp.core.channels_last = True
                comp.to(memory_format=torch.channels_last)
            compiled = torch.compile(comp)
            add("hydrocast bf16 compiled", comp, lambda m, f=compiled: f({"dynamic": x, "basins": basins})["q"], True)

    def step(v: dict) -> None:
        v["opt"].zero_grad(set_to_none=True)
        ctx = torch.autocast(device.type, dtype=torch.bfloat16) if v["bf16"] else nullcontext()
        with ctx:
            loss = loss_of(v["call"](v["model"]))
        loss.backward()
        v["opt"].step()

    def timed(v: dict) -> float:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            start = time.perf_counter()
            step(v)
            torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            v["mem"] = max(v["mem"], torch.cuda.max_memory_allocated() - base)
        else:
            with _SavedBytes() as saved:
                start = time.perf_counter()
                step(v)
                elapsed = time.perf_counter() - start
            v["mem"] = max(v["mem"], saved.total)
        return elapsed

    print(f"device {device} ({torch.cuda.get_device_name(device) if cuda else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}; batch {b} x {t} days x {c} ch x {s}x{s}, hidden {hid}, depth {args.depth}, "
          f"kernel {args.kernel}; {args.basins} basins, warm-up {args.warmup} days, {args.lead_days} leads",
          flush=True)
    wall = time.perf_counter()
    for name, v in variants.items():  # warm-up (allocator, oneDNN/cuDNN kernel selection, compilation)
        first = timed(v)
        if "compiled" in name:
            print(f"{name}: first step (compilation) {first:.1f} s", flush=True)
    budget_end = time.perf_counter() + args.budget
    for _ in range(args.steps):
        round_start = time.perf_counter()
        for v in variants.values():
            v["times"].append(timed(v))
        if time.perf_counter() + (time.perf_counter() - round_start) > budget_end:
            break

    basin_days = b * (t - args.warmup) * args.basins
    ref_rate = basin_days / statistics.median(variants["reference fp32"]["times"])
    mem_head = "peak MiB" if cuda else "saved MiB"
    print(f"{'variant':<26}{'median s/step':>14}{'basin-days/s':>14}{'x reference':>13}{mem_head:>11}   all steps (s)")
    for name, v in variants.items():
        med = statistics.median(v["times"])
        print(f"{name:<26}{med:>14.3f}{basin_days / med:>14.1f}{basin_days / med / ref_rate:>12.2f}x"
              f"{v['mem'] / 2**20:>11.0f}   " + " ".join(f"{a:.2f}" for a in v["times"]))
    print(f"({basin_days} basin-days per step = batch {b} x {t - args.warmup} days after the warm-up x {args.basins} "
          f"basins, each at {args.lead_days} leads)")
    if cuda:
        print("target: hydrocast bf16 >= 6x the reference on an H100-class GPU (batch 32, 30 days, 64x64, hidden 64)")
    one = b / statistics.median(variants["reference fp32"]["times"])
    best = max(basin_days / statistics.median(v["times"]) for k, v in variants.items() if k != "reference fp32")
    print(f"design ratio: one window per (basin, issue day) through the reference learns <= {one:.2f} basin-days/s; "
          f"the whole-domain sequence-to-sequence model {best:.1f} ({best / one:.0f}x)")
    if cuda:
        print("memory: torch.cuda.max_memory_allocated during the step, above the allocation before it")
    else:
        print("memory: tensors saved for backward (unique storages); process peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB (ru_maxrss)")
    print(f"benchmark wall time {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
