"""SPM's log-evidence bounds, reported beside cpsych's free energy.

cpsych minimises the free action ``sum_t F_t`` with ``F_t = L_t + 1/2 ln|H_t|`` (SPEC 3; no
``2 pi`` constant, the full generalised errors). SPM's routines report the *negative* of a free
energy, a lower bound on log evidence, each with its own terms. For a model with nothing to
learn (one pass of the D-step; ``Sigma_t`` the conditional covariance, ``E_t`` the generalised
errors with the highest order of state motion zeroed, as in the D-step, ``Pi = kron(R, Pi)``)::

    spm_DEM:  F = sum_t [ -1/2 E_t' Pi E_t + 1/2 ln|Pi| - n n_y/2 ln(2 pi) + 1/2 ln|Sigma_t| ]
    spm_LAP:  F = sum_t [ -1/2 E_t' Pi E_t + 1/2 ln|Pi| - n n_y/2 ln(2 pi) ]   (= its S)

with these conventions (read off spm_DEM.m and spm_LAP.m of SPM12):

- the ``2 pi`` constant counts the ``n n_y`` generalised *data* only, not causes or states;
- spm_DEM leaves out every error component whose precision (diagonal of ``Pi``, order by
  order) is ``exp(16)`` or more, and the states indexed alike from ``ln|Sigma_t|``
  (:func:`dem_masks`); ``Sigma_t = inv(H_t + tol I)``, as the filter reports it;
- spm_LAP leaves out every channel whose log-precision is 8 or more (all orders), judged at
  the initial expectations, and has no entropy term for states without priors (its
  ``ln|Pu Sigma_t|`` vanishes when the prior precision ``Pu`` on the states is zero).

So, when no component is excluded, ``-F_DEM = sum_t F_t + T n n_y/2 ln(2 pi)`` up to the
zeroed top order in the quadratic term and ``tol``. With parameters and log-precisions learned
(DEM's E- and M-steps, :func:`cpsych.dem.dem`) spm_DEM adds their prior and entropy terms
(:func:`dem_parameter_terms`).

:func:`bin_bounds` gives both per time bin from what the filter holds there;
:func:`cpsych.invert` reports them as ``F_spm_dem`` and ``F_spm_lap`` (per bin, and summed in
``attrs``) and :func:`spm_free_energy` reads them back.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .energy import state_prior
from .gencoords import temporal_precision
from .hdm import HDM

__all__ = ["BinBound", "LOG_2PI", "DEM_LOG_CEILING", "LAP_LOG_CEILING", "bin_bounds",
           "dem_masks", "dem_parameter_terms", "spm_free_energy", "spm_logdet"]

LOG_2PI = math.log(2.0 * math.pi)
#: spm_DEM excludes error components with precision ``>= exp(16)`` from its bound.
DEM_LOG_CEILING = 16.0
#: spm_LAP excludes channels with log-precision ``>= 8`` from its bound.
LAP_LOG_CEILING = 8.0


class BinBound(NamedTuple):
    """SPM's log-evidence bound accumulated at one time bin (SPM's sign: to maximise)."""

    dem: jax.Array
    lap: jax.Array


def spm_logdet(C: np.ndarray) -> float:
    """``ln|C|`` as SPM's ``spm_logdet`` computes it (NumPy, on the host).

    Rows and columns with a zero diagonal are dropped. A diagonal matrix gives the sum of the
    logs of its diagonal entries within ``(1e-16, 1e16)`` (negative entries count for
    nothing); a symmetric positive-definite one its exact log-determinant; any other the sum
    of the logs of its singular values within ``(1e-16, 1e16)``. SPM's regularised
    Gauss-Newton steps depend on this for negative-definite curvatures.
    """
    C = np.asarray(C, float)
    keep = np.diagonal(C) != 0
    C = C[np.ix_(keep, keep)]
    if C.size == 0:
        return 0.0
    if np.all(C[~np.eye(C.shape[0], dtype=bool)] == 0):
        s = np.diagonal(C)
    elif np.max(np.abs(C - C.T)) <= 1e-16 and np.all(np.linalg.eigvalsh(C) > 0):
        return float(2.0 * np.sum(np.log(np.diagonal(np.linalg.cholesky(C)))))
    else:
        s = np.linalg.svd(C, compute_uv=False)
    s = s[(s > 1e-16) & (s < 1e16)]
    return float(np.sum(np.log(s)))


def _masked_logdet(A: jax.Array, mask: jax.Array) -> jax.Array:
    """``ln|A[mask, mask]|`` for a symmetric positive-definite ``A`` (traceable mask)."""
    if A.shape[0] == 0:
        return jnp.zeros((), A.dtype)
    eye = jnp.eye(A.shape[0], dtype=A.dtype)
    return jnp.linalg.slogdet(jnp.where(mask[:, None] & mask[None, :], A, eye))[1]


def dem_masks(model: HDM, log_pi_v: jax.Array, log_pi_x: jax.Array
              ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Which errors and states enter spm_DEM's bound.

    Returns
    -------
    je_v : (n, n_y + n_v) bool
        Errors on data and causes, order by order, whose precision ``R_kk exp(log_pi)`` is
        below ``exp(16)``.
    je_x : (n, n_x) bool
        The same for the errors on the motion of the states.
    ju : (n n_x + d n_v,) bool
        The generalised states kept in ``ln|Sigma|``: the states by ``je_x``; the causes, as
        spm_DEM indexes them, by entries ``n n_y .. n n_y + d n_v - 1`` of the flattened
        (order-major) ``je_v``. This reads the errors on data at higher orders rather than
        those on the causes: it follows SPM, and matters only when some error is that precise.
    """
    R = temporal_precision(model.n, model.s)
    log_r = jnp.log(jnp.diagonal(R))[:, None]
    je_v = log_r + log_pi_v[None, :] < DEM_LOG_CEILING
    je_x = log_r + log_pi_x[None, :] < DEM_LOG_CEILING
    n_y = log_pi_v.shape[0] - model.n_v
    start = model.n * n_y
    ju = jnp.concatenate([je_x.ravel(), je_v.ravel()[start:start + model.d * model.n_v]])
    return je_v, je_x, ju


