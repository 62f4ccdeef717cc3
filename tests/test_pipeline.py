"""End to end on the bundled sample_data/, through the CLI: ingest (rerun, corrupt file), train
(artefact, resume), predict (gauged, ungauged, errors), evaluate. One ingest and one small
training run are shared by the whole module (session fixtures)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from hydrocast.cli import app
from hydrocast.netcdf import check_cf

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"

FAST_TRAIN = """
[train]
model_dir = "{model}"
train_period = ["2015-01-01", "2016-12-31"]
validation_period = ["2017-01-01", "2017-06-30"]
test_period = ["2020-01-01", "2020-12-31"]
lead_days = 3
warmup_days = 20
window_days = 80
hidden = 8
epochs = 2
batch_size = 4
"""


def project_config(tmp: Path, cube: Path, model: Path, extra_imerg: Path | None = None) -> Path:
    """The sample's hydrocast.toml with absolute data paths, the given cube and a fast [train]; without
    its weather-forecast ensemble (test_predict_and_evaluate_with_ensemble_members adds a small one)."""
    text = (SAMPLE / "hydrocast.toml").read_text()
    head = text.split("[train]")[0]
    head = re.sub(r"\[\[sources\]\]\nname = \"precipitation_ensemble\".*?\n(?=\[)", "", head, flags=re.S)
    assert "nwp-ens" not in head and "[cube]" in head
    for rel in ("raw/imerg", "raw/esacci", "raw/dem", "raw/nwp", "basins/", "discharge/"):
        head = head.replace(f'"{rel}', f'"{SAMPLE}/{rel}')
    head = head.replace('path = "../work/sample/cube.nc"', f'path = "{cube}"')
    if extra_imerg is not None:
        head = head.replace(f'"{SAMPLE}/raw/imerg/*.nc4"]', f'"{SAMPLE}/raw/imerg/*.nc4", "{extra_imerg}/*.nc4"]')
    cfg = tmp / "hydrocast.toml"
    cfg.write_text(head + FAST_TRAIN.format(model=model))
    return cfg


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="module")
def cube(work) -> Path:
    cfg = project_config(work, work / "cube.nc", work / "model")
    res = invoke("ingest", "--config", str(cfg), "--quiet", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["days_added"] == 2192 and out["rejected"] == []
    return work / "cube.nc"


@pytest.fixture(scope="module")
def trained(work, cube) -> Path:
    cfg = work / "hydrocast.toml"
    res = invoke("train", "--config", str(cfg), "--quiet", "--json", "--seed", "1")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["epochs_run"] == 2 and np.isfinite(summary["validation_nse_median"])
    return work / "model"


# -- ingest ------------------------------------------------------------------------------------

def test_sample_ingest_rerun_and_corrupt_file(work, cube):
    with xr.open_dataset(cube) as ds:
        assert ds.sizes == {"time": 2192, "y": 32, "x": 32, "nv": 2}
        before = ds["precipitation"].values.copy()
        assert np.isfinite(before).mean() > 0.99
        prov = [str(p) for p in ds["precipitation_source"].values]
        assert prov[-1].startswith("early 3B-DAY-E.")  # only the Early run exists for the last days
        assert "(+47 files)" in prov[13]  # 2015-01-14 came from 48 half-hourly files
    stamp = cube.stat().st_mtime_ns
    cfg = work / "hydrocast.toml"
    res = invoke("ingest", "--config", str(cfg), "--quiet", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["changed"] is False
    assert cube.stat().st_mtime_ns == stamp

    # a corrupt file (an HTML error page under a granule's name) for a new day
    bad = work / "incoming"
    bad.mkdir()
    (bad / "3B-DAY.MS.MRG.3IMERG.20210101-S000000-E235959.V07B.nc4").write_text("<html><body>503</body></html>")
    cfg2 = project_config(work / "incoming", cube, work / "model", extra_imerg=bad)
    res = invoke("ingest", "--config", str(cfg2), "--quiet", "--json")
    assert res.exit_code == 65
    assert "HTML" in res.stderr and "20210101" in res.stderr
    with xr.open_dataset(cube) as ds:
        np.testing.assert_array_equal(ds["precipitation"].values[:2192], before)


# -- train -------------------------------------------------------------------------------------

def test_artefact_contents_and_no_pickle(trained):
    meta = json.loads((trained / "model.json").read_text())
    assert meta["format"] == "hydrocast-model" and meta["lead_days"] == 3
    assert [b["id"] for b in meta["basins"]] == ["PT01", "PT02", "PT03", "PT04", "PT05", "PT06"]
    assert set(meta["inputs"]["dynamic"]) == {"precipitation", "soil_moisture"}
    # normalisation from the training period only: recompute the precipitation mean independently
    with xr.open_dataset(trained.parent / "cube.nc") as ds:
        p = ds["precipitation"].sel(time=slice("2015-01-01", "2016-12-31")).values
    p = np.log1p(p[np.isfinite(p)])
    assert meta["inputs"]["stats"]["precipitation"]["mean"] == pytest.approx(p.mean(), rel=1e-6)
    assert sorted(os.listdir(trained)) == ["model.json", "model.safetensors"]


def forecast_files(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.suffix in (".nc", ".png"))


def test_predict_gauged_cf_and_moved_artefact(work, trained, tmp_path):
    cfg = work / "hydrocast.toml"
    out = tmp_path / "fc"
    res = invoke("predict", "--config", str(cfg), "--basin", "PT01", "--out", str(out), "--issue-date",
                 "2020-06-30", "--json", "--quiet", "--plot")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    files = forecast_files(out)
    assert len(files) == 4 and all("PT01_20200630_" in f.name for f in files)
    hyd = next(f for f in files if f.name.endswith("_hydrograph.nc"))
    maps = next(f for f in files if f.name.endswith("_maps.nc"))
    ok, report = check_cf([hyd, maps])
    assert ok, report[-2000:]
    with xr.open_dataset(hyd) as ds:
        q = ds["discharge"].values[0]
        assert ds.attrs["featureType"] == "timeSeries"
        # valid time = the END of each averaged day (GloFAS dis24 convention); bounds = the day
        assert [str(t)[:10] for t in ds["time"].values] == ["2020-07-02", "2020-07-03", "2020-07-04"]
        assert str(ds["forecast_reference_time"].values)[:19] == "2020-07-01T00:00:00"
        assert (q >= 0).all() and np.isfinite(q).all()
        assert np.isfinite(ds["last_observed_discharge"].values[0])
    assert summary["basins"][0]["discharge_m3s"] == pytest.approx(q.tolist(), rel=1e-3)
    with xr.open_dataset(maps) as ds:
        assert ds["soil_moisture"].dims == ("lead_time", "y", "x")
        assert ds["soil_moisture"].rio.crs.to_epsg() == 4326
        assert 0.0 < float(ds["basin_fraction"].max()) <= 1.0

    # the artefact moved elsewhere gives the same forecast
    moved = tmp_path / "elsewhere" / "my-model"
    shutil.copytree(trained, moved)
    cfg2 = tmp_path / "moved.toml"
    cfg2.write_text(cfg.read_text().replace(f'model_dir = "{trained}"', f'model_dir = "{moved}"'))
    res2 = invoke("predict", "--config", str(cfg2), "--basin", "PT01", "--out", str(tmp_path / "fc2"),
                  "--issue-date", "2020-06-30", "--json", "--quiet")
    assert res2.exit_code == 0
    assert json.loads(res2.stdout)["basins"][0]["discharge_m3s"] == summary["basins"][0]["discharge_m3s"]


def test_predict_distribution_and_exceedance_of_user_thresholds(work, trained, tmp_path):
    """The forecast distribution (quantiles, median = the deterministic forecast), and the exceedance
    probabilities of a user's thresholds file placed below, at and far above the forecast."""
    cfg = work / "hydrocast.toml"
    args = ["--basin", "PT01", "--issue-date", "2020-06-30", "--json", "--quiet"]
    res = invoke("predict", "--config", str(cfg), "--out", str(tmp_path / "a"), *args)
    assert res.exit_code == 0, res.output
    first = json.loads(res.stdout)["basins"][0]
    qs = first["quantiles_m3s"]
    assert list(qs) == ["0.05", "0.25", "0.5", "0.75", "0.95"]
    lo, med, hi = np.array(qs["0.05"]), np.array(qs["0.5"]), np.array(qs["0.95"])
    assert (lo <= med).all() and (med <= hi).all() and (hi > lo).all()
    assert first["thresholds"] == []  # 2 training years: too short for a fit, and no thresholds file

    # a thresholds file: at the lead-1 0.75 quantile (P = 0.25 exactly), half way below it, and far
    # above the forecast (P about 0: the exponential tail beyond the 0.95 quantile)
    q75 = qs["0.75"][0]
    assert q75 > 0
    th = tmp_path / "official.csv"
    th.write_text("basin,name,discharge_m3s\n"
                  f"PT01,low,{q75 / 2:.6f}\nPT01,mid,{q75:.6f}\nPT01,flood,{hi.max() * 10:.6f}\n"
                  "PT99,alert,5.0\n")
    cfg2 = tmp_path / "hydrocast.toml"
    cfg2.write_text(cfg.read_text() + f'\n[thresholds]\npath = "{th}"\n')
    res = invoke("predict", "--config", str(cfg2), "--out", str(tmp_path / "b"), *args)
    assert res.exit_code == 0, res.output  # a warning is data, not an error
    got = {t["name"]: t for t in json.loads(res.stdout)["basins"][0]["thresholds"]}
    assert list(got) == ["low", "mid", "flood"]  # PT01's rows, sorted by discharge
    assert all(t["source"] == "user" for t in got.values())
    assert got["mid"]["exceedance_probability"][0] == pytest.approx(0.25, abs=0.002)
    assert 0.25 < got["low"]["exceedance_probability"][0] <= 0.75
    assert max(got["flood"]["exceedance_probability"]) < 0.01
    hyd = next((tmp_path / "b").glob("*_hydrograph.nc"))
    ok, report = check_cf(hyd)
    assert ok, report[-2000:]
    with xr.open_dataset(hyd) as ds:
        assert [str(x) for x in ds["threshold_name"].values] == ["low", "mid", "flood"]
        p = ds["exceedance_probability"].values[0]  # (lead, threshold)
        np.testing.assert_allclose(p[:, 1], got["mid"]["exceedance_probability"], atol=1e-3)
        np.testing.assert_allclose(ds["discharge_median"].values[0],
                                   ds["discharge_quantiles"].sel(quantile=0.5).values[0], rtol=1e-6)
        np.testing.assert_allclose(ds["discharge_median"].values[0], med, rtol=1e-3, atol=6e-4)  # as --json said
        # (which rounds to 3 decimals)
        assert ds["discharge_quantiles"].dims == ("station", "lead_time", "quantile")
        assert np.all(np.diff(ds["discharge_quantiles"].values[0], axis=-1) >= 0)

    # a bad thresholds file: one line naming the file and the line, nothing written
    th.write_text("basin,name,discharge_m3s\nPT01,low,-3\n")
    res = invoke("predict", "--config", str(cfg2), "--out", str(tmp_path / "c"), *args)
    assert res.exit_code == 65 and "official.csv line 2" in res.stderr
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


