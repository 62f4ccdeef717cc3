"""Spatial windows for tiled training (``[train] tile_cells``; torch-free).

A *window* is a fixed-size rectangle of the grid, ``min(tile_cells, H)`` by ``min(tile_cells, W)``
cells, that holds a group of whole basins: the bounding box of each of its basins, grown by
``tile_halo_cells`` on every side (clamped at the domain's edge), lies inside it. Every basin is
in exactly one window; windows may overlap (a cell near two groups is in both). The model is
trained and validated window by window, so that memory holds one window's maps, not the domain's.

The grouping is greedy: basins sorted by the top-left corner of their halo box (row, then
column); a window is opened at the first basin not yet placed and takes every later basin whose
box keeps the union of the boxes within the window's size. The window is then placed centred
on that union (shifted inside the grid where it would stick out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class Window:
    """Rows ``y0:y1`` and columns ``x0:x1`` of the grid, and the indices of the basins it holds
    (ascending: the order of the domain's basins)."""

    y0: int
    y1: int
    x0: int
    x1: int
    basins: tuple[int, ...]

    @property
    def rows(self) -> slice:
        return slice(self.y0, self.y1)

    @property
    def cols(self) -> slice:
        return slice(self.x0, self.x1)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y1 - self.y0, self.x1 - self.x0)

    def to_json(self) -> dict:
        return {"rows": [self.y0, self.y1], "cols": [self.x0, self.x1], "basins": list(self.basins)}


def basin_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, 4) ``y0, y1, x0, x1`` (end exclusive) of the cells where each mask (N, H, W) is > 0;
    an empty mask gets the empty box ``0, 0, 0, 0``."""
    masks = np.asarray(masks)
    out = np.zeros((masks.shape[0], 4), dtype=int)
    for n, m in enumerate(masks):
        rows, cols = np.flatnonzero((m > 0).any(axis=1)), np.flatnonzero((m > 0).any(axis=0))
        if len(rows):
            out[n] = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return out


def halo_boxes(masks: np.ndarray, halo: int) -> np.ndarray:
    """:func:`basin_boxes` grown by ``halo`` cells on every side, clamped to the grid."""
    h, w = np.asarray(masks).shape[-2:]
    box = basin_boxes(masks)
    empty = box[:, 1] == box[:, 0]
    out = np.stack([np.maximum(box[:, 0] - halo, 0), np.minimum(box[:, 1] + halo, h),
                    np.maximum(box[:, 2] - halo, 0), np.minimum(box[:, 3] + halo, w)], axis=1)
    out[empty] = 0
    return out


def _place(lo: int, hi: int, size: int, extent: int) -> int:
    """First index of a run of ``size`` cells in 0..extent that holds lo..hi, centred on it."""
    start = (lo + hi - size) // 2
    return int(min(max(start, hi - size, 0), lo, extent - size))


def plan_windows(masks: np.ndarray, tile_cells: int, halo: int, ids: list[str] | None = None,
                 where: str = "[train] tile_cells") -> list[Window]:
    """The windows of basins with masks ``masks`` (N, H, W) for ``tile_cells`` and ``halo``
    (see the module docstring). ConfigError naming the basin when one does not fit alone."""
    masks = np.asarray(masks)
    n, height, width = masks.shape
    th, tw = min(tile_cells, height), min(tile_cells, width)
    box = halo_boxes(masks, halo)
    ids = list(ids) if ids is not None else [str(k) for k in range(n)]
    for k in range(n):
        bh, bw = box[k, 1] - box[k, 0], box[k, 3] - box[k, 2]
        if bh > th or bw > tw:
            raw = basin_boxes(masks[k:k + 1])[0]
            raise ConfigError(f"{where} = {tile_cells}: basin {ids[k]} spans {raw[1] - raw[0]} x {raw[3] - raw[2]} "
                              f"cells, {bh} x {bw} with its halo of {halo} ([train] tile_halo_cells); it needs "
                              f"tile_cells >= {max(bh, bw)}")
    empty = [k for k in range(n) if box[k, 1] == box[k, 0]]  # no cell: read out anywhere (the first window)
    order = sorted((k for k in range(n) if k not in set(empty)), key=lambda k: (box[k, 0], box[k, 2], k))
    placed = np.zeros(n, dtype=bool)
    windows = []
    for first in order:
        if placed[first]:
            continue
        group, union = [first], box[first].copy()
        placed[first] = True
        for k in order:
            if placed[k]:
                continue
            u = np.array([min(union[0], box[k, 0]), max(union[1], box[k, 1]),
                          min(union[2], box[k, 2]), max(union[3], box[k, 3])])
            if u[1] - u[0] <= th and u[3] - u[2] <= tw:
                group.append(k)
                union = u
                placed[k] = True
        y0, x0 = _place(union[0], union[1], th, height), _place(union[2], union[3], tw, width)
        windows.append(Window(y0, y0 + th, x0, x0 + tw, tuple(sorted(group))))
    if empty:
        w0 = windows[0] if windows else Window(0, th, 0, tw, ())
        windows[:1] = [Window(w0.y0, w0.y1, w0.x0, w0.x1, tuple(sorted(w0.basins + tuple(empty))))]
    return windows


def describe(windows: list[Window], shape: tuple[int, int]) -> str:
    """One line for the log: how many windows of which size, and how much of the grid they read."""
    if not windows:
        return "no window"
    h, w = windows[0].shape
    cells = sum(x.shape[0] * x.shape[1] for x in windows)
    return (f"{len(windows)} window(s) of {h} x {w} cells for {sum(len(x.basins) for x in windows)} basins "
            f"({cells / max(shape[0] * shape[1], 1):.2f} x the grid's cells)")
