"""JSON helpers shared by the artefact, checkpoints and ``--json`` summaries."""

from __future__ import annotations

import math

import numpy as np


def jsonable(o):
    """``o`` with numpy scalars as Python numbers, tuples as lists and non-finite floats as None."""
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return float(o) if math.isfinite(float(o)) else None
    if isinstance(o, np.integer):
        return int(o)
    return o


def finite_or_none(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None
