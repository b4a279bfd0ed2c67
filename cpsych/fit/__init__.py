"""Fitting precision parameters to behaviour (SPEC 7).

* :mod:`cpsych.fit.data` — tidy CSV loaders with strict validation (force matching, eye
  tracking).
* :mod:`cpsych.fit.simulators` — differentiable read-outs of the paradigm simulators (smooth
  surrogates for the non-differentiable ones) and the force-matching emulator.
* :mod:`cpsych.fit.models` — hierarchical numpyro models (non-centred).
* :mod:`cpsych.fit.infer` — optax MAP, NUTS, xarray posteriors with R-hat / ESS, netCDF.
* :mod:`cpsych.fit.force` — the force-matching fit end to end and synthetic participants.
"""

from __future__ import annotations

import cpsych  # noqa: F401  (float64)

from .data import DataError, load_eye_tracking, load_force_matching, load_spem
from .force import default_emulator, fit_force_matching, map_force_matching, synthetic_force_data
from .infer import Fit, MapResult, load_fit, map_estimate, sample_nuts, summarise
from .models import ForceData, ForcePriors, force_data, force_matching_model
from .simulators import Emulator, build_emulator, force_grid, force_trial, matched_table

__all__ = [
    "DataError", "load_eye_tracking", "load_force_matching", "load_spem",
    "default_emulator", "fit_force_matching", "map_force_matching", "synthetic_force_data",
    "Fit", "MapResult", "load_fit", "map_estimate", "sample_nuts", "summarise",
    "ForceData", "ForcePriors", "force_data", "force_matching_model",
    "Emulator", "build_emulator", "force_grid", "force_trial", "matched_table",
]
