"""NWP (GRIB) precipitation reader: real ECMWF/cfgrib test files from ``shared/data/nwp-grib`` and GRIB files
made here by cloning their messages with eccodes (set step, values, parameter, ensemble keys), since no
real multi-step ``tp`` run is in the shared data.

The reference for every value check is an independent raw eccodes read (``codes_get_values`` in the file's
scanning order, latitude/longitude computed here by hand from the grid keys), never cfgrib, which the reader
uses. The last tests run hydrocast commands in subprocesses: the eccodes/pyproj import-order hazard aborts
the interpreter *at exit* (134/139), which only a subprocess's exit code shows.
"""

from __future__ import annotations

import json
import lzma
import subprocess
import sys
from pathlib import Path

import eccodes
import numpy as np
import pytest

from hydrocast.errors import BadInputError
from hydrocast.sources import nwp

OPEN_DATA = "20240101000000-0h-oper-fc.grib2.0-10.xz"  # 10 real messages, the 3rd is tp (step 0, CCSDS)
TPRATE = "20250912120000-0h-oper-fc.grib2.89.xz"
REPO = Path(__file__).resolve().parents[1]


# -- helpers: raw eccodes, independent of the reader -------------------------------------------

def handles(path: Path) -> list:
    out = []
    with open(path, "rb") as f:
        while (h := eccodes.codes_grib_new_from_file(f)) is not None:
            out.append(h)
    return out


def write(path: Path, msgs) -> Path:
    with open(path, "wb") as f:
        for h in msgs:
            eccodes.codes_write(h, f)
    return path


class RawMap:
    """value by (lat, lon) of one message, from its raw values; the scanning order is worked out here from the
    grid keys (rows north -> south or south -> north, alternate rows reversed, i scanning either way)."""

    def __init__(self, h):
        g = lambda k: eccodes.codes_get(h, k)  # noqa: E731
        ni, nj = g("Ni"), g("Nj")
        assert g("jPointsAreConsecutive") == 0
        values = eccodes.codes_get_values(h).astype("float64")
        if g("bitmapPresent"):
            values[values == g("missingValue")] = np.nan
        r, c = np.divmod(np.arange(ni * nj), ni)
        i = np.where((r % 2 == 1) & bool(g("alternativeRowScanning")), ni - 1 - c, c)
        lat = g("latitudeOfFirstGridPointInDegrees") + (1 if g("jScansPositively") else -1) * g(
            "jDirectionIncrementInDegrees") * r
        lon = g("longitudeOfFirstGridPointInDegrees") + (-1 if g("iScansNegatively") else 1) * g(
            "iDirectionIncrementInDegrees") * i
        keys = self._key(lat, lon)
        order = np.argsort(keys)
        self.keys, self.values = keys[order], values[order]

    @staticmethod
    def _key(lat, lon) -> np.ndarray:
        return np.round(np.asarray(lat) * 1e4).astype("int64") * 10**8 + np.round(
            (np.asarray(lon) % 360) * 1e4).astype("int64") % (360 * 10**4)

    def at(self, lat, lon) -> np.ndarray:
        k = self._key(lat, lon)
        pos = np.searchsorted(self.keys, k)
        assert np.array_equal(self.keys[np.minimum(pos, self.keys.size - 1)], k), "a point not on the raw grid"
        return self.values[pos]


def expected(da, maps: list, factor: float = 1000.0) -> np.ndarray:
    """What ``da`` (the lead days of one member) must hold, from raw maps of the accumulation at steps 0, 24,
    48 ... (``None``: step 0, zero)."""
    lat, lon = np.meshgrid(da["y"].values, da["x"].values, indexing="ij")
    out = np.stack([(maps[k + 1].at(lat, lon) - (maps[k].at(lat, lon) if maps[k] is not None else 0.0)) * factor
                    for k in range(da.shape[0])])
    return np.where(out < 0, 0.0, out)