#: the blend weights (gauge row g % 3, lead) of the ``updating`` fixture
BLEND = np.array([[0.6, 0.7, 0.8], [0.0, 0.0, 0.0], [0.2, 0.1, 0.0]], dtype="float32")


@pytest.fixture
def updating(monkeypatch):
    """Every model predict loads updates its forecasts with the issue day's error at gains 0.5 /
    0.3 / 0.2 (the tiny project's fitted gains may all be 0: the sample's errors do not persist)
    and blends them with persistence at :data:`BLEND` (gauge g: the row g % 3, so some gauges are
    not blended), whatever weights train fitted."""
    import torch

    from hydrocast import predict
    from hydrocast.forward import set_persistence_weight

    real = predict._weights

    def weights(net, tensors, prefix):
        out = real(net, tensors, prefix)
        if "update_gain" in out:
            out["update_gain"] = torch.tensor([0.5, 0.3, 0.2])
        if "persistence_weight" in out:
            g = int(tensors["basin_channels"].shape[0])
            out["persistence_weight"] = torch.tensor(BLEND[np.arange(g) % 3])
            set_persistence_weight(net, out["persistence_weight"].numpy())
        return out

    monkeypatch.setattr(predict, "_weights", weights)


def test_predict_keeps_the_model_state_and_continues_from_it(work, trained, tmp_path, updating):
    """A daily cron run continues the saved recurrent state (exactly the one long run it stands for);
    a corrupt state file is rebuilt; the outputs record the inputs and the weather forecast used."""
    from hydrocast import config as hconfig
    from hydrocast.predict import Forecaster
    from hydrocast.state import load_state, state_path

    cfg = work / "hydrocast.toml"

    def predict(day: str):
        out = tmp_path / f"fc-{day}"
        res = invoke("predict", "--config", str(cfg), "--basin", "PT01", "--out", str(out), "--issue-date", day,
                     "--json", "--quiet")
        assert res.exit_code == 0, res.output
        hyd = next(out.glob("*_hydrograph.nc"))
        with xr.open_dataset(hyd) as ds:
            return json.loads(res.stdout), dict(ds.attrs)

    first, attrs1 = predict("2020-05-10")
    path = state_path(work / "cube.nc", first["model_id"])
    saved, why = load_state(path, first["model_id"])
    assert saved is not None, why
    # every input present: two days before the issue day (the forecast of the day before, whose
    # error the updating reads, is run again)
    assert str(saved.day) == "2020-05-08"
    chain_start = saved.start_day
    second, attrs2 = predict("2020-05-20")
    assert attrs2["hydrocast_spin_up"] == "continued from the saved state of 2020-05-08"
    assert "precipitation: current" in attrs2["hydrocast_inputs_status"]
    assert attrs2["hydrocast_weather_forecast"].startswith("precipitation_forecast: the run of 2020-05-21 00:00")
    assert attrs2["hydrocast_observed_discharge"] == "observed discharge of 2020-05-20 entered the forecast"
    # the same forecast as one uninterrupted run from the chain's first day (independent path)
    with Forecaster(hconfig.load(cfg)) as fc:
        basins = fc.basin_set(["PT01"])
        i = fc.reader.index("2020-05-20")
        ref_run = _updated(fc.net, fc.inputs(basins), i, i, 0, start=fc.reader.index(chain_start))
        ref = ref_run.q[0, 0]
        error = float(ref_run.extra["issue_error"][0, 0]) * fc.q_sd * basins.info[0]["area_km2"] / 86.4
    np.testing.assert_allclose(second["basins"][0]["discharge_m3s"], ref, rtol=1e-3, atol=1e-3)
    # the file and the JSON say what the updating did: the error in m3/s and the gains
    assert abs(error) > 1e-3 and second["basins"][0]["issue_day_error_m3s"] == pytest.approx(error, abs=2e-3)
    assert re.fullmatch(r"the observation of 2020-05-20 was [+-]\d+\.\d{3} m3/s off the lead-1 forecast issued "
                        r"the day before; lead days 1\.\.3 moved by 0\.50 / 0\.30 / 0\.20 of it; then blended "
                        r"with the observation of 2020-05-20 \(persistence\), its weight at lead days 1\.\.3 "
                        r"0\.60 / 0\.70 / 0\.80",
                        attrs2["hydrocast_updating"]), attrs2["hydrocast_updating"]

    path.write_bytes(b"not a state")  # a corrupt state is rebuilt, never an error
    third, attrs3 = predict("2020-05-20")
    assert attrs3["hydrocast_spin_up"].startswith("spun up over the 365 days before")
    assert load_state(path, first["model_id"])[0] is not None


