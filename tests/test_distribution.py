"""The forecast distribution: quantiles that never cross, the pinball loss, the spread calibration,
and the guarantee that the distribution part leaves the deterministic forecast alone."""

import numpy as np
import pytest
import torch
from scipy.stats import norm

from hydrocast.model import (
    QUANTILE_LEVELS,
    HydroConvLSTM,
    LumpedLSTM,
    fit_persistence_weight,
    fit_spread_scale,
    fit_update_gain,
    quantile_loss,
    quantiles_around,
)

Q = len(QUANTILE_LEVELS)
MED = QUANTILE_LEVELS.index(0.5)


def test_levels_hold_the_median_and_the_50_and_90_percent_intervals():
    for level in (0.05, 0.25, 0.5, 0.75, 0.95):
        assert any(abs(x - level) < 1e-9 for x in QUANTILE_LEVELS)
    assert np.allclose(np.diff(QUANTILE_LEVELS), 0.05)


def test_quantiles_around_shift_the_median_and_stack_softplus_gaps_outwards():
    raw = torch.randn(2, 3, Q) * 3
    center = torch.randn(2, 3)
    qq = quantiles_around(center, raw)
    gaps = np.log1p(np.exp(raw[..., 1:].numpy()))  # softplus by hand
    c = center.numpy() + raw[..., 0].numpy()  # the median: the deterministic forecast plus a shift
    assert qq.shape == (2, 3, Q)
    assert np.allclose(qq[..., MED].numpy(), c)
    # by hand: level MED-1 is one gap below, level MED+1 one gap above, and so on outwards
    for k in range(MED):
        assert np.allclose(qq[..., k].numpy(), c - gaps[..., k:MED].sum(-1), atol=1e-5)
        assert np.allclose(qq[..., MED + 1 + k].numpy(), c + gaps[..., MED:MED + 1 + k].sum(-1), atol=1e-5)
    assert (qq.diff(dim=-1) >= 0).all()


def test_quantile_loss_is_the_pinball_loss_by_hand_with_missing_observations_masked():
    torch.manual_seed(0)
    qq = torch.sort(torch.randn(1, 4, 2, 1, Q), dim=-1).values  # (B, T, N, L, Q)
    obs = torch.randn(1, 4, 2, 1)
    obs[0, 1, 0, 0] = float("nan")
    std = torch.tensor([0.5, 2.0])
    got = quantile_loss(qq, obs, std).item()
    total, count = 0.0, 0
    for t in range(4):
        for n in range(2):
            o = obs[0, t, n, 0].item()
            if np.isnan(o):
                continue
            for k, tau in enumerate(QUANTILE_LEVELS):
                e = o - qq[0, t, n, 0, k].item()
                total += (tau * e if e >= 0 else (tau - 1) * e) / (std[n].item() + 0.1)
                count += 1
    assert got == pytest.approx(total / count, rel=1e-5)


def test_twice_the_mean_pinball_loss_of_exact_gaussian_quantiles_is_close_to_the_crps():
    # CRPS = 2 * integral over tau of the pinball loss; the 19 levels cover 0.05..0.95 only, so the
    # approximation misses the tails: it must still land within 15 % of the closed form
    rng = np.random.default_rng(1)
    obs = torch.as_tensor(rng.normal(size=(20000, 1, 1)), dtype=torch.float32)
    qq = torch.as_tensor(norm.ppf(QUANTILE_LEVELS), dtype=torch.float32).expand(20000, 1, 1, Q)
    approx = 2 * quantile_loss(qq, obs, 1.0, eps=0.0).item()
    z = obs.numpy()
    crps = float(np.mean(z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi)))
    assert approx == pytest.approx(crps, rel=0.15)


