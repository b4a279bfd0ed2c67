"""SPM's dynamic expectation maximisation: the D-, E- and M-steps as spm_DEM iterates them.

:func:`cpsych.learn` by default minimises the free action to convergence with L-BFGS. spm_DEM
does something else, and :func:`dem` (``cpsych.learn(..., scheme="dem")``) reproduces it, so
that cpsych's parameter estimates can be checked against SPM's number for number. Each of its
``n_iter`` iterations (SPM's ``E.nE``):

**D-step** (one pass over the data, expectations starting afresh): generalised filtering of the
states under the current parameters ``p`` and log-precisions ``h``, whose flow also descends
the parameters' uncertainty ``W = tr(C_p J_p' Pi J_p)`` (``J_p = dE/dp``, ``C_p`` the current
posterior covariance of ``p``). SPM's gradient is ``-J_u' Pi E - w_u / 2`` with
``w_u,i = tr(C_p J_p' Pi dJ_p/du_i)`` and its curvature ``-J_u' Pi J_u - w_uu / 2`` with
``w_uu,ij = tr(C_p dJ_p/du_i' Pi dJ_p/du_j)``; the flow ``D u + kappa dV/du`` with Jacobian
``D + kappa d2V/du2`` is integrated by local linearisation. Along the pass it accumulates,
with ``E`` the errors (top order of state motion zeroed) and ``Sigma_t`` the states'
conditional covariance:

- for the E-step ``dF/dp_i = sum_t -J_p' Pi E - 1/2 tr(Sigma_t dJ_u/dp_i' Pi J_u)`` and the
  curvature ``sum_t -J_p' Pi J_p - 1/2 tr(Sigma_t dJ_u/dp_i' Pi dJ_u/dp_j)``;
- for the M-step ``EE = sum_t E E'`` and ``ECE = sum_t J_u Sigma_t J_u' + J_p C_p J_p'``.

**M-step** (up to ``n_m`` Fisher-scoring steps on ``h``): with ``S = inv(Pi(h))`` and
``P_i = dPi/dh_i``, gradient ``-1/2 tr(P_i (ECE + EE - T S)) - P_h (h - h_E)``, expected
curvature ``-T/2 tr(P_i S P_j S) - P_h``; each step is clipped to +-2 and the loop stops when
the step is small. ``C_h = -inv(curvature)``.

**Free energy** (SPM's sign, :mod:`cpsych.evidence`): ``F = Lu + Lp`` with ``Lu`` the states'
bound (``-1/2 tr(Pi EE) - T n n_y/2 ln 2 pi + T/2 ln|Pi| + 1/2 sum_t ln|Sigma_t|``) and ``Lp``
the parameters' and log-precisions' prior and entropy terms; the free action ``S`` uses ``T``
times the latter.

**E-step**: if ``F`` rose (or on the first iteration), accept: one regularised Gauss-Newton
step on ``p`` (:func:`spm_dx` with a relative integration time ``t_e`` that grows by 1/2 up to
4 on each acceptance). Otherwise return to the last accepted ``p, h`` (and ``C_p, C_h``),
shrink ``t_e`` and ``t_m`` (``min(t - 2, -2)``) and allow one M-step from then on.

Parameters enter through ``build(params) -> HDM`` like :func:`cpsych.learn`; the names listed
in ``hyper`` are log-precisions (M-step), the rest parameters (E-step). The models' log
precisions are functions of ``h`` (SPM's ``Pi = sum_i Q_i exp(h_i)`` when ``log_pi = h``);
components that do not depend on ``h`` are fixed (SPM's ``V``, ``W``). Beware SPM's defaults:
a model completed by ``spm_DEM_M_set`` before its precision components are added (as
``spm_DEM_M`` and the demos do) keeps unit fixed precisions ``V = I``, ``W = I`` beside them,
so that its precision is ``1 + exp(h)``: ``log_pi = jnp.logaddexp(0, h)`` in ``build``.

Derivatives here are exact (autodiff) where SPM takes finite differences; for models linear
(or bilinear) in states and parameters the two agree to rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jax.flatten_util import ravel_pytree

from . import integrator
from .energy import Curvature, generalised_errors, precisions
from .evidence import DEM_LOG_CEILING, LOG_2PI, dem_parameter_terms, spm_logdet
from .filtering import (
    FilterOutput,
    conditional_covariance,
    filter_output,
    init,
    inputs_series,
    shift_operator,
)
from .gencoords import temporal_precision
from .hdm import HDM
from .inversion import check_data

__all__ = ["DEMResult", "dem", "spm_dx", "spm_inv"]

#: spm_DEM's tolerance on the M-step and on convergence.
TOL = float(np.exp(-4.0))


def spm_inv(A: np.ndarray) -> np.ndarray:
    """``inv(A + tol I)``, ``tol = max(eps(||A||_inf) dim(A), exp(-32))`` (SPM's ``spm_inv``)."""
    A = np.asarray(A, float)
    if A.size == 0:
        return A.copy()
    m = A.shape[0]
    tol = max(np.spacing(np.max(np.sum(np.abs(A), axis=1))) * m, np.exp(-32.0))
    return np.linalg.inv(A + tol * np.eye(m))


_expm = jax.jit(jsl.expm)


def spm_dx(J: np.ndarray, f: np.ndarray, t: float, relative: bool = False) -> np.ndarray:
    """The local-linearisation update ``(expm(J t) - I) inv(J) f`` (SPM's ``spm_dx``).

    With ``relative=True`` (SPM's ``{t}``), ``t`` is a log time relative to the curvature:
    ``exp(t - ln|J| / dim(J))`` with SPM's log-determinant (:func:`logdet`). Beyond
    ``exp(16)`` the step is the Newton step ``-pinv(J) f``.
    """
    J, f = np.asarray(J, float), np.asarray(f, float)
    m = f.size
    if m == 0:
        return f.copy()
    if relative:
        t = float(np.exp(t - spm_logdet(J) / m))
    if t > np.exp(16.0):
        return -np.linalg.pinv(J) @ f
    aug = np.zeros((m + 1, m + 1))
    aug[1:, 0] = t * f
    aug[1:, 1:] = t * J
    return np.asarray(_expm(jnp.asarray(aug)))[1:, 0]


class DEMResult(NamedTuple):
    """Outcome of :func:`dem` (SPM's ``DEM.qP``, ``DEM.qH``, ``DEM.F``, ``DEM.S``, ``DEM.qU``).

    Attributes
    ----------
    params : posterior expectations, the same dict as the start (parameters and
        log-precisions).
    cov_p, cov_h : posterior covariances of the parameters and of the log-precisions
        (flattened in the order of the dict's keys; DEM treats them as independent).
    F : free energy after each iteration (SPM's ``DEM.F``: a log-evidence bound, to maximise).
    S : free action after each iteration (``DEM.S``).
    states : the last D-step's outputs (what spm_DEM reports as ``qU``).
    converged : whether spm_DEM's convergence test was met.
    """

    params: dict
    cov_p: np.ndarray
    cov_h: np.ndarray
    F: np.ndarray
    S: np.ndarray
    states: FilterOutput
    converged: bool


class _Sums(NamedTuple):
    """What a D-step pass accumulates for the E- and M-steps."""

    dFdp: jax.Array
    dFdpp: jax.Array
    Jp_Pi_Jp: jax.Array
    EE: jax.Array
    ECE: jax.Array
    logdet_c: jax.Array


def _precision_matrix(R: jax.Array, log_v: jax.Array, log_x: jax.Array) -> jax.Array:
    """``blockdiag(kron(R, diag(exp(log_v))), kron(R, diag(exp(log_x))))`` (order-major)."""
    Pv = jnp.kron(R, jnp.diag(jnp.exp(log_v)))
    Px = jnp.kron(R, jnp.diag(jnp.exp(log_x)))
    return jsl.block_diag(Pv, Px)


def _d_step(build: Callable[[jax.Array, jax.Array], HDM], n_y: int):
    """One D-step pass (a function to jit): returns the accumulated sums and the states."""

    def run(p, h, Cp, je, y, eta):
        model = build(p, h)
        R = temporal_precision(model.n, model.s)
        D = shift_operator(model)
        nu, nx = D.shape[0], model.n_x
        Pu = nu * np.finfo(float).eps * jnp.eye(nu)
        kappa = jnp.asarray(model.kappa, float)

        def flow(u, w):
            yt, et = w
            wf = jnp.concatenate([yt.ravel(), et.ravel()])

            def err(uu, ww, pp):
                e = generalised_errors(build(pp, h), uu, ww, n_y, expansion=u)
                return jnp.concatenate([e.ev.ravel(), e.ex.ravel()])

            def ju_of(pp):
                J = jax.jacfwd(err)(u, wf, pp)
                return J, J

            errors = generalised_errors(model, u, wf, n_y)
            E = jnp.concatenate([errors.ev.ravel(), errors.ex.ravel()])
            Ez = E.at[E.size - nx:].set(0.0) if nx else E
            G, Ju = jax.jacfwd(ju_of, has_aux=True)(p)  # d2E/du dp: (e, u, p), and dE/du
            Jw, Jp = jax.jacfwd(err, argnums=(1, 2))(u, wf, p)
            lv, lx = precisions(model, u)
            Pi = _precision_matrix(R, lv, lx)
            ju = _ju(model, je, n_y)
            Sig = conditional_covariance(Ju.T @ Pi @ Ju + Pu) * (ju[:, None] & ju[None, :])
            eye = jnp.eye(nu)
            logdet_c = jnp.linalg.slogdet(jnp.where(ju[:, None] & ju[None, :], Sig, eye))[1]
            T = Jp.T @ Pi  # (p, e)
            dWdu = jnp.einsum("pq,qe,eap->a", Cp, T, G)
            dWduu = jnp.einsum("pq,eaq,ef,fbp->ab", Cp, G, Pi, G)
            dVdu = -Ju.T @ Pi @ Ez - 0.5 * dWdu - Pu @ u
            dVduu = -Ju.T @ Pi @ Ju - 0.5 * dWduu - Pu
            dVdw = -Ju.T @ Pi @ Jw
            terms = integrator.Flow(q=D @ u + kappa * dVdu, A=D + kappa * dVduu, B=kappa * dVdw)
            # E-step: uncertainty about the states, W = tr(Sigma J_u' Pi J_u), as a function of p
            dWdp = jnp.einsum("ab,ebp,ef,fa->p", Sig, G, Pi, Ju)
            dWdpp = jnp.einsum("ab,ebp,ef,faq->pq", Sig, G, Pi, G)
            JpPiJp = T @ Jp
            sums = _Sums(dFdp=-0.5 * dWdp - T @ Ez, dFdpp=-0.5 * dWdpp - JpPiJp,
                         Jp_Pi_Jp=JpPiJp, EE=jnp.outer(Ez, Ez),
                         ECE=Ju @ Sig @ Ju.T + Jp @ Cp @ Jp.T, logdet_c=logdet_c)
            H = Ju.T @ Pi @ Ju
            logdet_pi = ((lv.size + lx.size) * jnp.linalg.slogdet(R)[1]
                         + model.n * (jnp.sum(lv) + jnp.sum(lx)))
            L = 0.5 * E @ Pi @ E - 0.5 * logdet_pi
            c = Curvature(errors, -dVdu, H, -dVdw, H, L, lv, lx, Ju)
            return terms, (sums, filter_output(model, u, c))

        sums, states = integrator.integrate(flow, init(model), inputs_series(model, y, eta),
                                            model.dt)
        return jax.tree.map(lambda a: jnp.sum(a, axis=0), sums), states

    return run


def _ju(model: HDM, je: jax.Array, n_y: int) -> jax.Array:
    """spm_DEM's index of the states kept in ``ln|Sigma|`` (:func:`~cpsych.evidence.dem_masks`)."""
    n, nvy = model.n, n_y + model.n_v
    start_x, start_v = n * nvy, n * n_y
    return jnp.concatenate([je[start_x:start_x + n * model.n_x],
                            je[start_v:start_v + model.d * model.n_v]])


def _precision_and_slopes(build):
    """``Pi(h)``, ``dPi/dh`` and which diagonal entries do not depend on ``h`` (jit-able)."""

    def pi_of(p, h):
        model = build(p, h)
        R = temporal_precision(model.n, model.s)
        lv, lx = precisions(model, init(model))
        return _precision_matrix(R, lv, lx)

    def run(p, h):
        Pi = pi_of(p, h)
        dPi = jnp.moveaxis(jax.jacfwd(pi_of, argnums=1)(p, h), -1, 0)  # (h, e, e)
        fixed = jnp.all(jnp.diagonal(dPi, axis1=1, axis2=2) == 0, axis=0)
        return Pi, dPi, fixed

    return run


def dem(build: Callable[[dict], HDM], y: Any, params0: dict, *, hyper: Sequence[str] = (),
        prior_mean: dict | None = None, prior_var: Any = 1.0, eta: Any = None,
        n_iter: int = 8, n_m: int = 8, linear: bool = False) -> DEMResult:
    """Estimate states, parameters and log-precisions as spm_DEM does (see the module doc).

    Parameters
    ----------
    build : callable ``params -> HDM``
        Pure JAX function of a dict of parameters.
    y : array ``(n_y, T)``
        Data.
    params0 : dict
        Starting values (SPM starts at the prior mean).
    hyper : sequence of str
        Keys of ``params0`` that are log-precisions (M-step); the others are parameters.
    prior_mean, prior_var : dict or float
        Gaussian priors (SPM's ``pE, pC`` and ``hE, hC``; diagonal covariance). The prior mean
        defaults to ``params0``.
    eta : prior expectation of the top causes (default the model's).
    n_iter : iterations (SPM's ``E.nE``).
    n_m : largest number of M-steps per iteration (``E.nM``).
    linear : SPM's ``E.linear == 1``: the E-step's first relative integration time is 4
        (otherwise 0). Derivatives here are exact for any model.
    """
    if not isinstance(params0, dict):
        raise TypeError(f"params0: scheme 'dem' needs a dict of parameters, got "
                        f"{type(params0).__name__}")
    unknown = [k for k in hyper if k not in params0]
    if unknown:
        raise ValueError(f"hyper: {unknown} are not keys of params0 {list(params0)}")
    p_keys = [k for k in params0 if k not in hyper]
    h_keys = list(hyper)
    mean = params0 if prior_mean is None else prior_mean
    var = prior_var if isinstance(prior_var, dict) else {k: prior_var for k in params0}
    flat = lambda d, keys: ravel_pytree({k: jnp.asarray(d[k], float) for k in keys})  # noqa: E731
    p0, unravel_p = flat(params0, p_keys)
    h0, unravel_h = flat(params0, h_keys)
    pE, hE = np.asarray(flat(mean, p_keys)[0]), np.asarray(flat(mean, h_keys)[0])
    pC = np.asarray(flat({k: jnp.broadcast_to(jnp.asarray(var[k], float),
                                              jnp.shape(params0[k])) for k in p_keys},
                         p_keys)[0])
    hC = np.asarray(flat({k: jnp.broadcast_to(jnp.asarray(var[k], float),
                                              jnp.shape(params0[k])) for k in h_keys},
                         h_keys)[0])
    if not (np.all(pC > 0) and np.all(hC > 0)):
        raise ValueError("prior_var: prior variances must be positive")

    def build_ph(p, h):
        return build({**unravel_p(p), **unravel_h(h)}).validate()

    model0 = build_ph(p0, h0)
    y = jnp.asarray(check_data(model0, y))
    n_y, T = y.shape
    eta_arr = jnp.asarray(model0.eta if eta is None else eta, float)
    d_step = jax.jit(_d_step(build_ph, n_y))
    pi_fn = jax.jit(_precision_and_slopes(build_ph))

    n_p, n_h = p0.size, h0.size
    Pp = spm_inv(np.diag(pC))  # prior precisions (reduced space: the free parameters)
    Ph = np.linalg.pinv(np.diag(hC))
    qe, qh = np.asarray(p0) - pE, np.asarray(h0, float)
    Cp, Ch = np.zeros((n_p, n_p)), np.diag(hC)
    te, tm = (4.0 if linear else 0.0), 4.0
    if n_h == 0:
        n_m = 1
    if n_p == 0 and n_h == 0:
        n_iter = 1
    n = model0.n
    best = None
    F_hist, S_hist = [], []
    F_best = -np.inf
    dp = np.zeros(n_p)
    converged = False
    # errors this precise leave spm_DEM's bound, unless their precision is being learned
    Pi, _, fixed = (np.asarray(a) for a in pi_fn(jnp.asarray(p0), jnp.asarray(h0)))
    je = (np.diagonal(Pi) < np.exp(DEM_LOG_CEILING)) | ~fixed
    for it in range(n_iter):
        sums, states = d_step(jnp.asarray(qe + pE), jnp.asarray(qh), jnp.asarray(Cp),
                              jnp.asarray(je), y, eta_arr)
        s = jax.tree.map(np.asarray, sums)
        # M-step
        mh = np.zeros(n_h)
        he = qh - hE
        for _ in range(n_m):
            Pi, dPi, _ = (np.asarray(a) for a in pi_fn(jnp.asarray(qe + pE), jnp.asarray(qh)))
            he = qh - hE
            if n_h == 0:
                break
            S = spm_inv(Pi)
            dS = s.ECE + s.EE - S * T
            dFdh = np.array([-0.5 * np.sum(dPi[i] * dS.T) for i in range(n_h)])
            dFdhh = np.array([[-0.5 * T * np.sum((dPi[i] @ S) * (dPi[j] @ S).T)
                               for j in range(n_h)] for i in range(n_h)])
            dFdh = dFdh - Ph @ he
            dFdhh = dFdhh - Ph
            dh = np.clip(spm_dx(dFdhh, dFdh, tm, relative=True), -2.0, 2.0)
            qh = qh + dh
            mh = mh + dh
            Ch = -spm_inv(dFdhh)
            if dFdh @ dh < TOL or np.sum(np.abs(dh)) < TOL:
                break
        # conditional precision of the parameters, and the free energy
        Cp_new = spm_inv(s.Jp_Pi_Jp + Pp)
        sub = np.ix_(je, je)
        Lu = (-0.5 * np.sum(Pi[sub] * s.EE[sub]) - 0.5 * n * n_y * LOG_2PI * T
              + 0.5 * T * spm_logdet(Pi[sub]) + 0.5 * float(s.logdet_c))
        Lp = dem_parameter_terms(qe, Pp, Cp_new, he, Ph, Ch)
        La = (-0.5 * T * (qe @ Pp @ qe) - 0.5 * T * (he @ Ph @ he)
              + 0.5 * T * spm_logdet(Cp_new @ Pp * T)
              + 0.5 * T * spm_logdet(Ch @ Ph * T))
        F_it, S_it = Lu + Lp, Lu + La
        if F_it > F_best or it < 1:
            F_best = F_it
            te, tm = min(te + 0.5, 4.0), min(tm + 0.5, 4.0)
            best = (qe.copy(), Cp_new.copy(), qh.copy(), Ch.copy())
            Cp = Cp_new
            dFdp = s.dFdp - Pp @ qe
            dFdpp = s.dFdpp - Pp
            dp = spm_dx(dFdpp, dFdp, te, relative=True) if n_p else dp
            qe = qe + dp
        else:
            n_m = 1
            qe, Cp, qh, Ch = (a.copy() for a in best)
            te, tm = min(te - 2.0, -2.0), min(tm - 2.0, -2.0)
        F_hist.append(F_best)
        S_hist.append(S_it)
        if (np.sum(np.abs(dp)) < TOL * np.sum(np.abs(qe)) and np.sum(np.abs(mh)) < TOL):
            converged = True
            break
        if te < -8:
            break
    params = {**jax.tree.map(np.asarray, unravel_p(jnp.asarray(qe + pE))),
              **jax.tree.map(np.asarray, unravel_h(jnp.asarray(qh)))}
    params = {k: params[k] for k in params0}
    return DEMResult(params, Cp, Ch, np.asarray(F_hist), np.asarray(S_hist), states, converged)