def test_predict_and_evaluate_with_ensemble_members(work, cube, tmp_path, updating):
    """A weather-forecast ensemble (ECMWF ENS, 4 members, the validation half-year and issue dates
    2020-06-27 .. 07-02) as a second source: train recalibrates the pooled distribution on the validation
    days with members; predict runs the model once per member (realization dimension); each member's
    forecast is what the one forward path gives with that member as the model's own weather forecast
    (independent path), the quantiles pool the members' distributions (with the fitted factors), the maps
    carry the members' median and spread; a day without members carries none; evaluate scores the
    member-driven system on the days with members."""
    import pandas as pd

    from hydrocast import config as hconfig
    from hydrocast.forward import run_period
    from hydrocast.predict import Forecaster
    from hydrocast.probmetrics import pooled_quantiles
    from tools import sampledata_nwp as snwp

    runs = 0
    for part, (a, b) in {"val": ("2017-01-01", "2017-06-30"), "test": ("2020-06-27", "2020-07-02")}.items():
        (tmp_path / part / "raw").mkdir(parents=True)
        (tmp_path / part / "raw/imerg").symlink_to(SAMPLE / "raw/imerg")
        runs += snwp.write_ensemble(tmp_path / part, members=4, seed=3, start=a, end=b)["issue_dates"]
    store = tmp_path / "store.forecasts.nc"
    shutil.copy(work / "cube.forecasts.nc", store)  # the deterministic runs are copied over, not re-read
    source = (f'[[sources]]\nname = "ens"\nkind = "nwp_grib"\npaths = ["{tmp_path}/val/raw/nwp-ens/*.grib2", '
              f'"{tmp_path}/test/raw/nwp-ens/*.grib2"]\n\n')
    text = (work / "hydrocast.toml").read_text().replace("[cube]", f'{source}[cube]\nforecast_path = "{store}"', 1)
    cfg = tmp_path / "ens.toml"
    cfg.write_text(text.replace(f'model_dir = "{work / "model"}"', f'model_dir = "{tmp_path / "model"}"'))
    res = invoke("ingest", "--config", str(cfg), "--quiet", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["forecasts"]["runs_added"] == runs > 150
    res = invoke("train", "--config", str(cfg), "--quiet", "--json", "--seed", "1")
    assert res.exit_code == 0, res.output
    fitted = json.loads((tmp_path / "model" / "model.json").read_text())["distribution"]["ensemble"]
    # the validation days with members, but its last (whose lead days lie past the period)
    assert fitted["source"] == "ens" and fitted["issue_days"] == runs - 6 - 1
    scale = np.asarray(fitted["scale"])
    assert scale.shape == (3, 19) and (scale >= 0).all() and np.ptp(scale) > 0

    out = tmp_path / "fc"
    res = invoke("predict", "--config", str(cfg), "--basin", "PT01", "--out", str(out), "--issue-date", "2020-06-30",
                 "--json", "--quiet")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)["basins"][0]
    hyd, maps = next(out.glob("*_hydrograph.nc")), next(out.glob("*_maps.nc"))
    ok, report = check_cf([hyd, maps])
    assert ok, report[-2000:]
    with xr.open_dataset(hyd) as ds:
        assert ds["discharge_members"].dims == ("station", "lead_time", "realization")
        assert list(ds["realization"].values) == [0, 1, 2, 3] and ds["realization"].standard_name == "realization"
        members, qq = ds["discharge_members"].values[0], ds["discharge_quantiles"].values[0]  # (L, R), (L, Q)
        det, levels = ds["discharge"].values[0], ds["quantile"].values
        assert "the 4 members of ens" in ds.attrs["hydrocast_weather_forecast"]
    with xr.open_dataset(maps) as ds:
        sm_med, sm_spread = ds["soil_moisture_median"].values, ds["soil_moisture_spread"].values
        window = (ds["x"].values, ds["y"].values)
        assert ds["soil_moisture_spread"].attrs["cell_methods"].endswith("realization: standard_deviation")
    assert summary["members_m3s"] == [pytest.approx(m.tolist(), rel=1e-3, abs=1e-3) for m in members]

    # independently: the one forward path with member r as the model's own forecast, spun up from scratch
    with Forecaster(hconfig.load(cfg)) as fc:
        assert fc.ensemble_name == "ens"
        basins = fc.basin_set(["PT01"])
        i = fc.reader.index("2020-06-30")
        store_r = fc.forecasts
        member_runs = []
        for r in range(4):
            class One:
                names = [fc.forecast_name]

                def read(self, name, days, n, r=r, cells=None):
                    return store_r.read_members("ens", days, n, 4, cells=cells)[:, r]

            inp = fc.inputs(basins)
            inp.forecasts = One()
            member_runs.append(run_period(fc.net, inp, i, i, fc.spin))
        plain = _updated(fc.net, fc.inputs(basins), i, i, fc.spin)
        for run in member_runs:  # each member moved by the deterministic forecast's update, then blended
            _moved(run, fc.inputs(basins), plain.update_shift)
            _moved(run, fc.inputs(basins), _blend_delta(fc.net, fc.inputs(basins), i, run.q_norm)[0])
        sm_r = np.stack([fc.map_physical(run["maps"][0])[0] for run in member_runs])  # (R, L, H, W)
        cols = np.searchsorted(fc.grid.x, window[0])
        rows = np.flatnonzero(np.isin(np.round(fc.grid.y, 6), np.round(window[1], 6)))
    want = np.stack([run.q[0, 0] for run in member_runs], axis=-1)  # (L, R)
    np.testing.assert_allclose(members, want, rtol=1e-3, atol=1e-3)
    assert np.ptp(members[2]) > 1e-3  # the members differ
    np.testing.assert_allclose(det, plain.q[0, 0], rtol=1e-3, atol=1e-3)  # the deterministic forecast stays
    pooled = pooled_quantiles(levels, np.stack([run.extra["q_quantiles"][0, 0] for run in member_runs]), scale)
    np.testing.assert_allclose(qq, pooled, rtol=2e-3, atol=2e-3)
    sub = sm_r[:, :, rows][:, :, :, cols]
    np.testing.assert_allclose(sm_med, np.median(sub, axis=0), atol=1e-4)
    np.testing.assert_allclose(sm_spread, np.std(sub, axis=0, ddof=1), atol=1e-4)

    out2 = tmp_path / "fc2"  # a day without an ensemble run: no member variables
    res = invoke("predict", "--config", str(cfg), "--basin", "PT01", "--out", str(out2), "--issue-date", "2020-06-20",
                 "--quiet")
    assert res.exit_code == 0, res.output
    with xr.open_dataset(next(out2.glob("*_hydrograph.nc"))) as ds:
        assert "discharge_members" not in ds and "no ensemble run of ens" in ds.attrs["hydrocast_weather_forecast"]
    with xr.open_dataset(next(out2.glob("*_maps.nc"))) as ds:
        assert "soil_moisture_median" not in ds

    ev = tmp_path / "ev"
    res = invoke("evaluate", "--config", str(cfg), "--period", "2020-06-20:2020-07-05", "--out", str(ev), "--quiet",
                 "--json")
    assert res.exit_code == 0, res.output
    table = pd.read_csv(ev / "ensemble.csv", dtype={"basin": str})
    assert set(table["model"]) == {"convlstm", "lumped_lstm", "convlstm_ensemble", "climatology_ensemble",
                                   "persistence_ensemble"}
    one = table[(table["basin"] == "PT01") & (table["lead_days"] == 1)]
    # every system on the issue days with members only, where the issue day's flow (persistence)
    # and the next day's (the observation) are recorded, counted here from the discharge file
    q = pd.read_csv(SAMPLE / "discharge" / "discharge.csv", parse_dates=["date"])
    q = q[q["basin_id"] == "PT01"].set_index("date")["discharge"]
    issue = pd.date_range("2020-06-27", "2020-07-02")
    want = int((q.reindex(issue).notna().to_numpy() & q.reindex(issue + pd.Timedelta(days=1)).notna().to_numpy()).sum())
    assert want == 5 and set(one["n"]) == {want}
    prob = pd.read_csv(ev / "probabilistic.csv", dtype={"basin": str})
    assert prob[(prob["basin"] == "PT01") & (prob["lead_days"] == 1)]["n"].max() > 6
    assert "2" in json.loads(res.stdout)["ensemble"]["convlstm_ensemble"]
    with xr.open_dataset(ev / "hindcast.nc") as ds:
        q_ens = ds["discharge_convlstm_ensemble_quantiles"]
        assert np.isfinite(q_ens.sel(forecast_reference_time="2020-07-01").values).all()
        assert np.isnan(q_ens.sel(forecast_reference_time="2020-06-21").values).all()
    _members_in_chunks_and_windows(cfg, tmp_path, "2020-06-27", 6)


def _members_in_chunks_and_windows(cfg, tmp_path, first: str, days: int):
    """The run per ensemble member (evaluate's member-driven distribution, the ensemble calibration)
    of ``days`` issue days from ``first``: the same members run in chunks of days as in one piece,
    window by window as on the whole domain when one window covers the grid, and each basin's
    members in a 24-cell window are those of that basin run alone in its window (quantiles too)."""
    from hydrocast import config
    from hydrocast.forward import run_members
    from hydrocast.predict import Forecaster

    def same(x, y):
        _close(np.nan_to_num(x, nan=-1.0), np.nan_to_num(y, nan=-1.0))

    with Forecaster(config.load(cfg)) as fc:
        basins = fc.basin_set(["all"])
        inp = fc.inputs(basins)
        a = fc.issue_index(first)
        b = a + days - 1
        one = run_members(fc.net, inp, a, b, fc.spin)  # (issue day, member, basin, lead)
        assert one.q.shape[0] == days and one.q.shape[1] > 1 and one.q.shape[2] == len(basins.ids)
        assert np.isfinite(one.q).all()
        for chunk in (2, days):
            got = run_members(fc.net, inp, a, b, fc.spin, chunk_days=chunk)
            assert got.q.shape == one.q.shape and set(got.extra) == set(one.extra)
            for k in ("q", *one.extra):
                same(getattr(got, k) if k == "q" else got.extra[k], getattr(one, k) if k == "q" else one.extra[k])
        same(fc.members(basins, a, b).q, one.q)  # the default chunking
    for tile in (32, 24):
        with Forecaster(config.load(_tiled(cfg, tmp_path, tile))) as fc:
            basins = fc.basin_set(["all"])
            plan = fc.windows(basins)
            assert (len(plan) == 1) == (tile == 32)
            got = fc.members(basins, a, b)
            if tile == 32:  # one window over the grid: the whole domain's members
                same(got.q, one.q)
                continue
            inp = fc.inputs(basins)
            for w in plan:
                for n in w.basins:
                    alone = run_members(fc.net, inp.window(w.rows, w.cols, [n]), a, b, fc.spin)
                    same(got.q[:, :, n], alone.q[:, :, 0])
                    same(got.extra["q_quantiles"][:, :, n], alone.extra["q_quantiles"][:, :, 0])


