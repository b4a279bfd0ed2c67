"""Properties of the engine on random stable linear HDMs (hypothesis).

Models: one level with ``n_x`` = 1..3 hidden states and one cause, ``n_y`` = 1..3 channels::

    dx/dt = A x + B v + w,    y = C x + z,    v = eta + z2

with ``A = -P + S`` (``P`` symmetric positive definite, ``S`` skew-symmetric), so every
eigenvalue of ``A`` has real part ``<= -lambda_min(P) < 0``. Properties:

* ``generate`` then ``invert`` is finite;
* conditional covariances are symmetric positive definite at every bin;
* permuting the states permutes the posterior (and nothing else);
* rescaling the data's units together with ``g`` (and the sensory precision) leaves the states
  unchanged and rescales the predictions and prediction errors;
* a ``vmap``-ped batch of models equals its single runs.

The functions ``f`` and ``g`` are module-level and the matrices are parameters, so every
model of one shape shares one compilation. Deterministic (``derandomize=True``).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cpsych
from cpsych import HDM, Level, filtering

T = 24
SETTINGS = settings(deadline=None, max_examples=6, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
# (n_x, n_y): every size 1..3 of each, in three shapes (each shape compiles once)
SHAPES = [(1, 2), (2, 3), (3, 1)]
shapes = st.sampled_from(SHAPES)
seeds = st.integers(0, 2**16)


def _f(x, v, th):
    return th["A"] @ x + th["B"] @ v


def _g(x, v, th):
    return th["C"] @ x


def stable_matrices(n_x: int, n_y: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(n_x, n_x))
    P = M @ M.T / n_x + 0.3 * np.eye(n_x)
    K = rng.normal(size=(n_x, n_x))
    A = -P + 0.5 * (K - K.T)
    return {"A": A, "B": rng.normal(size=(n_x, 1)), "C": rng.normal(size=(n_y, n_x))}


def linear_hdm(theta: dict, log_pi_z: float = 6.0, x0=None) -> HDM:
    n_x = theta["A"].shape[0]
    lv = Level(g=_g, f=_f, n_x=n_x, n_v=1, theta=theta, log_pi_z=log_pi_z, log_pi_w=6.0,
               x0=x0)
    return HDM(levels=(lv,), eta=0.0, log_pi_eta=0.0, n=3, d=2, s=0.5)


def cause() -> np.ndarray:
    t = np.arange(T)
    return np.exp(-(((t - 8.0) / 3.0) ** 2))[None, :]


def data(model: HDM, seed: int) -> np.ndarray:
    return cpsych.generate(model, cause(), seed)["y"].values.T


@given(shape=shapes, seed=seeds)
@SETTINGS
def test_generate_then_invert_is_finite_with_spd_covariances(shape, seed):
    n_x, n_y = shape
    model = linear_hdm(stable_matrices(n_x, n_y, seed))
    assert np.all(np.real(np.linalg.eigvals(model.levels[0].theta["A"])) < 0)
    sim = cpsych.generate(model, cause(), seed)
    assert all(np.all(np.isfinite(sim[k].values)) for k in ("x", "v", "y"))
    post = cpsych.invert(model, sim["y"].values.T)
    assert post.attrs["diverged"] == 0
    for k in ("x", "v", "x_cov", "v_cov", "y_pred", "F"):
        assert np.all(np.isfinite(post[k].values)), k
    for k in ("x_cov", "v_cov"):
        S = post[k].values  # (T, k, k)
        np.testing.assert_allclose(S, np.swapaxes(S, 1, 2), rtol=1e-10, atol=1e-14)
        assert np.all(np.linalg.eigvalsh(S) > 0), k


@given(shape=st.sampled_from(SHAPES[1:]), seed=seeds, data_seed=st.integers(0, 100))
@SETTINGS
def test_permuting_states_permutes_the_posterior(shape, seed, data_seed):
    n_x, n_y = shape
    th = stable_matrices(n_x, n_y, seed)
    x0 = np.random.default_rng(seed + 1).normal(size=n_x)
    perm = np.roll(np.arange(n_x), 1)
    P = np.eye(n_x)[perm]  # (P x)[i] = x[perm[i]]
    th_p = {"A": P @ th["A"] @ P.T, "B": P @ th["B"], "C": th["C"] @ P.T}
    model, model_p = linear_hdm(th, x0=x0), linear_hdm(th_p, x0=P @ x0)
    y = data(model, data_seed)
    a, b = cpsych.invert(model, y), cpsych.invert(model_p, y)
    np.testing.assert_allclose(b["x"].values, a["x"].values[:, perm], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(b["x_cov"].values, a["x_cov"].values[:, perm][:, :, perm],
                               rtol=1e-8, atol=1e-14)
    for k in ("v", "v_var", "y_pred", "F"):
        np.testing.assert_allclose(b[k].values, a[k].values, rtol=1e-9, atol=1e-11)


@given(shape=shapes, seed=seeds, log_k=st.floats(-3.0, 3.0))
@SETTINGS
def test_rescaling_data_units_leaves_states_unchanged(shape, seed, log_k):
    """y -> k y with g -> k g and the sensory precision -> precision / k**2."""
    n_x, n_y = shape
    k = float(np.exp(log_k))
    th = stable_matrices(n_x, n_y, seed)
    model = linear_hdm(th)
    scaled = linear_hdm({**th, "C": k * th["C"]}, log_pi_z=6.0 - 2.0 * log_k)
    y = data(model, seed % 97)
    a, b = cpsych.invert(model, y), cpsych.invert(scaled, k * y)
    for name in ("x", "x_cov", "v", "v_var"):
        np.testing.assert_allclose(b[name].values, a[name].values, rtol=1e-8, atol=1e-12)
    for name in ("y_pred", "eps_y"):
        np.testing.assert_allclose(b[name].values, k * a[name].values, rtol=1e-8,
                                   atol=1e-12 * k)


def _run_theta(template: HDM, theta: dict, y, eta):
    lv = dataclasses.replace(template.levels[0], theta=theta)
    return filtering.run(dataclasses.replace(template, levels=(lv,)), y, eta)


_run_batch = jax.jit(jax.vmap(_run_theta, in_axes=(None, 0, None, None)))


@given(shape=shapes, seed=seeds)
@SETTINGS
def test_vmapped_batch_equals_single_runs(shape, seed):
    n_x, n_y = shape
    thetas = [stable_matrices(n_x, n_y, seed + i) for i in range(3)]
    models = [linear_hdm(th) for th in thetas]
    y = data(models[0], seed % 89)
    batched = jax.tree.map(lambda *a: np.stack(a), *thetas)
    out = _run_batch(models[0].validate(), batched, y, np.zeros(1))
    for i, m in enumerate(models):
        single = cpsych.invert(m, y)
        np.testing.assert_allclose(out.x[i], single["x"].values, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(out.x_cov[i], single["x_cov"].values, rtol=1e-10,
                                   atol=1e-14)
        np.testing.assert_allclose(out.F[i], single["F"].values, rtol=1e-10, atol=1e-10)


def test_the_models_are_not_trivial():
    """The properties compare real dynamics: the posterior moves with the data."""
    model = linear_hdm(stable_matrices(2, 3, 0))  # a shape of SHAPES: compiled already
    post = cpsych.invert(model, data(model, 1))
    assert np.ptp(post["x"].values) > 0.1
    assert np.ptp(post["v"].values) > 0.1
