"""Shared fixtures.

``shared_data``: the real public data files in ``../shared/data`` (never copied into the repo).
When the folder is missing, tests that need it are skipped on a developer machine but **fail**
when the ``CI`` environment variable is set, so CI can never pass by silently skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import hydrocast  # noqa: F401  (first: imports pyproj before any eccodes, see hydrocast/__init__.py)

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO / "sample_data"
SHARED_DATA = Path(os.environ.get("HYDROCAST_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        msg = f"shared test data not found at {SHARED_DATA} (set HYDROCAST_SHARED_DATA)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return SHARED_DATA


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread is faster, and on a busy 2-core runner an OpenMP barrier waiting
    for a descheduled thread made the model tests ~100x slower (measured)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sample_data() -> Path:
    assert SAMPLE_DATA.is_dir(), f"{SAMPLE_DATA} is missing: the repository ships it"
    return SAMPLE_DATA


@pytest.fixture(scope="module")
def dem_path(shared_data):
    """The real DEM of the shared data (pysheds' test raster)."""
    return shared_data / "dem-pysheds" / "dem.tif"


@pytest.fixture(scope="module")
def raw(dem_path):
    """That DEM's first band, transform and profile, read with rasterio."""
    import rasterio

    with rasterio.open(dem_path) as src:
        return src.read(1), src.transform, src.profile
