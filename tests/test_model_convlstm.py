"""The ConvLSTM core, the heads' shapes, the NSE* loss and discharge non-negativity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hydrocast.model import (
    ConvLSTM,
    ConvLSTMCell,
    HydroConvLSTM,
    LumpedLSTM,
    basin_average,
    discharge_from_normalised,
    nse_star_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _conv_same_np(x, w, b):
    """Explicit zero-padded 'same' cross-correlation: x (C, H, W), w (O, C, k, k), b (O,)."""
    c, hgt, wid = x.shape
    o, _, k, _ = w.shape
    p = k // 2
    xp = np.zeros((c, hgt + 2 * p, wid + 2 * p))
    xp[:, p:p + hgt, p:p + wid] = x
    out = np.zeros((o, hgt, wid))
    for oc in range(o):
        for i in range(hgt):
            for j in range(wid):
                out[oc, i, j] = b[oc] + np.sum(w[oc] * xp[:, i:i + k, j:j + k])
    return out


def test_cell_matches_hand_computed_step():
    torch.manual_seed(0)
    in_ch, hidden, k = 2, 3, 3
    cell = ConvLSTMCell(in_ch, hidden, k).double()
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.3, size=(4 * hidden, in_ch + hidden, k, k))
    b = rng.normal(0, 0.3, size=4 * hidden)
    with torch.no_grad():
        cell.conv.weight.copy_(torch.from_numpy(w))
        cell.conv.bias.copy_(torch.from_numpy(b))
    x = rng.normal(size=(1, in_ch, 4, 5))
    h = rng.normal(size=(1, hidden, 4, 5))
    c = rng.normal(size=(1, hidden, 4, 5))

    z = _conv_same_np(np.concatenate([x[0], h[0]]), w, b)
    i, f, o, g = (z[j * hidden:(j + 1) * hidden] for j in range(4))  # documented order i, f, o, g
    i, f, o, g = _sigmoid(i), _sigmoid(f), _sigmoid(o), np.tanh(g)
    c_exp = f * c[0] + i * g
    h_exp = o * np.tanh(c_exp)

    h_new, c_new = cell(torch.from_numpy(x), (torch.from_numpy(h), torch.from_numpy(c)))
    np.testing.assert_allclose(c_new[0].detach().numpy(), c_exp, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_new[0].detach().numpy(), h_exp, rtol=1e-10, atol=1e-12)

    # A zero state takes the shortcut (no hidden convolution): still the same arithmetic.
    z0 = _conv_same_np(np.concatenate([x[0], np.zeros_like(h[0])]), w, b)
    i0, o0, g0 = _sigmoid(z0[:hidden]), _sigmoid(z0[2 * hidden:3 * hidden]), np.tanh(z0[3 * hidden:])
    h0, c0 = cell(torch.from_numpy(x), None)
    np.testing.assert_allclose(c0[0].detach().numpy(), i0 * g0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h0[0].detach().numpy(), o0 * np.tanh(i0 * g0), rtol=1e-10, atol=1e-12)


def test_forget_bias_starts_at_one_and_one_fused_conv():
    cell = ConvLSTMCell(4, 5, 3)
    convs = [m for m in cell.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 and convs[0].weight.shape == (20, 9, 3, 3)
    assert torch.all(cell.conv.bias[5:10] == 1.0)
    assert not torch.all(cell.conv.bias[:5] == 1.0)


def test_fused_conv_equals_separate_input_and_hidden_convs():
    torch.manual_seed(2)
    cell = ConvLSTMCell(3, 4, 3).double()
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    h = torch.randn(2, 4, 6, 7, dtype=torch.float64)
    fused = cell.conv(torch.cat([x, h], 1))
    separate = (F.conv2d(x, cell.input_weight, cell.conv.bias, padding=1)
                + F.conv2d(h, cell.hidden_weight, None, padding=1))
    torch.testing.assert_close(fused, separate, rtol=1e-12, atol=1e-12)


def test_sequence_equals_stepping_the_cells():
    torch.manual_seed(3)
    net = ConvLSTM(3, 4, 3, depth=2).double()
    x = torch.randn(2, 5, 3, 6, 6, dtype=torch.float64)
    out, final = net(x)
    inp = [x[:, t] for t in range(5)]
    for cell in net.cells:
        state = (torch.zeros(2, 4, 6, 6, dtype=torch.float64),) * 2  # explicit zeros: full conv path
        for t in range(5):
            state = cell(inp[t], state)
            inp[t] = state[0]
        last = state
    torch.testing.assert_close(out, torch.stack(inp, 1), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(final[-1][0], last[0])
    torch.testing.assert_close(final[-1][1], last[1])


def test_initial_states_are_honoured():
    torch.manual_seed(4)
    net = ConvLSTM(2, 3, 3, depth=2).double()
    x = torch.randn(1, 8, 2, 5, 5, dtype=torch.float64)
    full, full_final = net(x)
    first, state = net(x[:, :5])
    second, chunk_final = net(x[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), full)
    for (h1, c1), (h2, c2) in zip(full_final, chunk_final):
        torch.testing.assert_close(h1, h2)
        torch.testing.assert_close(c1, c2)
    # A non-zero initial state changes the output; a partial one (None = zeros) is allowed.
    warm = [(torch.ones(1, 3, 5, 5, dtype=torch.float64),) * 2, None]
    other, _ = net(x[:, 5:], warm)
    cold, _ = net(x[:, 5:])
    assert (other - cold).abs().max() > 1e-3


def test_gradient_reaches_the_first_day_through_25_steps():
    torch.manual_seed(5)
    net = ConvLSTM(2, 4, 3, depth=2)
    x = torch.randn(1, 25, 2, 6, 6, requires_grad=True)
    out, _ = net(x)
    out[:, -1].sum().backward()
    g0 = x.grad[:, 0]
    assert torch.isfinite(x.grad).all()
    assert g0.abs().max() > 0, "no gradient reaches day 0"
    for p in net.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


CFG = {"n_dynamic": 3, "n_static": 2, "hidden": 6, "depth": 2, "kernel": 3, "lead_days": 4,
       "n_map_outputs": 2, "runoff_features": 3, "n_rbf": 5, "head_hidden": 7}


def _basins(n, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(n, h, w, generator=g) > 0.4).float()
    dist = torch.rand(n, h, w, generator=g) * mask
    return torch.stack([mask, dist], 1)


def test_model_output_shapes_and_hparams_roundtrip():
    torch.manual_seed(6)
    model = HydroConvLSTM(CFG)
    b, t, n, hgt, wid = 2, 5, 3, 9, 11
    x = torch.randn(b, t, 3, hgt, wid)
    out = model({"dynamic": x, "static": torch.randn(2, hgt, wid), "basins": _basins(n, hgt, wid)})
    assert out["q"].shape == (b, t, n, 4)
    assert out["maps"].shape == (b, t, 4, 2, hgt, wid)
    assert out["runoff"].shape == (b, t, 4, hgt, wid)
    assert (out["runoff"] >= 0).all()
    assert len(out["state"]) == 2 and out["state"][0][0].shape == (b, 6, hgt, wid)
    # static maps per window give the same result as one broadcast map
    s = torch.randn(2, hgt, wid)
    torch.testing.assert_close(model({"dynamic": x, "static": s, "basins": _basins(n, hgt, wid)})["q"],
                               model({"dynamic": x, "static": s.expand(b, -1, -1, -1),
                                      "basins": _basins(n, hgt, wid)})["q"])
    rebuilt = HydroConvLSTM(json.loads(json.dumps(model.hparams)))
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt({"dynamic": x, "static": s, "basins": _basins(n, hgt, wid)})["q"],
                               model({"dynamic": x, "static": s, "basins": _basins(n, hgt, wid)})["q"])
    with pytest.raises(ValueError, match="unknown"):
        HydroConvLSTM({**CFG, "hiden": 3})
    with pytest.raises(ValueError, match="missing"):
        HydroConvLSTM({"hidden": 3})


def test_basin_readout_is_independent_per_basin():
    """Basins are read out of the same hidden maps: adding a basin changes no other basin."""
    torch.manual_seed(7)
    model = HydroConvLSTM(CFG)
    x, s = torch.randn(1, 4, 3, 8, 8), torch.randn(2, 8, 8)
    basins = _basins(3, 8, 8)
    q_all = model({"dynamic": x, "static": s, "basins": basins})["q"]
    q_one = model({"dynamic": x, "static": s, "basins": basins[1:2]})["q"]
    torch.testing.assert_close(q_all[:, :, 1:2], q_one)
    assert (q_all[:, :, 0] - q_all[:, :, 2]).abs().max() > 0


def test_lumped_lstm_shapes_and_basin_average():
    torch.manual_seed(8)
    x = torch.rand(2, 3, 2, 4, 5)
    basins = _basins(3, 4, 5)
    avg = basin_average(x, basins)
    assert avg.shape == (2, 3, 3, 2)
    m = basins[1, 0]
    expected = (x[1, 2, 0] * m).sum() / m.sum()
    torch.testing.assert_close(avg[1, 2, 1, 0], expected)
    lstm = LumpedLSTM(2, 5, 4)
    assert lstm(avg).shape == (2, 3, 3, 4)
    assert lstm(avg[:, :, 0]).shape == (2, 3, 4)
    torch.testing.assert_close(lstm(avg)[:, :, 2], lstm(avg[:, :, 2]))


def test_nse_star_loss_by_hand_with_nans():
    pred = torch.tensor([[[1.0, 2.0], [0.0, 3.0], [2.0, 2.0]]])  # (B=1, T=3, N=2)
    obs = torch.tensor([[[1.5, float("nan")], [1.0, 1.0], [float("nan"), 0.0]]])
    std = torch.tensor([0.9, 1.9])
    # valid: (t0, b0) err .5; (t1, b0) err -1; (t1, b1) err 2; (t2, b1) err 2
    w0, w1 = 1 / (0.9 + 0.1) ** 2, 1 / (1.9 + 0.1) ** 2
    expected = (0.25 * w0 + 1.0 * w0 + 4.0 * w1 + 4.0 * w1) / 4
    pred.requires_grad_(True)
    loss = nse_star_loss(pred, obs, std, eps=0.1, basin_dim=-1)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad[0, 0, 1] == 0 and pred.grad[0, 2, 0] == 0  # NaN observations give no gradient
    # default basin axis -2 of a (B, T, N, L) tensor
    p4, o4 = pred.detach().unsqueeze(-1), obs.unsqueeze(-1)
    assert math.isclose(nse_star_loss(p4, o4, std).item(), expected, rel_tol=1e-6)
    # no valid observation: zero, graph kept
    empty = nse_star_loss(pred, torch.full_like(obs, float("nan")), std, basin_dim=-1)
    assert empty.item() == 0.0 and empty.requires_grad


def test_physical_discharge_is_never_negative():
    torch.manual_seed(9)
    model = HydroConvLSTM(CFG)
    with torch.no_grad():
        model.basin_head.b2.fill_(-50.0)  # force strongly negative normalised outputs
        q_norm = model({"dynamic": torch.randn(1, 3, 3, 6, 6), "static": torch.randn(2, 6, 6),
                        "basins": _basins(2, 6, 6)})["q"]
    assert (q_norm < 0).any()
    mean, std = torch.tensor([[10.0], [0.5]]), torch.tensor([[4.0], [0.2]])  # (N, 1)
    q = discharge_from_normalised(q_norm, mean, std)
    assert (q >= 0).all() and (q == 0).any()
    smooth = discharge_from_normalised(q_norm, mean, std, mode="softplus")
    assert (smooth >= 0).all() and (smooth <= q + 0.05 * std * math.log(2) + 1e-6).all()
    # above zero, both are the affine inverse of the normalisation
    qn = torch.tensor([[1.0], [2.0]])
    torch.testing.assert_close(discharge_from_normalised(qn, mean, std), mean + std * qn)
    torch.testing.assert_close(discharge_from_normalised(qn, mean, std, mode="softplus"), mean + std * qn,
                               rtol=1e-4, atol=1e-4)
    # the clamp never increases the error against a non-negative observation
    raw = mean + std * q_norm
    obs = torch.rand_like(raw)
    assert ((q - obs).abs() <= (raw - obs).abs() + 1e-6).all()


def test_channels_last_gives_the_same_result():
    torch.manual_seed(10)
    net = ConvLSTM(3, 4, 3, depth=2).double()
    x = torch.randn(2, 4, 3, 6, 7, dtype=torch.float64)
    plain, _ = net(x)
    net.channels_last = True
    nhwc, _ = net(x)
    torch.testing.assert_close(nhwc, plain)


def test_mixed_precision_keeps_the_cell_state_in_float32():
    torch.manual_seed(11)
    model = HydroConvLSTM(CFG)
    x, s, basins = torch.randn(1, 6, 3, 8, 8), torch.randn(2, 8, 8), _basins(2, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model({"dynamic": x, "static": s, "basins": basins})
    h, c = out["state"][-1]
    assert h.dtype == torch.bfloat16 and c.dtype == torch.float32
    assert torch.isfinite(out["q"].float()).all()
    ref = model({"dynamic": x, "static": s, "basins": basins})["q"]
    assert (out["q"].float() - ref).abs().max() < 0.1  # bf16 is close to float32
