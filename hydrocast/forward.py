"""The one forward path with spin-up, shared by validation (train), predict and evaluate.

:func:`run_period` runs a model (the ConvLSTM or the lumped LSTM: both take the same named input
streams, see :mod:`hydrocast.model.network`, built here from a :class:`ModelInputs`: the cube's
maps, the observed discharge at the model's gauges, the weather-forecast store) as ONE sequence
over the issue days ``a..b`` (cube indices, inclusive), starting ``spin`` input-only days before
``a`` (the model's ``memory_days``; fewer where the cube begins later), or continuing a saved
recurrent state, and returns a :class:`PeriodRun` whose arrays carry named dimensions
(:attr:`PeriodRun.DIMS`):

    q        (issue_day, basin, lead)     discharge, m3/s, never negative
    q_norm   (issue_day, basin, lead)     the network's standardised specific discharge
    q_quantiles       (issue_day, basin, lead, quantile)  the forecast distribution, m3/s, at
                      :data:`hydrocast.model.QUANTILE_LEVELS` (a model with ``quantiles=1``)
    q_quantiles_norm  (issue_day, basin, lead, quantile)  the same, standardised
    maps     (issue_day, lead, y, x)      forecast map (normalised), ConvLSTM only
    runoff   (issue_day, lead, y, x)      runoff-generation map, ConvLSTM only
    issue_error (issue_day, basin)        where the forecasts were updated with the issue day's
                      error (:func:`update_run`): that error, standardised (0: not updated)
    persistence_weight (issue_day, basin, lead)  the weight of the basin's own observation of the
                      issue day in its forecast (:func:`update_run`; 0: not blended), where the
                      model blends with persistence

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
            "maps": ("issue_day", "lead", "y", "x"), "runoff": ("issue_day", "lead", "y", "x"),
            "q_quantiles": ("issue_day", "basin", "lead", "quantile"),
            "q_quantiles_norm": ("issue_day", "basin", "lead", "quantile"),
            "issue_error": ("issue_day", "basin"),
            "persistence_weight": ("issue_day", "basin", "lead")}

    issue_days: np.ndarray  # datetime64[D], (T,)
    q: np.ndarray
    q_norm: np.ndarray
    extra: dict = field(default_factory=dict)  # "maps", "runoff" where the model gives them
    state: object = None  # the recurrent state after the last day (to continue a stateful run)

    def __getitem__(self, name: str) -> np.ndarray:
        return getattr(self, name) if name in ("q", "q_norm") else self.extra[name]

    def to_xarray(self, basin_ids: list[str]):
        """The run as an ``xarray.Dataset`` with named dimensions and coordinates."""
        import xarray as xr

        variables = {k: (self.DIMS[k], self[k]) for k in ("q", "q_norm", *self.extra)}
        lead = np.arange(1, self.q.shape[-1] + 1)
        coords = {"issue_day": self.issue_days, "basin": list(basin_ids), "lead": lead}
        if "q_quantiles" in self.extra:
            from .model import QUANTILE_LEVELS

            coords["quantile"] = list(QUANTILE_LEVELS)
        return xr.Dataset(variables, coords=coords)


def autocast(device):
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class ModelInputs:
    """Everything a model reads besides the weights, for one set of read-out basins.

    ``obs`` (cube days, G) is the normalised specific discharge observed at the model's G gauges
    (its training basins, masks ``obs_basins`` (G, H, W)); ``obs_index`` (N,) says which gauge
    each read-out basin is (-1: none). Only an issue day's own and earlier observations ever
    enter a forecast (:func:`run_period` slices them so). ``forecasts`` is a
    :class:`hydrocast.forecasts.ForecastReader` (or None) and ``forecast_name`` its variable."""

    reader: object
    spec: object
    static: object  # tensor (S, H, W)
    basins: np.ndarray  # (N, 2, H, W)
    area_km2: np.ndarray  # (N,)
    q_mean: float
    q_std: float
    lead: int
    obs: np.ndarray | None = None
    obs_basins: np.ndarray | None = None
    obs_index: np.ndarray | None = None
    forecasts: object = None
    forecast_name: str | None = None
    ensemble_name: str | None = None  # the store variable whose members :func:`run_members` rolls
    obs_days: int = 1  # the model's hparam: the "obs" stream carries obs_days - 1 days before the sequence
    obs_area: np.ndarray | None = None  # (G,) the gauges' whole mask areas (cells) where obs_basins are cut
    obs_gauges: np.ndarray | None = None  # (G',) the model's gauge numbers of the obs columns (None: 0..G-1)

    def window(self, rows: slice, cols: slice, basin_rows) -> "ModelInputs":
        """The inputs of one window (:mod:`hydrocast.tiles`): the cube read on the cells ``rows``
        x ``cols`` (:meth:`hydrocast.samples.CubeReader.window`), the static maps cut to it, the
        read-out basins ``basin_rows`` (indices of this object's basins; their masks must lie inside
        the window) cut to it; the gauges whose masks reach into the window, with their masks cut,
        their observation columns, ``obs_index`` pointing at their new positions (-1 stays -1),
        ``obs_area`` their whole masks' areas, so that the observation maps weigh them as on the
        whole domain (:func:`hydrocast.model.observation_maps`), and ``obs_gauges`` their numbers
        among the model's gauges (for the per-gauge blend with persistence)."""
        import dataclasses

        sel = np.asarray(basin_rows, dtype=int)
        out = dataclasses.replace(self, reader=self.reader.window(rows, cols), static=self.static[:, rows, cols],
                                  basins=self.basins[sel][:, :, rows, cols], area_km2=np.asarray(self.area_km2)[sel])
        if self.obs_basins is None:
            return out
        masks = np.asarray(self.obs_basins)
        area = (np.asarray(self.obs_area, dtype="float32") if self.obs_area is not None
                else gauge_areas(masks))
        cut = masks[:, rows, cols]
        keep = np.flatnonzero((cut > 0).reshape(len(cut), -1).any(axis=1))
        pos = np.full(len(masks) + 1, -1, dtype="int64")  # pos[-1] = -1: an ungauged basin stays ungauged
        pos[keep] = np.arange(len(keep))
        index = None
        if self.obs_index is not None:
            index = pos[np.asarray(self.obs_index, dtype="int64")[sel]]
        gauges = np.arange(len(masks)) if self.obs_gauges is None else np.asarray(self.obs_gauges)
        return dataclasses.replace(out, obs=None if self.obs is None else self.obs[:, keep],
                                   obs_basins=np.ascontiguousarray(cut[keep]), obs_index=index,
                                   obs_area=area[keep], obs_gauges=gauges[keep])


