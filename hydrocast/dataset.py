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

Tiled training (``[train] tile_cells`` > 0): :class:`TileItems`, a torch ``Dataset`` of the same
batches on each window of :mod:`hydrocast.tiles` (H, W, N and G those of the window), read in a
fixed order by :class:`TileBatches` through a ``DataLoader``.
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
                 seed: tuple, rollout: bool, stand_in: bool, device, shard: bool = False,
                 part: tuple[int, int] | None = None, stand_in_errors=None):
        self.inp, self.q_norm, self.map_var = inputs, q_norm, map_var
        self.chunks, self.T, self.last_target = list(chunks), chunk_days, last_target
        self.seed, self.rollout, self.stand_in, self.device = seed, rollout, stand_in, device
        self.shard, self.part = shard, part  # part: (rank, world size) fixed by the caller (loader workers)
        self.stand_in_errors = stand_in_errors  # per lead: hydrocast.standin.LeadError, or None

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
                                                 stand_in=rng if self.stand_in and self.rollout else None,
                                                 stand_in_errors=self.stand_in_errors)
        if out["forecast"].shape[0] < T:
            pad = np.zeros((T - out["forecast"].shape[0], *out["forecast"].shape[1:]), dtype="float32")
            out["forecast"] = np.concatenate([out["forecast"], pad])
        return out

    def __iter__(self):
        for j in range(len(self.chunks)):
            batch = self.build(j, np.random.default_rng([*self.seed, j]))
            yield {k: v.to(self.device) for k, v in batch.items()}

    def build(self, j: int, rng: np.random.Generator) -> dict:
        """The batch of chunk ``j`` (CPU tensors), its random draws from ``rng``."""
        chunk = self.chunks[j]
        items = [self.stream(s, burn, rng) for s, burn in zip(chunk.starts, chunk.burn)]
        reset = chunk.reset
        if self.shard:
            items, reset = self.share(items, reset, self.part)
        batch = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}
        batch["reset"] = torch.tensor(reset, dtype=torch.bool)
        if self.rollout:
            batch["rollout_days"] = torch.arange(int(rng.integers(0, ROLLOUT_EVERY)), self.T, ROLLOUT_EVERY)
        return batch

    @staticmethod
    def share(items: list[dict], reset: tuple, part: tuple[int, int] | None = None) -> tuple[list[dict], tuple]:
        """This process's streams of a chunk (a target-less stand-in when its share is empty);
        ``part`` = (rank, world size) instead of this process's."""
        n = len(items)
        rows = distributed.share(n) if part is None else range(part[0] * n // part[1], (part[0] + 1) * n // part[1])
        if len(rows):
            return items[rows.start:rows.stop], reset[rows.start:rows.stop]
        blank = {k: np.full_like(v, np.nan) if k in ("q_target", "map_target") else v for k, v in items[0].items()}
        return [blank], (True,)


# -- tiled training ([train] tile_cells > 0) -----------------------------------------------------

class TileItems(torch.utils.data.Dataset):
    """The training items of one epoch on the windows of :mod:`hydrocast.tiles`: item ``i`` is
    (chunk ``j``, window ``w``) = ``divmod(i, n_windows)`` (chunk-major: a window's state is
    carried from its chunk ``j`` to its chunk ``j + 1``), the batch of :class:`ChunkBatches` built
    on the window's cells and basins, plus what the window's forward pass needs::

        "window"          ()               w
        "basin_rows"      (N_w,) long      the window's basins (rows of the domain's basins)
        "static"          (S, h, w)
        "basins"          (N_w, 2, h, w)
        "basin_area_km2"  (N_w,)
        "obs_basins", "obs_index", "obs_area"   the gauges reaching into the window (observed only)

    Its random draws (hold-out, stand-in, rollout days) come from a generator seeded by (seed,
    epoch, chunk, window), so they do not depend on which process builds the item (loader
    workers); a plan of one window draws as the whole domain does (seed, epoch, chunk).

    Picklable, and it reads the cube (and the forecast store) through handles it opens itself in
    each process: the handles of ``inputs`` (the training process's) are used only in the process
    that made the object, never pickled nor used after a fork; a loader worker's own handles are
    closed when it exits (``persistent_workers=False``: at the end of each epoch).
    """

    def __init__(self, inputs, q_norm: np.ndarray, map_var: str, chunks: list, chunk_days: int, last_target: int,
                 seed: tuple, rollout: bool, stand_in: bool, windows: list, shard: bool = False,
                 stand_in_errors=None):
        import dataclasses
        import os

        self.base = dataclasses.replace(inputs, reader=None, forecasts=None,
                                        static=np.asarray(inputs.static.cpu() if hasattr(inputs.static, "cpu")
                                                          else inputs.static))
        self.cube_path = inputs.reader.path
        self.forecast_path = None if inputs.forecasts is None else inputs.forecasts.path
        self.q_norm, self.map_var, self.chunks, self.T = q_norm, map_var, list(chunks), chunk_days
        self.last_target, self.seed, self.rollout, self.stand_in = last_target, seed, rollout, stand_in
        self.windows, self.shard, self.stand_in_errors = list(windows), shard, stand_in_errors
        # the torchrun share is this process's, fixed here: a loader worker is no member of the group
        self.part = (distributed.rank(), distributed.world_size()) if shard else None
        self._pid, self._handles = os.getpid(), (inputs.reader, inputs.forecasts)
        self._inputs: dict = {}

    def __len__(self) -> int:
        return len(self.chunks) * len(self.windows)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_pid=None, _handles=None, _inputs={})
        return state

    def open(self):
        """(cube reader, forecast reader) of this process: opened here on first use."""
        import os

        if self._pid != os.getpid():  # unpickled, or forked: never touch the parent's handles
            from .samples import CubeReader

            forecasts = None
            if self.forecast_path is not None:
                from .forecasts import ForecastReader

                forecasts = ForecastReader(self.forecast_path)
            self._pid, self._handles, self._inputs = os.getpid(), (CubeReader(self.cube_path), forecasts), {}
        return self._handles

    def inputs(self, w: int):
        """The :class:`hydrocast.forward.ModelInputs` of window ``w`` (cached per process)."""
        import dataclasses

        reader, forecasts = self.open()
        if w not in self._inputs:
            win = self.windows[w]
            full = dataclasses.replace(self.base, reader=reader, forecasts=forecasts)
            self._inputs[w] = full.window(win.rows, win.cols, win.basins)
        return self._inputs[w]

    def __getitem__(self, i: int) -> dict:
        j, w = divmod(int(i), len(self.windows))
        win, inp = self.windows[w], self.inputs(w)
        rows = np.asarray(win.basins, dtype="int64")
        seed = [*self.seed, j] if len(self.windows) == 1 else [*self.seed, j, w]
        chunks = ChunkBatches(inp, self.q_norm[:, rows], self.map_var, self.chunks, self.T, self.last_target,
                              seed=self.seed, rollout=self.rollout, stand_in=self.stand_in, device=None,
                              shard=self.shard, part=self.part, stand_in_errors=self.stand_in_errors)
        batch = chunks.build(j, np.random.default_rng(seed))
        batch.update(window=torch.tensor(w), basin_rows=torch.from_numpy(rows),
                     static=torch.from_numpy(np.ascontiguousarray(inp.static)),
                     basins=torch.from_numpy(np.ascontiguousarray(inp.basins)),
                     basin_area_km2=torch.as_tensor(np.asarray(inp.area_km2, dtype="float64")))
        if inp.obs_basins is not None:
            batch.update(obs_basins=torch.from_numpy(inp.obs_basins),
                         obs_index=torch.as_tensor(np.asarray(inp.obs_index, dtype="int64")),
                         obs_area=torch.as_tensor(np.asarray(inp.obs_area, dtype="float32")))
        return batch


class TileBatches:
    """The epoch's batches of :class:`TileItems` in their fixed order, read through a torch
    ``DataLoader`` (``workers`` spawned processes ahead, each with its own handles on the cube,
    or none: in this process), on ``device``."""

    def __init__(self, items: TileItems, device, workers: int = 0):
        self.items, self.device, self.workers = items, device, workers

    def __len__(self) -> int:
        return len(self.items)

    def loader(self):
        from torch.utils.data import DataLoader, SequentialSampler

        # spawned, not forked: a forked child inherits the parent's HDF5 library state (its open
        # files), and opening the cube again there crashed a worker (measured: a segfault)
        extra = ({"persistent_workers": False, "prefetch_factor": 2, "multiprocessing_context": "spawn"}
                 if self.workers > 0 else {})
        return DataLoader(self.items, batch_size=None, sampler=SequentialSampler(self.items),
                          num_workers=self.workers, **extra)

    def __iter__(self):
        for batch in self.loader():
            yield {k: v.to(self.device) for k, v in batch.items()}
