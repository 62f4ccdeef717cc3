"""Multi-process training: ``torchrun --nproc-per-node 2 -m hydrocast train`` (2 CPU processes, gloo).

A small project (the sample's first five months on its 32 x 32 grid, hidden 4, 3 streams per
batch, so the two processes train on shares of 2 and 1 stream and the loss weighting matters) is
trained once in this process and once under torchrun, both resuming from the same checkpoint of
an interrupted run: the ConvLSTM continues from its epoch 1, the lumped LSTM (no checkpoint)
starts afresh, so both the resumed and the fresh path run under torchrun.

Tolerances. The two runs see the same global batches and minimise the same global loss; they
differ in the order of the float32 sums (each process sums its share, DDP averages the
gradients in buckets). Measured on this project: the epoch losses and validation NSEs agree
to a relative 6e-8 and the weights to 7e-8 (4e-5 after two fresh ConvLSTM epochs: Adam's
normalised steps amplify rounding on gradients near zero). The bounds: 1e-5 relative on losses
and scores, 1e-3 on weights. Without the loss weighting (each process's mean loss averaged, the
naive DDP use; two fresh epochs) the epoch losses differed by 1e-3 to 3e-2 relative and the
weights by up to 1.25: the bounds tell the two apart.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from hydrocast import checkpoint, distributed
from hydrocast.cli import app
from hydrocast.dataset import ChunkBatches
from tests.tinyproject import tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
runner = CliRunner()

CONFIG = tiny_config(5, """
train_period = ["2015-02-01", "2015-04-15"]
validation_period = ["2015-04-16", "2015-05-31"]
lead_days = 2
warmup_days = 5
window_days = 20
memory_days = 30
hidden = 4
epochs = 2
batch_size = 3
""")


def invoke(*args: str):
    return runner.invoke(app, list(args))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """``hydrocast train`` under torchrun with 2 processes on this machine (127.0.0.1, a free port)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--rdzv-backend", "static", "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           "-m", "hydrocast", "train", *args]
    # a hang (a process waiting for a dead peer) fails the test at the timeout
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("distributed")
    cfg = root / "hydrocast.toml"
    cfg.write_text(CONFIG)
    res = invoke("ingest", "--config", str(cfg), "--quiet", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["days_added"] == 151
    return cfg


def versions(model: Path) -> list[Path]:
    """The artefact's version folders beside ``model`` (one per write: the previous one is kept)."""
    return sorted(model.parent.glob(f".{model.name}.[0-9]*"))


def test_two_processes_resume_and_train_like_one(project, tmp_path, monkeypatch):
    a, b = tmp_path / "a" / "model", tmp_path / "b" / "model"
    # an interrupted run: the ConvLSTM's checkpoint after epoch 1, no lumped checkpoint yet
    real_save, saves = checkpoint.save, []

    def killed_after_one_epoch(*args, **kwargs):
        if saves:
            raise RuntimeError("killed")
        saves.append(1)
        real_save(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save", killed_after_one_epoch)
        res = invoke("train", "-c", str(project), "--seed", "0", "--model-dir", str(a), "--quiet")
    assert res.exit_code == 70 and "killed" in res.stderr
    ckpt = a.parent / ".model.checkpoint-convlstm"
    assert json.loads((ckpt / "model.json").read_text())["state"]["epoch"] == 1
    assert not (a.parent / ".model.checkpoint-lumped").exists() and not a.exists()
    shutil.copytree(ckpt, b.parent / ckpt.name)  # the same checkpoint for the torchrun run

    one = invoke("train", "-c", str(project), "--seed", "0", "--model-dir", str(a), "--resume", "--json", "--quiet")
    assert one.exit_code == 0, one.output
    two = torchrun("-c", str(project), "--seed", "0", "--model-dir", str(b), "--resume", "--json")
    assert two.returncode == 0, two.stderr[-3000:]

    # rank 0 alone printed, logged and wrote; every process resumed (or the epochs would not line up)
    s1, (line,) = json.loads(one.stdout), two.stdout.splitlines()
    s2 = json.loads(line)
    assert s1["resumed_from_epoch"] == s2["resumed_from_epoch"] == 1 and s2["epochs_run"] == 2
    for needle in ("training on cpu x 2 torchrun processes", "convlstm: resuming after epoch 1",
                   "lumped: no checkpoint to resume from", "convlstm: epoch   2", "lumped: epoch   2"):
        assert two.stderr.count(needle) == 1, needle
    assert len(versions(b)) == 1 and not list(b.parent.glob(".model.checkpoint-*"))
    m1, m2 = (json.loads((m / "model.json").read_text())["training"] for m in (a, b))
    assert m2["processes"] == 2 and "processes" not in m1

    # the same training: losses, validation scores, basin-days, weights
    h1, h2 = m1["history"] + m1["lumped_history"], m2["history"] + m2["lumped_history"]
    assert [h["epoch"] for h in h2] == [1, 2, 1, 2]
    assert h1[0] == h2[0]  # the ConvLSTM's epoch 1, from the checkpoint
    for x, y in zip(h1, h2):
        np.testing.assert_allclose(y["loss"], x["loss"], rtol=1e-5)
        np.testing.assert_allclose(y["validation_nse_median"], x["validation_nse_median"], rtol=1e-5)
        assert y["lr"] == x["lr"]
    assert s1["validation_nse"].keys() == s2["validation_nse"].keys()
    np.testing.assert_allclose(list(s2["validation_nse"].values()), list(s1["validation_nse"].values()), rtol=1e-5)
    assert m1["basin_days_seen"] == m2["basin_days_seen"] > 0
    w1, w2 = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:
        np.testing.assert_allclose(w2[k], w1[k], atol=1e-3, err_msg=k)


def test_a_failure_on_one_process_ends_the_run(project, tmp_path):
    """Rank 0 alone writes checkpoints: a file where its first one goes fails rank 0 (exit 73)
    while rank 1 goes on training; torchrun ends rank 1 instead of leaving it waiting."""
    model = tmp_path / "model"
    (tmp_path / ".model.checkpoint-convlstm").write_text("not a checkpoint")
    res = torchrun("-c", str(project), "--model-dir", str(model), "--json", "--quiet")
    assert res.returncode != 0
    (line,) = res.stdout.splitlines()  # rank 0's object only
    obj = json.loads(line)
    assert obj["exit_code"] == 73 and ".model.checkpoint-convlstm" in obj["error"]
    assert re.search(r"rank\s*:\s*0.*?exitcode\s*:\s*73", res.stderr, re.S), res.stderr[-3000:]
    assert not model.exists() and not versions(model)


@pytest.mark.parametrize("n, w", [(3, 2), (6, 4), (1, 2), (5, 3)])
def test_shares_cover_the_streams_in_order_and_an_empty_share_trains_on_nothing(n, w, monkeypatch):
    """What each of ``w`` processes keeps of a batch of ``n`` streams (rank r of w, simulated)."""
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: w)
    shares = [distributed.share(n, r) for r in range(w)]
    assert [i for s in shares for i in s] == list(range(n))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    items = [{"dynamic": np.full((2, 1), k, "float32"), "q_target": np.full((2, 3), k, "float32"),
              "map_target": np.full((2, 1), k, "float32")} for k in range(n)]
    reset = tuple(k % 2 == 0 for k in range(n))
    for r in range(w):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        kept, kept_reset = ChunkBatches.share(items, reset)
        if len(shares[r]):
            assert [int(it["dynamic"][0, 0]) for it in kept] == list(shares[r])
            assert kept_reset == reset[shares[r].start:shares[r].stop]
        else:  # a stand-in without targets: in the step, with zero weight
            (blank,) = kept
            assert kept_reset == (True,) and np.isnan(blank["q_target"]).all() and np.isnan(blank["map_target"]).all()
            np.testing.assert_array_equal(blank["dynamic"], items[0]["dynamic"])
