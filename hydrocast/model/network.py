"""Heads, the full model, the lumped baseline and the loss.

The whole-domain design
-----------------------
The ConvLSTM core runs once per window over the whole domain on the dynamic and static maps only
(no basin channels in the recurrent core). Every basin is then read out of the same hidden maps by
:class:`BasinHead`, so one forward pass serves all gauged basins of a batch, and an ungauged basin
costs one cheap readout rather than a new pass over the window.

Shapes (``B`` windows, ``T`` days, ``N`` basins, ``L`` lead days, ``M`` forecast map variables)::

    model({"dynamic": x_dyn, "static": x_static, "basins": basin_ch}) -> {
        "q":      (B, T, N, L)     normalised discharge; q[:, t, :, l] is the forecast issued with
                                   data up to and including day t, for day t + l + 1
        "maps":   (B, T, L, M, H, W) forecast maps (normalised), same time convention
        "q_quantiles": (B, T, N, L, Q)  with ``quantiles=1``: the forecast distribution, normalised,
                                   at :data:`QUANTILE_LEVELS` (see "The forecast distribution")
        "runoff": (B, T, L, H, W)  runoff-generation map (>= 0, arbitrary units): the mean of the
                                   J non-negative generation maps the basin head routes to the
                                   outlets for lead l, i.e. where it sees runoff being generated;
                                   the same for every basin: multiply by ``basin_ch[n, 0]`` for
                                   basin n's map
        "state":  list of (h, c)   the core's final state, to continue a stateful run
    }

Named input streams
-------------------
Every model takes ONE mapping of named streams (:data:`STREAMS`), so that adding an input is
adding a key (observed discharge, forecast maps, ... in later versions):

    "dynamic"         (B, T, C, H, W)  normalised dynamic maps + validity + season channels
    "static"          (S, H, W) or (B, S, H, W)  normalised static layers + DEM validity
    "basins"          (N, 2, H, W)     basin fraction and flow distance / domain scale
    "basin_area_km2"  (N,)             basin areas (the lumped baseline's log-area attribute)
    "obs_area"        (G,)             optional: the gauges' whole mask areas (cells) where the
                                       "obs_basins" masks are cut to a window (tiled training)

Discharge non-negativity
------------------------
The head predicts discharge normalised per basin, ``q_norm = (q - mean_b) / std_b``, unbounded,
and is trained on it with the NSE* loss. The physical value is
:func:`discharge_from_normalised` ``= max(0, mean_b + std_b * q_norm)``. Why the clamp at the end
rather than a positive transform inside the model:

* NSE* is a squared error in exactly this normalised space, so the loss sees the model's output
  directly: no vanishing gradient where a softplus/exp saturates, no dependence of the network on
  each basin's statistics.
* For an observation ``o >= 0``, ``|max(0, p) - o| <= |p - o|``: the clamp can only reduce the
  error, so a clamped forecast always scores at least the NSE of the unclamped one.
* A log transform would make the loss favour low flows, which is not what NSE measures.

The forecast distribution
-------------------------
With ``quantiles=1`` each model also gives Q = 19 quantiles (levels 0.05, 0.10, ..., 0.95:
the median and the 50 % and 90 % intervals lie on the grid) of each forecast, trained with the
pinball (quantile) loss, a proper scoring rule whose mean over equally spaced levels
approximates the CRPS (:func:`quantile_loss`). The quantiles are built around the
deterministic forecast ``q``: a learned shift gives the median (``q`` is trained on squared
errors, a mean, and a river's distribution is skewed), non-negative gaps the other levels, so
they never cross. The distribution part reads the head's features DETACHED: it learns the
spread of the errors without changing the deterministic forecast (its NSE is what it was). The
buffer ``spread_scale`` (L, Q) widens or narrows each quantile's distance from ``q`` per lead
outside training (a quantile recalibration; the quantiles are then sorted, so they still never
cross): it is fitted on the validation period after training (:func:`fit_spread_scale`) and
saved with the weights.

Updating with the issue day's error
-----------------------------------
A model with ``observed=1`` carries the buffer ``update_gain`` (L,), zero while it trains. The
forecasts of a run are then updated outside the network (:func:`hydrocast.forward.update_run`):
``q[t, n, l] += update_gain[l] * (obs[t, n] - q[t - 1, n, 0])``, i.e. each lead moves by a share of
the error that the model's own lead-1 forecast issued the day before made on the issue day (the
output error correction of operational river forecasting, an AR(1) model of the errors). Both
are normalised, the forecast before updating; no own observation (a silent gauge, an ungauged
basin) means no update. The gains are fitted on the validation period after training
(:func:`fit_update_gain`), before the distribution's recalibration, and saved with the weights.
They bring back what the recurrent state cannot: a model that thinks snow is still melting after
it has gone overestimates day after day, the observation says so every day, and the head alone
cannot read its own error.

Blending with persistence, gauge by gauge
-----------------------------------------
A model with ``observed=1`` also carries the buffer ``persistence_weight`` (G, L), one weight per
gauge (the model's training basins, in their order) and lead, empty (0, L) while it trains. After
the updating, each gauged basin's forecast is blended with its own observation of the issue day
(persistence): ``q[t, n, l] <- q[t, n, l] + w[g(n), l] * (obs[t, n] - q[t, n, l])``, normalised,
its quantiles with it (no observation on the issue day, an ungauged basin: no blend). The weights
are fitted on the validation period after the gains (:func:`fit_persistence_weight`), before the
distribution's recalibration, and saved with the weights; ``[train] persistence_blend = false``
leaves them empty. A river so slow that yesterday's flow beats any model (a baseflow river on
permeable ground, a lake outlet) gets a weight near 1 at every lead; a flashy one gets ~0. The
network cannot learn this itself: NSE* weighs a low-variance basin by ``1 / (std + 0.1)^2``, so
the loss cares least about the very rivers where persistence is best.

``mode="softplus"`` gives a smooth alternative for callers who need a differentiable positive
output (e.g. a physical-space loss).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .convlstm import ConvLSTM, State

#: the named input streams every model reads (see the module docstring)
STREAMS = ("dynamic", "static", "basins", "basin_area_km2", "obs", "obs_basins", "obs_index", "obs_area", "forecast",
           "rollout_days")
#: per-basin observation features the heads read (own value, own validity, value and validity of the
#: observation maps averaged over the basin), plus own value and validity of each earlier day with
#: ``obs_days`` > 1 (:func:`n_obs_features`)
N_OBS_FEATURES = 4


def n_obs_features(obs_days: int) -> int:
    """How many observation features a head reads with ``obs_days`` days of own observations."""
    return N_OBS_FEATURES + 2 * (int(obs_days) - 1)

#: quantile levels of the forecast distribution (``quantiles=1``): 0.05, 0.10, ..., 0.95
QUANTILE_LEVELS = tuple(k / 20 for k in range(1, 20))
#: the initial gap between neighbouring quantiles (normalised units)
_GAP0 = 0.05

#: Hyperparameters of :class:`HydroConvLSTM`; ``None`` means required.
HPARAM_DEFAULTS: dict[str, Any] = {
    "n_dynamic": None,       # dynamic input channels per day (precipitation, soil moisture, ...)
    "n_static": 0,           # static input channels (terrain, ...)
    "hidden": 32,            # hidden channels of the ConvLSTM
    "depth": 2,              # stacked ConvLSTM layers
    "kernel": 3,             # convolution kernel size (odd)
    "lead_days": 3,          # L: discharge / map forecasts for days t+1 .. t+L
    "n_map_outputs": 1,      # M: forecast map variables (e.g. soil moisture)
    "runoff_features": 4,    # J: runoff-generation channels per lead in the basin head
    "n_rbf": 6,              # radial basis functions of the flow distance (travel time)
    "head_hidden": 16,       # hidden units of the per-lead MLP of the basin head
    "observed": 0,           # 1: observed discharge up to the issue day enters (maps into the core + head)
    "rollout": 0,            # 1: leads come from rolling the core over the lead days (forecast inputs)
    "quantiles": 0,          # 1: also the forecast distribution at QUANTILE_LEVELS (pinball loss)
    "obs_days": 1,           # with observed: the head reads the own observation of this many days up to the issue day
}


class BasinHead(nn.Module):
    """Read the discharge of any basin out of the domain-wide hidden maps.

    A distributed unit hydrograph with learned parts:

    * runoff generation: ``G = softplus(conv1x1(h_t))``, ``L * J`` non-negative maps (J per lead),
      the same for every basin;
    * travel time: for basin ``n``, lead ``l``, feature ``j`` a kernel over the basin,
      ``tau = mask * softplus(sum_r V[l, j, r] * phi_r(d)) / area`` where ``phi_r`` are Gaussian
      radial basis functions of the normalised flow distance ``d`` to the outlet: how much runoff
      generated at distance ``d`` counts for the discharge ``l`` days later;
    * routing: ``S[b, t, n, l, j] = sum_cells G * tau``, one einsum for all basins;
    * a small MLP per lead maps ``S[..., l, :]`` (J values) to the normalised discharge.

    ``basin_ch`` (N, 2, H, W): channel 0 the fraction of each cell inside the basin, channel 1 the
    flow distance to the outlet normalised to about [0, 1] (0 outside the basin). Use one length
    scale for all basins of a domain if their travel times are to be comparable.
    """

    def __init__(self, hidden: int, lead_days: int, runoff_features: int = 4, n_rbf: int = 6,
                 head_hidden: int = 16, n_extra: int = 0, quantiles: int = 0):
        super().__init__()
        self.lead_days, self.runoff_features, self.n_rbf, self.n_extra = lead_days, runoff_features, n_rbf, n_extra
        lj = lead_days * runoff_features
        self.generation = nn.Conv2d(hidden, lj, 1)
        self.register_buffer("rbf_centres", torch.linspace(0.0, 1.0, n_rbf), persistent=False)
        self.rbf_width = 1.0 / max(n_rbf - 1, 1)
        # Travel-time weights start flat (softplus(0.55) ~ 1): every distance counts equally.
        self.travel = nn.Parameter(torch.full((lead_days, runoff_features, n_rbf), 0.55))
        n_in = runoff_features + n_extra
        self.w1 = nn.Parameter(torch.randn(lead_days, n_in, head_hidden) / math.sqrt(n_in))
        self.b1 = nn.Parameter(torch.zeros(lead_days, head_hidden))
        self.w2 = nn.Parameter(torch.randn(lead_days, head_hidden) / math.sqrt(head_hidden))
        self.b2 = nn.Parameter(torch.zeros(lead_days))
        if n_extra:
            # with observations, each lead starts from the issue day's observation (persistence)
            # and the MLP learns the change; without one (a silent gauge, an ungauged basin) the
            # MLP gives the whole value
            self.obs_skip = nn.Parameter(torch.ones(lead_days))
        self.quantiles = int(quantiles)
        if self.quantiles:
            nq = len(QUANTILE_LEVELS)  # the median's shift from q, then the Q - 1 gaps
            self.q_w = nn.Parameter(torch.randn(lead_days, head_hidden, nq) * 0.01)
            self.q_b = nn.Parameter(torch.cat([torch.zeros(lead_days, 1),
                                               torch.full((lead_days, nq - 1), _inverse_softplus(_GAP0))], dim=1))

    def travel_kernels(self, basin_ch: torch.Tensor) -> torch.Tensor:
        """(N, L*J, H, W) routing weights of each basin; each sums to the basin mean of the
        softplus travel weight. Computed once per forward; costs O(N * R * H * W)."""
        if basin_ch.ndim != 4 or basin_ch.shape[1] != 2:
            raise ValueError(f"expected basin_ch of shape (N, 2, H, W), got {tuple(basin_ch.shape)}")
        mask, dist = basin_ch[:, 0], basin_ch[:, 1]
        area = mask.sum(dim=(-2, -1)).clamp_min(1e-6)  # (N,) in cells
        phi = torch.exp(-(((dist.unsqueeze(1) - self.rbf_centres.view(1, -1, 1, 1)) / self.rbf_width) ** 2))
        weight = F.softplus(torch.einsum("ljr,nrhw->nljhw", self.travel, phi))
        kern = weight * (mask / area.view(-1, 1, 1)).unsqueeze(1).unsqueeze(1)
        return kern.flatten(1, 2)

    def runoff_maps(self, hidden_maps: torch.Tensor) -> torch.Tensor:
        """(B, T, L*J, H, W) non-negative runoff-generation maps from hidden maps (B, T, C, H, W)."""
        b, t = hidden_maps.shape[:2]
        return F.softplus(self.generation(hidden_maps.flatten(0, 1))).unflatten(0, (b, t))

    def forward(self, hidden_maps: torch.Tensor | None, basin_ch: torch.Tensor,
                generation: torch.Tensor | None = None, extra: torch.Tensor | None = None,
                with_quantiles: bool = False):
        """Normalised discharge (B, T, N, L). ``generation`` may pass precomputed
        :meth:`runoff_maps` (B, T, L*J, H, W) to avoid computing them twice; ``extra`` (B, T, N,
        n_extra) are per-basin features of the issue day (the observation features) that every
        lead's MLP reads beside the routed runoff. ``with_quantiles`` (a head built with
        ``quantiles``): returns ``(q, q_quantiles)``, the latter (B, T, N, L, Q) unscaled."""
        g = self.runoff_maps(hidden_maps) if generation is None else generation
        kern = self.travel_kernels(basin_ch).to(g.dtype)
        routed = torch.einsum("btqhw,nqhw->btnq", g, kern)
        routed = routed.unflatten(-1, (self.lead_days, self.runoff_features))  # (B, T, N, L, J)
        skip = 0.0
        if self.n_extra:
            e = extra.to(routed.dtype)
            skip = (e[..., 0] * e[..., 1]).unsqueeze(-1) * self.obs_skip  # own observation where there is one
            routed = torch.cat([routed, e.unsqueeze(3).expand(-1, -1, -1, self.lead_days, -1)], dim=-1)
        z = F.silu(torch.einsum("btnlj,ljk->btnlk", routed, self.w1) + self.b1)
        q = torch.einsum("btnlk,lk->btnl", z, self.w2) + self.b2 + skip
        if not with_quantiles:
            return q
        raw = torch.einsum("btnlk,lkq->btnlq", z.detach(), self.q_w.to(z.dtype)) + self.q_b.to(z.dtype)
        return q, quantiles_around(q.detach(), raw)


class HydroConvLSTM(nn.Module):
    """ConvLSTM core + basin head + map head, built from a plain dict (see :data:`HPARAM_DEFAULTS`).

    ``forward(streams, state=None)`` with ``streams`` a mapping of named inputs (:data:`STREAMS`):

    * ``"dynamic"`` (B, T, n_dynamic, H, W), normalised, no NaN (fill gaps and add validity
      channels upstream);
    * ``"static"`` (B, n_static, H, W) or (n_static, H, W), repeated over the days;
    * ``"basins"`` (N, 2, H, W) for the basins to read out (absent: ``q`` has N = 0);
    * with ``observed=1``: ``"obs"`` (B, T, G) normalised specific discharge observed at each
      issue day at G gauges (NaN = none; all NaN = no observation), ``"obs_basins"`` (G, H, W)
      their basin masks, ``"obs_index"`` (N,) which gauge each read-out basin is (-1: none). The
      observations are painted into maps (:func:`observation_maps`) that enter the core as two
      channels, and every read-out basin gets :func:`observation_features` in its head;
    * with ``rollout=1``: ``"forecast"`` (B, T, L, n_dynamic, H, W), for each issue day the
      dynamic channels of the lead days t+1..t+L as far as a weather forecast knows them
      (forecast precipitation and its validity in the precipitation slots, zeros elsewhere, the
      lead day's season), and optionally ``"rollout_days"`` (T',) the issue days to forecast
      from (default: all). The core runs over the observed days, then, from its state after each
      issue day, rolls on over the L lead days fed the forecast channels (a flag channel tells it
      a step is a forecast step; the handoff forecast of NeuralHydrology, on maps, with shared
      weights): lead l is read from the state after lead day l. Outputs then have T' issue days.
      A forecast of shape (B, R, T', L, n_dynamic, H, W) holds R ensemble members of the
      rollout days only: the core runs over the observed days once and each member is rolled
      from the same states, so "q", "maps", "runoff" (and "q_quantiles") gain a member
      dimension after B: (B, R, T', ...);
    * ``state`` initial core state (see :class:`ConvLSTM`), for stateful chunked runs.

    Returns the dict described in the module docstring. Unknown hyperparameters are errors;
    :attr:`hparams` returns the complete dict, JSON-serialisable, to rebuild the model.
    """

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        unknown = set(config) - set(HPARAM_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown HydroConvLSTM hyperparameters: {sorted(unknown)}; "
                             f"known: {sorted(HPARAM_DEFAULTS)}")
        hp = {**HPARAM_DEFAULTS, **config}
        missing = [k for k, v in hp.items() if v is None]
        if missing:
            raise ValueError(f"missing HydroConvLSTM hyperparameters: {missing}")
        for k, v in hp.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"hyperparameter {k} must be a non-negative integer, got {v!r}")
        for k in ("n_dynamic", "hidden", "depth", "kernel", "lead_days", "runoff_features", "n_rbf", "head_hidden",
                  "obs_days"):
            if hp[k] < 1:
                raise ValueError(f"hyperparameter {k} must be >= 1, got {hp[k]}")
        for k in ("observed", "rollout", "quantiles"):
            if hp[k] not in (0, 1):
                raise ValueError(f"hyperparameter {k} must be 0 or 1, got {hp[k]}")
        self._hparams = hp
        n_in = hp["n_dynamic"] + hp["n_static"] + 2 * hp["observed"] + hp["rollout"]
        self.core = ConvLSTM(n_in, hp["hidden"], hp["kernel"], hp["depth"])
        self.basin_head = BasinHead(hp["hidden"], hp["lead_days"], hp["runoff_features"], hp["n_rbf"],
                                    hp["head_hidden"], n_extra=n_obs_features(hp["obs_days"]) * hp["observed"],
                                    quantiles=hp["quantiles"])
        self.map_head = nn.Conv2d(hp["hidden"], hp["lead_days"] * hp["n_map_outputs"], 1)
        if hp["quantiles"]:
            self.register_buffer("spread_scale", torch.ones(hp["lead_days"], len(QUANTILE_LEVELS)))
        if hp["observed"]:  # the updating of the forecasts with the issue day's error (forward.update_run)
            self.register_buffer("update_gain", torch.zeros(hp["lead_days"]))
            # and the blend with persistence per gauge, (G, L) once fitted (forward.set_persistence_weight)
            self.register_buffer("persistence_weight", torch.zeros(0, hp["lead_days"]))

    @property
    def hparams(self) -> dict[str, Any]:
        return dict(self._hparams)

    def _static(self, x_static, b: int, height: int, width: int):
        hp = self._hparams
        if not hp["n_static"]:
            return None
        if x_static is None:
            raise ValueError(f"the model needs x_static with {hp['n_static']} channels")
        if x_static.ndim == 3:
            x_static = x_static.unsqueeze(0)
        if x_static.shape[-3:] != (hp["n_static"], height, width) or x_static.shape[0] not in (1, b):
            raise ValueError(f"expected x_static of shape (B, {hp['n_static']}, {height}, {width}), "
                             f"got {tuple(x_static.shape)}")
        return x_static

    def _inputs(self, x_dyn, x_static, extra_maps: list, flag: float):
        """The core's input: dynamic channels, static layers, observation maps, forecast flag."""
        b, t, _, height, width = x_dyn.shape
        parts = [x_dyn]
        if x_static is not None:
            parts.append(x_static.to(x_dyn.dtype).unsqueeze(1).expand(b, t, -1, -1, -1))
        parts += [m.to(x_dyn.dtype).unsqueeze(2) for m in extra_maps]
        if self._hparams["rollout"]:
            parts.append(x_dyn.new_full((b, t, 1, height, width), flag))
        return torch.cat(parts, dim=2) if len(parts) > 1 else x_dyn

    def forward(self, streams: Mapping[str, torch.Tensor], state: list[State | None] | None = None
                ) -> dict[str, Any]:
        _check_streams(streams)
        x_dyn, basin_ch = streams["dynamic"], streams.get("basins")
        hp = self._hparams
        if x_dyn.ndim != 5 or x_dyn.shape[2] != hp["n_dynamic"]:
            raise ValueError(f"expected x_dyn of shape (B, T, {hp['n_dynamic']}, H, W), got {tuple(x_dyn.shape)}")
        b, t, _, height, width = x_dyn.shape
        x_static = self._static(streams.get("static"), b, height, width)
        obs_maps, extra = [], None
        if hp["observed"]:
            obs_maps, extra = _observations(streams, x_dyn, hp["obs_days"])
        x = self._inputs(x_dyn, x_static, obs_maps, 0.0)
        h, states = self.core(x, state, keep_states=bool(hp["rollout"]))
        lead, m, j = hp["lead_days"], hp["n_map_outputs"], hp["runoff_features"]
        if not hp["rollout"]:
            flat = h.flatten(0, 1)
            maps = self.map_head(flat).view(b, t, lead, m, height, width)
            generation = self.basin_head.runoff_maps(h)
            runoff = generation.view(b, t, lead, j, height, width).mean(dim=3)
            out = {"maps": maps, "runoff": runoff, "state": states}
            out.update(self._discharge(h, basin_ch, generation, extra, b, t))
            return out

        final = [(hs[:, -1], cs[:, -1]) for hs, cs in states]
        days = streams.get("rollout_days")
        days = torch.arange(t, device=x_dyn.device) if days is None else days.to(x_dyn.device)
        fc = streams["forecast"]
        members = fc.ndim == 7  # (B, R, T', L, C, H, W): the rollout days only, one rollout per member
        want = (b, int(days.numel()) if members else t, lead)
        if fc.shape[:1] + fc.shape[1 + members:3 + members] != want or fc.shape[3 + members] != hp["n_dynamic"]:
            raise ValueError(f"expected forecast of shape (B, {'R, ' * members}{want[1]}, {lead}, {hp['n_dynamic']}, "
                             f"H, W), got {tuple(fc.shape)}")
        if not members:
            out = self._rollout(fc[:, days].to(x_dyn.dtype), states, days, x_static, obs_maps, extra, basin_ch)
            out["state"] = final
            return out
        runs = [self._rollout(fc[:, r].to(x_dyn.dtype), states, days, x_static, obs_maps, extra, basin_ch)
                for r in range(fc.shape[1])]
        out = {k: torch.stack([run[k] for run in runs], dim=1) for k in runs[0]}  # (B, R, T', ...)
        out["state"] = final
        return out

    def _rollout(self, fc, states, days, x_static, obs_maps, extra, basin_ch) -> dict:
        """The lead days of issue days ``days`` rolled from the core's ``states`` over the forecast
        channels ``fc`` (B, T', L, C, H, W) of those days: {"maps", "runoff", "q"[, "q_quantiles"]}."""
        hp = self._hparams
        lead, m, j = hp["lead_days"], hp["n_map_outputs"], hp["runoff_features"]
        b, height, width = fc.shape[0], fc.shape[-2], fc.shape[-1]
        tt = int(days.numel())
        fc = fc.flatten(0, 1)  # (B*T', L, C, H, W)
        init = [(hs[:, days].flatten(0, 1), cs[:, days].flatten(0, 1)) for hs, cs in states]
        st = None if x_static is None else (x_static if x_static.shape[0] == 1 else
                                            x_static.repeat_interleave(tt, dim=0))
        zeros = [fc.new_zeros(fc.shape[0], lead, height, width)] * len(obs_maps)
        hf, _ = self.core(self._inputs(fc, st, zeros, 1.0), init)  # (B*T', L, hidden, H, W)
        gen_all = self.basin_head.runoff_maps(hf)  # (B*T', L, L*J, H, W)
        gen = torch.stack([gen_all[:, l, l * j:(l + 1) * j] for l in range(lead)], dim=1)  # (B*T', L, J, H, W)
        maps_all = self.map_head(hf.flatten(0, 1)).view(b * tt, lead, lead, m, height, width)
        maps = torch.stack([maps_all[:, l, l] for l in range(lead)], dim=1).unflatten(0, (b, tt))
        runoff = gen.mean(dim=2).unflatten(0, (b, tt))
        generation = gen.flatten(1, 2).unflatten(0, (b, tt))  # (B, T', L*J, H, W)
        out = {"maps": maps, "runoff": runoff}
        out.update(self._discharge(hf, basin_ch, generation, None if extra is None else extra[:, days], b, tt))
        return out

    def _discharge(self, h, basin_ch, generation, extra, b: int, t: int) -> dict:
        """``{"q": ..., ["q_quantiles": ...]}`` of the read-out basins (none: N = 0)."""
        hp = self._hparams
        lead, nq = hp["lead_days"], len(QUANTILE_LEVELS)
        if basin_ch is None:
            out = {"q": h.new_zeros(b, t, 0, lead)}
            if hp["quantiles"]:
                out["q_quantiles"] = h.new_zeros(b, t, 0, lead, nq)
            return out
        if not hp["quantiles"]:
            return {"q": self.basin_head(None, basin_ch.to(h.device), generation=generation, extra=extra)}
        q, qq = self.basin_head(None, basin_ch.to(h.device), generation=generation, extra=extra,
                                with_quantiles=True)
        return {"q": q, "q_quantiles": _scaled(q, qq, None if self.training else self.spread_scale)}


def _observations(streams: Mapping[str, torch.Tensor], x: torch.Tensor, obs_days: int = 1):
    """The observation maps ``[value, validity]`` (B, T, H, W each) and the read-out basins'
    :func:`observation_features` (None without ``"basins"``) of ``streams``; ``x`` (B, T, ...) the
    dynamic input, for shape, device and dtype. No ``"obs"`` = every gauge silent; no
    ``"obs_index"`` = no read-out basin is a gauge."""
    b, t = x.shape[:2]
    masks = streams["obs_basins"].to(x.device, x.dtype)
    obs = streams.get("obs")
    obs = x.new_full((b, t, masks.shape[0]), float("nan")) if obs is None else obs.to(x.device, x.dtype)
    lead_in = obs.shape[1] - t  # days before the sequence (the heads' observation history)
    if lead_in < 0:
        raise ValueError(f"the obs stream has {obs.shape[1]} days for a sequence of {t}")
    now = obs[:, lead_in:]
    area = streams.get("obs_area")
    om, ov = observation_maps(now, masks, None if area is None else area.to(x.device, x.dtype))
    basin_ch = streams.get("basins")
    if basin_ch is None:
        return [om, ov], None
    index = streams.get("obs_index")
    index = torch.full((basin_ch.shape[0],), -1, dtype=torch.long) if index is None else index
    return [om, ov], observation_features(obs, index.to(x.device), basin_ch.to(x.device), om, ov, obs_days,
                                         lead_in=lead_in)


def observation_maps(obs: torch.Tensor, masks: torch.Tensor, area: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Observed discharge painted as maps: ``obs`` (B, T, G) normalised specific discharge of G
    gauges (NaN = not observed), ``masks`` (G, H, W) their basin fractions. Returns ``(value,
    validity)`` each (B, T, H, W): in a cell, the mean of the valid gauges whose basin covers it
    weighted by 1/area² (so a nested small basin speaks for its own cells, the big basin around it
    for the rest); 0 where none; validity = the covered fraction of the cell (0..1). ``area`` (G,)
    (the ``"obs_area"`` stream: masks cut to a window of the domain) replaces the masks' sums as
    the gauges' areas, so that a window's maps are the whole domain's cut to it."""
    valid = torch.isfinite(obs).to(masks.dtype)
    v = torch.nan_to_num(obs, nan=0.0).to(masks.dtype)
    area = (masks.sum(dim=(-2, -1)) if area is None else area.to(masks.dtype)).clamp_min(1e-6)
    w = (area.min() / area) ** 2  # (G,), largest weight 1
    num = torch.einsum("btg,ghw->bthw", v * valid * w, masks)
    den = torch.einsum("btg,ghw->bthw", valid * w, masks)
    cover = torch.einsum("btg,ghw->bthw", valid, masks).clamp(max=1.0)
    value = torch.where(den > 1e-12, num / den.clamp_min(1e-12), torch.zeros_like(num))
    return value, cover


def observation_features(obs: torch.Tensor, obs_index: torch.Tensor, basin_ch: torch.Tensor,
                         obs_value: torch.Tensor, obs_valid: torch.Tensor, obs_days: int = 1,
                         lead_in: int = 0) -> torch.Tensor:
    """(B, T, N, F) per read-out basin: its own observation (0 where none), whether it has one, and
    the basin means of the observation maps' value and validity (what its gauged neighbours and
    nested gauges say; all an ungauged basin gets); with ``obs_days`` > 1 then its own observation
    and validity of each of the ``obs_days - 1`` days before (day 1 back first): the recession or
    rise the last days show. ``obs`` (B, lead_in + T, G) may begin ``lead_in`` days before the
    sequence (the maps ``obs_value``/``obs_valid`` are of its T days): those days give the
    history of the first issue days; without them it is unknown there. F = :func:`n_obs_features`."""
    idx = obs_index.long()
    if obs.shape[-1]:
        own = obs[..., idx.clamp_min(0)]
        has = torch.isfinite(own) & (idx >= 0)
    else:
        own = obs.new_zeros(*obs.shape[:2], idx.numel())
        has = torch.zeros_like(own, dtype=torch.bool)
    own_all = torch.where(has, torch.nan_to_num(own, nan=0.0), torch.zeros_like(own))  # (B, lead_in + T, N)
    t = own_all.shape[1] - lead_in
    avg = basin_average(obs_value.unsqueeze(2), basin_ch)[..., 0]
    avg_valid = basin_average(obs_valid.unsqueeze(2), basin_ch)[..., 0]
    feats = [own_all[:, lead_in:], has[:, lead_in:].to(own.dtype), avg, avg_valid]
    for j in range(1, int(obs_days)):
        back = own_all.new_zeros(own_all.shape[0], t, own_all.shape[2])
        back_has = torch.zeros_like(back, dtype=torch.bool)
        first = max(j - lead_in, 0)  # the first issue day whose day j back is in the stream
        if t > first:
            back[:, first:] = own_all[:, lead_in + first - j: lead_in + t - j]
            back_has[:, first:] = has[:, lead_in + first - j: lead_in + t - j]
        feats += [back, back_has.to(own.dtype)]
    return torch.stack(feats, dim=-1)


class LumpedLSTM(nn.Module):
    """The lumped baseline: an LSTM over basin-averaged inputs (+ static basin attributes).

    ``forward(streams, state=None)``: the same named streams as :class:`HydroConvLSTM` →
    ``{"q": (B, T, N, L), "state": (h, c)}`` normalised discharge, same time convention. The maps
    are averaged over each basin (:func:`lumped_inputs`); with ``observed=1`` it gets the same
    per-basin observation features as the ConvLSTM's head, with ``forecast=1`` the basin means of
    the forecast channels of the lead days (the same information as the ConvLSTM's rollout).

    ``forward(x)`` with a tensor ``x`` (B, T, n_inputs) or (B, T, N, n_inputs) (N basins, each its
    own sequence) runs the LSTM on ready-made lumped inputs → (B, T, L) or (B, T, N, L).
    """

    def __init__(self, n_inputs: int, hidden: int, lead_days: int, observed: int = 0, forecast: int = 0,
                 quantiles: int = 0, obs_days: int = 1):
        super().__init__()
        self._hparams = {"n_inputs": int(n_inputs), "hidden": int(hidden), "lead_days": int(lead_days),
                         "observed": int(observed), "forecast": int(forecast), "quantiles": int(quantiles),
                         "obs_days": int(obs_days)}
        self.lstm = nn.LSTM(n_inputs, hidden, batch_first=True)
        self.out = nn.Linear(hidden, lead_days)
        if quantiles:  # the distribution from the detached LSTM output (see the module docstring)
            nq = len(QUANTILE_LEVELS)
            self.spread = nn.Linear(hidden, lead_days * nq)
            with torch.no_grad():
                self.spread.weight.mul_(0.01)
                self.spread.bias.view(lead_days, nq)[:, 0].zero_()
                self.spread.bias.view(lead_days, nq)[:, 1:].fill_(_inverse_softplus(_GAP0))
            self.register_buffer("spread_scale", torch.ones(lead_days, len(QUANTILE_LEVELS)))
        if observed:  # the same start from persistence as the ConvLSTM's head (BasinHead.obs_skip)
            self.obs_skip = nn.Parameter(torch.ones(lead_days))
            # and the same updating with the issue day's error (forward.update_run)
            self.register_buffer("update_gain", torch.zeros(lead_days))
            self.register_buffer("persistence_weight", torch.zeros(0, lead_days))
        with torch.no_grad():  # PyTorch gate order i, f, g, o
            self.lstm.bias_hh_l0[hidden:2 * hidden].fill_(1.0)
            self.lstm.bias_ih_l0[hidden:2 * hidden].zero_()

    @property
    def hparams(self) -> dict[str, Any]:
        return dict(self._hparams)

    def forward(self, x, state=None):
        if isinstance(x, Mapping):
            _check_streams(x)
            hp = self._hparams
            inputs = lumped_inputs(x, observed=hp["observed"], forecast=hp["forecast"], obs_days=hp["obs_days"])
            q, final, h = self._run(inputs, state)
            if hp["observed"]:
                n_dyn = x["dynamic"].shape[2]
                k = inputs.shape[-1] - hp["forecast"] * hp["lead_days"] * n_dyn - n_obs_features(hp["obs_days"])
                q = q + (inputs[..., k] * inputs[..., k + 1]).unsqueeze(-1) * self.obs_skip
            out = {"q": q, "state": final}
            if hp["quantiles"]:
                raw = self.spread(h.detach()).unflatten(-1, (hp["lead_days"], len(QUANTILE_LEVELS)))
                out["q_quantiles"] = _scaled(q, quantiles_around(q.detach(), raw),
                                             None if self.training else self.spread_scale)
            days = x.get("rollout_days")
            if days is not None:
                out = {k: (v[:, days.to(q.device)] if k != "state" else v) for k, v in out.items()}
            return out
        return self._run(x, state)[0]

    def _run(self, x, state=None):
        """(outputs, final state, LSTM outputs) of ready-made lumped inputs."""
        if x.ndim == 4:
            b, t, n, c = x.shape
            y, final, h = self._run(x.permute(0, 2, 1, 3).reshape(b * n, t, c), state)
            return y.view(b, n, t, -1).permute(0, 2, 1, 3), final, h.view(b, n, t, -1).permute(0, 2, 1, 3)
        h, final = self.lstm(x, state)
        return self.out(h), final, h


def basin_average(x: torch.Tensor, basin_ch: torch.Tensor) -> torch.Tensor:
    """Mask-weighted basin means of maps ``x`` (B, T, C, H, W) -> (B, T, N, C): the lumped inputs."""
    mask = basin_ch[:, 0].to(x.dtype)
    mask = mask / mask.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
    return torch.einsum("btchw,nhw->btnc", x, mask)


def lumped_inputs(streams: Mapping[str, torch.Tensor], observed: int = 0, forecast: int = 0,
                  obs_days: int = 1) -> torch.Tensor:
    """The lumped LSTM's inputs (B, T, N, C): basin averages of the ``"dynamic"`` channels and of
    the ``"static"`` layers, plus log10 of ``"basin_area_km2"``; with ``observed`` the
    :func:`observation_features`, with ``forecast`` the basin means of every ``"forecast"``
    channel of every lead day (L * n_dynamic values)."""
    x, static, basin_ch = streams["dynamic"], streams["static"], streams["basins"]
    if static.ndim == 4:
        static = static[0]
    b, t = x.shape[:2]
    dyn = basin_average(x, basin_ch)  # (B, T, N, C)
    st = basin_average(static.unsqueeze(0).unsqueeze(0), basin_ch)[0, 0]  # (N, S)
    area = torch.as_tensor(streams["basin_area_km2"], device=x.device).to(x.dtype)
    area = torch.log10(area.clamp_min(1e-3)).view(-1, 1)
    st = torch.cat([st, area], dim=1)
    parts = [dyn, st.view(1, 1, *st.shape).expand(b, t, -1, -1)]
    if observed:
        parts.append(_observations(streams, x, obs_days)[1])
    if forecast:
        fc = streams["forecast"].to(x.dtype)  # (B, T, L, C, H, W)
        mask = basin_ch[:, 0].to(x.dtype)
        mask = mask / mask.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
        parts.append(torch.einsum("btlchw,nhw->btnlc", fc, mask).flatten(-2))
    return torch.cat(parts, dim=-1)


def _check_streams(streams: Mapping) -> None:
    unknown = set(streams) - set(STREAMS)
    if unknown:
        raise ValueError(f"unknown input streams {sorted(unknown)}; known: {list(STREAMS)}")
    if "dynamic" not in streams:
        raise ValueError("the input streams need 'dynamic'")


def _basin_std(basin_std, obs: torch.Tensor, basin_dim: int, like: torch.Tensor) -> torch.Tensor:
    """``basin_std`` as a tensor broadcastable to ``obs``: an (N,) vector is put on ``basin_dim``."""
    std = torch.as_tensor(basin_std, dtype=like.dtype, device=like.device)
    if std.ndim == 1 and obs.ndim > 1:
        shape = [1] * obs.ndim
        shape[basin_dim] = -1
        std = std.view(shape)
    return std


def nse_star_loss(pred: torch.Tensor, obs: torch.Tensor, basin_std: torch.Tensor | float,
                  eps: float = 0.1, basin_dim: int = -2) -> torch.Tensor:
    """NSE* loss (Kratzert et al. 2019): mean over valid observations of
    ``(pred - obs)^2 / (std_b + eps)^2``.

    ``pred``, ``obs`` have the same shape, e.g. (B, T, N, L); NaN in ``obs`` marks a missing
    observation, excluded from the sum and from the count. ``basin_std`` is each basin's
    discharge standard deviation over the training period, in the units of ``obs``: a tensor of
    shape (N,) indexed along ``basin_dim`` (default -2, the basin axis of ``q``), or anything
    broadcastable to ``obs``. If ``obs`` is already z-scored per basin, pass ``basin_std=1``: the
    loss is then MSE / (1 + eps)^2, the same basin weighting. With no valid observation the loss
    is a zero that still carries the graph.
    """
    std = _basin_std(basin_std, obs, basin_dim, pred)
    valid = ~torch.isnan(obs)
    err = torch.where(valid, pred - torch.where(valid, obs, torch.zeros_like(obs)), torch.zeros_like(pred))
    weighted = err.square() / (std + eps).square()
    return weighted.sum() / valid.sum().clamp_min(1)


def _inverse_softplus(y: float) -> float:
    return math.log(math.expm1(y))


def quantiles_around(center: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """Monotone quantiles (..., Q) at :data:`QUANTILE_LEVELS` around ``center`` (...), the
    deterministic forecast: ``raw[..., 0]`` is the median's shift from it (a forecast trained on
    squared errors is a mean, and a river's distribution is skewed: the median lies below),
    ``raw[..., 1:]`` (Q - 1) the gaps between neighbouring levels before a softplus (so never
    negative), the lower half stacked downwards from the median, the upper half upwards."""
    med = center + raw[..., 0]
    gaps = F.softplus(raw[..., 1:])
    m = (len(QUANTILE_LEVELS) - 1) // 2  # levels below the median
    lower = med.unsqueeze(-1) - torch.flip(torch.cumsum(torch.flip(gaps[..., :m], [-1]), -1), [-1])
    upper = med.unsqueeze(-1) + torch.cumsum(gaps[..., m:], -1)
    return torch.cat([lower, med.unsqueeze(-1), upper], dim=-1)


def _scaled(center: torch.Tensor, qq: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """The quantiles ``qq`` (..., L, Q) with each one's distance from ``center`` (..., L) times
    ``scale`` (L, Q) (None: as they are), then sorted (the rearrangement of Chernozhukov et al.
    2010: it can only lower the pinball loss) so that they never cross."""
    if scale is None:
        return qq
    c = center.unsqueeze(-1)
    return torch.sort(c + (qq - c) * scale.to(qq.dtype), dim=-1).values


def quantile_loss(qq: torch.Tensor, obs: torch.Tensor, basin_std: torch.Tensor | float, eps: float = 0.1,
                  basin_dim: int = -2) -> torch.Tensor:
    """The pinball loss of quantiles ``qq`` (..., Q) at :data:`QUANTILE_LEVELS` against ``obs``
    (...), NaN observations masked: the mean over valid observations and levels of
    ``max(tau (o - q), (tau - 1)(o - q)) / (std_b + eps)``, basins weighted as in
    :func:`nse_star_loss`. Twice its mean over equally spaced levels approximates the CRPS."""
    levels = torch.as_tensor(QUANTILE_LEVELS, dtype=qq.dtype, device=qq.device)
    std = _basin_std(basin_std, obs, basin_dim, qq)
    valid = ~torch.isnan(obs)
    err = torch.where(valid, obs, torch.zeros_like(obs)).unsqueeze(-1) - qq
    pin = torch.maximum(levels * err, (levels - 1) * err) / (std + eps).unsqueeze(-1)
    pin = torch.where(valid.unsqueeze(-1), pin, torch.zeros_like(pin))
    return pin.sum() / (valid.sum() * len(QUANTILE_LEVELS)).clamp_min(1)


def fit_spread_scale(center, qq, obs, grid=None) -> list[list[float]]:
    """Per lead and quantile level, the factor on the quantile's distance from ``center`` that
    minimises that level's mean pinball loss against ``obs`` (numpy arrays (T, N, L), (T, N, L,
    Q), (T, N, L); NaN = no observation): a quantile recalibration on a period the model was not
    fitted on (the validation period). Grid 0 .. 4 by default (0: the level collapses onto the
    deterministic forecast); 1.0 where a lead has no observation. Returns (L, Q) nested lists."""
    import numpy as np

    grid = np.round(np.arange(0.0, 4.0001, 0.05), 2) if grid is None else np.asarray(grid)
    levels = np.asarray(QUANTILE_LEVELS)
    out = []
    for l in range(center.shape[-1]):
        c, d, o = center[..., l], qq[..., l, :] - center[..., l, None], obs[..., l]
        ok = np.isfinite(o) & np.isfinite(c)
        row = [1.0] * len(levels)
        if ok.any():
            c, d, o = c[ok], d[ok], o[ok]
            err = o[:, None, None] - (c[:, None, None] + grid[None, :, None] * d[:, None, :])  # (n, G, Q)
            loss = np.maximum(levels * err, (levels - 1) * err).mean(axis=0)  # (G, Q)
            row = [float(grid[int(np.argmin(loss[:, k]))]) for k in range(len(levels))]
        out.append(row)
    return out


def fit_update_gain(center, errors, obs, basin_std, eps: float = 0.1) -> list[float]:
    """Per lead, the gain ``g`` of :func:`hydrocast.forward.update_run` that minimises the NSE*
    loss of ``center + g * errors`` against ``obs`` (numpy (T, N, L), (T, N), (T, N, L), normalised;
    NaN = none), basins weighted ``1 / (basin_std + eps)^2`` as in training: the weighted least
    squares slope of the residuals on the issue-day errors, clipped to [0, 1] (an error is never
    made worse, nor more than made up); 0 for a lead without data."""
    import numpy as np

    w = 1.0 / (np.asarray(basin_std, dtype="float64") + eps) ** 2  # (N,)
    out = []
    for l in range(center.shape[-1]):
        r, e = obs[..., l] - center[..., l], np.asarray(errors, dtype="float64")
        ok = np.isfinite(r) & np.isfinite(e) & (e != 0)
        ww = np.broadcast_to(w, r.shape)[ok]
        den = float((ww * e[ok] ** 2).sum())
        out.append(float(np.clip((ww * r[ok] * e[ok]).sum() / den, 0.0, 1.0)) if den > 0 else 0.0)
    return out


def fit_persistence_weight(center, issue_obs, obs, min_days: int = 30):
    """(N, L) the weights ``w`` of the blend with persistence (module docstring, "Blending with
    persistence") that minimise, per basin and lead, the squared error of
    ``center + w * (issue_obs - center)`` against ``obs`` (numpy: ``center`` and ``obs`` (T, N, L),
    ``issue_obs`` (T, N), or (T, N, L) for a persistence of its own per lead; normalised, the
    forecasts already updated; NaN = none): the least-squares slope of the
    residuals on the distance to persistence, clipped to [0, 1] (between the model and
    persistence, never beyond either); 0 for a basin and lead with fewer than ``min_days`` days."""
    import numpy as np

    c = np.asarray(center, dtype="float64")
    r = np.asarray(obs, dtype="float64") - c
    p = np.asarray(issue_obs, dtype="float64")
    d = (p[:, :, None] if p.ndim == 2 else p) - c
    ok = np.isfinite(r) & np.isfinite(d)
    num = np.where(ok, r * d, 0.0).sum(axis=0)
    den = np.where(ok, d * d, 0.0).sum(axis=0)
    w = np.clip(np.divide(num, den, out=np.zeros_like(num), where=den > 0), 0.0, 1.0)
    return np.where(ok.sum(axis=0) >= min_days, w, 0.0).astype("float32")


def discharge_from_normalised(q_norm: torch.Tensor, mean: torch.Tensor | float, std: torch.Tensor | float,
                              mode: str = "clamp", softness: float = 0.05) -> torch.Tensor:
    """Physical discharge (e.g. m3/s), never negative, from the head's normalised output.

    ``q = mean + std * q_norm`` then ``mode="clamp"``: ``max(0, q)`` (default; can only reduce the
    error against a non-negative observation), or ``mode="softplus"``: ``s * softplus(q / s)``
    with ``s = softness * std`` (smooth, >= 0, at most ``s * log 2`` above the clamp).
    ``mean``/``std`` broadcast against ``q_norm`` (for (B, T, N, L) pass shape (N, 1)).
    """
    mean_t = torch.as_tensor(mean, dtype=q_norm.dtype, device=q_norm.device)
    std_t = torch.as_tensor(std, dtype=q_norm.dtype, device=q_norm.device)
    q = mean_t + std_t * q_norm
    if mode == "clamp":
        return q.clamp_min(0.0)
    if mode == "softplus":
        s = (softness * std_t).clamp_min(torch.finfo(q.dtype).tiny)
        return s * F.softplus(q / s)
    raise ValueError(f"mode must be 'clamp' or 'softplus', got {mode!r}")