def test_a_zarr_cube_gives_the_same_forecast(work, trained, tmp_path):
    """The whole sample ingested into the Zarr store instead of the NetCDF file: the same model
    predicts exactly the same hydrograph and distribution from it (readers, state and inputs
    status go through the one store interface)."""
    zcfg = project_config(tmp_path, tmp_path / "cube.zarr", work / "model")
    res = invoke("ingest", "--config", str(zcfg), "--quiet", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["days_added"] == 2192 and (tmp_path / "cube.zarr" / "zarr.json").is_file()
    got = {}
    for name, cfg in (("netcdf", work / "hydrocast.toml"), ("zarr", zcfg)):
        out = tmp_path / f"fc-{name}"
        res = invoke("predict", "--config", str(cfg), "--basin", "PT01", "--issue-date", "2020-03-15", "--out",
                     str(out), "--json", "--quiet")
        assert res.exit_code == 0, res.output
        got[name] = json.loads(res.stdout)["basins"][0]
    np.testing.assert_allclose(got["zarr"]["discharge_m3s"], got["netcdf"]["discharge_m3s"], rtol=1e-6)
    assert got["zarr"]["quantiles_m3s"].keys() == got["netcdf"]["quantiles_m3s"].keys()
    for level, values in got["netcdf"]["quantiles_m3s"].items():
        np.testing.assert_allclose(got["zarr"]["quantiles_m3s"][level], values, rtol=1e-6, err_msg=level)
    with xr.open_zarr(tmp_path / "cube.zarr") as z, xr.open_dataset(work / "cube.nc") as n:
        np.testing.assert_array_equal(z["precipitation"].isel(time=slice(-40, None)).values,
                                      n["precipitation"].isel(time=slice(-40, None)).values)


def test_predict_ungauged_basin(work, trained, tmp_path, updating):
    out = tmp_path / "fc"
    res = invoke("predict", "--config", str(work / "hydrocast.toml"), "--basins",
                 str(SAMPLE / "basins" / "ungauged.geojson"), "--basin", "all", "--out", str(out), "--json", "--quiet")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert [b["id"] for b in summary["basins"]] == ["PT07", "PT08"]
    assert all(not b["gauged"] and b["last_observed"] is None for b in summary["basins"])
    assert all(b["issue_day_error_m3s"] == 0.0 for b in summary["basins"])  # nothing to update with
    assert summary["issue_date"] == "2020-12-31"  # the latest day the cube supports
    hyd = sorted(out.glob("PT07_*_hydrograph.nc"))[0]
    ok, report = check_cf(hyd)
    assert ok, report[-2000:]
    with xr.open_dataset(hyd) as ds:
        assert np.isnan(ds["last_observed_discharge"].values[0])
        assert (ds["discharge"].values >= 0).all()
        assert ds.attrs["hydrocast_updating"].startswith("none: no observation of the issue day")
        assert ds.attrs["hydrocast_updating"].endswith("; no blend with persistence (no observation of the issue "
                                                       "day, a basin without a gauge of its own, or its weights "
                                                       "fitted at 0)")


def test_archive_stand_in_is_the_degraded_observation(work, cube):
    """forecast_stand_in_errors = "archive": on issue days without an archived run, the stand-in is
    hydrocast.standin.degrade of the lead day's observed rain (with no error: that rain itself);
    days with a run keep the run; the calibration on the sample's archive finds errors growing
    with lead."""
    from hydrocast import config
    from hydrocast.forecasts import open_forecasts
    from hydrocast.samples import CubeReader
    from hydrocast.standin import LeadError, calibrate

    cfg = config.load(work / "hydrocast.toml")
    with CubeReader(cube) as reader:
        spec = reader.compute_stats(["precipitation", "soil_moisture"], [], ("2015-01-01", "2016-12-31"))
        fc = open_forecasts(cfg)
        a = reader.index("2016-12-25")  # the archive starts in 2017: the first days have no run
        exact = [LeadError(0.0, 0.0, 0.0, 20, "archive")] * 3
        got = reader.forecast_window(spec, fc, "precipitation_forecast", a, a + 14, 3,
                                     stand_in=np.random.default_rng(0), stand_in_errors=exact)
        have = fc.available("precipitation_forecast", reader.day_of(np.arange(a, a + 14)))
        assert not have[:3].all() and have.any()
        plain = reader.forecast_window(spec, fc, "precipitation_forecast", a, a + 14, 3)
        for t in range(14):
            for lead in range(3):
                if have[t]:
                    np.testing.assert_array_equal(got[t, lead], plain[t, lead])
                else:
                    obs = reader.raw("precipitation", a + t + lead + 1, a + t + lead + 2)
                    norm, valid = reader.normalise(obs, spec.stats["precipitation"])
                    np.testing.assert_allclose(got[t, lead, 0], norm[0], atol=1e-5)
                    np.testing.assert_array_equal(got[t, lead, 1], valid[0])
        noisy = reader.forecast_window(spec, fc, "precipitation_forecast", a, a + 14, 3,
                                       stand_in=np.random.default_rng(0))
        assert not np.allclose(noisy[~have][:, :, 0], got[~have][:, :, 0])
        errors = calibrate(reader, fc, "precipitation_forecast", "precipitation", reader.index("2017-01-01"),
                           reader.index("2018-12-31"), 3)
    assert [e.source for e in errors] == ["archive"] * 3
    assert errors[0].shift_cells < errors[2].shift_cells and errors[0].log_sd < errors[2].log_sd


def test_ungauged_basins_read_the_gauges_observations_at_lead_1_only(work, trained, tmp_path):
    """[train] ungauged_observation_leads = 1 (the default): an ungauged basin's lead 1 is the run
    with the gauges' observation maps, its leads 2-3 the same model's run with every gauge silent;
    gauged basins keep the observation run at every lead; predict gives the same numbers."""
    import dataclasses

    from hydrocast import config
    from hydrocast.forward import run_period
    from hydrocast.predict import Forecaster

    cfg = config.load(work / "hydrocast.toml")
    assert cfg.train.ungauged_observation_leads == 1
    with Forecaster(cfg) as fc:
        a = fc.issue_index("2020-06-01")
        b = a + 9
        for path, ungauged in ((SAMPLE / "basins" / "ungauged.geojson", True), (None, False)):
            basins = fc.basin_set(["all"], path)
            inp = fc.inputs(basins)
            both = _updated(fc.net, inp, a, b, fc.spin)
            silent = run_period(fc.net, inp, a, b, fc.spin, with_obs=False)
            assert np.abs(both.q - silent.q).max() > 1e-3  # the observations matter for these basins
            got = fc.run(basins, a, b)["convlstm"]
            np.testing.assert_allclose(got.q[:, :, 0], both.q[:, :, 0], rtol=1e-5, atol=1e-5)
            want = silent.q[:, :, 1:] if ungauged else both.q[:, :, 1:]
            np.testing.assert_allclose(got.q[:, :, 1:], want, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(got.extra["q_quantiles"][:, :, 1:],
                                       (silent if ungauged else both).extra["q_quantiles"][:, :, 1:],
                                       rtol=1e-5, atol=1e-5)
        every = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, ungauged_observation_leads=3))
    basins_path = SAMPLE / "basins" / "ungauged.geojson"
    with Forecaster(every) as fc3:
        basins = fc3.basin_set(["all"], basins_path)
        np.testing.assert_allclose(fc3.run(basins, a, b)["convlstm"].q,
                                      _updated(fc3.net, fc3.inputs(basins), a, b, fc3.spin).q, rtol=1e-5, atol=1e-5)
    out = tmp_path / "fc"
    res = invoke("predict", "--config", str(work / "hydrocast.toml"), "--basins", str(basins_path), "--basin", "PT07",
                 "--issue-date", "2020-06-10", "--out", str(out), "--json", "--quiet")
    assert res.exit_code == 0, res.output
    with Forecaster(cfg) as fc:
        day = fc.issue_index("2020-06-10")
        want = fc.run(fc.basin_set(["PT07"], basins_path), day, day)["convlstm"].q[0, 0]
    got = json.loads(res.stdout)["basins"][0]["discharge_m3s"]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)  # (rounded to 3 decimals in the JSON)
    with xr.open_dataset(next(out.glob("PT07_*_hydrograph.nc"))) as ds:  # the file says how it was made
        assert "leads 2..3 as if every gauge were silent" in ds.attrs["hydrocast_observed_discharge"]


def _close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(float(np.abs(want).max()), 1e-6))


def test_a_run_in_chunks_of_days_is_the_one_long_run(work, trained):
    """[train] inference_chunk_days: the spin-up and the issue days run a few days at a time, the
    state carried, give the one sequence's forecasts, maps and state (ConvLSTM and lumped LSTM)."""
    from hydrocast import config
    from hydrocast.forward import run_chunked
    from hydrocast.predict import Forecaster

    with Forecaster(config.load(work / "hydrocast.toml")) as fc:
        basins = fc.basin_set(["all"])
        inp = fc.inputs(basins)
        a = fc.issue_index("2020-03-01")
        for net in (fc.net, fc.lumped):
            one = _updated(net, inp, a, a + 19, 60)
            for chunk in (7, 20, 200):
                got = run_chunked(net, inp, a, a + 19, 60, chunk_days=chunk)
                assert got.q.shape == one.q.shape and set(got.extra) == set(one.extra)
                # float32 sums in another order (thread splits differ with the sequence length):
                # agreement to 1e-4 of each field's own scale; a state not carried is off by ~1e-1
                _close(got.q, one.q)
                for k in one.extra:
                    _close(got.extra[k], one.extra[k])
                flat = [t for pair in ([one.state] if net is fc.lumped else one.state) for t in pair]
                flat_got = [t for pair in ([got.state] if net is fc.lumped else got.state) for t in pair]
                for x, y in zip(flat_got, flat):
                    _close(x.numpy(), y.numpy())
        assert fc.chunk_days == 90  # the default: evaluate and predict run chunked


def _updated(net, inp, a: int, b: int, spin: int, start: int | None = None, **kw):
    """The independent reference of a run whose forecasts are updated with the issue day's error:
    :func:`run_period` over issue days ``a - 1 .. b`` from the same first day, then, in numpy here,
    every lead of issue day t moved by ``gain * (own observation of t - the lead-1 forecast issued
    on t - 1)`` (normalised; no own observation: no move), then blended with the own observation
    of t by the model's per-gauge weights (:func:`_blend_delta`); the whole move kept as
    ``.shift`` (the updating's alone as ``.update_shift``), converted back to m3/s by hand
    (:func:`_moved`)."""
    from hydrocast.forward import run_period

    s = max(0, a - spin) if start is None else start
    gain = getattr(net, "update_gain", None)
    g = None if gain is None else gain.detach().numpy().astype("float64")
    with_obs = kw.get("with_obs", True)
    if g is None or not g.any() or not with_obs or a - 1 < s:
        run = run_period(net, inp, a, b, spin, start=start, **kw)
        run.shift = np.zeros(run.q_norm.shape)
    else:
        run = run_period(net, inp, a - 1, b, 0, start=s, **kw)
        idx = np.asarray(inp.obs_index)
        own = np.where(idx >= 0, np.asarray(inp.obs, "float64")[a:b + 1][:, np.clip(idx, 0, None)], np.nan)
        err = np.nan_to_num(own - run.q_norm[:-1, :, 0])
        run.q_norm, run.issue_days = run.q_norm[1:], run.issue_days[1:]
        run.extra = {k: v[1:] for k, v in run.extra.items()}
        run.shift = err[:, :, None] * g
        _moved(run, inp, run.shift)
        run.extra["issue_error"] = err
    run.update_shift = run.shift
    if with_obs:
        delta, used = _blend_delta(net, inp, a, run.q_norm)
        _moved(run, inp, delta)
        run.shift = run.shift + delta
        if used is not None:
            run.extra["persistence_weight"] = used
    return run


