"""The project file ``hydrocast.toml`` as one validated object.

Validation is strict: an unknown key, a missing required key or a wrong type is a
:class:`~hydrocast.errors.ConfigError` naming the file, the section and the key. The ``[grid]`` is
checked here too (finite bounds, west < east, south < north, a whole number of cells, a positive
resolution, a CRS pyproj knows, an existing template raster), so every command refuses an invalid
grid at load time. Relative paths are relative to the folder holding the config file.

Every key is documented in README.md ("Configuration reference") and in :data:`KEY_DOCS` /
:data:`SOURCE_OPTION_DOCS`, from which :func:`starter_toml` writes the commented file of
``hydrocast init``; :data:`SOURCE_KEYS` lists the keys each source kind accepts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, HydrocastError, MissingInputError

#: Keys a ``[[sources]]`` table may have, per ``kind`` (on top of name, kind, paths).
SOURCE_KEYS: dict[str, dict[str, type | tuple]] = {
    "imerg": {"variable": str, "min_valid_fraction": float, "resampling": str},
    "esacci_sm": {"variable": str, "flag_mask": int, "porosity": float, "resampling": str},
    "dem": {"resampling": str},
    "netcdf": {"variable": str, "crs": str, "units": str, "quantity": str, "resampling": str,
               "min_valid_fraction": float, "step": str, "time_label": str},
    "geotiff": {"crs": str, "units": str, "quantity": str, "date_format": str, "band": int,
                "resampling": str, "min_valid_fraction": float, "step": str, "time_label": str,
                "nodata": float},
    "nwp_grib": {"resampling": str, "max_lead_days": int, "members": str},
    "nwp_netcdf": {"variable": str, "units": str, "resampling": str, "max_lead_days": int, "members": str},
}
#: What the forecast store keeps of an ensemble run (``members`` of an nwp source).
MEMBER_MODES = ("keep", "mean")
#: ``[cube] format`` (see :mod:`hydrocast.cube`): "auto" = Zarr for a path ending in .zarr, else NetCDF
STAND_IN_ERRORS = ("archive", "noise")
CUBE_FORMATS = ("auto", "netcdf", "zarr")
#: Source kinds that are weather forecasts: stored in the forecast store beside the cube
#: (:mod:`hydrocast.forecasts`), never in the daily cube.
FORECAST_KINDS = ("nwp_grib", "nwp_netcdf")
#: GDAL resampling methods a source may ask for (rasterio.enums.Resampling names).
RESAMPLING = ("average", "bilinear", "nearest", "cubic", "max", "min", "med", "sum", "mode")
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@dataclass
class GridConfig:
    crs: str = "EPSG:4326"
    bounds: list[float] | None = None
    resolution: float | None = None
    template: Path | None = None


@dataclass
class SourceConfig:
    name: str
    kind: str
    paths: list[str]
    options: dict[str, Any] = field(default_factory=dict)

    def as_options(self) -> dict[str, Any]:
        """The plain dict readers receive (see hydrocast.sources)."""
        return {"name": self.name, "kind": self.kind, "paths": list(self.paths), **self.options}


@dataclass
class CubeConfig:
    path: Path = Path("work/cube.nc")
    chunk_days: int = 31
    margin_cells: float = 2.0
    forecast_path: Path | None = None
    format: str = "auto"
    chunks: list[int] = field(default_factory=lambda: [32, 256, 256])
    tile_cells: int | None = None  # ingest on a cluster: tile edge (default: the chunks' y and x)


@dataclass
class BasinsConfig:
    path: Path | None = None
    min_area_km2: float = 10.0


@dataclass
class DischargeConfig:
    path: Path | None = None
    format: str = "auto"


@dataclass
class TrainConfig:
    model_dir: Path = Path("work/model")
    train_period: list[dt.date] | None = None
    validation_period: list[dt.date] | None = None
    test_period: list[dt.date] | None = None
    lead_days: int = 3
    inputs: list[str] | None = None
    warmup_days: int = 30
    window_days: int = 45
    memory_days: int = 365
    observed_discharge: bool = True
    observed_days: int = 2
    update_forecasts: bool = True
    persistence_blend: bool = True
    forecast_source: str = "auto"
    ensemble_source: str = "auto"
    forecast_stand_in: bool = True
    forecast_stand_in_errors: str = "noise"
    ungauged_observation_leads: int = 1
    probabilistic: bool = True
    hidden: int = 16
    depth: int = 1
    kernel: int = 3
    epochs: int = 30
    batch_size: int = 2
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 8
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    max_minutes: float = 0.0
    tile_cells: int = 0
    tile_halo_cells: int = 16
    loader_workers: int = 0
    inference_chunk_days: int = 90


@dataclass
class ThresholdsConfig:
    path: Path | None = None
    return_periods: list[float] = field(default_factory=lambda: [2.0, 5.0, 20.0])
    min_years: int = 5
    year_start_month: int = 1


@dataclass
class Config:
    path: Path | None
    root: Path
    grid: GridConfig
    sources: list[SourceConfig]
    cube: CubeConfig
    basins: BasinsConfig
    discharge: DischargeConfig
    train: TrainConfig
    thresholds: ThresholdsConfig = field(default_factory=ThresholdsConfig)

    def resolve(self, p: str | Path) -> Path:
        """A path from the config, made absolute relative to the config file's folder."""
        return _resolve(self.root, p)

    def grid_spec(self):
        """The :class:`~hydrocast.grid.GridSpec` the config describes."""
        from .grid import GridSpec

        g = self.grid
        if g.template is not None:
            return GridSpec.from_template(self.resolve(g.template))
        if g.bounds is None or g.resolution is None:
            raise ConfigError(f"{self.where('grid')}: give either `template` or both `bounds` and `resolution`")
        try:
            return GridSpec.from_bounds(g.crs, tuple(g.bounds), g.resolution)
        except ConfigError as exc:
            raise ConfigError(f"{self.path or 'config'}: {exc}") from None

    def where(self, section: str, key: str | None = None) -> str:
        name = str(self.path) if self.path else "config"
        return f"{name}: [{section}]" + (f" {key}" if key else "")


