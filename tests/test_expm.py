"""The matrix exponential of the local-linearisation step (``cpsych.linearisation``).

Oracles: SciPy's ``expm`` (Pade, Al-Mohy & Higham) for values; central finite differences and
the gradient of ``jax.scipy.linalg.expm`` for derivatives; the stiff limit
``phi_1(Z) -> -Z^-1`` for very stiff flows; the Taylor backward-error series for ``THETA_16``.
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import pytest
import scipy.linalg as sl

import cpsych  # noqa: F401  (float64)
from cpsych import linearisation as lin
from cpsych.linearisation import MAX_SQUARINGS, THETA_16, expm, expm_multiply, phi_step

NORMS = [1e-3, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6]


def block_matrix(A, bs, dt):
    """``[[A dt, W], [0, S_p]]``, ``W = [b_p dt**p, ..., b_1 dt]`` (what phi_step exponentiates)."""
    p, m = bs.shape
    W = (bs * (dt ** np.arange(1, p + 1))[:, None])[::-1].T
    return np.block([[A * dt, W], [np.zeros((p, m)), np.eye(p, k=1)]])


def phi_scipy(A, bs, dt):
    A, bs = np.asarray(A), np.asarray(bs)
    return sl.expm(block_matrix(A, bs, dt))[: A.shape[0], -1]


def phi_jsl(A, bs, dt):
    """The previous engine: ``jax.scipy.linalg.expm`` of the whole block matrix."""
    p, m = bs.shape
    W = (bs * (dt ** jnp.arange(1, p + 1))[:, None])[::-1].T
    M = jnp.block([[A * dt, W], [jnp.zeros((p, m)), jnp.eye(p, k=1)]])
    return jsl.expm(M, max_squarings=40)[:m, -1]


def stable_flow(rng, m, norm):
    """A Jacobian like the filters': symmetric negative definite plus a rotation, 1-norm
    ``norm``."""
    G = rng.standard_normal((m, m))
    S = rng.standard_normal((m, m))
    A = -(G @ G.T / m + 0.05 * np.eye(m)) + 0.1 * (S - S.T)
    return A * norm / np.abs(A).sum(axis=0).max()


def rel_err(x, ref):
    return float(np.max(np.abs(np.asarray(x) - ref)) / np.max(np.abs(ref)))


def test_theta_16_from_the_backward_error_series():
    """``THETA_16`` is the largest ``t`` with ``sum_{k>16} |c_k| t**(k-1) <= 2**-53``, ``c_k`` the
    series of ``log(exp(-x) T_16(x)) = -int_0^x t**16 / 16! / T_16(t) dt`` (exact rationals)."""
    T = [Fraction(1, math.factorial(k)) for k in range(17)]
    r = [Fraction(1)]  # series of 1 / T_16
    for n in range(1, 160):
        r.append(-sum(T[i] * r[n - i] for i in range(1, min(n, 16) + 1)))
    coef = [abs(float(rj / (math.factorial(16) * (17 + j)))) for j, rj in enumerate(r)]

    def rel_backward_error(t):  # h(t) / t
        return sum(c * t ** (16 + j) for j, c in enumerate(coef))

    lo, hi = 0.1, 5.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if rel_backward_error(mid) <= 2.0**-53 else (lo, mid)
    assert THETA_16 == pytest.approx(lo, rel=1e-12)


@pytest.mark.parametrize("norm", [1e-3, 1e-1, 1.0, 1e1, 1e2])
def test_expm_matches_scipy_on_random_matrices(norm):
    rng = np.random.default_rng(1)
    f = jax.jit(expm)
    for _ in range(4):
        G = rng.standard_normal((24, 24))
        G *= norm / np.abs(G).sum(axis=0).max()
        ref = sl.expm(G)
        # growing non-normal matrices: the squarings amplify rounding (measured 5e-14 at 1e2)
        assert rel_err(f(G), ref) < (1e-14 if norm <= 1 else 2e-13)


@pytest.mark.parametrize("norm", NORMS)
def test_phi_step_matches_scipy_on_stable_flows(norm):
    """Flows of 1-norm 1e-3..1e6 (17 states, 7 input orders, as in the convolution model),
    inputs of order one: SciPy's exponential of the whole block matrix is the oracle."""
    rng = np.random.default_rng(2)
    f = jax.jit(phi_step, static_argnums=2)
    for dt in (1.0, 0.25):
        A = stable_flow(rng, 17, norm)
        bs = rng.standard_normal((7, 17))
        err = rel_err(f(jnp.asarray(A), jnp.asarray(bs), dt), phi_scipy(A, bs, dt))
        assert err < 5e-14, (norm, dt, err)  # measured <= 6e-15


