"""Generic inference for fitting paradigm parameters to behaviour (SPEC 7).

* :mod:`cpsych.fit.data` — strict CSV reading (:class:`DataError` names file, line and
  column) that the paradigms' data formats are built on.
* :mod:`cpsych.fit.emulator` — a smooth, differentiable table emulator of an expensive
  function of two scalars (cubic Hermite x linear), for likelihoods inside NUTS.
* :mod:`cpsych.fit.infer` — optax MAP, numpyro NUTS, xarray posteriors in ArviZ's layout with
  R-hat / ESS, netCDF.

Paradigm-specific fitting lives with the paradigm: :mod:`cpsych.models.force_matching_fit`
(data format, emulator of the matched force, hierarchical model, end-to-end fit) and the
fitting section of :mod:`cpsych.models.pursuit` (read-outs, eye-tracking data). The engine never
imports them.

:mod:`cpsych.fit.infer` (numpyro) is imported on first use of one of its names, so that the
paradigm modules can read their data through :mod:`cpsych.fit.data` without loading numpyro.
"""

from __future__ import annotations

import importlib
from typing import Any

import cpsych  # noqa: F401  (float64)

from .data import DataError, read_table
from .emulator import Emulator, hermite_1d, table_emulator

_INFER = ("Fit", "MapResult", "load_fit", "map_estimate", "sample_nuts", "summarise")

__all__ = ["DataError", "read_table", "Emulator", "hermite_1d", "table_emulator", *_INFER]


def __getattr__(name: str) -> Any:
    if name in _INFER:
        return getattr(importlib.import_module(".infer", __name__), name)
    if name == "infer":
        return importlib.import_module(".infer", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