def _quad(R: jax.Array, log_p: jax.Array, e: jax.Array) -> jax.Array:
    """``e' kron(R, diag(exp(log_p))) e`` for an order-major ``(n, k)`` array ``e``."""
    return jnp.sum(e * (R @ e) * jnp.exp(log_p)[None, :])


def _logdet_kron(R: jax.Array, log_p: jax.Array, mask: jax.Array) -> jax.Array:
    """``ln|kron(R, diag(exp(log_p)))|`` restricted to ``mask (n, k)`` (order, channel)."""
    if log_p.shape[0] == 0:
        return jnp.zeros((), R.dtype)
    per_channel = jax.vmap(lambda m: _masked_logdet(R, m), in_axes=1)(mask)
    return jnp.sum(per_channel + jnp.sum(mask, axis=0) * log_p)


def bin_bounds(model: HDM, ev: jax.Array, ex: jax.Array, log_pi_v: jax.Array,
               log_pi_x: jax.Array, S: jax.Array, lap_log_pi: tuple | None = None,
               u: jax.Array | None = None) -> BinBound:
    """spm_DEM's and spm_LAP's log-evidence terms at one bin (see the module docstring).

    Parameters
    ----------
    ev, ex : generalised errors ``(n, n_y + n_v)`` and ``(n, n_x)`` at the held expectations
        (exact; the top order of ``ex`` is zeroed here, as SPM's D-step does).
    log_pi_v, log_pi_x : log-precisions in force.
    S : conditional covariance of the generalised states, ``inv(H + tol I)``.
    lap_log_pi : ``(log_pi_v, log_pi_x)`` deciding spm_LAP's exclusions (SPM judges them at
        the initial expectations); default the ones in force.
    u : the flat expectations held at this bin; with fixed priors on the states
        (:func:`cpsych.energy.state_prior`, ``Pu``) spm_LAP's bound adds
        ``-1/2 u' Pu u + 1/2 ln|Pu Sigma|`` over the states it keeps (the zeroth order of every
        state; higher orders and causes whose log-precision is below 8), the log-determinant
        over those with a prior.
    """
    n = model.n
    n_y = ev.shape[1] - model.n_v
    R = temporal_precision(n, model.s)
    ex = ex.at[-1].set(0.0) if ex.shape[1] else ex
    const = -0.5 * n * n_y * LOG_2PI
    # spm_DEM
    je_v, je_x, ju = dem_masks(model, log_pi_v, log_pi_x)
    quad = _quad(R, log_pi_v, ev * je_v) + _quad(R, log_pi_x, ex * je_x)
    logdet_pi = _logdet_kron(R, log_pi_v, je_v) + _logdet_kron(R, log_pi_x, je_x)
    dem = -0.5 * quad + 0.5 * logdet_pi + const + 0.5 * _masked_logdet(S, ju)
    # spm_LAP
    lv0, lx0 = (log_pi_v, log_pi_x) if lap_log_pi is None else lap_log_pi
    kv, kx = lv0 < LAP_LOG_CEILING, lx0 < LAP_LOG_CEILING
    quad = _quad(R, log_pi_v, ev * kv[None, :]) + _quad(R, log_pi_x, ex * kx[None, :])
    logdet_r = jnp.linalg.slogdet(R)[1]
    logdet_pi = (n * (jnp.sum(jnp.where(kv, log_pi_v, 0.0)) + jnp.sum(jnp.where(kx, log_pi_x, 0.0)))
                 + (jnp.sum(kv) + jnp.sum(kx)) * logdet_r)
    lap = -0.5 * quad + 0.5 * logdet_pi + const
    Pu = state_prior(model)
    if Pu is not None and u is not None:
        nx, nv = model.n_x, model.n_v
        keep_x = jnp.broadcast_to(kx[None, :], (n, nx)).at[0].set(True)
        keep_v = jnp.broadcast_to(kv[n_y:n_y + nv][None, :], (model.d, nv))
        ju = jnp.concatenate([keep_x.ravel(), keep_v.ravel()])
        uj = jnp.where(ju, u, 0.0)
        has = ju & (jnp.diagonal(Pu) > 0)
        lap = lap - 0.5 * uj @ Pu @ uj + 0.5 * (_masked_logdet(Pu, has) + _masked_logdet(S, has))
    return BinBound(dem=dem, lap=lap)


