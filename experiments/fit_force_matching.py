"""Fit force-matching data (``cpsych fit force-matching DATA.csv``): a thin caller of the
generic fit, :mod:`cpsych.experiments.fit` and :mod:`cpsych.fit.hierarchical`.

Kept for ``python -m cpsych.experiments.fit_force_matching DATA.csv`` and for
:func:`make_example`, which writes the shipped synthetic example
(experiments/data/force_matching_example.csv, true attenuations in
force_matching_example_truth.csv; see docs/fitting.md).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # SPEC 8

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from cpsych.experiments import module_main  # noqa: E402
from cpsych.experiments.fit import add_arguments, run  # noqa: E402

__all__ = ["add_arguments", "run", "main", "make_example"]

EXAMPLE = Path(__file__).parent / "data" / "force_matching_example.csv"
TRUTH = Path(__file__).parent / "data" / "force_matching_example_truth.csv"


def make_example(path: Path = EXAMPLE, truth: Path = TRUTH, seed: int = 2024) -> None:
    """Write the shipped synthetic example (direct simulation, no emulator).

    20 participants: 10 controls with attenuation ``h ~ N(6, 0.5)``, 10 patients
    (``schizophrenia``) with ``h ~ N(4, 0.5)`` (the ``D = 2`` change of ``h``); conditions
    ``finger`` (pressing directly) and ``slider`` (through a slider, ``h - 1``); targets
    0.5, 1, 1.5, 2 N; matching noise SD 0.1 N. True values go to ``truth``.
    """
    from cpsych.fit.data import write_csv
    from cpsych.models.force_matching_fit import synthetic_force_data, write_force_matching

    rng = np.random.default_rng(seed)
    h = np.r_[rng.normal(6.0, 0.5, 10), rng.normal(4.0, 0.5, 10)]
    groups = ["control"] * 10 + ["schizophrenia"] * 10
    ds = synthetic_force_data(h, groups, conditions=("finger", "slider"),
                              condition_effects=(0.0, -1.0), noise_sd=0.1, emulator=False,
                              seed=seed)
    write_force_matching(ds, path)
    write_csv(truth, ["participant", "group", "h_finger", "h_slider"],
              [[f"p{i + 1:02d}", groups[i], f"{h[i]:.4f}", f"{h[i] - 1.0:.4f}"]
               for i in range(h.size)])


def main(argv: list[str] | None = None) -> int:
    return module_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
