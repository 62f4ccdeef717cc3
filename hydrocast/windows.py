"""Windows and targets: which days a model sees and which observations it is scored on (torch-free).

Contract (the honest-period rules, written once)
================================================

* A window is the days ``start <= i < stop`` of the cube. Its inputs are the dynamic maps of
  those days (nothing later). Its discharge target for issue day ``t`` and lead ``l`` (1..L) is
  the observation of day ``t + l``: ``y[t - start, n, l - 1] = q_norm[t + l, n]``.
* ``last_target``: no target (discharge or map) after this day index is ever given. Training
  passes the training period's last day, so no validation or test observation reaches a
  gradient; the warm-up days at the start of a window are inputs only (their targets are
  dropped by the loss).
* Statistics (input normalisation, discharge mean/std, per-basin spread) come from the
  training period's days only: :func:`discharge_norm` takes the period explicitly and
  :meth:`hydrocast.samples.CubeReader.compute_stats` likewise.
* Window starts (:func:`window_starts`) cover the training period once per epoch with a random
  phase; a window may begin up to ``warmup_days`` before the period (input-only days) and its
  last issue day leaves room for the lead days inside the period.

Everything here is plain numpy, unit-tested for leakage in tests/test_windows.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BadInputError, ConfigError


@dataclass(frozen=True)
class Periods:
    """Training and validation periods as inclusive day indices of the cube."""

    t0: int
    t1: int
    v0: int
    v1: int


def day_index(days: np.ndarray, day, what: str, source) -> int:
    """Index of ``day`` in the (contiguous, daily) cube ``days``; BadInputError when outside."""
    d = np.datetime64(day, "D")
    if len(days) == 0 or d < days[0] or d > days[-1]:
        held = f"{days[0]} .. {days[-1]}" if len(days) else "no day"
        raise BadInputError(f"{source}: {what} day {d} is outside the cube ({held})")
    return int((d - days[0]).astype(int))


def periods(days: np.ndarray, train_period, validation_period, window_days: int, source, cfg_path) -> Periods:
    """The :class:`Periods` of a config on a cube; ConfigError when they overlap or are too short."""
    if train_period is None or validation_period is None:
        raise ConfigError(f"{cfg_path}: [train] needs train_period and validation_period")
    p = Periods(day_index(days, train_period[0], "train_period start", source),
                day_index(days, train_period[1], "train_period end", source),
                day_index(days, validation_period[0], "validation_period start", source),
                day_index(days, validation_period[1], "validation_period end", source))
    if p.v0 <= p.t1 and p.t0 <= p.v1:
        raise ConfigError(f"{cfg_path}: [train] train_period and validation_period overlap")
    if p.t1 - p.t0 + 1 < window_days:
        raise ConfigError(f"{cfg_path}: [train] train_period ({p.t1 - p.t0 + 1} days) is shorter than "
                          f"window_days ({window_days})")
    return p


@dataclass(frozen=True)
class DischargeNorm:
    """Specific discharge (mm/day = m3/s * 86.4 / km2) standardised with ONE mean/std pooled
    over the training basins and days: the network's output then means the same in every basin,
    so an ungauged basin's discharge is that output times its own area. ``basin_std`` (each
    basin's spread of the standardised values, training days only) weighs the NSE* loss."""

    mean: float
    std: float
    basin_std: np.ndarray  # (N,)

    def normalise(self, q_m3s: np.ndarray, area_km2: np.ndarray) -> np.ndarray:
        spec = np.asarray(q_m3s, dtype="float64") * 86.4 / np.asarray(area_km2, dtype="float64")
        return ((spec - self.mean) / self.std).astype("float32")


def discharge_norm(q_m3s: np.ndarray, area_km2: np.ndarray, t0: int, t1: int) -> DischargeNorm:
    """Statistics of ``q_m3s`` (days, N) over the days ``t0..t1`` (inclusive) only."""
    spec = np.asarray(q_m3s, dtype="float64") * 86.4 / np.asarray(area_km2, dtype="float64")
    train = spec[t0:t1 + 1]
    mean = float(np.nanmean(train))
    std = float(np.nanstd(train)) or 1.0
    norm = ((train - mean) / std).astype("float32")  # float32, as the network sees it
    with np.errstate(invalid="ignore"):
        bs = np.nanstd(norm, axis=0) if norm.size else np.ones(spec.shape[1])
    bs = np.where(np.isfinite(bs) & (bs > 0), bs, 1.0)
    return DischargeNorm(mean, std, bs)


