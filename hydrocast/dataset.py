"""Training windows as a torch ``Dataset``: one item = one window's named streams and targets.

The window content (inputs up to each issue day, targets after it, the honest-period cut-off)
is built by :func:`hydrocast.windows.window_arrays`; this module only wraps it for a
``DataLoader``. Items are dicts of float32 tensors::

    "dynamic"     (T, C, H, W)
    "q_target"    (T, N, L)     NaN = no target (missing, or past the period's last day)
    "map_target"  (T, L, H, W)  NaN = no target
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .windows import window_arrays


class WindowDataset(Dataset):
    def __init__(self, reader, spec, q_norm: np.ndarray, map_var: str, starts: list[int], window_days: int,
                 lead_days: int, last_target: int):
        self.reader, self.spec, self.q_norm, self.map_var = reader, spec, q_norm, map_var
        self.starts, self.window_days, self.lead_days, self.last_target = (
            list(starts), window_days, lead_days, last_target)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = self.starts[i]
        arrays = window_arrays(self.reader, self.spec, self.q_norm, self.map_var, s, s + self.window_days,
                               self.lead_days, self.last_target)
        return {k: torch.from_numpy(v) for k, v in arrays.items()}


def window_loader(dataset: WindowDataset, batch_size: int) -> DataLoader:
    """Batches in the dataset's order (the starts are shuffled per epoch by
    :func:`hydrocast.windows.window_starts`); the cube is read in this process (netCDF4 handles
    are not shared with worker processes)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0,
                      generator=torch.Generator().manual_seed(0))
