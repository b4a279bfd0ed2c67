"""cpsych: computational psychiatry in JAX.

Hierarchical dynamic models in generalised coordinates of motion, the Laplace free energy,
generalised filtering and active inference, with state-dependent precision.

Importing cpsych turns on JAX's 64-bit mode (``jax_enable_x64``): the integrator is stiff
(precisions up to ``exp(16)``) and needs float64. This is the package's only global side
effect; set ``CPSYCH_NO_X64=1`` before import to leave JAX's setting alone.
"""

from __future__ import annotations

import os

import jax

if os.environ.get("CPSYCH_NO_X64", "") != "1":
    jax.config.update("jax_enable_x64", True)

from . import paradigm, sweep  # noqa: E402
from .active import Process, simulate  # noqa: E402
from .gencoords import (  # noqa: E402
    derivative_operator,
    embed,
    embed_series,
    smooth_noise,
    temporal_covariance,
    temporal_precision,
)
from .generation import generate  # noqa: E402
from .hdm import HDM, Level  # noqa: E402
from .inversion import invert  # noqa: E402
from .learning import free_action, learn  # noqa: E402
from .paradigm import DataFormat, Paradigm, Parameter, Readout  # noqa: E402
from .results import load, save  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = [
    "DataFormat",
    "HDM",
    "Paradigm",
    "Parameter",
    "Readout",
    "Process",
    "Level",
    "__version__",
    "derivative_operator",
    "embed",
    "embed_series",
    "free_action",
    "generate",
    "invert",
    "learn",
    "load",
    "save",
    "simulate",
    "paradigm",
    "sweep",
    "smooth_noise",
    "temporal_covariance",
    "temporal_precision",
]
