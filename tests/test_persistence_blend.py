"""tools.persistence_blend: the offline measurement of blending each gauge's forecast with persistence."""

from __future__ import annotations

import numpy as np
import pytest

from tools import persistence_blend as pb


def test_nse_by_hand():
    obs = np.array([1.0, 2.0, 3.0, np.nan])
    sim = np.array([1.5, 2.0, 2.0, 7.0])
    # mean 2, sum of squares about it 2; errors 0.25 + 0 + 1 = 1.25 (the NaN day left out)
    assert pb.nse(sim, obs) == pytest.approx(1 - 1.25 / 2)
    assert np.isnan(pb.nse(sim[:1], obs[:1]))


def test_weights_recover_the_mix_that_made_the_observations_and_stay_in_0_1():
    rng = np.random.default_rng(0)
    n, l, t = 3, 2, 400
    model = rng.normal(size=(n, l, t))
    pers = rng.normal(size=(n, l, t))
    true = np.array([[0.0, 0.3], [0.8, 1.0], [0.5, 0.1]])
    obs = (1 - true[..., None]) * model + true[..., None] * pers + 0.01 * rng.normal(size=(n, l, t))
    obs[0, 0, :50] = np.nan  # missing days are left out
    w = pb.fit_weights(model, pers, obs)
    np.testing.assert_allclose(w, true, atol=0.01)
    # a persistence that only hurts gets weight 0, never a negative one; one that is the truth gets 1
    assert pb.fit_weights(model, model - (obs - model), obs)[1, 1] == 0.0
    assert pb.fit_weights(model, obs, obs)[2, 0] == pytest.approx(1.0)
    mixed = pb.blend(model, pers, w)
    for i in range(n):  # the blend fitted on these days is never worse than either part on them
        for j in range(l):
            assert pb.nse(mixed[i, j], obs[i, j]) >= max(pb.nse(model[i, j], obs[i, j]),
                                                         pb.nse(pers[i, j], obs[i, j])) - 1e-9


def test_medians_are_over_basins_per_lead():
    obs = np.tile(np.arange(10.0), (3, 2, 1))
    sim = obs.copy()
    sim[0] += 1.0  # NSE 1 - 10/82.5
    sim[1] += 2.0  # NSE 1 - 40/82.5
    m = pb.medians(sim, obs)
    assert m == pytest.approx([1 - 10 / 82.5] * 2)


def test_cross_fitting_uses_the_other_half_only():
    """Each half is blended with the weights the other half gives: changing the observations of
    the second half changes the first half's blend and leaves the second half's weights' source alone."""
    rng = np.random.default_rng(1)
    model, pers = rng.normal(size=(1, 1, 100)), rng.normal(size=(1, 1, 100))
    obs = pers.copy()  # persistence is the truth: weight 1 from either half
    out = pb.cross_fitted(model, pers, obs)
    np.testing.assert_allclose(out, pers)
    obs2 = obs.copy()
    obs2[..., 50:] = model[..., 50:]  # the second half now says: the model is the truth (weight 0)
    out2 = pb.cross_fitted(model, pers, obs2)
    np.testing.assert_allclose(out2[..., :50], model[..., :50])  # the first half uses the second's weight
    np.testing.assert_allclose(out2[..., 50:], pers[..., 50:])  # the second half the first's (still 1)
