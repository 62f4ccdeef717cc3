"""Discharge readers: canonical CSV, GRDC daily, CAMELS-US (real files), folders, bad input."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest

from hydrocast.errors import BadInputError, MissingInputError
from hydrocast.observations import CFS_TO_M3S, read_discharge, read_discharge_meta, training_check

CAMELS_IDS = ["01022500", "01547700", "02064000", "03015500"]


def _write(path, text, encoding="utf-8"):
    path.write_text(text, encoding=encoding)
    return path


def _check_contract(df):
    assert isinstance(df.index, pd.DatetimeIndex)
    assert df.index.name == "date" and df.index.tz is None
    assert df.index.dtype == "datetime64[ns]"
    assert (np.diff(df.index.values) == np.timedelta64(1, "D")).all()
    assert all(isinstance(c, str) for c in df.columns)
    assert (df.dtypes == "float64").all()


# -- canonical CSV -----------------------------------------------------------------------------
CSV = """basin_id,date,discharge,quality
01022500,2001-01-01,1.5,good
01022500,2001-01-02,,gap
01022500,2001-01-04,2.0,
01022500,2001-01-05,NaN,
0042,2001-01-03,3.25,
0042,2001-01-04,-999,code
"""


def test_csv_gaps_leading_zeros_and_missing_days(tmp_path):
    path = _write(tmp_path / "q.csv", CSV)
    df = read_discharge(path)
    _check_contract(df)
    assert list(df.columns) == ["0042", "01022500"]  # text ids, sorted, zeros kept
    assert list(df.index) == list(pd.date_range("2001-01-01", "2001-01-05"))  # 01-03 inserted
    np.testing.assert_array_equal(df["01022500"], [1.5, np.nan, np.nan, 2.0, np.nan])
    np.testing.assert_array_equal(df["0042"], [np.nan, np.nan, 3.25, np.nan, np.nan])
    assert df.attrs["source"] == str(path)


def test_csv_select_basins_and_explicit_format(tmp_path):
    path = _write(tmp_path / "q.txt", CSV)
    df = read_discharge(path, basin_ids=["01022500"], fmt="csv")
    assert list(df.columns) == ["01022500"]
    assert df.index[0] == pd.Timestamp("2001-01-01") and df.index[-1] == pd.Timestamp("2001-01-05")
    with pytest.raises(BadInputError, match=r"basin 1022500\b.*leading zeros") as e:
        read_discharge(path, basin_ids=[1022500])
    assert str(e.value).startswith(str(path))


def test_csv_header_case_order_midnight_utc_and_duplicates(tmp_path):
    path = _write(tmp_path / "q.csv", "Date,Discharge,Basin_ID\n"
                  "2001-01-01T00:00:00Z,1.0,7\n2001-01-02,2.0,7\n2001-01-02,2.0,7\n"
                  "2001-01-03,,7\n2001-01-03,4.0,7\n")
    df = read_discharge(path)
    np.testing.assert_array_equal(df["7"], [1.0, 2.0, 4.0])  # agreeing duplicates merged


def test_csv_bad_date_names_file_and_line(tmp_path):
    path = _write(tmp_path / "q.csv", "basin_id,date,discharge\nA,2001-02-28,1\nA,2001-02-30,2\n")
    with pytest.raises(BadInputError, match="line 3") as e:
        read_discharge(path)
    assert str(e.value).startswith(str(path))
    assert "2001-02-30" in str(e.value)


def test_csv_negative_discharge_is_an_error(tmp_path):
    path = _write(tmp_path / "q.csv", "basin_id,date,discharge\nA,2001-01-01,1\n\nA,2001-01-02,-0.5\n")
    with pytest.raises(BadInputError, match=r"line 4: discharge -0.5 is negative") as e:
        read_discharge(path)
    assert str(e.value).startswith(str(path))


def test_csv_conflicting_duplicates(tmp_path):
    path = _write(tmp_path / "q.csv", "basin_id,date,discharge\nA,2001-01-01,1\nA,2001-01-01,2\n")
    with pytest.raises(BadInputError, match=r"basin A on 2001-01-01 .*line 2 \(1\) and line 3 \(2\)"):
        read_discharge(path)


@pytest.mark.parametrize("text, msg", [
    ("basin_id,date\nA,2001-01-01\n", "lacks column discharge"),
    ("basin_id,date,discharge\nA,2001-01-01,lots\n", "line 2: discharge 'lots' is not a number"),
    ("basin_id,date,discharge\nA,2001-01-01 12:00,1\n", "line 2: .*not a whole day"),
    ("basin_id,date,discharge\n", "no data rows"),
    ("", "file is empty"),
    ("  \n\n", "file is empty"),
    ("hello world\n", "unknown discharge file format"),
])
def test_bad_files(tmp_path, text, msg):
    path = _write(tmp_path / "q.csv", text)
    with pytest.raises(BadInputError, match=msg) as e:
        read_discharge(path)
    assert str(e.value).startswith(str(path))


def test_missing_paths(tmp_path):
    with pytest.raises(MissingInputError, match="does not exist"):
        read_discharge(tmp_path / "nope.csv")
    with pytest.raises(MissingInputError, match="no file matches"):
        read_discharge(str(tmp_path / "*.csv"))
    with pytest.raises(MissingInputError, match="no discharge files"):
        read_discharge(tmp_path)


# -- CAMELS-US (real files) --------------------------------------------------------------------
def test_camels_real_file_matches_plain_parse(shared_data):
    path = shared_data / "camels-us-nh/camels_us/usgs_streamflow/01022500_streamflow_qc.txt"
    df = read_discharge(path)
    _check_contract(df)
    assert list(df.columns) == ["01022500"]
    raw = [ln.split() for ln in path.read_text().splitlines()[:20]]
    for (gauge, y, mth, d, cfs, _flag), (day, value) in zip(raw, df["01022500"].items()):
        assert gauge == "01022500"
        assert day == pd.Timestamp(int(y), int(mth), int(d))
        assert value == pytest.approx(float(cfs) * 0.0283168466, rel=1e-12)
    assert df.iloc[0, 0] == pytest.approx(255.0 * 0.0283168466)  # first line: 255.00 cfs
    assert (df.index[0], df.index[-1], len(df)) == (pd.Timestamp("2000-01-01"),
                                                     pd.Timestamp("2002-12-31"), 1096)


def test_camels_folder_and_glob(shared_data):
    folder = shared_data / "camels-us-nh/camels_us/usgs_streamflow"
    df = read_discharge(folder)
    assert list(df.columns) == CAMELS_IDS and df.shape == (1096, 4)
    assert not df.isna().any().any()  # PROVENANCE.md: no -999 in these files
    sub = read_discharge(str(folder / "0[12]*_streamflow_qc.txt"), basin_ids=["02064000", "01547700"])
    assert list(sub.columns) == ["02064000", "01547700"]
    pd.testing.assert_frame_equal(sub, df[["02064000", "01547700"]], check_freq=False,
                                  check_column_type=False, check_names=False)
    meta = read_discharge_meta(folder)
    assert list(meta.index) == CAMELS_IDS and (meta["format"] == "camels").all()
    assert meta["lat"].isna().all()


def test_camels_missing_code_and_gap(tmp_path):
    path = _write(tmp_path / "01234567_streamflow_qc.txt",
                  "01234567 2000 01 01    10.00 A\n"
                  "01234567 2000 01 02  -999.00 M\n"
                  "01234567 2000 01 04    20.00 A:e\n")
    df = read_discharge(path)
    np.testing.assert_allclose(df["01234567"], [10 * CFS_TO_M3S, np.nan, np.nan, 20 * CFS_TO_M3S])
    bad = _write(tmp_path / "bad.txt", "01234567 2000 01 01    10.00 A\n01234567 2000 02 31 1.0 A\n")
    with pytest.raises(BadInputError, match="line 2: 2000 02 31 is not a valid date"):
        read_discharge(bad)
    neg = _write(tmp_path / "neg.txt", "01234567 2000 01 01    -3.00 A\n")
    with pytest.raises(BadInputError, match="line 1: discharge -3 is negative"):
        read_discharge(neg)


# -- GRDC --------------------------------------------------------------------------------------
GRDC_HEADER = """# Title:                 GRDC STATION DATA FILE
#                        --------------
# Format:                DOS-ASCII
# Field delimiter:       ;
# missing values are indicated by -999.000
#
# file generation date:  2024-03-01
#
# GRDC-No.:              6335020
# River:                 RHINE RIVER
# Station:               REES
# Country:               DE
# Latitude (DD):       51.756918
# Longitude (DD):      6.395395
# Catchment area (km\u00b2):      159300.0
# Altitude (m ASL):        8.0
# Next downstream station:      6435060
# Remarks:
# Owner of original data: Germany - Federal Institute of Hydrology (BfG)
#************************************************************
#
# Data Set Content:      MEAN DAILY DISCHARGE (Q)
#                        --------------------
# Unit of measure:                  m\u00b3/s
# Time series:           2000-01 - 2000-01
# No. of years:          1
# Last update:           2024-01-15
#
# Table Header:
#     YYYY-MM-DD - Date
#     hh:mm      - Time
#     Value   - original (provided) data
#************************************************************
#
# Data lines: 4
# DATA
"""

GRDC_NEW = GRDC_HEADER + """YYYY-MM-DD;hh:mm; Value
2000-01-01;--:--;   2140.000
2000-01-02;--:--;   -999.000
2000-01-03;--:--;   2210.500
2000-01-05;--:--;   2300.000
"""

GRDC_OLD = GRDC_HEADER.replace("6335020", "6335021").replace("Catchment area (km\u00b2):      159300.0",
                                                             "Catchment area (km\u00b2):      -999.0") \
    + """YYYY-MM-DD;hh:mm; Original; Calculated; Flag
