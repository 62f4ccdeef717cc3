"""What blending each gauge's forecast with persistence would be worth: an offline analysis of two hindcasts.

``python -m tools.persistence_blend VALIDATION/hindcast.nc TEST/hindcast.nc``
(the ``hindcast.nc`` files ``hydrocast evaluate --period`` writes for the validation and the test
period of the same model, e.g. ``<out>/seeds/seed0/validation`` and ``.../test`` of
``evaluate --seeds``).

For each basin ``n`` and lead ``l`` it fits on the validation hindcast the weight ``w`` in [0, 1]
that minimises the squared error of ``(1 - w) * model + w * persistence`` (persistence: the
discharge observed on the issue day), applies the weights to the test hindcast and prints the
NSE medians over basins, per lead, of each model as is and blended, and the weights. So that the
choice can be made without the test year, it also scores the blend on the validation year itself,
cross-fitted (:func:`cross_fitted`: the weights of each half of the year fitted on the other half). Not part of
hydrocast: the offline measurement that led to ``[train] persistence_blend`` (which hydrocast now
fits at training time, see "Blending with persistence" in :mod:`hydrocast.model.network`), for
a region where some rivers are so slow that persistence beats every model (the contrast
variant's permeable basin PT05). Give it hindcasts of models without the blend
(``persistence_blend = false``, or models trained before it existed).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from hydrocast.metrics import nse

MODELS = {"convlstm": "discharge_simulated", "lumped_lstm": "discharge_lumped_lstm"}


def read(path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The observed, persistence and model discharges (basin, lead, issue day) of a hindcast file."""
    import xarray as xr

    with xr.open_dataset(path) as ds:
        names = {"observed": "discharge_observed", "persistence": "discharge_persistence", **MODELS}
        return ({k: ds[v].values.astype("float64") for k, v in names.items() if v in ds},
                [str(b) for b in ds["basin_id"].values])


def fit_weights(model: np.ndarray, persistence: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """(basin, lead) least-squares weights of persistence in ``(1 - w) model + w persistence``, clipped
    to [0, 1]: hydrocast's own fit (:func:`hydrocast.model.fit_persistence_weight`) on the hindcast's
    (basin, lead, issue day) arrays, every basin with a day kept."""
    from hydrocast.model import fit_persistence_weight

    days_first = [np.moveaxis(x, -1, 0) for x in (model, persistence, observed)]
    return fit_persistence_weight(*days_first, min_days=1).astype("float64")


def blend(model: np.ndarray, persistence: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (1.0 - w[..., None]) * model + w[..., None] * persistence


def cross_fitted(model: np.ndarray, persistence: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """The blend on every issue day with weights fitted on the other half of the days (first and
    second half of the period): an out-of-sample score from one period."""
    half = model.shape[-1] // 2
    out = np.empty_like(model)
    for fit, use in ((slice(half, None), slice(None, half)), (slice(None, half), slice(half, None))):
        w = fit_weights(model[..., fit], persistence[..., fit], observed[..., fit])
        out[..., use] = blend(model[..., use], persistence[..., use], w)
    return out


def medians(x: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Per lead, the median over basins of the NSE."""
    per = np.array([[nse(x[n, l], observed[n, l]) for l in range(x.shape[1])] for n in range(x.shape[0])])
    return np.nanmedian(per, axis=0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.persistence_blend", description=__doc__.split("\n")[0])
    ap.add_argument("validation", help="hindcast.nc of the validation period (the weights are fitted here)")
    ap.add_argument("test", help="hindcast.nc of the test period (scored here)")
    args = ap.parse_args(argv)
    val, ids = read(args.validation)
    test, ids_test = read(args.test)
    if ids != ids_test:
        print(f"error: the two hindcasts have different basins ({ids} and {ids_test})", file=sys.stderr)
        return 65
    print("median NSE over basins, leads " + " / ".join(str(l + 1) for l in range(test["observed"].shape[1])))
    print(f"{'persistence':36s}" + " / ".join(f"{v:.3f}" for v in medians(test["persistence"], test["observed"])))
    for name in MODELS:
        if name not in test:
            continue
        w = fit_weights(val[name], val["persistence"], val["observed"])
        mixed = blend(test[name], test["persistence"], w)
        print(f"{name + ' as is':36s}" + " / ".join(f"{v:.3f}" for v in medians(test[name], test["observed"])))
        print(f"{name + ' blended':36s}" + " / ".join(f"{v:.3f}" for v in medians(mixed, test["observed"])))
        cross = cross_fitted(val[name], val["persistence"], val["observed"])
        print(f"{'  validation as is':36s}" + " / ".join(f"{v:.3f}" for v in medians(val[name], val["observed"])))
        print(f"{'  validation blended, cross-fitted':36s}"
              + " / ".join(f"{v:.3f}" for v in medians(cross, val["observed"])))
        print("  weights " + ", ".join(f"{b} " + "/".join(f"{x:.2f}" for x in w[i]) for i, b in enumerate(ids)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
