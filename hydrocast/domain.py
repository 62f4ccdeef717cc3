"""The domain that train, predict and evaluate share: grid, basins with their channels, discharge.

Contract
========

``Domain``
    ``grid`` (the config's :class:`~hydrocast.grid.GridSpec`), ``basins`` (list of
    :class:`~hydrocast.basins.Basin`, ids checked by :mod:`hydrocast.ids`), ``channels``
    ``(N, 2, H, W)`` float32 (channel 0: the basin's fractional cover of each cell; channel 1:
    flow distance to the outlet divided by ONE length scale for the whole domain, so that travel
    times stay comparable between basins), ``dist_scale_km`` (that scale: the largest finite
    flow distance among the training basins, stored with the model and reused for any basin
    predicted later) and ``area_km2`` ``(N,)``.
``discharge_table``
    discharge in m3/s on the cube's days × basins (NaN = missing), from ``[discharge] path`` or
    an explicit file.

This module is the only place that builds basins for the model (torch-free).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Config
from .errors import ConfigError, MissingInputError


@dataclass
class Domain:
    grid: object  # GridSpec
    basins: list
    channels: np.ndarray  # (N, 2, H, W)
    dist_scale_km: float

    @property
    def ids(self) -> list[str]:
        return [b.id for b in self.basins]

    @property
    def area_km2(self) -> np.ndarray:
        return np.array([b.area_km2 for b in self.basins], dtype="float64")


def dem_routing(cfg: Config, grid):
    """Native-resolution D8 routing of the config's DEM source (None without a DEM)."""
    from . import terrain
    from .ingest import expand_paths
    from .sources import dem as dem_mod

    src = next((s for s in cfg.sources if s.kind == "dem"), None)
    if src is None:
        return None
    files = expand_paths(cfg, src)
    if not files:
        raise MissingInputError(f"{cfg.path}: [[sources]] {src.name}: no file matches {src.paths}")
    da = dem_mod.read(files[0], src.as_options(), grid.lonlat_bounds(cfg.cube.margin_cells))
    return terrain.flow_routing(da)


def build_domain(cfg: Config, grid, path: Path | None = None, routing=None,
                 dist_scale_km: float | None = None, only: list[str] | None = None) -> Domain:
    """Basins from ``path`` (default ``[basins] path``) on ``grid`` with their model channels.

    ``dist_scale_km=None`` computes the scale from these basins (training); pass the model's
    stored scale for any other basin set (prediction, ungauged basins). ``only``: keep just these
    basin ids, in the file's order (e.g. the training folds of a cross-validation)."""
    from .basins import basin_channels, read_basins

    path = Path(path) if path is not None else (cfg.resolve(cfg.basins.path) if cfg.basins.path else None)
    if path is None:
        raise ConfigError(f"{cfg.path}: [basins] path is not set")
    if routing is None:
        routing = dem_routing(cfg, grid)
    basins = read_basins(path, grid, routing, min_area_km2=cfg.basins.min_area_km2)
    if only is not None:
        missing = sorted(set(only) - {b.id for b in basins})
        if missing:
            raise ConfigError(f"{path}: no basin {missing[0]!r}")
        basins = [b for b in basins if b.id in set(only)]
    channels, scale = basin_channels(basins, grid, dist_scale_km=dist_scale_km)
    return Domain(grid, basins, channels, scale)


def discharge_table(cfg: Config, days: np.ndarray, basin_ids: list[str], path: Path | None = None):
    """Discharge (days × basins) in m3/s, NaN = missing, aligned to the cube's ``days``."""
    import pandas as pd

    from .observations import read_discharge

    path = Path(path) if path is not None else (cfg.resolve(cfg.discharge.path) if cfg.discharge.path else None)
    if path is None:
        raise ConfigError(f"{cfg.path}: [discharge] path is not set")
    df = read_discharge(path, None, fmt=cfg.discharge.format)
    have = [b for b in basin_ids if b in df.columns]
    out = pd.DataFrame(index=pd.DatetimeIndex(days.astype("datetime64[ns]")), columns=basin_ids, dtype="float64")
    if have:
        out.loc[:, have] = df[have].reindex(out.index).to_numpy()
    out.attrs["source"] = str(path)
    return out
