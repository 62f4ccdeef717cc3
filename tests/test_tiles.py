"""Tiled training (``[train] tile_cells``): the window plan, windowed reads and inputs, the
DataLoader path, and a short tiled run on a tiny project (the sample's first three months on its
32 x 32 grid; six basins, two windows of 24 x 24 cells with a halo of 2)."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hydrocast import config
from hydrocast.cli import app
from hydrocast.dataset import ChunkBatches, TileBatches, TileItems
from hydrocast.errors import ConfigError
from hydrocast.model import observation_maps
from hydrocast.tiles import basin_boxes, plan_windows
from tests.tinyproject import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"

CONFIG = tiny_config(3, """
train_period = ["2015-01-15", "2015-02-20"]
validation_period = ["2015-02-21", "2015-03-20"]
lead_days = 2
warmup_days = 3
window_days = 12
memory_days = 10
hidden = 3
epochs = 1
batch_size = 2
tile_cells = 24
tile_halo_cells = 2
""")


# -- the plan (torch-free) -----------------------------------------------------------------------

def _masks(boxes, shape=(40, 50)):
    m = np.zeros((len(boxes), *shape), dtype="float32")
    for k, (y0, y1, x0, x1) in enumerate(boxes):
        m[k, y0:y1, x0:x1] = 1.0
        m[k, y0, x0] = 0.5  # a fraction counts as inside
    return m


@pytest.mark.parametrize("tile, halo", [(12, 0), (12, 2), (20, 3), (100, 5)])
def test_every_basin_is_in_one_window_with_its_halo(tile, halo):
    rng = np.random.default_rng(3)
    boxes = []
    for _ in range(25):
        h, w = rng.integers(1, 12 - 2 * halo + 1, 2)
        y0, x0 = rng.integers(0, 40 - h + 1), rng.integers(0, 50 - w + 1)
        boxes.append((y0, y0 + h, x0, x0 + w))
    masks = _masks(boxes)
    plan = plan_windows(masks, tile, halo)
    held = sorted(b for w in plan for b in w.basins)
    assert held == list(range(len(boxes)))  # every basin exactly once
    shape = (min(tile, 40), min(tile, 50))
    for w in plan:
        assert w.shape == shape and 0 <= w.y0 and w.y1 <= 40 and 0 <= w.x0 and w.x1 <= 50
        assert list(w.basins) == sorted(w.basins)
        for b in w.basins:
            y0, y1, x0, x1 = boxes[b]
            assert w.y0 <= max(y0 - halo, 0) and min(y1 + halo, 40) <= w.y1
            assert w.x0 <= max(x0 - halo, 0) and min(x1 + halo, 50) <= w.x1
    if tile >= 50:
        assert len(plan) == 1 and plan[0].shape == (40, 50)
    else:
        assert len(plan) > 1  # 25 scattered basins do not fit one small window


def test_the_halo_is_clamped_at_the_edge_and_a_basin_too_big_is_named():
    masks = _masks([(0, 10, 0, 10), (30, 40, 40, 50)])
    assert [w.shape for w in plan_windows(masks, 12, 2)] == [(12, 12), (12, 12)]  # 10 + 2 at the edges
    assert basin_boxes(masks).tolist() == [[0, 10, 0, 10], [30, 40, 40, 50]]
    with pytest.raises(ConfigError, match=r"basin B2 spans 10 x 10 cells, 14 x 14 with its halo.*tile_cells >= 14"):
        plan_windows(_masks([(0, 10, 0, 10), (20, 30, 20, 30)]), 12, 2, ids=["B1", "B2"])


def test_tile_keys_are_validated(tmp_path):
    base = config.starter_toml()
    for key, value in (("tile_cells", -1), ("tile_halo_cells", -2), ("loader_workers", -1)):
        path = tmp_path / f"{key}.toml"
        path.write_text(base.replace("[train]\n", f"[train]\n{key} = {value}\n", 1))
        with pytest.raises(ConfigError, match=rf"\[train\] {key} must be >= 0"):
            config.load(path)


# -- the tiny project --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiles")
    cfg = root / "hydrocast.toml"
    cfg.write_text(CONFIG)
    res = CliRunner().invoke(app, ["ingest", "--config", str(cfg), "--quiet", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["days_added"] == 90
    return cfg


@pytest.fixture(scope="module")
def trainer(project):
    from hydrocast.train import Trainer

    t = Trainer(config.load(project), device="cpu", seed=0)
    yield t
    t.close()


def whole(trainer):
    """The same trainer on the whole domain (its plan dropped)."""
    t = copy.copy(trainer)
    t.plan = None
    return t


def test_the_plan_of_the_tiny_project(trainer):
    assert [w.shape for w in trainer.plan] == [(24, 24), (24, 24)]
    assert sorted(b for w in trainer.plan for b in w.basins) == list(range(len(trainer.basins)))


def test_a_window_reads_the_cube_cut_to_it(trainer):
    w = trainer.plan[1]
    view = trainer.reader.window(w.rows, w.cols)
    assert view.shape == w.shape
    spec = trainer.spec
    np.testing.assert_array_equal(view.dynamic_window(spec, 5, 17), trainer.reader.dynamic_window(spec, 5, 17)
                                  [..., w.rows, w.cols])
    np.testing.assert_array_equal(view.static_stack(spec), trainer.reader.static_stack(spec)[:, w.rows, w.cols])
    inner = view.window(slice(2, 5), slice(1, 3))  # a view of a view: cells of the view
    np.testing.assert_array_equal(inner.raw("precipitation", 0, 4),
                                  trainer.reader.raw("precipitation", 0, 4)[:, w.y0 + 2:w.y0 + 5, w.x0 + 1:w.x0 + 3])
    np.testing.assert_array_equal(view.complete_days(["soil_moisture"], 0, 30),
                                  np.isfinite(view.raw("soil_moisture", 0, 30)).reshape(30, -1).any(axis=1))


def test_a_window_reads_the_zarr_store_cut_to_it(trainer, tmp_path):
    from hydrocast.cube.zarrstore import ZarrReader
    from hydrocast.samples import CubeReader

    pytest.importorskip("zarr")
    import xarray as xr

    path = tmp_path / "cube.zarr"
    with xr.open_dataset(trainer.reader.path) as ds:
        ds.to_zarr(path, zarr_format=3, consolidated=False)
    try:
        reader = CubeReader(path)
    except Exception as exc:  # noqa: BLE001 - a plain xarray copy may lack what the store needs
        pytest.skip(f"a copied zarr store does not open as a cube: {exc}")
    with reader:
        assert isinstance(reader.store, ZarrReader)
        w = trainer.plan[0]
        np.testing.assert_array_equal(reader.window(w.rows, w.cols).raw("precipitation", 3, 9),
                                      trainer.reader.raw("precipitation", 3, 9)[:, w.rows, w.cols])
        np.testing.assert_array_equal(reader.window(w.rows, w.cols).static_raw("elevation"),
                                      trainer.reader.static_raw("elevation")[w.rows, w.cols])


def test_a_window_batch_is_the_whole_domain_batch_cut_to_it(trainer):
    t = trainer
    chunks = t.batches(1, fresh=True).items.chunks
    full = ChunkBatches(t.inputs, t.q_norm, t.map_var, chunks, t.cfg.train.window_days, t.periods.t1, seed=(0, 1),
                        rollout=False, stand_in=False, device="cpu")
    items = TileItems(t.inputs, t.q_norm, t.map_var, chunks, t.cfg.train.window_days, t.periods.t1, seed=(0, 1),
                      rollout=False, stand_in=False, windows=t.plan)
    assert len(items) == len(chunks) * 2
    for j in (0, len(chunks) - 1):
        ref = full.build(j, np.random.default_rng(0))
        for w, win in enumerate(t.plan):
            got = items[j * 2 + w]
            rows = list(win.basins)
            assert int(got["window"]) == w and got["basin_rows"].tolist() == rows
            np.testing.assert_array_equal(got["dynamic"], ref["dynamic"][..., win.rows, win.cols])
            np.testing.assert_array_equal(got["forecast"], ref["forecast"][..., win.rows, win.cols])
            np.testing.assert_array_equal(got["map_target"], ref["map_target"][..., win.rows, win.cols])
            np.testing.assert_array_equal(got["q_target"], ref["q_target"][:, :, rows])
            np.testing.assert_array_equal(got["static"], t.static.cpu()[:, win.rows, win.cols])
            np.testing.assert_array_equal(got["basins"], t.domain.channels[rows][:, :, win.rows, win.cols])
            np.testing.assert_array_equal(got["basin_area_km2"], t.area_km2[rows])
            assert got["reset"].tolist() == list(ref["reset"])
            # the gauges: those reaching into the window, each basin pointing at its own
            inp = items.inputs(w)
            reach = [g for g in range(len(t.basins)) if (t.domain.channels[g, 0, win.rows, win.cols] > 0).any()]
            assert set(rows) <= set(reach)
            np.testing.assert_array_equal(got["obs_basins"], t.domain.channels[reach, 0][:, win.rows, win.cols])
            np.testing.assert_allclose(got["obs_area"], t.domain.channels[reach, 0].sum(axis=(1, 2)), rtol=1e-6)
            np.testing.assert_array_equal(inp.obs, t.q_norm[:, reach])
            assert [reach[i] for i in got["obs_index"].tolist()] == rows
            assert got["obs"].shape[-1] == len(reach)


def test_window_observation_maps_with_obs_area_are_the_whole_maps_cut(trainer):
    t = trainer
    masks = torch.from_numpy(t.domain.channels[:, 0])
    obs = torch.from_numpy(np.random.default_rng(1).normal(size=(2, 5, len(t.basins))).astype("float32"))
    obs[0, 1, 2] = float("nan")
    value, cover = observation_maps(obs, masks)
    differs = False
    for win in t.plan:
        inp = t.inputs.window(win.rows, win.cols, win.basins)
        keep = [g for g in range(len(t.basins)) if (t.domain.channels[g, 0, win.rows, win.cols] > 0).any()]
        o = obs[..., keep]
        v, c = observation_maps(o, torch.from_numpy(inp.obs_basins), torch.from_numpy(inp.obs_area))
        torch.testing.assert_close(v, value[..., win.rows, win.cols], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(c, cover[..., win.rows, win.cols], rtol=0, atol=0)
        v0, _ = observation_maps(o, torch.from_numpy(inp.obs_basins))  # without obs_area: the cut masks' areas
        differs |= not torch.allclose(v0, value[..., win.rows, win.cols], atol=1e-6)
    assert differs  # the test can tell: a gauge cut by a window weighs differently without obs_area


def test_loader_workers_give_the_same_batches(trainer):
    a = trainer.batches(1, fresh=True)
    seen = [dict(b) for b in a]
    b = TileBatches(a.items, "cpu", workers=2)
    got = [dict(x) for x in b]
    assert len(seen) == len(got) == len(a) > 2
    for x, y in zip(seen, got):
        assert x.keys() == y.keys()
        for k in x:
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=0, equal_nan=True)
    assert any(np.isnan(x["obs"].numpy()).any() for x in seen)  # the hold-out drew something
    copied = pickle.loads(pickle.dumps(a.items))  # (a spawned worker's copy: it opens the cube itself)
    assert copied._handles is None
    for k, v in copied[3].items():
        torch.testing.assert_close(v, seen[3][k], rtol=0, atol=0, equal_nan=True)
    assert copied._handles[0] is not trainer.reader
    copied._handles[0].close()
    assert b.loader().multiprocessing_context.get_start_method() == "spawn"  # their own cube handles


def test_one_window_over_the_grid_trains_like_the_whole_domain(trainer):
    from hydrocast.model import HydroConvLSTM, LumpedLSTM, n_obs_features
    from hydrocast.train import ConvLSTMTask, LumpedTask

    one = copy.copy(trainer)
    one.plan = plan_windows(trainer.domain.channels[:, 0], 32, 16)
    assert len(one.plan) == 1 and one.plan[0].shape == (32, 32)
    losses = {}
    for name, t in (("whole", whole(trainer)), ("tiled", one)):
        torch.manual_seed(5)
        net = HydroConvLSTM(t.hparams)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
        task = ConvLSTMTask(t)
        out = []
        for epoch in (1, 2):  # the second epoch carries the state from the first
            for batch in task.batches(epoch):
                loss, _ = task.loss(net, batch)
                opt.zero_grad()
                loss.backward()
                opt.step()
                out.append(float(loss.detach()))
        lumped = LumpedTask(t)
        torch.manual_seed(6)
        lnet = LumpedLSTM(t.spec.n_dynamic_channels + t.spec.n_static_channels + 1 + n_obs_features(2), 4, 2,
                          observed=1, quantiles=1, obs_days=2)
        out += [float(lumped.loss(lnet, b)[0].detach()) for b in lumped.batches(1)]
        losses[name] = out
        losses[name + "_nse"] = t.validation_nse(net)
    assert len(losses["whole"]) > 6
    np.testing.assert_allclose(losses["tiled"], losses["whole"], rtol=1e-5)
    np.testing.assert_allclose(losses["tiled_nse"], losses["whole_nse"], rtol=1e-5, atol=1e-6)


def test_a_short_tiled_run_writes_a_model_on_window_sized_batches(trainer, tmp_path, monkeypatch):
    from hydrocast import artefact
    from hydrocast.train import ConvLSTMTask

    shapes = []
    real = ConvLSTMTask.loss

    def recording(self, net, batch):
        shapes.append({k: tuple(v.shape) for k, v in batch.items()})
        return real(self, net, batch)

    monkeypatch.setattr(ConvLSTMTask, "loss", recording)
    result = trainer.fit(tmp_path / "model", epochs=1)
    assert np.isfinite(result.validation_nse_median)
    assert all(np.isfinite(v) for v in result.validation_nse.values())
    assert artefact.exists(tmp_path / "model")
    assert shapes and len(shapes) == len(trainer.plan) * len(trainer.batches(1, fresh=False).items.chunks)
    for s in shapes:  # no input is domain-sized: every map is a window's (24 x 24 of 32 x 32)
        assert s["dynamic"][-2:] == (24, 24) and s["map_target"][-2:] == (24, 24)
        assert s["static"][-2:] == (24, 24) and s["basins"][-2:] == (24, 24) and s["obs_basins"][-2:] == (24, 24)
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["config"]["train"]["tile_cells"] == 24


def test_torchrun_shares_of_a_window_item_cover_its_streams(trainer, monkeypatch):
    from hydrocast import distributed

    t = trainer
    chunks = t.batches(1, fresh=True).items.chunks
    args = (t.inputs, t.q_norm, t.map_var, chunks, t.cfg.train.window_days, t.periods.t1)
    kw = {"seed": (0, 1), "rollout": False, "stand_in": False, "windows": t.plan}
    one = TileItems(*args, **kw)[1]
    parts = []
    for r in (0, 1):  # the share is fixed when the items are made (a loader worker is no group member)
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        monkeypatch.setattr(distributed, "world_size", lambda: 2)
        items = TileItems(*args, **kw, shard=True)
        monkeypatch.undo()
        parts.append(items[1])
    assert [p["dynamic"].shape[0] for p in parts] == [1, 1]
    for k in ("dynamic", "q_target", "map_target", "obs", "reset"):
        torch.testing.assert_close(torch.cat([p[k] for p in parts]), one[k], rtol=0, atol=0, equal_nan=True)


class _Forecasts:
    """A forecast store of the whole grid (mm; another value in every cell, lead and day)."""

    names, path = ["fc"], None

    def read(self, name, days, n_leads, cells=None):
        day = (np.asarray(days, dtype="datetime64[D]").astype(int) % 7).astype("float32")
        y, x = np.mgrid[0:32, 0:32]
        out = (day[:, None, None, None] + np.arange(n_leads)[None, :, None, None]
               + (0.1 * y + 0.01 * x)[None, None]).astype("float32")
        return out if cells is None else out[..., cells[0], cells[1]]


def test_a_window_forecast_stream_is_the_whole_one_cut(trainer):
    t = trainer
    inputs = dataclasses.replace(t.inputs, forecasts=_Forecasts(), forecast_name="fc")
    chunks = t.batches(1, fresh=True).items.chunks
    args = (inputs, t.q_norm, t.map_var, chunks, t.cfg.train.window_days, t.periods.t1)
    full = ChunkBatches(*args, seed=(0, 1), rollout=True, stand_in=False, device="cpu")
    ref = full.build(1, np.random.default_rng(0))
    items = TileItems(*args, seed=(0, 1), rollout=True, stand_in=False, windows=t.plan)
    slot = 2 * t.spec.dynamic.index("precipitation")
    assert float(ref["forecast"][:, :, :, slot + 1].mean()) == 1.0  # every lead day has a forecast
    for w, win in enumerate(t.plan):
        got = items[2 + w]
        assert "rollout_days" in got
        np.testing.assert_array_equal(got["forecast"], ref["forecast"][..., win.rows, win.cols])
