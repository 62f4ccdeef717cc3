"""The Python API: the pipeline's stages as functions for notebooks and scripts.

Each function takes a config (a path to ``hydrocast.toml`` or a loaded
:class:`~hydrocast.config.Config`) and returns what a user wants next: ``xarray`` objects for data,
result objects for runs. The command line is a thin layer over the same functions, so they take
the same locks, write atomically and raise the same :mod:`hydrocast.errors` (each with its
``exit_code``).

>>> import hydrocast.api as hc
>>> cfg = hc.load_config("sample_data/hydrocast.toml")
>>> hc.ingest(cfg)                                   # IngestResult: days added / replaced
>>> cube = hc.open_cube(cfg)                         # xarray.Dataset (time, y, x)
>>> hc.train(cfg, epochs=5)                          # TrainResult (validation NSE, model id)
>>> fc = hc.forecast(cfg, ["PT01"])                  # xarray.Dataset q(issue_day, basin, lead) in m3/s
>>> hind = hc.hindcast(cfg, "2020-01-01:2020-12-31") # convlstm / lumped_lstm / observed per lead
>>> hc.evaluate(cfg, out_dir="evaluation").medians   # skill table, files written like the CLI
"""

from __future__ import annotations

from pathlib import Path

from .config import Config

__all__ = ["load_config", "ingest", "open_cube", "train", "forecast", "hindcast", "evaluate", "predict"]


def load_config(config: str | Path | Config) -> Config:
    """A validated :class:`Config` (a ConfigError names the file and key of any problem)."""
    from . import config as config_mod

    return config if isinstance(config, Config) else config_mod.load(config)


def ingest(config, strict: bool = False, log=lambda s: None, workers: int = 1, scheduler: str | None = None,
           client=None):
    """Regrid new input days into the cube (``hydrocast ingest``); returns an IngestResult.
    ``workers`` > 1, ``scheduler`` (an address) or ``client`` (a ``distributed.Client``): the
    reading and regridding run as tiles on a dask cluster (:mod:`hydrocast.ingest_dask`)."""
    if workers > 1 or scheduler or client is not None:
        from .ingest_dask import ingest as run_on_cluster

        return run_on_cluster(load_config(config), workers=workers, scheduler=scheduler, client=client,
                              strict=strict, log=log)
    from .ingest import ingest as run

    return run(load_config(config), strict=strict, log=log)


def open_cube(config):
    """The data cube as an ``xarray.Dataset``, opened lazily (close it, or use ``with``); a NetCDF
    file or a Zarr store (:mod:`hydrocast.cube`)."""
    from . import cube

    cfg = load_config(config)
    return cube.open_cube(cfg.resolve(cfg.cube.path))


def train(config, device: str = "auto", seed: int | None = None, epochs: int | None = None, resume: bool = False,
          log=lambda s: None):
    """Train the ConvLSTM and the lumped baseline (``hydrocast train``); returns a TrainResult."""
    from .train import train as run

    return run(load_config(config), device=device, seed=seed, epochs=epochs, resume=resume, log=log)


def forecast(config, basins: list[str] | str = "all", issue_date: str | None = None, basins_path=None,
             lumped: bool = False):
    """Forecast without writing files: an ``xarray.Dataset`` with ``q`` (issue_day, basin, lead) in
    m3/s (and ``maps``/``runoff`` (issue_day, lead, y, x)) for one issue date (default: the latest
    the cube supports). ``lumped=True`` adds ``q_lumped`` from the lumped baseline."""
    from .predict import Forecaster

    ids = ["all"] if basins == "all" else list(basins)
    with Forecaster(load_config(config)) as fc:
        bs = fc.basin_set(ids, Path(basins_path) if basins_path else None)
        i = fc.issue_index(issue_date)
        runs = fc.run(bs, i, i, lumped=lumped)
        ds = runs["convlstm"].to_xarray(bs.ids)
        if lumped:
            ds["q_lumped"] = runs["lumped_lstm"].to_xarray(bs.ids)["q"]
        ds["area_km2"] = ("basin", [b["area_km2"] for b in bs.info])
        ds.attrs.update(model_id=fc.model_id, units_q="m3 s-1")
        return ds


def hindcast(config, period: str, basins_path=None):
    """Every issue day of ``period`` ("START:END") for every basin: ``convlstm`` and
    ``lumped_lstm`` (issue_day, basin, lead) in m3/s and ``observed`` on the same valid days."""
    import numpy as np
    import xarray as xr

    from .domain import discharge_table
    from .evaluate import parse_period
    from .predict import Forecaster
    from .windows import targets

    cfg = load_config(config)
    with Forecaster(cfg) as fc:
        start, end = parse_period(period, cfg)
        days = fc.reader.days
        a, b = fc.reader.index(start), fc.reader.index(end)
        bs = fc.basin_set(["all"], Path(basins_path) if basins_path else None)
        runs = fc.run(bs, a, b, lumped=True)
        q = discharge_table(cfg, days, bs.ids).to_numpy("float64")
        obs = targets(q, a, b + 1, fc.lead, len(days) - 1, dtype="float64")
        ds = xr.Dataset({"convlstm": (("issue_day", "basin", "lead"), runs["convlstm"].q),
                         "lumped_lstm": (("issue_day", "basin", "lead"), runs["lumped_lstm"].q),
                         "observed": (("issue_day", "basin", "lead"), obs)},
                        coords={"issue_day": days[a:b + 1], "basin": bs.ids, "lead": np.arange(1, fc.lead + 1)})
        ds.attrs.update(model_id=fc.model_id)
        return ds


def predict(config, basins: list[str], out_dir, issue_date: str | None = None, basins_path=None, plot: bool = False):
    """``hydrocast predict``: write the hydrograph / map NetCDF files; returns a PredictResult."""
    from .predict import predict as run

    return run(load_config(config), basins, Path(out_dir), issue_date=issue_date,
               basins_path=Path(basins_path) if basins_path else None, plot=plot)


def evaluate(config, period: str | None = None, out_dir="evaluation", basins_path=None, discharge_path=None):
    """``hydrocast evaluate``: hindcast + skill table files; returns an EvaluateResult (``.medians``)."""
    from .evaluate import evaluate as run

    return run(load_config(config), period, Path(out_dir), basins_path=Path(basins_path) if basins_path else None,
               discharge_path=Path(discharge_path) if discharge_path else None)