def test_fit_spread_scale_recovers_the_factor_each_quantile_needs():
    rng = np.random.default_rng(2)
    T, N = 4000, 2
    center = np.zeros((T, N, 2))
    z = norm.ppf(QUANTILE_LEVELS)
    # lead 1: twice too narrow everywhere; lead 2: the right tails but a middle twice too wide
    # (quantile distances |z| doubled where |z| < 1, i.e. levels 0.2 .. 0.8)
    qq = np.empty((T, N, 2, Q))
    qq[..., 0, :] = 0.5 * z
    inner = np.abs(z) < 1
    qq[..., 1, :] = np.where(inner, 2.0 * z, z)
    obs = rng.normal(size=(T, N, 2))
    obs[:10, 0, 0] = np.nan
    scale = np.array(fit_spread_scale(center, qq, obs))
    assert scale.shape == (2, Q)
    off = np.arange(Q) != MED  # the median sits on the centre here: any factor fits it
    assert np.abs(scale[0, off] - 2.0).max() < 0.45  # the levels next to the median are the noisiest
    assert np.median(scale[0, off]) == pytest.approx(2.0, abs=0.1)
    mid = inner & off
    assert np.median(scale[1, mid]) == pytest.approx(0.5, abs=0.1)
    assert np.median(scale[1, ~inner]) == pytest.approx(1.0, abs=0.1)
    assert (np.array(fit_spread_scale(center, qq, np.full_like(obs, np.nan))) == 1.0).all()


def _streams(b=1, t=5, h=6, w=6, n=2, lead=3):
    torch.manual_seed(3)
    return {"dynamic": torch.randn(b, t, 2, h, w), "static": torch.randn(1, h, w),
            "basins": torch.rand(n, 2, h, w), "basin_area_km2": torch.tensor([10.0, 20.0]),
            "obs": torch.randn(b, t, n), "obs_basins": torch.rand(n, h, w), "obs_index": torch.arange(n),
            "forecast": torch.randn(b, t, lead, 2, h, w)}


def test_fit_update_gain_is_the_weighted_slope_of_the_residuals_on_the_issue_day_errors():
    """Residuals that are 0.7 x / 0.3 x / 0 x the issue-day error plus noise give back those gains;
    the basins are weighted 1 / (std + 0.1)^2 as in training (a noisy basin with another slope and
    a large std barely counts): the same as a least-squares fit through the origin
    (np.linalg.lstsq) on sqrt-weighted data; missing values are skipped; a negative slope is
    clipped to 0, more than 1 to 1, and a lead without data gives 0."""
    rng = np.random.default_rng(0)
    T, N = 3000, 3
    err = rng.normal(size=(T, N))
    center = rng.normal(size=(T, N, 3))
    true = np.array([0.7, 0.3, 0.0])
    obs = center + err[:, :, None] * true + 0.2 * rng.normal(size=(T, N, 3))
    obs[:, 2, :] = center[:, 2, :] + err[:, 2, None] * 1.0 + 3.0 * rng.normal(size=(T, 3))  # the noisy basin
    std = np.array([0.5, 0.5, 5.0])
    obs[rng.random(size=obs.shape) < 0.1] = np.nan
    gain = np.array(fit_update_gain(center, err, obs, std))
    for l in range(2):
        r, e = obs[..., l] - center[..., l], err
        ok = np.isfinite(r)
        sw = np.sqrt(np.broadcast_to(1.0 / (std + 0.1) ** 2, r.shape)[ok])
        want = np.linalg.lstsq((sw * e[ok])[:, None], sw * r[ok], rcond=None)[0][0]
        assert gain[l] == pytest.approx(want, rel=1e-9)
        assert gain[l] == pytest.approx(true[l], abs=0.05)
    assert gain[2] == pytest.approx(0.0, abs=0.05) and gain[2] >= 0.0
    flipped = center - err[:, :, None] * 0.5
    assert fit_update_gain(center, err, flipped, std) == [0.0, 0.0, 0.0]  # negative: clipped
    assert fit_update_gain(center, err, np.full_like(obs, np.nan), std) == [0.0, 0.0, 0.0]
    assert fit_update_gain(center, err, center + err[:, :, None] * 3.0, std) == [1.0, 1.0, 1.0]


