"""ESA CCI SM reader: the real global COMBINED v04.5 and PASSIVE v04.2 files, plus small synthetic
files in the same layout for flags the real files do not exercise (in the real files every flagged
cell already has a fill value in ``sm``) and for the ACTIVE product."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from hydrocast import config, ingest
from hydrocast.errors import BadInputError, ConfigError
from hydrocast.sources import esacci

DIR = "esa-cci-sm"
COMBINED = "ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-20100701000000-fv04.5.nc"
PASSIVE = "ESACCI-SOILMOISTURE-L3S-SSMV-PASSIVE-20161227000000-fv04.2.nc"
EUROPE = (-10.0, 35.0, 30.0, 60.0)


def independent_mask(path: Path, flag_mask: int = 63):
    """sm kept where not fill, flag not fill, flag & mask == 0 and 0 <= sm <= 1 (raw netCDF4)."""
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_mask(False)
        sm = ds["sm"][0].astype("f8")
        flag = ds["flag"][0].astype("i2")
        lat, lon = ds["lat"][:].astype("f8"), ds["lon"][:].astype("f8")
    ok = (sm != -9999) & (flag != 127) & ((flag & flag_mask) == 0) & (sm >= 0) & (sm <= 1)
    return np.where(ok, sm, np.nan), lat, lon


@pytest.mark.parametrize("name, day, n_valid", [(COMBINED, "2010-07-01", 164073), (PASSIVE, "2016-12-27", 59125)])
def test_real_global_equals_independent(shared_data, name, day, n_valid):
    path = shared_data / DIR / name
    expected, lat, lon = independent_mask(path)
    da = esacci.read(path, {}, None)
    assert da.dims == ("time", "y", "x") and da.dtype == np.float32 and da.shape == (1, 720, 1440)
    np.testing.assert_array_equal(da.values[0], expected.astype("f4"))
    assert int(np.isfinite(da.values).sum()) == n_valid
    np.testing.assert_allclose(da["y"].values, lat)  # north to south, as stored
    assert da["y"].values[0] > da["y"].values[-1]
    np.testing.assert_allclose(da["x"].values, lon)
    assert da["time"].values[0] == np.datetime64(day, "ns")
    assert da.attrs["units"] == "m3 m-3" and da.attrs["step"] == "1D" and da.attrs["run"] == ""
    assert da.attrs["source_file"] == name and da.rio.crs.to_epsg() == 4326
    info = esacci.scan(path, {})
    assert info.days == (np.datetime64(day),) and info.step == "1D" and info.run == ""


def test_real_europe_subset(shared_data):
    path = shared_data / DIR / COMBINED
    full, lat, lon = independent_mask(path)
    rows = np.nonzero((lat >= EUROPE[1] - 0.125) & (lat <= EUROPE[3] + 0.125))[0]
    cols = np.nonzero((lon >= EUROPE[0] - 0.125) & (lon <= EUROPE[2] + 0.125))[0]
    da = esacci.read(path, {}, EUROPE)
    assert da.shape == (1, rows.size, cols.size) and rows.size < 720 // 4
    np.testing.assert_array_equal(da.values[0], full[np.ix_(rows, cols)].astype("f4"))
    np.testing.assert_allclose(da["y"].values, lat[rows])
    np.testing.assert_allclose(da["x"].values, lon[cols])
    assert np.isfinite(da.values).sum() > 1000  # Europe in July: plenty of retrievals


def test_real_flags_are_already_reflected_in_sm(shared_data):
    """Documents a surprise: in these files sm is fill wherever flag != 0, so flag_mask=0 changes nothing."""
    path = shared_data / DIR / PASSIVE
    a = esacci.read(path, {}, EUROPE)
    b = esacci.read(path, {"flag_mask": 0}, EUROPE)
    np.testing.assert_array_equal(a.values, b.values)


def test_real_outside_region(shared_data):
    path = shared_data / DIR / PASSIVE
    with pytest.raises(BadInputError, match="outside the region"):
        esacci.read(path, {}, (200.0, 95.0, 210.0, 99.0))


# ------------------------------------------------------------------------------------------------
# synthetic files in the ESA CCI layout
# ------------------------------------------------------------------------------------------------

def write_cci(path: Path, sm, flag, *, units="m3 m-3", day="2021-03-04", valid_range=(0.0, 1.0)):
    """An ESA CCI L3S day on a 0.25° grid from (50.875 N, 5.125 E); ``flag=None``: no flag variable."""
    ny, nx = sm.shape
    lat = 50.875 - 0.25 * np.arange(ny)  # north to south
    lon = 5.125 + 0.25 * np.arange(nx)
    with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as ds:
        ds.createDimension("time", 1)
        ds.createDimension("lat", ny)
        ds.createDimension("lon", nx)
        t = ds.createVariable("time", "f8", ("time",))
        t.units = "days since 1970-01-01 00:00:00 UTC"
        t[:] = [(dt.date.fromisoformat(day) - dt.date(1970, 1, 1)).days]
        ds.createVariable("lat", "f4", ("lat",))[:] = lat
        ds.createVariable("lon", "f4", ("lon",))[:] = lon
        v = ds.createVariable("sm", "f4", ("time", "lat", "lon"), fill_value=np.float32(-9999.0), zlib=True)
        v.units = units
        if valid_range is not None:
            v.valid_range = np.array(valid_range, "f4")
        v.set_auto_mask(False)
        v[:] = np.asarray(sm, "f4")[None]
        if flag is not None:
            f = ds.createVariable("flag", "i1", ("time", "lat", "lon"), fill_value=np.int8(127))
            f.set_auto_mask(False)
            f[:] = np.asarray(flag, "i1")[None]
    return path


def _flag_case():
    sm = np.full((3, 4), 0.3, "f4")
    sm[0, 0] = -9999.0  # fill
    sm[2, 3] = 1.5  # outside valid_range
    flag = np.array([[0, 0, 1, 2],
                     [64, 65, 32, 16],
                     [127, 4, 8, 0]], "i1")
    return sm, flag


def test_flag_masking_default_keeps_barren_bit(tmp_path):
    sm, flag = _flag_case()
    path = write_cci(tmp_path / "ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-20210304000000-fv08.1.nc", sm, flag)
    da = esacci.read(path, {}, None)
    kept = np.isfinite(da.values[0])
    assert kept.tolist() == [[False, True, False, False],
                             [True, False, False, False],
                             [False, False, False, False]]
    assert da.values[0, 1, 0] == pytest.approx(0.3)  # flag 64 (barren ground) kept
    assert da.attrs["flag_mask"] == 63


@pytest.mark.parametrize("mask, expected_kept", [
    (0, {(0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3), (2, 1), (2, 2)}),
    (127, {(0, 1)}),
    (1, {(0, 1), (0, 3), (1, 0), (1, 2), (1, 3), (2, 1), (2, 2)}),
])
def test_flag_mask_option(tmp_path, mask, expected_kept):
    sm, flag = _flag_case()
    path = write_cci(tmp_path / "ESACCI-SOILMOISTURE-L3S-SSMV-PASSIVE-20210304000000-fv08.1.nc", sm, flag)
    da = esacci.read(path, {"flag_mask": mask}, None)
    kept = {tuple(map(int, ij)) for ij in np.argwhere(np.isfinite(da.values[0]))}
    # fill sm (0,0), flag fill 127 (2,0) and out-of-range sm (2,3) are never kept
    assert kept == expected_kept


def test_flag_mask_must_be_an_integer(tmp_path):
    sm, flag = _flag_case()
    path = write_cci(tmp_path / "ESACCI-SOILMOISTURE-L3S-SSMV-PASSIVE-20210304000000-fv08.1.nc", sm, flag)
    with pytest.raises(ConfigError, match="flag_mask"):
        esacci.read(path, {"flag_mask": "63"}, None)


def test_active_rejected_then_converted_with_porosity(tmp_path):
    sm = np.array([[40.0, 80.0], [100.0, -9999.0]], "f4")
    flag = np.zeros((2, 2), "i1")
    path = write_cci(tmp_path / "ESACCI-SOILMOISTURE-L3S-SSMS-ACTIVE-20210304000000-fv08.1.nc", sm, flag,
                     units="percent", valid_range=(0.0, 100.0))
    with pytest.raises(BadInputError) as exc:
        esacci.read(path, {}, None)
    msg = str(exc.value)
    assert msg.startswith(str(path))
    assert "ACTIVE product is in percent of saturation" in msg and "m3 m-3" in msg and "COMBINED or PASSIVE" in msg
    da = esacci.read(path, {"porosity": 0.45}, None)
    np.testing.assert_allclose(da.values[0], [[0.18, 0.36], [0.45, np.nan]], rtol=1e-6)
    assert da.attrs["units"] == "m3 m-3" and "porosity 0.45" in da.attrs["converted"]
    with pytest.raises(ConfigError, match="porosity"):
        esacci.read(path, {"porosity": 45}, None)


def test_unit_spellings_and_unknown_units(tmp_path):
    sm, flag = np.full((2, 2), 0.2, "f4"), np.zeros((2, 2), "i1")
    ok = write_cci(tmp_path / "ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-20210304000000-fv08.1.nc", sm, flag,
                   units="m^3 m^-3")
    assert esacci.read(ok, {}, None).attrs["units"] == "m3 m-3"
    bad = write_cci(tmp_path / "ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-20210305000000-fv08.1.nc", sm, flag,
                    units="inches", day="2021-03-05")
    with pytest.raises(BadInputError, match="unknown soil moisture units 'inches'"):
        esacci.read(bad, {}, None)


def test_time_must_match_name(tmp_path):
    sm, flag = np.full((2, 2), 0.2, "f4"), np.zeros((2, 2), "i1")
    path = write_cci(tmp_path / "ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-20210304000000-fv08.1.nc", sm, flag,
                     day="2021-03-05")
    assert esacci.scan(path, {}).days == (np.datetime64("2021-03-04"),)  # scan reads the name only
    with pytest.raises(BadInputError, match="time variable says 2021-03-05, but the file name says 2021-03-04") as exc:
        esacci.read(path, {}, None)
    assert str(exc.value).startswith(str(path))


def test_bad_files(tmp_path, shared_data):
    html = tmp_path / COMBINED
    html.write_bytes(b"<html><head><title>403 Forbidden</title></head></html>")
    with pytest.raises(BadInputError, match="HTML"):
        esacci.scan(html, {})
    name = tmp_path / "soil_moisture_20210304.nc"
    write_cci(name, np.zeros((2, 2), "f4"), np.zeros((2, 2), "i1"))
    with pytest.raises(BadInputError, match="not an ESA CCI SM L3S name"):
        esacci.scan(name, {})
    trunc = tmp_path / PASSIVE
    data = (shared_data / DIR / PASSIVE).read_bytes()
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="truncated or corrupt") as exc:
        esacci.read(trunc, {}, None)
    assert str(exc.value).startswith(str(trunc))


# ------------------------------------------------------------------------------------------------
# variable = "frozen": the frozen/snow flag (bit 1) as a signal
# ------------------------------------------------------------------------------------------------

def independent_frozen(path: Path) -> np.ndarray:
    """1 where flag has bit 1, 0 where flag is another observed value, NaN where flag is 127 (raw netCDF4)."""
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_mask(False)
        flag = ds["flag"][0].astype("i2")
    out = np.where(flag % 2 == 1, 1.0, 0.0)
    out[flag == 127] = np.nan
    return out


@pytest.mark.parametrize("name, n_frozen, n_observed", [(COMBINED, 7147, 215416), (PASSIVE, 0, 87462)])
def test_real_frozen_is_the_flag_bit(shared_data, name, n_frozen, n_observed):
    """Counts from the files' flag histograms: COMBINED (July 2010) has bit 1 in 7147 cells (values 1, 3, 5, 7,
    17, 19, 21, 23: the austral winter, high mountains); this PASSIVE December file sets it nowhere (its
    frozen north has no retrieval at all, flag 127)."""
    path = shared_data / DIR / name
    da = esacci.read(path, {"variable": "frozen"}, None)
    assert da.dims == ("time", "y", "x") and da.dtype == np.float32 and da.shape == (1, 720, 1440)
    np.testing.assert_array_equal(da.values[0], independent_frozen(path).astype("f4"))  # NaN where NaN
    assert int(np.nansum(da.values)) == n_frozen and int(np.isfinite(da.values).sum()) == n_observed
    assert da.attrs["units"] == "1" and da.attrs["variable"] == "frozen"
    # flag_mask does not change the frozen signal; sm masks every frozen cell
    np.testing.assert_array_equal(esacci.read(path, {"variable": "frozen", "flag_mask": 0}, EUROPE).values,
                                  esacci.read(path, {"variable": "frozen"}, EUROPE).values)
    sm = esacci.read(path, {}, None).values
    assert not np.isfinite(sm[da.values == 1]).any()


def test_frozen_values_by_hand(tmp_path):
    sm, flag = _flag_case()  # flags [[0, 0, 1, 2], [64, 65, 32, 16], [127, 4, 8, 0]]
    path = write_cci(tmp_path / "ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-20210304000000-fv08.1.nc", sm, flag)
    da = esacci.read(path, {"variable": "frozen"}, None)
    nan = np.nan
    np.testing.assert_array_equal(da.values[0], [[0, 0, 1, 0], [0, 1, 0, 0], [nan, 0, 0, 0]])
    assert esacci.read(path, {"variable": "sm"}, None).attrs["units"] == "m3 m-3"


def test_frozen_needs_the_flag_not_sm(tmp_path):
    no_flag = write_cci(tmp_path / "ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-20210304000000-fv08.1.nc",
                        np.full((2, 2), 0.2, "f4"), None)
    with pytest.raises(BadInputError, match="has no variable 'flag'") as exc:
        esacci.read(no_flag, {"variable": "frozen"}, None)
    assert str(exc.value).startswith(str(no_flag))
    with pytest.raises(ConfigError, match="variable must be one of 'sm', 'frozen', got 'snow'"):
        esacci.scan(no_flag, {"variable": "snow"})


FROZEN_TOML = """
[grid]
bounds = [5.0, 50.0, 6.0, 51.0]
resolution = 0.5

