"""The one forward path with warm-up, shared by validation (train), predict and evaluate.

:func:`run_period` runs a model (the ConvLSTM or the lumped LSTM: both take the same named input
streams, see :mod:`hydrocast.model.network`) as ONE sequence over the issue days ``a..b``
(cube indices, inclusive), starting ``warmup`` days before ``a`` (input-only days), and returns a
:class:`PeriodRun` whose arrays carry named dimensions (:attr:`PeriodRun.DIMS`):

    q        (issue_day, basin, lead)     discharge, m3/s, never negative
    q_norm   (issue_day, basin, lead)     the network's standardised specific discharge
    maps     (issue_day, lead, y, x)      forecast map (normalised), ConvLSTM only
    runoff   (issue_day, lead, y, x)      runoff-generation map, ConvLSTM only

``q[t, n, l]`` is the forecast issued with data up to and including day ``a + t``, for day
``a + t + l + 1``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from .windows import to_discharge


@dataclass
class PeriodRun:
    DIMS = {"q": ("issue_day", "basin", "lead"), "q_norm": ("issue_day", "basin", "lead"),
            "maps": ("issue_day", "lead", "y", "x"), "runoff": ("issue_day", "lead", "y", "x")}

    issue_days: np.ndarray  # datetime64[D], (T,)
    q: np.ndarray
    q_norm: np.ndarray
    extra: dict = field(default_factory=dict)  # "maps", "runoff" where the model gives them

    def __getitem__(self, name: str) -> np.ndarray:
        return getattr(self, name) if name in ("q", "q_norm") else self.extra[name]

    def to_xarray(self, basin_ids: list[str]):
        """The run as an ``xarray.Dataset`` with named dimensions and coordinates."""
        import xarray as xr

        variables = {k: (self.DIMS[k], self[k]) for k in ("q", "q_norm", *self.extra)}
        lead = np.arange(1, self.q.shape[-1] + 1)
        return xr.Dataset(variables, coords={"issue_day": self.issue_days, "basin": list(basin_ids), "lead": lead})


def autocast(device):
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_period(net, reader, spec, static, basins: np.ndarray, area_km2: np.ndarray, q_mean: float, q_std: float,
               a: int, b: int, warmup: int, device=None) -> PeriodRun:
    """Run ``net`` over issue days ``a..b`` with ``warmup`` input-only days before ``a``.

    ``reader`` a :class:`hydrocast.samples.CubeReader`, ``spec`` its InputSpec, ``static`` the
    normalised static stack (tensor), ``basins`` (N, 2, H, W) channels, ``area_km2`` (N,)."""
    import torch

    device = device or torch.device("cpu")
    s = max(0, a - warmup)
    streams = {"dynamic": torch.from_numpy(reader.dynamic_window(spec, s, b + 1)).unsqueeze(0).to(device),
               "static": static.to(device),
               "basins": torch.as_tensor(np.ascontiguousarray(basins)).to(device),
               "basin_area_km2": torch.as_tensor(np.asarray(area_km2, dtype="float64")).to(device)}
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode(), autocast(device):
            out = net(streams)
    finally:
        net.train(was_training)
    qn = out["q"][0, a - s:].float().cpu().numpy()
    extra = {}
    if "maps" in out:
        extra["maps"] = out["maps"][0, a - s:, :, 0].float().cpu().numpy()
        extra["runoff"] = out["runoff"][0, a - s:].float().cpu().numpy()
    return PeriodRun(reader.days[a:b + 1], to_discharge(qn, q_mean, q_std, area_km2), qn, extra)
