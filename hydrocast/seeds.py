"""``hydrocast evaluate --seeds 0,1,2,3``: how much of a skill figure is the model, how much the seed.

A neural network trained on a few basins and a few years lands somewhere different with every
random seed (the initial weights, the order of the training windows, the observation hold-out),
and with six basins the median NSE of one training run moves by 0.02 to 0.1 from seed to seed
(see the README). A comparison of two models on one seed each is then a coin toss. This mode
trains one ConvLSTM + lumped LSTM pair per seed (same config, same periods, same early stopping;
only the seed differs) and evaluates every pair with :func:`hydrocast.evaluate.evaluate` on the
validation period and on ``--period`` (default the test period), so that the verdict of the
validation period (on which model choices may be made) and the test period's are side by side.

Writes into ``--out``:

* ``seeds/seed<N>/model``: each seed's model (an artefact like any other);
  ``seeds/seed<N>/validation`` and ``seeds/seed<N>/test``: each seed's ``evaluate`` output;
* ``seeds.csv``: period, seed, model, lead_days, and the median over basins of NSE and KGE of
  every model ``evaluate`` scores (persistence and climatology too, the same for every seed);
* ``seeds_summary.csv``: per period, model and lead, the mean, the smallest and the largest of
  those medians over the seeds, and for the ConvLSTM against the lumped LSTM the mean of the
  per-seed differences of the median NSE and on how many seeds the ConvLSTM's is higher.

Averaging the per-seed medians (not the forecasts) keeps what one trained model gives: this is
the skill a user can expect from one ``hydrocast train``, with its spread, not the skill of an
ensemble of seeds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .config import Config
from .errors import BadInputError, ConfigError

#: the scores ``seeds.csv`` carries per model (medians over basins from ``evaluate``)
SCORES = ("nse", "kge")


@dataclass
class SeedsResult:
    seeds: list[int]
    periods: dict  # "validation" / "test" -> [start, end]
    seeds_csv: str
    summary_csv: str
    summary: dict = field(default_factory=dict)  # period -> model -> lead -> {mean, min, max[, ...]}
    files: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"seeds": self.seeds, "periods": self.periods, "seeds_csv": self.seeds_csv,
                "summary_csv": self.summary_csv, "summary": self.summary, "files": self.files}


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]: at least two distinct non-negative integers."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise BadInputError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2,3") from None
    if len(seeds) < 2 or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise BadInputError(f"--seeds {text!r}: give at least two distinct non-negative seeds")
    return seeds


def summarise(rows: "object") -> "object":
    """``seeds_summary.csv`` from the ``seeds.csv`` table (a DataFrame with columns period, seed,
    model, lead_days, nse, kge): per period, model and lead the mean, min and max NSE over the
    seeds and the mean KGE; for ``convlstm`` also ``nse_minus_lumped`` (the mean over seeds of
    its median NSE minus the lumped LSTM's of the same seed) and ``seeds_ahead`` (on how many
    seeds it is higher). NaN medians (a lead without any score) are left out of the means."""
    import pandas as pd

    out = []
    for (period, model, lead), g in rows.groupby(["period", "model", "lead_days"], sort=False):
        row = {"period": period, "model": model, "lead_days": int(lead), "seeds": int(g["seed"].nunique()),
               "nse_mean": float(np.nanmean(g["nse"])) if g["nse"].notna().any() else np.nan,
               "nse_min": float(g["nse"].min()), "nse_max": float(g["nse"].max()),
               "kge_mean": float(np.nanmean(g["kge"])) if g["kge"].notna().any() else np.nan,
               "nse_minus_lumped": np.nan, "seeds_ahead": np.nan}
        if model == "convlstm":
            lum = rows[(rows["period"] == period) & (rows["model"] == "lumped_lstm") & (rows["lead_days"] == lead)]
            both = g.set_index("seed")["nse"].to_frame("c").join(lum.set_index("seed")["nse"].to_frame("l"),
                                                                  how="inner").dropna()
            if len(both):
                row["nse_minus_lumped"] = float((both["c"] - both["l"]).mean())
                row["seeds_ahead"] = int((both["c"] > both["l"]).sum())
        out.append(row)
    return pd.DataFrame(out)


def nest(summary: "object") -> dict:
    """``seeds_summary.csv``'s table as period -> model -> lead -> {nse_mean, nse_min, nse_max,
    kge_mean, nse_minus_lumped, seeds_ahead} (None for NaN): the JSON summary and the table's."""
    import pandas as pd

    from .evaluate import _f

    nested: dict = {}
    for _, r in summary.iterrows():
        d = {k: (_f(r[k]) if k != "seeds_ahead" else (None if pd.isna(r[k]) else int(r[k])))
             for k in ("nse_mean", "nse_min", "nse_max", "kge_mean", "nse_minus_lumped", "seeds_ahead")}
        nested.setdefault(r["period"], {}).setdefault(r["model"], {})[int(r["lead_days"])] = d
    return nested