def gauge_areas(masks: np.ndarray) -> np.ndarray:
    """(G,) float32 the areas (cells) of the gauges' masks (G, H, W), summed as the network sums
    them (:func:`hydrocast.model.observation_maps`)."""
    import torch

    return torch.as_tensor(np.asarray(masks, dtype="float32")).sum(dim=(-2, -1)).numpy()


def streams_for(inp: ModelInputs, s: int, stop: int, device, with_obs: bool = True, with_forecast: bool = True,
                pad: bool = False) -> dict:
    """The named input streams (batch of one) of cube days ``s..stop-1``."""
    import torch

    streams = {"dynamic": torch.from_numpy(inp.reader.dynamic_window(inp.spec, s, stop, pad=pad)).unsqueeze(0),
               "static": inp.static,
               "basins": torch.as_tensor(np.ascontiguousarray(inp.basins)),
               "basin_area_km2": torch.as_tensor(np.asarray(inp.area_km2, dtype="float64"))}
    if inp.obs_basins is not None:
        from .windows import observation_inputs

        lead_in = inp.obs_days - 1  # the days before s whose observations the heads read on the first days
        if with_obs and inp.obs is not None:
            obs = observation_inputs(inp.obs, s, stop, len(inp.obs) - 1, lead_in=lead_in)
        else:
            obs = np.full((stop - s + lead_in, inp.obs_basins.shape[0]), np.nan, dtype="float32")
        streams["obs"] = torch.from_numpy(obs).unsqueeze(0)
        streams["obs_basins"] = torch.as_tensor(np.ascontiguousarray(inp.obs_basins))
        index = inp.obs_index if inp.obs_index is not None else np.full(len(inp.area_km2), -1)
        streams["obs_index"] = torch.as_tensor(np.asarray(index, dtype="int64"))
        if inp.obs_area is not None:
            streams["obs_area"] = torch.as_tensor(np.asarray(inp.obs_area, dtype="float32"))
    fc = inp.reader.forecast_window(inp.spec, inp.forecasts if with_forecast else None, inp.forecast_name, s, stop,
                                    inp.lead)
    streams["forecast"] = torch.from_numpy(fc).unsqueeze(0)
    return {k: v.to(device) for k, v in streams.items()}