#: The config's sections (``[[sources]]`` aside) and the dataclass each one fills.
SECTIONS: dict[str, type] = {"grid": GridConfig, "cube": CubeConfig, "basins": BasinsConfig,
                             "discharge": DischargeConfig, "train": TrainConfig, "thresholds": ThresholdsConfig}


def _resolve(root: Path, p: str | Path) -> Path:
    p = Path(p).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else (root / p)))


# -- loading and validation --------------------------------------------------------------------

def _type_name(t) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            Path: "a path (string)", dt.date: "a date (YYYY-MM-DD)"}.get(t, getattr(t, "__name__", str(t)))


def _coerce(value: Any, t, where: str) -> Any:
    """Check ``value`` against type ``t`` (a class or ``list[X]``) and convert it."""
    origin = getattr(t, "__origin__", None)
    if origin is list:
        (inner,) = t.__args__
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list of {_type_name(inner)}s, got {value!r}")
        return [_coerce(v, inner, where) for v in value]
    if t is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if t is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if t is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where} must be a path (a non-empty string), got {value!r}")
        return Path(value)
    if t is dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        raise ConfigError(f"{where} must be a date YYYY-MM-DD, got {value!r}")
    if not isinstance(value, t) or (t is not bool and isinstance(value, bool)):
        raise ConfigError(f"{where} must be {_type_name(t)}, got {value!r}")
    return value


def _field_type(f: dataclasses.Field):
    t = f.type if not isinstance(f.type, str) else eval(f.type, globals())  # annotations are strings
    args = getattr(t, "__args__", None)
    if args and type(None) in args:  # X | None
        t = next(a for a in args if a is not type(None))
    return t


def _section(cls, table: Any, where: str, skip: tuple[str, ...] = ()):
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(fields))})")
    kwargs = {k: _coerce(v, _field_type(fields[k]), f"{where} {k}") for k, v in table.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required key is missing
        missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING and n not in kwargs]
        raise ConfigError(f"{where}: missing required key {missing[0]!r}" if missing else f"{where}: {exc}") from None


def _period(value: list[dt.date] | None, where: str) -> None:
    if value is None:
        return
    if len(value) != 2 or value[0] > value[1]:
        raise ConfigError(f"{where} must be [start, end] with start <= end, got {[str(v) for v in value]}")


