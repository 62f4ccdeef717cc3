"""hydrocast.state: the saved recurrent state of operational predict (round trip, bad files,
validity against a revised cube, crash-safe save) and the input-status record, on small real
cubes written with CubeWriter and read with CubeReader."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hydrocast import state as hs
from hydrocast.cube import QUANTITY_ATTRS, CubeWriter
from hydrocast.errors import BadInputError, BusyError, DiskFullError
from hydrocast.grid import GridSpec
from hydrocast.samples import CubeReader

GRID = GridSpec.from_bounds("EPSG:4326", (-8.0, 40.0, -7.6, 40.3), 0.1)  # 4 x 3 cells
DYN = {"precipitation": QUANTITY_ATTRS["precipitation"], "soil_moisture": QUANTITY_ATTRS["soil_moisture"]}
NAMES = list(DYN)


def make_data(days: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.random((len(days), *GRID.shape)).astype("float32") for name in DYN}


def provenance(days: np.ndarray, name: str, run: str = "final") -> list[str]:
    return [f"{run}:{name}:{d}:1 file:sig{i:04d}" for i, d in enumerate(days)]


def write_cube(path: Path, days: np.ndarray, data: dict[str, np.ndarray], prov: dict[str, list[str]]) -> Path:
    with CubeWriter(path, GRID, days, DYN, {}) as w:
        for name in DYN:
            w.write_days(name, days, data[name], prov[name])
        w.commit()
    return path


DAYS = np.arange("2020-01-01", "2020-03-01", dtype="datetime64[D]")  # 60 days


@pytest.fixture
def cube(tmp_path) -> Path:
    return write_cube(tmp_path / "cube.nc", DAYS, make_data(DAYS), {n: provenance(DAYS, n) for n in DYN})


def tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    hc = torch.randn(2, 4, 3, 4, generator=g)
    return {"h0": hc[0], "c0": hc[1],  # views of one buffer (how an LSTM state often comes)
            "steps": torch.arange(5, dtype=torch.int64), "half": torch.randn(3, generator=g).half()}


def a_state(model_id="ab12cd34", start=DAYS[0], day=DAYS[29], digests=None) -> hs.SavedState:
    n = int((np.datetime64(day) - np.datetime64(start)).astype(int)) + 1
    d = np.arange(n, dtype="int64") * 7919 - 2**62 if digests is None else digests
    return hs.SavedState(model_id, start, day, tensors(), d, {"issue": "2020-01-30", "nested": {"k": [1, 2.5]}})


# -- path and digests -----------------------------------------------------------------------------
def test_state_path(tmp_path):
    assert hs.state_path(tmp_path / "work" / "cube.nc", "ab12cd34") == \
        tmp_path / "work" / "cube.state" / "ab12cd34.safetensors"
    with pytest.raises(ValueError):
        hs.state_path(tmp_path / "cube.nc", "../x")


def test_day_digests_match_blake2b_of_the_sources(cube):
    with CubeReader(cube) as r:
        got = hs.day_digests(r, NAMES, 5, 9)
        solo = hs.day_digests(r, ["soil_moisture"], 5, 9)
    assert got.dtype == np.int64 and got.shape == (4,)
    prov = {n: provenance(DAYS, n) for n in DYN}
    for k, i in enumerate(range(5, 9)):  # independent computation from the strings written
        text = json.dumps([[n, prov[n][i]] for n in NAMES])
        want = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)
        assert got[k] == want
    assert len(set(got.tolist())) == 4 and not np.array_equal(got, solo)


def test_day_digests_missing_source_variable_names_the_cube(tmp_path, cube):
    import netCDF4

    with CubeReader(cube) as r:
        with pytest.raises(BadInputError, match=r"cube\.nc.*snow_source"):
            hs.day_digests(r, ["precipitation", "snow"], 0, 3)
    bare = tmp_path / "bare.nc"  # a cube whose provenance variable was dropped
    with netCDF4.Dataset(cube) as src, netCDF4.Dataset(bare, "w") as dst:
        dst.setncatts({k: src.getncattr(k) for k in src.ncattrs()})
        for name, dim in src.dimensions.items():
            dst.createDimension(name, dim.size)
        for name in ("time", "precipitation"):
            v = src.variables[name]
            dst.createVariable(name, v.dtype, v.dimensions)[:] = v[:]
    with CubeReader(bare) as r:
        with pytest.raises(BadInputError, match=r"bare\.nc.*precipitation_source"):
            hs.day_digests(r, ["precipitation"], 0, 3)


# -- save / load ----------------------------------------------------------------------------------
def _assert_same(a: hs.SavedState, b: hs.SavedState) -> None:
    assert (a.model_id, a.start_day, a.day, a.extra) == (b.model_id, b.start_day, b.day, b.extra)
    np.testing.assert_array_equal(a.digests, b.digests)
    assert a.digests.dtype == b.digests.dtype == np.int64
    assert set(a.tensors) == set(b.tensors)
    for k in a.tensors:
        assert a.tensors[k].dtype == b.tensors[k].dtype and torch.equal(a.tensors[k], b.tensors[k]), k


def test_save_load_round_trip(tmp_path):
    path = hs.state_path(tmp_path / "cube.nc", "ab12cd34")
    st = a_state()
    assert hs.save_state(path, st) == path and path.is_file()  # the .state folder is created
    got, reason = hs.load_state(path, "ab12cd34")
    assert reason == "" and got is not None
    _assert_same(got, st)
    assert got.start_day.dtype == np.dtype("datetime64[D]") and got.n_days == 30
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_inconsistent_state_is_refused_before_writing(tmp_path):
    path = tmp_path / "s.safetensors"
    with pytest.raises(ValueError, match="29 digests"):
        hs.save_state(path, a_state(digests=np.arange(29)))
    st = a_state()
    st.extra = {"when": np.datetime64("2020-01-01")}
    with pytest.raises(TypeError):
        hs.save_state(path, st)
    assert not path.exists()


@pytest.mark.parametrize("damage", ["missing", "empty", "garbage", "truncated", "tail_cut"])
def test_bad_state_file_gives_none_and_a_reason(tmp_path, damage):
    path = tmp_path / "s.safetensors"
    hs.save_state(path, a_state())
    data = path.read_bytes()
    if damage == "missing":
        path.unlink()
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(os.urandom(300))
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 3])  # inside the header
    else:
        path.write_bytes(data[:-10])  # header whole, last tensor cut
    got, reason = hs.load_state(path, "ab12cd34")
    assert got is None and str(path) in reason and reason


def test_other_model_or_format_gives_none(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "s.safetensors"
    hs.save_state(path, a_state(model_id="ffff0000"))
    got, reason = hs.load_state(path, "ab12cd34")
    assert got is None and "ffff0000" in reason and "ab12cd34" in reason
    head = json.loads(hs._header(a_state()))
    for change, needle in [({"format_version": 2}, "version 2"), ({"format": "other"}, "format"),
                           ({"digests": head["digests"][:-1]}, "29 digests"), ({"digests": "x"}, "digests")]:
        save_file({"h0": torch.zeros(2)}, str(path), metadata={hs.META_KEY: json.dumps({**head, **change})})
        got, reason = hs.load_state(path, "ab12cd34")
        assert got is None and needle in reason, change
    save_file({"h0": torch.zeros(2)}, str(path))  # a plain safetensors file, no hydrocast metadata
    got, reason = hs.load_state(path, "ab12cd34")
    assert got is None and "not a hydrocast state" in reason


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "cube.state" / "ab12cd34.safetensors"
    old = a_state()
    hs.save_state(path, old)
    before = path.read_bytes()

    def failing_replace(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(DiskFullError, match="ab12cd34.safetensors.*disk full") as err:
        hs.save_state(path, a_state(day=DAYS[40]))
    assert err.value.exit_code == 74
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    got, reason = hs.load_state(path, "ab12cd34")
    assert reason == "" and got.day == DAYS[29]
    _assert_same(got, old)


def test_save_waits_for_the_lock_then_busy(tmp_path, monkeypatch):
    from filelock import FileLock

    path = tmp_path / "s.safetensors"
    monkeypatch.setattr(hs, "LOCK_TIMEOUT_S", 0.2)
    holder = FileLock(str(path) + ".lock")
    with holder:
        with pytest.raises(BusyError, match="s.safetensors.*lock"):
            hs.save_state(path, a_state())
    assert not path.exists()
    hs.save_state(path, a_state())  # free again
    assert hs.load_state(path, "ab12cd34")[1] == ""


# -- validity against the cube --------------------------------------------------------------------
def test_check_state_follows_provenance_revisions(tmp_path, cube):
    data = make_data(DAYS)
    with CubeReader(cube) as r:
        st = hs.SavedState("ab12cd34", DAYS[10], DAYS[40], tensors(), hs.day_digests(r, NAMES, 10, 41))
        assert hs.check_state(st, r, NAMES) == (True, "")
    path = tmp_path / "s.safetensors"
    hs.save_state(path, st)
    st, _ = hs.load_state(path, "ab12cd34")

    # day 5 (before the state's days) revised: still valid
    prov = {n: provenance(DAYS, n) for n in DYN}
    prov["soil_moisture"][5] = "late:revised"
    write_cube(cube, DAYS, data, prov)
    with CubeReader(cube) as r:
        assert hs.check_state(st, r, NAMES) == (True, "")

    # IMERG Early -> Late on 2020-01-25 and ESA CCI arriving on 2020-02-03 (a value and its provenance)
    prov["precipitation"][24] = "late:precipitation:2020-01-25:48 files:sigX"
    prov["soil_moisture"][33] = "cci:soil_moisture:2020-02-03:1 file:sigY"
    data["soil_moisture"][33] += 0.1
    write_cube(cube, DAYS, data, prov)
    with CubeReader(cube) as r:
        assert hs.check_state(st, r, NAMES) == (False, "2020-01-25: precipitation or soil_moisture input changed "
                                                "since the state was saved (and 1 later day)")
        ok, reason = hs.check_state(st, r, ["soil_moisture"])  # the digests were taken over both names
        assert not ok
    with CubeReader(cube) as r:
        st2 = hs.SavedState("ab12cd34", DAYS[26], DAYS[40], {}, hs.day_digests(r, ["soil_moisture"], 26, 41))
    prov["soil_moisture"][33] = "cci:soil_moisture:2020-02-03:1 file:sigZ"
    write_cube(cube, DAYS, data, prov)
    with CubeReader(cube) as r:
        assert hs.check_state(st2, r, ["soil_moisture"]) == \
            (False, "2020-02-03: soil_moisture input changed since the state was saved")


def test_check_state_when_the_cube_no_longer_holds_the_days(tmp_path, cube):
    with CubeReader(cube) as r:
        st = hs.SavedState("ab12cd34", DAYS[0], DAYS[59], {}, hs.day_digests(r, NAMES, 0, 60))
    short = DAYS[:50]
    write_cube(cube, short, {n: v[:50] for n, v in make_data(DAYS).items()},
               {n: provenance(DAYS, n)[:50] for n in DYN})
    with CubeReader(cube) as r:
        ok, reason = hs.check_state(st, r, NAMES)
    assert not ok and "2020-02-29" in reason and "no longer holds" in reason


# -- the input-status record ----------------------------------------------------------------------
def _last_valid_by_numpy(x: np.ndarray, issue: int) -> int | None:
    ok = np.nonzero(~np.all(np.isnan(x[: issue + 1]), axis=(1, 2)))[0]
    return int(ok.max()) if ok.size else None


class CountingReader(CubeReader):
    """A CubeReader that records which days each raw() read."""

    def __init__(self, path):
        super().__init__(path)
        self.reads: list[tuple[str, int, int]] = []

    def raw(self, name, start, stop):
        self.reads.append((name, start, stop))
        return super().raw(name, start, stop)


def test_inputs_status_soil_moisture_23_days_behind(tmp_path):
    days = np.arange("2020-01-01", "2020-08-01", dtype="datetime64[D]")  # 213 days
    issue = int(np.flatnonzero(days == np.datetime64("2020-07-01"))[0])
    data = make_data(days)
    data["soil_moisture"][issue - 22:] = np.nan  # stops 23 days before the issue day
    data["soil_moisture"][issue - 23, :2] = np.nan  # a partly covered day still counts
    data["precipitation"][issue, 1:, :] = np.nan
    path = write_cube(tmp_path / "cube.nc", days, data, {n: provenance(days, n) for n in DYN})
    with CountingReader(path) as r:
        status = hs.inputs_status(r, NAMES, issue)
    sm = _last_valid_by_numpy(data["soil_moisture"], issue)
    assert sm == issue - 23
    assert status["soil_moisture"] == {"last_day": str(days[sm]), "days_behind": 23, "missing_on_issue_day": True}
    assert status["soil_moisture"]["last_day"] == "2020-06-08"
    assert status["precipitation"] == {"last_day": "2020-07-01", "days_behind": 0, "missing_on_issue_day": False}
    read = {n: sum(b - a for m, a, b in r.reads if m == n) for n in NAMES}
    assert read["precipitation"] <= 32 and read["soil_moisture"] <= 64  # not the record
    assert all(b <= issue + 1 for _, _, b in r.reads)  # nothing after the issue day
    assert hs.status_attribute(status) == "precipitation: current; soil_moisture: 23 days behind (last 2020-06-08)"


def test_inputs_status_gives_up_after_400_days(tmp_path):
    days = np.arange("2019-01-01", "2020-03-01", dtype="datetime64[D]")  # 425 days
    issue = len(days) - 1
    data = make_data(days)
    data["soil_moisture"][10:] = np.nan  # last data 414 days before the issue day
    data["precipitation"][issue - 400 + 1:] = np.nan  # last data exactly 400 days before
    path = write_cube(tmp_path / "cube.nc", days, data, {n: provenance(days, n) for n in DYN})
    with CountingReader(path) as r:
        status = hs.inputs_status(r, NAMES, issue)
        with pytest.raises(BadInputError, match="cube.nc.*'snow'"):
            hs.inputs_status(r, ["snow"], issue)
    assert status["soil_moisture"] == {"last_day": None, "days_behind": None, "missing_on_issue_day": True}
    assert status["precipitation"]["days_behind"] == 400 == issue - _last_valid_by_numpy(data["precipitation"], issue)
    assert min(a for n, a, _ in r.reads if n == "soil_moisture") == issue - 400
    assert hs.status_attribute(status) == (
        f"precipitation: 400 days behind (last {days[issue - 400]}); "
        "soil_moisture: no data in the 400 days up to the issue day")


def test_status_attribute_one_day():
    st = {"precipitation": {"last_day": "2020-06-30", "days_behind": 1, "missing_on_issue_day": True}}
    assert hs.status_attribute(st) == "precipitation: 1 day behind (last 2020-06-30)"
