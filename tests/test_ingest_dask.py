"""`hydrocast ingest --workers N` / `--scheduler ADDRESS` (hydrocast.ingest_dask): the tiles read on a
dask cluster make the same cube as the in-process ingest, bad files inside a task are rejected as
without a cluster, and a tile's regridding equals the whole grid's on the tile's cells. Uses
test_ingest's tiny 8 x 8 project, cut into 3 x 3 tiles (9 tiles, 3 of them partial)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from hydrocast import config, ingest_dask
from hydrocast import ingest as ingest_mod
from hydrocast.config import SourceConfig
from hydrocast.cube import open_cube
from hydrocast.ingest_dask import TileReader
from tests.test_ingest import DAYS, IM_LAT, IM_LON, ingest, make_project, rain
from tools import sampledata as sd

TILE = 3  # 8 x 8 cells -> 3 x 3 tiles of 3, 3 and 2 cells


def project(root: Path, days=DAYS, run: str = "final", zarr: bool = False, halfhours: bool = False) -> Path:
    cfg = make_project(root, days=days, run=run)
    text = cfg.read_text() + f"tile_cells = {TILE}\n"
    if zarr:
        text = text.replace('path = "work/cube.nc"', 'path = "work/cube.zarr"\nchunks = [2, 256, 256]')
    cfg.write_text(text)
    if halfhours:  # a complete half-hourly day, and one with 40 of 48 half-hours (left missing)
        for day, n in (("2020-03-06", 48), ("2020-03-07", 40)):
            for k in range(n):
                sd.write_imerg_hhr(root / "raw/imerg" / sd.imerg_hhr_name(day, k), day, k, rain(10 + k) / 24.0,
                                   IM_LON, IM_LAT)
    return cfg


def cube_of(cfg: Path) -> Path:
    work = cfg.parent / "work"
    return work / "cube.zarr" if (work / "cube.zarr").exists() else work / "cube.nc"


def assert_same_cube(a: Path, b: Path) -> None:
    """Every variable equal (floats bit for bit, NaN where NaN), provenance equal up to the file-set
    signature (it covers the files' paths and times, which differ between two projects)."""
    with open_cube(a) as x, open_cube(b) as y:
        assert set(x.data_vars) == set(y.data_vars) and dict(x.sizes) == dict(y.sizes)
        for name in x.data_vars:
            if x[name].dtype.kind in "OUST":
                def text(v):
                    return [str(s).rsplit(" sig=", 1)[0] for s in v.values]
                assert text(x[name]) == text(y[name]), name
            elif name != "crs":
                np.testing.assert_array_equal(x[name].values, y[name].values, err_msg=name)


@pytest.fixture(scope="module")
def scheduler():
    """One local cluster (2 worker processes) for the module: its address, for --scheduler."""
    import logging

    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


def test_tile_regridding_equals_the_whole_grid(tmp_path):
    """Cut into tiles of 3 cells (and of 1 cell for the default resampling), each read clipped to
    its tile: the same values as the whole grid, for both sources and the area, nearest and kernel
    resamplings (bilinear to float32 rounding: GDAL computes the kernel weights relative to the
    window)."""
    cfg = config.load(make_project(tmp_path))
    grid = cfg.grid_spec()
    bbox = grid.lonlat_bounds(cfg.cube.margin_cells)
    for src in cfg.sources[:2]:
        for resampling in ("average", "nearest", "bilinear"):
            s = SourceConfig(src.name, src.kind, src.paths, {**src.options, "resampling": resampling})
            plans, _ = ingest_mod.plan_source(cfg, s, None, [])
            whole, prov, _ = ingest_mod.read_day_chunk(s, plans, grid, bbox, [])
            assert np.isfinite(whole).mean() > 0.5
            for edge in ((1, 3) if resampling == "average" else (3,)):
                tiled = np.full_like(whole, -1.0)
                for rows, cols in grid.tiles(edge, edge):
                    tile = grid.crop(rows, cols)
                    data, p, _, kept = ingest_mod.read_chunk(s, plans, tile, TileReader(s, tile, bbox, 2.0), [])
                    assert p == prov and kept == []
                    tiled[:, rows, cols] = data
                where = f"{src.name} {resampling} tiles of {edge}"
                np.testing.assert_array_equal(np.isnan(tiled), np.isnan(whole), err_msg=where)
                if resampling == "bilinear":
                    np.testing.assert_allclose(tiled, whole, rtol=3e-7, atol=0, err_msg=where)
                else:
                    np.testing.assert_array_equal(tiled, whole, err_msg=where)


def test_projected_grid_tiles_are_bands_equal_to_the_whole_grid(tmp_path):
    """On a projected grid (3 km UTM) GDAL's weights depend on the width warped at once: the default
    tiles are bands across the whole width, and these equal the whole grid."""
    cfg = config.load(make_project(tmp_path))
    from hydrocast.grid import GridSpec

    grid = GridSpec.from_bounds("EPSG:32629", (584000.0, 4472000.0, 614000.0, 4511000.0), 3000.0)
    cfg.cube.chunks = [2, 3, 3]
    assert ingest_dask.tile_shape(cfg, grid) == (3, grid.width)
    assert ingest_dask.tile_shape(cfg, cfg.grid_spec()) == (3, 3)
    bbox = grid.lonlat_bounds(cfg.cube.margin_cells)
    for src in cfg.sources[:2]:
        plans, _ = ingest_mod.plan_source(cfg, src, None, [])
        whole, _, _ = ingest_mod.read_day_chunk(src, plans, grid, bbox, [])
        assert np.isfinite(whole).mean() > 0.5
        tiled = np.full_like(whole, -1.0)
        for rows, cols in grid.tiles(*ingest_dask.tile_shape(cfg, grid)):
            tile = grid.crop(rows, cols)
            tiled[:, rows, cols] = ingest_mod.read_chunk(src, plans, tile, TileReader(src, tile, bbox, 2.0), [])[0]
        np.testing.assert_array_equal(tiled, whole, err_msg=src.name)


def test_workers_2_make_the_in_process_cube(tmp_path):
    """`--workers 2` (a local cluster of 2 processes): the cube of the in-process ingest, daily and
    half-hourly days, a day left missing, provenance and static layers included."""
    local = project(tmp_path / "local", halfhours=True)
    dask = project(tmp_path / "dask", halfhours=True)
    a, b = ingest(local), ingest(dask, "--workers", "2")
    assert a.exit_code == 0 and b.exit_code == 0, b.output
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    for key in ("days_added", "days_replaced", "days_total", "first_day", "last_day", "variables", "rejected"):
        assert ja[key] == jb[key], key
    assert ja["cluster"] is None
    assert jb["cluster"]["workers"] == 2 and jb["cluster"]["tiles"] == 9 and jb["cluster"]["reruns"] == 0
    assert jb["cluster"]["tasks"] == 9 * 3 + 9 * 2  # chunks of 2 days: precipitation 6 days, soil moisture 4
    assert_same_cube(cube_of(local), cube_of(dask))
    with xr.open_dataset(cube_of(dask)) as ds:
        prov = [str(p) for p in ds["precipitation_source"].values]
        assert "(+47 files)" in prov[5] and prov[6].startswith("missing: 40/48 half-hours")
    res = ingest(dask, "--workers", "2")  # nothing new: exit 0, no cluster started, cube untouched
    assert res.exit_code == 0 and json.loads(res.stdout)["changed"] is False
    assert json.loads(res.stdout)["cluster"] is None


def test_scheduler_appends_and_replaces_like_in_process(tmp_path, scheduler):
    """`--scheduler ADDRESS` of a running cluster, Zarr store: first ingest, an append (in place,
    under the journal) and a better run replacing a day give the in-process store."""
    local = project(tmp_path / "local", days=DAYS[:2], run="early", zarr=True)
    dask = project(tmp_path / "dask", days=DAYS[:2], run="early", zarr=True)
    for step in ("first", "append", "replace"):
        if step == "append":
            for root in (local.parent, dask.parent):
                for i, d in enumerate(DAYS[2:], start=2):
                    sd.write_imerg_day(root / "raw/imerg" / sd.imerg_day_name(d, run="early"), d, rain(i),
                                       IM_LON, IM_LAT, run="early")
        if step == "replace":
            for root in (local.parent, dask.parent):
                sd.write_imerg_day(root / "raw/imerg" / sd.imerg_day_name(DAYS[1]), DAYS[1], rain(1) * 1.5,
                                   IM_LON, IM_LAT)
        a, b = ingest(local), ingest(dask, "--scheduler", scheduler)
        assert a.exit_code == 0 and b.exit_code == 0, b.output
        ja, jb = json.loads(a.stdout), json.loads(b.stdout)
        for key in ("days_added", "days_replaced", "days_total", "rejected"):
            assert ja[key] == jb[key], (step, key)
        assert jb["cluster"]["workers"] == 2
        assert not (dask.parent / "work" / ".cube.zarr.journal").exists()
        assert_same_cube(cube_of(local), cube_of(dask))
    assert jb["days_replaced"] == 1


def test_a_scheduler_that_is_not_there_exits_75(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_dask, "CONNECT_TIMEOUT", 2)
    cfg = project(tmp_path)
    res = ingest(cfg, "--scheduler", "tcp://127.0.0.1:9")
    assert res.exit_code == 75, res.output
    assert "cannot reach the dask scheduler" in res.stderr
    assert ingest(cfg, "--workers", "2", "--scheduler", "tcp://127.0.0.1:9").exit_code == 2


def _write_partly_corrupt_day(path: Path, day: str, values: np.ndarray) -> None:
    """An IMERG daily file whose precipitation is stored in chunks of 2 longitudes, one of them
    (longitudes -7.65 and -7.55, inside the region's east) damaged: only the tiles that read it fail."""
    import h5py

    sd.write_imerg_day(path, day, values, IM_LON, IM_LAT)
    with h5py.File(path, "r+") as f:  # the same variable, stored chunked and compressed
        old = f["precipitation"]
        data, attrs = old[...], {k: v for k, v in old.attrs.items() if k not in ("DIMENSION_LIST", "_Netcdf4Dimid")}
        del f["precipitation"]
        new = f.create_dataset("precipitation", data=data, chunks=(1, 2, IM_LAT.size), compression="gzip",
                               fillvalue=data.dtype.type(sd.IMERG_FILL))
        for k, v in attrs.items():
            new.attrs[k] = v
        for i, dim in enumerate(("time", "lon", "lat")):
            new.dims[i].attach_scale(f[dim])
        info = new.id.get_chunk_info(3)
    with open(path, "r+b") as f:
        f.seek(info.byte_offset)
        f.write(b"\xff" * info.size)


@pytest.mark.parametrize("bad", ["header", "outside", "partly_corrupt"])
def test_bad_file_in_a_task_is_rejected_as_in_process(tmp_path, scheduler, bad):
    """A file that fails inside the tasks: its header contradicts its name (the old Early day is
    kept: its data come from the store as it was before the run), it lies outside the region (the
    tile's read fails, the region's gives the in-process message), or one of its chunks is damaged
    (some tiles read it, others not: the chunk is read again with the file rejected in every tile).
    Same exit code, rejections, provenance and cube as in-process; --strict writes nothing."""
    cfgs = {}
    for who in ("local", "dask"):
        root = tmp_path / who
        cfg = cfgs[who] = project(root, days=DAYS[:2], run="early", zarr=True)
        assert ingest(cfg).exit_code == 0
        sd.write_imerg_day(root / "raw/imerg" / sd.imerg_day_name(DAYS[2]), DAYS[2], rain(2), IM_LON, IM_LAT)
        if bad == "header":
            path = root / "raw/imerg" / sd.imerg_day_name(DAYS[1], run="final")
            sd.write_imerg_day(path, DAYS[0], rain(1) * 2, IM_LON, IM_LAT)  # header and time say DAYS[0]
        elif bad == "outside":
            path = root / "raw/imerg" / sd.imerg_day_name(DAYS[3])
            sd.write_imerg_day(path, DAYS[3], rain(3), IM_LON + 150.0, IM_LAT)
        else:
            path = root / "raw/imerg" / sd.imerg_day_name(DAYS[3])
            _write_partly_corrupt_day(path, DAYS[3], rain(3))
    store = cube_of(cfgs["dask"])
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    res = ingest(cfgs["dask"], "--scheduler", scheduler, "--strict")
    assert res.exit_code == 65 and "nothing was written" in res.stderr, res.output
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before
    a, b = ingest(cfgs["local"]), ingest(cfgs["dask"], "--scheduler", scheduler)
    assert a.exit_code == b.exit_code == 65, b.output
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)

    def rel(rejected):
        return [(Path(r["file"]).name, r["error"].replace(str(tmp_path / "local"), str(tmp_path / "dask")))
                for r in rejected]
    assert len(jb["rejected"]) == 1 and rel(ja["rejected"]) == rel(jb["rejected"])
    assert b.stderr.count("rejected:") == 1
    for key in ("days_added", "days_replaced", "days_total"):
        assert ja[key] == jb[key], key
    assert jb["cluster"]["reruns"] == (1 if bad == "partly_corrupt" else 0)
    assert_same_cube(cube_of(cfgs["local"]), store)
