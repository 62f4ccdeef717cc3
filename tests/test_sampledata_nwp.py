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


# -- the ensemble (write_ensemble) ----------------------------------------------------------------

ENS_START, ENS_END, ENS_MEMBERS = dt.date(2019, 1, 1), dt.date(2019, 1, 8), 4


@pytest.fixture(scope="module")
def ensemble(sample_data, tmp_path_factory) -> tuple[Path, dict]:
    out = link_truth(sample_data, tmp_path_factory.mktemp("e"), start=ENS_START, days=12)
    return out, snwp.write_ensemble(out, members=ENS_MEMBERS, seed=7, start=ENS_START, end=ENS_END)


def ens_files(out: Path) -> list[Path]:
    return sorted((out / snwp.ENS_SUBDIR).iterdir())


def issue_of(run) -> dt.date:
    return dt.date.fromisoformat(str(run.reference_time)[:10]) - dt.timedelta(days=1)


def test_ensemble_files_and_runs_read_back(ensemble):
    out, summary = ensemble
    split = [f"{d}000000-{h}h-enfo-ef.grib2" for d in ("20190107", "20190108", "20190109") for h in (24, 48, 72)]
    assert [p.name for p in ens_files(out)] == sorted(["ecmwf-enfo-ef-tp-201901.grib2"] + split)
    assert not (out / "raw/nwp").exists()  # the deterministic files are not this writer's
    assert (summary["issue_dates"], summary["members"], summary["files"]) == (8, ENS_MEMBERS, 10)
    assert summary["bytes"] == sum(p.stat().st_size for p in ens_files(out))
    runs = nwp.scan_runs(ens_files(out))
    assert [str(r.reference_time)[:10] for r in runs] == [str(ENS_START + dt.timedelta(days=i + 1)) for i in range(8)]
    truth = snwp.Truth(out / "raw/imerg")
    for run in runs:
        assert (run.centre, run.stream, run.ensemble, run.members, run.steps_h, run.units) == (
            "ecmf", "enfo", True, tuple(range(ENS_MEMBERS)), (24.0, 48.0, 72.0), "m")
        assert len(run.paths) == (3 if run.reference_time >= np.datetime64("2019-01-07") else 1)
        da = nwp.read_run(run)
        assert da.attrs["ensemble"] == 1 and list(da["member"].values) == list(range(ENS_MEMBERS))
        np.testing.assert_allclose((da["x"] + 180) % 360 - 180, snwp.LON)
        np.testing.assert_allclose(da["y"], snwp.LAT)
        issue = issue_of(run)
        for m in range(ENS_MEMBERS):
            np.testing.assert_allclose(da.values[m], snwp.run_fields(truth, 7, issue, 3, member=m), atol=PACKING_MM)


def test_ensemble_grib_keys(ensemble):
    """Per message: cf for member 0, pf for the others, number = member, template 4.11, N in the ensemble;
    a per-step file holds every member of its one step."""
    import eccodes

    out, _ = ensemble
    order, bits = [], set()
    for path in ens_files(out):
        with open(path, "rb") as fh:
            while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
                try:
                    got = {k: eccodes.codes_get(h, k) for k in (
                        "centre", "stream", "dataType", "number", "productDefinitionTemplateNumber",
                        "numberOfForecastsInEnsemble", "stepType", "startStep", "endStep", "shortName",
                        "packingType", "gridType", "dataTime")}
                    date = eccodes.codes_get(h, "dataDate")
                    bits.add(eccodes.codes_get(h, "bitsPerValue"))
                finally:
                    eccodes.codes_release(h)
                m = got["number"]
                assert got == {"centre": "ecmf", "stream": "enfo", "dataType": "cf" if m == 0 else "pf", "number": m,
                               "productDefinitionTemplateNumber": 11, "numberOfForecastsInEnsemble": ENS_MEMBERS,
                               "stepType": "accum", "startStep": 0, "endStep": got["endStep"], "shortName": "tp",
                               "packingType": "grid_simple", "gridType": "regular_ll", "dataTime": 0}
                if path.name.endswith("-enfo-ef.grib2"):
                    assert path.name == f"{date}000000-{got['endStep']}h-enfo-ef.grib2"
                order.append((path.name, date, got["endStep"], m))
    assert bits == {0, 16}  # 16 bits, or none for a constant (all-dry) field, as eccodes packs it
    assert len(set(order)) == len(order) == 8 * 3 * ENS_MEMBERS  # every (run, step, member) once
    assert order == sorted(order)  # files: runs, then steps, then members in order
    for name in {o[0] for o in order if o[0].endswith("-enfo-ef.grib2")}:
        assert [o[3] for o in order if o[0] == name] == list(range(ENS_MEMBERS))