def test_fit_persistence_weight_is_the_least_squares_blend_per_basin_and_lead():
    """Observations that are (1 - w) x model + w x persistence plus noise give back w per basin and
    lead (0.9 for a slow river, 0.2, 0), equal to np.linalg.lstsq of the residuals on the distance
    to persistence; missing values are skipped; a weight beyond [0, 1] is clipped; a basin with
    fewer than min_days days gets 0."""
    rng = np.random.default_rng(1)
    T, N, L = 2000, 3, 2
    center = rng.normal(size=(T, N, L))
    persist = rng.normal(size=(T, N))
    true = np.array([[0.9, 0.8], [0.2, 0.3], [0.0, 0.0]])
    obs = center + true[None] * (persist[:, :, None] - center) + 0.1 * rng.normal(size=(T, N, L))
    obs[rng.random(size=obs.shape) < 0.1] = np.nan
    w = fit_persistence_weight(center, persist, obs)
    assert w.shape == (N, L)
    for n in range(2):
        for l in range(L):
            r, d = obs[:, n, l] - center[:, n, l], persist[:, n] - center[:, n, l]
            ok = np.isfinite(r)
            want = np.linalg.lstsq(d[ok][:, None], r[ok], rcond=None)[0][0]
            assert w[n, l] == pytest.approx(want, rel=1e-5)
            assert w[n, l] == pytest.approx(true[n, l], abs=0.02)
    assert 0.0 <= w[2, 0] < 0.02
    beyond = center + 1.5 * (persist[:, :, None] - center)
    assert (fit_persistence_weight(center, persist, beyond) == 1.0).all()
    away = center - 0.5 * (persist[:, :, None] - center)
    assert (fit_persistence_weight(center, persist, away) == 0.0).all()
    few = np.full_like(obs, np.nan)
    few[:29] = beyond[:29]
    assert (fit_persistence_weight(center, persist, few) == 0.0).all()
    assert (fit_persistence_weight(center, persist, few, min_days=29) == 1.0).all()


@pytest.mark.parametrize("rollout", [0, 1])
def test_the_distribution_loss_trains_only_the_distribution_part(rollout):
    torch.manual_seed(4)
    net = HydroConvLSTM({"n_dynamic": 2, "n_static": 1, "hidden": 4, "lead_days": 3, "observed": 1,
                         "rollout": rollout, "quantiles": 1})
    out = net(_streams())
    assert out["q_quantiles"].shape == (*out["q"].shape, Q)
    assert (out["q_quantiles"].diff(dim=-1) >= 0).all()
    quantile_loss(out["q_quantiles"], torch.randn_like(out["q"]), 1.0).backward()
    spread = {"basin_head.q_w", "basin_head.q_b"}
    for name, p in net.named_parameters():
        moved = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert moved == (name in spread), name


def test_spread_scale_applies_outside_training_only_and_is_saved_with_the_weights():
    torch.manual_seed(5)
    net = HydroConvLSTM({"n_dynamic": 2, "n_static": 1, "hidden": 4, "lead_days": 3, "observed": 1, "quantiles": 1})
    st = _streams()
    net.eval()
    with torch.no_grad():
        out = net(st)
        base, q = out["q_quantiles"], out["q"]
        net.spread_scale.copy_(torch.tensor([1.0, 2.0, 0.5]).view(-1, 1).expand(3, Q))
        scaled = net(st)["q_quantiles"]
        # factors that would make quantiles cross (the two next to the median pushed far out)
        cross = torch.ones(3, Q)
        cross[:, MED + 1] = 50.0
        cross[:, MED - 1] = 50.0
        net.spread_scale.copy_(cross)
        crossed = net(st)["q_quantiles"]
        net.train()
        train_mode = net(st)["q_quantiles"]
    c = q.unsqueeze(-1)  # distances are taken from the deterministic forecast
    expect = c + (base - c) * torch.tensor([1.0, 2.0, 0.5]).view(-1, 1)
    assert torch.allclose(scaled, torch.sort(expect, dim=-1).values, atol=1e-5)
    assert (crossed.diff(dim=-1) >= 0).all()  # rearranged: still in order
    raw = c + (base - c) * cross
    assert torch.allclose(crossed, torch.sort(raw, dim=-1).values, atol=1e-4)
    assert torch.allclose(crossed.max(dim=-1).values, raw.max(dim=-1).values, atol=1e-4)
    assert torch.allclose(train_mode, base, atol=1e-5)
    assert "spread_scale" in net.state_dict()


