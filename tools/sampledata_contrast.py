"""The contrast variant of the sample region: where in a basin the rain falls decides the river's answer.

``python -m tools.sampledata OUTDIR --variant contrast [--seed 42] [--start 2015-01-01] [--end 2020-12-31]``

The default region (:mod:`tools.sampledata`: the same terrain, rivers, basins, products, weather
forecasts and file layout) on two geologies with a sharp border, under clustered convective storms:

Geology
    A meandering north-south border near 7.76°W (:func:`permeable`) cuts the three large basins
    into a lowland and an upland part (PT01, PT03, PT04: 54, 37 and 17 % permeable with seed 42);
    PT05 lies wholly in the lowlands, the small upper basins wholly in the uplands. West of it,
    permeable sandstone and limestone: a deep bucket (``PERMEABLE["smax_factor"]`` × the default
    capacity) that sheds little rain until it is nearly full (runoff exponent 5 instead of 2.5),
    strong percolation and a slow groundwater store (``k`` = 180 days): rain there comes out
    weeks later as baseflow. East of it, impermeable granite and schist: a shallow bucket that
    sheds rain early (exponent 1.5), almost no percolation, a fast groundwater store (``k`` = 20
    days): rain there runs off within days. A basin-mean rainfall cannot tell the two apart; nor
    does the DEM (the border follows no contour). No geology map
    is written: a model must learn the border from where the discharge answers the rain (and from
    the soil moisture, which the two buckets hold differently).
Storms
    The default region's fronts and convective cells, plus clusters of 3-5 small (5-12 km),
    intense, slow convective cells, most in summer (:func:`storms_for_day`): on a cluster day one
    part of a basin is soaked and the rest stays dry.

Nothing else changes: the same seed gives the same terrain, basins and fronts as the default
variant. ``hydrocast.toml`` (written when OUTDIR has none) is the sample's configuration with
paths inside OUTDIR, the default 30 epochs, train 2015-2018, validation 2019, test 2020.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tools import sampledata as sd

DEFAULT_START = sd.DEFAULT_START
DEFAULT_END = sd.DEFAULT_END
#: the two geologies' parameters (see :class:`tools.sampledata.Physics`)
PERMEABLE = {"smax_factor": 1.4, "k_perc": 0.35, "k_gw_days": 180.0, "beta": 5.0}
IMPERMEABLE = {"smax_factor": 0.45, "k_perc": 0.004, "k_gw_days": 20.0, "beta": 1.5}
BORDER_LON = -7.76
#: mean number of storm clusters a day (times a seasonal factor, most in summer, and the wet or dry spell)
CLUSTERS_PER_DAY = 0.25
CLUSTER = {"cells": (3, 6), "spread_km": 12.0, "life": (1.5, 5.0), "speed": (5.0, 20.0), "heading": (30.0, 40.0),
           "size": (5.0, 12.0), "i0": (2.0, 6.0), "x": (-80.0, 70.0), "y": (-100.0, 100.0)}


def permeable(seed: int) -> np.ndarray:
    """Model-grid mask of the permeable lowland geology: west of a meandering border."""
    rng = sd._rng(seed, 0x6E)
    ph1, ph2 = rng.uniform(0, 2 * np.pi, 2)
    lat = sd.model_lat()[:, None]
    lon = sd.model_lon()[None, :]
    border = (BORDER_LON + 0.03 * np.sin(2 * np.pi * (lat - 40.0) / 0.9 + ph1)
              + 0.015 * np.sin(2 * np.pi * (lat - 40.0) / 0.31 + ph2))
    return np.broadcast_to(lon < border, (lat.size, lon.size)).copy()


def physics(seed: int) -> sd.Physics:
    """The variant's :class:`tools.sampledata.Physics`: each geology's parameters where it lies."""
    perm = permeable(seed)

    def pick(key: str) -> np.ndarray:
        return np.where(perm, PERMEABLE[key], IMPERMEABLE[key])

    return sd.Physics(smax_factor=pick("smax_factor"), k_perc=pick("k_perc"), k_gw_days=pick("k_gw_days"),
                      storms=storms_for_day, beta=pick("beta"))


def cluster_storms(seed: int, day) -> np.ndarray:
    """The convective clusters born on ``day`` (the storms' record type of :mod:`tools.sampledata`);
    like the default storms they depend only on (seed, day)."""
    day = sd._as_date(day)
    rng = sd._rng(seed, 0xC1, day.toordinal())
    warm = 1.0 - sd._season(day)  # 1 in mid-July
    lam = CLUSTERS_PER_DAY * (0.25 + 1.5 * warm) * math.exp(0.5 * sd._regime(seed, day) - 0.125)
    c = CLUSTER
    t_day = (day - sd.UNIX_EPOCH.date()).days * 24.0
    cells = []
    for _ in range(int(rng.poisson(lam))):
        cx, cy = rng.uniform(*c["x"]), rng.uniform(*c["y"])
        t_mid = t_day + rng.uniform(10.0, 22.0)  # afternoon and evening
        speed, heading = rng.uniform(*c["speed"]), np.radians(rng.normal(*c["heading"]))
        for _ in range(int(rng.integers(*c["cells"]))):
            s = np.zeros((), dtype=sd.STORM_DTYPE)
            s["life"] = rng.uniform(*c["life"])
            s["speed"], s["heading"] = speed, heading
            s["sa"] = s["sc"] = rng.uniform(*c["size"])
            s["i0"] = rng.gamma(*c["i0"])
            s["x"], s["y"] = cx + rng.normal(0.0, c["spread_km"]), cy + rng.normal(0.0, c["spread_km"])
            s["t_mid"] = t_mid + rng.normal(0.0, 1.0)
            cells.append(s)
    return np.array(cells, dtype=sd.STORM_DTYPE)


def storms_for_day(seed: int, day, forced: bool = False) -> np.ndarray:
    """The default region's storms of ``day`` plus its convective clusters."""
    return np.concatenate([sd.storms_for_day(seed, day, forced=forced), cluster_storms(seed, day)])


#: the sample's project file, which the variant's is derived from (:func:`config_text`)
SAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "sample_data" / "hydrocast.toml"


def config_text() -> str:
    """The sample's ``hydrocast.toml`` for a folder of its own: this header, the cube and the model
    under ``work/`` beside it, and the default epochs (the sample's ``epochs = 20`` and the comment
    above it dropped). Raises where the sample's file no longer has the lines this expects."""
    lines = SAMPLE_CONFIG.read_text(encoding="utf-8").splitlines(keepends=True)
    at = [k for k, line in enumerate(lines) if line.startswith("epochs =")]
    paths = sum(line.count('"../work/sample/') for line in lines)
    if len(at) != 1 or paths != 2 or not lines[0].startswith("# hydrocast project file"):
        raise RuntimeError(f"{SAMPLE_CONFIG}: not the layout tools/sampledata_contrast.py derives its config from")
    first = at[0]
    while first > 0 and lines[first - 1].startswith("#"):
        first -= 1
    lines[0] = "# hydrocast project file for the contrast variant of the sample region (see README.md here).\n"
    del lines[first:at[0] + 1]
    return "".join(lines).replace('"../work/sample/', '"work/')


README = '''
## This is the contrast variant

Written by `python -m tools.sampledata OUTDIR --variant contrast` (`tools/sampledata_contrast.py`):
the region above on two geologies with a sharp border, under clustered storms. West of a
meandering border near 7.76°W the ground is permeable (a bucket {perm[smax_factor]:g} × as deep, runoff
exponent {perm[beta]:g}, percolation {perm[k_perc]:g}, groundwater k = {perm[k_gw_days]:g} days: rain comes out
weeks later as baseflow); east of it impermeable (a bucket {imp[smax_factor]:g} × as deep, runoff exponent
{imp[beta]:g}, percolation {imp[k_perc]:g}, groundwater k = {imp[k_gw_days]:g} days: rain runs off within days).
The border cuts PT01, PT03 and PT04 into a lowland and an upland part; the small upper basins lie
in the uplands. Besides the fronts and convective cells above,
clusters of 3-5 small, intense, slow convective cells (about {clusters:.2g} a day in summer) soak
one part of a basin and leave the rest dry. No geology map is written. Share of each gauged
basin on the permeable ground: {shares}.
'''


def generate(outdir, seed: int = sd.DEFAULT_SEED, start=DEFAULT_START, end=DEFAULT_END,
             spinup_days: int = sd.SPINUP_DAYS, log=None) -> dict:
    """Write the contrast variant into ``outdir`` (and its ``hydrocast.toml`` where there is none);
    returns the summary dict of :func:`tools.sampledata.generate` plus each basin's permeable share."""
    outdir = Path(outdir)
    summary = sd.generate(outdir, seed=seed, start=start, end=end, spinup_days=spinup_days, log=log,
                          physics=physics(seed))
    shares = permeable_shares(seed)
    summary["variant"] = "contrast"
    summary["permeable_share"] = shares
    text = README.format(perm=PERMEABLE, imp=IMPERMEABLE, clusters=CLUSTERS_PER_DAY * 1.75,
                         shares=", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    readme = outdir / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + text, encoding="utf-8")
    config = outdir / "hydrocast.toml"
    if not config.exists():
        config.write_text(config_text(), encoding="utf-8")
    return summary


def permeable_shares(seed: int) -> dict[str, float]:
    """Each gauged basin's share (by area of its cells on the model grid) on the permeable geology."""
    terrain = sd.make_terrain(seed)
    net = sd.delineate_basins(seed, terrain)
    perm = sd._window(permeable(seed).astype(float), sd.DEM_WIN)
    return {b.id: float((perm * b.mask).sum() / b.mask.sum()) for b in net.gauged}
