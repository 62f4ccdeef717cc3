"""The model: a ConvLSTM core over the whole domain, a basin head and a map head.

Public API::

    ConvLSTMCell, ConvLSTM            the recurrent core (convlstm.py)
    HydroConvLSTM                     core + heads, built from a dict of hyperparameters
    BasinHead                         discharge of any basin from the shared hidden maps
    LumpedLSTM, lumped_inputs         the lumped baseline and its inputs (basin averages)
    STREAMS                           the named input streams every model takes (one mapping)
    nse_star_loss                     the NSE* training loss (NaN observations masked)
    QUANTILE_LEVELS, quantile_loss    the forecast distribution's levels and its pinball loss
    fit_spread_scale                  calibrate the distribution's spread on the validation period
    fit_update_gain                   fit the updating with the issue day's error on the validation period
    fit_persistence_weight            fit the per-gauge blend with persistence on the validation period
    discharge_from_normalised         normalised head output -> non-negative physical discharge
"""

from .convlstm import ConvLSTM, ConvLSTMCell, lstm_gates
from .network import (
                      HPARAM_DEFAULTS,
                      N_OBS_FEATURES,
                      QUANTILE_LEVELS,
                      STREAMS,
                      BasinHead,
                      HydroConvLSTM,
                      LumpedLSTM,
                      basin_average,
                      discharge_from_normalised,
                      fit_persistence_weight,
                      fit_spread_scale,
                      fit_update_gain,
                      lumped_inputs,
                      n_obs_features,
                      nse_star_loss,
                      observation_features,
                      observation_maps,
                      quantile_loss,
                      quantiles_around,
)

__all__ = ["ConvLSTM", "ConvLSTMCell", "lstm_gates", "HPARAM_DEFAULTS", "BasinHead", "HydroConvLSTM",
           "LumpedLSTM", "STREAMS", "N_OBS_FEATURES", "observation_maps", "observation_features",
           "basin_average", "lumped_inputs", "discharge_from_normalised", "nse_star_loss",
           "QUANTILE_LEVELS", "quantile_loss", "n_obs_features", "quantiles_around", "fit_spread_scale",
           "fit_update_gain", "fit_persistence_weight"]
