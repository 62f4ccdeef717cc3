"""The tiny project several tests train on: the sample region's first months (32 x 32 cells, 6
basins), IMERG daily and half-hourly, ESA CCI, the DEM; the caller gives the [train] table."""

from __future__ import annotations

from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"

_HEAD = """
[grid]
crs = "EPSG:4326"
bounds = [-8.8, 40.0, -7.2, 41.6]
resolution = 0.05

[[sources]]
name = "precipitation"
kind = "imerg"
paths = ["{s}/raw/imerg/3B-DAY.MS.MRG.3IMERG.20150[1-{m}]*.nc4",
         "{s}/raw/imerg/3B-HHR.MS.MRG.3IMERG.20150[1-{m}]*.HDF5"]

[[sources]]
name = "soil_moisture"
kind = "esacci_sm"
paths = ["{s}/raw/esacci/*COMBINED-20150[1-{m}]*.nc"]

[[sources]]
name = "dem"
kind = "dem"
paths = ["{s}/raw/dem/dem.tif"]

[cube]
path = "cube.nc"

[basins]
path = "{s}/basins/basins.geojson"

[discharge]
path = "{s}/discharge/discharge.csv"

[train]
model_dir = "model"
"""


def tiny_config(months: int, train: str) -> str:
    """The project file of the sample's months 1..``months`` of 2015, with ``train`` (the [train]
    keys after model_dir) appended."""
    return _HEAD.format(s=SAMPLE, m=months) + train.lstrip("\n")