[[sources]]
name = "frozen_ground"
kind = "esacci_sm"
variable = "frozen"
paths = ["*.nc"]

[cube]
path = "cube.nc"
margin_cells = 0
"""


def test_frozen_fraction_on_the_cube_by_hand(tmp_path):
    """4 x 4 pixels of 0.25° averaged onto 2 x 2 cells of 0.5°: each cell's fraction is its flagged pixels
    over its observed ones (GDAL's average skips NaN), counted here by hand."""
    f = np.array([[1, 0, 127, 127],  # NW cell: 1 of 4 flagged (1, 0, 2, 0); NE: 1 of its 2 observed (3, 0)
                  [2, 0, 3, 0],
                  [127, 127, 1, 5],  # SW: no retrieval at all -> NaN; SE: 4 of 4 (1, 5, 17, 65)
                  [127, 127, 17, 65]], "i1")
    name = "ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED-20210304000000-fv08.1.nc"
    write_cci(tmp_path / name, np.full((4, 4), 0.2, "f4"), f)
    (tmp_path / "hydrocast.toml").write_text(FROZEN_TOML)
    ingest.ingest(config.load(tmp_path / "hydrocast.toml"))
    with netCDF4.Dataset(tmp_path / "cube.nc") as ds:
        v = ds["frozen_ground"]
        np.testing.assert_allclose(v[0].filled(np.nan), [[1 / 4, 1 / 2], [np.nan, 1.0]], rtol=1e-6)
        assert v.units == "1" and v.cell_methods == "time: mean"
        assert v.long_name == "fraction of the cell flagged frozen or snow-covered by ESA CCI SM"
