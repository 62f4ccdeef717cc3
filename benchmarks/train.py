"""Training-step benchmark: hydrocast's ConvLSTM core vs a plain reference ConvLSTM.

Run ``python benchmarks/train.py`` (CPU defaults finish in about 2 minutes on 2 cores) or
``python benchmarks/train.py --device cuda --batch 32 --hidden 64``.

What is timed: one training step (forward + backward + Adam step) on random inputs of shape
(batch, days, channels, size, size).

* ``reference``: a textbook ConvLSTM in eager PyTorch, separate input and hidden convolutions per
  step, zero initial states, four gate slices; same depth, hidden width and kernel; fp32.
* ``hydrocast core``: :class:`hydrocast.model.ConvLSTM` with the same loss (mean square of the top
  hidden maps), so the ratio compares the cores only. On CUDA it runs under bf16 autocast
  and channels_last (the fp32 reference keeps PyTorch's default TF32 convolutions).
* ``hydrocast full``: the whole :class:`HydroConvLSTM` (core, basin head for ``--basins`` basins,
  map head) with the NSE* loss on every day after ``--warmup`` days; its throughput is given in
  basin-days per second: batch x (days - warmup) x basins targets per step. For comparison, a
  design that re-runs a window per (basin, issue day) gets ``batch`` basin-days from a step of
  the reference.

Steps are interleaved (reference, core, full, reference, ...) in one process so that a busy
machine slows all of them alike; the figure is the median of the timed steps after one warm-up
step each (``--steps`` rounds, fewer if ``--budget`` seconds run out; at least one).

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` during the step above what was allocated
before it. On CPU, the bytes of the tensors autograd saves for the backward pass (unique storages,
counted with ``torch.autograd.graph.saved_tensors_hooks``): the activation memory that grows with
batch x days x cells, exact and independent of the allocator. An RSS delta is not usable here:
glibc keeps freed blocks, so it depends on which model ran before. The process's peak RSS
(``resource.getrusage().ru_maxrss``) is printed once at the end.
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
from hydrocast.model import ConvLSTM, HydroConvLSTM, nse_star_loss  # noqa: E402


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
    ap.add_argument("--steps", type=int, default=3, help="timed steps per model (median)")
    ap.add_argument("--budget", type=float, default=150.0,
                    help="seconds for the timed rounds; stops early when the next round would not fit")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--no-amp", action="store_true", help="CUDA: run hydrocast in fp32 too")
    ap.add_argument("--no-channels-last", action="store_true",
                    help="CUDA: keep hydrocast in NCHW (default there: channels_last, for tensor cores)")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    b, t, c, s, hid = args.batch, args.days, args.channels, args.size, args.hidden
    amp = cuda and not args.no_amp

    ref = ReferenceConvLSTM(c, hid, args.kernel, args.depth).to(device)
    core = ConvLSTM(c, hid, args.kernel, args.depth).to(device)
    full = HydroConvLSTM({"n_dynamic": c, "n_static": 0, "hidden": hid, "depth": args.depth,
                          "kernel": args.kernel, "lead_days": args.lead_days}).to(device)
    nhwc = cuda and not args.no_channels_last
    if nhwc:
        core.channels_last = full.core.channels_last = True
        core.to(memory_format=torch.channels_last)
        full.to(memory_format=torch.channels_last)
    x = torch.randn(b, t, c, s, s, device=device)
    basins = torch.zeros(args.basins, 2, s, s, device=device)
    for n in range(args.basins):  # nested-ish rectangles with a distance ramp
        basins[n, 0, : s // 2 + n, : s // 2 + n] = 1
        basins[n, 1] = basins[n, 0] * torch.linspace(0, 1, s, device=device).view(1, -1)
    q_obs = torch.randn(b, t, args.basins, args.lead_days, device=device)

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext()

    opts = {name: torch.optim.Adam(m.parameters(), lr=1e-3) for name, m in
            (("reference", ref), ("hydrocast core", core), ("hydrocast full", full))}

    def step_ref():
        opts["reference"].zero_grad(set_to_none=True)
        ref(x).square().mean().backward()
        opts["reference"].step()

    def step_core():
        opts["hydrocast core"].zero_grad(set_to_none=True)
        with autocast():
            out, _ = core(x)
            loss = out.float().square().mean()
        loss.backward()
        opts["hydrocast core"].step()

    def step_full():
        opts["hydrocast full"].zero_grad(set_to_none=True)
        with autocast():
            q = full({"dynamic": x, "basins": basins})["q"]
            loss = nse_star_loss(q[:, args.warmup:].float(), q_obs[:, args.warmup:], 1.0)
        loss.backward()
        opts["hydrocast full"].step()

    steps = {"reference": step_ref, "hydrocast core": step_core, "hydrocast full": step_full}
    times: dict[str, list[float]] = {k: [] for k in steps}
    mem: dict[str, int] = {k: 0 for k in steps}

    def timed(name):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            start = time.perf_counter()
            steps[name]()
            torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            mem[name] = max(mem[name], torch.cuda.max_memory_allocated() - base)
        else:
            with _SavedBytes() as saved:
                start = time.perf_counter()
                steps[name]()
                elapsed = time.perf_counter() - start
            mem[name] = max(mem[name], saved.total)
        return elapsed

    print(f"device {device} ({torch.cuda.get_device_name(device) if cuda else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}; batch {b} x {t} days x {c} ch x {s}x{s}, hidden {hid}, depth {args.depth}, "
          f"kernel {args.kernel}; {args.basins} basins, warm-up {args.warmup} days, {args.lead_days} leads; "
          f"hydrocast {'bf16 autocast' if amp else 'fp32'}{' channels_last' if nhwc else ''}, reference fp32",
          flush=True)
    wall = time.perf_counter()
    for name in steps:  # warm-up (allocator, oneDNN/cuDNN kernel selection)
        timed(name)
    budget_end = time.perf_counter() + args.budget
    for _ in range(args.steps):
        round_start = time.perf_counter()
        for name in steps:
            times[name].append(timed(name))
        if time.perf_counter() + (time.perf_counter() - round_start) > budget_end:
            break

    med = {k: statistics.median(v) for k, v in times.items()}
    basin_days = b * (t - args.warmup) * args.basins
    mem_head = "peak MiB" if cuda else "saved MiB"
    print(f"{'model':<16}{'median s/step':>14}{'min':>8}{'max':>8}{mem_head:>10}   all steps (s)")
    for k, v in times.items():
        print(f"{k:<16}{med[k]:>14.3f}{min(v):>8.3f}{max(v):>8.3f}{mem[k] / 2**20:>10.0f}   "
              + " ".join(f"{a:.2f}" for a in v))
    print(f"speed-up core vs reference (median step time): {med['reference'] / med['hydrocast core']:.2f}x"
          + ("   [target >= 6x on an H100 at batch 32, 30 days, 64x64, hidden 64]" if cuda
             else "   [target >= 1.3x on CPU]"))
    print(f"hydrocast full model: {basin_days / med['hydrocast full']:.1f} basin-days/s "
          f"({basin_days} loss targets per step x {args.lead_days} leads)")
    print(f"one window per (basin, issue day) with the reference core: {b / med['reference']:.2f} basin-days/s "
          f"-> whole-domain seq2seq gives {basin_days / med['hydrocast full'] / (b / med['reference']):.0f}x more")
    if cuda:
        print("memory: torch.cuda.max_memory_allocated during the step, above the allocation before it")
    else:
        print("memory: tensors saved for backward (unique storages); process peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB (ru_maxrss)")
    print(f"benchmark wall time {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
