"""Training batches: one batch = one :class:`~hydrocast.windows.Chunk` of the B training streams.

The content of each stream's chunk (inputs up to each issue day, targets after it, the
honest-period cut-off, the burn-in, the observation hold-out, the forecast stream with its
stand-in) is built from :mod:`hydrocast.windows` and :class:`hydrocast.samples.CubeReader`; this
module stacks the B streams into tensors on the device. Batches are dicts::

    "dynamic"       (B, T, C, H, W)
    "q_target"      (B, T, N, L)     NaN = no target (missing, burn-in, past the period's last day)
    "map_target"    (B, T, L, H, W)  NaN = no target
    "obs"           (B, T + K - 1, G) observed discharge at issue time, NaN = none or held out,
                                     after the K - 1 days before the chunk (K = ``obs_days``)
    "forecast"      (B, T, L, C, H, W) the lead days' channels for the rollout
    "reset"         (B,) bool        zero this stream's recurrent state before the chunk
    "rollout_days"  (T',) long       the issue days the rollout is trained from (every
                                     ``ROLLOUT_EVERY``-th day, random phase), with a rollout only

``shard=True`` (torchrun): every process builds the whole chunk (the hold-out and stand-in draws
come from one generator, stream after stream, so they are those of one process) and keeps its
share of the streams (:func:`hydrocast.distributed.share`); B is then that share. A process
whose share of a short batch (``memory_days = 0``: the epoch's last) is empty gets a copy of the
first stream without targets, so that it still takes part in the step with zero weight.
"""

from __future__ import annotations

import numpy as np
import torch

from . import distributed
from .windows import map_targets, observation_inputs, targets

#: in training, the forecast rollout runs from every third issue day (random phase per chunk):
#: a rollout from every day would cost L hindcast chunks more per chunk
ROLLOUT_EVERY = 3


class ChunkBatches:
    def __init__(self, inputs, q_norm: np.ndarray, map_var: str, chunks: list, chunk_days: int, last_target: int,
                 seed: tuple, rollout: bool, stand_in: bool, device, shard: bool = False):
        self.inp, self.q_norm, self.map_var = inputs, q_norm, map_var
        self.chunks, self.T, self.last_target = list(chunks), chunk_days, last_target
        self.seed, self.rollout, self.stand_in, self.device = seed, rollout, stand_in, device
        self.shard = shard

    def __len__(self) -> int:
        return len(self.chunks)

    def stream(self, start: int, burn: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One stream's chunk, days start..start+T-1 (padding past the cube's end)."""
        inp, reader, T, lead = self.inp, self.inp.reader, self.T, self.inp.lead
        stop = start + T
        x = reader.dynamic_window(inp.spec, start, stop, pad=True)
        y = targets(self.q_norm, start, stop, lead, self.last_target)
        stop_m = min(stop + lead, len(reader.days))
        m_n, valid = reader.normalise(reader.raw(self.map_var, start, stop_m), inp.spec.stats[self.map_var])
        m = map_targets(np.where(valid > 0, m_n, np.nan), start, stop, lead, self.last_target)
        y[:burn], m[:burn] = np.nan, np.nan
        out = {"dynamic": x, "q_target": y, "map_target": m}
        if inp.obs is not None:
            out["obs"] = observation_inputs(inp.obs, start, stop, self.last_target, rng, lead_in=inp.obs_days - 1)
        out["forecast"] = reader.forecast_window(inp.spec, inp.forecasts, inp.forecast_name, start,
                                                 min(stop, len(reader.days)), lead,
                                                 stand_in=rng if self.stand_in and self.rollout else None)
        if out["forecast"].shape[0] < T:
            pad = np.zeros((T - out["forecast"].shape[0], *out["forecast"].shape[1:]), dtype="float32")
            out["forecast"] = np.concatenate([out["forecast"], pad])
        return out

    def __iter__(self):
        for j, chunk in enumerate(self.chunks):
            rng = np.random.default_rng([*self.seed, j])
            items = [self.stream(s, burn, rng) for s, burn in zip(chunk.starts, chunk.burn)]
            reset = chunk.reset
            if self.shard:
                items, reset = self.share(items, reset)
            batch = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}
            batch["reset"] = torch.tensor(reset, dtype=torch.bool)
            if self.rollout:
                batch["rollout_days"] = torch.arange(int(rng.integers(0, ROLLOUT_EVERY)), self.T, ROLLOUT_EVERY)
            yield {k: v.to(self.device) for k, v in batch.items()}

    @staticmethod
    def share(items: list[dict], reset: tuple) -> tuple[list[dict], tuple]:
        """This process's streams of a chunk (a target-less stand-in when its share is empty)."""
        rows = distributed.share(len(items))
        if len(rows):
            return items[rows.start:rows.stop], reset[rows.start:rows.stop]
        blank = {k: np.full_like(v, np.nan) if k in ("q_target", "map_target") else v for k, v in items[0].items()}
        return [blank], (True,)