def tp_clone(src, step_h: int | None, values=None, **keys):
    """A GRIB2 tp message cloned from ``src`` with step 0-``step_h`` h, ``values`` and further ``keys``."""
    c = eccodes.codes_clone(src)
    for k, v in keys.items():
        eccodes.codes_set(c, k, v)
    if step_h is not None:
        eccodes.codes_set(c, "stepRange", f"0-{step_h}" if step_h else "0")
    if values is not None:
        eccodes.codes_set(c, "bitsPerValue", 16)
        eccodes.codes_set_values(c, values)
    return c


def grib1_to_tp(src, step_h: int = 24):
    """A real GRIB1 message turned into an ECMWF tp forecast at ``step_h`` (grid and packed values kept)."""
    c = eccodes.codes_clone(src)
    if eccodes.codes_get(c, "centre") != "ecmf":
        eccodes.codes_set(c, "centre", 98)
    eccodes.codes_set(c, "table2Version", 128)
    eccodes.codes_set(c, "indicatorOfParameter", 228)
    eccodes.codes_set(c, "indicatorOfTypeOfLevel", 1)
    if eccodes.codes_is_defined(c, "type"):
        eccodes.codes_set(c, "type", "fc")
    eccodes.codes_set(c, "stepRange", str(step_h))
    assert eccodes.codes_get(c, "shortName") == "tp"
    return c


def grib2_to_tp(src, step_h: int = 24):
    c = eccodes.codes_clone(src)
    eccodes.codes_set(c, "productDefinitionTemplateNumber", 8)
    eccodes.codes_set(c, "typeOfFirstFixedSurface", 1)
    eccodes.codes_set(c, "paramId", 228)
    eccodes.codes_set(c, "stepRange", f"0-{step_h}")
    assert eccodes.codes_get(c, "shortName") == "tp" and eccodes.codes_get(c, "stepType") == "accum"
    return c


