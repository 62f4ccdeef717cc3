"""IMERG reader: real V06B/V07A half-hourly cuts and GES DISC monthly subsets, plus synthetic
files built here with h5py/netCDF4 for what the real files cannot show (a wet cell, global size,
daily products, runs, broken files)."""

from __future__ import annotations

import datetime as dt
import tracemalloc
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pytest
import xarray as xr

from hydrocast.errors import BadInputError
from hydrocast.sources import RUN_RANK, FileInfo, imerg

HHR_DIR = "imerg-hhr-gpm-api-cut"
MO_DIR = "imerg-monthly-java"
V06 = "3B-HHR.MS.MRG.3IMERG.20000601-S000000-E002959.0000.V06B.HDF5"
V07 = "3B-HHR.MS.MRG.3IMERG.20000601-S000000-E002959.0000.V07A.HDF5"


def _hdr(start: str, stop: str, interval: str = "HALF_HOUR") -> bytes:
    return (f"DOI=10.5067/GPM/IMERG/3B-HH/07;\nStartGranuleDateTime={start}.000Z;\n"
            f"StopGranuleDateTime={stop}.999Z;\nTimeInterval={interval};\nProductVersion=V07B;\n").encode()


def write_hhr(path: Path, lon, lat, values, *, var="precipitation", units="mm/hr",
              start="2020-01-01T00:00:00", epoch=dt.datetime(1980, 1, 6), header_start=None,
              extra_vars: dict | None = None, chunks=None) -> Path:
    """A half-hourly IMERG-like HDF5 granule: /Grid, (time, lon, lat), -9999.9 fill."""
    t0 = dt.datetime.fromisoformat(start)
    with h5py.File(path, "w") as f:
        hs = header_start or start
        f.attrs["FileHeader"] = np.bytes_(_hdr(hs, (t0 + dt.timedelta(minutes=29, seconds=59)).isoformat()))
        g = f.create_group("Grid")
        g.create_dataset("lon", data=np.asarray(lon, "f4"))
        g.create_dataset("lat", data=np.asarray(lat, "f4"))
        tv = g.create_dataset("time", data=np.array([int((t0 - epoch).total_seconds())], "i4"))
        tv.attrs["units"] = np.bytes_(f"seconds since {epoch:%Y-%m-%d %H:%M:%S} UTC".encode())
        tv.attrs["calendar"] = np.bytes_(b"julian")
        for name, (arr, u) in {var: (values, units), **(extra_vars or {})}.items():
            arr = np.asarray(arr)
            d = g.create_dataset(name, data=arr[None], chunks=chunks, compression="gzip" if chunks else None)
            d.attrs["DimensionNames"] = np.bytes_(b"time,lon,lat")
            d.attrs["_FillValue"] = np.array(-9999 if arr.dtype.kind == "i" else -9999.9, dtype=arr.dtype)
            d.attrs["CodeMissingValue"] = np.bytes_(b"-9999" if arr.dtype.kind == "i" else b"-9999.9")
            if u is not None:
                d.attrs["units"] = np.bytes_(u.encode())
    return path


def write_daily_nc4(path: Path, lon, lat, values, *, var="precipitation", units="mm/day", day="2023-07-15"):
    """A flat daily nc4 like 3B-DAY (time, lon, lat)."""
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", 1)
        ds.createDimension("lon", len(lon))
        ds.createDimension("lat", len(lat))
        t = ds.createVariable("time", "i4", ("time",))
        t.units = "seconds since 1970-01-01 00:00:00Z"
        t[:] = [int((dt.datetime.fromisoformat(day) - dt.datetime(1970, 1, 1)).total_seconds())]
        ds.createVariable("lon", "f4", ("lon",))[:] = lon
        ds.createVariable("lat", "f4", ("lat",))[:] = lat
        v = ds.createVariable(var, "f4", ("time", "lon", "lat"), fill_value=np.float32(-9999.9))
        v.units = units
        v[:] = np.asarray(values, "f4")[None]
    return path


