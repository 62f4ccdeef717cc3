"""`hydrocast ingest` on a tiny synthetic project (8 x 8 cells): values, runs, reruns, bad files,
locks and atomic replacement. The files are written with tools.sampledata's writers, in the
products' real layouts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from hydrocast.cli import app
from hydrocast.grid import GridSpec
from tools import sampledata as sd

REGION = (-8.0, 40.4, -7.6, 40.8)
IM_LON = np.round(-8.25 + 0.1 * np.arange(10), 2)  # 0.1° centres, -8.3 .. -7.3 (region + margin)
IM_LAT = np.round(40.15 + 0.1 * np.arange(10), 2)  # 40.1 .. 41.1
CCI_LON = -8.375 + 0.25 * np.arange(5)
CCI_LAT = 41.125 - 0.25 * np.arange(4)  # north -> south
DAYS = ["2020-03-01", "2020-03-02", "2020-03-03", "2020-03-04"]

CONFIG = """
[grid]
crs = "EPSG:4326"
bounds = [-8.0, 40.4, -7.6, 40.8]
resolution = 0.05

[[sources]]
name = "precipitation"
kind = "imerg"
paths = ["raw/imerg/*.HDF5", "raw/imerg/*.nc4"]

[[sources]]
name = "soil_moisture"
kind = "esacci_sm"
paths = ["raw/esacci/*.nc"]

[[sources]]
name = "dem"
kind = "dem"
paths = ["raw/dem/dem.tif"]