def run_period(net, inp: ModelInputs, a: int, b: int, spin: int, device=None, with_obs: bool = True,
               with_forecast: bool = True, state=None, start: int | None = None) -> PeriodRun:
    """Run ``net`` over issue days ``a..b`` (cube indices) as one sequence that starts ``spin``
    input-only days before ``a`` (or at ``start``, e.g. the day after a saved ``state``).
    ``with_obs=False``: as if every gauge were silent; ``with_forecast=False``: as if no weather
    forecast existed. The run's final recurrent state (after day ``b``) is ``PeriodRun.state``."""
    import torch

    device = device or torch.device("cpu")
    s = max(0, a - spin) if start is None else start
    streams = streams_for(inp, s, b + 1, device, with_obs, with_forecast)
    streams["rollout_days"] = torch.arange(a - s, b - s + 1, device=device)
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode(), autocast(device):
            out = net(streams, state)
    finally:
        net.train(was_training)
    qn = out["q"][0].float().cpu().numpy()
    if qn.shape[0] != b - a + 1:  # a model without rollout returns every day of the sequence
        qn = qn[a - s:]
    extra = {}
    if "maps" in out:
        maps, runoff = out["maps"][:, :, :, 0], out["runoff"]
        if maps.shape[1] != b - a + 1:
            maps, runoff = maps[:, a - s:], runoff[:, a - s:]
        extra["maps"] = maps[0].float().cpu().numpy()
        extra["runoff"] = runoff[0].float().cpu().numpy()
    if "q_quantiles" in out:
        qq = out["q_quantiles"][0].float().cpu().numpy()
        qq = qq[a - s:] if qq.shape[0] != b - a + 1 else qq
        extra["q_quantiles_norm"] = qq
        extra["q_quantiles"] = np.moveaxis(to_discharge(np.moveaxis(qq, -1, 0), inp.q_mean, inp.q_std,
                                                        inp.area_km2), 0, -1)
    run = PeriodRun(inp.reader.days[a:b + 1], to_discharge(qn, inp.q_mean, inp.q_std, inp.area_km2), qn, extra)
    run.state = out.get("state")
    return run


def advance(net, inp: ModelInputs, s: int, stop: int, state=None, device=None, with_obs: bool = True,
            with_forecast: bool = True, chunk_days: int = 0):
    """The recurrent state of ``net`` after the cube days ``s..stop-1`` (from ``state``; None:
    zero), run ``chunk_days`` days at a time (0: at once), carrying the state between chunks: the
    spin-up of :func:`run_chunked`. ``stop <= s``: ``state`` as given."""
    if stop <= s:
        return state
    step = stop - s if chunk_days <= 0 else int(chunk_days)
    for c0 in range(s, stop, step):
        c1 = min(c0 + step, stop) - 1
        state = run_period(net, inp, c1, c1, 0, device, with_obs, with_forecast, state=state, start=c0).state
    return state


def _concat(parts: list, axis: int = 0) -> dict:
    """The arrays of ``parts`` (dicts of the same keys) joined along ``axis``."""
    return {k: np.concatenate([p[k] for p in parts], axis=axis) for k in parts[0]}


def _fitted(net, name: str) -> np.ndarray | None:
    """``net``'s buffer ``name`` as numpy where it has one that is neither empty nor all zero, else None."""
    b = getattr(net, name, None)
    if b is None:
        return None
    b = b.detach().float().cpu().numpy()
    return b if np.any(b != 0) else None


def update_gain(net) -> np.ndarray | None:
    """``net``'s ``update_gain`` (L,) as numpy where it has one that is not all zero, else None."""
    return _fitted(net, "update_gain")


def persistence_weight(net) -> np.ndarray | None:
    """``net``'s ``persistence_weight`` (G, L) as numpy where it has one fitted that is not all
    zero, else None."""
    return _fitted(net, "persistence_weight")


def set_persistence_weight(net, weight) -> None:
    """Set ``net``'s ``persistence_weight`` buffer to ``weight`` (G, L) (its shape changes from the
    empty (0, L) it is built with); ``weight`` None or empty: back to (0, L)."""
    import torch

    old = net.persistence_weight
    w = torch.zeros(0, old.shape[-1]) if weight is None else torch.as_tensor(np.asarray(weight, dtype="float32"))
    net.persistence_weight = w.to(dtype=old.dtype, device=old.device)


@contextlib.contextmanager
def without_blend(*nets):
    """Within: ``nets`` without their blend with persistence (weights empty); restored after."""
    saved = [getattr(n, "persistence_weight", None) for n in nets]
    try:
        for n, w in zip(nets, saved):
            if w is not None:
                set_persistence_weight(n, None)
        yield
    finally:
        for n, w in zip(nets, saved):
            if w is not None:
                n.persistence_weight = w


