"""Generalised filtering versus (extended) Kalman filtering and smoothing (SPEC 5.2).

Three kinds of check:

- the Kalman filter and smoother are right (closed-form Riccati solution, exact Gaussian
  conditional by dense linear algebra) and their noise covariance ``Q`` is the one the
  generator produces;
- fairness: on data from the exact discrete linear-Gaussian model (white noise) the Kalman
  filter matches or beats generalised filtering;
- the benchmark: on smooth (coloured, ``s = 1``) fluctuations generalised filtering has lower
  state error than the Kalman filter, linear and ``tanh`` observations, over 8 seeds. Its
  estimate at bin ``t`` has seen data up to ``t + 2`` (Taylor embedding, ``n = 6``, SPM's
  window ``t - 3 .. t + 2``), so the fixed-lag and full Kalman smoothers are the stricter
  comparison: GF comes within a few per cent of them but does not beat them.
"""

import jax
import numpy as np
import pytest
import scipy.linalg

import cpsych
from cpsych.models import gf_vs_kalman as gk

SEEDS = [jax.random.key(100 + k) for k in range(8)]


# ---------------------------------------------------------------- the Kalman filter itself
def test_kalman_matches_closed_form_riccati_on_a_scalar_model():
    f, q, c, r = 0.9, 0.3, 1.5, 0.5
    kf = gk.kalman_filter(np.zeros((200, 1)), np.array([[f]]), np.array([[q]]),
                          np.array([[r]]), C_=np.array([[c]]), P0=np.array([[1.0]]))
    # steady state of P = f^2 P r / (c^2 P + r) + q (predicted variance):
    # c^2 P^2 + (r (1 - f^2) - q c^2) P - q r = 0
    b = r * (1 - f**2) - q * c**2
    P = (-b + np.sqrt(b**2 + 4 * c**2 * q * r)) / (2 * c**2)
    K = P * c / (c**2 * P + r)
    assert abs(kf.P_pred[-1, 0, 0] - P) < 1e-12
    assert abs(kf.P_filt[-1, 0, 0] - (1 - K * c) * P) < 1e-12


def _dense_conditional(y, F, Q, R, C, m0, P0, upto):
    """E[x_0..x_{T-1} | y_0..y_upto] and its covariance, by one dense Gaussian conditional."""
    T, k = y.shape[0], F.shape[0]
    # x = L z with z = [x_0, q_0, ..., q_{T-2}]
    L = np.zeros((T * k, T * k))
    for t in range(T):
        L[t * k:(t + 1) * k, :k] = np.linalg.matrix_power(F, t)
        for s in range(t):
            L[t * k:(t + 1) * k, (s + 1) * k:(s + 2) * k] = np.linalg.matrix_power(F, t - 1 - s)
    Sz = scipy.linalg.block_diag(P0, *([Q] * (T - 1)))
    Sx = L @ Sz @ L.T
    mx = L[:, :k] @ m0
    n_obs = upto + 1
    H = np.kron(np.eye(T)[:n_obs], C)
    S = H @ Sx @ H.T + np.kron(np.eye(n_obs), R)
    G = np.linalg.solve(S, H @ Sx).T
    mean = mx + G @ (y[:n_obs].ravel() - H @ mx)
    cov = Sx - G @ H @ Sx
    return mean.reshape(T, k), cov