[cube]
path = "work/cube.nc"
chunk_days = 2
"""

runner = CliRunner()


def rain(day_index: int) -> np.ndarray:
    """A deterministic rain field (mm/day) on the IMERG (lat, lon) cells, different each day."""
    rng = np.random.default_rng(100 + day_index)
    f = rng.gamma(0.8, 6.0, size=(IM_LAT.size, IM_LON.size))
    f[rng.random(f.shape) < 0.3] = 0.0
    return f


def sm_field(day_index: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(200 + day_index)
    sm = 0.15 + 0.2 * rng.random((CCI_LAT.size, CCI_LON.size))
    flag = np.zeros(sm.shape, dtype=int)
    flag[2, 3] = 2  # dense vegetation (lon -7.75..-7.5, lat 40.5..40.75): masked although sm looks valid
    flag[2, 2] = 64  # barren ground advisory (lon -8.0..-7.75, lat 40.5..40.75): kept
    return sm, flag


def make_project(root: Path, days=DAYS, run="final") -> Path:
    for i, d in enumerate(days):
        sd.write_imerg_day(root / "raw/imerg" / sd.imerg_day_name(d, run=run), d, rain(i), IM_LON, IM_LAT, run=run)
        sm, flag = sm_field(i)
        sd.write_esacci_day(root / "raw/esacci" / sd.esacci_name(d), d, sm, flag, CCI_LON, CCI_LAT)
    # a DEM sloping down to the west, 30" cells, region plus 0.1° margin, with a nodata patch
    from affine import Affine

    n = 72
    x = np.arange(n)
    z = 100 + 5.0 * x[None, :] + 2.0 * np.abs(np.arange(n)[:, None] - n / 2)
    z = z.astype("int16")
    z[:6, :6] = sd.DEM_NODATA
    sd.write_dem(root / "raw/dem/dem.tif", z, Affine(1 / 120, 0, -8.1, 0, -1 / 120, 40.9))
    (root / "hydrocast.toml").write_text(CONFIG)
    return root / "hydrocast.toml"


def ingest(cfg: Path, *args: str):
    return runner.invoke(app, ["ingest", "--config", str(cfg), "--quiet", "--json", *args])


def cube_path(cfg: Path) -> Path:
    return cfg.parent / "work" / "cube.nc"


def area_weighted_total(values_latlon: np.ndarray, lat: np.ndarray, lon: np.ndarray, res: float) -> float:
    """Σ value × spherical cell area over cells fully inside REGION (independent of GDAL)."""
    r = 6_371_008.8
    inside_lat = (lat - res / 2 >= REGION[1] - 1e-9) & (lat + res / 2 <= REGION[3] + 1e-9)
    inside_lon = (lon - res / 2 >= REGION[0] - 1e-9) & (lon + res / 2 <= REGION[2] + 1e-9)
    area = r * r * np.radians(res) * (np.sin(np.radians(lat + res / 2)) - np.sin(np.radians(lat - res / 2)))
    return float((values_latlon * area[:, None])[inside_lat][:, inside_lon].sum())


@pytest.fixture
def project(tmp_path) -> Path:
    return make_project(tmp_path)


def test_first_ingest_writes_the_cube_with_conserved_totals(project):
    res = ingest(project)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["days_added"] == 4 and summary["changed"] is True
    cube = cube_path(project)
    with xr.open_dataset(cube) as ds:
        assert ds["precipitation"].dims == ("time", "y", "x")
        assert ds["precipitation"].dtype == np.float32
        assert [str(t)[:10] for t in ds["time"].values] == DAYS
        grid = GridSpec.from_bounds("EPSG:4326", REGION, 0.05)
        areas = grid.cell_area_m2()
        for i in range(4):
            after = float((ds["precipitation"][i].values * areas).sum())
            assert after == pytest.approx(area_weighted_total(rain(i), IM_LAT, IM_LON, 0.1), rel=0.01)
        # soil moisture: the 0.25° cell with flag 2 is masked, the barren (64) one kept
        sm = ds["soil_moisture"][0].values
        assert np.isfinite(sm).any()
        assert ds["soil_moisture"].attrs["units"] == "m3 m-3"
        for name in ("elevation", "slope", "upstream_area"):
            assert ds[name].dims == ("y", "x")
        assert ds["crs"].attrs["crs_wkt"]
        assert ds["precipitation"].attrs["grid_mapping"] == "crs"
        assert ds.attrs["Conventions"] == "CF-1.8, ACDD-1.3"
        prov = ds["precipitation_source"].values
        assert all(str(p).startswith("final 3B-DAY.MS.MRG.3IMERG.") for p in prov)


def test_esacci_flags_on_the_cube_grid(project):
    """Cube cells inside the barren-flagged CCI cell keep its value; cells inside the
    dense-vegetation-flagged one are missing (flag_mask 63 keeps bit 64, masks bit 2)."""
    assert ingest(project).exit_code == 0
    sm, flag = sm_field(0)
    with xr.open_dataset(cube_path(project)) as ds:
        cube_sm = ds["soil_moisture"][0]

        def inside(r, c):
            lon_lo, lon_hi = CCI_LON[c] - 0.125, CCI_LON[c] + 0.125
            lat_lo, lat_hi = CCI_LAT[r] - 0.125, CCI_LAT[r] + 0.125
            return cube_sm.where((ds.x > lon_lo + 0.025) & (ds.x < lon_hi - 0.025)
                                 & (ds.y > lat_lo + 0.025) & (ds.y < lat_hi - 0.025), drop=True)

        kept, masked = inside(2, 2), inside(2, 3)
        assert kept.size >= 4 and masked.size >= 2
        np.testing.assert_allclose(kept.values, sm[2, 2], rtol=1e-5)
        assert np.isnan(masked.values).all()


def test_half_hourly_days_and_incomplete_days(tmp_path):
    cfg = make_project(tmp_path, days=DAYS[:1])
    rates = [rain(10 + k) / 24.0 for k in range(48)]  # mm/hr
    for k in range(48):  # a complete day
        sd.write_imerg_hhr(tmp_path / "raw/imerg" / sd.imerg_hhr_name("2020-03-02", k), "2020-03-02", k,
                           rates[k], IM_LON, IM_LAT)
    for k in range(40):  # 40 of 48 half-hours: left missing, not under-counted
        sd.write_imerg_hhr(tmp_path / "raw/imerg" / sd.imerg_hhr_name("2020-03-03", k), "2020-03-03", k,
                           rates[k], IM_LON, IM_LAT)
    res = ingest(cfg)
    assert res.exit_code == 0, res.output
    with xr.open_dataset(cube_path(cfg)) as ds:
        day_total = sum(r * 0.5 for r in rates)  # Σ rate × 0.5 h, on the IMERG cells
        grid = GridSpec.from_bounds("EPSG:4326", REGION, 0.05)
        got = float((ds["precipitation"].sel(time="2020-03-02").values * grid.cell_area_m2()).sum())
        assert got == pytest.approx(area_weighted_total(day_total, IM_LAT, IM_LON, 0.1), rel=0.01)
        assert np.isnan(ds["precipitation"].sel(time="2020-03-03").values).all()
        prov = str(ds["precipitation_source"].sel(time="2020-03-03").values)
        assert prov.startswith("missing: 40/48 half-hours")
        assert "(+47 files)" in str(ds["precipitation_source"].sel(time="2020-03-02").values)


def test_rerun_changes_nothing_and_better_run_replaces(tmp_path):
    cfg = make_project(tmp_path, run="early")
    assert ingest(cfg).exit_code == 0
    cube = cube_path(cfg)
    before = (cube.stat().st_mtime_ns, cube.read_bytes())
    res = ingest(cfg)
    assert res.exit_code == 0 and json.loads(res.stdout)["changed"] is False
    assert (cube.stat().st_mtime_ns, cube.read_bytes()) == before

    # the Final run of day 2 arrives (different values): it replaces the Early day
    final = rain(1) * 1.5
    sd.write_imerg_day(tmp_path / "raw/imerg" / sd.imerg_day_name(DAYS[1], run="final"), DAYS[1], final,
                       IM_LON, IM_LAT, run="final")
    res = ingest(cfg)
    out = json.loads(res.stdout)
    assert res.exit_code == 0 and out["days_replaced"] == 1 and out["days_added"] == 0
    with xr.open_dataset(cube) as ds:
        prov = [str(p) for p in ds["precipitation_source"].values]
        assert prov[1].startswith("final ") and prov[0].startswith("early ")
        grid = GridSpec.from_bounds("EPSG:4326", REGION, 0.05)
        got = float((ds["precipitation"][1].values * grid.cell_area_m2()).sum())
        assert got == pytest.approx(area_weighted_total(final, IM_LAT, IM_LON, 0.1), rel=0.01)

    # a Late file for the same day later: worse than Final, ignored
    sd.write_imerg_day(tmp_path / "raw/imerg" / sd.imerg_day_name(DAYS[1], run="late"), DAYS[1], rain(1),
                       IM_LON, IM_LAT, run="late")
    res = ingest(cfg)
    assert res.exit_code == 0 and json.loads(res.stdout)["changed"] is False


def test_new_days_are_appended_and_old_days_kept(tmp_path):
    cfg = make_project(tmp_path, days=DAYS[:2])
    assert ingest(cfg).exit_code == 0
    with xr.open_dataset(cube_path(cfg)) as ds:
        first = ds["precipitation"].values.copy()
    for i, d in enumerate(DAYS[2:], start=2):
        sd.write_imerg_day(tmp_path / "raw/imerg" / sd.imerg_day_name(d), d, rain(i), IM_LON, IM_LAT)
        sm, flag = sm_field(i)
        sd.write_esacci_day(tmp_path / "raw/esacci" / sd.esacci_name(d), d, sm, flag, CCI_LON, CCI_LAT)
    res = ingest(cfg)
    assert res.exit_code == 0 and json.loads(res.stdout)["days_added"] == 2
    with xr.open_dataset(cube_path(cfg)) as ds:
        assert ds.sizes["time"] == 4
        np.testing.assert_array_equal(ds["precipitation"].values[:2], first)


@pytest.mark.parametrize("bad", ["html", "empty", "truncated", "outside"])
def test_bad_file_is_rejected_good_files_kept(tmp_path, bad):
    cfg = make_project(tmp_path, days=DAYS[:2])
    assert ingest(cfg).exit_code == 0
    cube = cube_path(cfg)
    with xr.open_dataset(cube) as ds:
        first = ds["precipitation"].values.copy()
    # one good new day and one bad file
    sd.write_imerg_day(tmp_path / "raw/imerg" / sd.imerg_day_name(DAYS[2]), DAYS[2], rain(2), IM_LON, IM_LAT)
    bad_path = tmp_path / "raw/imerg" / sd.imerg_day_name(DAYS[3])
    if bad == "html":
        bad_path.write_text("<!DOCTYPE html><html><body>Earthdata Login</body></html>")
    elif bad == "empty":
        bad_path.write_bytes(b"")
    elif bad == "truncated":
        sd.write_imerg_day(bad_path, DAYS[3], rain(3), IM_LON, IM_LAT)
        bad_path.write_bytes(bad_path.read_bytes()[: bad_path.stat().st_size // 2])
    else:  # a file over the Pacific
        sd.write_imerg_day(bad_path, DAYS[3], rain(3), IM_LON + 150.0, IM_LAT)
    res = ingest(cfg)
    assert res.exit_code == 65, res.output
    out = json.loads(res.stdout)
    assert [r["file"] for r in out["rejected"]] == [str(bad_path)]
    assert str(bad_path) in res.stderr and res.stderr.count("rejected:") == 1
    with xr.open_dataset(cube) as ds:
        np.testing.assert_array_equal(ds["precipitation"].values[:2], first)  # nothing lost
        assert np.isfinite(ds["precipitation"].sel(time=DAYS[2]).values).all()  # good file used


def test_strict_writes_nothing(tmp_path):
    cfg = make_project(tmp_path, days=DAYS[:2])
    assert ingest(cfg).exit_code == 0
    cube = cube_path(cfg)
    before = cube.read_bytes()
    sd.write_imerg_day(tmp_path / "raw/imerg" / sd.imerg_day_name(DAYS[2]), DAYS[2], rain(2), IM_LON, IM_LAT)
    (tmp_path / "raw/imerg" / sd.imerg_day_name(DAYS[3])).write_text("<html>404</html>")
    res = ingest(cfg, "--strict")
    assert res.exit_code == 65
    assert "--strict" in res.stderr and "nothing was written" in res.stderr
    assert cube.read_bytes() == before
    assert not [p for p in cube.parent.iterdir() if p.name.endswith(".tmp")]


def test_file_failing_only_when_read_keeps_the_old_day(tmp_path):
    """scan reads names and signatures only, so a Final file whose header contradicts its name
    is rejected when it is read: --strict writes nothing, otherwise the Early day already in the
    cube stays (as when scan itself rejected such a file) and reruns report the file again
    without rewriting the cube."""
    cfg = make_project(tmp_path, days=DAYS[:2], run="early")
    assert ingest(cfg).exit_code == 0
    cube = cube_path(cfg)
    with xr.open_dataset(cube) as ds:
        early = ds["precipitation"].values.copy()
        early_prov = str(ds["precipitation_source"].values[1])
    sd.write_imerg_day(tmp_path / "raw/imerg" / sd.imerg_day_name(DAYS[2]), DAYS[2], rain(2), IM_LON, IM_LAT)
    bad_path = tmp_path / "raw/imerg" / sd.imerg_day_name(DAYS[1], run="final")
    sd.write_imerg_day(bad_path, DAYS[0], rain(1) * 2, IM_LON, IM_LAT)  # its header and time say DAYS[0]
    before = cube.read_bytes()
    res = ingest(cfg, "--strict")
    assert res.exit_code == 65 and "nothing was written" in res.stderr and str(bad_path) in res.stderr
    assert cube.read_bytes() == before
    res = ingest(cfg)
    assert res.exit_code == 65, res.output
    out = json.loads(res.stdout)
    assert [r["file"] for r in out["rejected"]] == [str(bad_path)]
    assert out["rejected"][0]["error"].startswith(str(bad_path)) and "header says" in out["rejected"][0]["error"]
    assert res.stderr.count("rejected:") == 1
    assert out["days_added"] == 1 and out["days_replaced"] == 0
    with xr.open_dataset(cube) as ds:
        np.testing.assert_array_equal(ds["precipitation"].values[:2], early)  # the Early day is kept
        prov = str(ds["precipitation_source"].values[1])
        assert prov.startswith(early_prov.split(" sig=")[0]) and f"rejected: {bad_path.name}" in prov
        assert np.isfinite(ds["precipitation"].sel(time=DAYS[2]).values).all()
    mtime = cube.stat().st_mtime_ns
    res = ingest(cfg)
    out = json.loads(res.stdout)
    assert res.exit_code == 65 and out["changed"] is False and cube.stat().st_mtime_ns == mtime
    assert [Path(r["file"]).name for r in out["rejected"]] == [bad_path.name]


def test_unreadable_daily_file_falls_back_to_half_hours(tmp_path):
    """A daily file that fails when read leaves the day to the same run's half-hourly files, as
    when scan rejected it."""
    cfg = make_project(tmp_path, days=DAYS[:1])
    bad_path = tmp_path / "raw/imerg" / sd.imerg_day_name(DAYS[1])
    sd.write_imerg_day(bad_path, DAYS[0], rain(1), IM_LON, IM_LAT)  # header and time say DAYS[0]
    rates = [rain(20 + k) / 24.0 for k in range(48)]  # mm/hr
    for k in range(48):
        sd.write_imerg_hhr(tmp_path / "raw/imerg" / sd.imerg_hhr_name(DAYS[1], k), DAYS[1], k, rates[k],
                           IM_LON, IM_LAT)
    res = ingest(cfg)
    assert res.exit_code == 65, res.output
    assert [r["file"] for r in json.loads(res.stdout)["rejected"]] == [str(bad_path)]
    with xr.open_dataset(cube_path(cfg)) as ds:
        prov = str(ds["precipitation_source"].sel(time=DAYS[1]).values)
        assert prov.startswith("final 3B-HHR.") and "(+47 files)" in prov and f"rejected: {bad_path.name}" in prov
        grid = GridSpec.from_bounds("EPSG:4326", REGION, 0.05)
        got = float((ds["precipitation"].sel(time=DAYS[1]).values * grid.cell_area_m2()).sum())
        day_total = sum(r * 0.5 for r in rates)
        assert got == pytest.approx(area_weighted_total(day_total, IM_LAT, IM_LON, 0.1), rel=0.01)


def test_second_concurrent_run_exits_75(project):
    from filelock import FileLock

    cube = cube_path(project)
    cube.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cube) + ".lock"):
        t0 = time.monotonic()
        res = ingest(project)
        assert time.monotonic() - t0 < 30  # at once, not after waiting for the lock
    assert res.exit_code == 75
    assert "lock" in res.stderr
    assert not cube.exists()


def test_other_grid_is_refused(project):
    assert ingest(project).exit_code == 0
    text = project.read_text().replace("resolution = 0.05", "resolution = 0.1")
    project.write_text(text)
    res = ingest(project)
    assert res.exit_code == 65 and "another grid" in res.stderr


def test_killed_run_leaves_a_whole_cube(tmp_path):
    """SIGKILL an ingest at several moments: the cube is always either the old one or the new
    one, readable and with every old day intact (the replacement is a rename)."""
    cfg = make_project(tmp_path, days=DAYS[:2])
    assert ingest(cfg).exit_code == 0
    cube = cube_path(cfg)
    with xr.open_dataset(cube) as ds:
        old = ds["precipitation"].values.copy()
    many = [f"2020-04-{d:02d}" for d in range(1, 31)]
    for i, d in enumerate(many):
        sd.write_imerg_day(tmp_path / "raw/imerg" / sd.imerg_day_name(d), d, rain(i), IM_LON, IM_LAT)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for delay in (0.5, 1.5, 3.0):
        proc = subprocess.Popen([sys.executable, "-m", "hydrocast.cli", "ingest", "--config", str(cfg), "--quiet"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with netCDF4.Dataset(cube) as ds:  # readable and whole
            n = ds.dimensions["time"].size
            assert n in (len(DAYS[:2]), 61)  # old cube, or the new one (Mar 1 .. Apr 30)
            np.testing.assert_array_equal(np.ma.filled(ds["precipitation"][:2], np.nan), old)
    res = ingest(cfg)  # a later run completes the job
    assert res.exit_code == 0
    with xr.open_dataset(cube) as ds:
        assert ds.sizes["time"] == 61


def test_cube_passes_cf_compliance_checker(project):
    assert ingest(project).exit_code == 0
    proc = subprocess.run([str(Path(sys.executable).parent / "compliance-checker"), "-t", "cf:1.8", "-c", "lenient",
                           str(cube_path(project))], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
