"""Generalised prediction errors, precisions and the Laplace free energy (SPEC sections 2-3).

Generalised predictions use the chain rule under local linearity,
``g~ = [g, g_x x' + g_v v', g_x x'' + g_v v'', ...]`` (likewise ``f~``), and the errors are
``eps_v~ = v~^(i-1) - g~^(i)`` (with ``v^(0) = y`` and the top causes compared with their prior
``eta~``) and ``eps_x~ = D x~ - f~``. The Gibbs energy is

    L(mu~) = 1/2 eps~' Pi~ eps~ - 1/2 ln|Pi~|,     Pi~ = kron(R(n, s), Pi),

and the Laplace free energy ``F = L + 1/2 ln|H|`` with ``H`` the (Gauss-Newton) curvature.

Everything here acts on one time bin. States ``x~`` are ``(n, n_x)`` arrays, causes ``v~``
``(d, n_v)`` arrays (orders ``d..n-1`` are zero), data ``y~`` ``(n, n_y)`` and the top prior
``eta~`` ``(d, n_top)``. The flat vector of expectations is ``u = [x~.ravel(), v~.ravel()]``
and of exogenous inputs ``w = [y~.ravel(), eta~.ravel()]``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .gencoords import generalised_map, temporal_precision
from .hdm import HDM, stack_levels

__all__ = ["Errors", "Curvature", "generalised_errors", "precisions", "laplace_terms",
           "gibbs_energy", "split_u", "split_w", "state_prior", "PRIOR_SMOOTHNESS"]

#: Smoothness (bins) of the temporal precision with which spm_LAP applies the fixed priors on
#: generalised states and causes (``spm_DEM_R(n, 2)``), whatever the model's own ``s``.
PRIOR_SMOOTHNESS = 2.0


class Errors(NamedTuple):
    """Generalised prediction errors of one time bin.

    Attributes
    ----------
    ev : (n, n_y + n_v) errors on the data and causes (``eps_v~``).
    ex : (n, n_x) errors on the motion of hidden states (``eps_x~``).
    gv : (n_y + n_v,) zeroth-order predictions of data and causes (``g`` of every level,
        then ``eta`` for the top causes).
    """

    ev: jax.Array
    ex: jax.Array
    gv: jax.Array


def split_u(model: HDM, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Flat expectations ``u`` -> ``(x~ (n, n_x), v~ (d, n_v))``."""
    nxu = model.n * model.n_x
    return u[:nxu].reshape(model.n, model.n_x), u[nxu:].reshape(model.d, model.n_v)


def split_w(model: HDM, w: jax.Array, n_y: int) -> tuple[jax.Array, jax.Array]:
    """Flat inputs ``w`` -> ``(y~ (n, n_y), eta~ (d, n_top))``."""
    nyw = model.n * n_y
    return w[:nyw].reshape(model.n, n_y), w[nyw:].reshape(model.d, model.n_top)


def _pad_orders(a: jax.Array, n: int) -> jax.Array:
    return jnp.concatenate([a, jnp.zeros((n - a.shape[0],) + a.shape[1:], a.dtype)], axis=0)


def _generalised(fn, theta, x, v, xs, vs):
    """``fn(., ., theta)`` on generalised ``(x, v)``, linearised at ``(xs, vs)``."""
    return generalised_map(lambda a, b: fn(a, b, theta), x, v, (xs, vs))