def test_kalman_filter_and_smoother_equal_the_exact_gaussian_conditional():
    F, Q, R = gk.discrete_system()
    rng = np.random.default_rng(0)
    T, k = 10, 8
    y = rng.normal(size=(T, 4))
    m0, P0 = rng.normal(size=k), 0.5 * np.eye(k)
    kf = gk.kalman_filter(y, F, Q, R, x0=m0, P0=P0)
    xs, Ps = gk.rts_smoother(kf, F)
    mean, cov = _dense_conditional(y, F, Q, R, gk.C, m0, P0, T - 1)
    np.testing.assert_allclose(xs, mean, atol=1e-10)
    for t in range(T):
        np.testing.assert_allclose(Ps[t], cov[t * k:(t + 1) * k, t * k:(t + 1) * k], atol=1e-10)
    lagged = gk.fixed_lag_smoother(kf, F, 2)
    np.testing.assert_allclose(gk.fixed_lag_smoother(kf, F, 0), kf.x_filt, atol=1e-14)
    for t in range(T):  # filtering: conditional on the data up to and including t
        mean_t, cov_t = _dense_conditional(y, F, Q, R, gk.C, m0, P0, t)
        np.testing.assert_allclose(kf.x_filt[t], mean_t[t], atol=1e-10)
        np.testing.assert_allclose(kf.P_filt[t], cov_t[t * k:(t + 1) * k, t * k:(t + 1) * k],
                                   atol=1e-10)
        mean_l, _ = _dense_conditional(y, F, Q, R, gk.C, m0, P0, min(t + 2, T - 1))
        np.testing.assert_allclose(lagged[t], mean_l[t], atol=1e-10)


def test_extended_kalman_filter_reduces_to_the_linear_filter_for_small_signals():
    F, Q, R = gk.discrete_system()
    scale = 1e-4  # tanh(u) = u + O(u^3): the EKF equals the KF on tiny data and noise
    y = scale * np.random.default_rng(1).normal(size=(20, 4))
    lin = gk.kalman_filter(y, F, Q * scale**2, R * scale**2)
    ekf = gk.kalman_filter(y, F, Q * scale**2, R * scale**2, nonlinear=True)
    np.testing.assert_allclose(ekf.x_filt, lin.x_filt, atol=1e-8 * scale, rtol=1e-6)


# ------------------------------------------------------- Q is the generator's innovation
def test_white_generator_is_the_exact_discrete_linear_gaussian_model():
    sim = gk.simulate(jax.random.key(5), white=True, T=64)
    x, w = sim["x"].values, sim["w"].values
    F = scipy.linalg.expm(gk.A)
    Phi1 = np.linalg.solve(gk.A, F - np.eye(8))  # int_0^1 expm(A u) du
    np.testing.assert_allclose(x[1:] - x[:-1] @ F.T, w[:-1] @ Phi1.T, atol=1e-12)
    _, Q, _ = gk.discrete_system(white=True)
    np.testing.assert_allclose(Q, np.exp(-2.0) * Phi1 @ Phi1.T, atol=1e-14)


def test_state_noise_covariance_is_that_of_the_generated_innovations():
    # The generator is linear in w: its innovation q_t = x_{t+1} - F x_t is a sum over lags
    # of M_j w_{t+j}. Measure M_j with unit impulses of w, then Cov(q) = sum M_i M_j' rho(i-j).
    T, t0, s = gk.N_BINS, 60, 1.0
    m = gk.model(s=s)
    F, Q, _ = gk.discrete_system(s=s)
    M = {}
    for c in range(8):
        w = np.zeros((8, T))
        w[c, t0] = 1.0
        x = cpsych.generate(m, np.zeros((0, T)), w=w, z=np.zeros((4, T)))["x"].values
        q = x[1:] - x[:-1] @ F.T
        for t in np.flatnonzero(np.any(np.abs(q) > 1e-12, axis=1)):
            M.setdefault(t0 - t, np.zeros((8, 8)))[:, c] = q[t]
    # the n = 6 samples of the embedding window at bin t: SPM centres an even window one
    # sample behind, t - 3 .. t + 2 (spm_DEM_embed), so w at t0 reaches q_t for t0 - t in -3..2
    assert sorted(M) == [-3, -2, -1, 0, 1, 2]
    # the sampled fluctuations have the autocorrelation rho(t) = exp(-t^2 / (4 s^2)) (SPEC 1)
    rho = np.exp(-np.arange(8) ** 2 / (4 * s**2))
    z = np.asarray(cpsych.smooth_noise(jax.random.key(7), (1, 400_000), s))[0]
    np.testing.assert_allclose([np.mean(z[: len(z) - j] * z[j:]) for j in range(8)], rho,
                               atol=0.01)
    Q_measured = np.exp(-2.0) * sum(M[i] @ M[j].T * rho[abs(i - j)] for i in M for j in M)
    assert np.linalg.norm(Q_measured - Q) / np.linalg.norm(Q) < 1e-3
    # ...and the innovations are serially correlated, which the Kalman filter ignores
    lag1 = sum(np.trace(M[i] @ M[j].T) * rho[abs(i + 1 - j)] for i in M for j in M)
    assert lag1 / np.trace(Q / np.exp(-2.0)) > 0.6


