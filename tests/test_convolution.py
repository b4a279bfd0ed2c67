"""The convolution model against SPM's DEM and Laplace posteriors (SPEC 5.1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cpsych
from cpsych import filtering
from cpsych.models import convolution


def test_model_matrices_match_reference(conv_ref):
    np.testing.assert_allclose(convolution.A, conv_ref["model_A_f"], atol=1e-15)
    np.testing.assert_allclose(convolution.B, conv_ref["model_B_h"], atol=1e-15)
    np.testing.assert_allclose(convolution.C, conv_ref["model_C_g"], atol=1e-15)
    np.testing.assert_allclose(convolution.bump(), conv_ref["U"], atol=1e-15)


def test_precisions_and_embedding_match_reference(conv_ref):
    """SPM's M(1).V, M(1).W, M(2).V and M(1).E (its n and d count orders above zero)."""
    m = convolution.model().validate()
    lv = m.levels[0]
    np.testing.assert_allclose(np.diag(np.exp(lv.log_pi_z)), conv_ref["model_V1"], rtol=1e-14)
    np.testing.assert_allclose(np.diag(np.exp(lv.log_pi_w)), conv_ref["model_W1"], rtol=1e-14)
    np.testing.assert_allclose(np.diag(np.exp(m.log_pi_eta)), conv_ref["model_V2"], rtol=1e-14)
    E = conv_ref["model_E"]
    assert (m.n, m.d) == (E["n"] + 1, E["d"] + 1)
    assert (float(m.s), m.dt) == (E["s"], E["dt"])


@pytest.fixture(scope="module")
def posterior(conv_ref):
    return cpsych.invert(convolution.model(), conv_ref["Y"])


@pytest.mark.parametrize("scheme", ["DEM", "LAP"])
def test_posterior_expectations_match_spm(posterior, conv_ref, scheme):
    x = posterior["x"].values.T
    v = posterior["v"].values.T
    assert np.max(np.abs(x - conv_ref[f"{scheme}_qU_x1"])) < 1e-8
    assert np.max(np.abs(v - conv_ref[f"{scheme}_qU_v2"])) < 1e-8


@pytest.mark.parametrize("scheme", ["DEM", "LAP"])
def test_conditional_covariances_match_spm(posterior, conv_ref, scheme):
    S = posterior["x_cov"].values.transpose(0, 2, 1).reshape(32, 4)  # column-major vec
    C = posterior["v_var"].values
    np.testing.assert_allclose(S, conv_ref[f"{scheme}_qU_S"], rtol=1e-6)
    np.testing.assert_allclose(C, conv_ref[f"{scheme}_qU_C"], rtol=1e-6)


def test_predictions_and_errors_match_spm(posterior, conv_ref):
    atol = 1e-8
    np.testing.assert_allclose(posterior["y_pred"].values.T, conv_ref["LAP_qU_v1"], atol=atol)
    np.testing.assert_allclose(posterior["eps_y"].values.T, conv_ref["LAP_qU_z1"], atol=atol)
    np.testing.assert_allclose(posterior["eps_v"].values.T, conv_ref["LAP_qU_z2"], atol=atol)
    np.testing.assert_allclose(posterior["eps_x"].values.T, conv_ref["LAP_qU_w1"], atol=atol)


def test_generate_matches_spm_with_injected_noise(conv_ref):
    z = np.vstack([conv_ref["pU_z1"], np.zeros((1, 32))])
    sim = cpsych.generate(convolution.model(), conv_ref["U"], z=z, w=conv_ref["pU_w1"])
    np.testing.assert_allclose(sim["x"].values.T, conv_ref["pU_x1"], atol=1e-10)
    np.testing.assert_allclose(sim["y"].values.T, conv_ref["Y"], atol=1e-10)
    np.testing.assert_allclose(sim["v"].values.T, conv_ref["pU_v2"], atol=1e-15)


def test_generate_with_the_cause_as_innovation_matches_spm(conv_ref):
    """SPM generates the cause as the top-level innovation z{2} about eta = 0 (pU.z{2});
    injected so, with no expected cause, generation reproduces pU.v{2}, pU.x{1} and Y."""
    z = np.vstack([conv_ref["pU_z1"], conv_ref["pU_z2"]])
    sim = cpsych.generate(convolution.model(), np.zeros((1, 32)), z=z, w=conv_ref["pU_w1"])
    np.testing.assert_allclose(sim["v"].values.T, conv_ref["pU_v2"], atol=1e-15)
    np.testing.assert_allclose(sim["x"].values.T, conv_ref["pU_x1"], atol=1e-10)
    np.testing.assert_allclose(sim["y"].values.T, conv_ref["Y"], atol=1e-10)


def test_generate_draws_noise_at_the_model_precision():
    m = convolution.model(log_pi_z=2.0)
    sim = cpsych.generate(m, np.zeros((1, 2000)), jax.random.key(3))
    assert abs(sim["z"].sel(z_channel="y1").var() * np.exp(2.0) - 1) < 0.1


def test_results_round_trip_netcdf(posterior, tmp_path):
    path = cpsych.save(posterior, tmp_path / "sub" / "conv.nc")
    back = cpsych.load(path)
    assert back.identical(posterior)
    assert not list(path.parent.glob(".*.tmp"))
    assert posterior.attrs["cpsych_version"] == cpsych.__version__
    assert list(posterior["state"].values) == ["x1", "x2"]


def test_changing_precisions_or_data_does_not_recompile(conv_ref):
    m = convolution.model().validate()
    y = jnp.asarray(conv_ref["Y"])
    eta = jnp.zeros(1)
    filtering.run_jit(m, y, eta)
    before = filtering.run_jit._cache_size()
    m2 = convolution.model(log_pi_z=6.0, log_pi_w=4.0, s=1.0).validate()
    filtering.run_jit(m2, y * 2, eta)
    assert filtering.run_jit._cache_size() == before


def test_vmap_over_precisions_equals_loop(conv_ref):
    y = jnp.asarray(conv_ref["Y"])
    eta = jnp.zeros(1)
    log_pis = jnp.array([4.0, 6.0, 8.0])

    def run(lp):
        m = convolution.model().validate()
        m = m.__class__(**{**m.__dict__, "levels": (m.levels[0].__class__(
            **{**m.levels[0].__dict__, "log_pi_z": jnp.full(4, lp)}),)})
        return filtering.run(m, y, eta).x

    batched = jax.jit(jax.vmap(run))(log_pis)
    for i, lp in enumerate(log_pis):
        single = cpsych.invert(convolution.model(log_pi_z=float(lp)), conv_ref["Y"])["x"].values
        np.testing.assert_allclose(batched[i], single, atol=1e-12)
    # and precision matters: the batch is not three copies of one answer
    assert np.max(np.abs(batched[0] - batched[2])) > 1e-3