def test_members_differ_from_each_other_and_from_the_deterministic_forecast(ensemble):
    out, _ = ensemble
    truth = snwp.Truth(out / "raw/imerg")
    with nwp.RunReader() as reader:
        runs = nwp.scan_runs(ens_files(out))
        ens = np.stack([reader.read(r).values for r in runs])  # (run, member, lead, y, x)
    det = np.stack([snwp.run_fields(truth, 7, issue_of(r), 3) for r in runs])
    assert np.nanmax(ens) > 1
    for a in range(ENS_MEMBERS):
        assert np.nanmax(np.abs(ens[:, a] - det)) > 0.5
        for b in range(a):
            assert np.nanmax(np.abs(ens[:, a] - ens[:, b])) > 0.5
    spread = {k: np.nanmean(ens[:, :, k - 1].std(axis=1)) for k in (1, 3)}  # the spread grows with lead
    assert spread[3] > 1.3 * spread[1] > 0


def test_ensemble_deterministic_and_replaces_its_files(sample_data, tmp_path, ensemble):
    out, _ = ensemble
    again = link_truth(sample_data, tmp_path / "again", start=ENS_START, days=12)
    stale = again / snwp.ENS_SUBDIR / "20180101000000-24h-enfo-ef.grib2"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"GRIB old")
    other = again / snwp.ENS_SUBDIR / "notes.txt"  # not this writer's: kept
    other.write_text("x")
    snwp.write_ensemble(again, members=ENS_MEMBERS, seed=7, start=ENS_START, end=ENS_END)
    assert not stale.exists() and other.exists()
    other.unlink()

    def digest(folder: Path) -> dict:
        return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in ens_files(folder)}

    assert digest(out) == digest(again)
    snwp.write_ensemble(again, members=ENS_MEMBERS, seed=8, start=ENS_START, end=ENS_END)
    assert digest(again).keys() == digest(out).keys() and digest(again) != digest(out)


def events(rng) -> tuple:
    """The missed/false-event draws of the module doc, in order: u_miss, u_false, blob centre, blob peak."""
    west, south, east, north = sd.REGION
    return (rng.random(), rng.random(), rng.uniform(west, east), rng.uniform(south, north),
            rng.uniform(*snwp.BLOB_MM))


def test_member_rngs_follow_the_documented_rule():
    """The draws of member_errors (and the event draws of forecast_day) re-derived from the seeds and the
    order the module doc names."""
    seed, issue, k = 5, dt.date(2019, 3, 4), 2
    d = (issue - snwp.EPOCH).days
    rng = np.random.default_rng([seed, d, k])
    dx, dy = rng.normal(0.0, snwp.SHIFT_SD * k, 2)
    want = (dx, dy, rng.normal(0.0, snwp.INTENSITY_SIGMA * k))
    assert snwp.member_errors(seed, issue, k) == pytest.approx(want)
    assert snwp._draws(seed, issue, k) == pytest.approx(want + events(rng))
    half_s, half_i = snwp.SHIFT_SD * k / np.sqrt(2), snwp.INTENSITY_SIGMA * k / np.sqrt(2)
    common = np.random.default_rng([seed, d, k, 7919])
    c = (*common.normal(0.0, half_s, 2), common.normal(0.0, half_i))
    for m in (0, 3):
        own = np.random.default_rng([seed, d, k, 7919, m])
        e = (*own.normal(0.0, half_s, 2), own.normal(0.0, half_i))
        want = tuple(np.add(c, e))
        assert snwp.member_errors(seed, issue, k, m) == pytest.approx(want)
        assert snwp._draws(seed, issue, k, m) == pytest.approx(want + events(own))  # per member