# -------------------------------------------------------------------------- the benchmark
def _scores(nonlinear, white, s_gf):
    rows = [gk.compare(key, nonlinear=nonlinear, white=white, s_gf=s_gf) for key in SEEDS]
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


@pytest.fixture(scope="module")
def coloured_linear():
    return _scores(False, False, 1.0)


@pytest.fixture(scope="module")
def coloured_tanh():
    return _scores(True, False, 1.0)


@pytest.mark.slow
def test_gf_beats_kalman_filter_on_coloured_noise(coloured_linear):
    r = coloured_linear
    # measured: GF 0.01523, KF 0.01546, lag-2 smoother 0.01487, RTS 0.01486, prior 0.226;
    # GF / KF per seed 0.944 .. 1.011, below 1 in 7 of 8
    assert r["gf"].mean() < 0.1 * r["prior"].mean()
    assert r["gf"].mean() < 0.995 * r["kf"].mean()
    assert np.sum(r["gf"] < r["kf"]) >= 6
    # GF's estimate at t has seen y up to t + 2 through its Taylor embedding: it comes within
    # 2.5 % of the Kalman smoothers with that look-ahead (and the full one), not below them
    assert r["gf"].mean() < 1.05 * r["kf_lag"].mean()
    assert r["gf"].mean() < 1.05 * r["rts"].mean()
    assert r["gf"].mean() > r["rts"].mean()  # the full smoother is the optimum here


@pytest.mark.slow
def test_gf_beats_extended_kalman_filter_and_smoother_on_coloured_noise(coloured_tanh):
    r = coloured_tanh
    # measured (mean over seeds): GF 0.0297, EKF 0.0326, lag-2 extended smoother 0.0295,
    # extended RTS 0.0294; GF / EKF per seed 0.78 .. 1.01, below 1 in 6 of 8
    assert r["gf"].mean() < 0.95 * r["kf"].mean()
    assert np.sum(r["gf"] < r["kf"]) >= 5
    # the extended smoothers are only approximate here; GF is within 1 % of them
    assert r["gf"].mean() < 1.03 * r["kf_lag"].mean()
    assert r["gf"].mean() < 1.03 * r["rts"].mean()


@pytest.mark.slow
@pytest.mark.parametrize("nonlinear", [False, True], ids=["linear", "tanh"])
def test_kalman_beats_gf_on_white_noise_discrete_model_data(nonlinear):
    # GF with its white-noise setting (s = 0, i.e. exp(-8) bins)
    r = _scores(nonlinear, True, 0.0)
    # measured: linear KF 0.0137 vs GF 0.0155; tanh EKF 0.0179 vs GF 0.0346
    assert r["kf"].mean() <= r["gf"].mean()
    assert np.sum(r["kf"] <= r["gf"]) >= 7
    assert r["rts"].mean() <= r["gf"].mean()


@pytest.mark.slow
def test_a_smoother_gf_setting_does_not_beat_the_kalman_smoother_on_white_data():
    # s = 1/2 is GF's best of s in {0, 1/2, 1} on these data (MSE 0.0147 at n = 6; the
    # Kalman filter 0.0137, the smoother 0.0133)
    r = _scores(False, True, 0.5)
    assert r["rts"].mean() <= r["gf"].mean()