def issue_observations(inp: ModelInputs, a: int, t: int) -> np.ndarray:
    """(T, N) each read-out basin's own normalised observation of the issue days ``a..a+t-1``; NaN
    where it is missing or the basin has no gauge of its own."""
    n = len(inp.area_km2)
    if inp.obs is None or inp.obs_index is None:
        return np.full((t, n), np.nan, dtype="float32")
    index = np.asarray(inp.obs_index, dtype="int64")
    own = np.asarray(inp.obs[a:a + t], dtype="float32")[:, index.clip(min=0)]
    return np.where(index[None, :] >= 0, own, np.nan).astype("float32")


def basin_weights(inp: ModelInputs, weight: np.ndarray) -> np.ndarray:
    """(N, L) each read-out basin's row of the per-gauge ``weight`` (G, L) of the model's gauges;
    0 for a basin without a gauge of its own."""
    n, lead = len(inp.area_km2), weight.shape[-1]
    if inp.obs_index is None:
        return np.zeros((n, lead), dtype="float32")
    index = np.asarray(inp.obs_index, dtype="int64")
    gauges = np.arange(len(weight)) if inp.obs_gauges is None else np.asarray(inp.obs_gauges, dtype="int64")
    g = np.where(index >= 0, gauges[index.clip(min=0)] if len(gauges) else -1, -1)
    return np.where((g >= 0)[:, None], weight[g.clip(min=0)], 0.0).astype("float32")


def issue_errors(inp: ModelInputs, previous: np.ndarray, a: int) -> np.ndarray:
    """(T, N) the error of each read-out basin's lead-1 forecast issued the day before each issue
    day ``a + t``: its own observation of that day minus ``previous[t]`` (T, N), the normalised
    lead-1 forecasts issued on days ``a - 1 + t``; 0 where either is missing or the basin has no
    gauge of its own."""
    own = issue_observations(inp, a, previous.shape[0])
    return np.nan_to_num(own - previous, nan=0.0).astype("float32")


@dataclass
class Correction:
    """What the updating does to a run's normalised forecasts (T, N, L): ``y = q + shift``, then
    ``y + weight * (obs - y)`` (the blend with persistence; ``weight`` 0 where not blended). The
    quantiles move with their forecast (the same shift): the blend does not narrow the
    distribution, whose spread the recalibration after it sets."""

    shift: np.ndarray  # (T, N, L)
    weight: np.ndarray  # (T, N, L)
    obs: np.ndarray  # (T, N, L), 0 where weight is 0

    def apply(self, x: np.ndarray, members: bool = False, center: np.ndarray | None = None) -> np.ndarray:
        """``x`` corrected: the forecasts (T, N, L), or (T, R, N, L) with ``members``; or, with
        ``center`` (the forecasts ``x``'s quantiles belong to, before correction), ``x``'s
        quantiles (a trailing quantile axis) shifted as their forecast is."""
        s, w, o = self.shift, self.weight, self.obs
        if members:
            s, w, o = s[:, None], w[:, None], o[:, None]
        if center is not None:
            y = center + s
            return (x + (s + w * (o - y))[..., None]).astype("float32")
        y = x + s
        return (y + w * (o - y)).astype("float32")

    def days(self, sl: slice) -> "Correction":
        return Correction(self.shift[sl], self.weight[sl], self.obs[sl])


def correction(inp: ModelInputs, a: int, errors: np.ndarray | None, gain: np.ndarray | None,
               weight: np.ndarray | None, shape: tuple[int, int, int]) -> Correction | None:
    """The :class:`Correction` of the issue days ``a..`` (``shape`` (T, N, L)) of ``inp``'s basins
    from the issue-day ``errors`` (T, N) (:func:`issue_errors`; None: 0) and the model's ``gain``
    (L,) and per-gauge ``weight`` (G, L) (None: no such step); None where neither applies."""
    if gain is None and weight is None:
        return None
    t, n, lead = shape
    shift = np.zeros(shape, dtype="float32")
    if gain is not None and errors is not None:
        shift = (errors[:, :, None] * np.asarray(gain, dtype="float32")[None, None, :]).astype("float32")
    w = np.zeros(shape, dtype="float32")
    o = np.zeros(shape, dtype="float32")
    if weight is not None:
        own = issue_observations(inp, a, t)  # (T, N)
        have = np.isfinite(own)[:, :, None]
        w = np.where(have, basin_weights(inp, weight)[None], 0.0).astype("float32")
        o = np.broadcast_to(np.nan_to_num(own, nan=0.0)[:, :, None], shape).astype("float32")
    return Correction(shift, w, o)


