"""``hydrocast evaluate --kfold K``: ungauged skill by k-fold cross-validation over basins.

The standard protocol for prediction in ungauged basins (Kratzert et al. 2019, "Toward improved
predictions in ungauged basins"): the config's basins are split into K folds (a permutation
seeded by ``[train] seed``, fold sizes differing by at most one); for each fold a ConvLSTM and a
lumped LSTM are trained on the other K - 1 folds only (same periods, same loss, same early
stopping on the training basins' validation scores: the held-out basins never touch a
gradient or a model choice), and then the held-out basins are forecast as **ungauged**: they
are not among the model's gauges, so their own observations never enter (only the training
basins' observations, as maps, as for any ungauged basin), and their observed discharge serves
for scoring only. Every basin is held out once, so the ungauged figure rests on every basin.

Writes into ``--out``: ``kfold.csv`` (model, basin, fold, lead: NSE, KGE, ... as in
``metrics.csv``, plus the median over basins; with observed discharge also ``convlstm_no_obs`` /
``lumped_lstm_no_obs``: the same held-out forecasts with every gauge silent), ``kfold_paired.csv``
(the ConvLSTM against the lumped LSTM, basin by basin, per lead: :func:`hydrocast.evaluate.paired`),
and the fold models
under ``kfold/fold<N>/model`` (artefacts like any other: predict and evaluate read them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .config import Config
from .errors import ConfigError


@dataclass
class KFoldResult:
    k: int
    folds: list  # list of lists of basin ids
    metrics_csv: str
    paired_csv: str
    medians: dict = field(default_factory=dict)  # model -> lead -> {nse, kge, ...}
    paired: dict = field(default_factory=dict)  # lead -> {"nse": {...}}
    period: tuple = ()
    files: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"kfold": self.k, "folds": self.folds, "period": list(self.period), "metrics_csv": self.metrics_csv,
                "paired_csv": self.paired_csv, "median": self.medians, "paired": self.paired, "files": self.files}


def folds_of(ids: list[str], k: int, seed: int) -> list[list[str]]:
    """``k`` folds of ``ids`` (each id in exactly one; sizes differ by at most one), from a seeded
    permutation, each in the order of ``ids``."""
    if not 2 <= k <= len(ids):
        raise ConfigError(f"--kfold {k}: needs 2 <= K <= the number of basins ({len(ids)})")
    perm = np.random.default_rng(seed).permutation(len(ids))
    return [[ids[i] for i in sorted(perm[f::k])] for f in range(k)]


def kfold(cfg: Config, k: int, period: str | None, out_dir: Path, device: str = "auto",
          log: Callable[[str], None] = lambda s: None) -> KFoldResult:
    """Run the cross-validation of the module docstring; returns the summary."""
    import pandas as pd

    from .domain import build_domain, discharge_table
    from .evaluate import _f, paired, parse_period
    from .fsio import atomic_write_text, prepare_out_dir
    from .metrics import metrics_table
    from .predict import Forecaster
    from .train import train
    from .windows import targets

    start, end = parse_period(period, cfg)
    ids = build_domain(cfg, cfg.grid_spec()).ids
    folds = folds_of(ids, k, cfg.train.seed)
    out_dir = prepare_out_dir(Path(out_dir))
    basins_path = cfg.resolve(cfg.basins.path)
    sims = {"convlstm": {}, "lumped_lstm": {}}  # (+ "_no_obs" rows where the models read observations)
    obs_by, fold_of = {}, {}
    leads = None
    for f, held in enumerate(folds, start=1):
        train_ids = [b for b in ids if b not in held]
        fold_cfg = dataclasses.replace(cfg, train=dataclasses.replace(
            cfg.train, model_dir=out_dir / "kfold" / f"fold{f}" / "model"))
        log(f"fold {f}/{k}: training on {', '.join(train_ids)}; {', '.join(held)} held out as ungauged")
        train(fold_cfg, device=device, log=log, basin_ids=train_ids)
        with Forecaster(fold_cfg) as fc:
            days = fc.reader.days
            if start < days[0] + fc.warmup or end > days[-1]:
                raise ConfigError(f"--period {start}:{end} is outside what the cube supports "
                                  f"({days[0] + fc.warmup} .. {days[-1]})")
            a, b = int((start - days[0]).astype(int)), int((end - days[0]).astype(int))
            basins = fc.basin_set(held, basins_path)
            res = fc.run(basins, a, b, lumped=True)
            if fc.observed and fc.obs is not None:  # as if no gauge reported: the other basins' obs off too
                res.update({f"{k}_no_obs": r for k, r in fc.run(basins, a, b, lumped=True, with_obs=False).items()})
            ok = fc.supported()[a:b + 1]
            q_obs = discharge_table(cfg, days, held).to_numpy("float64")
            obs = targets(q_obs, a, b + 1, fc.lead, len(days) - 1, dtype="float64")
            leads = list(range(1, fc.lead + 1))
            for n, bid in enumerate(held):
                fold_of[bid] = f
                obs_by[bid] = obs[:, n]
                for name in res:
                    sims.setdefault(name, {})[bid] = np.where(ok[:, None], res[name].q[:, n], np.nan)
    tables = []
    for name, per_basin in sims.items():
        sim = np.stack([per_basin[bid] for bid in ids])  # (N, T, L)
        obs = np.stack([obs_by[bid] for bid in ids])
        t = metrics_table(sim, obs, ids, leads).reset_index()
        t.insert(0, "model", name)
        t.insert(2, "fold", [fold_of.get(bid, 0) for bid in t["basin"]])
        tables.append(t)
    table = pd.concat(tables, ignore_index=True)
    csv_path = out_dir / "kfold.csv"
    atomic_write_text(csv_path, table.to_csv(index=False, float_format="%.4f"))
    med = table[table["basin"] == "median"]
    medians = {m: {int(r["lead_days"]): {c: _f(r[c]) for c in ("nse", "kge", "pbias", "rmse", "peak_timing")}
                   for _, r in med[med["model"] == m].iterrows()} for m in sims}
    pairs = {lead: {"nse": paired(table, "nse", lead)} for lead in leads}
    paired_path = out_dir / "kfold_paired.csv"
    atomic_write_text(paired_path, pd.DataFrame([{"lead_days": lead, "score": "nse", **d["nse"]}
                                                 for lead, d in pairs.items()]).to_csv(index=False,
                                                                                       float_format="%.4f"))
    log(f"k-fold ({k} folds) ungauged median NSE, lead 1: ConvLSTM {medians['convlstm'][1]['nse']}, "
        f"lumped LSTM {medians['lumped_lstm'][1]['nse']}")
    return KFoldResult(k, folds, str(csv_path), str(paired_path), medians, pairs, (str(start), str(end)),
                       [str(csv_path), str(paired_path)])


def render_table(result: KFoldResult) -> "object":
    """The k-fold ungauged medians of both models per lead, with the paired comparison."""
    from rich.table import Table

    t = Table(title=f"{result.k}-fold cross-validation over basins: every basin forecast as ungauged, "
                    f"{result.period[0]} .. {result.period[1]}")
    for c in ("lead", "ConvLSTM NSE", "lumped LSTM NSE", "ConvLSTM - lumped (median, 90 % CI)", "wins", "Wilcoxon p"):
        t.add_column(c, justify="right")
    for lead in result.medians["convlstm"]:
        c, lum = result.medians["convlstm"][lead]["nse"], result.medians["lumped_lstm"][lead]["nse"]
        p = result.paired.get(lead, {}).get("nse", {})
        md = p.get("median_difference")
        ci = (f" [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}]" if p.get("ci_low") is not None else "")
        t.add_row(str(lead), "-" if c is None else f"{c:.3f}", "-" if lum is None else f"{lum:.3f}",
                  "-" if md is None else f"{md:+.3f}{ci}", f"{p.get('wins', '-')}/{p.get('n', '-')}",
                  "-" if p.get("wilcoxon_p") is None else f"{p['wilcoxon_p']:.2f}")
    return t
