"""Year-long memory, observed discharge at issue time and the forecast rollout (issue 8).

The stateful training schedule, the observation hold-out, the observation maps against an
independent computation, chunked runs against one-shot runs, and causality: nothing after the
issue day (observations) or after the lead day (forecast) ever reaches a forecast."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hydrocast.model import HydroConvLSTM, LumpedLSTM, observation_features, observation_maps
from hydrocast.windows import Periods, legacy_chunks, observation_inputs, stream_chunks

# -- the schedule ---------------------------------------------------------------------------------


@pytest.mark.parametrize("t0, burnin, streams", [(0, 30, 2), (400, 30, 3), (10, 30, 1)])
def test_streams_cover_the_period_once_per_epoch_and_carry_state(t0, burnin, streams):
    p = Periods(t0, t0 + 1000, t0 + 1001, t0 + 1300)
    chunk = 90
    chunks = stream_chunks(p, chunk, burnin, streams, fresh=False)
    s0 = max(0, t0 - burnin)
    n = -(-(p.t1 + 1 - s0) // chunk)
    assert len(chunks) == n
    for k in range(streams):
        starts = [c.starts[k] for c in chunks]
        # every chunk of the span exactly once
        assert sorted(starts) == [s0 + i * chunk for i in range(n)]
        for j, c in enumerate(chunks):
            if c.reset[k]:
                assert c.starts[k] == s0  # a stream restarts only at the span's start
                assert c.burn[k] == max(burnin, p.t0 - s0)
            else:
                assert c.starts[k] == chunks[j - 1].starts[k] + chunk  # continues where it was
                assert c.burn[k] == max(0, p.t0 - c.starts[k])
    # the streams are in different places (different seasons in one batch)
    if streams > 1:
        assert len(set(chunks[0].starts)) == streams
    fresh = stream_chunks(p, chunk, burnin, streams, fresh=True)
    assert all(fresh[0].reset) and all(b >= burnin for b in fresh[0].burn)
    assert fresh[1:] == chunks[1:]


def test_no_memory_means_the_old_random_windows_from_zero_state():
    p = Periods(0, 999, 1000, 1300)
    chunks = legacy_chunks(0, 1, p, 90, 30, 3, 1400, batch_size=4)
    assert all(all(c.reset) and all(b == 30 for b in c.burn) for c in chunks)
    assert sum(len(c.starts) for c in chunks) == len({s for c in chunks for s in c.starts})


def test_observation_inputs_hold_out_and_never_past_the_last_day():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(400, 50)).astype("float32")
    full = observation_inputs(q, 100, 300, last_day=250)
    np.testing.assert_array_equal(full[:151], q[100:251])  # the issue day's own observation
    assert np.isnan(full[151:]).all()  # nothing after last_day
    held = observation_inputs(q, 100, 300, last_day=399, rng=np.random.default_rng(1), silent_prob=0.3,
                              drop_prob=0.15)
    silent = np.isnan(held).all(axis=0)
    assert 5 <= silent.sum() <= 25  # ~30 % of 50 gauges silent for the chunk
    kept = held[:, ~silent]
    assert 0.08 < np.isnan(kept).mean() < 0.22  # ~15 % of the other days dropped
    ok = ~np.isnan(held)
    np.testing.assert_array_equal(held[ok], q[100:300][ok])


# -- observation maps -----------------------------------------------------------------------------


def test_observation_maps_against_a_hand_computation():
    h = w = 4
    big = np.zeros((h, w), "float32")
    big[:, :] = 1.0  # 16 cells
    small = np.zeros((h, w), "float32")
    small[:2, :2] = 1.0  # 4 cells, nested in big
    other = np.zeros((h, w), "float32")
    other[3, 3] = 0.5  # half a cell
    masks = np.stack([big, small, other])
    obs = np.array([[[1.0, 3.0, np.nan]], [[np.nan, 3.0, 7.0]]], "float32")  # (B=2, T=1, G=3)
    value, cover = observation_maps(torch.from_numpy(obs), torch.from_numpy(masks))
    area = masks.sum(axis=(1, 2))
    wgt = (area.min() / area) ** 2
    for b in range(2):
        for i in range(h):
            for j in range(w):
                num = den = cov = 0.0
                for g in range(3):
                    if np.isfinite(obs[b, 0, g]) and masks[g, i, j] > 0:
                        num += wgt[g] * masks[g, i, j] * obs[b, 0, g]
                        den += wgt[g] * masks[g, i, j]
                        cov += masks[g, i, j]
                assert value[b, 0, i, j].item() == pytest.approx(num / den if den else 0.0, rel=1e-5)
                assert cover[b, 0, i, j].item() == pytest.approx(min(cov, 1.0))
    # the nested small basin speaks for its own cells: weights (0.5/16)^2 and (0.5/4)^2 -> 49/17
    assert value[0, 0, 0, 0].item() == pytest.approx(49 / 17, rel=1e-5)
    assert value[0, 0, 3, 0].item() == pytest.approx(1.0, rel=1e-5)
    basins = torch.from_numpy(np.stack([masks, masks * 0], axis=1))
    feats = observation_features(torch.from_numpy(obs), torch.tensor([0, 1, -1]), basins, value, cover)
    assert feats.shape == (2, 1, 3, 4)
    assert feats[0, 0, 0, :2].tolist() == [1.0, 1.0] and feats[1, 0, 0, :2].tolist() == [0.0, 0.0]
    assert feats[0, 0, 2, :2].tolist() == [0.0, 0.0]  # not a gauge: only what the maps say
    assert feats[1, 0, 2, 2].item() == pytest.approx(7.0, rel=1e-5)  # its map says 7 on its half cell


# -- chunked = one shot, causality ----------------------------------------------------------------

B, T, C, H, W, N, L = 2, 14, 6, 8, 8, 3, 3


def _streams(seed=0):
    g = torch.Generator().manual_seed(seed)
    bas = torch.zeros(N, 2, H, W)
    bas[0, 0, :4, :4] = 1
    bas[1, 0, 4:, :] = 1
    bas[2, 0] = 1
    bas[:, 1] = bas[:, 0] * 0.5
    return {"dynamic": torch.randn(B, T, C, H, W, generator=g), "static": torch.randn(3, H, W, generator=g),
            "basins": bas, "basin_area_km2": torch.tensor([10.0, 20.0, 50.0]),
            "obs": torch.randn(B, T, 2, generator=g), "obs_basins": bas[:2, 0], "obs_index": torch.tensor([0, 1, -1]),
            "forecast": torch.randn(B, T, L, C, H, W, generator=g)}


def _net(**hp):
    torch.manual_seed(0)
    return HydroConvLSTM({"n_dynamic": C, "n_static": 3, "hidden": 4, "depth": 2, "lead_days": L, **hp}).eval()


def _cut(st, a, b):
    out = dict(st)
    for k in ("dynamic", "obs", "forecast"):
        out[k] = st[k][:, a:b]
    return out


@pytest.mark.parametrize("hp", [{}, {"observed": 1}, {"observed": 1, "rollout": 1}])
def test_a_chunked_stateful_run_equals_one_run(hp):
    net, st = _net(**hp), _streams()
    with torch.no_grad():
        whole = net(st)
        first = net(_cut(st, 0, 6))
        second = net(_cut(st, 6, T), first["state"])
    torch.testing.assert_close(second["q"], whole["q"][:, 6:], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(second["maps"], whole["maps"][:, 6:], rtol=1e-4, atol=1e-5)


def test_lumped_chunked_stateful_run_equals_one_run():
    st = _streams()
    n_in = C + 3 + 1 + 4 + L * C
    torch.manual_seed(0)
    net = LumpedLSTM(n_in, 8, L, observed=1, forecast=1).eval()
    with torch.no_grad():
        whole = net(st)["q"]
        first = net(_cut(st, 0, 5))
        second = net(_cut(st, 5, T), first["state"])["q"]
    torch.testing.assert_close(second, whole[:, 5:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hp", [{"observed": 1}, {"observed": 1, "rollout": 1}])
def test_observations_after_the_issue_day_never_reach_its_forecast(hp):
    net, st = _net(**hp), _streams()
    later = dict(st)
    later["obs"] = st["obs"].clone()
    later["obs"][:, 8:] += 10.0
    with torch.no_grad():
        a, b = net(st)["q"], net(later)["q"]
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert (a[:, 8:] - b[:, 8:]).abs().max() > 1e-3  # ... and do reach the later ones


def test_rollout_lead_l_sees_the_forecast_of_lead_days_up_to_l_only():
    net, st = _net(rollout=1), _streams()
    changed = dict(st)
    changed["forecast"] = st["forecast"].clone()
    changed["forecast"][:, :, 1:] += 5.0  # forecasts for lead days 2 and 3
    with torch.no_grad():
        a, b = net(st)["q"], net(changed)["q"]
    torch.testing.assert_close(a[..., 0], b[..., 0])  # lead 1 unchanged
    assert (a[..., 1:] - b[..., 1:]).abs().max() > 1e-5
    with torch.no_grad():  # a subset of issue days gives the same forecasts for those days
        sub = net({**st, "rollout_days": torch.tensor([3, 9])})["q"]
    torch.testing.assert_close(sub, a[:, [3, 9]], rtol=1e-4, atol=1e-5)


def test_member_rollouts_equal_one_run_per_member_forecast():
    """A forecast with a member dimension (B, R, T', L, C, H, W) of the rollout days gives, for each
    member r, what a run with r's forecast alone gives (maps, runoff, discharge and quantiles), with the
    same state after the last day; members that differ give different lead-2 forecasts."""
    net, st = _net(observed=1, rollout=1, quantiles=1), _streams()
    days = torch.tensor([2, 7, 13])
    g = torch.Generator().manual_seed(5)
    fcs = [st["forecast"], torch.randn(B, T, L, C, H, W, generator=g)]
    with torch.no_grad():
        singles = [net({**st, "forecast": f, "rollout_days": days}) for f in fcs]
        both = net({**st, "forecast": torch.stack([f[:, days] for f in fcs], dim=1), "rollout_days": days})
    for k in ("q", "q_quantiles", "maps", "runoff"):
        assert both[k].shape[:3] == (B, 2, 3)
        for r in range(2):
            torch.testing.assert_close(both[k][:, r], singles[r][k], rtol=1e-4, atol=1e-5)
    for (h1, c1), (h2, c2) in zip(both["state"], singles[0]["state"]):
        torch.testing.assert_close(h1, h2)
        torch.testing.assert_close(c1, c2)
    assert (both["q"][:, 0, ..., 1] - both["q"][:, 1, ..., 1]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="expected forecast of shape"):
        net({**st, "forecast": torch.stack(fcs, dim=1), "rollout_days": days})  # every day, not the rollout days


def test_a_silent_gauge_is_no_observation_at_all():
    """All-NaN observations give the same forecast as no observation stream."""
    net, st = _net(observed=1), _streams()
    silent = {**st, "obs": torch.full_like(st["obs"], float("nan"))}
    none = {k: v for k, v in st.items() if k != "obs"}
    with torch.no_grad():
        torch.testing.assert_close(net(silent)["q"], net(none)["q"])
        assert (net(st)["q"] - net(silent)["q"]).abs().max() > 1e-4


def test_observation_features_with_the_day_before():
    """obs_days = 2: each basin also reads its own observation of the day before (and its validity),
    unknown on the sequence's first day; the first four features are unchanged."""
    from hydrocast.model import n_obs_features, observation_features, observation_maps

    torch.manual_seed(0)
    obs = torch.randn(1, 5, 2)
    obs[0, 2, 0] = float("nan")
    masks = torch.rand(2, 4, 4)
    basin_ch = torch.stack([masks, torch.rand(2, 4, 4)], dim=1)
    om, ov = observation_maps(obs, masks)
    index = torch.tensor([0, -1])  # basin 0 is gauge 0, basin 1 ungauged
    one = observation_features(obs, index, basin_ch, om, ov)
    two = observation_features(obs, index, basin_ch, om, ov, obs_days=2)
    assert two.shape == (1, 5, 2, n_obs_features(2)) == (1, 5, 2, 6)
    assert torch.equal(two[..., :4], one)
    back, back_has = two[0, :, 0, 4], two[0, :, 0, 5]
    expect = [0.0, obs[0, 0, 0].item(), obs[0, 1, 0].item(), 0.0, obs[0, 3, 0].item()]  # day 2 is missing
    assert back.tolist() == pytest.approx(expect)
    assert back_has.tolist() == [0.0, 1.0, 1.0, 0.0, 1.0]
    assert (two[0, :, 1, 4:] == 0).all()  # an ungauged basin has no own observation, ever


def test_observation_history_from_before_the_sequence_makes_a_continued_run_exact():
    """With a lead-in (the obs stream starting obs_days - 1 days early), the first issue day reads
    the day before it: a run continued from a saved state gives what the one long run gives."""
    from hydrocast.model import observation_features, observation_maps

    torch.manual_seed(1)
    obs = torch.randn(1, 6, 2)
    masks = torch.rand(2, 4, 4)
    basin_ch = torch.stack([masks, torch.rand(2, 4, 4)], dim=1)
    index = torch.tensor([0, 1])
    om, ov = observation_maps(obs, masks)
    whole = observation_features(obs, index, basin_ch, om, ov, obs_days=3)
    # the last 4 days as a continued sequence, its obs stream beginning 2 days before
    om2, ov2 = observation_maps(obs[:, 2:], masks)
    part = observation_features(obs, index, basin_ch, om2, ov2, obs_days=3, lead_in=2)
    assert torch.allclose(part, whole[:, 2:])
    # without the lead-in the first day's history is unknown
    part0 = observation_features(obs[:, 2:], index, basin_ch, om2, ov2, obs_days=3)
    assert (part0[:, 0, :, 4:] == 0).all() and not torch.allclose(part0, whole[:, 2:])