def split_issue_errors(run: PeriodRun, inp: ModelInputs, a: int) -> tuple[PeriodRun, np.ndarray]:
    """``run`` (issue days from ``a - 1`` or from ``a``) as the run of issue days ``a..``, with the
    :func:`issue_errors` of those days read off its own lead-1 forecasts: the day before ``a`` is
    dropped where the run has it (it was run for its lead-1 forecast only); where it has not, day
    ``a``'s error is unknown (0)."""
    previous = np.full(run.q_norm.shape[:2], np.nan, dtype="float32")
    previous[1:] = run.q_norm[:-1, :, 0]
    if run.issue_days[0] < inp.reader.days[a]:
        run = PeriodRun(run.issue_days[1:], run.q[1:], run.q_norm[1:], {k: v[1:] for k, v in run.extra.items()},
                        run.state)
        previous = previous[1:]
    return run, issue_errors(inp, previous, a)


def update_run(run: PeriodRun, inp: ModelInputs, errors: np.ndarray, gain: np.ndarray | None,
               weight: np.ndarray | None = None, a: int | None = None) -> None:
    """In place: ``run``'s forecasts updated with the issue-day ``errors`` (T, N)
    (:func:`issue_errors`): every lead ``l`` moves by ``gain[l] * error`` in the normalised space,
    then (a model with a per-gauge ``weight`` (G, L)) is blended with the basin's own observation
    of the issue day (cube day ``a + t``), its quantiles with it (see :mod:`hydrocast.model.network`,
    "Updating with the issue day's error" and "Blending with persistence"); the errors are kept
    as ``run.extra["issue_error"]`` (a model with a gain), the blend's weights as
    ``run.extra["persistence_weight"]`` (a model with weights)."""
    a = inp.reader.index(run.issue_days[0]) if a is None else a
    corr = correction(inp, a, errors, gain, weight, run.q_norm.shape)
    if corr is None:
        return
    center = run.q_norm
    run.q_norm = corr.apply(center)
    run.q = to_discharge(run.q_norm, inp.q_mean, inp.q_std, inp.area_km2)
    if "q_quantiles_norm" in run.extra:
        qq = corr.apply(run.extra["q_quantiles_norm"], center=center)
        run.extra["q_quantiles_norm"] = qq
        run.extra["q_quantiles"] = np.moveaxis(to_discharge(np.moveaxis(qq, -1, 0), inp.q_mean, inp.q_std,
                                                            inp.area_km2), 0, -1)
    if gain is not None:
        run.extra["issue_error"] = errors
    if weight is not None:
        run.extra["persistence_weight"] = corr.weight


def run_chunked(net, inp: ModelInputs, a: int, b: int, spin: int, device=None, with_obs: bool = True,
                with_forecast: bool = True, state=None, start: int | None = None, chunk_days: int = 0) -> PeriodRun:
    """:func:`run_period` with its memory bounded in time: the spin-up and the issue days ``a..b``
    run ``chunk_days`` days at a time (``[train] inference_chunk_days``; 0: all at once), the
    recurrent state carried from chunk to chunk, so the result is the one sequence's (to float
    rounding) while the hidden maps held are those of ``chunk_days`` days, not of the period.

    A model with an ``update_gain`` (and observations) has its forecasts updated with the issue
    day's error (:func:`update_run`): the run then also issues a forecast on day ``a - 1`` where it
    starts before ``a`` (the lead-1 forecast whose error day ``a`` reads); where it starts on
    ``a`` itself, day ``a`` is not updated. A model with a ``persistence_weight`` is then blended
    with each gauged basin's observation of the issue day (:func:`update_run`)."""
    s = max(0, a - spin) if start is None else start
    gain = update_gain(net) if with_obs else None
    weight = persistence_weight(net) if with_obs else None
    if (gain is None and weight is None) or inp.obs is None:
        return _run_chunked(net, inp, a, b, s, device, with_obs, with_forecast, state, chunk_days)
    if gain is None:  # the blend alone reads the issue day's observation, not the day before's forecast
        run = _run_chunked(net, inp, a, b, s, device, with_obs, with_forecast, state, chunk_days)
        errors = np.zeros(run.q_norm.shape[:2], dtype="float32")
    else:
        run = _run_chunked(net, inp, a - 1 if a - 1 >= s else a, b, s, device, with_obs, with_forecast, state,
                           chunk_days)
        run, errors = split_issue_errors(run, inp, a)
    update_run(run, inp, errors, gain, weight, a)
    return run


