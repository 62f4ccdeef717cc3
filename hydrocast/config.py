"""The project file ``hydrocast.toml`` as one validated object.

Validation is strict: an unknown key, a missing required key or a wrong type is a
:class:`~hydrocast.errors.ConfigError` naming the file, the section and the key. Relative paths are
relative to the folder holding the config file. Every key is documented in README.md
("Configuration reference"); :data:`SOURCE_KEYS` lists the keys each source kind accepts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, MissingInputError

#: Keys a ``[[sources]]`` table may have, per ``kind`` (on top of name, kind, paths).
SOURCE_KEYS: dict[str, dict[str, type | tuple]] = {
    "imerg": {"variable": str, "min_valid_fraction": float, "resampling": str},
    "esacci_sm": {"flag_mask": int, "porosity": float, "resampling": str},
    "dem": {"resampling": str},
    "netcdf": {"variable": str, "crs": str, "units": str, "quantity": str, "resampling": str,
               "min_valid_fraction": float, "step": str, "time_label": str},
    "geotiff": {"crs": str, "units": str, "quantity": str, "date_format": str, "band": int,
                "resampling": str, "min_valid_fraction": float, "step": str, "time_label": str,
                "nodata": float},
}
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
    window_days: int = 90
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

    def resolve(self, p: str | Path) -> Path:
        """A path from the config, made absolute relative to the config file's folder."""
        p = Path(p).expanduser()
        return Path(os.path.normpath(p if p.is_absolute() else (self.root / p)))

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
        out.append(SourceConfig(name, kind, paths, options))
    if sum(s.kind == "dem" for s in out) > 1:
        raise ConfigError(f"{where}: only one source of kind 'dem' is allowed")
    return out


def parse(data: dict, path: Path | None = None, root: Path | None = None) -> Config:
    """Validate a config already read from TOML (``path`` only names it in errors)."""
    name = str(path) if path else "config"
    known = {"grid", "sources", "cube", "basins", "discharge", "train"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{name}: unknown section {unknown[0]!r} (known: {', '.join(sorted(known))})")
    grid = _section(GridConfig, data.get("grid", {}), f"{name}: [grid]")
    if grid.bounds is not None and len(grid.bounds) != 4:
        raise ConfigError(f"{name}: [grid] bounds must be [west, south, east, north]")
    if grid.template is None and (grid.bounds is None or grid.resolution is None):
        raise ConfigError(f"{name}: [grid] needs `bounds` and `resolution`, or `template`")
    cfg = Config(
        path=path,
        root=root if root is not None else (path.parent if path else Path.cwd()),
        grid=grid,
        sources=_sources(data.get("sources", []), name),
        cube=_section(CubeConfig, data.get("cube", {}), f"{name}: [cube]"),
        basins=_section(BasinsConfig, data.get("basins", {}), f"{name}: [basins]"),
        discharge=_section(DischargeConfig, data.get("discharge", {}), f"{name}: [discharge]"),
        train=_section(TrainConfig, data.get("train", {}), f"{name}: [train]"),
    )
    tr = cfg.train
    for key in ("train_period", "validation_period", "test_period"):
        _period(getattr(tr, key), f"{name}: [train] {key}")
    for key in ("lead_days", "warmup_days", "window_days", "hidden", "depth", "kernel", "epochs", "batch_size"):
        if getattr(tr, key) < 1:
            raise ConfigError(f"{name}: [train] {key} must be >= 1, got {getattr(tr, key)}")
    if tr.kernel % 2 == 0:
        raise ConfigError(f"{name}: [train] kernel must be odd, got {tr.kernel}")
    if tr.window_days <= tr.warmup_days:
        raise ConfigError(f"{name}: [train] window_days ({tr.window_days}) must exceed warmup_days ({tr.warmup_days})")
    if cfg.cube.chunk_days < 1:
        raise ConfigError(f"{name}: [cube] chunk_days must be >= 1")
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