def test_lumped_lstm_gives_the_same_kind_of_distribution():
    torch.manual_seed(6)
    st = _streams()
    n_in = 2 + 1 + 1 + 4  # dynamic, static, log-area, observation features
    lum = LumpedLSTM(n_in, 8, 3, observed=1, quantiles=1)
    out = lum({k: v for k, v in st.items() if k != "forecast"} | {"forecast": st["forecast"]})
    assert out["q_quantiles"].shape == (1, 5, 2, 3, Q)
    assert (out["q_quantiles"].diff(dim=-1) >= 0).all()
    quantile_loss(out["q_quantiles"], torch.randn_like(out["q"]), 1.0).backward()
    assert lum.lstm.weight_ih_l0.grad is None and lum.out.weight.grad is None
    assert lum.spread.weight.grad.abs().sum() > 0


def test_a_model_without_the_distribution_gives_none():
    net = HydroConvLSTM({"n_dynamic": 2, "n_static": 1, "hidden": 4, "lead_days": 3, "observed": 1})
    assert "q_quantiles" not in net(_streams())
    assert "spread_scale" not in net.state_dict()


def test_warnings_table_without_thresholds_keeps_its_header():
    """No basin has a threshold (a short record): warnings.csv is the header alone, the same
    columns as with thresholds, never an empty file."""
    import io

    import pandas as pd

    from hydrocast.evaluate import probabilistic_scores
    from hydrocast.thresholds import Threshold

    rng = np.random.default_rng(3)
    days = np.arange("2019-01-01", "2019-04-11", dtype="datetime64[D]")  # 100 days
    q_obs = rng.gamma(2.0, 5.0, size=(len(days), 1))
    levels = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
    a, b = 60, 89  # 30 issue days, lead 1
    obs_bt = q_obs[a + 1:b + 2, 0][None, :, None]
    qq = np.sort(rng.gamma(2.0, 5.0, size=(1, 30, 1, 5)), axis=-1)
    ok = np.ones(30, bool)
    args = (levels, {"convlstm": qq}, obs_bt, q_obs, days, a, b, ok, ("2019-01-01", "2019-02-28"), ["B1"])
    empty = probabilistic_scores(*args, {})["warnings"]
    text = empty.to_csv(index=False)
    assert text.splitlines() == [",".join(empty.columns)] and "brier" in empty.columns
    one = probabilistic_scores(*args, {"B1": [Threshold("B1", "q2", 12.0, 2.0)]})["warnings"]
    assert list(one.columns) == list(empty.columns) and len(one) == 3  # convlstm + the two reference ensembles
    assert list(pd.read_csv(io.StringIO(text)).columns) == list(empty.columns)


def test_the_blend_log_line_lists_few_gauges_and_summarises_many():
    """train's log of the fitted blend: each gauge's weights for a few gauges; for many, the
    per-lead median and largest weight (computed here with statistics.median) and the gauges
    above 0.5, never one entry per gauge."""
    import statistics

    from hydrocast.train import blend_summary

    assert blend_summary({"A": [0.1, 0.2, 0.0], "B": [0.9, 0.8, 0.7]}) == "A 0.10/0.20/0.00; B 0.90/0.80/0.70"
    many = {f"G{i:02d}": [i / 40, 0.0, 0.9 if i == 7 else 0.0] for i in range(40)}
    line = blend_summary(many)
    med = statistics.median(i / 40 for i in range(40))
    assert line.startswith(f"median {med:.2f}/0.00/0.00, largest 0.97/0.00/0.90 over 40 gauges")
    above = [b for b, w in many.items() if max(w) > 0.5]
    assert line.endswith(f"above 0.5 at some lead: {len(above)} ({', '.join(above[:12])}, ...)")
    assert "G03" not in line