2000-01-01;--:--;   1000.000;   1005.000;    1
2000-01-02;--:--;   1100.000;   -999.000; -999
2000-01-03;--:--;   1200.000;   1200.000;   99
2000-01-04;--:--;   -999.000;   -999.000; -999
"""


def test_grdc_value_layout_and_metadata(tmp_path):
    path = tmp_path / "6335020_Q_Day.Cmd.txt"
    path.write_bytes(GRDC_NEW.replace("\n", "\r\n").encode("latin-1"))  # DOS text, km² as 0xB2
    df = read_discharge(path)
    _check_contract(df)
    assert list(df.columns) == ["6335020"]
    np.testing.assert_array_equal(df["6335020"], [2140.0, np.nan, 2210.5, np.nan, 2300.0])
    meta = read_discharge_meta(path)
    row = meta.loc["6335020"]
    assert (row["name"], row["river"], row["country"]) == ("REES", "RHINE RIVER", "DE")
    assert row["lat"] == pytest.approx(51.756918) and row["lon"] == pytest.approx(6.395395)
    assert row["area_km2"] == 159300.0 and row["altitude_m"] == 8.0
    assert row["format"] == "grdc" and row["source"] == str(path)


def test_grdc_original_calculated_layout(tmp_path):
    path = _write(tmp_path / "6335021_Q_Day.Cmd.txt", GRDC_OLD, encoding="latin-1")
    df = read_discharge(path)
    # Calculated preferred, Original when Calculated is missing, Flag 99 masked, -999 missing
    np.testing.assert_array_equal(df["6335021"], [1005.0, 1100.0, np.nan, np.nan])
    assert math.isnan(read_discharge_meta(path).loc["6335021", "area_km2"])


def test_grdc_errors(tmp_path):
    bad = _write(tmp_path / "a.txt", GRDC_NEW.replace("2000-01-03;", "2000-13-03;"), "latin-1")
    with pytest.raises(BadInputError, match=r"line 40: date '2000-13-03'") as e:
        read_discharge(bad)
    assert str(e.value).startswith(str(bad))
    assert GRDC_NEW.splitlines()[39].startswith("2000-01-03")
    neg = _write(tmp_path / "b.txt", GRDC_NEW.replace("2210.500", "-5.000"), "latin-1")
    with pytest.raises(BadInputError, match="line 40: discharge -5 is negative"):
        read_discharge(neg)
    monthly = _write(tmp_path / "c.txt", GRDC_NEW.replace("MEAN DAILY", "MEAN MONTHLY"), "latin-1")
    with pytest.raises(BadInputError, match="monthly GRDC file"):
        read_discharge(monthly)
    litres = _write(tmp_path / "d.txt", GRDC_NEW.replace("m\u00b3/s", "l/s"), "latin-1")
    with pytest.raises(BadInputError, match="not m³/s"):
        read_discharge(litres)


def test_folder_merges_grdc_and_camels(tmp_path, shared_data):
    _write(tmp_path / "6335020_Q_Day.Cmd.txt", GRDC_NEW, "latin-1")
    _write(tmp_path / "6335021_Q_Day.Cmd.txt", GRDC_OLD, "latin-1")
    src = shared_data / "camels-us-nh/camels_us/usgs_streamflow/01547700_streamflow_qc.txt"
    shutil.copy(src, tmp_path / src.name)  # a temporary copy, not into the repository
    _write(tmp_path / "README.md", "not a discharge file, ignored in folders\n")
    df = read_discharge(tmp_path)
    assert list(df.columns) == ["01547700", "6335020", "6335021"]
    assert df.index[0] == pd.Timestamp("2000-01-01") and df.index[-1] == pd.Timestamp("2002-12-31")
    assert df.loc["2000-01-05", "6335020"] == 2300.0
    assert df.loc["2000-01-05":, "6335021"].isna().all()
    meta = read_discharge_meta(tmp_path)
    assert meta.loc["6335020", "area_km2"] == 159300.0
    assert meta.loc["01547700", "format"] == "camels"


def test_conflict_across_files(tmp_path):
    _write(tmp_path / "a.csv", "basin_id,date,discharge\nX,2001-01-01,1\n")
    _write(tmp_path / "b.csv", "basin_id,date,discharge\nX,2001-01-02,5\nX,2001-01-01,2\n")
    with pytest.raises(BadInputError, match=r"a.csv: basin X on 2001-01-01 .*line 2 \(1\) and "
                                            r".*b.csv: line 3 \(2\)"):
        read_discharge(tmp_path)


# -- training check ----------------------------------------------------------------------------
def test_training_check_names_the_basin(tmp_path):
    path = _write(tmp_path / "q.csv", "basin_id,date,discharge\n"
                  "A,2001-01-01,1\nA,2001-06-01,2\nB,2001-01-01,\nB,2002-03-01,4\n")
    df = read_discharge(path)
    training_check(df, ("2001-01-01", "2002-12-31"))
    training_check(df, ("2001-01-01", "2001-12-31"), basin_ids=["A"])
    with pytest.raises(BadInputError, match=r"basin B has no discharge observation in the "
                                            r"training period 2001-01-01..2001-12-31") as e:
        training_check(df, ("2001-01-01", "2001-12-31"))
    assert str(e.value).startswith(str(path))
    with pytest.raises(BadInputError, match="basin C has no discharge series"):
        training_check(df, ("2001-01-01", "2001-12-31"), basin_ids=["A", "C"], source="obs.csv")