def phi_recurrence(A, bs, dt):
    """``sum_j phi_j(Z) b_j dt**j`` from ``phi_0 = expm(Z)`` (SciPy, ``Z = A dt`` alone) and
    ``phi_j = Z^-1 (phi_(j-1) - I / (j-1)!)``: accurate when ``Z`` is large and well
    conditioned."""
    Z = A * dt
    m = A.shape[0]
    P, out = sl.expm(Z), np.zeros(m)
    for j in range(1, bs.shape[0] + 1):
        P = np.linalg.solve(Z, P - np.eye(m) / math.factorial(j - 1))
        out += P @ bs[j - 1] * dt**j
    return out


@pytest.mark.parametrize("norm", [1e2, 1e3, 1e4, 1e5, 1e6])
def test_phi_step_with_large_flows(norm):
    """Inputs as large as the flow (``|b| ~ |A|``, e.g. far from equilibrium): the input block is
    balanced before exponentiating. Exponentiating the unbalanced block matrix (SciPy, or the
    previous engine) is off by up to 7e-10 at 1e6 (measured); the oracle is the ``phi_j``
    recurrence."""
    rng = np.random.default_rng(2)
    f = jax.jit(phi_step, static_argnums=2)
    for dt in (1.0, 0.25):
        A = stable_flow(rng, 17, norm)
        bs = rng.standard_normal((7, 17)) * norm
        err = rel_err(f(jnp.asarray(A), jnp.asarray(bs), dt), phi_recurrence(A, bs, dt))
        assert err < 5e-14, (norm, dt, err)  # measured <= 5e-15


def test_expm_multiply_is_the_product():
    rng = np.random.default_rng(3)
    for norm in (1e-2, 3.0, 1e3):
        M = stable_flow(rng, 20, norm)
        v = rng.standard_normal(20)
        ref = sl.expm(M) @ v
        assert rel_err(expm_multiply(M, v), ref) < 1e-13


def test_phi_step_gradient_matches_finite_differences_and_jsl():
    rng = np.random.default_rng(4)
    A = jnp.asarray(stable_flow(rng, 9, 30.0))
    bs = jnp.asarray(rng.standard_normal((4, 9)))
    c = jnp.asarray(rng.standard_normal(9))

    def loss(phi):
        return lambda A, bs: jnp.sum(jnp.sin(phi(A, bs, 0.5) * c))

    g_new = jax.grad(loss(phi_step), argnums=(0, 1))(A, bs)
    g_jsl = jax.grad(loss(phi_jsl), argnums=(0, 1))(A, bs)
    for a, b in zip(g_new, g_jsl):
        assert rel_err(a, np.asarray(b)) < 1e-12
    # central differences along random directions
    f = jax.jit(loss(phi_step))
    for _ in range(3):
        dA = jnp.asarray(rng.standard_normal(A.shape))
        db = jnp.asarray(rng.standard_normal(bs.shape))
        h = 1e-5
        fd = (f(A + h * dA, bs + h * db) - f(A - h * dA, bs - h * db)) / (2 * h)
        ad = jnp.sum(g_new[0] * dA) + jnp.sum(g_new[1] * db)
        assert float(abs(fd - ad)) < 1e-8 * max(1.0, float(abs(ad)))


