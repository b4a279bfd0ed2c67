"""Fidelity to SPM's DEM routines, second round: the rate of generalised descent (``E.K``),
SPM's log-evidence bounds and DEM's E- and M-steps (tests/data, copied from
/work/shared/reference)."""

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_csv

import cpsych
from cpsych import filtering
from cpsych.models import gf_vs_kalman as gk
from cpsych.models.convolution import dct_matrix


def _gf(name):
    return load_csv("gf_vs_kf", f"{name}.csv")


# ------------------------------------------------------------ the rate of generalised descent
@pytest.fixture(scope="module")
def gf_run1():
    return cpsych.invert(gk.spm_demo_model(), _gf("run1_Y"))


def test_spm_demo_model_matrices_match_reference():
    np.testing.assert_array_equal(gk.A, _gf("model_Pf"))
    np.testing.assert_allclose(dct_matrix(4, 8), _gf("model_Pg"), atol=1e-15)
    assert gk.spm_demo_model().kappa == pytest.approx(math.exp(-1.0), rel=1e-15)


def test_descent_rate_reproduces_spm_states_and_covariances(gf_run1):
    # DEM_demo_GF_and_KF, run 1: E.K = exp(-1); linear, so any difference is a convention
    x = gf_run1["x"].values.T
    np.testing.assert_allclose(x, _gf("run1_GF_x"), rtol=0, atol=1e-8)  # measured 1.6e-13
    S = gf_run1["x_cov"].values.transpose(0, 2, 1).reshape(128, 64)  # vec, column-major
    np.testing.assert_allclose(S, _gf("run1_GF_S"), rtol=1e-8, atol=0)  # measured 7e-14
    # and the rate matters: at kappa = 1 the trajectory is far from SPM's
    x1 = cpsych.invert(gk.spm_demo_model(kappa=1.0), _gf("run1_Y"))["x"].values.T
    assert np.max(np.abs(x1 - _gf("run1_GF_x"))) > 0.1


def test_descent_rate_scales_gradient_curvature_and_coupling_not_the_shift():
    m = gk.spm_demo_model(kappa=0.3).validate()
    m1 = dataclasses.replace(m, kappa=np.asarray(1.0))
    rng = np.random.default_rng(0)
    u = jnp.asarray(rng.normal(size=m.n * m.n_x))
    w = (jnp.asarray(rng.normal(size=(m.n, 4))), jnp.zeros((m.d, 0)))
    f, _ = filtering.recognition_flow(m, u, w)
    f1, _ = filtering.recognition_flow(m1, u, w)
    D = filtering.shift_operator(m)
    np.testing.assert_allclose(f.q - D @ u, 0.3 * (f1.q - D @ u), rtol=1e-12)
    np.testing.assert_allclose(f.A - D, 0.3 * (f1.A - D), rtol=1e-12)
    np.testing.assert_allclose(f.B, 0.3 * f1.B, rtol=1e-12)


def test_generalised_filtering_beats_spm_kalman_filter_on_spm_data(gf_run1):
    x_true = _gf("run1_true_x")
    mse_gf = np.mean((gf_run1["x"].values.T - x_true) ** 2)
    mse_kf = np.mean((_gf("run1_KF_x") - x_true) ** 2)
    summary = _gf("run1_summary")[0]
    assert mse_gf == pytest.approx(summary[0], rel=1e-10)  # 0.10974
    assert mse_kf == pytest.approx(summary[1], rel=1e-10)  # 0.17322 (spm_ekf)
    assert mse_gf < 0.7 * mse_kf
    # normalised estimation error squared, E' inv(S) E averaged over bins
    err = gf_run1["x"].values - x_true.T
    nees = np.mean([e @ np.linalg.solve(S, e) for e, S in zip(err, gf_run1["x_cov"].values)])
    assert nees == pytest.approx(summary[2], rel=1e-8)  # 6.1836


@pytest.mark.parametrize("bad", [0.0, -1.0, np.inf, [1.0, 2.0]])
def test_bad_descent_rate_is_rejected(bad):
    with pytest.raises(ValueError, match="kappa"):
        cpsych.invert(gk.spm_demo_model(kappa=bad), _gf("run1_Y"))
