"""hydrocast.toml: the issue's example works as shown; bad keys and types are named."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hydrocast import config
from hydrocast.errors import ConfigError, MissingInputError

EXAMPLE = """
[grid]
crs = "EPSG:4326"
bounds = [24.0, 60.0, 25.6, 61.6]      # west, south, east, north, in the grid CRS
resolution = 0.05                      # or: template = "raw/dem/dem.tif"

[[sources]]
name = "precipitation"                 # the variable's name in the cube
kind = "imerg"                         # imerg | esacci_sm | dem | netcdf | geotiff
paths = ["raw/imerg/*.HDF5", "raw/imerg/*.nc4"]

[[sources]]
name = "soil_moisture"
kind = "esacci_sm"
paths = ["raw/esacci/*.nc"]

[[sources]]
name = "dem"                           # gives the static layers elevation, slope, upstream_area
kind = "dem"
paths = ["raw/dem/dem.tif"]

[cube]
path = "work/cube.nc"

[basins]
path = "basins/basins.geojson"         # polygons with an "id" property, or a CSV id,lon,lat of outlets

[discharge]
path = "discharge/discharge.csv"       # basin_id,date,discharge (m3/s)

[train]
model_dir = "work/model"
train_period = ["2015-01-01", "2018-12-31"]
validation_period = ["2019-01-01", "2019-12-31"]
lead_days = 3
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "proj" / "hydrocast.toml"
    p.parent.mkdir(exist_ok=True)
    p.write_text(text)
    return p


def test_issue_example_loads_and_paths_are_relative_to_the_file(tmp_path):
    cfg = config.load(write(tmp_path, EXAMPLE))
    assert [s.name for s in cfg.sources] == ["precipitation", "soil_moisture", "dem"]
    assert cfg.sources[0].paths == ["raw/imerg/*.HDF5", "raw/imerg/*.nc4"]
    assert cfg.resolve(cfg.cube.path) == tmp_path / "proj" / "work" / "cube.nc"
    assert cfg.resolve(cfg.train.model_dir) == tmp_path / "proj" / "work" / "model"
    assert cfg.train.train_period == [dt.date(2015, 1, 1), dt.date(2018, 12, 31)]
    assert cfg.train.lead_days == 3
    grid = cfg.grid_spec()
    assert grid.shape == (32, 32)
    assert grid.bounds == pytest.approx((24.0, 60.0, 25.6, 61.6))


def test_template_grid(tmp_path, shared_data):
    text = EXAMPLE.replace('bounds = [24.0, 60.0, 25.6, 61.6]', "").replace(
        "resolution = 0.05", f'template = "{shared_data / "dem-pysheds" / "dem.tif"}"')
    grid = config.load(write(tmp_path, text)).grid_spec()
    assert grid.shape == (359, 367)


@pytest.mark.parametrize("old,new,needle", [
    ("lead_days = 3", "lead_day = 3", "lead_day"),
    ("lead_days = 3", 'lead_days = "three"', "lead_days"),
    ("resolution = 0.05", 'resolution = "fine"', "resolution"),
    ('[cube]\npath = "work/cube.nc"', '[cube]\npath = "work/cube.nc"\ncompression = 9', "compression"),
    ('kind = "esacci_sm"', 'kind = "esacci_sm"\nflag_mask = "all"', "flag_mask"),
    ('kind = "esacci_sm"', 'kind = "esacci_sm"\nvariable = "sm"', "variable"),
    ('kind = "imerg"', 'kind = "gpm"', "kind"),
    ('train_period = ["2015-01-01", "2018-12-31"]', 'train_period = ["2018-01-01", "2015-12-31"]', "train_period"),
    ('train_period = ["2015-01-01", "2018-12-31"]', 'train_period = ["2015-13-01", "2018-12-31"]', "train_period"),
    ("[basins]", "[basin]", "basin"),
    ('name = "soil_moisture"', 'name = "precipitation"', "precipitation"),
    ("bounds = [24.0, 60.0, 25.6, 61.6]", "bounds = [24.0, 60.0, 25.63, 61.6]", "whole number"),
])
def test_bad_keys_and_types_name_the_key(tmp_path, old, new, needle):
    assert old in EXAMPLE
    path = write(tmp_path, EXAMPLE.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        config.load(path).grid_spec()
    msg = str(err.value)
    assert needle in msg and str(path) in msg
    assert "\n" not in msg


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(MissingInputError):
        config.load(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "[grid\ncrs = 1"))
