"""Generalised coordinates of motion.

A variable ``x`` of dimension ``k`` is carried with its temporal derivatives up to order
``n - 1``, stacked order-major as an ``(n, k)`` array ``x~ = [x, x', ..., x^(n-1)]``
(SPEC section 1). This module holds the operators that act on such arrays: the derivative
(shift) operator ``D``, the temporal precision ``R(n, s)`` of smooth fluctuations, the Taylor
embedding of sampled series and the generation of smooth noise.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from . import validation as val

__all__ = [
    "shift_matrix",
    "derivative_operator",
    "temporal_covariance",
    "temporal_precision",
    "embedding_operator",
    "embed",
    "embed_series",
    "smooth_noise",
    "S_ZERO",
]

#: Smoothness used in place of ``s = 0`` (white fluctuations), as in the SPEC.
S_ZERO = math.exp(-8.0)


def shift_matrix(n: int, k: int = 1) -> np.ndarray:
    """``n x n`` matrix with ones on the ``k``-th super-diagonal (``k < 0``: sub-diagonal)."""
    return np.eye(n, k=k)


def derivative_operator(n: int, k: int) -> np.ndarray:
    """Derivative operator ``D = kron(S_n, I_k)`` on order-major generalised vectors.

    ``D @ x~.ravel()`` shifts ``x~`` up by one order and sets the last order to zero.
    """
    n, k = val.check_int(n, "n", minimum=1), val.check_int(k, "k", minimum=0)
    return np.kron(shift_matrix(n), np.eye(k))


def temporal_covariance(n: int, s: ArrayLike) -> jax.Array:
    """Covariance ``V`` of ``n`` generalised coordinates of a smooth Gaussian process.

    With autocorrelation ``rho(t) = exp(-t**2 / (4 s**2))``,
    ``V[i, j] = (-1)**i * rho^(i+j)(0)``; the odd derivatives of ``rho`` vanish at zero and
    ``rho^(2k)(0) = prod_{j<=k} (1 - 2j) / (2 s**2)**k``.

    Parameters
    ----------
    n : int
        Number of generalised coordinates (orders ``0..n-1``), ``n >= 1``.
    s : float
        Smoothness: standard deviation of the Gaussian kernel in time bins. ``s = 0`` is
        replaced by :data:`S_ZERO`.
    """
    n = val.check_int(n, "n", minimum=1, fix="the number of generalised coordinates")
    val.check_scalar(s, "s", minimum=0.0, fix="smoothness in time bins (0: white noise)")
    s = jnp.asarray(s, dtype=float)
    s = jnp.where(s == 0, S_ZERO, s)
    # r[m] = rho^(m)(0) for m = 0..2n-2; odd entries are zero.
    m = np.arange(2 * n - 1)
    k = m // 2
    # prod_{j=0..k} (1 - 2j) = (-1)^k (2k-1)!!
    dfact = np.array([np.prod(np.arange(1, 2 * kk, 2), dtype=float) for kk in k])
    coeff = np.where(m % 2 == 0, (-1.0) ** k * dfact, 0.0)
    r = coeff * (2.0 * s**2) ** (-jnp.asarray(k, dtype=float))
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return ((-1.0) ** i) * r[i + j]


def temporal_precision(n: int, s: ArrayLike) -> jax.Array:
    """Temporal precision ``R = inv(V)`` of ``n`` generalised coordinates (SPEC section 1).

    A level with channel precisions ``Pi`` has generalised precision ``kron(R, Pi)``.

    Parameters
    ----------
    n : int
        Number of generalised coordinates (SPM's ``E.n + 1``).
    s : float
        Smoothness in time bins (``0`` means :data:`S_ZERO`).

    Returns
    -------
    jax.Array
        ``(n, n)`` symmetric positive-definite matrix.
    """
    return jnp.linalg.inv(temporal_covariance(n, s))


def embedding_operator(n: int, t: float, dt: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Sample indices and Taylor operator that embed a series at 0-based sample ``t``.

    The window holds ``n`` consecutive samples centred on ``t``; its offsets ``tau_i`` to
    ``t`` give the Taylor matrix ``T[i, j] = (tau_i dt)**j / j!`` and the operator is
    ``E = inv(T)``. Near the ends of a series the window is not moved: only the indices are
    clamped by the caller (edge samples repeated), the offsets stay those of the centred
    window.

    Returns
    -------
    idx : ndarray of int, shape (n,)
        Unclamped 0-based sample indices of the window.
    E : ndarray, shape (n, n)
        ``E[j, i]`` weights sample ``idx[i]`` in the ``j``-th derivative.
    """
    if n < 1:
        raise ValueError(f"n: embedding order must be >= 1, got {n}")
    one_based = t + 1.0
    first = int(np.fix(one_based - (n + 1) / 2.0)) + 1  # 1-based index of the first sample
    idx1 = np.arange(n) + first
    tau = (idx1 - one_based) * dt
    j = np.arange(n)
    fact = np.array([math.factorial(int(q)) for q in j], dtype=float)
    T = tau[:, None] ** j[None, :] / fact[None, :]
    return idx1 - 1, np.linalg.inv(T)


def embed(
    y: ArrayLike, n: int, t: float, dt: float = 1.0, delays: ArrayLike | None = None
) -> jax.Array:
    """Generalised (Taylor) embedding of a sampled series at one time.

    Parameters
    ----------
    y : array, shape (k, T)
        Series of ``k`` channels sampled every ``dt``.
    n : int
        Number of generalised coordinates to return.
    t : float
        0-based sample index (fractional allowed).
    dt : float
        Sampling interval; derivatives are per unit time.
    delays : array of shape (k,), optional
        Per-channel delays in samples: channel ``c`` is embedded at ``t - delays[c]``.

    Returns
    -------
    jax.Array, shape (n, k)
        Row ``j`` is the ``j``-th temporal derivative of every channel.
    """
    y = jnp.asarray(val.check_array(y, "y", ndim=2, fix="a (channels, time) array"))
    k, T = y.shape
    n = val.check_int(n, "n", minimum=1, fix="the number of generalised coordinates")
    dt = val.check_scalar(dt, "dt", minimum=0.0, strict_min=True, fix="the sampling interval")
    t = val.check_scalar(t, "t", minimum=0.0, maximum=T - 1.0,
                         fix=f"a 0-based sample index inside the series (0..{T - 1})")
    delays = np.zeros(k) if delays is None else delays
    delays = val.check_array(delays, "delays", shape=(k,), fix="one delay (in samples) per channel")
    cols = []
    for c in range(k):
        idx, E = embedding_operator(n, float(t) - delays[c], dt)
        idx = np.clip(idx, 0, T - 1)
        cols.append(jnp.asarray(E) @ y[c, idx])
    return jnp.stack(cols, axis=1)


def embed_series(y: ArrayLike, n: int, dt: float = 1.0) -> jax.Array:
    """Embed every sample of a series: returns ``(T, n, k)`` generalised data.

    Equal to ``embed(y, n, t, dt)`` at every ``t = 0..T-1``, done as one gather and one
    batched matrix product. The window's offsets to ``t`` take at most two values: SPM rounds
    the first sample of the window towards zero (``fix``), so for even ``n`` the first
    ``n / 2`` samples have a window one sample later than all the others.
    """
    y = jnp.asarray(val.check_array(y, "y", ndim=2, fix="a (channels, time) array"))
    k, T = y.shape
    n = val.check_int(n, "n", minimum=1, fix="the number of generalised coordinates")
    dt = val.check_scalar(dt, "dt", minimum=0.0, strict_min=True, fix="the sampling interval")
    # the window (and so the Taylor operator) depends on t only through its offsets to t
    ops: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    which = np.empty(T, dtype=int)
    for t in range(min(T, n + 1)):
        idx, E = embedding_operator(n, float(t), dt)
        which[t] = int(idx[0]) - t
        ops.setdefault(which[t], (idx - t, E))
    if T > n + 1:
        which[n + 1:] = which[n]  # fix() and floor() agree from here on
    keys = sorted(ops)
    sel = np.searchsorted(keys, which)  # (T,) operator of each sample
    offsets = np.stack([ops[q][0] for q in keys])  # (n_ops, n)
    Es = jnp.asarray(np.stack([ops[q][1] for q in keys]))  # (n_ops, n, n)
    idx = np.clip(np.arange(T)[:, None] + offsets[sel], 0, T - 1)  # (T, n)
    window = y[:, idx]  # (k, T, n)
    return jnp.einsum("tji,kti->tjk", Es[sel], window)


def smooth_noise(key: jax.Array, shape: tuple[int, int], s: float, log_precision: ArrayLike = 0.0):
    """Smooth Gaussian noise with autocorrelation ``exp(-t**2 / (4 s**2))``.

    White noise is convolved with a Gaussian kernel of standard deviation ``s`` (bins),
    normalised so each sample has variance ``exp(-log_precision)``.

    Parameters
    ----------
    key : jax.Array
        PRNG key, or an integer seed.
    shape : (k, T)
        Channels and time bins.
    s : float
        Smoothness in bins (``0`` gives white noise).
    log_precision : float or array of shape (k,)
        Log-precision of each channel.
    """
    key = val.as_key(key, default=None)
    if not isinstance(shape, tuple | list) or len(shape) != 2:
        raise ValueError(f"shape: expected (channels, time bins), got {val.fmt(shape)}")
    k = val.check_int(shape[0], "shape[0] (channels)", minimum=0)
    T = val.check_int(shape[1], "shape[1] (time bins)", minimum=1)
    s = val.check_scalar(s, "s", minimum=0.0,
                         fix="smoothness in bins must be concrete (0 gives white noise)")
    if not val.is_traced(log_precision):
        val.check_array(log_precision, "log_precision", ndim=(0, 1))
        if np.ndim(log_precision) == 1:
            val.check_array(log_precision, "log_precision", shape=(k,),
                            fix="a scalar or one log-precision per channel")
    sd = jnp.exp(-0.5 * jnp.asarray(log_precision, dtype=float)) * jnp.ones(k)
    if s <= 0:
        return sd[:, None] * jax.random.normal(key, (k, T))
    half = int(np.ceil(4 * s)) + 1
    lags = np.arange(-half, half + 1)
    kern = np.exp(-(lags**2) / (2.0 * s**2))
    kern = kern / np.sqrt(np.sum(kern**2))
    white = jax.random.normal(key, (k, T + 2 * half))
    smooth = jax.vmap(lambda w: jnp.convolve(w, jnp.asarray(kern), mode="valid"))(white)
    return sd[:, None] * smooth


def generalised_map(fn, x: jax.Array, v: jax.Array, at: tuple[jax.Array, jax.Array]
                    ) -> jax.Array:
    """Generalised output of ``fn(x, v)`` under local linearity about ``at = (x*, v*)``.

    ``[fn(x*, v*) + J (x - x*, v - v*), J (x', v'), J (x'', v''), ...]`` with ``J`` the
    Jacobian of ``fn`` at ``(x*, v*)``: the chain rule for the motion of a function of
    generalised variables (SPEC 2). ``x`` and ``v`` are ``(orders, k)`` arrays with the same
    number of orders.
    """
    xs, vs = at
    val, lin = jax.linearize(lambda a, b: jnp.asarray(fn(a, b), dtype=x.dtype), xs, vs)
    out = jax.vmap(lin)(x.at[0].add(-xs), v.at[0].add(-vs))
    return out.at[0].add(val)
