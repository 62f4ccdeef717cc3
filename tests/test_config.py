"""hydrocast.toml: the issue's example works as shown; bad keys and types are named."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from pathlib import Path

import pytest

from hydrocast import config
from hydrocast.errors import BadInputError, ConfigError, MissingInputError

REPO = Path(__file__).resolve().parents[1]

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
    ('kind = "esacci_sm"', 'kind = "esacci_sm"\nvariable = 3', "variable"),
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


# -- [grid] is validated at load time (so every command refuses an invalid grid) ----------------

@pytest.mark.parametrize("old,new,needle", [
    ("bounds = [24.0, 60.0, 25.6, 61.6]", "bounds = [24.0, 60.0, 25.63, 61.6]", "whole number"),
    ("resolution = 0.05", "resolution = 0.07", "whole number"),
    ("bounds = [24.0, 60.0, 25.6, 61.6]", "bounds = [25.6, 60.0, 24.0, 61.6]", "west (25.6) must be less than east"),
    ("bounds = [24.0, 60.0, 25.6, 61.6]", "bounds = [24.0, 60.0, 24.0, 61.6]", "west (24) must be less than east"),
    ("bounds = [24.0, 60.0, 25.6, 61.6]", "bounds = [24.0, 61.6, 25.6, 60.0]", "south (61.6) must be less than north"),
    ("bounds = [24.0, 60.0, 25.6, 61.6]", "bounds = [24.0, 60.0, 25.6, 60.0]", "south (60) must be less than north"),
    ("bounds = [24.0, 60.0, 25.6, 61.6]", "bounds = [24.0, nan, 25.6, 61.6]", "finite"),
    ("bounds = [24.0, 60.0, 25.6, 61.6]", "bounds = [-inf, 60.0, 25.6, 61.6]", "finite"),
    ("bounds = [24.0, 60.0, 25.6, 61.6]", "bounds = [24.0, 60.0, 25.6]", "[west, south, east, north]"),
    ("bounds = [24.0, 60.0, 25.6, 61.6]", "bounds = [24.0, 88.4, 25.6, 90.05]", "not on the globe"),
    ("resolution = 0.05", "resolution = 0", "resolution must be a positive number"),
    ("resolution = 0.05", "resolution = -0.05", "resolution must be a positive number"),
    ("resolution = 0.05", "resolution = nan", "resolution must be a positive number"),
    ("resolution = 0.05", "resolution = inf", "resolution must be a positive number"),
    ('crs = "EPSG:4326"', 'crs = "EPSG:999999"', "crs: 'EPSG:999999' is not a CRS"),
    ('crs = "EPSG:4326"', 'crs = "not a crs"', "crs: 'not a crs' is not a CRS"),
    ("resolution = 0.05", 'resolution = 0.05\ntemplate = "raw/dem/dem.tif"', "not both"),
    ("bounds = [24.0, 60.0, 25.6, 61.6]", "", "needs `bounds` and `resolution`"),
])
def test_invalid_grid_is_refused_at_load(tmp_path, old, new, needle):
    assert old in EXAMPLE
    path = write(tmp_path, EXAMPLE.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        config.load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: [grid]") and needle in msg, msg
    assert "\n" not in msg


def test_missing_template_is_a_config_error_naming_the_resolved_file(tmp_path):
    text = EXAMPLE.replace("bounds = [24.0, 60.0, 25.6, 61.6]", "").replace(
        "resolution = 0.05", 'template = "raw/dem/missing.tif"')
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert str(err.value) == f"{path}: [grid] template: {path.parent / 'raw/dem/missing.tif'}: no such raster file"


def write_geotiff(path: Path, crs: str | None, shape=(5, 7), origin=(10.0, 50.0), res=0.25) -> None:
    import numpy as np
    import rasterio
    from affine import Affine

    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=shape[1], height=shape[0], count=1, dtype="float32",
                       crs=crs, transform=Affine(res, 0, origin[0], 0, -res, origin[1])) as dst:
        dst.write(np.zeros(shape, "float32"), 1)


def test_template_relative_to_the_config_and_one_without_crs(tmp_path):
    text = EXAMPLE.replace("bounds = [24.0, 60.0, 25.6, 61.6]", "").replace(
        "resolution = 0.05", 'template = "raw/dem/grid.tif"')
    path = write(tmp_path, text)
    write_geotiff(path.parent / "raw/dem/grid.tif", "EPSG:4326")
    grid = config.load(path).grid_spec()
    assert grid.shape == (5, 7) and grid.bounds == pytest.approx((10.0, 48.75, 11.75, 50.0))
    write_geotiff(path.parent / "raw/dem/grid.tif", None)
    with pytest.raises(BadInputError, match=r"\[grid\] template: .*grid.tif: grid template has no CRS"):
        config.load(path)


def test_sample_config_loads():
    cfg = config.load(REPO / "sample_data" / "hydrocast.toml")
    assert cfg.grid_spec().shape == (32, 32)


# -- the starter file of `hydrocast init` --------------------------------------------------------

KEY_LINE = re.compile(r"^(#?)([A-Za-z_]\w*) = (.*)$")
HEADER = re.compile(r"^#?\[(\[?)(\w+)\]?\]$")


def starter_tables(text: str) -> list[tuple[str, bool, dict[str, tuple[bool, str]]]]:
    """(section, header commented out?, {key: (commented out?, value text)}) for each table of the file."""
    tables: list = []
    for line in text.splitlines():
        if m := HEADER.match(line):
            tables.append((m.group(2), line.startswith("#"), {}))
        elif m := KEY_LINE.match(line):
            assert tables, f"key before any table: {line}"
            key = m.group(2)
            assert key not in tables[-1][2], f"{key} twice in one table"
            tables[-1][2][key] = (m.group(1) == "#", m.group(3))
        else:
            assert line == "" or line.startswith("# "), f"neither prose, a key nor a table: {line!r}"
    return tables


def test_starter_mentions_every_real_key_and_nothing_else():
    tables = starter_tables(config.starter_toml())
    sections = [t[0] for t in tables if t[0] != "sources"]
    assert sections == ["grid", "cube", "basins", "discharge", "train", "thresholds"]
    for name, _, keys in tables:
        if name == "sources":
            kind = json.loads(keys["kind"][1])
            assert set(keys) - {"name", "kind", "paths"} == set(config.SOURCE_KEYS[kind]), kind
        else:
            cls = config.SECTIONS[name]
            assert list(keys) == [f.name for f in dataclasses.fields(cls)], name
    kinds = {json.loads(keys["kind"][1]) for name, _, keys in tables if name == "sources"}
    assert kinds == set(config.SOURCE_KEYS)  # an example table for every kind


def test_starter_docs_cover_exactly_the_real_keys():
    for name, cls in config.SECTIONS.items():
        assert set(config.KEY_DOCS[name]) == {f.name for f in dataclasses.fields(cls)}, name
    assert set(config.SOURCE_OPTION_DOCS) == set(config.SOURCE_KEYS)
    for kind, keys in config.SOURCE_KEYS.items():
        assert set(config.SOURCE_OPTION_DOCS[kind]) == set(keys), kind


def test_starter_loads_as_is(tmp_path):
    path = tmp_path / "hydrocast.toml"
    path.write_text(config.starter_toml())
    cfg = config.load(path)
    assert [s.name for s in cfg.sources] == ["precipitation", "soil_moisture", "dem"]
    assert cfg.grid_spec().shape == (32, 32)
    assert cfg.train.train_period == [dt.date(2015, 1, 1), dt.date(2018, 12, 31)]


def test_starter_fully_uncommented_loads_and_shows_the_real_defaults(tmp_path):
    """Remove every `#` of a setting or table (the template aside: it excludes bounds+resolution)."""
    lines = []
    for line in config.starter_toml().splitlines():
        if line.startswith("#template = "):
            continue
        if KEY_LINE.match(line) or HEADER.match(line):
            line = line.removeprefix("#")
        lines.append(line)
    path = tmp_path / "hydrocast.toml"
    path.write_text("\n".join(lines))
    cfg = config.load(path)
    assert [s.kind for s in cfg.sources] == ["imerg", "esacci_sm", "dem", "netcdf", "geotiff", "nwp_grib", "nwp_netcdf"]
    for s in cfg.sources:
        assert set(s.options) == set(config.SOURCE_KEYS[s.kind])
    commented = {name: {k for k, (c, _) in keys.items() if c}
                 for name, hidden, keys in starter_tables(config.starter_toml()) if name != "sources"}
    checked = 0
    for name, cls in config.SECTIONS.items():
        section = getattr(cfg, name)
        for f in dataclasses.fields(cls):
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            if f.name in commented[name] and default is not None:
                assert getattr(section, f.name) == default, (name, f.name)  # the value shown is the default
                checked += 1
    assert checked >= 15


def test_starter_with_the_template_instead_of_bounds(tmp_path):
    text = config.starter_toml()
    text = re.sub(r"(?m)^(bounds|resolution) = ", r"#\1 = ", text).replace("#template = ", "template = ")
    path = tmp_path / "hydrocast.toml"
    path.write_text(text)
    write_geotiff(tmp_path / "raw/dem/dem.tif", "EPSG:32629", shape=(4, 6), origin=(500000.0, 4600000.0), res=90.0)
    grid = config.load(path).grid_spec()
    assert grid.shape == (4, 6) and grid.crs.to_epsg() == 32629
