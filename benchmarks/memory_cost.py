"""What the year-long memory, the observations and the forecast rollout cost (issue 8).

    python benchmarks/memory_cost.py --config sample_data/hydrocast.toml [--epochs 1] [--repeat 3]

Needs the config's cube (run ``hydrocast ingest`` first). Everything runs in this one process on
the same data, so the ratios compare like with like (absolute times on a shared machine do not):

* **training**: the seconds of one epoch (every chunk of the training period: forward,
  backward, optimiser step) and of one validation run, for the defaults before issue 8
  (``memory_days = 0``: random 90-day windows from a zero state, 30 days warm-up) against the
  stateful year-long memory, then with the observation input, then with the forecast rollout
  (if the config has a forecast store), as ratios to the old defaults;
* **predict**: one issue day for one basin spun up over 30 days (old), over ``memory_days``
  (365), and continued from a saved state one day old (what a daily cron run does).

The medians of ``--repeat`` runs are printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median_time(fn, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def _measure(tr, repeat: int) -> tuple[float, float, float, float]:
    """Seconds of one training epoch, one validation run, one predict spun up, one predict continued."""
    import torch

    from hydrocast.forward import run_period
    from hydrocast.model import HydroConvLSTM
    from hydrocast.train import ConvLSTMTask

    net = HydroConvLSTM(tr.hparams)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    task = ConvLSTMTask(tr)

    def epoch():
        for batch in task.batches(1):
            loss, _ = task.loss(net, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()

    i, inp = tr.periods.v1, tr.inputs
    t_epoch = _median_time(epoch, repeat)
    t_val = _median_time(lambda: tr.validation_nse(net), repeat)
    t_pred = _median_time(lambda: run_period(net, inp, i, i, tr.spin), repeat)
    state = run_period(net, inp, i - 1, i - 1, tr.spin).state
    t_cont = _median_time(lambda: run_period(net, inp, i, i, 0, state=state, start=i), repeat)
    return t_epoch, t_val, t_pred, t_cont


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="sample_data/hydrocast.toml")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    import torch

    from hydrocast.config import load
    from hydrocast.train import Trainer

    torch.manual_seed(0)
    base = load(args.config)
    # the defaults before issue 8: random 90-day windows from a zero state (window_days is 45 now)
    variants = [("before issue 8 (memory_days 0)", {"memory_days": 0, "observed_discharge": False,
                                                    "forecast_source": "none", "window_days": 90}),
                ("year-long memory", {"observed_discharge": False, "forecast_source": "none"}),
                ("+ observed discharge", {"forecast_source": "none"}),
                ("+ forecast rollout", {})]
    rows = []
    for label, over in variants:
        cfg = dataclasses.replace(base, train=dataclasses.replace(base.train, **over))
        try:
            tr = Trainer(cfg)
        except Exception as exc:  # e.g. no forecast store: say so and go on
            print(f"{label}: skipped ({str(exc).splitlines()[0]})")
            continue
        try:
            rows.append((label, *_measure(tr, args.repeat), tr.spin))
        finally:
            tr.close()
    if not rows:
        return 1
    ref = rows[0]
    print(f"{'variant':34s} {'epoch s':>8s} {'ratio':>6s} {'valid s':>8s} {'ratio':>6s} "
          f"{'predict s (spin-up days)':>26s} {'ratio':>6s} {'from saved state s':>19s}")
    for label, te, tv, tp, tc, spin in rows:
        print(f"{label:34s} {te:8.2f} {te / ref[1]:6.2f} {tv:8.2f} {tv / ref[2]:6.2f} {tp:19.3f} ({spin:4d}) "
              f"{tp / ref[3]:6.2f} {tc:19.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