def small_grid():
    lon = np.round(10.05 + 0.1 * np.arange(5), 2)
    lat = np.round(45.05 + 0.1 * np.arange(4), 2)
    vals = np.arange(20, dtype="f4").reshape(5, 4) / 10.0  # (lon, lat)
    return lon, lat, vals


# ------------------------------------------------------------------------------------------------
# real files
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected_var", [(V06, "precipitationCal"), (V07, "precipitation")])
def test_real_hhr_values_equal_raw_arrays(shared_data, name, expected_var):
    path = shared_data / HHR_DIR / name
    da = imerg.read(path, {}, None)
    with h5py.File(path, "r") as f:
        g = f["Grid"]
        assert expected_var in g and ("precipitationCal" in g) == (expected_var == "precipitationCal")
        raw = g[expected_var][0].astype("f8").T  # (lat, lon)
        lat, lon = g["lat"][()], g["lon"][()]
        header = f.attrs["FileHeader"].decode()
        tunits = g["time"].attrs["units"].decode()
        tval = int(g["time"][0])
    expected = np.where(raw == np.float32(-9999.9), np.nan, raw * 24.0)
    assert da.dims == ("time", "y", "x") and da.dtype == np.float32
    np.testing.assert_allclose(da.values[0], expected, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(da["x"].values, lon, atol=1e-4)
    np.testing.assert_allclose(da["y"].values, lat, atol=1e-4)
    assert da.attrs["variable"] == expected_var
    assert da.attrs["units"] == "mm/day" and da.attrs["step"] == "30min" and da.attrs["run"] == "final"
    assert da.attrs["source_file"] == name
    assert da.rio.crs.to_epsg() == 4326
    # time from the name equals the header's StartGranuleDateTime and the time variable
    start = header.split("StartGranuleDateTime=")[1].split(".")[0]
    assert da["time"].values[0] == np.datetime64(start, "ns")
    assert da["time"].dtype == np.dtype("datetime64[ns]")
    epoch = dt.datetime.strptime(tunits.replace(" UTC", ""), "seconds since %Y-%m-%d %H:%M:%S")
    assert da["time"].values[0] == np.datetime64(epoch + dt.timedelta(seconds=tval), "ns")


def test_real_v07_epoch_is_1980_and_v06_counts(shared_data):
    da6 = imerg.read(shared_data / HHR_DIR / V06, {}, None)
    da7 = imerg.read(shared_data / HHR_DIR / V07, {}, None)
    assert int(np.isnan(da6.values).sum()) == 100  # all fill in the V06B cut
    assert int((da7.values == 0).sum()) == 70 and int(np.isnan(da7.values).sum()) == 30
    assert da6["time"].values[0] == da7["time"].values[0] == np.datetime64("2000-06-01T00:00", "ns")


def test_real_probability_liquid_is_percent(shared_data):
    path = shared_data / HHR_DIR / V07
    da = imerg.read(path, {"variable": "probabilityLiquidPrecipitation"}, None)
    with h5py.File(path, "r") as f:
        raw = f["Grid/probabilityLiquidPrecipitation"][0].T.astype("f8")
    assert da.attrs["units"] == "percent"
    np.testing.assert_array_equal(da.values[0], np.where(raw == -9999, np.nan, raw))


def test_real_scan(shared_data):
    info = imerg.scan(shared_data / HHR_DIR / V07, {})
    assert isinstance(info, FileInfo)
    assert info.days == (np.datetime64("2000-06-01"),) and info.step == "30min" and info.run == "final"
    assert info.extra["version"] == "V07A"
    # scan looks at the name and signature only; the variable is chosen when the file is read
    assert imerg.read(shared_data / HHR_DIR / V07, {}, None).attrs["variable"] == "precipitation"


def test_real_monthly_bbox_equals_independent_slice(shared_data):
    path = sorted((shared_data / MO_DIR).glob("3B-MO.*.20000601-*"))[0]
    bbox = (108.0, -7.6, 110.5, -6.2)
    da = imerg.read(path, {}, bbox)
    with xr.open_dataset(path) as ds:
        p = ds["precipitation"].load()
    sub = p.where((p.lon >= bbox[0] - 0.05 - 1e-4) & (p.lon <= bbox[2] + 0.05 + 1e-4)
                  & (p.lat >= bbox[1] - 0.05 - 1e-4) & (p.lat <= bbox[3] + 0.05 + 1e-4), drop=True)
    expected = sub.isel(time=0).transpose("lat", "lon").values * 24.0
    assert da.shape == (1,) + expected.shape
    assert da.shape[1] < p.sizes["lat"] and da.shape[2] < p.sizes["lon"]
    np.testing.assert_allclose(da.values[0], expected, rtol=1e-6)
    np.testing.assert_allclose(da["x"].values, sub.lon.values, atol=1e-4)
    np.testing.assert_allclose(da["y"].values, sub.lat.values, atol=1e-4)
    assert da.attrs["step"] == "1MS" and da.attrs["units"] == "mm/day"
    assert da["time"].values[0] == np.datetime64("2000-06-01", "ns")


@pytest.mark.parametrize("month, ndays", [("20000601", 30), ("20010201", 28), ("20010101", 31)])
def test_real_monthly_scan_days(shared_data, month, ndays):
    path = next((shared_data / MO_DIR).glob(f"3B-MO.*.{month}-*"))
    info = imerg.scan(path, {})
    assert info.step == "1MS" and info.run == "final"
    first = np.datetime64(f"{month[:4]}-{month[4:6]}-01")
    assert info.days == tuple(first + np.arange(ndays))


def test_real_truncated_file(shared_data, tmp_path):
    src = (shared_data / HHR_DIR / V07).read_bytes()
    bad = tmp_path / V07
    bad.write_bytes(src[: len(src) // 2])
    for fn in (lambda: imerg.scan(bad, {}), lambda: imerg.read(bad, {}, None)):
        with pytest.raises(BadInputError) as exc:
            fn()
        assert str(exc.value).startswith(str(bad)) and "truncated or corrupt" in str(exc.value)


def test_real_outside_bbox(shared_data):
    path = shared_data / HHR_DIR / V07
    with pytest.raises(BadInputError, match=r"outside the region") as exc:
        imerg.read(path, {}, (10.0, 40.0, 12.0, 42.0))
    assert str(exc.value).startswith(str(path)) and "covers lon -179.95..-179.05" in str(exc.value)


# ------------------------------------------------------------------------------------------------
# synthetic: global granule
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def global_granule(tmp_path_factory):
    lon = np.round(-179.95 + 0.1 * np.arange(3600), 2)
    lat = np.round(-89.95 + 0.1 * np.arange(1800), 2)
    vals = np.zeros((3600, 1800), "f4")
    i, j = int(np.argmin(np.abs(lon - 10.05))), int(np.argmin(np.abs(lat - 45.05)))
    vals[i, j] = 2.5  # mm/hr -> 60 mm/day
    vals[i + 1, j] = -9999.9  # a fill cell next to it
    vals[0, 900] = 1.0  # a wet cell at lon -179.95 (antimeridian test)
    path = tmp_path_factory.mktemp("imerg") / "3B-HHR-L.MS.MRG.3IMERG.20200101-S003000-E005959.0030.V07B.HDF5"
    return write_hhr(path, lon, lat, vals, start="2020-01-01T00:30:00", chunks=(1, 200, 200))


def test_global_granule_small_bbox_reads_only_the_region(global_granule):
    bbox = (9.8, 44.8, 10.3, 45.3)
    imerg.read(global_granule, {}, (0.0, 0.0, 0.2, 0.2))  # warm-up: imports are not counted below
    tracemalloc.start()
    try:
        da = imerg.read(global_granule, {}, bbox)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full = 3600 * 1800 * 4
    assert peak < full / 20, f"peak {peak} bytes: the whole field seems to have been read"
    assert da.shape == (1, 7, 7)  # 9.75..10.35 and 44.75..45.35 (centres within the box + half a cell)
    wet = np.argwhere(da.values[0] > 0)
    assert wet.tolist() == [[int(np.argmin(np.abs(da.y.values - 45.05))), int(np.argmin(np.abs(da.x.values - 10.05)))]]
    assert da.sel(x=10.05, y=45.05, method="nearest").item() == pytest.approx(60.0)
    assert np.isnan(da.sel(x=10.15, y=45.05, method="nearest").item())
    assert np.nansum(da.values) == pytest.approx(60.0)
    assert da.attrs["run"] == "late"
    assert da["time"].values[0] == np.datetime64("2020-01-01T00:30", "ns")


def test_global_granule_bbox_across_antimeridian(global_granule):
    da = imerg.read(global_granule, {}, (179.7, -0.2, -179.7, 0.2))
    x = da["x"].values
    assert np.allclose(np.diff(x), 0.1, atol=1e-6)  # one regular, increasing axis across the seam
    assert x[0] == pytest.approx(179.65) and x[-1] == pytest.approx(180.35)
    assert da.sel(x=180.05, y=0.05, method="nearest").item() == pytest.approx(24.0)
    assert np.nansum(da.values) == pytest.approx(24.0)


# ------------------------------------------------------------------------------------------------
# synthetic: daily products, runs, units
# ------------------------------------------------------------------------------------------------

def test_daily_v07_nc4_mm_per_day(tmp_path):
    lon, lat, vals = small_grid()
    vals[2, 1] = -9999.9
    path = write_daily_nc4(tmp_path / "3B-DAY-E.MS.MRG.3IMERG.20230715-S000000-E235959.V07B.nc4", lon, lat, vals)
    info = imerg.scan(path, {})
    assert info.step == "1D" and info.run == "early" and info.days == (np.datetime64("2023-07-15"),)
    da = imerg.read(path, {}, None)
    expected = np.where(vals == np.float32(-9999.9), np.nan, vals).T
    np.testing.assert_allclose(da.values[0], expected, rtol=1e-6, equal_nan=True)
    assert da.attrs["units"] == "mm/day" and da.attrs["step"] == "1D" and da.attrs["run"] == "early"
    assert da["time"].values[0] == np.datetime64("2023-07-15", "ns")


def test_daily_v06_style_mm_is_a_daily_amount(tmp_path):
    lon, lat, vals = small_grid()
    path = write_daily_nc4(tmp_path / "3B-DAY.MS.MRG.3IMERG.20190302-S000000-E235959.V06.nc4.SUB.nc4",
                           lon, lat, vals, var="precipitationCal", units="mm", day="2019-03-02")
    da = imerg.read(path, {}, None)
    assert da.attrs["variable"] == "precipitationCal" and da.attrs["run"] == "final"
    np.testing.assert_allclose(da.values[0], vals.T, rtol=1e-6)


def test_daily_time_variable_must_match_name(tmp_path):
    lon, lat, vals = small_grid()
    path = write_daily_nc4(tmp_path / "3B-DAY.MS.MRG.3IMERG.20230715-S000000-E235959.V07B.nc4",
                           lon, lat, vals, day="2023-07-16")
    assert imerg.scan(path, {}).days == (np.datetime64("2023-07-15"),)  # scan reads the name only
    with pytest.raises(BadInputError, match="time variable says 2023-07-16") as exc:
        imerg.read(path, {}, None)
    assert str(exc.value).startswith(str(path))


@pytest.mark.parametrize("prefix, run", [("3B-HHR-E", "early"), ("3B-HHR-L", "late"), ("3B-HHR", "final")])
@pytest.mark.parametrize("ext", ["V07B.HDF5", "V06B.RT-H5"])
def test_runs_from_names(tmp_path, prefix, run, ext):
    lon, lat, vals = small_grid()
    path = write_hhr(tmp_path / f"{prefix}.MS.MRG.3IMERG.20200101-S233000-E235959.1410.{ext}",
                     lon, lat, vals, start="2020-01-01T23:30:00")
    info = imerg.scan(path, {})
    assert info.run == run and run in RUN_RANK
    assert info.days == (np.datetime64("2020-01-01"),) and info.step == "30min"
    da = imerg.read(path, {}, None)
    assert da.attrs["run"] == run
    assert da["time"].values[0] == np.datetime64("2020-01-01T23:30", "ns")
    np.testing.assert_allclose(da.values[0], vals.T * 24, rtol=1e-6)


def test_v06_epoch_and_header_time(tmp_path):
    lon, lat, vals = small_grid()
    path = write_hhr(tmp_path / "3B-HHR.MS.MRG.3IMERG.20150705-S120000-E122959.0720.V06B.HDF5", lon, lat, vals,
                     var="precipitationCal", start="2015-07-05T12:00:00", epoch=dt.datetime(1970, 1, 1))
    da = imerg.read(path, {}, None)
    assert da.attrs["variable"] == "precipitationCal"
    assert da["time"].values[0] == np.datetime64("2015-07-05T12:00", "ns")


def test_header_start_mismatch(tmp_path):
    lon, lat, vals = small_grid()
    path = write_hhr(tmp_path / "3B-HHR.MS.MRG.3IMERG.20200101-S000000-E002959.0000.V07B.HDF5", lon, lat, vals,
                     start="2020-01-01T00:00:00", header_start="2020-01-02T00:00:00")
    with pytest.raises(BadInputError, match="header says the data start at 2020-01-02T00:00:00"):
        imerg.read(path, {}, None)


def test_kg_m2_s_units_and_negative_values(tmp_path):
    lon, lat, vals = small_grid()
    vals = vals / 3600.0
    vals[0, 0] = -5.0  # a negative value that is not the fill: missing, not zero
    path = write_hhr(tmp_path / "3B-HHR.MS.MRG.3IMERG.20200101-S000000-E002959.0000.V07B.HDF5", lon, lat, vals,
                     units="kg m-2 s-1")
    da = imerg.read(path, {}, None)
    expected = vals.T.astype("f8") * 86400
    expected[0, 0] = np.nan
    np.testing.assert_allclose(da.values[0], expected, rtol=1e-5, equal_nan=True)


def test_unknown_units(tmp_path):
    lon, lat, vals = small_grid()
    path = write_hhr(tmp_path / "3B-HHR.MS.MRG.3IMERG.20200101-S000000-E002959.0000.V07B.HDF5", lon, lat, vals,
                     units="furlongs/fortnight")
    with pytest.raises(BadInputError, match=r"unknown precipitation units 'furlongs/fortnight'") as exc:
        imerg.read(path, {}, None)
    assert str(exc.value).startswith(str(path))


def test_missing_variable_lists_what_is_there(tmp_path):
    lon, lat, vals = small_grid()
    path = write_hhr(tmp_path / "3B-HHR.MS.MRG.3IMERG.20200101-S000000-E002959.0000.V07B.HDF5", lon, lat, vals,
                     var="randomError")
    with pytest.raises(BadInputError, match=r"has no variable 'precipitation' \(found: randomError\)"):
        imerg.read(path, {}, None)
    with pytest.raises(BadInputError, match=r"has no variable 'probabilityLiquidPrecipitation'"):
        imerg.read(path, {"variable": "probabilityLiquidPrecipitation"}, None)


def test_html_empty_and_bad_names(tmp_path):
    html = tmp_path / V07
    html.write_bytes(b"<!DOCTYPE html>\n<html><body>Earthdata Login</body></html>")
    with pytest.raises(BadInputError, match="HTML") as exc:
        imerg.scan(html, {})
    assert str(exc.value).startswith(str(html))
    with pytest.raises(BadInputError, match="HTML"):
        imerg.read(html, {}, None)
    empty = tmp_path / "3B-HHR.MS.MRG.3IMERG.20000601-S003000-E005959.0030.V07A.HDF5"
    empty.write_bytes(b"")
    with pytest.raises(BadInputError, match="empty"):
        imerg.scan(empty, {})
    lon, lat, vals = small_grid()
    odd = write_hhr(tmp_path / "precip_20200101.HDF5", lon, lat, vals)
    with pytest.raises(BadInputError, match="not an IMERG granule name"):
        imerg.scan(odd, {})
    wrong_seq = write_hhr(tmp_path / "3B-HHR.MS.MRG.3IMERG.20200101-S003000-E005959.0000.V07B.HDF5", lon, lat, vals,
                          start="2020-01-01T00:30:00")
    with pytest.raises(BadInputError, match="inconsistent"):
        imerg.scan(wrong_seq, {})


# ------------------------------------------------------------------------------------------------
# files without a single valid value (written by tools.sampledata's writers, the real layouts)
# ------------------------------------------------------------------------------------------------
REG_LON = np.round(-8.25 + 0.1 * np.arange(6), 2)  # a regional cut (a GES DISC subset)
REG_LAT = np.round(40.15 + 0.1 * np.arange(5), 2)
GLOBAL_LON = np.round(-179.0 + 2.0 * np.arange(180), 2)  # a global grid (coarse: cheap to write)
GLOBAL_LAT = np.round(-89.0 + 2.0 * np.arange(90), 2)


def _hhr(tmp_path, lon, lat, fill, run="final"):
    """A half-hourly granule, 2020-03-01 00:30, whose (lat, lon) field is ``fill`` everywhere (NaN:
    the writer stores its -9999.9 fill value)."""
    from tools import sampledata as sd

    path = tmp_path / sd.imerg_hhr_name("2020-03-01", 1, run=run)
    return sd.write_imerg_hhr(path, "2020-03-01", 1, np.full((lat.size, lon.size), fill), lon, lat, run=run)


@pytest.mark.parametrize("lon, lat", [(REG_LON, REG_LAT), (GLOBAL_LON, GLOBAL_LAT)], ids=["regional", "global"])
@pytest.mark.parametrize("value", [-5000.0, -1.0])
def test_a_field_of_non_fill_invalid_values_is_refused(tmp_path, lon, lat, value):
    path = _hhr(tmp_path, lon, lat, value)
    with h5py.File(path, "r") as f:  # what the file holds: the value itself, not the fill value
        assert np.all(f["Grid/precipitation"][()] == np.float32(value))
    for bbox in (None, (-8.2, 40.2, -7.8, 40.5)):
        with pytest.raises(BadInputError) as exc:
            imerg.read_arrays(path, {}, bbox)
        msg = str(exc.value)
        assert msg.startswith(f"{path}: no valid precipitation value in the whole field") and f"e.g. {value:g}" in msg
        assert exc.value.exit_code == 65 and "\n" not in msg


def test_a_global_half_hour_of_fill_values_is_refused_a_regional_cut_is_a_gap(tmp_path):
    from tools import sampledata as sd

    glob = _hhr(tmp_path, GLOBAL_LON, GLOBAL_LAT, np.nan)
    with h5py.File(glob, "r") as f:
        assert np.all(f["Grid/precipitation"][()] == sd.IMERG_FILL)
    with pytest.raises(BadInputError, match=r"no valid precipitation value in the whole field \(every value is") as exc:
        imerg.read(glob, {}, (-8.2, 40.2, -7.8, 40.5))
    assert str(exc.value).startswith(str(glob))
    # the same half-hour as a regional cut: a coverage gap, NaN and no error (like the real V06B cut)
    sub = tmp_path / "cut"
    sub.mkdir()
    da = imerg.read(_hhr(sub, REG_LON, REG_LAT, np.nan), {}, None)
    assert da.shape == (1, REG_LAT.size, REG_LON.size) and np.isnan(da.values).all()
    # the probability of liquid precipitation of the global granule: the writer fills it too
    with pytest.raises(BadInputError, match=r"no valid value of 'probabilityLiquidPrecipitation'"):
        imerg.read(glob, {"variable": "probabilityLiquidPrecipitation"}, None)


def test_a_region_without_data_in_a_granule_with_data_elsewhere_is_silent(tmp_path, monkeypatch):
    from tools import sampledata as sd

    rate = np.full((GLOBAL_LAT.size, GLOBAL_LON.size), np.nan)
    rate[-1, -1] = 0.7  # one valid cell, in the last block scanned (lon 179, lat 89)
    rate[45, 90] = -5000.0  # a stray garbage value: one more missing cell, not a broken file
    path = sd.write_imerg_hhr(tmp_path / sd.imerg_hhr_name("2020-03-01", 1), "2020-03-01", 1, rate,
                              GLOBAL_LON, GLOBAL_LAT)
    monkeypatch.setattr(imerg, "_BLOCK", 3 * GLOBAL_LAT.size)  # 3 longitudes a block: 60 blocks
    reads = []
    real = imerg._decode
    monkeypatch.setattr(imerg, "_decode", lambda raw, attrs: reads.append(raw.shape) or real(raw, attrs))
    da = imerg.read(path, {}, (-8.2, 40.2, -7.8, 40.5))
    assert np.isnan(da.values).all()
    # the region, then the whole field block by block up to the block holding the valid value
    assert np.prod(reads[0]) <= 4 and len(reads) == 1 + 60 and reads[-1] == (1, 3, 90)
    whole = imerg.read(path, {}, None)
    assert np.nansum(whole.values) == pytest.approx(0.7 * 24, rel=1e-6) and np.isfinite(whole.values).sum() == 1
    # data in the first block: the scan stops there
    rate[-1, -1], rate[0, 0] = np.nan, 0.7
    sd.write_imerg_hhr(path, "2020-03-01", 1, rate, GLOBAL_LON, GLOBAL_LAT)
    reads.clear()
    assert np.isnan(imerg.read(path, {}, (-8.2, 40.2, -7.8, 40.5)).values).all() and len(reads) == 2


def test_the_usual_path_reads_the_region_only(tmp_path, monkeypatch):
    """A region with a valid value: the whole-field scan is never called."""
    lon, lat, vals = small_grid()
    path = write_hhr(tmp_path / "3B-HHR.MS.MRG.3IMERG.20200101-S000000-E002959.0000.V07B.HDF5", lon, lat, vals)
    monkeypatch.setattr(imerg, "_field_state", lambda *a: pytest.fail("whole field scanned"))
    da = imerg.read(path, {}, (10.0, 45.0, 10.3, 45.3))
    assert np.isfinite(da.values).all()


@pytest.mark.parametrize("value, why", [(-5000.0, "e.g. -5000"), (np.nan, "every value is the fill value")])
def test_a_daily_file_without_a_valid_value_is_refused_even_as_a_regional_cut(tmp_path, value, why):
    """A whole day without one estimate over the file is not a coverage gap of one half-hour."""
    from tools import sampledata as sd

    path = tmp_path / sd.imerg_day_name("2020-03-02")
    sd.write_imerg_day(path, "2020-03-02", np.full((REG_LAT.size, REG_LON.size), value),
                       REG_LON, REG_LAT)
    with pytest.raises(BadInputError, match=r"no valid precipitation value in the whole field") as exc:
        imerg.read(path, {}, (-8.2, 40.2, -7.8, 40.5))
    assert str(exc.value).startswith(str(path)) and why in str(exc.value)