def dem_parameter_terms(p_err: np.ndarray, p_prec: np.ndarray, p_cov: np.ndarray,
                        h_err: np.ndarray, h_prec: np.ndarray, h_cov: np.ndarray) -> float:
    """spm_DEM's terms for parameters ``p`` and log-precisions ``h`` (its ``Lp``)::

        -1/2 e_p' P_p e_p - 1/2 e_h' P_h e_h + 1/2 ln|C_p P_p| + 1/2 ln|C_h P_h|

    with ``e`` the posterior expectation minus the prior mean, ``P`` the prior precision and
    ``C`` the posterior covariance; the log-determinants are :func:`spm_logdet`'s.
    """
    out = -0.5 * p_err @ p_prec @ p_err - 0.5 * h_err @ h_prec @ h_err
    out += 0.5 * spm_logdet(p_cov @ p_prec) + 0.5 * spm_logdet(h_cov @ h_prec)
    return float(out)


def spm_free_energy(result: xr.Dataset, scheme: str = "DEM") -> float:
    """SPM's log-evidence bound of an inversion (``DEM.F`` or ``LAP.F``; SPM's sign).

    Parameters
    ----------
    result : xarray.Dataset
        The output of :func:`cpsych.invert` (or of :func:`cpsych.learn`'s ``posterior``).
    scheme : {"DEM", "LAP"}
        Whose bound: spm_DEM's or spm_LAP's (spm_LAP's ``F`` and free action ``S`` coincide
        when nothing is learned).

    Returns
    -------
    float
        A lower bound on log evidence (higher is better), whereas ``result["F"]`` is
        cpsych's free energy (to minimise, no ``2 pi`` constant).
    """
    key = {"DEM": "F_spm_dem", "LAP": "F_spm_lap"}.get(str(scheme).upper())
    if key is None:
        raise ValueError(f"scheme: must be 'DEM' or 'LAP', got {scheme!r}")
    if key not in result:
        raise ValueError(f"result: has no variable '{key}'; pass the output of cpsych.invert")
    return float(result[key].sum())