def to_discharge(qn: np.ndarray, mean: float, std: float, area_km2: np.ndarray) -> np.ndarray:
    """Network output (..., N, L), standardised specific discharge → m3/s (never negative).

    The clamp at zero can only reduce the error against an observation (which is >= 0)."""
    spec = np.maximum(mean + std * np.asarray(qn, dtype="float64"), 0.0)
    return (spec * np.asarray(area_km2, dtype="float64")[:, None] / 86.4).astype("float32")


def targets(q_norm: np.ndarray, start: int, stop: int, lead: int, last_target: int,
            dtype: str = "float32") -> np.ndarray:
    """(T, N, L) targets for issue days start..stop-1: ``q_norm[t + l + 1]``; NaN past
    ``last_target`` (so training never sees a validation day) and past the record. Also the
    observations a hindcast is scored against (``last_target`` = the record's last day)."""
    T, N = stop - start, q_norm.shape[1]
    out = np.full((T, N, lead), np.nan, dtype=dtype)
    for l in range(lead):  # noqa: E741 - l is the lead index throughout
        a, b = start + l + 1, min(stop + l + 1, last_target + 1, len(q_norm))
        if b > a:
            out[: b - a, :, l] = q_norm[a:b]
    return out


def map_targets(maps_norm: np.ndarray, start: int, stop: int, lead: int, last_target: int) -> np.ndarray:
    """(T, L, H, W) next-days map targets for issue days start..stop-1 from a normalised block
    ``maps_norm`` of days start..stop+lead-1 (NaN where unobserved): day ``t + l + 1``; NaN past
    ``last_target`` and past the block."""
    T = stop - start
    out = np.full((T, lead, *maps_norm.shape[1:]), np.nan, dtype="float32")
    for l in range(lead):  # noqa: E741
        a, b = l + 1, min(T + l + 1, last_target - start + 1, len(maps_norm))
        if b > a:
            out[: b - a, l] = maps_norm[a:b]
    return out


def window_starts(seed: int, epoch: int, p: Periods, window_days: int, warmup_days: int, lead_days: int,
                  n_days: int) -> list[int]:
    """Window starts covering the training period once, with a random phase per epoch (shuffled)."""
    T, warm = window_days, warmup_days
    rng = np.random.default_rng([seed, epoch])
    first = max(0, p.t0 - warm)  # warm-up may use (input-only) days before the period
    last = p.t1 - T + 1 + lead_days
    last = max(first, min(last, n_days - T))
    stride = T - warm
    phase = int(rng.integers(0, stride))
    starts = list(range(first + phase, last + 1, stride)) or [first]
    rng.shuffle(starts)
    return starts


def window_arrays(reader, spec, q_norm: np.ndarray, map_var: str, start: int, stop: int, lead: int,
                  last_target: int) -> dict[str, np.ndarray]:
    """One training window read from the cube: the ``"dynamic"`` input stream (T, C, H, W),
    ``"q_target"`` (T, N, L) and ``"map_target"`` (T, L, H, W, NaN = not observed or past
    ``last_target``). ``reader`` is a :class:`hydrocast.samples.CubeReader`."""
    x = reader.dynamic_window(spec, start, stop)
    y = targets(q_norm, start, stop, lead, last_target)
    stop_m = min(stop + lead, len(reader.days))
    m_n, valid = reader.normalise(reader.raw(map_var, start, stop_m), spec.stats[map_var])
    m_n = np.where(valid > 0, m_n, np.nan)
    return {"dynamic": x, "q_target": y, "map_target": map_targets(m_n, start, stop, lead, last_target)}


# -- stateful training streams (memory) ----------------------------------------------------------