@pytest.fixture(scope="module")
def open_data(shared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("od") / OPEN_DATA[:-3]
    out.write_bytes(lzma.decompress((shared_data / "nwp-grib" / OPEN_DATA).read_bytes()))
    return out


@pytest.fixture(scope="module")
def tp0(open_data):
    """The real open-data tp message (0.4°, lon 180 → 179.6, CCSDS, step 0, all zero)."""
    h = handles(open_data)[2]
    assert eccodes.codes_get(h, "shortName") == "tp" and eccodes.codes_get(h, "packingType") == "grid_ccsds"
    return h


def accumulations(tp0, n_steps: int, seed: int = 0) -> list[np.ndarray]:
    n = eccodes.codes_get(tp0, "numberOfValues")
    rng = np.random.default_rng(seed)
    acc, out = np.zeros(n), [np.zeros(n)]
    for _ in range(n_steps):
        acc = acc + rng.gamma(0.4, 0.005, n) * (rng.random(n) < 0.6)
        out.append(acc.copy())
    return out


STEPS = (0, 12, 24, 36, 48, 72)


@pytest.fixture(scope="module")
def multistep(tp0, tmp_path_factory) -> Path:
    """One file holding the run's tp at steps 0, 12, 24, 36, 48, 72 h (as download clients write it; 60 h is
    absent, which only a sub-daily step may be)."""
    acc = accumulations(tp0, len(STEPS) - 1)
    path = tmp_path_factory.mktemp("multi") / "run.grib2"
    return write(path, [tp_clone(tp0, step, a) for step, a in zip(STEPS, acc)])


def daily_maps(path: Path) -> list:
    return [RawMap(h) for h in handles(path) if eccodes.codes_get(h, "endStep") % 24 == 0]


# -- de-accumulation, bbox, one file vs one file per step ---------------------------------------

BOX = (-6.0, 40.0, 10.0, 52.0)  # crosses Greenwich on a grid whose longitudes start at 180°


def test_deaccumulation_matches_an_independent_eccodes_read(multistep):
    runs = nwp.scan_runs([multistep])
    assert len(runs) == 1
    run = runs[0]
    assert run.reference_time == np.datetime64("2024-01-01T00:00") and run.steps_h == STEPS
    assert (run.stream, run.ensemble, run.members) == ("oper", False, (0,))
    da = nwp.read_run(run, BOX)
    assert da.dims == ("member", "lead_day", "y", "x") and da.dtype == np.float32
    assert list(da["lead_day"].values) == [1, 2, 3] and da.attrs["units"] == "mm"
    assert [str(t)[:13] for t in da["valid_start"].values] == ["2024-01-01T00", "2024-01-02T00", "2024-01-03T00"]
    x, y = da["x"].values, da["y"].values
    assert np.all(np.diff(x) > 0) and np.all(np.diff(y) < 0)
    assert x.min() >= BOX[0] - 0.2 - 1e-6 and x.max() <= BOX[2] + 0.2 + 1e-6 and (x < 0).any() and (x > 0).any()
    assert np.allclose(np.diff(x), 0.4) and y.max() <= BOX[3] + 0.2 + 1e-6 and y.min() >= BOX[1] - 0.2 - 1e-6
    want = expected(da[0], daily_maps(multistep))
    np.testing.assert_allclose(da[0].values, want, rtol=1e-5, atol=1e-4)
    assert want.max() > 5 and (want == 0).any()  # a real test: wet and dry cells
    assert da.rio.crs.to_epsg() == 4326
    assert not list(multistep.parent.glob("*.idx"))  # cfgrib wrote no index file next to the data


def test_one_file_per_step_gives_the_same_run_as_one_file(multistep, tmp_path):
    for h in handles(multistep):
        step = eccodes.codes_get(h, "endStep")
        write(tmp_path / f"20240101000000-{step}h-oper-fc.grib2", [h])
    split = sorted(tmp_path.glob("*.grib2"))
    assert len(split) == len(STEPS)
    (run,) = nwp.scan_runs(split[::-1])  # any order of files
    assert len(run.paths) == len(STEPS) and run.steps_h == STEPS
    a, b = nwp.read_run(nwp.scan_runs([multistep])[0], BOX), nwp.read_run(run, BOX)
    assert np.array_equal(a.values, b.values, equal_nan=True)
    assert np.array_equal(a["x"], b["x"]) and np.array_equal(a["y"], b["y"])


def test_whole_grid_without_bbox(multistep):
    da = nwp.read_run(nwp.scan_runs([multistep])[0], None)
    assert da.shape == (1, 3, 451, 900)
    assert da["x"].values[0] == -180 and da["y"].values[0] == 90 and da["y"].values[-1] == -90


def test_missing_intermediate_step_is_refused(tp0, tmp_path):
    acc = accumulations(tp0, 3)
    path = write(tmp_path / "gap.grib2", [tp_clone(tp0, 24 * k, acc[k]) for k in (0, 1, 3)])
    (run,) = nwp.scan_runs([path])
    with pytest.raises(BadInputError) as e:
        nwp.read_run(run)
    msg = str(e.value)
    assert msg.startswith(str(path)) and "48 h" in msg and "\n" not in msg


def test_decreasing_accumulation_is_refused(tp0, tmp_path):
    acc = accumulations(tp0, 2)
    path = write(tmp_path / "bucket.grib2", [tp_clone(tp0, 24, acc[1]), tp_clone(tp0, 48, acc[1] * 0.5)])
    with pytest.raises(BadInputError, match="not an accumulation from the run's start"):
        nwp.read_run(nwp.scan_runs([path])[0])


def test_bucket_accumulation_and_non_forecast_refused(tp0, tmp_path):
    c = tp_clone(tp0, None, accumulations(tp0, 1)[1])
    eccodes.codes_set(c, "stepRange", "24-48")
    path = write(tmp_path / "b.grib2", [c])
    with pytest.raises(BadInputError, match="from step 24 h to 48 h, not from the run's start"):
        nwp.scan_runs([path])


def test_kg_per_m2_units_are_mm(tp0, tmp_path):
    """tp in kg m**-2 (WMO parameter 0/1/8): the values are mm already."""
    acc = accumulations(tp0, 1)
    msgs = [tp_clone(tp0, 24, acc[1] * 1000.0, paramId=228228)]
    assert eccodes.codes_get(msgs[0], "units") == "kg m**-2"
    path = write(tmp_path / "kg.grib2", msgs)
    da = nwp.read_run(nwp.scan_runs([path])[0], BOX)
    np.testing.assert_allclose(da[0].values, expected(da[0], [None, RawMap(handles(path)[0])], 1.0), rtol=1e-5)


# -- step units ---------------------------------------------------------------------------------

def test_minute_steps_of_the_real_step_60m_file(shared_data):
    path = shared_data / "nwp-grib" / "step_60m.grib"
    msgs = nwp.scan_file(path)
    raw = handles(path)
    assert eccodes.codes_get(raw[0], "indicatorOfUnitOfTimeRange") == 0  # the file does code minutes
    unit_s = {0: 60, 1: 3600}
    want = [eccodes.codes_get(h, "forecastTime") * unit_s[eccodes.codes_get(h, "indicatorOfUnitOfTimeRange")]
            for h in raw]
    assert [m.end_s for m in msgs] == want == [3600 * i for i in range(73)]


def test_minute_coded_tp_run(tp0, multistep, tmp_path):
    """The same fields with steps coded in minutes (raw forecastTime 0, lengthOfTimeRange 1440 ...)."""
    msgs = []
    for h in handles(multistep)[1:]:
        c = eccodes.codes_clone(h)
        minutes = eccodes.codes_get(h, "endStep") * 60
        eccodes.codes_set(c, "stepUnits", "m")
        eccodes.codes_set(c, "stepRange", f"0-{minutes}")
        assert eccodes.codes_get(c, "indicatorOfUnitOfTimeRange") == 0 and eccodes.codes_get(c, "forecastTime") == 0
        msgs.append(c)
    path = write(tmp_path / "minutes.grib2", msgs)
    (run,) = nwp.scan_runs([path])
    assert run.steps_h == STEPS[1:]  # step 0 absent: zero by definition
    a, b = nwp.read_run(run, BOX), nwp.read_run(nwp.scan_runs([multistep])[0], BOX)
    assert np.array_equal(a.values, b.values)


# -- grids: scanning orders, longitudes, bitmap -------------------------------------------------

@pytest.mark.parametrize("name, bbox", [
    ("scanning_mode_64.grib", None),  # GRIB1, south -> north, lon 0..355
    ("scanning_mode_64.grib", (-20.0, -30.0, 20.0, 30.0)),  # box across 0° on a 0..360 grid
    ("alternate-scanning.grib", (-5.0, 40.0, 15.0, 50.0)),  # GRIB2, boustrophedon rows, lon 350 -> 19
])
def test_scanning_orders_put_values_at_their_lat_lon(shared_data, tmp_path, name, bbox):
    src = handles(shared_data / "nwp-grib" / name)[0]
    conv = grib1_to_tp(src) if eccodes.codes_get(src, "edition") == 1 else grib2_to_tp(src)
    path = write(tmp_path / "tp.grib", [conv])
    (run,) = nwp.scan_runs([path])
    da = nwp.read_run(run, bbox)
    assert np.all(np.diff(da["x"].values) > 0) and np.all(np.diff(da["y"].values) < 0)
    want = expected(da[0], [None, RawMap(handles(path)[0])])
    np.testing.assert_allclose(da[0].values, want, rtol=1e-6)
    if bbox is not None:
        assert da["x"].values.min() < 0 < da["x"].values.max()
    # one known point, by hand: the file's first value sits at its first grid point
    h = handles(path)[0]
    lat1, lon1 = (eccodes.codes_get(h, k) for k in ("latitudeOfFirstGridPointInDegrees",
                                                      "longitudeOfFirstGridPointInDegrees"))
    lon1 = (lon1 + 180) % 360 - 180 if bbox is not None else lon1
    if da["x"].values.min() <= lon1 <= da["x"].values.max() and da["y"].values.min() <= lat1 <= da["y"].values.max():
        got = float(da[0, 0].sel(y=lat1, x=lon1, method="nearest"))
        assert got == pytest.approx(eccodes.codes_get_values(h)[0] * 1000, rel=1e-6)


def test_bitmap_missing_points_are_nan_and_runs_are_split_by_time(shared_data, tmp_path):
    src = handles(shared_data / "nwp-grib" / "fields_with_missing_values.grib")
    path = write(tmp_path / "tp.grib", [grib1_to_tp(h) for h in src])
    runs = nwp.scan_runs([path])
    assert [str(r.reference_time) for r in runs] == ["2017-10-18T00:00", "2017-10-18T12:00"]
    for run, h, n_missing in zip(runs, handles(path), (10808, 10891)):
        da = nwp.read_run(run)
        assert int(np.isnan(da.values).sum()) == n_missing
        want = expected(da[0], [None, RawMap(h)])
        np.testing.assert_array_equal(np.isnan(da[0].values), np.isnan(want))
        np.testing.assert_allclose(da[0].values, want, rtol=1e-6)


@pytest.mark.parametrize("name, grid", [("lambert_grid.grib", "lambert"), ("reduced_gg.grib", "reduced_gg")])
def test_lambert_and_reduced_gaussian_refused(shared_data, tmp_path, name, grid):
    real = shared_data / "nwp-grib" / name
    with pytest.raises(BadInputError) as e:
        nwp.scan_runs([real])
    assert str(e.value).startswith(str(real)) and "not supported yet" in str(e.value) and grid in str(e.value)
    path = write(tmp_path / name, [grib1_to_tp(handles(real)[0])])  # the same grid, as tp
    with pytest.raises(BadInputError) as e:
        nwp.scan_runs([path])
    msg = str(e.value)
    assert msg.startswith(str(path)) and f"{grid} grid: not supported yet" in msg and "\n" not in msg


# -- bad files ----------------------------------------------------------------------------------

def test_bad_files_are_refused_naming_the_file(shared_data, multistep, tmp_path):
    corrupt = shared_data / "nwp-grib" / "era5-levels-corrupted.grib"
    truncated = tmp_path / "truncated.grib2"
    truncated.write_bytes(multistep.read_bytes()[: multistep.stat().st_size - 5000])
    html = tmp_path / "html.grib2"
    html.write_bytes(b"<!DOCTYPE html><html><body>404</body></html>")
    empty = tmp_path / "empty.grib2"
    empty.write_bytes(b"")
    cases = {corrupt: "corrupt GRIB message at byte 0", truncated: "truncated GRIB file", html: "HTML",
             empty: "empty"}
    for path, what in cases.items():
        with pytest.raises(BadInputError) as e:
            nwp.scan_runs([path])
        msg = str(e.value)
        assert msg.startswith(str(path)) and what in msg and "\n" not in msg, msg
    rejected: list = []
    runs = nwp.scan_runs([corrupt, multistep, truncated, html, empty], rejected=rejected)
    assert [r.paths for r in runs] == [(multistep,)]
    assert sorted(str(p) for p, _ in rejected) == sorted(map(str, cases))


def test_files_without_tp_refused(shared_data, open_data, tmp_path):
    tprate = tmp_path / TPRATE[:-3]
    tprate.write_bytes(lzma.decompress((shared_data / "nwp-grib" / TPRATE).read_bytes()))
    with pytest.raises(BadInputError, match=r"no tp \(total precipitation\) message; it holds tprate") as e:
        nwp.scan_runs([tprate])
    assert str(e.value).startswith(str(tprate))
    (run,) = nwp.scan_runs([open_data])  # the real step-0 file: a run, but without any lead day
    assert run.steps_h == (0,)
    with pytest.raises(BadInputError, match="no 24 h step"):
        nwp.read_run(run)


def test_the_same_step_twice_is_refused(multistep, tmp_path):
    copy = tmp_path / "copy.grib2"
    write(copy, handles(multistep)[1:2])
    with pytest.raises(BadInputError, match="is also in"):
        nwp.scan_runs([multistep, copy])


# -- ensembles and grouping ---------------------------------------------------------------------

def test_ensemble_members_and_runs_grouped_by_metadata(tp0, tmp_path):
    """ECMWF-named per-step ``enfo-ef`` files holding cf + pf 1..3, beside an ``oper-fc`` run of the same
    date and an ensemble 12 UTC run in one file: three runs, members 0..3 in the first."""
    acc = accumulations(tp0, 2, seed=1)
    for k in range(3):
        msgs = [tp_clone(tp0, 24 * k, acc[k], stream="enfo", type="cf", productDefinitionTemplateNumber=11, number=0,
                         numberOfForecastsInEnsemble=50)]
        for member in (1, 2, 3):
            msgs.append(tp_clone(tp0, 24 * k, acc[k] * (1 + member), stream="enfo", type="pf",
                                 productDefinitionTemplateNumber=11, number=member, numberOfForecastsInEnsemble=50))
        write(tmp_path / f"20240101000000-{24 * k}h-enfo-ef.grib2", msgs)
    write(tmp_path / "20240101000000-24h-oper-fc.grib2", [tp_clone(tp0, 24, acc[1] * 0.5)])
    write(tmp_path / "late.grib2", [tp_clone(tp0, 24, acc[1], stream="enfo", type="cf", dataTime=1200)])
    runs = nwp.scan_runs(sorted(tmp_path.glob("*.grib2")))
    assert [(str(r.reference_time), r.stream, r.ensemble) for r in runs] == [
        ("2024-01-01T00:00", "enfo", True), ("2024-01-01T00:00", "oper", False), ("2024-01-01T12:00", "enfo", True)]
    ens = runs[0]
    assert ens.members == (0, 1, 2, 3) and len(ens.paths) == 3 and ens.steps_h == (0, 24, 48)
    assert {m.data_type for m in ens.messages if m.member == 0} == {"cf"}
    assert {m.data_type for m in ens.messages if m.member > 0} == {"pf"}
    da = nwp.read_run(ens, BOX)
    assert list(da["member"].values) == [0, 1, 2, 3] and da.attrs["ensemble"] == 1
    for i, member in enumerate(da["member"].values):
        maps = [RawMap(h) for k in range(3)
                for h in handles(tmp_path / f"20240101000000-{24 * k}h-enfo-ef.grib2")
                if eccodes.codes_get(h, "number") == member]
        assert len(maps) == 3
        np.testing.assert_allclose(da[i].values, expected(da[i], maps), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(da[2].values, 3 * da[0].values, rtol=1e-3, atol=0.05)  # pf 2 = 3 x cf, as written
    det = nwp.read_run(runs[1], BOX)
    assert det.shape == (1, 1) + da.shape[2:]
    # a member missing one step is refused
    keep = [h for h in handles(tmp_path / "20240101000000-48h-enfo-ef.grib2") if eccodes.codes_get(h, "number") != 2]
    write(tmp_path / "20240101000000-48h-enfo-ef.grib2", keep)
    (ens2,) = [r for r in nwp.scan_runs(sorted(tmp_path.glob("*enfo-ef.grib2"))) if r.ensemble]
    with pytest.raises(BadInputError, match="member 2 of the .* lacks tp at step.s. 48 h"):
        nwp.read_run(ens2)


# -- which run serves which issue date --------------------------------------------------------

def test_lead_days_for_issue(multistep):
    run = nwp.scan_runs([multistep])[0]  # 2024-01-01 00 UTC, 3 lead days
    da = nwp.read_run(run, BOX)
    issue = np.datetime64("2023-12-31")
    leads = nwp.lead_days_for_issue(run.reference_time, issue, 5, run_lead_days=da.sizes["lead_day"])
    assert leads == [1, 2, 3, None, None]
    for n, k in enumerate(leads, start=1):  # lead n of the issue is the UTC day issue + n: check by the dates
        if k is not None:
            assert da.sel(lead_day=k)["valid_start"].values == (issue + np.timedelta64(n, "D")).astype("datetime64[ns]")
    assert nwp.lead_days_for_issue("2024-01-01T00:00", "2023-12-31", 2) == [1, 2]
    assert nwp.lead_days_for_issue("2024-01-01T12:00", "2023-12-31", 2) == [None, None]  # straddles UTC days
    assert nwp.lead_days_for_issue("2024-01-01T00:00", "2024-01-01", 2) == [None, None]  # started before D ended
    assert nwp.lead_days_for_issue("2024-01-02T00:00", "2023-12-31", 2) == [None, None]  # later run: would leak
    assert nwp.lead_days_for_issue("2024-01-01T00:00", "2023-12-31", 0) == []


# -- the eccodes/pyproj import-order hazard, end to end in subprocesses ---------------------------

def _run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def test_commands_exit_with_their_own_code_not_an_abort(multistep, tmp_path):
    """Without the guard in hydrocast/__init__.py the second command died with 139 (segfault) at exit and
    ``import xarray`` + listing engines with 134; every command must end with its documented code."""
    from tests.test_ingest import make_project

    cfg = make_project(tmp_path / "p")
    res = _run(["-m", "hydrocast", "ingest", "--config", str(cfg), "--quiet", "--json"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["days_added"] == 4
    cube = cfg.parent / "work" / "cube.nc"
    code = (f"import hydrocast.api, xarray; ds = xarray.open_dataset({str(cube)!r}); "
            "print(sorted(xarray.backends.list_engines())); print(ds.sizes['time']); ds.close()")
    res = _run(["-c", code], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "cfgrib" in res.stdout and res.stdout.split()[-1] == "4"
    res = _run(["-m", "hydrocast", "predict", "--config", str(cfg), "--basin", "X", "--out", str(tmp_path / "f"),
                "--quiet", "--json"], tmp_path)
    assert res.returncode == 66 and json.loads(res.stdout)["exit_code"] == 66, res.stderr[-2000:]
    code = (f"from hydrocast.sources import nwp; import pyproj; r = nwp.scan_runs([{str(multistep)!r}]); "
            f"d = nwp.read_run(r[0], {BOX!r}); print(d.sizes['lead_day'], pyproj.CRS('EPSG:3035').to_epsg())")
    res = _run(["-c", code], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["3", "3035"]


# -- CF NetCDF forecasts (written here with netCDF4) --------------------------------------------

NC_LAT = np.array([40.0, 40.5, 41.0])  # south -> north: the reader returns north -> south
NC_LON = np.array([-9.0, -8.5, -8.0, -7.5])


def write_nc(path: Path, values: np.ndarray, steps_h, *, refs=("2020-03-02T00:00",), ref_dim="forecast_reference_time",
             step_dim="step", members: int | None = None, units="m", bounds=None, cell_methods=None) -> Path:
    """values: (ref, [member,] step, lat, lon)."""
    import netCDF4

    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension(ref_dim, len(refs))
        ds.createDimension(step_dim, len(steps_h))
        ds.createDimension("latitude", NC_LAT.size)
        ds.createDimension("longitude", NC_LON.size)
        dims = (ref_dim,) + (("number",) if members else ()) + (step_dim, "latitude", "longitude")
        if members:
            ds.createDimension("number", members)
            ds.createVariable("number", "i4", ("number",))[:] = np.arange(members)
        v = ds.createVariable(ref_dim, "f8", (ref_dim,))
        v.units, v.standard_name = "hours since 2020-01-01 00:00:00", "forecast_reference_time"
        v[:] = [(np.datetime64(r) - np.datetime64("2020-01-01T00:00")).astype("timedelta64[h]").astype(float)
                for r in refs]
        v = ds.createVariable(step_dim, "f8", (step_dim,))
        v.units, v.standard_name = "hours", "forecast_period"
        v[:] = steps_h
        if bounds is not None:
            v.bounds = f"{step_dim}_bnds"
            ds.createDimension("nv", 2)
            ds.createVariable(f"{step_dim}_bnds", "f8", (step_dim, "nv"))[:] = bounds
        ds.createVariable("latitude", "f8", ("latitude",))[:] = NC_LAT
        ds.createVariable("longitude", "f8", ("longitude",))[:] = NC_LON
        v = ds.createVariable("tp", "f4", dims, fill_value=np.float32(np.nan))
        v.units = units
        if cell_methods:
            v.cell_methods = cell_methods
        v[:] = values
    return path


def nc_daily(seed: int, n_days: int, shape=(NC_LAT.size, NC_LON.size)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.gamma(0.8, 5.0, size=(n_days,) + shape)


def test_netcdf_accumulated_runs(tmp_path):
    d0, d1 = nc_daily(0, 3), nc_daily(1, 3)
    acc = np.stack([np.concatenate([np.zeros((1,) + d.shape[1:]), np.cumsum(d, axis=0)]) for d in (d0, d1)]) / 1000
    path = write_nc(tmp_path / "fc.nc", acc, [0, 24, 48, 72], refs=("2020-03-02T00:00", "2020-03-03T00:00"))
    runs = nwp.scan_netcdf_runs([path], {"variable": "tp"})
    assert [str(r.reference_time) for r in runs] == ["2020-03-02T00:00", "2020-03-03T00:00"]
    assert runs[0].lead_days == 3 and not runs[0].ensemble and not runs[0].per_step
    da = nwp.read_netcdf_run(runs[1], (-8.6, 39.9, -7.4, 41.1))
    assert da.dims == ("member", "lead_day", "y", "x") and da.dtype == np.float32 and da.attrs["units"] == "mm"
    assert list(da["y"].values) == [41.0, 40.5, 40.0] and list(da["x"].values) == [-8.5, -8.0, -7.5]
    np.testing.assert_allclose(da.values[0], d1[:, ::-1, 1:], rtol=1e-4, atol=1e-3)  # by hand: flipped, clipped
    assert [str(t)[:13] for t in da["valid_start"].values] == ["2020-03-03T00", "2020-03-04T00", "2020-03-05T00"]
    assert nwp.lead_days_for_issue(runs[1].reference_time, "2020-03-02", 3) == [1, 2, 3]


@pytest.mark.parametrize("how", ["bounds", "cell_methods"])
def test_netcdf_per_step_totals_ensemble_time_and_lead_dims(tmp_path, how):
    """6-hourly per-step totals (bounds consecutive, or cell_methods "lead: sum"), 2 members, dims time x lead."""
    rng = np.random.default_rng(5)
    steps = np.arange(6, 49, 6)
    per = rng.gamma(0.5, 1.0, size=(1, 2, steps.size, NC_LAT.size, NC_LON.size))  # mm
    kw = ({"bounds": np.stack([steps - 6, steps], axis=1)} if how == "bounds" else {"cell_methods": "lead: sum"})
    path = write_nc(tmp_path / "ens.nc", per, steps, ref_dim="time", step_dim="lead", members=2, units="mm", **kw)
    (run,) = nwp.scan_netcdf_runs([path], {})
    assert run.per_step and run.ensemble and run.members == (0, 1) and run.lead_days == 2
    da = nwp.read_netcdf_run(run)
    want = per[0].reshape(2, 2, 4, NC_LAT.size, NC_LON.size).sum(axis=2)[:, :, ::-1]  # 4 steps a day, by hand
    np.testing.assert_allclose(da.values, want, rtol=1e-5)
    assert "ensemble" in run.label


def test_netcdf_bad_files_refused(tmp_path):
    d = np.cumsum(nc_daily(2, 2), axis=0)[None]
    cases = {
        write_nc(tmp_path / "kelvin.nc", d, [24, 48], units="K"): "units 'K'",
        write_nc(tmp_path / "bnds.nc", d, [24, 48], bounds=[[12, 24], [30, 48]]): "neither accumulations",
        write_nc(tmp_path / "gap.nc", np.cumsum(nc_daily(3, 2), axis=0)[None], [24, 72]): "lacks step(s) 48 h",
    }
    html = tmp_path / "page.nc"
    html.write_bytes(b"<html>404</html>")
    cases[html] = "HTML"
    for path, what in cases.items():
        rejected: list = []
        runs = nwp.scan_netcdf_runs([path], {}, rejected=rejected)
        if runs:
            with pytest.raises(BadInputError) as e:
                nwp.read_netcdf_run(runs[0])
            msg = str(e.value)
        else:
            (_, msg), = rejected
        assert msg.startswith(str(path)) and what in msg and "\n" not in msg, msg