def test_members_and_truth_are_exchangeable_in_displacement_and_intensity():
    """Over many (issue, member): each member's error has variance (SHIFT_SD k)^2 per axis and (INTENSITY_SIGMA
    k)^2 in log intensity (the error against the truth), two members differ with that same variance, and
    they share half of it (covariance = half the variance: the common part). 1000 issues x 4 members, in
    units of the variance: the standard error of each variance estimate is about 0.03 (4000 draws
    correlated in fours; 2000 independent differences), and of the covariance about 0.03 too (the common
    part is one draw per issue: sqrt(1.25 / 1000) per pair); measured over 40 seeds: 0.027, 0.029, 0.027.
    So 0.12 / 0.1 are about 4 standard errors, and still tell 0.5 from 0 (no common part) or 1 (no member
    part); the draws are fixed by the seeds anyway."""
    issues = [dt.date(2015, 1, 1) + dt.timedelta(days=i) for i in range(1000)]
    for k in (1, 3):
        e = np.array([[snwp.member_errors(11, d, k, m) for m in range(4)] for d in issues])  # (issue, m, 3)
        for j, sd_ in ((0, snwp.SHIFT_SD * k), (1, snwp.SHIFT_SD * k), (2, snwp.INTENSITY_SIGMA * k)):
            x = e[:, :, j] / sd_
            assert abs(x.mean()) < 0.1
            assert x.var() == pytest.approx(1.0, rel=0.12)  # member - truth
            diffs = np.concatenate([x[:, 0] - x[:, 1], x[:, 2] - x[:, 3]])
            assert diffs.var() == pytest.approx(1.0, rel=0.12)  # member - member: the same law
            cov = np.mean([np.cov(x[:, a], x[:, b])[0, 1] for a, b in ((0, 1), (0, 2), (1, 3), (2, 3))])
            assert cov == pytest.approx(0.5, abs=0.1)
        assert abs(np.corrcoef(e[:, :, 0].ravel(), e[:, :, 1].ravel())[0, 1]) < 0.08  # dx, dy independent


def test_ensemble_bitmap_where_the_truth_is_missing(tmp_path):
    """Missing points (NaN) of a member's daily fields come back as NaN through the reader, the rest as
    written (the sample's truth never leaves a whole 0.25° cell missing, so this is built by hand)."""
    import eccodes

    rng = np.random.default_rng(0)
    daily = rng.uniform(0, 20, (3, 3, snwp.LAT.size, snwp.LON.size))  # (member, lead, y, x) mm
    daily[:, :, 2, 3] = np.nan
    daily[1, :, 5, 0] = np.nan  # one member only
    template = snwp._ensemble_template(3)
    try:
        msgs = [b for m in range(3) for b in snwp.messages(template, dt.date(2019, 5, 1), daily[m], member=m)]
    finally:
        eccodes.codes_release(template)
    path = tmp_path / "ens.grib2"
    path.write_bytes(b"".join(msgs))
    (run,) = nwp.scan_runs([path])
    assert run.ensemble and run.members == (0, 1, 2)
    got = nwp.read_run(run).values
    np.testing.assert_array_equal(np.isnan(got), np.isnan(daily))
    np.testing.assert_allclose(got, daily, atol=PACKING_MM)


def test_cli_ensemble(sample_data, tmp_path, capsys):
    import json

    out = link_truth(sample_data, tmp_path / "cli", start=ENS_START, days=6)
    assert snwp.main([str(out), "--ensemble", "2", "--seed", "3", "--end", "2019-01-02"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["members"], summary["issue_dates"], summary["first_issue_date"]) == (2, 2, "2019-01-01")
    assert not (out / "raw/nwp").exists()
    runs = nwp.scan_runs(ens_files(out))
    assert [r.members for r in runs] == [(0, 1), (0, 1)] and all(r.stream == "enfo" for r in runs)