def generalised_errors(model: HDM, u: jax.Array, w: jax.Array, n_y: int,
                       expansion: jax.Array | None = None) -> Errors:
    """Generalised prediction errors, affine in ``(u, w)`` about an expansion point.

    Parameters
    ----------
    model : HDM
        A validated model.
    u, w : flat expectations and inputs (see the module docstring).
    n_y : int
        Number of data channels.
    expansion : flat ``u`` at which ``f`` and ``g`` are linearised (default ``u``). With the
        default the errors are exact at ``u``; holding it fixed makes them affine in ``u``, so
        that ``jax.jacfwd`` gives the local-linearity Jacobian ``J = dE/du`` (SPEC 3).
    """
    n = model.n
    xt, vt = split_u(model, u)
    yt, et = split_w(model, w, n_y)
    xe, ve = split_u(model, u if expansion is None else expansion)
    vt_full = _pad_orders(vt, n)
    sx, sv = stack_levels(model.levels)
    preds, targets, fx = [], [], []
    for i, lv in enumerate(model.levels):
        x_i, v_i = xt[:, sx[i]], vt_full[:, sv[i]]
        preds.append(_generalised(lv.g, lv.theta, x_i, v_i, xe[0, sx[i]], ve[0, sv[i]]))
        if lv.n_x:
            fx.append(_generalised(lv.f, lv.theta, x_i, v_i, xe[0, sx[i]], ve[0, sv[i]]))
        targets.append(yt if i == 0 else vt_full[:, sv[i - 1]])
    # the top causes are predicted by their prior
    top = vt_full[:, sv[-1]]
    preds.append(_pad_orders(et, n))
    targets.append(top)
    g_all = jnp.concatenate(preds, axis=1)
    ev = jnp.concatenate(targets, axis=1) - g_all
    if model.n_x:
        f_all = jnp.concatenate(fx, axis=1)
        Dx = jnp.concatenate([xt[1:], jnp.zeros_like(xt[:1])], axis=0)
        ex = Dx - f_all
    else:
        ex = jnp.zeros((n, 0), u.dtype)
    return Errors(ev=ev, ex=ex, gv=g_all[0])


