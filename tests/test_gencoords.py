"""Generalised coordinates against SPM's reference outputs and closed forms."""

import jax
import numpy as np
import pytest
from conftest import load_csv

import cpsych
from cpsych.gencoords import embedding_operator

S_FILES = {0.5: "0p5", 1.0: "1", 2.0: "2"}


@pytest.mark.parametrize("n", range(2, 9))
@pytest.mark.parametrize("s", [0.5, 1.0, 2.0])
def test_temporal_precision_matches_spm(n, s):
    R_ref = load_csv("unit", f"DEM_R_n{n}_s{S_FILES[s]}.csv")
    V_ref = load_csv("unit", f"DEM_V_n{n}_s{S_FILES[s]}.csv")
    R = np.asarray(cpsych.temporal_precision(n, s))
    V = np.asarray(cpsych.temporal_covariance(n, s))
    assert R.shape == (n, n)
    assert np.max(np.abs(R - R_ref)) / np.max(np.abs(R_ref)) < 1e-10
    assert np.max(np.abs(V - V_ref)) / np.max(np.abs(V_ref)) < 1e-12


def test_temporal_covariance_closed_form_n3():
    s = 0.7
    V = np.asarray(cpsych.temporal_covariance(3, s))
    a = 1 / (2 * s**2)
    np.testing.assert_allclose(V, [[1, 0, -a], [0, a, 0], [-a, 0, 3 * a**2]], rtol=1e-14)


def test_s_zero_means_exp_minus_8():
    np.testing.assert_allclose(cpsych.temporal_precision(3, 0.0),
                               cpsych.temporal_precision(3, np.exp(-8)), rtol=1e-12)


def test_derivative_operator_shifts_orders():
    D = cpsych.derivative_operator(3, 2)
    x = np.arange(6.0)  # orders [0,1], [2,3], [4,5]
    np.testing.assert_array_equal(D @ x, [2, 3, 4, 5, 0, 0])


# (n, SPM time t, dt) of the reference embeddings; SPM's t is 1-based: sample i at i * dt
EMBED_CASES = [(3, 5, 1), (4, 5, 1), (4, 5.5, 1), (5, 1, 1), (5, 10, 1), (4, 5, 0.5), (6, 7, 2)]


def _name(x):
    return str(x).replace(".", "p").removesuffix("p0")


@pytest.mark.parametrize("n,t,dt", EMBED_CASES)
def test_embed_matches_spm(n, t, dt):
    Y = load_csv("unit", "embed_Y.csv")
    ref = load_csv("unit", f"embed_n{n}_t{_name(t)}_dt{_name(dt)}.csv")
    out = np.asarray(cpsych.embed(Y, n, t / dt - 1, dt))
    assert out.shape == (n, 2)
    np.testing.assert_allclose(out, ref, atol=1e-12, rtol=1e-12)


def test_embed_with_delays_matches_spm():
    Y = load_csv("unit", "embed_Y.csv")
    ref = load_csv("unit", "embed_n4_t6_dt1_delay0_2.csv")
    np.testing.assert_allclose(cpsych.embed(Y, 4, 5, 1.0, delays=[0, 2]), ref, atol=1e-12)


def test_embed_recovers_polynomial_derivatives():
    t = np.arange(20) * 0.1
    y = (2 + 3 * t - t**2 + 0.5 * t**3)[None, :]
    out = np.asarray(cpsych.embed(y, 4, 10, 0.1))[:, 0]
    tt = 1.0
    np.testing.assert_allclose(out, [2 + 3 * tt - tt**2 + 0.5 * tt**3, 3 - 2 * tt + 1.5 * tt**2,
                                     -2 + 3 * tt, 3], rtol=1e-9)


@pytest.mark.parametrize("n", range(1, 9))
def test_embed_series_equals_embed_at_every_bin(n):
    # odd and even n: for even n SPM's window (fix, not floor) differs at the first n/2 bins
    # from the rest, and an operator taken at t = 0 for all bins was off by up to 2e4 here
    Y = load_csv("unit", "embed_Y.csv")
    allt = np.asarray(cpsych.embed_series(Y, n, 0.5))
    scale = np.max(np.abs(allt))
    for t in range(Y.shape[1]):
        np.testing.assert_allclose(allt[t], cpsych.embed(Y, n, t, 0.5), rtol=0,
                                   atol=1e-13 * scale)
    # short series: every bin is an edge case
    short = np.asarray(cpsych.embed_series(Y[:, :3], n, 1.0))
    for t in range(3):
        np.testing.assert_allclose(short[t], cpsych.embed(Y[:, :3], n, t, 1.0), atol=1e-10)


def test_embedding_window_is_not_moved_at_the_edges():
    idx, _ = embedding_operator(5, 0.0)
    np.testing.assert_array_equal(idx, [-2, -1, 0, 1, 2])


@pytest.mark.parametrize("s", [1.0, 2.0])
def test_smooth_noise_autocorrelation(s):
    z = np.asarray(cpsych.smooth_noise(jax.random.key(1), (200, 400), s, log_precision=2.0))
    var = z.var()
    assert abs(var - np.exp(-2)) / np.exp(-2) < 0.05
    for lag in (1, 2):
        r = np.mean(z[:, lag:] * z[:, :-lag]) / var
        assert abs(r - np.exp(-(lag**2) / (4 * s**2))) < 0.03