def _blend_delta(net, inp, a: int, q_norm) -> tuple[np.ndarray, np.ndarray | None]:
    """(T, N, L) the blend with persistence by hand: ``w * (own observation of the issue day -
    forecast)`` with ``w`` the row of the basin's gauge in the model's ``persistence_weight``
    (window inputs name their gauges in ``obs_gauges``); 0 without a weight or an observation.
    Also the weights used (T, N, L), None for a model without weights."""
    w = getattr(net, "persistence_weight", None)
    if w is None or not w.any() or inp.obs is None:
        return np.zeros(q_norm.shape), None
    weight = w.detach().numpy().astype("float64")
    idx = np.asarray(inp.obs_index)
    gauges = np.arange(len(weight)) if inp.obs_gauges is None else np.asarray(inp.obs_gauges)
    t = q_norm.shape[0]
    own = np.where(idx >= 0, np.asarray(inp.obs, "float64")[a:a + t][:, np.clip(idx, 0, None)], np.nan)
    used = np.zeros(q_norm.shape)
    for n in range(q_norm.shape[1]):
        for k in range(t):
            if idx[n] >= 0 and np.isfinite(own[k, n]):
                used[k, n] = weight[gauges[idx[n]]]
    return used * (np.nan_to_num(own)[:, :, None] - q_norm), used


def _moved(run, inp, shift):
    """In place: ``run``'s normalised forecasts (and quantiles) moved by ``shift`` (T, N, L), m3/s by hand."""
    def m3s(qn, extra=0):
        spec = np.maximum(inp.q_mean + inp.q_std * qn, 0.0)
        return spec * np.asarray(inp.area_km2).reshape(-1, *[1] * (1 + extra)) / 86.4

    run.q_norm = run.q_norm + shift
    run.q = m3s(run.q_norm)
    if "q_quantiles_norm" in run.extra:
        run.extra["q_quantiles_norm"] = run.extra["q_quantiles_norm"] + shift[..., None]
        run.extra["q_quantiles"] = m3s(run.extra["q_quantiles_norm"], 1)


def test_forecasts_are_updated_with_the_issue_days_error(work, trained):
    """The updating with the issue day's error: train fitted a gain per lead on the validation
    period and saved it (artefact meta and weights, both models); a run moves every lead by gain x
    (own observation - the lead-1 forecast of the day before), the quantiles with it, as computed
    by hand from the run without it; the same in chunks; no own observation (a silent gauge, every
    gauge silent) or no day before (a run that starts on its first issue day) means no move."""
    import torch

    from hydrocast import artefact, config
    from hydrocast.forward import issue_errors, run_chunked, run_period, set_persistence_weight
    from hydrocast.predict import Forecaster

    _, meta = artefact.load(trained)
    with Forecaster(config.load(work / "hydrocast.toml")) as fc:
        for name, net in (("convlstm", fc.net), ("lumped", fc.lumped)):
            fitted = meta["update_gain"][name]
            assert len(fitted) == fc.lead and all(0.0 <= g <= 1.0 for g in fitted)
            np.testing.assert_allclose(net.update_gain.numpy(), fitted, rtol=1e-6)
        basins = fc.basin_set(["all"])
        inp = fc.inputs(basins)
        a = fc.issue_index("2020-03-01")
        for net in (fc.net, fc.lumped):
            with torch.no_grad():
                net.update_gain.copy_(torch.tensor([0.6, 0.4, 0.2]))
            set_persistence_weight(net, None)  # the updating alone (the blend: the next test)
            want = _updated(net, inp, a, a + 19, 60)
            plain = run_period(net, inp, a, a + 19, 60)
            for chunk in (0, 7):
                got = run_chunked(net, inp, a, a + 19, 60, chunk_days=chunk)
                _close(got.q, want.q)
                _close(got.extra["q_quantiles"], want.extra["q_quantiles"])
            moved = np.abs(got.q - plain.q).max(axis=(0, 2))
            assert (moved > 1e-3).all()  # every gauged basin moved
            # the errors as the forecasts saw them: independent of the gain
            prev = run_period(net, inp, a - 1, a + 18, 59).q_norm[:, :, 0]
            np.testing.assert_allclose(got.extra["issue_error"], issue_errors(inp, prev, a), atol=1e-4)
            assert got.to_xarray(basins.ids)["issue_error"].dims == ("issue_day", "basin")  # the API's view
            silent = inp.obs.copy()
            silent[a + 5] = np.nan  # every gauge silent on one issue day
            got = run_chunked(net, dataclasses.replace(inp, obs=silent), a, a + 19, 60)
            ref = run_period(net, dataclasses.replace(inp, obs=silent), a, a + 19, 60)
            _close(got.q[5], ref.q[5])
            first = run_chunked(net, inp, a, a + 19, 0, start=a)  # no day before: day a as it was
            _close(first.q[0], run_period(net, inp, a, a + 19, 0, start=a).q[0])
            _close(run_chunked(net, inp, a, a + 19, 60, with_obs=False).q,
                   run_period(net, inp, a, a + 19, 60, with_obs=False).q)


def test_forecasts_are_blended_with_persistence_gauge_by_gauge(work, trained):
    """The blend with persistence: train fitted one weight per gauge and lead on the validation
    period and saved it (artefact meta by basin id, weights as a (G, L) buffer in the basins'
    order, both models). With the weight 1 at one gauge (gain 0), that basin's forecast at every
    lead is its discharge observed on the issue day, read here from the discharge file, and its
    quantiles keep their distances to it; the other gauges, weight 0, are the run without a blend;
    a day the gauge is silent is not blended; evaluate's ``no_blend`` variant is the run without
    the blend; with_obs=False never blends."""
    import torch

    from hydrocast import artefact, config
    from hydrocast.forward import run_chunked, run_period, set_persistence_weight
    from hydrocast.predict import Forecaster

    _, meta = artefact.load(trained)
    ids = [b["id"] for b in meta["basins"]]
    q = pd.read_csv(SAMPLE / "discharge" / "discharge.csv", parse_dates=["date"], dtype={"basin_id": str})
    with Forecaster(config.load(work / "hydrocast.toml")) as fc:
        for name, net in (("convlstm", fc.net), ("lumped", fc.lumped)):
            fitted = meta["persistence_weight"][name]
            assert list(fitted) == ids and all(len(w) == fc.lead and all(0 <= x <= 1 for x in w)
                                               for w in fitted.values())
            np.testing.assert_allclose(net.persistence_weight.numpy(), [fitted[b] for b in ids], atol=1e-4)
        basins = fc.basin_set(["all"])
        inp = fc.inputs(basins)
        a = fc.issue_index("2020-03-01")
        n0 = basins.ids.index(ids[2])  # the third gauge, wherever it is among the read-out basins
        issue = pd.DatetimeIndex(fc.reader.days[a:a + 20].astype("datetime64[ns]"))
        observed = q[q["basin_id"] == ids[2]].set_index("date")["discharge"].reindex(issue).to_numpy()
        assert np.isfinite(observed).all()
        silent = inp.obs.copy()
        silent[a + 4, 2] = np.nan
        for net in (fc.net, fc.lumped):
            weight = np.zeros((len(ids), fc.lead), dtype="float32")
            weight[2] = 1.0
            with torch.no_grad():
                net.update_gain.zero_()
            set_persistence_weight(net, weight)
            plain = run_period(net, inp, a, a + 19, 60)
            got = run_chunked(net, inp, a, a + 19, 60, chunk_days=7)
            np.testing.assert_allclose(got.q[:, n0, :], np.repeat(observed[:, None], fc.lead, axis=1), rtol=1e-4)
            others = [n for n in range(len(basins.ids)) if n != n0]
            _close(got.q[:, others], plain.q[:, others])
            spread = got.extra["q_quantiles_norm"][:, n0] - got.q_norm[:, n0, :, None]
            _close(spread, plain.extra["q_quantiles_norm"][:, n0] - plain.q_norm[:, n0, :, None])
            used = got.extra["persistence_weight"]
            assert used[:, n0].min() == 1.0 and used[:, others].max() == 0
            day = run_chunked(net, dataclasses.replace(inp, obs=silent), a, a + 19, 60)
            ref = run_period(net, dataclasses.replace(inp, obs=silent), a, a + 19, 60)
            _close(day.q[4, n0], ref.q[4, n0])
            assert not np.allclose(day.q[3, n0], ref.q[3, n0], rtol=1e-3)
            _close(run_chunked(net, inp, a, a + 19, 60, with_obs=False).q, run_period(net, inp, a, a + 19, 60,
                                                                                         with_obs=False).q)
        runs = fc.run(basins, a, a + 19, lumped=True, blend=False)
        for name, net in (("convlstm", fc.net), ("lumped_lstm", fc.lumped)):
            _close(runs[name].q, run_period(net, inp, a, a + 19, fc.spin).q)
            assert net.persistence_weight.shape == (len(ids), fc.lead)  # restored after