def _run_chunked(net, inp: ModelInputs, a: int, b: int, s: int, device, with_obs: bool, with_forecast: bool,
                 state, chunk_days: int) -> PeriodRun:
    """:func:`run_chunked` before updating, the sequence starting on cube day ``s``."""
    spin, start = 0, s
    if chunk_days <= 0:
        return run_period(net, inp, a, b, spin, device, with_obs, with_forecast, state=state, start=start)
    state = advance(net, inp, s, a, state, device, with_obs, with_forecast, chunk_days)
    runs = []
    for c0 in range(a, b + 1, chunk_days):
        c1 = min(c0 + chunk_days, b + 1) - 1
        runs.append(run_period(net, inp, c0, c1, 0, device, with_obs, with_forecast, state=state, start=c0))
        state = runs[-1].state
    joined = _concat([{"q": r.q, "q_norm": r.q_norm, **r.extra} for r in runs])
    run = PeriodRun(inp.reader.days[a:b + 1], joined.pop("q"), joined.pop("q_norm"), joined)
    run.state = state
    return run


def _gather(parts: list, n: int, axis: int) -> dict:
    """Per key, the arrays of ``parts`` ((rows, {key: array}) per window) put in one array whose
    ``axis`` holds ``n`` basins, each window's at its ``rows`` (NaN where none)."""
    out: dict = {}
    for rows, arrays in parts:
        for k, v in arrays.items():
            if k not in out:
                shape = list(v.shape)
                shape[axis] = n
                out[k] = np.full(shape, np.nan, dtype=v.dtype)
            index = [slice(None)] * v.ndim
            index[axis] = rows
            out[k][tuple(index)] = v
    return out


#: the outputs of a run that have a basin axis (gathered from the windows of a tiled run)
BASIN_OUTPUTS = ("q", "q_norm", "q_quantiles", "q_quantiles_norm", "issue_error", "persistence_weight")


def run_tiled(net, inp: ModelInputs, windows: list, a: int, b: int, spin: int, device=None, with_obs: bool = True,
              with_forecast: bool = True, chunk_days: int = 0) -> PeriodRun:
    """:func:`run_chunked` window by window (:mod:`hydrocast.tiles`; ``windows`` a plan of
    ``inp``'s basins): each window runs with its basins and the gauges that reach into it, and the
    basins' discharge (``q``, ``q_norm``, the quantiles) is put back in ``inp``'s basin order.
    Maps (``maps``, ``runoff``) and the final state are not assembled (None / absent)."""
    parts = []
    for w in windows:
        rows = list(w.basins)
        if rows:
            run = run_chunked(net, inp.window(w.rows, w.cols, rows), a, b, spin, device, with_obs, with_forecast,
                              chunk_days=chunk_days)
            parts.append((rows, {k: run[k] for k in BASIN_OUTPUTS if k in ("q", "q_norm") or k in run.extra}))
    if not parts:
        raise ValueError("run_tiled: the windows hold no basin")
    out = _gather(parts, len(inp.area_km2), axis=1)
    return PeriodRun(inp.reader.days[a:b + 1], out.pop("q"), out.pop("q_norm"), out)


def run_plan(net, inp: ModelInputs, windows: list | None, a: int, b: int, spin: int, device=None,
             with_obs: bool = True, with_forecast: bool = True, chunk_days: int = 0) -> PeriodRun:
    """:func:`run_chunked` on the whole grid (``windows`` None) or :func:`run_tiled` window by
    window: the one choice every hindcast makes."""
    if windows is None:
        return run_chunked(net, inp, a, b, spin, device, with_obs, with_forecast, chunk_days=chunk_days)
    return run_tiled(net, inp, windows, a, b, spin, device, with_obs, with_forecast, chunk_days=chunk_days)


def ungauged_rows(inp: ModelInputs) -> np.ndarray:
    """The read-out basins of ``inp`` without a gauge of their own that read the gauges'
    observation maps (none where the model reads no observations)."""
    if inp.obs_basins is None or inp.obs is None:
        return np.zeros(0, dtype=int)
    index = inp.obs_index if inp.obs_index is not None else np.full(len(inp.area_km2), -1)
    return np.nonzero(np.asarray(index) < 0)[0]