def _sources(tables: Any, where: str) -> list[SourceConfig]:
    if not isinstance(tables, list):
        raise ConfigError(f"{where}: `sources` must be an array of tables ([[sources]])")
    out, names = [], set()
    for i, t in enumerate(tables):
        w = f"{where} [[sources]] #{i + 1}"
        if not isinstance(t, dict):
            raise ConfigError(f"{w} must be a table")
        for key in ("name", "kind", "paths"):
            if key not in t:
                raise ConfigError(f"{w}: missing required key {key!r}")
        name, kind, paths = t["name"], t["kind"], t["paths"]
        if not isinstance(name, str) or not name or not set(name) <= NAME_CHARS or name[0].isdigit():
            raise ConfigError(f"{w} name must be a variable name (letters, digits, _), got {name!r}")
        if name in names:
            raise ConfigError(f"{w} name {name!r} is used twice")
        names.add(name)
        if kind not in SOURCE_KEYS:
            raise ConfigError(f"{w} kind must be one of {', '.join(SOURCE_KEYS)}, got {kind!r}")
        if isinstance(paths, str):
            paths = [paths]
        paths = _coerce(paths, list[str], f"{w} paths")
        allowed = SOURCE_KEYS[kind]
        options = {}
        for k, v in t.items():
            if k in ("name", "kind", "paths"):
                continue
            if k not in allowed:
                raise ConfigError(f"{w} ({name}): unknown key {k!r} for kind {kind!r} "
                                  f"(known: {', '.join(sorted(allowed)) or 'none'})")
            options[k] = _coerce(v, allowed[k], f"{w} ({name}) {k}")
        if options.get("resampling", "average") not in RESAMPLING:
            raise ConfigError(f"{w} ({name}) resampling must be one of {', '.join(RESAMPLING)}")
        if not 0 < options.get("min_valid_fraction", 0.9) <= 1:
            raise ConfigError(f"{w} ({name}) min_valid_fraction must be in (0, 1]")
        if options.get("max_lead_days", 10) < 1:
            raise ConfigError(f"{w} ({name}) max_lead_days must be >= 1")
        if options.get("members", "keep") not in MEMBER_MODES:
            raise ConfigError(f"{w} ({name}) members must be one of {', '.join(MEMBER_MODES)}, "
                              f"got {options['members']!r}")
        out.append(SourceConfig(name, kind, paths, options))
    if sum(s.kind == "dem" for s in out) > 1:
        raise ConfigError(f"{where}: only one source of kind 'dem' is allowed")
    return out


def _check_grid(grid: GridConfig, name: str, root: Path) -> None:
    """Refuse a ``[grid]`` that cannot describe a grid (see the module docstring)."""
    w = f"{name}: [grid]"
    if grid.template is not None:
        if grid.bounds is not None or grid.resolution is not None:
            raise ConfigError(f"{w} template: give either `template` or `bounds` and `resolution`, not both")
        template = _resolve(root, grid.template)
        if not template.is_file():
            raise ConfigError(f"{w} template: {template}: no such raster file")
        from .grid import GridSpec

        try:  # a raster without a CRS, rotated or unreadable: BadInputError (65)
            GridSpec.from_template(template)
        except HydrocastError as exc:
            raise type(exc)(f"{w} template: {exc}") from None
        return
    if grid.bounds is None or grid.resolution is None:
        raise ConfigError(f"{w}: needs `bounds` and `resolution`, or `template`")
    if len(grid.bounds) != 4:
        raise ConfigError(f"{w} bounds must be [west, south, east, north], got {grid.bounds}")
    if not all(math.isfinite(v) for v in grid.bounds):
        raise ConfigError(f"{w} bounds must be finite numbers, got {grid.bounds}")
    if not math.isfinite(grid.resolution) or grid.resolution <= 0:
        raise ConfigError(f"{w} resolution must be a positive number, got {grid.resolution}")
    west, south, east, north = grid.bounds
    if west >= east:
        raise ConfigError(f"{w} bounds: west ({west:g}) must be less than east ({east:g})")
    if south >= north:
        raise ConfigError(f"{w} bounds: south ({south:g}) must be less than north ({north:g})")
    from pyproj import CRS

    try:
        crs = CRS.from_user_input(grid.crs)
    except Exception:  # noqa: BLE001 - pyproj raises CRSError (or TypeError for odd input)
        raise ConfigError(f"{w} crs: {grid.crs!r} is not a CRS pyproj understands "
                          "(an EPSG code such as \"EPSG:4326\", WKT or a PROJ string)") from None
    if crs.is_geographic and (south < -90 or north > 90 or east - west > 360):
        raise ConfigError(f"{w} bounds {grid.bounds} are not on the globe "
                          "(latitudes -90..90, at most 360 degrees of longitude)")
    from .grid import GridSpec

    try:  # the one rule for "a whole number of cells" is GridSpec's
        GridSpec.from_bounds(crs, tuple(grid.bounds), grid.resolution)
    except ConfigError as exc:
        msg = " ".join(str(exc).split())
        raise ConfigError(f"{name}: " + ("[grid] " + msg[5:] if msg.startswith("grid.") else msg)) from None


