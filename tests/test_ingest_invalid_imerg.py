"""`hydrocast ingest` and IMERG files without a single valid value (the fault suite's "all −5000" case).

A broken file (all −5000; a daily file all fill value) is reported like any other bad file (exit
65, one line naming it, the good files used, nothing already in the cube lost); a regional cut of
one half-hour that is all fill value is a gap in the product's coverage and is not. Files are
written with tools.sampledata's writers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from hydrocast.grid import GridSpec
from tests.test_ingest import (
    DAYS,
    IM_LAT,
    IM_LON,
    REGION,
    area_weighted_total,
    cube_path,
    ingest,
    make_project,
    rain,
)
from tools import sampledata as sd


@pytest.mark.parametrize("value", [-5000.0, -0.5, np.nan], ids=["all -5000", "all -0.5", "all fill"])
def test_an_all_invalid_daily_file_is_rejected_and_nothing_is_lost(tmp_path, value):
    cfg = make_project(tmp_path, days=DAYS[:2])
    assert ingest(cfg).exit_code == 0
    with xr.open_dataset(cube_path(cfg)) as ds:
        first = ds["precipitation"].values.copy()
    sd.write_imerg_day(tmp_path / "raw/imerg" / sd.imerg_day_name(DAYS[2]), DAYS[2], rain(2), IM_LON, IM_LAT)
    bad = tmp_path / "raw/imerg" / sd.imerg_day_name(DAYS[3])
    sd.write_imerg_day(bad, DAYS[3], np.full((IM_LAT.size, IM_LON.size), value), IM_LON, IM_LAT)
    res = ingest(cfg)
    assert res.exit_code == 65, res.output
    out = json.loads(res.stdout)
    assert [r["file"] for r in out["rejected"]] == [str(bad)]
    assert out["rejected"][0]["error"].startswith(f"{bad}: no valid precipitation value")
    assert res.stderr.count("rejected:") == 1 and str(bad) in res.stderr
    with xr.open_dataset(cube_path(cfg)) as ds:
        np.testing.assert_array_equal(ds["precipitation"].values[:2], first)
        assert np.isfinite(ds["precipitation"].sel(time=DAYS[2]).values).all()
        assert DAYS[3] not in [str(t)[:10] for t in ds["time"].values] or \
            np.isnan(ds["precipitation"].sel(time=DAYS[3]).values).all()


def test_a_regional_half_hour_of_fill_values_is_a_gap_not_an_error(tmp_path):
    """47 good half-hours and one that is all fill value over the region (what a GES DISC subset
    of a half-hour without coverage looks like): exit 0, nothing rejected."""
    cfg = make_project(tmp_path, days=DAYS[:1])
    rates = [rain(30 + k) / 24.0 for k in range(48)]
    rates[5] = np.full_like(rates[5], np.nan)  # the writer stores its -9999.9 fill value
    for k in range(48):
        sd.write_imerg_hhr(tmp_path / "raw/imerg" / sd.imerg_hhr_name(DAYS[1], k), DAYS[1], k, rates[k],
                           IM_LON, IM_LAT)
    res = ingest(cfg)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["rejected"] == []
    assert "rejected" not in res.stderr
    # the gap is a missing half-hour: the day is the mean of the other 47 rates (not a zero among 48)
    day_mean = np.mean([r * 24.0 for k, r in enumerate(rates) if k != 5], axis=0)  # mm/day
    with xr.open_dataset(cube_path(cfg)) as ds:
        got = float((ds["precipitation"].sel(time=DAYS[1]).values * GridSpec.from_bounds(
            "EPSG:4326", REGION, 0.05).cell_area_m2()).sum())
    assert got == pytest.approx(area_weighted_total(day_mean, IM_LAT, IM_LON, 0.1), rel=0.01)