def blend_ungauged(run, silent, rows: np.ndarray, obs_leads: int, basin_axis: int = 1) -> None:
    """In place: the discharge of basins ``rows`` (ungauged) at leads beyond ``obs_leads`` taken
    from ``silent``, the same forecast run as if every gauge were silent (see
    ``[train] ungauged_observation_leads``). ``run``/``silent``: :class:`PeriodRun` (basins on
    axis 1) or :class:`MemberRun` (``basin_axis=2``). The maps stay ``run``'s."""
    if not len(rows) or silent is None:
        return
    for name in ("q", "q_norm", "q_quantiles", "q_quantiles_norm"):
        a = getattr(run, name, None) if name in ("q", "q_norm") else run.extra.get(name)
        b = getattr(silent, name, None) if name in ("q", "q_norm") else silent.extra.get(name)
        if a is None or b is None:
            continue
        index = [slice(None)] * a.ndim
        index[basin_axis] = rows
        index[basin_axis + 1] = slice(obs_leads, None)
        a[tuple(index)] = b[tuple(index)]


@dataclass
class MemberRun:
    """The rollouts of one period driven by each ensemble member (:func:`run_members`), with a
    ``realization`` dimension: ``q`` (issue_day, realization, basin, lead) m3/s, ``q_quantiles``
    (..., quantile) where the model has them (and ``q_quantiles_norm``, standardised), ``maps`` /
    ``runoff`` (issue_day, realization, lead, y, x) when asked. ``n_members`` (issue_day,) says how
    many members each day has (NaN beyond)."""

    issue_days: np.ndarray
    n_members: np.ndarray
    q: np.ndarray
    extra: dict = field(default_factory=dict)


class _MemberForecasts:
    """One member of a block of ensemble forecasts, read like a store (``names``, ``read``) by
    :meth:`hydrocast.samples.CubeReader.forecast_window`."""

    def __init__(self, name: str, days: np.ndarray, block: np.ndarray):
        self.names, self._days, self._block = [name], days, block  # block (T', L, H, W)

    def read(self, name, days, n_leads, cells=None):  # the block is the window's already (cells ignored)
        days = np.asarray(days, dtype="datetime64[D]")
        assert name == self.names[0] and np.array_equal(days, self._days) and n_leads == self._block.shape[1]
        return self._block


def run_members(net, inp: ModelInputs, a: int, b: int, spin: int, device=None, state=None,
                start: int | None = None, group: int = 8, with_maps: bool = False,
                with_obs: bool = True, chunk_days: int = 0, errors: np.ndarray | None = None) -> MemberRun | None:
    """:func:`run_period` once per member of the ensemble runs of ``inp.ensemble_name`` for issue
    days ``a..b``: the recurrent states over the observed days are computed once per ``group``
    members and every member is rolled from them. None where no issue day has members (days with
    fewer members than the most are NaN past their count). ``chunk_days``: as :func:`run_chunked`.
    ``errors`` (T, N): the issue-day errors of the deterministic run of the same days and basins
    (its ``extra["issue_error"]``, :func:`update_run`): every member is updated with them (with
    ``with_obs`` and the model's ``update_gain``), then blended with persistence as the
    deterministic run is (the model's ``persistence_weight``)."""
    import torch

    if inp.forecasts is None or not inp.ensemble_name:
        return None
    days = inp.reader.days[a:b + 1]
    counts = inp.forecasts.member_count(inp.ensemble_name, days)
    n_real = int(counts.max(initial=0))
    if n_real == 0:
        return None
    device = device or torch.device("cpu")
    s = max(0, a - spin) if start is None else start
    gain = update_gain(net) if with_obs else None
    weight = persistence_weight(net) if with_obs else None
    corr = None if inp.obs is None else correction(inp, a, errors, gain, weight,
                                                   (len(days), len(inp.area_km2), inp.lead))
    if chunk_days <= 0:
        return _members(net, inp, a, b, s, state, device, group, with_maps, with_obs, counts, n_real, corr)[0]
    state = advance(net, inp, s, a, state, device, with_obs, False, chunk_days)
    runs = []
    for c0 in range(a, b + 1, chunk_days):
        c1 = min(c0 + chunk_days, b + 1) - 1
        part = counts[c0 - a:c1 - a + 1]
        run, state = _members(net, inp, c0, c1, c0, state, device, group, with_maps, with_obs, part, n_real,
                              None if corr is None else corr.days(slice(c0 - a, c1 - a + 1)))
        runs.append(run)
    joined = _concat([{"q": r.q, **r.extra} for r in runs])
    return MemberRun(days, counts, joined.pop("q"), joined)


