"""tools.sampledata_nwp: the sample's synthetic ECMWF forecasts read back through hydrocast's GRIB reader to
the values the writer intended; names, layout and determinism; errors that grow with lead. The truth is the
sample's own IMERG daily files (linked into a temporary folder, one month and a few days)."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pytest

from hydrocast.sources import nwp
from tools import sampledata as sd
from tools import sampledata_nwp as snwp

START, END = dt.date(2019, 1, 1), dt.date(2019, 1, 31)
PACKING_MM = 0.02


def link_truth(sample_data: Path, out: Path, start=START, days: int = 36) -> Path:
    (out / "raw/imerg").mkdir(parents=True)
    for i in range(days):
        name = sd.imerg_day_name(start + dt.timedelta(days=i), run="final")
        (out / "raw/imerg" / name).symlink_to(sample_data / "raw/imerg" / name)
    return out


@pytest.fixture(scope="module")
def written(sample_data, tmp_path_factory) -> tuple[Path, dict]:
    out = link_truth(sample_data, tmp_path_factory.mktemp("s"))
    return out, snwp.write_forecasts(out, seed=7, start=START, end=END)


def test_files_runs_and_values_read_back(written):
    out, summary = written
    names = sorted(p.name for p in (out / "raw/nwp").iterdir())
    split = [f"{d}000000-{h}h-oper-fc.grib2" for d in ("20190130", "20190131", "20190201") for h in (24, 48, 72)]
    assert names == sorted(["ecmwf-oper-fc-tp-201901.grib2"] + split)  # runs 01-02 .. 01-29 in the month file
    assert summary["issue_dates"] == 31 and summary["bytes"] < 100_000
    runs = nwp.scan_runs(sorted((out / "raw/nwp").iterdir()))
    assert [str(r.reference_time)[:10] for r in runs] == [str(START + dt.timedelta(days=i + 1)) for i in range(31)]
    truth = snwp.Truth(out / "raw/imerg")
    for run in runs[:3] + runs[-2:]:
        assert (run.centre, run.stream, run.ensemble, run.steps_h, run.units) == ("ecmf", "oper", False,
                                                                                (24.0, 48.0, 72.0), "m")
        issue = dt.date.fromisoformat(str(run.reference_time)[:10]) - dt.timedelta(days=1)
        assert nwp.lead_days_for_issue(run.reference_time, np.datetime64(issue), 3) == [1, 2, 3]
        da = nwp.read_run(run)
        np.testing.assert_allclose((da["x"] + 180) % 360 - 180, snwp.LON)  # (the whole grid: 0..360)
        np.testing.assert_allclose(da["y"], snwp.LAT)
        want = snwp.run_fields(truth, 7, issue, 3)
        np.testing.assert_allclose(da.values[0], want, atol=PACKING_MM)
    assert want.max() > 1


def test_grid_covers_the_region_with_one_cell_of_margin():
    assert list(snwp.LON) == [-9.0 + 0.25 * i for i in range(9)]
    assert list(snwp.LAT) == [41.75 - 0.25 * i for i in range(9)]
    west, south, east, north = sd.REGION
    inner_lon, inner_lat = snwp.LON[1:-1], snwp.LAT[1:-1]  # without the margin: the covering cells
    h = 0.125
    assert inner_lon[0] - h <= west < inner_lon[0] + h and inner_lon[-1] - h < east <= inner_lon[-1] + h
    assert inner_lat[-1] - h <= south < inner_lat[-1] + h and inner_lat[0] - h < north <= inner_lat[0] + h


def test_aggregation_equals_gdal_average(written):
    """The 0.1° -> 0.25° mean against rasterio/GDAL's average on the cells the truth covers whole."""
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    out, _ = written
    truth = snwp.Truth(out / "raw/imerg")
    field = max((truth(START + dt.timedelta(days=i)) for i in range(31)), key=np.nansum)  # (lat ascending, lon)
    assert np.nanmax(field) > 5
    mine = snwp.aggregate(field, truth.lon, truth.lat)
    src = np.ascontiguousarray(field[::-1]).astype("float32")  # north-up
    dst = np.full((snwp.LAT.size, snwp.LON.size), np.nan, "float32")
    reproject(src, dst, src_transform=Affine(0.1, 0, truth.lon[0] - 0.05, 0, -0.1, truth.lat[-1] + 0.05),
              src_crs="EPSG:4326", src_nodata=np.nan, dst_transform=Affine(0.25, 0, -9.125, 0, -0.25, 41.875),
              dst_crs="EPSG:4326", dst_nodata=np.nan, resampling=Resampling.average)
    np.testing.assert_allclose(mine[1:-1, 1:-1], dst[1:-1, 1:-1], rtol=1e-4, atol=1e-4)


def test_errors_grow_with_lead(written):
    out, _ = written
    truth = snwp.Truth(out / "raw/imerg")
    err = {1: [], 3: []}
    reader = nwp.RunReader()  # read_run's values (tests/test_forecasts.py), without a cfgrib open per run
    for run in nwp.scan_runs(sorted((out / "raw/nwp").iterdir())):
        issue = dt.date.fromisoformat(str(run.reference_time)[:10]) - dt.timedelta(days=1)
        da = reader.read(run)
        for k in err:
            obs = snwp.aggregate(truth(issue + dt.timedelta(days=k)), truth.lon, truth.lat)
            err[k].append(np.nanmean(np.abs(da.values[0, k - 1] - obs)))
    reader.close()
    mae1, mae3 = np.mean(err[1]), np.mean(err[3])
    assert mae3 > 1.3 * mae1 > 0


def test_deterministic_and_gaps(sample_data, tmp_path, written):
    out, _ = written
    again = link_truth(sample_data, tmp_path / "again")
    snwp.write_forecasts(again, seed=7, start=START, end=END)

    def digest(folder: Path) -> dict:
        return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted((folder / "raw/nwp").iterdir())}

    assert digest(out) == digest(again)
    (again / "raw/imerg" / sd.imerg_day_name(dt.date(2019, 1, 20), run="final")).unlink()  # a day without truth
    summary = snwp.write_forecasts(again, seed=8, start=START, end=END)
    assert summary["issue_dates"] == 28  # D = 01-17, 01-18, 01-19 need 01-20
    assert digest(again) != digest(out)


def test_committed_sample_forecasts(sample_data):
    """The files in sample_data/raw/nwp are this writer's (seed 42): one month file re-derived from the truth."""
    path = sample_data / "raw/nwp/ecmwf-oper-fc-tp-201903.grib2"
    runs = nwp.scan_runs([path])
    assert len(runs) == 31
    truth = snwp.Truth(sample_data / "raw/imerg")
    run = runs[10]
    issue = dt.date.fromisoformat(str(run.reference_time)[:10]) - dt.timedelta(days=1)
    np.testing.assert_allclose(nwp.read_run(run).values[0], snwp.run_fields(truth, 42, issue, 3), atol=PACKING_MM)
