"""Linear convolution model (SPEC 5.1; Friston 2008, "Hierarchical models in the brain").

A Gaussian bump of input ``v`` drives two coupled hidden states that are observed through
four channels::

    dx/dt = A x + B v + w,    y = C x + z,    v = eta + z2

with ``A = [[-1, 4], [-2, -1]] / 4`` (a damped oscillator), ``B = [1, 0]'`` and ``C`` the first
two columns of the 4-point DCT basis divided by 4. Noise precisions ``exp(8)`` on ``z`` and
``w``, unit prior precision on the cause. Embedding: ``n = 7`` coordinates for states, ``d = 3``
for causes, smoothness ``s = 1/2`` bin.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cpsych import HDM, Level, Paradigm, Parameter, Readout
from cpsych.filtering import run as filter_run
from cpsych.generation import draw_noise, simulate_hdm

__all__ = ["A", "B", "C", "bump", "model", "PARADIGM"]


def dct_matrix(N: int, K: int) -> np.ndarray:
    """First ``K`` orthonormal DCT-II basis vectors of length ``N`` (columns)."""
    n = np.arange(N)[:, None]
    k = np.arange(K)[None, :]
    C = np.sqrt(2.0 / N) * np.cos(np.pi * (2 * n + 1) * k / (2 * N))
    C[:, 0] = 1.0 / np.sqrt(N)
    return C


A = np.array([[-1.0, 4.0], [-2.0, -1.0]]) / 4.0
B = np.array([[1.0], [0.0]])
C = dct_matrix(4, 2) / 4.0


def bump(T: int = 32, centre: float = 12.0, width: float = 2.0) -> np.ndarray:
    """The cause: ``exp(-((t - centre) / width)**2)`` at 1-based bins ``t = 1..T``."""
    t = np.arange(1, T + 1)
    return np.exp(-(((t - centre) / width) ** 2))[None, :]


def _f(x, v, th):
    return th["A"] @ x + th["B"] @ v


def _g(x, v, th):
    return th["C"] @ x


def model(log_pi_z: float = 8.0, log_pi_w: float = 8.0, log_pi_eta: float = 0.0,
          n: int = 7, d: int = 3, s: float = 0.5) -> HDM:
    """The convolution model with its published settings as defaults."""
    level = Level(
        g=_g, f=_f, n_x=2, n_v=1, theta={"A": A, "B": B, "C": C},
        log_pi_z=log_pi_z, log_pi_w=log_pi_w,
        x_names=("x1", "x2"), v_names=("v",), out_names=("y1", "y2", "y3", "y4"),
    )
    return HDM(levels=(level,), eta=0.0, log_pi_eta=log_pi_eta, n=n, d=d, s=s)


# ------------------------------------------------------------------------------ the paradigm
def _simulate(values: dict[str, Any], design: dict[str, Any], key: jax.Array | None):
    """Generate data from the model at its precisions (noise drawn with ``key``; none without)
    and invert them with the observer's precisions; read out the recovery errors."""
    T = int(design["T"])
    true = model().validate()
    causes = jnp.asarray(bump(T))
    if key is None:
        z, w = jnp.zeros((true.n_y + 1, T)), jnp.zeros((2, T))
    else:
        z, w = draw_noise(true, key, T, true.n_y)
    traj = simulate_hdm(true, causes, z, w)
    observer = model(values["log_pi_z"], values["log_pi_w"], values["log_pi_eta"]).validate()
    out = filter_run(observer, traj.y.T)
    return {"rmse_x": jnp.sqrt(jnp.mean((out.x - traj.x) ** 2)),
            "rmse_v": jnp.sqrt(jnp.mean((out.v - traj.v) ** 2)),
            "free_action": jnp.sum(out.F)}


PARADIGM = Paradigm(
    name="convolution",
    title="Linear convolution model: DEM's benchmark (Friston 2008)",
    parameters=(
        Parameter("log_pi_z", 8.0, "log-precision", "the observer's sensory log-precision",
                  (8.0, 2.0), (-8.0, 24.0)),
        Parameter("log_pi_w", 8.0, "log-precision", "the observer's state log-precision",
                  (8.0, 2.0), (-8.0, 24.0)),
        Parameter("log_pi_eta", 0.0, "log-precision", "the observer's prior log-precision on "
                  "the cause", (0.0, 2.0), (-8.0, 24.0)),
    ),
    presets={"control": {}},
    readouts=(
        Readout("rmse_x", "1", "RMS error of the inferred hidden states"),
        Readout("rmse_v", "1", "RMS error of the inferred cause"),
        Readout("free_action", "nats", "free action of the inversion (sum of F over bins)"),
    ),
    simulate=_simulate,
    design={"T": 32},
    references=("Friston KJ (2008). Hierarchical models in the brain. PLoS Comput Biol "
                "4:e1000211.",),
)