def precisions(model: HDM, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Log-precisions of the data/cause errors and of the state errors at expectations ``u``.

    State-dependent log-precisions (``Level.log_pi_z_fn``) are evaluated at the zeroth order
    of that level's states and causes.
    """
    xt, vt = split_u(model, u)
    sx, sv = stack_levels(model.levels)
    lz = []
    for i, lv in enumerate(model.levels):
        if lv.log_pi_z_fn is None:
            lz.append(jnp.asarray(lv.log_pi_z, dtype=u.dtype))
        else:
            lz.append(jnp.asarray(lv.log_pi_z_fn(xt[0, sx[i]], vt[0, sv[i]], lv.theta), u.dtype))
    lz.append(jnp.asarray(model.log_pi_eta, dtype=u.dtype))
    lw = [jnp.asarray(lv.log_pi_w, dtype=u.dtype) for lv in model.levels]
    return jnp.concatenate(lz), jnp.concatenate(lw) if lw else jnp.zeros(0)


def state_dependent(model: HDM) -> bool:
    """Whether any precision depends on the expectations."""
    return any(lv.log_pi_z_fn is not None for lv in model.levels)


def state_prior(model: HDM) -> jax.Array | None:
    """Prior precision ``Pu`` of the flat expectations ``u`` (``None`` when no level has one).

    ``Pu = blockdiag(kron(R(n, 2), diag(pi_x)), kron(R(d, 2), diag(pi_v)))`` with
    ``pi = exp(Level.log_pi_x)``, ``exp(Level.log_pi_v)`` (0 for levels without a prior): the
    fixed priors of spm_LAP (``M(i).xP``, ``M(i).vP``) about zero.
    """
    if all(lv.log_pi_x is None and lv.log_pi_v is None for lv in model.levels):
        return None

    def pis(field, size):
        return jnp.concatenate([jnp.zeros(getattr(lv, size)) if getattr(lv, field) is None
                                else jnp.exp(jnp.asarray(getattr(lv, field), float))
                                for lv in model.levels])

    px, pv = pis("log_pi_x", "n_x"), pis("log_pi_v", "n_v")
    Px = jnp.kron(temporal_precision(model.n, PRIOR_SMOOTHNESS), jnp.diag(px))
    Pv = jnp.kron(temporal_precision(model.d, PRIOR_SMOOTHNESS), jnp.diag(pv))
    return jax.scipy.linalg.block_diag(Px, Pv)


def _weigh(R, log_p, e):
    """``kron(R, diag(exp(log_p))) @ e.ravel()`` for an order-major ``(n, k)`` array ``e``."""
    return (R @ e) * jnp.exp(log_p)[None, :]


def _zero_top_order(ex: jax.Array) -> jax.Array:
    return ex.at[-1].set(0.0)


class Curvature(NamedTuple):
    """Everything the recognition dynamics need at one time bin.

    Attributes
    ----------
    errors : the exact errors at ``u``.
    grad : dL/du (SPM convention: the top order of state motion is zeroed in the error).
    H : the curvature in the flow's Jacobian: ``J' Pi J`` plus the state priors ``Pu``; with
        state-dependent precision, plus the Gauss-Newton precision terms under
        ``precision_curvature="gauss-newton"`` (the exact Jacobian of ``grad`` with
        ``exact_curvature``).
    K : Jacobian of ``grad`` with respect to the inputs ``w`` (coupling to data and prior).
    H_gn : Gauss-Newton curvature ``J' Pi J`` (conditional precision of ``u``), plus the
        state priors ``Pu`` and, with state-dependent precision under
        ``precision_curvature="gauss-newton"``, the expected curvature ``n/2 Lam' Lam`` of
        the log-precisions (``Lam = d log_pi / du``).
    L : Gibbs energy ``1/2 E' Pi E - 1/2 ln|Pi|`` (full errors, no constants).
    log_pi_v, log_pi_x : log-precisions in force.
    J : ``dE/du``, rows ordered as ``[ev.ravel(), ex.ravel()]``.
    """

    errors: Errors
    grad: jax.Array
    H: jax.Array
    K: jax.Array
    H_gn: jax.Array
    L: jax.Array
    log_pi_v: jax.Array
    log_pi_x: jax.Array
    J: jax.Array


def gibbs_energy(model: HDM, u: jax.Array, w: jax.Array, n_y: int,
                 zero_top_order: bool = False) -> jax.Array:
    """Gibbs energy ``L = 1/2 eps~' Pi~ eps~ - 1/2 ln|Pi~|`` (without the ``2 pi`` constant),
    plus ``1/2 u' Pu u`` for fixed priors on the states (:func:`state_prior`; their
    log-determinant, a constant, is left out).

    Parameters
    ----------
    zero_top_order : bool
        Zero the error on the highest order of state motion (SPM's convention in the
        recognition dynamics).
    """
    R = temporal_precision(model.n, model.s)
    err = generalised_errors(model, u, w, n_y)
    lv, lx = precisions(model, u)
    ex = _zero_top_order(err.ex) if zero_top_order else err.ex
    quad = jnp.sum(err.ev * _weigh(R, lv, err.ev)) + jnp.sum(ex * _weigh(R, lx, ex))
    logdet = (lv.size + lx.size) * jnp.linalg.slogdet(R)[1] + model.n * (jnp.sum(lv) + jnp.sum(lx))
    Pu = state_prior(model)
    if Pu is not None:
        quad = quad + u @ Pu @ u
    return 0.5 * quad - 0.5 * logdet


def laplace_terms(model: HDM, u: jax.Array, w: jax.Array, n_y: int,
                  spm_top_order: bool = True, exact_curvature: bool = False) -> Curvature:
    """Gradient, curvature and couplings of the Gibbs energy at ``u`` (one time bin).

    The errors are linearised about ``u`` (local linearity, SPEC 3): ``J = dE/du`` holds the
    Jacobians of ``f`` and ``g`` at the zeroth order, Kronecker-expanded over orders. Fixed
    priors on the states (:func:`state_prior`) add ``Pu u`` to the gradient and ``Pu`` to the
    curvatures, as in spm_LAP.

    With state-dependent precision the gradient is exact: besides ``J' Pi E`` it holds
    ``1/2 E' dPi/du E - n/2 sum_c dp_c/du`` (the precision's own terms, spm_LAP's
    ``dSdu E / 2 - dDdu / 2``; spm_LAP's mean-field term ``dHdu`` is zero, its loop disabled).
    The curvature follows :attr:`cpsych.HDM.precision_curvature`.

    Parameters
    ----------
    spm_top_order : bool
        SPM's convention: zero the error on the highest order of state motion in the gradient
        (its rows stay in ``J``). With ``False`` the gradient is exactly ``dL/du`` of
        :func:`gibbs_energy`.
    exact_curvature : bool
        With state-dependent precision, return the exact Jacobian of the gradient as ``H``
        (and the exact coupling ``K``), whatever ``model.precision_curvature`` says; it is
        indefinite, so the recognition dynamics may be unstable under local linearisation.
    """
    R = temporal_precision(model.n, model.s)
    def e_lin(uu, ww):
        err = generalised_errors(model, uu, ww, n_y, expansion=u)
        return jnp.concatenate([err.ev.ravel(), err.ex.ravel()])

    err = generalised_errors(model, u, w, n_y)
    Ju, Jw = jax.jacfwd(e_lin, argnums=(0, 1))(u, w)
    lv, lx = precisions(model, u)
    nev = err.ev.size
    shape_v, shape_x = err.ev.shape, err.ex.shape

    def weigh(E, log_v, log_x):
        """Pi~ applied to a flat error vector (or to each column of a matrix)."""
        def one(e):
            a = _weigh(R, log_v, e[:nev].reshape(shape_v)).ravel()
            b = _weigh(R, log_x, e[nev:].reshape(shape_x)).ravel()
            return jnp.concatenate([a, b])
        return one(E) if E.ndim == 1 else jax.vmap(one, in_axes=1, out_axes=1)(E)

    E = jnp.concatenate([err.ev.ravel(), err.ex.ravel()])
    ex_g = _zero_top_order(err.ex) if spm_top_order else err.ex
    Ez = jnp.concatenate([err.ev.ravel(), ex_g.ravel()])
    PiJ = weigh(Ju, lv, lx)
    H_gn = Ju.T @ PiJ
    L = 0.5 * E @ weigh(E, lv, lx) - 0.5 * (
        (lv.size + lx.size) * jnp.linalg.slogdet(R)[1] + model.n * (jnp.sum(lv) + jnp.sum(lx)))
    if not state_dependent(model):
        grad = PiJ.T @ Ez
        K = PiJ.T @ Jw
        return _with_prior(model, u, Curvature(err, grad, H_gn, K, H_gn, L, lv, lx, Ju))

    def grad_fn(uu, ww):
        ez = Ez + Ju @ (uu - u) + Jw @ (ww - w)

        def l_pi(up, e):
            pv, px = precisions(model, up)
            logdet = model.n * (jnp.sum(pv) + jnp.sum(px))
            return 0.5 * e @ weigh(e, pv, px) - 0.5 * logdet

        pv, px = precisions(model, uu)
        return Ju.T @ weigh(ez, pv, px) + jax.grad(l_pi)(uu, ez)

    grad = grad_fn(u, w)
    if model.precision_curvature == "spm" and not exact_curvature:
        # spm_LAP: dL/duu = J' Pi J, dL/duy = J' Pi J_y; the conditional precision likewise
        K = PiJ.T @ Jw
        return _with_prior(model, u, Curvature(err, grad, H_gn, K, H_gn, L, lv, lx, Ju))
    K = jax.jacfwd(grad_fn, argnums=1)(u, w)
    Lam = jax.jacfwd(lambda uu: jnp.concatenate(precisions(model, uu)))(u)
    if exact_curvature:
        H = jax.jacfwd(grad_fn, argnums=0)(u, w)
    else:
        # The exact curvature is indefinite with state-dependent precision, and a negative
        # direction becomes a growing exponential under local linearisation. The flow's
        # Jacobian keeps the Gauss-Newton part of the precision terms instead,
        # sum_c 1/2 exp(p_c) (e_c' R e_c) dp_c/du dp_c/du' (positive semi-definite and smooth
        # in u; the gradient stays exact).
        ev_z, ex_z = Ez[:nev].reshape(shape_v), Ez[nev:].reshape(shape_x)
        quad = jnp.concatenate([jnp.sum(ev_z * (R @ ev_z), axis=0),
                                jnp.sum(ex_z * (R @ ex_z), axis=0)])
        weights = 0.5 * jnp.exp(jnp.concatenate([lv, lx])) * quad
        H = H_gn + (Lam.T * weights) @ Lam
    # Conditional precision: the expected (Fisher) curvature of the log-precisions, n/2 per
    # channel, so that states acting only through precision (attention) get a finite variance.
    H_gn = H_gn + 0.5 * model.n * Lam.T @ Lam
    return _with_prior(model, u, Curvature(err, grad, H, K, H_gn, L, lv, lx, Ju))


def _with_prior(model: HDM, u: jax.Array, c: Curvature) -> Curvature:
    """Add the fixed priors on the states: ``Pu u`` to the gradient, ``Pu`` to both curvatures
    and ``1/2 u' Pu u`` to the Gibbs energy."""
    Pu = state_prior(model)
    if Pu is None:
        return c
    Pu_u = Pu @ u
    return c._replace(grad=c.grad + Pu_u, H=c.H + Pu, H_gn=c.H_gn + Pu, L=c.L + 0.5 * u @ Pu_u)