def parse(data: dict, path: Path | None = None, root: Path | None = None) -> Config:
    """Validate a config already read from TOML. ``path`` names it in errors; ``root`` (default: the
    folder of ``path``, else the current folder) anchors relative paths, e.g. the grid template."""
    name = str(path) if path else "config"
    known = {"sources", *SECTIONS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{name}: unknown section {unknown[0]!r} (known: {', '.join(sorted(known))})")
    root = root if root is not None else (path.parent if path else Path.cwd())
    grid = _section(GridConfig, data.get("grid", {}), f"{name}: [grid]")
    _check_grid(grid, name, root)
    cfg = Config(
        path=path,
        root=root,
        grid=grid,
        sources=_sources(data.get("sources", []), name),
        cube=_section(CubeConfig, data.get("cube", {}), f"{name}: [cube]"),
        basins=_section(BasinsConfig, data.get("basins", {}), f"{name}: [basins]"),
        discharge=_section(DischargeConfig, data.get("discharge", {}), f"{name}: [discharge]"),
        train=_section(TrainConfig, data.get("train", {}), f"{name}: [train]"),
        thresholds=_section(ThresholdsConfig, data.get("thresholds", {}), f"{name}: [thresholds]"),
    )
    th = cfg.thresholds
    if not th.return_periods or any(not (t > 1) for t in th.return_periods):
        raise ConfigError(f"{name}: [thresholds] return_periods must be a non-empty list of years > 1, "
                          f"got {th.return_periods}")
    if th.min_years < 3:
        raise ConfigError(f"{name}: [thresholds] min_years must be >= 3 (a fit needs 3 annual maxima), "
                          f"got {th.min_years}")
    if not 1 <= th.year_start_month <= 12:
        raise ConfigError(f"{name}: [thresholds] year_start_month must be 1..12, got {th.year_start_month}")
    tr = cfg.train
    for key in ("train_period", "validation_period", "test_period"):
        _period(getattr(tr, key), f"{name}: [train] {key}")
    for key in ("lead_days", "warmup_days", "window_days", "hidden", "depth", "kernel", "epochs", "batch_size",
                "observed_days"):
        if getattr(tr, key) < 1:
            raise ConfigError(f"{name}: [train] {key} must be >= 1, got {getattr(tr, key)}")
    if tr.kernel % 2 == 0:
        raise ConfigError(f"{name}: [train] kernel must be odd, got {tr.kernel}")
    if tr.forecast_stand_in_errors not in STAND_IN_ERRORS:
        raise ConfigError(f"{name}: [train] forecast_stand_in_errors must be one of {', '.join(STAND_IN_ERRORS)}, "
                          f"got {tr.forecast_stand_in_errors!r}")
    if tr.ungauged_observation_leads < 0:
        raise ConfigError(f"{name}: [train] ungauged_observation_leads must be >= 0, "
                          f"got {tr.ungauged_observation_leads}")
    if tr.memory_days < 0:
        raise ConfigError(f"{name}: [train] memory_days must be >= 0, got {tr.memory_days}")
    for key in ("tile_cells", "tile_halo_cells", "loader_workers", "inference_chunk_days"):
        if getattr(tr, key) < 0:
            raise ConfigError(f"{name}: [train] {key} must be >= 0, got {getattr(tr, key)}")
    if tr.window_days <= tr.warmup_days:
        raise ConfigError(f"{name}: [train] window_days ({tr.window_days}) must exceed warmup_days ({tr.warmup_days})")
    if cfg.cube.chunk_days < 1:
        raise ConfigError(f"{name}: [cube] chunk_days must be >= 1")
    if cfg.cube.format not in CUBE_FORMATS:
        raise ConfigError(f"{name}: [cube] format must be one of {', '.join(CUBE_FORMATS)}, got {cfg.cube.format!r}")
    if len(cfg.cube.chunks) != 3 or min(cfg.cube.chunks) < 1:
        raise ConfigError(f"{name}: [cube] chunks must be three numbers >= 1 (days, y cells, x cells), "
                          f"got {cfg.cube.chunks}")
    if cfg.cube.tile_cells is not None and cfg.cube.tile_cells < 1:
        raise ConfigError(f"{name}: [cube] tile_cells must be >= 1, got {cfg.cube.tile_cells}")
    return cfg


def load(path: str | Path) -> Config:
    """Read and validate ``hydrocast.toml``."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise MissingInputError(f"{path}: config file does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    return parse(data, path)


# -- documentation of every key, and the starter file of `hydrocast init` ------------------------

@dataclass(frozen=True)
class KeyDoc:
    """What a key means, and the value the starter file shows for it.

    ``example`` is shown where the default is None (and for ``active`` keys); otherwise the
    default is shown. ``active`` keys are live settings in the starter file, the others are
    commented out (``#key = value``)."""

    meaning: str
    example: Any = None
    active: bool = False


#: One line about each section, for the starter file.
SECTION_DOCS: dict[str, str] = {
    "grid": "The common grid every source is regridded onto: crs + bounds + resolution, or a template raster.",
    "sources": "One [[sources]] table per input product (its `kind` decides which other keys it takes).",
    "cube": "The data cube: daily CF-1.8 maps, one NetCDF file or a Zarr store that ingest appends to (and the "
            "forecast store).",
    "basins": "The basins whose outlets are forecast.",
    "discharge": "Observed discharge of the gauged basins (training targets, evaluation).",
    "train": "Training periods, the forecast horizon, the network's size and the optimiser.",
    "thresholds": "Flood thresholds: return-period flows fitted at training time, or your own warning levels.",
}

#: Meaning (and starter value) of every key of the dataclass sections (tests check both ways).
KEY_DOCS: dict[str, dict[str, KeyDoc]] = {
    "grid": {
        "crs": KeyDoc("CRS of the common grid: any CRS pyproj understands (EPSG code, WKT, PROJ string).",
                      active=True),
        "bounds": KeyDoc("west, south, east, north, in the grid CRS; a whole number of cells wide and high.",
                         [24.0, 60.0, 25.6, 61.6], active=True),
        "resolution": KeyDoc("Cell size in grid CRS units (here 0.05 degree: 32 x 32 cells).", 0.05, active=True),
        "template": KeyDoc("Instead of bounds and resolution: a raster whose CRS, bounds and cells are used.",
                           "raw/dem/dem.tif"),
    },
    "cube": {
        "path": KeyDoc("The data cube file.", active=True),
        "chunk_days": KeyDoc("Days read and regridded at a time (memory stays flat)."),
        "margin_cells": KeyDoc("Margin (in grid cells) kept around the region when clipping raw files."),
        "forecast_path": KeyDoc("The forecast store of the nwp_* sources (default: beside the cube, "
                                "<cube stem>.forecasts.nc).", "work/cube.forecasts.nc"),
        "format": KeyDoc("\"netcdf\" (one file, rewritten whole at each ingest: small regions), \"zarr\" (a Zarr v3 "
                         "store that appends: large domains, long records) or \"auto\" (zarr for a path ending "
                         "in .zarr).", "auto"),
        "chunks": KeyDoc("Chunk shape (days, y cells, x cells) of the cube's dynamic variables, for the window "
                         "reads of training.", [32, 256, 256]),
        "tile_cells": KeyDoc("ingest --workers/--scheduler: edge (cells) of the spatial tiles read and regridded by "
                             "one task (default: the y and x of `chunks`, so that tasks write disjoint chunks).", 256),
    },
    "basins": {
        "path": KeyDoc("GeoJSON polygons with an \"id\" property, or a CSV id,lon,lat of outlets.",
                       "basins/basins.geojson", active=True),
        "min_area_km2": KeyDoc("Outlets are snapped to the nearest cell draining at least this area (km2)."),
    },
    "discharge": {
        "path": KeyDoc("Discharge observations: CSV basin_id,date,discharge (m3/s); GRDC and CAMELS files too.",
                       "discharge/discharge.csv", active=True),
        "format": KeyDoc("csv, grdc, camels or auto (guessed from the file)."),
    },
    "train": {
        "model_dir": KeyDoc("The model artefact (a folder: model.json + model.safetensors).", active=True),
        "train_period": KeyDoc("[start, end]: normalisation statistics and gradients come from it only.",
                               ["2015-01-01", "2018-12-31"], active=True),
        "validation_period": KeyDoc("[start, end]: early stopping and the learning-rate schedule.",
                                    ["2019-01-01", "2019-12-31"], active=True),
        "test_period": KeyDoc("[start, end]: the default `evaluate --period` (touched only by evaluate).",
                              ["2020-01-01", "2020-12-31"], active=True),
        "lead_days": KeyDoc("Forecast lead days 1..H.", active=True),
        "inputs": KeyDoc("Dynamic cube variables fed to the network (default: all of them).",
                         ["precipitation", "soil_moisture"]),
        "warmup_days": KeyDoc(
            "Days not scored after a zero recurrent state (burn-in); the spin-up if memory_days = 0."),
        "window_days": KeyDoc("Days per training chunk: gradients are truncated there, the state is carried on."),
        "memory_days": KeyDoc("Spin-up before any forecast (>= 365 for snow, lakes, groundwater); 0 = no memory: "
                              "random windows from a zero state, warmup_days spin-up."),
        "observed_discharge": KeyDoc("Observed discharge up to the issue date enters the model (maps + mask; "
                                     "trained with random hold-out)."),
        "observed_days": KeyDoc("Days of its own observed discharge up to the issue day each gauged basin's head "
                                "reads (1: the issue day; 2: also the day before, the recession or rise)."),
        "update_forecasts": KeyDoc("With observed discharge: move each gauged basin's forecast by a share (per "
                                   "lead, fitted on the validation period) of the error the model's lead-1 "
                                   "forecast of the day before made on the issue day (output updating)."),
        "persistence_blend": KeyDoc("With observed discharge: blend each gauged basin's forecast with its "
                                    "observation of the issue day (persistence), one weight per gauge and lead "
                                    "fitted on the validation period (0: the model alone; 1: persistence)."),
        "forecast_source": KeyDoc("The weather-forecast source the lead days roll over: auto (the config's "
                                  "nwp source, if any), a source name, or none."),
        "ensemble_source": KeyDoc("The forecast source whose ensemble members predict and evaluate roll the "
                                  "model over, one run per member (a realization dimension): auto (the "
                                  "forecast_source if its store keeps members, else the first nwp source that "
                                  "does), a source name, or none."),
        "forecast_stand_in": KeyDoc("Train on the observed rain, degraded, where the forecast archive has no run."),
        "forecast_stand_in_errors": KeyDoc("How the stand-in is degraded: \"noise\" (lognormal noise) or "
                                           "\"archive\" (smoothing, displacement and intensity errors measured per "
                                           "lead on the training period's archived runs).", "noise"),
        "ungauged_observation_leads": KeyDoc("A basin without a gauge of its own reads the gauges' observation maps "
                                             "for this many lead days; later leads come from the same model run "
                                             "as if every gauge were silent (chosen by k-fold validation: the "
                                             "neighbours' observations mislead unseen basins at longer leads). "
                                             "0: never; lead_days or more: at every lead.", 1),
        "probabilistic": KeyDoc("Also forecast the distribution (19 quantiles, pinball loss, spread calibrated on "
                                "the validation period): intervals and exceedance probabilities."),
        "hidden": KeyDoc("ConvLSTM width (hidden channels); e.g. 64 for a real region on a GPU."),
        "depth": KeyDoc("Stacked ConvLSTM layers."),
        "kernel": KeyDoc("Convolution kernel size (odd)."),
        "epochs": KeyDoc("Maximum epochs (`train --epochs` overrides it)."),
        "batch_size": KeyDoc("Sequences per optimiser step."),
        "learning_rate": KeyDoc("AdamW learning rate (halved after 2 epochs without progress)."),
        "weight_decay": KeyDoc("AdamW weight decay."),
        "patience": KeyDoc("Early stop after this many epochs without a better validation NSE (mean over the leads)."),
        "grad_clip": KeyDoc("Gradient norm clipping."),
        "seed": KeyDoc("Random seed (`train --seed` overrides it)."),
        "device": KeyDoc("auto (a GPU when there is one), cpu, cuda or cuda:N (`train --device` overrides it)."),
        "max_minutes": KeyDoc("Stop training after this many minutes (0: no limit)."),
        "tile_cells": KeyDoc("Train and validate on square windows of this many cells (each holding whole basins "
                             "with their halo), read window by window from the cube: the domain need not fit in "
                             "memory. 0: the whole domain at once (small regions)."),
        "tile_halo_cells": KeyDoc("With tile_cells: cells of the window kept around the bounding box of every "
                                  "basin it holds (what the ConvLSTM sees beyond the basin)."),
        "loader_workers": KeyDoc("With tile_cells: processes that read the training windows ahead (a torch "
                                 "DataLoader; each opens the cube itself). 0: read in the training process."),
        "inference_chunk_days": KeyDoc("predict, evaluate and validation run the model over at most this many days "
                                       "at a time, carrying its state: memory bounded in time (0: a whole period at "
                                       "once). With tile_cells they also run window by window."),
    },
    "thresholds": {
        "path": KeyDoc("Your own thresholds CSV (basin,name,discharge_m3s[,return_period_years,...]; e.g. official "
                       "warning levels): used instead of the model's for the basins it lists.",
                       "thresholds/official.csv"),
        "return_periods": KeyDoc("Return periods (years) of the flows fitted at training time (GEV/Gumbel by "
                                 "L-moments on annual maxima)."),
        "min_years": KeyDoc("Observed annual maxima a basin needs for an observed fit; below, the model's own "
                            "hindcast is used (as GloFAS does)."),
        "year_start_month": KeyDoc("First month of the year whose maxima are taken (1: calendar year, 10: "
                                   "October water year)."),
    },
}

#: Keys every ``[[sources]]`` table has.
SOURCE_DOCS: dict[str, KeyDoc] = {
    "name": KeyDoc("The variable's name in the cube (letters, digits, _)."),
    "kind": KeyDoc("imerg | esacci_sm | dem | netcdf | geotiff | nwp_grib | nwp_netcdf (forecasts)."),
    "paths": KeyDoc("Globs of the input files (** allowed), relative to this file's folder."),
}

_RESAMPLING_DOC = KeyDoc("GDAL resampling onto the grid: average (area-weighted, conserves totals), "
                         "bilinear, nearest, cubic, max, min, med, sum or mode.", "average")
_FRACTION_DOC = KeyDoc("Sub-daily data: a day (or a cell) with fewer valid steps than this fraction is left "
                       "missing, not under-counted.", 0.9)
_STEP_DOC = KeyDoc("The interval of one value, e.g. \"1h\" (default: from the time bounds or the spacing "
                   "of the time coordinate).", "1h")
_LABEL_DOC = KeyDoc("What a time stamp without bounds marks: \"start\" or \"end\" (ERA5 accumulations: end).",
                    "start")
_CRS_DOC = KeyDoc("CRS when the file has none (a file whose CRS differs is rejected).", "EPSG:4326")
_LEADS_DOC = KeyDoc("Forecasts: lead days kept per run (1..N; a run's later days are dropped).", 10)
_MEMBERS_DOC = KeyDoc("Ensemble runs (ECMWF ENS cf/pf): keep = store every member beside their mean, so predict "
                      "and evaluate run the model once per member (a realization dimension); mean = the mean only.",
                      "keep")
_QUANTITY_DOC = KeyDoc("\"precipitation\" (converted to mm/day) or \"soil_moisture\" (any other value: "
                       "no conversion).", "precipitation")

#: Meaning (and starter value) of every per-kind key of :data:`SOURCE_KEYS` (tests check both ways).
SOURCE_OPTION_DOCS: dict[str, dict[str, KeyDoc]] = {
    "imerg": {
        "variable": KeyDoc("Override the variable (default: precipitationCal in V06, precipitation in V07; "
                           "probabilityLiquidPrecipitation for the phase).", "precipitation"),
        "min_valid_fraction": _FRACTION_DOC,
        "resampling": _RESAMPLING_DOC,
    },
    "esacci_sm": {
        "variable": KeyDoc("\"sm\" (soil moisture) or \"frozen\": the frozen/snow flag (bit 1) as 1, 0 where "
                           "observed without it, NaN without a retrieval; averaged: the fraction of the cell "
                           "flagged.", "sm"),
        "flag_mask": KeyDoc("sm is kept where flag & flag_mask == 0 (63 = bits 1-32; the barren-ground "
                            "advisory bit 64 is kept).", 63),
        "porosity": KeyDoc("Converts an ACTIVE product (percent of saturation) to m3 m-3; without it ACTIVE "
                           "files are rejected (no default).", 0.45),
        "resampling": _RESAMPLING_DOC,
    },
    "dem": {"resampling": _RESAMPLING_DOC},
    "netcdf": {
        "variable": KeyDoc("The variable to read (required).", "tp", active=True),
        "crs": _CRS_DOC,
        "units": KeyDoc("Overrides the file's units attribute (default: the file's units; precipitation is "
                        "converted to mm/day).", "m"),
        "quantity": _QUANTITY_DOC,
        "resampling": _RESAMPLING_DOC,
        "min_valid_fraction": _FRACTION_DOC,
        "step": _STEP_DOC,
        "time_label": KeyDoc(_LABEL_DOC.meaning, "end"),
    },
    "geotiff": {
        "crs": _CRS_DOC,
        "units": KeyDoc("Units of the values (default: none).", "mm"),
        "quantity": _QUANTITY_DOC,
        "date_format": KeyDoc("strptime pattern of the date in the file name (without it the raster is "
                              "static).", "%Y%m%d", active=True),
        "band": KeyDoc("Band to read (required for multi-band files).", 1),
        "resampling": _RESAMPLING_DOC,
        "min_valid_fraction": _FRACTION_DOC,
        "step": KeyDoc("The interval of one raster.", "1D"),
        "time_label": _LABEL_DOC,
        "nodata": KeyDoc("Overrides the file's nodata value.", -9999.0),
    },
    "nwp_grib": {
        "resampling": _RESAMPLING_DOC,
        "max_lead_days": _LEADS_DOC,
        "members": _MEMBERS_DOC,
    },
    "nwp_netcdf": {
        "variable": KeyDoc("The precipitation variable (default: tp).", "tp"),
        "units": KeyDoc("Units when the file has none (m, kg m-2 or mm; overrides the file's units).", "m"),
        "resampling": _RESAMPLING_DOC,
        "max_lead_days": _LEADS_DOC,
        "members": _MEMBERS_DOC,
    },
}

#: The ``[[sources]]`` tables of the starter file: (name, kind, paths, live or commented out).
STARTER_SOURCES: list[tuple[str, str, list[str], bool]] = [
    ("precipitation", "imerg", ["raw/imerg/*.HDF5", "raw/imerg/*.nc4"], True),
    ("soil_moisture", "esacci_sm", ["raw/esacci/*.nc"], True),
    ("dem", "dem", ["raw/dem/dem.tif"], True),
    ("era5_precipitation", "netcdf", ["raw/era5/*.nc"], False),
    ("evaporation", "geotiff", ["raw/evaporation/*.tif"], False),
    ("precipitation_forecast", "nwp_grib", ["raw/nwp/*.grib2"], False),
    ("precipitation_forecast_nc", "nwp_netcdf", ["raw/nwp/*.nc"], False),
]


def _toml_value(v: Any) -> str:
    """``v`` (str, Path, bool, number, date or a list of them) as a TOML value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (str, Path, dt.date)):
        return json.dumps(v.isoformat() if isinstance(v, dt.date) else str(v))  # JSON escapes are TOML's
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, width=96, initial_indent="# ", subsequent_indent="# ")


def _setting(key: str, value: Any, doc: KeyDoc, live: bool, seen: set) -> list[str]:
    """The lines of one key: its meaning (the first time it is met), then ``key = value``."""
    lines = [] if (key, doc.meaning) in seen else _comment(doc.meaning)
    seen.add((key, doc.meaning))
    return [*lines, f"{'' if live else '#'}{key} = {_toml_value(value)}"]


def starter_toml() -> str:
    """The commented ``hydrocast.toml`` that ``hydrocast init`` writes: every section and key,
    with its meaning; live settings form a valid example (it loads as is), the optional keys are
    commented out (``#key = value``) at their default (or an example where there is none)."""
    from . import __version__

    out = [f"# hydrocast project file, written by `hydrocast init` (hydrocast {__version__}).",
           "# Live lines are a working example to edit; lines such as `#chunk_days = 31` show an optional key",
           "# at its default (or an example value): remove the `#` to set it. Relative paths are relative to",
           "# this file's folder. Every key is explained in README.md, \"Configuration reference\".", ""]
    seen: set = set()
    for section in ("grid", "sources", "cube", "basins", "discharge", "train", "thresholds"):
        if section == "sources":
            out += _comment(f"---- [[sources]]: {SECTION_DOCS['sources']}") + [""]
            for i, (name, kind, paths, live) in enumerate(STARTER_SOURCES):
                if not live and STARTER_SOURCES[i - 1][3]:
                    out += _comment("Other kinds: remove the `#` of every line of a table to use it.") + [""]
                out.append(f"{'' if live else '#'}[[sources]]")
                for key, value in (("name", name), ("kind", kind), ("paths", paths)):
                    out += _setting(key, value, SOURCE_DOCS[key], live, seen)
                for key, doc in SOURCE_OPTION_DOCS[kind].items():
                    out += _setting(key, doc.example, doc, live and doc.active, seen)
                out.append("")
            continue
        out += _comment(f"---- [{section}]: {SECTION_DOCS[section]}") + [f"[{section}]"]
        for f in dataclasses.fields(SECTIONS[section]):
            doc = KEY_DOCS[section][f.name]
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            value = doc.example if (doc.active and doc.example is not None) or default is None else default
            out += _setting(f.name, value, doc, doc.active, seen)
        out.append("")
    return "\n".join(out)
