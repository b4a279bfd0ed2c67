"""Generalised filtering: the D-step of DEM as an ``init``/``step`` pair over ``lax.scan``.

Recognition dynamics (SPEC section 3)::

    du/dt = D u - kappa dL/du

(``kappa`` the rate of generalised descent, :attr:`cpsych.HDM.kappa`, SPM's ``E.K``)

are integrated jointly with the generalised data and prior (whose flow is ``D w``) by the one
local-linearisation loop of :mod:`cpsych.integrator`, one step per time bin: this module
supplies the recognition flow (:func:`recognition_flow`) and what is reported at each bin. The
expectation reported at sample ``t`` is the one held before the update at ``t`` (SPM's
convention).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import integrator
from .energy import Curvature, laplace_terms, precisions, split_u
from .evidence import bin_bounds
from .gencoords import derivative_operator, embed_series
from .hdm import HDM

__all__ = ["FilterOutput", "init", "recognition_flow", "run", "inputs_series",
           "conditional_covariance", "shift_operator"]


class FilterOutput(NamedTuple):
    """Per-bin outputs (stacked over time by ``lax.scan``)."""

    x: jax.Array  # (n_x,) expectation of states, zeroth order
    v: jax.Array  # (n_v,)
    x_cov: jax.Array  # (n_x, n_x)
    v_cov: jax.Array  # (n_v, n_v)
    pred: jax.Array  # (n_y + n_v,) predictions of data and causes
    ev: jax.Array  # (n_y + n_v,) zeroth-order errors on data and causes
    ex: jax.Array  # (n_x,) zeroth-order errors on the motion of states
    log_pi_v: jax.Array  # log-precisions in force
    F: jax.Array  # free energy of this bin, L + 1/2 ln|H|
    x_gen: jax.Array  # (n, n_x) generalised expectations of states
    F_dem: jax.Array  # spm_DEM's log-evidence bound accumulated at this bin (SPM's sign)
    F_lap: jax.Array  # spm_LAP's log-evidence bound accumulated at this bin (SPM's sign)


def shift_operator(model: HDM) -> jax.Array:
    """``D`` on flat expectations: ``blockdiag(kron(S_n, I_nx), kron(S_d, I_nv))``."""
    Dx = derivative_operator(model.n, model.n_x)
    Dv = derivative_operator(model.d, model.n_v)
    out = np.zeros((Dx.shape[0] + Dv.shape[0],) * 2)
    out[: Dx.shape[0], : Dx.shape[0]] = Dx
    out[Dx.shape[0]:, Dx.shape[0]:] = Dv
    return jnp.asarray(out)


def conditional_covariance(H: jax.Array) -> jax.Array:
    """``inv(H + tol I)``, ``tol = max(eps(||H||_inf) * dim(H), exp(-32))`` (SPEC 3)."""
    m = H.shape[0]
    norm = jnp.max(jnp.sum(jnp.abs(H), axis=1)) if m else 0.0
    spacing = jnp.where(norm > 0, 2.0 ** (jnp.floor(jnp.log2(jnp.maximum(norm, 1e-300))) - 52), 0.0)
    tol = jnp.maximum(spacing * m, jnp.exp(-32.0))
    return jnp.linalg.inv(H + tol * jnp.eye(m, dtype=H.dtype))


def inputs_series(model: HDM, y: jax.Array, eta: jax.Array | None = None
                  ) -> tuple[jax.Array, jax.Array]:
    """Generalised inputs of every bin: data ``y~ (T, n, n_y)`` and prior ``eta~ (T, d, n_top)``."""
    T = y.shape[1]
    yt = embed_series(y, model.n, model.dt)
    eta = model.eta if eta is None else eta
    eta = jnp.asarray(eta, dtype=yt.dtype)
    if eta.ndim == 1:
        et = jnp.zeros((T, model.d, model.n_top), yt.dtype).at[:, 0, :].set(eta)
    else:
        et = embed_series(eta, model.d, model.dt)
    return yt, et


def init(model: HDM) -> jax.Array:
    """Flat expectations ``u`` at the model's initial values, higher orders zero."""
    xt = jnp.zeros((model.n, model.n_x)).at[0].set(jnp.concatenate(
        [jnp.asarray(lv.x0, float) for lv in model.levels]))
    vt = jnp.zeros((model.d, model.n_v)).at[0].set(jnp.concatenate(
        [jnp.asarray(lv.v0, float) for lv in model.levels]))
    return jnp.concatenate([xt.ravel(), vt.ravel()])


def filter_output(model: HDM, u: jax.Array, c: Curvature, lap_log_pi: tuple | None = None
                  ) -> FilterOutput:
    """What is reported at one bin: zeroth orders, conditional covariances, errors, F.

    ``lap_log_pi`` are the log-precisions deciding which channels enter spm_LAP's bound
    (:func:`cpsych.evidence.bin_bounds`; default those in force).
    """
    nx, nv = model.n_x, model.n_v
    xt, vt = split_u(model, u)
    S = conditional_covariance(c.H_gn)
    nxu = model.n * nx
    Sx = S[:nx, :nx]
    Sv = S[nxu:nxu + nv, nxu:nxu + nv]
    logdet_H = jnp.linalg.slogdet(c.H_gn)[1]
    spm = bin_bounds(model, c.errors.ev, c.errors.ex, c.log_pi_v, c.log_pi_x, S, lap_log_pi, u)
    return FilterOutput(x=xt[0], v=vt[0], x_cov=Sx, v_cov=Sv, pred=c.errors.gv,
                        ev=c.errors.ev[0], ex=c.errors.ex[0], log_pi_v=c.log_pi_v,
                        F=c.L + 0.5 * logdet_H, x_gen=xt, F_dem=spm.dem, F_lap=spm.lap)


def recognition_flow(model: HDM, u: jax.Array, w: tuple[jax.Array, jax.Array]
                     ) -> tuple[integrator.Flow, Curvature]:
    """The recognition flow ``q = D u - kappa dL/du``, ``A = D - kappa H``, ``B = -kappa K``.

    ``w = (y~, eta~)`` are the bin's generalised data ``(n, n_y)`` and prior ``(d, n_top)``;
    ``H`` and ``K`` are the curvature and the coupling of the Gibbs energy to them
    (:func:`cpsych.energy.laplace_terms`). The rate of generalised descent
    ``kappa = model.kappa`` (SPM's ``E.K``) scales the gradient, the curvature and the
    coupling, never the shift operator ``D``; the returned :class:`~cpsych.energy.Curvature`
    is unscaled (the conditional precision does not depend on ``kappa``).
    """
    yt, et = w
    n_y = yt.shape[1]
    c = laplace_terms(model, u, jnp.concatenate([yt.ravel(), et.ravel()]), n_y)
    Du = shift_operator(model)
    k = jnp.asarray(model.kappa, dtype=u.dtype)
    return integrator.Flow(q=Du @ u - k * c.grad, A=Du - k * c.H, B=-k * c.K), c


def run(model: HDM, y: jax.Array, eta: jax.Array | None = None) -> FilterOutput:
    """Invert ``model`` on data ``y`` of shape ``(n_y, T)``: outputs stacked over time."""
    u0 = init(model)
    lap_log_pi = precisions(model, u0)  # spm_LAP judges its exclusions at the start

    def flow(u, w):
        terms, c = recognition_flow(model, u, w)
        return terms, filter_output(model, u, c, lap_log_pi)

    return integrator.integrate(flow, u0, inputs_series(model, y, eta), model.dt)


run_jit = jax.jit(run)