def test_forward_mode_and_hessian_match_jsl():
    """The simulators are differentiated with ``jacfwd`` and ``hessian`` as well as ``grad``."""
    rng = np.random.default_rng(5)
    A = jnp.asarray(stable_flow(rng, 5, 8.0))
    bs = jnp.asarray(rng.standard_normal((3, 5)))

    def loss(phi):
        return lambda A: jnp.sum(jnp.cos(phi(A, bs, 1.0)))

    np.testing.assert_allclose(jax.jacfwd(loss(phi_step))(A), jax.jacfwd(loss(phi_jsl))(A),
                               rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(jax.hessian(loss(phi_step))(A), jax.hessian(loss(phi_jsl))(A),
                               rtol=1e-10, atol=1e-12)


def test_gradient_through_a_scan_of_stiff_steps():
    """A stiff linear system integrated over 20 steps in ``lax.scan``: gradient of the end state
    with respect to the Jacobian's scale, against finite differences and ``jsl.expm``."""
    rng = np.random.default_rng(6)
    A0 = jnp.asarray(stable_flow(rng, 6, 1.0))
    B = jnp.asarray(rng.standard_normal((6, 2)))
    u = jnp.asarray(rng.standard_normal((20, 2, 2)))  # inputs and their first derivative

    def run(phi, log_k):
        A = A0 * jnp.exp(log_k)

        def body(x, w):
            bs = jnp.stack([A @ x + B @ w[0], B @ w[1]])
            return x + phi(A, bs, 1.0), x

        return jnp.sum(jax.lax.scan(body, jnp.ones(6), u)[1] ** 2)

    for log_k in (0.0, 8.0):  # 1-norms 1 and ~3e3
        g = jax.grad(lambda k: run(phi_step, k))(log_k)
        g_ref = jax.grad(lambda k: run(phi_jsl, k))(log_k)
        f = jax.jit(lambda k: run(phi_step, k))
        h = 1e-6
        fd = (f(log_k + h) - f(log_k - h)) / (2 * h)
        assert float(abs(g - g_ref)) < 1e-10 * float(abs(g_ref))
        assert float(abs(g - fd)) < 1e-6 * float(abs(g_ref))


@pytest.fixture
def previous_engine(monkeypatch):
    """Every cpsych module that imported ``phi_step`` gets the ``jax.scipy.linalg.expm`` one."""
    def use():
        for name, mod in list(sys.modules.items()):
            if name.startswith("cpsych") and getattr(mod, "phi_step", None) is lin.phi_step:
                monkeypatch.setattr(mod, "phi_step", phi_jsl)
    return use


@pytest.mark.slow
def test_gradient_through_an_inversion(previous_engine):
    """``jax.grad`` of a whole generalised-filtering inversion (the convolution model on 8 bins of
    SPM's data) with respect to the data: finite differences and the previous engine."""
    from cpsych import filtering
    from cpsych.experiments.convolution import load_reference
    from cpsych.models import convolution

    model = convolution.model().validate()
    y = jnp.asarray(load_reference()["Y"])[:, :8]
    eta = jnp.zeros(1)

    def loss(yy):
        out = filtering.run(model, yy, eta)
        return jnp.sum(out.x ** 2) + jnp.sum(out.v)

    g = jax.jit(jax.grad(loss))(y)
    f = jax.jit(loss)
    d = jnp.asarray(np.random.default_rng(7).standard_normal(y.shape))
    h = 1e-5
    fd = (f(y + h * d) - f(y - h * d)) / (2 * h)
    ad = jnp.sum(g * d)
    assert float(abs(fd - ad)) < 1e-6 * float(abs(ad))
    previous_engine()
    g_ref = jax.jit(jax.grad(loss))(y)
    assert rel_err(g, np.asarray(g_ref)) < 1e-9


def test_vmap_equals_loop_across_norms():
    """Each matrix keeps its own squarings under vmap: a batch mixing 1-norms 1e-3..1e6 gives
    what one-at-a-time calls give (and their gradients too)."""
    rng = np.random.default_rng(8)
    A = jnp.asarray(np.stack([stable_flow(rng, 10, n) for n in NORMS]))
    bs = jnp.asarray(rng.standard_normal((len(NORMS), 3, 10)))
    batched = jax.jit(jax.vmap(lambda a, b: phi_step(a, b, 1.0)))(A, bs)
    single = jax.jit(lambda a, b: phi_step(a, b, 1.0))
    loop = jnp.stack([single(a, b) for a, b in zip(A, bs)])
    np.testing.assert_allclose(batched, loop, rtol=1e-14, atol=0)

    def loss(a, b):
        return jnp.sum(phi_step(a, b, 1.0) ** 2)

    gb = jax.jit(jax.vmap(jax.grad(loss)))(A, bs)
    gl = jnp.stack([jax.jit(jax.grad(loss))(a, b) for a, b in zip(A, bs)])
    np.testing.assert_allclose(gb, gl, rtol=1e-12, atol=0)


def test_vmap_keeps_the_squaring_loop_conditional():
    """Under vmap the squarings stop at the batch's largest count (a conditional on a shared
    bound), rather than every allowed squaring computed and selected."""
    A = jnp.zeros((4, 6, 6))
    bs = jnp.zeros((4, 2, 6))
    hlo = jax.jit(jax.vmap(lambda a, b: phi_step(a, b, 1.0))).lower(A, bs).as_text()
    assert "stablehlo.case" in hlo


@pytest.mark.parametrize("norm", [1e6, 1e9, 1e12])
def test_stiff_flows_stay_finite_and_reach_the_stiff_limit(norm):
    """With every eigenvalue of ``A dt`` below -700, ``exp(A dt)`` underflows and
    ``phi_1(A dt) q dt = -A^-1 q`` and ``phi_2(A dt) b dt**2 = -(A^-1 dt + A^-2) b``."""
    rng = np.random.default_rng(9)
    G = rng.standard_normal((12, 12))
    H = G @ G.T + 12 * np.eye(12)
    A = -H * norm / np.abs(H).sum(axis=0).max()
    assert np.linalg.eigvalsh(-A).min() > 700
    q, b = rng.standard_normal(12), rng.standard_normal(12)
    Ai = np.linalg.inv(A)
    for dt in (1.0, 0.5):
        got = np.asarray(phi_step(jnp.asarray(A), jnp.asarray(np.stack([q, b])), dt))
        ref = -Ai @ q - (Ai * dt + Ai @ Ai) @ b
        assert np.all(np.isfinite(got))
        assert rel_err(got, ref) < 1e-12


def test_too_stiff_or_non_finite_gives_nan():
    """A step needing more than MAX_SQUARINGS squarings, or non-finite input, is NaN (reported
    as a divergence), never a silently wrong number."""
    limit = THETA_16 * 2.0**MAX_SQUARINGS
    A = -jnp.eye(3) * limit * 4.0
    bs = jnp.ones((1, 3))
    assert np.all(np.isnan(phi_step(A, bs, 1.0)))
    assert np.all(np.isnan(expm(A)))
    A_ok = -jnp.eye(3) * limit * 0.9
    assert np.all(np.isfinite(phi_step(A_ok, bs, 1.0)))
    # in a batch, only the member that is too stiff is NaN
    out = jax.vmap(lambda a: phi_step(a, bs, 1.0))(jnp.stack([A, -jnp.eye(3)]))
    assert np.all(np.isnan(out[0])) and np.all(np.isfinite(out[1]))
    assert np.all(np.isnan(phi_step(A_ok.at[0, 1].set(jnp.nan), bs, 1.0)))
    assert not np.any(np.isfinite(phi_step(A_ok.at[0, 1].set(jnp.inf), bs, 1.0)))


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="M must be a square matrix"):
        expm(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="v must be a vector of length 3"):
        expm_multiply(jnp.eye(3), jnp.ones(2))
