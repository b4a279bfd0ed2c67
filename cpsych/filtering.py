"""Generalised filtering: the D-step of DEM as an ``init``/``step`` pair over ``lax.scan``.

Recognition dynamics (SPEC section 3)::

    du/dt = D u - dL/du

are integrated jointly with the generalised data and prior (whose flow is ``D w``) by local
linearisation, one step per time bin. The expectation reported at sample ``t`` is the one
held before the update at ``t`` (SPM's convention).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .energy import Curvature, laplace_terms, split_u
from .gencoords import embed_series
from .hdm import HDM
from .linearisation import phi_step

__all__ = ["FilterState", "FilterOutput", "init", "step", "run", "inputs_series",
           "conditional_covariance"]


class FilterState(NamedTuple):
    """State carried through time: the flat generalised expectations ``u``."""

    u: jax.Array


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


def shift_operator(model: HDM) -> jax.Array:
    """``D`` on flat expectations: ``blockdiag(kron(S_n, I_nx), kron(S_d, I_nv))``."""
    Dx = np.kron(np.eye(model.n, k=1), np.eye(model.n_x))
    Dv = np.kron(np.eye(model.d, k=1), np.eye(model.n_v))
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


def inputs_series(model: HDM, y: jax.Array, eta: jax.Array | None = None) -> jax.Array:
    """Generalised inputs ``w_t = [y~_t, eta~_t]`` for every bin: ``(T, n n_y + d n_top)``."""
    T = y.shape[1]
    yt = embed_series(y, model.n, model.dt).reshape(T, -1)
    eta = model.eta if eta is None else eta
    eta = jnp.asarray(eta, dtype=yt.dtype)
    if eta.ndim == 1:
        et = jnp.zeros((T, model.d, model.n_top), yt.dtype).at[:, 0, :].set(eta)
    else:
        et = embed_series(eta, model.d, model.dt)
    return jnp.concatenate([yt, et.reshape(T, -1)], axis=1)


def init(model: HDM) -> FilterState:
    """Expectations at the model's initial values, higher orders zero."""
    xt = jnp.zeros((model.n, model.n_x)).at[0].set(jnp.concatenate(
        [jnp.asarray(lv.x0, float) for lv in model.levels]))
    vt = jnp.zeros((model.d, model.n_v)).at[0].set(jnp.concatenate(
        [jnp.asarray(lv.v0, float) for lv in model.levels]))
    return FilterState(jnp.concatenate([xt.ravel(), vt.ravel()]))


def filter_output(model: HDM, u: jax.Array, c: Curvature) -> FilterOutput:
    """What is reported at one bin: zeroth orders, conditional covariances, errors, F."""
    nx, nv = model.n_x, model.n_v
    xt, vt = split_u(model, u)
    S = conditional_covariance(c.H_gn)
    nxu = model.n * nx
    Sx = S[:nx, :nx]
    Sv = S[nxu:nxu + nv, nxu:nxu + nv]
    logdet_H = jnp.linalg.slogdet(c.H_gn)[1]
    return FilterOutput(x=xt[0], v=vt[0], x_cov=Sx, v_cov=Sv, pred=c.errors.gv,
                        ev=c.errors.ev[0], ex=c.errors.ex[0], log_pi_v=c.log_pi_v,
                        F=c.L + 0.5 * logdet_H, x_gen=xt)


def flow(model: HDM, u: jax.Array, w: jax.Array, n_y: int, Du: jax.Array):
    """Flow ``q = D u - dL/du``, its Jacobian ``A`` and input coupling ``B`` at one bin."""
    c = laplace_terms(model, u, w, n_y)
    q = Du @ u - c.grad
    A = Du - c.H
    B = -c.K
    return q, A, B, c


def input_shifts(model: HDM, w: jax.Array, n_y: int) -> jax.Array:
    """``[D**k w for k = 1..n-1]`` for the generalised data and prior: ``(n - 1, len(w))``."""
    n, d = model.n, model.d
    nyw = n * n_y
    yt = w[:nyw].reshape(n, n_y)
    et = w[nyw:].reshape(d, model.n_top)
    rows = []
    for k in range(1, n):
        ys = jnp.concatenate([yt[k:], jnp.zeros((k, n_y), w.dtype)], axis=0)
        es = jnp.concatenate([et[k:], jnp.zeros((min(k, d), model.n_top), w.dtype)], axis=0)
        rows.append(jnp.concatenate([ys.ravel(), es.ravel()]))
    return jnp.stack(rows) if rows else jnp.zeros((0, w.shape[0]), w.dtype)


def step(model: HDM, state: FilterState, w: jax.Array, n_y: int):
    """One generalised-filtering step: report the held expectations, then update them."""
    Du = shift_operator(model)
    q, A, B, c = flow(model, state.u, w, n_y, Du)
    bs = jnp.concatenate([q[None, :], input_shifts(model, w, n_y) @ B.T], axis=0)
    du = phi_step(A, bs, model.dt)
    return FilterState(state.u + du), filter_output(model, state.u, c)


def run(model: HDM, y: jax.Array, eta: jax.Array | None = None) -> FilterOutput:
    """Invert ``model`` on data ``y`` of shape ``(n_y, T)``: outputs stacked over time."""
    n_y = y.shape[0]
    ws = inputs_series(model, y, eta)

    def body(state, w):
        return step(model, state, w, n_y)

    _, out = jax.lax.scan(body, init(model), ws)
    return out


run_jit = jax.jit(run)