@dataclass(frozen=True)
class Chunk:
    """One optimiser step of the stateful training: for each of the B streams, the first day of its
    chunk, whether its recurrent state is zeroed before it, and how many of its first days are
    not scored (burn-in after a zero state; and issue days before the training period)."""

    starts: tuple[int, ...]
    reset: tuple[bool, ...]
    burn: tuple[int, ...]


def stream_chunks(p: Periods, chunk_days: int, burnin_days: int, n_streams: int, fresh: bool) -> list[Chunk]:
    """The chunks of one epoch of stateful training (truncated back-propagation through time).

    The training span starts ``burnin_days`` before the training period where the cube has them
    (input-only days) and is cut into chunks of ``chunk_days``; the last chunk may reach past the
    period's end (its targets are cut there, and past the cube its inputs are padding). Stream
    ``k`` walks the chunks in order starting at chunk ``k n / B`` (plus 2 chunks for odd ``k``, so
    that one batch holds different seasons) and carries its state from chunk to chunk and from epoch to
    epoch; it restarts with a zero state at the span's first chunk. ``fresh`` (no state yet:
    the first epoch, or a resumed run) also zeroes every stream's state before its first chunk.
    After a zero state the first ``burnin_days`` days are not scored; nor is an issue day
    before the training period."""
    s0 = max(0, p.t0 - burnin_days)
    n = max(1, -(-(p.t1 + 1 - s0) // chunk_days))
    offsets: list[int] = []
    for k in range(n_streams):
        o = (k * n // n_streams + 2 * (k % 2)) % n
        while o in offsets and len(offsets) < n:
            o = (o + 1) % n
        offsets.append(o)
    out = []
    for j in range(n):
        starts, reset, burn = [], [], []
        for o in offsets:
            c = (o + j) % n
            start = s0 + c * chunk_days
            zero = c == 0 or (fresh and j == 0)
            starts.append(start)
            reset.append(zero)
            burn.append(max(burnin_days if zero else 0, p.t0 - start, 0))
        out.append(Chunk(tuple(starts), tuple(reset), tuple(burn)))
    return out


def legacy_chunks(seed: int, epoch: int, p: Periods, window_days: int, warmup_days: int, lead_days: int,
                  n_days: int, batch_size: int) -> list[Chunk]:
    """Without memory (``memory_days = 0``): the random windows of :func:`window_starts`, each from
    a zero state with ``warmup_days`` unscored, ``batch_size`` per step."""
    starts = window_starts(seed, epoch, p, window_days, warmup_days, lead_days, n_days)
    out = []
    for i in range(0, len(starts), batch_size):
        s = starts[i:i + batch_size]
        out.append(Chunk(tuple(s), (True,) * len(s), tuple(max(warmup_days, p.t0 - x) for x in s)))
    return out


def observation_inputs(q_norm: np.ndarray, start: int, stop: int, last_day: int,
                       rng: np.random.Generator | None = None, silent_prob: float = 0.3,
                       drop_prob: float = 0.15, lead_in: int = 0) -> np.ndarray:
    """(T, G) the observed (normalised) discharge of each gauge on issue days start..stop-1, the
    model's input at issue time: the observation of the issue day itself, NaN where there is
    none, after ``last_day`` and past the record. With ``rng`` (training) it is held out at
    random so that the model learns to forecast without it: a gauge is silent for the whole chunk
    with probability ``silent_prob``, and each remaining day is dropped with ``drop_prob``.
    ``lead_in`` > 0 prepends that many earlier days (T + lead_in rows; NaN before the record):
    the observation history a head reads on the first issue days (see
    :func:`hydrocast.model.observation_features`), held out the same way."""
    a = start - lead_in
    T, G = stop - a, q_norm.shape[1]
    out = np.full((T, G), np.nan, dtype="float32")
    b = min(stop, last_day + 1, len(q_norm))
    a0 = max(a, 0)
    if b > a0:
        out[a0 - a: b - a] = q_norm[a0:b]
    if rng is not None:
        silent = rng.random(G) < silent_prob
        drop = rng.random((T, G)) < drop_prob
        out[drop | silent[None, :]] = np.nan
    return out