def _tiled(work, tmp_path, tile: int, halo: int = 2):
    """The trained project's config (``work``/hydrocast.toml, or the config file ``work``) with
    [train] tile_cells = tile (the same model)."""
    text = (work if work.suffix == ".toml" else work / "hydrocast.toml").read_text()
    cfg = tmp_path / f"tiled{tile}.toml"
    cfg.write_text(text.replace("[train]\n", f"[train]\ntile_cells = {tile}\ntile_halo_cells = {halo}\n", 1))
    return cfg


def test_tiled_predict_and_evaluate_run_each_basin_in_its_window(work, trained, tmp_path, monkeypatch, updating):
    """[train] tile_cells > 0: predict and evaluate run window by window (hydrocast.tiles). Each
    basin's forecast is the model run on its window alone with that basin (independent path), gauged
    and ungauged (leads 2-3 silent); predict keeps one state per window and continues from it, its
    maps are the window run's cut to the basin; evaluate's hindcast is the tiled run; one window over
    the whole grid is the whole-domain forecast."""
    from hydrocast import config, forward
    from hydrocast.forward import run_period
    from hydrocast.predict import Forecaster
    from hydrocast.state import state_path

    ungauged = SAMPLE / "basins" / "ungauged.geojson"
    with Forecaster(config.load(work / "hydrocast.toml")) as whole:
        a = whole.issue_index("2020-06-01")
        b = a + 4
        ref = {p: whole.run(whole.basin_set(["all"], p), a, b, lumped=True) for p in (None, ungauged)}
    with Forecaster(config.load(_tiled(work, tmp_path, 24))) as fc:
        for path in (None, ungauged):
            basins = fc.basin_set(["all"], path)
            plan = fc.windows(basins)
            assert len(plan) > 1 and all(w.shape == (24, 24) for w in plan)
            runs = fc.run(basins, a, b, lumped=True)
            inp = fc.inputs(basins)
            for w in plan:
                for n in w.basins:
                    alone = inp.window(w.rows, w.cols, [n])
                    for name, net in (("convlstm", fc.net), ("lumped_lstm", fc.lumped)):
                        own = _updated(net, alone, a, b, fc.spin).q[:, 0]
                        if path is not None:  # ungauged: leads 2.. as if every gauge were silent
                            own[:, 1:] = run_period(net, alone, a, b, fc.spin, with_obs=False).q[:, 0, 1:]
                        np.testing.assert_allclose(runs[name].q[:, n], own, rtol=1e-4, atol=1e-5)
            # the lumped LSTM reads basin means: the window changes nothing
            np.testing.assert_allclose(runs["lumped_lstm"].q, ref[path]["lumped_lstm"].q, rtol=1e-4, atol=1e-5)
        # every map the tiled run reads is a window's, never the grid's
        shapes = []
        real = forward.streams_for
        monkeypatch.setattr(forward, "streams_for", lambda *a, **k: shapes.append(real(*a, **k)) or shapes[-1])
        fc.run(fc.basin_set(["all"]), a, a, lumped=True)
        monkeypatch.setattr(forward, "streams_for", real)
        assert len(shapes) > 2 and {tuple(s["dynamic"].shape[-2:]) for s in shapes} == {(24, 24)}
        assert {tuple(s["basins"].shape[-2:]) for s in shapes} == {(24, 24)}
        basins = fc.basin_set(["all"])
        plan = fc.windows(basins)
        i = fc.issue_index("2020-06-10")
        inp = fc.inputs(basins)
        want = {basins.ids[n]: _updated(fc.net, inp.window(w.rows, w.cols, list(w.basins)), i, i, fc.spin)
                for w in plan for n in w.basins}
        model_id = fc.model_id
    with Forecaster(config.load(_tiled(work, tmp_path, 32))) as one:  # one window over the grid
        basins = one.basin_set(["all"])
        assert len(one.windows(basins)) == 1
        np.testing.assert_allclose(one.run(basins, a, b)["convlstm"].q, ref[None]["convlstm"].q, rtol=1e-4, atol=1e-5)

    cfg = _tiled(work, tmp_path, 24)
    out = tmp_path / "fc"
    for day, spin in (("2020-06-10", "spun up"), ("2020-06-11", "continued from the saved state of 2020-06-08")):
        res = invoke("predict", "--config", str(cfg), "--basin", "all", "--issue-date", day, "--out", str(out),
                     "--json", "--quiet")
        assert res.exit_code == 0, res.output
        for w in plan:  # one saved state per window
            assert state_path(work / "cube.nc", model_id, w).exists()
        if day == "2020-06-10":
            got = {e["id"]: e["discharge_m3s"] for e in json.loads(res.stdout)["basins"]}
            for n, bid in enumerate(basins.ids):
                w = next(w for w in plan if n in w.basins)
                k = list(w.basins).index(n)
                np.testing.assert_allclose(got[bid], want[bid].q[0, k], rtol=1e-3, atol=1e-3)
                with xr.open_dataset(next(out.glob(f"{bid}_20200610_*_maps.nc"))) as ds:
                    rows = np.flatnonzero(np.isin(np.round(fc.grid.y, 6), np.round(ds["y"].values, 6)))
                    cols = np.flatnonzero(np.isin(np.round(fc.grid.x, 6), np.round(ds["x"].values, 6)))
                    assert w.y0 <= rows[0] and rows[-1] < w.y1 and w.x0 <= cols[0] and cols[-1] < w.x1
                    sm = fc.map_physical(want[bid]["maps"][0])[0][:, rows - w.y0][:, :, cols - w.x0]
                    np.testing.assert_allclose(ds["soil_moisture"].values, sm, rtol=1e-4, atol=1e-4)
        with xr.open_dataset(next(out.glob(f"PT01_{day.replace('-', '')}_*_hydrograph.nc"))) as ds:
            assert ds.attrs["hydrocast_spin_up"].startswith(spin)

    ev = tmp_path / "ev"
    res = invoke("evaluate", "--config", str(cfg), "--period", "2020-06-01:2020-06-05", "--out", str(ev), "--quiet")
    assert res.exit_code == 0, res.output
    with Forecaster(config.load(cfg)) as fc, xr.open_dataset(ev / "hindcast.nc") as ds:
        basins = fc.basin_set(["all"])
        tiled = fc.run(basins, a, b)["convlstm"].q  # (T, N, L)
        sim = ds["discharge_simulated"].transpose("basin", "forecast_reference_time", "lead_time").values
        np.testing.assert_allclose(sim, np.swapaxes(tiled, 0, 1), rtol=1e-4, atol=1e-4)


def test_ungauged_thresholds_are_fitted_once_and_kept(work, trained, tmp_path, monkeypatch):
    """An ungauged basin's thresholds come from a hindcast run once: the next forecast reads them
    from <cube stem>.state/<model id>.thresholds.json; other [thresholds] settings recompute them."""
    import hydrocast.thresholds as hth

    cfg = work / "hydrocast.toml"
    args = ["--basins", str(SAMPLE / "basins" / "ungauged.geojson"), "--basin", "PT07", "--json", "--quiet"]
    res = invoke("predict", "--config", str(cfg), "--out", str(tmp_path / "a"), *args)
    assert res.exit_code == 0, res.output
    model_id = json.loads(res.stdout)["model_id"]
    cache = work / "cube.state" / f"{model_id}.thresholds.json"
    kept = json.loads(cache.read_text())
    # 2.5 years of hindcast: too short for a fit, and that result is kept too
    assert kept["PT07"]["rows"] == [] and kept["PT07"]["note"] == (
        "none: no observed record and fewer than 3 years of hindcast")

    def refuse(*a, **k):
        raise AssertionError("the hindcast ran again")

    monkeypatch.setattr(hth, "fit_basin_thresholds", refuse)
    res = invoke("predict", "--config", str(cfg), "--out", str(tmp_path / "b"), *args)
    assert res.exit_code == 0, res.output  # read from the file, not fitted again
    cfg2 = tmp_path / "hydrocast.toml"
    cfg2.write_text(cfg.read_text() + "\n[thresholds]\nmin_years = 3\n")
    res = invoke("predict", "--config", str(cfg2), "--out", str(tmp_path / "c"), *args)
    assert res.exit_code == 70 and "the hindcast ran again" in res.stderr  # another setting: fitted again
    cache.write_text("{not json")
    monkeypatch.undo()
    res = invoke("predict", "--config", str(cfg), "--out", str(tmp_path / "d"), *args)
    assert res.exit_code == 0, res.output  # a corrupt file is rebuilt
    assert "PT07" in json.loads(cache.read_text())


@pytest.mark.parametrize("args,code,needle", [
    (["--basin", "NOPE"], 67, "NOPE"),
    (["--basin", "PT01", "--issue-date", "2015-01-05"], 75, "2015-01-05"),
    (["--basin", "PT01", "--issue-date", "2031-01-01"], 75, "2031-01-01"),
])
def test_predict_errors_write_nothing(work, trained, tmp_path, args, code, needle):
    out = tmp_path / "fc"
    res = invoke("predict", "--config", str(work / "hydrocast.toml"), "--out", str(out), *args)
    assert res.exit_code == code, res.output
    assert needle in res.stderr and res.stderr.count("\n") == 1
    assert not out.exists() or not any(out.iterdir())


def test_predict_refuses_cube_of_another_grid(work, trained, tmp_path):
    from tests.test_ingest import make_project

    small = make_project(tmp_path / "other")
    assert invoke("ingest", "--config", str(small), "--quiet").exit_code == 0
    cfg = small.parent / "x.toml"  # beside the small project: its relative paths stay valid
    cfg.write_text(small.read_text() + FAST_TRAIN.format(model=trained))
    res = invoke("predict", "--config", str(cfg), "--basin", "PT01", "--out", str(tmp_path / "fc"))
    assert res.exit_code == 65 and "grid" in res.stderr


