import gc
import os
from importlib import resources
from pathlib import Path

import jax
import numpy as np
import pytest

# The test process never turns JAX's persistent compilation cache on: an in-process command-line
# test would otherwise enable it for the rest of the session, reading executables other
# processes are writing. The cache's own tests run commands in subprocesses with their own
# directories.
os.environ["CPSYCH_NO_CACHE"] = "1"



@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop every compiled program after each test module.

    One process runs the whole suite; without this it accumulates thousands of XLA
    executables (above 5 GB resident), and XLA has crashed in that state (a segmentation
    fault in CI, an abort here). Modules share no compiled programs worth keeping.
    """
    yield
    from cpsych import optimise, paradigm

    paradigm._compiled.cache_clear()
    optimise._lbfgs_step.cache_clear()
    jax.clear_caches()
    gc.collect()


DATA = Path(__file__).parent / "data"
#: SPM's data and true states of the convolution model ship with the package (the
#: convolution experiment inverts them); tests/data holds only what the package does not.
PACKAGED = resources.files("cpsych.experiments").joinpath("data")


def load_csv(*parts: str) -> np.ndarray:
    path = DATA.joinpath(*parts)
    if not path.exists():
        path = PACKAGED.joinpath(*parts)
    with path.open() as fh:
        return np.loadtxt(fh, delimiter=",", ndmin=2)


@pytest.fixture(scope="session")
def conv_ref():
    """SPM's reference outputs for the convolution model (tests/data/convolution)."""
    names = ["Y", "U", "pU_x1", "pU_v2", "pU_z1", "pU_z2", "pU_w1", "model_A_f", "model_B_h",
             "model_C_g", "model_V1", "model_V2", "model_W1"]
    for pre in ("DEM", "LAP"):
        names += [f"{pre}_qU_{k}" for k in ("x1", "v1", "v2", "z1", "z2", "w1", "S", "C")]
    ref = {k: load_csv("convolution", f"{k}.csv") for k in names}
    E = np.loadtxt(DATA / "convolution" / "model_E.csv", delimiter=",", skiprows=1, dtype=str)
    ref["model_E"] = {name: float(value) for name, value in E}
    return ref