def run_seeds(cfg: Config, seeds: list[int], period: str | None, out_dir: Path, device: str = "auto",
              log: Callable[[str], None] = lambda s: None) -> SeedsResult:
    """Train and evaluate one model pair per seed (the module docstring); returns the summary."""
    import pandas as pd

    from .evaluate import evaluate, parse_period
    from .fsio import atomic_write_text, prepare_out_dir
    from .train import train

    if cfg.train.validation_period is None:
        raise ConfigError(f"{cfg.where('train', 'validation_period')}: --seeds needs a validation period")
    periods = {"validation": tuple(np.datetime64(d, "D") for d in cfg.train.validation_period),
               "test": parse_period(period, cfg)}
    out_dir = prepare_out_dir(Path(out_dir))
    rows = []
    for s in seeds:
        where = out_dir / "seeds" / f"seed{s}"
        seed_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, model_dir=where / "model"))
        log(f"seed {s}: training")
        train(seed_cfg, device=device, seed=s, log=log)
        for name, (a, b) in periods.items():
            res = evaluate(seed_cfg, f"{a}:{b}", where / name, log=log)
            for model, by_lead in res.medians.items():
                for lead, scores in by_lead.items():
                    rows.append({"period": name, "seed": s, "model": model, "lead_days": int(lead),
                                 **{k: (np.nan if scores.get(k) is None else scores[k]) for k in SCORES}})
    table = pd.DataFrame(rows)
    summary = summarise(table)
    seeds_csv, summary_csv = out_dir / "seeds.csv", out_dir / "seeds_summary.csv"
    atomic_write_text(seeds_csv, table.to_csv(index=False, float_format="%.4f"))
    atomic_write_text(summary_csv, summary.to_csv(index=False, float_format="%.4f"))
    nested = nest(summary)
    c1 = nested.get("test", {}).get("convlstm", {}).get(1, {})
    log(f"{len(seeds)} seeds, test period, lead 1: ConvLSTM median NSE {c1.get('nse_mean')} on average, "
        f"{c1.get('nse_minus_lumped')} above the lumped LSTM, ahead on {c1.get('seeds_ahead')} of {len(seeds)} seeds")
    return SeedsResult(seeds, {k: [str(a), str(b)] for k, (a, b) in periods.items()}, str(seeds_csv),
                       str(summary_csv), nested, [str(seeds_csv), str(summary_csv)])


def render_table(result: SeedsResult) -> "object":
    """Per period and lead: the mean (min..max) over the seeds of the median NSE of the ConvLSTM,
    the lumped LSTM and persistence, and the ConvLSTM's lead over the lumped LSTM."""
    from rich.table import Table

    t = Table(title=f"median NSE over basins, mean (min .. max) over seeds {', '.join(map(str, result.seeds))}")
    for c in ("period", "lead", "ConvLSTM", "lumped LSTM", "persistence", "ConvLSTM - lumped", "seeds ahead"):
        t.add_column(c, justify="right")

    def cell(d):
        if not d or d.get("nse_mean") is None:
            return "-"
        return f"{d['nse_mean']:.3f} ({d['nse_min']:.3f} .. {d['nse_max']:.3f})"

    for period, models in result.summary.items():
        for lead, c in models.get("convlstm", {}).items():
            lum = models.get("lumped_lstm", {}).get(lead)
            per = models.get("persistence", {}).get(lead)
            diff = c.get("nse_minus_lumped")
            t.add_row(period, str(lead), cell(c), cell(lum), "-" if not per or per["nse_mean"] is None
                      else f"{per['nse_mean']:.3f}", "-" if diff is None else f"{diff:+.3f}",
                      f"{c.get('seeds_ahead', '-')}/{len(result.seeds)}")
    return t


__all__ = ["SeedsResult", "parse_seeds", "summarise", "nest", "run_seeds", "render_table"]