def test_tampered_and_pickled_artefacts_are_refused(work, trained, tmp_path):
    import pickle

    cfg_text = (work / "hydrocast.toml").read_text()
    for case in ("pickle", "truncated", "version"):
        bad = tmp_path / case
        shutil.copytree(trained, bad)
        if case == "pickle":  # a pickle that would run code, renamed into the artefact
            (bad / "model.safetensors").write_bytes(pickle.dumps({"x": os.system}))
        elif case == "truncated":
            data = (bad / "model.safetensors").read_bytes()
            (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
        else:
            meta = json.loads((bad / "model.json").read_text())
            meta["format_version"] = 99
            (bad / "model.json").write_text(json.dumps(meta))
        cfg = tmp_path / f"{case}.toml"
        cfg.write_text(cfg_text.replace(f'model_dir = "{trained}"', f'model_dir = "{bad}"'))
        res = invoke("predict", "--config", str(cfg), "--basin", "PT01", "--out", str(tmp_path / f"fc-{case}"))
        assert res.exit_code == 65, (case, res.output)
        assert str(bad) in res.stderr


def test_pickle_with_matching_checksum_is_still_refused(trained, tmp_path):
    """Even with model.json's checksum updated, safetensors cannot carry a pickle."""
    import hashlib
    import pickle

    from hydrocast import artefact
    from hydrocast.errors import BadInputError

    bad = tmp_path / "m"
    shutil.copytree(trained, bad)
    payload = pickle.dumps({"x": os.system})
    (bad / "model.safetensors").write_bytes(payload)
    meta = json.loads((bad / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(payload).hexdigest()
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BadInputError, match="safetensors"):
        artefact.load(bad)


@pytest.mark.parametrize("bad_id", ["../../escaped", "/tmp/hydrocast-escaped", ".hidden", "a/b"])
def test_hostile_basin_ids_never_become_paths(work, trained, tmp_path, bad_id):
    """An id from --basin or from a tampered model.json is refused before any path is built."""
    cfg = work / "hydrocast.toml"
    out = tmp_path / "deep" / "fc"
    res = invoke("predict", "--config", str(cfg), "--basin", bad_id, "--out", str(out))
    assert res.exit_code == 67 and "not allowed" in res.stderr, res.output
    # the same id written into a copy of the artefact (the weights' checksum does not cover it)
    model = tmp_path / "model"
    shutil.copytree(trained, model)
    meta = json.loads((model / "model.json").read_text())
    meta["basins"][0]["id"] = bad_id
    (model / "model.json").write_text(json.dumps(meta))
    tampered = tmp_path / "hydrocast.toml"
    tampered.write_text(cfg.read_text().replace(f'model_dir = "{trained}"', f'model_dir = "{model}"'))
    res = invoke("predict", "--config", str(tampered), "--basin", "all", "--out", str(out))
    assert res.exit_code == 65 and "model.json" in res.stderr and "id" in res.stderr, res.output
    assert not out.exists()
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/hydrocast-escaped_").exists()
    assert not list(tmp_path.glob("**/*_hydrograph.nc"))


def test_python_api_matches_the_command_line(work, trained, tmp_path):
    """api.forecast / api.hindcast return xarray objects with named dimensions whose values are
    those the CLI writes to its NetCDF files."""
    import hydrocast.api as hc

    cfg = work / "hydrocast.toml"
    fc = hc.forecast(cfg, ["PT01", "PT02"], issue_date="2020-06-30", lumped=True)
    assert fc["q"].dims == ("issue_day", "basin", "lead") and fc["maps"].dims == ("issue_day", "lead", "y", "x")
    assert list(fc["basin"].values) == ["PT01", "PT02"] and list(fc["lead"].values) == [1, 2, 3]
    out = tmp_path / "fc"
    res = invoke("predict", "--config", str(cfg), "--basin", "PT02", "--out", str(out), "--issue-date", "2020-06-30",
                 "--quiet")
    assert res.exit_code == 0, res.output
    with xr.open_dataset(next(out.glob("PT02_20200630_*_hydrograph.nc"))) as ds:
        # (predict may continue the saved state of an earlier test's chain, the API spins up: float noise)
        np.testing.assert_allclose(fc["q"].sel(basin="PT02").values[0], ds["discharge"].values[0], rtol=1e-4,
                                   atol=1e-4)
    assert fc.attrs["model_id"] in next(out.glob("PT02_*")).name
    assert np.isfinite(fc["q_lumped"].values).all()
    hind = hc.hindcast(cfg, "2019-02-01:2019-02-28")
    assert hind["convlstm"].dims == ("issue_day", "basin", "lead") and hind.sizes["issue_day"] == 28
    # one forward path: the hindcast's first issue day (same warm-up before it) is a forecast issued that day
    one = hc.forecast(cfg, "all", issue_date="2019-02-01")
    np.testing.assert_allclose(hind["convlstm"].sel(issue_day="2019-02-01").values, one["q"].values[0], rtol=1e-5)
    # observed = the discharge of the following days, read independently here
    q = pd.read_csv(SAMPLE / "discharge" / "discharge.csv", parse_dates=["date"])
    q = q[q["basin_id"] == "PT01"].set_index("date")["discharge"]
    want = q.reindex(pd.DatetimeIndex(hind["issue_day"].values) + pd.Timedelta(days=2)).to_numpy()
    np.testing.assert_allclose(hind["observed"].sel(basin="PT01", lead=2).values, want, rtol=1e-6, equal_nan=True)
    assert np.isfinite(want).sum() > 20


# -- evaluate ----------------------------------------------------------------------------------

def test_evaluate_table_and_hindcast(work, trained, tmp_path):
    import pandas as pd

    out = tmp_path / "ev"
    res = invoke("evaluate", "--config", str(work / "hydrocast.toml"), "--period", "2019-01-01:2019-03-31",
                 "--out", str(out), "--quiet", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    table = pd.read_csv(out / "metrics.csv", dtype={"basin": str})
    # the sample has observed discharge and a weather forecast: each model also as if every gauge
    # were silent, as if no forecast existed, and without its blend with persistence
    variants = {f"{m}{v}" for m in ("convlstm", "lumped_lstm") for v in ("", "_no_obs", "_no_forecast", "_no_blend")}
    assert set(table["model"]) == variants | {"persistence", "climatology"}
    assert len(table) == 10 * 7 * 3  # models x (6 basins + median) x leads
    with_obs = table[(table["model"] == "convlstm") & (table["basin"] != "median")]["nse"].to_numpy()
    silent = table[(table["model"] == "convlstm_no_obs") & (table["basin"] != "median")]["nse"].to_numpy()
    assert np.abs(with_obs - silent).max() > 1e-3  # the observations reach the forecast
    conv = table[(table["model"] == "convlstm") & (table["lead_days"] == 1)]
    med = conv[conv["basin"] == "median"]["nse"].item()
    assert med == pytest.approx(np.nanmedian(conv[conv["basin"] != "median"]["nse"]), abs=1e-4)
    assert summary["median"]["convlstm"]["1"]["nse"] == pytest.approx(med, abs=1e-3)
    ok, report = check_cf(out / "hindcast.nc")
    assert ok, report[-2000:]
    with xr.open_dataset(out / "hindcast.nc") as ds:
        assert ds.sizes["basin"] == 6 and ds.sizes["forecast_reference_time"] == 90
        # persistence = the observation on the issue day: lead-1 persistence of day t+1 equals
        # the lead-1 observation of day t
        pers = ds["discharge_persistence"].sel(lead_time=1).values
        obs = ds["discharge_observed"].sel(lead_time=1).values
        np.testing.assert_allclose(pers[:, 1:], obs[:, :-1], equal_nan=True)
        qq = ds["discharge_simulated_quantiles"].sel(lead_time=2).values  # (basin, quantile, time)
        levels = ds["quantile"].values
        obs2 = ds["discharge_observed"].sel(lead_time=2).values

    # the probabilistic table: the ConvLSTM's CRPS recomputed by hand (2/Q sum of pinball losses)
    prob = pd.read_csv(out / "probabilistic.csv", dtype={"basin": str})
    systems = {"convlstm", "lumped_lstm", "climatology_ensemble", "persistence_ensemble"}
    assert set(prob["model"]) == systems and len(prob) == 4 * 7 * 3
    o, q = obs2[0], qq[0].T  # basin 0: (time,), (time, quantile)
    keep = np.isfinite(o) & np.isfinite(q).all(axis=1)
    err = o[keep, None] - q[keep]
    pinball = np.maximum(levels * err, (levels - 1) * err)
    by_hand = float(np.mean(2 * pinball.mean(axis=1)))
    row = prob[(prob["model"] == "convlstm") & (prob["basin"] == "PT01") & (prob["lead_days"] == 2)].iloc[0]
    assert row["crps"] == pytest.approx(by_hand, rel=1e-3)
    assert row["coverage_90"] == pytest.approx(np.mean((o[keep] >= q[keep, 0]) & (o[keep] <= q[keep, -1])), abs=1e-4)
    clim = prob[(prob["model"] == "climatology_ensemble") & (prob["basin"] != "median")]
    assert np.allclose(clim["crpss_climatology"], 0.0)  # a reference against itself
    assert summary["probabilistic"]["convlstm"]["2"]["crps"] == pytest.approx(
        prob[(prob["model"] == "convlstm") & (prob["basin"] == "median") & (prob["lead_days"] == 2)]["crps"].item(),
        abs=1e-3)
    # the basin-by-basin comparison of the two models, per lead and score
    paired = pd.read_csv(out / "paired.csv")
    assert sorted(zip(paired["lead_days"], paired["score"])) == [(l, s) for l in (1, 2, 3) for s in ("crps", "nse")]
    nse = table[(table["lead_days"] == 1) & (table["basin"] != "median")]
    diff = (nse[nse["model"] == "convlstm"].set_index("basin")["nse"]
            - nse[nse["model"] == "lumped_lstm"].set_index("basin")["nse"])
    row = paired[(paired["lead_days"] == 1) & (paired["score"] == "nse")].iloc[0]
    assert row["median_difference"] == pytest.approx(np.median(diff), abs=1e-4)
    assert row["wins"] == int((diff > 0).sum()) and row["n"] == 6


def test_kfold_scores_every_basin_once_as_ungauged(work, trained, tmp_path):
    """evaluate --kfold 3: three model pairs, each trained without its held-out basins, which are then
    scored as ungauged; the table agrees with a plain evaluate of a fold model on those basins."""
    import pandas as pd

    cfg = work / "hydrocast.toml"
    out = tmp_path / "kf"
    res = invoke("evaluate", "--config", str(cfg), "--kfold", "3", "--period", "2019-01-01:2019-03-31",
                 "--out", str(out), "--quiet", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    folds = summary["folds"]
    ids = ["PT01", "PT02", "PT03", "PT04", "PT05", "PT06"]
    assert sorted(b for f in folds for b in f) == ids and [len(f) for f in folds] == [2, 2, 2]
    for f, held in enumerate(folds, start=1):
        meta = json.loads((out / "kfold" / f"fold{f}" / "model" / "model.json").read_text())
        assert [b["id"] for b in meta["basins"]] == [b for b in ids if b not in held]  # never trained on
    table = pd.read_csv(out / "kfold.csv", dtype={"basin": str})
    systems = {"convlstm", "lumped_lstm", "convlstm_no_obs", "lumped_lstm_no_obs"}
    assert set(table["model"]) == systems and len(table) == 4 * 7 * 3
    med = table[(table["model"] == "convlstm") & (table["basin"] == "median") & (table["lead_days"] == 1)]
    assert summary["median"]["convlstm"]["1"]["nse"] == pytest.approx(med["nse"].item(), abs=1e-3)

    # fold 1's model through the ordinary evaluate path, reading all basins from the basins file:
    # its held-out basins are ungauged there too, and score the same
    fold_cfg = tmp_path / "fold1.toml"
    fold_cfg.write_text(cfg.read_text().replace(f'model_dir = "{trained}"',
                                                f'model_dir = "{out / "kfold" / "fold1" / "model"}"'))
    res = invoke("evaluate", "--config", str(fold_cfg), "--period", "2019-01-01:2019-03-31",
                 "--basins", str(SAMPLE / "basins" / "basins.geojson"), "--out", str(tmp_path / "ev1"),
                 "--quiet", "--json")
    assert res.exit_code == 0, res.output
    plain = pd.read_csv(tmp_path / "ev1" / "metrics.csv", dtype={"basin": str})
    for bid in folds[0]:
        for model in systems:
            a = table[(table["model"] == model) & (table["basin"] == bid)].sort_values("lead_days")["nse"]
            b = plain[(plain["model"] == model) & (plain["basin"] == bid)].sort_values("lead_days")["nse"]
            np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=1e-3)
    res = invoke("evaluate", "--config", str(cfg), "--kfold", "7", "--out", str(tmp_path / "kf7"), "--quiet")
    assert res.exit_code == 78 and "--kfold 7" in res.stderr



def test_seeds_trains_one_pair_per_seed_and_scores_each_on_both_periods(work, trained, tmp_path):
    """evaluate --seeds 1,2: seed 1's model is the ``trained`` fixture's (trained with --seed 1: the
    same weights), seed 2's another; seeds.csv holds the medians of each seed's own metrics.csv on
    the validation and the test period, and the summary their means and differences."""
    import pandas as pd

    cfg = work / "hydrocast.toml"
    out = tmp_path / "seeds"
    res = invoke("evaluate", "--config", str(cfg), "--seeds", "1,2", "--period", "2020-01-01:2020-03-31",
                 "--out", str(out), "--quiet", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    sha = {s: json.loads((out / "seeds" / f"seed{s}" / "model" / "model.json").read_text())["weights_sha256"]
           for s in (1, 2)}
    assert sha[1] == json.loads((trained / "model.json").read_text())["weights_sha256"] != sha[2]
    table = pd.read_csv(out / "seeds.csv")
    assert set(table["period"]) == {"validation", "test"} and set(table["seed"]) == {1, 2}
    for s in (1, 2):
        for period in ("validation", "test"):
            m = pd.read_csv(out / "seeds" / f"seed{s}" / period / "metrics.csv", dtype={"basin": str})
            med = m[m["basin"] == "median"]
            for model in ("convlstm", "lumped_lstm", "persistence"):
                a = table[(table["seed"] == s) & (table["period"] == period) & (table["model"] == model)]
                b = med[med["model"] == model]
                np.testing.assert_allclose(a.sort_values("lead_days")["nse"].to_numpy(),
                                           b.sort_values("lead_days")["nse"].to_numpy(), atol=1e-4)
    c = table[(table["period"] == "test") & (table["model"] == "convlstm") & (table["lead_days"] == 1)]
    lum = table[(table["period"] == "test") & (table["model"] == "lumped_lstm") & (table["lead_days"] == 1)]
    got = summary["summary"]["test"]["convlstm"]["1"]
    assert got["nse_mean"] == pytest.approx(c["nse"].mean(), abs=1e-4)
    assert got["nse_minus_lumped"] == pytest.approx((c["nse"].to_numpy() - lum["nse"].to_numpy()).mean(), abs=1e-4)
    assert got["seeds_ahead"] == int((c["nse"].to_numpy() > lum["nse"].to_numpy()).sum())
    assert summary["periods"] == {"validation": ["2017-01-01", "2017-06-30"], "test": ["2020-01-01", "2020-03-31"]}
    res = invoke("evaluate", "--config", str(cfg), "--seeds", "1", "--out", str(tmp_path / "s1"), "--quiet")
    assert res.exit_code == 65 and "--seeds" in res.stderr


# -- resume ------------------------------------------------------------------------------------

def test_killed_training_resumes_from_last_epoch(work, cube, tmp_path):
    model = tmp_path / "model"
    cfg = project_config(tmp_path, cube, model)
    cfg.write_text(cfg.read_text().replace("epochs = 2", "epochs = 4"))
    ckpt = tmp_path / ".model.checkpoint-convlstm" / "model.json"  # the ConvLSTM loop's checkpoint
    proc = subprocess.Popen([sys.executable, "-m", "hydrocast.cli", "train", "--config", str(cfg), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.exists() and json.loads(ckpt.read_text())["state"]["epoch"] >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(ckpt.read_text())["state"]["epoch"]
    assert 1 <= done < 4 and not (model / "model.json").exists()
    res = invoke("train", "--config", str(cfg), "--resume", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["resumed_from_epoch"] == done
    assert "resuming after epoch" in res.stderr
    assert summary["epochs_run"] >= done
    assert not ckpt.exists()


def test_train_errors(work, cube, tmp_path):
    cfg = project_config(tmp_path, cube, tmp_path / "m")
    bad = cfg.read_text().replace('train_period = ["2015-01-01", "2016-12-31"]',
                                  'train_period = ["2010-01-01", "2016-12-31"]')
    cfg.write_text(bad)
    res = invoke("train", "--config", str(cfg))
    assert res.exit_code == 65 and "2010-01-01" in res.stderr and "outside the cube" in res.stderr
    assert not (tmp_path / "m").exists()
    cfg.write_text(bad.replace("2010-01-01", "2015-01-01").replace("[train]", '[train]\ninputs = ["snow"]'))
    res = invoke("train", "--config", str(cfg))
    assert res.exit_code == 65 and "snow" in res.stderr


def test_a_deterministic_model_still_predicts_and_evaluates(work, cube, tmp_path):
    """probabilistic = false: no distribution anywhere (no quantiles, no thresholds, no
    probabilistic tables), the rest as before."""
    model = tmp_path / "m"
    cfg = project_config(tmp_path, cube, model)
    cfg.write_text(cfg.read_text().replace("epochs = 2", "epochs = 1\nprobabilistic = false"))
    res = invoke("train", "--config", str(cfg), "--quiet", "--json")
    assert res.exit_code == 0, res.output
    meta = json.loads((model / "model.json").read_text())
    assert meta["hparams"]["quantiles"] == 0 and meta["distribution"] is None
    res = invoke("predict", "--config", str(cfg), "--basin", "PT01", "--issue-date", "2020-06-30",
                 "--out", str(tmp_path / "fc"), "--json", "--quiet", "--plot")
    assert res.exit_code == 0, res.output
    entry = json.loads(res.stdout)["basins"][0]
    assert "quantiles_m3s" not in entry and "thresholds" not in entry
    with xr.open_dataset(next((tmp_path / "fc").glob("*_hydrograph.nc"))) as ds:
        assert "discharge_quantiles" not in ds and "exceedance_probability" not in ds
    res = invoke("evaluate", "--config", str(cfg), "--period", "2019-01-01:2019-02-28", "--out",
                 str(tmp_path / "ev"), "--json", "--quiet")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["probabilistic"] == {} and not (tmp_path / "ev" / "probabilistic.csv").exists()
    assert set(summary["paired"]["1"]) == {"nse"}
