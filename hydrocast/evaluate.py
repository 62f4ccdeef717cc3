"""``hydrocast evaluate``: a hindcast over a period, scored against observations and baselines.

Every day of the period is an issue day (days the cube cannot support stay NaN). The ConvLSTM
and the lumped LSTM (trained with it, same periods and loss) run as one sequence over the period
with their warm-up before it; persistence (the issue day's observation) and a day-of-year
climatology (from the **training period's** observations only) are computed on the same days.
All four are scored on the same (basin, issue day, lead) pairs: a pair enters a model's scores
only where that model and the observation both have a value.

Writes ``hindcast.nc`` (CF, see :mod:`hydrocast.netcdf`) and ``metrics.csv`` (one row per model,
basin and lead, plus the median over basins) into ``--out``, and prints the median table.

Probabilistic evaluation (a model with a forecast distribution, :mod:`hydrocast.probmetrics`)
--------------------------------------------------------------------------------------------
``probabilistic.csv``: per system (the ConvLSTM, the lumped LSTM, and the two reference
ensembles: the **climatology ensemble**, the training-period observations within ±15 days of
the valid day's day of year, and the **persistence ensemble**, the issue day's flow plus the
training-period distribution of lead-day changes), basin and lead: mean CRPS (every system as
the same 19 quantiles, scored by the same quantile-CRPS estimator), CRPSS against each
reference, the coverage of the 50 % and 90 % intervals, the PIT histogram's chi-square p-value
and mean absolute deviation from uniform, plus median rows; all four on the same days (where the
observation and every system's forecast exist). ``warnings.csv``: per system,
basin, lead and threshold (the model's return-period flows, or ``[thresholds] path``): Brier
score, hits, misses, false alarms, hit rate and false-alarm ratio of warnings issued at an
exceedance probability of 0.5 or more. ``paired.csv``: per lead, the ConvLSTM against the
lumped LSTM basin by basin (NSE and CRPS): median difference, its 90 % bootstrap interval,
the Wilcoxon signed-rank p-value and the number of basins where the ConvLSTM wins.

Where the forecast store keeps the members of ensemble runs in the period (``[train]
ensemble_source``), the ConvLSTM is also run once per member and its distributions pooled
(:func:`hydrocast.probmetrics.pooled_quantiles`, recalibrated on the validation period at
training time where it had members): ``convlstm_ensemble``, written to the hindcast
as quantiles and scored in ``ensemble.csv`` / ``ensemble_warnings.csv`` like
``probabilistic.csv``, with every other system, on the days that have members.
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
VARIANTS = {"no_obs": {"with_obs": False}, "no_forecast": {"with_forecast": False}, "no_blend": {"blend": False}}


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
    probabilistic: dict = field(default_factory=dict)  # system -> lead -> {crps, crpss_*, coverage_*, ...}
    paired: dict = field(default_factory=dict)  # lead -> score -> {median_difference, ci_low, ...}
    files: list = field(default_factory=list)
    ensemble: dict = field(default_factory=dict)  # as probabilistic, on the days with ensemble members

    def to_json(self) -> dict:
        return {"hindcast": self.hindcast, "metrics_csv": self.metrics_csv, "model_id": self.model_id,
                "period": list(self.period),
                "issue_days": self.n_issue_days, "median": self.medians, "probabilistic": self.probabilistic,
                "paired": self.paired, "ensemble": self.ensemble, "files": self.files}


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
    from .forward import persistence_weight

    variants = [v for v, on in (("no_obs", fc.observed and fc.obs is not None),
                                ("no_forecast", fc.forecasts is not None),
                                ("no_blend", fc.obs is not None and any(persistence_weight(m) is not None
                                                                        for m in (fc.net, fc.lumped)))) if on]
    for v in variants:
        r = fc.run(basins, a, b, lumped=True, **VARIANTS[v])
        res.update({f"{k}_{v}": run for k, run in r.items()})
    ok = fc.supported()[a:b + 1]
    T, N = b - a + 1, len(basins.ids)
    ens = None
    if fc.levels is not None and fc.ensemble_name:
        from .probmetrics import pooled_quantiles

        ens = fc.members(basins, a, b, errors=res["convlstm"].extra.get("issue_error"))  # None: no ensemble run
        if ens is not None:
            ens_q = pooled_quantiles(fc.levels, np.moveaxis(ens.extra["q_quantiles"], 1, 0), fc.ensemble_scale)
            log(f"ensemble: {int((ens.n_members > 0).sum())} issue days with members of {fc.ensemble_name} "
                f"(up to {int(ens.n_members.max())})")

    def to_bt(x):  # (T, N, L[, Q]) -> (N, T, L[, Q]), NaN on unsupported issue days
        x = np.where(ok.reshape(-1, *[1] * (x.ndim - 1)), x, np.nan)
        return np.swapaxes(x, 0, 1).astype("float64")

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
    quantiles = None
    if fc.levels is not None:
        quantiles = {"simulated": to_bt(res["convlstm"].extra["q_quantiles"]),
                     "lumped_lstm": to_bt(res["lumped_lstm"].extra["q_quantiles"])}
        if ens is not None:
            quantiles["convlstm_ensemble"] = to_bt(ens_q)
    ds = hindcast_dataset(basins.ids, issue_days, leads, sims["convlstm"], obs_bt,
                          {k: v for k, v in sims.items() if k != "convlstm"},
                          [i["outlet_lon"] for i in basins.info], [i["outlet_lat"] for i in basins.info],
                          [i["area_km2"] for i in basins.info], model_id=fc.model_id,
                          quantiles=quantiles, levels=fc.levels)
    prob = None
    if quantiles is not None:
        thresholds = fc.thresholds(basins, log)
        base = {"convlstm": quantiles["simulated"], "lumped_lstm": quantiles["lumped_lstm"]}
        prob = probabilistic_scores(fc.levels, base, obs_bt, q_obs, days, a, b, ok, tp, basins.ids, thresholds)
        if ens is not None:  # the same systems and the member-driven one, on the days with members
            prob_ens = probabilistic_scores(fc.levels, {**base, "convlstm_ensemble": quantiles["convlstm_ensemble"]},
                                            obs_bt, q_obs, days, a, b, ok, tp, basins.ids, thresholds)
    hc = write_dataset(ds, out_dir / "hindcast.nc")
    csv_path = out_dir / "metrics.csv"
    atomic_write_text(csv_path, table.to_csv(index=False, float_format="%.4f"))
    files = [str(hc), str(csv_path)]
    med = table[table["basin"] == "median"]
    medians = {m: {int(r["lead_days"]): {k: _f(r[k]) for k in ("nse", "kge", "pbias", "rmse", "peak_timing")}
                   for _, r in med[med["model"] == m].iterrows()} for m in sims}
    result = EvaluateResult(str(hc), str(csv_path), medians, (str(start), str(end)), int(ok.sum()), fc.model_id)
    result.paired = {lead_: {"nse": paired(table, "nse", lead_)} for lead_ in leads}
    if prob is not None:
        for lead_ in leads:
            result.paired[lead_]["crps"] = paired(prob["scores"], "crps", lead_, higher_better=False)
        for name, frame in (("probabilistic", prob["scores"]), ("warnings", prob["warnings"])):
            path = out_dir / f"{name}.csv"
            atomic_write_text(path, frame.to_csv(index=False, float_format="%.4f"))
            files.append(str(path))
        result.probabilistic = prob["medians"]
        if ens is not None:
            for name, frame in (("ensemble", prob_ens["scores"]), ("ensemble_warnings", prob_ens["warnings"])):
                path = out_dir / f"{name}.csv"
                atomic_write_text(path, frame.to_csv(index=False, float_format="%.4f"))
                files.append(str(path))
            result.ensemble = prob_ens["medians"]
    rows = [{"lead_days": lead_, "score": k, **v} for lead_, d in result.paired.items() for k, v in d.items()]
    path = out_dir / "paired.csv"
    atomic_write_text(path, pd.DataFrame(rows).to_csv(index=False, float_format="%.4f"))
    files.append(str(path))
    result.files = files
    log(f"hindcast {start}..{end}: {int(ok.sum())} issue days, {N} basins -> {hc}")
    return result


#: the probabilistic systems scored: the model's two distributions and the two reference ensembles
PROB_SYSTEMS = ("convlstm", "lumped_lstm", "climatology_ensemble", "persistence_ensemble")
PROB_SCORES = ("crps", "crpss_climatology", "crpss_persistence", "coverage_50", "coverage_90", "pit_p_value",
               "pit_mad")


#: the columns of ``warnings.csv`` / ``ensemble_warnings.csv``
WARNING_COLUMNS = ["model", "basin", "lead_days", "threshold", "threshold_m3s", "source", "brier", "n_events", "hits",
                   "misses", "false_alarms", "hit_rate", "false_alarm_ratio", "n"]

def probabilistic_scores(levels, quantiles: dict, obs_bt: np.ndarray, q_obs: np.ndarray, days: np.ndarray,
                         a: int, b: int, ok: np.ndarray, train_period, basin_ids: list, thresholds: dict) -> dict:
    """The probabilistic tables of the module docstring. ``quantiles``: system name (e.g.
    "convlstm", "lumped_lstm") -> (N, T, L, Q) m3/s, scored with the two reference ensembles, all
    on the days where every one has a forecast; ``obs_bt`` (N, T, L) observed on the valid days;
    ``q_obs`` (cube days, N) observed discharge (the reference ensembles take the training period's
    only, and the issue day's for persistence)."""
    import pandas as pd

    from .probmetrics import (
        brier_quantiles,
        climatology_ensemble,
        contingency_quantiles,
        crps_quantiles,
        crpss,
        persistence_ensemble,
        pit_quantiles,
        pit_uniformity,
        quantile_coverage,
        quantiles_of,
    )

    N, T, L, _ = next(iter(quantiles.values())).shape
    t0 = int((np.datetime64(train_period[0], "D") - days[0]).astype(int))
    t1 = int((np.datetime64(train_period[1], "D") - days[0]).astype(int))
    t0, t1 = max(t0, 0), min(t1, len(days) - 1)
    train_days = days[t0:t1 + 1]
    issue = days[a:b + 1]
    systems = dict(quantiles)
    clim = np.full((N, T, L, len(levels)), np.nan)
    pers = np.full((N, T, L, len(levels)), np.nan)
    for n in range(N):
        train_q = q_obs[t0:t1 + 1, n]
        for l in range(L):
            valid_days = issue + np.timedelta64(l + 1, "D")
            clim[n, :, l] = quantiles_of(climatology_ensemble(train_days, train_q, valid_days), levels)
            p = persistence_ensemble(q_obs[a:b + 1, n], l + 1, train_q)
            pers[n, :, l] = np.where(ok[:, None], quantiles_of(p, levels), np.nan)
    systems["climatology_ensemble"] = np.where(ok[None, :, None, None], clim, np.nan)
    systems["persistence_ensemble"] = pers
    rows, warn_rows = [], []
    for n, bid in enumerate(basin_ids):
        for l in range(L):
            # every system on the same days: where the observation and all four forecasts exist
            same = np.isfinite(obs_bt[n, :, l]) & np.all([np.isfinite(q[n, :, l]).all(axis=-1)
                                                          for q in systems.values()], axis=0)
            o = np.where(same, obs_bt[n, :, l], np.nan)
            day_crps = {name: crps_quantiles(o, qq[n, :, l], levels) for name, qq in systems.items()}
            mean = {name: float(np.nanmean(c)) if np.isfinite(c).any() else np.nan for name, c in day_crps.items()}
            ref = {k: mean[k] for k in ("climatology_ensemble", "persistence_ensemble")}
            for name, qq in systems.items():
                c, mean_c = day_crps[name], mean[name]
                u = pit_uniformity(pit_quantiles(o, qq[n, :, l], levels)[np.isfinite(c)])
                rows.append({"model": name, "basin": bid, "lead_days": l + 1, "crps": mean_c,
                             "crpss_climatology": crpss(mean_c, ref["climatology_ensemble"]),
                             "crpss_persistence": crpss(mean_c, ref["persistence_ensemble"]),
                             "coverage_50": quantile_coverage(o, qq[n, :, l], levels, 0.5),
                             "coverage_90": quantile_coverage(o, qq[n, :, l], levels, 0.9),
                             "pit_p_value": u["p_value"], "pit_mad": u["mad"], "n": int(np.isfinite(c).sum())})
                for t in thresholds.get(bid, []):
                    ct = contingency_quantiles(o, qq[n, :, l], levels, t.discharge_m3s)
                    warn_rows.append({"model": name, "basin": bid, "lead_days": l + 1, "threshold": t.name,
                                      "threshold_m3s": t.discharge_m3s, "source": t.source,
                                      "brier": brier_quantiles(o, qq[n, :, l], levels, t.discharge_m3s),
                                      **{k: ct[k] for k in WARNING_COLUMNS[7:]}})
    scores = pd.DataFrame(rows)
    med = scores.groupby(["model", "lead_days"], sort=False)[list(PROB_SCORES)].median().reset_index()
    med.insert(1, "basin", "median")
    scores = pd.concat([scores, med], ignore_index=True)
    medians = {m: {int(r["lead_days"]): {k: _f(r[k]) for k in PROB_SCORES}
                   for _, r in med[med["model"] == m].iterrows()} for m in systems}
    # no threshold anywhere (e.g. too short a record): the header alone, never an empty file
    warnings_frame = pd.DataFrame(warn_rows, columns=WARNING_COLUMNS)
    return {"scores": scores, "warnings": warnings_frame, "medians": medians}


def paired(table, score: str, lead: int, higher_better: bool = True) -> dict:
    """The ConvLSTM against the lumped LSTM on ``score`` at ``lead``, basin by basin
    (:func:`hydrocast.probmetrics.paired_median_difference`; positive = the ConvLSTM is better)."""
    from .probmetrics import paired_median_difference

    t = table[(table["basin"] != "median") & (table["lead_days"] == lead)]
    conv = t[t["model"] == "convlstm"].set_index("basin")[score]
    lum = t[t["model"] == "lumped_lstm"].set_index("basin")[score].reindex(conv.index)
    x, y = (conv.to_numpy(float), lum.to_numpy(float)) if higher_better else (lum.to_numpy(float), conv.to_numpy(float))
    return {k: _f(v) if isinstance(v, float) else v for k, v in paired_median_difference(x, y).items()}


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


def render_probabilistic(result: EvaluateResult, ensemble: bool = False) -> "object":
    """The median-over-basins probabilistic skill and the paired comparison as a rich Table
    (``ensemble``: the table of the days with weather-forecast ensemble members, without the pairs)."""
    from rich.table import Table

    title = ("forecast distributions, median over basins (CRPS m3/s; CRPSS vs the climatology / persistence "
             "ensembles; interval coverage; PIT: mean abs. deviation of 10 bins from 0.1)")
    if ensemble:
        title = "on the issue days with ensemble members (convlstm_ensemble: one run per member): " + title
    t = Table(title=title)
    for k in ("model", "lead", "CRPS", "CRPSS clim", "CRPSS pers", "cover 50 %", "cover 90 %", "PIT MAD"):
        t.add_column(k, justify="left" if k == "model" else "right")
    for m, per_lead in (result.ensemble if ensemble else result.probabilistic).items():
        for lead, v in per_lead.items():
            cells = [v["crps"], v["crpss_climatology"], v["crpss_persistence"], v["coverage_50"], v["coverage_90"],
                     v["pit_mad"]]
            t.add_row(m, str(lead), *("-" if c is None else f"{c:.3f}" for c in cells))
    for lead, d in ({} if ensemble else result.paired).items():
        for score, v in d.items():
            if v.get("median_difference") is None:
                continue
            t.add_row(f"ConvLSTM - lumped, {score}", str(lead), f"{v['median_difference']:+.3f}",
                      f"[{v['ci_low']:+.3f}, {v['ci_high']:+.3f}]" if v.get("ci_low") is not None else "-",
                      f"p={v['wilcoxon_p']:.2f}" if v.get("wilcoxon_p") is not None else "-",
                      f"{v['wins']}/{v['n']} wins", "", "")
    return t