def members_tiled(net, inp: ModelInputs, windows: list | None, a: int, b: int, spin: int, device=None,
                  with_obs: bool = True, chunk_days: int = 0, group: int = 8,
                  errors: np.ndarray | None = None) -> MemberRun | None:
    """:func:`run_members` window by window (as :func:`run_tiled`); the maps are not assembled.
    ``windows`` None: :func:`run_members` on the whole grid. ``errors`` (T, N) of ``inp``'s basins:
    as :func:`run_members`."""
    if windows is None:
        return run_members(net, inp, a, b, spin, device, group=group, with_obs=with_obs, chunk_days=chunk_days,
                           errors=errors)
    parts, first = [], None
    for w in windows:
        rows = list(w.basins)
        if not rows:
            continue
        run = run_members(net, inp.window(w.rows, w.cols, rows), a, b, spin, device, group=group, with_obs=with_obs,
                          chunk_days=chunk_days, errors=None if errors is None else errors[:, rows])
        if run is None:
            return None
        first = first or run
        parts.append((rows, {"q": run.q, **{k: v for k, v in run.extra.items() if k in BASIN_OUTPUTS}}))
    if first is None:
        return None
    out = _gather(parts, len(inp.area_km2), axis=2)
    return MemberRun(first.issue_days, first.n_members, out.pop("q"), out)


def _members(net, inp: ModelInputs, a: int, b: int, s: int, state, device, group: int, with_maps: bool,
             with_obs: bool, counts: np.ndarray, n_real: int, corr: Correction | None = None
             ) -> tuple[MemberRun, object]:
    """:func:`run_members` of issue days ``a..b`` from the cube day ``s`` (and ``state``), whose
    member counts are ``counts`` (read once by the caller), with ``n_real`` member slots, every
    member's normalised forecasts corrected by ``corr`` (T' days; the updating); also returns the
    state after day ``b``."""
    import torch

    days = inp.reader.days[a:b + 1]
    base = streams_for(inp, s, b + 1, device, with_obs=with_obs, with_forecast=False)
    base["rollout_days"] = torch.arange(a - s, b - s + 1, device=device)
    cells = inp.reader.cells
    mm = inp.forecasts.read_members(inp.ensemble_name, days, inp.lead, n_real, cells=cells)  # (T', R, L, H, W)
    outs: dict[str, list] = {}
    final = None
    was_training = net.training
    net.eval()
    try:
        for g in range(0, n_real, group):
            members = []
            for r in range(g, min(g + group, n_real)):
                view = _MemberForecasts(inp.ensemble_name, days, mm[:, r])
                fc = inp.reader.forecast_window(inp.spec, view, inp.ensemble_name, a, b + 1, inp.lead)
                members.append(torch.from_numpy(fc))
            streams = dict(base, forecast=torch.stack(members).unsqueeze(0).to(device))  # (1, R', T', L, C, H, W)
            with torch.inference_mode(), autocast(device):
                out = net(streams, state)
            final = out.get("state")
            for k in ("q", "q_quantiles") + (("maps", "runoff") if with_maps else ()):
                if k in out:
                    v = out[k][0]
                    v = v[:, :, :, 0] if k == "maps" else v  # (R', T', L[, M], H, W) -> (R', T', L, H, W)
                    outs.setdefault(k, []).append(v.float().cpu().numpy())
    finally:
        net.train(was_training)
    cat = {k: np.moveaxis(np.concatenate(v, axis=0), 0, 1) for k, v in outs.items()}  # (T', R, ...)
    if corr is not None:
        center = cat["q"]
        cat["q"] = corr.apply(center, members=True)
        if "q_quantiles" in cat:
            cat["q_quantiles"] = corr.apply(cat["q_quantiles"], members=True, center=center)
    absent = np.arange(n_real)[None, :] >= counts[:, None]  # (T', R)
    for v in cat.values():
        v[absent] = np.nan
    q = to_discharge(cat.pop("q"), inp.q_mean, inp.q_std, inp.area_km2)
    extra = {}
    if "q_quantiles" in cat:
        qq = cat.pop("q_quantiles")
        extra["q_quantiles_norm"] = qq
        extra["q_quantiles"] = np.moveaxis(to_discharge(np.moveaxis(qq, -1, 0), inp.q_mean, inp.q_std,
                                                        inp.area_km2), 0, -1)
    extra.update(cat)
    return MemberRun(days, counts, q, extra), final
