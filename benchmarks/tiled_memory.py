"""Peak memory of inference over a large domain: whole grid against windows, one piece against chunks.

Builds synthetic projects on grids of ``--sizes`` cells per side (same cell size, written with
hydrocast's own CubeWriter, see ``benchmarks/train_memory.py``), each with small square basins on
a lattice (one every ``--spacing`` cells: the number of basins grows with the domain's area),
trains one tiled epoch (``[train] tile_cells``), then runs ``hydrocast evaluate`` over the
validation year (365 days of spin-up first) in fresh processes three ways, the same model each time:

* whole domain, the year in one piece (``tile_cells = 0``, ``inference_chunk_days = 0``);
* whole domain in chunks of 90 days (``inference_chunk_days = 90``, the default);
* window by window (``tile_cells``) in chunks of 90 days.

It prints each run's peak RSS and wall time and the ratios. A whole-grid run holds maps of every
cell, so it grows with the domain; a tiled run holds one window at a time, so it should stay
flat while the domain grows.

    python benchmarks/tiled_memory.py [--sizes 64,128] [--tile 32] [--spacing 32]

About 5 minutes on 2 cores with the defaults (the whole-grid run in one piece on 128 x 128 peaks
at several GB).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_memory import make_project, peak_rss_mb  # noqa: E402

WEST, SOUTH, RES = -8.8, 40.0, 0.05  # the grid of train_memory.make_project


def lattice_basins(root: Path, size: int, spacing: int, side: int = 8) -> list[str]:
    """Square basins of ``side`` cells, one every ``spacing`` cells in y and x, with a noisy
    record over the cube's days; rewrites the project's basins.geojson and discharge.csv."""
    feats, ids = [], []
    for i, r0 in enumerate(range(spacing // 2 - side // 2, size - side, spacing)):
        for j, c0 in enumerate(range(spacing // 2 - side // 2, size - side, spacing)):
            lon0, lat0 = WEST + c0 * RES, SOUTH + r0 * RES
            lon1, lat1 = lon0 + side * RES, lat0 + side * RES
            bid = f"B{i}_{j}"
            ids.append(bid)
            feats.append({"type": "Feature",
                          "properties": {"id": bid, "outlet_lon": lon0 + RES / 2, "outlet_lat": lat0 + RES / 2},
                          "geometry": {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1],
                                                                           [lon0, lat1], [lon0, lat0]]]}})
    (root / "basins.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    days = np.arange(np.datetime64("2010-01-01"), np.datetime64("2013-01-01"), dtype="datetime64[D]")
    rng = np.random.default_rng(1)
    lines = ["basin_id,date,discharge"]
    for bid in ids:
        q = 2 + rng.random(len(days))
        lines += [f"{bid},{d},{v:.3f}" for d, v in zip(days, q)]
    (root / "discharge.csv").write_text("\n".join(lines) + "\n")
    return ids


def with_keys(cfg: Path, name: str, **keys) -> Path:
    """A copy of ``cfg`` with ``[train]`` keys set (replaced where present)."""
    text = cfg.read_text()
    for k, v in keys.items():
        text = re.sub(rf"^{k} = .*\n", "", text, flags=re.M)
        text = text.replace("[train]\n", f"[train]\n{k} = {v}\n", 1)
    out = cfg.parent / name
    out.write_text(text)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="64,128", help="grid cells per side, comma-separated")
    ap.add_argument("--tile", type=int, default=32, help="[train] tile_cells of the tiled runs")
    ap.add_argument("--spacing", type=int, default=32, help="cells between the basins of the lattice")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    period = ["--period", "2012-01-01:2012-12-31"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            root = Path(tmp) / f"g{size}"
            cfg = make_project(root, years=3, size=size, train_years=1)
            n = len(lattice_basins(root, size, args.spacing))
            tiled = with_keys(cfg, "tiled.toml", tile_cells=args.tile, tile_halo_cells=4)
            peak_rss_mb(["train", "--config", str(tiled), "--quiet", "--device", "cpu"])
            runs = {"whole, one piece": with_keys(cfg, "whole0.toml", inference_chunk_days=0),
                    "whole, 90-day chunks": with_keys(cfg, "whole90.toml", inference_chunk_days=90),
                    f"windows of {args.tile}, 90-day chunks": tiled}
            for label, c in runs.items():
                rss, wall = peak_rss_mb(["evaluate", "--config", str(c), *period, "--out", str(root / "ev"),
                                         "--quiet"])
                rows.append((size, n, label, rss, wall))
    print(f"evaluate over one year (365 days of spin-up first), CPU; windows of {args.tile} cells, halo 4")
    print(f"{'grid':>9} {'basins':>7} {'run':<28} {'peak RSS MB':>12} {'wall s':>8}")
    for size, n, label, rss, wall in rows:
        print(f"{size:>4}x{size:<4} {n:>7} {label:<28} {rss:>12.0f} {wall:>8.1f}")
    by = {(s, label): rss for s, _, label, rss, _ in rows}
    labels = list(dict.fromkeys(label for _, _, label, _, _ in rows))
    small, big = sizes[0], sizes[-1]
    for label in labels:
        print(f"peak RSS {big}x{big} / {small}x{small} ({(big / small) ** 2:.1f}x the cells), {label}: "
              f"{by[(big, label)] / by[(small, label)]:.2f}")
    print(f"on {big}x{big}: windows / whole one piece {by[(big, labels[2])] / by[(big, labels[0])]:.2f}, "
          f"90-day chunks / one piece {by[(big, labels[1])] / by[(big, labels[0])]:.2f}")


if __name__ == "__main__":
    main()
