"""Generalised filtering versus Kalman filtering (SPEC 5.2; Friston et al. 2010, "Generalised
filtering").

Model
-----
Eight hidden states diffuse along a chain and are observed through four smooth spatial modes::

    dx/dt = A x + w,    y = g(x) + z,    g(x) = C x   (linear)  or  tanh(C x)  (nonlinear)

``A`` is tri-diagonal (-2 on the diagonal, 1 on either side: a discrete Laplacian with
absorbing ends, eigenvalues in (-4, 0)) and ``C`` holds the first four orthonormal DCT-II
basis vectors of length 8 as rows (``C C' = I``). Fluctuations ``z`` and ``w`` are smooth
(Gaussian autocorrelation, ``s = 1`` bin) with log-precisions 4 on ``z`` and 2 on ``w``. There
are no causes (``n_v = 0``); series are 128 bins of ``dt = 1`` starting from ``x = 0``.

Generalised filtering uses this model as its generative model (:func:`model`) and inverts it
with :func:`cpsych.invert`.

Kalman filter
-------------
The comparison filter works on the exact discretisation of the same system over one bin::

    x_{t+1} = F x_t + q_t,    F = expm(A dt),    y_t = g(x_t) + r_t,

with ``q_t`` and ``r_t`` treated as white, ``Cov(r_t) = R = exp(-4) I`` and ``Cov(q_t) = Q``
the covariance of the one-bin state innovation that :func:`cpsych.generate` actually produces
(:func:`state_noise_covariance`). The generator embeds the sampled fluctuation ``w`` in ``n``
generalised coordinates at each bin (a local Taylor fit over ``n`` neighbouring samples) and
integrates by local linearisation, so that exactly::

    q_t = sum_{k=0..n-1} phi_{k+1}(A dt) w^(k)_t dt**(k+1),
    phi_j(Z) = int_0^1 expm(Z (1 - u)) u**(j-1) / (j-1)! du.

With ``W`` the covariance of the ``n`` samples in the embedding window (from the sampled
autocorrelation of the generator's Gaussian kernel) and ``E`` the Taylor embedding operator,
the generalised fluctuation has covariance ``E W E' exp(-log_pi_w)`` and ``Q`` follows by
propagating it through the ``phi_j``. The Kalman filter thus knows the true one-step (marginal)
second-order statistics of both noises; what it cannot represent is their serial correlation,
which generalised filtering can exploit. For white fluctuations (``s = 0``)
and ``n = 1`` the generator *is* the discrete linear-Gaussian model with
``Q = phi_1(A) phi_1(A)' exp(-log_pi_w)``, which is the fair ground for the Kalman filter
(:func:`simulate`, ``white=True``).

For ``g = tanh(C x)`` the filter is the extended Kalman filter (measurement linearised at the
predicted mean, ``G = diag(1 - tanh(C m)**2) C``); the dynamics are linear, so the
Rauch-Tung-Striebel smoother is the same for both.

Comparison
----------
Accuracy is the mean squared error of the state estimates over bins and states
(:func:`compare`). Note what each estimate has seen: the generalised-filtering expectation
reported at bin ``t`` is the one held before the update at ``t``, but that update's
predecessor embedded a window of ``n`` samples reaching ``floor(n / 2) - 1`` bins beyond ``t``
(2 bins for ``n = 6``). It is therefore a short fixed-lag smoother rather than a causal filter;
the Kalman filter (``E[x_t | y_0..y_t]``), the fixed-lag Kalman smoother with the same lag
(:func:`fixed_lag_smoother`) and the full smoother (``E[x_t | y_0..y_{T-1}]``) bracket it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import xarray as xr

import cpsych
from cpsych import HDM, Level
from cpsych.gencoords import S_ZERO, embedding_operator
from cpsych.linearisation import phi_step
from cpsych.models.convolution import dct_matrix

__all__ = [
    "A",
    "C",
    "N_BINS",
    "KalmanResult",
    "compare",
    "discrete_system",
    "fixed_lag_smoother",
    "kalman_filter",
    "model",
    "mse",
    "rts_smoother",
    "simulate",
    "spm_demo_model",
    "state_noise_covariance",
]

#: Tri-diagonal dynamics: -2 on the diagonal, 1 on either side (8 states).
A: np.ndarray = -2.0 * np.eye(8) + np.eye(8, k=1) + np.eye(8, k=-1)
#: First four orthonormal DCT-II basis vectors of length 8, as rows (4 x 8).
C: np.ndarray = dct_matrix(8, 4).T
#: Length of the series in the benchmark.
N_BINS: int = 128


def _f(x: jax.Array, v: jax.Array, th: dict) -> jax.Array:
    return th["A"] @ x


def _g_linear(x: jax.Array, v: jax.Array, th: dict) -> jax.Array:
    return th["C"] @ x


def _g_tanh(x: jax.Array, v: jax.Array, th: dict) -> jax.Array:
    return jnp.tanh(th["C"] @ x)


def model(nonlinear: bool = False, s: float = 1.0, n: int = 6, log_pi_z: float = 4.0,
          log_pi_w: float = 2.0) -> HDM:
    """The benchmark model as an HDM (one level, 8 states, 4 outputs, no causes).

    Parameters
    ----------
    nonlinear : bool
        ``g = tanh(C x)`` instead of ``g = C x``.
    s : float
        Smoothness of the fluctuations in bins (``0`` for white noise).
    n : int
        Generalised coordinates of states and errors (embedding order).
    log_pi_z, log_pi_w : float
        Log-precisions of the observation and state fluctuations.

    Returns
    -------
    HDM
        Used both to generate data (:func:`simulate`) and to invert it (:func:`cpsych.invert`).
    """
    level = Level(
        g=_g_tanh if nonlinear else _g_linear, f=_f, n_x=8, n_v=0,
        theta={"A": A, "C": C}, log_pi_z=log_pi_z, log_pi_w=log_pi_w,
        x_names=tuple(f"x{k + 1}" for k in range(8)),
        out_names=tuple(f"y{k + 1}" for k in range(4)),
    )
    return HDM(levels=(level,), n=n, d=1, s=s)


def spm_demo_model(kappa: float = math.exp(-1.0)) -> HDM:
    """The model of SPM's ``DEM_demo_GF_and_KF`` (linear observer, first run).

    The same dynamics ``A`` but observed through ``spm_dctmtx(4, 8)``: the 8 cosines of
    length 4 as columns (a ``4 x 8`` matrix, not the orthonormal :data:`C`); log-precisions 4
    (observation) and 2 (states), ``n = 5`` coordinates (``E.n = 4``), ``s = 1`` bin and the
    rate of generalised descent ``kappa`` (``E.K = exp(-1)``).
    """
    level = Level(g=_g_linear, f=_f, n_x=8, n_v=0, theta={"A": A, "C": dct_matrix(4, 8)},
                  log_pi_z=4.0, log_pi_w=2.0)
    return HDM(levels=(level,), n=5, d=1, s=1.0, kappa=kappa)


def simulate(key: jax.Array, nonlinear: bool = False, s: float = 1.0, T: int = N_BINS,
             white: bool = False, n: int = 6) -> xr.Dataset:
    """Simulate one series with :func:`cpsych.generate`.

    Parameters
    ----------
    key : jax.Array
        PRNG key for the fluctuations.
    nonlinear : bool
        Observe through ``tanh(C x)``.
    s : float
        Smoothness of the fluctuations (ignored when ``white``).
    T : int
        Number of bins.
    white : bool
        Generate from the exact discrete linear-Gaussian model: white fluctuations
        (``s = 0``) and ``n = 1`` coordinate, so each bin adds ``q_t = phi_1(A) w_t`` with
        ``w_t`` independent over bins.
    n : int
        Embedding order of the generator (ignored when ``white``).

    Returns
    -------
    xarray.Dataset
        The output of :func:`cpsych.generate`: ``y``, ``x``, ``z``, ``w`` over ``time``.
    """
    m = model(nonlinear=nonlinear, s=0.0, n=1) if white else model(nonlinear, s=s, n=n)
    return cpsych.generate(m, np.zeros((0, T)), key)


def _phi_matrices(A_: np.ndarray, n: int, dt: float) -> list[np.ndarray]:
    """``[phi_1(A dt) dt, ..., phi_n(A dt) dt**n]`` from the engine's :func:`phi_step`.

    ``phi_step(A, bs, dt) = sum_j phi_j(A dt) bs[j-1] dt**j`` is linear in ``bs``, so column
    ``i`` of the ``j``-th matrix is ``phi_step`` with ``bs`` the unit vector ``e_i`` in row
    ``j - 1`` and zeros elsewhere (one call per column, vectorised).
    """
    k = A_.shape[0]
    basis = jnp.eye(n * k).reshape(n * k, n, k)  # basis[j * k + i] = e_i in row j
    cols = jax.vmap(lambda bs: phi_step(jnp.asarray(A_, float), bs, dt))(basis)
    cols = np.asarray(cols)  # row j * k + i: phi_{j+1}(A dt) dt**(j+1) e_i
    return [cols[j * k:(j + 1) * k].T for j in range(n)]


def _kernel_autocorrelation(s: float, lags: np.ndarray) -> np.ndarray:
    """Autocorrelation of :func:`cpsych.smooth_noise` at integer lags (its sampled kernel)."""
    if s <= 0:
        return (lags == 0).astype(float)
    half = int(np.ceil(4 * s)) + 1
    kl = np.arange(-half, half + 1)
    kern = np.exp(-(kl**2) / (2.0 * s**2))
    kern = kern / np.sqrt(np.sum(kern**2))
    full = np.correlate(kern, kern, mode="full")  # lags -2 half .. 2 half
    out = np.zeros(lags.shape)
    inside = np.abs(lags) <= 2 * half
    out[inside] = full[lags[inside] + 2 * half]
    return out


def state_noise_covariance(s: float = 1.0, n: int = 6, log_pi_w: float = 2.0,
                           dt: float = 1.0, A_: np.ndarray = A) -> np.ndarray:
    """Covariance ``Q`` of the one-bin state innovation ``x_{t+1} - expm(A dt) x_t``.

    Derived from how :func:`cpsych.generate` integrates ``dx/dt = A x + w`` (module docstring):
    ``q_t = sum_k phi_{k+1}(A dt) dt**(k+1) w^(k)_t`` with ``w~_t = E w[window]`` and the
    window's samples correlated as ``smooth_noise`` makes them. Exact away from the first and
    last ``n // 2`` bins (where the generator repeats edge samples).

    Parameters
    ----------
    s : float
        Smoothness of ``w`` in bins (``0``: white).
    n : int
        Embedding order the generator uses.
    log_pi_w : float
        Log-precision of each channel of ``w``.
    dt : float
        Time bin.
    A_ : ndarray
        State Jacobian (default the benchmark's ``A``).

    Returns
    -------
    ndarray, shape (n_x, n_x)
    """
    # an interior bin: SPM's window sits at t - 3 .. t + 2 there (n = 6) but at t - 2 .. t + 3
    # in the first bins, where fix() rounds the other way; the offsets set E
    idx, E = embedding_operator(n, float(n), dt)
    lags = idx[:, None] - idx[None, :]
    W = _kernel_autocorrelation(s if s > S_ZERO else 0.0, lags)
    Vg = E @ W @ E.T * math.exp(-log_pi_w)  # covariance of the generalised fluctuation
    phis = _phi_matrices(A_, n, dt)
    Q = sum(Vg[j, k] * phis[j] @ phis[k].T for j in range(n) for k in range(n))
    return 0.5 * (Q + Q.T)


def discrete_system(s: float = 1.0, n: int = 6, log_pi_z: float = 4.0, log_pi_w: float = 2.0,
                    white: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(F, Q, R)`` of the discretised benchmark for data from :func:`simulate`.

    ``white=True`` matches ``simulate(..., white=True)`` (``s = 0``, ``n = 1``).
    """
    F = np.asarray(jsl.expm(jnp.asarray(A)))
    if white:
        s, n = 0.0, 1
    Q = state_noise_covariance(s, n, log_pi_w)
    R = math.exp(-log_pi_z) * np.eye(C.shape[0])
    return F, Q, R


class KalmanResult(NamedTuple):
    """Means ``(T, k)`` and covariances ``(T, k, k)`` of a Kalman filter or smoother pass."""

    x_pred: np.ndarray  # E[x_t | y_0..y_{t-1}]
    P_pred: np.ndarray
    x_filt: np.ndarray  # E[x_t | y_0..y_t]
    P_filt: np.ndarray


def kalman_filter(y: np.ndarray, F: np.ndarray, Q: np.ndarray, R: np.ndarray,
                  nonlinear: bool = False, C_: np.ndarray = C, x0: np.ndarray | None = None,
                  P0: np.ndarray | None = None) -> KalmanResult:
    """(Extended) Kalman filter for ``x_{t+1} = F x_t + q_t``, ``y_t = h(C x_t) + r_t``.

    Parameters
    ----------
    y : ndarray, shape (T, n_y)
        Observations, one row per bin.
    F, Q : ndarray, shape (k, k)
        Transition matrix and state-innovation covariance.
    R : ndarray, shape (n_y, n_y)
        Observation-noise covariance.
    nonlinear : bool
        ``h = tanh`` (extended Kalman filter, linearised at the predicted mean) instead of
        the identity.
    C_ : ndarray, shape (n_y, k)
        Observation matrix.
    x0, P0 : ndarray, optional
        Prior mean and covariance of ``x_0`` (default zero mean and zero covariance: the
        generator starts exactly at ``x = 0``).

    Returns
    -------
    KalmanResult
        Predicted and filtered means and covariances at every bin.
    """
    y = np.asarray(y, float)
    T, k = y.shape[0], F.shape[0]
    m = np.zeros(k) if x0 is None else np.asarray(x0, float)
    P = np.zeros((k, k)) if P0 is None else np.asarray(P0, float)
    out = {key: [] for key in KalmanResult._fields}
    I_k = np.eye(k)
    for t in range(T):
        if t > 0:
            m = F @ m
            P = F @ P @ F.T + Q
        out["x_pred"].append(m)
        out["P_pred"].append(P)
        eta = C_ @ m
        if nonlinear:
            h = np.tanh(eta)
            G = (1.0 - h**2)[:, None] * C_
        else:
            h, G = eta, C_
        S = G @ P @ G.T + R
        K = np.linalg.solve(S, G @ P).T  # P G' inv(S), S and P symmetric
        m = m + K @ (y[t] - h)
        IKG = I_k - K @ G
        P = IKG @ P @ IKG.T + K @ R @ K.T  # Joseph form
        out["x_filt"].append(m)
        out["P_filt"].append(P)
    return KalmanResult(*(np.asarray(out[key]) for key in KalmanResult._fields))


def rts_smoother(kf: KalmanResult, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rauch-Tung-Striebel smoother: ``E[x_t | y_0..y_{T-1}]`` and its covariance.

    ``G_t = P_t|t F' inv(P_t+1|t)``, ``m_t|T = m_t|t + G_t (m_t+1|T - m_t+1|t)``,
    ``P_t|T = P_t|t + G_t (P_t+1|T - P_t+1|t) G_t'``.
    """
    T = kf.x_filt.shape[0]
    xs = kf.x_filt.copy()
    Ps = kf.P_filt.copy()
    for t in range(T - 2, -1, -1):
        Gt = np.linalg.solve(kf.P_pred[t + 1], F @ kf.P_filt[t]).T
        xs[t] = kf.x_filt[t] + Gt @ (xs[t + 1] - kf.x_pred[t + 1])
        Ps[t] = kf.P_filt[t] + Gt @ (Ps[t + 1] - kf.P_pred[t + 1]) @ Gt.T
    return xs, Ps


def fixed_lag_smoother(kf: KalmanResult, F: np.ndarray, lag: int) -> np.ndarray:
    """``E[x_t | y_0..y_{t+lag}]``: the RTS recursion run back from bin ``t + lag`` to ``t``."""
    T = kf.x_filt.shape[0]
    out = np.empty_like(kf.x_filt)
    for t in range(T):
        end = min(T - 1, t + lag)
        m = kf.x_filt[end]
        for u in range(end - 1, t - 1, -1):
            Gu = np.linalg.solve(kf.P_pred[u + 1], F @ kf.P_filt[u]).T
            m = kf.x_filt[u] + Gu @ (m - kf.x_pred[u + 1])
        out[t] = m
    return out


def mse(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Mean squared error over bins and states."""
    return float(np.mean((np.asarray(estimate) - np.asarray(truth)) ** 2))


def compare(key: jax.Array, nonlinear: bool = False, white: bool = False, s_gf: float = 1.0,
            n_gf: int = 6) -> dict[str, float]:
    """Simulate one series and score generalised filtering against Kalman filtering.

    Data come from :func:`simulate` (smooth fluctuations, ``s = 1``, or the exact discrete
    white-noise model when ``white``). Generalised filtering inverts :func:`model` with
    smoothness ``s_gf`` and ``n_gf`` coordinates; the (extended) Kalman filter and RTS smoother
    use :func:`discrete_system` matched to the generator.

    Returns
    -------
    dict
        Mean squared error of the state estimates of ``"gf"`` (posterior expectation held at
        each bin), ``"kf"`` (filtered, ``E[x_t | y_0..y_t]``), ``"kf_pred"`` (one-step
        prediction), ``"kf_lag"`` (fixed-lag smoother with GF's look-ahead of
        ``floor(n_gf / 2) - 1`` bins), ``"rts"`` (smoothed) and ``"prior"`` (the zero
        estimate).
    """
    sim = simulate(key, nonlinear=nonlinear, white=white)
    x, y = sim["x"].values, sim["y"].values
    F, Q, R = discrete_system(white=white)
    kf = kalman_filter(y, F, Q, R, nonlinear=nonlinear)
    xs, _ = rts_smoother(kf, F)
    xl = fixed_lag_smoother(kf, F, max(n_gf // 2 - 1, 0))
    post = cpsych.invert(model(nonlinear=nonlinear, s=s_gf, n=n_gf), y.T)
    return {"gf": mse(post["x"].values, x), "kf": mse(kf.x_filt, x),
            "kf_pred": mse(kf.x_pred, x), "kf_lag": mse(xl, x), "rts": mse(xs, x),
            "prior": mse(0.0 * x, x)}
