"""``hydrocast evaluate``: a hindcast over a period, scored against observations and baselines.

Every day of the period is an issue day (days the cube cannot support stay NaN). The ConvLSTM
and the lumped LSTM (trained with it, same periods and loss) run as one sequence over the period
with their warm-up before it; persistence (the issue day's observation) and a day-of-year
climatology (from the **training period's** observations only) are computed on the same days.
All four are scored on the same (basin, issue day, lead) pairs: a pair enters a model's scores
only where that model and the observation both have a value.

Writes ``hindcast.nc`` (CF, see :mod:`hydrocast.netcdf`) and ``metrics.csv`` (one row per model,
basin and lead, plus the median over basins) into ``--out``, and prints the median table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .config import Config
from .errors import BadInputError, ConfigError

MODELS = ("convlstm", "lumped_lstm", "persistence", "climatology")
#: rows added where the model uses observed discharge / a weather forecast: the same trained
#: models run as if every gauge were silent / no forecast existed (the operational fallbacks)
VARIANTS = {"no_obs": {"with_obs": False}, "no_forecast": {"with_forecast": False}}


def parse_period(text: str | None, cfg: Config) -> tuple[np.datetime64, np.datetime64]:
    if text is None:
        if cfg.train.test_period is None:
            raise ConfigError(f"{cfg.path}: give --period START:END or set [train] test_period")
        a, b = cfg.train.test_period
        return np.datetime64(a, "D"), np.datetime64(b, "D")
    try:
        a, b = text.split(":")
        a, b = np.datetime64(a.strip(), "D"), np.datetime64(b.strip(), "D")
    except ValueError:
        raise BadInputError(f"--period {text!r}: expected START:END as YYYY-MM-DD:YYYY-MM-DD") from None
    if a > b:
        raise BadInputError(f"--period {text!r}: START is after END")
    return a, b


@dataclass
class EvaluateResult:
    hindcast: str
    metrics_csv: str
    medians: dict = field(default_factory=dict)  # model -> lead -> {nse, kge, ...}
    period: tuple = ()
    n_issue_days: int = 0
    model_id: str | None = None

    def to_json(self) -> dict:
        return {"hindcast": self.hindcast, "metrics_csv": self.metrics_csv, "model_id": self.model_id,
                "period": list(self.period),
                "issue_days": self.n_issue_days, "median": self.medians}


def evaluate(cfg: Config, period: str | None, out_dir: Path, basins_path: Path | None = None,
             discharge_path: Path | None = None, log: Callable[[str], None] = lambda s: None) -> EvaluateResult:
    from .predict import Forecaster

    with Forecaster(cfg) as fc:
        return _evaluate(cfg, fc, period, out_dir, basins_path, discharge_path, log)


def _evaluate(cfg, fc, period, out_dir, basins_path, discharge_path, log) -> EvaluateResult:
    import pandas as pd

    from .domain import discharge_table
    from .fsio import atomic_write_text, prepare_out_dir
    from .metrics import doy_climatology, metrics_table
    from .netcdf import hindcast_dataset, write_dataset
    from .windows import targets

    start, end = parse_period(period, cfg)
    days = fc.reader.days
    if start < days[0] + fc.warmup or end > days[-1]:
        raise BadInputError(f"--period {start}:{end} is outside what the cube supports "
                            f"({days[0] + fc.warmup} .. {days[-1]})")
    a, b = int((start - days[0]).astype(int)), int((end - days[0]).astype(int))
    basins = fc.basin_set(["all"], basins_path)
    q_obs = discharge_table(cfg, fc.reader.days, basins.ids, discharge_path).to_numpy("float64")  # (days, N)
    lead = fc.lead
    res = fc.run(basins, a, b, lumped=True)
    variants = [v for v, on in (("no_obs", fc.observed and fc.obs is not None),
                                ("no_forecast", fc.forecasts is not None)) if on]
    for v in variants:
        r = fc.run(basins, a, b, lumped=True, **VARIANTS[v])
        res.update({f"{k}_{v}": run for k, run in r.items()})
    ok = fc.supported()[a:b + 1]
    T, N = b - a + 1, len(basins.ids)

    def to_bt(x):  # (T, N, L) -> (N, T, L), NaN on unsupported issue days
        x = np.where(ok[:, None, None], x, np.nan)
        return np.transpose(x, (1, 0, 2)).astype("float64")

    obs = targets(q_obs, a, b + 1, lead, len(days) - 1, dtype="float64")  # observed on each valid day
    persist = np.repeat(q_obs[a:b + 1][:, :, None], lead, axis=2)
    clim = np.full((T, N, lead), np.nan)
    tp = cfg.train.train_period
    index = pd.DatetimeIndex(days.astype("datetime64[ns]"))
    for n in range(N):
        f = doy_climatology(pd.Series(q_obs[:, n], index=index), period=(str(tp[0]), str(tp[1])))
        for l in range(lead):
            lo, hi = a + l + 1, min(b + l + 2, len(days))
            clim[: hi - lo, n, l] = f(index[lo:hi])
    sims = {"convlstm": to_bt(res["convlstm"].q), "lumped_lstm": to_bt(res["lumped_lstm"].q)}
    for v in variants:
        for k in ("convlstm", "lumped_lstm"):
            sims[f"{k}_{v}"] = to_bt(res[f"{k}_{v}"].q)
    sims.update(persistence=to_bt(persist), climatology=to_bt(clim))
    obs_bt = np.transpose(obs, (1, 0, 2))
    leads = list(range(1, lead + 1))
    tables = []
    for name, sim in sims.items():
        t = metrics_table(sim, obs_bt, basins.ids, leads).reset_index()
        t.insert(0, "model", name)
        tables.append(t)
    table = pd.concat(tables, ignore_index=True)

    out_dir = prepare_out_dir(Path(out_dir))
    issue_days = days[a:b + 1]
    ds = hindcast_dataset(basins.ids, issue_days, leads, sims["convlstm"], obs_bt,
                          {k: v for k, v in sims.items() if k != "convlstm"},
                          [i["outlet_lon"] for i in basins.info], [i["outlet_lat"] for i in basins.info],
                          [i["area_km2"] for i in basins.info], model_id=fc.model_id)
    hc = write_dataset(ds, out_dir / "hindcast.nc")
    csv_path = out_dir / "metrics.csv"
    atomic_write_text(csv_path, table.to_csv(index=False, float_format="%.4f"))
    med = table[table["basin"] == "median"]
    medians = {m: {int(r["lead_days"]): {k: _f(r[k]) for k in ("nse", "kge", "pbias", "rmse", "peak_timing")}
                   for _, r in med[med["model"] == m].iterrows()} for m in sims}
    log(f"hindcast {start}..{end}: {int(ok.sum())} issue days, {N} basins -> {hc}")
    return EvaluateResult(str(hc), str(csv_path), medians, (str(start), str(end)), int(ok.sum()), fc.model_id)


def _f(x) -> float | None:
    x = float(x)
    return round(x, 4) if np.isfinite(x) else None


def render_table(result: EvaluateResult) -> "object":
    """The median-over-basins skill as a rich Table (models × lead days)."""
    from rich.table import Table

    t = Table(title=f"median over basins, {result.period[0]} .. {result.period[1]} ({result.n_issue_days} issue days)")
    t.add_column("model")
    t.add_column("lead")
    for k in ("NSE", "KGE", "PBIAS %", "RMSE m3/s", "peak timing d"):
        t.add_column(k, justify="right")
    for m, per_lead in result.medians.items():
        for lead, v in per_lead.items():
            cells = [v["nse"], v["kge"], v["pbias"], v["rmse"], v["peak_timing"]]
            t.add_row(m, str(lead), *("-" if c is None else f"{c:.3f}" for c in cells))
    return t
