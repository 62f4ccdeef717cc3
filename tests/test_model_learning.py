"""The model learns: it overfits a tiny task, and it learns what only maps can tell.

The second test is the reason the project exists: the same amount of rain gives a response after
1 day when it falls near the outlet and after 3 days when it falls far up the basin. A lumped LSTM
sees only the basin-average rain, identical in both cases, so it cannot know when the water will
arrive; the ConvLSTM sees where it rained and reads the basin out with the flow distance.
"""

from __future__ import annotations

import time

import pytest
import torch

from hydrocast.model import HydroConvLSTM, LumpedLSTM, basin_average, nse_star_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def _nse(pred: torch.Tensor, obs: torch.Tensor) -> float:
    return float(1 - ((pred - obs) ** 2).sum() / ((obs - obs.mean()) ** 2).sum())


def test_overfits_a_tiny_task():
    torch.manual_seed(0)
    b, t, n, hgt, wid, warmup = 3, 12, 2, 8, 8, 2
    cfg = {"n_dynamic": 2, "n_static": 1, "hidden": 8, "depth": 1, "lead_days": 2, "n_map_outputs": 1}
    model = HydroConvLSTM(cfg)
    x = torch.randn(b, t, 2, hgt, wid)
    static = torch.randn(1, hgt, wid)
    mask = torch.zeros(n, hgt, wid)
    mask[0, :, :5] = 1
    mask[1, 2:, 3:] = 1
    dist = torch.rand(n, hgt, wid) * mask
    basins = torch.stack([mask, dist], 1)
    q_obs = torch.randn(b, t, n, 2)
    q_obs[0, 5, 1, 0] = float("nan")
    maps_obs = torch.randn(b, t, 2, 1, hgt, wid)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss_fn():
        out = model({"dynamic": x, "static": static, "basins": basins})
        return (nse_star_loss(out["q"][:, warmup:], q_obs[:, warmup:], 1.0)
                + ((out["maps"][:, warmup:] - maps_obs[:, warmup:]) ** 2).mean() * 0.01)

    first = loss_fn().item()
    for _ in range(300):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    final = loss_fn().item()
    print(f"overfit: loss {first:.3f} -> {final:.4f}")
    assert final < 0.05 * first, (first, final)


def _rain_location_data(n_seq: int, t: int, gen: torch.Generator):
    """A 3 x 10 strip draining to column 0. Each day, with probability 0.35, rain falls on the
    three columns next to the outlet or on the three farthest ones (same total, amount 0.5..1.5);
    the outlet's discharge is that amount 1 day later (near) or 3 days later (far)."""
    hgt, wid = 3, 10
    rain = torch.zeros(n_seq, t, 1, hgt, wid)
    q = torch.zeros(n_seq, t + 3)
    event = torch.rand(n_seq, t, generator=gen) < 0.35
    far = torch.rand(n_seq, t, generator=gen) < 0.5
    amount = 0.5 + torch.rand(n_seq, t, generator=gen)
    for s in range(n_seq):
        for d in range(t):
            if event[s, d]:
                cols = slice(7, 10) if far[s, d] else slice(0, 3)
                rain[s, d, 0, :, cols] = amount[s, d]
                q[s, d + (3 if far[s, d] else 1)] += amount[s, d]
    # q_next[:, d] is the discharge of day d + 1: the lead-1 target of the forecast issued on day d
    q_next = q[:, 1:t + 1]
    return rain, q_next


def test_rain_location_decides_timing_convlstm_learns_it_lumped_cannot():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(42)
    t, warmup = 40, 4
    rain_tr, q_tr = _rain_location_data(24, t, gen)
    rain_te, q_te = _rain_location_data(16, t, gen)
    mean, std = q_tr.mean(), q_tr.std()
    z_tr, z_te = (q_tr - mean) / std, (q_te - mean) / std

    hgt, wid = 3, 10
    mask = torch.ones(1, hgt, wid)
    dist = torch.arange(wid, dtype=torch.float32).expand(1, hgt, wid) / (wid - 1)
    basins = torch.stack([mask, dist], 1)  # (1, 2, H, W)

    start = time.perf_counter()
    model = HydroConvLSTM({"n_dynamic": 1, "hidden": 8, "depth": 1, "lead_days": 1,
                           "runoff_features": 2, "n_rbf": 4, "head_hidden": 8})
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(250):
        opt.zero_grad()
        q = model({"dynamic": rain_tr, "basins": basins})["q"][:, warmup:, 0, 0]
        loss = nse_star_loss(q, z_tr[:, warmup:], 1.0)
        loss.backward()
        opt.step()
    with torch.no_grad():
        q = model({"dynamic": rain_te, "basins": basins})["q"][:, warmup:, 0, 0]
    nse_conv = _nse(q, z_te[:, warmup:])
    t_conv = time.perf_counter() - start

    start = time.perf_counter()
    lumped = LumpedLSTM(1, 16, 1)
    opt = torch.optim.Adam(lumped.parameters(), lr=1e-2)
    x_tr, x_te = basin_average(rain_tr, basins), basin_average(rain_te, basins)  # (B, T, 1, 1)
    for _ in range(250):
        opt.zero_grad()
        q = lumped(x_tr)[:, warmup:, 0, 0]
        loss = nse_star_loss(q, z_tr[:, warmup:], 1.0)
        loss.backward()
        opt.step()
    with torch.no_grad():
        q = lumped(x_te)[:, warmup:, 0, 0]
    nse_lumped = _nse(q, z_te[:, warmup:])
    t_lumped = time.perf_counter() - start

    print(f"NSE ConvLSTM {nse_conv:.3f} ({t_conv:.1f} s), lumped LSTM {nse_lumped:.3f} ({t_lumped:.1f} s)")
    assert nse_conv > 0.8
    assert nse_lumped < 0.65
    assert nse_conv - nse_lumped > 0.25
